#!/bin/bash
# The DuckDB part of `make bench`: generation speed of the tiny real models
# and of a random-weight model of the stories110M shape on the DuckDB engine
# (pure SQL), one and two engine threads, then the passes' ablation
# (scripts/bench-duckdb-passes.sh).  Prints markdown tables and keeps
# a copy under bench/results/.  Skipped when libduckdb.so cannot be loaded.
set -e
cd "$(dirname "$0")/.."
SQLM=./sqlm
T=$(mktemp -d /tmp/sqlm-bench-duckdb-XXXXXX)
trap 'rm -rf "$T"' EXIT
if ! $SQLM import ../shared/models/stories260K/stories260K.bin -o "$T/probe.duck" --engine duckdb 2>"$T/err"; then
    if grep -q "cannot load libduckdb.so" "$T/err"; then
        echo "bench-duckdb: skipped: DuckDB library not found (scripts/install-duckdb.sh)"
        exit 0
    fi
    cat "$T/err" >&2
    exit 1
fi
mkdir -p bench/results
out=bench/results/duckdb-$(date +%Y%m%d-%H%M%S).md
# one row: NAME STORAGE MODEL-FILE N-TOKENS
row() {
    local name=$1 type=$2 path=$3 n=$4
    $SQLM import "$path" -o "$T/m.duck" --engine duckdb 2>/dev/null
    for t in 1 2; do
        flock /tmp/sqlm-bench.lock $SQLM run -m "$T/m.duck" -p "Once upon a time" -n "$n" --temp 0 --ignore-eos -t $t 2>"$T/err" >/dev/null
        pp=$(sed -n 's/^prompt: .* tokens, \(.*\) tok\/s/\1/p' "$T/err")
        tg=$(sed -n 's/^generation: .* tokens, \(.*\) tok\/s/\1/p' "$T/err")
        rss=$(sed -n 's/^peak RSS: \(.*\)/\1/p' "$T/err")
        echo "| $name | $type | $t | $n | $pp | $tg | $rss |"
    done
    rm -f "$T/m.duck"
}
{
echo "## Generation on DuckDB $(grep -o '"version": "[^"]*"' .deps/duckdb/node_modules/@duckdb/node-bindings-linux-*/package.json 2>/dev/null | head -1 | cut -d'"' -f4), pure SQL (greedy, prompt \"Once upon a time\")"
echo "| model | stored as | threads | tokens | prompt tok/s | generation tok/s | peak RSS |"
echo "|---|---|---|---|---|---|---|"
row stories260K F32 ../shared/models/stories260K/stories260K.bin 128
row TinyStories-656K F32 ../shared/models/TinyStories-656K 128
row "TinyStories-656K (Q8_0 file)" Q8_0 ../shared/models/TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf 128
$SQLM synth --like stories110M -o "$T/110m.gguf" --type f32 2>/dev/null
row "stories110M shape, random" F32 "$T/110m.gguf" 16
echo
# the TranSQL+ ablation, the matrix-vector ceiling and decode bandwidth
./scripts/bench-duckdb-passes.sh
} | tee "$out"

# --- native mode (--native: sqlm's C functions registered on the connection)
# against pure SQL, on one database file per storage type: prefill of 25
# tokens (best of 2, weights already in DuckDB's buffers) and decode per
# token (best and mean of 16), by build/duckbench, each run under the lock
native_row() {
    local type=$1 engine=$2 t=$3 r pf dec mean
    r=$(flock /tmp/sqlm-bench.lock ./build/duckbench run "$T/n.duck" --engine "$engine" -t "$t" \
        --prompt 25 --decode 16 --repeat 2)
    pf=$(echo "$r" | sed -n 's/.* prefill_ms=\([^ ]*\).*/\1/p')
    dec=$(echo "$r" | sed -n 's/.* decode_ms=\([^ ]*\).*/\1/p')
    mean=$(echo "$r" | sed -n 's/.* decode_mean_ms=\([^ ]*\).*/\1/p')
    echo "| $type | $engine | $t | $pf | $(awk -v m="$pf" 'BEGIN { printf "%.1f", 25000 / m }') |" \
         "$dec / $mean | $(awk -v m="$dec" 'BEGIN { printf "%.1f", 1000 / m }') |"
}
{
echo
echo "## Native functions against pure SQL: stories110M shape, random weights"
echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| stored as | engine | threads | prefill 25 ms | prefill tok/s | decode ms (best / mean) | decode tok/s (best) |"
echo "|---|---|---|---|---|---|---|"
for type in f32 q8_0; do
    $SQLM synth --like stories110M -o "$T/n.gguf" --type $type 2>/dev/null
    $SQLM import "$T/n.gguf" -o "$T/n.duck" --engine duckdb 2>/dev/null
    for engine in duckdb duckdb-native; do
        for t in 1 2; do native_row $type $engine $t; done
    done
    rm -f "$T/n.gguf" "$T/n.duck"
done
} | tee -a "$out"
echo "(saved to $out)"
