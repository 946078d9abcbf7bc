/*
 * test-ext.c - the loadable SQLite extension (sqlm.so, or the path given as
 * the first argument) loaded with sqlite3_load_extension into connections of
 * the system libsqlite3: greedy texts on one connection, then two threads
 * with a connection each generating at the same time (one by path, one
 * through an attached schema, sqlm_tokens as well) must give exactly the
 * single-threaded texts; a connection keeps its model open across calls
 * (they succeed while the file is renamed away, and its mappings in
 * /proc/self/maps do not grow) and unmaps it when it closes; a missing model
 * is an SQL error naming the path.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <sqlm.h>

#include "../test.h"

#define N_PROMPTS 4
#define ROUNDS 3

static const char *so_path = "./sqlm.so";
static const char *model_path;
static const char *prompts[N_PROMPTS] = { "Once upon a time", "Lily and Tom went to the park", "The little dog",
                                          "One day, a girl named Sue" };
static char *expected[N_PROMPTS];

/* A connection of its own with the extension loaded, or NULL (the reason
 * printed). */
static sqlite3 *open_conn(void) {
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL) != SQLITE_OK ||
        sqlite3_load_extension(db, so_path, "sqlite3_sqlm_init", &err) != SQLITE_OK) {
        fprintf(stderr, "loading %s: %s\n", so_path, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* The text of the first column of the first row of sql with the text
 * parameters a and b (malloc'd), or NULL with *err (malloc'd) the error. */
static char *query_text(sqlite3 *db, const char *sql, const char *a, const char *b, char **err) {
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    *err = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
        if (b) sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) out = strdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    }
    if (!out) *err = strdup(sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return out;
}

/* How many of this process's mappings are of the model file. */
static int model_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n += strstr(line, model_path) != NULL;
    if (f) fclose(f);
    return n;
}

/* ------------------------------------------------------------- threads */

typedef struct worker {
    int which;                   /* 0: the model by path, 1: through an attached schema */
    pthread_barrier_t *start;
    int n_calls, n_wrong, n_errors;
    char first_error[256];
} worker;

static void *work(void *arg) {
    worker *w = arg;
    sqlite3 *db = open_conn();
    char *err = NULL;
    const char *model = model_path;
    if (db && w->which == 1) {
        char *sql = sqlite3_mprintf("ATTACH %Q AS m", model_path);
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) w->n_errors++;
        sqlite3_free(sql), sqlite3_free(err);
        model = "m";
    }
    pthread_barrier_wait(w->start);   /* both threads generate from here on */
    if (!db) {
        w->n_errors++;
        return NULL;
    }
    /* the second thread reads token rows; both walk the prompts in
     * opposite orders so that different prompts overlap */
    const char *sql = w->which == 0 ? "SELECT sqlm_generate(?1, ?2, 32)"
                                    : "SELECT group_concat(piece, '') FROM "
                                      "(SELECT piece FROM sqlm_tokens(?1, ?2, 32) ORDER BY i)";
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < N_PROMPTS; k++) {
            int i = w->which == 0 ? k : N_PROMPTS - 1 - k;
            char *got = query_text(db, sql, model, prompts[i], &err);
            w->n_calls++;
            if (!got) {
                if (!w->n_errors++) snprintf(w->first_error, sizeof w->first_error, "%s", err);
            } else if (!expected[i] || strcmp(got, expected[i])) {
                if (!w->n_wrong++)
                    snprintf(w->first_error, sizeof w->first_error, "prompt %d: '%s', want '%s'", i, got,
                             expected[i] ? expected[i] : "(none)");
            }
            free(got), free(err);
            err = NULL;
        }
    sqlite3_close(db);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) so_path = argv[1];
    const char *bin = MODELS "stories260K/stories260K.bin";
    if (!FIXTURE(bin) || !FIXTURE(so_path)) return TEST_DONE();
    model_path = test_tmp_path("s.db");
    CHECK_EQ(SQLM_OK, sqlm_import_model(bin, model_path, NULL));

    /* 1. the single-threaded answers, on one connection: the greedy text
     *    continues the prompt, and calls repeat on the cached model */
    sqlite3 *db = open_conn();
    CHECK(db != NULL);
    if (!db) return TEST_DONE();
    char *err = NULL;
    for (int i = 0; i < N_PROMPTS; i++) {
        expected[i] = query_text(db, "SELECT sqlm_generate(?1, ?2, 32)", model_path, prompts[i], &err);
        CHECK(expected[i] && strlen(expected[i]) > 20);
        if (!expected[i]) fprintf(stderr, "sqlm_generate: %s\n", err);
        free(err);
    }
    CHECK(expected[0] && !strncmp(expected[0], ", there was a little girl named Lily.", 37));
    int maps = model_mappings();
    CHECK(maps > 0);   /* the weight tiles are read in place */
    /* the path names nothing now: only the open model can answer */
    char *moved = strdup(test_tmp_path("moved.db"));
    CHECK_EQ(0, rename(model_path, moved));
    for (int r = 0; r < 20; r++) {
        char *again = query_text(db, "SELECT sqlm_generate(?1, ?2, 32)", model_path, prompts[r % N_PROMPTS], &err);
        CHECK(again && expected[r % N_PROMPTS] && !strcmp(again, expected[r % N_PROMPTS]));
        free(again), free(err);
    }
    CHECK_EQ(0, rename(moved, model_path));
    free(moved);
    CHECK_EQ(maps, model_mappings());   /* not mapped again */

    /* 2. a missing model: an SQL error naming the path */
    char *none = query_text(db, "SELECT sqlm_generate(?1, ?2, 4)", "/nonexistent/x.db", "a", &err);
    CHECK(none == NULL);
    CHECK(err && strstr(err, "sqlm_generate: ") && strstr(err, "/nonexistent/x.db"));
    free(none), free(err);
    CHECK_EQ(SQLITE_OK, sqlite3_close(db));   /* frees the connection's models */
    CHECK_EQ(0, model_mappings());

    /* 3. two threads, a connection each, generating at the same time */
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    worker w[2] = { { .which = 0, .start = &start }, { .which = 1, .start = &start } };
    pthread_t th[2];
    for (int t = 0; t < 2; t++) CHECK_EQ(0, pthread_create(&th[t], NULL, work, &w[t]));
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    pthread_barrier_destroy(&start);
    for (int t = 0; t < 2; t++) {
        CHECK_EQ(ROUNDS * N_PROMPTS, w[t].n_calls);
        CHECK_EQ(0, w[t].n_errors);
        CHECK_EQ(0, w[t].n_wrong);
        if (w[t].first_error[0]) fprintf(stderr, "thread %d: %s\n", t, w[t].first_error);
    }
    for (int i = 0; i < N_PROMPTS; i++) free(expected[i]);
    return TEST_DONE();
}
