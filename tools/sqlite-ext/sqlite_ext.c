/*
 * sqlite_ext.c - sqlm as SQL functions: the loadable SQLite extension sqlm.so
 * (entry point sqlite3_sqlm_init, so `.load ./sqlm` finds it).  Scalar
 * sqlm_generate, sqlm_chat, sqlm_tokenize and sqlm_detokenize, and the
 * table-valued sqlm_tokens whose rows are generated as the query reads them.
 * A surface on the public API of include/sqlm.h alone, like the CLI.
 *
 * A model argument is the schema name of a database attached to the
 * connection (its file is opened) or a model database's path.  Models are
 * opened on first use and kept in a cache of the connection (the functions'
 * user data, freed when the connection closes), each with one session, so a
 * later call reuses the mapping and the KV cache.  A model handle runs one
 * sequence at a time (its sessions share the program's tables on its engine
 * connection), so a call that needs a session while another holds it (a
 * sqlm_generate inside a query reading sqlm_tokens on the same model) gets
 * a second handle of the same file, kept as well.  The connection
 * is reached only through the sqlite3_api routines; libsqlm's own engine
 * connections call the system libsqlite3 directly.  sqlm.so exports only the
 * entry point (tools/sqlite-ext/sqlm.map).
 *
 * Not here: running the model program on the caller's connection (it runs
 * on a read-only connection of its own on the model's file; see
 * docs/sql-functions.md), DuckDB.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <jansson.h>
#include <sqlm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------- the cache */

typedef struct ext_model {
    char *path;                  /* the model database's file */
    size_t mem_budget;           /* the budget it was opened with (part of the key) */
    sqlm_model *m;
    sqlm_session *s;             /* its one session, NULL until a call generates */
    bool busy;                   /* s is held by a call or an open sqlm_tokens cursor */
    struct ext_model *next;
} ext_model;

/* The cache of one connection.  Every function and the module hold a
 * reference; the last destructor, when the connection closes, frees it.
 * A connection is used by one thread at a time, so nothing here locks. */
typedef struct ext_conn {
    int refs;
    ext_model *models;
} ext_conn;

static void conn_unref(void *p) {
    ext_conn *c = p;
    if (--c->refs > 0) return;
    for (ext_model *em = c->models, *next; em; em = next) {
        next = em->next;
        sqlm_session_free(em->s);
        sqlm_close(em->m);
        free(em->path);
        free(em);
    }
    free(c);
}

/* The model that name stands for, opened on first use; for_session: one
 * whose session is free.  NULL with *err (sqlite3_malloc'd) set on failure. */
static ext_model *model_get(sqlite3 *db, ext_conn *c, const char *name, size_t mem_budget, bool for_session,
                            char **err) {
    if (!name || !*name) {
        *err = sqlite3_mprintf("no model given (a model database's path or an attached schema's name)");
        return NULL;
    }
    const char *path = sqlite3_db_filename(db, name);   /* NULL unless name is an attached schema */
    if (path && !*path) {
        *err = sqlite3_mprintf("model: database '%s' is temporary or in memory, not a model file", name);
        return NULL;
    }
    if (!path) path = name;
    for (ext_model *em = c->models; em; em = em->next)
        if (em->mem_budget == mem_budget && !strcmp(em->path, path) && !(for_session && em->busy)) return em;
    ext_model *em = calloc(1, sizeof *em);
    if (!em || !(em->path = strdup(path))) {
        free(em);
        *err = sqlite3_mprintf("out of memory");
        return NULL;
    }
    sqlm_model_params p = sqlm_model_default_params();
    p.mem_budget = mem_budget;
    int rc = sqlm_open(path, &p, &em->m);
    if (rc) {
        *err = sqlite3_mprintf("%s", sqlm_errmsg());
        free(em->path);
        free(em);
        return NULL;
    }
    em->mem_budget = mem_budget;
    em->next = c->models;
    c->models = em;
    return em;
}

/* em's session (made on first use), held until session_put(). */
static sqlm_session *session_get(ext_model *em, char **err) {
    if (!em->s && sqlm_session_new(em->m, NULL, &em->s)) {
        *err = sqlite3_mprintf("%s", sqlm_errmsg());
        return NULL;
    }
    em->busy = true;
    return em->s;
}

/* Give em's session back; after a failed generation it is freed (its KV
 * cache is in doubt) and the next call makes a new one. */
