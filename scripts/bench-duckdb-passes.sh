#!/bin/bash
# The TranSQL+ ablation on DuckDB (pure SQL), part of `make bench` through
# scripts/bench-duckdb.sh: random-weight F32 models of the stories110M and
# tinyllama-1.1b shapes; prefill latency for prompts of 25 and 200 tokens
# and decode latency per token, with no pass, each pass alone (CTE merging,
# table fusion, ROW2COL by its rule) and all passes; then DuckDB's ceiling
# for one decode-sized matrix-vector product next to the weight bytes per
# second a decode step achieves, and a bound: the all-passes decode step with
# every operator but the products copying its input (duckbench run
# --products-only, bench/bound.c).  Every timed run holds /tmp/sqlm-bench.lock.
# The configurations (and the ceiling) run in ROUNDS interleaved rounds, each
# keeping its best: a change of the machine's speed during the run (it is
# shared) then falls on all of them, not on the ones that ran last.
#
#   SHAPES="stories110M tinyllama-1.1b"   shapes to run
#   DECODE_110M=16 DECODE_1B=8            decode tokens measured (after a 25-token prompt;
#                                          with ROUNDS=2 the 1.1B decode is the best of 16
#                                          steps, near the 14 runs the ceiling is the best of)
#   LONG_1B=100                            the long prompt of the 1.1B shape (100 tokens
#                                          took 33 s to 100 s per configuration; the 1.1B
#                                          part takes about 10 minutes, the 110M one 4 to 7)
#   ROUNDS=2                              rounds (each runs every configuration once)
#   THREADS=2
set -e
cd "$(dirname "$0")/.."
SQLM=./sqlm
BENCH=${BENCH:-./build/duckbench}
SHAPES=${SHAPES:-"stories110M tinyllama-1.1b"}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
T=$(mktemp -d /tmp/sqlm-bench-passes-XXXXXX)
trap 'rm -rf "$T"' EXIT
lock() { flock /tmp/sqlm-bench.lock "$@"; }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
# the smaller of a kept best ($1, empty at first) and a new value ($2)
lower() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
# $1 / $2 to two decimals (bc alone prints .87 for a ratio under 1)
ratio() { printf %.2f "$(echo "scale=4; $1 / $2" | bc)"; }

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
echo "Latencies in ms, the best of $ROUNDS interleaved rounds (each runs every configuration once)."
echo "Prefill: the whole prompt. Decode: the best of the decode steps after the 25-token prompt."
echo "Speedup = none / config. GB/s = weight bytes a decode step reads / decode latency."
echo
for shape in $SHAPES; do
    case $shape in
    tinyllama*) n_dec=${DECODE_1B:-8}; long=${LONG_1B:-100}; rows=11264; cols=2048 ;;
    *) n_dec=${DECODE_110M:-16}; long=200; rows=4096; cols=768 ;;
    esac
    $SQLM synth --like "$shape" --type f32 -o "$T/m.gguf" >/dev/null 2>&1
    declare -A P25 P200 DEC GBS CEIL
    bound=""
    echo "### $shape ($n_dec decode tokens per configuration and round)"
    echo
    echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared; timed runs hold the bench lock)."
    echo
    for layout in split fused split-r2c fused-r2c; do
        # shellcheck disable=SC2046
        lock $SQLM import "$T/m.gguf" -o "$T/$layout.duck" --engine duckdb $(layout_flags $layout) 2>"$T/err" >/dev/null ||
            { cat "$T/err" >&2; exit 1; }
        echo "- import ($layout layout): $(sed -n 's/^import: wrote .* in \(.*\) s$/\1/p' "$T/err") s, $(du -m "$T/$layout.duck" | cut -f1) MB"
    done
    rm -f "$T/m.gguf"
    for _ in $(seq "$ROUNDS"); do
        prof="" pprof=""
        for c in $CONFIGS; do
            IFS=: read -r name lay flags <<<"$c"
            # shellcheck disable=SC2086
            r25=$(lock $BENCH run "$T/$lay.duck" -t "$THREADS" $flags --prompt 25 --decode "$n_dec" --profile)
            # shellcheck disable=SC2086
            r200=$(lock $BENCH run "$T/$lay.duck" -t "$THREADS" $flags --prompt "$long" --decode 0 --profile)
            P25[$name]=$(lower "${P25[$name]}" "$(echo "$r25" | grep '^run' | kv prefill_ms)")
            DEC[$name]=$(lower "${DEC[$name]}" "$(echo "$r25" | grep '^run' | kv decode_ms)")
            P200[$name]=$(lower "${P200[$name]}" "$(echo "$r200" | grep '^run' | kv prefill_ms)")
            prof="$prof
