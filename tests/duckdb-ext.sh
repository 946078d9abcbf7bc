#!/bin/bash
# tests/duckdb-ext.sh [EXTENSION [--asan]] - the loadable DuckDB extension
# (sqlm.duckdb_extension at the repository root unless given) in DuckDB's
# Node client (@duckdb/node-api, installed into .deps/duckdb-node by
# scripts/install-duckdb.sh) with unsigned extensions allowed.  This script
# works out the reference answers with the command line (`sqlm run --temp
# 0`, `sqlm tokenize`, `sqlm chat`) and the golden ids; tests/duckdb-ext.mjs
# loads the extension and checks the functions against them: a user table
# row by row, a DuckDB-format model, sqlm_tokens' ids and LIMIT, tokenize
# and detokenize, sqlm_chat, options, two connections at once, one query on
# two threads, bad input as SQL errors with the process alive, and the
# models closed with the database.  --asan: EXTENSION is built with
# ASan/UBSan; node runs with the ASan runtime preloaded (leak detection off:
# V8 keeps memory to the end; the check that the models are closed stands
# in for it).
# Skipped, as the other DuckDB tests, only when Node or the DuckDB library
# is missing; an extension that does not load fails.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXT=$(realpath "${1:-$ROOT/sqlm.duckdb_extension}")
ASAN=${2:-}
SQLM=$(realpath ./sqlm)   # the reference answers, from the repository root
M=../shared/models
G=../shared/golden
NAME=duckdb-ext
. "$(dirname "$0")/lib.sh"
N=16
CLIENT=$ROOT/.deps/duckdb-node/node_modules
NODE_ENV=()
if [ "$ASAN" = --asan ]; then
    NODE_ENV=(env "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
fi

if ! command -v node >/dev/null; then
    skipped "$NAME" "node not found (scripts/install-duckdb.sh installs npm and the client)"
    summary; exit
fi
if [ ! -d "$CLIENT/@duckdb/node-api" ]; then
    if command -v npm >/dev/null && [ -f "$ROOT/.deps/duckdb/node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so" ]; then
        bad "no DuckDB client in $CLIENT: run scripts/install-duckdb.sh"
    else
        skipped "$NAME" "DuckDB library and client not installed (scripts/install-duckdb.sh)"
    fi
    summary; exit
fi
[ -f "$EXT" ] || { bad "no extension at $EXT (make)"; summary; exit; }

"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.duck" --engine duckdb 2>"$T/err" ||
    bad "import --engine duckdb: $(cat "$T/err")"

# the reference answers, as JSON for the Node half
python3 - "$SQLM" "$T" "$N" >"$T/want.json" 2>"$T/err" <<'EOF' || bad "reference answers: $(cat "$T/err")"
import json, subprocess, sys
sqlm, t, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = t + '/s.db'
prompts = ["", "Once upon a time", "Lily and Tom went to the park", "The little dog", "One day, a girl named Sue",
           "Tim had a big red ball"]
def out(*args, stdin=None):
    return subprocess.run([sqlm, *args], input=stdin, capture_output=True, check=True).stdout.decode()
text = []
for p in prompts:
    o = out('run', '-m', db, '-p', p, '-n', str(n), '--temp', '0')   # the prompt, the text, a newline
    assert o.startswith(p) and o.endswith('\n'), f"run -p {p!r}: {o!r}"
    text.append(o[len(p):-1])
tokenize = {p: [int(x) for x in out('tokenize', '-m', db, p).splitlines()[0].split()]
            for p in ["Once upon a time", "Lily and Tom went to the park"]}
chat = out('chat', '-m', db, '-n', str(n), '--temp', '0', stdin=b"Hello there\n")
assert chat.endswith('\n')
json.dump({"prompts": prompts, "text": text, "tokenize": tokenize, "chat": chat[:-1]}, sys.stdout)
EOF

cp "$T/s.db" "$T/two.db"   # files of their own: the handles the concurrent checks open are counted
cp "$T/s.db" "$T/par.db"
if [ "$fail" = 0 ]; then
    SQLM_EXT="$EXT" SQLM_T="$T" SQLM_N=$N SQLM_GOLDEN="$G/generation_stories260K.jsonl" NODE_MODULES="$CLIENT" \
        "${NODE_ENV[@]}" node "$(dirname "$0")/duckdb-ext.mjs" >"$T/node.out" 2>&1
    rc=$?
    cat "$T/node.out" >&2
    counts=$(sed -n 's/^duckdb-ext.mjs: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$T/node.out")
    if [ -z "$counts" ]; then
        bad "duckdb-ext.mjs ended without its summary (status $rc)"
    else
        read -r p f <<<"$counts"
        pass=$((pass + p)) fail=$((fail + f))
        [ "$rc" = 0 ] || [ "$f" != 0 ] || bad "duckdb-ext.mjs: status $rc"
        grep -q "Sanitizer" "$T/node.out" && bad "a sanitizer report"
    fi
fi
summary