static void session_put(ext_model *em, bool failed) {
    if (failed) {
        sqlm_session_free(em->s);
        em->s = NULL;
    }
    em->busy = false;
}

/* ----------------------------------------------------------- the options */

typedef struct ext_opts {
    sqlm_sampling_params sp;     /* greedy, seed 0 unless the options say */
    bool ignore_eos;
    size_t mem_budget;           /* the model's open: 0 = none */
    int32_t max_tokens;          /* -1 = until EOS or the context's end */
    char *stop[SQLM_MAX_STOP];        /* [n_stop], malloc'd */
    int n_stop;
    char *tmpl;                  /* sqlm_chat: a built-in's name or Jinja text, NULL = the model's */
} ext_opts;

static void opts_free(ext_opts *o) {
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
        *err = sqlite3_mprintf("option %s: expected a number from %g to %g", key, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* An integer option in [lo, hi]. */
static bool opt_int(json_t *v, const char *key, long long lo, long long hi, long long *out, char **err) {
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        *err = sqlite3_mprintf("option %s: expected an integer from %lld to %lld", key, lo, hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool opt_stop(json_t *v, ext_opts *o, char **err) {
    json_t *one = json_is_string(v) ? v : NULL;
    size_t n = one ? 1 : json_is_array(v) ? json_array_size(v) : (size_t)-1;
    if (n == (size_t)-1 || n > SQLM_MAX_STOP) {
        *err = sqlite3_mprintf("option stop: expected a string or an array of at most %d strings", SQLM_MAX_STOP);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = one ? one : json_array_get(v, i);
        if (!json_is_string(s)) {
            *err = sqlite3_mprintf("option stop: element %d is not a string", (int)i);
            return false;
        }
        if (!(o->stop[o->n_stop] = strdup(json_string_value(s)))) {
            *err = sqlite3_mprintf("out of memory");
            return false;
        }
        o->n_stop++;
    }
    return true;
}

/*
 * The options argument v (SQL NULL or absent: the defaults), a JSON object:
 * {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
 *  "repeat_penalty": 1.1, "repeat_last_n": 64, "frequency_penalty": 0,
 *  "presence_penalty": 0, "seed": 42, "stop": "\n" or ["a", "b"],
 *  "ignore_eos": true, "max_tokens": 16, "mem_budget": 268435456 or "256M"}
 * and, for sqlm_chat, "chat_template" (a built-in's name or Jinja text).
 * The defaults are greedy decoding (temperature 0) with llama.cpp's other
 * sampling defaults, seed 0.  false with *err set for bad JSON, an unknown
 * key or a value out of range.
 */
static bool opts_parse(sqlite3_value *v, bool chat, ext_opts *o, char **err) {
    memset(o, 0, sizeof *o);
    o->sp = sqlm_sampling_default_params();
    o->sp.temperature = 0;
    o->max_tokens = -1;
    if (!v || sqlite3_value_type(v) == SQLITE_NULL) return true;
    const char *text = (const char *)sqlite3_value_text(v);
    json_error_t je;
    json_t *root = text ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!root) {
        *err = text ? sqlite3_mprintf("options: bad JSON at line %d, column %d: %s", je.line, je.column, je.text)
                    : sqlite3_mprintf("out of memory");
        return false;
    }
    bool ok = json_is_object(root);
    if (!ok) *err = sqlite3_mprintf("options: expected a JSON object such as {\"temperature\": 0.8}");
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
            if (!(ok = json_is_boolean(val))) *err = sqlite3_mprintf("option ignore_eos: expected true or false");
            else o->ignore_eos = json_is_true(val);
        } else if (!strcmp(key, "mem_budget")) {
            if (json_is_integer(val) && json_integer_value(val) >= 0) o->mem_budget = (size_t)json_integer_value(val);
            else if (!json_is_string(val) || !sqlm_parse_size(json_string_value(val), &o->mem_budget)) {
                *err = sqlite3_mprintf("option mem_budget: expected a number of bytes or a size such as \"256M\"");
                ok = false;
            }
        } else if (chat && !strcmp(key, "chat_template")) {
            if (!(ok = json_is_string(val))) *err = sqlite3_mprintf("option chat_template: expected a string");
            else if (!(o->tmpl = strdup(json_string_value(val)))) ok = false, *err = sqlite3_mprintf("out of memory");
        } else {
            *err = sqlite3_mprintf("unknown option '%s' (%s%s)", key, OPTION_KEYS, chat ? ", chat_template" : "");
            ok = false;
        }
    }
    json_decref(root);
    if (!ok) opts_free(o);
    return ok;
}

/* ------------------------------------------------------------ generation */

/* Start generating after ids[0..n) on s with the options. */
static int begin(sqlm_session *s, const int32_t *ids, int32_t n, const ext_opts *o, char **err) {
    sqlm_session_set_sampling(s, &o->sp);
    sqlm_generate_params gp = sqlm_generate_default_params();
    gp.max_tokens = o->max_tokens;
    gp.ignore_eos = o->ignore_eos;
    gp.stop = (const char *const *)o->stop;
    gp.n_stop = o->n_stop;
    int rc = sqlm_generate_begin(s, ids, n, &gp, NULL);
    if (rc) *err = sqlite3_mprintf("%s", sqlm_errmsg());
    return rc;
}

/* fn's error err (sqlite3_malloc'd, freed here) as ctx's result. */
static void result_error(sqlite3_context *ctx, const char *fn, char *err) {
    char *msg = sqlite3_mprintf("%s: %s", fn, err ? err : "out of memory");
    if (msg) sqlite3_result_error(ctx, msg, -1);
    else sqlite3_result_error_nomem(ctx);
    sqlite3_free(msg);
    sqlite3_free(err);
}

/* Generate after ids on a session of em and set the text as ctx's result. */
static void generate_result(sqlite3_context *ctx, ext_model *em, const int32_t *ids, int32_t n, const ext_opts *o,
                            const char *fn) {
    char *err = NULL;
    sqlm_session *s = session_get(em, &err);
    int rc = s ? begin(s, ids, n, o, &err) : SQLM_ERROR;
    sqlite3_str *out = sqlite3_str_new(NULL);
    sqlm_token_event ev = { .finish = rc ? SQLM_FINISH_STOP : SQLM_FINISH_NONE };
    while (!rc && !ev.finish) {
        if ((rc = sqlm_generate_next(s, &ev))) err = sqlite3_mprintf("%s", sqlm_errmsg());
        else sqlite3_str_append(out, ev.text, (int)ev.len);
    }
    if (s) session_put(em, rc != SQLM_OK);
    bool nomem = sqlite3_str_errcode(out) != SQLITE_OK;
    int len = sqlite3_str_length(out);
    char *text = sqlite3_str_finish(out);   /* NULL for no text */
    if (rc) result_error(ctx, fn, err);
    else if (nomem) sqlite3_result_error_nomem(ctx);
    else sqlite3_result_text(ctx, text ? text : "", len, text ? sqlite3_free : SQLITE_STATIC), text = NULL;
    sqlite3_free(text);
}

/* ------------------------------------------------------ scalar functions */

/* The model of argument 0 under ctx's connection cache (for_session: with
 * its session free), or NULL with the error set as the result. */
static ext_model *arg_model(sqlite3_context *ctx, sqlite3_value *v, size_t mem_budget, bool for_session,
                            const char *fn) {
    char *err = NULL;
    ext_model *em = model_get(sqlite3_context_db_handle(ctx), sqlite3_user_data(ctx),
                              (const char *)sqlite3_value_text(v), mem_budget, for_session, &err);
    if (!em) result_error(ctx, fn, err);
    return em;
}

/* sqlm_generate(model, prompt [, max_tokens [, options_json]]): the text
 * generated after the prompt (the continuation alone).  NULL for a NULL
 * prompt. */
static void fn_generate(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const char *fn = "sqlm_generate";
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return;
    ext_opts o;
    char *err = NULL;
    if (!opts_parse(argc > 3 ? argv[3] : NULL, false, &o, &err)) {
        result_error(ctx, fn, err);
        return;
    }
    if (argc > 2 && sqlite3_value_type(argv[2]) != SQLITE_NULL) {
        sqlite3_int64 n = sqlite3_value_int64(argv[2]);
        if (sqlite3_value_numeric_type(argv[2]) != SQLITE_INTEGER || n < -1 || n > (1 << 30)) {
            opts_free(&o);
            result_error(ctx, fn, sqlite3_mprintf("max_tokens: expected an integer >= -1 (-1: until EOS)"));
            return;
        }
        o.max_tokens = (int32_t)n;
    }
    ext_model *em = arg_model(ctx, argv[0], o.mem_budget, true, fn);
    const char *prompt = (const char *)sqlite3_value_text(argv[1]);
    int32_t *ids = NULL, n_ids = 0;
    if (em && sqlm_tokenize_prompt(em->m, prompt, (size_t)sqlite3_value_bytes(argv[1]), &ids, &n_ids))
        result_error(ctx, fn, sqlite3_mprintf("%s", sqlm_errmsg()));
    else if (em)
        generate_result(ctx, em, ids, n_ids, &o, fn);
    sqlm_free(ids);
    opts_free(&o);
}

/* messages_json, an array of {"role": ..., "content": ...}, as messages
 * borrowing root's strings: *out malloc'd, false with *err set. */
static bool parse_messages(json_t *root, sqlm_chat_message **out, int32_t *n, char **err) {
    *out = NULL, *n = 0;
    if (!json_is_array(root)) {
        *err = sqlite3_mprintf("messages: expected a JSON array of {\"role\": ..., \"content\": ...}");
        return false;
    }
    size_t k = json_array_size(root);
    sqlm_chat_message *msgs = calloc(k ? k : 1, sizeof *msgs);
    if (!msgs) return *err = sqlite3_mprintf("out of memory"), false;
    for (size_t i = 0; i < k; i++) {
        json_t *m = json_array_get(root, i), *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) || (content && !json_is_string(content) && !json_is_null(content))) {
            *err = sqlite3_mprintf("messages[%d]: expected {\"role\": string, \"content\": string}", (int)i);
            free(msgs);
            return false;
        }
        msgs[i] = (sqlm_chat_message){ json_string_value(role), content ? json_string_value(content) : NULL };
    }
    *out = msgs, *n = (int32_t)k;
    return true;
}

