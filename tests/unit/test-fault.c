/*
 * test-fault.c - fault injection in SQLite's manner (issue 27): the Nth
 * allocation or the Nth write of the process fails, once or from then on,
 * looped over N through whole imports (stories260K, the TinyStories-656K
 * GGUF and safetensors) and a whole generation (sqlm_open, sqlm_session_new,
 * sqlm_generate_begin/next of a few tokens: the public API), on 1 and 2
 * threads.  Every failure must end cleanly: an error code with a message,
 * nothing leaked, no output database and no staging file NAME.tmp-PID after
 * a failed import; a database that opens after an import that succeeded
 * (and generates the reference text, for stories260K); the reference text
 * (the start of the golden one) from a generation that succeeded and from
 * the next one without faults.
 *
 * How: this program defines malloc, calloc, realloc, free, aligned_alloc,
 * posix_memalign, memalign and the write path (write, pwrite64, pwrite,
 * fsync, fdatasync, ftruncate64), so they interpose for the whole process,
 * libsqlite3 and jansson included (nm -D: SQLite's unix VFS writes with
 * pwrite64 and write, syncs with fdatasync and truncates with ftruncate64;
 * sqlm itself syncs with fsync).  Allocations go on to glibc's
 * __libc_malloc family, writes to the system calls.  A countdown makes the
 * Nth call fail (NULL; -1 with ENOSPC or EIO): once, or (persistent) that
 * call and every one after it.  Writes to stdin/stdout/stderr never fail.
 *
 * Leaks are counted, not found by LeakSanitizer: ASan and LSan replace malloc
 * themselves, which these wrappers must own.  The wrappers count live blocks
 * (each allocation +1, each free of a block -1); the count after a faulted
 * call must equal the count before it.  One run without faults first leaves
 * the state that glibc and SQLite keep for the process in place.
 *
 * N goes over every call up to FAULT_DENSE, then a geometric sample up to
 * the calls that one run makes; the test prints how many points it tried.
 */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "../../include/sqlm.h"
#include "../test.h"

int sqlm_error(int rc, const char *fmt, ...);

/* ------------------------------------------------------------ the wrappers */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

enum { F_ALLOC, F_WRITE };
static atomic_int fault_armed;       /* 0: off; else F_ALLOC + 1 or F_WRITE + 1 */
static atomic_long fault_calls[2];   /* calls of each kind since armed */
static long fault_at;                /* the call that fails (1-based) */
static int fault_persistent;         /* every call from fault_at on fails */
static atomic_long fault_fired;      /* calls failed */
static atomic_long live_blocks;      /* allocated and not freed */
static int fault_phase;              /* the mode under test (a condition for a debugger) */

static int fault_hit(int kind) {
    if (atomic_load_explicit(&fault_armed, memory_order_relaxed) != kind + 1) return 0;
    long n = atomic_fetch_add(&fault_calls[kind], 1) + 1;
    if (n == fault_at || (fault_persistent && n > fault_at)) {
        atomic_fetch_add(&fault_fired, 1);
        return 1;
    }
    return 0;
}

static void *counted(void *p) {
    if (p) atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
    return p;
}

void *malloc(size_t n) {
    if (fault_hit(F_ALLOC)) { errno = ENOMEM; return NULL; }
    return counted(__libc_malloc(n));
}

void *calloc(size_t n, size_t k) {
    if (fault_hit(F_ALLOC)) { errno = ENOMEM; return NULL; }
    return counted(__libc_calloc(n, k));
}

void free(void *p) {
    if (!p) return;
    atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    __libc_free(p);
}

void *realloc(void *p, size_t n) {
    if (!p) return malloc(n);
    if (n == 0) { free(p); return NULL; }
    if (fault_hit(F_ALLOC)) { errno = ENOMEM; return NULL; }
    return __libc_realloc(p, n);   /* the block stays one block */
}

