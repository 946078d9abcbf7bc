#!/bin/sh
# Build and run the chat-template fuzzer (libFuzzer, clang).
#   tests/fuzz/run.sh [seconds]     default 600; new inputs go to a scratch dir
# Crashes land in build/fuzz/; rerun one with: build/fuzz/fuzz-template FILE
# To refresh the kept corpus afterwards (small, deduplicated):
#   build/fuzz/fuzz-template -merge=1 NEWDIR tests/fuzz/corpus-template build/fuzz/corpus
set -e
cd "$(dirname "$0")/../.."
secs=${1:-600}
mkdir -p build/fuzz/corpus
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -o build/fuzz/fuzz-template \
    tests/fuzz/fuzz-template.c src/tok/jinja.c src/tok/chat.c src/util/buf.c
cd build/fuzz
exec ./fuzz-template -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -dict=../../tests/fuzz/template.dict corpus ../../tests/fuzz/corpus-template
