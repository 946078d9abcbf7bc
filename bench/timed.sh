#!/bin/bash
# bench/timed.sh OUT ERR CMD [ARGS...] - one timed run of the benchmark.
#
# Takes the machine's benchmark lock (/tmp/sqlm-bench.lock, or
# $BENCH_LOCK), so that benchmarks started in parallel never overlap; then
# waits (up to $BENCH_QUIET_WAIT seconds, default 10) for the other
# processes on the machine to use less than $BENCH_BG_MAX cores (default
# 0.3), runs CMD with its stdout in OUT and stderr in ERR, and prints
#
#   bg=0.05 cpu=12.31 wall=6.40 lockwait=3.2 rc=0
#
# bg: cores used by processes other than CMD during the run (busy time
# from /proc/stat minus CMD's user + system time, over the wall time);
# lockwait: seconds spent waiting for the lock (other benchmarks running);
# a run with bg above BENCH_BG_MAX that took under $BENCH_RETRY_WALL
# seconds (default 60) is repeated up to $BENCH_RETRIES times (default 1)
# and the quietest kept.  The lock is held throughout.
#
# Meant to wrap any runner (sqlm bench, bench/refbench, build/llamabench),
# including one started under a cgroup by a memory-budget benchmark.
set -u
if [ -z "${BENCH_LOCKED:-}" ]; then
    BENCH_LOCKED=$(date +%s.%N) exec flock "${BENCH_LOCK:-/tmp/sqlm-bench.lock}" "$0" "$@"
fi
lockwait=$(awk -v a="$BENCH_LOCKED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
out=$1 err=$2
shift 2
BG_MAX=${BENCH_BG_MAX:-0.3}
QUIET_WAIT=${BENCH_QUIET_WAIT:-10}
RETRIES=${BENCH_RETRIES:-1}
RETRY_WALL=${BENCH_RETRY_WALL:-60}
HZ=$(getconf CLK_TCK)
tmp=$(mktemp -d /tmp/sqlm-timed-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# wait for quiet: 0.5 s samples of the whole machine's busy time
deadline=$((SECONDS + QUIET_WAIT))
while [ "$SECONDS" -lt "$deadline" ]; do
    b0=$(busy)
    sleep 0.5
    b1=$(busy)
    awk -v d=$((b1 - b0)) -v hz="$HZ" -v max="$BG_MAX" 'BEGIN { exit !(d / hz / 0.5 < max) }' && break
done

best=
for try in $(seq 0 "$RETRIES"); do
    b0=$(busy)
    TIMEFORMAT='%3U %3S %3R'
    { time "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; } 2>"$tmp/time"
    b1=$(busy)
    read -r u s r < "$tmp/time"
    line=$(awk -v d=$((b1 - b0)) -v hz="$HZ" -v u="$u" -v s="$s" -v r="$r" -v rc="$rc" -v lw="$lockwait" 'BEGIN {
        bg = r > 0 ? (d / hz - u - s) / r : 0; if (bg < 0) bg = 0
        printf "bg=%.2f cpu=%.2f wall=%.2f lockwait=%s rc=%d", bg, u + s, r, lw, rc }')
    bg=${line#bg=}
    bg=${bg%% *}
    if [ -z "$best" ] || awk -v a="$bg" -v b="$best" 'BEGIN { exit !(a < b) }'; then
        best=$bg
        cp "$tmp/out" "$out"
        cp "$tmp/err" "$err"
        result=$line
    fi
    # a failed run is not retried: it would fail again
    [ "$rc" = 0 ] || break
    awk -v a="$bg" -v max="$BG_MAX" -v r="$r" -v rw="$RETRY_WALL" 'BEGIN { exit !(a > max && r < rw) }' || break
done
echo "$result"
