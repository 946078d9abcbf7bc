/*
 * test-sql.c - the SQL path (SQLite engine) against the goldens and against
 * the C reference forward pass in tests/ref:
 *   1. greedy ids of every golden prompt for stories260K (llama2.c),
 *      TinyStories-656K (safetensors) and its Q8_0 GGUF (near-tie rule);
 *   2. TinyStories-656K logits within 1e-4 max-abs of the float64 goldens,
 *      for the 6 prompt positions (one prefill batch) and 8 decode steps;
 *   3. random models of several shapes (MHA/GQA, tied/untied, biases, both
 *      RoPE layouts, F32/F16/Q8_0/Q4_0, chunked tiles): logits vs reference;
 *   4. every operator on its own: with CTE merging off each node is a table,
 *      and each node's rows are recomputed in plain C from its input rows and
 *      compared by normalised error (attention fused into one aggregate, and
 *      as three relations).
 * Run from the repository root (paths "../shared/...").
 *
 * TEST_ENGINE picks the engine (default sqlite); test-duckdb.c includes this
 * file with "duckdb", where weights are stored as float32 (their type's values,
 * dequantized) and the products' inputs are rounded in SQL as llama.cpp does.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../ref/ref.h"
#include "../test.h"

#ifndef TEST_ENGINE
#define TEST_ENGINE "sqlite"
#endif

static int json_ids(json_t *arr, int32_t *ids, int max) {
    int n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (n < max) ids[n++] = (int32_t)json_integer_value(v);
    return n;
}

/* Import path into test_tmpdir()/name.db and open it. */
static bool import_open(const char *path, const char *name, const import_opts *o, modeldb *db) {
    char out[256];
    snprintf(out, sizeof out, "%s/%s.db", test_tmpdir(), name);
    if (!FIXTURE(path)) return false;
    import_opts io = o ? *o : (import_opts){ .wtype = -1 };
    io.engine = TEST_ENGINE;
    int rc = sqlm_import_file(path, out, &io);
    if (rc) {
        fprintf(stderr, "import %s: %s\n", path, sqlm_errmsg());
        CHECK_EQ(SQLM_OK, rc);
        return false;
    }
    engine_opts eo = { .readonly = true, .threads = 1 };   /* tiny models: one thread is fastest */
    rc = sqlm_modeldb_open(db, out, TEST_ENGINE, &eo);
    if (rc) fprintf(stderr, "open %s: %s\n", out, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    /* SQLite reads the weight tiles in place (test-tiles.c covers the copying path) */
    if (!rc && strcmp(TEST_ENGINE, "sqlite") == 0 && !db->inplace) fprintf(stderr, "open %s: %s\n", out, db->note);
    if (!rc && strcmp(TEST_ENGINE, "sqlite") == 0) CHECK(db->inplace);
    return rc == SQLM_OK;
}

/* Does the engine store weights in the file's type (else float32)? */
static bool engine_keeps_dtype(void) {
    return sqlm_dialect_get(sqlm_db_find(TEST_ENGINE)->dialect)->weight_layout == WL_TILES;
}

/* Does the engine round a product's input as ggml does for weights of type
 * dt?  SQLite's kernels do for Q8_0/Q4_0 (an F16 tile meets a float32 input);
 * DuckDB's QUANT template for every type but F32. */
static bool engine_ggml_act(int dt) {
    return engine_keeps_dtype() ? sqlm_vec_act_type(dt) != DT_F32 : dt != DT_F32;
}

/* ------------------------------------------------------ 1. golden ids */

/* Greedy ids after every prompt (tokenized as the golden's prompt_ids) of
 * a generation_*.jsonl golden of 5 records: all equal, or with near_tie
 * equal up to a step where the run may part from the golden
 * (test_near_tie_ok()). */
static void check_generation(const char *model_path, const char *golden, bool near_tie) {
    if (!FIXTURE(golden)) return;
    modeldb db;
    if (!import_open(model_path, "gen", NULL, &db)) return;
    session *s;
    session_opts so = { .ir = { .cte_merge = true, .fuse_attn = true } };
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&s, &db, &so));
    FILE *f = fopen(golden, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    int n_records = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *rec = json_loads(line, 0, &err);
        if (!rec) fprintf(stderr, "  %s: %s\n", golden, err.text);
        CHECK(rec != NULL);
        if (!rec) continue;
        n_records++;
        int32_t prompt[256], want[256];
        int np = json_ids(json_object_get(rec, "prompt_ids"), prompt, 256);
        int nw = json_ids(json_object_get(rec, "generated_ids"), want, 256);
        CHECK(np > 0 && nw > 0);
        json_t *margins = json_object_get(rec, "top2_margins");
        /* tokenizing the prompt text must give the golden prompt ids */
        const char *text = json_string_value(json_object_get(rec, "prompt"));
        if (!text) text = "";
        int32_t *ids = NULL, n_ids = 0;
        CHECK_EQ(SQLM_OK, sqlm_tok_encode(db.tok, text, strlen(text), true, &ids, &n_ids));
        bool same_ids = n_ids == np && memcmp(ids, prompt, sizeof *ids * (size_t)np) == 0;
        if (!same_ids) fprintf(stderr, "  %s: prompt \"%s\" tokenized differently\n", golden, text);
        CHECK(same_ids);
        free(ids);

        CHECK_EQ(SQLM_OK, sqlm_exec_reset(s));
        const float *lg;
        int rc = sqlm_exec_eval(s, prompt, np, &lg), same = 0;
        CHECK_EQ(SQLM_OK, rc);
        bool parted_ok = false;
        for (int i = 0; !rc && i < nw; i++) {
            int32_t t = test_argmax(lg, db.cfg.vocab_size);
            if (t != want[i]) {
                /* a missing margin is no near tie */
                json_t *m = json_array_get(margins, (size_t)i);
                char what[320];
                snprintf(what, sizeof what, "%s \"%s\"", golden, text);
                parted_ok = near_tie && test_near_tie_ok(what, i, m ? json_number_value(m) : INFINITY, lg, t, want[i]);
                break;
            }
            same++;
            if (i + 1 < nw) rc = sqlm_exec_eval(s, &t, 1, &lg);
        }
        fprintf(stderr, "  %s \"%s\": %d/%d equal%s\n", golden, text, same, nw,
                same < nw && parted_ok ? ", then a near tie" : "");
        CHECK(same == nw || parted_ok);
        json_decref(rec);
    }
    fprintf(stderr, "  %s: %d prompts\n", golden, n_records);
    CHECK_EQ(5, n_records);
    free(line);
    if (f) fclose(f);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
}

