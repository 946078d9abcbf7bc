/*
 * engine.c - the SQLite engine, embedded and always built: the backend
 * vtable over the system libsqlite3, and the native vector functions that
 * the SQLite dialect's templates call (registered per connection with
 * sqlite3_create_function, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS).
 *
 * Every function checks its BLOB lengths against its arguments, so a damaged
 * or hostile database gives an SQL error, never an out-of-bounds read.
 * Weights are never written at run time: the model database is opened
 * read-only and all step and cache tables are TEMP tables.
 *
 * Products have two forms.  The copying one, sqlm_gather(w.row,
 * sqlm_matvec(w.v, x.v, ...)), gets each tile as a BLOB that SQLite copies
 * first.  The in-place one, sqlm_rows(sqlm_matmul('table', w.id, stack)),
 * is chosen when the weight tiles could be mapped (tiles.c): the query
 * still scans the weight table, but only its rowids, and the aggregate reads
 * each tile's bytes from the mapping, then multiplies all of them with every
 * position of the batch at its final step, on the engine's thread pool.
 * The KV cache is a virtual table (sqlm_kv) whose rows sqlm_attend reads in
 * place the same way.
 *
 * This file: registration, the engine (open, close, statements, programs,
 * the memory budget), mapping the tiles, the method table.  The functions
 * are functions.c (vectors), vtab_rows.c (batches, sqlm_rows), vtab_kv.c
 * (sqlm_kv), attend.c (sqlm_attend) and matmul.c (sqlm_matmul); the tile
 * reads tiles.c, the budget's weight cache wcache.c.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sqlite_int.h"

/* ------------------------------------------------------- registration */

/* sqlm's SQL functions and virtual tables on the connection. */
static int register_functions(sqlite_engine *s) {
    int rc = sqlm_sqlite_register_functions(s);
    if (!rc) rc = sqlm_sqlite_register_rows(s);
    if (!rc) rc = sqlm_sqlite_register_kv(s);
    if (!rc) rc = sqlm_sqlite_register_attend(s);
    if (!rc) rc = sqlm_sqlite_register_matmul(s);
    return rc;
}

/* --------------------------------------------------------------- engine */

/* SQLite's hard heap limit is per process: the budget of the last engine
 * opened with one applies while any budgeted engine is open, and the limit
 * the process had before the first comes back when the last one closes (a
 * host program that loaded sqlm, such as the sqlite3 shell, keeps its own). */
static pthread_mutex_t heap_mu = PTHREAD_MUTEX_INITIALIZER;
static int heap_users;                 /* budgeted engines open */
static sqlite3_int64 heap_prior;       /* the limit before the first of them */

static void set_heap_limit(sqlite_engine *s, sqlite3_int64 n) {
    pthread_mutex_lock(&heap_mu);
    if (!s->heap_limit && heap_users++ == 0) heap_prior = sqlite3_hard_heap_limit64(-1);
    s->heap_limit = n;
    sqlite3_hard_heap_limit64(n);
    pthread_mutex_unlock(&heap_mu);
}

static void drop_heap_limit(sqlite_engine *s) {
    if (!s->heap_limit) return;
    pthread_mutex_lock(&heap_mu);
    if (--heap_users == 0) sqlite3_hard_heap_limit64(heap_prior);
    pthread_mutex_unlock(&heap_mu);
    s->heap_limit = 0;
}

/* Why a statement failed, when the budget is the reason: the cache's I/O
 * error, or SQLite's heap reaching its share of the budget.  SQLM_OK if not. */
static int budget_error(sqlite_engine *s, int sqlite_rc, const char *what) {
    if (s->wc && sqlm_wcache_error(s->wc))
        return sqlm_error(SQLM_IO, "sqlite: %s: %s", what, sqlm_wcache_error(s->wc));
    if (s->budget && (sqlite_rc & 0xff) == SQLITE_NOMEM)
        return sqlm_error(SQLM_NOMEM,
                          "sqlite: %s: %s: out of memory: the engine's heap (KV cache, activations) reached "
                          "its %.1f MB share of --mem-budget %.1f MB (a shorter context -c or a larger budget helps)",
                          s->path, what, s->heap_limit / 1048576.0, s->budget / 1048576.0);
    return SQLM_OK;
}

