/*
 * duckbench.c - the DuckDB measurements of `make bench` (scripts/bench-duckdb.sh):
 *
 *   duckbench ceiling DIR ROWS COLS
 *       DuckDB's ceiling for one matrix-vector product in pure SQL: a
 *       ROWS x COLS float32 table written as import writes weights
 *       (uncompressed, small row groups), one row per matrix row, as a
 *       FLOAT[] list, as a FLOAT[COLS] array, as two ROW2COL pivot
 *       columns (one subquery each), and as ROW2COL's row split (two
 *       UNION ALL halves of whole or pivoted rows), times x; the best of
 *       several runs on 1 and 2 threads, as weight bytes per second.
 *   duckbench run DB [-t N] [--no-cte-merge] [--row2col-cols N] [--prompt N]
 *                    [--decode N] [--profile] [--engine duckdb|duckdb-native]
 *       prefill latency of an N-token prompt (best of --repeat R runs), then
 *       decode latency per token (greedy; the best step, and the mean), and
 *       the weight bytes the best decode step reads per second; --profile
 *       adds where a decode step's time goes, by statement (mean), and
 *       where a prefill's went.
 *
 * Prints one line of key=value pairs per measurement for the script.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/sqlm-int.h"

static void die(const char *what, int rc) {
    fprintf(stderr, "duckbench: %s: %s (%s)\n", what, sqlm_errmsg(), sqlm_errstr(rc));
    exit(1);
}

static int count_rows(void *ctx, int nc, const db_val *v) {
    (void)nc, (void)v;
    (*(int *)ctx)++;
    return 0;
}

/* Best of reps runs of sql, in seconds. */
static double best_of(engine *e, const char *sql, int reps) {
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        int n = 0;
        double t0 = sqlm_now();
        int rc = e->m->query(e, sql, NULL, 0, count_rows, &n);
        double t = sqlm_now() - t0;
        if (rc) die("query", rc);
        if (t < best) best = t;
    }
    return best;
}