/* ----------------------------------------------------- 2. golden logits */

static void check_logits(void) {
    const char *stem = GOLDEN "logits_TinyStories-656K-F32_once_upon_a_time";
    char path[256];
    snprintf(path, sizeof path, "%s.npy", stem);
    int r8, c8, r6, c6;
    float *steps = FIXTURE(path) ? test_read_npy(path, &r8, &c8) : NULL;
    snprintf(path, sizeof path, "%s.prompt_positions.npy", stem);
    float *pp = FIXTURE(path) ? test_read_npy(path, &r6, &c6) : NULL;
    CHECK(steps && pp);
    if (!steps || !pp) {
        free(steps);
        free(pp);
        return;
    }
    CHECK_EQ(8, r8);
    CHECK_EQ(6, r6);
    modeldb db;
    if (!import_open(MODELS "TinyStories-656K/model.safetensors", "logits", NULL, &db)) return;
    const int32_t prompt[6] = { 1, 80, 147, 201, 282, 57 };
    const int V = db.cfg.vocab_size;
    CHECK_EQ(c8, V);
    session *s;
    session_opts so = { .ir = { .cte_merge = true, .all_logits = true, .fuse_attn = true } };
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&s, &db, &so));
    const float *lg;
    CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, prompt, 6, &lg));   /* one prefill batch */
    double worst = 0;
    for (int i = 0; i < 6; i++) worst = fmax(worst, test_max_abs_diff(lg + (size_t)i * V, pp + (size_t)i * V, V));
    const float *last = lg + 5 * (size_t)V;
    for (int st = 0; st < 8; st++) {
        worst = fmax(worst, test_max_abs_diff(last, steps + (size_t)st * V, V));
        int32_t t = test_argmax(last, V);
        if (st < 7) {
            CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, &t, 1, &lg));
            last = lg;
        }
    }
    fprintf(stderr, "  logits: max |sql - golden| over 14 rows = %.3g (bound 1e-4)\n", worst);
    CHECK(worst < 1e-4);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
    free(steps);
    free(pp);
}