/* The driver's message, with the OS error behind an I/O failure (a full
 * disk shows as "No space left on device" or "File too large"). */
static const char *sq_msg(sqlite_engine *s, char *out, size_t n) {
    int e = sqlite3_system_errno(s->db), x = sqlite3_extended_errcode(s->db);
    snprintf(out, n, "%s%s%s%s", sqlite3_errmsg(s->db), e ? ": " : "", e ? strerror(e) : "",
             x == SQLITE_IOERR_WRITE || x == SQLITE_FULL ? " (writing failed: is the disk full?)" : "");
    return out;
}

static int sq_err(sqlite_engine *s, const char *what) {
    char m[512];
    int rc = budget_error(s, sqlite3_extended_errcode(s->db), what);
    if (rc) return rc;
    return sqlm_error(SQLM_DB, "sqlite: %s: %s: %s", s->path, what, sq_msg(s, m, sizeof m));
}

static void sq_free_steps(sqlite_engine *s) {
    for (int i = 0; i < s->n_steps; i++) {
        sqlite3_finalize(s->steps[i]);
        free(s->step_names[i]);
    }
    free(s->steps);
    free(s->step_names);
    s->steps = NULL;
    s->step_names = NULL;
    s->n_steps = 0;
}

static void sq_close(engine *e) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s) return;
    sq_free_steps(s);
    for (size_t i = 0; i < ARRAY_LEN(s->cache); i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    sqlm_pool_free(s->pool);
    sqlite3_close(s->db);
    drop_heap_limit(s);
    sqlm_wcache_close(s->wc);
    sqlm_tiles_close(s->tiles);
    /* only now: closing it earlier would drop the lock SQLite holds (tiles.c) */
    if (s->tiles_fd >= 0) close(s->tiles_fd);
    free(s->path);
    free(s);
}

static int sq_exec(engine *e, const char *sql) {
    sqlite_engine *s = (sqlite_engine *)e;
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char m[512];
        int rc = budget_error(s, sqlite3_extended_errcode(s->db), sql);
        if (!rc) rc = sqlm_error(SQLM_DB, "sqlite: %s: %s (in: %.200s)", s->path, sq_msg(s, m, sizeof m), sql);
        sqlite3_free(msg);
        return rc;
    }
    return SQLM_OK;
}

