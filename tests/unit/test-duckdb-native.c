/*
 * test-duckdb-native.c - the SQL path on DuckDB in native mode (engine
 * "duckdb-native": sqlm's C scalar functions registered on the connection,
 * the duckdb-native dialect's templates):
 *   1-4. every check of test-sql.c (golden ids, the Q8_0 golden included,
 *        TinyStories-656K logits, random models against the reference,
 *        operators one by one);
 *   5.   native and pure-SQL DuckDB on the same database file give the same
 *        greedy ids, and logits that differ only by summation order (F32)
 *        or not at all (Q8_0: both follow vec.c's rounding).
 * Skipped, with the reason printed, only when libduckdb.so cannot be loaded.
 */
#define TEST_ENGINE "duckdb-native"
#define TEST_NO_MAIN
#include "test-sql.c"

/* ------------------------------------------ 5. native against pure SQL */

static void compare_modes(const char *model_path, const char *what, double bound) {
    char out[256];
    snprintf(out, sizeof out, "%s/modes.duck", test_tmpdir());
    import_opts io = { .engine = "duckdb", .wtype = -1 };
    CHECK_EQ(SQLM_OK, sqlm_import_file(model_path, out, &io));
    modeldb a, b;
    engine_opts eo = { .readonly = true, .threads = 1 };
    CHECK_EQ(SQLM_OK, sqlm_modeldb_open(&a, out, "duckdb", &eo));
    CHECK_EQ(SQLM_OK, sqlm_modeldb_open(&b, out, "duckdb-native", &eo));
    session *sa = NULL, *sb = NULL;
    session_opts so = { .ir = { .cte_merge = true } };
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&sa, &a, &so));
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&sb, &b, &so));
    const int32_t prompt[6] = { 1, 80, 147, 201, 282, 57 };
    const int V = a.cfg.vocab_size;
    const float *la, *lb;
    double worst = 0;
    int same = 0;
    if (sa && sb && sqlm_exec_eval(sa, prompt, 6, &la) == SQLM_OK && sqlm_exec_eval(sb, prompt, 6, &lb) == SQLM_OK) {
        for (int i = 0; i < 32; i++) {
            worst = fmax(worst, test_max_abs_diff(la, lb, V));
            int32_t ta = test_argmax(la, V), tb = test_argmax(lb, V);
            if (ta != tb) break;
            same++;
            if (sqlm_exec_eval(sa, &ta, 1, &la) || sqlm_exec_eval(sb, &tb, 1, &lb)) break;
        }
    }
    fprintf(stderr, "  native vs pure SQL, %s: %d/32 ids equal, max |logit diff| %.3g (bound %.0e)\n", what,
            same, worst, bound);
    CHECK_EQ(32, same);
    CHECK(worst <= bound);
    sqlm_exec_free(sa);
    sqlm_exec_free(sb);
    sqlm_modeldb_close(&a);
    sqlm_modeldb_close(&b);
}

int main(void) {
    if (sqlm_duckdb_load() != SQLM_OK) {
        printf("test-duckdb-native: skipped: DuckDB library not found (%s)\n", sqlm_errmsg());
        return 0;
    }
    fprintf(stderr, "  DuckDB %s, native functions\n", sqlm_duckdb_lib_version());
    double t0 = sqlm_now();
    run_all();
    compare_modes(MODELS "TinyStories-656K/model.safetensors", "TinyStories-656K F32", 1e-4);
    compare_modes(MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf", "TinyStories-656K Q8_0", 0);
    fprintf(stderr, "  (%.1f s)\n", sqlm_now() - t0);
    return TEST_DONE();
}
