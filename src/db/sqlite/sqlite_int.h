/*
 * sqlite_int.h - what the files of the SQLite engine share: the engine
 * (engine.c), the batches that carry a step's rows between sqlm's functions
 * (vtab_rows.c), the KV-cache tables that attention reads in place
 * (vtab_kv.c), and each file's registration of its SQL functions and
 * virtual tables on a connection.  One section per file; only the files of
 * src/db/sqlite/ include it.
 */
#ifndef SQLM_SQLITE_INT_H
#define SQLM_SQLITE_INT_H

#include <sqlite3.h>

#include "../engine.h"
#include "tiles.h"
#include "wcache.h"

/* ------------------------------------------------------- db/sqlite/engine.c */

typedef struct sqlite_engine {
    engine base;
    sqlite3 *db;
    char *path;
    sqlite3_stmt **steps;
    char **step_names;
    int n_steps;
    int threads;             /* for the product functions' pool */
    tile_store *tiles;       /* weight tiles read in place, or NULL (copying path) */
    int tiles_fd;            /* the file under tiles, open until SQLite is closed, or -1 */
    pool *pool;              /* threads of the products and attention (sessions only) */
    wcache *wc;              /* the weight cache of a budgeted run, or NULL */
    size_t budget;           /* --mem-budget, 0 = none */
    sqlite3_int64 heap_limit;/* SQLite's share of it */
    struct kv_table *kv;     /* the connection's sqlm_kv tables (a list) */
    struct {                 /* statements of query(), kept prepared */
        char *sql;
        sqlite3_stmt *st;
        bool busy;           /* running (a callback may query again) */
    } cache[8];
    int cache_next;          /* the entry to replace next */
} sqlite_engine;

/* ---------------------------------------------------- db/sqlite/functions.c */

/* Argument access and errors inside an SQL function (argv and ctx in scope). */
#define ARG_INT(i) sqlite3_value_int64(argv[i])
#define FAIL(msg) do { sqlite3_result_error(ctx, "sqlm: " msg, -1); return; } while (0)

/* Register the function name on s's connection: deterministic, innocuous,
 * with s as its user data.  Returns SQLM_OK or SQLM_DB (message set). */
int sqlm_sqlite_create_function(sqlite_engine *s, const char *name, int n_arg,
                                void (*fn)(sqlite3_context *, int, sqlite3_value **),
                                void (*step)(sqlite3_context *, int, sqlite3_value **),
                                void (*final)(sqlite3_context *));
/* The scalar and aggregate vector functions (sqlm_matvec ... sqlm_attn). */
int sqlm_sqlite_register_functions(sqlite_engine *s);
/* qsort() order of int64_t values. */
int sqlm_cmp_i64(const void *a, const void *b);

/* ---------------------------------------------------- db/sqlite/vtab_rows.c */

/*
 * The rows of a batch travel as one value so that a product (or attention)
 * sees all of them at once (aggregates of SQLite 3.40 take no ORDER BY:
 * positions are kept beside the rows), and a product comes back the same
 * way; sqlm_rows() turns it into (pos, v) rows:
 *   stack:   u32 STACK_MAGIC, u32 n, u64 row_bytes, i64 pos[n], row[n][row_bytes]
 *   product: u32 PROD_MAGIC,  u32 n, u64 n_out,     i64 pos[n], float[n][n_out]
 */
#define STACK_MAGIC 0x4b435453u   /* "STCK" */
#define PROD_MAGIC 0x444f5250u    /* "PROD" */
#define BATCH_HDR 16
#define MAX_BATCH (1 << 20)

typedef struct batch_view {
    uint32_t n;
    uint64_t width;          /* row bytes (stack) or floats (product) */
    const int64_t *pos;      /* [n], unaligned-safe copy not needed: the header is 16 bytes */
    const uint8_t *data;
} batch_view;

/* Check a stack or product BLOB and point into it; false if malformed. */
bool sqlm_batch_parse(const void *p, size_t len, uint32_t magic, size_t elem, batch_view *v);

/*
 * Stacks and products travel between sqlm's functions as SQLite pointer
 * values of type "sqlm_batch" (sqlite3_result_pointer), so that SQLite moves
 * a pointer from register to register where it would copy a BLOB of
 * megabytes.  The buffer is reference counted: a function or cursor that
 * keeps a batch past the call that received it takes a reference.  The same
 * bytes as a BLOB are accepted too.
 */
#define BATCH_PTR "sqlm_batch"

typedef struct batch_ref {
    int refs;
    size_t len;
    uint8_t *p;              /* len bytes, 16-byte aligned */
} batch_ref;

/* A batch of len bytes with one reference, or NULL (no memory). */
batch_ref *sqlm_batch_new(size_t len);
/* Drop a reference (p may be NULL); the last one frees the batch. */
void sqlm_batch_unref(void *p);
/* Return b from an SQL function as a pointer value; the result takes the
 * caller's reference. */
void sqlm_batch_result(sqlite3_context *ctx, batch_ref *b);
/* A reference to the batch in v: 1 (*out set, release with sqlm_batch_unref), 0 if
 * v is NULL, -1 if v is neither a batch pointer nor a BLOB (or no memory). */
int sqlm_batch_take(sqlite3_value *v, batch_ref **out);
/* A zeroed cursor of size bytes (its struct starts with the base cursor). */
int sqlm_vtab_cursor_new(size_t size, sqlite3_vtab_cursor **out);
/* sqlm_stack and the sqlm_rows table-valued function. */
int sqlm_sqlite_register_rows(sqlite_engine *s);

/* ------------------------------------------------------- db/sqlite/vtab_kv.c */

/* One sqlm_kv table (vtab_kv.c says how its rows are kept). */
typedef struct kv_table {
    sqlite3_vtab base;
    sqlite_engine *e;
    struct kv_table *next;   /* in e->kv */
    char *name;
    uint8_t **row;           /* [cap] k bytes then v bytes, or NULL */
    int64_t cap;
    int64_t k_len, v_len;    /* bytes, set by the first row */
    int64_t n;               /* rows present */
} kv_table;

/* The connection's sqlm_kv table called name, or NULL. */
kv_table *sqlm_kv_find(sqlite_engine *s, const char *name);
/* The k and v rows of position pos, or NULL. */
const float *sqlm_kv_row(const kv_table *t, int64_t pos);
/* The sqlm_kv module. */
int sqlm_sqlite_register_kv(sqlite_engine *s);

/* ------------------------------------------------------- db/sqlite/attend.c */

int sqlm_sqlite_register_attend(sqlite_engine *s);   /* sqlm_attend */

/* ------------------------------------------------------- db/sqlite/matmul.c */

int sqlm_sqlite_register_matmul(sqlite_engine *s);   /* sqlm_matmul */

#endif /* SQLM_SQLITE_INT_H */
