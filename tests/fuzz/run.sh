#!/bin/sh
# Build and run a libFuzzer harness (clang):
#   tests/fuzz/run.sh [seconds]              the chat-template fuzzer, default 600 s
#   tests/fuzz/run.sh NAME [seconds]         NAME: template, tokenizer (the tokenizers
#                                            and their file readers), or a model file
#                                            format: gguf, safetensors, llama2c, modeldb
#                                            (tests/fuzz/modelfuzz.h)
#   tests/fuzz/run.sh all [seconds]          each in turn, seconds each (make fuzz)
# New inputs go to a scratch dir (build/fuzz/corpus, build/fuzz/corpus-NAME).
# Crashes land in build/fuzz/; rerun one with: build/fuzz/fuzz-template FILE
# (the others from the repository root: build/fuzz/fuzz-NAME FILE).
# To refresh a kept corpus afterwards (small, deduplicated):
#   build/fuzz/fuzz-template -merge=1 NEWDIR tests/fuzz/corpus-template build/fuzz/corpus
#   build/fuzz/fuzz-NAME -merge=1 NEWDIR tests/fuzz/corpus-NAME build/fuzz/corpus-NAME
set -e
cd "$(dirname "$0")/../.."
target=template
case "$1" in
template|tokenizer|gguf|safetensors|llama2c|modeldb|all) target=$1; shift ;;
esac
secs=${1:-600}
if [ "$target" = all ]; then
    for t in template tokenizer gguf safetensors llama2c modeldb; do
        echo "== fuzz $t, $secs s"
        "$0" $t "$secs"
    done
    exit 0
fi
SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -march=native -fsanitize=fuzzer $SAN"
mkdir -p build/fuzz
case $target in
tokenizer)
    mkdir -p build/fuzz/corpus-tokenizer
    clang $CFLAGS -o build/fuzz/fuzz-tokenizer tests/fuzz/fuzz-tokenizer.c \
        src/tok/tokenizer.c src/tok/tok_json.c src/tok/spm_model.c src/tok/llama2c_tok.c \
        src/tok/unicode.c src/tok/unicode_data.c src/util/buf.c src/model/vocab.c \
        -lsqlite3 -ljansson -lm
    # from the repository root: the models are at ../shared/models
    exec build/fuzz/fuzz-tokenizer -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
        -max_len=4096 -artifact_prefix=build/fuzz/ build/fuzz/corpus-tokenizer tests/fuzz/corpus-tokenizer
    ;;
gguf|safetensors|llama2c|modeldb)
    # the whole library, instrumented (build/fuzz/lib, kept between runs; the
    # warnings are gcc's business in the ordinary build)
    make -s B=build/fuzz/lib CC=clang \
        CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -march=native -pthread -fPIC -w -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $SAN" \
        build/fuzz/lib/libsqlm.a
    T=$(echo $target | tr a-z A-Z)
    clang $CFLAGS -DMODELFUZZ_TARGET=MF_$T -o build/fuzz/fuzz-$target tests/fuzz/fuzz-model.c \
        build/fuzz/lib/libsqlm.a -lsqlite3 -ljansson -lm -ldl -pthread
    mkdir -p build/fuzz/corpus-$target
    # a model database is larger than the other inputs (the seed: 24 KB)
    maxlen=16384
    [ $target = modeldb ] && maxlen=65536
    exec build/fuzz/fuzz-$target -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=$maxlen -artifact_prefix=build/fuzz/$target- build/fuzz/corpus-$target tests/fuzz/corpus-$target
    ;;
esac
mkdir -p build/fuzz/corpus
clang $CFLAGS -o build/fuzz/fuzz-template \
    tests/fuzz/fuzz-template.c src/chat/jinja.c src/chat/chat.c src/util/buf.c
cd build/fuzz
exec ./fuzz-template -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -dict=../../tests/fuzz/template.dict corpus ../../tests/fuzz/corpus-template
