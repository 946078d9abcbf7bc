/*
 * serve.c - sqlm serve: an OpenAI-compatible HTTP server over one model
 * session, with llama-server's endpoints:
 *
 *   GET  /health                {"status":"ok"}
 *   GET  /v1/models             the model, in OpenAI's list format
 *   POST /v1/completions        a prompt string
 *   POST /v1/chat/completions   messages, rendered with the chat template as
 *                               `sqlm chat` renders them (cli.h chat_prompt)
 *
 * Both POSTs answer whole (choices, finish_reason, usage) or, with
 * "stream": true, as server-sent events in OpenAI's chunk format ending with
 * "data: [DONE]".  libmicrohttpd runs one thread per connection; requests
 * take the one session in order of arrival (a ticket lock), and a stream
 * holds it until its last token or until its client goes away.  Each request
 * feeds only the tokens past what the KV cache already holds
 * (sqlm_generate_begin()), so a conversation that grows turn by turn is not
 * evaluated again from the start.
 *
 * Not here: more than one session or batching of requests, logprobs, n > 1,
 * tools, embeddings, TLS (put a proxy in front for that).
 */
#include <errno.h>
#include <fcntl.h>
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

/* ------------------------------------------------------------- the server */

typedef struct server {
    const args *a;
    sqlm_model *m;
    sqlm_session *s;
    int n_ctx, n_vocab;
    const char *tmpl;        /* chat template (static or owned by db) */
    char model_id[256];      /* --alias or the database's file name */
    time_t started;
    /* the session lock: one request at a time, in order of arrival */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next_ticket;    /* the ticket the next request draws */
    uint64_t serving;        /* the ticket that holds the session */
    bool stopping;           /* SIGINT/SIGTERM: waiters give up, generation ends */
    uint64_t n_requests;     /* for response ids */
} server;

/* Take the session; false when the server is stopping. */
static bool session_acquire(server *sv) {
    pthread_mutex_lock(&sv->mu);
    uint64_t t = sv->next_ticket++;
    while (sv->serving != t && !sv->stopping) pthread_cond_wait(&sv->cv, &sv->mu);
    bool ok = !sv->stopping;
    if (!ok && sv->serving == t) sv->serving++;   /* pass it on: nobody will hold it */
    pthread_mutex_unlock(&sv->mu);
    return ok;
}

/* Hand the session to the next ticket.  Any thread may call it: a stream
 * takes the session in the request's handler and gives it back from
 * libmicrohttpd's reader or free callback. */