/* --------------------------------------------- 3. random models vs ref */

typedef struct shape {
    const char *what;
    int dim, hidden, n_layer, n_head, n_head_kv, vocab;
    bool tied, bias, interleaved;
    int dtype;
    size_t tile_bytes;
    double bound;   /* NMSE bound on logits */
    int64_t down_chunk;   /* tile layout, default tiles: blk0_down's chunk (0: not checked) */
} shape;

static const shape shapes[] = {
    { "MHA tied F32", 64, 160, 2, 4, 4, 96, true, false, true, DT_F32, 0, 1e-10, 0 },
    { "GQA untied biases rotate-half F32", 64, 128, 2, 8, 2, 80, false, true, false, DT_F32, 0, 1e-10, 0 },
    { "GQA tied chunked tiles F32", 96, 192, 3, 6, 3, 64, true, false, true, DT_F32, 128, 1e-10, 0 },
    { "GQA untied F16", 64, 96, 2, 4, 2, 72, false, false, true, DT_F16, 0, 1e-10, 0 },
    { "GQA tied Q8_0", 64, 128, 2, 4, 2, 96, true, false, true, DT_Q8_0, 0, 1e-9, 0 },
    { "MHA untied biases Q4_0", 128, 256, 2, 8, 8, 64, false, true, false, DT_Q4_0, 0, 1e-9, 0 },
    { "MHA untied biases Q8_0 hd32", 128, 256, 2, 4, 4, 64, false, true, false, DT_Q8_0, 0, 1e-9, 0 },
    { "MHA untied biases Q4_0 chunked", 128, 256, 2, 4, 4, 64, false, true, false, DT_Q4_0, 200, 1e-9, 0 },
    /* a 16384 x 64 output head: 2^20 weights in 8 row groups, so DuckDB's
     * ROW2COL runs it as two row halves (layout/layout.c, sqlm_layout_duckdb.row_split) */
    { "MHA tied F32 wide vocab (row split)", 64, 128, 1, 4, 4, 16384, true, false, true, DT_F32, 0, 1e-10, 0 },
    /* 64 x 6000 F32 down rows: two 24000-byte rows fill 74% of a tile, so
     * import cuts them in thirds, eight to a tile (import.c, fill_chunk()) */
    { "MHA tied F32 wide FFN (row thirds)", 64, 6000, 1, 4, 4, 96, true, false, true, DT_F32, 0, 1e-10, 2000 },
};

static bool synth_shape(const shape *sh, const char *path) {
    synth_spec sp = { .name = sh->what, .tokenizer = NULL };
    model_config *c = &sp.cfg;
    snprintf(c->arch, sizeof c->arch, "%s", sh->interleaved ? "llama" : "qwen2");
    c->dim = sh->dim, c->hidden_dim = sh->hidden, c->n_layer = sh->n_layer;
    c->n_head = sh->n_head, c->n_head_kv = sh->n_head_kv, c->head_dim = sh->dim / sh->n_head;
    c->vocab_size = sh->vocab, c->seq_len = 64, c->norm_eps = 1e-5f, c->rope_theta = 10000;
    c->rope_interleaved = sh->interleaved, c->tied = sh->tied, c->qkv_bias = sh->bias;
    int rc = sqlm_synth_model(path, &sp, sh->dtype, 1234);
    if (rc) fprintf(stderr, "synth %s: %s\n", sh->what, sqlm_errmsg());
    return rc == SQLM_OK;
}

