/*
 * test-duckdb.c - the SQL path on DuckDB, pure SQL (no registered function):
 *   1-4. every check of test-sql.c on the DuckDB engine (golden ids of all
 *        prompts, TinyStories-656K logits within 1e-4, random models against
 *        the reference, operators one by one);
 *   5.   the script `sqlm sql` prints runs unchanged on a stock DuckDB
 *        connection (no sqlm setting, no function) and its final query gives
 *        the golden next token;
 *   6.   the QUANT template (llama.cpp's rounding of a product's input, in
 *        SQL) bit for bit against the C kernels: Q8_0 blocks with ties,
 *        fp16 scale ties, subnormal and zero scales; fp16 of every kind of
 *        value.
 *   7.   no weight table is the build side of a cross join in the plans a
 *        session prepares (ROW2COL's blocks: tables of a few rows).
 *   8.   a reset leaves nothing of the sequence in the cache tables (DuckDB
 *        keeps deleted rows until a checkpoint), and the next sequence gives
 *        the same logits.
 *   9.   the benchmark's products-only bound keeps every product and nothing
 *        else that computes (no norm, RoPE, softmax or SiLU), runs, and is
 *        refused where the program is not layer-merged.
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
        CHECK_EQ(SQLM_OK, sqlm_ir_build_llama(&g, &db.cfg, db.weights, db.n_weights, &o));
        CHECK_EQ(SQLM_OK, sqlm_emit_program(&g, db.e->m->dialect, &p));
        char *script = sqlm_sql_program_text(&p, prompt, np);
        CHECK(script != NULL);
        CHECK(strstr(script, "sqlm_") == NULL);   /* no sqlm function is called */
        /* a fresh connection with nothing of sqlm's: the script in one call */
        engine *e = NULL;
        engine_opts eo = { .readonly = true, .plain = true };
        char path[256];
        snprintf(path, sizeof path, "%s/script.db", test_tmpdir());
        CHECK_EQ(SQLM_OK, sqlm_db_duckdb.open(&e, path, &eo));
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
        sqlm_sql_program_free(&p);
        sqlm_ir_free(&g);
    }
    fprintf(stderr, "  printed script on a stock connection: %d prompts give the golden next token\n",
            n_checked);
    CHECK(n_checked >= 5);
    free(line);
    if (f) fclose(f);
    sqlm_modeldb_close(&db);
}

/* ------------------------------- 6. QUANT in SQL, bit for bit against C */

/* 32 values whose block quantizes in an interesting way (kind 0..9). */
static void edge_block(int kind, uint64_t *rng, float *x) {
    for (int j = 0; j < QK; j++) {
        *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
        float u = (float)((*rng >> 40) / 16777216.0) * 2 - 1;   /* [-1, 1) */
        switch (kind) {
        case 0: x[j] = u * 3; break;                                  /* ordinary */
        case 1: x[j] = j == 0 ? 127 : (float)((j % 2 ? -1 : 1) * ((j * 37) % 127 + 0.5)); break;
        case 2: x[j] = j == 0 ? -63.5f : (float)((j * 11) % 63 + 0.5) / 2; break;   /* ties, id 2 */
        case 3: x[j] = u * 1e-5f; break;                              /* fp16 subnormal scale */
        case 4: x[j] = u * 1e-9f; break;                              /* scale rounds to 0 */
        case 5: x[j] = 0; break;
        case 6: x[j] = j == 5 ? -2.5f : 0; break;                     /* one value */
        case 7: x[j] = u * 6e4f; break;                               /* large */
        default: x[j] = u * (float)exp2(kind * 3 - 40); break;
        }
    }
}

/* A float amax whose amax / 127 (in float) lies exactly halfway between two
 * fp16 values, near target, or 0 if none is found close by. */
static float fp16_tie_amax(float target) {
    uint16_t h = sqlm_f32_to_fp16(target / 127);
    float lo = sqlm_fp16_to_f32(h), hi = sqlm_fp16_to_f32((uint16_t)(h + 1)), mid = (lo + hi) / 2;
    float a = mid * 127;
    for (int k = 0; k < 64; k++, a = nextafterf(a, 1e30f))
        if (a / 127.0f == mid) return a;
    return 0;
}

