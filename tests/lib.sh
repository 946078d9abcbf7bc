# shellcheck shell=bash
# tests/lib.sh - what the shell tests share, sourced once NAME is set:
# T, a temporary folder (removed on exit, with the cgroup below); ok, bad
# and their counts; expect_error; start_server; a cgroup v1 memory group to run a
# command under a limit; uncache; and the summary line.
T=$(mktemp -d "/tmp/sqlm-$NAME-XXXXXX")
CG=/sys/fs/cgroup/memory/sqlm-$NAME-$$
fail=0 pass=0 skip=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "$NAME: FAIL: $*" >&2; }
# skipped WHAT REASON: a part not run, and why
skipped() { skip=$((skip + 1)); echo "$NAME: $1 skipped: $2" >&2; }

# expect_error DESC PATTERN CMD...: CMD must exit non-zero with PATTERN on
# stderr, and not crash
expect_error() {
    local desc=$1 pat=$2; shift 2
    if "$@" >"$T/out" 2>"$T/err"; then bad "$desc: succeeded"; return; fi
    if grep -q -- "$pat" "$T/err"; then ok; else bad "$desc: stderr lacks '$pat': $(cat "$T/err")"; fi
    if grep -q -i "sanitizer\|segmentation\|core dumped\|malloc" "$T/err"; then bad "$desc: crashed: $(cat "$T/err")"; fi
}

# drop one file's pages from the page cache
uncache() { dd of="$1" oflag=nocache conv=notrunc,fdatasync count=0 status=none 2>/dev/null; }

# cgroup_make WHAT BYTES: make $CG, a memory cgroup limited to BYTES (page
# cache included); false, with WHAT counted as skipped and why, when it
# cannot be made (not root, no writable cgroup v1 memory controller)
cgroup_make() {
    if [ "$(id -u)" != 0 ]; then
        skipped "$1" "not root"
        return 1
    fi
    if [ ! -w /sys/fs/cgroup/memory ] || ! mkdir "$CG" 2>/dev/null; then
        skipped "$1" "no writable cgroup v1 memory controller at /sys/fs/cgroup/memory"
        return 1
    fi
    echo "$2" > "$CG/memory.limit_in_bytes"
}
# "${IN_CGROUP[@]}" CMD...: CMD, run inside $CG (the command's own process:
# its PID is $! when it runs in the background)
IN_CGROUP=(sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG")

# start_server NAME CMD...: start an sqlm server, its stderr in $T/NAME.err; wait
# for its address and /health; sets PID and URL
start_server() {
    local name=$1; shift
    URL=
    rm -f "$T/$name.err"
    "$@" 2>"$T/$name.err" &
    PID=$!
    for _ in $(seq 600); do
        URL=$(grep -o 'listening on http://[^ ]*' "$T/$name.err" 2>/dev/null | sed 's/^listening on //')
        [ -n "$URL" ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$URL" ]; then bad "$name: the server did not start: $(cat "$T/$name.err")"; return 1; fi
    for _ in $(seq 100); do curl -sf "$URL/health" >/dev/null && return 0; sleep 0.1; done
    bad "$name: /health never answered"
    return 1
}

# on exit: the cgroup's processes moved out and the cgroup removed, T removed
lib_cleanup() {
    [ -d "$CG" ] && { cat "$CG/cgroup.procs" 2>/dev/null | while read -r p; do echo "$p" > /sys/fs/cgroup/memory/cgroup.procs; done; rmdir "$CG" 2>/dev/null; }
    rm -rf "$T"
}
trap lib_cleanup EXIT

# summary: the counts; true when nothing failed
summary() {
    echo "tests/$NAME.sh: $pass passed, $fail failed, $skip skipped" >&2
    [ "$fail" = 0 ]
}
