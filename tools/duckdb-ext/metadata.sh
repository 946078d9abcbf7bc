#!/bin/sh
# tools/duckdb-ext/metadata.sh VERSION - print the 534-byte footer that
# DuckDB reads from the end of a loadable extension (appended to the shared
# library to make sqlm.duckdb_extension).  A WebAssembly custom section
# header (id 0, size 531 as LEB128, the 16-byte name "duckdb_signature",
# content size 512 as LEB128), then eight 32-byte NUL-padded fields, the
# last first: 1 "4" (the format), 2 the platform, 3 the C API version the
# extension needs (ABI C_STRUCT), 4 the extension's version, 5 the ABI type;
# 6-8 empty.  Then a 256-byte signature, zeros: DuckDB loads the file only
# with allow_unsigned_extensions set.
set -e
VERSION=$1
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) PLATFORM=linux_amd64 ;;
    Linux-aarch64) PLATFORM=linux_arm64 ;;
    *) echo "metadata.sh: no DuckDB platform name for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
# field TEXT: TEXT padded with NULs to 32 bytes
field() { printf '%s' "$1"; head -c $((32 - ${#1})) /dev/zero; }
printf '\000\223\004\020duckdb_signature\200\004'
field ""; field ""; field ""
field C_STRUCT
field "$VERSION"
field v1.2.0
field "$PLATFORM"
field 4
head -c 256 /dev/zero