static void session_release(server *sv) {
    pthread_mutex_lock(&sv->mu);
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
    return reply_text(c, e->status, "application/json", json_text(error_json(e)), hdr, val);
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

/* ------------------------------------------------------------ generation */

/* One completion request, from its parsed fields to its last byte. */
typedef struct gen {
    server *sv;
    bool chat, stream, include_usage, ignore_eos;
    sqlm_sampling_params sp;
    long long max_tokens;    /* -1: until EOS or the end of the context */
    char *stop[SQLM_MAX_STOP];    /* stop strings, valid UTF-8, non-empty */
    int n_stop;
    int32_t *prompt;         /* [n_prompt] the prompt's tokens */
    int n_prompt, n_kept;    /* n_kept: of them, found in the KV cache */
    int n_gen;               /* tokens generated */
    int finish;              /* SQLM_FINISH_*: why generation ended, NONE while it runs */
    bool gone;               /* it ended because the client went away (or the server stops) */
    char err[256];           /* an engine error that ended it, "" if none */
    buf text;                /* generated text released so far (cut before a stop string) */
    size_t sent;             /* bytes of text already streamed */
    /* streaming */
    buf out;                 /* SSE bytes not yet given to libmicrohttpd */
    size_t out_off;
    int phase;               /* 0 role chunk (chat), 1 tokens, 2 final chunks, 3 done */
    bool locked;             /* holds the session */
    int fd;                  /* the client's socket, to notice it going away */
    char id[64];
    time_t created;
    double t0, t_prompt;     /* for the log line */
    char method[8], url[32];
} gen;

static void gen_free(gen *g) {
    if (!g) return;
    if (g->locked) session_release(g->sv);
    for (int i = 0; i < g->n_stop; i++) free(g->stop[i]);
    sqlm_free(g->prompt);
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

/* Generate one token (sqlm_generate_next(): stop strings, end of turn,
 * max_tokens and the context's end are the library's) and keep the text it
 * releases: never part of a character, never a tail that may still become
 * a stop string. */
static void gen_step(gen *g) {
    server *sv = g->sv;
    if (g->finish) return;
    if (server_stopping(sv) || client_gone(g->fd)) {
        g->finish = SQLM_FINISH_STOP;
        g->gone = true;
        return;
    }
    sqlm_token_event ev;
    int rc = sqlm_generate_next(sv->s, &ev);
    if (rc) {
        snprintf(g->err, sizeof g->err, "%s (%s)", sqlm_errmsg(), sqlm_errstr(rc));
        g->finish = SQLM_FINISH_STOP;
        return;
    }
    if (ev.token >= 0) g->n_gen++;
    buf_append(&g->text, ev.text, ev.len);
    g->finish = ev.finish;
}

static const char *finish_reason(const gen *g) { return sqlm_finish_reason(g->finish); }

static json_t *usage_json(const gen *g) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", g->n_prompt, "completion_tokens", g->n_gen,
                     "total_tokens", g->n_prompt + g->n_gen);
}

/* A response object: id, object, created, model and choices (stolen). */
static json_t *response_json(const gen *g, const char *object, json_t *choices) {
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", g->id, "object", object, "created", (json_int_t)g->created,
                     "model", g->sv->model_id, "choices", choices);
}

static const char *chunk_object(const gen *g) { return g->chat ? "chat.completion.chunk" : "text_completion"; }

/* One streamed chunk: text (may be NULL: none), the role (chat's first),
 * and finish_reason (the last). */
static json_t *chunk_json(const gen *g, const char *text, size_t len, bool role, const char *finish) {
    buf t;
    buf_init(&t);
    if (text) utf8_append_valid(&t, text, len);
    if (t.rc) return buf_free(&t), NULL;
    json_t *choice;
    if (g->chat) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text || role) json_object_set_new(delta, "content", json_stringn(t.p ? t.p : "", t.len));
        choice = json_pack("{s:i,s:o,s:n,s:s?}", "index", 0, "delta", delta, "logprobs", "finish_reason", finish);
    } else {
        choice = json_pack("{s:s%,s:i,s:n,s:s?}", "text", t.p ? t.p : "", t.len, "index", 0, "logprobs",
                           "finish_reason", finish);
    }
    buf_free(&t);
    return response_json(g, chunk_object(g), json_pack("[o]", choice));
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
    buf t;
    buf_init(&t);
    utf8_append_valid(&t, g->text.p ? g->text.p : "", g->text.len);
    if (t.rc) return buf_free(&t), NULL;
    json_t *choice;
    if (g->chat)
        choice = json_pack("{s:i,s:{s:s,s:s%},s:n,s:s}", "index", 0, "message", "role", "assistant", "content",
                           t.p ? t.p : "", t.len, "logprobs", "finish_reason", finish_reason(g));
    else
        choice = json_pack("{s:s%,s:i,s:n,s:s}", "text", t.p ? t.p : "", t.len, "index", 0, "logprobs",
                           "finish_reason", finish_reason(g));
    buf_free(&t);
    json_t *r = response_json(g, g->chat ? "chat.completion" : "text_completion", json_pack("[o]", choice));
    json_object_set_new(r, "usage", usage_json(g));
    return r;
}