static void check_random_models(void) {
    for (size_t k = 0; k < ARRAY_LEN(shapes); k++) {
        const shape *sh = &shapes[k];
        char gguf[256];
        snprintf(gguf, sizeof gguf, "%s/rand%zu.gguf", test_tmpdir(), k);
        CHECK(synth_shape(sh, gguf));
        model *m = NULL;
        ref_model *r = NULL;
        CHECK_EQ(SQLM_OK, sqlm_model_open(gguf, NULL, &m));
        if (!m) continue;
        CHECK_EQ(SQLM_OK, ref_init(&r, m));
        sqlm_model_free(m);
        if (!r) continue;
        r->ggml_act = engine_ggml_act(sh->dtype);
        /* the passes: shape k alone as before, then the F32 shapes again with
         * every pass off and every pass on (where the engine has ROW2COL) */
        for (int combo = 0; combo < 3; combo++) {
        if (combo > 0 && sh->dtype != DT_F32) break;
        const bool r2c = !engine_keeps_dtype();
        /* all passes: ROW2COL as the paper's pivot columns on every matrix,
         * or (odd shapes) every layer matrix split over two tables of blocks
         * of rows, or (shape 2) of rows */
        import_opts io = { .wtype = -1, .tile_bytes = combo ? 0 : sh->tile_bytes, .no_fuse = combo == 1,
                           .row2col = combo == 2 && r2c ? (k % 2 ? R2C_SPLIT : k == 2 ? R2C_SPLIT_ROWS : R2C_ON)
                                                        : R2C_OFF };
        modeldb db;
        if (!import_open(gguf, "rand", &io, &db)) { ref_free(r); r = NULL; break; }
        /* the layout asked for is the one written */
        for (int w = 0; w < db.n_weights; w++)
            if (!strncmp(db.weights[w].name, "blk", 3)) {
                CHECK_EQ(io.row2col == R2C_SPLIT, db.weights[w].blocks >= 4);
                CHECK_EQ(io.row2col == R2C_SPLIT_ROWS, db.weights[w].split_at > 0);
            }
        if (sh->down_chunk && engine_keeps_dtype() && combo == 0)
            for (int w = 0; w < db.n_weights; w++)
                if (!strcmp(db.weights[w].name, "blk0_down")) CHECK_EQ(sh->down_chunk, db.weights[w].chunk);
        static const char *const combo_name[] = { "", " (no passes)", " (all passes)" };
        session *s;
        /* CTE merging on and off (on for chunked rows, whose products have
         * forms of their own), attention fused into one aggregate or as
         * three relations; then no passes and all passes */
        session_opts so = { .ir = { .cte_merge = combo ? combo == 2 : k % 2 == 0 || sh->tile_bytes, .all_logits = true,
                                    .row2col_per = 0, .fuse_attn = combo ? combo == 2 : k % 4 < 2 } };
        CHECK_EQ(SQLM_OK, sqlm_exec_init(&s, &db, &so));
        const int32_t toks[8] = { 1, 5, 9, 2, 17, 33, 4, 60 };
        const int V = db.cfg.vocab_size;
        const float *lg;
        double worst = 0;
        /* a prefill batch of 5, then 3 single decode steps */
        CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, toks, 5, &lg));
        for (int i = 0; i < 8; i++) {
            if (i >= 5) CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, &toks[i], 1, &lg));
            const float *want = ref_forward(r, toks[i], i);
            const float *got = i < 5 ? lg + (size_t)i * V : lg;
            worst = fmax(worst, test_nmse(got, want, (size_t)V));
        }
        /* An input rounded to fp16 can fall on the other side of a rounding
         * boundary than the reference's input, from a last-bit difference
         * upstream: one value of one step moves by an fp16 unit (seen: NMSE
         * 5.7e-11 at one position, 5e-15 at the others). */
        double bound = r->ggml_act && sh->dtype == DT_F16 ? fmax(sh->bound, 1e-9) : sh->bound;
        fprintf(stderr, "  random %-34s logits NMSE %.2e (bound %.0e)%s\n", sh->what, worst, bound,
                combo_name[combo]);
        CHECK(worst < bound);
        sqlm_exec_free(s);
        sqlm_modeldb_close(&db);
        }
        ref_free(r);
    }
}

/* --------------------------------------------- 4. operators one by one */

typedef struct rel {
    int n;              /* rows */
    int64_t key[64];    /* pos (or qpos*1000+kpos) */
    float *v[64];       /* copied vectors */
    int64_t len[64];
} rel;

