/*
 * sqlite.c - the SQLite engine, embedded and always built: the backend
 * vtable over the system libsqlite3, and the native vector functions that
 * the SQLite dialect's templates call (registered per connection with
 * sqlite3_create_function, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS).
 *
 * Every function checks its BLOB lengths against its arguments, so a damaged
 * or hostile database gives an SQL error, never an out-of-bounds read.
 * Weights are never written at run time: the model database is opened
 * read-only and all step and cache tables are TEMP tables.
 *
 * Products have two forms.  The copying one, sqlm_gather(w.row,
 * sqlm_matvec(w.v, x.v, ...)), gets each tile as a BLOB that SQLite copies
 * first.  The in-place one, sqlm_rows(sqlm_matmul('table', w.id, stack)),
 * is chosen when the weight tiles could be mapped (db/tiles.c): the query
 * still scans the weight table, but only its rowids, and the aggregate reads
 * each tile's bytes from the mapping, then multiplies all of them with every
 * position of the batch at its final step, on the engine's thread pool.
 * The KV cache is a virtual table (sqlm_kv) whose rows sqlm_attend reads in
 * place the same way.
 *
 * Sections: argument helpers, scalar functions, aggregates, batches (stack,
 * sqlm_rows), the KV cache, attention, in-place products, registration, the
 * engine, mapping the tiles.
 */
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "engine.h"
#include "tiles.h"
#include "wcache.h"
#include "../kern/kern.h"

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

/* ------------------------------------------------------ argument helpers */

/* A float vector argument: its length in floats, or -1 (error set). */
static int64_t arg_f32(sqlite3_context *ctx, sqlite3_value *v, const float **out) {
    int n = sqlite3_value_bytes(v);
    const void *p = sqlite3_value_blob(v);
    *out = NULL;
    if (sqlite3_value_type(v) != SQLITE_BLOB || n % 4 || (!p && n)) {
        sqlite3_result_error(ctx, "sqlm: expected a BLOB of float32", -1);
        return -1;
    }
    *out = p;
    return n / 4;
}

static void result_f32(sqlite3_context *ctx, float *p, int64_t n) {
    sqlite3_result_blob64(ctx, p, (sqlite3_uint64)n * 4, sqlite3_free);
}

static float *alloc_f32(sqlite3_context *ctx, int64_t n) {
    float *p = sqlite3_malloc64((sqlite3_uint64)(n > 0 ? n : 1) * 4);
    if (!p) sqlite3_result_error_nomem(ctx);
    return p;
}

#define ARG_INT(i) sqlite3_value_int64(argv[i])
#define FAIL(msg) do { sqlite3_result_error(ctx, "sqlm: " msg, -1); return; } while (0)

/* ----------------------------------------------------- scalar functions */

/* sqlm_matvec(tile, x, col, chunk, n_in, dtype): the tile's rows (each the
 * columns [col, col + min(chunk, n_in - col)) of the matrix) dotted with x. */
static void fn_matvec(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    int64_t col = ARG_INT(2), chunk = ARG_INT(3), n_in = ARG_INT(4), dt = ARG_INT(5);
    if (!sqlm_dtype_valid((int)dt) || col < 0 || chunk <= 0 || col >= n_in) FAIL("matvec: bad shape");
    int64_t width = MIN(chunk, n_in - col);
    size_t rb;
    if (!sqlm_dtype_row_bytes((int)dt, (size_t)width, &rb) || col % (int64_t)sqlm_dtype_block((int)dt))
        FAIL("matvec: chunk not a whole number of blocks");
    int wn = sqlite3_value_bytes(argv[0]);
    const void *w = sqlite3_value_blob(argv[0]);
    if (!w || wn <= 0 || (size_t)wn % rb) FAIL("matvec: tile size is not a whole number of rows");
    int at = sqlm_vec_act_type((int)dt);
    size_t xneed, xoff;
    int xn = sqlite3_value_bytes(argv[1]);
    const char *x = sqlite3_value_blob(argv[1]);
    sqlm_dtype_row_bytes(at, (size_t)n_in, &xneed);
    sqlm_dtype_row_bytes(at, (size_t)col, &xoff);
    if (!x || (size_t)xn != xneed) FAIL("matvec: activation length does not match n_in");
    int64_t rows = (int64_t)((size_t)wn / rb);
    float *out = alloc_f32(ctx, rows);
    if (!out) return;
    sqlm_vec_matvec((int)dt, w, (size_t)rows, (size_t)width, x + xoff, out);
    result_f32(ctx, out, rows);
}

/* sqlm_quant(x, wdtype): x in the activation type that wdtype multiplies. */
static void fn_quant(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x;
    int64_t n = arg_f32(ctx, argv[0], &x);
    if (n < 0) return;
    int at = sqlm_vec_act_type((int)ARG_INT(1));
    if (at == DT_F32) {
        sqlite3_result_value(ctx, argv[0]);
        return;
    }
    if (n % QK) FAIL("quant: length not a multiple of 32");
    block_q8_0 *q = sqlite3_malloc64((sqlite3_uint64)(n / QK) * sizeof *q + 1);
    if (!q) { sqlite3_result_error_nomem(ctx); return; }
    sqlm_vec_quant_q8_0(x, q, (size_t)n);
    sqlite3_result_blob64(ctx, q, (sqlite3_uint64)(n / QK) * sizeof *q, sqlite3_free);
}

/* sqlm_row(tile, dtype, n_in, r): row r of a tile as float32. */
static void fn_row(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    int64_t dt = ARG_INT(1), n = ARG_INT(2), r = ARG_INT(3);
    size_t rb;
    if (!sqlm_dtype_valid((int)dt) || n <= 0 || !sqlm_dtype_row_bytes((int)dt, (size_t)n, &rb)) FAIL("row: bad shape");
    int wn = sqlite3_value_bytes(argv[0]);
    const char *w = sqlite3_value_blob(argv[0]);
    if (!w || r < 0 || (size_t)wn < rb * (size_t)(r + 1)) FAIL("row: index outside the tile");
    float *out = alloc_f32(ctx, n);
    if (!out) return;
    sqlm_dtype_to_f32((int)dt, w + rb * (size_t)r, out, (size_t)n);
    result_f32(ctx, out, n);
}

static void fn_rmsnorm(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x, *g;
    int64_t n = arg_f32(ctx, argv[0], &x), ng = arg_f32(ctx, argv[1], &g);
    if (n < 0 || ng < 0) return;
    if (n != ng || n == 0) FAIL("rmsnorm: length mismatch");
    float *out = alloc_f32(ctx, n);
    if (!out) return;
    sqlm_vec_rmsnorm(out, x, g, (size_t)n, (float)sqlite3_value_double(argv[2]));
    result_f32(ctx, out, n);
}

/* sqlm_rope(v, cs, n_head, n_head_kv, hd, interleaved, q_scale): rotate the
 * q heads and the k heads that follow them; q is also scaled by q_scale. */
static void fn_rope(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x, *cs;
    int64_t n = arg_f32(ctx, argv[0], &x), ncs = arg_f32(ctx, argv[1], &cs);
    int64_t nq = ARG_INT(2), nkv = ARG_INT(3), hd = ARG_INT(4);
    float qs = (float)sqlite3_value_double(argv[6]);
    if (n < 0 || ncs < 0) return;
    if (nq <= 0 || nkv < 0 || hd <= 0 || hd % 2 || (nq + nkv) * hd > n || ncs != hd) FAIL("rope: bad shape");
    float *out = alloc_f32(ctx, n);
    if (!out) return;
    memcpy(out, x, (size_t)n * 4);
    sqlm_vec_rope(out, cs, (int)nq, (int)nkv, (int)hd, ARG_INT(5) != 0, qs);
    result_f32(ctx, out, n);
}

static void fn_slice(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x;
    int64_t n = arg_f32(ctx, argv[0], &x), off = ARG_INT(1), len = ARG_INT(2);
    if (n < 0) return;
    if (off < 0 || len < 0 || off > n || len > n - off) FAIL("slice: out of range");
    sqlite3_result_blob64(ctx, x + off, (sqlite3_uint64)len * 4, SQLITE_TRANSIENT);
}

static void fn_vadd(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *a, *b;
    int64_t n = arg_f32(ctx, argv[0], &a), nb = arg_f32(ctx, argv[1], &b);
    if (n < 0 || nb < 0) return;
    if (n != nb) FAIL("vadd: length mismatch");
    float *out = alloc_f32(ctx, n);
    if (!out) return;
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    result_f32(ctx, out, n);
}

static void fn_swiglu(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x;
    int64_t n = arg_f32(ctx, argv[0], &x);
    if (n < 0) return;
    if (n % 2) FAIL("swiglu: odd length");
    float *out = alloc_f32(ctx, n / 2);
    if (!out) return;
    sqlm_vec_swiglu(out, x, (size_t)(n / 2));
    result_f32(ctx, out, n / 2);
}

/* sqlm_qk(q, k, n_head, n_head_kv, hd): per query head, q_h . k_(h / group). */
static void fn_qk(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *q, *k;
    int64_t nq = arg_f32(ctx, argv[0], &q), nk = arg_f32(ctx, argv[1], &k);
    int64_t nh = ARG_INT(2), nkv = ARG_INT(3), hd = ARG_INT(4);
    if (nq < 0 || nk < 0) return;
    if (nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || nq < nh * hd || nk != nkv * hd)
        FAIL("qk: bad shape");
    float *out = alloc_f32(ctx, nh);
    if (!out) return;
    for (int64_t h = 0; h < nh; h++)
        out[h] = sqlm_vec_dot_f32(q + h * hd, k + (h / (nh / nkv)) * hd, (size_t)hd);
    result_f32(ctx, out, nh);
}

static void fn_vexp(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *s, *m;
    int64_t n = arg_f32(ctx, argv[0], &s), nm = arg_f32(ctx, argv[1], &m);
    if (n < 0 || nm < 0) return;
    if (n != nm) FAIL("vexp: length mismatch");
    float *out = alloc_f32(ctx, n);
    if (!out) return;
    for (int64_t i = 0; i < n; i++) out[i] = expf(s[i] - m[i]);
    result_f32(ctx, out, n);
}

