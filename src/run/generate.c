/*
 * generate.c - a session: one compiled program on one engine connection,
 * fed token batches at increasing positions.  The KV cache lives in the
 * engine's TEMP tables; this file only inserts tokens, runs the program and
 * reads the logits back.  Sampling is in sample.c, the CLI loop in tools/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

struct session {
    modeldb *db;
    ir_graph g;
    sql_program prog;
    char *logits_sql;        /* reads the logits table, built once */
    int pos;                 /* next position */
    int n_ctx;
    int32_t *toks;           /* [n_ctx] the tokens at positions 0 .. pos-1 (the KV cache's) */
    float *logits;           /* [n_rows][vocab] */
    size_t logits_cap;       /* floats */
    size_t logits_n;         /* floats filled by the last step */
    double *stmt_seconds;    /* [prog.n_steps] summed over the session's steps */
    int rc;
    int chunk;               /* tokens per step under a budget (0 = all at once) */
    char plan[400];          /* how the budget was split (for --stats) */
};

/* ------------------------------------------------------- memory budget */

/*
 * Bytes a TEMP table row of payload bytes takes in SQLite's in-memory temp
 * database (4 KB pages): whole cells per page, overflow pages beyond.
 */
static size_t temp_row_bytes(size_t payload) {
    const size_t page = 4096, usable = page - 8;
    size_t cell = payload + 12;
    if (cell <= usable / 2) return page / (usable / (cell + 2));
    if (cell <= usable) return page;
    return page * ((cell + page - 1) / (page - 4));
}

/*
 * Fit the session into the budget: the KV cache for the context, the step
 * tables for a prompt chunk, SQLite's page cache and the weight cache's
 * buffers come first; what is left of the budget holds weights.  A probe
 * step (BOS at position 0, then forgotten) shows the engine which pages a
 * step reads, in order.
 */