typedef struct qrows {
    int n;
    float *v[8], *q[8], *d[8];
} qrows;

static int qrow(void *ctx, int nc, const db_val *v) {
    qrows *r = ctx;
    if (r->n >= 8 || nc != 4 || v[0].type != DBV_INT) return 1;
    int i = (int)v[0].i;
    float **dst[3] = { r->v, r->q, r->d };
    for (int c = 0; c < 3; c++) {
        dst[c][i] = calloc(v[c + 1].n / 4 + 1, 4);
        if (v[c + 1].type == DBV_BLOB) memcpy(dst[c][i], v[c + 1].p, v[c + 1].n);
    }
    r->n++;
    return 0;
}

/* Run the QUANT template for weights of type wdt over rows xs[k][n] on the
 * engine e; its columns come back in r. */
static bool run_quant(engine *e, int wdt, float (*xs)[256], int rows, int n, qrows *r) {
    ir_node nodes[2] = {
        { .op = IR_OP_INPUT, .id = 0, .in = { -1, -1, -1 }, .layer = -1, .name = "xs", .critical = true,
          .materialize = true },
        { .op = IR_OP_QUANT, .id = 1, .in = { 0, -1, -1 }, .layer = -1, .name = "xq", .wdtype = wdt,
          .n_out = n, .n_in = n, .critical = true, .materialize = true },
    };
    ir_graph g = { .nodes = nodes, .n_nodes = 2, .cap = 2, .output = 1 };
    sql_program p;
    CHECK_EQ(SQLM_OK, sqlm_emit_program(&g, DIA_DUCKDB, &p));
    CHECK_EQ(SQLM_OK, e->m->exec(e, "CREATE OR REPLACE TEMP TABLE xs(pos INTEGER, v FLOAT[])"));
    for (int k = 0; k < rows; k++) {
        db_val v[2] = { dbv_int(k), dbv_vec(xs[k], (size_t)n) };
        CHECK_EQ(SQLM_OK, e->m->query(e, "INSERT INTO xs VALUES (?, ?)", v, 2, NULL, NULL));
    }
    int rc = e->m->exec(e, p.setup);
    for (int i = 0; !rc && i < p.n_steps; i++) rc = e->m->exec(e, p.steps[i].sql);
    if (rc) fprintf(stderr, "  quant: %s\n", sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    memset(r, 0, sizeof *r);
    if (!rc) rc = e->m->query(e, "SELECT pos, v, flatten(q), d FROM xq ORDER BY pos", NULL, 0, qrow, r);
    CHECK_EQ(SQLM_OK, rc);
    CHECK_EQ(rows, r->n);
    sqlm_sql_program_free(&p);
    return rc == SQLM_OK && r->n == rows;
}

static void qrows_free(qrows *r) {
    for (int i = 0; i < r->n; i++) free(r->v[i]), free(r->q[i]), free(r->d[i]);
}

static void check_quant(void) {
    engine *e = NULL;
    engine_opts eo = { .create = true };
    char path[256];
    snprintf(path, sizeof path, "%s/quant.duck", test_tmpdir());
    CHECK_EQ(SQLM_OK, sqlm_db_duckdb.open(&e, path, &eo));
    if (!e) return;
    static float xs[8][256];
    uint64_t rng = 7;
    int n_blocks = 0, n_ties = 0;
    for (int k = 0; k < 8; k++)
        for (int b = 0; b < 8; b++, n_blocks++) edge_block((k * 8 + b) % 14, &rng, xs[k] + b * QK);
    /* blocks whose scale amax / 127 is an fp16 tie */
    for (int k = 0; k < 8; k++) {
        float a = fp16_tie_amax((float)exp2(k * 2 - 12) * 1.37f);
        if (a == 0) continue;
        float *x = xs[k] + 7 * QK;
        for (int j = 0; j < QK; j++) x[j] = fminf(fmaxf(x[j], -a), a);
        x[3] = k % 2 ? -a : a;
        n_ties++;
    }
    qrows r;
    int bad = 0, checked = 0;
    if (run_quant(e, DT_Q8_0, xs, 8, 256, &r)) {
        for (int k = 0; k < 8; k++) {
            block_q8_0 q[8];
            float want[256];
            sqlm_vec_quant_q8_0(xs[k], q, 256);
            sqlm_dtype_to_f32(DT_Q8_0, q, want, 256);
            for (int j = 0; j < 256; j++, checked++) {
                bool ok = r.v[k][j] == want[j] && r.q[k][j] == q[j / QK].qs[j % QK] &&
                          r.d[k][j / QK] == sqlm_fp16_to_f32(q[j / QK].d);
                if (!ok && bad++ < 5)
                    fprintf(stderr, "  quant row %d [%d]: x %a: sql %a (q %g, d %a), C %a (q %d, d %a)\n", k,
                            j, xs[k][j], r.v[k][j], r.q[k][j], r.d[k][j / QK], want[j], q[j / QK].qs[j % QK],
                            sqlm_fp16_to_f32(q[j / QK].d));
            }
        }
        qrows_free(&r);
    }
    fprintf(stderr, "  QUANT Q8_0 in SQL: %d of %d values differ from sqlm_vec_quant_q8_0 (%d blocks, %d fp16 ties)\n",
            bad, checked, n_blocks, n_ties);
    CHECK_EQ(0, bad);
    CHECK(checked == 8 * 256);

    /* F16: every kind of value, subnormals, ties and overflow included */
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 256; j++) {
            float m = (float)exp2(k * 5 - 30 + j % 8);
            uint16_t h = (uint16_t)((k * 8191 + j * 257) & 0x7bff);
            float f = sqlm_fp16_to_f32(h);
            switch (j % 5) {
            case 0: xs[k][j] = f; break;
            case 1: xs[k][j] = (f + sqlm_fp16_to_f32((uint16_t)(h + 1))) / 2; break;   /* tie */
            case 2: xs[k][j] = -nextafterf((f + sqlm_fp16_to_f32((uint16_t)(h + 1))) / 2, 0); break;
            case 3: xs[k][j] = m * 1.2345f; break;
            default: xs[k][j] = (j % 2 ? -1 : 1) * m * 0.7071f; break;
            }
        }
    xs[0][0] = 65519.0f, xs[0][1] = 65520.0f, xs[0][2] = -1e6f, xs[0][3] = 0.0f;
    xs[0][4] = 2.9802322e-08f, xs[0][5] = 2.9802326e-08f, xs[0][6] = 1e-30f;
    bad = 0, checked = 0;
    if (run_quant(e, DT_F16, xs, 8, 256, &r)) {
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 256; j++, checked++) {
                float want = sqlm_fp16_to_f32(sqlm_f32_to_fp16(xs[k][j]));
                if (r.v[k][j] != want && bad++ < 5)
                    fprintf(stderr, "  fp16 row %d [%d]: x %a: sql %a, C %a\n", k, j, xs[k][j], r.v[k][j], want);
            }
        qrows_free(&r);
    }
    fprintf(stderr, "  QUANT F16 in SQL: %d of %d values differ from sqlm_f32_to_fp16\n", bad, checked);
    CHECK_EQ(0, bad);
    CHECK(checked == 8 * 256);
    e->m->close(e);
}

