/*
 * duckdb_ext.c - sqlm as SQL functions in DuckDB: the loadable extension
 * sqlm.duckdb_extension (LOAD it with allow_unsigned_extensions set).
 * Scalar sqlm_generate, sqlm_chat, sqlm_tokenize and sqlm_detokenize, and
 * the table function sqlm_tokens whose rows are generated as the query
 * reads them; the functions, options and errors of the SQLite extension
 * (tools/sqlite-ext), whose engine-neutral part both share (tools/ext).
 *
 * DuckDB loads the file with the C extension API (ABI type C_STRUCT, the
 * metadata footer that `make` appends) and calls sqlm_init_c_api.  That API
 * hands over a table of the C API's functions whose several hundred entries
 * would have to be declared by hand here, in order: the pinned library
 * comes from npm without a header.  The functions are bound by name from
 * the library that loads the extension instead (it is in the process
 * already), as src/db/duckdb/api.c binds them for sqlm's own DuckDB engine.
 * So the extension needs a client whose DuckDB exports the C API: one that
 * links libduckdb.so, as the Node client and C programs do.  In a client
 * that links DuckDB statically without exporting it, LOAD fails with a
 * message saying so.
 *
 * A model argument is a model database's path.  The models are opened on
 * first use and kept by the database (the functions' extra info; freed when
 * the database closes).  DuckDB calls a scalar function from several threads
 * at once: each row claims a model handle whose session no other call holds
 * (ext_model_get()), opening another handle of the file when all are held,
 * so up to one handle per thread stays open.  sqlm.duckdb_extension exports
 * only the entry point (tools/duckdb-ext/sqlm.map).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sqlm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ext/common.h"

/* --------------------------------------------- the C API subset, by hand */

typedef uint64_t idx_t;
typedef int duckdb_state;   /* DuckDBSuccess = 0 */
typedef void *duckdb_database, *duckdb_connection, *duckdb_logical_type, *duckdb_value, *duckdb_data_chunk,
    *duckdb_vector, *duckdb_function_info, *duckdb_bind_info, *duckdb_init_info, *duckdb_scalar_function,
    *duckdb_scalar_function_set, *duckdb_table_function, *duckdb_extension_info;
typedef void (*duckdb_delete_callback_t)(void *);
typedef void (*duckdb_scalar_function_t)(duckdb_function_info, duckdb_data_chunk, duckdb_vector);
typedef void (*duckdb_table_function_bind_t)(duckdb_bind_info);
typedef void (*duckdb_table_function_init_t)(duckdb_init_info);
typedef void (*duckdb_table_function_t)(duckdb_function_info, duckdb_data_chunk);

/* What DuckDB passes the entry point (duckdb_extension.h). */
struct duckdb_extension_access {
    void (*set_error)(duckdb_extension_info info, const char *error);
    duckdb_database *(*get_database)(duckdb_extension_info info);
    const void *(*get_api)(duckdb_extension_info info, const char *version);
};

/* A VARCHAR in a vector: 16 bytes, the text inlined after the length when
 * at most 12 bytes. */
typedef union duckdb_string_t {
    struct {
        uint32_t length;
        char prefix[4];
        char *ptr;
    } pointer;
    struct {
        uint32_t length;
        char inlined[12];
    } inlined;
} duckdb_string_t;

enum { T_INTEGER = 4, T_BIGINT = 5, T_DOUBLE = 11, T_VARCHAR = 17 };

/* The minimum C API version the extension asks for; the footer states it
 * too (tools/duckdb-ext/metadata.sh). */
#define C_API_VERSION "v1.2.0"

