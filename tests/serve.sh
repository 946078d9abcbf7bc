#!/bin/bash
# tests/serve.sh SQLM [--no-budget] - sqlm serve end to end, with curl, on a
# server this script starts on a free port (--port 0) and stops itself:
#   - /health, /v1/models; an API key required (401) and accepted;
#   - greedy completions equal `sqlm run --temp 0` for the same prompt and
#     -n, a seeded sampled one equals `sqlm run -s`, usage counts are right;
#   - streams (completions and chat) are OpenAI's chunks whose text
#     concatenates to the whole answer's, ending with data: [DONE];
#   - chat completions equal `sqlm chat`'s replies (same template, same KV
#     cache reuse over two turns); stop strings cut the text;
#   - 400 (bad JSON, wrong types, an overlong prompt, max_tokens out of
#     range), 404, 405, 413 (an oversized body, with and without a length),
#     all in OpenAI's error format; clients that vanish mid-stream and
#     concurrent clients neither crash nor wedge the server; SIGTERM stops
#     it with status 0; the model database is not modified;
#   - logprobs consistent with the text (sorted alternatives, the greedy
#     token first, a distribution; streamed equal to whole), logit_bias,
#     prompts as token ids, developer rendered as system and messages the
#     template drops refused, fields that change the answer refused naming
#     them, timings, llama-server's /completion, /tokenize, /detokenize,
#     /apply-template, /props, /slots, /metrics, /v1/models/{id}, --cors;
#   - duplicate or conflicting Content-Length (400), 64 idle connections
#     from one address (another is served at once, they close after
#     --idle-timeout), a request slower than --idle-timeout; a stop while a
#     stream runs and requests wait (503 with JSON, the final chunk and
#     [DONE], exit 0);
#   - one server under --mem-budget inside a cgroup v1 memory limit equal to
#     the budget (skipped, with the reason, when not root, without the cgroup
#     v1 memory controller, or with --no-budget: the ASan build).
set -u
SQLM=$(realpath "$1")
NO_BUDGET=${2:-}
M=../shared/models
NAME=serve
. "$(dirname "$0")/lib.sh"
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    lib_cleanup
}
trap cleanup EXIT

# --- helpers in Python: JSON fields, SSE streams, error bodies
cat > "$T/chk.py" <<'EOF'
import json, math, sys
cmd = sys.argv[1]
def load(path):
    return json.load(open(path, encoding="utf-8"))
if cmd == "get":            # get FILE EXPR: print EXPR over the JSON d
    d = load(sys.argv[2])
    v = eval(sys.argv[3], {"d": d})
    sys.stdout.write(v if isinstance(v, str) else json.dumps(v))
elif cmd == "text":         # text FILE EXPR OUT: a string field into OUT, as is
    d = load(sys.argv[2])
    open(sys.argv[4], "w", encoding="utf-8").write(eval(sys.argv[3], {"d": d}))
elif cmd == "runtext":      # runtext RUN_STDOUT PROMPT OUT: run's text after the prompt
    s = open(sys.argv[2], encoding="utf-8").read()
    p = sys.argv[3]
    assert s.startswith(p) and s.endswith("\n"), "run output does not frame the text: %r" % s
    open(sys.argv[4], "w", encoding="utf-8").write(s[len(p):-1])
elif cmd == "error":        # error FILE STATUS: {"error":{"message","type","code"}}
    e = load(sys.argv[2])["error"]
    assert isinstance(e["message"], str) and e["message"], "no message"
    assert isinstance(e["type"], str) and e["type"], "no type"
    assert e["code"] == int(sys.argv[3]), "code %r" % e["code"]
elif cmd == "sse":          # sse FILE chat|text OUT: check a stream, its text into OUT, print finish_reason
    body = open(sys.argv[2], encoding="utf-8").read()
    chat = sys.argv[3] == "chat"
    assert body.endswith("data: [DONE]\n\n"), "does not end with data: [DONE]: %r" % body[-80:]
    events = body.split("\n\n")[:-1]
    for e in events:
        assert e.startswith("data: ") and "\n" not in e, "not an SSE data event: %r" % e
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert len(chunks) >= 2, "only %d chunks" % len(chunks)
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1, "chunks of several ids"
    text = ""
    for i, c in enumerate(chunks):
        assert c["object"] == ("chat.completion.chunk" if chat else "text_completion"), c["object"]
        assert isinstance(c["created"], int) and c["model"], c
        ch = c["choices"]
        assert len(ch) == 1 and ch[0]["index"] == 0, ch
        last = i == len(chunks) - 1
        fr = ch[0]["finish_reason"]
        assert (fr in ("stop", "length")) if last else fr is None, "chunk %d: finish_reason %r" % (i, fr)
        if chat:
            delta = ch[0]["delta"]
            if i == 0:
                assert delta.get("role") == "assistant", "first chat chunk lacks delta.role: %r" % c
            else:
                assert "role" not in delta, "role in a later chunk"
            text += delta.get("content", "")
        else:
            text += ch[0]["text"]
    open(sys.argv[4], "w", encoding="utf-8").write(text)
    sys.stdout.write(chunks[-1]["choices"][0]["finish_reason"])
elif cmd == "lp":           # lp FILE oai|chat|native K: logprobs consistent with the text, greedy
    d = load(sys.argv[2]); fmt = sys.argv[3]; k = int(sys.argv[4])
    def top_ok(chosen, lp, tops):   # sorted, the chosen one first (greedy), a distribution
        vals = [t[1] for t in tops]
        assert len(tops) == k, "%d alternatives, want %d" % (len(tops), k)
        assert vals == sorted(vals, reverse=True), "top_logprobs not sorted: %r" % vals
        assert all(v <= 0 for v in vals) and sum(math.exp(v) for v in vals) <= 1 + 1e-5, vals
        if k: assert tops[0][0] == chosen and tops[0][1] == lp, "greedy token %r %r is not the first of %r" % (chosen, lp, tops)
    import math
    if fmt == "oai":
        c = d["choices"][0]; l = c["logprobs"]
        assert "".join(l["tokens"]) == c["text"], "tokens %r do not make the text %r" % (l["tokens"], c["text"])
        assert len(l["tokens"]) == d["usage"]["completion_tokens"]
        off = 0
        for t, lp, top, o in zip(l["tokens"], l["token_logprobs"], l["top_logprobs"], l["text_offset"]):
            assert o == off, "text_offset %d, want %d" % (o, off); off += len(t.encode())
            top_ok(t, lp, sorted(top.items(), key=lambda x: -x[1]))
    else:
        if fmt == "chat":
            c = d["choices"][0]; ents = c["logprobs"]["content"]; text = c["message"]["content"]; n = d["usage"]["completion_tokens"]
        else:
            ents = d["completion_probabilities"]; text = d["content"]; n = d["tokens_predicted"]
        assert len(ents) == n, "%d entries for %d tokens" % (len(ents), n)
        assert "".join(e["token"] for e in ents) == text, "tokens do not make the text"
        for e in ents:
            assert bytes(e["bytes"]).decode() == e["token"]
            top_ok(e["token"], e["logprob"], [(t["token"], t["logprob"]) for t in e["top_logprobs"]])
