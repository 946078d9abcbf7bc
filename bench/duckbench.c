/*
 * duckbench.c - the DuckDB measurements of `make bench` (scripts/bench-duckdb.sh):
 *
 *   duckbench ceiling DIR ROWS COLS
 *       DuckDB's ceiling for one matrix-vector product in pure SQL: a
 *       ROWS x COLS float32 table written as import writes weights
 *       (uncompressed, small row groups), one row per matrix row, as a
 *       FLOAT[] list, as a FLOAT[COLS] array, as two ROW2COL pivot
 *       columns (one subquery each), as ROW2COL's row split (two UNION
 *       ALL halves of whole or pivoted rows of the table) and as its table
 *       split (the halves as two tables, of rows or of two blocks of rows
 *       each), times x; the best of several
 *       runs on 1 and 2 threads, as weight bytes per second.
 *   duckbench run DB [-t N] [--no-cte-merge] [--row2col-cols N] [--prompt N]
 *                    [--decode N] [--profile] [--steps] [--engine duckdb|duckdb-native]
 *                    [--products-only]
 *       prefill latency of an N-token prompt (best of --repeat R runs), then
 *       decode latency per token (greedy; the best step, and the mean), and
 *       the weight bytes the best decode step reads per second; --profile
 *       adds where a decode step's time goes, by statement (mean), and
 *       where a prefill's went; --steps prints each decode step's time.
 *       --products-only times the program with every operator but the
 *       products (and the embedding, cache append and last position)
 *       copying its input: a bound on what the rest can save (bench/bound.c).
 *   duckbench sql DB FILE [-t N] [--prompt N] [--decode D] [--reps R] [--rw]
 *       isolated timings of hand-written SQL: after a prompt of N tokens
 *       and D decode steps (default 1: the state of decode step N), each block of
 *       FILE (a line "-- @name [MODE]" starts one; statements end with
 *       ";" at the end of a line) runs R times, in rounds that run every
 *       block once (so that load changes fall on all): best and median ms.  MODE
 *       "once" runs the block once, untimed (set-up); "tx" runs each
 *       repetition inside BEGIN ... ROLLBACK; "step" sets t_in to the
 *       next position first (one token), as a decode step does, and
 *       keeps what the block wrote; "show" runs it once and prints the
 *       rows of each statement (EXPLAIN ANALYZE, checks); "pre" runs it
 *       first, on the empty tables of a new session ("preshow" also
 *       prints its rows); "prog" is a whole
 *       step program: prepared on empty tables (as a session prepares its
 *       own), run on the prompt, then timed over R decode steps, in 3
 *       rounds (the file then holds only pre and prog blocks; a prog
 *       block's leading SET statements are made before it is prepared).  --rw opens DB
 *       writable (for set-up blocks that write tables of other layouts).
 *
 * Prints one line of key=value pairs per measurement for the script.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/run/run.h"
#include "../src/kern/kern.h"
#include "../src/layout/layout.h"

extern const sql_emit_hook bench_products_only;   /* bench/bound.c */

static void die(const char *what, int rc) {
    fprintf(stderr, "duckbench: %s: %s (%s)\n", what, sqlm_errmsg(), sqlm_errstr(rc));
    exit(1);
}

/* Best of reps runs of sql, in seconds: prepared once, as a program's
 * statements are (run unprepared, planning added about 0.6 ms to a 1.5 ms
 * 4096 x 768 product). */
