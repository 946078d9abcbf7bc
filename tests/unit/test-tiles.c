/*
 * test-tiles.c - weight tiles read in place (db/sqlite/tiles.c) and the in-place
 * products of the SQLite engine; also built under ASan/UBSan (make asan):
 *   0. the Q8_0 / Q4_0 kernels (one row at a time, eight rows, repacked
 *      panels of a batch) give the bits of the reference rounding;
 *   1. every tile of every weight table, read in place, equals the BLOB
 *      SQLite returns for its id;
 *   2. in-place and copying products give bit-identical logits over a
 *      prefill batch and decode steps, on 1 and 3 threads, for F32, F16, Q8_0
 *      and Q4_0, with whole and chunked tile rows;
 *   2b. the sqlm_kv virtual table of the KV cache: ranges, order, refused
 *      rows and updates; the product and attention functions given wrong
 *      arguments fail with an error;
 *   3. the fallback: copy_tiles, and a database whose tiles spill into
 *      overflow pages (4 KB pages), run on the copying path with a note;
 *   4. damaged b-trees: each kind of bad page, cell, record or offset makes
 *      sqlm_tiles_open() fail with a message naming the table, random damage
 *      never reads out of bounds, and a damaged database either runs or fails
 *      with an error.
 * Run from the repository root.
 */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"
#include "../test.h"

