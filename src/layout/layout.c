/*
 * layout.c - how weight matrices are laid out in tables, per engine: the
 * measured defaults (SQLite's 64 KB tiles, DuckDB's row groups) and the
 * ROW2COL rules, and the decision for one matrix that import writes and
 * sqlm_weight records.  The graph (ir/) follows the recorded layout and
 * never chooses one; the SQL templates (sqlgen/) read any of them.  Nothing
 * here writes or reads a database.
 */
#include <stdio.h>
#include <string.h>

#include "layout.h"

/* ---------------------------------------------------------- SQLite */

/* The largest tile of whole rows one 64 KB page holds with its record
 * (a leaf keeps up to 65501 payload bytes in the page): one tile per page,
 * so a scan of the table meets one record per page. */
const layout_rules sqlm_layout_tiles = {
    .name = "tiles",
    .tile_bytes = 65280,
    .page_size = 65536,
};

/* ---------------------------------------------------------- DuckDB */

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

static int64_t duck_row_split(const layout_rules *r, int64_t n_out, int64_t n_in);

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

/* ------------------------------------------------------ one matrix */

/*
 * The chunk (columns per tile row) of an n_out x n_in matrix of tiles near
 * tile bytes that takes the fewest tiles: whole rows, or the row cut into up
 * to 4 equal chunks of whole blocks where whole rows fill the tiles badly.
 * Qwen2.5-0.5B's 896 x 4864 Q8_0 down matrix: 12 rows of 5168 bytes fill
 * 95% of a tile (75 tiles); halves of 2584 bytes, 25 to a tile, take 72.
 * Fewer tiles is fewer bytes to read where the weights are streamed.
 */
static int64_t fill_chunk(int dt, int64_t n_out, int64_t n_in, size_t tile) {
    const int64_t qk = (int64_t)sqlm_dtype_block(dt), nb = n_in / qk;
    const size_t bb = sqlm_dtype_block_bytes(dt);
    int64_t best = n_in, best_tiles = INT64_MAX;
    for (int64_t parts = 1; parts <= 4 && parts <= nb; parts++) {
        int64_t c = (nb + parts - 1) / parts;   /* blocks per chunk */
        if (c * (int64_t)bb > (int64_t)tile) continue;
        int64_t tr = MIN((int64_t)tile / (c * (int64_t)bb), n_out);
        int64_t tiles = (n_out + tr - 1) / tr * ((nb + c - 1) / c);
        if (tiles < best_tiles) best_tiles = tiles, best = MIN(c * qk, n_in);
    }
    return best;
}

/*
 * WL_TILES: tiles of tile_rows rows in the storage type, sized near the
 * tile bytes.  WL_ROWS_F32: one matrix row per table row in float32 (F16
 * values exactly; Q8_0/Q4_0 as their integer values and block scales),
 * split into chunks only when --tile-bytes asks for it; ROW2COL may pivot a
 * float row into columns, store the second half of the rows in a table
 * {name}_1, or both tables as blocks of rows.
 */
int sqlm_layout_matrix(const sql_dialect *d, const layout_req *q, matrix_layout *out) {
    memset(out, 0, sizeof *out);
    const layout_rules *r = d->layout;
    const int64_t n_out = q->n_out, n_in = q->n_in;
    const bool rows = d->weight_layout == WL_ROWS_F32;
    /* vt: the type whose values the matrix holds (recorded in sqlm_weight, it
     * decides how the products round their input); dt: how they are stored.
     * Float rows hold vt's values exactly: F16 as floats, Q8_0/Q4_0 as their
     * int8 values with the block scales beside them. */
    const int vt = q->vt;
    const int dt = rows ? DT_F32 : vt;
    size_t rb, tile = q->tile_bytes ? q->tile_bytes : r->tile_bytes;
    if (!sqlm_dtype_row_bytes(vt, (size_t)n_in, &rb) || !sqlm_dtype_row_bytes(dt, (size_t)n_in, &rb))
        return SQLM_FORMAT;
    int64_t chunk = n_in;
    if (rb > tile && !q->whole_rows && (!rows || q->tile_bytes)) {
        size_t blocks = MAX(tile / sqlm_dtype_block_bytes(dt), 1);
        chunk = MIN((int64_t)(blocks * sqlm_dtype_block(dt)), n_in);
        /* a chunk converted from a quantized part starts on its blocks */
        const int64_t align = MAX(q->align, (int64_t)sqlm_dtype_block(vt));
        if (chunk < n_in) chunk = MIN(MAX(chunk / align, 1) * align, n_in);
    }
    if (!rows && !q->whole_rows && chunk == n_in) chunk = fill_chunk(dt, n_out, n_in, tile);
    size_t cb;
    sqlm_dtype_row_bytes(dt, (size_t)chunk, &cb);
    int64_t tile_rows = rows ? 1 : MAX((int64_t)(tile / cb), 1);
    out->dt = dt;
    out->chunk = chunk;
    out->tile_rows = MIN(tile_rows, n_out);
    /* Rows of Q8_0/Q4_0 values: the integer values and the block scales (s),
     * so products can sum each block exactly as llama.cpp does; stored as
     * int8 blocks by the dialect's q_blocks statement. */
    out->qrows = rows && sqlm_dtype_block(vt) > 1 && d->q_blocks;
    /* ROW2COL: whole float rows stored as pivot columns c0.. of n_in / pivot
     * (not quantized rows: their blocks and scales stay whole) */
    const bool whole_float = rows && !out->qrows && chunk == n_in && !q->whole_rows;
    out->pivot = whole_float && r->pivots ? r->pivots(q->row2col, n_out, n_in) : 0;
    /* ROW2COL's table split: rows from split on go to the table {name}_1,
     * or both tables hold blocks of rows where the dialect has them */
    out->split = whole_float && !out->pivot && r->split_tables ? r->split_tables(q->row2col, n_out, n_in) : 0;
    if (out->split && d->row_blocks && q->can_append && q->row2col != R2C_SPLIT_ROWS)
        out->blocks = sqlm_layout_blocks(q->part_rows, q->n_part, q->units, out->first, out->table,
                                         LAYOUT_MAX_BLOCKS);
    return SQLM_OK;
}

void sqlm_layout_derive(const layout_rules *r, ir_weight *ws, int n) {
    bool row2col = false;   /* some matrix laid out by ROW2COL */
    for (int i = 0; i < n; i++) row2col |= ws[i].pivot > 0 || ws[i].split_at > 0 || ws[i].blocks > 0;
    for (int i = 0; i < n; i++) {
        ws[i].row_split = row2col && r && r->row_split ? r->row_split(r, ws[i].n_out, ws[i].n_in) : 0;
        ws[i].pivot_per = ws[i].pivot > 0 && r ? r->pivot_per : 0;
    }
}

/* ------------------------------------------------ ROW2COL's blocks */

/*
 * ROW2COL's blocks (not in the paper; measured here, docs/duckdb.md, "The passes
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
int sqlm_layout_blocks(const int64_t *part, int n_part, int n_unit, int64_t *first, int *table, int max) {
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
