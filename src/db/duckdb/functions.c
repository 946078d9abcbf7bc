/*
 * functions.c - sqlm's kernels (kern/vec.c) as DuckDB scalar
 * functions over whole rows, registered on a connection by the
 * "duckdb-native" engine (duckdb/engine.c).  Not here: the engine itself,
 * loading the library (duckdb/api.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "../../kern/kern.h"

/* ------------------------------------------------------ native functions
 *
 * sqlm's kernels (kern/vec.c) as DuckDB scalar functions over whole rows,
 * registered on the connection by the "duckdb-native" engine.  DuckDB hands
 * a scalar function flat input vectors (ENGINE-NOTES), so row r of every
 * argument is at index r.  A NULL argument gives a NULL result.  Each name
 * has one signature: overloads of list and FLOAT[K] make calls ambiguous.
 */

/* A row of a FLOAT[] argument. */
typedef struct frow {
    const float *p;
    idx_t n;
} frow;

typedef struct uarg {
    duckdb_vector v;
    const uint64_t *valid;
    const duckdb_list_entry *le;   /* LIST arguments */
    const void *data;              /* element data of a list, or the values */
    const duckdb_list_entry *le2;  /* inner lists of a FLOAT[][] argument */
} uarg;

/* FLOAT[], TINYINT[32][], FLOAT[][], INTEGER, FLOAT, BLOB */
enum { U_LIST, U_BLOCKS, U_LISTS, U_INT, U_FLOAT, U_BLOB };

static void uarg_init(uarg *a, duckdb_data_chunk in, idx_t col, int kind) {
    memset(a, 0, sizeof *a);
    a->v = api.duckdb_data_chunk_get_vector(in, col);
    a->valid = api.duckdb_vector_get_validity(a->v);
    if (kind == U_INT || kind == U_FLOAT || kind == U_BLOB) {
        a->data = api.duckdb_vector_get_data(a->v);
        return;
    }
    a->le = api.duckdb_vector_get_data(a->v);
    duckdb_vector child = api.duckdb_list_vector_get_child(a->v);
    if (kind == U_LIST) {
        a->data = api.duckdb_vector_get_data(child);
    } else if (kind == U_BLOCKS) {
        a->data = api.duckdb_vector_get_data(api.duckdb_array_vector_get_child(child));
    } else {
        a->le2 = api.duckdb_vector_get_data(child);
        a->data = api.duckdb_vector_get_data(api.duckdb_list_vector_get_child(child));
    }
}

static frow uarg_row(const uarg *a, idx_t r) {
    const duckdb_list_entry *e = &a->le[r];
    return (frow){ (const float *)a->data + e->offset, e->length };
}

/* The int8 values of row r of a TINYINT[32][] argument, and their blocks. */
static const int8_t *uarg_blocks(const uarg *a, idx_t r, idx_t *nb) {
    *nb = a->le[r].length;
    return (const int8_t *)a->data + a->le[r].offset * QK;
}

/* Row r of a BLOB argument. */
static const char *uarg_blob(const uarg *a, idx_t r, idx_t *n) {
    const duckdb_string_t *s = (const duckdb_string_t *)a->data + r;
    *n = s->length;
    return s->length <= 12 ? s->prefix : s->ptr;
}

/* Element k of row r of a FLOAT[][] argument, and the row's element count. */
static idx_t uarg_count(const uarg *a, idx_t r) { return a->le[r].length; }
static frow uarg_elem(const uarg *a, idx_t r, idx_t k) {
    const duckdb_list_entry *e = &a->le2[a->le[r].offset + k];
    return (frow){ (const float *)a->data + e->offset, e->length };
}

static int64_t uarg_int(const uarg *a, idx_t r) { return ((const int32_t *)a->data)[r]; }
static float uarg_float(const uarg *a, idx_t r) { return ((const float *)a->data)[r]; }

/* The output of a list-valued function: rows appended one by one. */
typedef struct uout {
    duckdb_vector v;
    duckdb_list_entry *le;
    idx_t size;
    size_t elem;                   /* bytes per element: 4 (FLOAT) or 8 (DOUBLE) */
} uout;

static void uout_init(uout *o, duckdb_vector v, size_t elem) {
    o->v = v;
    o->le = api.duckdb_vector_get_data(v);
    o->size = 0;
    o->elem = elem;
}

