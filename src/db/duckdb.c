/*
 * duckdb.c - the DuckDB engine: the backend vtable over libduckdb.so, loaded
 * with dlopen at run time so sqlm builds and runs without it.  The library
 * comes from the npm package @duckdb/node-bindings-linux-x64, which ships no
 * header: the C API subset used here is declared by hand below, checked
 * against duckdb.h of the pinned version (scripts/install-duckdb.sh).
 *
 * Pure SQL (engine "duckdb"): no function is registered; the DuckDB
 * dialect's templates (sqlgen/emit.c) use only DuckDB's own list functions.
 * Native mode (engine "duckdb-native", same database files): sqlm's C
 * scalar functions are registered on the connection (end of this file) and
 * the duckdb-native dialect's templates call them.  Float vectors are
 * FLOAT[] lists: bound from DBV_VEC, read back as DBV_BLOB of float32.
 *
 * Not here: memory budgets.
 */
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "../kern/kern.h"

/* ------------------------------------------------------ the C API subset */

typedef uint64_t idx_t;
typedef int duckdb_state;             /* DuckDBSuccess = 0, DuckDBError = 1 */
typedef int duckdb_type;              /* enum DUCKDB_TYPE */
typedef void *duckdb_database, *duckdb_connection, *duckdb_prepared_statement, *duckdb_config,
    *duckdb_data_chunk, *duckdb_vector, *duckdb_logical_type, *duckdb_value, *duckdb_appender;

/* Passed by value to duckdb_fetch_chunk: its layout must match exactly. */
typedef struct duckdb_result {
    idx_t deprecated_column_count;
    idx_t deprecated_row_count;
    idx_t deprecated_rows_changed;
    void *deprecated_columns;
    char *deprecated_error_message;
    void *internal_data;
} duckdb_result;
_Static_assert(sizeof(duckdb_result) == 48, "duckdb_result is 48 bytes in duckdb.h");

/* A VARCHAR or BLOB in a vector: 16 bytes, inlined when at most 12. */
typedef struct duckdb_string_t {
    uint32_t length;
    char prefix[4];
    char *ptr;
} duckdb_string_t;

typedef struct duckdb_list_entry {
    uint64_t offset;
    uint64_t length;
} duckdb_list_entry;

enum {
    T_BOOLEAN = 1, T_TINYINT, T_SMALLINT, T_INTEGER, T_BIGINT, T_UTINYINT, T_USMALLINT,
    T_UINTEGER, T_UBIGINT, T_FLOAT, T_DOUBLE, T_HUGEINT = 16, T_VARCHAR = 17, T_BLOB = 18,
    T_LIST = 24, T_UHUGEINT = 32, T_ARRAY = 33,
};

#define DUCKDB_FUNCS(X)                                                                        \
    X(const char *, duckdb_library_version, (void))                                            \
    X(duckdb_state, duckdb_create_config, (duckdb_config *))                                   \
    X(duckdb_state, duckdb_set_config, (duckdb_config, const char *, const char *))            \
    X(void, duckdb_destroy_config, (duckdb_config *))                                          \
    X(duckdb_state, duckdb_open_ext, (const char *, duckdb_database *, duckdb_config, char **)) \
    X(void, duckdb_close, (duckdb_database *))                                                 \
    X(duckdb_state, duckdb_connect, (duckdb_database, duckdb_connection *))                    \
    X(void, duckdb_disconnect, (duckdb_connection *))                                          \
    X(void, duckdb_free, (void *))                                                             \
    X(duckdb_state, duckdb_query, (duckdb_connection, const char *, duckdb_result *))          \
    X(void, duckdb_destroy_result, (duckdb_result *))                                          \
    X(const char *, duckdb_result_error, (duckdb_result *))                                    \
    X(idx_t, duckdb_column_count, (duckdb_result *))                                           \
    X(duckdb_logical_type, duckdb_column_logical_type, (duckdb_result *, idx_t))               \
    X(duckdb_type, duckdb_get_type_id, (duckdb_logical_type))                                  \
    X(duckdb_logical_type, duckdb_list_type_child_type, (duckdb_logical_type))                 \
    X(duckdb_logical_type, duckdb_array_type_child_type, (duckdb_logical_type))                \
    X(idx_t, duckdb_array_type_array_size, (duckdb_logical_type))                              \
    X(duckdb_logical_type, duckdb_create_logical_type, (duckdb_type))                          \
    X(void, duckdb_destroy_logical_type, (duckdb_logical_type *))                              \
    X(duckdb_data_chunk, duckdb_fetch_chunk, (duckdb_result))                                  \
    X(idx_t, duckdb_data_chunk_get_size, (duckdb_data_chunk))                                  \
    X(duckdb_vector, duckdb_data_chunk_get_vector, (duckdb_data_chunk, idx_t))                 \
    X(void, duckdb_destroy_data_chunk, (duckdb_data_chunk *))                                  \
    X(void *, duckdb_vector_get_data, (duckdb_vector))                                         \
    X(uint64_t *, duckdb_vector_get_validity, (duckdb_vector))                                 \
    X(duckdb_vector, duckdb_list_vector_get_child, (duckdb_vector))                            \
    X(duckdb_vector, duckdb_array_vector_get_child, (duckdb_vector))                           \
    X(duckdb_state, duckdb_prepare, (duckdb_connection, const char *, duckdb_prepared_statement *)) \
    X(const char *, duckdb_prepare_error, (duckdb_prepared_statement))                         \
    X(void, duckdb_destroy_prepare, (duckdb_prepared_statement *))                             \
    X(idx_t, duckdb_nparams, (duckdb_prepared_statement))                                      \
    X(duckdb_state, duckdb_clear_bindings, (duckdb_prepared_statement))                        \
    X(duckdb_state, duckdb_bind_int64, (duckdb_prepared_statement, idx_t, int64_t))            \
    X(duckdb_state, duckdb_bind_double, (duckdb_prepared_statement, idx_t, double))            \
    X(duckdb_state, duckdb_bind_varchar_length, (duckdb_prepared_statement, idx_t, const char *, idx_t)) \
    X(duckdb_state, duckdb_bind_blob, (duckdb_prepared_statement, idx_t, const void *, idx_t)) \
    X(duckdb_state, duckdb_bind_null, (duckdb_prepared_statement, idx_t))                      \
    X(duckdb_state, duckdb_bind_value, (duckdb_prepared_statement, idx_t, duckdb_value))       \
    X(duckdb_state, duckdb_execute_prepared, (duckdb_prepared_statement, duckdb_result *))     \
    X(duckdb_value, duckdb_create_float, (float))                                              \
    X(duckdb_value, duckdb_create_list_value, (duckdb_logical_type, duckdb_value *, idx_t))    \
    X(void, duckdb_destroy_value, (duckdb_value *))                                          \
    X(duckdb_state, duckdb_appender_create, (duckdb_connection, const char *, const char *, duckdb_appender *)) \
    X(const char *, duckdb_appender_error, (duckdb_appender))                                  \
    X(duckdb_state, duckdb_appender_destroy, (duckdb_appender *))                              \
    X(idx_t, duckdb_appender_column_count, (duckdb_appender))                                  \
    X(duckdb_logical_type, duckdb_appender_column_type, (duckdb_appender, idx_t))              \
    X(duckdb_state, duckdb_append_data_chunk, (duckdb_appender, duckdb_data_chunk))            \
    X(duckdb_data_chunk, duckdb_create_data_chunk, (duckdb_logical_type *, idx_t))             \
    X(void, duckdb_data_chunk_set_size, (duckdb_data_chunk, idx_t))                            \
    X(duckdb_state, duckdb_list_vector_reserve, (duckdb_vector, idx_t))                        \
    X(duckdb_state, duckdb_list_vector_set_size, (duckdb_vector, idx_t))                       \
    X(void, duckdb_vector_assign_string_element_len, (duckdb_vector, idx_t, const char *, idx_t))

/* Scalar functions (native mode only; loaded when first needed). */
typedef void *duckdb_function_info, *duckdb_scalar_function;
typedef void (*duckdb_scalar_function_t)(duckdb_function_info, duckdb_data_chunk, duckdb_vector);

