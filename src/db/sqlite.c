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
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "../sqlm-int.h"

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
    if (!dtype_valid((int)dt) || col < 0 || chunk <= 0 || col >= n_in) FAIL("matvec: bad shape");
    int64_t width = MIN(chunk, n_in - col);
    size_t rb;
    if (!dtype_row_bytes((int)dt, (size_t)width, &rb) || col % (int64_t)dtype_block((int)dt))
        FAIL("matvec: chunk not a whole number of blocks");
    int wn = sqlite3_value_bytes(argv[0]);
    const void *w = sqlite3_value_blob(argv[0]);
    if (!w || wn <= 0 || (size_t)wn % rb) FAIL("matvec: tile size is not a whole number of rows");
    int at = vec_act_type((int)dt);
    size_t xneed, xoff;
    int xn = sqlite3_value_bytes(argv[1]);
    const char *x = sqlite3_value_blob(argv[1]);
    dtype_row_bytes(at, (size_t)n_in, &xneed);
    dtype_row_bytes(at, (size_t)col, &xoff);
    if (!x || (size_t)xn != xneed) FAIL("matvec: activation length does not match n_in");
    int64_t rows = (int64_t)((size_t)wn / rb);
    float *out = alloc_f32(ctx, rows);
    if (!out) return;
    vec_matvec((int)dt, w, (size_t)rows, (size_t)width, x + xoff, out);
    result_f32(ctx, out, rows);
}

/* sqlm_quant(x, wdtype): x in the activation type that wdtype multiplies. */
static void fn_quant(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *x;
    int64_t n = arg_f32(ctx, argv[0], &x);
    if (n < 0) return;
    int at = vec_act_type((int)ARG_INT(1));
    if (at == DT_F32) {
        sqlite3_result_value(ctx, argv[0]);
        return;
    }
    if (n % QK) FAIL("quant: length not a multiple of 32");
    block_q8_0 *q = sqlite3_malloc64((sqlite3_uint64)(n / QK) * sizeof *q + 1);
    if (!q) { sqlite3_result_error_nomem(ctx); return; }
    vec_quant_q8_0(x, q, (size_t)n);
    sqlite3_result_blob64(ctx, q, (sqlite3_uint64)(n / QK) * sizeof *q, sqlite3_free);
}