/* ---------------- 7. weight tables stay on the probe side of cross joins */

/* A statement per row: DROP TABLE of a temporary table */
static int temp_row(void *ctx, int nc, const db_val *v) {
    if (nc == 1 && v[0].type == DBV_TEXT) sqlm_buf_appendf(ctx, "DROP TABLE temp.main.\"%.*s\";\n", (int)v[0].n,
                                                      (const char *)v[0].p);
    return 0;
}

static int explain_row(void *ctx, int nc, const db_val *v) {
    for (int i = 0; i < nc; i++)
        if (v[i].type == DBV_TEXT) sqlm_buf_append(ctx, v[i].p, v[i].n);
    return 0;
}

/* The end of the JSON value that starts at p (an object or array; strings
 * skipped), or NULL. */
static const char *json_end(const char *p) {
    int depth = 0;
    for (; *p; p++) {
        if (*p == '"')
            for (p++; *p && *p != '"'; p++) p += *p == '\\' && p[1];
        else if (*p == '{' || *p == '[') depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
        if (!*p) break;
    }
    return NULL;
}

/* How often what occurs in s. */
static int count_of(const char *s, const char *what) {
    int n = 0;
    for (const char *t = s; (t = strstr(t, what)); t++) n++;
    return n;
}

/* Child i (0: probe, 1: build) of the plan node named at p, as b .. e. */
static bool plan_child(const char *p, int i, const char **b, const char **e) {
    const char *ch = strstr(p, "\"children\"");
    *b = ch ? strchr(ch, '{') : NULL;
    for (*e = *b ? json_end(*b) : NULL; i > 0 && *e; i--) {
        *b = strchr(*e, '{');
        *e = *b ? json_end(*b) : NULL;
    }
    return *e != NULL;
}