/* sqlm_chat(model, messages_json [, options_json]): the assistant's reply to
 * the messages rendered with the model's chat template (or the option
 * chat_template), as `sqlm chat` renders them. */
static void fn_chat(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const char *fn = "sqlm_chat";
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return;
    ext_opts o;
    char *err = NULL;
    if (!opts_parse(argc > 2 ? argv[2] : NULL, true, &o, &err)) {
        result_error(ctx, fn, err);
        return;
    }
    json_error_t je;
    json_t *root = json_loads((const char *)sqlite3_value_text(argv[1]), JSON_REJECT_DUPLICATES, &je);
    sqlm_chat_message *msgs = NULL;
    int32_t n_msgs = 0, *ids = NULL, n_ids = 0;
    ext_model *em = NULL;
    if (!root)
        result_error(ctx, fn, sqlite3_mprintf("messages: bad JSON at line %d, column %d: %s", je.line, je.column, je.text));
    else if (!parse_messages(root, &msgs, &n_msgs, &err))
        result_error(ctx, fn, err);
    else if (!(em = arg_model(ctx, argv[0], o.mem_budget, true, fn)))
        ;   /* the error is set */
    else if (sqlm_chat_tokenize(em->m, msgs, n_msgs, o.tmpl, NULL, &ids, &n_ids))
        result_error(ctx, fn, sqlite3_mprintf("%s", sqlm_errmsg()));
    else
        generate_result(ctx, em, ids, n_ids, &o, fn);
    sqlm_free(ids);
    free(msgs);
    json_decref(root);
    opts_free(&o);
}

