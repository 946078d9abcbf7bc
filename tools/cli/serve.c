/*
 * serve.c - sqlm serve: an OpenAI-compatible HTTP server over one model
 * session, with llama-server's endpoints:
 *
 *   GET  /health                {"status":"ok"}
 *   GET  /v1/models             the model, in OpenAI's list format
 *   GET  /v1/models/{id}        the model (404 for another id)
 *   POST /v1/completions        a prompt: a string or token ids
 *   POST /v1/chat/completions   messages, rendered with the chat template as
 *                               `sqlm chat` renders them (developer as
 *                               system unless the template knows it)
 *   POST /completion            llama-server's own format (n_predict,
 *                               n_probs, content, tokens_predicted, ...)
 *   POST /tokenize, /detokenize, /apply-template
 *   GET  /props, /slots, /metrics (Prometheus text)
 *
 * Completions answer whole or, with "stream": true, as server-sent events
 * (OpenAI's chunks ending with "data: [DONE]", or llama-server's), with
 * llama-server's "timings".  Every request field is either honoured, or
 * accepted because it cannot change the answer (model, user, ...), or
 * refused with 400 naming it: a field the server does not know is refused
 * too, never ignored (check_fields()).  A chat message the template does
 * not render (a role it skips, a system message after the first turn) is
 * refused rather than silently dropped.
 *
 * libmicrohttpd runs one thread per connection; requests take the one
 * session in order of arrival (a ticket lock), and a stream holds it until
 * its last token or until its client goes away.  Each request feeds only
 * the tokens past what the KV cache already holds (sqlm_generate_begin()).
 * A client has --idle-timeout seconds to send its request (and keep-alive
 * connections as long between requests), an answer --timeout; one address
 * holds at most --conn-per-ip of the 64 connections.  Two Content-Length
 * headers, or one with Transfer-Encoding, are refused (request smuggling).
 * SIGINT/SIGTERM: new connections are refused, waiting requests answered
 * 503, the running one ends at its next token with its last chunk and
 * [DONE], then the process exits 0.
 *
 * Not here: more than one session or batching of requests, n > 1, tools,
 * grammars and JSON modes, embeddings, TLS (put a proxy in front for that).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#include "cli.h"

#define MAX_STOP_LEN 256     /* bytes of one stop string */
#define MAX_TOP 20           /* top_logprobs / logprobs / n_probs, at most (OpenAI's limit) */
#define MAX_CONN 64          /* connections at once */
#define DRAIN_SECONDS 30     /* a stop waits this long for answers under way */

/* ------------------------------------------------------------- the server */

typedef struct server {
    const args *a;
    sqlm_model *m;
    sqlm_session *s;
    int n_ctx, n_vocab;
    const char *tmpl;        /* chat template (static or owned by db) */
    bool tmpl_developer;     /* the template names the developer role itself */
    char model_id[256];      /* --alias or the database's file name */
    char bos[64], eos[64];   /* their pieces, for /props */
    time_t started;
    /* the session lock: one request at a time, in order of arrival */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next_ticket;    /* the ticket the next request draws */
    uint64_t serving;        /* the ticket that holds the session */
    bool stopping;           /* SIGINT/SIGTERM: waiters give up, generation ends */
    uint64_t n_requests;     /* for response ids */
    int active;              /* requests whose headers are in and whose answer is not done */
    /* counters of /metrics and /slots (under mu) */
    bool busy;               /* the session is held */
    int waiting;             /* requests waiting for it */
    uint64_t n_prompt_total, n_pred_total;
    double t_prompt_total, t_pred_total;
    int32_t kv_tokens;       /* tokens the session held after the last request */
    int32_t last_decoded;    /* tokens the last or running request generated */
} server;

static const char *cors_origin;   /* --cors */

/* Take the session; false when the server is stopping. */
static bool session_acquire(server *sv) {
    pthread_mutex_lock(&sv->mu);
    uint64_t t = sv->next_ticket++;
    sv->waiting++;
    while (sv->serving != t && !sv->stopping) pthread_cond_wait(&sv->cv, &sv->mu);
    sv->waiting--;
    bool ok = !sv->stopping;
    if (!ok && sv->serving == t) sv->serving++;   /* pass it on: nobody will hold it */
    if (!ok) pthread_cond_broadcast(&sv->cv);
    sv->busy = ok;
    pthread_mutex_unlock(&sv->mu);
    return ok;
}

/* Hand the session to the next ticket.  Any thread may call it: a stream
 * takes the session in the request's handler and gives it back from
 * libmicrohttpd's reader or free callback. */