static int budget_plan(session *s, const session_opts *o) {
    modeldb *db = s->db;
    const model_config *c = &db->cfg;
    engine *e = db->e;
    const size_t budget = o->mem_budget, MB = 1048576;
    const size_t kv_dim = (size_t)c->n_head_kv * (size_t)c->head_dim;
    /* a position of the KV cache: per layer one sqlm_kv row (k and v, from
     * sqlite3_malloc: its 8-byte size, malloc's 8 and 16-byte rounding) and
     * its pointer (twice, while the pointer array doubles) */
    size_t kv_pos = (size_t)c->n_layer * (((2 * kv_dim * 4 + 8 + 8 + 15) & ~(size_t)15) + 16);
    /* a position of a step: a row in each table the step writes (the
     * materialised nodes), and the few vectors a statement holds at once
     * (a product's input stack, its output, the next node's copy: four of
     * the widest); the logits are one row a step, kept for the last
     * position only */
    size_t act_pos = 0, widest = 0, logits = 0;
    for (int i = 0; i < s->g.n_nodes; i++) {
        const ir_node *n = &s->g.nodes[i];
        size_t row = (size_t)(n->n_out ? n->n_out : c->dim) * 4;
        if (i == s->g.output) logits = temp_row_bytes(row);
        else if (n->materialize) act_pos += temp_row_bytes(row);
        else widest = MAX(widest, row);
    }
    act_pos += 4 * widest;
    size_t attn_pos = (size_t)c->n_head * 4 * 3 + 64;   /* per (query, key) pair */

    /* the context: the model's, capped so its KV cache takes at most an
     * eighth of the budget, unless -c asked for it */
    if (o->n_ctx == 0) {
        size_t cap = budget / 8 / kv_pos;
        if ((size_t)s->n_ctx > cap) {
            int n = (int)MAX(MIN(cap / 256 * 256, (size_t)s->n_ctx), (size_t)MIN(256, s->n_ctx));
            if (!o->quiet)
                sqlm_log(SQLM_LOG_NOTE, "note: --mem-budget %.0f MB: context capped at %d tokens (the KV cache of %d "
                                        "would take %.0f MB; -c sets it)",
                        budget / (double)MB, n, s->n_ctx, (double)kv_pos * s->n_ctx / MB);
            s->n_ctx = n;
        }
    }
    size_t kv = kv_pos * (size_t)s->n_ctx;
    /* prompt chunk: its step tables within 1/64 of the budget */
    size_t per_tok = act_pos + attn_pos * (size_t)s->n_ctx;
    s->chunk = (int)MAX(MIN(budget / 64 / per_tok, 64), 1);
    size_t heap = kv + per_tok * (size_t)s->chunk + 2 * logits + 4 * MB;

    wcache_stats st;
    if (!e->m->mem_stats || !e->m->mem_stats(e, &st)) return SQLM_OK;   /* the engine's own limit */
    sqlm_heap_trim();   /* what loading freed (the vocabulary's merges) is not the process's */
    size_t rss = sqlm_rss(), margin = 2 * MB + budget / 100;
    size_t fixed = rss + heap + st.ring_bytes + margin;
    if (fixed >= budget || kv > budget / 2)
        return sqlm_error(SQLM_NOMEM,
                          "--mem-budget %.0f MB is too small: before any weights sqlm needs %.0f MB (process %.0f MB, "
                          "KV cache of %d tokens %.0f MB, step tables %.0f MB, read buffers %.0f MB, margin %.0f MB)%s",
                          budget / (double)MB, fixed / (double)MB, rss / (double)MB, s->n_ctx, kv / (double)MB,
                          (heap - kv) / (double)MB, st.ring_bytes / (double)MB, margin / (double)MB,
                          kv > budget / 4 ? "; a shorter context (-c) needs less" : "");
    snprintf(s->plan, sizeof s->plan,
             "process %.1f MB, KV cache %.1f MB (%d tokens), step tables %.1f MB (prompt chunks of %d), "
             "read buffers %.1f MB, margin %.1f MB, weights %.1f MB",
             rss / (double)MB, kv / (double)MB, s->n_ctx, (heap - kv) / (double)MB, s->chunk,
             st.ring_bytes / (double)MB, margin / (double)MB, (budget - fixed) / (double)MB);
    /* SQLM_TEST_HEAP_BYTES (tests only): a smaller engine heap than planned,
     * to check that running out of it mid-run ends with a clear message */
    const char *t = getenv("SQLM_TEST_HEAP_BYTES");
    int rc = e->m->mem_trace(e, t ? (size_t)strtoull(t, NULL, 10) : heap);
    if (rc) return rc;
    int32_t tok = db->voc.bos >= 0 && db->voc.bos < c->vocab_size ? db->voc.bos : 0;
    const float *lg;
    int chunk = s->chunk;
    s->chunk = 0;
    rc = sqlm_exec_eval(s, &tok, 1, &lg);
    s->chunk = chunk;
    if (!rc) rc = e->m->mem_plan(e, budget - fixed);
    if (!rc) rc = sqlm_exec_reset(s);
    return rc;
}

bool sqlm_exec_mem_stats(session *s, wcache_stats *st) {
    engine *e = s->db->e;
    memset(st, 0, sizeof *st);
    return e->m->mem_stats && e->m->mem_stats(e, st);
}

int sqlm_exec_n_ctx(const session *s) { return s->n_ctx; }

const char *sqlm_exec_mem_plan(const session *s) { return s->plan[0] ? s->plan : NULL; }

