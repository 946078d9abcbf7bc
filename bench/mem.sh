#!/bin/bash
# bench/mem.sh - `make bench-mem`: models larger than their memory limit.
#
# For each model (random Q8_0 weights in the shapes of TinyLlama-1.1B and
# Qwen2.5-0.5B, from `sqlm synth`), under a cgroup v1 memory limit of 100%,
# 50%, 25% and 15% of the model's size (page cache included, as the kernel
# charges it):
#   - sqlm run --mem-budget LIMIT (the weight cache: a resident set that fits,
#     the rest streamed with O_DIRECT reads);
#   - llama.cpp on the same GGUF with mmap (its native build from
#     ../shared/peers/, through build/llamabench): the OS pages the model in
#     and out.
# The model files are dropped from the page cache before every run; the
# direct (uncached, sequential) read bandwidth of the database file is
# measured in the same run, which gives the storage bound of a decode step,
# (model bytes - budget) / bandwidth.  Prints one table, also written to
# bench/results/mem-DATE.md.  Every timed command runs under
# flock /tmp/sqlm-bench.lock (the machine is shared).
#
# A last row per model measures llm.sql's way: the process's RSS capped
# (--mem-budget, checked against peak RSS), the page cache free and warm
# (--mem-io buffered, no cgroup): MEM_RSS_CAP="MODEL:MB ..." (default
# qwen2.5-0.5b:210, llm.sql's 210 MB for that model).
#
# Environment: MEM_MODELS (default "tinyllama-1.1b qwen2.5-0.5b"), MEM_LIMITS
# (percentages, default "100 50 25 15"), MEM_TG (decode tokens, 32),
# MEM_THREADS (2).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SQLM=$ROOT/sqlm
OUT=$ROOT/bench/out/mem
RES=$ROOT/bench/results
LOCK=/tmp/sqlm-bench.lock
MODELS=${MEM_MODELS:-"tinyllama-1.1b qwen2.5-0.5b"}
LIMITS=${MEM_LIMITS:-"100 50 25 15"}
TG=${MEM_TG:-32}
THREADS=${MEM_THREADS:-2}
PROMPT="Once upon a time, in a small village by the sea, there lived an old"
LLAMA_BIN=$ROOT/build/llamabench
RSS_CAP=${MEM_RSS_CAP:-"qwen2.5-0.5b:210"}
CGROOT=/sys/fs/cgroup/memory
mkdir -p "$OUT" "$RES"
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT=$RES/mem-$STAMP.md
LOG=$OUT/mem-$STAMP.log
: > "$LOG"

say() { echo "$*" >&2; }
[ -x "$SQLM" ] || { say "bench-mem: $SQLM not built (make sqlm)"; exit 1; }
if [ "$(id -u)" != 0 ] || [ ! -w "$CGROOT" ]; then
    say "bench-mem: needs root and the cgroup v1 memory controller at $CGROOT (for the memory limits); not run"
    exit 1
fi
export SQLM_MODELS=${SQLM_MODELS:-$ROOT/../shared/models}

# llama.cpp: the native build's runner (make build/llamabench)
LLAMA=""
if [ -x "$LLAMA_BIN" ]; then
    LLAMA=1
else
    LLAMA_WHY="$LLAMA_BIN not built (make build/llamabench)"
fi
[ -n "$LLAMA" ] || say "bench-mem: llama.cpp not measured: $LLAMA_WHY; sqlm's figures alone"

READBW=$ROOT/build/readbw
[ -x "$READBW" ] || { say "bench-mem: $READBW not built (make build/readbw)"; exit 1; }
# drop one file from the page cache
uncache() { "$READBW" --drop "$1"; }

N_CG=0
# in_cgroup LIMIT_BYTES OUTFILE CMD...: run CMD (under the lock) in a fresh
# cgroup with that memory limit; sets CG_MAX (max usage, bytes), CG_OOM
# (kills), RC
in_cgroup() {
    local lim=$1 out=$2; shift 2
    N_CG=$((N_CG + 1))
    local cg=$CGROOT/sqlm-bench-$$-$N_CG
    mkdir "$cg" || { RC=99; return; }
    echo "$lim" > "$cg/memory.limit_in_bytes"
    timeout 900 flock "$LOCK" sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" "$@" >"$out" 2>&1
    RC=$?
    CG_MAX=$(cat "$cg/memory.max_usage_in_bytes")
    CG_OOM=$(awk '/oom_kill /{print $2}' "$cg/memory.oom_control")
    CG_OOM=${CG_OOM:-0}
    rmdir "$cg" 2>/dev/null
}

