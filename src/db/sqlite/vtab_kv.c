/*
 * vtab_kv.c - the KV cache as the virtual table sqlm_kv, its rows in memory
 * the engine owns so that scans hand them to functions without copies and
 * sqlm_attend (attend.c) reads them in place by table name.  Its struct is
 * in sqlite_int.h, for attend.c.
 */
#include <math.h>
#include <string.h>

#include "sqlite_int.h"

/*
 * sqlm_kv: the KV-cache tables as virtual tables (CREATE VIRTUAL TABLE
 * temp.kv0 USING sqlm_kv), columns (pos INTEGER, k BLOB, v BLOB), rowid =
 * pos.  Rows are kept in memory the engine owns, one buffer per row that
 * never moves while the row exists, so that
 *   - a scan hands k and v to functions without SQLite copying them
 *     (SQLITE_STATIC), and
 *   - sqlm_attend reads the rows of the positions a scan gives it in place,
 *     by table name, as sqlm_matmul reads weight tiles.
 * Positions are keys: inserting a position twice is a constraint error.
 * Rows are inserted and deleted, never updated.  Scans run in position
 * order, over a range when the query bounds pos (=, <, <=, >, >=).
 */
typedef struct kv_cursor {
    sqlite3_vtab_cursor base;
    int64_t pos, hi;         /* current position; last one in range */
} kv_cursor;

#define KV_MAX_POS (1 << 24)

kv_table *sqlm_kv_find(sqlite_engine *s, const char *name) {
    for (kv_table *t = s->kv; t; t = t->next)
        if (strcmp(t->name, name) == 0) return t;
    return NULL;
}

/* The k and v rows of position pos, or NULL. */
const float *sqlm_kv_row(const kv_table *t, int64_t pos) {
    return pos >= 0 && pos < t->cap && t->row[pos] ? (const float *)t->row[pos] : NULL;
}

static int kv_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err) {
    (void)argc, (void)err;
    sqlite_engine *s = aux;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(pos INTEGER, k BLOB, v BLOB)");
    if (rc != SQLITE_OK) return rc;
    kv_table *t = sqlite3_malloc(sizeof *t);
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof *t);
    t->e = s;
    if (!(t->name = sqlite3_mprintf("%s", argv[2]))) {
        sqlite3_free(t);
        return SQLITE_NOMEM;
    }
    t->next = s->kv;
    s->kv = t;
    *out = &t->base;
    return SQLITE_OK;
}

static void kv_clear(kv_table *t) {
    for (int64_t i = 0; i < t->cap; i++) sqlite3_free(t->row[i]);
    sqlite3_free(t->row);
    t->row = NULL;
    t->cap = t->n = 0;
}

static int kv_disconnect(sqlite3_vtab *vt) {
    kv_table *t = (kv_table *)vt;
    for (kv_table **p = &t->e->kv; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    kv_clear(t);
    sqlite3_free(t->name);
    sqlite3_free(t);
    return SQLITE_OK;
}

/* idxNum bits: 1 a lower bound is argv[0], 2 it is strict (>); 4 an upper
 * bound follows, 8 it is strict (<).  pos = X counts as both bounds. */
static int kv_best_index(sqlite3_vtab *vt, sqlite3_index_info *ii) {
    (void)vt;
    int lo = -1, hi = -1, bits = 0;
    for (int i = 0; i < ii->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &ii->aConstraint[i];
        if (!c->usable || (c->iColumn != 0 && c->iColumn != -1)) continue;
        switch (c->op) {
        case SQLITE_INDEX_CONSTRAINT_EQ:
            if (lo < 0) lo = i, hi = i, bits &= ~(2 | 8);
            break;
        case SQLITE_INDEX_CONSTRAINT_GT:
        case SQLITE_INDEX_CONSTRAINT_GE:
            if (lo < 0) lo = i, bits |= c->op == SQLITE_INDEX_CONSTRAINT_GT ? 2 : 0;
            break;
        case SQLITE_INDEX_CONSTRAINT_LT:
        case SQLITE_INDEX_CONSTRAINT_LE:
            if (hi < 0) hi = i, bits |= c->op == SQLITE_INDEX_CONSTRAINT_LT ? 8 : 0;
            break;
        default: break;
        }
    }
    int arg = 0;
    double cost = 1e6;
    if (lo >= 0) {
        ii->aConstraintUsage[lo].argvIndex = ++arg;
        ii->aConstraintUsage[lo].omit = 1;
        bits |= 1;
        cost /= 4;
    }
    if (hi >= 0) {
        if (hi != lo) {
            ii->aConstraintUsage[hi].argvIndex = ++arg;
            ii->aConstraintUsage[hi].omit = 1;
        }
        bits |= 4;
        cost /= 4;
    }
    if (lo >= 0 && lo == hi) cost = 1;
    ii->idxNum = bits | (lo >= 0 && lo == hi ? 16 : 0);   /* 16: one argument for both bounds */
    ii->estimatedCost = cost;
    if (ii->nOrderBy == 1 && (ii->aOrderBy[0].iColumn == 0 || ii->aOrderBy[0].iColumn == -1) &&
        !ii->aOrderBy[0].desc)
        ii->orderByConsumed = 1;
    return SQLITE_OK;
}

static int kv_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
    (void)vt;
    return sqlm_vtab_cursor_new(sizeof(kv_cursor), out);
}

