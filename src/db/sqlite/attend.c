/*
 * attend.c - sqlm_attend: causal attention of a batch of queries over the
 * rows of an sqlm_kv table, read in place (vtab_kv.c), on the engine's thread
 * pool.  The SQLite dialect's fused ATTN template calls it; the unfused form
 * is sqlm_qk, sqlm_vmax, sqlm_vexp and sqlm_attn (functions.c).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"
#include "../../kern/kern.h"

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
        if (!name || !(a->kv = sqlm_kv_find(s, name))) return attend_fail(ctx, a, "sqlm: attend: not an sqlm_kv table");
        a->nh = nh, a->nkv = nkv, a->hd = hd;
    }
    batch_ref *qs;
    int got = sqlm_batch_take(argv[0], &qs);
    if (got) {
        batch_view qv;
        if (got < 0 || a->qs || !sqlm_batch_parse(qs->p, qs->len, STACK_MAGIC, 1, &qv) || qv.width % 4 ||
            qv.width / 4 < (uint64_t)(a->nh * a->hd)) {
            sqlm_batch_unref(qs);
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
    sqlm_batch_parse(a->qs->p, a->qs->len, STACK_MAGIC, 1, &j.q);   /* checked by the step */
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
            qsort(a->pos, a->n, sizeof *a->pos, sqlm_cmp_i64);
            break;
        }
    if (!(j.k = malloc(sizeof *j.k * a->n))) {
        sqlite3_result_error_nomem(ctx);
        goto done;
    }
    for (size_t i = 0; i < a->n; i++)
        if (!(j.k[i] = sqlm_kv_row(a->kv, a->pos[i]))) {
            sqlite3_result_error(ctx, "sqlm: attend: position not in the cache", -1);
            goto done;
        }
    const int64_t qd = a->nh * a->hd;
    size_t len = BATCH_HDR + 8 * (size_t)j.q.n + 4 * (size_t)j.q.n * (size_t)qd;
    if (!(ob = sqlm_batch_new(len))) {
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
    sqlm_batch_result(ctx, ob);
    ob = NULL;
done:
    sqlm_batch_unref(ob);
    free(j.k);
    sqlm_batch_unref(a->qs);
    free(a->pos);
    a->qs = NULL;
    a->pos = NULL;
}

int sqlm_sqlite_register_attend(sqlite_engine *s) {
    return sqlm_sqlite_create_function(s, "sqlm_attend", 6, NULL, agg_attend_step, agg_attend_final);
}