#define FUNCS(X)                                                                                           \
    X(duckdb_state, duckdb_connect, (duckdb_database, duckdb_connection *))                                \
    X(void, duckdb_disconnect, (duckdb_connection *))                                                      \
    X(void, duckdb_free, (void *))                                                                         \
    X(duckdb_logical_type, duckdb_create_logical_type, (int))                                              \
    X(void, duckdb_destroy_logical_type, (duckdb_logical_type *))                                          \
    X(duckdb_scalar_function, duckdb_create_scalar_function, (void))                                       \
    X(void, duckdb_destroy_scalar_function, (duckdb_scalar_function *))                                    \
    X(void, duckdb_scalar_function_set_name, (duckdb_scalar_function, const char *))                       \
    X(void, duckdb_scalar_function_add_parameter, (duckdb_scalar_function, duckdb_logical_type))           \
    X(void, duckdb_scalar_function_set_return_type, (duckdb_scalar_function, duckdb_logical_type))         \
    X(void, duckdb_scalar_function_set_function, (duckdb_scalar_function, duckdb_scalar_function_t))       \
    X(void, duckdb_scalar_function_set_extra_info, (duckdb_scalar_function, void *, duckdb_delete_callback_t)) \
    X(void *, duckdb_scalar_function_get_extra_info, (duckdb_function_info))                               \
    X(void, duckdb_scalar_function_set_error, (duckdb_function_info, const char *))                        \
    X(void, duckdb_scalar_function_set_volatile, (duckdb_scalar_function))                                 \
    X(void, duckdb_scalar_function_set_special_handling, (duckdb_scalar_function))                         \
    X(duckdb_scalar_function_set, duckdb_create_scalar_function_set, (const char *))                       \
    X(void, duckdb_destroy_scalar_function_set, (duckdb_scalar_function_set *))                            \
    X(duckdb_state, duckdb_add_scalar_function_to_set, (duckdb_scalar_function_set, duckdb_scalar_function)) \
    X(duckdb_state, duckdb_register_scalar_function_set, (duckdb_connection, duckdb_scalar_function_set))  \
    X(idx_t, duckdb_data_chunk_get_size, (duckdb_data_chunk))                                              \
    X(idx_t, duckdb_data_chunk_get_column_count, (duckdb_data_chunk))                                      \
    X(duckdb_vector, duckdb_data_chunk_get_vector, (duckdb_data_chunk, idx_t))                             \
    X(void, duckdb_data_chunk_set_size, (duckdb_data_chunk, idx_t))                                        \
    X(void *, duckdb_vector_get_data, (duckdb_vector))                                                     \
    X(uint64_t *, duckdb_vector_get_validity, (duckdb_vector))                                             \
    X(void, duckdb_vector_ensure_validity_writable, (duckdb_vector))                                       \
    X(void, duckdb_validity_set_row_invalid, (uint64_t *, idx_t))                                          \
    X(void, duckdb_vector_assign_string_element_len, (duckdb_vector, idx_t, const char *, idx_t))          \
    X(duckdb_table_function, duckdb_create_table_function, (void))                                         \
    X(void, duckdb_destroy_table_function, (duckdb_table_function *))                                      \
    X(void, duckdb_table_function_set_name, (duckdb_table_function, const char *))                         \
    X(void, duckdb_table_function_add_parameter, (duckdb_table_function, duckdb_logical_type))             \
    X(void, duckdb_table_function_set_extra_info, (duckdb_table_function, void *, duckdb_delete_callback_t)) \
    X(void, duckdb_table_function_set_bind, (duckdb_table_function, duckdb_table_function_bind_t))         \
    X(void, duckdb_table_function_set_init, (duckdb_table_function, duckdb_table_function_init_t))         \
    X(void, duckdb_table_function_set_function, (duckdb_table_function, duckdb_table_function_t))          \
    X(duckdb_state, duckdb_register_table_function, (duckdb_connection, duckdb_table_function))            \
    X(void, duckdb_bind_add_result_column, (duckdb_bind_info, const char *, duckdb_logical_type))          \
    X(duckdb_value, duckdb_bind_get_parameter, (duckdb_bind_info, idx_t))                                  \
    X(duckdb_value, duckdb_bind_get_named_parameter, (duckdb_bind_info, const char *))                     \
    X(void, duckdb_table_function_add_named_parameter, (duckdb_table_function, const char *, duckdb_logical_type)) \
    X(void, duckdb_bind_set_bind_data, (duckdb_bind_info, void *, duckdb_delete_callback_t))               \
    X(void, duckdb_bind_set_cardinality, (duckdb_bind_info, idx_t, bool))                                  \
    X(void, duckdb_bind_set_error, (duckdb_bind_info, const char *))                                       \
    X(void *, duckdb_init_get_bind_data, (duckdb_init_info))                                               \
    X(void *, duckdb_init_get_extra_info, (duckdb_init_info))                                              \
    X(void, duckdb_init_set_init_data, (duckdb_init_info, void *, duckdb_delete_callback_t))               \
    X(void, duckdb_init_set_max_threads, (duckdb_init_info, idx_t))                                        \
    X(void, duckdb_init_set_error, (duckdb_init_info, const char *))                                       \
    X(void *, duckdb_function_get_bind_data, (duckdb_function_info))                                       \
    X(void *, duckdb_function_get_init_data, (duckdb_function_info))                                       \
    X(void, duckdb_function_set_error, (duckdb_function_info, const char *))                               \
    X(bool, duckdb_is_null_value, (duckdb_value))                                                          \
    X(char *, duckdb_get_varchar, (duckdb_value))                                                          \
    X(int64_t, duckdb_get_int64, (duckdb_value))                                                           \
    X(void, duckdb_destroy_value, (duckdb_value *))

