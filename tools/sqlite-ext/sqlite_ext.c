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
 * The cache, the options and messages JSON and the generation loop are
 * tools/ext/common.c, shared with the DuckDB extension (tools/duckdb-ext).
 *
 * Not here: running the model program on the caller's connection (it runs
 * on a read-only connection of its own on the model's file; see
 * docs/sql-functions.md).
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <sqlm.h>
#include <stdlib.h>
#include <string.h>

#include "../ext/common.h"


/* ------------------------------------------------------------- the cache */

/* The model that name stands for in c, the connection's cache (a
 * connection is used by one thread at a time, so its claims never wait);
 * claim: as ext_model_get().  NULL with *err (malloc'd) set on failure. */
static ext_model *model_get(sqlite3 *db, ext_cache *c, const char *name, size_t mem_budget, bool claim, char **err) {
    if (!name || !*name) {
        *err = ext_errf("no model given (a model database's path or an attached schema's name)");
        return NULL;
    }
    const char *path = sqlite3_db_filename(db, name);   /* NULL unless name is an attached schema */
    if (path && !*path) {
        *err = ext_errf("model: database '%s' is temporary or in memory, not a model file", name);
        return NULL;
    }
    return ext_model_get(c, path ? path : name, mem_budget, claim, err);
}

/* The options argument v (absent or NULL: the defaults), as ext_opts_parse(). */
static bool opts_parse(sqlite3_value *v, bool chat, ext_opts *o, char **err) {
    bool null = !v || sqlite3_value_type(v) == SQLITE_NULL;
    const char *text = null ? NULL : (const char *)sqlite3_value_text(v);
    if (!null && !text) {
        ext_opts_parse(NULL, chat, o, err);
        *err = NULL;   /* out of memory */
        return false;
    }
    return ext_opts_parse(text, chat, o, err);
}

/* fn's error err (malloc'd, freed here; NULL: out of memory) as ctx's result. */
static void result_error(sqlite3_context *ctx, const char *fn, char *err) {
    char *msg = sqlite3_mprintf("%s: %s", fn, err ? err : "out of memory");
    if (msg) sqlite3_result_error(ctx, msg, -1);
    else sqlite3_result_error_nomem(ctx);
    sqlite3_free(msg);
    free(err);
}

/* Generate after ids on the claimed em's session, set the text as ctx's
 * result and give the claim back. */
static void generate_result(sqlite3_context *ctx, ext_cache *c, ext_model *em, const int32_t *ids, int32_t n,
                            const ext_opts *o, const char *fn) {
    char *err = NULL, *text = NULL;
    size_t len = 0;
    sqlm_session *s = ext_session(em, &err);
    int rc = s ? ext_generate_text(s, ids, n, o, &text, &len, &err) : SQLM_ERROR;
    ext_model_put(c, em, rc != SQLM_OK);
    if (rc) result_error(ctx, fn, err);
    else if (len > INT32_MAX) sqlite3_result_error_toobig(ctx), free(text);
    else sqlite3_result_text(ctx, text, (int)len, free);
}

/* ------------------------------------------------------ scalar functions */

/* The model of argument 0 under ctx's connection cache (claim: as
 * ext_model_get()), or NULL with the error set as the result. */
static ext_model *arg_model(sqlite3_context *ctx, sqlite3_value *v, size_t mem_budget, bool claim, const char *fn) {
    char *err = NULL;
    ext_model *em = model_get(sqlite3_context_db_handle(ctx), sqlite3_user_data(ctx),
                              (const char *)sqlite3_value_text(v), mem_budget, claim, &err);
    if (!em) result_error(ctx, fn, err);
    return em;
}

/* The max_tokens argument v (absent or NULL: the options' value) into o;
 * false with the error set as ctx's result. */