#define DUCKDB_UDF_FUNCS(X)                                                                    \
    X(duckdb_scalar_function, duckdb_create_scalar_function, (void))                           \
    X(void, duckdb_destroy_scalar_function, (duckdb_scalar_function *))                        \
    X(void, duckdb_scalar_function_set_name, (duckdb_scalar_function, const char *))           \
    X(void, duckdb_scalar_function_add_parameter, (duckdb_scalar_function, duckdb_logical_type)) \
    X(void, duckdb_scalar_function_set_return_type, (duckdb_scalar_function, duckdb_logical_type)) \
    X(void, duckdb_scalar_function_set_function, (duckdb_scalar_function, duckdb_scalar_function_t)) \
    X(duckdb_state, duckdb_register_scalar_function, (duckdb_connection, duckdb_scalar_function)) \
    X(void, duckdb_scalar_function_set_error, (duckdb_function_info, const char *))           \
    X(void, duckdb_scalar_function_set_varargs, (duckdb_scalar_function, duckdb_logical_type)) \
    X(duckdb_logical_type, duckdb_create_list_type, (duckdb_logical_type))                     \
    X(duckdb_logical_type, duckdb_create_array_type, (duckdb_logical_type, idx_t))             \
    X(idx_t, duckdb_data_chunk_get_column_count, (duckdb_data_chunk))                          \
    X(void, duckdb_vector_ensure_validity_writable, (duckdb_vector))                           \
    X(void, duckdb_validity_set_row_invalid, (uint64_t *, idx_t))

static struct {
#define X(ret, name, args) ret(*name) args;
    DUCKDB_FUNCS(X)
    DUCKDB_UDF_FUNCS(X)
#undef X
} api;
static const char *udf_missing;   /* the first scalar-function symbol the library lacks */

/* ------------------------------------------------------------- loading */

/* Where scripts/install-duckdb.sh puts the npm package's library. */
#if defined(__aarch64__)
#define NPM_LIB ".deps/duckdb/node_modules/@duckdb/node-bindings-linux-arm64/libduckdb.so"
#else
#define NPM_LIB ".deps/duckdb/node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so"
#endif

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc;
static char load_msg[PATH_MAX + 512];
static const char *lib_version;

static void *try_open(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }

/* The library: $SQLM_DUCKDB_LIB, else the npm install beside the running
 * program (or its parent: build/ holds the tests), else in the current
 * folder, else the system's libduckdb.so. */
static void *open_library(char *detail, size_t n) {
    const char *env = getenv("SQLM_DUCKDB_LIB");
    detail[0] = 0;
    if (env && *env) {
        void *h = try_open(env);
        if (!h) snprintf(detail, n, ": SQLM_DUCKDB_LIB=%s: %s", env, dlerror());
        return h;
    }
    char exe[PATH_MAX], path[PATH_MAX + 128];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/%s", exe, NPM_LIB);
        void *h = try_open(path);
        if (h) return h;
        snprintf(path, sizeof path, "%s/../%s", exe, NPM_LIB);
        if ((h = try_open(path))) return h;
    }
    void *h = try_open("./" NPM_LIB);
    return h ? h : try_open("libduckdb.so");
}

/* The npm library allocates through its own jemalloc, which returns freed
 * pages to the kernel within a second (DuckDB sets dirty and muzzy decay to
 * 1 s); the next statement of a step then faults them in again, zeroed.  A
 * 1.1B decode step took 140 000 such faults and 0.35 CPU-seconds of system
 * time, and varied from 760 to 1250 ms.  With a 10 s decay a step reuses the
 * pages the one before it freed, as with decay off: best and mean step 627-671
 * and 673-714 ms in two runs of 12 steps after a 25-token prompt, against
 * 656-667 and 690-701 off; 1.66-1.77 million faults for the whole run against
 * 1.53-1.56 off and 3.5 at 1 s.  Decay off is not an option: pages
 * were never handed back, and a process running one short sequence after
 * another (a server) grew by 21 MB a sequence, to 2.2 GB after 70 (110M
 * shape); at 10 s it levels off at about 900 MB.  A value the user set wins;
 * it must be in place before the library's allocator starts. */
#define JE_CONF_ENV "DUCKDB_JE_MALLOC_CONF"
#define JE_CONF "dirty_decay_ms:10000,muzzy_decay_ms:10000"