EOF
chk() { python3 "$T/chk.py" "$@"; }

# stop_server NAME: SIGTERM, then status 0 and no crash
stop_server() {
    kill -TERM "$PID"
    wait "$PID"
    local rc=$?
    PID=
    [ $rc = 0 ] && ok || bad "$1: exit status $rc after SIGTERM: $(tail -3 "$T/$1.err")"
    grep -q "stopping" "$T/$1.err" && ok || bad "$1: no 'stopping' line"
    grep -q -i "sanitizer\|segmentation\|core dumped" "$T/$1.err" && bad "$1: crashed: $(cat "$T/$1.err")" || ok
}

KEY=sk-test-0123456789
AUTH=(-H "Authorization: Bearer $KEY")
# post PATH JSON [CURL ARGS]: the answer in $T/body, the status on stdout
post() {
    local path=$1 data=$2; shift 2
    curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@" --data-binary "$data" "$URL$path"
}
get() { local path=$1; shift; curl -s -o "$T/body" -w '%{http_code}' "$@" "$URL$path"; }
# expect_status DESC WANT GOT: and an OpenAI error body for errors
expect_status() {
    if [ "$3" != "$2" ]; then bad "$1: status $3, want $2: $(head -c 300 "$T/body")"; return 1; fi
    ok
    if [ "$2" -ge 400 ]; then
        chk error "$T/body" "$2" 2>"$T/chkerr" && ok || bad "$1: not an OpenAI error body: $(head -c 300 "$T/body") $(tail -1 "$T/chkerr")"
    fi
}

"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
sum=$(sha256sum < "$T/s.db")
# the prompt's token count, as `sqlm tokenize` has it (BOS included)
n_tok() { "$SQLM" tokenize -m "$T/s.db" "$1" | head -1 | wc -w; }

start_server main "$SQLM" serve -m "$T/s.db" --port 0 --api-key "$KEY" -t 1 --idle-timeout 3 || exit 1
case "$URL" in http://127.0.0.1:*) ok ;; *) bad "not on loopback by default: $URL" ;; esac

# --- health, models, the key
expect_status "/health" 200 "$(get /health)" && [ "$(chk get "$T/body" 'd["status"]')" = ok ] && ok \
    || bad "/health: $(cat "$T/body")"
expect_status "/v1/models" 200 "$(get /v1/models "${AUTH[@]}")"
[ "$(chk get "$T/body" 'd["object"] + " " + d["data"][0]["object"] + " " + d["data"][0]["id"]')" = "list model s.db" ] \
    && ok || bad "/v1/models: $(cat "$T/body")"
expect_status "models without a key" 401 "$(get /v1/models)"
expect_status "models with a wrong key" 401 "$(get /v1/models -H "Authorization: Bearer ${KEY}x")"
expect_status "models with a key one byte short" 401 "$(get /v1/models -H "Authorization: Bearer ${KEY%?}")"
expect_status "completion without a key" 401 "$(post /v1/completions '{"prompt":"Hi"}')"
expect_status "completion with a wrong key" 401 "$(post /v1/completions '{"prompt":"Hi"}' -H "Authorization: Bearer nope")"

# --- greedy completions: the text of `sqlm run --temp 0`, usage counts
greedy() {   # greedy PROMPT N [EXTRA_JSON]
    local prompt=$1 n=$2 extra=${3:-}
    local ign=""; [ -n "$extra" ] && ign="--ignore-eos"
    rm -f "$T/want"   # a failed run must not leave the previous prompt's text to compare with
    "$SQLM" run -m "$T/s.db" -p "$prompt" -n "$n" --temp 0 $ign >"$T/run.out" 2>"$T/err" || bad "run: $(cat "$T/err")"
    chk runtext "$T/run.out" "$prompt" "$T/want" || bad "run output"
    local body="{\"prompt\":\"$prompt\",\"max_tokens\":$n,\"temperature\":0$extra}"
    expect_status "greedy '$prompt' -n $n" 200 "$(post /v1/completions "$body" "${AUTH[@]}")" || return
    cp "$T/body" "$T/whole.json"
    chk text "$T/body" 'd["choices"][0]["text"]' "$T/got"
    cmp -s "$T/want" "$T/got" && ok || bad "greedy '$prompt' -n $n: text differs from sqlm run:
got:  $(cat "$T/got")
want: $(cat "$T/want")"
    [ "$(chk get "$T/body" 'd["object"]')" = text_completion ] && ok || bad "completion object: $(cat "$T/body")"
    local pt ct tt fr
    pt=$(chk get "$T/body" 'd["usage"]["prompt_tokens"]') ct=$(chk get "$T/body" 'd["usage"]["completion_tokens"]')
    tt=$(chk get "$T/body" 'd["usage"]["total_tokens"]') fr=$(chk get "$T/body" 'd["choices"][0]["finish_reason"]')
    [ "$pt" = "$(n_tok "$prompt")" ] && ok || bad "'$prompt': prompt_tokens $pt, want $(n_tok "$prompt")"
    [ "$tt" = $((pt + ct)) ] && ok || bad "'$prompt': total_tokens $tt is not $pt + $ct"
    if [ -n "$extra" ]; then   # ignore_eos: exactly n tokens, cut by length
        [ "$ct" = "$n" ] && [ "$fr" = length ] && ok || bad "'$prompt' ignore_eos: completion_tokens $ct, finish $fr; want $n, length"
    else
        { [ "$ct" = "$n" ] && [ "$fr" = length ]; } || { [ "$ct" -lt "$n" ] && [ "$fr" = stop ]; } && ok \
            || bad "'$prompt': completion_tokens $ct with finish_reason $fr (max_tokens $n)"
    fi
    # the same request streamed: chunks that add up to the same text
    body="{\"prompt\":\"$prompt\",\"max_tokens\":$n,\"temperature\":0,\"stream\":true$extra}"
    expect_status "stream '$prompt'" 200 "$(post /v1/completions "$body" "${AUTH[@]}")" || return
    local sfr
    if sfr=$(chk sse "$T/body" text "$T/sgot" 2>"$T/chkerr"); then
        ok
        cmp -s "$T/sgot" "$T/want" && ok || bad "stream '$prompt': chunks add up to '$(cat "$T/sgot")', want '$(cat "$T/want")'"
        [ "$sfr" = "$fr" ] && ok || bad "stream '$prompt': finish_reason $sfr, whole answer's $fr"
    else
        bad "stream '$prompt': $(tail -1 "$T/chkerr")"
    fi
}
greedy "Once upon a time" 48
greedy "Lily" 64 ',"ignore_eos":true'
greedy "The dog" 1
greedy "" 12
# a prompt that extends what the KV cache holds feeds only the new tokens
# (max_tokens 1: the cache holds the prompt alone), with the same text
post /v1/completions '{"prompt":"Once upon a time","max_tokens":1}' "${AUTH[@]}" >/dev/null
greedy "Once upon a time, there was" 20
grep "POST /v1/completions: prompt" "$T/main.err" | tail -2 | head -1 | grep -q "prompt 8 tokens (5 from the cache)" && ok \
    || bad "the KV cache was not reused: $(grep 'POST /v1/completions: prompt' "$T/main.err" | tail -2 | head -1)"