static void fn_argmax(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x;
    int64_t n = arg_f32(ctx, argv[0], &x), best = 0;
    if (n < 0) return;
    if (n == 0) FAIL("argmax: empty vector");
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    sqlite3_result_int64(ctx, best);
}

/* -------------------------------------------------- aggregate functions */

/* Aggregate state: a float vector sized on the first row, plus a second
 * vector (the softmax denominators of sqlm_attn). */
typedef struct agg {
    float *v;
    float *z;
    int64_t n, nz;
    bool err;
} agg;

static agg *agg_get(sqlite3_context *ctx, int64_t n, int64_t nz) {
    agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
    if (!a) {
        sqlite3_result_error_nomem(ctx);
        return NULL;
    }
    if (a->err) return NULL;
    if (!a->v) {
        if (n <= 0 || n > (1 << 28) || nz < 0 || nz > (1 << 20)) {
            a->err = true;
            sqlite3_result_error(ctx, "sqlm: aggregate length out of range", -1);
            return NULL;
        }
        a->v = sqlite3_malloc64((sqlite3_uint64)(n + nz) * 4);
        if (!a->v) {
            a->err = true;
            sqlite3_result_error_nomem(ctx);
            return NULL;
        }
        a->z = a->v + n;
        a->n = n;
        a->nz = nz;
        memset(a->v, 0, (size_t)(n + nz) * 4);
    }
    return a;
}

static void agg_final(sqlite3_context *ctx) {
    agg *a = sqlite3_aggregate_context(ctx, 0);
    if (!a || !a->v) {
        if (!a || !a->err) sqlite3_result_null(ctx);
        return;
    }
    if (a->err) {
        sqlite3_free(a->v);
        return;
    }
    sqlite3_result_blob64(ctx, a->v, (sqlite3_uint64)a->n * 4, sqlite3_free);
    a->v = NULL;
}

/* sqlm_gather(row, part, n_out): out[row + i] += part[i]. */
static void agg_gather_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *p;
    int64_t n = arg_f32(ctx, argv[1], &p), row = ARG_INT(0);
    if (n < 0) return;
    agg *a = agg_get(ctx, ARG_INT(2), 0);
    if (!a) return;
    if (row < 0 || n > a->n - row) {
        a->err = true;
        FAIL("gather: rows outside the output");
    }
    for (int64_t i = 0; i < n; i++) a->v[row + i] += p[i];
}

static void agg_vmax_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *p;
    int64_t n = arg_f32(ctx, argv[0], &p);
    if (n < 0) return;
    agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
    bool first = a && !a->v;
    if (!(a = agg_get(ctx, n, 0))) return;
    if (n != a->n) {
        a->err = true;
        FAIL("vmax: length mismatch");
    }
    for (int64_t i = 0; i < n; i++) a->v[i] = first ? p[i] : fmaxf(a->v[i], p[i]);
}

/* sqlm_attn(e, v, n_head, n_head_kv, hd): sum_pos e_h * v_(h / group), then
 * divided by sum_pos e_h: the softmax-weighted values of every head. */
static void agg_attn_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *e, *v;
    int64_t ne = arg_f32(ctx, argv[0], &e), nv = arg_f32(ctx, argv[1], &v);
    int64_t nh = ARG_INT(2), nkv = ARG_INT(3), hd = ARG_INT(4);
    if (ne < 0 || nv < 0) return;
    if (nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || ne != nh || nv != nkv * hd)
        FAIL("attn: bad shape");
    agg *a = agg_get(ctx, nh * hd, nh);
    if (!a) return;
    int64_t group = nh / nkv;
    for (int64_t h = 0; h < nh; h++) {
        float *o = a->v + h * hd;
        const float *vh = v + (h / group) * hd;
        for (int64_t i = 0; i < hd; i++) o[i] += e[h] * vh[i];
        a->z[h] += e[h];
    }
}

static void agg_attn_final(sqlite3_context *ctx) {
    agg *a = sqlite3_aggregate_context(ctx, 0);
    if (a && a->v && !a->err) {
        int64_t hd = a->n / a->nz;
        for (int64_t h = 0; h < a->nz; h++)
            for (int64_t i = 0; i < hd; i++) a->v[h * hd + i] /= a->z[h];
    }
    agg_final(ctx);
}

/* ------------------------------------------------ batches: stack, rows */

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
static bool batch_parse(const void *p, size_t len, uint32_t magic, size_t elem, batch_view *v) {
    const uint8_t *b = p;
    uint32_t mg, n;
    uint64_t width;
    if (!p || len < BATCH_HDR) return false;
    memcpy(&mg, b, 4), memcpy(&n, b + 4, 4), memcpy(&width, b + 8, 8);
    size_t need;
    if (mg != magic || n == 0 || n > MAX_BATCH || width == 0 || width > ((size_t)1 << 32)) return false;
    if (!size_mul((size_t)n, (size_t)width * elem, &need) || !size_add(need, BATCH_HDR + 8 * (size_t)n, &need) ||
        need != len)
        return false;
    v->n = n;
    v->width = width;
    v->pos = (const int64_t *)(b + BATCH_HDR);
    v->data = b + BATCH_HDR + 8 * (size_t)n;
    return true;
}

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

static batch_ref *batch_new(size_t len) {
    batch_ref *b = sqlite3_malloc64(32 + (len ? len : 1));
    if (!b) return NULL;
    b->refs = 1;
    b->len = len;
    b->p = (uint8_t *)b + 32;
    return b;
}

static void batch_unref(void *p) {
    batch_ref *b = p;
    if (b && --b->refs == 0) sqlite3_free(b);
}

static void result_batch(sqlite3_context *ctx, batch_ref *b) { sqlite3_result_pointer(ctx, b, BATCH_PTR, batch_unref); }

/* A reference to the batch in v: 1 (*out set, release with batch_unref), 0 if
 * v is NULL, -1 if v is neither a batch pointer nor a BLOB (or no memory). */
static int batch_take(sqlite3_value *v, batch_ref **out) {
    batch_ref *b = sqlite3_value_pointer(v, BATCH_PTR);
    *out = NULL;
    if (b) {
        b->refs++;
        *out = b;
        return 1;
    }
    if (sqlite3_value_type(v) == SQLITE_NULL) return 0;
    if (sqlite3_value_type(v) != SQLITE_BLOB) return -1;
    int n = sqlite3_value_bytes(v);
    const void *p = sqlite3_value_blob(v);
    if (n <= 0 || !p || !(b = batch_new((size_t)n))) return -1;
    memcpy(b->p, p, (size_t)n);
    *out = b;
    return 1;
}

/* sqlm_stack(pos, v): the rows of a batch as one stack (all rows the same length). */
typedef struct stack_agg {
    buf pos, data;
    uint64_t width;
    uint32_t n;
    bool err;
} stack_agg;

static void agg_stack_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    stack_agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
    if (!a) { sqlite3_result_error_nomem(ctx); return; }
    if (a->err) return;
    int len = sqlite3_value_bytes(argv[1]);
    const void *v = sqlite3_value_blob(argv[1]);
    int64_t pos = ARG_INT(0);
    if (sqlite3_value_type(argv[1]) != SQLITE_BLOB || len <= 0 || !v || (a->n && (uint64_t)len != a->width) ||
        a->n >= MAX_BATCH) {
        a->err = true;
        FAIL("stack: rows must be BLOBs of one length");
    }
    a->width = (uint64_t)len;
    a->n++;
    sqlm_buf_append(&a->pos, &pos, sizeof pos);
    sqlm_buf_append(&a->data, v, (size_t)len);
    if (a->pos.rc || a->data.rc) {
        a->err = true;
        sqlite3_result_error_nomem(ctx);
    }
}

static void agg_stack_final(sqlite3_context *ctx) {
    stack_agg *a = sqlite3_aggregate_context(ctx, 0);
    if (!a) { sqlite3_result_null(ctx); return; }
    if (!a->err && a->n) {
        batch_ref *b = batch_new(BATCH_HDR + a->pos.len + a->data.len);
        if (!b) {
            sqlite3_result_error_nomem(ctx);
        } else {
            uint32_t magic = STACK_MAGIC;
            uint8_t *out = b->p;
            memcpy(out, &magic, 4), memcpy(out + 4, &a->n, 4), memcpy(out + 8, &a->width, 8);
            memcpy(out + BATCH_HDR, a->pos.p, a->pos.len);
            memcpy(out + BATCH_HDR + a->pos.len, a->data.p, a->data.len);
            result_batch(ctx, b);
        }
    } else if (!a->err) {
        sqlite3_result_null(ctx);
    }
    sqlm_buf_free(&a->pos);
    sqlm_buf_free(&a->data);
}

/*
 * sqlm_rows(product): a table-valued function (an eponymous virtual table)
 * with one row (pos, v) per position of a product.  The product reaches
 * xFilter once per statement; a scalar function taking it per output row
 * would have SQLite copy the whole product for every row.
 */
typedef struct rows_cursor {
    sqlite3_vtab_cursor base;
    batch_ref *prod;         /* a reference to the product, or NULL: no rows */
    batch_view v;
    uint32_t i;              /* current row */
} rows_cursor;

static int rows_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err) {
    (void)aux, (void)argc, (void)argv, (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(pos INTEGER, v BLOB, product HIDDEN)");
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab *t = sqlite3_malloc(sizeof *t);
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof *t);
    sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
    *out = t;
    return SQLITE_OK;
}

static int rows_disconnect(sqlite3_vtab *t) {
    sqlite3_free(t);
    return SQLITE_OK;
}

/* The product argument is an equality constraint on the hidden column 2. */
static int rows_best_index(sqlite3_vtab *t, sqlite3_index_info *ii) {
    (void)t;
    for (int i = 0; i < ii->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &ii->aConstraint[i];
        if (c->iColumn != 2 || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
        if (!c->usable) return SQLITE_CONSTRAINT;
        ii->aConstraintUsage[i].argvIndex = 1;
        ii->aConstraintUsage[i].omit = 1;
        ii->idxNum = 1;
        ii->estimatedCost = 1;
        ii->estimatedRows = 16;
        return SQLITE_OK;
    }
    ii->idxNum = 0;   /* no product: no rows */
    ii->estimatedCost = 1e12;
    return SQLITE_OK;
}

/* A zeroed cursor of size bytes (its struct starts with the base cursor). */
static int cursor_new(size_t size, sqlite3_vtab_cursor **out) {
    void *c = sqlite3_malloc64(size);
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, size);
    *out = c;
    return SQLITE_OK;
}