void *memalign(size_t a, size_t n) {
    if (fault_hit(F_ALLOC)) { errno = ENOMEM; return NULL; }
    return counted(__libc_memalign(a, n));
}

void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }

int posix_memalign(void **out, size_t a, size_t n) {
    if (a < sizeof(void *) || (a & (a - 1))) return EINVAL;
    void *p = memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

static int write_fails(int fd, int err) {
    if (fd <= 2 || !fault_hit(F_WRITE)) return 0;
    errno = err;
    return 1;
}

ssize_t write(int fd, const void *p, size_t n) {
    if (write_fails(fd, ENOSPC)) return -1;
    return syscall(SYS_write, fd, p, n);
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off) {
    if (write_fails(fd, ENOSPC)) return -1;
    return syscall(SYS_pwrite64, fd, p, n, off);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off) { return pwrite64(fd, p, n, off); }

int fsync(int fd) {
    if (write_fails(fd, EIO)) return -1;
    return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd) {
    if (write_fails(fd, EIO)) return -1;
    return (int)syscall(SYS_fdatasync, fd);
}

int ftruncate64(int fd, off_t len) {
    if (write_fails(fd, EIO)) return -1;
    return (int)syscall(SYS_ftruncate, fd, len);
}

int ftruncate(int fd, off_t len) { return ftruncate64(fd, len); }

static void arm(int kind, long at, int persistent) {
    fault_at = at;
    fault_persistent = persistent;
    atomic_store(&fault_fired, 0);
    atomic_store(&fault_calls[F_ALLOC], 0);
    atomic_store(&fault_calls[F_WRITE], 0);
    atomic_store(&fault_armed, kind + 1);
}

static void disarm(void) { atomic_store(&fault_armed, 0); }

/* ------------------------------------------------------------- the runs */

#define MODEL MODELS "stories260K/stories260K.bin"
#define GGUF MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf"
#define SAFETENSORS MODELS "TinyStories-656K/model.safetensors"
#define PROMPT "Once upon a time"
#define N_GEN 6
#define FAULT_DENSE 600

static const char *kind_name[] = { "allocation", "write" };

/* The files in the test's folder other than keep (count, and the first
 * one's name in first). */
static char out_dir[512];
static int stray_files(const char *keep, char *first, size_t cap) {
    DIR *d = opendir(out_dir);
    int n = 0;
    first[0] = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' || (keep && strcmp(e->d_name, keep) == 0)) continue;
        if (!n++) snprintf(first, cap, "%s", e->d_name);
    }
    if (d) closedir(d);
    return n;
}

static bool has_message(void) {
    const char *m = sqlm_errmsg();
    return m && m[0] && strcmp(m, "no error") != 0;
}

/* A generation: open, a session, greedy N_GEN tokens after PROMPT, free and
 * close.  The text in text (NUL-terminated). */
static int gen_threads = 1;
static int generate(const char *db, char *text, size_t cap) {
    sqlm_model_params mp = sqlm_model_default_params();
    mp.threads = gen_threads;
    sqlm_model *m = NULL;
    sqlm_session *s = NULL;
    int32_t *ids = NULL, n = 0;
    text[0] = 0;
    int rc = sqlm_open(db, &mp, &m);
    if (!rc) rc = sqlm_session_new(m, NULL, &s);
    if (!rc) rc = sqlm_tokenize_prompt(m, PROMPT, strlen(PROMPT), &ids, &n);
    if (!rc) {
        sqlm_sampling_params sp = sqlm_sampling_default_params();
        sp.temperature = 0;
        sqlm_session_set_sampling(s, &sp);
        sqlm_generate_params gp = sqlm_generate_default_params();
        gp.max_tokens = N_GEN;
        gp.ignore_eos = true;
        rc = sqlm_generate_begin(s, ids, n, &gp, NULL);
        size_t len = 0;
        for (sqlm_token_event ev = { .finish = SQLM_FINISH_NONE }; !rc && ev.finish == SQLM_FINISH_NONE;) {
            rc = sqlm_generate_next(s, &ev);
            if (!rc && len + ev.len < cap) memcpy(text + len, ev.text, ev.len), len += ev.len;
        }
        text[len] = 0;
    }
    sqlm_free(ids);
    sqlm_session_free(s);
    sqlm_close(m);
    return rc;
}

