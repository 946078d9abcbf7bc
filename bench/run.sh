#!/bin/bash
# make bench: prints the tables and keeps a copy under bench/results/.
#   1. tokenizer throughput (MB/s of English text)
#   2. generation on the real tiny models through SQLite (tok/s, peak RSS)
# (bench/speed.sh, run after it by make bench, has the speed table of issue 5.)
# Every timed run holds /tmp/sqlm-bench.lock: parallel benchmarks never overlap.
set -e
cd "$(dirname "$0")/.."
out=bench/results/bench-$(date +%Y%m%d-%H%M%S).md
T=$(mktemp -d /tmp/sqlm-bench-XXXXXX)
trap 'rm -rf "$T"' EXIT
{
echo "# sqlm bench, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(. /etc/os-release; echo "$PRETTY_NAME")," \
     "SQLite $(sqlite3 --version | cut -d' ' -f1)"
echo
echo "## Tokenizers"
flock /tmp/sqlm-bench.lock ./build/tokbench
echo
echo "## Generation on SQLite (greedy, prompt \"Once upon a time\", 128 tokens, 1 thread)"
echo "| model | storage | prompt tok/s | generation tok/s | peak RSS |"
echo "|---|---|---|---|---|"
for m in "stories260K:../shared/models/stories260K/stories260K.bin:F32" \
         "TinyStories-656K:../shared/models/TinyStories-656K:F32" \
         "TinyStories-656K:../shared/models/TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf:Q8_0"; do
    IFS=: read -r name path type <<<"$m"
    ./sqlm import "$path" -o "$T/m.db" 2>/dev/null
    flock /tmp/sqlm-bench.lock ./sqlm run -m "$T/m.db" -p "Once upon a time" -n 128 --temp 0 --ignore-eos 2>"$T/err" >/dev/null
    pp=$(sed -n 's/^prompt: .* tokens, \(.*\) tok\/s/\1/p' "$T/err")
    tg=$(sed -n 's/^generation: .* tokens, \(.*\) tok\/s/\1/p' "$T/err")
    rss=$(sed -n 's/^peak RSS: \(.*\)/\1/p' "$T/err")
    echo "| $name | $type | $pp | $tg | $rss |"
done
} | tee "$out"
echo "(saved to $out)"