int sqlm_exec_init(session **out, modeldb *db, const session_opts *o) {
    *out = NULL;
    session *s = calloc(1, sizeof *s);
    if (!s) return sqlm_error(SQLM_NOMEM, "out of memory");
    s->db = db;
    s->n_ctx = o->n_ctx > 0 ? o->n_ctx : db->cfg.seq_len;
    int rc = SQLM_OK;
    if (s->n_ctx > db->cfg.seq_len) {
        rc = sqlm_error(SQLM_RANGE, "context %d exceeds the model's %d positions", s->n_ctx,
                        db->cfg.seq_len);
        goto fail;
    }
    ir_opts io = sqlm_dialect_ir_opts(db->e->m->dialect, o->ir);
    io.inplace = db->inplace;
    if ((rc = sqlm_ir_build_llama(&s->g, &db->cfg, db->weights, db->n_weights, &io))) goto fail;
    if ((rc = sqlm_emit_program(&s->g, db->e->m->dialect, &s->prog))) goto fail;
    if ((rc = db->e->m->load_program(db->e, &s->prog))) goto fail;
    if (!(s->stmt_seconds = calloc((size_t)s->prog.n_steps + 1, sizeof *s->stmt_seconds))) {
        rc = sqlm_error(SQLM_NOMEM, "out of memory");
        goto fail;
    }
    buf q;
    sqlm_buf_init(&q);
    sqlm_buf_appendf(&q, "SELECT pos, v FROM %s ORDER BY pos", s->prog.logits_table);
    if (q.rc) {
        rc = sqlm_error(SQLM_NOMEM, "out of memory");
        goto fail;
    }
    s->logits_sql = sqlm_buf_detach(&q);
    /* before the budget's probe step, which feeds a token; the budget may
     * only shorten n_ctx */
    if (!(s->toks = malloc(sizeof *s->toks * (size_t)s->n_ctx))) {
        rc = sqlm_error(SQLM_NOMEM, "out of memory");
        goto fail;
    }
    if (o->mem_budget && (rc = budget_plan(s, o))) goto fail;
    *out = s;
    return SQLM_OK;
fail:
    sqlm_exec_free(s);
    return rc;
}

void sqlm_exec_free(session *s) {
    if (!s) return;
    sqlm_ir_free(&s->g);
    sqlm_sql_program_free(&s->prog);
    free(s->logits_sql);
    free(s->toks);
    free(s->logits);
    free(s->stmt_seconds);
    free(s);
}

const double *sqlm_exec_stmt_seconds(const session *s, const sql_program **prog) {
    *prog = &s->prog;
    return s->stmt_seconds;
}

/* DuckDB: the checkpoint frees the rows the reset deleted.  Without it the
 * deleted rows stay, and every later scan of the cache reads them: over 20
 * sequences of a 25-token prompt and 4 steps (110M shape), DuckDB's
 * temporary tables grew from 27 to 141 MB.  Per step it would not pay: a
 * checkpoint rewrites the rows added since the last one (a table growing by
 * a 4096-float row a step: 77-114 ms at step 1000), so the logits rows a
 * step deletes stay until the next reset (128 KB each for a 32000-token
 * vocabulary; reading the logits takes 9 us longer per deleted row). */
int sqlm_exec_reset(session *s) {
    engine *e = s->db->e;
    const sql_dialect *d = sqlm_dialect_get(e->m->dialect);
    s->pos = 0;
    int rc = e->m->exec(e, s->prog.reset);
    if (!rc && d && d->vacuum) rc = e->m->exec(e, d->vacuum);
    return rc;
}


static int logits_row(void *ctx, int nc, const db_val *v) {
    session *s = ctx;
    size_t nv = (size_t)s->db->cfg.vocab_size;
    if (nc < 2 || v[1].type != DBV_BLOB || v[1].n != nv * sizeof(float)) {
        s->rc = sqlm_error(SQLM_DB, "logits row has %zu bytes, expected %zu", v[1].n, nv * 4);
        return 1;
    }
    if (s->logits_n + nv > s->logits_cap) {
        size_t cap = (s->logits_n + nv) * 2;
        float *p = realloc(s->logits, cap * sizeof *p);
        if (!p) return s->rc = sqlm_error(SQLM_NOMEM, "out of memory"), 1;
        s->logits = p;
        s->logits_cap = cap;
    }
    memcpy(s->logits + s->logits_n, v[1].p, v[1].n);
    s->logits_n += nv;
    return 0;
}

static int eval_batch(session *s, const int32_t *toks, int n);

/*
 * Cut the cache to its first n positions: each cache table of the reset
 * script ("DELETE FROM kv0;" per line, one per layer) loses its rows at
 * pos >= n.  Every cache table has a pos column (the KV_APPEND templates),
 * so the statements suit every dialect; SQLite's sqlm_kv deletes by rowid,
 * which is the position.
 */