/* The request's log line on stderr, once generation ended. */
static void gen_log(const gen *g) {
    double t = sqlm_now() - g->t0 - g->t_prompt;
    fprintf(stderr, "%s: serve: %s %s: prompt %d tokens (%d from the cache) in %.2f s, %d generated at %.1f tok/s, "
                    "finish %s%s%s\n",
            prog, g->method, g->url, g->n_prompt, g->n_kept, g->t_prompt, g->n_gen, g->n_gen / (t > 0 ? t : 1e-9),
            g->gone ? "cut short: the client went away or the server stops" : finish_reason(g), g->err[0] ? ": " : "",
            g->err);
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
            if (g->chat) sse_event(g, chunk_json(g, NULL, 0, true, NULL));
            g->phase = 1;
            break;
        case 1: {
            gen_step(g);
            size_t n = g->text.len;
            if (n > g->sent) sse_event(g, chunk_json(g, g->text.p + g->sent, n - g->sent, false, NULL));
            g->sent = n;
            if (g->finish) {
                g->phase = 2;
                gen_log(g);
                if (g->locked) g->locked = false, session_release(g->sv);
            }
            break;
        }
        case 2:
            if (g->err[0]) {
                req_err e;
                fail(&e, 500, "%s", g->err);
                sse_event(g, error_json(&e));
            }
            sse_event(g, chunk_json(g, NULL, 0, false, finish_reason(g)));
            if (g->include_usage) {
                json_t *u = response_json(g, chunk_object(g), json_array());
                json_object_set_new(u, "usage", usage_json(g));
                sse_event(g, u);
            }
            buf_puts(&g->out, "data: [DONE]\n\n");
            g->phase = 3;
            break;
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
        gen_log(g);
    }
    gen_free(g);
}

/* -------------------------------------------------------- the requests */

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
    return true;
}

/* The fields every completion has: sampling, max_tokens, stop, stream. */
static bool parse_common(const json_t *body, gen *g, req_err *e) {
    const args *a = g->sv->a;
    if (!parse_sampling(body, g, e)) return false;
    long long n = 1;
    if (!get_int(body, "n", 1, 1, &n, e)) return fail(e, 400, "only n = 1 is supported");
    bool flag = false;
    if (!get_bool(body, "echo", &flag, e) || flag) return fail(e, 400, "'echo' is not supported");
    json_t *lp = field(body, "logprobs");
    if (lp && !json_is_false(lp) && !(json_is_integer(lp) && json_integer_value(lp) == 0))
        return fail(e, 400, "'logprobs' are not supported");
    json_t *tools = field(body, "tools");
    if (tools && !(json_is_array(tools) && json_array_size(tools) == 0))
        return fail(e, 400, "'tools' are not supported");
    g->max_tokens = a->n_predict;
    const char *mt = field(body, "max_completion_tokens") ? "max_completion_tokens"
                   : field(body, "max_tokens") ? "max_tokens" : "n_predict";
    if (!get_int(body, mt, 1, g->sv->n_ctx, &g->max_tokens, e)) return false;
    if (!get_bool(body, "stream", &g->stream, e) || !get_bool(body, "ignore_eos", &g->ignore_eos, e)) return false;
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
static bool message_text(const json_t *content, buf *out, req_err *e) {
    if (json_is_string(content)) {
        buf_append(out, json_string_value(content), json_string_length(content));
        return true;
    }
    if (!json_is_array(content)) return fail(e, 400, "a message's 'content' must be a string or an array of parts");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text))
            return fail(e, 400, "only text content parts ({\"type\":\"text\",\"text\":...}) are supported");
        buf_append(out, json_string_value(text), json_string_length(text));
    }
    return true;
}

/* The prompt's tokens, under the session lock (the tokenizer is the
 * session's): a string prompt as `sqlm run -p` has it, BOS first; or the
 * messages rendered by the chat template as `sqlm chat` renders them. */
