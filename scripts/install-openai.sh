#!/bin/sh
# Install the pinned official `openai` npm client into .deps/openai/ (outside
# git) for tests/serve-openai.mjs, which drives `sqlm serve` with it.  Node.js
# and npm come from Debian where they are missing.  Does nothing when the
# pinned version is there already.  Exits 1 with a message when npm or the
# registry cannot be reached: the client test then prints "skipped".
set -e
VERSION=6.49.0   # the last without "engines": node >= 22 (Debian 12 has 18; this machine 20)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/.deps/openai
PKGDIR=$DIR/node_modules/openai
if grep -q "\"version\": \"$VERSION\"" "$PKGDIR/package.json" 2>/dev/null && command -v node >/dev/null 2>&1; then
    exit 0
fi
if ! { command -v npm && command -v node; } >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "install-openai: installing nodejs and npm (apt-get)" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm; } >/dev/null 2>&1 ||
        echo "install-openai: apt-get install nodejs npm failed" >&2
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-openai: npm not found (apt-get install npm), the openai client test will be skipped" >&2
    exit 1
fi
mkdir -p "$DIR"
echo "install-openai: npm install openai@$VERSION into $DIR" >&2
if ! timeout 300 npm install --prefix "$DIR" --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
        "openai@$VERSION" >/dev/null 2>&1; then
    echo "install-openai: npm install openai@$VERSION failed, the openai client test will be skipped" >&2
    exit 1
fi
