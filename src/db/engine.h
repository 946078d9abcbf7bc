/*
 * engine.h - the engine contract: what a database engine implements for
 * sqlm (open, exec, query with bound values, load and run a compiled
 * program, create a database atomically, bulk append, the memory budget's
 * hooks), and the registry of engines.  Import, model opening and
 * generation reach an engine through this header only, and an engine's SQL
 * differences through its dialect (sqlgen.h: placeholders, upserts, types,
 * templates).  A database is named by a string: a file path for the
 * embedded engines (SQLite, DuckDB), a URI for a server engine; nothing
 * outside the engine treats the name as a path.
 *
 * Every method returns SQLM_OK or an error code with the message recorded
 * (sqlm_errmsg()), prefixed with the engine's name where the driver's own
 * message is passed on.  Methods marked optional may be NULL.
 */
#ifndef SQLM_ENGINE_H
#define SQLM_ENGINE_H

#include "../sqlgen/sqlgen.h"

/* How a budgeted run reads the model file (engine_opts.mem_io). */
enum { WC_IO_AUTO, WC_IO_DIRECT, WC_IO_BUFFERED };

/* Counters of a weight cache, cumulative since it was opened. */
typedef struct wcache_stats {
    uint64_t fetch_bytes;    /* pages handed to the engine */
    uint64_t hit_bytes;      /* of which from the resident set */
    uint64_t read_bytes;     /* read from the file while running (streamed + misses) */
    uint64_t sync_bytes;     /* of which read by the compute thread itself */
    uint64_t load_bytes;     /* read once to fill the resident set */
    uint64_t resyncs;        /* times the reader was re-aimed */
    uint64_t reads;          /* reads the reader threads made (streamed pages) */
    double wait_s;           /* time compute threads waited for reads */
    double load_s;           /* time filling the resident set */
    double reader_s;         /* time the reader thread spent reading */
    size_t resident_bytes;   /* pinned pages */
    size_t sched_bytes;      /* pages one step reads */
    size_t ring_bytes;       /* streaming buffers */
    int direct;              /* O_DIRECT reads */
    size_t heap_peak;        /* the engine's heap: most it held, */
    size_t heap_limit;       /* and its share of the budget */
} wcache_stats;

/* ------------------------------------------------------------- db/ */


/*
 * A value crossing the engine interface; p borrowed for TEXT/BLOB/VEC, n in
 * bytes.  DBV_VEC is a float32 vector bound as the dialect's vector type
 * (SQLite: a BLOB of the same bytes; DuckDB: FLOAT[]).  Vectors read back
 * as DBV_BLOB of little-endian float32 on every engine; TEXT read back is
 * NUL-terminated.
 */
typedef struct db_val {
    int type;
    int64_t i;
    double d;
    const void *p;
    size_t n;
} db_val;

static inline db_val dbv_int(int64_t i) { return (db_val){ .type = DBV_INT, .i = i }; }
static inline db_val dbv_real(double d) { return (db_val){ .type = DBV_REAL, .d = d }; }
static inline db_val dbv_blob(const void *p, size_t n) { return (db_val){ .type = DBV_BLOB, .p = p, .n = n }; }
static inline db_val dbv_vec(const float *p, size_t n_floats) {
    return (db_val){ .type = DBV_VEC, .p = p, .n = n_floats * sizeof(float) };
}
/* rows of width floats each, n_floats in all: a FLOAT[][] value (DuckDB's
 * append only) */
static inline db_val dbv_rows(const float *p, size_t n_floats, int64_t width) {
    return (db_val){ .type = DBV_VEC, .i = width, .p = p, .n = n_floats * sizeof(float) };
}
static inline db_val dbv_text(const char *s) {
    return (db_val){ .type = s ? DBV_TEXT : DBV_NULL, .p = s, .n = s ? __builtin_strlen(s) : 0 };
}

typedef struct engine_opts {
    int threads;             /* worker threads (0 = engine default) */
    bool create;             /* create a new database (import) */
    bool readonly;           /* never write the model database (run) */
    int page_size;           /* bytes, create only (0 = engine default) */
    bool plain;              /* no sqlm settings or functions: the engine as any
                              * stock client opens it (tests of printed scripts) */
    size_t mem_budget;       /* bytes of resident memory for the whole process, 0 = none */
    int mem_io;              /* WC_IO_*: how a budgeted run reads the model file */
    bool copy_tiles;         /* sqlm_modeldb_open: leave weight tiles to the engine's
                              * copying reads, do not map them (ablation, tests) */
} engine_opts;

typedef struct engine engine;
typedef int (*db_row_cb)(void *ctx, int ncol, const db_val *vals);

/*
 * A database being created (import): written where it cannot be mistaken
 * for a database under its name, then made durable and visible under that
 * name at once (create_commit), or removed (create_abort).  File engines
 * write a temporary file beside the target inside one transaction, sync it
 * and rename it into place (db/filedb.c); a server engine would write a
 * staging schema or hold one transaction and publish it on commit.
 */
typedef struct db_create {
    engine *e;               /* the connection import writes through, inside a
                              * transaction the engine began */
    const struct db_methods *m;   /* the engine: set by the caller before create_begin */
    char *name;              /* the database's name (owned) */
    char *staging;           /* where it is written meanwhile (owned; file engines:
                              * NAME.tmp-PID), or NULL */
} db_create;