/* A plain scan of a table (under projections and filters), not a relation
 * that joins one or reads a CTE; its table's name (after ".main.") in what. */
static bool plain_scan(const char *b, const char *e, char *what, size_t cap) {
    static const char *const not[] = { "JOIN\"", "\"CROSS_PRODUCT\"", "\"CTE_SCAN\"" };
    for (int k = 0; k < 3; k++) {
        const char *t = strstr(b, not[k]);
        if (t && t < e) return false;
    }
    const char *t = strstr(b, ".main.");
    if (!t || t >= e) return false;
    snprintf(what, cap, "%.*s", (int)strcspn(t + 6, "\"\\"), t + 6);
    return true;
}

/* The CROSS_PRODUCTs of a JSON plan whose build side is a scan of a weight
 * table; the first one's table in what. */
static int build_side_weights(const char *plan, char *what, size_t cap) {
    int bad = 0;
    for (const char *p = plan; (p = strstr(p, "\"CROSS_PRODUCT\"")); p++) {
        const char *b, *e;
        char t[64];
        CHECK(plan_child(p, 1, &b, &e));
        if (e && plain_scan(b, e, t, sizeof t) && !strncmp(t, "blk", 3) && bad++ == 0) snprintf(what, cap, "%s", t);
    }
    return bad;
}

/* The joins of a JSON plan with a plain scan of the same table on both
 * sides: a cache joined with itself, every cached row with every earlier
 * one, before the filter on this step's queries (with that join a 1.1B
 * prefill of 100 tokens took 33.0 s against 30.8-31.0). */
static int cache_self_joins(const char *plan) {
    int bad = 0;
    for (const char *p = plan; (p = strstr(p, "_JOIN\"")); p++) {
        const char *b0, *e0, *b1, *e1;
        char t0[64], t1[64];
        if (plan_child(p, 0, &b0, &e0) && plan_child(p, 1, &b1, &e1) && plain_scan(b0, e0, t0, sizeof t0) &&
            plain_scan(b1, e1, t1, sizeof t1) && !strcmp(t0, t1))
            bad++;
    }
    return bad;
}

/* DuckDB puts the side it estimates smaller (rows times width) on the build
 * side of a cross join and copies it: a weight table there costs a copy of
 * its megabytes in every step.  Tables of ROW2COL's blocks have few rows, so
 * the plans a session prepares (on empty tables) are checked: every
 * product's weights are scanned on the probe side. */