num() { awk -v p="$1" '$0 ~ p { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; exit } }' "$2"; }
fmt() { [ -n "$1" ] && printf "%.${2:-1}f" "$1" || printf -- "-"; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }' || printf -- "-"; }
# sqlm's figures from the output f of `run --stats`: prefill tok/s, decode
# ms/token and tok/s, peak RSS, MB read per token and hit rate (s_* variables).
sqlm_figures() {
    local f=$1
    s_pp=$(awk '/^prompt:/ { print $4 }' "$f")
    s_ms=$(awk '/^stats: decode:/ { print $5 }' "$f")
    s_tg=$(awk -v m="$s_ms" 'BEGIN { if (m > 0) printf "%.2f", 1000 / m }')
    s_rss=$(awk '/^stats: peak RSS/ { print $4 }' "$f")
    s_read=$(awk '/^stats: decode:/ { for (i = 1; i <= NF; i++) if ($i == "MB/token," && $(i-2) == "read") print $(i-1) }' "$f")
    s_hit=$(awk '/^stats: decode:/ { for (i = 1; i <= NF; i++) if ($i == "rate") { sub("%,?", "", $(i+1)); print $(i+1) } }' "$f")
}

{
echo "# make bench-mem, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "sqlm $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), $(nproc) cores, decode $TG tokens, -t $THREADS (a budget smaller than the file computes on one thread: src/db/sqlite/engine.c),"
echo "cgroup v1 memory limit = --mem-budget = the percentage of the GGUF's size; page cache dropped before each run."
echo "bound = storage bound of a decode token, (model bytes - budget) / direct read bandwidth of the database file"
echo "(build/readbw, page cache dropped.  MB/s = sequential O_DIRECT 8 MB reads into huge pages, one at a time, the read the bound is
defined with, just before the sqlm run / just after it; the bound uses their mean.  In brackets: before the run, the same file read
with two 2 MB reads in flight, as sqlm's weight cache reads: the disk may give more that way, so sqlm can run under the bound)."
echo "x bound = sqlm's decode ms/token / bound.  The model bytes are the database's, which sqlm reads; it is larger than the GGUF"
echo "(tile padding, b-tree pages, the vocabulary), so x GGUF = ms/token / ((GGUF bytes - budget) / the same bandwidth) is stricter."
echo "vs llama = sqlm decode tok/s / llama.cpp decode tok/s under the same limit."
[ -n "$LLAMA" ] || echo "llama.cpp not measured: $LLAMA_WHY."
echo
echo "load = the machine's 1-minute load average after the run (2 cores; above ~2.5 the compute-bound rows slow down)."
echo
echo "| model | limit | MB/s | engine | prefill tok/s | decode tok/s | ms/token | peak RSS MB | cgroup max MB | read MB/token | hit % | bound ms | x bound | x GGUF | vs llama | load |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$REPORT"