static void session_release(server *sv) {
    pthread_mutex_lock(&sv->mu);
    sv->kv_tokens = sqlm_session_n_tokens(sv->s);
    sv->busy = false;
    sv->serving++;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

static bool server_stopping(server *sv) {
    pthread_mutex_lock(&sv->mu);
    bool s = sv->stopping;
    pthread_mutex_unlock(&sv->mu);
    return s;
}

/* ------------------------------------------------------------ UTF-8 text */

/* Append p[0..n) to out, each byte that starts no valid sequence replaced
 * by U+FFFD (sqlm_utf8_next()'s rules: no overlong forms, surrogates or code
 * points past U+10FFFF, as jansson holds them): a token's bytes need not be
 * UTF-8, a JSON string must. */
static void utf8_append_valid(buf *out, const char *p, size_t n) {
    for (size_t i = 0, j; i < n; i = j) {
        j = i;
        uint32_t cp = sqlm_utf8_next(p, n, &j);
        if (cp == 0xFFFD && j - i == 1) buf_puts(out, "\xEF\xBF\xBD");   /* an invalid byte */
        else buf_append(out, p + i, j - i);
    }
}

/* ------------------------------------------------------- request errors */

/* What is wrong with a request: its HTTP status, OpenAI's error type, why. */
typedef struct req_err {
    unsigned status;
    const char *type;
    const char *allow;       /* 405: the method the path takes */
    char msg[512];
} req_err;

static bool fail(req_err *e, unsigned status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(req_err *e, unsigned status, const char *fmt, ...) {
    e->status = status;
    e->allow = NULL;
    e->type = status == 400 || status == 404 || status == 405 || status == 413 ? "invalid_request_error"
            : status == 401 ? "authentication_error"
            : status == 503 ? "unavailable_error" : "server_error";
    if (status == 404) e->type = "not_found_error";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return false;
}

/* ------------------------------------------------------------ responses */

/* A JSON text from j (stolen), or NULL when it could not be built. */
static char *json_text(json_t *j) {
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return t;
}

/* The request's Origin when --cors lets it call (NULL otherwise). */
static const char *cors_allowed(struct MHD_Connection *c) {
    const char *o = cors_origin ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin") : NULL;
    return o && (!strcmp(cors_origin, "*") || !strcmp(cors_origin, o)) ? o : NULL;
}

/* Access-Control-Allow-Origin on an answer to an origin --cors allows. */
static void add_cors(struct MHD_Response *r, struct MHD_Connection *c) {
    const char *o = cors_allowed(c);
    if (!o) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", strcmp(cors_origin, "*") ? o : "*");
    MHD_add_response_header(r, "Vary", "Origin");
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *type, char *text,
                                  const char *hdr, const char *hdr_val) {
    if (!text) return MHD_NO;   /* out of memory: drop the connection */
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (hdr) MHD_add_response_header(r, hdr, hdr_val);
    add_cors(r, c);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
    return reply_text(c, status, "application/json", json_text(j), NULL, NULL);
}

/* {"error":{"message":...,"type":...,"code":status}}, as llama-server sends */
static json_t *error_json(const req_err *e) {
    buf m;
    buf_init(&m);
    utf8_append_valid(&m, e->msg, strlen(e->msg));
    json_t *j = json_pack("{s:{s:s,s:s,s:i}}", "error", "message", m.rc ? "" : m.p, "type", e->type, "code",
                          (int)e->status);
    buf_free(&m);
    return j;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const req_err *e, const char *method,
                                   const char *url) {
    fprintf(stderr, "%s: serve: %s %s: %u %s\n", prog, method, url, e->status, e->msg);
    const char *hdr = NULL, *val = NULL;
    if (e->status == 401) hdr = "WWW-Authenticate", val = "Bearer";
    if (e->status == 405 && e->allow) hdr = MHD_HTTP_HEADER_ALLOW, val = e->allow;
    if (e->status == 503) hdr = MHD_HTTP_HEADER_CONNECTION, val = "close";
    return reply_text(c, e->status, "application/json", json_text(error_json(e)), hdr, val);
}

/* --------------------------------------------------------- field checks */

/* Which requests a field belongs to. */
enum { K_OAI = 1, K_CHAT = 2, K_NATIVE = 4, K_ALL = 7 };
/* What a request may hold in it. */
enum {
    F_USED,                  /* honoured: read by the parsers */
    F_ANY,                   /* any value: it cannot change the answer */
    F_RANGE,                 /* a number within [lo, hi]: the values that leave the answer alone */
    F_FALSE,                 /* false only */
    F_EMPTY,                 /* "", [] or {} only */
    F_FORMAT,                /* response_format: {"type":"text"} only */
    F_CHOICE,                /* tool_choice, function_call: "none" or "auto" (no tools are given) */
};

static const struct fspec {
    const char *name;
    unsigned kinds;          /* K_* */
    int rule;                /* F_* */
    double lo, hi;
    const char *why;         /* why other values are refused */
} fields[] = {
    { "prompt", K_OAI | K_NATIVE, F_USED, 0, 0, NULL },
    { "messages", K_CHAT, F_USED, 0, 0, NULL },
    { "max_tokens", K_ALL, F_USED, 0, 0, NULL },
    { "max_completion_tokens", K_ALL, F_USED, 0, 0, NULL },
    { "n_predict", K_ALL, F_USED, 0, 0, NULL },
    { "temperature", K_ALL, F_USED, 0, 0, NULL },
    { "top_p", K_ALL, F_USED, 0, 0, NULL },
    { "top_k", K_ALL, F_USED, 0, 0, NULL },
    { "min_p", K_ALL, F_USED, 0, 0, NULL },
    { "repeat_penalty", K_ALL, F_USED, 0, 0, NULL },
    { "repeat_last_n", K_ALL, F_USED, 0, 0, NULL },
    { "frequency_penalty", K_ALL, F_USED, 0, 0, NULL },
    { "presence_penalty", K_ALL, F_USED, 0, 0, NULL },
    { "seed", K_ALL, F_USED, 0, 0, NULL },
    { "stop", K_ALL, F_USED, 0, 0, NULL },
    { "stream", K_ALL, F_USED, 0, 0, NULL },
    { "stream_options", K_OAI | K_CHAT, F_USED, 0, 0, NULL },
    { "ignore_eos", K_ALL, F_USED, 0, 0, NULL },
    { "logit_bias", K_ALL, F_USED, 0, 0, NULL },
    { "logprobs", K_OAI | K_CHAT, F_USED, 0, 0, NULL },
    { "top_logprobs", K_CHAT, F_USED, 0, 0, NULL },
    { "n_probs", K_NATIVE, F_USED, 0, 0, NULL },
    { "return_tokens", K_NATIVE, F_USED, 0, 0, NULL },
    { "n", K_OAI | K_CHAT, F_RANGE, 1, 1, "only one choice per request (n = 1)" },
    { "best_of", K_OAI, F_RANGE, 1, 1, "only best_of = 1" },
    { "echo", K_OAI, F_FALSE, 0, 0, "the prompt is not echoed" },
    { "suffix", K_OAI, F_EMPTY, 0, 0, "no insertion (suffix)" },
    { "response_format", K_ALL, F_FORMAT, 0, 0, "only {\"type\":\"text\"}: no JSON mode or schema" },
    { "json_schema", K_ALL, F_EMPTY, 0, 0, "no JSON schema constraints" },
    { "grammar", K_ALL, F_EMPTY, 0, 0, "no grammar constraints" },
    { "tools", K_CHAT, F_EMPTY, 0, 0, "no tool calls" },
    { "functions", K_CHAT, F_EMPTY, 0, 0, "no function calls" },
    { "tool_choice", K_CHAT, F_CHOICE, 0, 0, "no tool calls" },
    { "function_call", K_CHAT, F_CHOICE, 0, 0, "no function calls" },
    { "parallel_tool_calls", K_CHAT, F_ANY, 0, 0, NULL },
    { "post_sampling_probs", K_NATIVE, F_FALSE, 0, 0, "probabilities are the model's, before sampling" },
    { "mirostat", K_ALL, F_RANGE, 0, 0, "no mirostat sampling" },
    { "typical_p", K_ALL, F_RANGE, 1, 1, "no typical sampling" },
    { "tfs_z", K_ALL, F_RANGE, 1, 1, "no tail-free sampling" },
    { "dynatemp_range", K_ALL, F_RANGE, 0, 0, "no dynamic temperature" },
    { "xtc_probability", K_ALL, F_RANGE, 0, 0, "no XTC sampling" },
    { "dry_multiplier", K_ALL, F_RANGE, 0, 0, "no DRY sampling" },
    { "top_n_sigma", K_ALL, F_RANGE, -1, 0, "no top-n-sigma sampling" },
    { "min_keep", K_ALL, F_RANGE, 0, 1, "min_keep above 1 is not supported" },
    { "n_indent", K_NATIVE, F_RANGE, 0, 0, "no indentation rule" },
    { "n_keep", K_NATIVE, F_RANGE, -1, 0, "the context is never shifted" },
    { "t_max_predict_ms", K_NATIVE, F_RANGE, 0, 0, "no time limit on generation" },
    { "id_slot", K_ALL, F_RANGE, -1, 0, "there is one slot, 0" },
    { "model", K_ALL, F_ANY, 0, 0, NULL },
    { "user", K_ALL, F_ANY, 0, 0, NULL },
    { "store", K_ALL, F_ANY, 0, 0, NULL },
    { "metadata", K_ALL, F_ANY, 0, 0, NULL },
    { "service_tier", K_ALL, F_ANY, 0, 0, NULL },
    { "cache_prompt", K_ALL, F_ANY, 0, 0, NULL },
    { "prompt_cache_key", K_ALL, F_ANY, 0, 0, NULL },
    { "safety_identifier", K_ALL, F_ANY, 0, 0, NULL },
};

static bool empty_value(const json_t *v) {
    return (json_is_string(v) && !json_string_length(v)) || (json_is_array(v) && !json_array_size(v)) ||
           (json_is_object(v) && !json_object_size(v));
}

/* Every member of the request is one the server honours, or one that
 * cannot change its answer; any other is refused with 400 naming it. */
static bool check_fields(const json_t *body, unsigned kind, req_err *e) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        if (json_is_null(v)) continue;   /* null counts as absent */
        const struct fspec *f = NULL;
        for (size_t i = 0; i < ARRAY_LEN(fields) && !f; i++)
            if ((fields[i].kinds & kind) && !strcmp(fields[i].name, key)) f = &fields[i];
        if (!f) return fail(e, 400, "'%s' is not supported by this endpoint of sqlm serve", key);
        bool ok = true;
        switch (f->rule) {
        case F_RANGE:
            ok = json_is_number(v) && json_number_value(v) >= f->lo && json_number_value(v) <= f->hi;
            break;
        case F_FALSE: ok = json_is_false(v); break;
        case F_EMPTY: ok = empty_value(v); break;
        case F_FORMAT: {
            json_t *t = json_object_get(v, "type");
            ok = json_is_object(v) && json_is_string(t) && !strcmp(json_string_value(t), "text");
            break;
        }
        case F_CHOICE:
            ok = json_is_string(v) && (!strcmp(json_string_value(v), "none") || !strcmp(json_string_value(v), "auto"));
            break;
        }
        if (!ok) return fail(e, 400, "'%s': this value is not supported (%s)", key, f->why);
    }
    return true;
}

/* ----------------------------------------------------- request fields */

/* A member of the request; null counts as absent (clients send both). */
static json_t *field(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* A number field within [lo, hi]; *out unchanged when absent. */
static bool get_number(const json_t *o, const char *key, double lo, double hi, double *out, req_err *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return fail(e, 400, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return fail(e, 400, "'%s' must be within [%g, %g], got %g", key, lo, hi, d);
    *out = d;
    return true;
}

static bool get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out, req_err *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_integer(v)) return fail(e, 400, "'%s' must be an integer", key);
    long long i = json_integer_value(v);
    if (i < lo || i > hi) return fail(e, 400, "'%s' must be within [%lld, %lld], got %lld", key, lo, hi, i);
    *out = i;
    return true;
}