static void check_build_side(void) {
    static const shape mha = { "MHA 110M-like", 256, 688, 2, 8, 8, 512, true, false, true, DT_F32, 0, 0, 0 };
    /* 8 query heads per kv head, as TinyLlama: a cross join with range(8)
     * raised the attention's estimate above the out-projection's two
     * blocks per table, which were then copied every step */
    static const shape gqa8 = { "GQA-8 1.1B-like", 256, 688, 2, 8, 1, 512, false, false, false, DT_F32, 0, 0, 0 };
    const shape *shs[] = { &shapes[1], &mha, &gqa8 };   /* GQA with biases; MHA; GQA 8 */
    for (size_t k = 0; k < ARRAY_LEN(shs); k++) {
        char gguf[256];
        snprintf(gguf, sizeof gguf, "%s/bs%zu.gguf", test_tmpdir(), k);
        CHECK(synth_shape(shs[k], gguf));
        import_opts io = { .wtype = -1, .row2col = R2C_SPLIT };
        modeldb db;
        if (!import_open(gguf, "bs", &io, &db)) continue;
        for (int merge = 0; merge < 2; merge++) {
            ir_graph g;
            sql_program p;
            ir_opts o = sqlm_dialect_ir_opts(DIA_DUCKDB, (ir_opts){ .cte_merge = merge });
            CHECK_EQ(SQLM_OK, sqlm_ir_build_llama(&g, &db.cfg, db.weights, db.n_weights, &o));
            CHECK_EQ(SQLM_OK, sqlm_emit_program(&g, DIA_DUCKDB, &p));
            /* a session's tables, new */
            buf drop;
            sqlm_buf_init(&drop);
            CHECK_EQ(SQLM_OK, db.e->m->query(db.e, "SELECT table_name FROM duckdb_tables() WHERE temporary", NULL, 0,
                                             temp_row, &drop));
            if (drop.p) CHECK_EQ(SQLM_OK, db.e->m->exec(db.e, drop.p));
            sqlm_buf_free(&drop);
            CHECK_EQ(SQLM_OK, db.e->m->exec(db.e, p.setup));
            int bad = 0, products = 0, self = 0;
            char what[64] = "";
            for (int i = 0; i < p.n_steps; i++) {
                buf sql, plan;
                sqlm_buf_init(&sql), sqlm_buf_init(&plan);
                sqlm_buf_appendf(&sql, "EXPLAIN (FORMAT JSON) %s", p.steps[i].sql);
                CHECK_EQ(SQLM_OK, db.e->m->query(db.e, sql.p, NULL, 0, explain_row, &plan));
                if (plan.p) {
                    bad += build_side_weights(plan.p, what, sizeof what);
                    self += cache_self_joins(plan.p);
                    products += count_of(plan.p, "\"CROSS_PRODUCT\"");
                }
                sqlm_buf_free(&sql), sqlm_buf_free(&plan);
            }
            fprintf(stderr, "  %s, CTE merging %s: %d cross joins, %d with a weight table built%s%s; %d caches joined with themselves\n",
                    shs[k]->what, merge ? "on" : "off", products, bad, bad ? ": " : "", what, self);
            CHECK(products >= 4 * shs[k]->n_layer);
            CHECK_EQ(0, bad);
            CHECK_EQ(0, self);
            sqlm_sql_program_free(&p);
            sqlm_ir_free(&g);
        }
        sqlm_modeldb_close(&db);
    }
}

/* -------------------------- 8. a reset frees what the sequence stored */

/* Segments the first layer's cache table holds (deleted rows included). */
static int64_t cache_segments(engine *e) {
    int64_t n = -1;
    CHECK_EQ(SQLM_OK, e->m->query(e, "SELECT count(*) FROM pragma_storage_info('temp.kv0')", NULL, 0, sqlm_db_int_row, &n));
    return n;
}

static void check_reset(void) {
    modeldb db;
    if (!import_open(MODELS "stories260K/stories260K.bin", "reset", NULL, &db)) return;
    session *s;
    session_opts so = { .ir = { .cte_merge = true } };
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&s, &db, &so));
    const int32_t prompt[5] = { 1, 403, 407, 261, 378 };
    const int V = db.cfg.vocab_size;
    float *first = malloc(sizeof *first * (size_t)V);
    const float *lg;
    int64_t held[2] = { -1, -1 };
    for (int seq = 0; seq < 2; seq++) {
        CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, prompt, 5, &lg));
        int32_t t = test_argmax(lg, V);
        CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, &t, 1, &lg));
        if (seq == 0) memcpy(first, lg, sizeof *first * (size_t)V);
        else CHECK(test_max_abs_diff(first, lg, V) <= 1e-5);   /* sums over threads may round apart */
        held[0] = cache_segments(db.e);
        CHECK_EQ(SQLM_OK, sqlm_exec_reset(s));
        held[1] = cache_segments(db.e);
        CHECK(held[0] > 0);
        CHECK_EQ(0, held[1]);
    }
    fprintf(stderr, "  reset: %lld storage segments in a cache table before, %lld after\n",
            (long long)held[0], (long long)held[1]);
    free(first);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
}