# sampling with a seed: the text of `sqlm run -s` with the same settings
rm -f "$T/want"   # a failed run must not leave the previous text to compare with
"$SQLM" run -m "$T/s.db" -p "Lily" -n 24 --temp 0.9 -s 7 >"$T/run.out" 2>"$T/err" || bad "seeded run: $(cat "$T/err")"
chk runtext "$T/run.out" "Lily" "$T/want" && [ -s "$T/want" ] || bad "seeded run: no text after the prompt"
expect_status "seeded" 200 "$(post /v1/completions '{"prompt":"Lily","max_tokens":24,"temperature":0.9,"seed":7}' "${AUTH[@]}")"
chk text "$T/body" 'd["choices"][0]["text"]' "$T/got"
cmp -s "$T/want" "$T/got" && ok || bad "seeded sampling differs from sqlm run -s 7: '$(cat "$T/got")' vs '$(cat "$T/want")'"

# stop strings: the greedy text cut before the first place any of them starts
"$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 48 --temp 0 >"$T/run.out" 2>"$T/err" || bad "run: $(cat "$T/err")"
chk runtext "$T/run.out" "Once upon a time" "$T/full" || bad "run output"
for stop in '"Lily"' '["zzz","Lily. She","named Lily"]' '["\n", "ed"]'; do
    python3 -c "import json,sys; t=open(sys.argv[1]).read(); s=json.loads(sys.argv[2]); s=[s] if isinstance(s,str) else s
i=min(t.find(x) for x in s if x in t); open(sys.argv[3],'w').write(t[:i])" "$T/full" "$stop" "$T/want" \
        || bad "the greedy text lacks $stop: $(cat "$T/full")"
    expect_status "stop $stop" 200 "$(post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":48,\"temperature\":0,\"stop\":$stop}" "${AUTH[@]}")"
    chk text "$T/body" 'd["choices"][0]["text"]' "$T/got"
    cmp -s "$T/want" "$T/got" && [ "$(chk get "$T/body" 'd["choices"][0]["finish_reason"]')" = stop ] && ok \
        || bad "stop $stop: '$(cat "$T/got")', want '$(cat "$T/want")' and finish stop"
    expect_status "stream stop $stop" 200 "$(post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":48,\"temperature\":0,\"stop\":$stop,\"stream\":true}" "${AUTH[@]}")"
    sfr=$(chk sse "$T/body" text "$T/sgot" 2>"$T/chkerr") || bad "stream stop $stop: $(tail -1 "$T/chkerr")"
    cmp -s "$T/want" "$T/sgot" && [ "$sfr" = stop ] && ok || bad "stream stop $stop: '$(cat "$T/sgot")' ($sfr)"
done
# stream_options.include_usage: a last chunk with usage and no choices
expect_status "include_usage" 200 "$(post /v1/completions '{"prompt":"Lily","max_tokens":5,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}' "${AUTH[@]}")"
grep '^data: {' "$T/body" | tail -1 | sed 's/^data: //' >"$T/last.json"
[ "$(chk get "$T/last.json" '[len(d["choices"]), d["usage"]["completion_tokens"]]')" = "[0, 5]" ] && ok \
    || bad "include_usage: last chunk $(cat "$T/last.json")"

# --- chat: the replies of `sqlm chat`, one turn and two (the second reuses the cache)
# (sqlm chat prints each reply and a newline; a reply may hold newlines too)
printf 'Hello there\nTell me a story\n' | "$SQLM" chat -m "$T/s.db" -n 8 --temp 0 --system "Be kind" >"$T/chat.out" 2>/dev/null \
    || bad "sqlm chat failed"
msgs1='[{"role":"system","content":"Be kind"},{"role":"user","content":"Hello there"}]'
expect_status "chat" 200 "$(post /v1/chat/completions "{\"messages\":$msgs1,\"max_tokens\":8,\"temperature\":0}" "${AUTH[@]}")"
cp "$T/body" "$T/chat1.json"
chk text "$T/body" 'd["choices"][0]["message"]["content"]' "$T/got"
cp "$T/got" "$T/want1"
[ "$(chk get "$T/body" '[d["object"], d["choices"][0]["message"]["role"]]')" = '["chat.completion", "assistant"]' ] && ok \
    || bad "chat: object or role: $(cat "$T/body")"
pt=$(chk get "$T/body" 'd["usage"]["prompt_tokens"]') ct=$(chk get "$T/body" 'd["usage"]["completion_tokens"]')
[ "$pt" -gt 10 ] && [ "$ct" -ge 1 ] && [ "$ct" -le 8 ] && [ "$(chk get "$T/body" 'd["usage"]["total_tokens"]')" = $((pt + ct)) ] \
    && ok || bad "chat: usage $(chk get "$T/body" 'd["usage"]')"
reply1=$(python3 -c "import json,sys; print(json.dumps(open(sys.argv[1], encoding='utf-8').read()))" "$T/got")
msgs2="[{\"role\":\"system\",\"content\":\"Be kind\"},{\"role\":\"user\",\"content\":\"Hello there\"},{\"role\":\"assistant\",\"content\":$reply1},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Tell me a story\"}]}]"
expect_status "chat, second turn" 200 "$(post /v1/chat/completions "{\"messages\":$msgs2,\"max_tokens\":8,\"temperature\":0}" "${AUTH[@]}")"
chk text "$T/body" 'd["choices"][0]["message"]["content"]' "$T/got"
printf '%s\n%s\n' "$(cat "$T/want1")" "$(cat "$T/got")" >"$T/chat.serve"
cmp -s "$T/chat.out" "$T/chat.serve" && ok || bad "chat: replies differ from sqlm chat's:
got:  $(cat "$T/chat.serve")
want: $(cat "$T/chat.out")"
# streamed: a role first, then content adding up to the whole reply
expect_status "chat stream" 200 "$(post /v1/chat/completions "{\"messages\":$msgs1,\"max_tokens\":8,\"temperature\":0,\"stream\":true}" "${AUTH[@]}")"
if sfr=$(chk sse "$T/body" chat "$T/sgot" 2>"$T/chkerr"); then
    cmp -s "$T/want1" "$T/sgot" && [ "$sfr" = "$(chk get "$T/chat1.json" 'd["choices"][0]["finish_reason"]')" ] && ok \
        || bad "chat stream: '$(cat "$T/sgot")' ($sfr), want '$(cat "$T/want1")'"
else
    bad "chat stream: $(tail -1 "$T/chkerr")"
fi

