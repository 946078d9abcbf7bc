/*
 * test-ref.c - the reference forward pass against independent goldens:
 * greedy generation of stories260K (llama2.c .bin), TinyStories-656K
 * (safetensors) and its Q8_0 GGUF (near-tie rule of golden/README.md), and
 * the TinyStories-656K logits of "Once upon a time" within 1e-4.  And the
 * stored mode (bench/refbench.c's speed baseline) against the default mode:
 * the same greedy tokens on small models of every storage type.
 * Run from the repository root (paths are "../shared/...").
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "../ref/ref.h"
#include "../test.h"

static model *open_model(const char *path) {
    model *m = NULL;
    if (!FIXTURE(path)) return NULL;
    if (sqlm_model_open(path, NULL, &m) != SQLM_OK) {
        fprintf(stderr, "sqlm_model_open %s: %s\n", path, sqlm_errmsg());
        return NULL;
    }
    return m;
}

/* Fill ids[] (at most max) from a JSON array of integers; returns the count. */
static int json_ids(json_t *arr, int *ids, int max) {
    int n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (n < max) ids[n++] = (int)json_integer_value(v);
    }
    return n;
}

/*
 * Greedy-generate after every prompt of a generation_*.jsonl file and compare
 * with generated_ids: all equal, or with near_tie equal up to a step where
 * the run may part from the golden (test_near_tie_ok()).  ggml_act rounds
 * matmul inputs to Q8_0 as llama.cpp does (127/max|x| scale, rounding half
 * to even).
 */
static void check_generation(const char *model_path, const char *golden_path, bool near_tie, bool ggml_act) {
    if (!FIXTURE(golden_path)) return;
    model *m = open_model(model_path);
    CHECK(m != NULL);
    if (!m) return;
    ref_model *r = NULL;
    int rc = ref_init(&r, m);
    if (rc) fprintf(stderr, "ref_init %s: %s\n", model_path, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    sqlm_model_free(m);
    if (rc) return;
    r->ggml_act = ggml_act;

    FILE *f = fopen(golden_path, "r");
    CHECK(f != NULL);
    if (!f) { ref_free(r); return; }
    char line[1 << 16];
    int n_records = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *rec = json_loads(line, 0, &err);
        if (!rec) fprintf(stderr, "  %s: %s\n", golden_path, err.text);
        CHECK(rec != NULL);
        if (!rec) continue;
        int prompt[256], want[256];
        int n_prompt = json_ids(json_object_get(rec, "prompt_ids"), prompt, 256);
        int n_want = json_ids(json_object_get(rec, "generated_ids"), want, 256);
        json_t *margins = json_object_get(rec, "top2_margins");
        const char *text = json_string_value(json_object_get(rec, "prompt"));
        char what[320];
        snprintf(what, sizeof what, "%s \"%s\"", golden_path, text ? text : "");
        const float *logits = NULL;
        for (int i = 0; i < n_prompt; i++) logits = ref_forward(r, prompt[i], i);
        CHECK(logits != NULL);
        int same = 0;
        bool parted_ok = false;
        for (int s = 0; s < n_want && logits; s++) {
            int next = ref_argmax(logits, r->cfg.vocab_size);
            if (next != want[s]) {
                json_t *mg = json_array_get(margins, (size_t)s);   /* a missing margin is no near tie */
                parted_ok = near_tie && test_near_tie_ok(what, s, mg ? json_number_value(mg) : INFINITY, logits,
                                                         next, want[s]);
                break;
            }
            same++;
            logits = ref_forward(r, next, n_prompt + s);
        }
        if (same < n_want)
            fprintf(stderr, "  %s: %d/%d equal%s\n", what, same, n_want, parted_ok ? ", then a near tie" : "");
        CHECK(n_want == 64);
        CHECK(same == n_want || parted_ok);
        n_records++;
        json_decref(rec);
    }
    fclose(f);
    CHECK_EQ(5, n_records);
    ref_free(r);
}

/* The golden logits: 6 prompt positions (prefill) and 8 decode rows. */
static void check_logits(void) {
    const char *stem = GOLDEN "logits_TinyStories-656K-F32_once_upon_a_time";
    char path[256];
    snprintf(path, sizeof path, "%s.json", stem);
    json_error_t err;
    json_t *g = FIXTURE(path) ? json_load_file(path, 0, &err) : NULL;
    CHECK(g != NULL);
    if (!g) return;
    int prompt[16], gen[16];
    int n_prompt = json_ids(json_object_get(g, "prompt_ids"), prompt, 16);
    int n_gen = json_ids(json_object_get(g, "generated_ids_first_steps"), gen, 16);
    json_t *rows = json_object_get(g, "logits");
    CHECK_EQ(6, n_prompt);
    CHECK_EQ(8, n_gen);
    CHECK_EQ(8, json_array_size(rows));

    snprintf(path, sizeof path, "%s.prompt_positions.npy", stem);
    int p_rows = 0, p_cols = 0;
    float *pp = FIXTURE(path) ? test_read_npy(path, &p_rows, &p_cols) : NULL;
    CHECK(pp != NULL);
    CHECK_EQ(6, p_rows);

    model *m = open_model(MODELS "TinyStories-656K/model.safetensors");
    ref_model *r = NULL;
    CHECK(m && ref_init(&r, m) == SQLM_OK);
    sqlm_model_free(m);
    if (!r || !pp) goto done;
    int V = r->cfg.vocab_size;
    CHECK_EQ(2048, V);
    CHECK_EQ(2048, p_cols);

    double worst = 0;
    const float *logits = NULL;
    for (int i = 0; i < n_prompt; i++) {
        logits = ref_forward(r, prompt[i], i);
        double d = test_max_abs_diff(logits, pp + (size_t)i * V, V);
        worst = fmax(worst, d);
        CHECK(d < 1e-4);
    }
    float *want = malloc((size_t)V * sizeof *want);
    for (int s = 0; s < n_gen; s++) {
        json_t *row = json_array_get(rows, (size_t)s);
        CHECK_EQ(V, json_array_size(row));
        for (int i = 0; i < V; i++) want[i] = (float)json_number_value(json_array_get(row, (size_t)i));
        double d = test_max_abs_diff(logits, want, V);
        worst = fmax(worst, d);
        CHECK(d < 1e-4);
        CHECK_EQ(gen[s], ref_argmax(logits, V));
        logits = ref_forward(r, gen[s], n_prompt + s);
    }
    fprintf(stderr, "  logits: max |ref - golden| over 14 rows = %.3g\n", worst);
    free(want);
done:
    free(pp);
    ref_free(r);
    json_decref(g);
}