static int rows_open(sqlite3_vtab *t, sqlite3_vtab_cursor **out) {
    (void)t;
    return cursor_new(sizeof(rows_cursor), out);
}

static int rows_close(sqlite3_vtab_cursor *cur) {
    rows_cursor *c = (rows_cursor *)cur;
    batch_unref(c->prod);
    sqlite3_free(c);
    return SQLITE_OK;
}

static int rows_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc, sqlite3_value **argv) {
    (void)idx_str;
    rows_cursor *c = (rows_cursor *)cur;
    batch_unref(c->prod);
    c->prod = NULL;
    c->i = 0;
    memset(&c->v, 0, sizeof c->v);
    if (idx != 1 || argc < 1) return SQLITE_OK;
    int rc = batch_take(argv[0], &c->prod);
    if (rc == 0) return SQLITE_OK;   /* NULL: no rows */
    if (rc < 0 || !batch_parse(c->prod->p, c->prod->len, PROD_MAGIC, 4, &c->v)) {
        sqlite3_free(cur->pVtab->zErrMsg);
        cur->pVtab->zErrMsg = sqlite3_mprintf("sqlm: rows: not a product");
        batch_unref(c->prod);
        c->prod = NULL;
        return SQLITE_ERROR;
    }
    return SQLITE_OK;
}

static int rows_next(sqlite3_vtab_cursor *cur) {
    ((rows_cursor *)cur)->i++;
    return SQLITE_OK;
}

static int rows_eof(sqlite3_vtab_cursor *cur) {
    rows_cursor *c = (rows_cursor *)cur;
    return !c->prod || c->i >= c->v.n;
}

static int rows_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
    rows_cursor *c = (rows_cursor *)cur;
    int64_t pos;
    memcpy(&pos, &c->v.pos[c->i], 8);
    if (col == 0) sqlite3_result_int64(ctx, pos);
    else if (col == 1) sqlite3_result_blob64(ctx, c->v.data + (size_t)c->i * c->v.width * 4, c->v.width * 4, SQLITE_TRANSIENT);
    else sqlite3_result_null(ctx);
    return SQLITE_OK;
}

static int rows_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
    *rowid = ((rows_cursor *)cur)->i;
    return SQLITE_OK;
}

static const sqlite3_module rows_module = {
    .iVersion = 0,
    .xConnect = rows_connect,          /* eponymous-only: no xCreate */
    .xBestIndex = rows_best_index,
    .xDisconnect = rows_disconnect,
    .xOpen = rows_open,
    .xClose = rows_close,
    .xFilter = rows_filter,
    .xNext = rows_next,
    .xEof = rows_eof,
    .xColumn = rows_column,
    .xRowid = rows_rowid,
};

/* ------------------------------------------------------------- KV cache */

/*
 * sqlm_kv: the KV-cache tables as virtual tables (CREATE VIRTUAL TABLE
 * temp.kv0 USING sqlm_kv), columns (pos INTEGER, k BLOB, v BLOB), rowid =
 * pos.  Rows are kept in memory the engine owns, one buffer per row that
 * never moves while the row exists, so that
 *   - a scan hands k and v to functions without SQLite copying them
 *     (SQLITE_STATIC), and
 *   - sqlm_attend reads the rows of the positions a scan gives it in place,
 *     by table name, as sqlm_matmul reads weight tiles.
 * Positions are keys: inserting a position twice is a constraint error.
 * Rows are inserted and deleted, never updated.  Scans run in position
 * order, over a range when the query bounds pos (=, <, <=, >, >=).
 */
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

typedef struct kv_cursor {
    sqlite3_vtab_cursor base;
    int64_t pos, hi;         /* current position; last one in range */
} kv_cursor;

#define KV_MAX_POS (1 << 24)

static kv_table *kv_find(sqlite_engine *s, const char *name) {
    for (kv_table *t = s->kv; t; t = t->next)
        if (strcmp(t->name, name) == 0) return t;
    return NULL;
}

/* The k and v rows of position pos, or NULL. */
static const float *kv_row(const kv_table *t, int64_t pos) {
    return pos >= 0 && pos < t->cap && t->row[pos] ? (const float *)t->row[pos] : NULL;
}

static int kv_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err) {
    (void)argc, (void)err;
    sqlite_engine *s = aux;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(pos INTEGER, k BLOB, v BLOB)");
    if (rc != SQLITE_OK) return rc;
    kv_table *t = sqlite3_malloc(sizeof *t);
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof *t);
    t->e = s;
    if (!(t->name = sqlite3_mprintf("%s", argv[2]))) {
        sqlite3_free(t);
        return SQLITE_NOMEM;
    }
    t->next = s->kv;
    s->kv = t;
    *out = &t->base;
    return SQLITE_OK;
}

static void kv_clear(kv_table *t) {
    for (int64_t i = 0; i < t->cap; i++) sqlite3_free(t->row[i]);
    sqlite3_free(t->row);
    t->row = NULL;
    t->cap = t->n = 0;
}

static int kv_disconnect(sqlite3_vtab *vt) {
    kv_table *t = (kv_table *)vt;
    for (kv_table **p = &t->e->kv; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    kv_clear(t);
    sqlite3_free(t->name);
    sqlite3_free(t);
    return SQLITE_OK;
}

/* idxNum bits: 1 a lower bound is argv[0], 2 it is strict (>); 4 an upper
 * bound follows, 8 it is strict (<).  pos = X counts as both bounds. */
static int kv_best_index(sqlite3_vtab *vt, sqlite3_index_info *ii) {
    (void)vt;
    int lo = -1, hi = -1, bits = 0;
    for (int i = 0; i < ii->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &ii->aConstraint[i];
        if (!c->usable || (c->iColumn != 0 && c->iColumn != -1)) continue;
        switch (c->op) {
        case SQLITE_INDEX_CONSTRAINT_EQ:
            if (lo < 0) lo = i, hi = i, bits &= ~(2 | 8);
            break;
        case SQLITE_INDEX_CONSTRAINT_GT:
        case SQLITE_INDEX_CONSTRAINT_GE:
            if (lo < 0) lo = i, bits |= c->op == SQLITE_INDEX_CONSTRAINT_GT ? 2 : 0;
            break;
        case SQLITE_INDEX_CONSTRAINT_LT:
        case SQLITE_INDEX_CONSTRAINT_LE:
            if (hi < 0) hi = i, bits |= c->op == SQLITE_INDEX_CONSTRAINT_LT ? 8 : 0;
            break;
        default: break;
        }
    }
    int arg = 0;
    double cost = 1e6;
    if (lo >= 0) {
        ii->aConstraintUsage[lo].argvIndex = ++arg;
        ii->aConstraintUsage[lo].omit = 1;
        bits |= 1;
        cost /= 4;
    }
    if (hi >= 0) {
        if (hi != lo) {
            ii->aConstraintUsage[hi].argvIndex = ++arg;
            ii->aConstraintUsage[hi].omit = 1;
        }
        bits |= 4;
        cost /= 4;
    }
    if (lo >= 0 && lo == hi) cost = 1;
    ii->idxNum = bits | (lo >= 0 && lo == hi ? 16 : 0);   /* 16: one argument for both bounds */
    ii->estimatedCost = cost;
    if (ii->nOrderBy == 1 && (ii->aOrderBy[0].iColumn == 0 || ii->aOrderBy[0].iColumn == -1) &&
        !ii->aOrderBy[0].desc)
        ii->orderByConsumed = 1;
    return SQLITE_OK;
}

static int kv_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
    (void)vt;
    return cursor_new(sizeof(kv_cursor), out);
}

static int kv_close(sqlite3_vtab_cursor *cur) {
    sqlite3_free(cur);
    return SQLITE_OK;
}

static void kv_skip(kv_cursor *c) {
    const kv_table *t = (const kv_table *)c->base.pVtab;
    while (c->pos <= c->hi && c->pos < t->cap && !t->row[c->pos]) c->pos++;
}

/* The first (lower) or last (upper) integer position a bound admits:
 * pos > v, pos >= v, pos < v, pos <= v for v of any numeric type. */
static int64_t kv_bound(sqlite3_value *v, bool lower, bool strict) {
    if (sqlite3_value_type(v) == SQLITE_NULL) return lower ? INT64_MAX : INT64_MIN;   /* no row */
    if (sqlite3_value_numeric_type(v) == SQLITE_INTEGER) {
        int64_t x = sqlite3_value_int64(v);
        if (!strict) return x;
        if (lower) return x == INT64_MAX ? INT64_MAX : x + 1;
        return x == INT64_MIN ? INT64_MIN : x - 1;
    }
    double d = sqlite3_value_double(v);
    if (d != d) return lower ? INT64_MAX : INT64_MIN;   /* NaN (or text): no row */
    if (d < -9e18) return lower ? INT64_MIN : -1;
    if (d > 9e18) return INT64_MAX;
    double f = floor(d);
    if (lower) return (int64_t)f + (strict || f < d ? 1 : 0);
    return (int64_t)ceil(d) - (strict || f < d ? 1 : 0);
}

static int kv_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc, sqlite3_value **argv) {
    (void)idx_str, (void)argc;
    kv_cursor *c = (kv_cursor *)cur;
    const kv_table *t = (const kv_table *)cur->pVtab;
    int64_t lo = 0, hi = t->cap - 1;
    int a = 0;
    if (idx & 1) {
        lo = kv_bound(argv[a], true, (idx & 2) != 0);
        if (idx & 16) hi = MIN(hi, kv_bound(argv[a], false, false));
        a++;
    }
    if ((idx & 4) && !(idx & 16)) hi = MIN(hi, kv_bound(argv[a], false, (idx & 8) != 0));
    c->pos = MAX(lo, 0);
    c->hi = hi;
    kv_skip(c);
    return SQLITE_OK;
}