# --- bad requests
expect_status "404" 404 "$(get /v1/nope "${AUTH[@]}")"
expect_status "404 before auth" 404 "$(get /index.html)"
expect_status "405 GET completions" 405 "$(get /v1/completions "${AUTH[@]}")"
expect_status "405 POST health" 405 "$(post /health '{}')"
expect_status "405 DELETE models" 405 "$(get /v1/models -X DELETE "${AUTH[@]}")"
curl -s -o /dev/null -D "$T/hdr" -X POST "$URL/health"
grep -qi '^Allow: GET' "$T/hdr" && ok || bad "405 without 'Allow: GET': $(cat "$T/hdr")"
expect_status "/v1/health (llama-server's alias)" 200 "$(get /v1/health)"
expect_status "/completions (llama-server's alias)" 200 "$(post /completions '{"prompt":"Hi","max_tokens":2}' "${AUTH[@]}")"
expect_status "bad JSON" 400 "$(post /v1/completions '{"prompt": "Hi",' "${AUTH[@]}")"
expect_status "not an object" 400 "$(post /v1/completions '["Hi"]' "${AUTH[@]}")"
expect_status "empty body" 400 "$(post /v1/completions '' "${AUTH[@]}")"
expect_status "no prompt" 400 "$(post /v1/completions '{"max_tokens":4}' "${AUTH[@]}")"
expect_status "prompt a number" 400 "$(post /v1/completions '{"prompt":42}' "${AUTH[@]}")"
expect_status "temperature a string" 400 "$(post /v1/completions '{"prompt":"Hi","temperature":"hot"}' "${AUTH[@]}")"
expect_status "stream a string" 400 "$(post /v1/completions '{"prompt":"Hi","stream":"yes"}' "${AUTH[@]}")"
expect_status "stop a number" 400 "$(post /v1/completions '{"prompt":"Hi","stop":7}' "${AUTH[@]}")"
expect_status "max_tokens 0" 400 "$(post /v1/completions '{"prompt":"Hi","max_tokens":0}' "${AUTH[@]}")"
expect_status "max_tokens -5" 400 "$(post /v1/completions '{"prompt":"Hi","max_tokens":-5}' "${AUTH[@]}")"
expect_status "max_tokens huge" 400 "$(post /v1/completions '{"prompt":"Hi","max_tokens":100000000000}' "${AUTH[@]}")"
expect_status "max_tokens 1.5" 400 "$(post /v1/completions '{"prompt":"Hi","max_tokens":1.5}' "${AUTH[@]}")"
expect_status "top_p 2" 400 "$(post /v1/completions '{"prompt":"Hi","top_p":2}' "${AUTH[@]}")"
expect_status "n 2" 400 "$(post /v1/completions '{"prompt":"Hi","n":2}' "${AUTH[@]}")"
expect_status "no messages" 400 "$(post /v1/chat/completions '{"prompt":"Hi"}' "${AUTH[@]}")"
expect_status "empty messages" 400 "$(post /v1/chat/completions '{"messages":[]}' "${AUTH[@]}")"
expect_status "message not an object" 400 "$(post /v1/chat/completions '{"messages":["Hi"]}' "${AUTH[@]}")"
expect_status "message without role" 400 "$(post /v1/chat/completions '{"messages":[{"content":"Hi"}]}' "${AUTH[@]}")"
expect_status "content an object" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":{"x":1}}]}' "${AUTH[@]}")"
expect_status "image content" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}' "${AUTH[@]}")"
expect_status "invalid UTF-8" 400 "$(post /v1/completions "$(printf '{"prompt":"\xff\xfe"}')" "${AUTH[@]}")"
python3 -c "import json; print(json.dumps({'prompt': 'Once upon a time ' * 300}))" >"$T/long.json"
expect_status "overlong prompt" 400 "$(post /v1/completions "@$T/long.json" "${AUTH[@]}")"
grep -q "context" "$T/body" && ok || bad "overlong prompt: message does not say context: $(cat "$T/body")"
python3 -c "import json; print(json.dumps({'messages': [{'role': 'user', 'content': 'Tell me a story ' * 300}]}))" >"$T/long.json"
expect_status "overlong chat" 400 "$(post /v1/chat/completions "@$T/long.json" "${AUTH[@]}")"
head -c 2000000 /dev/zero | tr '\0' ' ' >"$T/big.json"
expect_status "2 MB body" 413 "$(post /v1/completions "@$T/big.json" "${AUTH[@]}")"
expect_status "2 MB body, chunked" 413 "$(post /v1/completions "@$T/big.json" -H 'Transfer-Encoding: chunked' "${AUTH[@]}")"
expect_status "2 MB body, no key" 401 "$(post /v1/completions "@$T/big.json")"
# just under the limit, valid JSON: accepted
python3 -c "import json; print(json.dumps({'prompt': 'Hi', 'max_tokens': 2, 'user': 'x' * 1000000}))" >"$T/near.json"
expect_status "1 MB body" 200 "$(post /v1/completions "@$T/near.json" "${AUTH[@]}")"

# --- hostile clients: gone mid-stream (reset), half a request, concurrent
python3 - "$URL" "$KEY" <<'EOF' 2>"$T/py.err" && ok || bad "hostile clients: $(cat "$T/py.err")"
import socket, struct, sys
host, port = sys.argv[1][len("http://"):].rsplit(":", 1)
body = b'{"prompt":"Once upon a time","max_tokens":400,"ignore_eos":true,"stream":true}'
req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sys.argv[2].encode() +
       b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
for i in range(6):
    s = socket.create_connection((host, int(port)))
    s.sendall(req)
    got = s.recv(200)
    assert got.startswith(b"HTTP/1.1 200"), got
    if i % 2:   # reset, not a clean close
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
# a request cut short: headers promise a body that never comes
s = socket.create_connection((host, int(port)))
s.sendall(req[:-10])
s.close()
# garbage instead of HTTP
s = socket.create_connection((host, int(port)))
s.sendall(b"\x00\xff garbage \r\n\r\n" * 50)
s.close()
EOF
pids=()
for i in 1 2 3; do
    curl -s -o "$T/par$i.json" -H 'Content-Type: application/json' "${AUTH[@]}" \
        --data-binary '{"prompt":"Once upon a time","max_tokens":48,"temperature":0}' "$URL/v1/completions" &
    pids+=($!)
done
wait "${pids[@]}"   # not the server
for i in 1 2 3; do
    chk text "$T/par$i.json" 'd["choices"][0]["text"]' "$T/got" 2>/dev/null && cmp -s "$T/got" "$T/full" && ok \
        || bad "concurrent request $i: $(head -c 300 "$T/par$i.json")"
done
kill -0 "$PID" 2>/dev/null && ok || bad "the server died"
expect_status "/health after the hostile clients" 200 "$(get /health)"
greedy "Once upon a time" 16