static int sq_open(engine **out, const char *path, const engine_opts *o) {
    *out = NULL;
    sqlite_engine *s = calloc(1, sizeof *s);
    if (!s) return sqlm_error(SQLM_NOMEM, "out of memory");
    s->base.m = &sqlm_db_sqlite;
    s->tiles_fd = -1;
    s->path = sqlm_strdup(path);
    s->threads = o->threads > 0 ? o->threads : (int)MAX(sysconf(_SC_NPROCESSORS_ONLN), 1);
    int flags = SQLITE_OPEN_NOMUTEX |
                (o->readonly ? SQLITE_OPEN_READONLY
                             : SQLITE_OPEN_READWRITE | (o->create ? SQLITE_OPEN_CREATE : 0));
    const char *vfs = NULL;
    s->budget = o->plain ? 0 : o->mem_budget;
    if (s->budget && o->readonly) {
        /* A budgeted run reads the model through the weight cache, not a
         * mapping (wcache.c): how, and with how many streaming buffers. */
        int io = o->mem_io;
        if (io == WC_IO_AUTO) {
            struct stat sb;
            size_t fsz = stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
            size_t cg = sqlm_cgroup_limit(), avail = sqlm_mem_available();
            /* the page cache can keep the file only if the cgroup (which it
             * is charged to) and the machine have room beside the budget */
            bool fits = (!cg || cg >= s->budget + fsz + (fsz >> 3)) && avail >= s->budget + fsz + (fsz >> 2);
            io = fits ? WC_IO_BUFFERED : WC_IO_DIRECT;
        }
        /* 12 MB of read buffers whatever the budget: room for three whole
         * 2 MB reads in flight and as much again read ahead.  Not more: the
         * disk fills a small set of buffers faster (one step's reads
         * replayed into 4, 12 and 32 MB of buffers ran at 3.6, 3.4 and 3.3
         * GB/s here), and what the ring does not take, the resident set
         * does.  Qwen2.5-0.5B at 50%: 8 MB with two readers 1.26x the
         * storage bound, 12 MB with three 1.17x, 16 MB with three 1.17x. */
        size_t ring = (size_t)12 << 20;
        int rc = sqlm_wcache_open(&s->wc, path, io, ring);
        if (!rc && !(vfs = sqlm_wcache_vfs())) rc = sqlm_error(SQLM_ERROR, "sqlite: cannot register the weight cache's VFS");
        if (rc) {
            sq_close(&s->base);
            return rc;
        }
    }
    if (!s->path || sqlite3_open_v2(path, &s->db, flags, vfs) != SQLITE_OK) {
        int rc = sqlm_error(SQLM_DB, "sqlite: cannot open %s: %s", path,
                            s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sq_close(&s->base);
        return rc;
    }
    sqlite3_extended_result_codes(s->db, 1);
    int rc = register_functions(s);
    buf b;
    sqlm_buf_init(&b);
    /* The page cache: 64 MB; under a budget, an import's share of it, and a
     * run's 256 KB: a budgeted run gets its weight pages from the weight
     * cache, and the vocabulary is read once.  (A budget/64 share, 4 MB at
     * 253M, kept the vocabulary's pages for nothing.) */
    long cache_kb = !s->budget ? 65536 : o->create ? (long)MIN(MAX(s->budget / 1024 / 8, 1024), 65536) : 256;
    sqlm_buf_puts(&b, "PRAGMA temp_store = MEMORY;");
    if (o->threads > 1) sqlm_buf_appendf(&b, "PRAGMA threads = %d;", o->threads);
    if (o->create) {
        if (o->page_size) sqlm_buf_appendf(&b, "PRAGMA page_size = %d;", o->page_size);
        sqlm_buf_puts(&b, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;");
    }
    /* after page_size: set before it, the limit does not hold (an import's
     * dirty pages are never spilled and its whole database stays in the
     * cache until COMMIT) */
    sqlm_buf_appendf(&b, "PRAGMA cache_size = -%ld;", cache_kb);
    if (!o->create) {
        /* Map the file: weight pages are read in place by SQLite's pager.
         * Under a budget the "mapping" is the weight cache's (wcache.c):
         * mmap_size only turns on SQLite's in-place page interface. */
        sqlm_buf_puts(&b, "PRAGMA mmap_size = 1099511627776;");
    }
    /* A reader keeps its shared lock from the first read on: no writer can
     * change the file under the tile mapping or the weight cache's plan (page
     * numbers), and statements skip the per-statement lock calls. */
    if (o->readonly || s->wc) sqlm_buf_puts(&b, "PRAGMA locking_mode = EXCLUSIVE;");
    /* Until the session sizes it, SQLite may use half the budget. */
    if (s->budget) set_heap_limit(s, (sqlite3_int64)(s->budget / 2));
    /* threads for the products and attention of a session.  Streaming under
     * a budget, the compute threads wait for the cache's readers; a second
     * one taking tiles ahead of the first made the cache read half as much
     * again (Qwen2.5-0.5B shape at 253M: 524 against 352 MB a token, 163
     * against 112 ms): one compute thread when the file does not fit. */
    int nth = s->threads;
    struct stat sb;
    if (s->wc && stat(path, &sb) == 0 && (size_t)sb.st_size > s->budget) nth = 1;
    if (!rc && o->readonly && !o->plain) rc = sqlm_pool_init(&s->pool, nth);
    if (!rc) rc = b.rc ? b.rc : sq_exec(&s->base, b.p);
    sqlm_buf_free(&b);
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return SQLM_OK;
}

static int bind_vals(sqlite_engine *s, sqlite3_stmt *st, const db_val *v, int n) {
    for (int i = 0; i < n; i++) {
        int rc;
        switch (v[i].type) {
        case DBV_INT: rc = sqlite3_bind_int64(st, i + 1, v[i].i); break;
        case DBV_REAL: rc = sqlite3_bind_double(st, i + 1, v[i].d); break;
        case DBV_TEXT: rc = sqlite3_bind_text64(st, i + 1, v[i].p, v[i].n, SQLITE_STATIC, SQLITE_UTF8); break;
        case DBV_BLOB: rc = sqlite3_bind_blob64(st, i + 1, v[i].p ? v[i].p : "", v[i].n, SQLITE_STATIC); break;
        default: rc = sqlite3_bind_null(st, i + 1); break;
        }
        if (rc != SQLITE_OK) return sq_err(s, "bind");
    }
    return SQLM_OK;
}

/*
 * The prepared statement for sql: from the cache when it holds the same text
 * and the statement is not running, else prepared now (and cached, but
 * statements of more than one statement's text are not).  *slot gets the
 * cache entry or -1.  A session's per-token queries (t_in, the logits) are
 * prepared once instead of per token.
 */
static sqlite3_stmt *sq_prepare(sqlite_engine *s, const char *sql, int *slot) {
    *slot = -1;
    for (int i = 0; i < (int)ARRAY_LEN(s->cache); i++)
        if (s->cache[i].sql && !s->cache[i].busy && strcmp(s->cache[i].sql, sql) == 0) {
            *slot = i;
            s->cache[i].busy = true;
            return s->cache[i].st;
        }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) != SQLITE_OK) return NULL;
    int i = s->cache_next;
    if (st && tail && !*tail && !s->cache[i].busy) {
        char *copy = sqlm_strdup(sql);
        if (copy) {
            sqlite3_finalize(s->cache[i].st);
            free(s->cache[i].sql);
            s->cache[i].sql = copy;
            s->cache[i].st = st;
            s->cache[i].busy = true;
            s->cache_next = (i + 1) % (int)ARRAY_LEN(s->cache);
            *slot = i;
        }
    }
    return st;
}