static int kv_next(sqlite3_vtab_cursor *cur) {
    kv_cursor *c = (kv_cursor *)cur;
    c->pos++;
    kv_skip(c);
    return SQLITE_OK;
}

static int kv_eof(sqlite3_vtab_cursor *cur) {
    const kv_cursor *c = (const kv_cursor *)cur;
    const kv_table *t = (const kv_table *)cur->pVtab;
    return c->pos > c->hi || c->pos >= t->cap;
}

static int kv_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
    const kv_cursor *c = (const kv_cursor *)cur;
    const kv_table *t = (const kv_table *)cur->pVtab;
    const uint8_t *r = t->row[c->pos];
    if (col == 0) sqlite3_result_int64(ctx, c->pos);
    else if (col == 1) sqlite3_result_blob64(ctx, r, (sqlite3_uint64)t->k_len, SQLITE_STATIC);
    else sqlite3_result_blob64(ctx, r + t->k_len, (sqlite3_uint64)t->v_len, SQLITE_STATIC);
    return SQLITE_OK;
}

static int kv_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
    *rowid = ((const kv_cursor *)cur)->pos;
    return SQLITE_OK;
}

static int kv_error(kv_table *t, int rc, const char *msg) {
    sqlite3_free(t->base.zErrMsg);
    t->base.zErrMsg = sqlite3_mprintf("sqlm_kv %s: %s", t->name, msg);
    return rc;
}

/* DELETE (argc 1) and INSERT (argv[0] NULL) of one row; no UPDATE. */
static int kv_update(sqlite3_vtab *vt, int argc, sqlite3_value **argv, sqlite3_int64 *rowid) {
    kv_table *t = (kv_table *)vt;
    if (argc == 1) {
        int64_t pos = sqlite3_value_int64(argv[0]);
        if (pos >= 0 && pos < t->cap && t->row[pos]) {
            sqlite3_free(t->row[pos]);
            t->row[pos] = NULL;
            t->n--;
        }
        return SQLITE_OK;
    }
    if (sqlite3_value_type(argv[0]) != SQLITE_NULL) return kv_error(t, SQLITE_ERROR, "rows are not updated");
    sqlite3_value *pv = sqlite3_value_type(argv[2]) != SQLITE_NULL ? argv[2] : argv[1];
    if (sqlite3_value_numeric_type(pv) != SQLITE_INTEGER) return kv_error(t, SQLITE_MISMATCH, "pos must be an integer");
    int64_t pos = sqlite3_value_int64(pv);
    if (pos < 0 || pos >= KV_MAX_POS) return kv_error(t, SQLITE_RANGE, "pos out of range");
    if (sqlite3_value_type(argv[3]) != SQLITE_BLOB || sqlite3_value_type(argv[4]) != SQLITE_BLOB)
        return kv_error(t, SQLITE_MISMATCH, "k and v must be BLOBs");
    int64_t kl = sqlite3_value_bytes(argv[3]), vl = sqlite3_value_bytes(argv[4]);
    if (t->n == 0) t->k_len = kl, t->v_len = vl;
    if (kl != t->k_len || vl != t->v_len || kl <= 0 || vl <= 0 || kl % 4 || vl % 4)
        return kv_error(t, SQLITE_MISMATCH, "k and v lengths differ from the other rows'");
    if (pos < t->cap && t->row[pos]) return kv_error(t, SQLITE_CONSTRAINT, "position already cached");
    if (pos >= t->cap) {
        int64_t cap = MAX(MAX(t->cap * 2, pos + 1), 64);
        uint8_t **r = sqlite3_realloc64(t->row, sizeof *r * (sqlite3_uint64)cap);
        if (!r) return SQLITE_NOMEM;
        memset(r + t->cap, 0, sizeof *r * (size_t)(cap - t->cap));
        t->row = r;
        t->cap = cap;
    }
    uint8_t *row = sqlite3_malloc64((sqlite3_uint64)(kl + vl));
    if (!row) return SQLITE_NOMEM;
    memcpy(row, sqlite3_value_blob(argv[3]), (size_t)kl);
    memcpy(row + kl, sqlite3_value_blob(argv[4]), (size_t)vl);
    t->row[pos] = row;
    t->n++;
    *rowid = pos;
    return SQLITE_OK;
}

static const sqlite3_module kv_module = {
    .iVersion = 0,
    .xCreate = kv_connect,
    .xConnect = kv_connect,
    .xBestIndex = kv_best_index,
    .xDisconnect = kv_disconnect,
    .xDestroy = kv_disconnect,
    .xOpen = kv_open,
    .xClose = kv_close,
    .xFilter = kv_filter,
    .xNext = kv_next,
    .xEof = kv_eof,
    .xColumn = kv_column,
    .xRowid = kv_rowid,
    .xUpdate = kv_update,
};

/* ------------------------------------------------------------ attention */

/*
 * sqlm_attend(queries, 'kv', kpos, n_head, n_head_kv, hd): causal attention
 * of a batch of queries over the cache rows of sqlm_kv table 'kv' that the
 * scan gives (by position; the rows are read in place).  queries is a stack
 * of the batch's q vectors (sqlm_stack) and comes with one row, NULL on the
 * others (SQLite would copy a value passed on every row).  The result is a
 * product, one row per query: for query position qp, over the keys at
 * positions <= qp in position order, per head the scores q_h . k_(h / group),
 * their maximum, e = exp(score - max), sum e * v and sum e: the arithmetic of
 * sqlm_qk, sqlm_vmax, sqlm_vexp and sqlm_attn.  Each cache row is read once
 * per batch, not once per query.
 */
typedef struct attend_agg {
    batch_ref *qs;           /* the queries' stack, or NULL until a row brings it */
    kv_table *kv;
    int64_t nh, nkv, hd;
    int64_t *pos;            /* [cap] key positions */
    size_t n, cap;
    bool err;
} attend_agg;

static void attend_fail(sqlite3_context *ctx, attend_agg *a, const char *msg) {
    a->err = true;
    sqlite3_result_error(ctx, msg, -1);
}

static void agg_attend_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    sqlite_engine *s = sqlite3_user_data(ctx);
    attend_agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
    if (!a) { sqlite3_result_error_nomem(ctx); return; }
    if (a->err) return;
    if (!a->kv) {
        int64_t nh = ARG_INT(3), nkv = ARG_INT(4), hd = ARG_INT(5);
        if (nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || nh > 4096 || hd > 4096)
            return attend_fail(ctx, a, "sqlm: attend: bad shape");
        const char *name = (const char *)sqlite3_value_text(argv[1]);
        if (!name || !(a->kv = kv_find(s, name))) return attend_fail(ctx, a, "sqlm: attend: not an sqlm_kv table");
        a->nh = nh, a->nkv = nkv, a->hd = hd;
    }
    batch_ref *qs;
    int got = batch_take(argv[0], &qs);
    if (got) {
        batch_view qv;
        if (got < 0 || a->qs || !batch_parse(qs->p, qs->len, STACK_MAGIC, 1, &qv) || qv.width % 4 ||
            qv.width / 4 < (uint64_t)(a->nh * a->hd)) {
            batch_unref(qs);
            return attend_fail(ctx, a, a->qs ? "sqlm: attend: queries given twice"
                                             : "sqlm: attend: queries must be a stack of q vectors");
        }
        a->qs = qs;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        int64_t *np = realloc(a->pos, sizeof *np * cap);
        if (!np) return attend_fail(ctx, a, "sqlm: out of memory");
        a->pos = np;
        a->cap = cap;
    }
    a->pos[a->n++] = ARG_INT(2);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The (query, head) pairs of a batch on the pool: thread ith takes every
 * nth pair, so one query (decode) spreads its heads over the threads. */
typedef struct attend_job {
    const attend_agg *a;
    const float **k;         /* [n] key rows in position order; values follow each */
    batch_view q;
    float *out;              /* [n queries][nh * hd] */
    _Atomic int err;
} attend_job;

static void attend_run(void *arg, int ith, int nth) {
    attend_job *j = arg;
    const attend_agg *a = j->a;
    const int64_t nh = a->nh, hd = a->hd, kvd = a->nkv * hd, group = nh / a->nkv;
    float *s = malloc(sizeof *s * (a->n + 1));
    if (!s) {
        atomic_store(&j->err, 1);
        return;
    }
    for (size_t it = (size_t)ith; it < (size_t)j->q.n * (size_t)nh; it += (size_t)nth) {
        const size_t qi = it / (size_t)nh, h = it % (size_t)nh;
        int64_t qp;
        memcpy(&qp, &j->q.pos[qi], 8);
        const float *q = (const float *)(j->q.data + qi * j->q.width);   /* aligned: see the final step */
        size_t nk = 0;   /* keys at positions <= qp come first in position order */
        while (nk < a->n && a->pos[nk] <= qp) nk++;
        float *out = j->out + qi * (size_t)(nh * hd) + h * (size_t)hd;
        if (!nk) {   /* no key: zeros (a query always sees its own key) */
            memset(out, 0, sizeof *out * (size_t)hd);
            continue;
        }
        const size_t kh = (h / (size_t)group) * (size_t)hd;
        sqlm_vec_attend_head(q + h * (size_t)hd, j->k, nk, kh, (size_t)kvd + kh, (size_t)hd, s, out);
    }
    free(s);
}

