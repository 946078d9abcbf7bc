/*
 * matmul.c - sqlm_matmul, the in-place products: the query scans a weight
 * table's tile ids, the aggregate reads each tile's bytes from the mapping
 * or the weight cache (tiles.c) and, at its final step, multiplies them with
 * every position of the batch on the engine's thread pool (row by row, or
 * on repacked panels for batches).  The copying form, sqlm_matvec over BLOBs
 * SQLite hands out, is in functions.c.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"
#include "../../kern/kern.h"

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
    int got = sqlm_batch_take(argv[2], &x);
    if (got) {
        if (got < 0 || a->x) {
            sqlm_batch_unref(x);
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
    if (!sqlm_batch_parse(a->x->p, a->x->len, STACK_MAGIC, 1, &xv) || xv.width != xrb) {
        sqlite3_result_error(ctx, "sqlm: matmul: activations do not match the weight's width and type", -1);
        goto done;
    }
    size_t ylen = BATCH_HDR + 8 * (size_t)xv.n + 4 * (size_t)xv.n * (size_t)w->n_out;
    if (!(ob = sqlm_batch_new(ylen))) {
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
            qsort(a->ids, a->n_ids, sizeof *a->ids, sqlm_cmp_i64);
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
    sqlm_batch_result(ctx, ob);
    ob = NULL;
done:
    sqlm_batch_unref(ob);
    if (a) {
        free(a->ids);
        sqlm_batch_unref(a->x);
        a->ids = NULL, a->x = NULL;
    }
}

int sqlm_sqlite_register_matmul(sqlite_engine *s) {
    return sqlm_sqlite_create_function(s, "sqlm_matmul", 3, NULL, agg_matmul_step, agg_matmul_final);
}
