/*
 * test-api.c - the public C API (include/sqlm.h) alone, as a program that
 * embeds sqlm sees it: import, open, tokenize and detokenize against the
 * goldens, greedy generation with the per-token callback (the golden
 * stories260K text, pieces that add up to it, log-probabilities, a callback
 * that stops), stop strings, the top logprobs of a step, logit bias, truncating a session's KV cache to a prefix and
 * extending it again (the same tokens as one uninterrupted run, on every
 * engine present), import progress, and errors that name the problem.
 */
#include <math.h>

#include <sqlm.h>

#include "../test.h"

#define PROMPT "Once upon a time"

/* The golden greedy text of stories260K for PROMPT (64 tokens), from the
 * golden file's line for that prompt; malloc'd, NULL when missing. */
static char *golden_text(void) {
    size_t len;
    char *p = (char *)test_read_file(GOLDEN "generation_stories260K.jsonl", &len);
    if (!len) { free(p); return NULL; }
    p[len - 1] = 0;
    const char *line = strstr(p, "\"prompt\": \"" PROMPT "\"");
    if (!line) line = strstr(p, "\"prompt\":\"" PROMPT "\"");
    const char *t = line ? strstr(line, "\"text\"") : NULL;
    char *out = NULL;
    if (t && (t = strchr(t + 6, '"'))) {
        const char *e = t + 1;
        while (*e && *e != '"') e += *e == '\\' ? 2 : 1;   /* the stories' text has no escapes but \n */
        out = malloc((size_t)(e - t) + 1);
        size_t n = 0;
        for (const char *q = t + 1; q < e; q++) out[n++] = *q == '\\' && q[1] == 'n' ? (q++, '\n') : *q;
        out[n] = 0;
    }
    free(p);
    return out;
}

typedef struct collected {
    char text[8192];
    size_t len;
    int calls, stop_after;
    bool logprob_ok;
} collected;

static int collect(int32_t token, const char *text, size_t len, float logprob, void *ctx) {
    collected *c = ctx;
    if (c->len + len < sizeof c->text) memcpy(c->text + c->len, text, len), c->len += len;
    c->text[c->len] = 0;
    if (token >= 0 && !(logprob <= 0.0f && logprob > -1e30f)) c->logprob_ok = false;
    return c->stop_after && ++c->calls >= c->stop_after;
}

static void on_progress(const char *what, int done, int total, void *ctx) {
    int *last = ctx;
    if (what && done >= 1 && done <= total) *last = done;
}

/* Generate 24 greedy tokens, cut the sequence back to the prompt and 5 of
 * them, then extend it again: the same tokens, with the kept prefix reused
 * from the cache and not evaluated again. */
static void check_truncate(const char *db, const char *engine) {
    sqlm_model_params mp = sqlm_model_default_params();
    mp.engine = engine;
    sqlm_model *m = NULL;
    sqlm_session *s = NULL;
    int rc = sqlm_open(db, &mp, &m);
    if (!rc) rc = sqlm_session_new(m, NULL, &s);
    CHECK_EQ(SQLM_OK, rc);
    if (rc) { fprintf(stderr, "%s: %s\n", engine, sqlm_errmsg()); sqlm_close(m); return; }
    sqlm_sampling_params sp = sqlm_sampling_default_params();
    sp.temperature = 0;
    sqlm_session_set_sampling(s, &sp);
    int32_t *ids = NULL, n = 0, total = 0;
    CHECK_EQ(SQLM_OK, sqlm_tokenize_prompt(m, PROMPT, strlen(PROMPT), &ids, &n));
    sqlm_generate_params gp = sqlm_generate_default_params();
    gp.max_tokens = 24;
    gp.ignore_eos = true;
    sqlm_generate_result r;
    CHECK_EQ(SQLM_OK, sqlm_generate(s, ids, n, &gp, NULL, NULL, &r));
    const int32_t *t = sqlm_session_tokens(s, &total);
    int32_t *full = malloc(sizeof *full * (size_t)total);
    memcpy(full, t, sizeof *full * (size_t)total);

    const int cut = n + 5;
    CHECK_EQ(SQLM_OK, sqlm_session_truncate(s, cut));
    CHECK_EQ(cut, sqlm_session_n_tokens(s));
    CHECK_EQ(SQLM_RANGE, sqlm_session_truncate(s, -1));
    gp.max_tokens = total - cut - 1;
    CHECK_EQ(SQLM_OK, sqlm_generate(s, full, cut + 1, &gp, NULL, NULL, &r));
    CHECK_EQ(cut, r.n_kept);
    int32_t total2 = 0;
    const int32_t *t2 = sqlm_session_tokens(s, &total2);
    CHECK_EQ(total, total2);
    CHECK(total == total2 && memcmp(t2, full, sizeof *full * (size_t)total) == 0);
    if (total != total2 || memcmp(t2, full, sizeof *full * (size_t)total))
        fprintf(stderr, "  engine %s: the extended sequence differs from the uninterrupted one\n", engine);
    free(full);
    sqlm_free(ids);
    sqlm_session_free(s);
    sqlm_close(m);
}