static void sq_release(sqlite_engine *s, sqlite3_stmt *st, int slot) {
    if (slot < 0) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);   /* bound values are borrowed from the caller */
    s->cache[slot].busy = false;
}

static int sq_query(engine *e, const char *sql, const db_val *params, int n_params, db_row_cb cb,
                    void *ctx) {
    sqlite_engine *s = (sqlite_engine *)e;
    int slot;
    db_val vals[16];
    sqlite3_stmt *st = sq_prepare(s, sql, &slot);
    if (!st) return sq_err(s, sql);
    int rc = bind_vals(s, st, params, n_params), step;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        int nc = MIN(sqlite3_column_count(st), (int)ARRAY_LEN(vals));
        for (int i = 0; i < nc; i++) {
            db_val *v = &vals[i];
            memset(v, 0, sizeof *v);
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER: v->type = DBV_INT; v->i = sqlite3_column_int64(st, i); break;
            case SQLITE_FLOAT: v->type = DBV_REAL; v->d = sqlite3_column_double(st, i); break;
            case SQLITE_TEXT:
                v->type = DBV_TEXT;
                v->p = sqlite3_column_text(st, i);
                v->n = (size_t)sqlite3_column_bytes(st, i);
                break;
            case SQLITE_BLOB:
                v->type = DBV_BLOB;
                v->p = sqlite3_column_blob(st, i);
                v->n = (size_t)sqlite3_column_bytes(st, i);
                break;
            default: v->type = DBV_NULL; break;
            }
        }
        if (cb && cb(ctx, nc, vals)) break;
    }
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE) rc = sq_err(s, sql);
    sq_release(s, st, slot);
    return rc;
}