static int kv_close(sqlite3_vtab_cursor *cur) {
    sqlite3_free(cur);
    return SQLITE_OK;
}

static void kv_skip(kv_cursor *c) {
    const kv_table *t = (const kv_table *)c->base.pVtab;
    while (c->pos <= c->hi && c->pos < t->cap && !t->row[c->pos]) c->pos++;
}

/* The first (lower) or last (upper) integer position a bound admits:
 * pos > v, pos >= v, pos < v, pos <= v for v of any numeric type. */
static int64_t kv_bound(sqlite3_value *v, bool lower, bool strict) {
    if (sqlite3_value_type(v) == SQLITE_NULL) return lower ? INT64_MAX : INT64_MIN;   /* no row */
    if (sqlite3_value_numeric_type(v) == SQLITE_INTEGER) {
        int64_t x = sqlite3_value_int64(v);
        if (!strict) return x;
        if (lower) return x == INT64_MAX ? INT64_MAX : x + 1;
        return x == INT64_MIN ? INT64_MIN : x - 1;
    }
    double d = sqlite3_value_double(v);
    if (d != d) return lower ? INT64_MAX : INT64_MIN;   /* NaN (or text): no row */
    if (d < -9e18) return lower ? INT64_MIN : -1;
    if (d > 9e18) return INT64_MAX;
    double f = floor(d);
    if (lower) return (int64_t)f + (strict || f < d ? 1 : 0);
    return (int64_t)ceil(d) - (strict || f < d ? 1 : 0);
}

static int kv_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc, sqlite3_value **argv) {
    (void)idx_str, (void)argc;
    kv_cursor *c = (kv_cursor *)cur;
    const kv_table *t = (const kv_table *)cur->pVtab;
    int64_t lo = 0, hi = t->cap - 1;
    int a = 0;
    if (idx & 1) {
        lo = kv_bound(argv[a], true, (idx & 2) != 0);
        if (idx & 16) hi = MIN(hi, kv_bound(argv[a], false, false));
        a++;
    }
    if ((idx & 4) && !(idx & 16)) hi = MIN(hi, kv_bound(argv[a], false, (idx & 8) != 0));
    c->pos = MAX(lo, 0);
    c->hi = hi;
    kv_skip(c);
    return SQLITE_OK;
}

static int kv_next(sqlite3_vtab_cursor *cur) {
    kv_cursor *c = (kv_cursor *)cur;
    c->pos++;
    kv_skip(c);
    return SQLITE_OK;
}

static int kv_eof(sqlite3_vtab_cursor *cur) {
    const kv_cursor *c = (const kv_cursor *)cur;
    const kv_table *t = (const kv_table *)cur->pVtab;
    return c->pos > c->hi || c->pos >= t->cap;
}

static int kv_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
    const kv_cursor *c = (const kv_cursor *)cur;
    const kv_table *t = (const kv_table *)cur->pVtab;
    const uint8_t *r = t->row[c->pos];
    if (col == 0) sqlite3_result_int64(ctx, c->pos);
    else if (col == 1) sqlite3_result_blob64(ctx, r, (sqlite3_uint64)t->k_len, SQLITE_STATIC);
    else sqlite3_result_blob64(ctx, r + t->k_len, (sqlite3_uint64)t->v_len, SQLITE_STATIC);
    return SQLITE_OK;
}

