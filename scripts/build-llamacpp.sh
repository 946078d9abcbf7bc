#!/bin/sh
# Build llama.cpp (commit c392e509, from ../shared/peers/) natively into
# .deps/llama.cpp/ (outside git): the peer of `make bench` (build/llamabench)
# and the independent reference of the tests.  Takes 3-5 minutes on 2 cores
# the first time, nothing afterwards.  Prints the folder on success.
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=$ROOT/../shared/peers
DEST=$ROOT/.deps/llama.cpp
if [ ! -x "$PEERS/build-llamacpp.sh" ]; then
    echo "build-llamacpp: $PEERS/build-llamacpp.sh not found (llama.cpp's source is expected there)" >&2
    exit 1
fi
if [ ! -x "$DEST/bin/llama-bench" ]; then
    echo "build-llamacpp: building llama.cpp into $DEST (3-5 minutes)" >&2
    "$PEERS/build-llamacpp.sh" "$DEST" >&2
fi
echo "$DEST"