# --- logprobs: the tokens make the text, alternatives sorted with the greedy token first
expect_status "completion logprobs" 200 "$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"logprobs":5}' "${AUTH[@]}")"
chk text "$T/body" 'd["choices"][0]["text"]' "$T/got"
head -c "$(wc -c <"$T/got")" "$T/full" | cmp -s - "$T/got" && ok || bad "logprobs changed the text: $(cat "$T/got")"
chk lp "$T/body" oai 5 2>"$T/chkerr" && ok || bad "completion logprobs: $(tail -1 "$T/chkerr")"
expect_status "chat logprobs" 200 "$(post /v1/chat/completions "{\"messages\":$msgs1,\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3}" "${AUTH[@]}")"
chk lp "$T/body" chat 3 2>"$T/chkerr" && ok || bad "chat logprobs: $(tail -1 "$T/chkerr")"
chk text "$T/body" 'd["choices"][0]["message"]["content"]' "$T/got"
cmp -s "$T/got" "$T/want1" && ok || bad "chat logprobs changed the reply"
expect_status "chat logprobs, no alternatives" 200 "$(post /v1/chat/completions "{\"messages\":$msgs1,\"max_tokens\":4,\"temperature\":0,\"logprobs\":true}" "${AUTH[@]}")"
chk lp "$T/body" chat 0 2>"$T/chkerr" && ok || bad "chat logprobs without top_logprobs: $(tail -1 "$T/chkerr")"
expect_status "/completion n_probs" 200 "$(post /completion '{"prompt":"Once upon a time","n_predict":12,"temperature":0,"n_probs":4}' "${AUTH[@]}")"
chk lp "$T/body" native 4 2>"$T/chkerr" && ok || bad "/completion n_probs: $(tail -1 "$T/chkerr")"
# streamed: one logprobs entry per token over the chunks, the same values as the whole answer's
expect_status "chat logprobs stream" 200 "$(post /v1/chat/completions "{\"messages\":$msgs1,\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3,\"stream\":true}" "${AUTH[@]}")"
cp "$T/body" "$T/lpstream"
post /v1/chat/completions "{\"messages\":$msgs1,\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3}" "${AUTH[@]}" >/dev/null
python3 - "$T/lpstream" "$T/body" <<'EOF' 2>"$T/chkerr" && ok || bad "chat logprobs stream: $(tail -1 "$T/chkerr")"
import json, sys
ev = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: {")]
got = [e for c in ev for e in ((c["choices"][0].get("logprobs") or {}).get("content") or [])]
want = json.load(open(sys.argv[2]))["choices"][0]["logprobs"]["content"]
assert got == want, "streamed %r\nwhole %r" % (got, want)
EOF
expect_status "completion logprobs stream" 200 "$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"logprobs":2,"stream":true}' "${AUTH[@]}")"
cp "$T/body" "$T/lpstream"
post /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"logprobs":2}' "${AUTH[@]}" >/dev/null
python3 - "$T/lpstream" "$T/body" <<'EOF' 2>"$T/chkerr" && ok || bad "completion logprobs stream: $(tail -1 "$T/chkerr")"
import json, sys
ev = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: {")]
lps = [c["choices"][0]["logprobs"] for c in ev if c["choices"][0]["logprobs"]]
whole = json.load(open(sys.argv[2]))["choices"][0]["logprobs"]
for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
    assert [x for l in lps for x in l[k]] == whole[k], "%s: streamed %r, whole %r" % (k, [x for l in lps for x in l[k]], whole[k])
EOF
expect_status "logprobs 21" 400 "$(post /v1/completions '{"prompt":"Hi","logprobs":21}' "${AUTH[@]}")"
expect_status "top_logprobs without logprobs" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"}],"top_logprobs":2}' "${AUTH[@]}")"

# --- logit_bias: -100 on the greedy first token gives the runner-up; +100 on one token repeats it
post /v1/completions '{"prompt":"Once upon a time","max_tokens":1,"temperature":0,"logprobs":2}' "${AUTH[@]}" >/dev/null
first=$(chk get "$T/body" 'd["choices"][0]["logprobs"]["tokens"][0]')
second=$(chk get "$T/body" 'sorted(d["choices"][0]["logprobs"]["top_logprobs"][0].items(), key=lambda x: -x[1])[1][0]')
post /tokenize "{\"content\":\"$first\"}" "${AUTH[@]}" >/dev/null
fid=$(chk get "$T/body" 'd["tokens"][-1]')
expect_status "logit_bias -100" 200 "$(post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":1,\"temperature\":0,\"logit_bias\":{\"$fid\":-100}}" "${AUTH[@]}")"
[ "$(chk get "$T/body" 'd["choices"][0]["text"]')" = "$second" ] && ok \
    || bad "logit_bias -100 on '$first' ($fid): '$(chk get "$T/body" 'd["choices"][0]["text"]')', want the runner-up '$second'"
expect_status "logit_bias false (llama-server's)" 200 "$(post /completion "{\"prompt\":\"Once upon a time\",\"n_predict\":1,\"temperature\":0,\"logit_bias\":[[$fid,false]]}" "${AUTH[@]}")"
[ "$(chk get "$T/body" 'd["content"]')" = "$second" ] && ok || bad "logit_bias [[id,false]]: $(cat "$T/body")"
expect_status "logit_bias +100" 200 "$(post /v1/completions "{\"prompt\":\"Lily\",\"max_tokens\":5,\"temperature\":0,\"logit_bias\":{\"$fid\":100}}" "${AUTH[@]}")"
[ "$(chk get "$T/body" 'd["choices"][0]["text"]')" = "$first$first$first$first$first" ] && ok || bad "logit_bias +100: $(cat "$T/body")"
expect_status "logit_bias, sampled" 200 "$(post /v1/completions "{\"prompt\":\"Lily\",\"max_tokens\":4,\"temperature\":1,\"seed\":3,\"logit_bias\":{\"$fid\":100}}" "${AUTH[@]}")"
[ "$(chk get "$T/body" 'd["choices"][0]["text"]')" = "$first$first$first$first" ] && ok || bad "logit_bias +100 sampled: $(cat "$T/body")"
expect_status "logit_bias id out of range" 400 "$(post /v1/completions '{"prompt":"Hi","logit_bias":{"100000":5}}' "${AUTH[@]}")"
grep -q "logit_bias" "$T/body" && ok || bad "logit_bias error does not name it: $(cat "$T/body")"
expect_status "logit_bias not a number" 400 "$(post /v1/completions '{"prompt":"Hi","logit_bias":{"5":"x"}}' "${AUTH[@]}")"
expect_status "logit_bias token string" 400 "$(post /v1/completions '{"prompt":"Hi","logit_bias":{"Hello":5}}' "${AUTH[@]}")"

# --- prompts as token ids: the ids of `sqlm tokenize` give the string's text
ids=$("$SQLM" tokenize -m "$T/s.db" "Once upon a time" | head -1 | tr ' ' ',')
for p in "[$ids]" "[[$ids]]"; do
    expect_status "prompt $p" 200 "$(post /v1/completions "{\"prompt\":$p,\"max_tokens\":48,\"temperature\":0}" "${AUTH[@]}")"
    chk text "$T/body" 'd["choices"][0]["text"]' "$T/got"
    cmp -s "$T/got" "$T/full" && ok || bad "prompt $p: '$(cat "$T/got")', want the string prompt's"
done
expect_status "/completion token prompt" 200 "$(post /completion "{\"prompt\":[$ids],\"n_predict\":48,\"temperature\":0}" "${AUTH[@]}")"
chk text "$T/body" 'd["content"]' "$T/got"
cmp -s "$T/got" "$T/full" && ok || bad "/completion token prompt: '$(cat "$T/got")'"
expect_status "prompt id out of range" 400 "$(post /v1/completions '{"prompt":[1,70000]}' "${AUTH[@]}")"
grep -q "70000" "$T/body" && ok || bad "out-of-range id not named: $(cat "$T/body")"
expect_status "prompt id negative" 400 "$(post /v1/completions '{"prompt":[1,-3]}' "${AUTH[@]}")"
expect_status "prompt ids not integers" 400 "$(post /v1/completions '{"prompt":[1,2.5]}' "${AUTH[@]}")"
expect_status "prompt empty array" 400 "$(post /v1/completions '{"prompt":[]}' "${AUTH[@]}")"
expect_status "two prompts" 400 "$(post /v1/completions '{"prompt":["a","b"]}' "${AUTH[@]}")"