/* Room for row r's n elements, or NULL. */
static void *uout_row(uout *o, idx_t r, idx_t n) {
    if (api.duckdb_list_vector_reserve(o->v, o->size + n) != 0) return NULL;
    char *p = (char *)api.duckdb_vector_get_data(api.duckdb_list_vector_get_child(o->v)) + o->size * o->elem;
    o->le[r].offset = o->size;
    o->le[r].length = n;
    o->size += n;
    return p;
}

static void uout_done(uout *o) { api.duckdb_list_vector_set_size(o->v, o->size); }

static void set_null(duckdb_vector out, idx_t r) {
    api.duckdb_vector_ensure_validity_writable(out);
    api.duckdb_validity_set_row_invalid(api.duckdb_vector_get_validity(out), r);
}

/* Does any of the n arguments hold NULL in row r?  The result is then NULL. */
static bool any_null(const uarg *a, int n, duckdb_vector out, idx_t r) {
    for (int i = 0; i < n; i++)
        if (!row_valid(a[i].valid, r)) {
            set_null(out, r);
            return true;
        }
    return false;
}

#define UDF_FAIL(msg)                                          \
    do {                                                       \
        api.duckdb_scalar_function_set_error(info, "sqlm: " msg); \
        return;                                                \
    } while (0)

/* sqlm_dot(x FLOAT[], w FLOAT[], ...) -> FLOAT: x . w, where w may come as
 * consecutive parts (a ROW2COL row's pivot columns), each read in place */
static void udf_dot(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1 + 64];
    const int na = (int)api.duckdb_data_chunk_get_column_count(in);
    if (na < 2 || na > (int)ARRAY_LEN(a)) UDF_FAIL("dot: 1 to 64 parts of a row");
    for (int i = 0; i < na; i++) uarg_init(&a[i], in, (idx_t)i, U_LIST);
    float *res = api.duckdb_vector_get_data(out);
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, na, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        idx_t off = 0;
        float s = 0;
        for (int i = 1; i < na; i++) {
            frow w = uarg_row(&a[i], r);
            if (off + w.n > x.n) UDF_FAIL("dot: length mismatch");
            s += sqlm_vec_dot_f32(x.p + off, w.p, (size_t)w.n);
            off += w.n;
        }
        if (off != x.n) UDF_FAIL("dot: length mismatch");
        res[r] = s;
    }
}

/* A Q8_0 activation from a BLOB argument, copied to aligned blocks (kept
 * while rows point at the same bytes); nb = blocks, or 0 if malformed. */
typedef struct qx {
    const char *src;
    block_q8_0 *q;
    size_t nb, cap;
} qx;

static const block_q8_0 *qx_get(qx *x, const uarg *a, idx_t r) {
    idx_t n;
    const char *p = uarg_blob(a, r, &n);
    if (n % sizeof(block_q8_0)) return NULL;
    if (p != x->src || n / sizeof(block_q8_0) != x->nb) {
        x->nb = n / sizeof(block_q8_0);
        if (x->nb > x->cap) {
            free(x->q);
            x->cap = x->nb;
            if (!(x->q = malloc(x->cap * sizeof *x->q))) return x->cap = 0, x->src = NULL, NULL;
        }
        memcpy(x->q, p, n);
        x->src = p;
    }
    return x->q;
}

/* sqlm_qdot(w TINYINT[32][], s FLOAT[], x BLOB) -> FLOAT: a Q8_0/Q4_0 row
 * (int8 values, block scales) times a Q8_0 activation from sqlm_q8, rounded
 * as vec.c's Q8_0 dot: acc = fma(isum, d_w * d_x, acc) in block order. */
static void udf_qdot(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[3];
    uarg_init(&a[0], in, 0, U_BLOCKS), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_BLOB);
    float *res = api.duckdb_vector_get_data(out);
    qx x = { 0 };
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 3, out, r)) continue;
        idx_t nb;
        const int8_t *w = uarg_blocks(&a[0], r, &nb);
        frow s = uarg_row(&a[1], r);
        const block_q8_0 *xq = qx_get(&x, &a[2], r);
        if (!xq || s.n != nb || x.nb != nb) {
            free(x.q);
            UDF_FAIL("qdot: shapes of weights, scales and input disagree");
        }
        res[r] = sqlm_vec_dot_q8s(w, s.p, xq, (size_t)nb);
    }
    free(x.q);
}

/* sqlm_qblocks(w TINYINT[32][], s FLOAT[], x BLOB, b0 INTEGER) -> DOUBLE[]:
 * a chunk's exact block products isum * d_w * d_x, against blocks b0.. of
 * the activation (the fold over chunks happens in SQL). */