static bool get_bool(const json_t *o, const char *key, bool *out, req_err *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return fail(e, 400, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

/* ------------------------------------------------------------ token text */

/* The bytes a token stands for in generated text (its piece decoded: SPM's
 * leading space kept; control tokens give none). */
static void token_bytes(const server *sv, int32_t id, buf *out) {
    char *t = NULL;
    size_t n = 0;
    if (sqlm_detokenize(sv->m, &id, 1, &t, &n)) return;
    size_t pl = 0;
    const char *piece = sqlm_token_to_piece(sv->m, id, &pl);
    if (piece && pl >= 3 && !memcmp(piece, "\xE2\x96\x81", 3) && (n == 0 || t[0] != ' ')) buf_puts(out, " ");
    buf_append(out, t, n);
    sqlm_free(t);
}

/* {"token": text (valid UTF-8), "bytes": [...], key: logprob}, plus "id"
 * for llama-server's format. */
static json_t *token_json(const server *sv, int32_t id, float lp, bool with_id) {
    buf b, t;
    buf_init(&b), buf_init(&t);
    token_bytes(sv, id, &b);
    utf8_append_valid(&t, b.p ? b.p : "", b.len);
    json_t *bytes = json_array();
    for (size_t i = 0; i < b.len; i++) json_array_append_new(bytes, json_integer((unsigned char)b.p[i]));
    json_t *j = json_pack("{s:s%,s:o,s:f}", "token", t.p ? t.p : "", t.len, "bytes", bytes, "logprob",
                          isfinite(lp) ? (double)lp : -1e30);
    if (j && with_id) json_object_set_new(j, "id", json_integer(id));
    buf_free(&b), buf_free(&t);
    return j;
}

/* ------------------------------------------------------------ generation */

enum { R_OAI, R_CHAT, R_NATIVE };   /* the request's format */

/* One completion request, from its parsed fields to its last byte. */
typedef struct gen {
    server *sv;
    int kind;                /* R_* */
    bool stream, include_usage, ignore_eos, return_tokens;
    sqlm_sampling_params sp;
    sqlm_logit_bias *bias;   /* [n_bias] */
    int n_bias;
    int n_top;               /* alternatives per token, -1: no logprobs */
    long long max_tokens;    /* -1: until EOS or the end of the context */
    char *stop[SQLM_MAX_STOP];    /* stop strings, valid UTF-8, non-empty */
    int n_stop;
    int32_t *prompt;         /* [n_prompt] the prompt's tokens */
    int n_prompt, n_kept;    /* n_kept: of them, found in the KV cache */
    int n_gen;               /* tokens generated */
    int32_t *toks;           /* [n_gen] their ids (capacity cap_toks) */
    float *lps;              /* [n_gen] their log-probabilities */
    int32_t *top_ids;        /* [n_gen * n_top] the alternatives */
    float *top_lps;
    int cap_toks;
    int toks_sent;           /* tokens already streamed */
    size_t lp_offset;        /* completions' text_offset of token toks_sent */
    int finish;              /* SQLM_FINISH_*: why generation ended, NONE while it runs */
    bool gone;               /* it ended because the client went away */
    bool halted;             /* it ended because the server stops */
    char err[256];           /* an engine error that ended it, "" if none */
    buf text;                /* generated text released so far (cut before a stop string) */
    size_t sent;             /* bytes of text already streamed */
    /* streaming */
    buf out;                 /* SSE bytes not yet given to libmicrohttpd */
    size_t out_off;
    int phase;               /* 0 role chunk (chat), 1 tokens, 3 done */
    bool locked;             /* holds the session */
    int fd;                  /* the client's socket, to notice it going away */
    char id[64];
    time_t created;
    double t0, t_prompt;     /* request start; seconds of the prompt */
    double t_gen0, t_gen;    /* generation start; its seconds */
    char method[8], url[32];
} gen;

static void gen_free(gen *g) {
    if (!g) return;
    if (g->locked) session_release(g->sv);
    for (int i = 0; i < g->n_stop; i++) free(g->stop[i]);
    sqlm_free(g->prompt);
    free(g->bias), free(g->toks), free(g->lps), free(g->top_ids), free(g->top_lps);
    buf_free(&g->text), buf_free(&g->out);
    free(g);
}

/* The client closed its end (a stream's next write would find out too, a
 * whole answer's only after generating all of it).  A client that shuts
 * down its sending side after the request counts as gone too. */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Generation ended: its time, and the server's counters. */
static void gen_done(gen *g) {
    g->t_gen = sqlm_now() - g->t_gen0;
    server *sv = g->sv;
    pthread_mutex_lock(&sv->mu);
    sv->n_prompt_total += (uint64_t)(g->n_prompt - g->n_kept);
    sv->t_prompt_total += g->t_prompt;
    sv->n_pred_total += (uint64_t)g->n_gen;
    sv->t_pred_total += g->t_gen;
    sv->last_decoded = g->n_gen;
    pthread_mutex_unlock(&sv->mu);
}

/* Keep a generated token, its log-probability and its alternatives. */
static bool keep_token(gen *g, int32_t tok, float lp) {
    if (g->n_gen == g->cap_toks) {
        int cap = g->cap_toks ? 2 * g->cap_toks : 64;
        int32_t *t = realloc(g->toks, sizeof *t * (size_t)cap);
        if (t) g->toks = t;
        float *l = realloc(g->lps, sizeof *l * (size_t)cap);
        if (l) g->lps = l;
        if (!t || !l) return false;
        if (g->n_top > 0) {
            int32_t *ti = realloc(g->top_ids, sizeof *ti * (size_t)cap * (size_t)g->n_top);
            if (ti) g->top_ids = ti;
            float *tl = realloc(g->top_lps, sizeof *tl * (size_t)cap * (size_t)g->n_top);
            if (tl) g->top_lps = tl;
            if (!ti || !tl) return false;
        }
        g->cap_toks = cap;
    }
    g->toks[g->n_gen] = tok;
    g->lps[g->n_gen] = lp;
    if (g->n_top > 0) {
        int32_t *ti = g->top_ids + (size_t)g->n_gen * (size_t)g->n_top;
        float *tl = g->top_lps + (size_t)g->n_gen * (size_t)g->n_top;
        int32_t k = sqlm_generate_top_logprobs(g->sv->s, g->n_top, ti, tl);
        for (int32_t i = k; i < g->n_top; i++) ti[i] = -1, tl[i] = 0;
    }
    g->n_gen++;
    return true;
}

/* Generate one token (sqlm_generate_next(): stop strings, end of turn,
 * max_tokens and the context's end are the library's) and keep the text it
 * releases: never part of a character, never a tail that may still become
 * a stop string. */
static void gen_step(gen *g) {
    server *sv = g->sv;
    if (g->finish) return;
    bool stop = server_stopping(sv);
    if (stop || client_gone(g->fd)) {
        g->finish = SQLM_FINISH_STOP;
        if (stop) g->halted = true;
        else g->gone = true;
        gen_done(g);
        return;
    }
    sqlm_token_event ev;
    int rc = sqlm_generate_next(sv->s, &ev);
    if (rc) {
        snprintf(g->err, sizeof g->err, "%s (%s)", sqlm_errmsg(), sqlm_errstr(rc));
        g->finish = SQLM_FINISH_STOP;
        gen_done(g);
        return;
    }
    if (ev.token >= 0 && !keep_token(g, ev.token, ev.logprob)) {
        snprintf(g->err, sizeof g->err, "out of memory");
        ev.finish = SQLM_FINISH_STOP;
    }
    buf_append(&g->text, ev.text, ev.len);
    g->finish = ev.finish;
    if (g->finish) gen_done(g);
}

static const char *finish_reason(const gen *g) { return sqlm_finish_reason(g->finish); }

static json_t *usage_json(const gen *g) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", g->n_prompt, "completion_tokens", g->n_gen,
                     "total_tokens", g->n_prompt + g->n_gen);
}

static double per(double a, double b) { return b > 0 ? a / b : 0; }

/* llama-server's timings: the prompt's evaluated tokens (those the cache
 * did not hold) and the generated ones, milliseconds and rates. */
static json_t *timings_json(const gen *g) {
    int pn = g->n_prompt - g->n_kept;
    double pms = g->t_prompt * 1e3, gms = g->t_gen * 1e3;
    return json_pack("{s:i,s:f,s:f,s:f,s:i,s:f,s:f,s:f}", "prompt_n", pn, "prompt_ms", pms, "prompt_per_token_ms",
                     per(pms, pn), "prompt_per_second", per(pn * 1e3, pms), "predicted_n", g->n_gen, "predicted_ms",
                     gms, "predicted_per_token_ms", per(gms, g->n_gen), "predicted_per_second",
                     per(g->n_gen * 1e3, gms));
}

/* The logprobs of tokens [from, to) in the request's format: chat's
 * {"content":[...]}, completions' {"tokens","token_logprobs",
 * "top_logprobs","text_offset"}, llama-server's list of
 * {"id","token","bytes","logprob","top_logprobs"}.  *offset: completions'
 * text offset of token from, advanced. */
static json_t *logprobs_json(const gen *g, int from, int to, size_t *offset) {
    const server *sv = g->sv;
    if (g->kind == R_OAI) {
        json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
        for (int i = from; i < to; i++) {
            json_t *t = token_json(sv, g->toks[i], g->lps[i], false);
            json_array_append(toks, json_object_get(t, "token"));
            json_array_append_new(lps, json_real(json_real_value(json_object_get(t, "logprob"))));
            json_array_append_new(offs, json_integer((json_int_t)*offset));
            *offset += json_array_size(json_object_get(t, "bytes"));
            json_decref(t);
            json_t *top = json_object();
            for (int k = 0; k < g->n_top; k++) {
                int32_t id = g->top_ids[(size_t)i * (size_t)g->n_top + (size_t)k];
                if (id < 0) break;
                json_t *a = token_json(sv, id, g->top_lps[(size_t)i * (size_t)g->n_top + (size_t)k], false);
                json_object_set(top, json_string_value(json_object_get(a, "token")), json_object_get(a, "logprob"));
                json_decref(a);
            }
            json_array_append_new(tops, top);
        }
        return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                         "text_offset", offs);
    }
    json_t *content = json_array();
    bool native = g->kind == R_NATIVE;
    for (int i = from; i < to; i++) {
        json_t *t = token_json(sv, g->toks[i], g->lps[i], native);
        json_t *top = json_array();
        for (int k = 0; k < MAX(g->n_top, 0); k++) {
            int32_t id = g->top_ids[(size_t)i * (size_t)g->n_top + (size_t)k];
            if (id < 0) break;
            json_array_append_new(top, token_json(sv, id, g->top_lps[(size_t)i * (size_t)g->n_top + (size_t)k], native));
        }
        json_object_set_new(t, "top_logprobs", top);
        json_array_append_new(content, t);
    }
    return native ? content : json_pack("{s:o,s:n}", "content", content, "refusal");
}

/* A response object: id, object, created, model and choices (stolen). */
static json_t *response_json(const gen *g, const char *object, json_t *choices) {
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", g->id, "object", object, "created", (json_int_t)g->created,
                     "model", g->sv->model_id, "choices", choices);
}

static const char *chunk_object(const gen *g) { return g->kind == R_CHAT ? "chat.completion.chunk" : "text_completion"; }

/* stop_type of llama-server */
static const char *stop_type(const gen *g) {
    switch (g->finish) {
    case SQLM_FINISH_EOS: return "eos";
    case SQLM_FINISH_LENGTH:
    case SQLM_FINISH_CONTEXT: return "limit";
    default: return g->n_stop ? "word" : "none";
    }
}

/* The stop string that ended generation: the first to start in the text
 * of the generated tokens, "" if none did. */
static const char *stopping_word(const gen *g) {
    if (g->finish != SQLM_FINISH_STOP || !g->n_stop || !g->n_gen) return "";
    char *t = NULL;
    size_t n = 0;
    if (sqlm_detokenize(g->sv->m, g->toks, g->n_gen, &t, &n)) return "";
    const char *best = "";
    size_t at = (size_t)-1;
    for (int i = 0; i < g->n_stop; i++) {
        const char *h = memmem(t, n, g->stop[i], strlen(g->stop[i]));
        if (h && (size_t)(h - t) < at) at = (size_t)(h - t), best = g->stop[i];
    }
    sqlm_free(t);
    return best;
}

/* llama-server's answer (or stream event) of /completion: content and its
 * tokens [from, to), stop, counts; the last one timings and why it ended. */