static void load(void) {
    char detail[PATH_MAX + 128];
    setenv(JE_CONF_ENV, JE_CONF, 0);
    void *h = open_library(detail, sizeof detail);
    if (!h) {
        snprintf(load_msg, sizeof load_msg,
                 "engine duckdb: cannot load libduckdb.so (run scripts/install-duckdb.sh or set "
                 "SQLM_DUCKDB_LIB)%s", detail);
        load_rc = SQLM_UNSUPPORTED;
        return;
    }
#define X(ret, name, args)                                                                   \
    if (!(api.name = (ret(*) args)dlsym(h, #name))) {                                          \
        snprintf(load_msg, sizeof load_msg, "engine duckdb: libduckdb.so lacks %s (DuckDB 1.1 " \
                 "or later is needed)", #name);                                                \
        load_rc = SQLM_UNSUPPORTED;                                                            \
        return;                                                                                \
    }
    DUCKDB_FUNCS(X)
#undef X
#define X(ret, name, args) \
    if (!(api.name = (ret(*) args)dlsym(h, #name)) && !udf_missing) udf_missing = #name;
    DUCKDB_UDF_FUNCS(X)
#undef X
    lib_version = api.duckdb_library_version();
    load_rc = SQLM_OK;
}

int sqlm_duckdb_load(void) {
    pthread_once(&load_once, load);
    return load_rc ? sqlm_error(load_rc, "%s", load_msg) : SQLM_OK;
}

const char *sqlm_duckdb_lib_version(void) { return load_rc == SQLM_OK ? lib_version : NULL; }

/* --------------------------------------------------------------- engine */

#define N_CACHED 8   /* prepared statements kept for repeated query() calls */

/*
 * Rows per row group of the tables import writes: 2048, the smallest DuckDB
 * accepts (one vector).  It was meant to let a scan of more than 2048 rows
 * use both cores, but DuckDB 1.5.6 gives a table scan one task per 122,880
 * rows whatever the row group size (an 11264 x 2048 float32 product: 17.9 ms
 * on 2 threads, 18.3 on 1); ROW2COL's subqueries, one pipeline each, are
 * what gives a product a second thread (11.8 ms; README, "ROW2COL").
 */
#define ROW_GROUP_ROWS 2048

typedef struct duck_engine {
    engine base;
    duckdb_database db;
    duckdb_connection con;
    char *path;
    duckdb_prepared_statement cache[N_CACHED];
    char *cache_sql[N_CACHED];
    int cache_next;
    duckdb_prepared_statement *steps;
    char **step_names;
    int n_steps;
    duckdb_logical_type t_float;
    buf scratch[16];      /* per-column copies: NUL-terminated text, converted vectors */
} duck_engine;

static int dk_result_err(duck_engine *d, duckdb_result *r, const char *sql) {
    const char *m = api.duckdb_result_error(r);
    int rc = sqlm_error(SQLM_DB, "duckdb: %s: %s (in: %.200s)", d->path, m ? m : "unknown error", sql);
    api.duckdb_destroy_result(r);
    return rc;
}

static void dk_free_steps(duck_engine *d) {
    for (int i = 0; i < d->n_steps; i++) {
        api.duckdb_destroy_prepare(&d->steps[i]);
        free(d->step_names[i]);
    }
    free(d->steps);
    free(d->step_names);
    d->steps = NULL;
    d->step_names = NULL;
    d->n_steps = 0;
}

static void dk_close(engine *e) {
    duck_engine *d = (duck_engine *)e;
    if (!d) return;
    dk_free_steps(d);
    for (int i = 0; i < N_CACHED; i++) {
        if (d->cache[i]) api.duckdb_destroy_prepare(&d->cache[i]);
        free(d->cache_sql[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(d->scratch); i++) sqlm_buf_free(&d->scratch[i]);
    if (d->t_float) api.duckdb_destroy_logical_type(&d->t_float);
    if (d->con) api.duckdb_disconnect(&d->con);
    if (d->db) api.duckdb_close(&d->db);
    free(d->path);
    free(d);
}

static int dk_exec(engine *e, const char *sql) {
    duck_engine *d = (duck_engine *)e;
    duckdb_result r;
    if (api.duckdb_query(d->con, sql, &r) != 0) return dk_result_err(d, &r, sql);
    api.duckdb_destroy_result(&r);
    return SQLM_OK;
}

static int dk_open_as(engine **out, const char *path, const engine_opts *o, const db_methods *m) {
    *out = NULL;
    int rc = sqlm_duckdb_load();
    if (rc) return rc;
    duck_engine *d = calloc(1, sizeof *d);
    if (!d || !(d->path = sqlm_strdup(path))) {
        free(d);
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    d->base.m = m;
    for (size_t i = 0; i < ARRAY_LEN(d->scratch); i++) sqlm_buf_init(&d->scratch[i]);
    duckdb_config cfg = NULL;
    char *err = NULL;
    if (api.duckdb_create_config(&cfg) != 0) {
        rc = sqlm_error(SQLM_NOMEM, "duckdb: out of memory");
        goto fail;
    }
    if (o->readonly) api.duckdb_set_config(cfg, "access_mode", "READ_ONLY");
    if (o->threads > 0) {
        char t[16];
        snprintf(t, sizeof t, "%d", o->threads);
        api.duckdb_set_config(cfg, "threads", t);
    }
    if (o->mem_budget && !o->plain) {
        /* DuckDB's memory_limit caps its buffer manager (table data, hash
         * tables, the KV cache's temporary tables), which spills to a
         * temporary folder beyond it; the rest of the process (the library,
         * the vocabulary, result chunks) takes the remaining quarter. */
        char lim[32];
        snprintf(lim, sizeof lim, "%zuMiB", MAX(o->mem_budget / 4 * 3 >> 20, (size_t)8));
        api.duckdb_set_config(cfg, "memory_limit", lim);
    }
    /* A new database is attached to an in-memory one so that its row groups
     * can be small (see ROW_GROUP_ROWS). */
    const bool attach = o->create && !o->plain;
    if (api.duckdb_open_ext(attach ? ":memory:" : path, &d->db, cfg, &err) != 0) {
        rc = sqlm_error(SQLM_DB, "duckdb: cannot open %s: %s", path, err ? err : "unknown error");
        if (err) api.duckdb_free(err);
        d->db = NULL;
        goto fail;
    }
    if (api.duckdb_connect(d->db, &d->con) != 0) {
        d->con = NULL;
        rc = sqlm_error(SQLM_DB, "duckdb: cannot connect to %s", path);
        goto fail;
    }
    if (attach) {
        buf q;
        sqlm_buf_init(&q);
        sqlm_buf_puts(&q, "ATTACH '");
        for (const char *c = path; *c; c++) sqlm_buf_puts(&q, *c == '\'' ? "''" : (char[2]){ *c, 0 });
        sqlm_buf_appendf(&q, "' AS sqlm_db (ROW_GROUP_SIZE %d); USE sqlm_db", ROW_GROUP_ROWS);
        rc = q.rc ? q.rc : dk_exec(&d->base, q.p);
        sqlm_buf_free(&q);
        if (rc) goto fail;
    }
    d->t_float = api.duckdb_create_logical_type(T_FLOAT);
    /* Random floats compress badly and decompress slowly (ENGINE-NOTES):
     * tables written by this connection are stored uncompressed. */
    if (o->create && !o->plain && (rc = dk_exec(&d->base, "SET force_compression = 'uncompressed'"))) goto fail;
    /* A prepared plan keeps the table statistics of its preparation (DuckDB
     * issues 23704, 24182): a step re-run on new positions then fails ("perfect
     * hash aggregate ... statistics corrupt") or drops rows.  The program's
     * statements are prepared once, so they are planned without statistics. */
    if (!o->plain && (rc = dk_exec(&d->base, "SET disabled_optimizers = 'statistics_propagation'")))
        goto fail;
    api.duckdb_destroy_config(&cfg);
    *out = &d->base;
    return SQLM_OK;
fail:
    if (cfg) api.duckdb_destroy_config(&cfg);
    dk_close(&d->base);
    return rc;
}

static int dk_open(engine **out, const char *path, const engine_opts *o) {
    return dk_open_as(out, path, o, &sqlm_db_duckdb);
}

/* ---------------------------------------------------------- parameters */

static int bind_vals(duck_engine *d, duckdb_prepared_statement st, const db_val *v, int n) {
    api.duckdb_clear_bindings(st);
    for (int i = 0; i < n; i++) {
        idx_t k = (idx_t)i + 1;
        duckdb_state s;
        switch (v[i].type) {
        case DBV_INT: s = api.duckdb_bind_int64(st, k, v[i].i); break;
        case DBV_REAL: s = api.duckdb_bind_double(st, k, v[i].d); break;
        case DBV_TEXT: s = api.duckdb_bind_varchar_length(st, k, v[i].p, v[i].n); break;
        case DBV_BLOB: s = api.duckdb_bind_blob(st, k, v[i].p ? v[i].p : "", v[i].n); break;
        case DBV_VEC: {
            /* a FLOAT[] list value, built from one value per element */
            idx_t len = v[i].n / sizeof(float);
            duckdb_value *el = malloc((len ? len : 1) * sizeof *el);
            if (!el) return sqlm_error(SQLM_NOMEM, "out of memory");
            const float *f = v[i].p;
            for (idx_t j = 0; j < len; j++) el[j] = api.duckdb_create_float(f[j]);
            duckdb_value list = api.duckdb_create_list_value(d->t_float, el, len);
            for (idx_t j = 0; j < len; j++) api.duckdb_destroy_value(&el[j]);
            free(el);
            if (!list) return sqlm_error(SQLM_NOMEM, "duckdb: cannot build a list of %llu floats",
                                         (unsigned long long)len);
            s = api.duckdb_bind_value(st, k, list);
            api.duckdb_destroy_value(&list);
            break;
        }
        default: s = api.duckdb_bind_null(st, k); break;
        }
        if (s != 0)
            return sqlm_error(SQLM_DB, "duckdb: %s: cannot bind parameter %d: %s", d->path, i + 1,
                              api.duckdb_prepare_error(st) ? api.duckdb_prepare_error(st) : "type mismatch");
    }
    return SQLM_OK;
}

/* A prepared statement for sql, from the cache or new (owned by the cache). */
static int prepare_cached(duck_engine *d, const char *sql, duckdb_prepared_statement *out) {
    for (int i = 0; i < N_CACHED; i++)
        if (d->cache_sql[i] && strcmp(d->cache_sql[i], sql) == 0) {
            *out = d->cache[i];
            return SQLM_OK;
        }
    duckdb_prepared_statement st = NULL;
    if (api.duckdb_prepare(d->con, sql, &st) != 0) {
        const char *m = st ? api.duckdb_prepare_error(st) : NULL;
        int rc = sqlm_error(SQLM_DB, "duckdb: %s: %s (in: %.200s)", d->path, m ? m : "cannot prepare", sql);
        if (st) api.duckdb_destroy_prepare(&st);
        return rc;
    }
    int k = d->cache_next;
    d->cache_next = (k + 1) % N_CACHED;
    if (d->cache[k]) api.duckdb_destroy_prepare(&d->cache[k]);
    free(d->cache_sql[k]);
    d->cache[k] = st;
    d->cache_sql[k] = sqlm_strdup(sql);
    if (!d->cache_sql[k]) {
        api.duckdb_destroy_prepare(&d->cache[k]);
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    *out = st;
    return SQLM_OK;
}

/* ------------------------------------------------------------- results */

/* How a result column is decoded. */
typedef struct col_info {
    duckdb_type type;     /* top-level type id */
    duckdb_type child;    /* element type of a LIST or ARRAY */
    idx_t array_size;
} col_info;

static bool valid(const uint64_t *mask, idx_t row) { return !mask || (mask[row / 64] >> (row % 64)) & 1; }

/* A vector value (LIST or ARRAY of FLOAT or DOUBLE) as float32 bytes. */
static int read_vector(duck_engine *d, const col_info *ci, duckdb_vector vec, idx_t row, buf *scratch,
                       db_val *out) {
    duckdb_vector child;
    idx_t off, len;
    if (ci->type == T_LIST) {
        const duckdb_list_entry *le = (const duckdb_list_entry *)api.duckdb_vector_get_data(vec) + row;
        child = api.duckdb_list_vector_get_child(vec);
        off = le->offset;
        len = le->length;
    } else {
        child = api.duckdb_array_vector_get_child(vec);
        off = row * ci->array_size;
        len = ci->array_size;
    }
    const uint64_t *cm = api.duckdb_vector_get_validity(child);
    for (idx_t j = 0; cm && j < len; j++)
        if (!valid(cm, off + j)) return sqlm_error(SQLM_DB, "duckdb: %s: NULL inside a vector", d->path);
    const void *data = api.duckdb_vector_get_data(child);
    out->type = DBV_BLOB;
    out->n = (size_t)len * sizeof(float);
    if (ci->child == T_FLOAT) {
        out->p = (const float *)data + off;
        return SQLM_OK;
    }
    sqlm_buf_reset(scratch);
    const double *dv = (const double *)data + off;
    for (idx_t j = 0; j < len; j++) {
        float f = (float)dv[j];
        sqlm_buf_append(scratch, &f, sizeof f);
    }
    out->p = scratch->p;
    return scratch->rc;
}

static int read_value(duck_engine *d, const col_info *ci, duckdb_vector vec, idx_t row, buf *scratch,
                      db_val *v) {
    memset(v, 0, sizeof *v);
    if (!valid(api.duckdb_vector_get_validity(vec), row)) {
        v->type = DBV_NULL;
        return SQLM_OK;
    }
    const void *data = api.duckdb_vector_get_data(vec);
    v->type = DBV_INT;
    switch (ci->type) {
    case T_BOOLEAN: v->i = ((const bool *)data)[row]; break;
    case T_TINYINT: v->i = ((const int8_t *)data)[row]; break;
    case T_SMALLINT: v->i = ((const int16_t *)data)[row]; break;
    case T_INTEGER: v->i = ((const int32_t *)data)[row]; break;
    case T_BIGINT: v->i = ((const int64_t *)data)[row]; break;
    case T_UTINYINT: v->i = ((const uint8_t *)data)[row]; break;
    case T_USMALLINT: v->i = ((const uint16_t *)data)[row]; break;
    case T_UINTEGER: v->i = ((const uint32_t *)data)[row]; break;
    case T_UBIGINT: v->i = (int64_t)((const uint64_t *)data)[row]; break;
    case T_HUGEINT:
    case T_UHUGEINT: v->i = (int64_t)((const uint64_t *)data)[2 * row]; break;   /* lower half */
    case T_FLOAT: v->type = DBV_REAL, v->d = ((const float *)data)[row]; break;
    case T_DOUBLE: v->type = DBV_REAL, v->d = ((const double *)data)[row]; break;
    case T_VARCHAR:
    case T_BLOB: {
        const duckdb_string_t *s = (const duckdb_string_t *)data + row;
        const char *p = s->length <= 12 ? s->prefix : s->ptr;
        v->n = s->length;
        if (ci->type == T_BLOB) {
            v->type = DBV_BLOB;
            v->p = p;
            break;
        }
        sqlm_buf_reset(scratch);   /* text is handed out NUL-terminated */
        sqlm_buf_append(scratch, p, s->length);
        if (scratch->rc) return scratch->rc;
        v->type = DBV_TEXT;
        v->p = scratch->p;
        break;
    }
    case T_LIST:
    case T_ARRAY:
        if (ci->child == T_FLOAT || ci->child == T_DOUBLE) return read_vector(d, ci, vec, row, scratch, v);
        /* fall through */
    default:
        return sqlm_error(SQLM_UNSUPPORTED, "duckdb: %s: result column of type %d not supported",
                          d->path, ci->type);
    }
    return SQLM_OK;
}

static col_info column_info(duckdb_result *r, idx_t c) {
    col_info ci = { 0, 0, 0 };
    duckdb_logical_type t = api.duckdb_column_logical_type(r, c);
    if (!t) return ci;
    ci.type = api.duckdb_get_type_id(t);
    if (ci.type == T_LIST || ci.type == T_ARRAY) {
        duckdb_logical_type ct = ci.type == T_LIST ? api.duckdb_list_type_child_type(t)
                                                   : api.duckdb_array_type_child_type(t);
        if (ci.type == T_ARRAY) ci.array_size = api.duckdb_array_type_array_size(t);
        ci.child = api.duckdb_get_type_id(ct);
        api.duckdb_destroy_logical_type(&ct);
    }
    api.duckdb_destroy_logical_type(&t);
    return ci;
}

/* Call cb for every row of r (destroyed here). */
static int deliver(duck_engine *d, duckdb_result *r, db_row_cb cb, void *ctx) {
    int rc = SQLM_OK;
    idx_t nc = api.duckdb_column_count(r);
    col_info ci[16];
    db_val vals[16];
    nc = MIN(nc, (idx_t)ARRAY_LEN(vals));
    for (idx_t c = 0; c < nc; c++) ci[c] = column_info(r, c);
    bool stop = !cb;
    while (!stop && !rc) {
        duckdb_data_chunk ch = api.duckdb_fetch_chunk(*r);
        if (!ch) break;
        idx_t n = api.duckdb_data_chunk_get_size(ch);
        duckdb_vector vecs[16];
        for (idx_t c = 0; c < nc; c++) vecs[c] = api.duckdb_data_chunk_get_vector(ch, c);
        for (idx_t row = 0; row < n && !stop && !rc; row++) {
            for (idx_t c = 0; c < nc && !rc; c++) rc = read_value(d, &ci[c], vecs[c], row, &d->scratch[c], &vals[c]);
            if (!rc && cb(ctx, (int)nc, vals)) stop = true;
        }
        api.duckdb_destroy_data_chunk(&ch);
    }
    api.duckdb_destroy_result(r);
    return rc;
}

static int dk_query(engine *e, const char *sql, const db_val *params, int n_params, db_row_cb cb,
                    void *ctx) {
    duck_engine *d = (duck_engine *)e;
    duckdb_result r;
    if (n_params == 0) {
        if (api.duckdb_query(d->con, sql, &r) != 0) return dk_result_err(d, &r, sql);
        return deliver(d, &r, cb, ctx);
    }
    duckdb_prepared_statement st = NULL;
    int rc = prepare_cached(d, sql, &st);
    if (!rc) rc = bind_vals(d, st, params, n_params);
    if (rc) return rc;
    if (api.duckdb_execute_prepared(st, &r) != 0) return dk_result_err(d, &r, sql);
    return deliver(d, &r, cb, ctx);
}

/* -------------------------------------------------------------- program */

static int dk_load_program(engine *e, const sql_program *p) {
    duck_engine *d = (duck_engine *)e;
    dk_free_steps(d);
    int rc = dk_exec(e, p->setup);
    if (!rc) rc = dk_exec(e, p->reset);
    if (rc) return rc;
    d->steps = calloc((size_t)p->n_steps + 1, sizeof *d->steps);
    d->step_names = calloc((size_t)p->n_steps + 1, sizeof *d->step_names);
    if (!d->steps || !d->step_names) return sqlm_error(SQLM_NOMEM, "out of memory");
    for (int i = 0; i < p->n_steps; i++) {
        d->n_steps = i + 1;
        d->step_names[i] = sqlm_strdup(p->steps[i].name);
        if (api.duckdb_prepare(d->con, p->steps[i].sql, &d->steps[i]) != 0) {
            const char *m = d->steps[i] ? api.duckdb_prepare_error(d->steps[i]) : NULL;
            return sqlm_error(SQLM_DB, "duckdb: statement %d (%s): %s", i, p->steps[i].name,
                              m ? m : "cannot prepare");
        }
    }
    return SQLM_OK;
}

static int dk_run_program(engine *e, double *secs) {
    duck_engine *d = (duck_engine *)e;
    for (int i = 0; i < d->n_steps; i++) {
        double t0 = secs ? sqlm_now() : 0;
        duckdb_result r;
        if (api.duckdb_execute_prepared(d->steps[i], &r) != 0) {
            const char *m = api.duckdb_result_error(&r);
            int rc = sqlm_error(SQLM_DB, "duckdb: statement %d (%s): %s", i, d->step_names[i],
                                m ? m : "unknown error");
            api.duckdb_destroy_result(&r);
            return rc;
        }
        api.duckdb_destroy_result(&r);
        if (secs) secs[i] += sqlm_now() - t0;
    }
    return SQLM_OK;
}

/* ------------------------------------------------------------- appending */

/* Row r of a FLOAT[][] vector: v's floats as rows of v->i floats each
 * (dbv_rows()), after the *total rows of the rows before it. */
static int put_rows(duckdb_vector vec, idx_t r, const db_val *v, idx_t *total) {
    const idx_t width = (idx_t)v->i, n = v->n / sizeof(float) / width;
    if (n * width * sizeof(float) != v->n)
        return sqlm_error(SQLM_RANGE, "duckdb: %zu bytes are not rows of %lld floats", v->n, (long long)v->i);
    duckdb_vector rows = api.duckdb_list_vector_get_child(vec);
    if (api.duckdb_list_vector_reserve(vec, *total + n) != 0 ||
        api.duckdb_list_vector_reserve(rows, (*total + n) * width) != 0)
        return sqlm_error(SQLM_NOMEM, "duckdb: out of memory");
    duckdb_list_entry *le = (duckdb_list_entry *)api.duckdb_vector_get_data(vec) + r;
    le->offset = *total, le->length = n;
    duckdb_list_entry *re = (duckdb_list_entry *)api.duckdb_vector_get_data(rows) + *total;
    for (idx_t k = 0; k < n; k++) re[k].offset = (*total + k) * width, re[k].length = width;
    float *dst = api.duckdb_vector_get_data(api.duckdb_list_vector_get_child(rows));
    if (n) memcpy(dst + *total * width, v->p, n * width * sizeof(float));
    *total += n;
    api.duckdb_list_vector_set_size(vec, *total);
    api.duckdb_list_vector_set_size(rows, *total * width);
    return SQLM_OK;
}

/*
 * Bulk load through the appender: one data chunk (at most 2048 rows) per
 * call, its vectors filled straight from the values (a FLOAT[] column is one
 * memcpy per row), in the table's own column types.  Tens of times faster
 * than binding list values one float at a time.
 */
static int dk_append(engine *e, const char *table, int ncol, const db_val *vals, int n_rows) {
    duck_engine *d = (duck_engine *)e;
    duckdb_appender ap = NULL;
    if (n_rows <= 0) return SQLM_OK;
    if (n_rows > 2048 || ncol > 64) return sqlm_error(SQLM_RANGE, "duckdb: append of %d rows x %d columns", n_rows, ncol);
    if (api.duckdb_appender_create(d->con, NULL, table, &ap) != 0) {
        int rc = sqlm_error(SQLM_DB, "duckdb: %s: appender on %s: %s", d->path, table,
                            ap && api.duckdb_appender_error(ap) ? api.duckdb_appender_error(ap) : "cannot create");
        if (ap) api.duckdb_appender_destroy(&ap);
        return rc;
    }
    int rc = SQLM_OK;
    duckdb_logical_type types[64] = { 0 };
    duckdb_type ids[64], child[64], grand[64];
    duckdb_data_chunk ch = NULL;
    if ((idx_t)ncol != api.duckdb_appender_column_count(ap)) {
        rc = sqlm_error(SQLM_DB, "duckdb: %s: %s has %d columns to append, not %d", d->path, table,
                        (int)api.duckdb_appender_column_count(ap), ncol);
        goto done;
    }
    for (int c = 0; c < ncol; c++) {
        types[c] = api.duckdb_appender_column_type(ap, (idx_t)c);
        ids[c] = api.duckdb_get_type_id(types[c]);
        child[c] = grand[c] = 0;
        if (ids[c] == T_LIST) {
            duckdb_logical_type ct = api.duckdb_list_type_child_type(types[c]);
            child[c] = api.duckdb_get_type_id(ct);
            if (child[c] == T_LIST) {   /* FLOAT[][] */
                duckdb_logical_type gt = api.duckdb_list_type_child_type(ct);
                grand[c] = api.duckdb_get_type_id(gt);
                api.duckdb_destroy_logical_type(&gt);
            }
            api.duckdb_destroy_logical_type(&ct);
        }
    }
    if (!(ch = api.duckdb_create_data_chunk(types, (idx_t)ncol))) {
        rc = sqlm_error(SQLM_NOMEM, "duckdb: out of memory");
        goto done;
    }
    for (int c = 0; c < ncol && !rc; c++) {
        duckdb_vector vec = api.duckdb_data_chunk_get_vector(ch, (idx_t)c);
        void *data = api.duckdb_vector_get_data(vec);
        idx_t total = 0;
        for (int r = 0; r < n_rows && !rc; r++) {
            const db_val *v = &vals[(size_t)r * (size_t)ncol + (size_t)c];
            bool num = v->type == DBV_INT || v->type == DBV_REAL;
            double dv = v->type == DBV_INT ? (double)v->i : v->d;
            int64_t iv = v->type == DBV_INT ? v->i : (int64_t)v->d;
            switch (ids[c]) {
            case T_INTEGER: if (!num) goto bad; ((int32_t *)data)[r] = (int32_t)iv; break;
            case T_BIGINT: if (!num) goto bad; ((int64_t *)data)[r] = iv; break;
            case T_FLOAT: if (!num) goto bad; ((float *)data)[r] = (float)dv; break;
            case T_DOUBLE: if (!num) goto bad; ((double *)data)[r] = dv; break;
            case T_VARCHAR:
            case T_BLOB:
                if (v->type != DBV_TEXT && v->type != DBV_BLOB) goto bad;
                api.duckdb_vector_assign_string_element_len(vec, (idx_t)r, v->p ? v->p : "", v->n);
                break;
            case T_LIST: {
                if (child[c] == T_LIST && grand[c] == T_FLOAT && v->type == DBV_VEC && v->i > 0) {
                    rc = put_rows(vec, (idx_t)r, v, &total);
                    break;
                }
                if (child[c] != T_FLOAT || (v->type != DBV_VEC && v->type != DBV_BLOB)) goto bad;
                idx_t len = v->n / sizeof(float);
                if (api.duckdb_list_vector_reserve(vec, total + len) != 0) {
                    rc = sqlm_error(SQLM_NOMEM, "duckdb: out of memory");
                    break;
                }
                duckdb_list_entry *le = (duckdb_list_entry *)api.duckdb_vector_get_data(vec) + r;
                le->offset = total, le->length = len;
                float *dst = api.duckdb_vector_get_data(api.duckdb_list_vector_get_child(vec));
                if (len) memcpy(dst + total, v->p, len * sizeof(float));
                total += len;
                api.duckdb_list_vector_set_size(vec, total);
                break;
            }
            default:
            bad:
                rc = sqlm_error(SQLM_UNSUPPORTED, "duckdb: appending value type %d to column %d (type %d) of %s",
                                v->type, c, ids[c], table);
            }
        }
    }
    if (!rc) {
        api.duckdb_data_chunk_set_size(ch, (idx_t)n_rows);
        if (api.duckdb_append_data_chunk(ap, ch) != 0)
            rc = sqlm_error(SQLM_DB, "duckdb: %s: append to %s: %s", d->path, table,
                            api.duckdb_appender_error(ap) ? api.duckdb_appender_error(ap) : "failed");
    }
done:
    if (ch) api.duckdb_destroy_data_chunk(&ch);
    for (int c = 0; c < ncol; c++)
        if (types[c]) api.duckdb_destroy_logical_type(&types[c]);
    if (api.duckdb_appender_destroy(&ap) != 0 && !rc)
        rc = sqlm_error(SQLM_DB, "duckdb: %s: cannot flush the appender of %s", d->path, table);
    return rc;
}

static void dk_remove(const char *path) {
    char wal[PATH_MAX];
    unlink(path);
    snprintf(wal, sizeof wal, "%s.wal", path);
    unlink(wal);
}

const db_methods sqlm_db_duckdb = {
    .name = "duckdb",
    .dialect = DIA_DUCKDB,
    .open = dk_open,
    .close = dk_close,
    .exec = dk_exec,
    .query = dk_query,
    .load_program = dk_load_program,
    .run_program = dk_run_program,
    .remove = dk_remove,
    .create_begin = sqlm_db_file_create_begin,   /* db/filedb.c */
    .create_commit = sqlm_db_file_create_commit,
    .create_abort = sqlm_db_file_create_abort,
    .probe = sqlm_db_file_probe,
    .append = dk_append,
};


/* ------------------------------------------------------ native functions
 *
 * sqlm's kernels (kern/vec.c) as DuckDB scalar functions over whole rows,
 * registered on the connection by the "duckdb-native" engine.  DuckDB hands
 * a scalar function flat input vectors (ENGINE-NOTES), so row r of every
 * argument is at index r.  A NULL argument gives a NULL result.  Each name
 * has one signature: overloads of list and FLOAT[K] make calls ambiguous.
 */

/* A row of a FLOAT[] argument. */
typedef struct frow {
    const float *p;
    idx_t n;
} frow;

typedef struct uarg {
    duckdb_vector v;
    const uint64_t *valid;
    const duckdb_list_entry *le;   /* LIST arguments */
    const void *data;              /* element data of a list, or the values */
    const duckdb_list_entry *le2;  /* inner lists of a FLOAT[][] argument */
} uarg;

/* FLOAT[], TINYINT[32][], FLOAT[][], INTEGER, FLOAT, BLOB */
enum { U_LIST, U_BLOCKS, U_LISTS, U_INT, U_FLOAT, U_BLOB };

static void uarg_init(uarg *a, duckdb_data_chunk in, idx_t col, int kind) {
    memset(a, 0, sizeof *a);
    a->v = api.duckdb_data_chunk_get_vector(in, col);
    a->valid = api.duckdb_vector_get_validity(a->v);
    if (kind == U_INT || kind == U_FLOAT || kind == U_BLOB) {
        a->data = api.duckdb_vector_get_data(a->v);
        return;
    }
    a->le = api.duckdb_vector_get_data(a->v);
    duckdb_vector child = api.duckdb_list_vector_get_child(a->v);
    if (kind == U_LIST) {
        a->data = api.duckdb_vector_get_data(child);
    } else if (kind == U_BLOCKS) {
        a->data = api.duckdb_vector_get_data(api.duckdb_array_vector_get_child(child));
    } else {
        a->le2 = api.duckdb_vector_get_data(child);
        a->data = api.duckdb_vector_get_data(api.duckdb_list_vector_get_child(child));
    }
}

static frow uarg_row(const uarg *a, idx_t r) {
    const duckdb_list_entry *e = &a->le[r];
    return (frow){ (const float *)a->data + e->offset, e->length };
}

/* The int8 values of row r of a TINYINT[32][] argument, and their blocks. */
static const int8_t *uarg_blocks(const uarg *a, idx_t r, idx_t *nb) {
    *nb = a->le[r].length;
    return (const int8_t *)a->data + a->le[r].offset * QK;
}

/* Row r of a BLOB argument. */
static const char *uarg_blob(const uarg *a, idx_t r, idx_t *n) {
    const duckdb_string_t *s = (const duckdb_string_t *)a->data + r;
    *n = s->length;
    return s->length <= 12 ? s->prefix : s->ptr;
}

/* Element k of row r of a FLOAT[][] argument, and the row's element count. */
static idx_t uarg_count(const uarg *a, idx_t r) { return a->le[r].length; }
static frow uarg_elem(const uarg *a, idx_t r, idx_t k) {
    const duckdb_list_entry *e = &a->le2[a->le[r].offset + k];
    return (frow){ (const float *)a->data + e->offset, e->length };
}

static int64_t uarg_int(const uarg *a, idx_t r) { return ((const int32_t *)a->data)[r]; }
static float uarg_float(const uarg *a, idx_t r) { return ((const float *)a->data)[r]; }

/* The output of a list-valued function: rows appended one by one. */
typedef struct uout {
    duckdb_vector v;
    duckdb_list_entry *le;
    idx_t size;
    size_t elem;                   /* bytes per element: 4 (FLOAT) or 8 (DOUBLE) */
} uout;

static void uout_init(uout *o, duckdb_vector v, size_t elem) {
    o->v = v;
    o->le = api.duckdb_vector_get_data(v);
    o->size = 0;
    o->elem = elem;
}

/* Room for row r's n elements, or NULL. */
static void *uout_row(uout *o, idx_t r, idx_t n) {
    if (api.duckdb_list_vector_reserve(o->v, o->size + n) != 0) return NULL;
    char *p = (char *)api.duckdb_vector_get_data(api.duckdb_list_vector_get_child(o->v)) + o->size * o->elem;
    o->le[r].offset = o->size;
    o->le[r].length = n;
    o->size += n;
    return p;
}

static void uout_done(uout *o) { api.duckdb_list_vector_set_size(o->v, o->size); }

static void set_null(duckdb_vector out, idx_t r) {
    api.duckdb_vector_ensure_validity_writable(out);
    api.duckdb_validity_set_row_invalid(api.duckdb_vector_get_validity(out), r);
}

/* Does any of the n arguments hold NULL in row r?  The result is then NULL. */
static bool any_null(const uarg *a, int n, duckdb_vector out, idx_t r) {
    for (int i = 0; i < n; i++)
        if (!valid(a[i].valid, r)) {
            set_null(out, r);
            return true;
        }
    return false;
}

#define UDF_FAIL(msg)                                          \
    do {                                                       \
        api.duckdb_scalar_function_set_error(info, "sqlm: " msg); \
        return;                                                \
    } while (0)

/* sqlm_dot(x FLOAT[], w FLOAT[], ...) -> FLOAT: x . w, where w may come as
 * consecutive parts (a ROW2COL row's pivot columns), each read in place */
static void udf_dot(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1 + 64];
    const int na = (int)api.duckdb_data_chunk_get_column_count(in);
    if (na < 2 || na > (int)ARRAY_LEN(a)) UDF_FAIL("dot: 1 to 64 parts of a row");
    for (int i = 0; i < na; i++) uarg_init(&a[i], in, (idx_t)i, U_LIST);
    float *res = api.duckdb_vector_get_data(out);
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, na, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        idx_t off = 0;
        float s = 0;
        for (int i = 1; i < na; i++) {
            frow w = uarg_row(&a[i], r);
            if (off + w.n > x.n) UDF_FAIL("dot: length mismatch");
            s += sqlm_vec_dot_f32(x.p + off, w.p, (size_t)w.n);
            off += w.n;
        }
        if (off != x.n) UDF_FAIL("dot: length mismatch");
        res[r] = s;
    }
}

/* A Q8_0 activation from a BLOB argument, copied to aligned blocks (kept
 * while rows point at the same bytes); nb = blocks, or 0 if malformed. */
typedef struct qx {
    const char *src;
    block_q8_0 *q;
    size_t nb, cap;
} qx;

static const block_q8_0 *qx_get(qx *x, const uarg *a, idx_t r) {
    idx_t n;
    const char *p = uarg_blob(a, r, &n);
    if (n % sizeof(block_q8_0)) return NULL;
    if (p != x->src || n / sizeof(block_q8_0) != x->nb) {
        x->nb = n / sizeof(block_q8_0);
        if (x->nb > x->cap) {
            free(x->q);
            x->cap = x->nb;
            if (!(x->q = malloc(x->cap * sizeof *x->q))) return x->cap = 0, x->src = NULL, NULL;
        }
        memcpy(x->q, p, n);
        x->src = p;
    }
    return x->q;
}

/* sqlm_qdot(w TINYINT[32][], s FLOAT[], x BLOB) -> FLOAT: a Q8_0/Q4_0 row
 * (int8 values, block scales) times a Q8_0 activation from sqlm_q8, rounded
 * as vec.c's Q8_0 dot: acc = fma(isum, d_w * d_x, acc) in block order. */
static void udf_qdot(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[3];
    uarg_init(&a[0], in, 0, U_BLOCKS), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_BLOB);
    float *res = api.duckdb_vector_get_data(out);
    qx x = { 0 };
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 3, out, r)) continue;
        idx_t nb;
        const int8_t *w = uarg_blocks(&a[0], r, &nb);
        frow s = uarg_row(&a[1], r);
        const block_q8_0 *xq = qx_get(&x, &a[2], r);
        if (!xq || s.n != nb || x.nb != nb) {
            free(x.q);
            UDF_FAIL("qdot: shapes of weights, scales and input disagree");
        }
        res[r] = sqlm_vec_dot_q8s(w, s.p, xq, (size_t)nb);
    }
    free(x.q);
}

/* sqlm_qblocks(w TINYINT[32][], s FLOAT[], x BLOB, b0 INTEGER) -> DOUBLE[]:
 * a chunk's exact block products isum * d_w * d_x, against blocks b0.. of
 * the activation (the fold over chunks happens in SQL). */
static void udf_qblocks(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[4];
    uarg_init(&a[0], in, 0, U_BLOCKS), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_BLOB);
    uarg_init(&a[3], in, 3, U_INT);
    uout o;
    uout_init(&o, out, sizeof(double));
    qx x = { 0 };
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 4, out, r)) continue;
        idx_t nb;
        const int8_t *w = uarg_blocks(&a[0], r, &nb);
        frow s = uarg_row(&a[1], r);
        const block_q8_0 *xq = qx_get(&x, &a[2], r);
        int64_t b0 = uarg_int(&a[3], r);
        double *p = xq && s.n == nb && b0 >= 0 && (idx_t)b0 + nb <= x.nb ? uout_row(&o, r, nb) : NULL;
        if (!p) {
            free(x.q);
            UDF_FAIL("qblocks: blocks outside the input, or out of memory");
        }
        sqlm_vec_q8s_products(w, s.p, xq + b0, (size_t)nb, p);
    }
    free(x.q);
    uout_done(&o);
}