# --- roles: developer as system (the template has no developer role); dropped ones refused
msgsd='[{"role":"developer","content":"Be kind"},{"role":"user","content":"Hello there"}]'
expect_status "developer role" 200 "$(post /v1/chat/completions "{\"messages\":$msgsd,\"max_tokens\":8,\"temperature\":0}" "${AUTH[@]}")"
chk text "$T/body" 'd["choices"][0]["message"]["content"]' "$T/got"
cmp -s "$T/got" "$T/want1" && ok || bad "developer is not rendered as system: '$(cat "$T/got")'"
expect_status "/apply-template" 200 "$(post /apply-template "{\"messages\":$msgsd}" "${AUTH[@]}")"
grep -q 'Be kind' "$T/body" && ok || bad "/apply-template: $(cat "$T/body")"
expect_status "tool message the template drops" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"},{"role":"tool","content":"42","tool_call_id":"c1"}]}' "${AUTH[@]}")"
grep -q "role 'tool'" "$T/body" && ok || bad "tool refusal does not name the role: $(cat "$T/body")"
expect_status "system after the first turn" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"},{"role":"system","content":"Now be rude"},{"role":"user","content":"Hi"}]}' "${AUTH[@]}")"
expect_status "unknown role" 400 "$(post /v1/chat/completions '{"messages":[{"role":"wizard","content":"Hi"}]}' "${AUTH[@]}")"
expect_status "message name" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi","name":"bob"}]}' "${AUTH[@]}")"
expect_status "assistant tool_calls" 400 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}' "${AUTH[@]}")"

# --- fields that change the answer: honoured above, or refused naming them; harmless ones accepted
for f in '"response_format":{"type":"json_object"}' '"grammar":"root ::= \"a\""' '"tools":[{"type":"function","function":{"name":"f"}}]' \
         '"tool_choice":"required"' '"frobnicate":1' '"mirostat":2' '"typical_p":0.5' '"echo":true' '"suffix":"end"' '"best_of":3'; do
    name=$(echo "$f" | sed 's/^"\([a-z_]*\)".*/\1/')
    kind=/v1/chat/completions; body="{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],$f}"
    case $name in echo|suffix|best_of) kind=/v1/completions; body="{\"prompt\":\"Hi\",$f}" ;; esac
    expect_status "refused $name" 400 "$(post $kind "$body" "${AUTH[@]}")"
    grep -q "'$name'" "$T/body" && ok || bad "refused $name: the message does not name it: $(cat "$T/body")"
done
expect_status "harmless fields" 200 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"model":"gpt-4o","user":"u1","response_format":{"type":"text"},"tools":[],"tool_choice":"none","n":1,"stream_options":null,"store":false}' "${AUTH[@]}")"
expect_status "native field off" 200 "$(post /completion '{"prompt":"Hi","n_predict":2,"mirostat":0,"typical_p":1,"cache_prompt":true,"id_slot":-1}' "${AUTH[@]}")"

# --- timings in answers, as llama-server's
post /v1/completions '{"prompt":"Lily","max_tokens":6,"ignore_eos":true,"temperature":0}' "${AUTH[@]}" >/dev/null
[ "$(chk get "$T/body" '[d["timings"]["predicted_n"], sorted(d["timings"])]')" = '[6, ["predicted_ms", "predicted_n", "predicted_per_second", "predicted_per_token_ms", "prompt_ms", "prompt_n", "prompt_per_second", "prompt_per_token_ms"]]' ] \
    && ok || bad "timings: $(cat "$T/body")"
expect_status "stream timings" 200 "$(post /v1/completions '{"prompt":"Lily","max_tokens":3,"stream":true}' "${AUTH[@]}")"
grep '^data: {' "$T/body" | tail -1 | grep -q '"timings":{"prompt_n"' && ok || bad "no timings in the last chunk"

# --- llama-server's endpoints
expect_status "/completion" 200 "$(post /completion '{"prompt":"Once upon a time","n_predict":48,"temperature":0}' "${AUTH[@]}")"
chk text "$T/body" 'd["content"]' "$T/got"
cmp -s "$T/got" "$T/full" && ok || bad "/completion: '$(cat "$T/got")', want run's"
[ "$(chk get "$T/body" '[d["stop"], d["tokens_evaluated"], d["tokens_predicted"] > 0, d["stop_type"] in ("eos", "limit"), "prompt_per_second" in d["timings"]]')" = "[true, 5, true, true, true]" ] \
    && ok || bad "/completion fields: $(cat "$T/body")"
expect_status "/completion stop" 200 "$(post /completion '{"prompt":"Once upon a time","n_predict":48,"temperature":0,"stop":["Lily"],"stream":true}' "${AUTH[@]}")"
python3 - "$T/body" "$T/full" <<'EOF' 2>"$T/chkerr" && ok || bad "/completion stream: $(tail -1 "$T/chkerr")"
import json, sys
body = open(sys.argv[1]).read(); full = open(sys.argv[2]).read()
assert "[DONE]" not in body, "llama-server's own streams have no [DONE]"
ev = [json.loads(l[6:]) for l in body.split("\n") if l.startswith("data: ")]
assert all(not e["stop"] for e in ev[:-1]) and ev[-1]["stop"], "stop flags"
assert "".join(e["content"] for e in ev) == full[:full.find("Lily")], "content"
assert ev[-1]["stop_type"] == "word" and ev[-1]["stopping_word"] == "Lily", ev[-1]
assert sum(len(e["tokens"]) for e in ev) == ev[-1]["tokens_predicted"], "tokens"
EOF
"$SQLM" tokenize -m "$T/s.db" "Once upon a time" | head -1 >"$T/ids"
expect_status "/tokenize" 200 "$(post /tokenize '{"content":"Once upon a time","add_special":true}' "${AUTH[@]}")"
[ "$(chk get "$T/body" '" ".join(map(str, d["tokens"]))')" = "$(cat "$T/ids")" ] && ok || bad "/tokenize: $(cat "$T/body"), want $(cat "$T/ids")"
expect_status "/tokenize with_pieces" 200 "$(post /tokenize '{"content":"Once upon","with_pieces":true}' "${AUTH[@]}")"
[ "$(chk get "$T/body" '"".join(t["piece"] for t in d["tokens"])')" = " Once upon" ] && ok || bad "/tokenize pieces: $(cat "$T/body")"
expect_status "/detokenize" 200 "$(post /detokenize "{\"tokens\":[$ids]}" "${AUTH[@]}")"
[ "$(chk get "$T/body" 'd["content"]')" = "Once upon a time" ] && ok || bad "/detokenize: $(cat "$T/body")"
expect_status "/detokenize out of range" 400 "$(post /detokenize '{"tokens":[99999]}' "${AUTH[@]}")"
expect_status "/tokenize without content" 400 "$(post /tokenize '{}' "${AUTH[@]}")"
expect_status "/props" 200 "$(get /props "${AUTH[@]}")"
[ "$(chk get "$T/body" '[d["total_slots"], d["default_generation_settings"]["n_ctx"], len(d["chat_template"]) > 0]')" = "[1, 512, true]" ] && ok || bad "/props: $(cat "$T/body")"
expect_status "/slots" 200 "$(get /slots "${AUTH[@]}")"
[ "$(chk get "$T/body" '[d[0]["id"], d[0]["is_processing"]]')" = "[0, false]" ] && ok || bad "/slots: $(cat "$T/body")"
expect_status "/metrics" 200 "$(get /metrics "${AUTH[@]}")"
for m in prompt_tokens_total prompt_seconds_total tokens_predicted_total tokens_predicted_seconds_total requests_processing requests_deferred; do
    grep -q "^llamacpp:$m [0-9.]*$" "$T/body" && grep -q "^# TYPE llamacpp:$m " "$T/body" && ok || bad "/metrics lacks $m"
