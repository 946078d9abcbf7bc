/*
 * common.c - the SQL functions' engine-neutral part (see common.h).
 */
#include "common.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *ext_errf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *ext_sqlm_err(void) { return strdup(sqlm_errmsg()); }

/* ------------------------------------------------------------- the cache */

ext_cache *ext_cache_new(void) {
    ext_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->refs = 1;
    return c;
}

void ext_cache_ref(ext_cache *c) {
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

void ext_cache_unref(void *p) {
    ext_cache *c = p;
    pthread_mutex_lock(&c->lock);
    int refs = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (refs > 0) return;
    for (ext_model *em = c->models, *next; em; em = next) {
        next = em->next;
        sqlm_session_free(em->s);
        sqlm_close(em->m);
        free(em->path);
        free(em);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static ext_model *find(ext_cache *c, const char *path, size_t mem_budget, bool claim) {
    for (ext_model *em = c->models; em; em = em->next)
        if (em->mem_budget == mem_budget && !strcmp(em->path, path) && !(claim && em->busy)) {
            if (claim) em->busy = true;
            return em;
        }
    return NULL;
}

ext_model *ext_model_get(ext_cache *c, const char *path, size_t mem_budget, bool claim, char **err) {
    pthread_mutex_lock(&c->lock);
    ext_model *em = find(c, path, mem_budget, claim);
    pthread_mutex_unlock(&c->lock);
    if (em) return em;
    /* opened outside the lock (it maps the file): two threads may both open
     * the file, and both handles are kept */
    if (!(em = calloc(1, sizeof *em)) || !(em->path = strdup(path))) {
        free(em);
        *err = NULL;
        return NULL;
    }
    sqlm_model_params p = sqlm_model_default_params();
    p.mem_budget = mem_budget;
    if (sqlm_open(path, &p, &em->m)) {
        *err = ext_sqlm_err();
        free(em->path);
        free(em);
        return NULL;
    }
    em->mem_budget = mem_budget;
    em->busy = claim;
    pthread_mutex_lock(&c->lock);
    em->next = c->models;
    c->models = em;
    pthread_mutex_unlock(&c->lock);
    return em;
}

sqlm_session *ext_session(ext_model *em, char **err) {
    if (!em->s && sqlm_session_new(em->m, NULL, &em->s)) {
        *err = ext_sqlm_err();
        return NULL;
    }
    return em->s;
}

void ext_model_put(ext_cache *c, ext_model *em, bool failed) {
    if (failed) {
        sqlm_session_free(em->s);
        em->s = NULL;
    }
    pthread_mutex_lock(&c->lock);
    em->busy = false;
    pthread_mutex_unlock(&c->lock);
}

/* ----------------------------------------------------------- the options */

void ext_opts_free(ext_opts *o) {
    for (int i = 0; i < o->n_stop; i++) free(o->stop[i]);
    free(o->tmpl);
    o->n_stop = 0;
    o->tmpl = NULL;
}

#define OPTION_KEYS                                                                                         \
    "temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty, " \
    "seed, stop, ignore_eos, max_tokens, mem_budget"

/* A number option in [lo, hi]; false with *err set otherwise. */
static bool opt_num(json_t *v, const char *key, double lo, double hi, double *out, char **err) {
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        *err = ext_errf("option %s: expected a number from %g to %g", key, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* An integer option in [lo, hi]. */
static bool opt_int(json_t *v, const char *key, long long lo, long long hi, long long *out, char **err) {
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        *err = ext_errf("option %s: expected an integer from %lld to %lld", key, lo, hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool opt_stop(json_t *v, ext_opts *o, char **err) {
    json_t *one = json_is_string(v) ? v : NULL;
    size_t n = one ? 1 : json_is_array(v) ? json_array_size(v) : (size_t)-1;
    if (n == (size_t)-1 || n > SQLM_MAX_STOP) {
        *err = ext_errf("option stop: expected a string or an array of at most %d strings", SQLM_MAX_STOP);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = one ? one : json_array_get(v, i);
        if (!json_is_string(s)) {
            *err = ext_errf("option stop: element %d is not a string", (int)i);
            return false;
        }
        if (!(o->stop[o->n_stop] = strdup(json_string_value(s)))) {
            *err = NULL;
            return false;
        }
        o->n_stop++;
    }
    return true;
}

bool ext_opts_parse(const char *text, bool chat, ext_opts *o, char **err) {
    memset(o, 0, sizeof *o);
    o->sp = sqlm_sampling_default_params();
    o->sp.temperature = 0;
    o->max_tokens = -1;
    if (!text) return true;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        *err = ext_errf("options: bad JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return false;
    }
    bool ok = json_is_object(root);
    if (!ok) *err = ext_errf("options: expected a JSON object such as {\"temperature\": 0.8}");
    const char *key;
    json_t *val;
    double d = 0;
    long long k = 0;
    json_object_foreach(root, key, val) {
        if (!ok) break;
        if (!strcmp(key, "temperature")) ok = opt_num(val, key, 0, 100, &d, err), o->sp.temperature = (float)d;
        else if (!strcmp(key, "top_k")) ok = opt_int(val, key, 0, 1 << 30, &k, err), o->sp.top_k = (int32_t)k;
        else if (!strcmp(key, "top_p")) ok = opt_num(val, key, 0, 1, &d, err), o->sp.top_p = (float)d;
        else if (!strcmp(key, "min_p")) ok = opt_num(val, key, 0, 1, &d, err), o->sp.min_p = (float)d;
        else if (!strcmp(key, "repeat_penalty"))
            ok = opt_num(val, key, 0.01, 100, &d, err), o->sp.repeat_penalty = (float)d;
        else if (!strcmp(key, "repeat_last_n"))
            ok = opt_int(val, key, -1, 1 << 30, &k, err), o->sp.repeat_last_n = (int32_t)k;
        else if (!strcmp(key, "frequency_penalty"))
            ok = opt_num(val, key, -2, 2, &d, err), o->sp.frequency_penalty = (float)d;
        else if (!strcmp(key, "presence_penalty"))
            ok = opt_num(val, key, -2, 2, &d, err), o->sp.presence_penalty = (float)d;
        else if (!strcmp(key, "seed")) ok = opt_int(val, key, 0, INT64_MAX, &k, err), o->sp.seed = (uint64_t)k;
        else if (!strcmp(key, "max_tokens"))
            ok = opt_int(val, key, -1, 1 << 30, &k, err), o->max_tokens = (int32_t)k;
        else if (!strcmp(key, "stop")) ok = opt_stop(val, o, err);
        else if (!strcmp(key, "ignore_eos")) {
            if (!(ok = json_is_boolean(val))) *err = ext_errf("option ignore_eos: expected true or false");
            else o->ignore_eos = json_is_true(val);
        } else if (!strcmp(key, "mem_budget")) {
            if (json_is_integer(val) && json_integer_value(val) >= 0) o->mem_budget = (size_t)json_integer_value(val);
            else if (!json_is_string(val) || !sqlm_parse_size(json_string_value(val), &o->mem_budget)) {
                *err = ext_errf("option mem_budget: expected a number of bytes or a size such as \"256M\"");
                ok = false;
            }
        } else if (chat && !strcmp(key, "chat_template")) {
            if (!(ok = json_is_string(val))) *err = ext_errf("option chat_template: expected a string");
            else if (!(o->tmpl = strdup(json_string_value(val)))) ok = false, *err = NULL;
        } else {
            *err = ext_errf("unknown option '%s' (%s%s)", key, OPTION_KEYS, chat ? ", chat_template" : "");
            ok = false;
        }
    }
    json_decref(root);
    if (!ok) ext_opts_free(o);
    return ok;
}

/* ----------------------------------------------------- messages and ids */

bool ext_messages_parse(const char *text, ext_messages *out, char **err) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        *err = ext_errf("messages: bad JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return false;
    }
    out->root = root;
    if (!json_is_array(root)) {
        *err = ext_errf("messages: expected a JSON array of {\"role\": ..., \"content\": ...}");
        return false;
    }
    size_t k = json_array_size(root);
    if (!(out->msgs = calloc(k ? k : 1, sizeof *out->msgs))) return *err = NULL, false;
    for (size_t i = 0; i < k; i++) {
        json_t *m = json_array_get(root, i), *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) || (content && !json_is_string(content) && !json_is_null(content))) {
            *err = ext_errf("messages[%d]: expected {\"role\": string, \"content\": string}", (int)i);
            return false;
        }
        out->msgs[i] = (sqlm_chat_message){ json_string_value(role), content ? json_string_value(content) : NULL };
    }
    out->n = (int32_t)k;
    return true;
}

void ext_messages_free(ext_messages *msgs) {
    free(msgs->msgs);
    json_decref(msgs->root);
    memset(msgs, 0, sizeof *msgs);
}

bool ext_ids_parse(const char *text, int32_t **out, int32_t *n_out, char **err) {
    *out = NULL, *n_out = 0;
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_array(root)) {
        *err = root ? ext_errf("ids: expected a JSON array of integers")
                    : ext_errf("ids: bad JSON at line %d, column %d: %s", je.line, je.column, je.text);
        json_decref(root);
        return false;
    }
    size_t n = json_array_size(root);
    int32_t *ids = n <= INT32_MAX ? malloc(sizeof *ids * (n ? n : 1)) : NULL;
    bool ok = ids != NULL;
    if (!ok) *err = NULL;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *v = json_array_get(root, i);
        if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
            ok = false, *err = ext_errf("ids[%d]: expected an integer token id", (int)i);
        else ids[i] = (int32_t)json_integer_value(v);
    }
    json_decref(root);
    if (!ok) free(ids);
    else *out = ids, *n_out = (int32_t)n;
    return ok;
}

char *ext_ids_json(const int32_t *ids, int32_t n, size_t *len) {
    size_t cap = 2 + (size_t)n * 12, at = 0;   /* "-2147483648," at most per id */
    char *s = malloc(cap + 1);
    if (!s) return NULL;
    s[at++] = '[';
    for (int32_t i = 0; i < n; i++) at += (size_t)snprintf(s + at, cap + 1 - at, i ? ",%d" : "%d", ids[i]);
    s[at++] = ']';
    s[at] = 0;
    *len = at;
    return s;
}

/* ------------------------------------------------------------ generation */

int ext_begin(sqlm_session *s, const int32_t *ids, int32_t n, const ext_opts *o, char **err) {
    sqlm_session_set_sampling(s, &o->sp);
    sqlm_generate_params gp = sqlm_generate_default_params();
    gp.max_tokens = o->max_tokens;
    gp.ignore_eos = o->ignore_eos;
    gp.stop = (const char *const *)o->stop;
    gp.n_stop = o->n_stop;
    int rc = sqlm_generate_begin(s, ids, n, &gp, NULL);
    if (rc) *err = ext_sqlm_err();
    return rc;
}

int ext_generate_text(sqlm_session *s, const int32_t *ids, int32_t n, const ext_opts *o, char **text, size_t *len,
                      char **err) {
    *text = NULL, *len = 0;
    int rc = ext_begin(s, ids, n, o, err);
    size_t cap = 0, at = 0;
    char *out = NULL;
    sqlm_token_event ev = { .finish = SQLM_FINISH_NONE };
    while (!rc && !ev.finish) {
        if ((rc = sqlm_generate_next(s, &ev))) {
            *err = ext_sqlm_err();
            break;
        }
        if (at + ev.len + 1 > cap) {
            size_t want = (at + ev.len + 1) * 2;
            char *p = realloc(out, want > 256 ? want : 256);
            if (!p) {
                rc = SQLM_NOMEM, *err = NULL;
                break;
            }
            out = p, cap = want > 256 ? want : 256;
        }
        memcpy(out + at, ev.text, ev.len);
        at += ev.len;
    }
    if (!rc && !out && !(out = malloc(1))) rc = SQLM_NOMEM, *err = NULL;
    if (rc) {
        free(out);
        return rc;
    }
    out[at] = 0;
    *text = out, *len = at;
    return SQLM_OK;
}
