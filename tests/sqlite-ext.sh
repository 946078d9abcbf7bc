#!/bin/bash
# tests/sqlite-ext.sh SQLM_SO [--asan] - the loadable SQLite extension in the
# stock sqlite3 shell (Debian's), loaded with `.load ./sqlm` beside SQLM_SO:
# sqlm_generate over a user table against `sqlm run --temp 0` row by row,
# the attached-schema form against the path form, sqlm_tokens' text and ids
# against sqlm_generate and the golden ids, LIMIT 3 stopping generation,
# sqlm_tokenize and sqlm_detokenize against `sqlm tokenize`, sqlm_chat
# against `sqlm chat`, and bad input giving SQL errors, never a crash.
# --asan: SQLM_SO is built with ASan/UBSan; the shell runs with the ASan
# runtime preloaded (it must come first in the process).
set -u
SO=$(realpath "$1")
ASAN=${2:-}
SQLM=$(realpath ./sqlm)   # the reference answers, from the repository root
M=../shared/models
G=../shared/golden
NAME=sqlite-ext
. "$(dirname "$0")/lib.sh"
N=24

if ! command -v sqlite3 >/dev/null; then
    bad "no sqlite3 shell (scripts/install-deps.sh installs Debian's sqlite3)"
    echo "$NAME: $pass passed, $fail failed"; exit 1
