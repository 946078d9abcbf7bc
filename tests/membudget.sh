#!/bin/bash
# tests/membudget.sh SQLM - the memory budget (--mem-budget) end to end:
#   - a run under a cgroup v1 memory limit equal to the budget (page cache
#     included) is not killed, prints the same greedy tokens as a run
#     without a budget, and its peak RSS stays within the budget;
#   - the model database is not modified;
#   - a budget too small, a bad size, running out of the engine's heap share
#     mid-run and an I/O error (a truncated file) end with clear messages.
# The cgroup part is skipped, with the reason, when not root or when the
# cgroup v1 memory controller is not mounted.
set -u
SQLM=$(realpath "$1")
NAME=membudget
. "$(dirname "$0")/lib.sh"

# a 120 MB model (stories110M shapes, Q8_0): a 64 MB budget streams half of it
"$SQLM" synth --like stories110M -o "$T/m.gguf" 2>/dev/null || bad "synth"
"$SQLM" import "$T/m.gguf" -o "$T/m.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
ARGS=(-p "Once upon a time" -n 12 --temp 0 --ignore-eos -c 128)
"$SQLM" run -m "$T/m.db" "${ARGS[@]}" >"$T/want" 2>"$T/err" || bad "unbudgeted run: $(cat "$T/err")"
[ -s "$T/want" ] || bad "the unbudgeted run printed nothing: the runs below would compare with nothing"
sum=$(sha256sum < "$T/m.db")

BUDGET_MB=64
B=$((BUDGET_MB * 1048576))
# peak RSS line of --stats, in bytes
peak() { awk '/^stats: peak RSS/ { printf "%d", $4 * 1048576 }' "$1"; }

# a scan for tile ids reads the small (row, col) index, not the tiles' pages
sqlite3 "$T/m.db" "EXPLAIN QUERY PLAN SELECT id FROM blk0_qkv" | grep -q "COVERING INDEX blk0_qkv_tiles" && ok \
    || bad "a scan of tile ids does not use the covering index"

# the budget without a cgroup: same tokens, RSS within it, both read modes
for io in direct buffered; do
    uncache "$T/m.db"
    if "$SQLM" run -m "$T/m.db" "${ARGS[@]}" --mem-budget ${BUDGET_MB}M --mem-io $io --stats >"$T/got" 2>"$T/err"; then
        cmp -s "$T/want" "$T/got" && ok || bad "--mem-io $io: tokens differ from the unbudgeted run: $(cat "$T/got")"
        p=$(peak "$T/err")
        [ -n "$p" ] && [ "$p" -le "$B" ] && ok || bad "--mem-io $io: peak RSS $p above the budget $B"
        grep -q "^stats: decode: .* read .* MB/token, hit rate" "$T/err" && ok || bad "--mem-io $io: no decode stats line"
        grep -q "^stats: token 3: .*waiting for I/O" "$T/err" && ok || bad "--mem-io $io: no per-token stats"
    else
        bad "--mem-io $io run failed: $(cat "$T/err")"
    fi
done
[ "$(sha256sum < "$T/m.db")" = "$sum" ] && ok || bad "a budgeted run modified the model database"

# chat (the interactive server of the command line) under the same budget
printf 'Hello there\nTell me a story\n' | "$SQLM" chat -m "$T/m.db" -n 6 --temp 0 -c 128 >"$T/chat.want" 2>"$T/err" \
    || bad "unbudgeted chat: $(cat "$T/err")"
printf 'Hello there\nTell me a story\n' | "$SQLM" chat -m "$T/m.db" -n 6 --temp 0 -c 128 --mem-budget ${BUDGET_MB}M \
    >"$T/chat.got" 2>"$T/err" && ok || bad "budgeted chat: $(cat "$T/err")"
cmp -s "$T/chat.want" "$T/chat.got" && [ -s "$T/chat.got" ] && ok || bad "budgeted chat: replies differ from the unbudgeted chat"