int sqlm_exec_truncate(session *s, int n) {
    if (n < 0) return sqlm_error(SQLM_RANGE, "truncate: negative length %d", n);
    if (n >= s->pos) return SQLM_OK;
    if (n == 0) return sqlm_exec_reset(s);
    engine *e = s->db->e;
    buf sql;
    sqlm_buf_init(&sql);
    for (const char *p = s->prog.reset; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && p[len - 1] == ';') len--;
        if (len > 0) sqlm_buf_appendf(&sql, "%.*s WHERE pos >= %d;\n", (int)len, p, n);
        p = end ? end + 1 : p + strlen(p);
    }
    int rc = sql.rc ? sqlm_error(SQLM_NOMEM, "out of memory") : SQLM_OK;
    if (!rc && sql.len) rc = e->m->exec(e, sql.p);
    sqlm_buf_free(&sql);
    if (rc) return sqlm_error_prefix(rc, "truncating the KV cache to %d positions", n);
    s->pos = n;
    return SQLM_OK;
}

/*
 * A conversation re-rendered every turn, or a server's requests, mostly
 * extend the sequence already in the cache: only the new tokens need a step.
 * A sequence that departs from it (or ends inside it, whose last logits are
 * gone) starts over; a caller that wants to keep a shared prefix cuts the
 * cache back to it first (sqlm_exec_truncate).
 */
int sqlm_exec_feed(session *s, const int32_t *toks, int n, const float **logits, int *n_kept) {
    *logits = NULL;
    if (n_kept) *n_kept = 0;
    if (n <= 0) return sqlm_error(SQLM_RANGE, "no tokens to evaluate");
    if (n > s->n_ctx) return sqlm_error(SQLM_RANGE, "%d tokens exceed the context of %d", n, s->n_ctx);
    int keep = 0;
    while (keep < s->pos && keep < n && s->toks[keep] == toks[keep]) keep++;
    if (keep < s->pos || keep == n) {
        int rc = sqlm_exec_reset(s);
        if (rc) return rc;
        keep = 0;
    }
    if (n_kept) *n_kept = keep;
    return sqlm_exec_eval(s, toks + keep, n - keep, logits);
}

/* Under a budget a prompt goes in chunks whose step tables fit it (each
 * position's result does not depend on the chunking). */
int sqlm_exec_eval(session *s, const int32_t *toks, int n, const float **logits) {
    *logits = NULL;
    if (n <= 0) return sqlm_error(SQLM_RANGE, "no tokens to evaluate");
    if (n > s->n_ctx - s->pos)
        return sqlm_error(SQLM_RANGE, "context full: %d + %d tokens exceed %d", s->pos, n, s->n_ctx);
    int step = s->chunk > 0 && !s->g.all_logits ? s->chunk : n;
    for (int i = 0; i < n; i += step) {
        int rc = eval_batch(s, toks + i, MIN(step, n - i));
        if (rc) return rc;
    }
    *logits = s->logits;
    return SQLM_OK;
}

static int eval_batch(session *s, const int32_t *toks, int n) {
    engine *e = s->db->e;
    if (n > s->n_ctx - s->pos)
        return sqlm_error(SQLM_RANGE, "context full: %d + %d tokens exceed %d", s->pos, n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= s->db->cfg.vocab_size)
            return sqlm_error(SQLM_RANGE, "token id %d outside the vocabulary (%d)", toks[i],
                              s->db->cfg.vocab_size);
    int rc = e->m->query(e, "DELETE FROM t_in", NULL, 0, NULL, NULL);   /* query(): kept prepared */
    for (int i = 0; !rc && i < n; i++) {
        db_val v[2] = { dbv_int(s->pos + i), dbv_int(toks[i]) };
        rc = e->m->query(e, "INSERT INTO t_in(pos, tok) VALUES (?, ?)", v, 2, NULL, NULL);
    }
    if (!rc) rc = e->m->run_program(e, s->stmt_seconds);
    if (rc) return rc;
    s->logits_n = 0;
    s->rc = SQLM_OK;
    rc = e->m->query(e, s->logits_sql, NULL, 0, logits_row, s);
    if (!rc) rc = s->rc;
    size_t want = (size_t)s->db->cfg.vocab_size * (size_t)(s->g.all_logits ? n : 1);
    if (!rc && s->logits_n != want)
        rc = sqlm_error(SQLM_DB, "step produced %zu logits, expected %zu", s->logits_n, want);
    if (rc) return rc;
    memcpy(s->toks + s->pos, toks, sizeof *toks * (size_t)n);
    s->pos += n;
    return SQLM_OK;
}
