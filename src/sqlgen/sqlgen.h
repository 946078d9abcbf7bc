/*
 * sqlgen.h - SQL generation: the dialect table and the compiled program
 * (setup, reset, one statement per materialised node).
 */
#ifndef SQLM_SQLGEN_H
#define SQLM_SQLGEN_H

#include "../ir/ir.h"

/* ------------------------------------------------------------ sqlgen/ */

/* Types of a value crossing the engine interface (db_val in db/engine.h);
 * a dialect says which one binds a float vector. */
enum { DBV_NULL, DBV_INT, DBV_REAL, DBV_TEXT, DBV_BLOB, DBV_VEC };

enum { DIA_SQLITE = 0, DIA_DUCKDB, DIA_DUCKDB_NATIVE, DIA_COUNT };

/* How a dialect stores weight matrices (a row of the dialect table). */
enum {
    WL_TILES,             /* (id, row, col, v BLOB): tiles of tile_rows rows in the file's dtype */
    WL_ROWS_F32,          /* (id, row, col, v <float list>): one matrix row (or chunk) per table
                           * row, dequantized to float32; Q8_0/Q4_0 rows as blocks instead:
                           * (id, row, col, v <blocks of 32 int8 values>, s <float scales>) */
};

/*
 * One SELECT per operator and dialect (emit.c).  {in0}..{in2} are the input
 * relations, {w} the weight table; the other placeholders are node fields.
 * {?cond}...{/} keeps its text only when cond holds ({?!cond} when it does
 * not).  cols is the column list of the relation the SELECT produces, defs
 * its column definitions as a table (with the dialect's {vec} and {pk}), or
 * "USING module" for a virtual table.
 */
typedef struct sql_template {
    const char *cols;
    const char *defs;
    const char *sql;      /* NULL: no template (the base dialect's stands in) */
    bool rereads_in0;     /* the copying form (not inplace) reads {in0} once per
                           * weight row (SQLite: inside a correlated subquery;
                           * DuckDB: above its cross join): {in0} must then be
                           * computed once (MATERIALIZED), not inlined */
} sql_template;

/* The templates of a layer-merged program's nodes (ir_opts.layer_merge),
 * which replace the operator's template for the node flagged so. */
typedef struct sql_merged_templates {
    const sql_template *matmul_heads;   /* MATMUL, by_head: the fused QKV per kv head */
    const sql_template *rope_heads;     /* ROPE, by_head */
    const sql_template *kv_heads;       /* KV_APPEND, by_head: cache rows carrying q and x */
    const sql_template *kv_x;           /* KV_APPEND, kv_x (not by_head) */
    const sql_template *add_x;          /* ADD, kv_x: the residual read back from the cache */
    const sql_template *score_q;        /* ATTN_SCORE, kv_q: q read from the cache */
} sql_merged_templates;

/* The statement frame of a program: the text around the templates' SELECTs
 * (printf formats). */
typedef struct sql_frame {
    const char *create_temp;     /* %s table: opens a step table's definition; its
                                  * column definitions and create_close follow */
    const char *create_close;    /* closes it */
    const char *create_virtual;  /* %1$s table, %2$s "USING module": a virtual step table */
    const char *clear;           /* %s table: empties a step table or a cache */
    const char *insert;          /* %1$s table, %2$s columns: fills a step table from
                                  * the SELECT (and its WITH) that follows */
    const char *end;             /* ends a statement in a printed script */
} sql_frame;

struct layout_rules;   /* layout/layout.h */

/* A row of the dialect table (emit.c): every difference between engines'
 * SQL is a field here, so that nothing outside the table asks which
 * dialect it has. */
