/*
 * layout.c - how import lays a weight matrix out in tables, given an
 * engine's layout rules (its defaults and ROW2COL rules live with the
 * engine: db/sqlite/layout.c, db/duckdb/layout.c): the storage type, the
 * chunk and rows per tile, and ROW2COL's pivots, table split and blocks,
 * which sqlm_weight records.  The graph (ir/) follows the recorded layout
 * and never chooses one; the SQL templates (sqlgen/) read any of them.
 * Nothing here writes or reads a database.
 */
#include <stdio.h>
#include <string.h>

#include "layout.h"

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