/* sqlm_tokenize(model, text): the prompt's ids as `sqlm run` tokenizes it
 * (BOS first), as a JSON array. */
static void fn_tokenize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *fn = "sqlm_tokenize";
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return;
    ext_model *em = arg_model(ctx, argv[0], 0, false, fn);
    if (!em) return;
    int32_t *ids = NULL, n = 0;
    if (sqlm_tokenize_prompt(em->m, (const char *)sqlite3_value_text(argv[1]), (size_t)sqlite3_value_bytes(argv[1]),
                             &ids, &n)) {
        result_error(ctx, fn, sqlite3_mprintf("%s", sqlm_errmsg()));
        return;
    }
    sqlite3_str *out = sqlite3_str_new(NULL);
    sqlite3_str_appendchar(out, 1, '[');
    for (int32_t i = 0; i < n; i++) sqlite3_str_appendf(out, i ? ",%d" : "%d", ids[i]);
    sqlite3_str_appendchar(out, 1, ']');
    sqlm_free(ids);
    int len = sqlite3_str_length(out);
    if (sqlite3_str_errcode(out)) {
        sqlite3_free(sqlite3_str_finish(out));
        sqlite3_result_error_nomem(ctx);
    } else {
        sqlite3_result_text(ctx, sqlite3_str_finish(out), len, sqlite3_free);
    }
}