typedef struct tally {
    int points, failed, ok, bad, unfired;
    long total;          /* calls of the kind in a run without faults */
} tally;

/* The next N after at: every one up to FAULT_DENSE, then geometric. */
static long next_at(long at, long dense, double ratio) {
    if (at < dense) return at + 1;
    long n = (long)(at * ratio);
    return n > at ? n : at + 1;
}

static void report_bad(tally *t, const char *what, int kind, int persistent, long at, const char *why) {
    t->bad++;
    if (t->bad <= 12)
        fprintf(stderr, "  %s, %s %s %ld: %s (rc message: %s)\n", what, persistent ? "every" : "only",
                kind_name[kind], at, why, sqlm_errmsg());
}

/* Import src into out with the at-th call of kind failing. */
static void import_point(tally *t, const char *src, const char *engine, const char *ref, const char *out,
                         const char *out_name, int kind, int persistent, long at) {
    sqlm_import_params ip = sqlm_import_default_params();
    ip.engine = engine;
    char stray[256];
    sqlm_error(SQLM_OK, "%s", "");
    long live = atomic_load(&live_blocks);
    arm(kind, at, persistent);
    int rc = sqlm_import_model(src, out, &ip);
    disarm();
    long leaked = atomic_load(&live_blocks) - live;
    t->points++;
    t->unfired += atomic_load(&fault_fired) == 0;
    /* DuckDB's runtime keeps blocks from one call to the next (the count
     * moves by one either way): not counted there */
    if (leaked && !engine) {
        char why[64];
        snprintf(why, sizeof why, "%ld blocks leaked (rc %d)", leaked, rc);
        report_bad(t, "import", kind, persistent, at, why);
    }
    if (rc) {
        t->failed++;
        if (!has_message()) report_bad(t, "import", kind, persistent, at, "an error without a message");
        if (access(out, F_OK) == 0) report_bad(t, "import", kind, persistent, at, "failed but left the output");
        if (stray_files(NULL, stray, sizeof stray))
            report_bad(t, "import", kind, persistent, at, "failed but left a file behind");
    } else {
        t->ok++;
        sqlm_model *m = NULL;
        if (sqlm_open(out, NULL, &m) != SQLM_OK)
            report_bad(t, "import", kind, persistent, at, "succeeded but the database does not open");
        sqlm_close(m);
        char text[4096];
        if (ref && (generate(out, text, sizeof text) != SQLM_OK || strcmp(text, ref) != 0))
            report_bad(t, "import", kind, persistent, at, "succeeded but the database generates another text");
        if (stray_files(out_name, stray, sizeof stray))
            report_bad(t, "import", kind, persistent, at, "left a file beside the output");
    }
    remove(out);
}

static void generate_point(tally *t, const char *db, const char *ref, int kind, int persistent, long at) {
    char text[4096];
    sqlm_error(SQLM_OK, "%s", "");
    long live = atomic_load(&live_blocks);
    arm(kind, at, persistent);
    int rc = generate(db, text, sizeof text);
    disarm();
    long leaked = atomic_load(&live_blocks) - live;
    t->points++;
    t->unfired += atomic_load(&fault_fired) == 0;
    if (leaked) {
        char why[64];
        snprintf(why, sizeof why, "%ld blocks leaked (rc %d)", leaked, rc);
        report_bad(t, "generation", kind, persistent, at, why);
    }
    if (rc) {
        t->failed++;
        if (!has_message()) report_bad(t, "generation", kind, persistent, at, "an error without a message");
    } else {
        t->ok++;
        if (strcmp(text, ref) != 0) report_bad(t, "generation", kind, persistent, at, "succeeded with another text");
    }
    if (generate(db, text, sizeof text) != SQLM_OK || strcmp(text, ref) != 0)
        report_bad(t, "generation", kind, persistent, at, "the next run without faults differs");
}