static void udf_qblocks(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[4];
    uarg_init(&a[0], in, 0, U_BLOCKS), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_BLOB);
    uarg_init(&a[3], in, 3, U_INT);
    uout o;
    uout_init(&o, out, sizeof(double));
    qx x = { 0 };
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 4, out, r)) continue;
        idx_t nb;
        const int8_t *w = uarg_blocks(&a[0], r, &nb);
        frow s = uarg_row(&a[1], r);
        const block_q8_0 *xq = qx_get(&x, &a[2], r);
        int64_t b0 = uarg_int(&a[3], r);
        double *p = xq && s.n == nb && b0 >= 0 && (idx_t)b0 + nb <= x.nb ? uout_row(&o, r, nb) : NULL;
        if (!p) {
            free(x.q);
            UDF_FAIL("qblocks: blocks outside the input, or out of memory");
        }
        sqlm_vec_q8s_products(w, s.p, xq + b0, (size_t)nb, p);
    }
    free(x.q);
    uout_done(&o);
}

/* sqlm_q8(x FLOAT[]) -> BLOB: x quantized as ggml's x86 backend quantizes a
 * product's input for Q8_0/Q4_0 weights (sqlm_vec_quant_q8_0), as block_q8_0s. */
static void udf_q8(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LIST);
    block_q8_0 *q = NULL;
    size_t cap = 0;
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        if (x.n % QK) {
            free(q);
            UDF_FAIL("q8: length not a multiple of 32");
        }
        if (x.n / QK > cap) {
            free(q);
            cap = x.n / QK;
            if (!(q = malloc(cap * sizeof *q))) UDF_FAIL("q8: out of memory");
        }
        sqlm_vec_quant_q8_0(x.p, q, (size_t)x.n);
        api.duckdb_vector_assign_string_element_len(out, r, (const char *)q, x.n / QK * sizeof *q);
    }
    free(q);
}

/* sqlm_f16(x FLOAT[]) -> FLOAT[]: x rounded to fp16, as ggml's products of
 * F16 weights take it */
static void udf_f16(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LIST);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("f16: out of memory");
        for (idx_t i = 0; i < x.n; i++) p[i] = sqlm_fp16_to_f32(sqlm_f32_to_fp16(x.p[i]));
    }
    uout_done(&o);
}

/* sqlm_rmsnorm(x FLOAT[], g FLOAT[], eps FLOAT) -> FLOAT[] */
static void udf_rmsnorm(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[3];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_FLOAT);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 3, out, r)) continue;
        frow x = uarg_row(&a[0], r), g = uarg_row(&a[1], r);
        if (x.n != g.n || x.n == 0) UDF_FAIL("rmsnorm: length mismatch");
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("rmsnorm: out of memory");
        sqlm_vec_rmsnorm(p, x.p, g.p, (size_t)x.n, uarg_float(&a[2], r));
    }
    uout_done(&o);
}

/* sqlm_rope(x, cs, n_head, n_head_kv, hd, interleaved, q_scale) -> FLOAT[]:
 * q (scaled by q_scale) and the k heads after it rotated; the rest copied. */
static void udf_rope(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[7];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST);
    for (int i = 2; i < 6; i++) uarg_init(&a[i], in, (idx_t)i, U_INT);
    uarg_init(&a[6], in, 6, U_FLOAT);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 7, out, r)) continue;
        frow x = uarg_row(&a[0], r), cs = uarg_row(&a[1], r);
        int64_t nq = uarg_int(&a[2], r), nkv = uarg_int(&a[3], r), hd = uarg_int(&a[4], r);
        float qs = uarg_float(&a[6], r);
        if (nq <= 0 || nkv < 0 || hd <= 0 || hd % 2 || (idx_t)((nq + nkv) * hd) > x.n || cs.n != (idx_t)hd)
            UDF_FAIL("rope: bad shape");
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("rope: out of memory");
        memcpy(p, x.p, x.n * sizeof *p);
        sqlm_vec_rope(p, cs.p, (int)nq, (int)nkv, (int)hd, uarg_int(&a[5], r) != 0, qs);
    }
    uout_done(&o);
}