/* ------------------------- 9. the benchmark's products-only bound */

#include "../../bench/bound.c"

static void check_products_only(void) {
    modeldb db;
    if (!import_open(MODELS "stories260K/stories260K.bin", "bound", NULL, &db)) return;
    char *text[2] = { NULL, NULL };
    for (int bound = 0; bound < 2; bound++) {
        ir_graph g;
        sql_program p;
        ir_opts o = sqlm_dialect_ir_opts(DIA_DUCKDB, (ir_opts){ .cte_merge = true,
                                                               .emit_hook = bound ? &bench_products_only : NULL });
        CHECK_EQ(SQLM_OK, sqlm_ir_build_llama(&g, &db.cfg, db.weights, db.n_weights, &o));
        CHECK_EQ(SQLM_OK, sqlm_emit_program(&g, DIA_DUCKDB, &p));
        text[bound] = sqlm_sql_program_text(&p, NULL, 0);
        sqlm_sql_program_free(&p);
        sqlm_ir_free(&g);
    }
    if (text[0] && text[1]) {
        const char *gone[] = { "exp(", "JOIN rope", "norm n", "list_sum(" };
        for (size_t i = 0; i < ARRAY_LEN(gone); i++) {
            CHECK(strstr(text[0], gone[i]) != NULL);
            CHECK(strstr(text[1], gone[i]) == NULL);
        }
        /* every product (a cross join with a weight table) and cache append stays */
        CHECK(count_of(text[0], " CROSS JOIN ") > 0);
        CHECK_EQ(count_of(text[0], " CROSS JOIN "), count_of(text[1], " CROSS JOIN "));
        CHECK_EQ(count_of(text[0], "INSERT INTO kv"), count_of(text[1], "INSERT INTO kv"));
    }
    session *s;
    session_opts so = { .ir = { .cte_merge = true, .emit_hook = &bench_products_only } };
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&s, &db, &so));
    const int32_t prompt[3] = { 1, 403, 407 };
    const float *lg;
    if (s) {
        CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, prompt, 3, &lg));
        CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, prompt + 1, 1, &lg));
        sqlm_exec_free(s);
    }
    so.ir.cte_merge = false;
    CHECK_EQ(SQLM_UNSUPPORTED, sqlm_exec_init(&s, &db, &so));
    CHECK(strstr(sqlm_errmsg(), "products-only") != NULL);
    fprintf(stderr, "  products-only bound: %d products kept, no norm, RoPE or softmax; refused unmerged\n",
            text[1] ? count_of(text[1], " CROSS JOIN ") : -1);
    free(text[0]), free(text[1]);
    sqlm_modeldb_close(&db);
}

int main(void) {
    /* the library's jemalloc keeps freed pages for 10 s (db/duckdb/api.c), unless the
     * user configured it */
    const char *je_user = getenv("DUCKDB_JE_MALLOC_CONF");
    char je_want[256];
    snprintf(je_want, sizeof je_want, "%s", je_user ? je_user : "dirty_decay_ms:10000,muzzy_decay_ms:10000");
    if (sqlm_duckdb_load() != SQLM_OK) {
        printf("test-duckdb: skipped: DuckDB library not found (%s)\n", sqlm_errmsg());
        return 0;
    }
    const char *je = getenv("DUCKDB_JE_MALLOC_CONF");
    CHECK(je && !strcmp(je, je_want));
    fprintf(stderr, "  DuckDB %s\n", sqlm_duckdb_lib_version());
    double t0 = sqlm_now();
    check_quant();
    run_all();
    check_script();
    check_build_side();
    check_reset();
    check_products_only();
    fprintf(stderr, "  (%.1f s)\n", sqlm_now() - t0);
    return TEST_DONE();
}