static int sq_load_program(engine *e, const sql_program *p) {
    sqlite_engine *s = (sqlite_engine *)e;
    sq_free_steps(s);
    int rc = sq_exec(e, p->setup);
    if (!rc) rc = sq_exec(e, p->reset);
    if (rc) return rc;
    s->steps = calloc((size_t)p->n_steps + 1, sizeof *s->steps);
    s->step_names = calloc((size_t)p->n_steps + 1, sizeof *s->step_names);
    if (!s->steps || !s->step_names) return sqlm_error(SQLM_NOMEM, "out of memory");
    for (int i = 0; i < p->n_steps; i++) {
        s->n_steps = i + 1;
        s->step_names[i] = sqlm_strdup(p->steps[i].name);
        if (sqlite3_prepare_v3(s->db, p->steps[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                               &s->steps[i], NULL) != SQLITE_OK)
            return sqlm_error(SQLM_DB, "sqlite: statement %d (%s): %s", i, p->steps[i].name,
                              sqlite3_errmsg(s->db));
    }
    return SQLM_OK;
}

static int sq_run_program(engine *e, double *secs) {
    sqlite_engine *s = (sqlite_engine *)e;
    for (int i = 0; i < s->n_steps; i++) {
        double t0 = secs ? sqlm_now() : 0;
        int rc = sqlite3_step(s->steps[i]);
        int x = sqlite3_reset(s->steps[i]);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW && (x = budget_error(s, x, s->step_names[i])))
            return x;
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return sqlm_error(SQLM_DB, "sqlite: statement %d (%s): %s", i, s->step_names[i],
                              sqlite3_errmsg(s->db));
        if (secs) secs[i] += sqlm_now() - t0;
    }
    return SQLM_OK;
}

/* heap_bytes: what the session needs beyond SQLite's memory now (KV cache,
 * activations); the page cache's share is added here. */
static int sq_mem_trace(engine *e, size_t heap_bytes) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s->wc) return SQLM_OK;
    sqlite3_int64 cache = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA cache_size", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) cache = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    cache = cache < 0 ? -cache * 1024 : cache * 65536;
    set_heap_limit(s, sqlite3_memory_used() + (sqlite3_int64)heap_bytes + cache);
    return sqlm_wcache_trace(s->wc);
}

static int sq_mem_plan(engine *e, size_t weight_bytes) {
    sqlite_engine *s = (sqlite_engine *)e;
    return s->wc ? sqlm_wcache_plan(s->wc, weight_bytes) : SQLM_OK;
}

static bool sq_mem_stats(engine *e, wcache_stats *st) {
    sqlite_engine *s = (sqlite_engine *)e;
    if (!s->wc) return false;
    sqlm_wcache_get_stats(s->wc, st);
    st->heap_peak = (size_t)sqlite3_memory_highwater(0);
    st->heap_limit = (size_t)s->heap_limit;
    return true;
}

/* ------------------------------------------------------- in-place tiles */

typedef struct col_ctx {
    int n;
    bool ok;
} col_ctx;

/* PRAGMA table_info rows (cid, name, type, notnull, dflt, pk): must be
 * id INTEGER PRIMARY KEY, row, col, v BLOB in that order. */
static int col_row(void *ctx, int nc, const db_val *v) {
    static const char *const names[] = { "id", "row", "col", "v" };
    col_ctx *c = ctx;
    if (nc < 6 || c->n >= 4 || v[1].type != DBV_TEXT || strcmp(v[1].p, names[c->n]) != 0 ||
        (v[5].type == DBV_INT && v[5].i != 0) != (c->n == 0))
        c->ok = false;
    c->n++;
    return 0;
}

typedef struct blob_ctx {
    const void *want;
    size_t len;
    bool same;
} blob_ctx;

static int blob_row(void *ctx, int nc, const db_val *v) {
    blob_ctx *b = ctx;
    b->same = nc >= 1 && v[0].type == DBV_BLOB && v[0].n == b->len && memcmp(v[0].p, b->want, b->len) == 0;
    return 0;
}

/*
 * Map the weight tables for in-place reads: root pages from sqlite_schema,
 * each table's columns, then sqlm_tiles_open(), then a few tiles per table compared
 * with the BLOB SQLite returns for the same id.  On failure nothing changes
 * (the copying path stays) and the message says why.
 */