static struct {
#define X(ret, name, args) ret(*name) args;
    FUNCS(X)
#undef X
} api;

static pthread_once_t bind_once = PTHREAD_ONCE_INIT;
static char bind_msg[512];   /* why the C API could not be bound, "" when it was */

/* The library that loads the extension: the one holding DuckDB's own entry
 * point (dladdr), else one already loaded as libduckdb.so. */
static const void *loader_fn;

static void bind_api(void) {
    void *h = NULL;
    Dl_info di;
    if (loader_fn && dladdr(loader_fn, &di) && di.dli_fname) h = dlopen(di.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (h) {
        /* a statically linked client: its program holds DuckDB; see whether it exports the API */
        if (!dlsym(h, "duckdb_connect")) dlclose(h), h = NULL;
    }
    if (!h) h = dlopen("libduckdb.so", RTLD_NOW | RTLD_NOLOAD);
    if (!h) {
        snprintf(bind_msg, sizeof bind_msg,
                 "sqlm: this DuckDB client does not export the DuckDB C API (the extension binds it by "
                 "name, from a libduckdb.so in the process or the client itself)");
        return;
    }
#define X(ret, name, args)                                                                             \
    if (!(api.name = (ret(*) args)dlsym(h, #name))) {                                                  \
        snprintf(bind_msg, sizeof bind_msg, "sqlm: the DuckDB library lacks %s (DuckDB 1.2 or later)", #name); \
        return;                                                                                        \
    }
    FUNCS(X)
#undef X
    /* h stays open: the functions are used until the process ends */
}

/* ------------------------------------------------------------ arguments */

/* Row r of a VARCHAR vector's data: its bytes (not NUL-terminated), *len. */
static const char *str_at(void *data, idx_t r, size_t *len) {
    duckdb_string_t *s = (duckdb_string_t *)data + r;
    *len = s->inlined.length;
    return *len <= 12 ? s->inlined.inlined : s->pointer.ptr;
}

/* The argument columns of a scalar call, flattened by DuckDB. */
typedef struct args {
    int n;
    void *data[4];
    uint64_t *valid[4];
} args;

static void args_get(duckdb_data_chunk in, args *a) {
    a->n = (int)api.duckdb_data_chunk_get_column_count(in);
    if (a->n > 4) a->n = 4;
    for (int k = 0; k < a->n; k++) {
        duckdb_vector v = api.duckdb_data_chunk_get_vector(in, (idx_t)k);
        a->data[k] = api.duckdb_vector_get_data(v);
        a->valid[k] = api.duckdb_vector_get_validity(v);
    }
}

/* Whether argument k of row r is given (present and not NULL). */
static bool arg_ok(const args *a, int k, idx_t r) {
    return k < a->n && (!a->valid[k] || (a->valid[k][r / 64] >> (r % 64) & 1));
}

/* Argument k of row r as a malloc'd C string (text up to a NUL), or NULL
 * when absent, NULL, or memory runs out (*oom then). */
static char *arg_cstr(const args *a, int k, idx_t r, bool *oom) {
    if (!arg_ok(a, k, r)) return NULL;
    size_t len;
    const char *s = str_at(a->data[k], r, &len);
    char *out = strndup(s, len);
    if (!out) *oom = true;
    return out;
}

/* The options (argument k) and max_tokens (argument mt, -1: none) of row r
 * into o; false with *err set. */
static bool row_opts(const args *a, int k, int mt, idx_t r, bool chat, ext_opts *o, char **err) {
    bool oom = false;
    char *json = arg_cstr(a, k, r, &oom);
    if (oom) {
        ext_opts_parse(NULL, chat, o, err);
        *err = NULL;
        return false;
    }
    bool ok = ext_opts_parse(json, chat, o, err);
    free(json);
    if (ok && mt >= 0 && arg_ok(a, mt, r)) {
        int64_t n = ((int64_t *)a->data[mt])[r];
        if (!EXT_MAX_TOKENS_OK(n)) {
            ext_opts_free(o);
            *err = ext_errf(EXT_MAX_TOKENS_MSG);
            return false;
        }
        o->max_tokens = (int32_t)n;
    }
    return ok;
}

/* The model of argument 0 of row r (claim: as ext_model_get()), or NULL
 * with *err set. */
static ext_model *row_model(ext_cache *c, const args *a, idx_t r, size_t mem_budget, bool claim, char **err) {
    bool oom = false;
    char *path = arg_cstr(a, 0, r, &oom);
    ext_model *em = NULL;
    if (oom) *err = NULL;
    else if (!path || !*path) *err = ext_errf("no model given (a model database's path)");
    else em = ext_model_get(c, path, mem_budget, claim, err);
    free(path);
    return em;
}

/* fn's error err (malloc'd, freed here; NULL: out of memory) as the call's. */
static void scalar_error(duckdb_function_info info, const char *fn, char *err) {
    char *msg = ext_errf("%s: %s", fn, err ? err : "out of memory");
    api.duckdb_scalar_function_set_error(info, msg ? msg : "sqlm: out of memory");
    free(msg);
    free(err);
}

static void set_null(duckdb_vector out, idx_t r) {
    api.duckdb_vector_ensure_validity_writable(out);
    api.duckdb_validity_set_row_invalid(api.duckdb_vector_get_validity(out), r);
}

/* ------------------------------------------------------ scalar functions */

/* Generate after ids on the claimed em's session into row r of out and
 * give the claim back; false with *err set. */
static bool generate_row(ext_cache *c, ext_model *em, const int32_t *ids, int32_t n, const ext_opts *o,
                         duckdb_vector out, idx_t r, char **err) {
    char *text = NULL;
    size_t len = 0;
    sqlm_session *s = ext_session(em, err);
    int rc = s ? ext_generate_text(s, ids, n, o, &text, &len, err) : SQLM_ERROR;
    ext_model_put(c, em, rc != SQLM_OK);
    if (!rc) api.duckdb_vector_assign_string_element_len(out, r, text, len);
    free(text);
    return rc == SQLM_OK;
}

/* sqlm_generate(model, prompt [, max_tokens [, options_json]]): the text
 * generated after the prompt.  NULL for a NULL prompt. */
static void fn_generate(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    const char *fn = "sqlm_generate";
    ext_cache *c = api.duckdb_scalar_function_get_extra_info(info);
    args a;
    args_get(in, &a);
    idx_t rows = api.duckdb_data_chunk_get_size(in);
    for (idx_t r = 0; r < rows; r++) {
        if (!arg_ok(&a, 1, r)) {
            set_null(out, r);
            continue;
        }
        ext_opts o;
        char *err = NULL;
        if (!row_opts(&a, 3, 2, r, false, &o, &err)) {
            scalar_error(info, fn, err);
            return;
        }
        ext_model *em = row_model(c, &a, r, o.mem_budget, true, &err);
        size_t len;
        const char *prompt = str_at(a.data[1], r, &len);
        int32_t *ids = NULL, n_ids = 0;
        bool ok = em != NULL;
        if (ok && sqlm_tokenize_prompt(em->m, prompt, len, &ids, &n_ids)) {
            ext_model_put(c, em, false);
            ok = false, err = ext_sqlm_err();
        }
        if (ok) ok = generate_row(c, em, ids, n_ids, &o, out, r, &err);
        sqlm_free(ids);
        ext_opts_free(&o);
        if (!ok) {
            scalar_error(info, fn, err);
            return;
        }
    }
}

/* sqlm_chat(model, messages_json [, options_json]): the assistant's reply,
 * as `sqlm chat` gives it. */
static void fn_chat(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    const char *fn = "sqlm_chat";
    ext_cache *c = api.duckdb_scalar_function_get_extra_info(info);
    args a;
    args_get(in, &a);
    idx_t rows = api.duckdb_data_chunk_get_size(in);
    for (idx_t r = 0; r < rows; r++) {
        if (!arg_ok(&a, 1, r)) {
            set_null(out, r);
            continue;
        }
        ext_opts o;
        char *err = NULL;
        if (!row_opts(&a, 2, -1, r, true, &o, &err)) {
            scalar_error(info, fn, err);
            return;
        }
        bool oom = false, ok;
        char *json = arg_cstr(&a, 1, r, &oom);
        ext_messages msgs = { 0 };
        ext_model *em = NULL;
        int32_t *ids = NULL, n_ids = 0;
        if (!(ok = json && ext_messages_parse(json, &msgs, &err)))
            ;   /* err is set */
        else if (!(ok = (em = row_model(c, &a, r, o.mem_budget, true, &err)) != NULL))
            ;
        else if (sqlm_chat_tokenize(em->m, msgs.msgs, msgs.n, o.tmpl, NULL, &ids, &n_ids)) {
            ext_model_put(c, em, false);
            ok = false, err = ext_sqlm_err();
        } else
            ok = generate_row(c, em, ids, n_ids, &o, out, r, &err);
        sqlm_free(ids);
        ext_messages_free(&msgs);
        free(json);
        ext_opts_free(&o);
        if (!ok) {
            scalar_error(info, fn, err);
            return;
        }
    }
}

/* sqlm_tokenize(model, text): the prompt's ids (BOS first) as a JSON array. */
static void fn_tokenize(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    const char *fn = "sqlm_tokenize";
    ext_cache *c = api.duckdb_scalar_function_get_extra_info(info);
    args a;
    args_get(in, &a);
    idx_t rows = api.duckdb_data_chunk_get_size(in);
    for (idx_t r = 0; r < rows; r++) {
        if (!arg_ok(&a, 1, r)) {
            set_null(out, r);
            continue;
        }
        char *err = NULL;
        ext_model *em = row_model(c, &a, r, 0, false, &err);
        if (!em) {
            scalar_error(info, fn, err);
            return;
        }
        size_t len;
        const char *text = str_at(a.data[1], r, &len);
        int32_t *ids = NULL, n = 0;
        if (sqlm_tokenize_prompt(em->m, text, len, &ids, &n)) {
            scalar_error(info, fn, ext_sqlm_err());
            return;
        }
        char *json = ext_ids_json(ids, n, &len);
        sqlm_free(ids);
        if (!json) {
            scalar_error(info, fn, NULL);
            return;
        }
        api.duckdb_vector_assign_string_element_len(out, r, json, len);
        free(json);
    }
}

/* sqlm_detokenize(model, ids_json): the text of a JSON array of ids. */
static void fn_detokenize(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    const char *fn = "sqlm_detokenize";
    ext_cache *c = api.duckdb_scalar_function_get_extra_info(info);
    args a;
    args_get(in, &a);
    idx_t rows = api.duckdb_data_chunk_get_size(in);
    for (idx_t r = 0; r < rows; r++) {
        if (!arg_ok(&a, 1, r)) {
            set_null(out, r);
            continue;
        }
        bool oom = false;
        char *json = arg_cstr(&a, 1, r, &oom), *err = NULL, *text = NULL;
        int32_t *ids = NULL, n = 0;
        size_t len = 0;
        ext_model *em = NULL;
        bool ok = json && ext_ids_parse(json, &ids, &n, &err) && (em = row_model(c, &a, r, 0, false, &err));
        if (ok && sqlm_detokenize(em->m, ids, n, &text, &len)) ok = false, err = ext_sqlm_err();
        if (ok) api.duckdb_vector_assign_string_element_len(out, r, text, len);
        sqlm_free(text);
        free(ids);
        free(json);
        if (!ok) {
            scalar_error(info, fn, err);
            return;
        }
    }
}

/* ------------------------------------------------------------ sqlm_tokens */

/*
 * sqlm_tokens(model, prompt, max_tokens [, options := options_json]): a
 * table with one row per generated token: i (from 0), id, piece (the text
 * released with the token) and logprob.  The arguments are constants,
 * checked when the query is bound; the first call of the function evaluates
 * the prompt, and each call samples one token and returns its row alone, so
 * a query that stops reading (LIMIT) stops generation.  Held-back text comes
 * last in a
 * row whose id and logprob are NULL, as in SQLite.
 */
typedef struct tok_bind {
    char *model, *prompt;        /* prompt NULL: no rows */
    size_t prompt_len;
    ext_opts o;
} tok_bind;

typedef struct tok_state {
    ext_cache *c;
    ext_model *em;               /* claimed while generating */
    sqlm_session *s;
    bool started, done, failed;
    int64_t i;
} tok_state;

static void tok_bind_free(void *p) {
    tok_bind *b = p;
    free(b->model);
    free(b->prompt);
    ext_opts_free(&b->o);
    free(b);
}

static void tok_state_free(void *p) {
    tok_state *st = p;
    if (st->em) ext_model_put(st->c, st->em, st->failed);
    free(st);
}

/* A parameter (v, destroyed here) as a malloc'd string; NULL for SQL NULL
 * or none (or no memory: *oom). */
static char *param_str(duckdb_value v, size_t *len, bool *oom) {
    char *out = NULL;
    if (v && !api.duckdb_is_null_value(v)) {
        char *s = api.duckdb_get_varchar(v);
        if (s) *len = strlen(s), out = strdup(s);
        api.duckdb_free(s);
        if (!out) *oom = true;
    }
    api.duckdb_destroy_value(&v);
    return out;
}

static void tok_bind_fn(duckdb_bind_info info) {
    static const struct {
        const char *name;
        int type;
    } cols[] = { { "i", T_BIGINT }, { "id", T_INTEGER }, { "piece", T_VARCHAR }, { "logprob", T_DOUBLE } };
    for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++) {
        duckdb_logical_type t = api.duckdb_create_logical_type(cols[k].type);
        api.duckdb_bind_add_result_column(info, cols[k].name, t);
        api.duckdb_destroy_logical_type(&t);
    }
    tok_bind *b = calloc(1, sizeof *b);
    char *err = NULL, *options = NULL;
    bool oom = !b, ok = false;
    size_t len = 0;
    if (b) {
        b->model = param_str(api.duckdb_bind_get_parameter(info, 0), &len, &oom);
        b->prompt = param_str(api.duckdb_bind_get_parameter(info, 1), &b->prompt_len, &oom);
        options = param_str(api.duckdb_bind_get_named_parameter(info, "options"), &len, &oom);
        ok = !oom && ext_opts_parse(options, false, &b->o, &err);
        if (ok) {
            duckdb_value v = api.duckdb_bind_get_parameter(info, 2);
            if (v && !api.duckdb_is_null_value(v)) {
                int64_t n = api.duckdb_get_int64(v);
                if (EXT_MAX_TOKENS_OK(n)) b->o.max_tokens = (int32_t)n;
                else ok = false, err = ext_errf(EXT_MAX_TOKENS_MSG);
            }
            api.duckdb_destroy_value(&v);
        }
    }
    free(options);
    if (!ok) {
        char *msg = ext_errf("sqlm_tokens: %s", err ? err : "out of memory");
        api.duckdb_bind_set_error(info, msg ? msg : "sqlm_tokens: out of memory");
        free(msg);
        free(err);
        if (b) tok_bind_free(b);
        return;
    }
    if (b->o.max_tokens >= 0) api.duckdb_bind_set_cardinality(info, (idx_t)b->o.max_tokens, false);
    api.duckdb_bind_set_bind_data(info, b, tok_bind_free);
}

static void tok_init_fn(duckdb_init_info info) {
    tok_state *st = calloc(1, sizeof *st);
    if (!st) {
        api.duckdb_init_set_error(info, "sqlm_tokens: out of memory");
        return;
    }
    st->c = api.duckdb_init_get_extra_info(info);
    api.duckdb_init_set_max_threads(info, 1);   /* one sequence: one thread reads it */
    api.duckdb_init_set_init_data(info, st, tok_state_free);
}

/* The call's error: the generation ends, its session dropped. */
static void tok_fail(duckdb_function_info info, tok_state *st, char *err) {
    char *msg = ext_errf("sqlm_tokens: %s", err ? err : "out of memory");
    api.duckdb_function_set_error(info, msg ? msg : "sqlm_tokens: out of memory");
    free(msg);
    free(err);
    st->failed = st->done = true;
}

/* Claim the model, tokenize the prompt and begin; false with *err set. */
static bool tok_start(const tok_bind *b, tok_state *st, char **err) {
    if (!b->model || !*b->model) {
        *err = ext_errf("no model given (a model database's path)");
        return false;
    }
    if (!(st->em = ext_model_get(st->c, b->model, b->o.mem_budget, true, err))) return false;
    int32_t *ids = NULL, n = 0;
    bool ok = true;
    if (sqlm_tokenize_prompt(st->em->m, b->prompt, b->prompt_len, &ids, &n)) ok = false, *err = ext_sqlm_err();
    if (ok) ok = (st->s = ext_session(st->em, err)) != NULL;
    if (ok) ok = ext_begin(st->s, ids, n, &b->o, err) == SQLM_OK;
    sqlm_free(ids);
    return ok;
}

static void tok_fn(duckdb_function_info info, duckdb_data_chunk out) {
    const tok_bind *b = api.duckdb_function_get_bind_data(info);
    tok_state *st = api.duckdb_function_get_init_data(info);
    api.duckdb_data_chunk_set_size(out, 0);
    if (!st->started) {
        char *err = NULL;
        st->started = true;
        if (!b->prompt) st->done = true;
        else if (!tok_start(b, st, &err)) {
            tok_fail(info, st, err);
            return;
        }
    }
    if (st->done) return;
    sqlm_token_event ev;
    if (sqlm_generate_next(st->s, &ev)) {
        tok_fail(info, st, ext_sqlm_err());
        return;
    }
    if (ev.token < 0 && ev.len == 0) {   /* generation has ended: the claim goes back now */
        st->done = true;
        ext_model_put(st->c, st->em, false);
        st->em = NULL, st->s = NULL;
        return;
    }
    duckdb_vector v[4];
    for (idx_t k = 0; k < 4; k++) v[k] = api.duckdb_data_chunk_get_vector(out, k);
    ((int64_t *)api.duckdb_vector_get_data(v[0]))[0] = st->i++;
    api.duckdb_vector_assign_string_element_len(v[2], 0, ev.text ? ev.text : "", ev.len);
    if (ev.token >= 0) {
        ((int32_t *)api.duckdb_vector_get_data(v[1]))[0] = ev.token;
        ((double *)api.duckdb_vector_get_data(v[3]))[0] = ev.logprob;
    } else {
        set_null(v[1], 0);
        set_null(v[3], 0);
    }
    api.duckdb_data_chunk_set_size(out, 1);
}

/* ------------------------------------------------------------ entry point */

/* Register name with one overload per argument count from min_args to the
 * types' count, each holding a reference to c.  false on failure. */
static bool register_scalar(duckdb_connection con, ext_cache *c, const char *name, duckdb_scalar_function_t fn,
                            const int *types, int n_types, int min_args) {
    duckdb_scalar_function_set set = api.duckdb_create_scalar_function_set(name);
    duckdb_logical_type varchar = api.duckdb_create_logical_type(T_VARCHAR);
    bool ok = set && varchar;
    for (int n = min_args; n <= n_types && ok; n++) {
        duckdb_scalar_function f = api.duckdb_create_scalar_function();
        if (!(ok = f != NULL)) break;
        api.duckdb_scalar_function_set_name(f, name);
        for (int k = 0; k < n; k++) {
            duckdb_logical_type t = api.duckdb_create_logical_type(types[k]);
            api.duckdb_scalar_function_add_parameter(f, t);
            api.duckdb_destroy_logical_type(&t);
        }
        api.duckdb_scalar_function_set_return_type(f, varchar);
        api.duckdb_scalar_function_set_function(f, fn);
        /* generation reads files and samples: never folded or cached; NULL
         * arguments are handled here (a NULL max_tokens is the default) */
        api.duckdb_scalar_function_set_volatile(f);
        api.duckdb_scalar_function_set_special_handling(f);
        ext_cache_ref(c);
        api.duckdb_scalar_function_set_extra_info(f, c, ext_cache_unref);
        ok = api.duckdb_add_scalar_function_to_set(set, f) == 0;
        api.duckdb_destroy_scalar_function(&f);
    }
    ok = ok && api.duckdb_register_scalar_function_set(con, set) == 0;
    api.duckdb_destroy_logical_type(&varchar);
    api.duckdb_destroy_scalar_function_set(&set);
    return ok;
}

/* sqlm_tokens: a table function has one signature in the C API (a second
 * registration of the name is ignored, and there are no table function
 * sets), so the options are a named parameter, options := '{...}', as
 * DuckDB's own table functions take theirs. */
static bool register_tokens(duckdb_connection con, ext_cache *c) {
    static const int types[] = { T_VARCHAR, T_VARCHAR, T_BIGINT };
    duckdb_table_function f = api.duckdb_create_table_function();
    if (!f) return false;
    api.duckdb_table_function_set_name(f, "sqlm_tokens");
    for (int k = 0; k < 3; k++) {
        duckdb_logical_type t = api.duckdb_create_logical_type(types[k]);
        api.duckdb_table_function_add_parameter(f, t);
        api.duckdb_destroy_logical_type(&t);
    }
    duckdb_logical_type varchar = api.duckdb_create_logical_type(T_VARCHAR);
    api.duckdb_table_function_add_named_parameter(f, "options", varchar);
    api.duckdb_destroy_logical_type(&varchar);
    ext_cache_ref(c);
    api.duckdb_table_function_set_extra_info(f, c, ext_cache_unref);
    api.duckdb_table_function_set_bind(f, tok_bind_fn);
    api.duckdb_table_function_set_init(f, tok_init_fn);
    api.duckdb_table_function_set_function(f, tok_fn);
    bool ok = api.duckdb_register_table_function(con, f) == 0;
    api.duckdb_destroy_table_function(&f);
    return ok;
}

__attribute__((visibility("default"))) bool sqlm_init_c_api(duckdb_extension_info info,
                                                            struct duckdb_extension_access *access) {
    /* DuckDB checks the version asked for against its own and sets the
     * error itself when it is not supported */
    if (!access->get_api(info, C_API_VERSION)) return false;
    loader_fn = (const void *)access->get_database;
    pthread_once(&bind_once, bind_api);
    if (bind_msg[0]) {
        access->set_error(info, bind_msg);
        return false;
    }
    duckdb_database *db = access->get_database(info);
    duckdb_connection con = NULL;
    if (!db || api.duckdb_connect(*db, &con)) {
        access->set_error(info, "sqlm: cannot connect to the database to register the functions");
        return false;
    }
    ext_cache *c = ext_cache_new();   /* this function's own reference, dropped at the end */
    static const int gen[] = { T_VARCHAR, T_VARCHAR, T_BIGINT, T_VARCHAR }, two[] = { T_VARCHAR, T_VARCHAR, T_VARCHAR };
    bool ok = c && register_scalar(con, c, "sqlm_generate", fn_generate, gen, 4, 2) &&
              register_scalar(con, c, "sqlm_chat", fn_chat, two, 3, 2) &&
              register_scalar(con, c, "sqlm_tokenize", fn_tokenize, two, 2, 2) &&
              register_scalar(con, c, "sqlm_detokenize", fn_detokenize, two, 2, 2) &&
              register_tokens(con, c);
    api.duckdb_disconnect(&con);
    if (c) ext_cache_unref(c);
    if (!ok) access->set_error(info, "sqlm: registering the functions failed");
    return ok;
}