static json_t *native_json(const gen *g, const char *text, size_t len, int from, int to, bool last) {
    buf t;
    buf_init(&t);
    utf8_append_valid(&t, text ? text : "", len);
    json_t *r = json_pack("{s:i,s:s%,s:b,s:i,s:s,s:i,s:i}", "index", 0, "content", t.p ? t.p : "", t.len, "stop",
                          last, "id_slot", 0, "model", g->sv->model_id, "tokens_predicted", g->n_gen,
                          "tokens_evaluated", g->n_prompt);
    buf_free(&t);
    if (!r) return NULL;
    if (g->return_tokens || g->stream) {
        json_t *ids = json_array();
        for (int i = from; i < to; i++) json_array_append_new(ids, json_integer(g->toks[i]));
        json_object_set_new(r, "tokens", ids);
    }
    if (g->n_top >= 0 && to > from) json_object_set_new(r, "completion_probabilities", logprobs_json(g, from, to, NULL));
    if (last) {
        const char *sw = stopping_word(g);
        json_object_set_new(r, "stop_type", json_string(stop_type(g)));
        json_object_set_new(r, "stopping_word", json_string(sw));
        json_object_set_new(r, "has_new_line", json_boolean(g->text.len && memchr(g->text.p, '\n', g->text.len)));
        json_object_set_new(r, "truncated", json_false());
        json_object_set_new(r, "tokens_cached", json_integer(g->n_prompt + g->n_gen));
        json_object_set_new(r, "timings", timings_json(g));
    }
    return r;
}

/* One streamed chunk: text (may be NULL: none) with the logprobs of tokens
 * [from, to), the role (chat's first), and finish_reason (the last, with
 * timings). */
static json_t *chunk_json(gen *g, const char *text, size_t len, bool role, const char *finish, int from, int to) {
    buf t;
    buf_init(&t);
    if (text) utf8_append_valid(&t, text, len);
    if (t.rc) return buf_free(&t), NULL;
    json_t *lp = NULL;
    if (g->n_top >= 0 && to > from) lp = logprobs_json(g, from, to, &g->lp_offset);   /* offsets go on over chunks */
    json_t *choice;
    if (g->kind == R_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text || role) json_object_set_new(delta, "content", json_stringn(t.p ? t.p : "", t.len));
        choice = json_pack("{s:i,s:o,s:o?,s:s?}", "index", 0, "delta", delta, "logprobs", lp ? lp : json_null(),
                           "finish_reason", finish);
    } else {
        choice = json_pack("{s:s%,s:i,s:o,s:s?}", "text", t.p ? t.p : "", t.len, "index", 0, "logprobs",
                           lp ? lp : json_null(), "finish_reason", finish);
    }
    buf_free(&t);
    json_t *r = response_json(g, chunk_object(g), json_pack("[o]", choice));
    if (r && finish) json_object_set_new(r, "timings", timings_json(g));
    return r;
}

static void sse_event(gen *g, json_t *j) {
    char *t = json_text(j);
    if (!t) {
        g->out.rc = SQLM_NOMEM;
        return;
    }
    buf_appendf(&g->out, "data: %s\n\n", t);
    free(t);
}

/* The whole answer of a request that is not streamed. */
static json_t *answer_json(const gen *g) {
    if (g->kind == R_NATIVE) return native_json(g, g->text.p, g->text.len, 0, g->n_gen, true);
    buf t;
    buf_init(&t);
    utf8_append_valid(&t, g->text.p ? g->text.p : "", g->text.len);
    if (t.rc) return buf_free(&t), NULL;
    size_t off = 0;
    json_t *lp = g->n_top >= 0 ? logprobs_json(g, 0, g->n_gen, &off) : json_null(), *choice;
    if (g->kind == R_CHAT)
        choice = json_pack("{s:i,s:{s:s,s:s%},s:o,s:s}", "index", 0, "message", "role", "assistant", "content",
                           t.p ? t.p : "", t.len, "logprobs", lp, "finish_reason", finish_reason(g));
    else
        choice = json_pack("{s:s%,s:i,s:o,s:s}", "text", t.p ? t.p : "", t.len, "index", 0, "logprobs", lp,
                           "finish_reason", finish_reason(g));
    buf_free(&t);
    json_t *r = response_json(g, g->kind == R_CHAT ? "chat.completion" : "text_completion", json_pack("[o]", choice));
    if (!r) return NULL;
    json_object_set_new(r, "usage", usage_json(g));
    json_object_set_new(r, "timings", timings_json(g));
    return r;
}

/* The request's log line on stderr, once generation ended. */
static void gen_log(const gen *g) {
    fprintf(stderr, "%s: serve: %s %s: prompt %d tokens (%d from the cache) in %.2f s, %d generated at %.1f tok/s, "
                    "finish %s%s%s\n",
            prog, g->method, g->url, g->n_prompt, g->n_kept, g->t_prompt, g->n_gen, per(g->n_gen, g->t_gen),
            g->gone ? "cut short: the client went away" : g->halted ? "cut short: the server stops" : finish_reason(g),
            g->err[0] ? ": " : "", g->err);
}

/* A stream's last events: the text held back until the end, the final
 * chunk with finish_reason and timings, usage when asked, [DONE] (OpenAI's
 * streams only). */
static void final_events(gen *g) {
    if (g->err[0]) {
        req_err e;
        fail(&e, 500, "%s", g->err);
        sse_event(g, error_json(&e));
    }
    size_t n = g->text.len;
    const char *rest = n > g->sent ? g->text.p + g->sent : NULL;
    if (g->kind == R_NATIVE) {
        sse_event(g, native_json(g, rest, n - g->sent, g->toks_sent, g->n_gen, true));
    } else {
        if (rest || g->n_gen > g->toks_sent)   /* with the logprobs of tokens whose text was held back */
            sse_event(g, chunk_json(g, rest ? rest : "", n - g->sent, false, NULL, g->toks_sent, g->n_gen));
        sse_event(g, chunk_json(g, NULL, 0, false, finish_reason(g), 0, 0));
        if (g->include_usage) {
            json_t *u = response_json(g, chunk_object(g), json_array());
            json_object_set_new(u, "usage", usage_json(g));
            sse_event(g, u);
        }
        buf_puts(&g->out, "data: [DONE]\n\n");
    }
    g->sent = n, g->toks_sent = g->n_gen;
}

/* libmicrohttpd's reader of a stream: generates tokens until it has bytes
 * to give, one chunk per token at most; the session is given back as soon
 * as the last token is out. */
