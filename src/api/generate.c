/*
 * generate.c - the one generation loop of sqlm, behind sqlm_generate_begin /
 * sqlm_generate_next / sqlm_generate (include/sqlm.h); `sqlm run`, `sqlm chat`
 * and `sqlm serve` all stand on it.
 *
 * A step samples a token from the last logits, decodes its text, looks for
 * stop strings, and decides whether generation ends (EOS or end of turn
 * unless ignore_eos, a stop string, max tokens, the context's end).  The
 * token is fed to the model lazily, at the start of the next step, so a
 * generation that ends does not pay for evaluating a token nobody reads.
 * Text is released whole: a UTF-8 character split over tokens waits for its
 * last byte, and a tail that may still grow into a stop string waits until
 * it does or cannot.
 *
 * sqlm_generate_top_logprobs() gives the most probable candidates of the
 * step just taken, from the same logits and with the same arithmetic as
 * the chosen token's log-probability.
 *
 * Not here: batching several sequences, grammar constraints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

sqlm_generate_params sqlm_generate_default_params(void) { return (sqlm_generate_params){ .max_tokens = -1 }; }

const char *sqlm_finish_reason(int finish) {
    switch (finish) {
    case SQLM_FINISH_EOS:
    case SQLM_FINISH_STOP: return "stop";
    case SQLM_FINISH_LENGTH:
    case SQLM_FINISH_CONTEXT: return "length";
    default: return NULL;
    }
}

/* The length of the longest prefix of p[0..n) that does not end inside an
 * incomplete UTF-8 sequence. */
static size_t utf8_whole(const char *p, size_t n) {
    /* back up over a trailing incomplete sequence */
    size_t i = n, k = 0;
    while (i > 0 && k < 4 && ((unsigned char)p[i - 1] & 0xC0) == 0x80) i--, k++;
    if (i > 0) {
        unsigned char c = (unsigned char)p[i - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > k + 1 && c >= 0xC0) return i - 1;
    }
    return n;
}

uint32_t sqlm_utf8_next(const char *s, size_t len, size_t *pos) { return sqlm_tok_utf8_next(s, len, pos); }

static void clear_stops(sqlm_session *s) {
    for (int i = 0; i < s->n_stop; i++) free(s->stop[i]);
    s->n_stop = 0;
    s->max_stop_len = 0;
}

/* After a failed step the cache may hold part of it: empty the sequence
 * and the cache, keeping the step's error message (the reset's own failure,
 * if any, shows again at the next step). */
static void forget(sqlm_session *s) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sqlm_errmsg());
    s->n_hist = 0, s->pending = false;
    if (sqlm_exec_reset(s->x)) sqlm_error(SQLM_DB, "%s", msg);
}

int sqlm_generate_begin(sqlm_session *s, const int32_t *ids, int32_t n, const sqlm_generate_params *p,
                        int32_t *n_kept) {
    sqlm_generate_params d = sqlm_generate_default_params();
    if (!p) p = &d;
    if (n_kept) *n_kept = 0;
    s->finish = SQLM_FINISH_STOP;   /* until the prompt is in */
    if (n <= 0) return sqlm_error(SQLM_RANGE, "generate: an empty prompt (give BOS at least)");
    if (n >= s->n_ctx)
        return sqlm_error(SQLM_RANGE, "prompt of %d tokens does not fit the context of %d", n, s->n_ctx);
    if (p->n_stop < 0 || p->n_stop > SQLM_MAX_STOP)
        return sqlm_error(SQLM_RANGE, "generate: %d stop strings, at most %d are allowed", p->n_stop, SQLM_MAX_STOP);
    clear_stops(s);
    for (int i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || !p->stop[i][0]) continue;   /* "" stops nothing */
        if (!(s->stop[s->n_stop] = sqlm_strdup(p->stop[i]))) {
            clear_stops(s);
            return sqlm_error(SQLM_NOMEM, "out of memory");
        }
        s->max_stop_len = MAX(s->max_stop_len, strlen(p->stop[i]));
        s->n_stop++;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return sqlm_error(SQLM_RANGE, "generate: token id %d out of range (vocabulary of %d)", ids[i], s->n_vocab);
    /* a failed feed leaves the cache's contents unknown: forget them */
    s->n_hist = 0, s->pending = false;
    int kept = 0;
    int rc = sqlm_exec_feed(s->x, ids, n, &s->lg, &kept);
    if (rc) {
        forget(s);
        return rc;
    }
    memcpy(s->hist, ids, sizeof *ids * (size_t)n);
    s->n_hist = n;
    if (n_kept) *n_kept = kept;
    s->ignore_eos = p->ignore_eos;
    s->max_tokens = p->max_tokens;
    s->n_gen = s->n_sampled = 0;
    sqlm_buf_reset(&s->text);
    s->sent = 0;
    s->finish = p->max_tokens == 0 ? SQLM_FINISH_LENGTH : SQLM_FINISH_NONE;
    return SQLM_OK;
}

/* The first position at or after from where a stop string starts in the
 * text, or (size_t)-1. */
static size_t find_stop(const sqlm_session *s, size_t from) {
    size_t best = (size_t)-1;
    for (int i = 0; i < s->n_stop; i++) {
        const char *hit = memmem(s->text.p + from, s->text.len - from, s->stop[i], strlen(s->stop[i]));
        if (hit && (size_t)(hit - s->text.p) < best) best = (size_t)(hit - s->text.p);
    }
    return best;
}

/* How many bytes of the text can be released now: all of it once
 * generation ended; before that, none of a tail that may still become a
 * stop string, nor of a character whose bytes have not all come. */
