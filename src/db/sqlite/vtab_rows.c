/*
 * vtab_rows.c - batches: the rows of a step's batch as one value (a stack
 * of activations, or a product), which sqlm_stack builds, sqlm_matmul and
 * sqlm_attend take and return, and the table-valued function sqlm_rows turns
 * back into (pos, v) rows.  The format and the pointer type are in
 * sqlite_int.h; this file checks, allocates and counts references.
 */
#include <string.h>

#include "sqlite_int.h"

/* Check a stack or product BLOB and point into it; false if malformed. */
bool sqlm_batch_parse(const void *p, size_t len, uint32_t magic, size_t elem, batch_view *v) {
    const uint8_t *b = p;
    uint32_t mg, n;
    uint64_t width;
    if (!p || len < BATCH_HDR) return false;
    memcpy(&mg, b, 4), memcpy(&n, b + 4, 4), memcpy(&width, b + 8, 8);
    size_t need;
    if (mg != magic || n == 0 || n > MAX_BATCH || width == 0 || width > ((size_t)1 << 32)) return false;
    if (!size_mul((size_t)n, (size_t)width * elem, &need) || !size_add(need, BATCH_HDR + 8 * (size_t)n, &need) ||
        need != len)
        return false;
    v->n = n;
    v->width = width;
    v->pos = (const int64_t *)(b + BATCH_HDR);
    v->data = b + BATCH_HDR + 8 * (size_t)n;
    return true;
}

batch_ref *sqlm_batch_new(size_t len) {
    batch_ref *b = sqlite3_malloc64(32 + (len ? len : 1));
    if (!b) return NULL;
    b->refs = 1;
    b->len = len;
    b->p = (uint8_t *)b + 32;
    return b;
}

void sqlm_batch_unref(void *p) {
    batch_ref *b = p;
    if (b && --b->refs == 0) sqlite3_free(b);
}

void sqlm_batch_result(sqlite3_context *ctx, batch_ref *b) { sqlite3_result_pointer(ctx, b, BATCH_PTR, sqlm_batch_unref); }

/* A reference to the batch in v: 1 (*out set, release with sqlm_batch_unref), 0 if
 * v is NULL, -1 if v is neither a batch pointer nor a BLOB (or no memory). */
int sqlm_batch_take(sqlite3_value *v, batch_ref **out) {
    batch_ref *b = sqlite3_value_pointer(v, BATCH_PTR);
    *out = NULL;
    if (b) {
        b->refs++;
        *out = b;
        return 1;
    }
    if (sqlite3_value_type(v) == SQLITE_NULL) return 0;
    if (sqlite3_value_type(v) != SQLITE_BLOB) return -1;
    int n = sqlite3_value_bytes(v);
    const void *p = sqlite3_value_blob(v);
    if (n <= 0 || !p || !(b = sqlm_batch_new((size_t)n))) return -1;
    memcpy(b->p, p, (size_t)n);
    *out = b;
    return 1;
}

/* sqlm_stack(pos, v): the rows of a batch as one stack (all rows the same length). */
typedef struct stack_agg {
    buf pos, data;
    uint64_t width;
    uint32_t n;
    bool err;
} stack_agg;

static void agg_stack_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    stack_agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
    if (!a) { sqlite3_result_error_nomem(ctx); return; }
    if (a->err) return;
    int len = sqlite3_value_bytes(argv[1]);
    const void *v = sqlite3_value_blob(argv[1]);
    int64_t pos = ARG_INT(0);
    if (sqlite3_value_type(argv[1]) != SQLITE_BLOB || len <= 0 || !v || (a->n && (uint64_t)len != a->width) ||
        a->n >= MAX_BATCH) {
        a->err = true;
        FAIL("stack: rows must be BLOBs of one length");
    }
    a->width = (uint64_t)len;
    a->n++;
    sqlm_buf_append(&a->pos, &pos, sizeof pos);
    sqlm_buf_append(&a->data, v, (size_t)len);
    if (a->pos.rc || a->data.rc) {
        a->err = true;
        sqlite3_result_error_nomem(ctx);
    }
}

static void agg_stack_final(sqlite3_context *ctx) {
    stack_agg *a = sqlite3_aggregate_context(ctx, 0);
    if (!a) { sqlite3_result_null(ctx); return; }
    if (!a->err && a->n) {
        batch_ref *b = sqlm_batch_new(BATCH_HDR + a->pos.len + a->data.len);
        if (!b) {
            sqlite3_result_error_nomem(ctx);
        } else {
            uint32_t magic = STACK_MAGIC;
            uint8_t *out = b->p;
            memcpy(out, &magic, 4), memcpy(out + 4, &a->n, 4), memcpy(out + 8, &a->width, 8);
            memcpy(out + BATCH_HDR, a->pos.p, a->pos.len);
            memcpy(out + BATCH_HDR + a->pos.len, a->data.p, a->data.len);
            sqlm_batch_result(ctx, b);
        }
    } else if (!a->err) {
        sqlite3_result_null(ctx);
    }
    sqlm_buf_free(&a->pos);
    sqlm_buf_free(&a->data);
}