- $name: $(echo "$r25" | grep '^profile ' | sed 's/^profile //')"
            pprof="$pprof
- $name: $(echo "$r200" | grep '^profile_prefill ' | sed 's/^profile_prefill //')"
        done
        # the bound: the all-passes program with every operator but the
        # products copying its input
        rb=$(lock $BENCH run "$T/fused-r2c.duck" -t "$THREADS" --products-only --prompt 25 --decode "$n_dec")
        bound=$(lower "$bound" "$(echo "$rb" | grep '^run' | kv decode_ms)")
        while read -r line; do
            key="$(echo "$line" | kv layout) $(echo "$line" | kv threads)"
            CEIL[$key]=$(lower "${CEIL[$key]}" "$(echo "$line" | kv ms)")
        done < <(lock "$BENCH" ceiling "$T" $rows $cols | grep '^ceiling')
    done
    rm -f "$T"/*.duck "$T"/*.duck.wal
    mb=$(echo "$r25" | grep '^run' | kv weight_MB)
    for name in none cte fusion row2col all; do
        GBS[$name]=$(echo "scale=3; $mb / ${DEC[$name]}" | bc)
    done
    echo
    echo "| config | prefill 25 | speedup | prefill $long | speedup | decode/token | speedup | decode GB/s |"
    echo "|---|---|---|---|---|---|---|---|"
    for name in none cte fusion row2col all; do
        echo "| $name | ${P25[$name]} | $(ratio "${P25[none]}" "${P25[$name]}")x | ${P200[$name]} |" \
             "$(ratio "${P200[none]}" "${P200[$name]}")x | ${DEC[$name]} | $(ratio "${DEC[none]}" "${DEC[$name]}")x |" \
             "${GBS[$name]} |"
    done
    echo
    echo "Where a decode step's time goes (ms per token, statements by name, layers summed; the last round):$prof"
    echo
    echo "Where the $long-token prefill's time goes (ms, statements by name, layers summed; the last round):$pprof"
    echo
    echo "Ceiling: one ${rows} x ${cols} float32 matrix-vector product (the shape's gate/up table), pure SQL,"
    echo "best of 7 runs in each round, best of the rounds:"
    echo
    echo "| layout | threads | ms | GB/s |"
    echo "|---|---|---|---|"
    best=0
    for key in $(printf '%s\n' "${!CEIL[@]}" | tr ' ' : | sort -t: -k2,2n -k1,1); do
        ms=${CEIL[${key/:/ }]}
        gb=$(echo "scale=3; $rows * $cols * 4 / $ms / 1000000" | bc)
        echo "| ${key%:*} | ${key#*:} | $ms | $gb |"
        [ "$(echo "$gb > $best" | bc)" = 1 ] && best=$gb
    done
    echo
    echo "Decode with all passes: ${GBS[all]} GB/s = $(echo "scale=0; 100 * ${GBS[all]} / $best" | bc)% of the ceiling ($best GB/s)."
    echo
    bgbs=$(echo "scale=3; $mb / $bound" | bc)
    echo "Products only (\`duckbench run --products-only\`: the all-passes program with every operator but the"
    echo "products, the embedding and the cache append copying its input, best of the rounds): decode $bound ms ="
    echo "$bgbs GB/s. Were attention, the norms, RoPE, SwiGLU and the residual adds free, all passes would decode"
    echo "at most $(ratio "${DEC[none]}" "$bound")x faster than none and at $(echo "scale=0; 100 * $bgbs / $best" | bc)% of the ceiling."
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    unset P25 P200 DEC GBS CEIL
done
