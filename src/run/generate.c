/*
 * generate.c - a session: one compiled program on one engine connection,
 * fed token batches at increasing positions.  The KV cache lives in the
 * engine's TEMP tables; this file only inserts tokens, runs the program and
 * reads the logits back.  Sampling is in sample.c, the CLI loop in tools/.
 */
#include <stdlib.h>
#include <string.h>

#include "../sqlm-int.h"

struct session {
    modeldb *db;
    ir_graph g;
    sql_program prog;
    char *logits_sql;        /* reads the logits table, built once */
    int pos;                 /* next position */
    int n_ctx;
    float *logits;           /* [n_rows][vocab] */
    size_t logits_cap;       /* floats */
    size_t logits_n;         /* floats filled by the last step */
    int rc;
};

int session_init(session **out, modeldb *db, const session_opts *o) {
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
    ir_opts io = dialect_ir_opts(db->e->m->dialect, o->ir);
    io.inplace = db->inplace;
    if ((rc = ir_build_llama(&s->g, &db->cfg, db->weights, db->n_weights, &io))) goto fail;
    if ((rc = emit_program(&s->g, db->e->m->dialect, &s->prog))) goto fail;
    if ((rc = db->e->m->load_program(db->e, &s->prog))) goto fail;
    buf q;
    buf_init(&q);
    buf_appendf(&q, "SELECT pos, v FROM %s ORDER BY pos", s->prog.logits_table);
    if (q.rc) {
        rc = sqlm_error(SQLM_NOMEM, "out of memory");
        goto fail;
    }
    s->logits_sql = buf_detach(&q);
    *out = s;
    return SQLM_OK;
fail:
    session_free(s);
    return rc;
}

void session_free(session *s) {
    if (!s) return;
    ir_free(&s->g);
    sql_program_free(&s->prog);
    free(s->logits_sql);
    free(s->logits);
    free(s);
}

int session_reset(session *s) {
    s->pos = 0;
    return s->db->e->m->exec(s->db->e, s->prog.reset);
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

int session_eval(session *s, const int32_t *toks, int n, const float **logits) {
    engine *e = s->db->e;
    *logits = NULL;
    if (n <= 0) return sqlm_error(SQLM_RANGE, "no tokens to evaluate");
    if (n > s->n_ctx - s->pos)
        return sqlm_error(SQLM_RANGE, "context full: %d + %d tokens exceed %d", s->pos, n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= s->db->cfg.vocab_size)
            return sqlm_error(SQLM_RANGE, "token id %d outside the vocabulary (%d)", toks[i],
                              s->db->cfg.vocab_size);
    int rc = e->m->exec(e, "DELETE FROM t_in");
    for (int i = 0; !rc && i < n; i++) {
        db_val v[2] = { dbv_int(s->pos + i), dbv_int(toks[i]) };
        rc = e->m->query(e, "INSERT INTO t_in(pos, tok) VALUES (?, ?)", v, 2, NULL, NULL);
    }
    if (!rc) rc = e->m->run_program(e, NULL);
    if (rc) return rc;
    s->logits_n = 0;
    s->rc = SQLM_OK;
    rc = e->m->query(e, s->logits_sql, NULL, 0, logits_row, s);
    if (!rc) rc = s->rc;
    size_t want = (size_t)s->db->cfg.vocab_size * (size_t)(s->g.all_logits ? n : 1);
    if (!rc && s->logits_n != want)
        rc = sqlm_error(SQLM_DB, "step produced %zu logits, expected %zu", s->logits_n, want);
    if (rc) return rc;
    s->pos += n;
    *logits = s->logits;
    return SQLM_OK;
}