static bool prompt_tokens(const json_t *body, gen *g, req_err *e) {
    server *sv = g->sv;
    int32_t n = 0;
    int rc;
    if (!g->chat) {
        json_t *p = field(body, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
        if (!json_is_string(p)) return fail(e, 400, "'prompt' must be a string");
        if ((rc = sqlm_tokenize_prompt(sv->m, json_string_value(p), json_string_length(p), &g->prompt, &n)))
            return fail(e, rc == SQLM_NOMEM ? 500 : 400, "tokenizing the prompt: %s", sqlm_errmsg());
    } else {
        json_t *ms = field(body, "messages");
        if (!json_is_array(ms) || json_array_size(ms) == 0)
            return fail(e, 400, "'messages' must be a non-empty array");
        size_t n_msgs = json_array_size(ms);
        sqlm_chat_message *msgs = calloc(n_msgs, sizeof *msgs);
        buf *texts = calloc(n_msgs, sizeof *texts);
        bool ok = msgs && texts;
        if (!ok) fail(e, 500, "out of memory");
        for (size_t i = 0; ok && i < n_msgs; i++) {
            json_t *m = json_array_get(ms, i), *role = json_object_get(m, "role"), *content = field(m, "content");
            buf_init(&texts[i]);
            if (!json_is_object(m) || !json_is_string(role) || !json_string_length(role)) {
                ok = fail(e, 400, "messages[%zu] must be an object with a 'role' string", i);
                break;
            }
            msgs[i].role = json_string_value(role);
            if (content && !(ok = message_text(content, &texts[i], e))) break;
            if (texts[i].rc) ok = fail(e, 500, "out of memory");
            msgs[i].content = content ? (texts[i].p ? texts[i].p : "") : NULL;
        }
        if (ok && (rc = chat_prompt(sv->m, sv->tmpl, msgs, (int)n_msgs, sv->a->verbose_prompt, &g->prompt, &n)))
            /* mostly the request's fault: roles the template refuses */
            ok = fail(e, rc == SQLM_NOMEM ? 500 : 400, "%s", sqlm_errmsg());
        for (size_t i = 0; texts && i < n_msgs; i++) buf_free(&texts[i]);
        free(msgs), free(texts);
        if (!ok) return false;
    }
    g->n_prompt = n;
    if (n >= sv->n_ctx)
        return fail(e, 400, "the prompt is %d tokens, more than the context of %d leaves room for", n, sv->n_ctx);
    return true;
}

/* A completion or chat completion: parse, take the session, feed the
 * prompt, then answer whole or hand a stream to libmicrohttpd. */
static enum MHD_Result completion(server *sv, struct MHD_Connection *c, const char *method, const char *url,
                                  bool chat, const char *body, size_t len) {
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
    g->sv = sv, g->chat = chat, g->fd = -1;
    buf_init(&g->text), buf_init(&g->out);
    snprintf(g->method, sizeof g->method, "%s", method);
    snprintf(g->url, sizeof g->url, "%s", url);
    g->created = time(NULL);
    pthread_mutex_lock(&sv->mu);
    uint64_t nr = ++sv->n_requests;
    pthread_mutex_unlock(&sv->mu);
    snprintf(g->id, sizeof g->id, "%s-%llx%04llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)g->created,
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
    sqlm_session_set_sampling(sv->s, &g->sp);
    sqlm_generate_params gp = sqlm_generate_default_params();
    gp.max_tokens = (int32_t)g->max_tokens;
    gp.ignore_eos = g->ignore_eos;
    gp.stop = (const char *const *)g->stop;
    gp.n_stop = g->n_stop;
    int32_t n_kept = 0;
    int rc = sqlm_generate_begin(sv->s, g->prompt, g->n_prompt, &gp, &n_kept);
    g->n_kept = n_kept;
    if (rc) {
        fail(&e, 500, "evaluating the prompt: %s (%s)", sqlm_errmsg(), sqlm_errstr(rc));
        goto error;
    }
    g->t_prompt = sqlm_now() - g->t0;
    json_decref(j);
    if (g->stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, g, stream_free);
        if (!r) {
            gen_free(g);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);   /* g is the response's now: stream_free() frees it */
        return ret;
    }
    while (!g->finish) gen_step(g);
    g->locked = false;
    session_release(sv);
    gen_log(g);
    if (g->err[0]) {
        fail(&e, 500, "%s", g->err);
        ret = reply_error(c, &e, method, url);
    } else {
        ret = reply_json(c, MHD_HTTP_OK, answer_json(g));
    }
    gen_free(g);
    return ret;
error:
    json_decref(j);
    gen_free(g);   /* gives the session back */
    return reply_error(c, &e, method, url);
}

static enum MHD_Result models(server *sv, struct MHD_Connection *c) {
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:{s:i,s:i}}", "id", sv->model_id, "object", "model", "created",
                          (json_int_t)sv->started, "owned_by", "sqlm", "meta", "n_ctx", sv->n_ctx, "n_vocab",
                          sv->n_vocab);
    return reply_json(c, MHD_HTTP_OK, json_pack("{s:s,s:[o]}", "object", "list", "data", m));
}

