#!/bin/bash
# The TranSQL+ ablation on DuckDB (pure SQL), part of `make bench` through
# scripts/bench-duckdb.sh: random-weight F32 models of the stories110M and
# tinyllama-1.1b shapes; prefill latency for prompts of 25 and 200 tokens
# and decode latency per token, with no pass, each pass alone (CTE merging,
# table fusion, ROW2COL by its rule) and all passes; then DuckDB's ceiling
# for one decode-sized matrix-vector product next to the weight bytes per
# second a decode step achieves.  Every timed run holds /tmp/sqlm-bench.lock.
#
#   SHAPES="stories110M tinyllama-1.1b"   shapes to run
#   DECODE_110M=16 DECODE_1B=4            decode tokens measured (after a 25-token prompt)
#   LONG_1B=100                            the long prompt of the 1.1B shape (100 tokens
#                                          took 33 s to 100 s per configuration; the 1.1B
#                                          part takes about 10 minutes, the 110M one 4 to 7)
#   THREADS=2
set -e
cd "$(dirname "$0")/.."
SQLM=./sqlm
BENCH=${BENCH:-./build/duckbench}
SHAPES=${SHAPES:-"stories110M tinyllama-1.1b"}
THREADS=${THREADS:-2}
T=$(mktemp -d /tmp/sqlm-bench-passes-XXXXXX)
trap 'rm -rf "$T"' EXIT
lock() { flock /tmp/sqlm-bench.lock "$@"; }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# Layouts an import writes (fusion, ROW2COL) and the configurations that
# run on them: NAME LAYOUT RUN-FLAGS
layout_flags() {
    case $1 in
    split) echo "--no-fuse --row2col off" ;;
    fused) echo "--row2col off" ;;
    split-r2c) echo "--no-fuse --row2col auto" ;;
    fused-r2c) echo "--row2col auto" ;;
    esac
}
CONFIGS="none:split:--no-cte-merge cte:split: fusion:fused:--no-cte-merge row2col:split-r2c:--no-cte-merge all:fused-r2c:"

echo "## TranSQL+ passes on DuckDB $($BENCH version), pure SQL, F32 random weights, $THREADS threads"
echo
echo "Latencies in ms. Prefill: the whole prompt, best of 2 runs (the 1.1B long prompt: 1 run)."
echo "Decode: the best of the decode steps after the 25-token prompt (the machine is shared)."
echo "Speedup = none / config. GB/s = weight bytes a decode step reads / decode latency."
echo
for shape in $SHAPES; do
    case $shape in
    tinyllama*) n_dec=${DECODE_1B:-4}; long=${LONG_1B:-100}; rep_long=1; rows=11264; cols=2048 ;;
    *) n_dec=${DECODE_110M:-16}; long=200; rep_long=2; rows=4096; cols=768 ;;
    esac
    $SQLM synth --like "$shape" --type f32 -o "$T/m.gguf" >/dev/null 2>&1
    declare -A P25 P200 DEC GBS
    prof="" pprof=""
    echo "### $shape ($n_dec decode tokens per configuration)"
    echo
    echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared; timed runs hold the bench lock)."
    echo
    for layout in split fused split-r2c fused-r2c; do
        # shellcheck disable=SC2046
        lock $SQLM import "$T/m.gguf" -o "$T/m.duck" --engine duckdb $(layout_flags $layout) 2>"$T/err" >/dev/null ||
            { cat "$T/err" >&2; exit 1; }
        echo "- import ($layout layout): $(sed -n 's/^import: wrote .* in \(.*\) s$/\1/p' "$T/err") s, $(du -m "$T/m.duck" | cut -f1) MB"
        for c in $CONFIGS; do
            IFS=: read -r name lay flags <<<"$c"
            [ "$lay" = "$layout" ] || continue
            # shellcheck disable=SC2086
            r25=$(lock $BENCH run "$T/m.duck" -t "$THREADS" $flags --prompt 25 --decode "$n_dec" --repeat 2 --profile)
            # shellcheck disable=SC2086
            r200=$(lock $BENCH run "$T/m.duck" -t "$THREADS" $flags --prompt "$long" --decode 0 --repeat "$rep_long" --profile)
            P25[$name]=$(echo "$r25" | grep '^run' | kv prefill_ms)
            DEC[$name]=$(echo "$r25" | grep '^run' | kv decode_ms)
            GBS[$name]=$(echo "$r25" | grep '^run' | kv GBps)
            P200[$name]=$(echo "$r200" | grep '^run' | kv prefill_ms)
            prof="$prof
- $name: $(echo "$r25" | grep '^profile ' | sed 's/^profile //')"
            pprof="$pprof
- $name: $(echo "$r200" | grep '^profile_prefill ' | sed 's/^profile_prefill //')"
        done
        rm -f "$T/m.duck" "$T/m.duck.wal"
    done
    echo
    echo "| config | prefill 25 | speedup | prefill $long | speedup | decode/token | speedup | decode GB/s |"
    echo "|---|---|---|---|---|---|---|---|"
    for name in none cte fusion row2col all; do
        s25=$(echo "scale=2; ${P25[none]} / ${P25[$name]}" | bc)
        s200=$(echo "scale=2; ${P200[none]} / ${P200[$name]}" | bc)
        sdec=$(echo "scale=2; ${DEC[none]} / ${DEC[$name]}" | bc)
        echo "| $name | ${P25[$name]} | ${s25}x | ${P200[$name]} | ${s200}x | ${DEC[$name]} | ${sdec}x | ${GBS[$name]} |"
    done
    echo
    echo "Where a decode step's time goes (ms per token, statements by name, layers summed):$prof"
    echo
    echo "Where the $long-token prefill's time goes (ms, statements by name, layers summed):$pprof"
    echo
    echo "Ceiling: one ${rows} x ${cols} float32 matrix-vector product (the shape's gate/up table), pure SQL, best of 7:"
    echo
    echo "| layout | threads | ms | GB/s |"
    echo "|---|---|---|---|"
    best=0
    while read -r line; do
        lay=$(echo "$line" | kv layout); th=$(echo "$line" | kv threads)
        ms=$(echo "$line" | kv ms); gb=$(echo "$line" | kv GBps)
        echo "| $lay | $th | $ms | $gb |"
        [ "$(echo "$gb > $best" | bc)" = 1 ] && best=$gb
    done < <(lock $BENCH ceiling "$T" $rows $cols | grep '^ceiling')
    echo
    echo "Decode with all passes: ${GBS[all]} GB/s = $(echo "scale=0; 100 * ${GBS[all]} / $best" | bc)% of the ceiling ($best GB/s)."
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    rm -f "$T/m.gguf"
    unset P25 P200 DEC GBS
done