for like in $MODELS; do
    gguf=$OUT/$like-q8_0.gguf db=$OUT/$like-q8_0.db
    if [ ! -f "$gguf" ]; then
        "$SQLM" synth --like "$like" --type q8_0 -o "$gguf" 2>>"$LOG" || { say "bench-mem: synth $like failed"; continue; }
    fi
    if [ ! -f "$db" ] || [ "$db" -ot "$gguf" ]; then
        "$SQLM" import "$gguf" -o "$db" 2>>"$LOG" || { say "bench-mem: import $like failed"; continue; }
    fi
    gsize=$(stat -c %s "$gguf") dsize=$(stat -c %s "$db")
    pp=$("$SQLM" tokenize -m "$db" "$PROMPT" | head -1 | wc -w)
    # the file's direct read bandwidth, now (the disk is shared: it drifts)
    uncache "$db"
    read -r mbs qd2 < <(flock "$LOCK" "$READBW" "$db")
    say "bench-mem: $like: GGUF $((gsize >> 20)) MB, database $((dsize >> 20)) MB, prompt $pp tokens, direct read $mbs MB/s"
    for pct in $LIMITS; do
        lim=$((gsize / 100 * pct))
        limmb=$((lim >> 20))
        # the bandwidth just before and just after the run (the disk is
        # shared and drifts by up to 10% within a minute): the bound uses
        # their mean
        uncache "$db"
        read -r mbs qd2 < <(flock "$LOCK" "$READBW" "$db")
        # sqlm
        uncache "$db"
        f=$OUT/$like-$pct-sqlm.txt
        in_cgroup "$lim" "$f" "$SQLM" run -m "$db" -p "$PROMPT" -n "$TG" --temp 0 --ignore-eos -c 256 \
            -t "$THREADS" --mem-budget "$lim" --stats
        cat "$f" >> "$LOG"
        s_load=$(cut -d' ' -f1 /proc/loadavg)
        uncache "$db"
        read -r mbs2 qd2b < <(flock "$LOCK" "$READBW" "$db")
        bound=$(awk -v d="$dsize" -v l="$lim" -v a="$mbs" -v b="$mbs2" 'BEGIN { x = (d - l) / 1048576 / ((a + b) / 2) * 1000; printf "%.1f", (x > 0 ? x : 0) }')
        gbound=$(awk -v d="$gsize" -v l="$lim" -v a="$mbs" -v b="$mbs2" 'BEGIN { x = (d - l) / 1048576 / ((a + b) / 2) * 1000; printf "%.1f", (x > 0 ? x : 0) }')
        if [ "$RC" = 0 ]; then
            sqlm_figures "$f"
            xb=$(ratio "$s_ms" "$bound") xg=$(ratio "$s_ms" "$gbound")
            status=""
        else
            s_pp="" s_tg="" s_ms="" s_rss="" s_read="" s_hit="" xb="" xg=""
            status=" (exit $RC, oom kills $CG_OOM: $(grep -m1 "sqlm:" "$f" | cut -c1-80))"
        fi
        s_cg=$((CG_MAX >> 20))
        # llama.cpp
        l_tg="" l_pp="" l_rss="" l_cg="-" lstatus="" l_load=""
        if [ -n "$LLAMA" ]; then
            uncache "$gguf"
            g=$OUT/$like-$pct-llama.txt
            in_cgroup "$lim" "$g" "$LLAMA_BIN" "$gguf" "$pp" "$TG" "$THREADS" 1
            cat "$g" >> "$LOG"
            l_load=$(cut -d' ' -f1 /proc/loadavg)
            if [ "$RC" = 0 ]; then
                l_pp=$(awk '/^pp[0-9]+ /{ print $3 }' "$g")
                l_tg=$(awk '/^tg[0-9]+ /{ print $3 }' "$g")
                l_rss=$(awk '/^peak RSS:/ { print $3 }' "$g")
            else
                lstatus=" (exit $RC, oom kills $CG_OOM)"
            fi
            l_cg=$((CG_MAX >> 20))
        fi
        vs=$(ratio "$s_tg" "$l_tg")
        echo "| $like | $pct% ($limmb MB) | $mbs / $mbs2 ($qd2) | sqlm$status | $(fmt "$s_pp") | $(fmt "$s_tg" 2) | $(fmt "$s_ms" 0) | $(fmt "$s_rss") | $s_cg | $(fmt "$s_read") | $(fmt "$s_hit") | $bound | $xb | $xg | $vs | $s_load |" >> "$REPORT"
        if [ -n "$LLAMA" ]; then
            l_ms=$(awk -v t="$l_tg" 'BEGIN { if (t > 0) printf "%.0f", 1000 / t }')
            echo "| $like | $pct% ($limmb MB) | $mbs / $mbs2 ($qd2) | llama.cpp$lstatus | $(fmt "$l_pp") | $(fmt "$l_tg" 2) | ${l_ms:--} | $(fmt "$l_rss") | $l_cg | - | - | $bound | $(ratio "$l_ms" "$bound") | $(ratio "$l_ms" "$gbound") | | ${l_load:--} |" >> "$REPORT"
        fi
        say "bench-mem: $like at $pct%: sqlm $(fmt "$s_tg" 2) tok/s (bound $bound ms, $(fmt "$s_ms" 0) ms)$status; llama.cpp $(fmt "$l_tg" 2) tok/s$lstatus"
    done
    # llm.sql's way: RSS capped, page cache free (the file read once first)
    for rc_spec in $RSS_CAP; do
        [ "${rc_spec%%:*}" = "$like" ] || continue
        cap=${rc_spec#*:}
        cat "$db" > /dev/null
        f=$OUT/$like-rss$cap-sqlm.txt
        flock "$LOCK" "$SQLM" run -m "$db" -p "$PROMPT" -n "$TG" --temp 0 --ignore-eos -c 256 -t "$THREADS" \
            --mem-budget "${cap}M" --mem-io buffered --stats >"$f" 2>&1
        rc=$?
        cat "$f" >> "$LOG"
        sqlm_figures "$f"
        st=""; [ $rc = 0 ] || st=" (exit $rc)"
        echo "| $like | RSS $cap MB, page cache free (llm.sql's way) | - | sqlm$st | $(fmt "$s_pp") | $(fmt "$s_tg" 2) | $(fmt "$s_ms" 0) | $(fmt "$s_rss") | - | $(fmt "$s_read") | $(fmt "$s_hit") | - | - | - | | $(cut -d' ' -f1 /proc/loadavg) |" >> "$REPORT"
        say "bench-mem: $like with RSS capped at $cap MB, page cache free: sqlm $(fmt "$s_tg" 2) tok/s, peak RSS $(fmt "$s_rss") MB$st"
    done
done
echo >> "$REPORT"
echo "Raw output of every run: $LOG (not kept in git)." >> "$REPORT"
cat "$REPORT"
