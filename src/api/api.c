/*
 * api.c - the public handles of include/sqlm.h over the internal layers:
 * sqlm_model wraps a model database (run/modeldb.c) or a bare vocabulary,
 * sqlm_session wraps the program-execution session (run/generate.c) with
 * its sampler and token history.  Import, synth, tokenization, chat
 * templates, the SQL text of a step and the statistics are thin calls into
 * their layers.  The generation loop itself is in api/generate.c.
 *
 * Not here: anything that prints or exits (tools/ do), engine specifics.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

const char *sqlm_version(void) { return SQLM_VERSION; }

void sqlm_free(void *p) { free(p); }

/* ---------------------------------------------------------------- import */

sqlm_import_params sqlm_import_default_params(void) {
    return (sqlm_import_params){ .engine = "sqlite", .type = -1, .row2col = SQLM_ROW2COL_AUTO };
}

int sqlm_import_model(const char *model_path, const char *out_path, const sqlm_import_params *p) {
    sqlm_import_params d = sqlm_import_default_params();
    if (!p) p = &d;
    if (!model_path || !out_path) return sqlm_error(SQLM_ERROR, "import: no model file or no output path");
    import_opts o = { .engine = p->engine ? p->engine : "sqlite", .tok_path = p->tokenizer, .wtype = p->type,
                      .tile_bytes = p->tile_bytes, .progress = p->progress, .progress_ctx = p->progress_ctx,
                      .mem_budget = p->mem_budget, .no_fuse = p->no_fuse, .row2col = p->row2col };
    return sqlm_import_file(model_path, out_path, &o);
}

int sqlm_synth(const char *like, const char *out_path, int32_t type, uint64_t seed) {
    const synth_spec *sp = like ? sqlm_synth_like(like) : NULL;
    if (!sp) return sqlm_error(SQLM_ERROR, "synth: unknown shape '%s'", like ? like : "(none)");
    return sqlm_synth_model(out_path, sp, type, seed);
}

const char *sqlm_synth_shape(int i) { return i < 0 ? NULL : sqlm_synth_name(i); }

/* ----------------------------------------------------------------- model */

sqlm_model_params sqlm_model_default_params(void) {
    return (sqlm_model_params){ .mem_io = SQLM_MEM_IO_AUTO };
}

bool sqlm_engine_available(const char *name) { return name && sqlm_db_find(name) != NULL; }

static int model_alloc(sqlm_model **out) {
    *out = calloc(1, sizeof **out);
    return *out ? SQLM_OK : sqlm_error(SQLM_NOMEM, "out of memory");
}