# under a cgroup whose limit (page cache included) is the budget
if cgroup_make "cgroup test" $B; then
    uncache "$T/m.db"
    "${IN_CGROUP[@]}" "$SQLM" run -m "$T/m.db" "${ARGS[@]}" --mem-budget ${BUDGET_MB}M --stats >"$T/got" 2>"$T/err"
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "run under a ${BUDGET_MB}M cgroup exited $rc (killed?): $(tail -3 "$T/err"); oom: $(tr '\n' ' ' < "$CG/memory.oom_control")"
    else
        ok
        cmp -s "$T/want" "$T/got" && ok || bad "cgroup run: tokens differ from the unbudgeted run"
        p=$(peak "$T/err")
        [ -n "$p" ] && [ "$p" -le "$B" ] && ok || bad "cgroup run: peak RSS $p above the budget $B"
        grep -q "O_DIRECT reads" "$T/err" && ok || bad "cgroup run: auto mode did not pick O_DIRECT reads"
    fi
    echo "membudget: under a ${BUDGET_MB} MB cgroup: $(grep -h '^stats: peak RSS\|^stats: decode' "$T/err" | tr '\n' ' ') cgroup max usage $(( $(cat "$CG/memory.max_usage_in_bytes") / 1048576 )) MB" >&2
fi

# clear messages
expect_error "budget too small" "too small" "$SQLM" run -m "$T/m.db" -p hi -n 2 --mem-budget 20M
expect_error "bad size" "expected a size" "$SQLM" run -m "$T/m.db" -p hi --mem-budget 12X
expect_error "bad --mem-io" "expected auto, direct or buffered" "$SQLM" run -m "$T/m.db" --mem-io sideways
expect_error "context too long for the budget" "too small" "$SQLM" run -m "$T/m.db" -p hi -n 2 --mem-budget 40M -c 1024
# the engine's heap runs out mid-run (a test hook shrinks its share)
SQLM_TEST_HEAP_BYTES=300000 expect_error "heap share exhausted" "out of memory: the engine's heap" \
    "$SQLM" run -m "$T/m.db" -p hi -n 40 --temp 0 --ignore-eos --mem-budget ${BUDGET_MB}M -c 128
# an I/O error mid-run: the file is cut short while a budgeted run streams it
cp "$T/m.db" "$T/cut.db"
( "$SQLM" run -m "$T/cut.db" -p hi -n 120 --temp 0 --ignore-eos -c 128 --mem-budget ${BUDGET_MB}M \
      --mem-io direct >"$T/cut.out" 2>"$T/cut.err"; echo $? >"$T/cut.rc" ) &
for i in $(seq 200); do [ -s "$T/cut.out" ] && break; sleep 0.1; done
truncate -s 60000000 "$T/cut.db"
wait
[ "$(cat "$T/cut.rc")" != 0 ] && ok || bad "run on a file truncated mid-run succeeded"
grep -q "cut.db: I/O error: reading .* (the file is shorter" "$T/cut.err" && ok \
    || bad "truncated mid-run: no clear I/O error: $(cat "$T/cut.err")"
grep -q -i "sanitizer\|segmentation\|core dumped" "$T/cut.err" && bad "truncated mid-run: crashed" || ok
# import under a budget: same database contents
"$SQLM" import "$T/m.gguf" -o "$T/m2.db" --mem-budget 48M --stats 2>"$T/err" && ok || bad "budgeted import: $(cat "$T/err")"
p=$(awk '/^stats: peak RSS/ { printf "%d", $4 * 1048576 }' "$T/err")
[ -n "$p" ] && [ "$p" -le $((48 * 1048576)) ] && ok || bad "budgeted import: peak RSS $p above 48 MB"
n2=$(sqlite3 "$T/m2.db" "SELECT sum(length(v)) FROM blk0_qkv") n1=$(sqlite3 "$T/m.db" "SELECT sum(length(v)) FROM blk0_qkv")
[ -n "$n1" ] && [ "$n1" = "$n2" ] && ok || bad "budgeted import wrote different tiles: '$n2' bytes, want '$n1'"

summary