static ssize_t stream_read(void *cls, uint64_t pos, char *dst, size_t max) {
    (void)pos;
    gen *g = cls;
    while (g->out_off == g->out.len) {
        buf_reset(&g->out);
        g->out_off = 0;
        switch (g->phase) {
        case 0:
            if (g->kind == R_CHAT) sse_event(g, chunk_json(g, NULL, 0, true, NULL, 0, 0));
            g->phase = 1;
            break;
        case 1: {
            gen_step(g);
            size_t n = g->text.len;
            if (n > g->sent && !g->finish) {   /* the last text goes with the final chunk */
                if (g->kind == R_NATIVE)
                    sse_event(g, native_json(g, g->text.p + g->sent, n - g->sent, g->toks_sent, g->n_gen, false));
                else
                    sse_event(g, chunk_json(g, g->text.p + g->sent, n - g->sent, false, NULL, g->toks_sent, g->n_gen));
                g->sent = n, g->toks_sent = g->n_gen;
            }
            if (g->finish) {
                final_events(g);   /* token texts need the tokenizer: before the session goes */
                g->phase = 3;
                gen_log(g);
                if (g->locked) g->locked = false, session_release(g->sv);
            }
            break;
        }
        default:
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (g->out.rc) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = MIN(max, g->out.len - g->out_off);
    memcpy(dst, g->out.p + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

/* libmicrohttpd is done with a stream: sent, or the client went away. */
static void stream_free(void *cls) {
    gen *g = cls;
    if (g->phase < 2) {   /* cut short: log what it did */
        g->gone = true;
        if (!g->finish) gen_done(g);
        gen_log(g);
    }
    gen_free(g);
}

/* -------------------------------------------------------- the requests */

/* A token id of a request: an integer within the vocabulary. */
static bool token_id(const server *sv, const json_t *v, const char *what, int32_t *out, req_err *e) {
    if (!json_is_integer(v)) return fail(e, 400, "'%s' must hold token ids (integers)", what);
    json_int_t id = json_integer_value(v);
    if (id < 0 || id >= sv->n_vocab)
        return fail(e, 400, "'%s': token id %lld is out of range (vocabulary of %d)", what, (long long)id, sv->n_vocab);
    *out = (int32_t)id;
    return true;
}

/* logit_bias: OpenAI's {"id": bias}, or llama-server's [[id, bias], ...];
 * a bias of false bans the token (llama-server's). */
static bool parse_bias(const json_t *body, gen *g, req_err *e) {
    json_t *lb = field(body, "logit_bias");
    if (!lb) return true;
    if (!json_is_object(lb) && !json_is_array(lb))
        return fail(e, 400, "'logit_bias' must be an object of token ids and biases, or an array of [id, bias]");
    size_t n = json_is_object(lb) ? json_object_size(lb) : json_array_size(lb);
    if (!n) return true;
    if (!(g->bias = calloc(n, sizeof *g->bias))) return fail(e, 500, "out of memory");
    const server *sv = g->sv;
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(lb)) {
        json_object_foreach(lb, key, v) {
            char *end;
            errno = 0;
            long long id = strtoll(key, &end, 10);
            if (!*key || *end || errno)
                return fail(e, 400, "'logit_bias': key '%s' is not a token id (token strings are not supported)", key);
            if (id < 0 || id >= sv->n_vocab)
                return fail(e, 400, "'logit_bias': token id %lld is out of range (vocabulary of %d)", id, sv->n_vocab);
            g->bias[g->n_bias].token = (int32_t)id;
            if (json_is_false(v)) g->bias[g->n_bias].bias = -INFINITY;
            else if (json_is_number(v) && fabs(json_number_value(v)) <= 1e6) g->bias[g->n_bias].bias = (float)json_number_value(v);
            else return fail(e, 400, "'logit_bias': the bias of token %lld must be a number (or false)", id);
            g->n_bias++;
        }
    } else {
        json_array_foreach(lb, i, v) {
            if (!json_is_array(v) || json_array_size(v) != 2)
                return fail(e, 400, "'logit_bias' as an array holds [token id, bias] pairs");
            json_t *b = json_array_get(v, 1);
            if (!token_id(sv, json_array_get(v, 0), "logit_bias", &g->bias[g->n_bias].token, e)) return false;
            if (json_is_false(b)) g->bias[g->n_bias].bias = -INFINITY;
            else if (json_is_number(b) && fabs(json_number_value(b)) <= 1e6) g->bias[g->n_bias].bias = (float)json_number_value(b);
            else return fail(e, 400, "'logit_bias': a bias must be a number (or false)");
            g->n_bias++;
        }
    }
    g->sp.logit_bias = g->bias;
    g->sp.n_logit_bias = g->n_bias;
    return true;
}

/* The sampling fields of a request over the server's defaults. */
static bool parse_sampling(const json_t *body, gen *g, req_err *e) {
    const args *a = g->sv->a;
    double temp = a->temp, top_p = a->top_p, min_p = a->min_p, rp = a->repeat_penalty;
    double fp = a->freq_penalty, pp = a->presence_penalty;
    long long top_k = a->top_k, last_n = a->repeat_last_n, seed = -1;
    if (!get_number(body, "temperature", 0, 100, &temp, e) || !get_number(body, "top_p", 0, 1, &top_p, e) ||
        !get_number(body, "min_p", 0, 1, &min_p, e) || !get_int(body, "top_k", 0, 1 << 30, &top_k, e) ||
        !get_number(body, "repeat_penalty", 0.01, 100, &rp, e) ||
        !get_int(body, "repeat_last_n", -1, 1 << 30, &last_n, e) ||
        !get_number(body, "frequency_penalty", -2, 2, &fp, e) ||
        !get_number(body, "presence_penalty", -2, 2, &pp, e) ||
        !get_int(body, "seed", -1, (long long)__LONG_MAX__, &seed, e))
        return false;
    uint64_t s;
    if (seed >= 0) s = (uint64_t)seed;
    else if (a->seed_set) s = a->seed;
    else s = (uint64_t)time(NULL) ^ (uint64_t)g->sv->n_requests * 0x2545F4914F6CDD1Dull;
    g->sp = (sqlm_sampling_params){ .temperature = (float)temp, .top_k = (int32_t)top_k, .top_p = (float)top_p,
                                    .min_p = (float)min_p, .repeat_penalty = (float)rp,
                                    .frequency_penalty = (float)fp, .presence_penalty = (float)pp,
                                    .repeat_last_n = (int32_t)last_n, .seed = s };
    return parse_bias(body, g, e);
}

/* The logprobs a request asks for: g->n_top alternatives per token, -1
 * for none.  Chat: logprobs true, top_logprobs 0..20; completions:
 * logprobs 0..20 (OpenAI allows 5); /completion: n_probs. */
static bool parse_logprobs(const json_t *body, gen *g, req_err *e) {
    long long k = -1;
    g->n_top = -1;
    if (g->kind == R_CHAT) {
        bool on = false;
        if (!get_bool(body, "logprobs", &on, e) || !get_int(body, "top_logprobs", 0, MAX_TOP, &k, e)) return false;
        if (k >= 0 && !on) return fail(e, 400, "'top_logprobs' needs 'logprobs': true");
        if (on) g->n_top = k < 0 ? 0 : (int)k;
    } else if (g->kind == R_OAI) {
        json_t *lp = field(body, "logprobs");
        if (json_is_false(lp)) return true;   /* as some clients send */
        if (!get_int(body, "logprobs", 0, MAX_TOP, &k, e)) return false;
        g->n_top = (int)k;
    } else {
        if (!get_int(body, "n_probs", 0, MAX_TOP, &k, e)) return false;
        g->n_top = k > 0 ? (int)k : -1;
    }
    return true;
}

/* The fields every completion has: sampling, max_tokens, stop, stream. */
static bool parse_common(const json_t *body, gen *g, req_err *e) {
    const args *a = g->sv->a;
    if (!check_fields(body, g->kind == R_CHAT ? K_CHAT : g->kind == R_OAI ? K_OAI : K_NATIVE, e)) return false;
    if (!parse_sampling(body, g, e) || !parse_logprobs(body, g, e)) return false;
    g->max_tokens = a->n_predict;
    const char *mt = field(body, "max_completion_tokens") ? "max_completion_tokens"
                   : field(body, "max_tokens") ? "max_tokens" : "n_predict";
    json_t *np = field(body, "n_predict");
    if (g->kind == R_NATIVE && !strcmp(mt, "n_predict") && json_is_integer(np) && json_integer_value(np) == -1)
        g->max_tokens = -1;   /* llama-server's "until the end" */
    else if (!get_int(body, mt, 1, g->sv->n_ctx, &g->max_tokens, e))
        return false;
    if (!get_bool(body, "stream", &g->stream, e) || !get_bool(body, "ignore_eos", &g->ignore_eos, e) ||
        !get_bool(body, "return_tokens", &g->return_tokens, e))
        return false;
    json_t *so = field(body, "stream_options");
    if (so && !json_is_object(so)) return fail(e, 400, "'stream_options' must be an object");
    if (so && !get_bool(so, "include_usage", &g->include_usage, e)) return false;
    json_t *stop = field(body, "stop");
    if (stop && !json_is_string(stop) && !json_is_array(stop))
        return fail(e, 400, "'stop' must be a string or an array of strings");
    size_t n_stop = json_is_string(stop) ? 1 : json_array_size(stop);
    if (n_stop > SQLM_MAX_STOP) return fail(e, 400, "'stop' has %zu strings, at most %d are allowed", n_stop, SQLM_MAX_STOP);
    for (size_t i = 0; i < n_stop; i++) {
        json_t *s = json_is_string(stop) ? stop : json_array_get(stop, i);
        if (!json_is_string(s)) return fail(e, 400, "'stop' must be a string or an array of strings");
        size_t len = json_string_length(s);
        if (len > MAX_STOP_LEN) return fail(e, 400, "a stop string is longer than %d bytes", MAX_STOP_LEN);
        if (len == 0 || memchr(json_string_value(s), 0, len)) continue;   /* "" stops nothing */
        if (!(g->stop[g->n_stop] = strdup(json_string_value(s)))) return fail(e, 500, "out of memory");
        g->n_stop++;
    }
    return true;
}

/* The text of a message's content: a string, or an array of text parts. */
static bool message_text(const json_t *content, size_t i, buf *out, req_err *e) {
    if (json_is_string(content)) {
        buf_append(out, json_string_value(content), json_string_length(content));
        return true;
    }
    if (!json_is_array(content))
        return fail(e, 400, "messages[%zu]: 'content' must be a string or an array of parts", i);
    size_t k;
    json_t *part;
    json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text))
            return fail(e, 400, "messages[%zu]: only text content parts ({\"type\":\"text\",\"text\":...}) are supported", i);
        buf_append(out, json_string_value(text), json_string_length(text));
    }
    return true;
}

/* s[0..n) without the white space around it. */
static const char *trimmed(const char *s, size_t *n) {
    while (*n && strchr(" \t\r\n", s[0])) s++, (*n)--;
    while (*n && strchr(" \t\r\n", s[*n - 1])) (*n)--;
    return s;
}

/*
 * A conversation rendered by the chat template, as `sqlm chat` renders it,
 * and tokenized (ids may be NULL: the text alone).  Roles: system, user,
 * assistant, tool; developer becomes system unless the template names it.
 * A message whose text the rendered prompt does not hold (in order) is
 * refused: the template skipped it, and the model would answer another
 * conversation.  Under the session lock (the tokenizer is the session's).
 */