fi
SHELL_ENV=()
if [ "$ASAN" = --asan ]; then
    # leaks too: the connection's cache must be freed when it closes
    SHELL_ENV=(env "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=1
               UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
fi
# sq SQL...: the shell on the user database, from SQLM_SO's folder so that
# `.load ./sqlm` finds it; -bail: the first error ends it with status 1
sq() { (cd "$(dirname "$SO")" && "${SHELL_ENV[@]}" sqlite3 -bail "$T/user.db" ".load ./sqlm" "$@"); }
# hex of stdin, as SQL's hex() spells it
tohex() { od -An -v -tx1 | tr -d ' \n' | tr a-f A-F; }

"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
DB=$T/s.db

# --- a user table of prompts, each row against `sqlm run --temp 0`
prompts=("" "Once upon a time" "Lily and Tom went to the park" "The little dog" "One day, a girl named Sue"
         "Tim had a big red ball")
{
    echo "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
    for i in "${!prompts[@]}"; do
        printf "INSERT INTO notes VALUES(%d, '%s');\n" "$i" "${prompts[$i]//\'/\'\'}"
    done
} | sqlite3 "$T/user.db" || bad "creating the user table"

sq "SELECT id, hex(sqlm_generate('$DB', body, $N)) FROM notes ORDER BY id;" >"$T/path" 2>"$T/err" ||
    bad "sqlm_generate over the table: $(cat "$T/err")"
[ "$(wc -l <"$T/path")" = "${#prompts[@]}" ] && ok || bad "sqlm_generate: $(wc -l <"$T/path") rows, not ${#prompts[@]}"
for i in "${!prompts[@]}"; do
    p=${prompts[$i]}
    "$SQLM" run -m "$DB" -p "$p" -n $N --temp 0 >"$T/run" 2>"$T/err" || bad "run -p '$p': $(cat "$T/err")"
    out=$(cat "$T/run"; echo x); out=${out%x}; out=${out%$'\n'}   # run prints a newline after the text
    if [ "${out:0:${#p}}" != "$p" ]; then bad "run -p '$p' does not print its prompt first"; continue; fi
    want=$(printf '%s' "${out:${#p}}" | tohex)
    got=$(sed -n "s/^$i|//p" "$T/path")
    [ -n "$want" ] && [ "$got" = "$want" ] && ok || bad "row $i ('$p'): sqlm_generate differs from sqlm run:
got:  $(echo "$got" | xxd -r -p)
want: $(echo "$want" | xxd -r -p)"
done

# --- the attached-schema form gives the path form's text
sq "ATTACH '$DB' AS m;" "SELECT id, hex(sqlm_generate('m', body, $N)) FROM notes ORDER BY id;" >"$T/att" 2>"$T/err" ||
    bad "sqlm_generate('m', ...): $(cat "$T/err")"
cmp -s "$T/path" "$T/att" && ok || bad "the attached form differs from the path form: $(diff "$T/path" "$T/att" | head -5)"

# --- sqlm_tokens: its pieces add up to sqlm_generate's text, its ids are
# the golden greedy ids (64 tokens each, EOS ignored)
OPT='{"ignore_eos": true}'
sq "SELECT n.id, hex(sqlm_generate('$DB', n.body, $N, '$OPT')),
           (SELECT hex(group_concat(piece, '')) FROM (SELECT piece FROM sqlm_tokens('$DB', n.body, $N, '$OPT') ORDER BY i)),
           (SELECT group_concat(id, ' ') FROM (SELECT id FROM sqlm_tokens('$DB', n.body, $N, '$OPT') ORDER BY i)),
           (SELECT count(*) FROM sqlm_tokens('$DB', n.body, $N, '$OPT') WHERE logprob <= 0)
    FROM notes n ORDER BY n.id;" >"$T/tok" 2>"$T/err" || bad "sqlm_tokens: $(cat "$T/err")"
python3 - "$T/tok" "$G/generation_stories260K.jsonl" "$N" "${prompts[@]}" >"$T/cmp" 2>&1 <<'EOF'
import json, sys
rows = [l.rstrip('\n').split('|') for l in open(sys.argv[1])]
golden = {d['prompt']: d['generated_ids'] for d in map(json.loads, open(sys.argv[2]))}
n, prompts = int(sys.argv[3]), sys.argv[4:]
checked = 0
for r in rows:
    i, text, pieces, ids, n_lp = int(r[0]), r[1], r[2], r[3], int(r[4])
    if text != pieces: print(f"row {i}: the pieces of sqlm_tokens differ from sqlm_generate's text")
    if len(ids.split()) != n or n_lp != n: print(f"row {i}: {len(ids.split())} tokens with {n_lp} log-probabilities, not {n}")
    if prompts[i] in golden:
        checked += 1
        if ids.split() != [str(x) for x in golden[prompts[i]][:n]]:
            print(f"row {i}: ids {ids} differ from the golden {golden[prompts[i]][:n]}")
if len(rows) != len(prompts) or checked < 5: print(f"{len(rows)} rows, {checked} checked against the golden ids")
EOF
[ -s "$T/cmp" ] && bad "sqlm_tokens: $(cat "$T/cmp")" || ok

# --- calls nested on one model (sqlm_generate per row of sqlm_tokens) each
# get their own sequence: both give their plain answers
got=$(sq "SELECT hex(group_concat(piece, '')), count(DISTINCT g), max(g) FROM
          (SELECT piece, sqlm_generate('$DB', 'Once upon a time', 4) g FROM sqlm_tokens('$DB', 'Lily', 8) ORDER BY i);" 2>"$T/err")
want=$(sq "SELECT hex(sqlm_generate('$DB', 'Lily', 8)), 1, sqlm_generate('$DB', 'Once upon a time', 4);" 2>>"$T/err")
[ -n "$want" ] && [ "$got" = "$want" ] && ok || bad "nested calls: '$got', want '$want' $(cat "$T/err")"

# --- LIMIT 3 gives three rows and stops generation: far quicker than
# reading all 500 tokens the same call would generate
now() { date +%s.%N; }
t0=$(now)
got=$(sq "SELECT count(*) FROM (SELECT * FROM sqlm_tokens('$DB', 'Once upon a time', 500, '$OPT') LIMIT 3);" 2>"$T/err")
t1=$(now)
full=$(sq "SELECT count(*) FROM sqlm_tokens('$DB', 'Once upon a time', 500, '$OPT');" 2>>"$T/err")
t2=$(now)
[ "$got" = 3 ] && ok || bad "LIMIT 3: '$got' rows, not 3: $(cat "$T/err")"
[ "$full" = 500 ] && ok || bad "500 tokens: '$full' rows"
if python3 -c "import sys; a, b = $t1 - $t0, $t2 - $t1; sys.exit(0 if a < b / 2 else 1)"; then ok
else bad "LIMIT 3 took $(python3 -c "print(round($t1 - $t0, 3))") s, 500 tokens $(python3 -c "print(round($t2 - $t1, 3))") s"; fi

# --- sqlm_tokenize and sqlm_detokenize against sqlm tokenize
for p in "Once upon a time" "Lily and Tom went to the park"; do
    want="[$("$SQLM" tokenize -m "$DB" "$p" 2>/dev/null | head -1 | tr ' ' ',')]"
    got=$(sq "SELECT sqlm_tokenize('$DB', '$p');" 2>"$T/err")
    [ "$got" = "$want" ] && ok || bad "sqlm_tokenize('$p'): $got, want $want $(cat "$T/err")"
    got=$(sq "SELECT sqlm_detokenize('$DB', sqlm_tokenize('$DB', '$p'));" 2>"$T/err")
    [ "$got" = "$p" ] && ok || bad "sqlm_detokenize(sqlm_tokenize('$p')): '$got' $(cat "$T/err")"
done

# --- sqlm_chat: the reply of `sqlm chat` to one user message
want=$(echo "Hello there" | "$SQLM" chat -m "$DB" -n $N --temp 0 2>/dev/null | tohex)
got=$(sq "SELECT hex(sqlm_chat('$DB', '[{\"role\": \"user\", \"content\": \"Hello there\"}]', '{\"max_tokens\": $N}') || char(10));" 2>"$T/err")
[ -n "$want" ] && [ "$got" = "$want" ] && ok || bad "sqlm_chat differs from sqlm chat: $got / $want $(cat "$T/err")"

# --- sampling options: a seed repeats, stop strings cut the text
a=$(sq "SELECT sqlm_generate('$DB', 'Lily', 20, '{\"temperature\": 1.5, \"top_k\": 0, \"min_p\": 0, \"seed\": 7}');" 2>"$T/err")
b=$(sq "SELECT sqlm_generate('$DB', 'Lily', 20, '{\"temperature\": 1.5, \"top_k\": 0, \"min_p\": 0, \"seed\": 7}');" 2>>"$T/err")
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "seed 7 does not repeat: '$a' / '$b' $(cat "$T/err")"
got=$(sq "SELECT sqlm_generate('$DB', 'Once upon a time', $N, '{\"stop\": [\"Lily\", \"zzz\"]}');" 2>"$T/err")
[ "$got" = ", there was a little girl named " ] && ok || bad "stop string: '$got' $(cat "$T/err")"

# --- bad input: SQL errors with sqlm's message, never a crash
expect_error "missing model" "/nonexistent/m.db" sq "SELECT sqlm_generate('/nonexistent/m.db', 'a', 4);"
expect_error "missing model (sqlm_tokens)" "/nonexistent/m.db" sq "SELECT * FROM sqlm_tokens('/nonexistent/m.db', 'a', 4);"
expect_error "not a model" "sqlm_generate: " sq "SELECT sqlm_generate('main', 'a', 4);"
expect_error "bad options JSON" "bad JSON" sq "SELECT sqlm_generate('$DB', 'a', 4, '{\"temperature\": ');"
expect_error "bad options JSON (sqlm_tokens)" "bad JSON" sq "SELECT * FROM sqlm_tokens('$DB', 'a', 4, '[1');"
expect_error "unknown option" "unknown option 'temp'" sq "SELECT sqlm_generate('$DB', 'a', 4, '{\"temp\": 1}');"
expect_error "option out of range" "option top_p" sq "SELECT sqlm_generate('$DB', 'a', 4, '{\"top_p\": 7}');"
expect_error "bad max_tokens" "max_tokens" sq "SELECT sqlm_generate('$DB', 'a', 'many');"
expect_error "bad messages" "messages" sq "SELECT sqlm_chat('$DB', '{\"role\": \"user\"}');"
expect_error "id out of range" "out of range" sq "SELECT sqlm_detokenize('$DB', '[1, 99999]');"
expect_error "no arguments" "sqlm_tokens: give a model" sq "SELECT * FROM sqlm_tokens;"
expect_error "no such schema file" "in memory" sq "ATTACH ':memory:' AS mm;" "SELECT sqlm_generate('mm', 'a', 4);"

echo "$NAME: $pass passed, $fail failed"
[ "$fail" = 0 ]
