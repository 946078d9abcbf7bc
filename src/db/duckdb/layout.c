/*
 * layout.c - the DuckDB engine's weight layout: one float row (or block of
 * rows) per table row in row groups of 2048, and the ROW2COL rules that
 * decide which matrices are pivoted, split over two tables or cut in blocks
 * (layout/layout.h says how import applies an engine's rules).
 */
#include "../../layout/layout.h"


/*
 * ROW2COL rule (TranSQL+ section 4.3), measured on DuckDB 1.5.6, 2 threads,
 * against whole rows as FLOAT[] lists, one decode product each (ms, best of
 * 7, two rounds on a shared machine, load 2 to 3, after a product's input
 * is MATERIALIZED; docs/duckdb.md, "ROW2COL"):
 *
 *   n_out x n_in   whole list ms   2 pivots, 1 per subquery ms
 *   768 x 768      1.27 / 1.27     1.44 / 1.38   (110M o, q, k, v)
 *   2304 x 768     2.14 / 2.14     2.03 / 2.09
 *   4096 x 768     3.62 / 3.38     2.79 / 2.60
 *   768 x 2048     2.27 / 1.99     1.83 / 1.65
 *   2560 x 2048    5.12 / 5.42     4.19 / 3.84
 *   2048 x 2048    4.43 / 4.31     3.36 / 3.01
 *   2048 x 5632    10.5 / 10.6     7.92 / 7.35
 *   11264 x 2048   17.9 (2 threads), 18.3 (1)   11.8   (bench ceiling)
 *
 * DuckDB 1.5.6 gives a table scan one task per 122,880 rows, whatever the
 * row group size, so a whole-row product runs on one thread (11264 x 2048:
 * 17.9 ms on two threads, 18.3 on one); each ROW2COL subquery is a pipeline
 * of its own, so two give the second thread work.  Under 2^20 weights the
 * extra sort and join cost more than the second thread saves.  In a
 * 200-position prefill the 768 x 2048 product took 94 ms pivoted against
 * 165 whole, the 4096 x 768 one 358 against 311 (the sort of rows times
 * positions).  4, 8 or 16 pivots, or several columns per subquery, were
 * slower than 2 columns, 1 per subquery.  Splitting a layer matrix's rows
 * over two tables measured faster than pivoting on every shape
 * (duck_split_tables() below), so the rule (--row2col auto) pivots
 * nothing; the pivot form is what --row2col on asks for (the paper's form,
 * for the ablation and the tests).  `build/duckbench ceiling DIR ROWS COLS`
 * times one shape in each form (layouts list, pivot2, split2-tables), as
 * scripts/bench-duckdb-passes.sh does for the gate/up shapes in `make bench`
 * (bench/results/duckdb-passes-20261122-run5.md, 2 threads: 4096 x 768 list
 * 3.65 ms, pivot2 2.52, split2-tables 2.16).  The rules live here and
 * nowhere else.  One pivot column per subquery (each its own pipeline):
 * sqlm_layout_duckdb.pivot_per.
 */
static int duck_pivots(int mode, int64_t n_out, int64_t n_in) {
    /* The pivot form only where asked for (--row2col on): under the rule a
     * row split (below) was as fast or faster on every measured shape. */
    if (mode != R2C_ON) return 0;
    /* POSITIONAL JOIN lines subqueries up by scan order; the pivot columns
     * split a row evenly */
    if (n_out > 122880 || n_in % 2 != 0) return 0;
    return 2;
}

/*
 * ROW2COL's row split (not in the paper; measured here): a product over a
 * table of at least two row groups (2 x 2048 rows) and 2^20 weights runs as
 * two UNION ALL branches, rows below and from a row-group boundary near the
 * middle.  Each branch is a pipeline of its own, so DuckDB gives the second
 * thread work without the pivot form's sorts and POSITIONAL JOIN: on 2
 * threads, one decode product (ms, best of 15, load about 1.2): 4096 x 768
 * (pivoted) 2.25-2.33 against 2.54-2.62 in the pivot form; the 32000 x 768
 * output head (whole rows, never pivoted) 11.0 against 17.7.  Tables of one
 * row group gain nothing from it (2304 x 768: 1.76-1.99 split against
 * 1.85; 768 x 768: 1.06 against 1.09), as the scan of a row group is one
 * task.  Pivoted tables keep their columns and sum their dot products per
 * row.  Applied when the database was laid out by ROW2COL (import
 * --row2col auto or on), to the output head as well.
 */
