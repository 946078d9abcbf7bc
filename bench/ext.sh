#!/bin/bash
# bench/ext.sh (make bench): the SQL functions against the command line on
# the same work.  One `SELECT sqlm_generate(...)` over a user table of 100
# prompts, 16 tokens each (greedy, EOS ignored), in the sqlite3 shell with
# sqlm.so loaded, against 100 `sqlm run` invocations of the same prompts.
# The extension opens the model once and keeps a session whose KV cache is
# reused; each `sqlm run` opens the model, compiles and prepares the program
# again.  Both must give the same texts.  Prints a markdown table and keeps
# a copy under bench/results/.  Timed runs hold /tmp/sqlm-bench.lock.
set -e
cd "$(dirname "$0")/.."
ROWS=${EXT_ROWS:-100}
N=16
out=bench/results/ext-$(date +%Y%m%d-%H%M%S).md
T=$(mktemp -d /tmp/sqlm-bench-ext-XXXXXX)
trap 'rm -rf "$T"' EXIT
now() { date +%s.%N; }

# the user table: ROWS distinct prompts
python3 - "$ROWS" >"$T/prompts.txt" <<'EOF'
import sys
names = ["Lily", "Tom", "Sue", "Ben", "Max", "Mia", "Tim", "Anna", "Sam", "Zoe"]
things = ["a red ball", "a big box", "a small dog", "a kite", "a cake", "a tree", "a boat", "a hat", "a bird", "a car"]
for i in range(int(sys.argv[1])):
    print(f"{names[i % 10]} found {things[i // 10 % 10]} in the park")
EOF
python3 - "$T/prompts.txt" "$T/user.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[2])
db.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
db.executemany("INSERT INTO notes(body) VALUES (?)", [(l.rstrip("\n"),) for l in open(sys.argv[1])])
db.commit()
EOF

{
echo "# sqlm SQL functions against the command line, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(. /etc/os-release; echo "$PRETTY_NAME")," \
     "SQLite $(sqlite3 --version | cut -d' ' -f1)"
echo
echo "$ROWS prompts x $N tokens, greedy, EOS ignored; wall time of the whole work"
echo
echo "| model | SELECT sqlm_generate over $ROWS rows | $ROWS x sqlm run | CLI / SQL | tok/s SQL | tok/s CLI | same text |"
echo "|---|---|---|---|---|---|---|"
for m in "stories260K:../shared/models/stories260K/stories260K.bin" \
         "TinyStories-656K:../shared/models/TinyStories-656K"; do
    IFS=: read -r name path <<<"$m"
    ./sqlm import "$path" -o "$T/m.db" 2>/dev/null
    t0=$(now)
    flock /tmp/sqlm-bench.lock sqlite3 -bail "$T/user.db" ".load ./sqlm" \
        "SELECT hex(sqlm_generate('$T/m.db', body, $N, '{\"ignore_eos\": true}')) FROM notes ORDER BY id;" \
        >"$T/sql.txt"
    t1=$(now)
    : >"$T/cli.txt"
    flock /tmp/sqlm-bench.lock bash -c '
        while IFS= read -r p; do
            ./sqlm run -m "$1" -p "$p" -n "$2" --temp 0 --ignore-eos 2>/dev/null | head -c -1 | tail -c +$((${#p} + 1)) |
                od -An -v -tx1 | tr -d " \n" | tr a-f A-F
            echo
        done <"$3" >"$4"' _ "$T/m.db" "$N" "$T/prompts.txt" "$T/cli.txt"
    t2=$(now)
    same=no
    cmp -s "$T/sql.txt" "$T/cli.txt" && same=yes
    python3 -c "
sql, cli, tok = $t1 - $t0, $t2 - $t1, $ROWS * $N
print(f'| $name | {sql:.2f} s | {cli:.2f} s | {cli / sql:.1f}x | {tok / sql:.0f} | {tok / cli:.0f} | $same |')"
done
} | tee "$out"
echo "(saved to $out)"