static void agg_attend_final(sqlite3_context *ctx) {
    sqlite_engine *s = sqlite3_user_data(ctx);
    attend_agg *a = sqlite3_aggregate_context(ctx, 0);
    if (!a) { sqlite3_result_null(ctx); return; }
    batch_ref *ob = NULL;
    attend_job j = { .a = a };
    if (a->err || !a->n || !a->qs) {   /* no keys, or no queries: no rows */
        if (!a->err) sqlite3_result_null(ctx);
        goto done;
    }
    batch_parse(a->qs->p, a->qs->len, STACK_MAGIC, 1, &j.q);   /* checked by the step */
    if (((uintptr_t)j.q.data | j.q.width) % 4) {   /* 16-byte aligned, 16 + 8n header: cannot happen */
        sqlite3_result_error(ctx, "sqlm: attend: misaligned queries", -1);
        goto done;
    }
    const int64_t kvd = a->nkv * a->hd;
    if (a->kv->k_len != kvd * 4 || a->kv->v_len != kvd * 4) {
        sqlite3_result_error(ctx, "sqlm: attend: cache rows do not match the head shape", -1);
        goto done;
    }
    /* keys in position order, each row found in the cache */
    for (size_t i = 1; i < a->n; i++)
        if (a->pos[i] < a->pos[i - 1]) {
            qsort(a->pos, a->n, sizeof *a->pos, cmp_i64);
            break;
        }
    if (!(j.k = malloc(sizeof *j.k * a->n))) {
        sqlite3_result_error_nomem(ctx);
        goto done;
    }
    for (size_t i = 0; i < a->n; i++)
        if (!(j.k[i] = kv_row(a->kv, a->pos[i]))) {
            sqlite3_result_error(ctx, "sqlm: attend: position not in the cache", -1);
            goto done;
        }
    const int64_t qd = a->nh * a->hd;
    size_t len = BATCH_HDR + 8 * (size_t)j.q.n + 4 * (size_t)j.q.n * (size_t)qd;
    if (!(ob = batch_new(len))) {
        sqlite3_result_error_nomem(ctx);
        goto done;
    }
    uint8_t *out = ob->p;
    uint32_t magic = PROD_MAGIC;
    uint64_t width = (uint64_t)qd;
    memcpy(out, &magic, 4), memcpy(out + 4, &j.q.n, 4), memcpy(out + 8, &width, 8);
    memcpy(out + BATCH_HDR, j.q.pos, 8 * (size_t)j.q.n);
    j.out = (float *)(out + BATCH_HDR + 8 * (size_t)j.q.n);
    sqlm_pool_run(s->pool, attend_run, &j);
    if (atomic_load(&j.err)) {
        sqlite3_result_error_nomem(ctx);
        goto done;
    }
    result_batch(ctx, ob);
    ob = NULL;
done:
    batch_unref(ob);
    free(j.k);
    batch_unref(a->qs);
    free(a->pos);
    a->qs = NULL;
    a->pos = NULL;
}

/* ------------------------------------------- in-place products (tiles.c) */

/* sqlm_matmul('table', id, stack): collects the tile ids the scan delivers,
 * then multiplies those tiles with every row of the stack at the final step.
 * The stack comes with one row and is NULL on the others: a value passed on
 * every row would be copied by SQLite for every row. */
typedef struct matmul_agg {
    int wi;                  /* weight index in the tile store + 1; 0 before the first row */
    int64_t *ids;
    size_t n_ids, cap;
    batch_ref *x;            /* the stack of activations */
    bool err;                /* an error was reported */
} matmul_agg;

static void agg_matmul_fail(sqlite3_context *ctx, matmul_agg *a, const char *msg) {
    a->err = true;
    sqlite3_result_error(ctx, msg, -1);
}

static void agg_matmul_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    sqlite_engine *s = sqlite3_user_data(ctx);
    matmul_agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
    if (!a) { sqlite3_result_error_nomem(ctx); return; }
    if (a->err) return;
    if (!s->tiles) return agg_matmul_fail(ctx, a, "sqlm: matmul: weight tiles are not mapped in this session");
    if (!a->wi) {
        /* the table name is a constant argument: look it up once per statement */
        intptr_t wi = (intptr_t)sqlite3_get_auxdata(ctx, 0);
        if (!wi) {
            const char *name = (const char *)sqlite3_value_text(argv[0]);
            wi = name ? sqlm_tiles_find(s->tiles, name) + 1 : 0;
            if (!wi) return agg_matmul_fail(ctx, a, "sqlm: matmul: not a mapped weight table");
            sqlite3_set_auxdata(ctx, 0, (void *)wi, NULL);
        }
        a->wi = (int)wi;
    }
    /* the activations come with one row (the template passes NULL on the others) */
    batch_ref *x;
    int got = batch_take(argv[2], &x);
    if (got) {
        if (got < 0 || a->x) {
            batch_unref(x);
            return agg_matmul_fail(ctx, a, a->x ? "sqlm: matmul: activations given twice"
                                                : "sqlm: matmul: activations must be a stack");
        }
        a->x = x;
    }
    int64_t id = ARG_INT(1);
    if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || id < 0 || id >= sqlm_tiles_count(s->tiles, a->wi - 1))
        return agg_matmul_fail(ctx, a, "sqlm: matmul: tile id outside the table");
    if (a->n_ids == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 1024;
        int64_t *p = realloc(a->ids, cap * sizeof *p);
        if (!p) return agg_matmul_fail(ctx, a, "sqlm: out of memory");
        a->ids = p;
        a->cap = cap;
    }
    a->ids[a->n_ids++] = id;
    /* the scan reads the record of each tile from memory: ask for one a few tiles ahead */
    sqlm_tiles_prefetch(s->tiles, a->wi - 1, id + 4);
}

/*
 * One product on the pool.  The ids are cut into units of whole row blocks
 * (so threads write disjoint output rows), several per thread, and each
 * thread takes the next unit until none are left: on a busy machine a thread
 * that loses its core holds up at most the unit it is in, not half the
 * product.
 */
typedef struct matmul_job {
    tile_store *ts;
    int wi;
    const ir_weight *w;
    int64_t n_chunks;
    const int64_t *ids;
    size_t *unit;            /* [n_units + 1] unit u is ids [unit[u], unit[u + 1]) */
    size_t n_units;
    _Atomic size_t next;     /* next unit to take */
    const uint8_t *x;        /* [n][xrb] activations */
    size_t xrb;
    int n;
    float *y;                /* [n][n_out] */
    const uint8_t *xu;       /* panel path: [n][nbx][32] quants + 128, or NULL */
    const float *dx;         /* [n][nbx] scales */
    size_t nbx;              /* blocks per activation */
    _Atomic int err;
} matmul_job;

/* Batches of at least this many positions run on repacked panels (kern/vec.c). */
#define PANEL_MIN_BATCH 4

/* The panel path of a thread: rows of consecutive tiles of one column chunk
 * are gathered VEC_PANEL at a time, each panel multiplied with all positions. */
typedef struct panel_state {
    void *panel;             /* sqlm_vec_panel_bytes(blocks of a chunk), 64-byte aligned */
    float *out;              /* [n][VEC_PANEL] */
    int64_t row[VEC_PANEL];  /* output row of each slot */
    int k;                   /* slots filled */
    int64_t col0;            /* column of the panel's chunk */
    size_t nb;               /* its blocks */
} panel_state;

static void panel_flush(matmul_job *j, panel_state *ps) {
    if (!ps->k) return;
    sqlm_vec_panel_seal(ps->panel, ps->nb, ps->k);
    size_t b0 = (size_t)ps->col0 / QK;
    sqlm_vec_panel_mul(ps->panel, ps->nb, j->xu + b0 * QK, j->dx + b0, j->nbx, (size_t)j->n, ps->out);
    const int64_t n_out = j->w->n_out;
    for (int p = 0; p < j->n; p++) {
        float *y = j->y + (size_t)p * (size_t)n_out;
        const float *o = ps->out + (size_t)p * VEC_PANEL;
        for (int r = 0; r < ps->k; r++) y[ps->row[r]] += o[r];
    }
    ps->k = 0;
}

/* Units [first, end) of ids on panels: tiles already checked by the caller's rules. */
static void panel_unit(matmul_job *j, panel_state *ps, size_t first, size_t end) {
    const ir_weight *w = j->w;
    for (size_t i = first; i < end; i++) {
        int64_t id = j->ids[i];
        size_t len, rb;
        const uint8_t *t = sqlm_tiles_get(j->ts, j->wi, id, &len);
        int64_t row0 = id / j->n_chunks * w->tile_rows, col0 = id % j->n_chunks * w->chunk;
        int64_t width = MIN(w->chunk, w->n_in - col0);
        sqlm_dtype_row_bytes(w->dtype, (size_t)width, &rb);
        size_t rows = t ? len / rb : 0;
        if (!t || rows == 0 || rows > (size_t)w->tile_rows) {
            atomic_store(&j->err, 1);   /* tiles.c checked the layout: cannot happen */
            return;
        }
        if (ps->k && col0 != ps->col0) panel_flush(j, ps);
        ps->col0 = col0;
        ps->nb = (size_t)width / QK;
        for (size_t r = 0; r < rows; r++) {
            sqlm_vec_panel_put(ps->panel, ps->nb, ps->k, w->dtype, t + r * rb);
            ps->row[ps->k++] = row0 + (int64_t)r;
            if (ps->k == VEC_PANEL) panel_flush(j, ps);
        }
        sqlm_tiles_put(j->ts, j->wi, id);
    }
    panel_flush(j, ps);
}

static void matmul_run_panels(matmul_job *j) {
    const ir_weight *w = j->w;
    panel_state ps = { 0 };
    size_t bytes = (sqlm_vec_panel_bytes((size_t)w->chunk / QK) + 63) / 64 * 64;
    ps.panel = aligned_alloc(64, bytes);
    ps.out = malloc(sizeof *ps.out * (size_t)j->n * VEC_PANEL);
    if (!ps.panel || !ps.out) {
        atomic_store(&j->err, 1);
    } else {
        for (size_t u; !atomic_load(&j->err) && (u = atomic_fetch_add(&j->next, 1)) < j->n_units;)
            panel_unit(j, &ps, j->unit[u], j->unit[u + 1]);
    }
    free(ps.panel);
    free(ps.out);
}

