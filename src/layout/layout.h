/*
 * layout.h - the storage layout of weight matrices in a model database:
 * per engine, the measured defaults (tile bytes, page size, row groups) and
 * the ROW2COL rules; per matrix, the layout import writes (storage type,
 * chunk, rows per tile, pivot columns, table split, blocks of rows).
 * Import writes what sqlm_layout_matrix() decides; model opening fills the
 * fields the rules derive and do not store (sqlm_layout_derive()).
 */
#ifndef SQLM_LAYOUT_H
#define SQLM_LAYOUT_H

#include "../sqlgen/sqlgen.h"

/* An engine's layout defaults and rules, defined with the engine
 * (db/sqlite/layout.c, db/duckdb/layout.c): a row of the dialect table
 * points to one (sql_dialect.layout). */
typedef struct layout_rules {
    const char *name;
    size_t tile_bytes;        /* bytes per stored tile of rows (WL_TILES), unless
                               * import --tile-bytes says */
    int page_size;            /* page size a new database is created with */
    int64_t row_group_rows;   /* rows per row group of the engine's tables (0: none) */
    /* ROW2COL (NULL where the engine has no ROW2COL layout): pivot columns
     * for an n_out x n_in float matrix under mode (R2C_*), or 0; */
    int (*pivots)(int mode, int64_t n_out, int64_t n_in);
    /* the first row stored in a layer matrix's second table, or 0; */
    int64_t (*split_tables)(int mode, int64_t n_out, int64_t n_in);
    /* the first row of a product's second half inside one table, or 0
     * (applied when some matrix of the database was laid out by ROW2COL); */
    int64_t (*row_split)(const struct layout_rules *r, int64_t n_out, int64_t n_in);
    int pivot_per;            /* pivot columns per subquery */
} layout_rules;

extern const layout_rules sqlm_layout_tiles;    /* SQLite: 64 KB tiles in 64 KB pages */
extern const layout_rules sqlm_layout_duckdb;   /* DuckDB: float rows, ROW2COL */

/* What import asks of one matrix. */
typedef struct layout_req {
    int64_t n_out, n_in;
    int vt;                  /* type of its values (DT_*) */
    int64_t align;           /* a chunk starts on a block of each part's type */
    bool whole_rows;         /* rows unsplit and the table whole (the embedding, the
                              * head: read by row) */
    size_t tile_bytes;       /* import --tile-bytes, 0 = the engine's default */
    int row2col;             /* import --row2col (R2C_*) */
    bool can_append;         /* the engine bulk-loads (FLOAT[][] blocks need it) */
    const int64_t *part_rows;   /* rows of each fused part, */
    int n_part;                 /* how many, */
    int units;                  /* and the equal units each part's rows fall in */
} layout_req;

#define LAYOUT_MAX_BLOCKS 256

/* The layout of one matrix, as import writes it and sqlm_weight records it. */
typedef struct matrix_layout {
    int dt;                  /* storage type of the values */
    int64_t chunk;           /* columns per stored row (== n_in when rows are whole) */
    int64_t tile_rows;       /* matrix rows per stored tile */
    bool qrows;              /* float rows of Q8_0/Q4_0 values: integer blocks + scales */
    int pivot;               /* ROW2COL pivot columns, or 0 */
    int64_t split;           /* ROW2COL: rows from split on in {name}_1, or 0 */
    int blocks;              /* ROW2COL: blocks of rows over the two tables, or 0 */
    int64_t first[LAYOUT_MAX_BLOCKS];   /* ... the first row of each */
    int table[LAYOUT_MAX_BLOCKS];       /* ... and its table (0 or 1) */
} matrix_layout;

/* Decide the layout of matrix q for dialect d.  SQLM_OK, or SQLM_FORMAT
 * when n_in is not a multiple of the type's block (no message recorded:
 * the caller names the matrix). */
int sqlm_layout_matrix(const sql_dialect *d, const layout_req *q, matrix_layout *out);

/* Fill the fields of ws[0..n) that the rules derive at open (row_split,
 * pivot_per) for an engine whose layout rules are r. */
void sqlm_layout_derive(const layout_rules *r, ir_weight *ws, int n);

/* ROW2COL's blocks of a split layer matrix made of n_part parts of part[i]
 * rows, each part cut in n_unit equal units (a fused QKV's kv heads) where
 * it divides: the first row of each block, in row order, in first[], and the
 * table (0 or 1) that holds it in table[]; returns the number of blocks (at
 * most max), 0 if the matrix cannot be cut so. */
int sqlm_layout_blocks(const int64_t *part, int n_part, int n_unit, int64_t *first, int *table, int max);

#endif /* SQLM_LAYOUT_H */