/* sqlm_detokenize(model, ids_json): the text of a JSON array of ids
 * (control tokens such as BOS left out). */
static void fn_detokenize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *fn = "sqlm_detokenize";
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return;
    json_error_t je;
    json_t *root = json_loads((const char *)sqlite3_value_text(argv[1]), 0, &je);
    if (!root || !json_is_array(root)) {
        json_decref(root);
        result_error(ctx, fn, root ? sqlite3_mprintf("ids: expected a JSON array of integers")
                                   : sqlite3_mprintf("ids: bad JSON at line %d, column %d: %s", je.line, je.column, je.text));
        return;
    }
    size_t n = json_array_size(root);
    int32_t *ids = malloc(sizeof *ids * (n ? n : 1));
    char *err = ids ? NULL : sqlite3_mprintf("out of memory");
    for (size_t i = 0; i < n && !err; i++) {
        json_t *v = json_array_get(root, i);
        if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
            err = sqlite3_mprintf("ids[%d]: expected an integer token id", (int)i);
        else ids[i] = (int32_t)json_integer_value(v);
    }
    json_decref(root);
    ext_model *em = err ? NULL : arg_model(ctx, argv[0], 0, false, fn);
    char *text = NULL;
    size_t len = 0;
    if (err) result_error(ctx, fn, err);
    else if (em && sqlm_detokenize(em->m, ids, (int32_t)n, &text, &len))
        result_error(ctx, fn, sqlite3_mprintf("%s", sqlm_errmsg()));
    else if (em)
        sqlite3_result_text(ctx, text, (int)len, SQLITE_TRANSIENT);
    sqlm_free(text);
    free(ids);
}

/* ------------------------------------------------------------ sqlm_tokens */

/*
 * sqlm_tokens(model, prompt [, max_tokens [, options_json]]): an eponymous
 * table-valued function with one row per generated token: i (from 0), id,
 * piece (the text released with the token: the pieces add up to
 * sqlm_generate's text) and logprob.  xFilter evaluates the prompt and
 * samples the first token, each xNext samples the next, so a query that
 * stops reading (LIMIT) stops generation.  Text held back until generation
 * ends (the start of a possible stop string, a split UTF-8 character) comes
 * in a last row with id and logprob NULL.
 */
enum { COL_I, COL_ID, COL_PIECE, COL_LOGPROB, COL_MODEL, COL_PROMPT, COL_MAX_TOKENS, COL_OPTIONS };

typedef struct tok_vtab {
    sqlite3_vtab base;
    sqlite3 *db;
    ext_conn *c;
} tok_vtab;

typedef struct tok_cursor {
    sqlite3_vtab_cursor base;
    ext_model *em;
    sqlm_session *s;             /* held while the cursor generates */
    bool failed;                 /* a step failed: the session is dropped */
    bool eof;
    sqlite3_int64 i;             /* the row's index */
    int32_t id;                  /* -1: the held-back text's row */
    float logprob;
    char *piece;                 /* malloc'd */
    size_t len;
} tok_cursor;

static int tok_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err) {
    (void)argc, (void)argv, (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(i INTEGER, id INTEGER, piece TEXT, logprob REAL, "
                                      "model HIDDEN, prompt HIDDEN, max_tokens HIDDEN, options HIDDEN)");
    if (rc) return rc;
    tok_vtab *v = sqlite3_malloc(sizeof *v);
    if (!v) return SQLITE_NOMEM;
    memset(v, 0, sizeof *v);
    v->db = db;
    v->c = aux;
    sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);   /* reads files: not from triggers or views */
    *out = &v->base;
    return SQLITE_OK;
}

static int tok_disconnect(sqlite3_vtab *v) {
    sqlite3_free(v);
    return SQLITE_OK;
}

/* idxNum: a bit per argument column given by an = constraint, the
 * arguments passed in column order.  model and prompt are required. */