/* sqlm_swiglu(gu FLOAT[]) -> FLOAT[]: silu(first half) * second half */
static void udf_swiglu(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LIST);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        if (x.n % 2) UDF_FAIL("swiglu: odd length");
        float *p = uout_row(&o, r, x.n / 2);
        if (!p) UDF_FAIL("swiglu: out of memory");
        sqlm_vec_swiglu(p, x.p, (size_t)(x.n / 2));
    }
    uout_done(&o);
}

/* sqlm_vadd(a FLOAT[], b FLOAT[]) -> FLOAT[] */
static void udf_vadd(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[2];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 2, out, r)) continue;
        frow x = uarg_row(&a[0], r), y = uarg_row(&a[1], r);
        if (x.n != y.n) UDF_FAIL("vadd: length mismatch");
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("vadd: out of memory");
        for (idx_t i = 0; i < x.n; i++) p[i] = x.p[i] + y.p[i];
    }
    uout_done(&o);
}

/* sqlm_qk(q, k, n_head, n_head_kv, hd) -> FLOAT[n_head]: q_h . k_(h / group) */
static void udf_qk(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[5];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST);
    for (int i = 2; i < 5; i++) uarg_init(&a[i], in, (idx_t)i, U_INT);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 5, out, r)) continue;
        frow q = uarg_row(&a[0], r), k = uarg_row(&a[1], r);
        int64_t nh = uarg_int(&a[2], r), nkv = uarg_int(&a[3], r), hd = uarg_int(&a[4], r);
        if (nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || q.n < (idx_t)(nh * hd) || k.n != (idx_t)(nkv * hd))
            UDF_FAIL("qk: bad shape");
        float *p = uout_row(&o, r, (idx_t)nh);
        if (!p) UDF_FAIL("qk: out of memory");
        for (int64_t h = 0; h < nh; h++) p[h] = sqlm_vec_dot_f32(q.p + h * hd, k.p + (h / (nh / nkv)) * hd, (size_t)hd);
    }
    uout_done(&o);
}

/* sqlm_vmax(s FLOAT[][]) -> FLOAT[]: the element-wise maximum of the lists */
static void udf_vmax(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LISTS);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        idx_t nk = uarg_count(&a[0], r);
        if (nk == 0) UDF_FAIL("vmax: no lists");
        frow first = uarg_elem(&a[0], r, 0);
        float *p = uout_row(&o, r, first.n);
        if (!p) UDF_FAIL("vmax: out of memory");
        memcpy(p, first.p, first.n * sizeof *p);
        for (idx_t k = 1; k < nk; k++) {
            frow e = uarg_elem(&a[0], r, k);
            if (e.n != first.n) UDF_FAIL("vmax: length mismatch");
            for (idx_t i = 0; i < e.n; i++) p[i] = fmaxf(p[i], e.p[i]);
        }
    }
    uout_done(&o);
}

/* sqlm_attn(s FLOAT[][], mx FLOAT[], v FLOAT[][], n_head, n_head_kv, hd) ->
 * FLOAT[n_head * hd]: per head, sum_k e * v_k / sum_k e with e = exp(s_k - mx),
 * the keys in list order (as db/sqlite.c's sqlm_attn adds them). */
static void udf_attn(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[6];
    uarg_init(&a[0], in, 0, U_LISTS), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_LISTS);
    for (int i = 3; i < 6; i++) uarg_init(&a[i], in, (idx_t)i, U_INT);
    uout o;
    uout_init(&o, out, sizeof(float));
    float z[1024];
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 6, out, r)) continue;
        int64_t nh = uarg_int(&a[3], r), nkv = uarg_int(&a[4], r), hd = uarg_int(&a[5], r);
        frow mx = uarg_row(&a[1], r);
        idx_t nk = uarg_count(&a[0], r);
        if (nh <= 0 || nh > (int64_t)ARRAY_LEN(z) || nkv <= 0 || nh % nkv || hd <= 0 || mx.n != (idx_t)nh ||
            uarg_count(&a[2], r) != nk)
            UDF_FAIL("attn: bad shape");
        float *p = uout_row(&o, r, (idx_t)(nh * hd));
        if (!p) UDF_FAIL("attn: out of memory");
        memset(p, 0, (size_t)(nh * hd) * sizeof *p);
        memset(z, 0, (size_t)nh * sizeof *z);
        const int64_t group = nh / nkv;
        for (idx_t k = 0; k < nk; k++) {
            frow s = uarg_elem(&a[0], r, k), v = uarg_elem(&a[2], r, k);
            if (s.n != (idx_t)nh || v.n != (idx_t)(nkv * hd)) UDF_FAIL("attn: bad shape");
            for (int64_t h = 0; h < nh; h++) {
                float e = expf(s.p[h] - mx.p[h]), *ph = p + h * hd;
                const float *vh = v.p + (h / group) * hd;
                for (int64_t i = 0; i < hd; i++) ph[i] += e * vh[i];
                z[h] += e;
            }
        }
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < hd; i++) p[h * hd + i] /= z[h];
    }
    uout_done(&o);
}