static bool render_messages(server *sv, const json_t *ms, char **text, int32_t **ids, int32_t *n_ids, req_err *e) {
    if (!json_is_array(ms) || json_array_size(ms) == 0) return fail(e, 400, "'messages' must be a non-empty array");
    size_t n_msgs = json_array_size(ms);
    sqlm_chat_message *msgs = calloc(n_msgs, sizeof *msgs);
    buf *texts = calloc(n_msgs, sizeof *texts);
    bool ok = msgs && texts;
    if (!ok) fail(e, 500, "out of memory");
    static const char *const roles[] = { "system", "user", "assistant", "tool", "developer" };
    for (size_t i = 0; ok && i < n_msgs; i++) {
        json_t *m = json_array_get(ms, i), *role = json_object_get(m, "role"), *content = field(m, "content");
        buf_init(&texts[i]);
        if (!json_is_object(m) || !json_is_string(role) || !json_string_length(role)) {
            ok = fail(e, 400, "messages[%zu] must be an object with a 'role' string", i);
            break;
        }
        const char *r = json_string_value(role);
        bool known = false;
        for (size_t k = 0; k < ARRAY_LEN(roles); k++) known |= !strcmp(r, roles[k]);
        if (!known) {
            ok = fail(e, 400, "messages[%zu]: role '%s' is not supported (system, developer, user, assistant, tool)", i, r);
            break;
        }
        const char *key;
        json_t *v;
        json_object_foreach(m, key, v) {
            if (!strcmp(key, "role") || !strcmp(key, "content") || json_is_null(v)) continue;
            if (!strcmp(key, "tool_calls") && empty_value(v)) continue;
            if (!strcmp(key, "tool_call_id") && !strcmp(r, "tool") && json_is_string(v)) continue;   /* not rendered */
            ok = fail(e, 400, "messages[%zu]: '%s' is not supported (the chat template gets a role and text)", i, key);
            break;
        }
        if (!ok) break;
        msgs[i].role = !strcmp(r, "developer") && !sv->tmpl_developer ? "system" : r;
        if (content && !(ok = message_text(content, i, &texts[i], e))) break;
        if (texts[i].rc) ok = fail(e, 500, "out of memory");
        msgs[i].content = content ? (texts[i].p ? texts[i].p : "") : NULL;
    }
    char *t = NULL;
    int rc;
    if (ok && (rc = ids ? sqlm_chat_tokenize(sv->m, msgs, (int32_t)n_msgs, sv->tmpl, &t, ids, n_ids)
                        : sqlm_chat_apply(sv->m, msgs, (int32_t)n_msgs, true, sv->tmpl, &t)))
        /* mostly the request's fault: roles the template refuses */
        ok = fail(e, rc == SQLM_NOMEM ? 500 : 400, "the chat template: %s", sqlm_errmsg());
    if (ok && sv->a->verbose_prompt) fprintf(stderr, "[prompt]\n%s[/prompt]\n", t);
    size_t at = 0, tl = t ? strlen(t) : 0;
    for (size_t i = 0; ok && i < n_msgs; i++) {
        size_t n = texts[i].len;
        const char *c = trimmed(texts[i].p ? texts[i].p : "", &n);
        if (!n) continue;
        const char *hit = memmem(t + at, tl - at, c, n);
        if (hit) {
            at = (size_t)(hit - t) + n;
            continue;
        }
        ok = fail(e, 400, "messages[%zu] (role '%s') is not in the prompt the chat template renders: the template "
                          "drops it (this role, or its place in the conversation)", i, json_string_value(json_object_get(json_array_get(ms, i), "role")));
    }
    for (size_t i = 0; texts && i < n_msgs; i++) buf_free(&texts[i]);
    free(msgs), free(texts);
    if (ok && text) *text = t;
    else sqlm_free(t);
    if (!ok && ids) sqlm_free(*ids), *ids = NULL;
    return ok;
}

/* A prompt of token ids: [1, 2, 3] as they are (nothing added). */
static bool prompt_ids(const server *sv, const json_t *p, gen *g, req_err *e) {
    size_t n = json_array_size(p);
    if (!n) return fail(e, 400, "'prompt' is an empty array of tokens");
    if (n >= (size_t)sv->n_ctx)
        return fail(e, 400, "the prompt is %zu tokens, more than the context of %d leaves room for", n, sv->n_ctx);
    if (!(g->prompt = malloc(sizeof *g->prompt * n))) return fail(e, 500, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!token_id(sv, json_array_get(p, i), "prompt", &g->prompt[i], e)) return false;
    g->n_prompt = (int)n;
    return true;
}

/* The prompt's tokens, under the session lock (the tokenizer is the
 * session's): a string prompt as `sqlm run -p` has it, BOS first; token ids
 * as they are ([1, 2, 3], or an array of one such, as OpenAI allows); or
 * the messages rendered by the chat template as `sqlm chat` renders them. */
static bool prompt_tokens(const json_t *body, gen *g, req_err *e) {
    server *sv = g->sv;
    int32_t n = 0;
    int rc;
    if (g->kind != R_CHAT) {
        json_t *p = field(body, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 &&
            (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
            p = json_array_get(p, 0);
        if (json_is_array(p) && json_array_size(p) > 0 && !json_is_integer(json_array_get(p, 0)))
            return fail(e, 400, "'prompt' holds several prompts: one per request (no batching)");
        if (json_is_array(p)) return prompt_ids(sv, p, g, e);
        if (!json_is_string(p)) return fail(e, 400, "'prompt' must be a string or an array of token ids");
        if ((rc = sqlm_tokenize_prompt(sv->m, json_string_value(p), json_string_length(p), &g->prompt, &n)))
            return fail(e, rc == SQLM_NOMEM ? 500 : 400, "tokenizing the prompt: %s", sqlm_errmsg());
    } else if (!render_messages(sv, field(body, "messages"), NULL, &g->prompt, &n, e)) {
        return false;
    }
    g->n_prompt = n;
    if (n >= sv->n_ctx)
        return fail(e, 400, "the prompt is %d tokens, more than the context of %d leaves room for", n, sv->n_ctx);
    return true;
}

/* A completion (OpenAI's or llama-server's) or chat completion: parse,
 * take the session, feed the prompt, then answer whole or hand a stream to
 * libmicrohttpd. */
static enum MHD_Result completion(server *sv, struct MHD_Connection *c, const char *method, const char *url,
                                  int kind, const char *body, size_t len) {
    req_err e = { 0 };
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        fail(&e, 400, "invalid JSON in the request body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return reply_error(c, &e, method, url);
    }
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        json_decref(j);
        return MHD_NO;
    }
    g->sv = sv, g->kind = kind, g->fd = -1, g->n_top = -1;
    buf_init(&g->text), buf_init(&g->out);
    snprintf(g->method, sizeof g->method, "%s", method);
    snprintf(g->url, sizeof g->url, "%s", url);
    g->created = time(NULL);
    pthread_mutex_lock(&sv->mu);
    uint64_t nr = ++sv->n_requests;
    pthread_mutex_unlock(&sv->mu);
    snprintf(g->id, sizeof g->id, "%s-%llx%04llx", kind == R_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)g->created,
             (unsigned long long)nr & 0xFFFF);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) g->fd = ci->connect_fd;
    enum MHD_Result ret;
    if (!json_is_object(j)) {
        fail(&e, 400, "the request body must be a JSON object");
        goto error;
    }
    if (!parse_common(j, g, &e)) goto error;
    if (!session_acquire(sv)) {
        fail(&e, 503, "the server is stopping");
        goto error;
    }
    g->locked = true;
    g->t0 = sqlm_now();
    if (!prompt_tokens(j, g, &e)) goto error;
    int rc = sqlm_session_set_sampling(sv->s, &g->sp);
    if (rc) {
        fail(&e, rc == SQLM_NOMEM ? 500 : 400, "%s", sqlm_errmsg());
        goto error;
    }
    sqlm_generate_params gp = sqlm_generate_default_params();
    gp.max_tokens = (int32_t)g->max_tokens;
    gp.ignore_eos = g->ignore_eos;
    gp.stop = (const char *const *)g->stop;
    gp.n_stop = g->n_stop;
    int32_t n_kept = 0;
    rc = sqlm_generate_begin(sv->s, g->prompt, g->n_prompt, &gp, &n_kept);
    g->n_kept = n_kept;
    if (rc) {
        fail(&e, rc == SQLM_RANGE ? 400 : 500, "evaluating the prompt: %s (%s)", sqlm_errmsg(), sqlm_errstr(rc));
        goto error;
    }
    g->t_gen0 = sqlm_now();
    g->t_prompt = g->t_gen0 - g->t0;
    json_decref(j);
    if (g->stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, g, stream_free);
        if (!r) {
            gen_free(g);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        add_cors(r, c);
        ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);   /* g is the response's now: stream_free() frees it */
        return ret;
    }
    while (!g->finish) gen_step(g);
    json_t *answer = g->err[0] ? NULL : answer_json(g);   /* token texts need the tokenizer: under the lock */
    g->locked = false;
    session_release(sv);
    gen_log(g);
    if (g->err[0]) {
        fail(&e, 500, "%s", g->err);
        ret = reply_error(c, &e, method, url);
    } else {
        ret = reply_json(c, MHD_HTTP_OK, answer);
    }
    gen_free(g);
    return ret;
error:
    json_decref(j);
    gen_free(g);   /* gives the session back */
    return reply_error(c, &e, method, url);
}

/* ------------------------------------------------ the other endpoints */

static json_t *model_json(const server *sv) {
    return json_pack("{s:s,s:s,s:I,s:s,s:{s:i,s:i}}", "id", sv->model_id, "object", "model", "created",
                     (json_int_t)sv->started, "owned_by", "sqlm", "meta", "n_ctx", sv->n_ctx, "n_vocab", sv->n_vocab);
}

/* A JSON request body that must be an object; NULL after an error. */
static json_t *body_object(const char *body, size_t len, req_err *e) {
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) return fail(e, 400, "invalid JSON in the request body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column), NULL;
    if (!json_is_object(j)) return json_decref(j), fail(e, 400, "the request body must be a JSON object"), NULL;
    return j;
}

/* /tokenize {"content", "add_special", "with_pieces"} -> {"tokens"},
 * /detokenize {"tokens"} -> {"content"}, /apply-template {"messages"} ->
 * {"prompt"}: under the session lock, as the tokenizer is the session's. */
static json_t *text_endpoint(server *sv, int ep, const json_t *j, req_err *e);

enum { EP_HEALTH, EP_MODELS, EP_MODEL, EP_COMPLETIONS, EP_CHAT, EP_COMPLETION, EP_TOKENIZE, EP_DETOKENIZE,
       EP_APPLY_TEMPLATE, EP_PROPS, EP_SLOTS, EP_METRICS };