/*
 * sqlm_rows(product): a table-valued function (an eponymous virtual table)
 * with one row (pos, v) per position of a product.  The product reaches
 * xFilter once per statement; a scalar function taking it per output row
 * would have SQLite copy the whole product for every row.
 */
typedef struct rows_cursor {
    sqlite3_vtab_cursor base;
    batch_ref *prod;         /* a reference to the product, or NULL: no rows */
    batch_view v;
    uint32_t i;              /* current row */
} rows_cursor;

static int rows_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err) {
    (void)aux, (void)argc, (void)argv, (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(pos INTEGER, v BLOB, product HIDDEN)");
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab *t = sqlite3_malloc(sizeof *t);
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof *t);
    sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
    *out = t;
    return SQLITE_OK;
}

static int rows_disconnect(sqlite3_vtab *t) {
    sqlite3_free(t);
    return SQLITE_OK;
}

/* The product argument is an equality constraint on the hidden column 2. */
static int rows_best_index(sqlite3_vtab *t, sqlite3_index_info *ii) {
    (void)t;
    for (int i = 0; i < ii->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &ii->aConstraint[i];
        if (c->iColumn != 2 || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
        if (!c->usable) return SQLITE_CONSTRAINT;
        ii->aConstraintUsage[i].argvIndex = 1;
        ii->aConstraintUsage[i].omit = 1;
        ii->idxNum = 1;
        ii->estimatedCost = 1;
        ii->estimatedRows = 16;
        return SQLITE_OK;
    }
    ii->idxNum = 0;   /* no product: no rows */
    ii->estimatedCost = 1e12;
    return SQLITE_OK;
}

/* A zeroed cursor of size bytes (its struct starts with the base cursor). */
int sqlm_vtab_cursor_new(size_t size, sqlite3_vtab_cursor **out) {
    void *c = sqlite3_malloc64(size);
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, size);
    *out = c;
    return SQLITE_OK;
}

static int rows_open(sqlite3_vtab *t, sqlite3_vtab_cursor **out) {
    (void)t;
    return sqlm_vtab_cursor_new(sizeof(rows_cursor), out);
}

static int rows_close(sqlite3_vtab_cursor *cur) {
    rows_cursor *c = (rows_cursor *)cur;
    sqlm_batch_unref(c->prod);
    sqlite3_free(c);
    return SQLITE_OK;
}

static int rows_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc, sqlite3_value **argv) {
    (void)idx_str;
    rows_cursor *c = (rows_cursor *)cur;
    sqlm_batch_unref(c->prod);
    c->prod = NULL;
    c->i = 0;
    memset(&c->v, 0, sizeof c->v);
    if (idx != 1 || argc < 1) return SQLITE_OK;
    int rc = sqlm_batch_take(argv[0], &c->prod);
    if (rc == 0) return SQLITE_OK;   /* NULL: no rows */
    if (rc < 0 || !sqlm_batch_parse(c->prod->p, c->prod->len, PROD_MAGIC, 4, &c->v)) {
        sqlite3_free(cur->pVtab->zErrMsg);
        cur->pVtab->zErrMsg = sqlite3_mprintf("sqlm: rows: not a product");
        sqlm_batch_unref(c->prod);
        c->prod = NULL;
        return SQLITE_ERROR;
    }
    return SQLITE_OK;
}

static int rows_next(sqlite3_vtab_cursor *cur) {
    ((rows_cursor *)cur)->i++;
    return SQLITE_OK;
}

static int rows_eof(sqlite3_vtab_cursor *cur) {
    rows_cursor *c = (rows_cursor *)cur;
    return !c->prod || c->i >= c->v.n;
}

static int rows_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
    rows_cursor *c = (rows_cursor *)cur;
    int64_t pos;
    memcpy(&pos, &c->v.pos[c->i], 8);
    if (col == 0) sqlite3_result_int64(ctx, pos);
    else if (col == 1) sqlite3_result_blob64(ctx, c->v.data + (size_t)c->i * c->v.width * 4, c->v.width * 4, SQLITE_TRANSIENT);
    else sqlite3_result_null(ctx);
    return SQLITE_OK;
}

static int rows_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
    *rowid = ((rows_cursor *)cur)->i;
    return SQLITE_OK;
}

static const sqlite3_module rows_module = {
    .iVersion = 0,
    .xConnect = rows_connect,          /* eponymous-only: no xCreate */
    .xBestIndex = rows_best_index,
    .xDisconnect = rows_disconnect,
    .xOpen = rows_open,
    .xClose = rows_close,
    .xFilter = rows_filter,
    .xNext = rows_next,
    .xEof = rows_eof,
    .xColumn = rows_column,
    .xRowid = rows_rowid,
};

int sqlm_sqlite_register_rows(sqlite_engine *s) {
    int rc = sqlm_sqlite_create_function(s, "sqlm_stack", 2, NULL, agg_stack_step, agg_stack_final);
    if (!rc && sqlite3_create_module(s->db, "sqlm_rows", &rows_module, NULL) != SQLITE_OK)
        rc = sqlm_error(SQLM_DB, "sqlite: registering the virtual tables: %s", sqlite3_errmsg(s->db));
    return rc;
}
