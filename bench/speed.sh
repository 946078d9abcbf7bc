#!/bin/bash
# bench/speed.sh - the speed table of `make bench` (issue 5): sqlm against
# the C reference (the machine's limit) and llama.cpp, on random-weight
# models of real shapes.
#
# For each shape, storage type and thread count: synthesize the GGUF
# (sqlm synth) and import it (sqlm import), both cached under .bench-cache/,
# then time, one after the other, each run under the benchmark lock
# (bench/timed.sh):
#   sqlm bench -m DB -p 128 -n 64 -t T -r R     prompt in one batch, then decode
#   build/refbench GGUF 128 64 T R              C reference, stored weights,
#                                               sqlm's kernels (pp token by token)
#   build/llamabench GGUF 128 64 T R            llama.cpp, built natively from
#                                               ../shared/peers/ (scripts/build-llamacpp.sh)
# and print a markdown table (kept in bench/results/speed-DATE.md); each row
# is also appended to bench/results/speed.csv with the machine's description.
#
# Required part: stories110M and tinyllama-1.1b, Q8_0 and Q4_0, 1 and 2
# threads.  BENCH_FULL=1 adds smollm2-135m, qwen2.5-0.5b, llama-3.2-1b (Q8_0)
# and stories110M in F32 and F16.
# Settings: BENCH_PP (128), BENCH_TG (64), BENCH_REPS (3; 1 for models over
# 500 MB), BENCH_THREADS ("1 2"), BENCH_CONFIGS (e.g. "stories110M:q4_0
# qwen2.5-0.5b:f16", instead of the list above), BENCH_ENGINE (sqlite), BENCH_CACHE
# (.bench-cache), BENCH_LLAMA=0 to leave llama.cpp out; bench/timed.sh's
# BENCH_BG_MAX, BENCH_QUIET_WAIT, BENCH_RETRIES, BENCH_RETRY_WALL.
set -u
cd "$(dirname "$0")/.."
PP=${BENCH_PP:-128} TG=${BENCH_TG:-64}
THREADS=${BENCH_THREADS:-"1 2"}
ENGINE=${BENCH_ENGINE:-sqlite}
CACHE=${BENCH_CACHE:-.bench-cache}
SQLM=./sqlm
REF=./build/refbench
for f in "$SQLM" "$REF"; do
    [ -x "$f" ] || { echo "speed.sh: $f missing (make sqlm build/refbench)" >&2; exit 1; }
done
mkdir -p "$CACHE" bench/results
T=$(mktemp -d /tmp/sqlm-speed-XXXXXX)
trap 'rm -rf "$T"' EXIT

CONFIGS=${BENCH_CONFIGS:-"stories110M:q8_0 stories110M:q4_0 tinyllama-1.1b:q8_0 tinyllama-1.1b:q4_0"}
if [ "${BENCH_FULL:-0}" = 1 ] && [ -z "${BENCH_CONFIGS:-}" ]; then
    CONFIGS="$CONFIGS smollm2-135m:q8_0 qwen2.5-0.5b:q8_0 llama-3.2-1b:q8_0"
    CONFIGS="$CONFIGS stories110M:f32 stories110M:f16"
fi

# ---- the machine, for every CSV row
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
cores=$(nproc)
ram=$(free -g | awk '/Mem:/ {print $2}')
kernel=$(uname -r)
sqlite=$(sqlite3 --version 2>/dev/null | cut -d' ' -f1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
date=$(date -u +%Y-%m-%dT%H:%MZ)

# ---- llama.cpp: the native build (make build/llamabench); without it, sqlm alone
llama_ok=0 llama_ver="c392e509 native build ($(grep -o -w 'avx512_vnni\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' | xargs))"
if [ "${BENCH_LLAMA:-1}" != 0 ]; then
    if [ -x build/llamabench ]; then
        llama_ok=1
    else
        llama_why="not built (make build/llamabench: scripts/build-llamacpp.sh)"
    fi
else
    llama_why="left out (BENCH_LLAMA=0)"
fi

# Cache keys: the GGUF changes with the generator, the database with sqlm.
synth_key=$(sha1sum src/model/synth.c | cut -c1-8)
sqlm_key=$(sha1sum "$SQLM" | cut -c1-8)

# prepare NAME TYPE: sets GGUF and DB, made once per key
prepare() {
    local name=$1 type=$2
    GGUF=$CACHE/$name-$type-$synth_key.gguf
    DB=$CACHE/$name-$type-$synth_key-$ENGINE-$sqlm_key.db
    if [ ! -f "$GGUF" ]; then
        rm -f "$CACHE/$name-$type-"*.gguf
        $SQLM synth --like "$name" --type "$type" -o "$GGUF.tmp" 2>"$T/err" && mv "$GGUF.tmp" "$GGUF" \
            || { echo "speed.sh: synth $name $type: $(cat "$T/err")" >&2; return 1; }
    fi
    if [ ! -f "$DB" ]; then
        rm -f "$CACHE/$name-$type-"*"-$ENGINE-"*.db
        $SQLM import "$GGUF" -o "$DB" --engine "$ENGINE" 2>"$T/err" \
            || { echo "speed.sh: import $name $type: $(cat "$T/err")" >&2; return 1; }
    fi
}

# field FILE KEY COLUMN: column COLUMN of the line whose first word is KEY
field() { awk -v k="$2" -v c="$3" '$1 == k { print $c; exit }' "$1" 2>/dev/null; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
maxf() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a + 0 > b + 0 ? a : b) + 0 }'; }