static size_t text_ready(const sqlm_session *s) {
    size_t n = s->text.len;
    if (s->finish) return n;
    size_t hold = 0;
    for (int i = 0; i < s->n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        for (size_t k = MIN(sl - 1, n - s->sent); k > hold; k--)
            if (!memcmp(s->text.p + n - k, s->stop[i], k)) {
                hold = k;
                break;
            }
    }
    n = utf8_whole(s->text.p, n - hold);
    return MAX(n, s->sent);
}

/* The largest logit and log(sum(exp(lg - max))): log softmax at i is
 * (lg[i] - max) - lse. */
static void log_norm(const float *lg, int n, float *mx, double *lse) {
    float m = lg[0];
    for (int i = 1; i < n; i++) m = lg[i] > m ? lg[i] : m;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)(lg[i] - m));
    *mx = m, *lse = log(sum);
}

/* log softmax of logits at id */
static float log_prob(const float *lg, int n, int32_t id) {
    float mx;
    double lse;
    log_norm(lg, n, &mx, &lse);
    return (float)((double)(lg[id] - mx) - lse);
}

int32_t sqlm_generate_top_logprobs(const sqlm_session *s, int32_t k, int32_t *ids, float *logprobs) {
    if (!s->lg || k <= 0) return 0;
    const float *lg = s->lg;
    int n = s->n_vocab;
    if (k > n) k = n;
    /* insertion into a sorted list of k: k is small (OpenAI allows 20) */
    int32_t m = 0;
    for (int i = 0; i < n; i++) {
        if (m == k && !(lg[i] > lg[ids[m - 1]])) continue;   /* ties keep the lower id */
        int32_t j = m < k ? m++ : m - 1;
        while (j > 0 && lg[i] > lg[ids[j - 1]]) ids[j] = ids[j - 1], j--;
        ids[j] = i;
    }
    float mx;
    double lse;
    log_norm(lg, n, &mx, &lse);
    for (int32_t i = 0; i < m; i++) logprobs[i] = (float)((double)(lg[ids[i]] - mx) - lse);
    return m;
}

static void release(sqlm_session *s, sqlm_token_event *ev) {
    size_t n = text_ready(s);
    ev->text = s->text.p ? s->text.p + s->sent : "";
    ev->len = n - s->sent;
    s->sent = n;
    ev->finish = s->finish;
}

int sqlm_generate_next(sqlm_session *s, sqlm_token_event *ev) {
    *ev = (sqlm_token_event){ .token = -1, .text = "", .finish = s->finish };
    if (s->finish) return SQLM_OK;
    const modeldb *db = &s->m->db;
    int rc;
    if (s->pending) {
        if ((rc = sqlm_exec_eval(s->x, &s->hist[s->n_hist - 1], 1, &s->lg))) {
            s->finish = SQLM_FINISH_STOP;
            rc = sqlm_error_prefix(rc, "decode");
            forget(s);
            return rc;
        }
        s->pending = false;
    }
    memcpy(s->logits, s->lg, sizeof *s->logits * (size_t)s->n_vocab);
    int32_t next = sqlm_sample_next(&s->sp, s->logits, s->n_vocab, s->hist, s->n_hist, &s->rng);
    s->n_sampled++;
    if (!s->ignore_eos && (next == db->voc.eos || next == db->voc.eot)) {
        s->finish = SQLM_FINISH_EOS;
        release(s, ev);
        return SQLM_OK;
    }
    ev->token = next;
    ev->logprob = log_prob(s->lg, s->n_vocab, next);
    size_t before = s->text.len;
    sqlm_tok_decode(db->tok, s->hist[s->n_hist - 1], next, &s->text);
    if (s->text.rc) {
        s->finish = SQLM_FINISH_STOP;
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    s->hist[s->n_hist++] = next;
    s->pending = true;
    s->n_gen++;
    if (s->n_stop) {
        /* a stop string that ends in the new bytes starts at most its
         * length - 1 before them */
        size_t from = before > s->max_stop_len ? before - s->max_stop_len : 0;
        size_t at = find_stop(s, from);
        if (at != (size_t)-1) {
            s->text.len = at;
            s->text.p[at] = 0;
            s->finish = SQLM_FINISH_STOP;
        }
    }
    if (!s->finish && s->max_tokens >= 0 && s->n_gen >= s->max_tokens) s->finish = SQLM_FINISH_LENGTH;
    if (!s->finish && s->n_hist >= s->n_ctx) s->finish = SQLM_FINISH_CONTEXT;
    release(s, ev);
    return SQLM_OK;
}

int sqlm_generate(sqlm_session *s, const int32_t *ids, int32_t n, const sqlm_generate_params *p,
                  sqlm_token_fn cb, void *ctx, sqlm_generate_result *res) {
    sqlm_generate_result r = { .n_prompt = n };
    double t0 = sqlm_now();
    int rc = sqlm_generate_begin(s, ids, n, p, &r.n_kept);
    r.t_prompt = sqlm_now() - t0;
    if (rc) {
        if (res) *res = r;
        return rc;
    }
    double t1 = sqlm_now();
    while (!rc && !s->finish) {
        sqlm_token_event ev;
        if ((rc = sqlm_generate_next(s, &ev))) break;
        if (cb && (ev.token >= 0 || ev.len) && cb(ev.token, ev.text, ev.len, ev.logprob, ctx)) {
            if (!s->finish) s->finish = SQLM_FINISH_STOP;
            break;
        }
    }
    r.t_gen = sqlm_now() - t1;
    r.n_sampled = s->n_sampled;
    r.n_generated = s->n_gen;
    r.finish = s->finish;
    if (res) *res = r;
    return rc;
}