done
n1=$(awk '/^llamacpp:tokens_predicted_total/ { print $2 }' "$T/body")
post /v1/completions '{"prompt":"Lily","max_tokens":7,"ignore_eos":true}' "${AUTH[@]}" >/dev/null
get /metrics "${AUTH[@]}" >/dev/null
n2=$(awk '/^llamacpp:tokens_predicted_total/ { print $2 }' "$T/body")
[ "$n2" = $((n1 + 7)) ] && ok || bad "/metrics: tokens_predicted_total $n1 then $n2 after 7 more"
expect_status "/metrics needs the key" 401 "$(get /metrics)"

# --- GET /v1/models/{id}
expect_status "/v1/models/s.db" 200 "$(get /v1/models/s.db "${AUTH[@]}")"
[ "$(chk get "$T/body" '[d["id"], d["object"]]')" = '["s.db", "model"]' ] && ok || bad "/v1/models/s.db: $(cat "$T/body")"
expect_status "/v1/models/gpt-4" 404 "$(get /v1/models/gpt-4 "${AUTH[@]}")"
grep -q "gpt-4" "$T/body" && ok || bad "404 does not name the model: $(cat "$T/body")"

# --- CORS off (no --cors): a preflight has no Access-Control headers
curl -s -o /dev/null -D "$T/hdr" -w '%{http_code}' -X OPTIONS -H 'Origin: http://evil.example' "$URL/v1/completions" >"$T/code"
[ "$(cat "$T/code")" = 204 ] && ! grep -qi '^Access-Control-Allow-Origin' "$T/hdr" && ok || bad "preflight without --cors: $(cat "$T/code") $(cat "$T/hdr")"

# --- request framing: two Content-Length headers, a list, with Transfer-Encoding
python3 - "$URL" "$KEY" <<'EOF' 2>"$T/py.err" && ok || bad "request framing: $(cat "$T/py.err")"
import socket, sys
host, port = sys.argv[1][len("http://"):].rsplit(":", 1)
b = b'{"prompt":"Hi","max_tokens":2}'
def ask(hdrs):
    s = socket.create_connection((host, int(port)))
    s.settimeout(10)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sys.argv[2].encode() + b"\r\n" + hdrs + b"\r\n" + b)
    out = b""
    while True:
        d = s.recv(65536)
        if not d: break
        out += d
    s.close()
    return out
n = len(b)
for h, word in ((b"Content-Length: %d\r\nContent-Length: %d\r\n" % (n, n), b"Content-Length"),
                (b"Content-Length: %d\r\nContent-Length: 5\r\n" % n, b"Content-Length"),
                (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % n, b"Transfer-Encoding"),
                (b"Content-Length: %d, %d\r\n" % (n, n), None)):
    out = ask(h)
    assert out.startswith(b"HTTP/1.1 400"), (h, out[:200])
    assert word is None or word in out.split(b"\r\n\r\n", 1)[1], (h, out)
EOF

# --- idle connections: 64 from one address exhaust only that address's share
# (--conn-per-ip), and last --idle-timeout (3 s here)
python3 - "$URL" <<'EOF' 2>"$T/py.err" && ok || bad "idle connections: $(cat "$T/py.err")"
import socket, sys, time
host, port = sys.argv[1][len("http://"):].rsplit(":", 1)
def health(src=None):
    s = socket.socket()
    if src: s.bind((src, 0))
    s.settimeout(5)
    s.connect((host, int(port)))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = b""
    try:
        while True:
            d = s.recv(4096)
            if not d: break
            out += d
    except OSError:
        pass
    s.close()
    return out
idle = []
for i in range(64):
    try: idle.append(socket.create_connection((host, int(port))))
    except OSError: break
time.sleep(0.3)
t = time.time()
assert health("127.0.0.2").startswith(b"HTTP/1.1 200"), "another address is locked out"
assert time.time() - t < 2, "another address waited %.1f s" % (time.time() - t)
time.sleep(4)   # past --idle-timeout: the idle ones are closed
assert health().startswith(b"HTTP/1.1 200"), "the idle connections were not closed"
closed = sum(1 for s in idle if s.recv(1) == b"")
assert closed == len(idle), "%d of %d idle connections still open" % (len(idle) - closed, len(idle))
EOF
# a request sent a byte at a time slower than --idle-timeout is dropped
python3 - "$URL" <<'EOF' 2>"$T/py.err" && ok || bad "slow request: $(cat "$T/py.err")"
import socket, sys, time
host, port = sys.argv[1][len("http://"):].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(b"GET /health HTTP/1.1\r\n")
time.sleep(4.5)
s.settimeout(2)
try:
    s.sendall(b"Host: x\r\n\r\n")
    got = s.recv(100)
except OSError:
    got = b""
assert not got.startswith(b"HTTP/1.1 200"), "a request slower than --idle-timeout was answered"
EOF

stop_server main
[ "$(sha256sum < "$T/s.db")" = "$sum" ] && ok || bad "serve modified the model database"

# --- flags: a bad one fails with a message; the port in use is named
"$SQLM" serve -m "$T/s.db" --port 99999 >/dev/null 2>"$T/err" && bad "--port 99999 accepted" || \
    { grep -q "expected an integer" "$T/err" && ok || bad "--port 99999: $(cat "$T/err")"; }
"$SQLM" serve -m "$T/s.db" --max-body 12X >/dev/null 2>"$T/err" && bad "--max-body 12X accepted" || \
    { grep -q "expected a size" "$T/err" && ok || bad "--max-body 12X: $(cat "$T/err")"; }