/* ------------------------------------------------------------- routing */

enum { EP_HEALTH, EP_MODELS, EP_COMPLETIONS, EP_CHAT };

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
};

/* A connection's request while its body arrives. */
typedef struct request {
    int ep;                  /* EP_*, -1 once an answer is queued */
    buf body;
    size_t seen;             /* bytes of body received (kept up to the limit) */
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
        const struct endpoint *ep = NULL;
        for (size_t i = 0; i < ARRAY_LEN(endpoints); i++)
            if (!strcmp(url, endpoints[i].path)) ep = &endpoints[i];
        if (!ep) {
            fail(&e, 404, "no such endpoint: %s", url);
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
    switch (ep) {
    case EP_HEALTH:
        return reply_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    case EP_MODELS:
        return models(sv, c);
    default:
        return completion(sv, c, method, url, ep == EP_CHAT, r->body.p ? r->body.p : "", r->body.len);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode tc) {
    (void)cls, (void)c, (void)tc;
    request *r = *con_cls;
    if (r) buf_free(&r->body), free(r);
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

int cmd_serve(args *a) {
    if (a->positional) die("serve: unexpected argument '%s' (the model goes after -m)", a->positional);
    if (a->n_predict == 0) die("serve: -n 0 would answer every request with nothing");
    signal(SIGPIPE, SIG_IGN);   /* a client gone mid-answer is an error return, not death */
    server *sv = calloc(1, sizeof *sv);
    if (!sv) die("serve: out of memory");
    sv->a = a;
    sv->m = open_model(a);
    sqlm_model_info mi;
    sqlm_model_info_get(sv->m, &mi);
    if (!mi.n_vocab) die("serve: %s has no vocabulary", a->model);
    sv->tmpl = chat_template_for(a, sv->m);
    sv->s = open_session(a, sv->m);
    sv->n_ctx = sqlm_session_n_ctx(sv->s);
    sv->n_vocab = mi.n_logits;
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
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, sv, MHD_OPTION_EXTERNAL_LOGGER,
                                            http_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
                                            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
                                            (unsigned)a->timeout, MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv,
                                            MHD_OPTION_END);
    if (!d) die("serve: cannot start the HTTP server on %s", addr);
    fprintf(stderr, "%s: serve: %s (context %d tokens) listening on http://%s\n", prog, sv->model_id, sv->n_ctx,
            addr);

    unsigned char sig = 0;
    while (read(sig_pipe[0], &sig, 1) < 0 && errno == EINTR) {}
    fprintf(stderr, "%s: serve: %s, stopping\n", prog, sig == SIGINT ? "interrupted" : "terminated");
    pthread_mutex_lock(&sv->mu);
    sv->stopping = true;   /* waiting requests give up, running ones end at their next token */
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    MHD_stop_daemon(d);   /* joins the connections' threads, closes fd */
    sqlm_session_free(sv->s);
    sqlm_close(sv->m);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    free(sv);
    return 0;
}