static double best_of(engine *e, const char *sql, int reps) {
    sql_stmt st = { .name = "ceiling", .sql = (char *)sql };
    sql_program p = { .setup = "SELECT 1", .reset = "SELECT 1", .steps = &st, .n_steps = 1 };
    int rc = e->m->load_program(e, &p);
    if (rc) die("prepare", rc);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = sqlm_now();
        if ((rc = e->m->run_program(e, NULL))) die("query", rc);
        double t = sqlm_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* The greedy next token: the first of the largest logits. */
static int32_t greedy(const float *lg, int n) {
    int32_t best = 0;
    for (int j = 1; j < n; j++)
        if (lg[j] > lg[best]) best = j;
    return best;
}

static int ceiling(const char *dir, long rows, long cols) {
    char path[512], sql[2048];
    snprintf(path, sizeof path, "%s/ceiling.duck", dir);
    sqlm_db_duckdb.remove(path);
    engine *e;
    engine_opts co = { .create = true };
    int rc = sqlm_db_duckdb.open(&e, path, &co);
    if (rc) die("create", rc);
    snprintf(sql, sizeof sql,
             "CREATE TABLE wl AS SELECT range::INTEGER AS row, list_transform(range(%ld), lambda j:"
             " ((hash(range * 7919 + j) %% 2001) / 1000.0 - 1)::FLOAT) AS v FROM range(%ld);"
             "CREATE TABLE wa AS SELECT row, v::FLOAT[%ld] AS v FROM wl;"
             "CREATE TABLE xl AS SELECT 0 AS pos, list_transform(range(%ld), lambda j: (j %% 13 - 6)::FLOAT) AS v;"
             "CREATE TABLE xa AS SELECT pos, v::FLOAT[%ld] AS v FROM xl;"
             "CREATE TABLE wp AS SELECT row, v[1 : %ld] AS c0, v[%ld : %ld] AS c1 FROM wl;"
             "CREATE TABLE wt0 AS SELECT row, v FROM wl WHERE row < %ld ORDER BY row;"
             "CREATE TABLE wt1 AS SELECT row, v FROM wl WHERE row >= %ld ORDER BY row;"
             "CREATE TABLE wb0 AS SELECT min(row) AS row, list(v ORDER BY row) AS m FROM wl WHERE row < %ld"
             " GROUP BY row // %ld ORDER BY 1;"
             "CREATE TABLE wb1 AS SELECT min(row) AS row, list(v ORDER BY row) AS m FROM wl WHERE row >= %ld"
             " GROUP BY row // %ld ORDER BY 1; CHECKPOINT",
             cols, rows, cols, cols, cols, cols / 2, cols / 2 + 1, cols, rows / 2, rows / 2,
             rows / 2, (rows + 3) / 4, rows / 2, (rows + 3) / 4);
    if ((rc = e->m->exec(e, sql))) die("fill", rc);
    e->m->close(e);
    const double bytes = (double)rows * (double)cols * 4;
    /* the ROW2COL form of the matmul template: 2 pivot columns, 1 per subquery */
    char pivot[1024];
    snprintf(pivot, sizeof pivot,
             "SELECT r.pos, list(r.s ORDER BY r.row) FROM (SELECT s0.pos AS pos, s0.row AS row, (s0.p + s1.p)::FLOAT AS s"
             " FROM (SELECT x.pos AS pos, w.row AS row, list_dot_product(w.c0, x.c0) AS p FROM wp w"
             " CROSS JOIN (SELECT pos, v[1 : %ld] AS c0 FROM xl) x ORDER BY w.row, x.pos) s0"
             " POSITIONAL JOIN (SELECT x.pos AS pos, w.row AS row, list_dot_product(w.c1, x.c1) AS p FROM wp w"
             " CROSS JOIN (SELECT pos, v[%ld : %ld] AS c1 FROM xl) x ORDER BY w.row, x.pos) s1) r GROUP BY r.pos",
             cols / 2, cols / 2 + 1, cols);
    /* ROW2COL's row split (layout.c, sqlm_layout_duckdb.row_split): two UNION ALL halves at
     * a row-group boundary, whole rows and pivoted rows */
    char split[1024], psplit[1536];
    const long at = sqlm_layout_duckdb.row_split(&sqlm_layout_duckdb, rows, cols);
    snprintf(split, sizeof split,
             "SELECT r.pos, list(r.s ORDER BY r.row) FROM (SELECT x.pos AS pos, w.row AS row, list_dot_product(w.v, x.v) AS s"
             " FROM wl w CROSS JOIN xl x WHERE w.row < %ld UNION ALL SELECT x.pos AS pos, w.row AS row,"
             " list_dot_product(w.v, x.v) AS s FROM wl w CROSS JOIN xl x WHERE w.row >= %ld) r GROUP BY r.pos", at, at);
    snprintf(psplit, sizeof psplit,
             "SELECT r.pos, list(r.s ORDER BY r.row) FROM (SELECT x.pos AS pos, w.row AS row,"
             " (list_dot_product(w.c0, x.c0) + list_dot_product(w.c1, x.c1))::FLOAT AS s FROM wp w CROSS JOIN"
             " (SELECT pos, v[1 : %ld] AS c0, v[%ld : %ld] AS c1 FROM xl) x WHERE w.row < %ld UNION ALL"
             " SELECT x.pos AS pos, w.row AS row, (list_dot_product(w.c0, x.c0) + list_dot_product(w.c1, x.c1))::FLOAT AS s"
             " FROM wp w CROSS JOIN (SELECT pos, v[1 : %ld] AS c0, v[%ld : %ld] AS c1 FROM xl) x WHERE w.row >= %ld) r"
             " GROUP BY r.pos", cols / 2, cols / 2 + 1, cols, at, cols / 2, cols / 2 + 1, cols, at);
    /* ROW2COL's table split (layout.c, sqlm_layout_duckdb.split_tables): the halves
     * as two tables */
    static const char tsplit[] =
        "SELECT r.pos, list(r.s ORDER BY r.row) FROM (SELECT x.pos AS pos, w.row AS row, list_dot_product(w.v, x.v) AS s"
        " FROM wt0 w CROSS JOIN xl x UNION ALL SELECT x.pos AS pos, w.row AS row, list_dot_product(w.v, x.v) AS s"
        " FROM wt1 w CROSS JOIN xl x) r GROUP BY r.pos";
    /* ROW2COL's blocks (layout.c, sqlm_layout_blocks()): the two tables hold two
     * blocks of rows each */
    static const char blocks[] =
        "SELECT r.pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s))), lambda t: t.v))"
        " FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s"
        " FROM wb0 w CROSS JOIN xl x UNION ALL SELECT x.pos AS pos, w.row AS row,"
        " list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s FROM wb1 w CROSS JOIN xl x) r GROUP BY r.pos";
    const struct { const char *name, *sql; } q[] = {
        { "list", "SELECT x.pos, list(list_dot_product(w.v, x.v) ORDER BY w.row) FROM xl x CROSS JOIN wl w GROUP BY x.pos" },
        { "array", "SELECT x.pos, list(array_inner_product(w.v, x.v) ORDER BY w.row) FROM xa x CROSS JOIN wa w GROUP BY x.pos" },
        { "pivot2", pivot },
        { "split2", at > 0 ? split : NULL },
        { "pivot2-split2", at > 0 ? psplit : NULL },
        { "split2-tables", tsplit },
        { "split2-blocks", blocks },
    };
    for (int t = 1; t <= 2; t++) {
        engine_opts ro = { .readonly = true, .threads = t };
        if ((rc = sqlm_db_duckdb.open(&e, path, &ro))) die("open", rc);
        for (size_t i = 0; i < ARRAY_LEN(q); i++) {
            if (!q[i].sql) continue;
            best_of(e, q[i].sql, 2);   /* warm */
            double s = best_of(e, q[i].sql, 7);
            printf("ceiling rows=%ld cols=%ld layout=%s threads=%d ms=%.3f GBps=%.3f\n", rows, cols,
                   q[i].name, t, s * 1e3, bytes / s / 1e9);
        }
        e->m->close(e);
    }
    sqlm_db_duckdb.remove(path);
    return 0;
}

/* Statement names without their layer ("l3_qkv" -> "qkv", "kv3" -> "kv"). */
static void group_name(const char *name, char *out, size_t n) {
    const char *p = name;
    if (p[0] == 'l' && p[1] >= '0' && p[1] <= '9') {
        p++;
        while (*p >= '0' && *p <= '9') p++;
        if (*p == '_') p++;
    }
    snprintf(out, n, "%s", p);
    size_t len = strlen(out);
    while (len && out[len - 1] >= '0' && out[len - 1] <= '9') out[--len] = 0;
}

/* Where the time between two readings of the statements' seconds went, by
 * statement (layers summed), per run: a decode step's (t_run: its latency,
 * the rest is outside the statements) or the prefills' (t_run 0). */
static void print_profile(const char *what, const sql_program *p, const double *secs, const double *before,
                          int n_runs, double t_run) {
    char names[64][32];
    double t[64] = { 0 }, total = 0;
    int n_names = 0;
    for (int i = 0; i < p->n_steps; i++) {
        char gname[32];
        group_name(p->steps[i].name, gname, sizeof gname);
        int k = 0;
        while (k < n_names && strcmp(names[k], gname)) k++;
        if (k == n_names && n_names < 64) snprintf(names[n_names++], 32, "%s", gname);
        if (k < 64) t[k] += (secs[i] - before[i]) / n_runs;
        total += (secs[i] - before[i]) / n_runs;
    }
    printf("%s statements=%d step_ms=%.2f", what, p->n_steps, total * 1e3);
    if (t_run > 0) printf(" outside_ms=%.2f", (t_run - total) * 1e3);
    for (int k = 0; k < n_names; k++) printf(" %s=%.2f", names[k], t[k] * 1e3);
    printf("\n");
}

static int run(int argc, char **argv) {
    const char *path = argv[2];
    int threads = 2, n_prompt = 25, n_decode = 8, repeat = 1;
    const char *engine_name = "duckdb";
    bool profile = false, steps = false;
    session_opts so = { .ir = { .cte_merge = true } };
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-cte-merge")) so.ir.cte_merge = false;
        else if (!strcmp(argv[i], "--products-only")) so.ir.emit_hook = &bench_products_only;
        else if (!strcmp(argv[i], "--row2col-cols") && i + 1 < argc) so.ir.row2col_per = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--profile")) profile = true;
        else if (!strcmp(argv[i], "--steps")) steps = true;
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--engine") && i + 1 < argc) engine_name = argv[++i];
        else {
            fprintf(stderr, "duckbench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    modeldb db;
    engine_opts eo = { .readonly = true, .threads = threads };
    int rc = sqlm_modeldb_open(&db, path, engine_name, &eo);
    if (rc) die(path, rc);
    /* weight bytes a decode step reads: every matrix but the embedding */
    double wbytes = 0;
    for (int i = 0; i < db.n_weights; i++)
        if (strcmp(db.weights[i].name, "embed") != 0)
            wbytes += (double)db.weights[i].n_out * (double)db.weights[i].n_in *
                      (sqlm_vec_act_type(db.weights[i].dtype) == DT_Q8_0 ? 1 + 4.0 / QK : 4);   /* int8 blocks + scales */
    session *s;
    if ((rc = sqlm_exec_init(&s, &db, &so))) die("session", rc);
    int32_t *toks = malloc(sizeof *toks * (size_t)(n_prompt + 1));
    for (int i = 0; i < n_prompt; i++) toks[i] = i == 0 && db.voc.bos >= 0 ? db.voc.bos : (i * 7919 + 13) % db.cfg.vocab_size;
    /* The machine is shared: the prefill is the best of `repeat` runs, a
     * decode token the best of its steps (mean also printed). */
    const float *lg;
    double t_prefill = 1e30;
    for (int r = 0; r < (repeat > 0 ? repeat : 1); r++) {
        if (r && (rc = sqlm_exec_reset(s))) die("reset", rc);
        double t0 = sqlm_now();
        if ((rc = sqlm_exec_eval(s, toks, n_prompt, &lg))) die("prefill", rc);
        double t = sqlm_now() - t0;
        if (t < t_prefill) t_prefill = t;
    }
    const sql_program *p;
    const double *secs = sqlm_exec_stmt_seconds(s, &p);
    double *before = calloc((size_t)p->n_steps + 1, sizeof *before);
    memcpy(before, secs, sizeof *before * (size_t)p->n_steps);
    double t_decode = 0, t_best = 1e30;
    for (int k = 0; k < n_decode; k++) {
        int32_t next = greedy(lg, db.cfg.vocab_size);
        double t1 = sqlm_now();
        if ((rc = sqlm_exec_eval(s, &next, 1, &lg))) die("decode", rc);
        double t = sqlm_now() - t1;
        t_decode += t;
        if (steps) printf("step %d ms=%.1f\n", k, t * 1e3);
        if (t < t_best) t_best = t;
    }
    double per_tok = n_decode ? t_decode / n_decode : 0, best = n_decode ? t_best : 0;
    printf("run prompt=%d prefill_ms=%.1f decode=%d decode_ms=%.2f decode_mean_ms=%.2f weight_MB=%.1f GBps=%.3f\n",
           n_prompt, t_prefill * 1e3, n_decode, best * 1e3, per_tok * 1e3, wbytes / 1e6,
           best > 0 ? wbytes / best / 1e9 : 0);
    if (profile && n_decode) print_profile("profile", p, secs, before, n_decode, per_tok);
    if (profile) {
        double *zero = calloc((size_t)p->n_steps + 1, sizeof *zero);
        print_profile("profile_prefill", p, before, zero, repeat > 0 ? repeat : 1, 0);
        free(zero);
    }
    free(before);
    free(toks);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
    return 0;
}

/* Append a text column's value to the buf ctx. */
static int append_text(void *ctx, int nc, const db_val *v) {
    if (nc >= 1 && v[0].type == DBV_TEXT) sqlm_buf_append((buf *)ctx, v[0].p, v[0].n);
    return 0;
}

/* Print a row: integers, reals, text; vectors as their length and first values. */
static int print_row(void *ctx, int nc, const db_val *v) {
    (void)ctx;
    for (int c = 0; c < nc; c++) {
        if (c) fputs(" | ", stdout);
        if (v[c].type == DBV_INT) printf("%lld", (long long)v[c].i);
        else if (v[c].type == DBV_REAL) printf("%.9g", v[c].d);
        else if (v[c].type == DBV_TEXT) printf("%.*s", (int)v[c].n, (const char *)v[c].p);
        else if (v[c].type == DBV_NULL) fputs("NULL", stdout);
        else {
            const float *f = v[c].p;
            size_t n = v[c].n / sizeof *f;
            printf("[%zu:", n);
            for (size_t k = 0; k < n && k < 4; k++) printf(" %.9g", f[k]);
            fputs(n > 4 ? " ...]" : "]", stdout);
        }
    }
    putchar('\n');
    return 0;
}

/* CPU seconds of the process (all threads). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The statements of one block (text from p to end), split at ";" that ends a line. */
static int block_statements(char *p, char *end, char **out, int max) {
    int n = 0;
    while (p < end && n < max) {
        while (p < end && (*p == ' ' || *p == '\n')) p++;
        if (p >= end) break;
        char *q = p;
        while (q < end && !(*q == ';' && (q + 1 == end || q[1] == '\n'))) q++;
        if (q < end) *q = 0;
        else *end = 0;
        bool blank = true;
        for (char *c = p; *c; c++) {
            if (*c == '-' && c[1] == '-') { while (*c && *c != '\n') c++; if (!*c) break; continue; }
            if (*c != ' ' && *c != '\n') { blank = false; break; }
        }
        if (!blank) out[n++] = p;
        p = q + 1;
    }
    return n;
}

typedef struct block {
    char name[128], mode[16];
    char *st[256];        /* its statements, in FILE's text */
    int n;
    int n_set;            /* prog: its leading SET statements */
} block;

static int sql_blocks(int argc, char **argv) {
    const char *path = argv[2], *file = argv[3];
    int threads = 2, n_prompt = 25, reps = 15, n_decode = 1;
    bool rw = false;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rw")) rw = true;
        else {
            fprintf(stderr, "duckbench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    FILE *f = fopen(file, "rb");
    if (!f) { perror(file); return 1; }
    static char text[1 << 22];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    static block blocks[64];
    int n_blocks = 0;
    for (char *p = strstr(text, "-- @"); p && n_blocks < 64;) {
        char *hdr = p + 4, *body = strchr(hdr, '\n');
        if (!body) break;
        *body++ = 0;
        char *next_blk = strstr(body, "\n-- @");
        if (next_blk) *next_blk = 0;
        block *bl = &blocks[n_blocks++];
        sscanf(hdr, "%127s %15s", bl->name, bl->mode);
        bl->n = block_statements(body, body + strlen(body), bl->st, 256);
        p = next_blk ? next_blk + 1 : NULL;
    }
    modeldb db;
    engine_opts eo = { .readonly = !rw, .threads = threads };
    int rc = sqlm_modeldb_open(&db, path, "duckdb", &eo);
    if (rc) die(path, rc);
    session_opts so = { .ir = { .cte_merge = true } };
    session *s;
    if ((rc = sqlm_exec_init(&s, &db, &so))) die("session", rc);
    int32_t *toks = malloc(sizeof *toks * (size_t)(n_prompt + 1));
    for (int i = 0; i < n_prompt; i++) toks[i] = i == 0 && db.voc.bos >= 0 ? db.voc.bos : (i * 7919 + 13) % db.cfg.vocab_size;
    engine *e = db.e;
    /* "pre" blocks, then whole programs ("prog"), each prepared on empty
     * tables as a session prepares its program, then run as a prompt and
     * decode steps */
    int n_prog = 0;
    for (int b = 0; b < n_blocks; b++) {
        n_prog += !strcmp(blocks[b].mode, "prog");
        for (int k = 0; !strcmp(blocks[b].mode, "pre") && k < blocks[b].n; k++)
            if ((rc = e->m->exec(e, blocks[b].st[k]))) die(blocks[b].name, rc);
        if (!strcmp(blocks[b].mode, "preshow")) printf("sql %s\n", blocks[b].name);
        for (int k = 0; !strcmp(blocks[b].mode, "preshow") && k < blocks[b].n; k++)
            if ((rc = e->m->query(e, blocks[b].st[k], NULL, 0, print_row, NULL))) die(blocks[b].name, rc);
    }
    if (n_prog) {
        const int rounds = getenv("DUCKBENCH_ROUNDS") ? atoi(getenv("DUCKBENCH_ROUNDS")) : 3;
        double *pt = calloc((size_t)n_blocks * (size_t)(reps * rounds), sizeof *pt);
        double *pc = calloc((size_t)n_blocks * (size_t)(reps * rounds), sizeof *pc);
        double *smin[64] = { 0 };   /* per block: each statement's best seconds */
        sql_stmt *pst = calloc(256, sizeof *pst);
        for (int r = 0; r < rounds; r++)
            for (int b = 0; b < n_blocks; b++) {
                block *bl = &blocks[b];
                if (strcmp(bl->mode, "prog")) continue;
                /* every temporary table new, as at session start.  Emptied
                 * by DELETE, their deleted rows stay until a checkpoint and
                 * scans still read them (the same program twice: 731
                 * against 798 ms best step); emptied and checkpointed, the
                 * plans prepared on them are not a new session's (a
                 * TinyLlama out-projection's weights are copied in a new
                 * session's plan and not in the block's). */
                buf q;
                sqlm_buf_init(&q);
                rc = e->m->query(e, "SELECT 'DROP TABLE temp.main.\"' || table_name || '\"; ' || sql FROM duckdb_tables()"
                                 " WHERE temporary", NULL, 0, append_text, &q);
                if (!rc && q.p) rc = e->m->exec(e, q.p);
                sqlm_buf_free(&q);
                if (rc) die(bl->name, rc);
                /* leading SET statements: this block's settings, made before it is prepared */
                int n_set = 0;
                while (n_set < bl->n && !strncmp(bl->st[n_set], "SET ", 4))
                    if ((rc = e->m->exec(e, bl->st[n_set++]))) die(bl->name, rc);
                bl->n_set = n_set;
                for (int k = 0; k < bl->n; k++) pst[k] = (sql_stmt){ .name = bl->name, .sql = bl->st[k] };
                sql_program prog = { .steps = pst + n_set, .n_steps = bl->n - n_set, .setup = "SELECT 1", .reset = "SELECT 1" };
                if ((rc = e->m->load_program(e, &prog))) die(bl->name, rc);
                for (int i = 0; i < n_prompt; i++) {
                    db_val v[2] = { dbv_int(i), dbv_int(toks[i]) };
                    if ((rc = e->m->query(e, "INSERT INTO t_in(pos, tok) VALUES (?, ?)", v, 2, NULL, NULL))) die(bl->name, rc);
                }
                if ((rc = e->m->run_program(e, NULL))) die(bl->name, rc);
                double *secs = calloc((size_t)bl->n, sizeof *secs), *tot = calloc((size_t)bl->n, sizeof *tot);
                if (!smin[b]) {
                    smin[b] = malloc(sizeof *smin[b] * (size_t)bl->n);
                    for (int k = 0; k < bl->n; k++) smin[b][k] = 1e30;
                }
                for (int k = 0; k < reps; k++) {
                    memset(secs, 0, sizeof *secs * (size_t)bl->n);
                    char ins[96];
                    snprintf(ins, sizeof ins, "DELETE FROM t_in; INSERT INTO t_in VALUES (%d, %d)", n_prompt + k,
                             ((n_prompt + k) * 7919 + 13) % db.cfg.vocab_size);
                    if ((rc = e->m->exec(e, ins))) die(bl->name, rc);
                    double t0 = sqlm_now(), c0 = cpu_now();
                    if ((rc = e->m->run_program(e, secs))) die(bl->name, rc);
                    pt[b * reps * rounds + r * reps + k] = (sqlm_now() - t0) * 1e3;
                    pc[b * reps * rounds + r * reps + k] = (cpu_now() - c0) * 1e3;
                    for (int i = 0; i < bl->n - n_set; i++) {
                        tot[i] += secs[i];
                        if (secs[i] < smin[b][i]) smin[b][i] = secs[i];
                    }
                }
                /* mean ms per decode step of the statements, by what they insert into */
                printf("stmts %-26s round=%d", bl->name, r);
                for (int k = 0; k < bl->n - n_set; k++) {
                    char target[64] = "?";
                    const char *ins = strstr(bl->st[n_set + k], "INSERT INTO ");
                    if (ins) sscanf(ins + 12, "%63[a-z0-9_]", target);
                    else if (strstr(bl->st[n_set + k], "DELETE FROM ")) snprintf(target, sizeof target, "delete");
                    printf(" %s=%.2f", target, tot[k] * 1e3 / reps);
                }
                printf("\n");
                free(secs);
                free(tot);
                if (r == 0) {   /* the same tokens for every block: the logits must agree */
                    printf("check %-26s ", bl->name);
                    if ((rc = e->m->query(e, "SELECT count(*), sum(list_sum(v)), max(list_max(v)) FROM logits", NULL, 0,
                                          print_row, NULL)))
                        die(bl->name, rc);
                }
            }
        for (int b = 0; b < n_blocks; b++) {
            if (strcmp(blocks[b].mode, "prog")) continue;
            double *bt = pt + b * reps * rounds;
            double *bc = pc + b * reps * rounds;
            qsort(bt, (size_t)(reps * rounds), sizeof *bt, cmp_double);
            qsort(bc, (size_t)(reps * rounds), sizeof *bc, cmp_double);
            const int n_t = reps * rounds;
            /* the best time of each statement over all steps, summed by kind */
            double g[4] = { 0 };
            for (int k = 0; k < blocks[b].n - blocks[b].n_set; k++) {
                const char *st = blocks[b].st[blocks[b].n_set + k], *ins = strstr(st, "INSERT INTO ");
                char target[64] = "";
                if (ins) sscanf(ins + 12, "%63[a-z0-9_]", target);
                int kind = !strncmp(target, "kv", 2) ? 0 : strstr(target, "resid_ffn") ? 1 : !strcmp(target, "logits") ? 2 : 3;
                g[kind] += smin[b][k] * 1e3;
            }
            printf("stmin %-26s sum=%.2f kv=%.2f ffn=%.2f logits=%.2f other=%.2f\n", blocks[b].name,
                   g[0] + g[1] + g[2] + g[3], g[0], g[1], g[2], g[3]);
            free(smin[b]);
            printf("sql %-28s statements=%d decode steps=%d best_ms=%.3f p10_ms=%.3f p25_ms=%.3f median_ms=%.3f cpu_best_ms=%.3f cpu_p25_ms=%.3f\n",
                   blocks[b].name, blocks[b].n, n_t, bt[0], bt[n_t / 10], bt[n_t / 4], bt[n_t / 2], bc[0], bc[n_t / 4]);
        }
        free(pt);
        free(pc);
        free(pst);
        free(toks);
        sqlm_exec_free(s);
        sqlm_modeldb_close(&db);
        return 0;
    }
    const float *lg;
    if ((rc = sqlm_exec_eval(s, toks, n_prompt, &lg))) die("prefill", rc);
    for (int k = 0; k < n_decode; k++) {
        int32_t next = greedy(lg, db.cfg.vocab_size);
        if ((rc = sqlm_exec_eval(s, &next, 1, &lg))) die("decode", rc);
    }
    int pos = n_prompt + n_decode;
    /* set-up blocks and printed ones first, in file order */
    for (int b = 0; b < n_blocks; b++) {
        block *bl = &blocks[b];
        if (!strcmp(bl->mode, "show")) printf("sql %s\n", bl->name);
        for (int k = 0; k < bl->n; k++) {
            if (!strcmp(bl->mode, "once")) rc = e->m->exec(e, bl->st[k]);
            else if (!strcmp(bl->mode, "show")) rc = e->m->query(e, bl->st[k], NULL, 0, print_row, NULL);
            if (rc) die(bl->name, rc);
        }
    }
    /* Each round runs every timed block, so that a change of machine load
     * falls on all of them: the block's statements are prepared (as a
     * program's are, once), run once untimed, then timed. */
    sql_stmt *ps = calloc(256, sizeof *ps);
    int first[65];
    first[0] = 0;
    for (int b = 0; b < n_blocks; b++) {
        const bool timed = strcmp(blocks[b].mode, "once") && strcmp(blocks[b].mode, "show") &&
                           strcmp(blocks[b].mode, "pre") && strcmp(blocks[b].mode, "preshow");
        first[b + 1] = first[b] + (timed ? blocks[b].n : 0);
    }
    double *t = calloc((size_t)n_blocks * (size_t)reps, sizeof *t);
    for (int r = 0; r < reps; r++) {
        for (int b = 0; b < n_blocks; b++) {
            block *bl = &blocks[b];
            if (first[b] == first[b + 1]) continue;
            for (int k = 0; k < bl->n; k++) ps[k] = (sql_stmt){ .name = bl->name, .sql = bl->st[k] };
            sql_program prog = { .steps = ps, .n_steps = bl->n, .setup = "SELECT 1", .reset = "SELECT 1" };
            if ((rc = e->m->load_program(e, &prog))) die(bl->name, rc);
            const bool tx = !strcmp(bl->mode, "tx"), step = !strcmp(bl->mode, "step");
            for (int w = 0; w < 2; w++) {
                if (step) {
                    char ins[96];
                    snprintf(ins, sizeof ins, "DELETE FROM t_in; INSERT INTO t_in VALUES (%d, %d)", pos,
                             (pos * 7919 + 13) % db.cfg.vocab_size);
                    pos++;
                    if ((rc = e->m->exec(e, ins))) die(bl->name, rc);
                }
                if (tx && (rc = e->m->exec(e, "BEGIN"))) die(bl->name, rc);
                double t0 = sqlm_now();
                if ((rc = e->m->run_program(e, NULL))) die(bl->name, rc);
                if (w) t[b * reps + r] = (sqlm_now() - t0) * 1e3;
                if (tx && (rc = e->m->exec(e, "ROLLBACK"))) die(bl->name, rc);
            }
        }
    }
    for (int b = 0; b < n_blocks; b++) {
        if (first[b] == first[b + 1]) continue;
        qsort(t + b * reps, (size_t)reps, sizeof *t, cmp_double);
        printf("sql %-28s statements=%d best_ms=%.3f median_ms=%.3f\n", blocks[b].name, first[b + 1] - first[b],
               t[b * reps], t[b * reps + reps / 2]);
    }
    free(t);
    free(ps);
    free(toks);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "version")) {
        if (sqlm_duckdb_load()) die("version", SQLM_UNSUPPORTED);
        printf("%s\n", sqlm_duckdb_lib_version());
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "ceiling")) return ceiling(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "run")) return run(argc, argv);
    if (argc >= 4 && !strcmp(argv[1], "sql")) return sql_blocks(argc, argv);
    fprintf(stderr, "usage: duckbench ceiling DIR ROWS COLS | duckbench run DB [options] | duckbench sql DB FILE [options]\n");
    return 2;
}