static json_t *text_endpoint(server *sv, int ep, const json_t *j, req_err *e) {
    if (ep == EP_TOKENIZE) {
        json_t *content = field(j, "content");
        bool special = false, pieces = false;
        if (!json_is_string(content)) return fail(e, 400, "'content' must be a string"), NULL;
        if (!get_bool(j, "add_special", &special, e) || !get_bool(j, "with_pieces", &pieces, e)) return NULL;
        int32_t *ids = NULL, n = 0;
        int rc = sqlm_tokenize(sv->m, json_string_value(content), json_string_length(content), special, &ids, &n);
        if (rc) return fail(e, rc == SQLM_NOMEM ? 500 : 400, "tokenizing: %s", sqlm_errmsg()), NULL;
        json_t *toks = json_array();
        for (int32_t i = 0; i < n; i++) {
            if (!pieces) {
                json_array_append_new(toks, json_integer(ids[i]));
                continue;
            }
            buf b;
            buf_init(&b);
            token_bytes(sv, ids[i], &b);
            size_t pos = 0;
            bool valid = true;
            while (pos < b.len && valid) {
                size_t at = pos;
                valid = !(sqlm_utf8_next(b.p, b.len, &pos) == 0xFFFD && pos - at == 1);
            }
            json_t *piece;
            if (valid) {
                piece = json_stringn(b.p ? b.p : "", b.len);
            } else {   /* llama-server: the bytes, when they are not UTF-8 */
                piece = json_array();
                for (size_t k = 0; k < b.len; k++) json_array_append_new(piece, json_integer((unsigned char)b.p[k]));
            }
            buf_free(&b);
            json_array_append_new(toks, json_pack("{s:i,s:o}", "id", ids[i], "piece", piece));
        }
        sqlm_free(ids);
        return json_pack("{s:o}", "tokens", toks);
    }
    if (ep == EP_DETOKENIZE) {
        json_t *toks = field(j, "tokens");
        if (!json_is_array(toks)) return fail(e, 400, "'tokens' must be an array of token ids"), NULL;
        size_t n = json_array_size(toks);
        int32_t *ids = malloc(sizeof *ids * (n ? n : 1));
        if (!ids) return fail(e, 500, "out of memory"), NULL;
        for (size_t i = 0; i < n; i++)
            if (!token_id(sv, json_array_get(toks, i), "tokens", &ids[i], e)) return free(ids), NULL;
        char *t = NULL;
        size_t len = 0;
        int rc = sqlm_detokenize(sv->m, ids, (int32_t)n, &t, &len);
        free(ids);
        if (rc) return fail(e, rc == SQLM_NOMEM ? 500 : 400, "detokenizing: %s", sqlm_errmsg()), NULL;
        buf v;
        buf_init(&v);
        utf8_append_valid(&v, t, len);
        sqlm_free(t);
        json_t *r = json_pack("{s:s%}", "content", v.p ? v.p : "", v.len);
        buf_free(&v);
        return r;
    }
    /* EP_APPLY_TEMPLATE */
    char *text = NULL;
    if (!render_messages(sv, field(j, "messages"), &text, NULL, NULL, e)) return NULL;
    json_t *r = json_pack("{s:s}", "prompt", text);
    sqlm_free(text);
    return r;
}

/* The requests' defaults, as llama-server's generation settings. */
static json_t *settings_json(const server *sv) {
    const args *a = sv->a;
    return json_pack("{s:i,s:{s:f,s:i,s:f,s:f,s:f,s:i,s:f,s:f,s:I,s:I,s:b}}", "n_ctx", sv->n_ctx, "params",
                     "temperature", a->temp, "top_k", (int)a->top_k, "top_p", a->top_p, "min_p", a->min_p,
                     "repeat_penalty", a->repeat_penalty, "repeat_last_n", (int)a->repeat_last_n, "frequency_penalty",
                     a->freq_penalty, "presence_penalty", a->presence_penalty, "n_predict", (json_int_t)a->n_predict,
                     "seed", a->seed_set ? (json_int_t)a->seed : (json_int_t)-1, "ignore_eos", a->ignore_eos);
}

static json_t *props_json(const server *sv) {
    return json_pack("{s:o,s:i,s:s,s:s,s:s,s:s,s:s}", "default_generation_settings", settings_json(sv), "total_slots",
                     1, "model_path", sv->a->model, "chat_template", sv->tmpl ? sv->tmpl : "", "bos_token", sv->bos,
                     "eos_token", sv->eos, "build_info", "sqlm " SQLM_VERSION);
}

static json_t *slots_json(server *sv) {
    pthread_mutex_lock(&sv->mu);
    bool busy = sv->busy;
    int decoded = sv->last_decoded;
    pthread_mutex_unlock(&sv->mu);
    json_t *s = settings_json(sv);
    json_object_set_new(s, "id", json_integer(0));
    json_object_set_new(s, "is_processing", json_boolean(busy));
    json_object_set_new(s, "next_token", json_pack("{s:i}", "n_decoded", decoded));
    return json_pack("[o]", s);
}

/* Prometheus text with llama-server's metric names, so that its
 * dashboards and scrapers read it. */
static char *metrics_text(server *sv) {
    pthread_mutex_lock(&sv->mu);
    uint64_t np = sv->n_prompt_total, ng = sv->n_pred_total;
    double tp = sv->t_prompt_total, tg = sv->t_pred_total;
    int busy = sv->busy, waiting = sv->waiting;
    int32_t kv = sv->kv_tokens;
    pthread_mutex_unlock(&sv->mu);
    buf b;
    buf_init(&b);
#define METRIC(name, type, help, fmt, v) \
    buf_appendf(&b, "# HELP llamacpp:" name " " help "\n# TYPE llamacpp:" name " " type "\nllamacpp:" name " " fmt "\n", v)
    METRIC("prompt_tokens_total", "counter", "Number of prompt tokens processed.", "%llu", (unsigned long long)np);
    METRIC("prompt_seconds_total", "counter", "Prompt process time", "%.6f", tp);
    METRIC("tokens_predicted_total", "counter", "Number of generation tokens processed.", "%llu", (unsigned long long)ng);
    METRIC("tokens_predicted_seconds_total", "counter", "Predict process time", "%.6f", tg);
    METRIC("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.", "%.3f", per((double)np, tp));
    METRIC("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.", "%.3f", per((double)ng, tg));
    METRIC("kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.", "%.6f", per(kv, sv->n_ctx));
    METRIC("kv_cache_tokens", "gauge", "KV-cache tokens.", "%d", (int)kv);
    METRIC("requests_processing", "gauge", "Number of requests processing.", "%d", busy);
    METRIC("requests_deferred", "gauge", "Number of requests deferred.", "%d", waiting);
#undef METRIC
    if (b.rc) return buf_free(&b), NULL;
    return b.p;
}

/* ------------------------------------------------------------- routing */

/* The paths, with the aliases llama-server answers too. */
static const struct endpoint {
    const char *path;
    int ep;                  /* EP_* */
    const char *method;
    bool open;               /* no API key needed (health checks) */
} endpoints[] = {
    { "/health", EP_HEALTH, "GET", true },
    { "/v1/health", EP_HEALTH, "GET", true },
    { "/v1/models", EP_MODELS, "GET", false },
    { "/models", EP_MODELS, "GET", false },
    { "/v1/completions", EP_COMPLETIONS, "POST", false },
    { "/completions", EP_COMPLETIONS, "POST", false },
    { "/v1/chat/completions", EP_CHAT, "POST", false },
    { "/chat/completions", EP_CHAT, "POST", false },
    { "/completion", EP_COMPLETION, "POST", false },
    { "/tokenize", EP_TOKENIZE, "POST", false },
    { "/detokenize", EP_DETOKENIZE, "POST", false },
    { "/apply-template", EP_APPLY_TEMPLATE, "POST", false },
    { "/props", EP_PROPS, "GET", false },
    { "/slots", EP_SLOTS, "GET", false },
    { "/metrics", EP_METRICS, "GET", false },
};

/* A connection's request while its body arrives. */
typedef struct request {
    int ep;                  /* EP_*, -1 once an answer is queued */
    buf body;
    size_t seen;             /* bytes of body received (kept up to the limit) */
    char model[256];         /* EP_MODEL: the id asked for */
} request;

/* Compare the Authorization header with "Bearer KEY" in time that does not
 * depend on where they differ. */
static bool authorized(const char *key, const char *hdr) {
    if (!hdr || strncasecmp(hdr, "Bearer ", 7)) return false;
    const char *got = hdr + 7;
    size_t n = strlen(got), m = strlen(key);
    unsigned char d = n != m;
    for (size_t i = 0; i < m; i++) d |= (unsigned char)(key[i] ^ (i < n ? got[i] : 0));
    return d == 0;
}

/* The framing headers of a request, counted: a request with two
 * Content-Length headers, a list in one, or one with Transfer-Encoding may
 * be read otherwise by a proxy in front (request smuggling). */
typedef struct framing { int cl, te; bool cl_bad, te_bad; } framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        f->cl++;
        f->cl_bad |= !value || !*value || strspn(value, "0123456789") != strlen(value) || strlen(value) > 18;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->te++;
        f->te_bad |= !value || strcasecmp(value, "chunked");
    }
    return MHD_YES;
}

static bool check_framing(struct MHD_Connection *c, req_err *e) {
    framing f = { 0 };
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    if (f.cl > 1) return fail(e, 400, "%d Content-Length headers: a request has one at most", f.cl);
    if (f.cl_bad) return fail(e, 400, "Content-Length must be one decimal number");
    if (f.cl && f.te) return fail(e, 400, "Content-Length together with Transfer-Encoding is refused");
    if (f.te > 1 || f.te_bad) return fail(e, 400, "Transfer-Encoding must be a single 'chunked'");
    return true;
}