static int tok_best_index(sqlite3_vtab *vt, sqlite3_index_info *info) {
    int slot[4] = { -1, -1, -1, -1 };
    bool unusable = false;
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &info->aConstraint[i];
        if (c->iColumn < COL_MODEL || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
        if (!c->usable) unusable = true;
        else slot[c->iColumn - COL_MODEL] = i;
    }
    if (slot[0] < 0 || slot[1] < 0) {
        if (unusable) return SQLITE_CONSTRAINT;   /* another plan gives the arguments */
        sqlite3_free(vt->zErrMsg);
        vt->zErrMsg = sqlite3_mprintf("sqlm_tokens: give a model and a prompt: sqlm_tokens(model, prompt [, max_tokens "
                                      "[, options_json]])");
        return SQLITE_ERROR;
    }
    int argv_i = 1, mask = 0;
    for (int k = 0; k < 4; k++) {
        if (slot[k] < 0) continue;
        info->aConstraintUsage[slot[k]].argvIndex = argv_i++;
        info->aConstraintUsage[slot[k]].omit = 1;
        mask |= 1 << k;
    }
    info->idxNum = mask;
    info->estimatedCost = 1e6;
    info->estimatedRows = 64;
    return SQLITE_OK;
}

static int tok_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
    (void)vt;
    tok_cursor *cur = sqlite3_malloc(sizeof *cur);
    if (!cur) return SQLITE_NOMEM;
    memset(cur, 0, sizeof *cur);
    cur->eof = true;
    *out = &cur->base;
    return SQLITE_OK;
}

/* End the cursor's generation: its session back to the model. */
static void tok_release(tok_cursor *cur) {
    if (cur->s) session_put(cur->em, cur->failed);
    cur->s = NULL;
    free(cur->piece);
    cur->piece = NULL;
    cur->eof = true;
}

static int tok_close(sqlite3_vtab_cursor *c) {
    tok_release((tok_cursor *)c);
    sqlite3_free(c);
    return SQLITE_OK;
}

static int tok_fail(tok_cursor *cur, char *err) {
    sqlite3_vtab *vt = cur->base.pVtab;
    sqlite3_free(vt->zErrMsg);
    vt->zErrMsg = sqlite3_mprintf("sqlm_tokens: %s", err ? err : "out of memory");
    sqlite3_free(err);
    cur->failed = true;
    tok_release(cur);
    return SQLITE_ERROR;
}

/* The next row: one step of generation. */
static int tok_step(tok_cursor *cur) {
    sqlm_token_event ev;
    if (sqlm_generate_next(cur->s, &ev)) return tok_fail(cur, sqlite3_mprintf("%s", sqlm_errmsg()));
    if (ev.token < 0 && ev.len == 0) {   /* generation has ended */
        tok_release(cur);
        return SQLITE_OK;
    }
    char *p = malloc(ev.len + 1);
    if (!p) return tok_fail(cur, NULL);
    memcpy(p, ev.text, ev.len);
    p[ev.len] = 0;
    free(cur->piece);
    cur->piece = p, cur->len = ev.len;
    cur->id = ev.token, cur->logprob = ev.logprob;
    return SQLITE_OK;
}

static int tok_filter(sqlite3_vtab_cursor *c, int idx_num, const char *idx_str, int argc, sqlite3_value **argv) {
    (void)idx_str, (void)argc;
    tok_cursor *cur = (tok_cursor *)c;
    tok_vtab *vt = (tok_vtab *)c->pVtab;
    tok_release(cur);
    cur->failed = false;
    cur->i = 0;
    sqlite3_value *arg[4] = { 0 };
    for (int k = 0, j = 0; k < 4; k++)
        if (idx_num & 1 << k) arg[k] = argv[j++];
    if (sqlite3_value_type(arg[1]) == SQLITE_NULL) return SQLITE_OK;   /* no prompt: no rows */
    ext_opts o;
    char *err = NULL;
    if (!opts_parse(arg[3], false, &o, &err)) return tok_fail(cur, err);
    if (arg[2] && sqlite3_value_type(arg[2]) != SQLITE_NULL) {
        sqlite3_int64 n = sqlite3_value_int64(arg[2]);
        if (sqlite3_value_numeric_type(arg[2]) != SQLITE_INTEGER || n < -1 || n > (1 << 30)) {
            opts_free(&o);
            return tok_fail(cur, sqlite3_mprintf("max_tokens: expected an integer >= -1 (-1: until EOS)"));
        }
        o.max_tokens = (int32_t)n;
    }
    int32_t *ids = NULL, n_ids = 0;
    cur->em = model_get(vt->db, vt->c, (const char *)sqlite3_value_text(arg[0]), o.mem_budget, true, &err);
    if (cur->em && sqlm_tokenize_prompt(cur->em->m, (const char *)sqlite3_value_text(arg[1]),
                                        (size_t)sqlite3_value_bytes(arg[1]), &ids, &n_ids))
        err = sqlite3_mprintf("%s", sqlm_errmsg());
    if (!err) cur->s = session_get(cur->em, &err);
    if (!err) {
        cur->eof = false;
        begin(cur->s, ids, n_ids, &o, &err);
    }
    sqlm_free(ids);
    opts_free(&o);
    return err ? tok_fail(cur, err) : tok_step(cur);
}

