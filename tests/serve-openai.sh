#!/bin/bash
# tests/serve-openai.sh SQLM - sqlm serve driven by the official `openai` npm
# client (tests/serve-openai.mjs, the client from scripts/install-openai.sh
# in .deps/openai): completions, chat, streams, logprobs, models.retrieve and
# errors, with texts equal to `sqlm run --temp 0` and `sqlm chat`; then the
# server stops on SIGTERM with status 0 and no sanitizer report (SQLM may be
# the ASan/UBSan build).  Skipped, with the reason, without node or the
# client.
set -u
SQLM=$(realpath "$1")
M=../shared/models
NAME=serve-openai
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    lib_cleanup
}
trap cleanup EXIT
if ! command -v node >/dev/null 2>&1; then
    skipped "openai client test" "node not found (scripts/install-openai.sh installs it)"
    summary; exit 0
fi
if [ ! -f "$ROOT/.deps/openai/node_modules/openai/package.json" ]; then
    skipped "openai client test" "the openai package is not in .deps/openai (scripts/install-openai.sh)"
    summary; exit 0
fi

"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
KEY=sk-openai-test
# what the client must get: run's and chat's text, the prompt's ids
"$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 48 --temp 0 >"$T/run.out" 2>/dev/null || bad "run"
printf 'Hello there\n' | "$SQLM" chat -m "$T/s.db" -n 8 --temp 0 --system "Be kind" >"$T/chat.out" 2>/dev/null || bad "chat"
"$SQLM" tokenize -m "$T/s.db" "Once upon a time" | head -1 >"$T/ids"
"$SQLM" tokenize -m "$T/s.db" "Once upon a time," | head -1 >"$T/ids2"
python3 - "$T" <<'PY' || bad "expectations"
import json, sys
t = sys.argv[1]
run = open(t + "/run.out", encoding="utf-8").read()
assert run.startswith("Once upon a time") and run.endswith("\n")
ids = [int(x) for x in open(t + "/ids").read().split()]
ids2 = [int(x) for x in open(t + "/ids2").read().split()]
json.dump({"model": "s.db", "text": run[len("Once upon a time"):-1], "chat": open(t + "/chat.out", encoding="utf-8").read()[:-1],
           "prompt_ids": ids, "first_id": ids2[-1]}, open(t + "/want.json", "w"))
PY

start_server serve "$SQLM" serve -m "$T/s.db" --port 0 --api-key "$KEY" -t 1 || { summary; exit 1; }

node "$ROOT/tests/serve-openai.mjs" "$URL" "$KEY" "$T/want.json" >"$T/node.out" 2>&1 && ok || bad "the openai client: $(cat "$T/node.out")"
grep -o '[0-9]* passed, [0-9]* failed' "$T/node.out" >&2
kill -0 "$PID" 2>/dev/null && ok || bad "the server died: $(tail -5 "$T/serve.err")"
kill -TERM "$PID"; wait "$PID"; rc=$?; PID=
[ $rc = 0 ] && ok || bad "exit status $rc after SIGTERM: $(tail -3 "$T/serve.err")"
grep -q -i "sanitizer\|segmentation\|core dumped\|runtime error" "$T/serve.err" && bad "crashed: $(cat "$T/serve.err")" || ok
summary
