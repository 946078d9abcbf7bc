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

/* The facts about a dialect that import and the engines need; the SQL
 * templates themselves stay private to emit.c. */
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
    int base;                /* dialect whose templates stand in for missing ones, or -1 */
    const char *vacuum;      /* statement that frees the rows DELETE left behind, run by a
                              * session after its reset (not in the printed script), or NULL */
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
} sql_program;

int sqlm_dialect_from_name(const char *name);
const sql_dialect *sqlm_dialect_get(int dia);   /* NULL if out of range */
/* o less what the dialect cannot do (fuse_attn without an ATTN template). */
ir_opts sqlm_dialect_ir_opts(int dia, ir_opts o);
/* Append text to out with the dialect's {vec}, {any} and {pk} filled in. */
void sqlm_dialect_subst(int dia, const char *text, buf *out);
/* Compile g into a program for dialect dia; free with sqlm_sql_program_free(). */
int sqlm_emit_program(const ir_graph *g, int dia, sql_program *out);
void sqlm_sql_program_free(sql_program *p);
/* The whole program as one printable script. With n_toks > 0 the script
 * also inserts those tokens at positions 0.. and ends with the query of the
 * next token, so any client of the engine can run it unchanged. Caller frees. */
char *sqlm_sql_program_text(const sql_program *p, const int32_t *toks, int n_toks);

#endif /* SQLM_SQLGEN_H */