/* OPTIONS: the CORS preflight of a browser (no key: browsers send none). */
static enum MHD_Result preflight(struct MHD_Connection *c, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    char methods[32];
    snprintf(methods, sizeof methods, "%s, OPTIONS", allow);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, methods);
    if (cors_allowed(c)) {
        add_cors(r, c);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", methods);
        /* the headers it asks for, when they are header names (the OpenAI
         * client sends its own X-Stainless-* ones) */
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        bool names = h && strlen(h) < 2048 &&
                     strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ") == strlen(h);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", names ? h : "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *sv = cls;
    request *r = *con_cls;
    req_err e;
    if (!r) {   /* the headers are in, the body (if any) is not */
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        buf_init(&r->body);
        *con_cls = r;
        r->ep = -1;
        pthread_mutex_lock(&sv->mu);
        sv->active++;
        pthread_mutex_unlock(&sv->mu);
        const struct endpoint *ep = NULL;
        static const struct endpoint model_ep = { "/v1/models/", EP_MODEL, "GET", false };
        for (size_t i = 0; i < ARRAY_LEN(endpoints); i++)
            if (!strcmp(url, endpoints[i].path)) ep = &endpoints[i];
        const char *id = !strncmp(url, "/v1/models/", 11) ? url + 11 : !strncmp(url, "/models/", 8) ? url + 8 : NULL;
        if (!ep && id && *id) {
            ep = &model_ep;
            snprintf(r->model, sizeof r->model, "%s", id);
        }
        if (!check_framing(c, &e)) {
            /* before anything else: the body's end is in doubt */
        } else if (!ep) {
            fail(&e, 404, "no such endpoint: %s", url);
        } else if (!strcmp(method, "OPTIONS")) {
            return preflight(c, ep->method);
        } else if (strcmp(method, ep->method)) {
            fail(&e, 405, "%s takes %s, not %s", url, ep->method, method);
            e.allow = ep->method;
        } else if (sv->a->api_key && !ep->open &&
                 !authorized(sv->a->api_key,
                             MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))) {
            fail(&e, 401, "invalid or missing API key (Authorization: Bearer KEY)");
        } else {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (!cl || strtoull(cl, NULL, 10) <= sv->a->max_body) {
                r->ep = ep->ep;
                return MHD_YES;   /* come back with the body */
            }
            fail(&e, 413, "the request body is larger than the server's limit of %zu bytes", sv->a->max_body);
        }
        /* answered before the body: libmicrohttpd closes the connection
         * after the answer instead of reading it */
        return reply_error(c, &e, method, url);
    }
    if (r->ep < 0) {   /* answered already; the rest of the body is ignored */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {   /* a piece of the body */
        /* A body without a length (chunked) that grows too large is read
         * to its end and dropped (libmicrohttpd 0.9.75 cannot answer in the
         * middle of a body), then answered 413; one that goes on for 8 times
         * the limit loses its connection. */
        r->seen += *upload_size;
        if (r->seen > sv->a->max_body) {
            buf_free(&r->body);
            *upload_size = 0;
            return r->seen / 8 > sv->a->max_body ? MHD_NO : MHD_YES;
        }
        buf_append(&r->body, upload, *upload_size);
        *upload_size = 0;
        return r->body.rc ? MHD_NO : MHD_YES;
    }
    int ep = r->ep;
    r->ep = -1;
    if (r->seen > sv->a->max_body) {
        fail(&e, 413, "the request body is larger than the server's limit of %zu bytes", sv->a->max_body);
        return reply_error(c, &e, method, url);
    }
    /* the request is in: its answer has --timeout, not --idle-timeout */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)sv->a->timeout);
    const char *body = r->body.p ? r->body.p : "";
    switch (ep) {
    case EP_HEALTH:
        return reply_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    case EP_MODELS:
        return reply_json(c, MHD_HTTP_OK, json_pack("{s:s,s:[o]}", "object", "list", "data", model_json(sv)));
    case EP_MODEL:
        if (!strcmp(r->model, sv->model_id)) return reply_json(c, MHD_HTTP_OK, model_json(sv));
        fail(&e, 404, "the model '%s' does not exist: this server has '%s'", r->model, sv->model_id);
        return reply_error(c, &e, method, url);
    case EP_PROPS:
        return reply_json(c, MHD_HTTP_OK, props_json(sv));
    case EP_SLOTS:
        return reply_json(c, MHD_HTTP_OK, slots_json(sv));
    case EP_METRICS:
        return reply_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4", metrics_text(sv), NULL, NULL);
    case EP_TOKENIZE:
    case EP_DETOKENIZE:
    case EP_APPLY_TEMPLATE: {
        json_t *j = body_object(body, r->body.len, &e), *res = NULL;
        if (j && !session_acquire(sv)) fail(&e, 503, "the server is stopping");
        else if (j) res = text_endpoint(sv, ep, j, &e), session_release(sv);
        json_decref(j);
        return res ? reply_json(c, MHD_HTTP_OK, res) : reply_error(c, &e, method, url);
    }
    default:
        return completion(sv, c, method, url, ep == EP_CHAT ? R_CHAT : ep == EP_COMPLETION ? R_NATIVE : R_OAI, body,
                          r->body.len);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode tc) {
    (void)tc;
    server *sv = cls;
    request *r = *con_cls;
    if (r) {
        buf_free(&r->body), free(r);
        /* between requests a kept-alive connection has --idle-timeout again */
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)sv->a->idle_timeout);
        pthread_mutex_lock(&sv->mu);
        sv->active--;
        pthread_cond_broadcast(&sv->cv);
        pthread_mutex_unlock(&sv->mu);
    }
    *con_cls = NULL;
}

/* ------------------------------------------------------------ listening */

/* A socket listening on host:port; dies with the reason (address in use,
 * unknown host).  *addr gets "host:port" with the port bound. */
static int listen_on(const char *host, long port, char *addr, size_t addr_len, bool *v6) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *res;
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc) die("serve: --host %s: %s", host, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 64))
        die("serve: cannot listen on %s port %ld: %s", host, port, strerror(errno));
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int bound = 0;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
            bound = ntohs(s6->sin6_port);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
            bound = ntohs(s4->sin_port);
        }
    }
    snprintf(addr, addr_len, *v6 ? "[%s]:%d" : "%s:%d", ip, bound);
    return fd;
}

/* libmicrohttpd's own messages (a client gone mid-answer), prefixed as ours */
static void http_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char m[512];
    vsnprintf(m, sizeof m, fmt, ap);
    size_t n = strlen(m);
    while (n && m[n - 1] == '\n') m[--n] = 0;
    fprintf(stderr, "%s: serve: http: %s\n", prog, m);
}

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(sig_pipe[1], &b, 1);
    (void)w;
}

/* ------------------------------------------------------------- the command */

/* A special token's piece for /props ("" if none). */
static void piece_of(const sqlm_model *m, int32_t id, char *out, size_t cap) {
    size_t n = 0;
    const char *p = id >= 0 ? sqlm_token_to_piece(m, id, &n) : NULL;
    snprintf(out, cap, "%.*s", p ? (int)MIN(n, cap - 1) : 0, p ? p : "");
}

int cmd_serve(args *a) {
    if (a->positional) die("serve: unexpected argument '%s' (the model goes after -m)", a->positional);
    if (a->n_predict == 0) die("serve: -n 0 would answer every request with nothing");
    signal(SIGPIPE, SIG_IGN);   /* a client gone mid-answer is an error return, not death */
    server *sv = calloc(1, sizeof *sv);
    if (!sv) die("serve: out of memory");
    sv->a = a;
    cors_origin = a->cors;
    sv->m = open_model(a);
    sqlm_model_info mi;
    sqlm_model_info_get(sv->m, &mi);
    if (!mi.n_vocab) die("serve: %s has no vocabulary", a->model);
    sv->tmpl = chat_template_for(a, sv->m);
    sv->tmpl_developer = sv->tmpl && strstr(sv->tmpl, "developer");
    piece_of(sv->m, mi.bos, sv->bos, sizeof sv->bos);
    piece_of(sv->m, mi.eos, sv->eos, sizeof sv->eos);
    sv->s = open_session(a, sv->m);
    sv->n_ctx = sqlm_session_n_ctx(sv->s);
    sv->n_vocab = mi.n_vocab;
    const char *base = strrchr(a->model, '/');
    snprintf(sv->model_id, sizeof sv->model_id, "%s", a->alias ? a->alias : base ? base + 1 : a->model);
    sv->started = time(NULL);
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    json_object_seed(0);   /* before any thread makes an object */

    if (pipe2(sig_pipe, O_CLOEXEC)) die("serve: pipe: %s", strerror(errno));
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char addr[INET6_ADDRSTRLEN + 16];
    bool v6;
    int fd = listen_on(a->host, a->port, addr, sizeof addr, &v6);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, sv, MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONN, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(a->conn_per_ip ? a->conn_per_ip : MAX_CONN), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)a->idle_timeout, MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv, MHD_OPTION_END);
    if (!d) die("serve: cannot start the HTTP server on %s", addr);
    fprintf(stderr, "%s: serve: %s (context %d tokens) listening on http://%s\n", prog, sv->model_id, sv->n_ctx,
            addr);

    unsigned char sig = 0;
    while (read(sig_pipe[0], &sig, 1) < 0 && errno == EINTR) {}
    fprintf(stderr, "%s: serve: %s, stopping\n", prog, sig == SIGINT ? "interrupted" : "terminated");
    /* no new connections; waiting requests give up (503), the running one
     * ends at its next token; their answers go out before the connections
     * close */
    MHD_socket lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    pthread_mutex_lock(&sv->mu);
    sv->stopping = true;
    pthread_cond_broadcast(&sv->cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += DRAIN_SECONDS;
    while (sv->active > 0 && pthread_cond_timedwait(&sv->cv, &sv->mu, &until) != ETIMEDOUT) {}
    int left = sv->active;
    pthread_mutex_unlock(&sv->mu);
    if (left) fprintf(stderr, "%s: serve: %d answers not done after %d s, closing them\n", prog, left, DRAIN_SECONDS);
    MHD_stop_daemon(d);   /* joins the connections' threads */
    sqlm_session_free(sv->s);
    sqlm_close(sv->m);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    free(sv);
    return 0;
}