# run TAG CMD...: one timed run; sets <TAG>_pp, _tg, _gbs, _rss, _mb, _bg
run() {
    local tag=$1 pp tg gbs rss mb bg res lw
    shift
    res=$(bench/timed.sh "$T/$tag.out" "$T/$tag.err" "$@")
    if [ "${res##*rc=}" != 0 ]; then
        echo "speed.sh: $tag failed: $(tail -3 "$T/$tag.err")" >&2
        pp=fail tg=fail gbs=- rss=- mb=-
    else
        pp=$(field "$T/$tag.out" "pp$PP" 3); tg=$(field "$T/$tag.out" "tg$TG" 3)
        gbs=$(field "$T/$tag.out" "tg$TG" 5); rss=$(field "$T/$tag.out" peak 3)
        mb=$(field "$T/$tag.out" weights: 2)
    fi
    bg=${res#bg=}
    bg=${bg%% *}
    lw=${res#*lockwait=}
    echo "${lw%% *}" >>"$T/lockwait"
    printf -v "${tag}_pp" %s "${pp:--}"; printf -v "${tag}_tg" %s "${tg:--}"
    printf -v "${tag}_gbs" %s "${gbs:--}"; printf -v "${tag}_rss" %s "${rss:--}"
    printf -v "${tag}_mb" %s "${mb:--}"; printf -v "${tag}_bg" %s "${bg:-0}"
}

csv=bench/results/speed.csv
[ -s "$csv" ] || echo "date,commit,cpu,cores,ram_gb,kernel,sqlite,engine,shape,type,threads,pp,tg,reps,sqlm_pp,sqlm_tg,sqlm_rss_mb,sqlm_gbs,weights_mb,ref_pp,ref_tg,ref_gbs,ref_rss_mb,llama_pp,llama_tg,llama_rss_mb,llama_version,tg_sqlm_ref,tg_sqlm_llama,pp_sqlm_llama,bg_cores" >"$csv"
out=bench/results/speed-$(date +%Y%m%d-%H%M%S).md
t_start=$SECONDS
{
echo "## Speed: sqlm ($ENGINE) against the C reference and llama.cpp"
echo
echo "$date, commit $commit; $cpu, $cores cores, $ram GiB RAM, Linux $kernel, SQLite $sqlite;" \
     "llama.cpp: $([ "$llama_ok" = 1 ] && echo "$llama_ver" || echo "$llama_why")"
echo "Random-weight models of the named shapes (sqlm synth). pp$PP: a prompt of $PP tokens; tg$TG: $TG tokens"
echo "decoded one at a time; tok/s, medians of the repetitions (reps). C-ref: bench/refbench (weights as"
echo "stored, sqlm's kernels, rows split over the threads); its pp is token by token (no batched product)."
echo "GB/s: weight bytes streamed per decoded token x tg tok/s. bg: cores other processes used during"
echo "the noisiest of the three runs (the machine is shared)."
echo
echo "| shape | type | threads | reps | sqlm pp$PP | sqlm tg$TG | sqlm peak RSS MB | sqlm GB/s | C-ref pp$PP | C-ref tg$TG | C-ref GB/s | llama.cpp pp$PP | llama.cpp tg$TG | tg sqlm/C-ref | tg sqlm/llama.cpp | pp sqlm/llama.cpp | bg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for cfg in $CONFIGS; do
    name=${cfg%%:*} type=${cfg#*:}
    prepare "$name" "$type" || continue
    size_mb=$(( $(stat -c %s "$GGUF") / 1000000 ))
    reps=${BENCH_REPS:-$([ "$size_mb" -gt 500 ] && echo 1 || echo 3)}
    for t in $THREADS; do
        run sqlm $SQLM bench -m "$DB" -p "$PP" -n "$TG" -t "$t" -r "$reps"
        run ref $REF "$GGUF" "$PP" "$TG" "$t" "$reps"
        if [ "$llama_ok" = 1 ]; then
            run llama build/llamabench "$GGUF" "$PP" "$TG" "$t" "$reps"
            if [ "$llama_tg" = fail ] && grep -q "^llama.cpp: " "$T/llama.err"; then
                echo "speed.sh: $(grep -m1 '^llama.cpp: ' "$T/llama.err"): sqlm's figures alone" >&2
            fi
        else
            llama_pp=- llama_tg=- llama_rss=- llama_bg=0
        fi
        bg=$(maxf "$(maxf "$sqlm_bg" "$ref_bg")" "$llama_bg")
        r_ref=$(ratio "$sqlm_tg" "$ref_tg") r_ll=$(ratio "$sqlm_tg" "$llama_tg") r_llpp=$(ratio "$sqlm_pp" "$llama_pp")
        echo "| $name | ${type^^} | $t | $reps | $sqlm_pp | $sqlm_tg | $sqlm_rss | $sqlm_gbs | $ref_pp | $ref_tg | $ref_gbs | $llama_pp | $llama_tg | $r_ref | $r_ll | $r_llpp | $bg |"
        echo "$date,$commit,${cpu//,/;},$cores,$ram,$kernel,$sqlite,$ENGINE,$name,${type^^},$t,$PP,$TG,$reps,$sqlm_pp,$sqlm_tg,$sqlm_rss,$sqlm_gbs,$sqlm_mb,$ref_pp,$ref_tg,$ref_gbs,$ref_rss,$llama_pp,$llama_tg,$llama_rss,${llama_ver:--},$r_ref,$r_ll,$r_llpp,$bg" >>"$csv"
    done
done
[ "$llama_ok" = 1 ] || echo "llama.cpp $llama_why: its columns are empty, sqlm's figures stand alone."
echo
echo "($(( SECONDS - t_start )) s, of which $(awk '{ s += $1 } END { printf "%.0f", s }' "$T/lockwait" 2>/dev/null || echo 0) s waiting for the bench lock; rows appended to $csv)"
} | tee "$out"
echo "(saved to $out)"