typedef struct sql_dialect {
    const char *name;
    const char *t_vec;       /* column type of a float vector: BLOB, FLOAT[] */
    const char *t_any;       /* column type of a value of any type ("" = untyped) */
    const char *pk;          /* " PRIMARY KEY" on keys that help lookups, or "" */
    const char *cte_mat;     /* keyword that forces a CTE to be computed once */
    int weight_layout;       /* WL_* */
    int vec_val;             /* how a float vector is bound: DBV_BLOB or DBV_VEC */
    const char *q_blocks;    /* WL_ROWS_F32: statements (printf format, %1$s = table) that
                              * make a quantized weight table from <table>_flat, filled with
                              * lists of the integer values, in the int8 blocks the templates
                              * read */
    bool row_blocks;         /* WL_ROWS_F32: has ROW2COL's blocks (FLOAT[][] rows of
                              * matrix rows, appended by the engine) */
    bool fused_attn;         /* has a template for the fused ATTN node */
    bool layer_merge;        /* merges layers under CTE merging (sqlm_dialect_ir_opts()):
                              * needs merged, and fused_attn off */
    const sql_template *templates;          /* [IR_OP_COUNT]: one per operator */
    const sql_merged_templates *merged;     /* a layer-merged program's nodes, or NULL */
    int base;                /* dialect whose templates stand in for missing ones, or -1 */
    sql_frame frame;         /* the statements around the templates */
    const char *param;       /* a bound value's placeholder: printf format given its
                              * 1-based position ("?" ignores it; "$%d") */
    const char *upsert;      /* insert or replace a keyed pair: %1$s table, %2$s key
                              * column, %3$s value column, %4$s and %5$s their
                              * placeholders */
    const char *vacuum;      /* statement that frees the rows DELETE left behind, run by a
                              * session after its reset (not in the printed script), or NULL */
    const struct layout_rules *layout;      /* how import lays weights out (layout/) */
} sql_dialect;

typedef struct sql_stmt {
    char *name;           /* the node that ends the statement */
    char *sql;
} sql_stmt;

/* A compiled program: setup once per session, reset per sequence, step per batch. */
typedef struct sql_program {
    char *setup;          /* CREATE TEMP TABLE ... */
    char *reset;          /* clear KV cache and step tables */
    sql_stmt *steps;
    int n_steps;
    char *logits_table;   /* table holding (pos, v) logits after a step */
    char *next_token;     /* SELECT pos, tok: the greedy next token, in SQL */
    int dialect;          /* DIA_* it was compiled for */
} sql_program;

/*
 * A per-node template override (for measurements such as bench/bound.c):
 * passed in ir_opts.emit_hook, kept by the graph, consulted by the emitter
 * for every node before the dialect's own templates.
 */
typedef struct sql_emit_hook {
    /* SQLM_OK, or an error (recorded with sqlm_error()) refusing graph g
     * for dialect d; NULL: every graph is accepted. */
    int (*check)(const ir_graph *g, const sql_dialect *d);
    /* The template for node n, or NULL to keep the dialect's. */
    const sql_template *(*node_template)(const ir_graph *g, const ir_node *n, const sql_dialect *d);
} sql_emit_hook;

int sqlm_dialect_from_name(const char *name);
const sql_dialect *sqlm_dialect_get(int dia);   /* NULL if out of range */
/* o less what the dialect cannot do (fuse_attn without an ATTN template). */
ir_opts sqlm_dialect_ir_opts(int dia, ir_opts o);
/* Append text to out with the dialect's {vec}, {any} and {pk} filled in. */
void sqlm_dialect_subst(int dia, const char *text, buf *out);
/* Append the placeholders of n bound values, from position first (1-based),
 * separated by ", " (SQLite, DuckDB: "?, ?"; PostgreSQL: "$1, $2"). */
void sqlm_dialect_params(int dia, int first, int n, buf *out);
/* Append the statement that inserts or replaces the pair (key, value) of
 * table, bound as values 1 and 2. */
void sqlm_dialect_upsert(int dia, const char *table, const char *key, const char *value, buf *out);
/* Compile g into a program for dialect dia; free with sqlm_sql_program_free(). */
int sqlm_emit_program(const ir_graph *g, int dia, sql_program *out);
void sqlm_sql_program_free(sql_program *p);
/* The whole program as one printable script. With n_toks > 0 the script
 * also inserts those tokens at positions 0.. and ends with the query of the
 * next token, so any client of the engine can run it unchanged. Caller frees. */
char *sqlm_sql_program_text(const sql_program *p, const int32_t *toks, int n_toks);

#endif /* SQLM_SQLGEN_H */