/* sqlm_q8(x FLOAT[]) -> BLOB: x quantized as ggml's x86 backend quantizes a
 * product's input for Q8_0/Q4_0 weights (sqlm_vec_quant_q8_0), as block_q8_0s. */
static void udf_q8(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LIST);
    block_q8_0 *q = NULL;
    size_t cap = 0;
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        if (x.n % QK) {
            free(q);
            UDF_FAIL("q8: length not a multiple of 32");
        }
        if (x.n / QK > cap) {
            free(q);
            cap = x.n / QK;
            if (!(q = malloc(cap * sizeof *q))) UDF_FAIL("q8: out of memory");
        }
        sqlm_vec_quant_q8_0(x.p, q, (size_t)x.n);
        api.duckdb_vector_assign_string_element_len(out, r, (const char *)q, x.n / QK * sizeof *q);
    }
    free(q);
}

/* sqlm_f16(x FLOAT[]) -> FLOAT[]: x rounded to fp16, as ggml's products of
 * F16 weights take it */
static void udf_f16(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LIST);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("f16: out of memory");
        for (idx_t i = 0; i < x.n; i++) p[i] = sqlm_fp16_to_f32(sqlm_f32_to_fp16(x.p[i]));
    }
    uout_done(&o);
}

/* sqlm_rmsnorm(x FLOAT[], g FLOAT[], eps FLOAT) -> FLOAT[] */
static void udf_rmsnorm(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[3];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_FLOAT);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 3, out, r)) continue;
        frow x = uarg_row(&a[0], r), g = uarg_row(&a[1], r);
        if (x.n != g.n || x.n == 0) UDF_FAIL("rmsnorm: length mismatch");
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("rmsnorm: out of memory");
        sqlm_vec_rmsnorm(p, x.p, g.p, (size_t)x.n, uarg_float(&a[2], r));
    }
    uout_done(&o);
}