static int rel_row(void *ctx, int nc, const db_val *v) {
    rel *r = ctx;
    if (r->n >= 64 || nc < 2) return 1;
    int vi = nc - 1;
    r->key[r->n] = nc == 3 ? v[0].i * 1000 + v[1].i : v[0].i;
    r->len[r->n] = (int64_t)(v[vi].n / 4);
    r->v[r->n] = malloc(v[vi].n + 4);
    memcpy(r->v[r->n], v[vi].p, v[vi].n);
    r->n++;
    return 0;
}

static void rel_load(engine *e, const char *sql, rel *r) {
    memset(r, 0, sizeof *r);
    CHECK_EQ(SQLM_OK, e->m->query(e, sql, NULL, 0, rel_row, r));
}

static void rel_free(rel *r) {
    for (int i = 0; i < r->n; i++) free(r->v[i]);
}

static const float *rel_get(const rel *r, int64_t key, int64_t *len) {
    for (int i = 0; i < r->n; i++)
        if (r->key[i] == key) {
            *len = r->len[i];
            return r->v[i];
        }
    return NULL;
}

/* The float32 rows of weight table w, dequantized from its tiles: [n_out][n_in]. */
static float *load_weight(engine *e, const ir_weight *w) {
    float *W = calloc((size_t)(w->n_out * w->n_in), sizeof *W);
    const int64_t n_chunks = (w->n_in + w->chunk - 1) / w->chunk;
    char sql[1024];
    if (w->pivot) {   /* ROW2COL: the pivot columns side by side */
        int n = snprintf(sql, sizeof sql, "SELECT id, flatten([c0");
        for (int p = 1; p < w->pivot; p++) n += snprintf(sql + n, sizeof sql - (size_t)n, ", c%d", p);
        snprintf(sql + n, sizeof sql - (size_t)n, "]) AS v FROM %s WHERE id = ?", w->name);
    } else if (w->split_at) {   /* ROW2COL: rows from split_at on in {name}_1 */
        snprintf(sql, sizeof sql, "SELECT id, v FROM (SELECT id, v FROM %s UNION ALL SELECT id, v FROM %s_1)"
                 " WHERE id = ?", w->name, w->name);
    } else if (w->blocks) {   /* ROW2COL: blocks of rows over {name} and {name}_1 */
        snprintf(sql, sizeof sql, "SELECT id, v FROM (SELECT row + generate_subscripts(m, 1) - 1 AS id, unnest(m) AS v"
                 " FROM %s UNION ALL SELECT row + generate_subscripts(m, 1) - 1, unnest(m) FROM %s_1) WHERE id = ?",
                 w->name, w->name);
    } else {
        snprintf(sql, sizeof sql, "SELECT id, v FROM %s WHERE id = ?", w->name);
    }
    for (int64_t r0 = 0; r0 < w->n_out; r0 += w->tile_rows)
        for (int64_t ch = 0; ch < n_chunks; ch++) {
            db_val p = dbv_int(r0 / w->tile_rows * n_chunks + ch);
            rel one;
            memset(&one, 0, sizeof one);
            CHECK_EQ(SQLM_OK, e->m->query(e, sql, &p, 1, rel_row, &one));
            CHECK_EQ(1, one.n);
            if (one.n == 1) {
                int64_t c0 = ch * w->chunk, width = MIN(w->chunk, w->n_in - c0);
                const int sdt = engine_keeps_dtype() ? w->dtype : DT_F32;   /* as stored */
                size_t rb;
                sqlm_dtype_row_bytes(sdt, (size_t)width, &rb);
                int64_t rows = (int64_t)((size_t)one.len[0] * 4 / rb);
                for (int64_t r = 0; r < rows; r++)
                    sqlm_dtype_to_f32(sdt, (const char *)one.v[0] + rb * (size_t)r,
                                 W + (size_t)(r0 + r) * (size_t)w->n_in + (size_t)c0, (size_t)width);
            }
            rel_free(&one);
        }
    return W;
}

