/*
 * engine.c - the DuckDB engine: the backend vtable (db/engine.h)
 * over libduckdb.so (duckdb/api.h): open, exec, queries with bound values
 * and their results, programs, bulk appends.
 *
 * Pure SQL (engine "duckdb"): no function is registered; the DuckDB
 * dialect's templates (sqlgen/emit.c) use only DuckDB's own list functions.
 * Native mode (engine "duckdb-native", same database files): sqlm's C
 * scalar functions (duckdb/functions.c) are registered on the connection
 * and the duckdb-native dialect's templates call them.  Float vectors are
 * FLOAT[] lists: bound from DBV_VEC, read back as DBV_BLOB of float32.
 * Creating a database is the file engines' (db/filedb.c).
 *
 * Not here: memory budgets.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "../../kern/kern.h"
#include "../../layout/layout.h"

/* --------------------------------------------------------------- engine */

#define N_CACHED 8   /* prepared statements kept for repeated query() calls */

/* Rows per row group of the tables import writes: the DuckDB layout's
 * (db/duckdb/layout.c), whose ROW2COL rules count on it. */
#define ROW_GROUP_ROWS ((int)sqlm_layout_duckdb.row_group_rows)

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
        if (!row_valid(cm, off + j)) return sqlm_error(SQLM_DB, "duckdb: %s: NULL inside a vector", d->path);
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
    if (!row_valid(api.duckdb_vector_get_validity(vec), row)) {
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

static int dk_open_native(engine **out, const char *path, const engine_opts *o) {
    int rc = dk_open_as(out, path, o, &sqlm_db_duckdb_native);
    if (rc || o->plain) return rc;
    duck_engine *d = (duck_engine *)*out;
    if ((rc = sqlm_duckdb_register_functions(d->con, d->path))) {
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
