/*
 * row2col.c - the ROW2COL pass's storage rules (TranSQL+ section 4.3 and
 * the forms measured here): which weight matrices import stores as pivot
 * columns, as two tables, as blocks of rows, and where a product splits
 * its rows.  import.c applies them when it lays the tables out, llama.c
 * when it builds each product; the rules live here and nowhere else.
 */
#include <string.h>

#include "ir.h"

/*
 * ROW2COL's pivot form (TranSQL+ section 4.3): a matrix stored as pivot
 * columns c0, c1, ... (a part of each row in each), its product one subquery
 * per column, lined up with POSITIONAL JOIN.  Measured on DuckDB 1.5.6, 2
 * threads, against whole rows as FLOAT[] lists, one decode product each (ms,
 * best of 7, two rounds on a shared machine, load 2 to 3, the product's input
 * MATERIALIZED; README "ROW2COL"):
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
 * (sqlm_row2col_split_tables() below), so the rule (--row2col auto) pivots
 * nothing; the pivot form is what --row2col on asks for (the paper's form,
 * for the ablation and the tests).  `build/duckbench ceiling DIR ROWS COLS`
 * times one shape in each form (layouts list, pivot2, split2-tables), as
 * scripts/bench-duckdb-passes.sh does for the gate/up shapes in `make bench`
 * (bench/results/duckdb-passes-20261122-run5.md, 2 threads: 4096 x 768 list
 * 3.65 ms, pivot2 2.52, split2-tables 2.16).  The rules live here and
 * nowhere else.
 */
int sqlm_row2col_pivots(int mode, int64_t n_out, int64_t n_in) {
    /* The pivot form only where asked for (--row2col on): under the rule a
     * row split (below) was as fast or faster on every measured shape. */
    if (mode != R2C_ON) return 0;
    /* POSITIONAL JOIN lines subqueries up by scan order; the pivot columns
     * split a row evenly */
    if (n_out > 122880 || n_in % 2 != 0) return 0;
    return 2;
}

/* Pivot columns per subquery: one (each its own pipeline). */
int sqlm_row2col_per_default(int pivots) { return pivots > 0 ? 1 : 0; }

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
int64_t sqlm_row2col_split(bool row2col, int64_t n_out, int64_t n_in) {
    const int64_t rg = 2048;   /* rows per row group (db/duckdb.c ROW_GROUP_ROWS) */
    if (!row2col || n_out < 2 * rg || n_out * n_in < (1 << 20)) return 0;
    int64_t at = (n_out / 2 + rg / 2) / rg * rg;
    return at > 0 && at < n_out ? at : 0;
}

/*
 * ROW2COL's table split (not in the paper; measured here, README "The
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
 * (the head keeps the split inside its table, sqlm_row2col_split()).
 * `build/duckbench ceiling DIR ROWS COLS` times one shape (layouts pivot2,
 * split2, split2-tables); scripts/bench-duckdb-passes.sh measures the whole
 * programs with and without ROW2COL
 * (bench/results/duckdb-passes-20261122-run5.md: decode 1.10x on the 110M
 * shape, 1.42x on the 1.1B one).
 */
int64_t sqlm_row2col_split_tables(int mode, int64_t n_out, int64_t n_in) {
    if (n_out < 2 || (mode != R2C_SPLIT && mode != R2C_SPLIT_ROWS && (mode != R2C_AUTO || n_out * n_in < (1 << 19))))
        return 0;
    return n_out / 2;
}

/*
 * ROW2COL's blocks (not in the paper; measured here, README "The passes
 * measured"): the two tables of a split matrix hold one row per block of
 * consecutive matrix rows, (row, m FLOAT[][]), and a product computes a
 * block's dot products at once, list_transform(m, dot).  Its output is then
 * gathered from a handful of (first row, list) pairs instead of a (row,
 * value) pair per matrix row, and the tables have a few rows instead of
 * thousands.  Whole 110M decode steps on 2 threads, processes alternated
 * three times: best 108-113 ms against 110-119 for rows, CPU 188-191
 * against 193-205 (one product alone is as fast either way).
 *
 * Blocks never straddle a unit of a part (a fused QKV's rows of one kv
 * head), so the merged layer's per-head grouping reads a block's head from
 * its first row.  The largest block is halved until there are 4; the
 * blocks are dealt to the two tables largest first, each to the table with
 * fewer rows; a table left with one block has it halved: a one-row table
 * becomes the build side of its cross join (DuckDB weighs estimated rows
 * times width), whose megabytes DuckDB then copies.
 */
int sqlm_row2col_blocks(const int64_t *part, int n_part, int n_unit, int64_t *first, int *table, int max) {
    int64_t size[256];
    int n = 0;
    max = MIN(max, (int)ARRAY_LEN(size));
    for (int i = 0; i < n_part; i++) {
        const int u = n_unit > 1 && part[i] % n_unit == 0 ? n_unit : 1;
        if (part[i] <= 0 || n + u > max) return 0;
        for (int j = 0; j < u; j++) size[n++] = part[i] / u;
    }
    for (;;) {
        /* halve block k (into k and k + 1) where needed */
        int k = -1;
        if (n < 4) {
            for (int i = 0; i < n; i++)
                if (size[i] >= 2 && (k < 0 || size[i] > size[k])) k = i;
        } else {
            /* deal the blocks out; a table of one block halves it */
            int64_t rows[2] = { 0, 0 };
            int count[2] = { 0, 0 }, order[256];
            for (int i = 0; i < n; i++) order[i] = i;
            for (int i = 1; i < n; i++)   /* largest first, stable */
                for (int j = i; j > 0 && size[order[j]] > size[order[j - 1]]; j--) {
                    int t = order[j];
                    order[j] = order[j - 1], order[j - 1] = t;
                }
            for (int i = 0; i < n; i++) {
                const int t = rows[1] < rows[0];
                table[order[i]] = t, rows[t] += size[order[i]], count[t]++;
            }
            for (int i = 0; i < n && k < 0; i++)
                if (count[table[i]] < 2 && size[i] >= 2) k = i;
        }
        if (k < 0 || n >= max) break;
        memmove(size + k + 1, size + k, (size_t)(n - k) * sizeof *size);
        size[k] -= size[k] / 2, size[k + 1] /= 2, n++;
    }
    if (n < 4) return 0;
    int64_t row = 0;
    for (int i = 0; i < n; i++) first[i] = row, row += size[i];
    return n;
}
