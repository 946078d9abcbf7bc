#!/bin/sh
# Install what sqlm needs to build and test on Debian 12, once: the compiler
# (gcc, whose libasan/libubsan serve the ASan/UBSan tests), SQLite, jansson
# and libmicrohttpd (sqlm serve) development files, curl for the server's
# tests, and python3 for the test scripts' JSON checks (tests/*.sh).
# Uses sudo when not root.  Does nothing when all is there.
set -e
PKGS="build-essential libsqlite3-dev libjansson-dev libmicrohttpd-dev sqlite3 curl python3"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "install-deps: installing$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