int sqlm_open(const char *path, const sqlm_model_params *p, sqlm_model **out) {
    *out = NULL;
    sqlm_model_params d = sqlm_model_default_params();
    if (!p) p = &d;
    if (!path) return sqlm_error(SQLM_ERROR, "no model database given");
    /* the engine asked for, or the one that wrote the file; native: its
     * variant with sqlm's functions registered */
    const char *engine = p->engine;
    char native[64];
    if (p->native) {
        const db_methods *m = engine ? sqlm_db_find(engine) : sqlm_db_sniff(path);
        if (!m) return sqlm_error(SQLM_UNSUPPORTED, "--native: unknown engine of %s", path);
        snprintf(native, sizeof native, "%s-native", m->name);
        if (!sqlm_db_find(native)) return sqlm_error(SQLM_UNSUPPORTED, "--native: engine %s has no native mode", m->name);
        engine = native;
    }
    static const int io[] = { [SQLM_MEM_IO_AUTO] = WC_IO_AUTO, [SQLM_MEM_IO_DIRECT] = WC_IO_DIRECT,
                              [SQLM_MEM_IO_BUFFERED] = WC_IO_BUFFERED };
    if (p->mem_io < 0 || p->mem_io > SQLM_MEM_IO_BUFFERED)
        return sqlm_error(SQLM_RANGE, "mem_io: %d is no SQLM_MEM_IO_* mode", (int)p->mem_io);
    engine_opts eo = { .threads = p->threads, .readonly = true, .mem_budget = p->mem_budget,
                       .mem_io = io[p->mem_io], .copy_tiles = p->no_inplace };
    sqlm_model *m;
    int rc = model_alloc(&m);
    if (rc) return rc;
    if ((rc = sqlm_modeldb_open(&m->db, path, engine, &eo))) {
        free(m);
        return rc;
    }
    m->has_db = true;
    m->mem_budget = p->mem_budget;
    m->voc = &m->db.voc;
    m->tok = m->db.tok;
    *out = m;
    return SQLM_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int sqlm_open_vocab(const char *path, sqlm_model **out) {
    *out = NULL;
    if (!path) return sqlm_error(SQLM_ERROR, "no vocabulary file given");
    if (sqlm_db_sniff(path)) {   /* a model database of any engine */
        /* no products: the weight tiles need no mapping */
        sqlm_model_params p = sqlm_model_default_params();
        p.no_inplace = true;
        return sqlm_open(path, &p, out);
    }
    sqlm_model *m;
    int rc = model_alloc(&m);
    if (rc) return rc;
    sqlm_vocab_init(&m->own);
    if (ends_with(path, ".json")) rc = sqlm_tok_read_json(&m->own, path);
    else if (ends_with(path, ".model")) rc = sqlm_tok_read_spm_model(&m->own, path);
    else if (ends_with(path, "tokenizer.bin") || ends_with(path, "tok512.bin") ||
             (ends_with(path, ".bin") && strstr(path, "tok")))
        rc = sqlm_llama2c_read_tokenizer(&m->own, path, 0);
    else
        rc = sqlm_model_open(path, NULL, &m->file);   /* GGUF, safetensors folder, llama2.c checkpoint */
    if (rc) {
        sqlm_close(m);
        return rc;
    }
    m->voc = m->file ? &m->file->voc : &m->own;
    if (m->voc->n > 0 && (rc = sqlm_tok_init(&m->own_tok, m->voc))) {
        sqlm_close(m);
        return rc;
    }
    m->tok = m->own_tok;
    *out = m;
    return SQLM_OK;
}

void sqlm_close(sqlm_model *m) {
    if (!m) return;
    if (m->has_db) {
        sqlm_modeldb_close(&m->db);
    } else {
        sqlm_tok_free(m->own_tok);
        if (m->file) sqlm_model_free(m->file);   /* owns its vocabulary */
        else sqlm_vocab_free(&m->own);
    }
    free(m);
}

void sqlm_model_info_get(const sqlm_model *m, sqlm_model_info *info) {
    memset(info, 0, sizeof *info);
    info->n_vocab = m->tok ? m->voc->n : 0;
    info->n_logits = m->has_db ? m->db.cfg.vocab_size : 0;
    info->bos = m->voc ? m->voc->bos : -1;
    info->eos = m->voc ? m->voc->eos : -1;
    info->eot = m->voc ? m->voc->eot : -1;
    info->note = "";
    info->engine = "";
    if (!m->has_db) return;
    info->n_ctx_train = m->db.cfg.seq_len;
    info->n_layer = m->db.cfg.n_layer;
    info->dim = m->db.cfg.dim;
    info->engine = m->db.e->m->name;
    info->note = m->db.note;
    double wbytes = 0;
    for (int i = 0; i < m->db.n_weights; i++) {
        size_t rb = 0;
        if (!strcmp(m->db.weights[i].name, "embed")) continue;   /* a lookup: one row a token */
        sqlm_dtype_row_bytes(m->db.weights[i].dtype, (size_t)m->db.weights[i].n_in, &rb);
        wbytes += (double)rb * (double)m->db.weights[i].n_out;
    }
    info->weight_bytes = wbytes;
}

void sqlm_model_drop_encoder(sqlm_model *m) {
    if (m && m->tok) sqlm_tok_drop_encoder(m->tok);
}

/* ---------------------------------------------------------- tokenization */

static int need_vocab(const sqlm_model *m) {
    return m && m->tok ? SQLM_OK : sqlm_error(SQLM_UNSUPPORTED, "the model has no vocabulary");
}

int sqlm_tokenize(const sqlm_model *m, const char *text, size_t len, bool add_special, int32_t **ids,
                  int32_t *n_ids) {
    *ids = NULL, *n_ids = 0;
    int rc = need_vocab(m);
    return rc ? rc : sqlm_tok_encode(m->tok, text ? text : "", text ? len : 0, add_special, ids, n_ids);
}

int sqlm_tokenize_prompt(const sqlm_model *m, const char *text, size_t len, int32_t **ids, int32_t *n_ids) {
    int rc = sqlm_tokenize(m, text, len, true, ids, n_ids);
    if (rc || *n_ids > 0) return rc;
    /* an empty prompt without BOS: start from BOS anyway */
    free(*ids);
    *ids = NULL;
    if (m->voc->bos < 0) return sqlm_error(SQLM_ERROR, "empty prompt and the vocabulary has no BOS");
    if (!(*ids = malloc(sizeof **ids))) return sqlm_error(SQLM_NOMEM, "out of memory");
    (*ids)[0] = m->voc->bos;
    *n_ids = 1;
    return SQLM_OK;
}

const char *sqlm_token_to_piece(const sqlm_model *m, int32_t id, size_t *len) {
    if (!m || !m->voc || id < 0 || id >= m->voc->n) return NULL;
    if (len) *len = m->voc->tok_len[id];
    return m->voc->tok[id];
}

int sqlm_detokenize(const sqlm_model *m, const int32_t *ids, int32_t n, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    int rc = need_vocab(m);
    if (rc) return rc;
    buf b;
    sqlm_buf_init(&b);
    const vocab *v = m->voc;
    for (int32_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= v->n) rc = sqlm_error(SQLM_RANGE, "token id %d out of range", id);
        else if (id == v->bos || id == v->eos || id == v->eot || (v->attr && v->attr[id] == TOK_CONTROL)) continue;
        else rc = sqlm_tok_decode(m->tok, i ? ids[i - 1] : -1, id, &b);
    }
    if (!rc) sqlm_buf_putc(&b, 0), b.len--;   /* a NUL even for no text */
    if (!rc && b.rc) rc = sqlm_error(b.rc, "out of memory");
    if (rc) {
        sqlm_buf_free(&b);
        return rc;
    }
    if (len) *len = b.len;
    *out = sqlm_buf_detach(&b);
    return SQLM_OK;
}