/* Calls of kind in one faultless run of f. */
static long count_calls(int kind, void (*f)(void *), void *ctx) {
    arm(kind, 0, 0);
    f(ctx);
    long n = atomic_load(&fault_calls[kind]);
    disarm();
    return n;
}

typedef struct gen_ctx {
    const char *db;
    char text[4096];
} gen_ctx;

typedef struct import_ctx {
    const char *src, *out, *engine;
} import_ctx;

static void run_import(void *ctx) {
    const import_ctx *c = ctx;
    sqlm_import_params ip = sqlm_import_default_params();
    ip.engine = c->engine;
    sqlm_import_model(c->src, c->out, &ip);
    remove(c->out);
}

static void run_generate(void *ctx) {
    gen_ctx *g = ctx;
    generate(g->db, g->text, sizeof g->text);
}

int main(void) {
    if (!FIXTURE(MODEL)) return TEST_DONE();
    double t0 = sqlm_now();
    /* the wrappers are the process's: SQLite's and jansson's allocations
     * fail too, and the live count follows them */
    long live = atomic_load(&live_blocks);
    void *p = sqlite3_malloc(16);
    CHECK_EQ(live + 1, atomic_load(&live_blocks));
    sqlite3_free(p);
    CHECK_EQ(live, atomic_load(&live_blocks));
    arm(F_ALLOC, 1, 0);
    p = sqlite3_malloc(16);
    json_t *j = json_object();
    disarm();
    CHECK(p == NULL);
    CHECK(j != NULL);   /* the second call */
    json_decref(j);
    arm(F_ALLOC, 1, 0);
    j = json_object();
    disarm();
    CHECK(j == NULL);
    CHECK_EQ(live, atomic_load(&live_blocks));

    const char *db = test_tmp_path("ref.db");
    int rc = sqlm_import_model(MODEL, db, NULL);
    CHECK_EQ(SQLM_OK, rc);
    if (rc) { fprintf(stderr, "import: %s\n", sqlm_errmsg()); return TEST_DONE(); }
    /* the model database lives in its own folder: the import's folder must
     * hold nothing else */
    char out[600];
    snprintf(out_dir, sizeof out_dir, "%s/out", test_tmpdir());
    CHECK_EQ(0, mkdir(out_dir, 0700));
    snprintf(out, sizeof out, "%s/m.db", out_dir);

    gen_ctx ref = { .db = db };
    CHECK_EQ(SQLM_OK, generate(db, ref.text, sizeof ref.text));
    CHECK(strlen(ref.text) > 0);
    /* the reference text begins the golden one */
    size_t glen;
    char *golden = (char *)test_read_file(GOLDEN "generation_stories260K.jsonl", &glen);
    if (glen) golden[glen - 1] = 0;
    const char *line = glen ? strstr(golden, "\"" PROMPT "\"") : NULL;
    const char *gt = line ? strstr(line, "\"text\"") : NULL;
    gt = gt ? strchr(gt + 6, '"') : NULL;
    CHECK(gt && strncmp(gt + 1, ref.text, strlen(ref.text)) == 0);
    free(golden);
    import_ctx warm = { MODEL, out, NULL };
    run_import(&warm);   /* warm-up: the process's one-time state */

    /* every N up to dense, then N grows by ratio (an import is quicker than
     * a generation: it is sampled more densely) */
    /* DuckDB: writes once only.  Its library ends the process (std::terminate)
     * when an allocation fails inside duckdb_open, or when a write keeps
     * failing while it closes, so those modes cannot run on it. */
    static const struct {
        const char *what, *src, *engine;
        int kind, persistent, threads;
        long dense;
        double ratio;
    } modes[] = {
        { "import", MODEL, NULL, F_ALLOC, 0, 1, FAULT_DENSE, 1.002 },
        { "import", MODEL, NULL, F_ALLOC, 1, 1, FAULT_DENSE, 1.004 },
        { "import", MODEL, NULL, F_WRITE, 0, 1, FAULT_DENSE, 1.002 },
        { "import", MODEL, NULL, F_WRITE, 1, 1, FAULT_DENSE, 1.004 },
        { "import", GGUF, NULL, F_ALLOC, 0, 1, FAULT_DENSE, 1.002 },
        { "import", GGUF, NULL, F_WRITE, 0, 1, FAULT_DENSE, 1.002 },
        { "import", SAFETENSORS, NULL, F_ALLOC, 0, 1, FAULT_DENSE, 1.002 },
        { "import", SAFETENSORS, NULL, F_WRITE, 0, 1, FAULT_DENSE, 1.002 },
        { "import", MODEL, "duckdb", F_WRITE, 0, 1, 40, 1.1 },
        { "generation", NULL, NULL, F_ALLOC, 0, 1, FAULT_DENSE, 1.025 },
        { "generation", NULL, NULL, F_ALLOC, 1, 1, FAULT_DENSE / 2, 1.05 },
        { "generation", NULL, NULL, F_WRITE, 0, 1, FAULT_DENSE, 1.025 },
        { "2 threads", NULL, NULL, F_ALLOC, 0, 2, FAULT_DENSE / 4, 1.05 },
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        double t1 = sqlm_now();
        fault_phase = (int)i;
        gen_threads = modes[i].threads;
        bool imp = modes[i].what[0] == 'i';
        import_ctx ic = { modes[i].src, out, modes[i].engine };
        if (imp && !FIXTURE(ic.src)) continue;
        if (ic.engine && !sqlm_engine_available(ic.engine)) {
            printf("import on %s skipped: the library cannot be loaded (not counted)\n", ic.engine);
            continue;
        }
        tally t = { 0 };
        if (imp) run_import(&ic);   /* this format's one-time state */
        t.total = imp ? count_calls(modes[i].kind, run_import, &ic)
                      : count_calls(modes[i].kind, run_generate, &ref);
        for (long at = 1; at <= t.total; at = next_at(at, modes[i].dense, modes[i].ratio)) {
            if (imp)
                import_point(&t, ic.src, ic.engine, strcmp(ic.src, MODEL) == 0 ? ref.text : NULL, out, "m.db",
                             modes[i].kind, modes[i].persistent, at);
            else generate_point(&t, db, ref.text, modes[i].kind, modes[i].persistent, at);
        }
        char base[64] = "";
        if (imp) snprintf(base, sizeof base, "%s%s%s", strrchr(ic.src, '/') + 1, ic.engine ? " on " : "",
                          ic.engine ? ic.engine : "");
        printf("%-10s %-26s %-10s %-10s: %4d points of %6ld calls, %4d failed, %4d succeeded, %d bad; %.1f s\n",
               modes[i].what, base, kind_name[modes[i].kind], modes[i].persistent ? "persistent" : "once", t.points,
               t.total, t.failed, t.ok, t.bad, sqlm_now() - t1);
        CHECK_EQ(0, t.bad);
        /* every point reached its call: the runs repeat (on 2 threads the
         * order of the threads' calls may vary) */
        if (modes[i].threads == 1) CHECK_EQ(0, t.unfired);
        if (modes[i].kind == F_ALLOC) CHECK(t.total > 1000);
        else if (imp) CHECK(t.total > 10);
        test_pass += t.points - t.bad;
    }
    printf("fault injection: %.1f s\n", sqlm_now() - t0);
    return TEST_DONE();
}