#undef UDF_FAIL

/* Parameter and result types, by letter: f FLOAT, i INTEGER, d DOUBLE,
 * x BLOB, L FLOAT[], B TINYINT[32][], M FLOAT[][], D DOUBLE[]. */
static const struct {
    const char *name, *params, ret;   /* params ending in '+': more of the last type */
    duckdb_scalar_function_t fn;
} udfs[] = {
    { "sqlm_dot", "LL+", 'f', udf_dot },
    { "sqlm_qdot", "BLx", 'f', udf_qdot },
    { "sqlm_qblocks", "BLxi", 'D', udf_qblocks },
    { "sqlm_q8", "L", 'x', udf_q8 },
    { "sqlm_f16", "L", 'L', udf_f16 },
    { "sqlm_rmsnorm", "LLf", 'L', udf_rmsnorm },
    { "sqlm_rope", "LLiiiif", 'L', udf_rope },
    { "sqlm_swiglu", "L", 'L', udf_swiglu },
    { "sqlm_vadd", "LL", 'L', udf_vadd },
    { "sqlm_qk", "LLiii", 'L', udf_qk },
    { "sqlm_vmax", "M", 'L', udf_vmax },
    { "sqlm_attn", "MLMiii", 'L', udf_attn },
};

static duckdb_logical_type udf_type(char c) {
    duckdb_logical_type f = api.duckdb_create_logical_type(c == 'd' || c == 'D' ? T_DOUBLE : T_FLOAT), t, u;
    switch (c) {
    case 'i': api.duckdb_destroy_logical_type(&f); return api.duckdb_create_logical_type(T_INTEGER);
    case 'x': api.duckdb_destroy_logical_type(&f); return api.duckdb_create_logical_type(T_BLOB);
    case 'f': case 'd': return f;
    case 'L': case 'D': t = api.duckdb_create_list_type(f); break;
    case 'B': {
        duckdb_logical_type i8 = api.duckdb_create_logical_type(T_TINYINT);
        u = api.duckdb_create_array_type(i8, QK);
        api.duckdb_destroy_logical_type(&i8);
        t = api.duckdb_create_list_type(u);
        api.duckdb_destroy_logical_type(&u);
        break;
    }
    default:   /* 'M' */
        u = api.duckdb_create_list_type(f);
        t = api.duckdb_create_list_type(u);
        api.duckdb_destroy_logical_type(&u);
        break;
    }
    api.duckdb_destroy_logical_type(&f);
    return t;
}

int sqlm_duckdb_register_functions(duckdb_connection con, const char *path) {
    if (sqlm_duckdb_udf_missing)
        return sqlm_error(SQLM_UNSUPPORTED, "engine duckdb-native: libduckdb.so %s lacks %s",
                          sqlm_duckdb_lib_version(), sqlm_duckdb_udf_missing);
    for (size_t i = 0; i < ARRAY_LEN(udfs); i++) {
        duckdb_scalar_function f = api.duckdb_create_scalar_function();
        api.duckdb_scalar_function_set_name(f, udfs[i].name);
        for (const char *p = udfs[i].params; *p; p++) {
            duckdb_logical_type t = udf_type(*p == '+' ? p[-1] : *p);
            if (*p == '+') api.duckdb_scalar_function_set_varargs(f, t);
            else api.duckdb_scalar_function_add_parameter(f, t);
            api.duckdb_destroy_logical_type(&t);
        }
        duckdb_logical_type t = udf_type(udfs[i].ret);
        api.duckdb_scalar_function_set_return_type(f, t);
        api.duckdb_destroy_logical_type(&t);
        api.duckdb_scalar_function_set_function(f, udfs[i].fn);
        duckdb_state st = api.duckdb_register_scalar_function(con, f);
        api.duckdb_destroy_scalar_function(&f);
        if (st != 0) return sqlm_error(SQLM_DB, "duckdb: %s: cannot register %s", path, udfs[i].name);
    }
    return SQLM_OK;
}