int main(void) {
    CHECK_STR(SQLM_VERSION, sqlm_version());
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", SQLM_VERSION_MAJOR, SQLM_VERSION_MINOR, SQLM_VERSION_PATCH);
    CHECK_STR(SQLM_VERSION, v);

    const char *bin = MODELS "stories260K/stories260K.bin";
    char *want = golden_text();
    CHECK(want != NULL);
    if (!FIXTURE(bin) || !want) return TEST_DONE();

    /* import through the API, with progress and notes through callbacks */
    int tables = 0;
    sqlm_import_params ip = sqlm_import_default_params();
    ip.progress = on_progress;
    ip.progress_ctx = &tables;
    const char *db = test_tmp_path("s.db");
    CHECK_EQ(SQLM_OK, sqlm_import_model(bin, db, &ip));
    CHECK(tables > 5);

    /* errors name the problem */
    sqlm_model *m = NULL;
    CHECK(sqlm_open("/nonexistent/model.db", NULL, &m) != SQLM_OK);
    CHECK(m == NULL);
    CHECK(strstr(sqlm_errmsg(), "/nonexistent/model.db") != NULL);
    CHECK(sqlm_import_model("/nonexistent/x.gguf", test_tmp_path("x.db"), NULL) != SQLM_OK);
    CHECK(strstr(sqlm_errmsg(), "/nonexistent/x.gguf") != NULL);
    CHECK(access(test_tmp_path("x.db"), F_OK) != 0);

    CHECK_EQ(SQLM_OK, sqlm_open(db, NULL, &m));
    if (!m) return TEST_DONE();

    /* tokenize and detokenize: the prompt's golden ids (BOS 1 first) and back */
    int32_t *ids = NULL, n = 0;
    CHECK_EQ(SQLM_OK, sqlm_tokenize_prompt(m, PROMPT, strlen(PROMPT), &ids, &n));
    CHECK(n > 1 && ids[0] == 1);
    char *back = NULL;
    size_t blen = 0;
    CHECK_EQ(SQLM_OK, sqlm_detokenize(m, ids, n, &back, &blen));
    CHECK_STR(PROMPT, back);
    sqlm_free(back);
    int32_t bad_id = 1 << 30;
    CHECK_EQ(SQLM_RANGE, sqlm_detokenize(m, &bad_id, 1, &back, &blen));

    /* greedy generation: the golden text, piece by piece */
    sqlm_session *s = NULL;
    CHECK_EQ(SQLM_OK, sqlm_session_new(m, NULL, &s));
    if (!s) { sqlm_close(m); return TEST_DONE(); }
    sqlm_sampling_params sp = sqlm_sampling_default_params();
    sp.temperature = 0;
    sqlm_session_set_sampling(s, &sp);
    sqlm_generate_params gp = sqlm_generate_default_params();
    gp.max_tokens = 64;
    gp.ignore_eos = true;
    static collected c;
    c = (collected){ .logprob_ok = true };
    sqlm_generate_result r;
    CHECK_EQ(SQLM_OK, sqlm_generate(s, ids, n, &gp, collect, &c, &r));
    CHECK_EQ(64, r.n_generated);
    CHECK_EQ(n, r.n_prompt);
    CHECK_STR("length", sqlm_finish_reason(r.finish));
    CHECK_STR(want, c.text);
    CHECK(c.logprob_ok);

    /* the callback stops generation: three tokens, finish "stop" */
    CHECK_EQ(SQLM_OK, sqlm_session_reset(s));
    c = (collected){ .stop_after = 3, .logprob_ok = true };
    CHECK_EQ(SQLM_OK, sqlm_generate(s, ids, n, &gp, collect, &c, &r));
    CHECK_EQ(3, r.n_generated);
    CHECK_STR("stop", sqlm_finish_reason(r.finish));

    /* a stop string: the text ends before its first occurrence */
    const char *stop[] = { " the" };
    const char *at = strstr(want, " the");
    CHECK(at != NULL);
    gp.stop = stop;
    gp.n_stop = 1;
    c = (collected){ .logprob_ok = true };
    CHECK_EQ(SQLM_OK, sqlm_generate(s, ids, n, &gp, collect, &c, &r));
    CHECK_STR("stop", sqlm_finish_reason(r.finish));
    CHECK(at && c.len == (size_t)(at - want) && memcmp(c.text, want, c.len) == 0);

    /* top logprobs of each greedy step: sorted, the chosen token first with
     * the event's very logprob, a distribution */
    gp.stop = NULL;
    gp.n_stop = 0;
    gp.max_tokens = 8;
    CHECK_EQ(SQLM_OK, sqlm_generate_begin(s, ids, n, &gp, NULL));
    bool tops_ok = true;
    int32_t first = -1, second = -1;
    for (int step = 0; step < 8; step++) {
        sqlm_token_event ev;
        CHECK_EQ(SQLM_OK, sqlm_generate_next(s, &ev));
        int32_t tid[5];
        float tlp[5];
        int32_t k = sqlm_generate_top_logprobs(s, 5, tid, tlp);
        double sum = 0;
        for (int i = 0; i < k; i++) sum += exp(tlp[i]);
        tops_ok &= k == 5 && tid[0] == ev.token && tlp[0] == ev.logprob && sum <= 1.0 + 1e-6;
        for (int i = 1; i < k; i++) tops_ok &= tlp[i] <= tlp[i - 1];
        if (step == 0) first = tid[0], second = tid[1];
    }
    CHECK(tops_ok);

    /* logit bias: -inf on the greedy first token gives the runner-up; a
     * token outside the vocabulary is refused */
    sqlm_logit_bias ban = { first, -INFINITY };
    sp.logit_bias = &ban;
    sp.n_logit_bias = 1;
    CHECK_EQ(SQLM_OK, sqlm_session_set_sampling(s, &sp));
    gp.max_tokens = 1;
    CHECK_EQ(SQLM_OK, sqlm_generate_begin(s, ids, n, &gp, NULL));
    sqlm_token_event ev1;
    CHECK_EQ(SQLM_OK, sqlm_generate_next(s, &ev1));
    CHECK_EQ(second, ev1.token);
    sqlm_logit_bias out_of_range = { 1 << 30, 1 };
    sp.logit_bias = &out_of_range;
    CHECK_EQ(SQLM_RANGE, sqlm_session_set_sampling(s, &sp));
    sp.logit_bias = NULL;
    sp.n_logit_bias = 0;
    CHECK_EQ(SQLM_OK, sqlm_session_set_sampling(s, &sp));
    gp.max_tokens = 64;

    /* one session per model at a time: a second is refused with a reason;
     * once the first is freed, a new one generates the same text */
    sqlm_session *s2 = NULL;
    CHECK_EQ(SQLM_UNSUPPORTED, sqlm_session_new(m, NULL, &s2));
    CHECK(s2 == NULL && strstr(sqlm_errmsg(), "already has a session") != NULL);
    sqlm_session_free(s);
    CHECK_EQ(SQLM_OK, sqlm_session_new(m, NULL, &s));
    if (!s) { sqlm_close(m); return TEST_DONE(); }
    sqlm_session_set_sampling(s, &sp);
    gp.stop = NULL;
    gp.n_stop = 0;
    c = (collected){ .logprob_ok = true };
    CHECK_EQ(SQLM_OK, sqlm_generate(s, ids, n, &gp, collect, &c, &r));
    CHECK_STR(want, c.text);
    sqlm_session_free(s);

    /* chat template rendering (stories260K has none: the ChatML fallback) */
    sqlm_chat_message msg = { "user", "Hello there" };
    char *chat = NULL;
    CHECK_EQ(SQLM_OK, sqlm_chat_apply(m, &msg, 1, true, "chatml", &chat));
    CHECK_STR("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n", chat);
    sqlm_free(chat);
    CHECK(sqlm_chat_apply(m, &msg, 1, true, "{% for m in messages %}{{ m.content", &chat) != SQLM_OK);
    CHECK(strstr(sqlm_errmsg(), "line") != NULL);
    sqlm_free(ids);
    sqlm_close(m);

    /* truncation on every engine present; DuckDB needs its own database */
    check_truncate(db, "sqlite");
    if (sqlm_engine_available("duckdb")) {
        const char *ddb = test_tmp_path("s.duckdb");
        ip.engine = "duckdb";
        CHECK_EQ(SQLM_OK, sqlm_import_model(bin, ddb, &ip));
        check_truncate(ddb, "duckdb");
    } else {
        printf("test-api: DuckDB library not found: the DuckDB truncation check skipped (not counted)\n");
    }
    free(want);
    return TEST_DONE();
}