/* sqlm_rope(x, cs, n_head, n_head_kv, hd, interleaved, q_scale) -> FLOAT[]:
 * q (scaled by q_scale) and the k heads after it rotated; the rest copied. */
static void udf_rope(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[7];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST);
    for (int i = 2; i < 6; i++) uarg_init(&a[i], in, (idx_t)i, U_INT);
    uarg_init(&a[6], in, 6, U_FLOAT);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 7, out, r)) continue;
        frow x = uarg_row(&a[0], r), cs = uarg_row(&a[1], r);
        int64_t nq = uarg_int(&a[2], r), nkv = uarg_int(&a[3], r), hd = uarg_int(&a[4], r);
        float qs = uarg_float(&a[6], r);
        if (nq <= 0 || nkv < 0 || hd <= 0 || hd % 2 || (idx_t)((nq + nkv) * hd) > x.n || cs.n != (idx_t)hd)
            UDF_FAIL("rope: bad shape");
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("rope: out of memory");
        memcpy(p, x.p, x.n * sizeof *p);
        sqlm_vec_rope(p, cs.p, (int)nq, (int)nkv, (int)hd, uarg_int(&a[5], r) != 0, qs);
    }
    uout_done(&o);
}

/* sqlm_swiglu(gu FLOAT[]) -> FLOAT[]: silu(first half) * second half */
static void udf_swiglu(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LIST);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        frow x = uarg_row(&a[0], r);
        if (x.n % 2) UDF_FAIL("swiglu: odd length");
        float *p = uout_row(&o, r, x.n / 2);
        if (!p) UDF_FAIL("swiglu: out of memory");
        sqlm_vec_swiglu(p, x.p, (size_t)(x.n / 2));
    }
    uout_done(&o);
}