/* ------------------------------------------------------------------ chat */

int sqlm_chat_template(const sqlm_model *m, const char *name, const char **tmpl) {
    *tmpl = NULL;
    if (name) {
        if (!(*tmpl = sqlm_chat_builtin(name)))
            return sqlm_error(SQLM_ERROR, "unknown --chat-template '%s' (chatml, llama2, llama3, zephyr)", name);
        return SQLM_OK;
    }
    const char *t = m && m->voc ? sqlm_chat_vocab_template(m->voc) : NULL;   /* the model's own, else a guess */
    *tmpl = t ? t : sqlm_chat_builtin("chatml");
    return SQLM_OK;
}

/* A special token's text for the template, where the tokenizer reads special
 * pieces in text ("" where it does not: BOS is then added by the encoder). */
static const char *piece_or_empty(const vocab *v, int32_t id) {
    return id >= 0 && id < v->n && v->special_in_text ? v->tok[id] : "";
}

static int chat_render(const sqlm_model *m, const sqlm_chat_message *msgs, int32_t n, bool gen_prompt,
                       const char *tmpl, buf *text) {
    int rc = need_vocab(m);
    if (rc) return rc;
    if (!tmpl) sqlm_chat_template(m, NULL, &tmpl);
    else if (sqlm_chat_builtin(tmpl)) tmpl = sqlm_chat_builtin(tmpl);   /* a built-in's name */
    chat_msg *cm = calloc(n > 0 ? (size_t)n : 1, sizeof *cm);
    if (!cm) return sqlm_error(SQLM_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) cm[i] = (chat_msg){ msgs[i].role, msgs[i].content };
    rc = sqlm_chat_render(tmpl, cm, n, gen_prompt, piece_or_empty(m->voc, m->voc->bos),
                          piece_or_empty(m->voc, m->voc->eos), text);
    free(cm);
    if (rc) return sqlm_error_prefix(rc, "chat template");
    if (text->rc) return sqlm_error(SQLM_NOMEM, "out of memory");
    return SQLM_OK;
}