static int64_t duck_row_split(const layout_rules *r, int64_t n_out, int64_t n_in) {
    const int64_t rg = r->row_group_rows;
    if (rg <= 0 || n_out < 2 * rg || n_out * n_in < (1 << 20)) return 0;
    int64_t at = (n_out / 2 + rg / 2) / rg * rg;
    return at > 0 && at < n_out ? at : 0;
}

/*
 * ROW2COL's table split (not in the paper; measured here, docs/duckdb.md, "The
 * passes measured"): a layer matrix's rows are stored as two tables of half
 * its rows each, {name} and {name}_1, and its product runs as two UNION ALL
 * halves, one pipeline per table, so DuckDB gives the second thread work
 * whatever the matrix's row count (a table under two 2048-row groups cannot
 * be split inside itself: both halves would scan the whole row group).  One
 * decode product on 2 threads, isolated (ms, best of 30, load about 1.2),
 * against the same matrix in one table, as 2 pivot columns from 2^20
 * weights and as whole rows below:
 *
 *   n_out x n_in    split tables   one table
 *   2304 x 768      1.13           1.46 (2 pivots)        110M qkv
 *   768 x 768       0.65           0.83 (whole)           110M o
 *   768 x 2048      1.01           1.30 (2 pivots)        110M down
 *   4096 x 768      1.69           1.70 (2 pivots, row split in the table)
 *   2560 x 2048     2.85           3.31 (2 pivots)        1.1B qkv
 *   2048 x 2048     2.25           2.68 (2 pivots)        1.1B o
 *   2048 x 5632     5.84           6.37 (2 pivots)        1.1B down
 *   11264 x 2048    20.3           20.0 (2 pivots, row split in the table; load 2.6)
 *
 * Split pivoted rows measured the same as split whole rows (1.12 / 1.01 /
 * 2.91 / 2.21 / 5.74 ms for the shapes above), so the rule keeps rows
 * whole.  Applied under --row2col auto to layer matrices of at least 2^19
 * float weights (the 110M o projection has 2^19.2; smaller products are
 * mostly fixed cost), to every one under --row2col split; not to the
 * embedding or the output head, which the embedding lookup reads by row
 * (the head keeps the split inside its table, duck_row_split()).
 * `build/duckbench ceiling DIR ROWS COLS` times one shape (layouts pivot2,
 * split2, split2-tables); scripts/bench-duckdb-passes.sh measures the whole
 * programs with and without ROW2COL
 * (bench/results/duckdb-passes-20261122-run5.md: decode 1.10x on the 110M
 * shape, 1.42x on the 1.1B one).
 */
static int64_t duck_split_tables(int mode, int64_t n_out, int64_t n_in) {
    if (n_out < 2 || (mode != R2C_SPLIT && mode != R2C_SPLIT_ROWS && (mode != R2C_AUTO || n_out * n_in < (1 << 19))))
        return 0;
    return n_out / 2;
}

/*
 * DuckDB 1.5.6: one float row (or block of rows) per table row.  Rows per
 * row group of the tables import writes (db/duckdb/engine.c creates the
 * database with this ROW_GROUP_SIZE): 2048, the smallest DuckDB accepts
 * (one vector).  Smaller row groups do not give a scan more threads:
 * DuckDB 1.5.6 gives a table scan one task per 122,880 rows
 * whatever the row group size (an 11264 x 2048 float32 product: 17.9 ms on
 * 2 threads, 18.3 on 1); ROW2COL's subqueries, one pipeline each, are what
 * gives a product a second thread (11.8 ms; docs/duckdb.md, "ROW2COL").
 */
const layout_rules sqlm_layout_duckdb = {
    .name = "duckdb",
    .tile_bytes = 65280,
    .page_size = 65536,
    .row_group_rows = 2048,
    .pivots = duck_pivots,
    .split_tables = duck_split_tables,
    .row_split = duck_row_split,
    .pivot_per = 1,
};