static int tok_next(sqlite3_vtab_cursor *c) {
    tok_cursor *cur = (tok_cursor *)c;
    cur->i++;
    return tok_step(cur);
}

static int tok_eof(sqlite3_vtab_cursor *c) { return ((tok_cursor *)c)->eof; }

static int tok_column(sqlite3_vtab_cursor *c, sqlite3_context *ctx, int col) {
    tok_cursor *cur = (tok_cursor *)c;
    switch (col) {
    case COL_I: sqlite3_result_int64(ctx, cur->i); break;
    case COL_ID: if (cur->id >= 0) sqlite3_result_int(ctx, cur->id); break;
    case COL_PIECE: sqlite3_result_text(ctx, cur->piece ? cur->piece : "", (int)cur->len, SQLITE_TRANSIENT); break;
    case COL_LOGPROB: if (cur->id >= 0) sqlite3_result_double(ctx, cur->logprob); break;
    default: break;   /* the arguments read back as NULL */
    }
    return SQLITE_OK;
}

static int tok_rowid(sqlite3_vtab_cursor *c, sqlite3_int64 *rowid) {
    *rowid = ((tok_cursor *)c)->i;
    return SQLITE_OK;
}

static sqlite3_module tok_module = {
    .iVersion = 0,
    .xConnect = tok_connect,
    .xBestIndex = tok_best_index,
    .xDisconnect = tok_disconnect,
    .xOpen = tok_open,
    .xClose = tok_close,
    .xFilter = tok_filter,
    .xNext = tok_next,
    .xEof = tok_eof,
    .xColumn = tok_column,
    .xRowid = tok_rowid,
};

/* ------------------------------------------------------------ entry point */

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_sqlm_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
    SQLITE_EXTENSION_INIT2(api);
    ext_conn *c = calloc(1, sizeof *c);
    if (!c) return SQLITE_NOMEM;
    static const struct {
        const char *name;
        int n_arg;
        void (*fn)(sqlite3_context *, int, sqlite3_value **);
    } fns[] = {
        { "sqlm_generate", 2, fn_generate }, { "sqlm_generate", 3, fn_generate }, { "sqlm_generate", 4, fn_generate },
        { "sqlm_chat", 2, fn_chat },         { "sqlm_chat", 3, fn_chat },         { "sqlm_tokenize", 2, fn_tokenize },
        { "sqlm_detokenize", 2, fn_detokenize },
    };
    /* generation reads files and is not deterministic under sampling:
     * neither SQLITE_DETERMINISTIC nor SQLITE_INNOCUOUS; DIRECTONLY keeps
     * it out of triggers and views of untrusted schemas */
    int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc = SQLITE_OK;
    c->refs = 1;   /* this function's own, dropped at the end */
    for (size_t i = 0; i < sizeof fns / sizeof fns[0] && rc == SQLITE_OK; i++) {
        c->refs++;   /* the destructor runs on failure too */
        rc = sqlite3_create_function_v2(db, fns[i].name, fns[i].n_arg, flags, c, fns[i].fn, NULL, NULL, conn_unref);
    }
    if (rc == SQLITE_OK) {
        c->refs++;
        rc = sqlite3_create_module_v2(db, "sqlm_tokens", &tok_module, c, conn_unref);
    }
    if (rc != SQLITE_OK) *err = sqlite3_mprintf("sqlm: registering the functions failed: %s", sqlite3_errmsg(db));
    conn_unref(c);
    return rc;
}