int sqlm_chat_apply(const sqlm_model *m, const sqlm_chat_message *msgs, int32_t n, bool add_generation_prompt,
                    const char *tmpl, char **out) {
    *out = NULL;
    buf text;
    sqlm_buf_init(&text);
    int rc = chat_render(m, msgs, n, add_generation_prompt, tmpl, &text);
    if (!rc) sqlm_buf_putc(&text, 0), text.len--;
    if (!rc && text.rc) rc = sqlm_error(SQLM_NOMEM, "out of memory");
    if (rc) sqlm_buf_free(&text);
    else *out = sqlm_buf_detach(&text);
    return rc;
}

int sqlm_chat_tokenize(const sqlm_model *m, const sqlm_chat_message *msgs, int32_t n, const char *tmpl,
                       char **text_out, int32_t **ids, int32_t *n_ids) {
    *ids = NULL, *n_ids = 0;
    if (text_out) *text_out = NULL;
    buf text;
    sqlm_buf_init(&text);
    int rc = chat_render(m, msgs, n, true, tmpl, &text);
    if (!rc) rc = sqlm_tok_encode(m->tok, text.p ? text.p : "", text.len, !m->voc->special_in_text, ids, n_ids);
    if (!rc && text_out) {
        sqlm_buf_putc(&text, 0), text.len--;
        *text_out = sqlm_buf_detach(&text);
    }
    sqlm_buf_free(&text);
    return rc;
}

/* ------------------------------------------------------------------- sql */

sqlm_session_params sqlm_session_default_params(void) { return (sqlm_session_params){ 0 }; }

static ir_opts params_ir_opts(const sqlm_session_params *p) {
    return (ir_opts){ .cte_merge = !p->no_cte_merge, .row2col_per = p->row2col_cols,
                      .fuse_attn = !p->split_attention };
}

int sqlm_model_sql(sqlm_model *m, const sqlm_session_params *p, const char *prompt, char **out) {
    *out = NULL;
    if (!m || !m->has_db) return sqlm_error(SQLM_UNSUPPORTED, "sql: no model database");
    sqlm_session_params d = sqlm_session_default_params();
    if (!p) p = &d;
    modeldb *db = &m->db;
    ir_opts o = params_ir_opts(p);
    o.inplace = db->inplace;
    o = sqlm_dialect_ir_opts(db->e->m->dialect, o);
    ir_graph g;
    sql_program prog;
    int rc = sqlm_ir_build_llama(&g, &db->cfg, db->weights, db->n_weights, &o);
    if (rc) return rc;
    if ((rc = sqlm_emit_program(&g, db->e->m->dialect, &prog))) {
        sqlm_ir_free(&g);
        return rc;
    }
    /* the script feeds the prompt (default: BOS alone) and ends with the next token */
    int32_t *ids = NULL, n_ids = 0;
    if (db->tok && (rc = sqlm_tok_encode(db->tok, prompt ? prompt : "", prompt ? strlen(prompt) : 0, true, &ids,
                                         &n_ids)))
        rc = sqlm_error_prefix(rc, "tokenizing the prompt");
    if (!rc && n_ids == 0 && db->voc.bos >= 0) {
        free(ids);
        if (!(ids = malloc(sizeof *ids))) rc = sqlm_error(SQLM_NOMEM, "out of memory");
        else ids[0] = db->voc.bos, n_ids = 1;
    }
    if (!rc && n_ids > db->cfg.seq_len)
        rc = sqlm_error(SQLM_RANGE, "prompt of %d tokens exceeds the context of %d", n_ids, db->cfg.seq_len);
    if (!rc && !(*out = sqlm_sql_program_text(&prog, ids, n_ids))) rc = sqlm_error(SQLM_NOMEM, "out of memory");
    free(ids);
    sqlm_sql_program_free(&prog);
    sqlm_ir_free(&g);
    return rc;
}