static bool arg_max_tokens(sqlite3_context *ctx, sqlite3_value *v, ext_opts *o, const char *fn) {
    if (!v || sqlite3_value_type(v) == SQLITE_NULL) return true;
    sqlite3_int64 n = sqlite3_value_int64(v);
    if (sqlite3_value_numeric_type(v) != SQLITE_INTEGER || !EXT_MAX_TOKENS_OK(n)) {
        result_error(ctx, fn, ext_errf(EXT_MAX_TOKENS_MSG));
        return false;
    }
    o->max_tokens = (int32_t)n;
    return true;
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
    ext_model *em = NULL;
    if (arg_max_tokens(ctx, argc > 2 ? argv[2] : NULL, &o, fn)) em = arg_model(ctx, argv[0], o.mem_budget, true, fn);
    const char *prompt = (const char *)sqlite3_value_text(argv[1]);
    int32_t *ids = NULL, n_ids = 0;
    if (em && sqlm_tokenize_prompt(em->m, prompt, (size_t)sqlite3_value_bytes(argv[1]), &ids, &n_ids)) {
        ext_model_put(sqlite3_user_data(ctx), em, false);
        result_error(ctx, fn, ext_sqlm_err());
    } else if (em) {
        generate_result(ctx, sqlite3_user_data(ctx), em, ids, n_ids, &o, fn);
    }
    sqlm_free(ids);
    ext_opts_free(&o);
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
    ext_messages msgs;
    int32_t *ids = NULL, n_ids = 0;
    ext_model *em = NULL;
    const char *text = (const char *)sqlite3_value_text(argv[1]);
    if (!text || !ext_messages_parse(text, &msgs, &err))
        result_error(ctx, fn, err);
    else if (!(em = arg_model(ctx, argv[0], o.mem_budget, true, fn)))
        ;   /* the error is set */
    else if (sqlm_chat_tokenize(em->m, msgs.msgs, msgs.n, o.tmpl, NULL, &ids, &n_ids)) {
        ext_model_put(sqlite3_user_data(ctx), em, false);
        result_error(ctx, fn, ext_sqlm_err());
    } else
        generate_result(ctx, sqlite3_user_data(ctx), em, ids, n_ids, &o, fn);
    sqlm_free(ids);
    if (text) ext_messages_free(&msgs);
    ext_opts_free(&o);
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
        result_error(ctx, fn, ext_sqlm_err());
        return;
    }
    size_t len = 0;
    char *json = ext_ids_json(ids, n, &len);
    sqlm_free(ids);
    if (!json) sqlite3_result_error_nomem(ctx);
    else sqlite3_result_text(ctx, json, (int)len, free);
}

/* sqlm_detokenize(model, ids_json): the text of a JSON array of ids
 * (control tokens such as BOS left out). */
static void fn_detokenize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *fn = "sqlm_detokenize";
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return;
    const char *json = (const char *)sqlite3_value_text(argv[1]);
    int32_t *ids = NULL, n = 0;
    char *err = NULL;
    if (!json || !ext_ids_parse(json, &ids, &n, &err)) {
        result_error(ctx, fn, err);
        return;
    }
    ext_model *em = arg_model(ctx, argv[0], 0, false, fn);
    char *text = NULL;
    size_t len = 0;
    if (em && sqlm_detokenize(em->m, ids, n, &text, &len))
        result_error(ctx, fn, ext_sqlm_err());
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
    ext_cache *c;
} tok_vtab;

typedef struct tok_cursor {
    sqlite3_vtab_cursor base;
    ext_model *em;               /* claimed while the cursor generates */
    sqlm_session *s;             /* em's session */
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

/* End the cursor's generation: its claim on the model given back. */
static void tok_release(tok_cursor *cur) {
    if (cur->em) ext_model_put(((tok_vtab *)cur->base.pVtab)->c, cur->em, cur->failed);
    cur->em = NULL;
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
    free(err);
    cur->failed = true;
    tok_release(cur);
    return SQLITE_ERROR;
}

/* The next row: one step of generation. */
static int tok_step(tok_cursor *cur) {
    sqlm_token_event ev;
    if (sqlm_generate_next(cur->s, &ev)) return tok_fail(cur, ext_sqlm_err());
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
        if (sqlite3_value_numeric_type(arg[2]) != SQLITE_INTEGER || !EXT_MAX_TOKENS_OK(n)) {
            ext_opts_free(&o);
            return tok_fail(cur, ext_errf(EXT_MAX_TOKENS_MSG));
        }
        o.max_tokens = (int32_t)n;
    }
    int32_t *ids = NULL, n_ids = 0;
    cur->em = model_get(vt->db, vt->c, (const char *)sqlite3_value_text(arg[0]), o.mem_budget, true, &err);
    bool ok = cur->em != NULL;
    if (ok && sqlm_tokenize_prompt(cur->em->m, (const char *)sqlite3_value_text(arg[1]),
                                   (size_t)sqlite3_value_bytes(arg[1]), &ids, &n_ids))
        ok = false, err = ext_sqlm_err();
    if (ok) ok = (cur->s = ext_session(cur->em, &err)) != NULL;
    if (ok) {
        cur->eof = false;
        ok = ext_begin(cur->s, ids, n_ids, &o, &err) == SQLM_OK;
    }
    sqlm_free(ids);
    ext_opts_free(&o);
    return ok ? tok_step(cur) : tok_fail(cur, err);
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
    ext_cache *c = ext_cache_new();   /* this function's own reference, dropped at the end */
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
    for (size_t i = 0; i < sizeof fns / sizeof fns[0] && rc == SQLITE_OK; i++) {
        ext_cache_ref(c);   /* the destructor runs on failure too */
        rc = sqlite3_create_function_v2(db, fns[i].name, fns[i].n_arg, flags, c, fns[i].fn, NULL, NULL,
                                        ext_cache_unref);
    }
    if (rc == SQLITE_OK) {
        ext_cache_ref(c);
        rc = sqlite3_create_module_v2(db, "sqlm_tokens", &tok_module, c, ext_cache_unref);
    }
    if (rc != SQLITE_OK) *err = sqlite3_mprintf("sqlm: registering the functions failed: %s", sqlite3_errmsg(db));
    ext_cache_unref(c);
    return rc;
}