static int kv_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
    *rowid = ((const kv_cursor *)cur)->pos;
    return SQLITE_OK;
}

static int kv_error(kv_table *t, int rc, const char *msg) {
    sqlite3_free(t->base.zErrMsg);
    t->base.zErrMsg = sqlite3_mprintf("sqlm_kv %s: %s", t->name, msg);
    return rc;
}

/* DELETE (argc 1) and INSERT (argv[0] NULL) of one row; no UPDATE. */
static int kv_update(sqlite3_vtab *vt, int argc, sqlite3_value **argv, sqlite3_int64 *rowid) {
    kv_table *t = (kv_table *)vt;
    if (argc == 1) {
        int64_t pos = sqlite3_value_int64(argv[0]);
        if (pos >= 0 && pos < t->cap && t->row[pos]) {
            sqlite3_free(t->row[pos]);
            t->row[pos] = NULL;
            t->n--;
        }
        return SQLITE_OK;
    }
    if (sqlite3_value_type(argv[0]) != SQLITE_NULL) return kv_error(t, SQLITE_ERROR, "rows are not updated");
    sqlite3_value *pv = sqlite3_value_type(argv[2]) != SQLITE_NULL ? argv[2] : argv[1];
    if (sqlite3_value_numeric_type(pv) != SQLITE_INTEGER) return kv_error(t, SQLITE_MISMATCH, "pos must be an integer");
    int64_t pos = sqlite3_value_int64(pv);
    if (pos < 0 || pos >= KV_MAX_POS) return kv_error(t, SQLITE_RANGE, "pos out of range");
    if (sqlite3_value_type(argv[3]) != SQLITE_BLOB || sqlite3_value_type(argv[4]) != SQLITE_BLOB)
        return kv_error(t, SQLITE_MISMATCH, "k and v must be BLOBs");
    int64_t kl = sqlite3_value_bytes(argv[3]), vl = sqlite3_value_bytes(argv[4]);
    if (t->n == 0) t->k_len = kl, t->v_len = vl;
    if (kl != t->k_len || vl != t->v_len || kl <= 0 || vl <= 0 || kl % 4 || vl % 4)
        return kv_error(t, SQLITE_MISMATCH, "k and v lengths differ from the other rows'");
    if (pos < t->cap && t->row[pos]) return kv_error(t, SQLITE_CONSTRAINT, "position already cached");
    if (pos >= t->cap) {
        int64_t cap = MAX(MAX(t->cap * 2, pos + 1), 64);
        uint8_t **r = sqlite3_realloc64(t->row, sizeof *r * (sqlite3_uint64)cap);
        if (!r) return SQLITE_NOMEM;
        memset(r + t->cap, 0, sizeof *r * (size_t)(cap - t->cap));
        t->row = r;
        t->cap = cap;
    }
    uint8_t *row = sqlite3_malloc64((sqlite3_uint64)(kl + vl));
    if (!row) return SQLITE_NOMEM;
    memcpy(row, sqlite3_value_blob(argv[3]), (size_t)kl);
    memcpy(row + kl, sqlite3_value_blob(argv[4]), (size_t)vl);
    t->row[pos] = row;
    t->n++;
    *rowid = pos;
    return SQLITE_OK;
}

static const sqlite3_module kv_module = {
    .iVersion = 0,
    .xCreate = kv_connect,
    .xConnect = kv_connect,
    .xBestIndex = kv_best_index,
    .xDisconnect = kv_disconnect,
    .xDestroy = kv_disconnect,
    .xOpen = kv_open,
    .xClose = kv_close,
    .xFilter = kv_filter,
    .xNext = kv_next,
    .xEof = kv_eof,
    .xColumn = kv_column,
    .xRowid = kv_rowid,
    .xUpdate = kv_update,
};

int sqlm_sqlite_register_kv(sqlite_engine *s) {
    if (sqlite3_create_module(s->db, "sqlm_kv", &kv_module, s) != SQLITE_OK)
        return sqlm_error(SQLM_DB, "sqlite: registering the virtual tables: %s", sqlite3_errmsg(s->db));
    return SQLM_OK;
}