static void matmul_run(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const ir_weight *w = j->w;
    const int at = sqlm_vec_act_type(w->dtype);
    (void)ith, (void)nth;
    if (j->xu) {
        matmul_run_panels(j);
        return;
    }
    /* quantized kernels read blocks at any address; F32/F16 get an aligned copy when needed */
    const bool quant = sqlm_dtype_block(w->dtype) > 1;
    size_t tile_max = 0;
    sqlm_dtype_row_bytes(w->dtype, (size_t)w->chunk, &tile_max);
    tile_max *= (size_t)w->tile_rows;
    float *tmp = malloc(sizeof *tmp * (size_t)w->tile_rows * (size_t)j->n);
    void *align = quant ? NULL : malloc(tile_max);
    if (!tmp || (!quant && !align)) {
        free(tmp);
        free(align);
        atomic_store(&j->err, 1);
        return;
    }
    for (size_t u; !atomic_load(&j->err) && (u = atomic_fetch_add(&j->next, 1)) < j->n_units;) {
        const size_t end = j->unit[u + 1];
        for (size_t i = j->unit[u]; i < end; i++) {
            int64_t id = j->ids[i];
            size_t len, rb, xoff;
            const void *t = sqlm_tiles_get(j->ts, j->wi, id, &len);
            int64_t row0 = id / j->n_chunks * w->tile_rows, col0 = id % j->n_chunks * w->chunk;
            int64_t width = MIN(w->chunk, w->n_in - col0);
            sqlm_dtype_row_bytes(w->dtype, (size_t)width, &rb);
            sqlm_dtype_row_bytes(at, (size_t)col0, &xoff);
            size_t rows = len / rb;
            if (!t || rows == 0 || rows > (size_t)w->tile_rows || len > tile_max) {
                atomic_store(&j->err, 1);   /* tiles.c checked the layout: cannot happen */
                break;
            }
            /* the next tile streams in while this one is multiplied */
            size_t next_len = 0;
            const void *next = i + 1 < end ? sqlm_tiles_get(j->ts, j->wi, j->ids[i + 1], &next_len) : NULL;
            if (!quant && ((uintptr_t)t % 4)) {
                /* float rows at an odd offset in the file: the float kernels want them aligned */
                memcpy(align, t, len);
                sqlm_tiles_put(j->ts, j->wi, id);
                t = align;
            }
            sqlm_vec_matmul(w->dtype, t, rows, (size_t)width, j->x + xoff, j->xrb, (size_t)j->n, tmp, rows, next,
                       next_len);
            if (next) sqlm_tiles_put(j->ts, j->wi, j->ids[i + 1]);
            if (t != align) sqlm_tiles_put(j->ts, j->wi, id);
            for (int p = 0; p < j->n; p++) {
                float *y = j->y + (size_t)p * (size_t)w->n_out + row0;
                const float *o = tmp + (size_t)p * rows;
                for (size_t r = 0; r < rows; r++) y[r] += o[r];
            }
        }
    }
    free(tmp);
    free(align);
}


static void agg_matmul_final(sqlite3_context *ctx) {
    sqlite_engine *s = sqlite3_user_data(ctx);
    matmul_agg *a = sqlite3_aggregate_context(ctx, 0);
    batch_ref *ob = NULL;
    if (!a || !a->wi || !a->x || a->err) {   /* no rows, or an empty batch: no product */
        if (!a || !a->err) sqlite3_result_null(ctx);
        goto done;
    }
    const ir_weight *w = sqlm_tiles_layout(s->tiles, a->wi - 1);
    int at = sqlm_vec_act_type(w->dtype);
    size_t xrb;
    batch_view xv;
    sqlm_dtype_row_bytes(at, (size_t)w->n_in, &xrb);
    if (!batch_parse(a->x->p, a->x->len, STACK_MAGIC, 1, &xv) || xv.width != xrb) {
        sqlite3_result_error(ctx, "sqlm: matmul: activations do not match the weight's width and type", -1);
        goto done;
    }
    size_t ylen = BATCH_HDR + 8 * (size_t)xv.n + 4 * (size_t)xv.n * (size_t)w->n_out;
    if (!(ob = batch_new(ylen))) {
        sqlite3_result_error_nomem(ctx);
        goto done;
    }
    uint8_t *out = ob->p;
    uint32_t magic = PROD_MAGIC;
    uint64_t n_out = (uint64_t)w->n_out;
    memcpy(out, &magic, 4), memcpy(out + 4, &xv.n, 4), memcpy(out + 8, &n_out, 8);
    memcpy(out + BATCH_HDR, xv.pos, 8 * (size_t)xv.n);
    float *y = (float *)(out + BATCH_HDR + 8 * (size_t)xv.n);
    memset(y, 0, 4 * (size_t)xv.n * (size_t)w->n_out);

    /* the scan gives ids in rowid order; sort when it did not (a custom query) */
    for (size_t i = 1; i < a->n_ids; i++)
        if (a->ids[i] < a->ids[i - 1]) {
            qsort(a->ids, a->n_ids, sizeof *a->ids, cmp_i64);
            break;
        }
    matmul_job j = { .ts = s->tiles, .wi = a->wi - 1, .w = w, .ids = a->ids, .x = xv.data, .xrb = xrb,
                     .n = (int)xv.n, .y = y };
    j.n_chunks = (w->n_in + w->chunk - 1) / w->chunk;
    /* units of about n_ids / (8 * threads) tiles, cut where a row block ends */
    const int nth = sqlm_pool_size(s->pool);
    const size_t per = nth > 1 ? MAX(a->n_ids / (8 * (size_t)nth), 1) : a->n_ids;
    if (!(j.unit = malloc(sizeof *j.unit * (a->n_ids + 1)))) {
        sqlite3_result_error_nomem(ctx);
        goto done;
    }
    j.unit[0] = 0;
    for (size_t i = 1; i <= a->n_ids; i++)
        if (i == a->n_ids || (i - j.unit[j.n_units] >= per && a->ids[i] / j.n_chunks != a->ids[i - 1] / j.n_chunks))
            j.unit[++j.n_units] = i;
    /* a batch runs on panels: its activations as x + 128 and scales, once */
    uint8_t *xu = NULL;
    float *dx = NULL;
    if (xv.n >= PANEL_MIN_BATCH && sqlm_vec_panel_supported(w->dtype)) {
        j.nbx = (size_t)w->n_in / QK;
        xu = malloc((size_t)xv.n * j.nbx * QK);
        dx = malloc(sizeof *dx * (size_t)xv.n * j.nbx);
        if (xu && dx) {
            sqlm_vec_panel_act(xv.data, xrb, xv.n, j.nbx, xu, dx);
            j.xu = xu, j.dx = dx;
        }
    }
    sqlm_pool_run(s->pool, matmul_run, &j);
    free(xu);
    free(dx);
    free(j.unit);
    if (atomic_load(&j.err)) {
        sqlite3_result_error(ctx, "sqlm: matmul: out of memory or a bad tile", -1);
        goto done;
    }
    result_batch(ctx, ob);
    ob = NULL;
done:
    batch_unref(ob);
    if (a) {
        free(a->ids);
        batch_unref(a->x);
        a->ids = NULL, a->x = NULL;
    }
}

/* ------------------------------------------------------- registration */

static const struct {
    const char *name;
    int n_arg;
    void (*fn)(sqlite3_context *, int, sqlite3_value **);
    void (*step)(sqlite3_context *, int, sqlite3_value **);
    void (*final)(sqlite3_context *);
} functions[] = {
    { "sqlm_matvec", 6, fn_matvec, NULL, NULL },
    { "sqlm_quant", 2, fn_quant, NULL, NULL },
    { "sqlm_row", 4, fn_row, NULL, NULL },
    { "sqlm_rmsnorm", 3, fn_rmsnorm, NULL, NULL },
    { "sqlm_rope", 7, fn_rope, NULL, NULL },
    { "sqlm_slice", 3, fn_slice, NULL, NULL },
    { "sqlm_vadd", 2, fn_vadd, NULL, NULL },
    { "sqlm_swiglu", 1, fn_swiglu, NULL, NULL },
    { "sqlm_qk", 5, fn_qk, NULL, NULL },
    { "sqlm_vexp", 2, fn_vexp, NULL, NULL },
    { "sqlm_argmax", 1, fn_argmax, NULL, NULL },
    { "sqlm_gather", 3, NULL, agg_gather_step, agg_final },
    { "sqlm_vmax", 1, NULL, agg_vmax_step, agg_final },
    { "sqlm_attn", 5, NULL, agg_attn_step, agg_attn_final },
    { "sqlm_stack", 2, NULL, agg_stack_step, agg_stack_final },
    { "sqlm_matmul", 3, NULL, agg_matmul_step, agg_matmul_final },
    { "sqlm_attend", 6, NULL, agg_attend_step, agg_attend_final },
};

static int register_functions(sqlite_engine *s) {
    sqlite3 *db = s->db;
    for (size_t i = 0; i < ARRAY_LEN(functions); i++) {
        int rc = sqlite3_create_function_v2(db, functions[i].name, functions[i].n_arg,
                                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                            s, functions[i].fn, functions[i].step,
                                            functions[i].final, NULL);
        if (rc != SQLITE_OK)
            return sqlm_error(SQLM_DB, "sqlite: registering %s: %s", functions[i].name,
                              sqlite3_errmsg(db));
    }
    if (sqlite3_create_module(db, "sqlm_rows", &rows_module, NULL) != SQLITE_OK ||
        sqlite3_create_module(db, "sqlm_kv", &kv_module, s) != SQLITE_OK)
        return sqlm_error(SQLM_DB, "sqlite: registering the virtual tables: %s", sqlite3_errmsg(db));
    return SQLM_OK;
}

/* --------------------------------------------------------------- engine */

/* SQLite's hard heap limit is per process: the budget of the last engine
 * opened with one applies. */
static void set_heap_limit(sqlite_engine *s, sqlite3_int64 n) {
    s->heap_limit = n;
    sqlite3_hard_heap_limit64(n);
}

/* Why a statement failed, when the budget is the reason: the cache's I/O
 * error, or SQLite's heap reaching its share of the budget.  SQLM_OK if not. */
static int budget_error(sqlite_engine *s, int sqlite_rc, const char *what) {
    if (s->wc && sqlm_wcache_error(s->wc))
        return sqlm_error(SQLM_IO, "sqlite: %s: %s", what, sqlm_wcache_error(s->wc));
    if (s->budget && (sqlite_rc & 0xff) == SQLITE_NOMEM)
        return sqlm_error(SQLM_NOMEM,
                          "sqlite: %s: %s: out of memory: the engine's heap (KV cache, activations) reached "
                          "its %.1f MB share of --mem-budget %.1f MB (a shorter context -c or a larger budget helps)",
                          s->path, what, s->heap_limit / 1048576.0, s->budget / 1048576.0);
    return SQLM_OK;
}