/* layout: 0 fused tiles, 1 unfused (CONCAT), 2 ROW2COL fused, 3 ROW2COL unfused,
 * 4 ROW2COL blocks (two tables), unfused, 5 the same fused, 6 ROW2COL split rows,
 * unfused; fused: attention as one ATTN aggregate
 * where the dialect has it */
static void check_operators(int layout, bool fused) {
    const shape *sh = &shapes[1];   /* GQA, untied, biases, rotate-half, head_dim 8 */
    char gguf[256];
    snprintf(gguf, sizeof gguf, "%s/ops.gguf", test_tmpdir());
    CHECK(synth_shape(sh, gguf));
    modeldb db;
    /* several tiles per matrix, unless the rows are pivoted */
    import_opts io = { .wtype = -1, .tile_bytes = layout >= 2 ? 0 : 256,
                       .no_fuse = layout % 2 == 1 || layout == 4 || layout == 6,
                       .row2col = layout == 4 || layout == 5 ? R2C_SPLIT : layout == 6 ? R2C_SPLIT_ROWS
                                  : layout >= 2 ? R2C_ON : R2C_OFF };
    if (!import_open(gguf, "ops", &io, &db)) return;
    static const char *const layout_name[] = { "fused", "unfused", "ROW2COL fused", "ROW2COL unfused",
                                               "ROW2COL blocks, unfused", "ROW2COL blocks, fused",
                                               "ROW2COL split rows, unfused" };
    fprintf(stderr, "  operators, %s weights:\n", layout_name[layout]);
    session *s;
    session_opts so = { .ir = { .cte_merge = false, .all_logits = true, .row2col_per = layout == 3 ? 2 : 0,
                                .fuse_attn = fused } };
    CHECK_EQ(SQLM_OK, sqlm_exec_init(&s, &db, &so));
    const int32_t toks[4] = { 3, 7, 11, 13 };
    const float *lg;
    CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, toks, 3, &lg));
    CHECK_EQ(SQLM_OK, sqlm_exec_eval(s, toks + 3, 1, &lg));   /* a decode step over the cache */

    const model_config *c = &db.cfg;
    const ir_graph *g = NULL;
    ir_graph gg;
    ir_opts o = sqlm_dialect_ir_opts(db.e->m->dialect, so.ir);
    CHECK_EQ(SQLM_OK, sqlm_ir_build_llama(&gg, c, db.weights, db.n_weights, &o));
    g = &gg;
    engine *e = db.e;
    const int hd = c->head_dim;
    int checked[IR_OP_COUNT] = { 0 };
    double worst[IR_OP_COUNT] = { 0 };
    char sql[256];
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        /* the softmax's relation (its columns differ by dialect) is checked
         * through ATTN_OUT, which the reference computes from q, k and v */
        if (n->op == IR_OP_INPUT || n->op == IR_OP_QUANT || n->op == IR_OP_KV_APPEND || n->op == IR_OP_ATTN_MAX)
            continue;
        rel out, in0, in1;
        const char *cols = n->op == IR_OP_ATTN_SCORE ? "qpos, kpos, s" : "pos, v";
        snprintf(sql, sizeof sql, "SELECT %s FROM %s", cols, n->name);
        rel_load(e, sql, &out);
        const ir_node *a = n->in[0] >= 0 ? &g->nodes[n->in[0]] : NULL;
        /* the input of a matmul is the node before its quantization */
        if (a && a->op == IR_OP_QUANT) a = &g->nodes[a->in[0]];
        memset(&in0, 0, sizeof in0), memset(&in1, 0, sizeof in1);
        if (a && a->op != IR_OP_INPUT) {
            const char *ac = a->op == IR_OP_ATTN_SCORE ? "qpos, kpos, s" : "pos, v";
            snprintf(sql, sizeof sql, "SELECT %s FROM %s", ac, a->name);
            rel_load(e, sql, &in0);
        }
        float *W = NULL, *gain = NULL;
        if (n->op == IR_OP_MATMUL) W = load_weight(e, sqlm_ir_find_weight(g, n->weight));
        if (n->op == IR_OP_RMSNORM) {
            rel gr;
            snprintf(sql, sizeof sql, "SELECT layer, v FROM norm WHERE layer = %d AND kind = '%s'", n->layer, n->weight);
            rel_load(e, sql, &gr);
            CHECK_EQ(1, gr.n);
            gain = gr.n ? gr.v[0] : NULL;   /* taken over from gr */
        }
        for (int row = 0; row < out.n; row++) {
            int64_t key = out.key[row], len = out.len[row], l0 = 0, l1 = 0;
            float *want = calloc((size_t)len + 1, sizeof *want);
            const float *x = a ? rel_get(&in0, key, &l0) : NULL;
            switch (n->op) {
            case IR_OP_EMBED: {
                const ir_weight *w = sqlm_ir_find_weight(g, n->weight);
                float *E = load_weight(e, w);
                int tok = key < 4 ? toks[key] : 0;
                memcpy(want, E + (size_t)tok * (size_t)w->n_in, sizeof *want * (size_t)len);
                free(E);
                break;
            }
            case IR_OP_RMSNORM: {
                double ss = 0;
                for (int64_t j = 0; j < l0; j++) ss += (double)x[j] * x[j];
                for (int64_t j = 0; j < l0 && gain; j++) want[j] = (float)(x[j] / sqrt(ss / l0 + c->norm_eps) * gain[j]);
                break;
            }
            case IR_OP_MATMUL: {
                for (int64_t r = 0; r < n->n_out; r++) {
                    double acc = 0;
                    for (int64_t j = 0; j < n->n_in; j++) acc += (double)W[r * n->n_in + j] * x[j];
                    want[r] = (float)acc;
                }
                if (n->bias) {
                    rel br;
                    snprintf(sql, sizeof sql, "SELECT layer, v FROM bias WHERE layer = %d", n->layer);
                    rel_load(e, sql, &br);
                    for (int64_t r = 0; r < n->n_out && br.n; r++) want[r] += br.v[0][n->bias_off + r];
                    rel_free(&br);
                }
                break;
            }
            case IR_OP_ROPE: {
                memcpy(want, x, sizeof *want * (size_t)l0);
                for (int h = 0; h < c->n_head + c->n_head_kv; h++)
                    for (int j = 0; j < hd / 2; j++) {
                        double ang = key * pow(c->rope_theta, -2.0 * j / hd);
                        int p0 = c->rope_interleaved ? 2 * j : j, p1 = c->rope_interleaved ? 2 * j + 1 : j + hd / 2;
                        float *v = want + h * hd;
                        double qs = h < c->n_head && c->q_scale > 0 ? c->q_scale : 1.0;
                        double x0 = (float)(x[h * hd + p0] * qs), x1 = (float)(x[h * hd + p1] * qs);
                        v[p0] = (float)(x0 * cos(ang) - x1 * sin(ang));
                        v[p1] = (float)(x0 * sin(ang) + x1 * cos(ang));
                    }
                break;
            }
            case IR_OP_ATTN:
            case IR_OP_ATTN_OUT: {
                /* attention from the rope'd q,k,v rows: in0 = scores (skip), use the rope node */
                const ir_node *rp = n->op == IR_OP_ATTN ? a : &g->nodes[g->nodes[n->in[0]].in[0]];
                snprintf(sql, sizeof sql, "SELECT pos, v FROM %s", rp->name);
                rel qkv;
                rel_load(e, sql, &qkv);
                /* the cache as whole rows: pure DuckDB keeps a row per (pos, kv head) */
                const char *kv_fmt = e->m->dialect == DIA_DUCKDB
                    ? "SELECT pos, flatten(list(%s ORDER BY h)) FROM kv%d GROUP BY pos"
                    : "SELECT pos, %s FROM kv%d";
                snprintf(sql, sizeof sql, kv_fmt, "k", n->layer);
                rel kk;
                rel_load(e, sql, &kk);
                snprintf(sql, sizeof sql, kv_fmt, "v", n->layer);
                rel vv;
                rel_load(e, sql, &vv);
                const float *q = rel_get(&qkv, key, &l1);
                for (int h = 0; q && h < c->n_head; h++) {
                    int kh = h / (c->n_head / c->n_head_kv);
                    double sc[64], mx = -1e300, z = 0;
                    for (int p = 0; p <= key; p++) {
                        int64_t lk;
                        const float *k = rel_get(&kk, p, &lk);
                        double d = 0;
                        for (int j = 0; k && j < hd; j++) d += (double)q[h * hd + j] * k[kh * hd + j];
                        sc[p] = d;
                        mx = fmax(mx, d);
                    }
                    for (int p = 0; p <= key; p++) z += exp(sc[p] - mx);
                    for (int p = 0; p <= key; p++) {
                        int64_t lv;
                        const float *v = rel_get(&vv, p, &lv);
                        for (int j = 0; v && j < hd; j++) want[h * hd + j] += (float)(exp(sc[p] - mx) / z * v[kh * hd + j]);
                    }
                }
                rel_free(&qkv), rel_free(&kk), rel_free(&vv);
                break;
            }
            case IR_OP_ADD: {
                snprintf(sql, sizeof sql, "SELECT pos, v FROM %s", g->nodes[n->in[1]].name);
                rel_load(e, sql, &in1);
                const float *y = rel_get(&in1, key, &l1);
                for (int64_t j = 0; x && y && j < len; j++) want[j] = x[j] + y[j];
                rel_free(&in1);
                break;
            }
            case IR_OP_SWIGLU:
                for (int64_t j = 0; x && j < len; j++)
                    want[j] = (float)(x[j] / (1 + exp(-(double)x[j])) * x[len + j]);
                break;
            case IR_OP_LAST:
                if (x) memcpy(want, x, sizeof *want * (size_t)len);
                break;
            case IR_OP_CONCAT: {
                int64_t at = 0;
                for (int k = 0; k < IR_MAX_IN && n->in[k] >= 0; k++) {
                    snprintf(sql, sizeof sql, "SELECT pos, v FROM %s", g->nodes[n->in[k]].name);
                    rel_load(e, sql, &in1);
                    int64_t lk = 0;
                    const float *y = rel_get(&in1, key, &lk);
                    for (int64_t j = 0; y && j < lk && at + j < len; j++) want[at + j] = y[j];
                    at += lk;
                    rel_free(&in1);
                }
                CHECK_EQ(len, at);
                break;
            }
            default:
                free(want);
                want = NULL;
                break;
            }
            if (want) {
                double err = test_nmse(out.v[row], want, (size_t)len);
                worst[n->op] = fmax(worst[n->op], err);
                checked[n->op]++;
                free(want);
            }
        }
        free(W);
        free(gain);
        rel_free(&out), rel_free(&in0);
    }
    const int ops[] = { IR_OP_EMBED, IR_OP_RMSNORM, IR_OP_MATMUL, IR_OP_ROPE,
                        o.fuse_attn ? IR_OP_ATTN : IR_OP_ATTN_OUT, IR_OP_ADD, IR_OP_SWIGLU, IR_OP_CONCAT };
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        if (ops[i] == IR_OP_CONCAT && !io.no_fuse) continue;   /* fused: no CONCAT node */
        fprintf(stderr, "  op %-10s %3d rows, NMSE %.2e (bound 1e-10)\n", sqlm_ir_op_name(ops[i]),
                checked[ops[i]], worst[ops[i]]);
        CHECK(checked[ops[i]] > 0);
        CHECK(worst[ops[i]] < 1e-10);
    }
    sqlm_ir_free(&gg);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
}

static void run_all(void) {
    check_generation(MODELS "stories260K/stories260K.bin", GOLDEN "generation_stories260K.jsonl", false);
    check_generation(MODELS "TinyStories-656K/model.safetensors", GOLDEN "generation_TinyStories-656K-F32.jsonl", false);
    check_generation(MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf",
                     GOLDEN "generation_TinyStories-656K-Q8_0.jsonl", true);
    check_logits();
    check_random_models();
    check_operators(0, true);
    check_operators(0, false);
    check_operators(1, true);
    if (!engine_keeps_dtype()) {   /* ROW2COL: engines with float rows */
        check_operators(2, true);
        check_operators(3, true);
        check_operators(4, true);
        check_operators(5, true);
        check_operators(6, true);
    }
}

#ifndef TEST_NO_MAIN
int main(void) {
    run_all();
    return TEST_DONE();
}
#endif