/* --------------------------------------------------------------- session */

sqlm_sampling_params sqlm_sampling_default_params(void) {
    return (sqlm_sampling_params){ .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                   .repeat_penalty = 1.0f, .repeat_last_n = 64 };
}

/* The generator state for a seed (what `sqlm run -s N` gives). */
static uint64_t seed_rng(uint64_t seed) { return seed * 0x9E3779B97F4A7C15ull + 1; }

int sqlm_session_set_sampling(sqlm_session *s, const sqlm_sampling_params *p) {
    int nb = p->logit_bias && p->n_logit_bias > 0 ? p->n_logit_bias : 0;
    for (int i = 0; i < nb; i++) {
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= s->n_vocab)
            return sqlm_error(SQLM_RANGE, "logit bias: token id %d out of range (vocabulary of %d)",
                              p->logit_bias[i].token, s->n_vocab);
        if (isnan(p->logit_bias[i].bias))
            return sqlm_error(SQLM_RANGE, "logit bias: NaN for token %d", p->logit_bias[i].token);
    }
    int32_t *ids = nb ? malloc(sizeof *ids * (size_t)nb) : NULL;
    float *bias = nb ? malloc(sizeof *bias * (size_t)nb) : NULL;
    if (nb && (!ids || !bias)) {
        free(ids), free(bias);
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    for (int i = 0; i < nb; i++) ids[i] = p->logit_bias[i].token, bias[i] = p->logit_bias[i].bias;
    free(s->bias_id), free(s->bias);
    s->bias_id = ids, s->bias = bias;
    s->sp = (sampler_opts){ .temp = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .min_p = p->min_p,
                            .repeat_penalty = p->repeat_penalty, .freq_penalty = p->frequency_penalty,
                            .presence_penalty = p->presence_penalty, .repeat_last_n = p->repeat_last_n,
                            .seed = p->seed, .bias_id = ids, .bias = bias, .n_bias = nb };
    s->rng = seed_rng(p->seed);
    return SQLM_OK;
}