/* The driver's message, with the OS error behind an I/O failure (a full
 * disk shows as "No space left on device" or "File too large"). */
static const char *sq_msg(sqlite_engine *s, char *out, size_t n) {
    int e = sqlite3_system_errno(s->db), x = sqlite3_extended_errcode(s->db);
    snprintf(out, n, "%s%s%s%s", sqlite3_errmsg(s->db), e ? ": " : "", e ? strerror(e) : "",
             x == SQLITE_IOERR_WRITE || x == SQLITE_FULL ? " (writing failed: is the disk full?)" : "");
    return out;
}

static int sq_err(sqlite_engine *s, const char *what) {
    char m[512];
    int rc = budget_error(s, sqlite3_extended_errcode(s->db), what);
    if (rc) return rc;
    return sqlm_error(SQLM_DB, "sqlite: %s: %s: %s", s->path, what, sq_msg(s, m, sizeof m));
}

static void sq_free_steps(sqlite_engine *s) {
    for (int i = 0; i < s->n_steps; i++) {
        sqlite3_finalize(s->steps[i]);
        free(s->step_names[i]);
    }
    free(s->steps);
    free(s->step_names);
    s->steps = NULL;
    s->step_names = NULL;
    s->n_steps = 0;
}

static void sq_close(engine *e) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s) return;
    sq_free_steps(s);
    for (size_t i = 0; i < ARRAY_LEN(s->cache); i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    sqlm_pool_free(s->pool);
    sqlite3_close(s->db);
    sqlm_wcache_close(s->wc);
    sqlm_tiles_close(s->tiles);
    /* only now: closing it earlier would drop the lock SQLite holds (tiles.c) */
    if (s->tiles_fd >= 0) close(s->tiles_fd);
    free(s->path);
    free(s);
}

static int sq_exec(engine *e, const char *sql) {
    sqlite_engine *s = (sqlite_engine *)e;
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char m[512];
        int rc = budget_error(s, sqlite3_extended_errcode(s->db), sql);
        if (!rc) rc = sqlm_error(SQLM_DB, "sqlite: %s: %s (in: %.200s)", s->path, sq_msg(s, m, sizeof m), sql);
        sqlite3_free(msg);
        return rc;
    }
    return SQLM_OK;
}

static int sq_open(engine **out, const char *path, const engine_opts *o) {
    *out = NULL;
    sqlite_engine *s = calloc(1, sizeof *s);
    if (!s) return sqlm_error(SQLM_NOMEM, "out of memory");
    s->base.m = &sqlm_db_sqlite;
    s->tiles_fd = -1;
    s->path = sqlm_strdup(path);
    s->threads = o->threads > 0 ? o->threads : (int)MAX(sysconf(_SC_NPROCESSORS_ONLN), 1);
    int flags = SQLITE_OPEN_NOMUTEX |
                (o->readonly ? SQLITE_OPEN_READONLY
                             : SQLITE_OPEN_READWRITE | (o->create ? SQLITE_OPEN_CREATE : 0));
    const char *vfs = NULL;
    s->budget = o->plain ? 0 : o->mem_budget;
    if (s->budget && o->readonly) {
        /* A budgeted run reads the model through the weight cache, not a
         * mapping (wcache.c): how, and with how many streaming buffers. */
        int io = o->mem_io;
        if (io == WC_IO_AUTO) {
            struct stat sb;
            size_t fsz = stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
            size_t cg = sqlm_cgroup_limit(), avail = sqlm_mem_available();
            /* the page cache can keep the file only if the cgroup (which it
             * is charged to) and the machine have room beside the budget */
            bool fits = (!cg || cg >= s->budget + fsz + (fsz >> 3)) && avail >= s->budget + fsz + (fsz >> 2);
            io = fits ? WC_IO_BUFFERED : WC_IO_DIRECT;
        }
        /* 12 MB of read buffers whatever the budget: room for three whole
         * 2 MB reads in flight and as much again read ahead.  Not more: the
         * disk fills a small set of buffers faster (one step's reads
         * replayed into 4, 12 and 32 MB of buffers ran at 3.6, 3.4 and 3.3
         * GB/s here), and what the ring does not take, the resident set
         * does.  Qwen2.5-0.5B at 50%: 8 MB with two readers 1.26x the
         * storage bound, 12 MB with three 1.17x, 16 MB with three 1.17x. */
        size_t ring = (size_t)12 << 20;
        int rc = sqlm_wcache_open(&s->wc, path, io, ring);
        if (!rc && !(vfs = sqlm_wcache_vfs())) rc = sqlm_error(SQLM_ERROR, "sqlite: cannot register the weight cache's VFS");
        if (rc) {
            sq_close(&s->base);
            return rc;
        }
    }
    if (!s->path || sqlite3_open_v2(path, &s->db, flags, vfs) != SQLITE_OK) {
        int rc = sqlm_error(SQLM_DB, "sqlite: cannot open %s: %s", path,
                            s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sq_close(&s->base);
        return rc;
    }
    sqlite3_extended_result_codes(s->db, 1);
    int rc = register_functions(s);
    buf b;
    sqlm_buf_init(&b);
    /* The page cache: 64 MB; under a budget, an import's share of it, and a
     * run's 256 KB: a budgeted run gets its weight pages from the weight
     * cache, and the vocabulary is read once.  (A budget/64 share, 4 MB at
     * 253M, kept the vocabulary's pages for nothing.) */
    long cache_kb = !s->budget ? 65536 : o->create ? (long)MIN(MAX(s->budget / 1024 / 8, 1024), 65536) : 256;
    sqlm_buf_puts(&b, "PRAGMA temp_store = MEMORY;");
    if (o->threads > 1) sqlm_buf_appendf(&b, "PRAGMA threads = %d;", o->threads);
    if (o->create) {
        if (o->page_size) sqlm_buf_appendf(&b, "PRAGMA page_size = %d;", o->page_size);
        sqlm_buf_puts(&b, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;");
    }
    /* after page_size: set before it, the limit did not hold (an import's
     * dirty pages were never spilled and its whole database stayed in the
     * cache until COMMIT) */
    sqlm_buf_appendf(&b, "PRAGMA cache_size = -%ld;", cache_kb);
    if (!o->create) {
        /* Map the file: weight pages are read in place by SQLite's pager.
         * Under a budget the "mapping" is the weight cache's (wcache.c):
         * mmap_size only turns on SQLite's in-place page interface. */
        sqlm_buf_puts(&b, "PRAGMA mmap_size = 1099511627776;");
    }
    /* A reader keeps its shared lock from the first read on: no writer can
     * change the file under the tile mapping or the weight cache's plan (page
     * numbers), and statements skip the per-statement lock calls. */
    if (o->readonly || s->wc) sqlm_buf_puts(&b, "PRAGMA locking_mode = EXCLUSIVE;");
    /* Until the session sizes it, SQLite may use half the budget. */
    if (s->budget) set_heap_limit(s, (sqlite3_int64)(s->budget / 2));
    /* threads for the products and attention of a session.  Streaming under
     * a budget, the compute threads wait for the cache's readers; a second
     * one taking tiles ahead of the first made the cache read half as much
     * again (Qwen2.5-0.5B shape at 253M: 524 against 352 MB a token, 163
     * against 112 ms): one compute thread when the file does not fit. */
    int nth = s->threads;
    struct stat sb;
    if (s->wc && stat(path, &sb) == 0 && (size_t)sb.st_size > s->budget) nth = 1;
    if (!rc && o->readonly && !o->plain) rc = sqlm_pool_init(&s->pool, nth);
    if (!rc) rc = b.rc ? b.rc : sq_exec(&s->base, b.p);
    sqlm_buf_free(&b);
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return SQLM_OK;
}

static int bind_vals(sqlite_engine *s, sqlite3_stmt *st, const db_val *v, int n) {
    for (int i = 0; i < n; i++) {
        int rc;
        switch (v[i].type) {
        case DBV_INT: rc = sqlite3_bind_int64(st, i + 1, v[i].i); break;
        case DBV_REAL: rc = sqlite3_bind_double(st, i + 1, v[i].d); break;
        case DBV_TEXT: rc = sqlite3_bind_text64(st, i + 1, v[i].p, v[i].n, SQLITE_STATIC, SQLITE_UTF8); break;
        case DBV_BLOB: rc = sqlite3_bind_blob64(st, i + 1, v[i].p ? v[i].p : "", v[i].n, SQLITE_STATIC); break;
        default: rc = sqlite3_bind_null(st, i + 1); break;
        }
        if (rc != SQLITE_OK) return sq_err(s, "bind");
    }
    return SQLM_OK;
}

/*
 * The prepared statement for sql: from the cache when it holds the same text
 * and the statement is not running, else prepared now (and cached, but
 * statements of more than one statement's text are not).  *slot gets the
 * cache entry or -1.  A session's per-token queries (t_in, the logits) are
 * prepared once instead of per token.
 */
static sqlite3_stmt *sq_prepare(sqlite_engine *s, const char *sql, int *slot) {
    *slot = -1;
    for (int i = 0; i < (int)ARRAY_LEN(s->cache); i++)
        if (s->cache[i].sql && !s->cache[i].busy && strcmp(s->cache[i].sql, sql) == 0) {
            *slot = i;
            s->cache[i].busy = true;
            return s->cache[i].st;
        }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) != SQLITE_OK) return NULL;
    int i = s->cache_next;
    if (st && tail && !*tail && !s->cache[i].busy) {
        char *copy = sqlm_strdup(sql);
        if (copy) {
            sqlite3_finalize(s->cache[i].st);
            free(s->cache[i].sql);
            s->cache[i].sql = copy;
            s->cache[i].st = st;
            s->cache[i].busy = true;
            s->cache_next = (i + 1) % (int)ARRAY_LEN(s->cache);
            *slot = i;
        }
    }
    return st;
}

