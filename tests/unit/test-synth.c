/*
 * test-synth.c - random-weight GGUF models: write tiny models of several
 * shapes (F32/F16/Q8_0/Q4_0, MHA/GQA, tied/untied, biases, both RoPE layouts,
 * llama3 scaling), read them back with sqlm_model_open, check the config, the
 * tensors and the vocabulary round trip, and run the reference forward pass.
 * Also: determinism, bad shapes, and a write that fails half-way (full disk).
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ref/ref.h"
#include "../test.h"


/* A spec of a tiny llama-family model; callers adjust fields. */
static synth_spec tiny(const char *arch, int n_head, int n_head_kv, int tied, int bias) {
    synth_spec s = {0};
    s.name = "test";
    snprintf(s.cfg.arch, sizeof s.cfg.arch, "%s", arch);
    s.cfg.dim = 64;
    s.cfg.hidden_dim = 96;
    s.cfg.n_layer = 2;
    s.cfg.n_head = n_head;
    s.cfg.n_head_kv = n_head_kv;
    s.cfg.head_dim = 64 / n_head;
    s.cfg.vocab_size = 300;
    s.cfg.seq_len = 64;
    s.cfg.norm_eps = 1e-5f;
    s.cfg.rope_theta = 10000.0f;
    s.cfg.rope_interleaved = strcmp(arch, "qwen2") != 0;
    s.cfg.tied = tied;
    s.cfg.qkv_bias = bias;
    return s;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void check_tensor(const model *m, const char *name, int dtype, int64_t ne0, int64_t ne1) {
    const tensor *t = sqlm_model_find(m, name);
    CHECK(t != NULL);
    if (!t) { fprintf(stderr, "  missing %s\n", name); return; }
    CHECK_EQ(dtype, t->dtype);
    CHECK_EQ(ne0, t->ne[0]);
    CHECK_EQ(ne1, t->ne[1]);
}

/* Write spec in dtype, read it back, compare, evaluate 8 tokens; returns logits of the last. */
static float *round_trip(const char *label, const synth_spec *s, int dtype, uint64_t seed) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), label);
    int rc = sqlm_synth_model(path, s, dtype, seed);
    if (rc) fprintf(stderr, "%s: sqlm_synth_model: %s\n", label, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    char tmp[140];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(file_exists(path) && !file_exists(tmp));
    model *m = NULL;
    rc = sqlm_model_open(path, NULL, &m);
    if (rc) fprintf(stderr, "%s: sqlm_model_open: %s\n", label, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    if (rc) return NULL;

    const model_config *a = &s->cfg, *b = &m->cfg;
    CHECK_STR(a->arch, b->arch);
    CHECK_EQ(a->dim, b->dim);
    CHECK_EQ(a->hidden_dim, b->hidden_dim);
    CHECK_EQ(a->n_layer, b->n_layer);
    CHECK_EQ(a->n_head, b->n_head);
    CHECK_EQ(a->n_head_kv, b->n_head_kv);
    CHECK_EQ(a->head_dim, b->head_dim);
    CHECK_EQ(a->vocab_size, b->vocab_size);
    CHECK_EQ(a->seq_len, b->seq_len);
    CHECK(a->norm_eps == b->norm_eps);
    CHECK(a->rope_theta == b->rope_theta);
    CHECK_EQ(a->rope_interleaved, b->rope_interleaved);
    CHECK_EQ(a->tied, b->tied);
    CHECK_EQ(a->qkv_bias, b->qkv_bias);
    CHECK(a->rope_scale_factor == b->rope_scale_factor);
    if (a->rope_scale_factor != 0) {
        CHECK(a->rope_low_freq_factor == b->rope_low_freq_factor);
        CHECK(a->rope_high_freq_factor == b->rope_high_freq_factor);
        CHECK_EQ(a->rope_orig_ctx, b->rope_orig_ctx);
    }

    int q_dim = a->n_head * a->head_dim, kv_dim = a->n_head_kv * a->head_dim;
    check_tensor(m, "token_embd.weight", dtype, a->dim, a->vocab_size);
    check_tensor(m, "output_norm.weight", DT_F32, a->dim, 1);
    if (!a->tied) check_tensor(m, "output.weight", dtype, a->dim, a->vocab_size);
    CHECK_EQ(!a->tied, sqlm_model_find(m, "output.weight") != NULL);
    for (int l = 0; l < a->n_layer; l++) {
        char n[96];
#define T(suffix, dt, ne0, ne1) \
        (snprintf(n, sizeof n, "blk.%d.%s", l, suffix), check_tensor(m, n, dt, ne0, ne1))
        T("attn_norm.weight", DT_F32, a->dim, 1);
        T("attn_q.weight", dtype, a->dim, q_dim);
        T("attn_k.weight", dtype, a->dim, kv_dim);
        T("attn_v.weight", dtype, a->dim, kv_dim);
        T("attn_output.weight", dtype, q_dim, a->dim);
        T("ffn_norm.weight", DT_F32, a->dim, 1);
        T("ffn_gate.weight", dtype, a->dim, a->hidden_dim);
        T("ffn_up.weight", dtype, a->dim, a->hidden_dim);
        T("ffn_down.weight", dtype, a->hidden_dim, a->dim);
        if (a->qkv_bias) {
            T("attn_q.bias", DT_F32, q_dim, 1);
            T("attn_k.bias", DT_F32, kv_dim, 1);
            T("attn_v.bias", DT_F32, kv_dim, 1);
        }
#undef T
    }

    /* Weight ranges: norms 1 +- 0.1, matrices within +-sqrt(3/n_in). */
    const tensor *norm = sqlm_model_find(m, "blk.1.ffn_norm.weight");
    if (norm) {
        const float *g = norm->data;
        bool ok = true;
        for (int i = 0; i < a->dim; i++) ok &= g[i] >= 0.9f && g[i] <= 1.1f;
        CHECK(ok);
    }
    if (dtype == DT_F32) {
        const tensor *w = sqlm_model_find(m, "blk.0.ffn_down.weight");
        const float *p = w->data;
        double amp = sqrt(3.0 / a->hidden_dim), ss = 0;
        bool ok = true;
        size_t n = (size_t)a->hidden_dim * a->dim;
        for (size_t i = 0; i < n; i++) { ok &= fabs(p[i]) <= amp; ss += (double)p[i] * p[i]; }
        CHECK(ok);
        CHECK(fabs(sqrt(ss / n) - 1.0 / sqrt(a->hidden_dim)) < 0.1 / sqrt(a->hidden_dim));
    }

    /* The synthetic vocabulary: <unk> <s> </s>, 256 bytes, unused. */
    CHECK_EQ(a->vocab_size, m->voc.n);
    CHECK_EQ(1, m->voc.bos);
    CHECK_EQ(2, m->voc.eos);
    CHECK_EQ(0, m->voc.unk);
    if (m->voc.n > 259) {
        CHECK_STR("<0x41>", m->voc.tok[3 + 'A']);
        CHECK_EQ(TOK_BYTE, m->voc.attr[3 + 'A']);
        CHECK_STR("<|unused_0|>", m->voc.tok[259]);
        CHECK_EQ(TOK_UNUSED, m->voc.attr[259]);
    }

    ref_model *r = NULL;
    rc = ref_init(&r, m);
    if (rc) fprintf(stderr, "%s: ref_init: %s\n", label, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    sqlm_model_free(m);
    if (rc) return NULL;
    const float *logits = NULL;
    static const int prompt[8] = {1, 70, 3, 255, 17, 299, 2, 100};
    for (int pos = 0; pos < 8; pos++) logits = ref_forward(r, prompt[pos] % a->vocab_size, pos);
    CHECK(logits != NULL);
    float *out = NULL;
    if (logits) {
        bool finite = true;
        double ss = 0;
        for (int i = 0; i < a->vocab_size; i++) { finite &= isfinite(logits[i]); ss += logits[i] * logits[i]; }
        CHECK(finite);
        double rms = sqrt(ss / a->vocab_size);
        CHECK(rms > 0.05 && rms < 100);   /* neither flat nor exploding */
        out = malloc((size_t)a->vocab_size * sizeof *out);
        memcpy(out, logits, (size_t)a->vocab_size * sizeof *out);
    }
    ref_free(r);
    return out;
}

static bool same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = false;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void check_models(void) {
    synth_spec s;
    float *l;

    s = tiny("llama", 4, 4, 0, 0);                        /* MHA, untied */
    free(round_trip("llama-mha-untied-f32", &s, DT_F32, 1));

    s = tiny("llama", 4, 2, 1, 0);                        /* GQA, tied */
    s.cfg.hidden_dim = 128;
    float *f32 = round_trip("llama-gqa-tied-f32", &s, DT_F32, 2);
    float *q8 = round_trip("llama-gqa-tied-q8", &s, DT_Q8_0, 2);
    /* Same seed, same values before quantization: Q8_0 logits stay close. */
    if (f32 && q8) {
        double d = 0, ss = 0;
        for (int i = 0; i < s.cfg.vocab_size; i++) {
            d = fmax(d, fabs(f32[i] - q8[i]));
            ss += f32[i] * f32[i];
        }
        CHECK(d < 0.1 * sqrt(ss / s.cfg.vocab_size) + 0.02);
    }
    free(f32);
    free(q8);

    s = tiny("qwen2", 4, 2, 1, 1);                        /* NEOX rope, biases, tied, GQA */
    free(round_trip("qwen2-gqa-bias-f32", &s, DT_F32, 3));
    s = tiny("qwen2", 2, 2, 0, 1);                        /* NEOX, biases, untied, MHA */
    free(round_trip("qwen2-mha-bias-q8", &s, DT_Q8_0, 4));
    s = tiny("qwen2", 4, 1, 1, 0);                        /* NEOX without biases, MQA */
    free(round_trip("qwen2-mqa-f16", &s, DT_F16, 5));

    s = tiny("llama", 4, 2, 1, 0);                        /* llama3 rope scaling, head_dim 32 */
    s.cfg.head_dim = 32;
    s.cfg.rope_theta = 500000.0f;
    s.cfg.rope_scale_factor = 32.0f;
    s.cfg.rope_low_freq_factor = 1.0f;
    s.cfg.rope_high_freq_factor = 4.0f;
    s.cfg.rope_orig_ctx = 8192;
    l = round_trip("llama3-scaled-q8", &s, DT_Q8_0, 6);
    free(l);

    const synth_spec *t = sqlm_synth_like("tiny");
    CHECK(t != NULL);
    if (t) {
        free(round_trip("tiny-q4", t, DT_Q4_0, 7));
        /* Deterministic: the same seed gives the same bytes. */
        char a[128], b[128];
        snprintf(a, sizeof a, "%s/det-a.gguf", test_tmpdir());
        snprintf(b, sizeof b, "%s/det-b.gguf", test_tmpdir());
        CHECK_EQ(SQLM_OK, sqlm_synth_model(a, t, DT_Q8_0, 42));
        CHECK_EQ(SQLM_OK, sqlm_synth_model(b, t, DT_Q8_0, 42));
        CHECK(same_file(a, b));
        CHECK_EQ(SQLM_OK, sqlm_synth_model(b, t, DT_Q8_0, 43));
        CHECK(!same_file(a, b));
    }
}

static void check_specs(void) {
    static const char *names[] = {"tiny", "tiny-k", "stories110M", "smollm2-135m", "qwen2.5-0.5b",
                                  "tinyllama-1.1b", "llama-3.2-1b"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        const synth_spec *s = sqlm_synth_like(names[i]);
        CHECK(s != NULL);
        if (!s) continue;
        CHECK_STR(names[i], sqlm_synth_name((int)i));
        CHECK_EQ(0, s->cfg.n_head % s->cfg.n_head_kv);
        CHECK_EQ(0, s->cfg.dim % 32);
        CHECK_EQ(0, s->cfg.hidden_dim % 32);
    }
    CHECK(sqlm_synth_name((int)ARRAY_LEN(names)) == NULL);
    CHECK(sqlm_synth_like("gpt-5") == NULL);
    const synth_spec *q = sqlm_synth_like("qwen2.5-0.5b");
    CHECK_EQ(0, q->cfg.rope_interleaved);
    CHECK_EQ(1, q->cfg.qkv_bias);
    CHECK_EQ(151936, q->cfg.vocab_size);
    const synth_spec *l3 = sqlm_synth_like("llama-3.2-1b");
    CHECK(l3->cfg.rope_scale_factor == 32.0f);
}

static void check_errors(void) {
    char path[128], tmp[140];
    synth_spec s = tiny("llama", 4, 2, 1, 0);
    snprintf(path, sizeof path, "%s/bad.gguf", test_tmpdir());

    s.cfg.dim = 48;                                       /* not a multiple of 32 */
    s.cfg.head_dim = 12;
    CHECK_EQ(SQLM_UNSUPPORTED, sqlm_synth_model(path, &s, DT_Q8_0, 1));
    CHECK(!file_exists(path));

    s = tiny("qwen2", 4, 2, 1, 0);                        /* layout disagrees with arch */
    s.cfg.rope_interleaved = 1;
    CHECK_EQ(SQLM_UNSUPPORTED, sqlm_synth_model(path, &s, DT_F32, 1));
    CHECK(!file_exists(path));

    CHECK_EQ(SQLM_IO, sqlm_synth_model("/nonexistent-dir/x.gguf", sqlm_synth_like("tiny"), DT_F32, 1));
    CHECK(strstr(sqlm_errmsg(), "/nonexistent-dir/x.gguf") != NULL);

    /* A full disk, simulated with a file size limit: a clear error naming the
     * file, and neither the file nor its .tmp left behind. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 20000;
    signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ(0, setrlimit(RLIMIT_FSIZE, &lim));
    s = tiny("llama", 4, 2, 0, 0);
    int rc = sqlm_synth_model(path, &s, DT_F32, 1);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK_EQ(SQLM_IO, rc);
    CHECK(strstr(sqlm_errmsg(), path) != NULL);
    fprintf(stderr, "  full disk: %s\n", sqlm_errmsg());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(path));
    CHECK(!file_exists(tmp));
}

int main(void) {
    check_specs();
    check_models();
    check_errors();
    return TEST_DONE();
}
