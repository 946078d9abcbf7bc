#!/bin/bash
# tests/crash.sh SQLM - crash safety: `sqlm import` killed with SIGKILL at
# random moments, on SQLite and DuckDB, and a server killed in the middle of
# a generation.  After every kill the model database is absent or whole:
# it opens, passes the engine's integrity check and generates the text an
# untouched import generates; the staging files a killed import leaves
# (NAME.tmp-PID) are gone after the next import of NAME.
NAME=crash
SQLM=${1:-./sqlm}
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
M=${SQLM_MODELS:-../shared/models}
KILLS=${CRASH_KILLS:-10}

"$SQLM" synth --like tiny -o "$T/m.gguf" 2>"$T/err" || { bad "synth: $(cat "$T/err")"; summary; exit 1; }

# check_db ENGINE DB WANT: DB is whole (integrity check) and generates WANT
check_db() {
    local engine=$1 db=$2 want=$3 got
    if [ "$engine" = sqlite ]; then
        got=$(sqlite3 "$db" "PRAGMA integrity_check" 2>&1)
        [ "$got" = ok ] && ok || bad "$engine: $db: integrity_check: $got"
    fi
    got=$("$SQLM" run -m "$db" -p "Once" -n 8 --temp 0 2>"$T/err")
    [ "$got" = "$want" ] && ok || bad "$engine: $db after a kill: '$got' (want '$want'): $(cat "$T/err")"
}

for engine in sqlite duckdb; do
    ext=db; [ "$engine" = duckdb ] && ext=duck
    ref=$T/ref.$ext
    if ! "$SQLM" import "$T/m.gguf" -o "$ref" --engine "$engine" 2>"$T/err"; then
        if [ "$engine" = duckdb ] && grep -q "libduckdb" "$T/err"; then
            skipped "duckdb" "$(cat "$T/err")"
            continue
        fi
        bad "$engine: import: $(cat "$T/err")"
        continue
    fi
    want=$("$SQLM" run -m "$ref" -p "Once" -n 8 --temp 0 2>/dev/null)
    [ -n "$want" ] && ok || bad "$engine: the reference import generates nothing"
    # how long a whole import takes, to spread the kills over it
    t0=$(date +%s%N)
    "$SQLM" import "$T/m.gguf" -o "$T/timed.$ext" --engine "$engine" 2>/dev/null
    span=$(( ($(date +%s%N) - t0) / 1000000 ))
    out=$T/k.$ext
    killed=0 staged=0
    for i in $(seq "$KILLS"); do
        rm -f "$out"
        "$SQLM" import "$T/m.gguf" -o "$out" --engine "$engine" >/dev/null 2>&1 &
        pid=$!
        sleep "$(awk -v s="$span" -v i="$i" -v n="$KILLS" 'BEGIN { printf "%.3f", s * i / (n + 1) / 1000 }')"
        kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
        wait "$pid" 2>/dev/null
        ls "$out".tmp-* >/dev/null 2>&1 && staged=$((staged + 1))
        if [ -e "$out" ]; then check_db "$engine" "$out" "$want"; else ok; fi
    done
    # some kills must have hit an import in the middle (its staging file left)
    [ "$staged" -gt 0 ] && ok || bad "$engine: no kill of $killed hit an import in the middle (span $span ms)"
    # the next import completes and removes the staging files of dead imports
    "$SQLM" import "$T/m.gguf" -o "$out" --engine "$engine" 2>"$T/err" && ok || bad "$engine: import after kills: $(cat "$T/err")"
    check_db "$engine" "$out" "$want"
    left=$(ls "$out".tmp-* 2>/dev/null)
    [ -z "$left" ] && ok || bad "$engine: staging files left after a complete import: $left"
done

# A server killed while it generates: its model database is untouched.
"$SQLM" import "$M/stories260K/stories260K.bin" -o "$T/s.db" 2>/dev/null || bad "import stories260K"
sum=$(sha256sum <"$T/s.db")
want=$("$SQLM" run -m "$T/s.db" -p "Once" -n 8 --temp 0 2>/dev/null)
for i in 1 2 3; do
    start_server serve "$SQLM" serve -m "$T/s.db" --port 0 -t 1 || { [ -n "$PID" ] && kill -9 "$PID"; continue; }
    curl -s -N "$URL/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "Once upon a time", "max_tokens": 400, "stream": true}' >"$T/stream" 2>/dev/null &
    cpid=$!
    for _ in $(seq 100); do [ -s "$T/stream" ] && break; sleep 0.05; done
    sleep "0.$i"
    kill -9 "$PID"
    wait "$PID" 2>/dev/null
    wait "$cpid" 2>/dev/null
    [ -s "$T/stream" ] && ok || bad "serve: no token streamed before the kill"
    [ "$(sha256sum <"$T/s.db")" = "$sum" ] && ok || bad "serve: the model database changed after a kill"
done
check_db sqlite "$T/s.db" "$want"

summary
