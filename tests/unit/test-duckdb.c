/*
 * test-duckdb.c - the SQL path on DuckDB, pure SQL (no registered function):
 *   1-4. every check of test-sql.c on the DuckDB engine (golden ids of all
 *        prompts, TinyStories-656K logits within 1e-4, random models against
 *        the reference, operators one by one);
 *   5.   the script `sqlm sql` prints runs unchanged on a stock DuckDB
 *        connection (no sqlm setting, no function) and its final query gives
 *        the golden next token.
 * Skipped, with the reason printed, only when libduckdb.so cannot be loaded
 * (scripts/install-duckdb.sh installs it; SQLM_DUCKDB_LIB points at it).
 */
#define TEST_ENGINE "duckdb"
#define TEST_NO_MAIN
#include "test-sql.c"

/* ------------------------------------------ 5. the printed script, stock */

typedef struct next_tok {
    int rows;
    int64_t pos, tok;
} next_tok;

static int next_row(void *ctx, int nc, const db_val *v) {
    next_tok *n = ctx;
    if (nc == 2 && v[0].type == DBV_INT && v[1].type == DBV_INT) n->pos = v[0].i, n->tok = v[1].i;
    n->rows++;
    return 0;
}

static void check_script(void) {
    modeldb db;
    if (!import_open(MODELS "stories260K/stories260K.bin", "script", NULL, &db)) return;
    FILE *f = fopen(GOLDEN "generation_stories260K.jsonl", "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    int n_checked = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *rec = json_loads(line, 0, &err);
        int32_t prompt[256], want[256];
        int np = json_ids(json_object_get(rec, "prompt_ids"), prompt, 256);
        json_ids(json_object_get(rec, "generated_ids"), want, 256);
        json_decref(rec);
        /* the program exactly as `sqlm sql -p PROMPT` prints it */
        ir_graph g;
        sql_program p;
        ir_opts o = { .cte_merge = true };
        CHECK_EQ(SQLM_OK, ir_build_llama(&g, &db.cfg, db.weights, db.n_weights, &o));
        CHECK_EQ(SQLM_OK, emit_program(&g, db.e->m->dialect, &p));
        char *script = sql_program_text(&p, prompt, np);
        CHECK(script != NULL);
        CHECK(strstr(script, "sqlm_") == NULL);   /* no sqlm function is called */
        /* a fresh connection with nothing of sqlm's: the script in one call */
        engine *e = NULL;
        engine_opts eo = { .readonly = true, .plain = true };
        char path[256];
        snprintf(path, sizeof path, "%s/script.db", tmpdir);
        CHECK_EQ(SQLM_OK, db_duckdb.open(&e, path, &eo));
        next_tok n = { 0, -1, -1 };
        if (e && script) {
            int rc = e->m->query(e, script, NULL, 0, next_row, &n);
            if (rc) fprintf(stderr, "  script: %s\n", sqlm_errmsg());
            CHECK_EQ(SQLM_OK, rc);
        }
        CHECK_EQ(1, n.rows);
        CHECK_EQ(np - 1, n.pos);
        CHECK_EQ(want[0], n.tok);
        n_checked++;
        if (e) e->m->close(e);
        free(script);
        sql_program_free(&p);
        ir_free(&g);
    }
    fprintf(stderr, "  printed script on a stock connection: %d prompts give the golden next token\n",
            n_checked);
    CHECK(n_checked >= 5);
    free(line);
    if (f) fclose(f);
    modeldb_close(&db);
}

int main(void) {
    if (duckdb_load() != SQLM_OK) {
        printf("test-duckdb: skipped: DuckDB library not found (%s)\n", sqlm_errmsg());
        return 0;
    }
    fprintf(stderr, "  DuckDB %s\n", duckdb_lib_version());
    if (!make_tmpdir()) return 1;
    double t0 = sqlm_now();
    run_all();
    check_script();
    fprintf(stderr, "  (%.1f s)\n", sqlm_now() - t0);
    remove_tmpdir();
    return TEST_DONE();
}