/* A random model of a small shape in dtype, imported with tile_bytes. */
static bool make_db(const char *name, int dtype, int dim, int hidden, size_t tile_bytes) {
    synth_spec sp = { .name = name, .tokenizer = NULL };
    model_config *c = &sp.cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = dim, c->hidden_dim = hidden, c->n_layer = 2, c->n_head = 4, c->n_head_kv = 2;
    c->head_dim = dim / 4, c->vocab_size = 96, c->seq_len = 64, c->norm_eps = 1e-5f;
    c->rope_theta = 10000, c->rope_interleaved = 1, c->tied = 0;
    const char *gguf = test_tmp_path("m.gguf");
    int rc = sqlm_synth_model(gguf, &sp, dtype, 99);
    if (!rc) {
        import_opts io = { .wtype = -1, .tile_bytes = tile_bytes, .engine = "sqlite" };
        rc = sqlm_import_file(gguf, test_tmp_path(name), &io);
    }
    if (rc) fprintf(stderr, "make_db %s: %s\n", name, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    return rc == SQLM_OK;
}

/* Open test_tmpdir()/name; a failure is counted (the checks that need the
 * database return without it). */
static bool open_db(const char *name, modeldb *db, int threads, bool copy) {
    engine_opts eo = { .readonly = true, .threads = threads, .copy_tiles = copy };
    int rc = sqlm_modeldb_open(db, test_tmp_path(name), "sqlite", &eo);
    if (rc) fprintf(stderr, "open %s: %s\n", name, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    return rc == SQLM_OK;
}

/* Logits of a 5-token prefill batch and 3 decode steps: 8 rows of vocab floats. */
static float *run_logits(modeldb *db, int *rc_out) {
    session *s;
    session_opts so = { .ir = { .cte_merge = true, .all_logits = true, .fuse_attn = true } };
    int rc = sqlm_exec_init(&s, db, &so);
    const int V = db->cfg.vocab_size;
    float *out = calloc((size_t)V * 8, sizeof *out);
    const int32_t toks[8] = { 1, 5, 9, 2, 17, 33, 4, 60 };
    const float *lg;
    if (!rc) rc = sqlm_exec_eval(s, toks, 5, &lg);
    if (!rc) memcpy(out, lg, sizeof *out * (size_t)V * 5);
    for (int i = 5; !rc && i < 8; i++) {
        rc = sqlm_exec_eval(s, &toks[i], 1, &lg);
        if (!rc) memcpy(out + (size_t)V * i, lg, sizeof *out * (size_t)V);
    }
    if (!rc) sqlm_exec_free(s);
    else if (s) sqlm_exec_free(s);
    *rc_out = rc;
    return out;
}

/* ------------------------------------------------ 0. kernels, bit for bit */

static uint64_t krng = 88172645463325252ull;
static uint32_t krand(void) {
    krng ^= krng << 13, krng ^= krng >> 7, krng ^= krng << 17;
    return (uint32_t)(krng >> 11);
}

/* Row r of a weight of nb blocks: random quants (Q8_0 includes -128, which a
 * file may hold though llama.cpp never writes it) and scales. */
static void fill_rows(int dt, uint8_t *w, size_t rows, size_t nb) {
    size_t bb = dt == DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (size_t i = 0; i < rows * nb; i++) {
        uint8_t *b = w + i * bb;
        uint16_t d = sqlm_f32_to_fp16((float)(krand() % 2000) / 1e5f * (krand() % 2 ? 1 : -1));
        memcpy(b, &d, 2);
        for (size_t j = 2; j < bb; j++) b[j] = (uint8_t)krand();
        if (dt == DT_Q8_0 && krand() % 4 == 0) b[2 + krand() % 32] = 0x80;
    }
}

/* The rounding sqlm_vec_matvec promises: exact integer sum per block, then
 * acc = fma(isum, d_w * d_x, acc) in block order.  Not vectorised: GCC 12.2
 * with VNNI enabled (-march=native here) turns this signed-by-signed char
 * dot product into vpdpbusd, which reads one side as unsigned, and gets it
 * wrong (a 32-element loop gave -64336 for 18608). */
__attribute__((optimize("no-tree-vectorize"))) static float ref_dot(int dt, const uint8_t *w, const block_q8_0 *x, size_t nb) {
    size_t bb = dt == DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    float s = 0;
    for (size_t b = 0; b < nb; b++, w += bb) {
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = dt == DT_Q8_0 ? (int8_t)w[2 + j] : j < 16 ? (w[2 + j] & 15) - 8 : (w[2 + j - 16] >> 4) - 8;
            sum += q * x[b].qs[j];
        }
        uint16_t d;
        memcpy(&d, w, 2);
        s = fmaf((float)sum, sqlm_fp16_to_f32(d) * sqlm_fp16_to_f32(x[b].d), s);
    }
    return s;
}

static void check_kernels(void) {
    static const int dts[] = { DT_Q8_0, DT_Q4_0 };
    static const size_t widths[] = { 32, 96, 768 }, row_counts[] = { 1, 7, 8, 15, 16, 17, 40 };
    static const size_t batches[] = { 1, 2, 3, 4, 5, 9 };
    int cases = 0, same = 0, panel_cases = 0;
    for (size_t a = 0; a < ARRAY_LEN(dts); a++)
        for (size_t b = 0; b < ARRAY_LEN(widths); b++)
            for (size_t c = 0; c < ARRAY_LEN(row_counts); c++)
                for (size_t d = 0; d < ARRAY_LEN(batches); d++) {
                    int dt = dts[a];
                    size_t n = widths[b], nb = n / 32, rows = row_counts[c], m = batches[d], rb;
                    sqlm_dtype_row_bytes(dt, n, &rb);
                    uint8_t *w = malloc(rb * rows + 1);
                    block_q8_0 *x = malloc(sizeof *x * nb * m);
                    float *xf = malloc(sizeof *xf * n), *out = malloc(sizeof *out * rows * m);
                    float *pout = malloc(sizeof *pout * VEC_PANEL * m);
                    fill_rows(dt, w + 1, rows, nb);   /* at an odd address, as in the file */
                    for (size_t p = 0; p < m; p++) {
                        for (size_t i = 0; i < n; i++) xf[i] = (float)((int)(krand() % 2001) - 1000) / 997.0f;
                        sqlm_vec_quant_q8_0(xf, x + p * nb, n);
                    }
                    sqlm_vec_matmul(dt, w + 1, rows, n, x, sizeof *x * nb, m, out, rows, NULL, 0);
                    bool ok = true;
                    for (size_t p = 0; p < m; p++)
                        for (size_t r = 0; r < rows; r++) {
                            float want = ref_dot(dt, w + 1 + r * rb, x + p * nb, nb);
                            ok &= memcmp(&want, &out[p * rows + r], 4) == 0;
                        }
                    if (sqlm_vec_panel_supported(dt) && rows <= VEC_PANEL) {
                        /* the panel path: rows repacked, all positions at once */
                        void *panel = aligned_alloc(64, (sqlm_vec_panel_bytes(nb) + 63) / 64 * 64);
                        uint8_t *xu = malloc(m * nb * 32);
                        float *dx = malloc(sizeof *dx * m * nb);
                        sqlm_vec_panel_act(x, sizeof *x * nb, m, nb, xu, dx);
                        for (size_t r = 0; r < rows; r++) sqlm_vec_panel_put(panel, nb, (int)r, dt, w + 1 + r * rb);
                        sqlm_vec_panel_seal(panel, nb, (int)rows);
                        sqlm_vec_panel_mul(panel, nb, xu, dx, nb, m, pout);
                        for (size_t p = 0; p < m; p++)
                            for (size_t r = 0; r < rows; r++)
                                ok &= memcmp(&out[p * rows + r], &pout[p * VEC_PANEL + r], 4) == 0;
                        panel_cases++;
                        free(panel), free(xu), free(dx);
                    }
                    cases++;
                    same += ok;
                    if (!ok) fprintf(stderr, "  kernel %s n %zu rows %zu batch %zu: results differ\n", sqlm_dtype_name(dt), n, rows, m);
                    free(w), free(x), free(xf), free(out), free(pout);
                }
    fprintf(stderr, "  kernels: %d of %d cases bit-identical to the reference rounding (%d on panels)\n", same, cases,
            panel_cases);
    CHECK_EQ(cases, same);
}

/* ------------------------------------------------- 1. tiles vs SQLite */

/* Root pages of the weight tables, from sqlite_schema. */
static void roots_of(const char *path, const ir_weight *ws, int n, uint32_t *roots) {
    sqlite3 *db;
    CHECK_EQ(SQLITE_OK, sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL));
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_schema WHERE name = ?", -1, &st, NULL);
        sqlite3_bind_text(st, 1, ws[i].name, -1, SQLITE_STATIC);
        roots[i] = sqlite3_step(st) == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static void check_all_tiles(const char *name) {
    modeldb db;
    if (!open_db(name, &db, 1, false)) return;
    CHECK(db.inplace);
    uint32_t roots[64];
    CHECK(db.n_weights <= 64);
    roots_of(test_tmp_path(name), db.weights, db.n_weights, roots);
    int fd = open(test_tmp_path(name), O_RDONLY);
    tile_store *ts = NULL;
    CHECK_EQ(SQLM_OK, sqlm_tiles_open(&ts, fd, test_tmp_path(name), db.weights, roots, db.n_weights));
    sqlite3 *sq;
    sqlite3_open_v2(test_tmp_path(name), &sq, SQLITE_OPEN_READONLY, NULL);
    int64_t checked = 0, same = 0;
    for (int i = 0; ts && i < db.n_weights; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT id, v FROM %s ORDER BY id", db.weights[i].name);
        sqlite3_stmt *st;
        sqlite3_prepare_v2(sq, sql, -1, &st, NULL);
        int64_t n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            size_t len;
            const void *p = sqlm_tiles_get(ts, i, sqlite3_column_int64(st, 0), &len);
            checked++;
            same += p && (int)len == sqlite3_column_bytes(st, 1) && memcmp(p, sqlite3_column_blob(st, 1), len) == 0;
            n++;
        }
        sqlite3_finalize(st);
        CHECK_EQ(sqlm_tiles_count(ts, i), n);
        CHECK(sqlm_tiles_get(ts, i, n, &(size_t){ 0 }) == NULL);
        CHECK(sqlm_tiles_get(ts, i, -1, &(size_t){ 0 }) == NULL);
    }
    fprintf(stderr, "  %s: %lld of %lld tiles read in place equal SQLite's BLOBs\n", name, (long long)same,
            (long long)checked);
    CHECK(checked > 0);
    CHECK_EQ(checked, same);
    CHECK(sqlm_tiles_find(ts, "blk0_qkv") >= 0 && sqlm_tiles_find(ts, "nope") == -1);
    sqlite3_close(sq);
    sqlm_tiles_close(ts);
    close(fd);
    sqlm_modeldb_close(&db);
}