static int ceiling(const char *dir, long rows, long cols) {
    char path[512], sql[1024];
    snprintf(path, sizeof path, "%s/ceiling.duck", dir);
    db_duckdb.remove(path);
    engine *e;
    engine_opts co = { .create = true };
    int rc = db_duckdb.open(&e, path, &co);
    if (rc) die("create", rc);
    snprintf(sql, sizeof sql,
             "CREATE TABLE wl AS SELECT range::INTEGER AS row, list_transform(range(%ld), lambda j:"
             " ((hash(range * 7919 + j) %% 2001) / 1000.0 - 1)::FLOAT) AS v FROM range(%ld);"
             "CREATE TABLE wa AS SELECT row, v::FLOAT[%ld] AS v FROM wl;"
             "CREATE TABLE xl AS SELECT 0 AS pos, list_transform(range(%ld), lambda j: (j %% 13 - 6)::FLOAT) AS v;"
             "CREATE TABLE xa AS SELECT pos, v::FLOAT[%ld] AS v FROM xl;"
             "CREATE TABLE wp AS SELECT row, v[1 : %ld] AS c0, v[%ld : %ld] AS c1 FROM wl; CHECKPOINT",
             cols, rows, cols, cols, cols, cols / 2, cols / 2 + 1, cols);
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
    /* ROW2COL's row split (graph.c row2col_split()): two UNION ALL halves at
     * a row-group boundary, whole rows and pivoted rows */
    char split[1024], psplit[1536];
    const long at = row2col_split(true, rows, cols);
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
    const struct { const char *name, *sql; } q[] = {
        { "list", "SELECT x.pos, list(list_dot_product(w.v, x.v) ORDER BY w.row) FROM xl x CROSS JOIN wl w GROUP BY x.pos" },
        { "array", "SELECT x.pos, list(array_inner_product(w.v, x.v) ORDER BY w.row) FROM xa x CROSS JOIN wa w GROUP BY x.pos" },
        { "pivot2", pivot },
        { "split2", at > 0 ? split : NULL },
        { "pivot2-split2", at > 0 ? psplit : NULL },
    };
    for (int t = 1; t <= 2; t++) {
        engine_opts ro = { .readonly = true, .threads = t };
        if ((rc = db_duckdb.open(&e, path, &ro))) die("open", rc);
        for (size_t i = 0; i < ARRAY_LEN(q); i++) {
            if (!q[i].sql) continue;
            best_of(e, q[i].sql, 2);   /* warm */
            double s = best_of(e, q[i].sql, 7);
            printf("ceiling rows=%ld cols=%ld layout=%s threads=%d ms=%.3f GBps=%.3f\n", rows, cols,
                   q[i].name, t, s * 1e3, bytes / s / 1e9);
        }
        e->m->close(e);
    }
    db_duckdb.remove(path);
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
    bool profile = false;
    session_opts so = { .ir = { .cte_merge = true } };
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-cte-merge")) so.ir.cte_merge = false;
        else if (!strcmp(argv[i], "--row2col-cols") && i + 1 < argc) so.ir.row2col_per = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--profile")) profile = true;
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--engine") && i + 1 < argc) engine_name = argv[++i];
        else {
            fprintf(stderr, "duckbench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    modeldb db;
    engine_opts eo = { .readonly = true, .threads = threads };
    int rc = modeldb_open(&db, path, engine_name, &eo);
    if (rc) die(path, rc);
    /* weight bytes a decode step reads: every matrix but the embedding */
    double wbytes = 0;
    for (int i = 0; i < db.n_weights; i++)
        if (strcmp(db.weights[i].name, "embed") != 0)
            wbytes += (double)db.weights[i].n_out * (double)db.weights[i].n_in *
                      (vec_act_type(db.weights[i].dtype) == DT_Q8_0 ? 1 + 4.0 / QK : 4);   /* int8 blocks + scales */
    session *s;
    if ((rc = session_init(&s, &db, &so))) die("session", rc);
    int32_t *toks = malloc(sizeof *toks * (size_t)(n_prompt + 1));
    for (int i = 0; i < n_prompt; i++) toks[i] = i == 0 && db.voc.bos >= 0 ? db.voc.bos : (i * 7919 + 13) % db.cfg.vocab_size;
    /* The machine is shared: the prefill is the best of `repeat` runs, a
     * decode token the best of its steps (mean also printed). */
    const float *lg;
    double t_prefill = 1e30;
    for (int r = 0; r < (repeat > 0 ? repeat : 1); r++) {
        if (r && (rc = session_reset(s))) die("reset", rc);
        double t0 = sqlm_now();
        if ((rc = session_eval(s, toks, n_prompt, &lg))) die("prefill", rc);
        double t = sqlm_now() - t0;
        if (t < t_prefill) t_prefill = t;
    }
    const sql_program *p;
    const double *secs = session_stmt_seconds(s, &p);
    double *before = calloc((size_t)p->n_steps + 1, sizeof *before);
    memcpy(before, secs, sizeof *before * (size_t)p->n_steps);
    double t_decode = 0, t_best = 1e30;
    for (int k = 0; k < n_decode; k++) {
        int32_t next = 0;
        for (int j = 1; j < db.cfg.vocab_size; j++)
            if (lg[j] > lg[next]) next = j;
        double t1 = sqlm_now();
        if ((rc = session_eval(s, &next, 1, &lg))) die("decode", rc);
        double t = sqlm_now() - t1;
        t_decode += t;
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
    session_free(s);
    modeldb_close(&db);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "version")) {
        if (duckdb_load()) die("version", SQLM_UNSUPPORTED);
        printf("%s\n", duckdb_lib_version());
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "ceiling")) return ceiling(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "run")) return run(argc, argv);
    fprintf(stderr, "usage: duckbench ceiling DIR ROWS COLS | duckbench run DB [options]\n");
    return 2;
}
