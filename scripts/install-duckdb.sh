#!/bin/sh
# Install the pinned DuckDB C library into .deps/duckdb/ (outside git) and
# print its path.  libduckdb.so comes from the npm package
# @duckdb/node-bindings-<os>-<arch>, which ships the library and no header:
# sqlm declares the C API subset it uses (src/db/duckdb_api.h) and loads the
# library with dlopen at run time, so nothing else needs it at build time.
#
# Also installs the Node client @duckdb/node-api of the same version into
# .deps/duckdb-node/ (a prefix of its own, so that npm never prunes the
# library's install): tests/duckdb-ext.sh loads the DuckDB extension from it.
#
# Does nothing when the pinned version is there already.  Exits 1 with a
# message when npm or the registry cannot be reached: sqlm then runs without
# the DuckDB engine and its tests print "skipped".
set -e
VERSION=1.5.6-r.1        # DuckDB 1.5.6; change together with the notes in docs/duckdb.md
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/.deps/duckdb
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) PKG=@duckdb/node-bindings-linux-x64 ;;
    Linux-aarch64) PKG=@duckdb/node-bindings-linux-arm64 ;;
    *) echo "install-duckdb: no prebuilt DuckDB package for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
PKGDIR=$DIR/node_modules/$PKG
LIB=$PKGDIR/libduckdb.so
CLIENT=@duckdb/node-api
CLIENT_DIR=$ROOT/.deps/duckdb-node
# have DIR PKG: the pinned version of PKG is installed under DIR
have() { grep -q "\"version\": \"$VERSION\"" "$1/node_modules/$2/package.json" 2>/dev/null; }
if [ -f "$LIB" ] && have "$DIR" "$PKG" && have "$CLIENT_DIR" "$CLIENT"; then
    echo "$LIB"
    exit 0
fi
# npm from Debian where it is missing (a fresh machine), so the DuckDB tests run
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "install-duckdb: installing npm (apt-get)" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm; } >/dev/null 2>&1 ||
        echo "install-duckdb: apt-get install npm failed" >&2
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-duckdb: npm not found (apt-get install npm), DuckDB engine not installed" >&2
    exit 1
fi
# npm_install DIR PKG: the pinned version of PKG into the prefix DIR
npm_install() {
    mkdir -p "$1"
    echo "install-duckdb: npm install $2@$VERSION into $1" >&2
    timeout 300 npm install --prefix "$1" --no-save --no-package-lock --ignore-scripts \
        --no-audit --no-fund --fetch-retries=1 --fetch-timeout=30000 "$2@$VERSION" >&2
}
if ! { [ -f "$LIB" ] && have "$DIR" "$PKG"; } && ! npm_install "$DIR" "$PKG"; then
    echo "install-duckdb: npm install failed, DuckDB engine not installed" >&2
    exit 1
fi
[ -f "$LIB" ] || { echo "install-duckdb: $LIB missing after install" >&2; exit 1; }
if ! have "$CLIENT_DIR" "$CLIENT" && ! npm_install "$CLIENT_DIR" "$CLIENT"; then
    echo "install-duckdb: npm install $CLIENT failed: tests/duckdb-ext.sh will fail" >&2
    exit 1
fi
echo "$LIB"