/* sqlm_vadd(a FLOAT[], b FLOAT[]) -> FLOAT[] */
static void udf_vadd(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[2];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 2, out, r)) continue;
        frow x = uarg_row(&a[0], r), y = uarg_row(&a[1], r);
        if (x.n != y.n) UDF_FAIL("vadd: length mismatch");
        float *p = uout_row(&o, r, x.n);
        if (!p) UDF_FAIL("vadd: out of memory");
        for (idx_t i = 0; i < x.n; i++) p[i] = x.p[i] + y.p[i];
    }
    uout_done(&o);
}

/* sqlm_qk(q, k, n_head, n_head_kv, hd) -> FLOAT[n_head]: q_h . k_(h / group) */
static void udf_qk(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[5];
    uarg_init(&a[0], in, 0, U_LIST), uarg_init(&a[1], in, 1, U_LIST);
    for (int i = 2; i < 5; i++) uarg_init(&a[i], in, (idx_t)i, U_INT);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 5, out, r)) continue;
        frow q = uarg_row(&a[0], r), k = uarg_row(&a[1], r);
        int64_t nh = uarg_int(&a[2], r), nkv = uarg_int(&a[3], r), hd = uarg_int(&a[4], r);
        if (nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || q.n < (idx_t)(nh * hd) || k.n != (idx_t)(nkv * hd))
            UDF_FAIL("qk: bad shape");
        float *p = uout_row(&o, r, (idx_t)nh);
        if (!p) UDF_FAIL("qk: out of memory");
        for (int64_t h = 0; h < nh; h++) p[h] = sqlm_vec_dot_f32(q.p + h * hd, k.p + (h / (nh / nkv)) * hd, (size_t)hd);
    }
    uout_done(&o);
}