/*
 * The stored mode (matrices in their stored type, sqlm's kernels, rows split
 * over threads) against the oracle on the model at path: the same 40 greedy
 * tokens after a 6-token prompt, logits within tol of each other, and the
 * same bits whatever the thread count (each row is one dot product).
 */
static void check_stored(const char *label, const char *path, double tol) {
    model *m = open_model(path);
    CHECK(m != NULL);
    if (!m) return;
    ref_model *oracle = NULL, *one = NULL, *three = NULL;
    CHECK_EQ(SQLM_OK, ref_init_ctx(&oracle, m, 64));
    CHECK_EQ(SQLM_OK, ref_init_stored(&one, m, 64, 1));
    int rc = ref_init_stored(&three, m, 64, 3);
    if (rc) fprintf(stderr, "ref_init_stored %s: %s\n", label, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    if (!oracle || !one || !three) goto done;
    CHECK(one->wq == NULL && one->token_embd == NULL);   /* nothing dequantized */
    int wdt = one->wdtype[REF_WQ];
    /* the oracle rounds the input as the kernels do for quantized weights */
    oracle->ggml_act = sqlm_vec_act_type(wdt) == DT_Q8_0;
    int V = oracle->cfg.vocab_size, prompt[6] = { 1, 7, 42, 3, 99, 5 };
    int same = 0, identical = 1;
    double worst = 0;
    const float *a = NULL, *b = NULL, *c = NULL;
    int tok = 0;
    for (int pos = 0; pos < 46; pos++) {
        if (pos < 6) tok = prompt[pos] % V;
        else {
            int ta = ref_argmax(a, V), tb = ref_argmax(b, V);
            if (ta == tb) same++;
            tok = ta;
        }
        a = ref_forward(oracle, tok, pos);
        b = ref_forward(one, tok, pos);
        c = ref_forward(three, tok, pos);
        CHECK(a && b && c);
        if (!a || !b || !c) goto done;
        worst = fmax(worst, test_max_abs_diff(a, b, V));
        identical &= memcmp(b, c, (size_t)V * sizeof *b) == 0;
    }
    fprintf(stderr, "  stored mode %s (%s): %d/40 greedy tokens equal, max |logit diff| %.3g\n",
            label, sqlm_dtype_name(wdt), same, worst);
    CHECK_EQ(40, same);
    CHECK(worst < tol);
    CHECK(identical);
done:
    ref_free(oracle);
    ref_free(one);
    ref_free(three);
    sqlm_model_free(m);
}

/* check_stored on the real tiny models and on random-weight ones of each type. */
static void check_stored_modes(void) {
    check_stored("stories260K", MODELS "stories260K/stories260K.bin", 1e-3);
    check_stored("TinyStories-656K Q8_0", MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf", 0.05);
    synth_spec qwen = *sqlm_synth_like("tiny");   /* biases, tied head, rotate-half RoPE */
    snprintf(qwen.cfg.arch, sizeof qwen.cfg.arch, "qwen2");
    qwen.cfg.qkv_bias = 1, qwen.cfg.tied = 1, qwen.cfg.rope_interleaved = 0;
    static const int types[] = { DT_F32, DT_F16, DT_Q8_0, DT_Q4_0 };
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
        for (int q = 0; q < 2; q++) {
            char path[128], label[64];
            snprintf(path, sizeof path, "%s/m%zu%d.gguf", test_tmpdir(), i, q);
            snprintf(label, sizeof label, "synth %s", q ? "qwen2-like tiny" : "tiny");
            int rc = sqlm_synth_model(path, q ? &qwen : sqlm_synth_like("tiny"), types[i], 7 + i);
            if (rc) fprintf(stderr, "sqlm_synth_model: %s\n", sqlm_errmsg());
            CHECK_EQ(SQLM_OK, rc);
            if (!rc) check_stored(label, path, types[i] == DT_F32 ? 1e-3 : 0.05);
            unlink(path);
        }
    }
}

int main(void) {
    check_stored_modes();
    check_generation(MODELS "stories260K/stories260K.bin", GOLDEN "generation_stories260K.jsonl", false, false);
    check_generation(MODELS "TinyStories-656K/model.safetensors", GOLDEN "generation_TinyStories-656K-F32.jsonl",
                     false, false);
    check_generation(MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf",
                     GOLDEN "generation_TinyStories-656K-Q8_0.jsonl", true, true);
    check_logits();
    return TEST_DONE();
}
