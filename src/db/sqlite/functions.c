/*
 * functions.c - the SQLite engine's vector functions over float32 BLOBs, as
 * the SQLite dialect's templates call them: scalar ones (sqlm_matvec,
 * sqlm_quant, sqlm_row, sqlm_rmsnorm, sqlm_rope, sqlm_slice, sqlm_vadd,
 * sqlm_swiglu, sqlm_qk, sqlm_vexp, sqlm_argmax) and aggregates (sqlm_gather,
 * sqlm_vmax, sqlm_attn).  Every function checks its BLOB lengths against its
 * arguments, so a damaged or hostile database gives an SQL error, never an
 * out-of-bounds read.  The batched forms that read tiles and cache rows in
 * place are matmul.c and attend.c.
 */
#include <math.h>
#include <string.h>

#include "sqlite_int.h"
#include "../../kern/kern.h"

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
    if (n % (int64_t)sqlm_dtype_block(at)) FAIL("quant: length not a multiple of the activation's block");
    size_t bytes = sqlm_vec_act_bytes(at, (size_t)n);
    void *q = sqlite3_malloc64((sqlite3_uint64)bytes + 1);
    if (!q) { sqlite3_result_error_nomem(ctx); return; }
    sqlm_vec_quant(at, x, q, (size_t)n);
    sqlite3_result_blob64(ctx, q, (sqlite3_uint64)bytes, sqlite3_free);
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
};

int sqlm_sqlite_create_function(sqlite_engine *s, const char *name, int n_arg,
                                void (*fn)(sqlite3_context *, int, sqlite3_value **),
                                void (*step)(sqlite3_context *, int, sqlite3_value **),
                                void (*final)(sqlite3_context *)) {
    if (sqlite3_create_function_v2(s->db, name, n_arg, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, s,
                                   fn, step, final, NULL) != SQLITE_OK)
        return sqlm_error(SQLM_DB, "sqlite: registering %s: %s", name, sqlite3_errmsg(s->db));
    return SQLM_OK;
}

int sqlm_sqlite_register_functions(sqlite_engine *s) {
    for (size_t i = 0; i < ARRAY_LEN(functions); i++) {
        int rc = sqlm_sqlite_create_function(s, functions[i].name, functions[i].n_arg, functions[i].fn,
                                             functions[i].step, functions[i].final);
        if (rc) return rc;
    }
    return SQLM_OK;
}

int sqlm_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

