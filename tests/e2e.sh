#!/bin/bash
# tests/e2e.sh SQLM - the command line end to end on SQLite: import, greedy
# generation against the golden text, the printed SQL program, and bad input
# (wrong flags, missing or damaged files, a full disk) failing with a clear
# message and without leaving a database that looks complete.
set -u
SQLM=$(realpath "$1")
M=../shared/models
G=../shared/golden
NAME=e2e
. "$(dirname "$0")/lib.sh"

# --- import and generate: the golden text of stories260K
"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
want=$(python3 -c "import json,sys
for l in open('$G/generation_stories260K.jsonl'):
    d=json.loads(l)
    if d['prompt']=='Once upon a time': sys.stdout.write(d['prompt']+d['text'])")
got=$("$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 64 --temp 0 --ignore-eos 2>"$T/err")
[ "$got" = "$want" ] && ok || bad "run: text differs from the golden:
got:  $got
want: $want"
grep -q "^generation: 64 tokens, .* tok/s" "$T/err" && ok || bad "run: no generation timing line"
grep -q "^peak RSS: " "$T/err" && ok || bad "run: no peak RSS line"

# examples/generate, a program on the public API alone: the same greedy text
EX=examples/generate   # from the repository root, where the tests run
if [ -x "$EX" ]; then
    got=$("$EX" "$T/s.db" "Once upon a time" 64 2>"$T/err")
    [ "$got" = "$want" ] && ok || bad "examples/generate: text differs from the golden: $got $(cat "$T/err")"
else
    bad "examples/generate missing (make builds it)"
fi

# sampling is repeatable with a seed: each run must succeed and print the
# prompt and 20 generated tokens after it (--ignore-eos), and two runs with
# seed 7 must print the same text; seed 8 must print another (the seed is
# used), so two failed runs, or two empty outputs, cannot pass as equal
seeded() {   # seeded SEED OUT: a sampled run, its stdout in OUT; false on failure
    if ! "$SQLM" run -m "$T/s.db" -p "Lily" -n 20 --temp 0.9 --ignore-eos -s "$1" >"$2" 2>"$T/err"; then
        bad "seeded run -s $1 failed: $(cat "$T/err")"; return 1
    fi
    grep -q "^generation: 20 tokens, " "$T/err" || { bad "seeded run -s $1: not 20 tokens: $(cat "$T/err")"; return 1; }
    local out; out=$(cat "$2")
    [ "${out#Lily}" != "$out" ] && [ ${#out} -gt 4 ] \
        || { bad "seeded run -s $1: output is not the prompt and the text after it: '$out'"; return 1; }
}
if seeded 7 "$T/seed7a" && seeded 7 "$T/seed7b" && seeded 8 "$T/seed8"; then
    cmp -s "$T/seed7a" "$T/seed7b" && ok || bad "seeded sampling differs between runs:
$(cat "$T/seed7a")
$(cat "$T/seed7b")"
    cmp -s "$T/seed7a" "$T/seed8" && bad "seeds 7 and 8 gave the same text: $(cat "$T/seed8")" || ok
fi

# a run never modifies the model database (a run that succeeds)
before=$(sha256sum < "$T/s.db")
"$SQLM" run -m "$T/s.db" -p "x" -n 4 >/dev/null 2>"$T/err" && ok || bad "run -p x failed: $(cat "$T/err")"
[ "$(sha256sum < "$T/s.db")" = "$before" ] && ok || bad "run modified the model database"

# weight tiles read in place or copied by SQLite, on 1 or 2 threads: the same text
got=$("$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 64 --temp 0 --ignore-eos --no-inplace -t 1 2>"$T/err")
[ "$got" = "$want" ] && ok || bad "run --no-inplace: text differs from the golden: $got"
got=$("$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 64 --temp 0 --ignore-eos --split-attention 2>"$T/err")
[ "$got" = "$want" ] && ok || bad "run --split-attention: text differs from the golden: $got"
got=$("$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 64 --temp 0 --ignore-eos --no-cte-merge 2>"$T/err")
[ "$got" = "$want" ] && ok || bad "run --no-cte-merge: text differs from the golden: $got"
got=$("$SQLM" run -m "$T/s.db" -p "Once upon a time" -n 64 --temp 0 --ignore-eos -t 2 2>"$T/err")
[ "$got" = "$want" ] && ok || bad "run -t 2: text differs from the golden: $got"
grep -q "note:" "$T/err" && bad "run: unexpected note: $(cat "$T/err")" || ok

# the SQL program: products are queries over weight tables (their rowids when
# the tiles are read in place, their BLOBs when SQLite copies them)
"$SQLM" sql -m "$T/s.db" >"$T/prog.sql" || bad "sql failed"
grep -q "SELECT sqlm_matmul('blk0_qkv', w.id,\$" "$T/prog.sql" \
    && grep -q "CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l0_attn_norm x) END) FROM blk0_qkv w" "$T/prog.sql" \
    && grep -q "INSERT INTO kv0" "$T/prog.sql" && ok || bad "sql: program lacks weight-table products"
grep -q "'kv0', k.pos, 8, 4, 8) FROM kv0 k)) p" "$T/prog.sql" && grep -q "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kv0 USING sqlm_kv" "$T/prog.sql" && ok \
    || bad "sql: attention is not one aggregate over the cache"
"$SQLM" sql -m "$T/s.db" --no-inplace >"$T/prog.sql" || bad "sql --no-inplace failed"
grep -q "sqlm_matvec(w.v, x.v" "$T/prog.sql" && grep -q "FROM blk0_qkv w" "$T/prog.sql" \
    && ok || bad "sql --no-inplace: program lacks weight-table products"
# a CTE is MATERIALIZED where a copying product reads it once per weight row,
# and left to SQLite (a co-routine) where the in-place product reads it once
grep -q "WITH l0_attn_norm(pos, v) AS MATERIALIZED (" "$T/prog.sql" && ok \
    || bad "sql --no-inplace: the copying product's input is not MATERIALIZED"
"$SQLM" sql -m "$T/s.db" >"$T/prog.sql" || bad "sql failed"
grep -q "WITH l0_attn_norm(pos, v) AS (" "$T/prog.sql" && ok \
    || bad "sql: the in-place product's input is MATERIALIZED"

# tokenize
[ "$("$SQLM" tokenize -m "$T/s.db" "Once upon a time" | head -1)" = "1 403 407 261 378" ] && ok \
    || bad "tokenize: wrong ids"
[ "$("$SQLM" tokenize -m "$T/s.db" --no-special "Once upon a time" | head -1)" = "403 407 261 378" ] && ok \
    || bad "tokenize --no-special: wrong ids"

# tokenize straight from tokenizer files: the golden ids (first corpus string)
for spec in "Llama-3:llama3-tokenizer/tokenizer.json" "Qwen3:qwen3-tokenizer/tokenizer.json" \
            "Llama-2-spm:llama2-tokenizer/tokenizer.model" "Llama-2-spm:llama2-tokenizer/tokenizer.bin" \
            "SmolLM2-135M:SmolLM2-tokenizer/tokenizer.json" "stories260K-tok512:stories260K/tok512.bin"; do
    name=${spec%%:*} file=${spec#*:}
    text=$(python3 -c "import json; print(json.loads(open('$G/tokenizer_$name.jsonl').readline())['text'], end='')")
    want=$(python3 -c "import json; d=json.loads(open('$G/tokenizer_$name.jsonl').readline()); print(' '.join(map(str, d['ids_with_special'])))")
    got=$("$SQLM" tokenize -m "$M/$file" "$text" 2>&1 | head -1)
    [ "$got" = "$want" ] && ok || bad "tokenize $file: got '$got', want '$want'"
done
expect_error "tokenize missing file" "nope.json" "$SQLM" tokenize -m "$T/nope.json" hi

# chat: a conversation piped in, rendered with the model's (guessed) template
printf 'Hello there\nTell me a story\n' | "$SQLM" chat -m "$T/s.db" -n 8 --temp 0 --system "Be kind" \
    --verbose-prompt >"$T/chat.out" 2>"$T/chat.err" && ok || bad "chat failed: $(cat "$T/chat.err")"
[ "$(grep -c '\[INST\]' "$T/chat.err")" -ge 3 ] && grep -q "Be kind" "$T/chat.err" && ok \
    || bad "chat: prompt not rendered with the llama2 template and system prompt"
[ "$(wc -l < "$T/chat.out")" -ge 2 ] && ok || bad "chat: expected two replies"
expect_error "chat bad template" "unknown --chat-template" "$SQLM" chat -m "$T/s.db" --chat-template nope

# --- sqlm bench: one line a test, in llama-bench's terms
"$SQLM" bench -m "$T/s.db" -p 8 -n 4 -r 2 -t 1 >"$T/bench" 2>"$T/err" || bad "bench failed: $(cat "$T/err")"
grep -Eq "^pp8 t=1 [0-9]+\.[0-9]+ tok/s$" "$T/bench" && grep -Eq "^tg4 t=1 [0-9]+\.[0-9]+ tok/s [0-9]+\.[0-9]+ GB/s$" "$T/bench" \
    && grep -q "^weights: .* MB per token$" "$T/bench" && grep -q "^peak RSS: .* MB$" "$T/bench" && ok \
    || bad "bench: output lacks the pp/tg/weights/RSS lines: $(cat "$T/bench")"
"$SQLM" bench -m "$T/s.db" -p 0 -n 3 -r 1 >"$T/bench" 2>&1 && [ "$(grep -c '^pp\|^tg3 ' "$T/bench")" = 1 ] && ok \
    || bad "bench -p 0: expected the tg line alone: $(cat "$T/bench")"
expect_error "bench bad -p" "expected an integer" "$SQLM" bench -m "$T/s.db" -p abc
expect_error "bench bad -r" "expected an integer" "$SQLM" bench -m "$T/s.db" -r 0
expect_error "bench bad -n" "expected an integer" "$SQLM" bench -m "$T/s.db" -n x
expect_error "bench nothing" "nothing to time" "$SQLM" bench -m "$T/s.db" -p 0 -n 0
expect_error "bench too long" "exceed the model's context" "$SQLM" bench -m "$T/s.db" -p 100000
expect_error "bench no model" "no model database" "$SQLM" bench -p 8
expect_error "bench stray arg" "unexpected argument 'x.db'" "$SQLM" bench x.db
expect_error "bench unknown flag" "unknown option '--bogus'" "$SQLM" bench -m "$T/s.db" --bogus

# --- the other two model formats import and run
"$SQLM" import $M/TinyStories-656K -o "$T/st.db" 2>/dev/null && ok || bad "import safetensors folder"
"$SQLM" import $M/TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf -o "$T/q8.db" 2>/dev/null && ok \
    || bad "import gguf"
"$SQLM" run -m "$T/q8.db" -p "The little dog" -n 8 --temp 0 >/dev/null 2>&1 && ok || bad "run gguf"

# --- a sharded safetensors checkpoint (model.safetensors.index.json and two
# shards, written from TinyStories-656K as Hugging Face writes them) gives
# the golden text, as the single file does
shard() {   # shard DIR: the checkpoint in DIR, its tensors split in two files
    mkdir -p "$1"
    cp $M/TinyStories-656K/*.json "$1/"
    python3 - "$M/TinyStories-656K/model.safetensors" "$1" <<'PY'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
names = sorted(k for k in hdr if k != "__metadata__")
parts = [names[: len(names) // 2], names[len(names) // 2 :]]
wmap = {}
for i, part in enumerate(parts):
    fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(parts))
    h, blob = {}, b""
    for k in part:
        b, e = hdr[k]["data_offsets"]
        h[k] = dict(hdr[k], data_offsets=[len(blob), len(blob) + e - b])
        blob += data[b:e]
        wmap[k] = fname
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    open(out + "/" + fname, "wb").write(struct.pack("<Q", len(hb)) + hb + blob)
json.dump({"metadata": {"total_size": len(data)}, "weight_map": wmap}, open(out + "/model.safetensors.index.json", "w"))
PY
}
shard "$T/sharded"
rm -f "$T/sharded/model.safetensors"
golden656=$(python3 -c "import json
d=json.loads(open('$G/generation_TinyStories-656K-F32.jsonl').readline()); print(d['text'], end='')")
if "$SQLM" import "$T/sharded" -o "$T/sh.db" 2>"$T/err"; then
    got=$("$SQLM" run -m "$T/sh.db" -p "" -n 64 --temp 0 --ignore-eos 2>/dev/null)
    [ "$got" = "$golden656" ] && ok || bad "sharded checkpoint: text differs from the golden: $got"
else
    bad "import of a sharded checkpoint: $(cat "$T/err")"
fi
rm -f "$T/sharded/model-00002-of-00002.safetensors"
expect_error "sharded: a missing shard" "model-00002-of-00002.safetensors" "$SQLM" import "$T/sharded" -o "$T/sh2.db"
[ ! -e "$T/sh2.db" ] && ok || bad "a failed sharded import left $T/sh2.db"
shard "$T/sharded3"
python3 - "$T/sharded3/model.safetensors.index.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
k = sorted(d["weight_map"])[0]; d["weight_map"][k] = "model-00002-of-00002.safetensors"
json.dump(d, open(p, "w"))
PY
expect_error "sharded: a tensor in another shard" "the index puts it in" "$SQLM" import "$T/sharded3" -o "$T/sh3.db"
sed -i 's/model-00001-of-00002.safetensors/..\/x.safetensors/' "$T/sharded3/model.safetensors.index.json"
expect_error "sharded: a shard outside the folder" "not a .safetensors file name" "$SQLM" import "$T/sharded3" -o "$T/sh3.db"

# --- DuckDB, pure SQL (skipped when libduckdb.so cannot be loaded)
golden_text=$(python3 -c "import json,sys
for l in open('$G/generation_stories260K.jsonl'):
    d=json.loads(l)
    if d['prompt']=='Once upon a time': sys.stdout.write(d['prompt']+d['text'])")
if "$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.duck" --engine duckdb 2>"$T/err"; then
    # no --engine: the engine that wrote the file
    got=$("$SQLM" run -m "$T/s.duck" -p "Once upon a time" -n 64 --temp 0 --ignore-eos 2>"$T/err")
    [ "$got" = "$golden_text" ] && ok || bad "duckdb run: text differs from the golden:
got:  $got
err:  $(cat "$T/err")"
    # native mode on the same file: sqlm's C functions registered
    got=$("$SQLM" run -m "$T/s.duck" --native -p "Once upon a time" -n 64 --temp 0 --ignore-eos 2>"$T/err")
    [ "$got" = "$golden_text" ] && ok || bad "duckdb run --native: text differs from the golden:
got:  $got
err:  $(cat "$T/err")"
    expect_error "sqlite --native" "engine sqlite has no native mode" "$SQLM" run -m "$T/s.db" --native -p x -n 1
    before=$(sha256sum < "$T/s.duck")
    "$SQLM" run -m "$T/s.duck" -p "x" -n 4 --engine duckdb >/dev/null 2>"$T/err" && ok \
        || bad "duckdb run -p x failed: $(cat "$T/err")"
    [ "$(sha256sum < "$T/s.duck")" = "$before" ] && ok || bad "duckdb run modified the model database"
    "$SQLM" sql -m "$T/s.duck" -p "Once upon a time" >"$T/duck.sql" || bad "duckdb sql failed"
    grep -q "list_dot_product(w.v, x.v)" "$T/duck.sql" && grep -q "INSERT INTO t_in(pos, tok) VALUES (0, 1)" "$T/duck.sql" \
        && ! grep -q "sqlm_" "$T/duck.sql" && ok || bad "duckdb sql: not a pure-SQL program with its prompt"
    [ "$("$SQLM" tokenize -m "$T/s.duck" "Once upon a time" | head -1)" = "1 403 407 261 378" ] && ok \
        || bad "duckdb tokenize: wrong ids"
    expect_error "duckdb import --type q8_0" "is not a multiple of the Q8_0 block" "$SQLM" import \
        $M/stories260K/stories260K.bin -o "$T/q.duck" --engine duckdb --type q8_0
    [ ! -e "$T/q.duck" ] && ok || bad "a failed duckdb import left a database"
    # the passes' switches: every layout and CTE merging on or off give the golden text
    for layout in "--no-fuse --row2col off" "--row2col on --no-fuse" "--row2col on" "--row2col split" \
        "--row2col split-rows"; do
        # shellcheck disable=SC2086
        "$SQLM" import $M/stories260K/stories260K.bin -o "$T/p.duck" --engine duckdb $layout 2>/dev/null
        for cte in "" "--no-cte-merge"; do
            # shellcheck disable=SC2086
            got=$("$SQLM" run -m "$T/p.duck" -p "Once upon a time" -n 64 --temp 0 --ignore-eos -t 2 $cte 2>/dev/null)
            [ "$got" = "$golden_text" ] && ok || bad "duckdb import $layout, run $cte: text differs from the golden"
        done
        rm -f "$T/p.duck"
    done
elif grep -q "cannot load libduckdb.so" "$T/err"; then
    skipped duckdb "DuckDB library not found"
else
    bad "duckdb import: $(cat "$T/err")"
fi
expect_error "sqlite import --row2col on" "ROW2COL needs float rows" "$SQLM" import $M/stories260K/stories260K.bin \
    -o "$T/r2c.db" --row2col on
expect_error "duckdb library missing" "engine duckdb: cannot load libduckdb.so (run scripts/install-duckdb.sh or set SQLM_DUCKDB_LIB)" \
    env SQLM_DUCKDB_LIB=/nonexistent/libduckdb.so "$SQLM" import $M/stories260K/stories260K.bin -o "$T/nolib.duck" --engine duckdb
[ ! -e "$T/nolib.duck" ] && ! ls "$T"/nolib.duck.tmp-* >/dev/null 2>&1 && ok || bad "a failed duckdb import left files"

# --- bad input: a clear message, nothing half-written
expect_error "no command args" "usage" "$SQLM"
expect_error "unknown command" "unknown command 'frob'" "$SQLM" frob
expect_error "unknown option" "unknown option '--bogus'" "$SQLM" run -m "$T/s.db" --bogus
expect_error "bad number" "expected a number" "$SQLM" run -m "$T/s.db" --temp abc
expect_error "negative threads" "expected an integer" "$SQLM" run -m "$T/s.db" -t -3
expect_error "missing -m" "no model database" "$SQLM" run -p hi
expect_error "missing db" "cannot open model database" "$SQLM" run -m "$T/nope.db"
expect_error "unknown engine" "unknown engine 'oracle'" "$SQLM" run -m "$T/s.db" --engine oracle
expect_error "context too long" "context" "$SQLM" run -m "$T/s.db" -c 100000
expect_error "import no output" "no output database" "$SQLM" import $M/stories260K/stories260K.bin
expect_error "import missing file" "nope.gguf" "$SQLM" import "$T/nope.gguf" -o "$T/x.db"

head -c 500000 $M/stories260K/stories260K.bin > "$T/trunc.bin"
cp $M/stories260K/tok512.bin "$T/"
expect_error "truncated checkpoint" "trunc.bin" "$SQLM" import "$T/trunc.bin" -o "$T/x.db"
head -c 300000 $M/TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf > "$T/trunc.gguf"
expect_error "truncated gguf" "trunc.gguf" "$SQLM" import "$T/trunc.gguf" -o "$T/x.db"
[ ! -e "$T/x.db" ] && ok || bad "a failed import left $T/x.db"
ls "$T"/x.db.tmp-* >/dev/null 2>&1 && bad "a failed import left a temporary file" || ok

sqlite3 "$T/plain.db" "CREATE TABLE t(x); INSERT INTO t VALUES (1);"
expect_error "not an sqlm db" "not an sqlm model database" "$SQLM" run -m "$T/plain.db"
cp "$T/s.db" "$T/half.db"
sqlite3 "$T/half.db" "DELETE FROM sqlm_meta WHERE key = 'complete'"
expect_error "incomplete db" "incomplete database" "$SQLM" run -m "$T/half.db"
head -c 4096 "$T/s.db" > "$T/cut.db"
expect_error "truncated db" "cut.db" "$SQLM" run -m "$T/cut.db" -p hi

# a full disk: the file size limit makes writes fail with EFBIG part-way
( trap '' XFSZ; ulimit -f 256; exec "$SQLM" import $M/stories260K/stories260K.bin -o "$T/full.db" ) \
    >/dev/null 2>"$T/err" && bad "import under a 256 KB file limit succeeded" || ok
grep -q "full.db" "$T/err" && ok || bad "full disk: message does not name the file: $(cat "$T/err")"
[ ! -e "$T/full.db" ] && ! ls "$T"/full.db.tmp-* >/dev/null 2>&1 && ok || bad "full disk left files"

summary