static int sq_map_weights(engine *e, const ir_weight *ws, int n) {
    sqlite_engine *s = (sqlite_engine *)e;
    const char *file = sqlite3_db_filename(s->db, "main");
    if (!file || !*file) return sqlm_error(SQLM_UNSUPPORTED, "the database has no file");
    if (!sqlite3_db_readonly(s->db, "main")) return sqlm_error(SQLM_UNSUPPORTED, "the database is open for writing");
    uint32_t *roots = calloc((size_t)(n > 0 ? n : 1), sizeof *roots);
    if (!roots) return sqlm_error(SQLM_NOMEM, "out of memory");
    int rc = SQLM_OK;
    char sql[160];
    for (int i = 0; !rc && i < n; i++) {
        col_ctx cols = { 0, true };
        int64_t root = 0;
        db_val name = dbv_text(ws[i].name);
        rc = sq_query(e, "SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = ?", &name, 1,
                      sqlm_db_int_row, &root);
        if (!rc) rc = sq_query(e, "SELECT * FROM pragma_table_info(?)", &name, 1, col_row, &cols);
        if (!rc && (!cols.ok || cols.n != 4))
            rc = sqlm_error(SQLM_FORMAT, "%s: columns are not (id INTEGER PRIMARY KEY, row, col, v)", ws[i].name);
        if (!rc && (root < 1 || root > UINT32_MAX))
            rc = sqlm_error(SQLM_FORMAT, "%s: root page %lld", ws[i].name, (long long)root);
        roots[i] = (uint32_t)root;
    }
    tile_store *ts = NULL;
    if (!rc && s->tiles_fd < 0 && (s->tiles_fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
        rc = sqlm_error(SQLM_IO, "%s: cannot open for reading", file);
    /* under a budget the weight cache serves the tiles, and only when the
     * scans for tile ids read an index, not the tiles' own pages */
    for (int i = 0; !rc && s->wc && i < n; i++) {
        int64_t has = 0;
        char idx[64];
        snprintf(idx, sizeof idx, "%s_tiles", ws[i].name);
        db_val iv = dbv_text(idx);
        rc = sq_query(e, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?", &iv, 1, sqlm_db_int_row, &has);
        if (!rc && !has)
            rc = sqlm_error(SQLM_UNSUPPORTED, "%s has no tile index %s (import the model again to make it)",
                            ws[i].name, idx);
    }
    if (!rc) rc = s->wc ? sqlm_tiles_open_cached(&ts, s->tiles_fd, file, ws, roots, n, s->wc)
                        : sqlm_tiles_open(&ts, s->tiles_fd, file, ws, roots, n);
    free(roots);
    /* the first, a middle and the last tile of each table, as SQLite reads them */
    for (int i = 0; !rc && i < n; i++) {
        int64_t nt = sqlm_tiles_count(ts, i), pick[3] = { 0, nt / 2, nt - 1 };
        snprintf(sql, sizeof sql, "SELECT v FROM \"%s\" WHERE id = ?", ws[i].name);
        for (int k = 0; !rc && k < 3; k++) {
            blob_ctx b = { 0 };
            b.want = sqlm_tiles_get(ts, i, pick[k], &b.len);
            db_val id = dbv_int(pick[k]);
            rc = sq_query(e, sql, &id, 1, blob_row, &b);
            sqlm_tiles_put(ts, i, pick[k]);
            if (!rc && !b.same)
                rc = sqlm_error(SQLM_FORMAT, "%s: tile %lld read in place differs from SQLite's BLOB", ws[i].name,
                                (long long)pick[k]);
        }
    }
    if (rc) {
        sqlm_tiles_close(ts);
        return rc;
    }
    s->tiles = ts;
    return SQLM_OK;
}

const db_methods sqlm_db_sqlite = {
    .name = "sqlite",
    .dialect = DIA_SQLITE,
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .query = sq_query,
    .load_program = sq_load_program,
    .run_program = sq_run_program,
    .mem_trace = sq_mem_trace,
    .mem_plan = sq_mem_plan,
    .mem_stats = sq_mem_stats,
    .map_weights = sq_map_weights,
    .create_begin = sqlm_db_file_create_begin,   /* db/filedb.c */
    .create_commit = sqlm_db_file_create_commit,
    .create_abort = sqlm_db_file_create_abort,
    .probe = sqlm_db_file_probe,
    .remove = sqlm_db_file_remove,
};