static void sq_release(sqlite_engine *s, sqlite3_stmt *st, int slot) {
    if (slot < 0) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);   /* bound values are borrowed from the caller */
    s->cache[slot].busy = false;
}

static int sq_query(engine *e, const char *sql, const db_val *params, int n_params, db_row_cb cb,
                    void *ctx) {
    sqlite_engine *s = (sqlite_engine *)e;
    int slot;
    db_val vals[16];
    sqlite3_stmt *st = sq_prepare(s, sql, &slot);
    if (!st) return sq_err(s, sql);
    int rc = bind_vals(s, st, params, n_params), step;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        int nc = MIN(sqlite3_column_count(st), (int)ARRAY_LEN(vals));
        for (int i = 0; i < nc; i++) {
            db_val *v = &vals[i];
            memset(v, 0, sizeof *v);
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER: v->type = DBV_INT; v->i = sqlite3_column_int64(st, i); break;
            case SQLITE_FLOAT: v->type = DBV_REAL; v->d = sqlite3_column_double(st, i); break;
            case SQLITE_TEXT:
                v->type = DBV_TEXT;
                v->p = sqlite3_column_text(st, i);
                v->n = (size_t)sqlite3_column_bytes(st, i);
                break;
            case SQLITE_BLOB:
                v->type = DBV_BLOB;
                v->p = sqlite3_column_blob(st, i);
                v->n = (size_t)sqlite3_column_bytes(st, i);
                break;
            default: v->type = DBV_NULL; break;
            }
        }
        if (cb && cb(ctx, nc, vals)) break;
    }
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE) rc = sq_err(s, sql);
    sq_release(s, st, slot);
    return rc;
}

static int sq_load_program(engine *e, const sql_program *p) {
    sqlite_engine *s = (sqlite_engine *)e;
    sq_free_steps(s);
    int rc = sq_exec(e, p->setup);
    if (!rc) rc = sq_exec(e, p->reset);
    if (rc) return rc;
    s->steps = calloc((size_t)p->n_steps + 1, sizeof *s->steps);
    s->step_names = calloc((size_t)p->n_steps + 1, sizeof *s->step_names);
    if (!s->steps || !s->step_names) return sqlm_error(SQLM_NOMEM, "out of memory");
    for (int i = 0; i < p->n_steps; i++) {
        s->n_steps = i + 1;
        s->step_names[i] = sqlm_strdup(p->steps[i].name);
        if (sqlite3_prepare_v3(s->db, p->steps[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                               &s->steps[i], NULL) != SQLITE_OK)
            return sqlm_error(SQLM_DB, "sqlite: statement %d (%s): %s", i, p->steps[i].name,
                              sqlite3_errmsg(s->db));
    }
    return SQLM_OK;
}

static int sq_run_program(engine *e, double *secs) {
    sqlite_engine *s = (sqlite_engine *)e;
    for (int i = 0; i < s->n_steps; i++) {
        double t0 = secs ? sqlm_now() : 0;
        int rc = sqlite3_step(s->steps[i]);
        int x = sqlite3_reset(s->steps[i]);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW && (x = budget_error(s, x, s->step_names[i])))
            return x;
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return sqlm_error(SQLM_DB, "sqlite: statement %d (%s): %s", i, s->step_names[i],
                              sqlite3_errmsg(s->db));
        if (secs) secs[i] += sqlm_now() - t0;
    }
    return SQLM_OK;
}

/* heap_bytes: what the session needs beyond SQLite's memory now (KV cache,
 * activations); the page cache's share is added here. */
static int sq_mem_trace(engine *e, size_t heap_bytes) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s->wc) return SQLM_OK;
    sqlite3_int64 cache = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA cache_size", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) cache = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    cache = cache < 0 ? -cache * 1024 : cache * 65536;
    set_heap_limit(s, sqlite3_memory_used() + (sqlite3_int64)heap_bytes + cache);
    return sqlm_wcache_trace(s->wc);
}

static int sq_mem_plan(engine *e, size_t weight_bytes) {
    sqlite_engine *s = (sqlite_engine *)e;
    return s->wc ? sqlm_wcache_plan(s->wc, weight_bytes) : SQLM_OK;
}

static bool sq_mem_stats(engine *e, wcache_stats *st) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s->wc) return false;
    sqlm_wcache_get_stats(s->wc, st);
    st->heap_peak = (size_t)sqlite3_memory_highwater(0);
    st->heap_limit = (size_t)s->heap_limit;
    return true;
}

/* ------------------------------------------------------- in-place tiles */

typedef struct col_ctx {
    int n;
    bool ok;
} col_ctx;

/* PRAGMA table_info rows (cid, name, type, notnull, dflt, pk): must be
 * id INTEGER PRIMARY KEY, row, col, v BLOB in that order. */
static int col_row(void *ctx, int nc, const db_val *v) {
    static const char *const names[] = { "id", "row", "col", "v" };
    col_ctx *c = ctx;
    if (nc < 6 || c->n >= 4 || v[1].type != DBV_TEXT || strcmp(v[1].p, names[c->n]) != 0 ||
        (v[5].type == DBV_INT && v[5].i != 0) != (c->n == 0))
        c->ok = false;
    c->n++;
    return 0;
}

typedef struct blob_ctx {
    const void *want;
    size_t len;
    bool same;
} blob_ctx;

static int blob_row(void *ctx, int nc, const db_val *v) {
    blob_ctx *b = ctx;
    b->same = nc >= 1 && v[0].type == DBV_BLOB && v[0].n == b->len && memcmp(v[0].p, b->want, b->len) == 0;
    return 0;
}

/*
 * Map the weight tables for in-place reads: root pages from sqlite_schema,
 * each table's columns, then sqlm_tiles_open(), then a few tiles per table compared
 * with the BLOB SQLite returns for the same id.  On failure nothing changes
 * (the copying path stays) and the message says why.
 */
static int sq_map_weights(engine *e, const ir_weight *ws, int n) {
    sqlite_engine *s = (sqlite_engine *)e;
    const char *file = sqlite3_db_filename(s->db, "main");
    if (!file || !*file) return sqlm_error(SQLM_UNSUPPORTED, "the database has no file");
    if (!sqlite3_db_readonly(s->db, "main")) return sqlm_error(SQLM_UNSUPPORTED, "the database is open for writing");
    uint32_t *roots = calloc((size_t)(n > 0 ? n : 1), sizeof *roots);
    if (!roots) return sqlm_error(SQLM_NOMEM, "out of memory");
    int rc = SQLM_OK;
    char sql[160];
    for (int i = 0; !rc && i < n; i++) {
        col_ctx cols = { 0, true };
        int64_t root = 0;
        db_val name = dbv_text(ws[i].name);
        rc = sq_query(e, "SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = ?", &name, 1,
                      sqlm_db_int_row, &root);
        if (!rc) rc = sq_query(e, "SELECT * FROM pragma_table_info(?)", &name, 1, col_row, &cols);
        if (!rc && (!cols.ok || cols.n != 4))
            rc = sqlm_error(SQLM_FORMAT, "%s: columns are not (id INTEGER PRIMARY KEY, row, col, v)", ws[i].name);
        if (!rc && (root < 1 || root > UINT32_MAX))
            rc = sqlm_error(SQLM_FORMAT, "%s: root page %lld", ws[i].name, (long long)root);
        roots[i] = (uint32_t)root;
    }
    tile_store *ts = NULL;
    if (!rc && s->tiles_fd < 0 && (s->tiles_fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
        rc = sqlm_error(SQLM_IO, "%s: cannot open for reading", file);
    /* under a budget the weight cache serves the tiles, and only when the
     * scans for tile ids read an index, not the tiles' own pages */
    for (int i = 0; !rc && s->wc && i < n; i++) {
        int64_t has = 0;
        char idx[64];
        snprintf(idx, sizeof idx, "%s_tiles", ws[i].name);
        db_val iv = dbv_text(idx);
        rc = sq_query(e, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?", &iv, 1, sqlm_db_int_row, &has);
        if (!rc && !has)
            rc = sqlm_error(SQLM_UNSUPPORTED, "%s has no tile index %s (imported before it existed: import again)",
                            ws[i].name, idx);
    }
    if (!rc) rc = s->wc ? sqlm_tiles_open_cached(&ts, s->tiles_fd, file, ws, roots, n, s->wc)
                        : sqlm_tiles_open(&ts, s->tiles_fd, file, ws, roots, n);
    free(roots);
    /* the first, a middle and the last tile of each table, as SQLite reads them */
    for (int i = 0; !rc && i < n; i++) {
        int64_t nt = sqlm_tiles_count(ts, i), pick[3] = { 0, nt / 2, nt - 1 };
        snprintf(sql, sizeof sql, "SELECT v FROM \"%s\" WHERE id = ?", ws[i].name);
        for (int k = 0; !rc && k < 3; k++) {
            blob_ctx b = { 0 };
            b.want = sqlm_tiles_get(ts, i, pick[k], &b.len);
            db_val id = dbv_int(pick[k]);
            rc = sq_query(e, sql, &id, 1, blob_row, &b);
            sqlm_tiles_put(ts, i, pick[k]);
            if (!rc && !b.same)
                rc = sqlm_error(SQLM_FORMAT, "%s: tile %lld read in place differs from SQLite's BLOB", ws[i].name,
                                (long long)pick[k]);
        }
    }
    if (rc) {
        sqlm_tiles_close(ts);
        return rc;
    }
    s->tiles = ts;
    return SQLM_OK;
}

const db_methods sqlm_db_sqlite = {
    .name = "sqlite",
    .dialect = DIA_SQLITE,
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .query = sq_query,
    .load_program = sq_load_program,
    .run_program = sq_run_program,
    .mem_trace = sq_mem_trace,
    .mem_plan = sq_mem_plan,
    .mem_stats = sq_mem_stats,
    .map_weights = sq_map_weights,
    .create_begin = sqlm_db_file_create_begin,   /* db/filedb.c */
    .create_commit = sqlm_db_file_create_commit,
    .create_abort = sqlm_db_file_create_abort,
    .probe = sqlm_db_file_probe,
    .remove = sqlm_db_file_remove,
};