/* sqlm_vmax(s FLOAT[][]) -> FLOAT[]: the element-wise maximum of the lists */
static void udf_vmax(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[1];
    uarg_init(&a[0], in, 0, U_LISTS);
    uout o;
    uout_init(&o, out, sizeof(float));
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 1, out, r)) continue;
        idx_t nk = uarg_count(&a[0], r);
        if (nk == 0) UDF_FAIL("vmax: no lists");
        frow first = uarg_elem(&a[0], r, 0);
        float *p = uout_row(&o, r, first.n);
        if (!p) UDF_FAIL("vmax: out of memory");
        memcpy(p, first.p, first.n * sizeof *p);
        for (idx_t k = 1; k < nk; k++) {
            frow e = uarg_elem(&a[0], r, k);
            if (e.n != first.n) UDF_FAIL("vmax: length mismatch");
            for (idx_t i = 0; i < e.n; i++) p[i] = fmaxf(p[i], e.p[i]);
        }
    }
    uout_done(&o);
}

/* sqlm_attn(s FLOAT[][], mx FLOAT[], v FLOAT[][], n_head, n_head_kv, hd) ->
 * FLOAT[n_head * hd]: per head, sum_k e * v_k / sum_k e with e = exp(s_k - mx),
 * the keys in list order (as db/sqlite.c's sqlm_attn adds them). */