/* ------------------------------------ 2. in place == copying, bit for bit */

static void check_same_logits(const char *name) {
    modeldb a, b, c;
    if (!open_db(name, &a, 1, true) || !open_db(name, &b, 1, false) || !open_db(name, &c, 3, false)) return;
    CHECK(!a.inplace && b.inplace && c.inplace);
    CHECK_STR("", a.note);   /* not tried: no note */
    int ra, rb, rc;
    float *la = run_logits(&a, &ra), *lb = run_logits(&b, &rb), *lc = run_logits(&c, &rc);
    CHECK_EQ(SQLM_OK, ra);
    CHECK_EQ(SQLM_OK, rb);
    CHECK_EQ(SQLM_OK, rc);
    size_t n = (size_t)a.cfg.vocab_size * 8;
    bool same_b = memcmp(la, lb, n * sizeof *la) == 0, same_c = memcmp(la, lc, n * sizeof *la) == 0;
    fprintf(stderr, "  %s: in-place logits %s the copying path's (1 thread), %s (3 threads)\n", name,
            same_b ? "equal" : "DIFFER FROM", same_c ? "equal" : "DIFFER");
    CHECK(same_b);
    CHECK(same_c);
    free(la), free(lb), free(lc);
    sqlm_modeldb_close(&a), sqlm_modeldb_close(&b), sqlm_modeldb_close(&c);
}

/* ------------------------------------------- 2b. the sqlm_kv KV cache */

static int one_int(void *ctx, int nc, const db_val *v) {
    if (nc >= 1) *(int64_t *)ctx = v[0].type == DBV_INT ? v[0].i : -999;
    return 0;
}

static int64_t q_int(engine *e, const char *sql) {
    int64_t v = -12345;
    if (e->m->query(e, sql, NULL, 0, one_int, &v) != SQLM_OK) return -1000;
    return v;
}

