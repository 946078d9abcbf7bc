#!/bin/bash
# tests/golden-sql.sh SQLM [--update] - the SQL programs `sqlm sql -m DB`
# prints, compared byte for byte with tests/golden-sql/*.sql: one program per
# dialect and layout (SQLite: stories260K default, --no-cte-merge,
# --split-attention, TinyStories-656K Q8_0 GGUF; DuckDB pure SQL and DuckDB
# with sqlm's native functions: stories260K; DuckDB ROW2COL layouts). A difference prints a unified
# diff and fails; a missing golden file fails. With --update (make
# golden-sql) the files are rewritten instead: review the diff with git.
# The DuckDB cases are skipped when libduckdb.so cannot be loaded.
set -u
SQLM=$(realpath "$1")
UPDATE=${2:-}
M=../shared/models
D=$(cd "$(dirname "$0")" && pwd)/golden-sql
NAME=golden-sql
. "$(dirname "$0")/lib.sh"

# check NAME CMD...: CMD's stdout against $D/NAME.sql
check() {
    local name=$1; shift
    if ! "$@" >"$T/$name.sql" 2>"$T/err"; then bad "$name: $* failed: $(cat "$T/err")"; return; fi
    if [ "$UPDATE" = --update ]; then
        cp "$T/$name.sql" "$D/$name.sql"; ok; return
    fi
    if [ ! -f "$D/$name.sql" ]; then bad "$name: no golden file $D/$name.sql (make golden-sql)"; return; fi
    if diff -u "$D/$name.sql" "$T/$name.sql" --label "golden/$name.sql" --label "sqlm sql"; then ok
    else bad "$name: the program differs from tests/golden-sql/$name.sql"; fi
}

"$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.db" 2>"$T/err" || bad "import: $(cat "$T/err")"
check sqlite-stories260K "$SQLM" sql -m "$T/s.db"
check sqlite-stories260K-no-cte-merge "$SQLM" sql -m "$T/s.db" --no-cte-merge
check sqlite-stories260K-split-attention "$SQLM" sql -m "$T/s.db" --split-attention
"$SQLM" import $M/TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf -o "$T/t.db" 2>"$T/err" \
    || bad "import gguf: $(cat "$T/err")"
check sqlite-tinystories656K-q8_0 "$SQLM" sql -m "$T/t.db"

if "$SQLM" import $M/stories260K/stories260K.bin -o "$T/s.duck" --engine duckdb 2>"$T/err"; then
    check duckdb-stories260K "$SQLM" sql -m "$T/s.duck"
    check duckdb-native-stories260K "$SQLM" sql -m "$T/s.duck" --native
    # ROW2COL's layouts: every layer matrix split over two tables as blocks
    # of rows (F16 values: SwiGLU read through the rounding of a table-split
    # product), and the pivot form
    "$SQLM" import $M/stories260K/stories260K.bin -o "$T/split.duck" --engine duckdb --row2col split \
        --type f16 2>"$T/err" || bad "duckdb import --row2col split: $(cat "$T/err")"
    check duckdb-stories260K-split-f16 "$SQLM" sql -m "$T/split.duck"
    "$SQLM" import $M/stories260K/stories260K.bin -o "$T/on.duck" --engine duckdb --row2col on \
        2>"$T/err" || bad "duckdb import --row2col on: $(cat "$T/err")"
    check duckdb-stories260K-row2col-on "$SQLM" sql -m "$T/on.duck"
elif grep -q "libduckdb" "$T/err"; then
    skipped "duckdb" "$(cat "$T/err")"
else
    bad "duckdb import: $(cat "$T/err")"
fi
summary