/* sqlm_row(tile, dtype, n_in, r): row r of a tile as float32. */
static void fn_row(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    int64_t dt = ARG_INT(1), n = ARG_INT(2), r = ARG_INT(3);
    size_t rb;
    if (!dtype_valid((int)dt) || n <= 0 || !dtype_row_bytes((int)dt, (size_t)n, &rb)) FAIL("row: bad shape");
    int wn = sqlite3_value_bytes(argv[0]);
    const char *w = sqlite3_value_blob(argv[0]);
    if (!w || r < 0 || (size_t)wn < rb * (size_t)(r + 1)) FAIL("row: index outside the tile");
    float *out = alloc_f32(ctx, n);
    if (!out) return;
    dtype_to_f32((int)dt, w + rb * (size_t)r, out, (size_t)n);
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
    vec_rmsnorm(out, x, g, (size_t)n, (float)sqlite3_value_double(argv[2]));
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
    if (qs != 1.0f)
        for (int64_t i = 0; i < nq * hd; i++) out[i] *= qs;
    vec_rope(out, cs, (int)(nq + nkv), (int)hd, ARG_INT(5) != 0);
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
    vec_swiglu(out, x, (size_t)(n / 2));
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
        out[h] = vec_dot_f32(q + h * hd, k + (h / (nh / nkv)) * hd, (size_t)hd);
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

int sqlite_register_functions(sqlite3 *db) {
    for (size_t i = 0; i < ARRAY_LEN(functions); i++) {
        int rc = sqlite3_create_function_v2(db, functions[i].name, functions[i].n_arg,
                                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                            NULL, functions[i].fn, functions[i].step,
                                            functions[i].final, NULL);
        if (rc != SQLITE_OK)
            return sqlm_error(SQLM_DB, "sqlite: registering %s: %s", functions[i].name,
                              sqlite3_errmsg(db));
    }
    return SQLM_OK;
}

/* --------------------------------------------------------------- engine */

typedef struct sqlite_engine {
    engine base;
    sqlite3 *db;
    char *path;
    sqlite3_stmt **steps;
    char **step_names;
    int n_steps;
    wcache *wc;              /* the weight cache of a budgeted run, or NULL */
    size_t budget;           /* --mem-budget, 0 = none */
    sqlite3_int64 heap_limit;/* SQLite's share of it */
} sqlite_engine;

/* SQLite's hard heap limit is per process: the budget of the last engine
 * opened with one applies. */
static void set_heap_limit(sqlite_engine *s, sqlite3_int64 n) {
    s->heap_limit = n;
    sqlite3_hard_heap_limit64(n);
}

/* Why a statement failed, when the budget is the reason: the cache's I/O
 * error, or SQLite's heap reaching its share of the budget.  SQLM_OK if not. */
static int budget_error(sqlite_engine *s, int sqlite_rc, const char *what) {
    if (s->wc && wcache_error(s->wc))
        return sqlm_error(SQLM_IO, "sqlite: %s: %s", what, wcache_error(s->wc));
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
    sqlite3_close(s->db);
    wcache_close(s->wc);
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
    s->base.m = &db_sqlite;
    s->path = sqlm_strdup(path);
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
        size_t ring = MIN(MAX(s->budget / 24, (size_t)12 << 20), (size_t)32 << 20);
        int rc = wcache_open(&s->wc, path, io, ring);
        if (!rc && !(vfs = wcache_vfs())) rc = sqlm_error(SQLM_ERROR, "sqlite: cannot register the weight cache's VFS");
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
    int rc = sqlite_register_functions(s->db);
    buf b;
    buf_init(&b);
    /* The page cache: 64 MB, or under a budget a small share of it (a
     * budgeted run gets its pages from the weight cache, not this cache). */
    long cache_kb = s->budget ? (long)MIN(MAX(s->budget / 1024 / (o->create ? 8 : 64), 1024), 65536) : 65536;
    buf_puts(&b, "PRAGMA temp_store = MEMORY;");
    if (o->threads > 1) buf_appendf(&b, "PRAGMA threads = %d;", o->threads);
    if (o->create) {
        if (o->page_size) buf_appendf(&b, "PRAGMA page_size = %d;", o->page_size);
        buf_puts(&b, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;");
    }
    /* after page_size: set before it, the limit did not hold (an import's
     * dirty pages were never spilled and its whole database stayed in the
     * cache until COMMIT) */
    buf_appendf(&b, "PRAGMA cache_size = -%ld;", cache_kb);
    if (!o->create) {
        /* Map the file: weight pages are read in place by SQLite's pager.
         * Under a budget the "mapping" is the weight cache's (wcache.c):
         * mmap_size only turns on SQLite's in-place page interface. */
        buf_puts(&b, "PRAGMA mmap_size = 1099511627776;");
    }
    /* A budgeted run holds its shared lock for the whole run: the weight
     * cache's plan (page numbers) stays valid because no writer can change
     * the file, and SQLite does not re-read the file size per statement. */
    if (s->wc) buf_puts(&b, "PRAGMA locking_mode = EXCLUSIVE;");
    /* Until the session sizes it, SQLite may use half the budget. */
    if (s->budget) set_heap_limit(s, (sqlite3_int64)(s->budget / 2));
    if (!rc) rc = b.rc ? b.rc : sq_exec(&s->base, b.p);
    buf_free(&b);
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

static int sq_query(engine *e, const char *sql, const db_val *params, int n_params, db_row_cb cb,
                    void *ctx) {
    sqlite_engine *s = (sqlite_engine *)e;
    sqlite3_stmt *st = NULL;
    db_val vals[16];
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return sq_err(s, sql);
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
    sqlite3_finalize(st);
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
    return wcache_trace(s->wc);
}

static int sq_mem_plan(engine *e, size_t weight_bytes) {
    sqlite_engine *s = (sqlite_engine *)e;
    return s->wc ? wcache_plan(s->wc, weight_bytes) : SQLM_OK;
}

static bool sq_mem_stats(engine *e, wcache_stats *st) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s->wc) return false;
    wcache_get_stats(s->wc, st);
    return true;
}

const db_methods db_sqlite = {
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
};