static void udf_attn(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out) {
    uarg a[6];
    uarg_init(&a[0], in, 0, U_LISTS), uarg_init(&a[1], in, 1, U_LIST), uarg_init(&a[2], in, 2, U_LISTS);
    for (int i = 3; i < 6; i++) uarg_init(&a[i], in, (idx_t)i, U_INT);
    uout o;
    uout_init(&o, out, sizeof(float));
    float z[1024];
    for (idx_t r = 0, n = api.duckdb_data_chunk_get_size(in); r < n; r++) {
        if (any_null(a, 6, out, r)) continue;
        int64_t nh = uarg_int(&a[3], r), nkv = uarg_int(&a[4], r), hd = uarg_int(&a[5], r);
        frow mx = uarg_row(&a[1], r);
        idx_t nk = uarg_count(&a[0], r);
        if (nh <= 0 || nh > (int64_t)ARRAY_LEN(z) || nkv <= 0 || nh % nkv || hd <= 0 || mx.n != (idx_t)nh ||
            uarg_count(&a[2], r) != nk)
            UDF_FAIL("attn: bad shape");
        float *p = uout_row(&o, r, (idx_t)(nh * hd));
        if (!p) UDF_FAIL("attn: out of memory");
        memset(p, 0, (size_t)(nh * hd) * sizeof *p);
        memset(z, 0, (size_t)nh * sizeof *z);
        const int64_t group = nh / nkv;
        for (idx_t k = 0; k < nk; k++) {
            frow s = uarg_elem(&a[0], r, k), v = uarg_elem(&a[2], r, k);
            if (s.n != (idx_t)nh || v.n != (idx_t)(nkv * hd)) UDF_FAIL("attn: bad shape");
            for (int64_t h = 0; h < nh; h++) {
                float e = expf(s.p[h] - mx.p[h]), *ph = p + h * hd;
                const float *vh = v.p + (h / group) * hd;
                for (int64_t i = 0; i < hd; i++) ph[i] += e * vh[i];
                z[h] += e;
            }
        }
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < hd; i++) p[h * hd + i] /= z[h];
    }
    uout_done(&o);
}

#undef UDF_FAIL

/* Parameter and result types, by letter: f FLOAT, i INTEGER, d DOUBLE,
 * x BLOB, L FLOAT[], B TINYINT[32][], M FLOAT[][], D DOUBLE[]. */
static const struct {
    const char *name, *params, ret;   /* params ending in '+': more of the last type */
    duckdb_scalar_function_t fn;
} udfs[] = {
    { "sqlm_dot", "LL+", 'f', udf_dot },
    { "sqlm_qdot", "BLx", 'f', udf_qdot },
    { "sqlm_qblocks", "BLxi", 'D', udf_qblocks },
    { "sqlm_q8", "L", 'x', udf_q8 },
    { "sqlm_f16", "L", 'L', udf_f16 },
    { "sqlm_rmsnorm", "LLf", 'L', udf_rmsnorm },
    { "sqlm_rope", "LLiiiif", 'L', udf_rope },
    { "sqlm_swiglu", "L", 'L', udf_swiglu },
    { "sqlm_vadd", "LL", 'L', udf_vadd },
    { "sqlm_qk", "LLiii", 'L', udf_qk },
    { "sqlm_vmax", "M", 'L', udf_vmax },
    { "sqlm_attn", "MLMiii", 'L', udf_attn },
};

static duckdb_logical_type udf_type(char c) {
    duckdb_logical_type f = api.duckdb_create_logical_type(c == 'd' || c == 'D' ? T_DOUBLE : T_FLOAT), t, u;
    switch (c) {
    case 'i': api.duckdb_destroy_logical_type(&f); return api.duckdb_create_logical_type(T_INTEGER);
    case 'x': api.duckdb_destroy_logical_type(&f); return api.duckdb_create_logical_type(T_BLOB);
    case 'f': case 'd': return f;
    case 'L': case 'D': t = api.duckdb_create_list_type(f); break;
    case 'B': {
        duckdb_logical_type i8 = api.duckdb_create_logical_type(T_TINYINT);
        u = api.duckdb_create_array_type(i8, QK);
        api.duckdb_destroy_logical_type(&i8);
        t = api.duckdb_create_list_type(u);
        api.duckdb_destroy_logical_type(&u);
        break;
    }
    default:   /* 'M' */
        u = api.duckdb_create_list_type(f);
        t = api.duckdb_create_list_type(u);
        api.duckdb_destroy_logical_type(&u);
        break;
    }
    api.duckdb_destroy_logical_type(&f);
    return t;
}

static int dk_register_udfs(duck_engine *d) {
    if (udf_missing)
        return sqlm_error(SQLM_UNSUPPORTED, "engine duckdb-native: libduckdb.so %s lacks %s", lib_version,
                          udf_missing);
    for (size_t i = 0; i < ARRAY_LEN(udfs); i++) {
        duckdb_scalar_function f = api.duckdb_create_scalar_function();
        api.duckdb_scalar_function_set_name(f, udfs[i].name);
        for (const char *p = udfs[i].params; *p; p++) {
            duckdb_logical_type t = udf_type(*p == '+' ? p[-1] : *p);
            if (*p == '+') api.duckdb_scalar_function_set_varargs(f, t);
            else api.duckdb_scalar_function_add_parameter(f, t);
            api.duckdb_destroy_logical_type(&t);
        }
        duckdb_logical_type t = udf_type(udfs[i].ret);
        api.duckdb_scalar_function_set_return_type(f, t);
        api.duckdb_destroy_logical_type(&t);
        api.duckdb_scalar_function_set_function(f, udfs[i].fn);
        duckdb_state st = api.duckdb_register_scalar_function(d->con, f);
        api.duckdb_destroy_scalar_function(&f);
        if (st != 0) return sqlm_error(SQLM_DB, "duckdb: %s: cannot register %s", d->path, udfs[i].name);
    }
    return SQLM_OK;
}

static int dk_open_native(engine **out, const char *path, const engine_opts *o) {
    int rc = dk_open_as(out, path, o, &sqlm_db_duckdb_native);
    if (rc || o->plain) return rc;
    if ((rc = dk_register_udfs((duck_engine *)*out))) {
        dk_close(*out);
        *out = NULL;
    }
    return rc;
}

const db_methods sqlm_db_duckdb_native = {
    .name = "duckdb-native",
    .dialect = DIA_DUCKDB_NATIVE,
    .open = dk_open_native,
    .close = dk_close,
    .exec = dk_exec,
    .query = dk_query,
    .load_program = dk_load_program,
    .run_program = dk_run_program,
    .append = dk_append,
    .remove = dk_remove,
    .create_begin = sqlm_db_file_create_begin,   /* db/filedb.c */
    .create_commit = sqlm_db_file_create_commit,
    .create_abort = sqlm_db_file_create_abort,
    .probe = sqlm_db_file_probe,
};
