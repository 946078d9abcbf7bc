#!/bin/sh
# Install a pinned node-llama-cpp and its prebuilt CPU binaries
# (@node-llama-cpp/linux-x64: llama.cpp's libraries and the Node addon) into
# .deps/llama/ (outside git), for bench/llama.mjs, the llama.cpp peer of
# `make bench`.  Nothing is compiled: the install scripts are skipped and the
# optional GPU packages (CUDA, Vulkan) are left out; bench/llama.mjs loads
# with build: "never", so only the prebuilt CPU binaries are ever used.
#
# Does nothing when the pinned version is there already.  Exits 1 with a
# message when npm or the registry cannot be reached: the benchmark then
# prints sqlm's figures alone.  Prints the package folder on success.
set -e
VERSION=3.22.1      # node-llama-cpp; the binary package carries the same version
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/.deps/llama
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) BIN=@node-llama-cpp/linux-x64 ;;
    Linux-aarch64) BIN=@node-llama-cpp/linux-arm64 ;;
    *) echo "install-llamacpp: no prebuilt llama.cpp package for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
PKG=$DIR/node_modules/node-llama-cpp
installed() {
    grep -q "\"version\": \"$VERSION\"" "$PKG/package.json" 2>/dev/null &&
        grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/$BIN/package.json" 2>/dev/null
}
if installed; then
    echo "$PKG"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-llamacpp: node/npm not found (apt-get install nodejs npm), llama.cpp peer not installed" >&2
    exit 1
fi
mkdir -p "$DIR"
echo "install-llamacpp: npm install node-llama-cpp@$VERSION $BIN@$VERSION into $DIR" >&2
if ! timeout 600 npm install --prefix "$DIR" --no-save --no-package-lock --ignore-scripts \
        --omit=optional --no-audit --no-fund --fetch-retries=1 --fetch-timeout=60000 \
        "node-llama-cpp@$VERSION" "$BIN@$VERSION" >&2; then
    echo "install-llamacpp: npm install failed, llama.cpp peer not installed" >&2
    exit 1
fi
installed || { echo "install-llamacpp: $PKG or $BIN missing after install" >&2; exit 1; }
echo "$PKG"