static void check_kv(void) {
    modeldb db;
    if (!open_db("q8.db", &db, 1, false)) return;
    engine *e = db.e;
    CHECK_EQ(SQLM_OK, e->m->exec(e, "CREATE VIRTUAL TABLE temp.kvt USING sqlm_kv"));
    for (int p = 9; p >= 0; p--) {   /* out of order: scans still run in position order */
        float kv[8];
        for (int i = 0; i < 8; i++) kv[i] = (float)(p * 10 + i);
        db_val v[3] = { dbv_int(p), dbv_blob(kv, 16), dbv_blob(kv + 4, 16) };
        CHECK_EQ(SQLM_OK, e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", v, 3, NULL, NULL));
    }
    static const struct { const char *where; int64_t count; } ranges[] = {
        { "", 10 }, { "WHERE pos = 3", 1 }, { "WHERE pos < 3", 3 }, { "WHERE pos <= 3", 4 },
        { "WHERE pos > 7", 2 }, { "WHERE pos >= 7", 3 }, { "WHERE pos BETWEEN 2 AND 5", 4 },
        { "WHERE pos = 2.5", 0 }, { "WHERE pos <= 2.5", 3 }, { "WHERE pos > 2.5", 7 }, { "WHERE pos = NULL", 0 },
        { "WHERE pos > NULL", 0 }, { "WHERE rowid = 4", 1 }, { "WHERE pos > 3 AND pos < 3", 0 },
        { "WHERE pos >= -5 AND pos < 100", 10 }, { "WHERE pos = 99", 0 }, { "WHERE pos > 9223372036854775807", 0 },
        { "WHERE pos < -9223372036854775807", 0 },
    };
    char sql[160];
    for (size_t i = 0; i < ARRAY_LEN(ranges); i++) {
        snprintf(sql, sizeof sql, "SELECT count(*) FROM kvt %s", ranges[i].where);
        int64_t got = q_int(e, sql);
        if (got != ranges[i].count) fprintf(stderr, "  kv: %s: %lld rows, expected %lld\n", sql, (long long)got, (long long)ranges[i].count);
        CHECK_EQ(ranges[i].count, got);
    }
    CHECK_EQ(9, q_int(e, "SELECT pos FROM kvt ORDER BY pos DESC LIMIT 1"));
    CHECK_EQ(0, q_int(e, "SELECT pos FROM kvt LIMIT 1"));
    CHECK_EQ(1, q_int(e, "SELECT k = (SELECT k FROM kvt WHERE pos = 5) FROM kvt WHERE pos = 5"));
    CHECK_EQ(16, q_int(e, "SELECT length(v) FROM kvt WHERE pos = 5"));
    /* refused: a second row for a position, other lengths, bad positions, updates */
    float z[8] = { 0 };
    db_val dup[3] = { dbv_int(3), dbv_blob(z, 16), dbv_blob(z, 16) };
    CHECK(e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", dup, 3, NULL, NULL) != SQLM_OK);
    CHECK(strstr(sqlm_errmsg(), "already cached") != NULL);
    db_val len[3] = { dbv_int(10), dbv_blob(z, 32), dbv_blob(z, 16) };
    CHECK(e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", len, 3, NULL, NULL) != SQLM_OK);
    db_val neg[3] = { dbv_int(-1), dbv_blob(z, 16), dbv_blob(z, 16) };
    CHECK(e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", neg, 3, NULL, NULL) != SQLM_OK);
    db_val txt[3] = { dbv_text("x"), dbv_blob(z, 16), dbv_blob(z, 16) };
    CHECK(e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", txt, 3, NULL, NULL) != SQLM_OK);
    db_val nob[3] = { dbv_int(11), dbv_text("k"), dbv_blob(z, 16) };
    CHECK(e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", nob, 3, NULL, NULL) != SQLM_OK);
    CHECK(e->m->exec(e, "UPDATE kvt SET k = v WHERE pos = 1") != SQLM_OK);
    CHECK_EQ(10, q_int(e, "SELECT count(*) FROM kvt"));
    CHECK_EQ(SQLM_OK, e->m->exec(e, "DELETE FROM kvt WHERE pos > 6"));
    CHECK_EQ(7, q_int(e, "SELECT count(*) FROM kvt"));
    CHECK_EQ(SQLM_OK, e->m->exec(e, "DELETE FROM kvt"));
    CHECK_EQ(0, q_int(e, "SELECT count(*) FROM kvt"));
    CHECK_EQ(SQLM_OK, e->m->query(e, "INSERT INTO kvt(pos, k, v) VALUES (?, ?, ?)", dup, 3, NULL, NULL));
    /* attention over something that is not an sqlm_kv table */
    CHECK(e->m->exec(e, "CREATE TEMP TABLE plain(pos INTEGER PRIMARY KEY, k BLOB, v BLOB);"
                        "INSERT INTO plain VALUES (0, zeroblob(16), zeroblob(16))") == SQLM_OK);
    CHECK(e->m->exec(e, "SELECT sqlm_attend(NULL, 'plain', pos, 1, 1, 4) FROM plain") != SQLM_OK);
    CHECK(strstr(sqlm_errmsg(), "not an sqlm_kv table") != NULL);
    CHECK_EQ(SQLM_OK, e->m->exec(e, "DROP TABLE temp.kvt"));
    sqlm_modeldb_close(&db);
}

/* ------------------------------ 2c. the functions given wrong arguments */

/* A stack BLOB of one row of 68 bytes (two Q8_0 blocks of zeros) at position 0. */
#define STACK_HEX "5354434b" "01000000" "4400000000000000" "0000000000000000" \
    "00000000000000000000000000000000000000000000000000000000000000000000" \
    "00000000000000000000000000000000000000000000000000000000000000000000"

/* Every call must fail with an SQL error (or give no rows), never crash. */
static void check_misuse(void) {
    modeldb db;
    if (!open_db("q8.db", &db, 2, false)) return;
    CHECK(db.inplace);
    engine *e = db.e;
    static const struct { const char *sql; bool ok; } cases[] = {
        { "SELECT sqlm_matmul('nope', 0, NULL)", false },
        { "SELECT sqlm_matmul('blk0_qkv', 123456789, NULL)", false },
        { "SELECT sqlm_matmul('blk0_qkv', -1, NULL)", false },
        { "SELECT sqlm_matmul('blk0_qkv', 'x', NULL)", false },
        { "SELECT sqlm_matmul('blk0_qkv', w.id, CASE WHEN w.id = 0 THEN x'0011223344' END) FROM blk0_qkv w", false },
        { "SELECT sqlm_matmul('blk0_qkv', w.id, 42) FROM blk0_qkv w", false },
        /* the stack as a BLOB instead of a pointer value */
        { "SELECT count(*) FROM sqlm_rows((SELECT sqlm_matmul('blk0_qkv', w.id, CASE WHEN w.id = 0 THEN x'" STACK_HEX "' END) "
          "FROM blk0_qkv w))", true },
        /* activations given with two rows */
        { "SELECT sqlm_matmul('blk0_qkv', id, x'" STACK_HEX "') FROM (SELECT 0 AS id UNION ALL SELECT 0)", false },
        /* a stack of the wrong width */
        { "SELECT sqlm_matmul('blk0_qkv', w.id, CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(0, zeroblob(100))) END) FROM blk0_qkv w", false },
        /* the right width: works, and sqlm_rows gives one row */
        { "SELECT count(*) FROM sqlm_rows((SELECT sqlm_matmul('blk0_qkv', w.id, CASE WHEN w.id = 0 THEN "
          "(SELECT sqlm_stack(7, sqlm_quant(zeroblob(4 * 64), 8))) END) FROM blk0_qkv w))", true },
        { "SELECT * FROM sqlm_rows(x'00112233445566778899aabbccddeeff00')", false },
        { "SELECT * FROM sqlm_rows(NULL)", true },
        { "SELECT * FROM sqlm_rows(42)", false },
        { "SELECT * FROM sqlm_rows", true },   /* no product: no rows */
        { "SELECT sqlm_stack(pos, v) FROM (SELECT 1 AS pos, x'0102' AS v UNION ALL SELECT 2, x'010203')", false },
        { "SELECT sqlm_stack(1, 'text')", false },
        { "SELECT sqlm_attend(NULL, 'nope', 0, 1, 1, 4)", false },
        { "SELECT sqlm_attend(NULL, 'kv0', 0, 0, 1, 4)", false },
        { "SELECT sqlm_attend(x'0102', 'kv0', 0, 4, 2, 16)", false },
    };
    CHECK_EQ(SQLM_OK, e->m->exec(e, "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kv0 USING sqlm_kv"));
    int as_expected = 0;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int rc = e->m->query(e, cases[i].sql, NULL, 0, NULL, NULL);
        bool ok = (rc == SQLM_OK) == cases[i].ok;
        if (!ok) fprintf(stderr, "  misuse: %s: rc %d (%s)\n", cases[i].sql, rc, sqlm_errmsg());
        as_expected += ok;
    }
    fprintf(stderr, "  %d of %zu wrong calls to the functions handled as expected\n", as_expected, ARRAY_LEN(cases));
    CHECK_EQ((int)ARRAY_LEN(cases), as_expected);
    sqlm_modeldb_close(&db);
}

/* ------------------------------------------------------ 3. fallback */

/* The same database rewritten with 4 KB pages: 32 KB tiles overflow. */
static void check_overflow_fallback(void) {
    if (!make_db("big.db", DT_Q8_0, 256, 512, 32768)) return;
    char sql[512];
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", test_tmp_path("small-pages.db"));
    sqlite3 *sq;
    sqlite3_open(test_tmp_path("big.db"), &sq);
    sqlite3_exec(sq, "PRAGMA page_size = 4096", NULL, NULL, NULL);
    CHECK_EQ(SQLITE_OK, sqlite3_exec(sq, sql, NULL, NULL, NULL));
    sqlite3_close(sq);
    modeldb db;
    if (!open_db("small-pages.db", &db, 2, false)) return;
    fprintf(stderr, "  4 KB pages: note: %s\n", db.note);
    CHECK(!db.inplace);
    CHECK(strstr(db.note, "copied") && strstr(db.note, "overflow pages"));
    int rc;
    float *l = run_logits(&db, &rc);
    CHECK_EQ(SQLM_OK, rc);
    modeldb ref;
    if (open_db("big.db", &ref, 2, false)) {
        float *lr = run_logits(&ref, &rc);
        CHECK(ref.inplace);
        CHECK(memcmp(l, lr, sizeof *l * (size_t)db.cfg.vocab_size * 8) == 0);
        free(lr);
        sqlm_modeldb_close(&ref);
    }
    free(l);
    sqlm_modeldb_close(&db);
}

/* --------------------------------------------------- 4. damaged files */

typedef struct file {
    uint8_t *p;
    size_t len;
    uint32_t page_size;
} file;

static file read_file(const char *path) {
    file f = { 0 };
    f.p = test_read_file(path, &f.len);
    if (f.len < 100) return f;   /* no SQLite header */
    f.page_size = (uint32_t)f.p[16] << 8 | f.p[17];
    if (f.page_size == 1) f.page_size = 65536;
    return f;
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(p, 1, n, fp) == n);
    if (fp) fclose(fp);
}

static uint8_t *page(file *f, uint32_t n) { return f->p + (size_t)(n - 1) * f->page_size; }
static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v; }

static int varint_len(const uint8_t *p) {
    int i = 0;
    while (i < 8 && (p[i] & 0x80)) i++;
    return i + 1;
}

/* Open the damaged bytes with sqlm_tiles_open and expect failure with words in the message. */
static void expect_bad_at(int line, const file *f, const ir_weight *ws, const uint32_t *roots, int n,
                          const char *what, const char *words) {
    const char *path = test_tmp_path("bad.db");
    write_file(path, f->p, f->len);
    int fd = open(path, O_RDONLY);
    tile_store *ts = NULL;
    int rc = sqlm_tiles_open(&ts, fd, path, ws, roots, n);
    bool ok = rc != SQLM_OK && ts == NULL && strstr(sqlm_errmsg(), words);
    if (!ok) fprintf(stderr, "test-tiles.c:%d: %s: rc %d, message \"%s\", expected \"%s\"\n", line, what, rc,
                     sqlm_errmsg(), words);
    CHECK(ok);
    sqlm_tiles_close(ts);
    close(fd);
}
#define EXPECT_BAD(what, words) expect_bad_at(__LINE__, &f, ws, roots, n, what, words)

static void check_damage(void) {
    const char *name = "big.db";   /* from check_overflow_fallback: interior root pages */
    modeldb db;
    if (!open_db(name, &db, 1, false)) return;
    CHECK(db.inplace);
    int n = db.n_weights;
    ir_weight ws[64];
    uint32_t roots[64];
    memcpy(ws, db.weights, sizeof *ws * (size_t)n);
    roots_of(test_tmp_path(name), ws, n, roots);
    sqlm_modeldb_close(&db);
    file orig = read_file(test_tmp_path(name));
    int gu = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(ws[i].name, "blk0_gu") == 0) gu = i;
    CHECK(gu >= 0 && orig.len > 0);
    if (gu < 0 || !orig.len) return;
    file f = orig;
    f.p = malloc(orig.len);
#define RESET() memcpy(f.p, orig.p, orig.len)
    RESET();
    uint8_t *root = page(&f, roots[gu]);
    CHECK_EQ(0x05, root[0]);   /* 8 tiles of 32 KB: a root over 8 leaves */
    uint32_t ncell = rd16(root + 3);
    uint32_t leaf_no = rd32(root + rd16(root + 12));   /* left child of cell 0 */
    fprintf(stderr, "  blk0_gu: root page %u, %u cells, first leaf %u\n", roots[gu], ncell, leaf_no);

    /* the root page */
    RESET(); page(&f, roots[gu])[0] = 0x0A;
    EXPECT_BAD("index page as root", "not a table b-tree page");
    RESET(); wr32(page(&f, roots[gu]) + 8, 0x7fffffff);
    EXPECT_BAD("right child past the end", "outside the file");
    RESET(); wr32(page(&f, roots[gu]) + 8, 0);
    EXPECT_BAD("right child 0", "outside the file");
    RESET(); wr32(page(&f, roots[gu]) + 8, roots[gu]);
    EXPECT_BAD("a cycle", "reached twice");
    RESET(); wr16(page(&f, roots[gu]) + 3, 0xffff);
    EXPECT_BAD("too many cells", "do not fit");
    RESET(); wr16(page(&f, roots[gu]) + 12, 0xfffe);
    EXPECT_BAD("cell pointer off the page", "outside the page");
    RESET(); wr16(page(&f, roots[gu]) + 12, 2);
    EXPECT_BAD("cell pointer into the header", "outside the page");
    RESET(); wr32(page(&f, roots[gu]) + rd16(page(&f, roots[gu]) + 12), leaf_no + 1);
    EXPECT_BAD("two pointers to one leaf", "twice");
    {   /* a chain of interior pages deeper than any real tree */
        RESET();
        uint8_t *r = page(&f, roots[gu]);
        wr16(r + 3, 0);                 /* no cells: only the right-most child */
        wr32(r + 8, leaf_no);
        uint8_t *l = page(&f, leaf_no); /* the leaf becomes interior, pointing at the next leaf ... */
        memcpy(l, r, 12);
        wr32(l + 8, leaf_no + 1);
        EXPECT_BAD("interior pages with no tiles", "tiles found");
    }

    /* the first leaf and its cell */
    uint8_t *leaf = page(&orig, leaf_no);
    CHECK_EQ(0x0D, leaf[0]);
    uint32_t cell = rd16(leaf + 8);
    int l1 = varint_len(leaf + cell), l2 = varint_len(leaf + cell + l1);
    size_t rec = (size_t)(leaf - orig.p) + cell + (size_t)l1 + (size_t)l2;   /* record offset in the file */
    fprintf(stderr, "  first leaf: cell at %u, record header %u bytes: types %u %u %u %u...\n", cell,
            orig.p[rec], orig.p[rec + 1], orig.p[rec + 2], orig.p[rec + 3], orig.p[rec + 4]);
    RESET(); wr16(page(&f, leaf_no) + 3, 0);
    EXPECT_BAD("an empty leaf", "tiles found");
    RESET(); page(&f, leaf_no)[cell] = 0xff; page(&f, leaf_no)[cell + 1] = 0xff; page(&f, leaf_no)[cell + 2] = 0x7f;
    EXPECT_BAD("payload of 2 MB", "overflow pages");
    RESET(); wr16(page(&f, leaf_no) + 8, (uint16_t)(f.page_size - 2));
    EXPECT_BAD("cell at the page end", "runs off the page");
    RESET(); f.p[rec] = 0;
    EXPECT_BAD("record header of 0 bytes", "bad record header");
    RESET(); f.p[rec] = 0x7f;
    EXPECT_BAD("record header over the body", "record is not");
    RESET(); f.p[rec] = 3;
    EXPECT_BAD("record of 2 columns", "record is not");
    RESET(); f.p[rec + 1] = 1;
    EXPECT_BAD("id column not NULL", "record is not");
    RESET(); f.p[rec + 2] = 7;   /* 8 body bytes more than the payload holds */
    EXPECT_BAD("row a float", "record body exceeds");
    RESET(); f.p[rec + 2] = 10;
    EXPECT_BAD("reserved serial type", "reserved serial type");
    RESET(); f.p[rec + 3] = 6;   /* col: 8 bytes instead of 1 */
    EXPECT_BAD("col of 8 bytes", "");
    RESET(); f.p[rec + 2] = 9;   /* the first tile's row: 0 -> 1 */
    EXPECT_BAD("row value", "is at (1, 0), expected (0, 0)");
    {   /* the blob's serial type 2 bytes longer: past the payload, or the wrong length */
        RESET();
        uint8_t *t = f.p + rec + 4;
        int k = varint_len(t) - 1;
        t[k] = (uint8_t)(t[k] + 2);
        EXPECT_BAD("blob longer than its payload", "record body exceeds");
    }
    {   /* the tile's rowid: a duplicate, then one past the table */
        RESET();
        uint8_t *r = f.p + (leaf - orig.p) + cell + l1;
        if (l2 == 1) {
            r[0] = (uint8_t)(r[0] + 1);
            EXPECT_BAD("rowid of the next tile", "");
            RESET();
            r[0] = 0x7f;
            EXPECT_BAD("rowid past the table", "outside 0..");
        }
    }
    /* the file header */
    RESET(); f.p[16] = 0x03, f.p[17] = 0x00;
    EXPECT_BAD("page size 768", "bad page size");
    RESET(); f.p[18] = f.p[19] = 2;
    EXPECT_BAD("WAL mode", "WAL");
    RESET(); f.p[20] = 255;   /* cells beyond the usable size */
    EXPECT_BAD("reserved bytes", "outside the page");
    RESET(); f.p[0] = 'X';
    EXPECT_BAD("bad magic", "not an SQLite database");
    {
        const char *path = test_tmp_path("bad.db");
        write_file(path, orig.p, (size_t)roots[gu] * f.page_size - 1000);   /* cut inside the root page */
        int fd = open(path, O_RDONLY);
        tile_store *ts = NULL;
        CHECK(sqlm_tiles_open(&ts, fd, path, ws, roots, n) != SQLM_OK && ts == NULL);
        CHECK(strstr(sqlm_errmsg(), "outside the file") != NULL);
        close(fd);
        CHECK(sqlm_tiles_open(&ts, -1, path, ws, roots, n) != SQLM_OK && ts == NULL);
    }
    {   /* a layout sqlm_weight does not describe */
        ir_weight bad[64];
        memcpy(bad, ws, sizeof *ws * (size_t)n);
        bad[gu].n_in += 32, bad[gu].chunk += 32;
        RESET();
        memcpy(ws, bad, sizeof *ws * (size_t)n);   /* EXPECT_BAD reads ws */
        EXPECT_BAD("wider rows in sqlm_weight", "bytes, expected");
        ws[gu].n_in -= 32, ws[gu].chunk -= 32;
        ws[gu].tile_rows = 0;
        EXPECT_BAD("tile_rows 0", "bad layout");
        ws[gu].tile_rows = bad[gu].tile_rows;
    }

    /* random damage in the weight tables' pages: never out of bounds */
    uint64_t rng = 12345;
    int failed = 0, runs = 0;
    for (int it = 0; it < 300; it++) {
        RESET();
        for (int k = 0; k < 4; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t pg = roots[(rng >> 33) % (uint64_t)n] + (uint32_t)((rng >> 20) % 3);
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t off = (size_t)(pg - 1) * f.page_size + (size_t)((rng >> 33) % 64);   /* headers and first cell bytes */
            if (off < f.len) f.p[off] ^= (uint8_t)(1u << ((rng >> 40) % 8));
            size_t base = (size_t)(pg - 1) * f.page_size;
            if ((rng >> 50) % 2 && base + f.page_size <= f.len) {   /* or a byte near a cell */
                size_t c = base + rd16(f.p + base + 8) + (rng >> 56) % 16;
                if (c < f.len) f.p[c] ^= 0x40;
            }
        }
        const char *path = test_tmp_path("fuzz.db");
        write_file(path, f.p, f.len);
        int fd = open(path, O_RDONLY);
        tile_store *ts = NULL;
        int rc = sqlm_tiles_open(&ts, fd, path, ws, roots, n);
        failed += rc != SQLM_OK;
        if (!rc) {   /* whatever it found lies inside the file */
            for (int i = 0; i < n; i++)
                for (int64_t id = 0; id < sqlm_tiles_count(ts, i); id++) {
                    size_t len;
                    const uint8_t *p = sqlm_tiles_get(ts, i, id, &len);
                    volatile uint8_t x = p[0] ^ p[len - 1];
                    (void)x;
                }
        }
        sqlm_tiles_close(ts);
        close(fd);
        if (it % 20 == 0) {   /* and the whole path: open, map or note, run or fail */
            modeldb d;
            engine_opts eo = { .readonly = true, .threads = 2 };
            if (sqlm_modeldb_open(&d, path, "sqlite", &eo) == SQLM_OK) {
                int r;
                free(run_logits(&d, &r));
                runs++;
                sqlm_modeldb_close(&d);
            }
        }
    }
    fprintf(stderr, "  random damage: 300 files, %d refused by sqlm_tiles_open, %d runs\n", failed, runs);
    CHECK(failed > 0);
    free(f.p);
    free(orig.p);
#undef RESET
}

int main(void) {
    static const struct { const char *name; int dtype; int dim, hidden; size_t tile; } dbs[] = {
        { "q8.db", DT_Q8_0, 64, 192, 0 },
        { "q8-chunked.db", DT_Q8_0, 128, 256, 200 },   /* rows split into chunks */
        { "q4.db", DT_Q4_0, 128, 256, 1024 },
        { "q4-chunked.db", DT_Q4_0, 128, 256, 40 },
        { "f16.db", DT_F16, 64, 96, 700 },
        { "f32-chunked.db", DT_F32, 96, 192, 128 },
    };
    check_kernels();
    for (size_t i = 0; i < ARRAY_LEN(dbs); i++) {
        if (!make_db(dbs[i].name, dbs[i].dtype, dbs[i].dim, dbs[i].hidden, dbs[i].tile)) continue;
        check_all_tiles(dbs[i].name);
        check_same_logits(dbs[i].name);
    }
    check_kv();
    check_misuse();
    check_overflow_fallback();
    check_damage();
    return TEST_DONE();
}
