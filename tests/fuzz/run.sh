#!/bin/sh
# Build and run a libFuzzer harness (clang):
#   tests/fuzz/run.sh [seconds]              the chat-template fuzzer, default 600 s
#   tests/fuzz/run.sh tokenizer [seconds]    the tokenizers and their file readers
# New inputs go to a scratch dir (build/fuzz/corpus, build/fuzz/corpus-tokenizer).
# Crashes land in build/fuzz/; rerun one with: build/fuzz/fuzz-template FILE
# (the tokenizer fuzzer from the repository root: build/fuzz/fuzz-tokenizer FILE).
# To refresh a kept corpus afterwards (small, deduplicated):
#   build/fuzz/fuzz-template -merge=1 NEWDIR tests/fuzz/corpus-template build/fuzz/corpus
#   build/fuzz/fuzz-tokenizer -merge=1 NEWDIR tests/fuzz/corpus-tokenizer build/fuzz/corpus-tokenizer
set -e
cd "$(dirname "$0")/../.."
target=template
case "$1" in
template|tokenizer) target=$1; shift ;;
esac
secs=${1:-600}
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -march=native -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
if [ "$target" = tokenizer ]; then
    mkdir -p build/fuzz/corpus-tokenizer
    clang $CFLAGS -o build/fuzz/fuzz-tokenizer tests/fuzz/fuzz-tokenizer.c \
        src/tok/tokenizer.c src/tok/tok_json.c src/tok/spm_model.c src/tok/llama2c_tok.c \
        src/tok/unicode.c src/tok/unicode_data.c src/util/buf.c src/model/vocab.c \
        -lsqlite3 -ljansson -lm
    # from the repository root: the models are at ../shared/models
    exec build/fuzz/fuzz-tokenizer -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
        -max_len=4096 -artifact_prefix=build/fuzz/ build/fuzz/corpus-tokenizer tests/fuzz/corpus-tokenizer
fi
mkdir -p build/fuzz/corpus
clang $CFLAGS -o build/fuzz/fuzz-template \
    tests/fuzz/fuzz-template.c src/chat/jinja.c src/chat/chat.c src/util/buf.c
cd build/fuzz
exec ./fuzz-template -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -dict=../../tests/fuzz/template.dict corpus ../../tests/fuzz/corpus-template