/* The backend vtable (sqlite3_io_methods). */
typedef struct db_methods {
    const char *name;        /* --engine NAME */
    int dialect;             /* DIA_*: the SQL it speaks (sqlgen.h) */
    /* Open the database name for o (o->create: a new, empty one; import
     * uses create_begin instead).  *out is NULL on failure.  The engine
     * applies o's threads and budget and registers sqlm's functions unless
     * o->plain. */
    int (*open)(engine **out, const char *name, const engine_opts *o);
    /* Close e and free everything it holds; e may be NULL. */
    void (*close)(engine *e);
    /* Run one or more statements (the dialect's frame.end separates them),
     * no results. */
    int (*exec)(engine *e, const char *sql);
    /* Run one statement; params are bound in order to the placeholders the
     * dialect writes (sqlm_dialect_params(): "?" or "$1".."$n"), cb is called
     * per row with values valid until it returns (return non-zero to stop;
     * that is not an error).  cb may be NULL. */
    int (*query)(engine *e, const char *sql, const db_val *params, int n_params,
                 db_row_cb cb, void *ctx);
    /* Prepare a program's statements once (its setup and reset run then);
     * run_program runs its steps in order, the time of each in
     * stmt_seconds[n_steps] if not NULL. */
    int (*load_program)(engine *e, const sql_program *p);
    int (*run_program)(engine *e, double *stmt_seconds /* [n_steps] or NULL */);
    /* Optional: read the tiles of weight tables ws in place from now on, for
     * the templates' in-place products.  SQLM_OK when that works; otherwise
     * the copying path stays and sqlm_errmsg() says why. */
    int (*map_weights)(engine *e, const ir_weight *ws, int n);
    /* Start creating the database name (see db_create): c->e is open on an
     * empty database, inside a transaction, and nothing under name changes
     * until create_commit.  On failure c holds nothing to free. */
    int (*create_begin)(db_create *c, const char *name, const engine_opts *o);
    /* Commit the transaction, close c->e, make the database durable, then
     * visible under its name, replacing what was there.  On failure the
     * staging copy is removed and nothing under the name changed.  Frees c's
     * strings either way. */
    int (*create_commit)(db_create *c);
    /* Close c->e and remove what create_begin wrote; frees c's strings.  c
     * may be one whose create_begin failed or that was committed. */
    void (*create_abort)(db_create *c);
    /* SQLM_OK when a database of this engine can be reached under name
     * (file engines: the file exists and can be read); else SQLM_IO with
     * "NAME: cannot open model database" recorded.  Whether it holds a
     * complete sqlm model is then read from its sqlm_meta table
     * (sqlm_modeldb_open()). */
    int (*probe)(const char *name);
    /* Remove the database name and the engine's side files (journal, WAL);
     * nothing there is not an error. */
    void (*remove)(const char *name);
    /* Memory budget (NULL where the engine has no weight cache): cap the
     * engine's heap at heap_limit bytes and record the pages the next step
     * reads; then keep weight_bytes of them resident and stream the rest. */
    int (*mem_trace)(engine *e, size_t heap_limit);
    int (*mem_plan)(engine *e, size_t weight_bytes);
    bool (*mem_stats)(engine *e, struct wcache_stats *st);   /* false: no cache */
    /* Optional bulk load: n_rows rows of ncol values (row-major) appended to
     * table, inside the current transaction; NULL: import uses INSERTs. */
    int (*append)(engine *e, const char *table, int ncol, const db_val *vals, int n_rows);
} db_methods;

struct engine {
    const db_methods *m;
};

/* An engine by name ("sqlite", "duckdb"); NULL if unknown (db/registry.c). */
const db_methods *sqlm_db_find(const char *name);
/* The engine that wrote the database file at path (by its magic), or NULL. */
const db_methods *sqlm_db_sniff(const char *path);
/* The engine of the database name: engine_name's when given, else the one
 * that wrote it (file engines: by magic; SQLite when none is recognised),
 * checked by its probe().  SQLM_OK with *out set, or an error recorded. */
int sqlm_db_resolve(const char *name, const char *engine_name, const db_methods **out);

/* The file engines' database creation, probe and removal (db/filedb.c):
 * NAME.tmp-PID written inside one transaction, fsync'ed, renamed to NAME. */
int sqlm_db_file_create_begin(db_create *c, const char *name, const engine_opts *o);
int sqlm_db_file_create_commit(db_create *c);
void sqlm_db_file_create_abort(db_create *c);
int sqlm_db_file_probe(const char *name);
/* NAME and SQLite's side files NAME-journal, NAME-wal and NAME-shm. */
void sqlm_db_file_remove(const char *name);
/* A db_row_cb that stores the row's first value, an integer, in *(int64_t *)ctx. */
int sqlm_db_int_row(void *ctx, int ncol, const db_val *vals);
extern const db_methods sqlm_db_sqlite;
extern const db_methods sqlm_db_duckdb;
extern const db_methods sqlm_db_duckdb_native;   /* DuckDB with sqlm's C functions (same files) */
/* Load libduckdb.so once ($SQLM_DUCKDB_LIB, .deps/duckdb/..., the system's);
 * SQLM_OK, or SQLM_UNSUPPORTED with a message saying how to install it. */
int sqlm_duckdb_load(void);
const char *sqlm_duckdb_lib_version(void);   /* after sqlm_duckdb_load(), else NULL */

#endif /* SQLM_ENGINE_H */