start_server busy "$SQLM" serve -m "$T/s.db" --port 0 --max-body 4K --alias tiny --cors http://ui.example --chat-template chatml && {
    port=${URL##*:}
    "$SQLM" serve -m "$T/s.db" --port "$port" >/dev/null 2>"$T/err" && bad "a second server on port $port started" || \
        { grep -q "cannot listen on 127.0.0.1 port $port: Address already in use" "$T/err" && ok || bad "port in use: $(cat "$T/err")"; }
    expect_status "--alias" 200 "$(get /v1/models)"   # and no key needed without --api-key
    [ "$(chk get "$T/body" 'd["data"][0]["id"]')" = tiny ] && ok || bad "--alias: $(cat "$T/body")"
    head -c 5000 /dev/zero | tr '\0' ' ' >"$T/5k.json"
    expect_status "--max-body 4K" 413 "$(post /v1/completions "@$T/5k.json")"
    # a template with a tool role (chatml): tool messages render; developer as system
    expect_status "tool message, chatml" 200 "$(post /apply-template '{"messages":[{"role":"developer","content":"Be brief"},{"role":"user","content":"Hi"},{"role":"tool","content":"42","tool_call_id":"c1"}]}')"
    [ "$(chk get "$T/body" 'd["prompt"]')" = "$(printf '<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n')" ] \
        && ok || bad "chatml tool/developer rendering: $(cat "$T/body")"
    expect_status "tool message, chatml, chat" 200 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"},{"role":"tool","content":"42"}],"max_tokens":2}')"
    # --cors: a preflight from that origin gets the Access-Control headers
    # (the headers it asks for included), another origin none
    code=$(curl -s -o /dev/null -D "$T/hdr" -w '%{http_code}' -X OPTIONS -H 'Origin: http://ui.example' \
        -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization, content-type, x-stainless-os' \
        "$URL/v1/chat/completions")
    [ "$code" = 204 ] && grep -qi '^Access-Control-Allow-Origin: http://ui.example' "$T/hdr" \
        && grep -qi '^Access-Control-Allow-Methods: POST' "$T/hdr" && grep -qi '^Access-Control-Allow-Headers:.*x-stainless-os' "$T/hdr" \
        && ok || bad "--cors preflight: $code $(cat "$T/hdr")"
    curl -s -o /dev/null -D "$T/hdr" -H 'Origin: http://evil.example' -X OPTIONS "$URL/v1/chat/completions"
    grep -qi '^Access-Control-Allow-Origin' "$T/hdr" && bad "--cors answered another origin: $(cat "$T/hdr")" || ok
    curl -s -o "$T/body" -D "$T/hdr" -H 'Origin: http://ui.example' "$URL/v1/models"
    grep -qi '^Access-Control-Allow-Origin: http://ui.example' "$T/hdr" && ok || bad "--cors: no header on a GET: $(cat "$T/hdr")"
    curl -s -o "$T/body" -D "$T/hdr" -H 'Origin: http://ui.example' -d '{"prompt":"Hi","max_tokens":2,"stream":true}' "$URL/v1/completions"
    grep -qi '^Access-Control-Allow-Origin: http://ui.example' "$T/hdr" && ok || bad "--cors: no header on a stream: $(cat "$T/hdr")"
    # SIGINT stops it as SIGTERM does
    kill -INT "$PID"; wait "$PID"; rc=$?; PID=
    [ $rc = 0 ] && ok || bad "exit status $rc after SIGINT"
}

# --- a stop while a stream runs and two requests wait: the waiting ones get
# 503 with a JSON body, the stream its final chunk and [DONE], exit 0 (a
# model of stories110M's shapes, slow enough for the stream to be running)
"$SQLM" synth --like stories110M -o "$T/m.gguf" 2>/dev/null || bad "synth"
"$SQLM" import "$T/m.gguf" -o "$T/m.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
rm -f "$T/m.gguf"
start_server drain "$SQLM" serve -m "$T/m.db" --port 0 -c 256 -t 1 && {
    python3 - "$URL" "$PID" <<'EOF' 2>"$T/py.err" && ok || bad "stop while a stream runs: $(cat "$T/py.err")"
import json, os, signal, socket, subprocess, sys, time
host, port = sys.argv[1][len("http://"):].rsplit(":", 1)
body = b'{"prompt":"Once upon a time","max_tokens":240,"ignore_eos":true,"stream":true,"temperature":0}'
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
got = b""
while b"data: {" not in got:
    got += s.recv(4096)
assert got.startswith(b"HTTP/1.1 200"), got
waiters = [subprocess.Popen(["curl", "-s", "-w", "\n%{http_code}", "-d", '{"prompt":"Hi","max_tokens":2}',
                             sys.argv[1] + "/v1/completions"], stdout=subprocess.PIPE) for _ in range(2)]
time.sleep(0.5)
os.kill(int(sys.argv[2]), signal.SIGTERM)
s.settimeout(60)
while True:
    d = s.recv(65536)
    if not d: break
    got += d
text = got.decode("utf-8", "replace")
assert "data: [DONE]" in text, "no [DONE]: %r" % text[-300:]
events = [l for l in text.split("\n") if l.startswith("data: {")]
last = json.loads(events[-1][6:])
assert last["choices"][0]["finish_reason"] == "stop" and "timings" in last, last
assert last["timings"]["predicted_n"] < 240, "the stream was not cut by the stop"
for w in waiters:
    out, _ = w.communicate(timeout=60)
    b, code = out.decode().rsplit("\n", 1)
    assert code == "503", "a waiting request got %s: %r" % (code, b)
    e = json.loads(b)["error"]
    assert e["code"] == 503 and "stopping" in e["message"], e
EOF
    wait "$PID"; rc=$?; PID=
    [ $rc = 0 ] && ok || bad "drain: exit status $rc after SIGTERM"
    grep -q "cut short: the server stops" "$T/drain.err" && ok || bad "drain: no log line of the cut stream"
    grep -q -i "sanitizer\|segmentation\|core dumped" "$T/drain.err" && bad "drain: crashed: $(cat "$T/drain.err")" || ok
}

# --- under a memory budget, inside a cgroup whose limit (page cache
# included) is the budget, as tests/membudget.sh runs `sqlm run`
BUDGET_MB=64 B=$((64 * 1048576))
if [ "$NO_BUDGET" = --no-budget ]; then
    skipped "budget test" --no-budget
elif cgroup_make "budget test" $B; then
    "$SQLM" run -m "$T/m.db" -p "Once upon a time" -n 12 --temp 0 --ignore-eos -c 128 >"$T/run.out" 2>"$T/err" \
        || bad "unbudgeted run: $(cat "$T/err")"
    rm -f "$T/want"
    chk runtext "$T/run.out" "Once upon a time" "$T/want" || bad "unbudgeted run output"
    uncache "$T/m.db"
    if start_server budget "${IN_CGROUP[@]}" "$SQLM" serve -m "$T/m.db" --port 0 -c 128 --mem-budget ${BUDGET_MB}M; then
        expect_status "budget: completion" 200 "$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"ignore_eos":true}')"
        chk text "$T/body" 'd["choices"][0]["text"]' "$T/got" 2>/dev/null
        cmp -s "$T/want" "$T/got" && ok || bad "budget: text differs from the unbudgeted run: '$(cat "$T/got")'"
        expect_status "budget: stream" 200 "$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"ignore_eos":true,"stream":true}')"
        chk sse "$T/body" text "$T/sgot" >/dev/null 2>&1 && cmp -s "$T/want" "$T/sgot" && ok || bad "budget: streamed text differs"
        expect_status "budget: chat" 200 "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":6,"temperature":0}')"
        hwm=$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$PID/status")
        [ -n "$hwm" ] && [ "$hwm" -le "$B" ] && ok || bad "budget: peak RSS $hwm above the budget $B"
        echo "serve: under a ${BUDGET_MB} MB cgroup: peak RSS $((hwm / 1048576)) MB, cgroup max usage $(( $(cat "$CG/memory.max_usage_in_bytes") / 1048576 )) MB" >&2
        stop_server budget
    fi
fi

summary