int sqlm_session_new(sqlm_model *m, const sqlm_session_params *p, sqlm_session **out) {
    *out = NULL;
    if (!m || !m->has_db) return sqlm_error(SQLM_UNSUPPORTED, "a session needs a model database");
    if (m->in_session)
        return sqlm_error(SQLM_UNSUPPORTED, "the model already has a session: free it first, or open the model "
                                            "again for a second sequence");
    sqlm_session_params d = sqlm_session_default_params();
    if (!p) p = &d;
    sqlm_session *s = calloc(1, sizeof *s);
    if (!s) return sqlm_error(SQLM_NOMEM, "out of memory");
    s->m = m;
    session_opts so = { .ir = params_ir_opts(p), .n_ctx = p->n_ctx, .mem_budget = m->mem_budget };
    int rc = sqlm_exec_init(&s->x, &m->db, &so);
    if (rc) {
        free(s);
        return rc;
    }
    s->n_ctx = sqlm_exec_n_ctx(s->x);
    s->n_vocab = m->db.cfg.vocab_size;
    s->hist = malloc(sizeof *s->hist * (size_t)s->n_ctx);
    s->logits = malloc(sizeof *s->logits * (size_t)s->n_vocab);
    sqlm_buf_init(&s->text);
    if (!s->hist || !s->logits) {
        sqlm_session_free(s);
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    sqlm_sampling_params sp = sqlm_sampling_default_params();
    sqlm_session_set_sampling(s, &sp);
    s->finish = SQLM_FINISH_STOP;   /* no generation running */
    m->in_session = true;
    *out = s;
    return SQLM_OK;
}

void sqlm_session_free(sqlm_session *s) {
    if (!s) return;
    if (s->x) s->m->in_session = false;
    sqlm_exec_free(s->x);
    for (int i = 0; i < s->n_stop; i++) free(s->stop[i]);
    free(s->hist), free(s->logits), free(s->bias_id), free(s->bias);
    sqlm_buf_free(&s->text);
    free(s);
}

int32_t sqlm_session_n_ctx(const sqlm_session *s) { return s->n_ctx; }
int32_t sqlm_session_n_tokens(const sqlm_session *s) { return s->n_hist; }

const int32_t *sqlm_session_tokens(const sqlm_session *s, int32_t *n) {
    if (n) *n = s->n_hist;
    return s->hist;
}

int sqlm_session_reset(sqlm_session *s) {
    s->n_hist = 0, s->pending = false;
    s->finish = SQLM_FINISH_STOP;
    return sqlm_exec_reset(s->x);
}

int sqlm_session_truncate(sqlm_session *s, int32_t n) {
    if (n < 0) return sqlm_error(SQLM_RANGE, "truncate: negative length %d", n);
    if (n >= s->n_hist) return SQLM_OK;
    s->n_hist = n, s->pending = false;
    s->finish = SQLM_FINISH_STOP;
    s->lg = NULL;   /* the logits of position n - 1 are gone: the next evaluation gives new ones */
    return sqlm_exec_truncate(s->x, n);
}

int sqlm_session_eval(sqlm_session *s, const int32_t *ids, int32_t n, const float **logits) {
    if (logits) *logits = NULL;
    if (n <= 0) return sqlm_error(SQLM_RANGE, "eval: no tokens");
    if (s->pending) {   /* the sequence's last token is not in the cache yet */
        int rc = sqlm_exec_eval(s->x, &s->hist[s->n_hist - 1], 1, &s->lg);
        if (rc) return rc;
        s->pending = false;
    }
    if (n > s->n_ctx - s->n_hist)
        return sqlm_error(SQLM_RANGE, "eval: %d tokens past %d exceed the context of %d", n, s->n_hist, s->n_ctx);
    s->finish = SQLM_FINISH_STOP;
    int rc = sqlm_exec_eval(s->x, ids, n, &s->lg);
    if (rc) return rc;
    memcpy(s->hist + s->n_hist, ids, sizeof *ids * (size_t)n);
    s->n_hist += n;
    if (logits) *logits = s->lg;
    return SQLM_OK;
}

/* ----------------------------------------------------------------- stats */

void sqlm_session_stats(sqlm_session *s, sqlm_stats *st) {
    memset(st, 0, sizeof *st);
    wcache_stats w = { 0 };
    st->cache = s && sqlm_exec_mem_stats(s->x, &w);
    st->t = sqlm_now();
    st->cpu = sqlm_thread_cpu();
    st->io_read_bytes = sqlm_io_read_bytes();
    st->fetch_bytes = w.fetch_bytes, st->hit_bytes = w.hit_bytes, st->read_bytes = w.read_bytes;
    st->sync_bytes = w.sync_bytes, st->load_bytes = w.load_bytes, st->resyncs = w.resyncs, st->reads = w.reads;
    st->wait_s = w.wait_s, st->load_s = w.load_s, st->reader_s = w.reader_s;
    st->resident_bytes = w.resident_bytes, st->sched_bytes = w.sched_bytes, st->ring_bytes = w.ring_bytes;
    st->direct = w.direct != 0;
    st->heap_peak = w.heap_peak, st->heap_limit = w.heap_limit;
}

const char *sqlm_session_mem_plan(const sqlm_session *s) { return sqlm_exec_mem_plan(s->x); }

const double *sqlm_session_stmt_seconds(const sqlm_session *s, int32_t *n) {
    const sql_program *p = NULL;
    const double *t = sqlm_exec_stmt_seconds(s->x, &p);
    if (n) *n = p ? p->n_steps : 0;
    return t;
}
