/*
 * test-model.c - dtype conversions and the three model readers on the real
 * models in ../shared/models (see MANIFEST.md there): configs, tensor tables
 * and shapes, and the GGUF Q8_0 weights against the safetensors F32 ones.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"
#include "../test.h"

#define STORIES MODELS "stories260K/stories260K.bin"
#define TS_DIR MODELS "TinyStories-656K"
#define TS_ST TS_DIR "/model.safetensors"
#define TS_GGUF MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf"

static float fbits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Deterministic uniform values in [-1, 1). */
static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1 << 23) - 1.0f;
}

/* ----------------------------------------------------------------- dtype */

static void test_fp16(void) {
    CHECK_EQ(0x3c00, sqlm_f32_to_fp16(1.0f));
    CHECK_EQ(0xc000, sqlm_f32_to_fp16(-2.0f));
    CHECK_EQ(0x0000, sqlm_f32_to_fp16(0.0f));
    CHECK_EQ(0x8000, sqlm_f32_to_fp16(-0.0f));
    CHECK_EQ(0x7bff, sqlm_f32_to_fp16(65504.0f));
    CHECK_EQ(0x7bff, sqlm_f32_to_fp16(65519.0f));
    CHECK_EQ(0x7c00, sqlm_f32_to_fp16(65520.0f));      /* halfway to 65536: even is inf */
    CHECK_EQ(0x7c00, sqlm_f32_to_fp16(1e10f));
    CHECK_EQ(0xfc00, sqlm_f32_to_fp16(-INFINITY));
    CHECK_EQ(0x0400, sqlm_f32_to_fp16(ldexpf(1, -14))); /* smallest normal */
    CHECK_EQ(0x0001, sqlm_f32_to_fp16(ldexpf(1, -24))); /* smallest subnormal */
    CHECK_EQ(0x03ff, sqlm_f32_to_fp16(ldexpf(1023, -24)));
    CHECK_EQ(0x0000, sqlm_f32_to_fp16(ldexpf(1, -25))); /* tie rounds to even 0 */
    CHECK_EQ(0x0001, sqlm_f32_to_fp16(ldexpf(3, -26))); /* 0.75 unit -> 1 */
    CHECK_EQ(0x0002, sqlm_f32_to_fp16(ldexpf(3, -25))); /* 1.5 units -> 2 (even) */
    CHECK_EQ(0x0002, sqlm_f32_to_fp16(ldexpf(5, -25))); /* 2.5 units -> 2 (even) */
    CHECK_EQ(0x0400, sqlm_f32_to_fp16(ldexpf(2047, -25))); /* rounds up into the normals */
    CHECK_EQ(0x3c00, sqlm_f32_to_fp16(1.0f + ldexpf(1, -11)));     /* tie -> even */
    CHECK_EQ(0x3c02, sqlm_f32_to_fp16(1.0f + 3 * ldexpf(1, -11))); /* tie -> even (up) */
    CHECK_EQ(0x3c01, sqlm_f32_to_fp16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)));
    CHECK_EQ(0x0000, sqlm_f32_to_fp16(1e-30f));
    CHECK(isnan(sqlm_fp16_to_f32(sqlm_f32_to_fp16(NAN))));
    CHECK(sqlm_fp16_to_f32(0x7c00) == INFINITY);
    CHECK(sqlm_fp16_to_f32(0xfc00) == -INFINITY);
    CHECK(isnan(sqlm_fp16_to_f32(0x7c01)));
    CHECK(sqlm_fp16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(sqlm_fp16_to_f32(0x8001) == -ldexpf(1, -24));
    CHECK(sqlm_fp16_to_f32(0x0200) == ldexpf(1, -15));
    CHECK(sqlm_fp16_to_f32(0x3555) == fbits(0x3eaaa000));
    /* Every finite half survives half -> float -> half. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = sqlm_fp16_to_f32((uint16_t)h);
        if (isnan(f)) {
            bad += !isnan(sqlm_fp16_to_f32(sqlm_f32_to_fp16(f)));
            continue;
        }
        bad += sqlm_f32_to_fp16(f) != h;
    }
    CHECK_EQ(0, bad);
}

static void test_bf16(void) {
    CHECK(sqlm_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(sqlm_bf16_to_f32(0xc040) == -3.0f);
    float src[4] = {1.0f, fbits(0x3f808000), fbits(0x3f818000), -INFINITY}, dst[4];
    uint16_t b[4];
    sqlm_dtype_from_f32(DT_BF16, src, b, 4);
    CHECK_EQ(0x3f80, b[0]);
    CHECK_EQ(0x3f80, b[1]); /* tie -> even */
    CHECK_EQ(0x3f82, b[2]); /* tie -> even (up) */
    CHECK_EQ(0xff80, b[3]);
    sqlm_dtype_to_f32(DT_BF16, b, dst, 4);
    CHECK(dst[0] == 1.0f && dst[3] == -INFINITY);
    uint16_t h[3];
    float f[3] = {0.5f, -1.25f, 1000.0f}, g[3];
    sqlm_dtype_from_f32(DT_F16, f, h, 3);
    sqlm_dtype_to_f32(DT_F16, h, g, 3);
    CHECK(memcmp(f, g, sizeof f) == 0);
}

static void test_dtype_table(void) {
    size_t n;
    CHECK_STR("Q8_0", sqlm_dtype_name(DT_Q8_0));
    CHECK_EQ(DT_BF16, sqlm_dtype_from_name("BF16"));
    CHECK_EQ(-1, sqlm_dtype_from_name("I64"));
    CHECK(!sqlm_dtype_valid(99));
    CHECK(sqlm_dtype_row_bytes(DT_Q8_0, 64, &n) && n == 68);
    CHECK(sqlm_dtype_row_bytes(DT_Q4_0, 64, &n) && n == 36);
    CHECK(sqlm_dtype_row_bytes(DT_F16, 3, &n) && n == 6);
    CHECK(!sqlm_dtype_row_bytes(DT_Q4_0, 33, &n));
    CHECK_EQ(34, sqlm_dtype_block_bytes(DT_Q8_0));
    CHECK_EQ(32, sqlm_dtype_block(DT_Q4_0));
}

static void test_quant(void) {
    enum { N = 32 * 64 };
    static float x[N], y[N];
    static block_q8_0 q8[N / QK];
    static block_q4_0 q4[N / QK];
    uint32_t seed = 1;
    for (int i = 0; i < N; i++) x[i] = frand(&seed) * (1 + i / 256); /* blocks of varying scale */
    x[5] = 0; /* keep a zero */
    for (int i = 64; i < 96; i++) x[i] = 0; /* an all-zero block: d = 0, no NaN */

    sqlm_dtype_from_f32(DT_Q8_0, x, q8, N);
    sqlm_dtype_to_f32(DT_Q8_0, q8, y, N);
    int bad = 0;
    for (int b = 0; b < N / QK; b++) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[b * QK + j]));
        float d = amax / 127;
        for (int j = 0; j < QK; j++) bad += !(fabsf(x[b * QK + j] - y[b * QK + j]) <= 0.6f * d);
    }
    CHECK_EQ(0, bad);
    CHECK(y[5] == 0 && y[70] == 0);

    sqlm_dtype_from_f32(DT_Q4_0, x, q4, N);
    sqlm_dtype_to_f32(DT_Q4_0, q4, y, N);
    bad = 0;
    for (int b = 0; b < N / QK; b++) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[b * QK + j]));
        float d = amax / 8;
        for (int j = 0; j < QK; j++) bad += !(fabsf(x[b * QK + j] - y[b * QK + j]) <= 1.05f * d);
    }
    CHECK_EQ(0, bad);
    CHECK(y[70] == 0);

    /* GGML layouts by hand: Q4_0 low nibbles are values 0..15, high 16..31. */
    block_q4_0 b4 = {.d = 0x4000 /* 2.0 */};
    b4.qs[0] = 0x09 | (0x03 << 4);
    b4.qs[15] = 0x0f | (0x00 << 4);
    for (int j = 1; j < 15; j++) b4.qs[j] = 0x88;
    sqlm_dtype_to_f32(DT_Q4_0, &b4, y, 32);
    CHECK(y[0] == 2.0f && y[16] == -10.0f && y[15] == 14.0f && y[31] == -16.0f && y[1] == 0);
    block_q8_0 b8 = {.d = 0x3800 /* 0.5 */};
    b8.qs[0] = -128;
    b8.qs[31] = 7;
    sqlm_dtype_to_f32(DT_Q8_0, &b8, y, 32);
    CHECK(y[0] == -64.0f && y[31] == 3.5f && y[1] == 0);

    /* ggml's reference choices: Q8_0 d = amax/127 with roundf; Q4_0 d = max/-8. */
    float v[32] = {0};
    v[0] = -4.0f;
    v[1] = 1.0f;
    v[2] = 2.0f;
    sqlm_dtype_from_f32(DT_Q8_0, v, &b8, 32);
    CHECK_EQ(sqlm_f32_to_fp16(4.0f / 127), b8.d);
    CHECK_EQ(-127, b8.qs[0]);
    CHECK_EQ(32, b8.qs[1]); /* 31.75 -> 32 */
    sqlm_dtype_from_f32(DT_Q4_0, v, &b4, 32);
    CHECK_EQ(0x3800, b4.d); /* -4 / -8 = 0.5 */
    CHECK_EQ(0, b4.qs[0] & 0x0f);      /* -4 / 0.5 + 8.5 = 0.5 -> 0 */
    CHECK_EQ(10, b4.qs[1] & 0x0f);     /* 1 / 0.5 + 8.5 = 10.5 -> 10 */
    CHECK_EQ(12, b4.qs[2] & 0x0f);
    CHECK_EQ(8, b4.qs[3] >> 4);
    v[0] = 4.0f; /* positive max: d = -0.5, x = -8 * d -> 0, -x overflows to 15 */
    v[1] = -4.0f;
    sqlm_dtype_from_f32(DT_Q4_0, v, &b4, 32);
    CHECK_EQ(0, b4.qs[0] & 0x0f);
    CHECK_EQ(15, b4.qs[1] & 0x0f);
}

/* ---------------------------------------------------------------- models */

static void check_shape(const model *m, const char *name, int64_t ne0, int64_t ne1) {
    const tensor *t = sqlm_model_find(m, name);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "  missing %s\n", name);
        return;
    }
    CHECK_EQ(ne0, t->ne[0]);
    CHECK_EQ(ne1, t->ne[1]);
}

static model *open_ok(const char *path) {
    model *m = NULL;
    if (!FIXTURE(path)) return NULL;
    int rc = sqlm_model_open(path, NULL, &m);
    if (rc) fprintf(stderr, "sqlm_model_open(%s): %s\n", path, sqlm_errmsg());
    CHECK_EQ(SQLM_OK, rc);
    return m;
}

static void test_stories260k(void) {
    model *m = open_ok(STORIES);
    if (!m) return;
    const model_config *c = &m->cfg;
    CHECK_STR("llama", c->arch);
    CHECK_EQ(64, c->dim);
    CHECK_EQ(172, c->hidden_dim);
    CHECK_EQ(5, c->n_layer);
    CHECK_EQ(8, c->n_head);
    CHECK_EQ(4, c->n_head_kv);
    CHECK_EQ(8, c->head_dim);
    CHECK_EQ(512, c->vocab_size);
    CHECK_EQ(512, c->seq_len);
    CHECK(c->norm_eps == 1e-5f && c->rope_theta == 10000.0f);
    CHECK_EQ(1, c->rope_interleaved);
    CHECK_EQ(1, c->tied);
    CHECK_EQ(0, c->qkv_bias);
    CHECK_EQ(0, (int)(c->rope_scale_factor != 0));
    CHECK_EQ(1 + 9 * 5 + 1, m->n_tensors);
    check_shape(m, "token_embd.weight", 64, 512);
    check_shape(m, "blk.0.attn_q.weight", 64, 64);
    check_shape(m, "blk.4.attn_k.weight", 64, 32);
    check_shape(m, "blk.2.ffn_down.weight", 172, 64);
    check_shape(m, "blk.3.ffn_up.weight", 64, 172);
    CHECK(sqlm_model_find(m, "output.weight") == NULL);
    CHECK(sqlm_model_find_layer(m, 4, "ffn_norm.weight") != NULL);
    CHECK(sqlm_model_find_layer(m, 5, "ffn_norm.weight") == NULL);
    /* The last tensor ends where freq_cis begins: 28 + all weights. */
    const tensor *on = sqlm_model_find(m, "output_norm.weight");
    CHECK(on && (const uint8_t *)on->data + on->nbytes + 512 * 4 * 2 * 4 ==
                    (const uint8_t *)m->map + m->map_size);
    CHECK_EQ(512, m->voc.n);
    sqlm_model_free(m);
}

static void check_ts_config(const model_config *c, int interleaved) {
    CHECK_STR("llama", c->arch);
    CHECK_EQ(128, c->dim);
    CHECK_EQ(384, c->hidden_dim);
    CHECK_EQ(2, c->n_layer);
    CHECK_EQ(8, c->n_head);
    CHECK_EQ(4, c->n_head_kv);
    CHECK_EQ(16, c->head_dim);
    CHECK_EQ(2048, c->vocab_size);
    CHECK_EQ(512, c->seq_len);
    CHECK(c->norm_eps == 1e-6f && c->rope_theta == 10000.0f);
    CHECK_EQ(interleaved, c->rope_interleaved);
    CHECK_EQ(1, c->tied);
    CHECK_EQ(0, c->qkv_bias);
}

static void check_ts_tensors(const model *m) {
    CHECK_EQ(2 + 9 * 2, m->n_tensors);
    check_shape(m, "token_embd.weight", 128, 2048);
    check_shape(m, "output_norm.weight", 128, 1);
    check_shape(m, "blk.1.attn_q.weight", 128, 128);
    check_shape(m, "blk.1.attn_k.weight", 128, 64);
    check_shape(m, "blk.1.attn_v.weight", 128, 64);
    check_shape(m, "blk.0.attn_output.weight", 128, 128);
    check_shape(m, "blk.0.ffn_gate.weight", 128, 384);
    check_shape(m, "blk.0.ffn_down.weight", 384, 128);
    CHECK(sqlm_model_find(m, "output.weight") == NULL);
}

/* Max |a - b| over rows of two tensors of the same shape, relative to max |b|. */
static double rel_diff(const tensor *a, const tensor *b, int perm_heads, int head_dim) {
    int64_t n = a->ne[0], rows = a->ne[1];
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    double worst = 0, amax = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t rb = r;
        if (perm_heads) { /* GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i */
            int64_t h = r / head_dim, k = r % head_dim;
            rb = h * head_dim + (k % 2) * (head_dim / 2) + k / 2;
        }
        sqlm_dtype_to_f32(a->dtype, sqlm_tensor_row(a, r), x, (size_t)n);
        sqlm_dtype_to_f32(b->dtype, sqlm_tensor_row(b, rb), y, (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs(x[i] - y[i]));
            amax = fmax(amax, fabs(y[i]));
        }
    }
    free(x);
    free(y);
    return amax ? worst / amax : worst;
}

static void test_tinystories(void) {
    model *st = open_ok(TS_ST), *dir = open_ok(TS_DIR "/"), *gg = open_ok(TS_GGUF);
    if (st) {
        check_ts_config(&st->cfg, 0);
        check_ts_tensors(st);
        CHECK_EQ(DT_F32, sqlm_model_find(st, "token_embd.weight")->dtype);
        CHECK_EQ(2048, st->voc.n);
        CHECK_EQ(1, st->voc.bos);
        CHECK_EQ(2, st->voc.eos);
    }
    if (dir) {
        check_ts_config(&dir->cfg, 0);
        check_ts_tensors(dir);
    }
    if (gg) {
        check_ts_config(&gg->cfg, 1);
        check_ts_tensors(gg);
        CHECK_EQ(DT_Q8_0, sqlm_model_find(gg, "token_embd.weight")->dtype);
        CHECK_EQ(DT_F32, sqlm_model_find(gg, "output_norm.weight")->dtype);
        CHECK_EQ(2048, gg->voc.n);
        CHECK_EQ(1, gg->voc.bos);
        CHECK_EQ(2, gg->voc.eos);
        CHECK_EQ(VOCAB_SPM, gg->voc.type);
    }
    if (st && gg) {
        const tensor *a = sqlm_model_find(gg, "token_embd.weight"), *b = sqlm_model_find(st, "token_embd.weight");
        double d = rel_diff(a, b, 0, 0);
        CHECK(d < 0.01);
        fprintf(stderr, "token_embd Q8_0 vs F32: max rel diff %.5f\n", d);
        CHECK(rel_diff(sqlm_model_find(gg, "blk.0.attn_norm.weight"),
                       sqlm_model_find(st, "blk.0.attn_norm.weight"), 0, 0) == 0);
        CHECK(rel_diff(sqlm_model_find(gg, "blk.1.attn_v.weight"), sqlm_model_find(st, "blk.1.attn_v.weight"),
                       0, 0) < 0.01);
        CHECK(rel_diff(sqlm_model_find(gg, "blk.1.ffn_down.weight"),
                       sqlm_model_find(st, "blk.1.ffn_down.weight"), 0, 0) < 0.01);
        /* q and k rows: llama.cpp's interleaved permutation of HF's rotate-half order. */
        CHECK(rel_diff(sqlm_model_find(gg, "blk.0.attn_q.weight"), sqlm_model_find(st, "blk.0.attn_q.weight"),
                       1, 16) < 0.01);
        CHECK(rel_diff(sqlm_model_find(gg, "blk.1.attn_k.weight"), sqlm_model_find(st, "blk.1.attn_k.weight"),
                       1, 16) < 0.01);
        CHECK(rel_diff(sqlm_model_find(gg, "blk.0.attn_q.weight"), sqlm_model_find(st, "blk.0.attn_q.weight"),
                       0, 16) > 0.1);
        /* The same vocabulary pieces. */
        if (st->voc.n == gg->voc.n) {
            int diff = 0;
            for (int i = 0; i < st->voc.n; i++)
                diff += st->voc.tok_len[i] != gg->voc.tok_len[i] ||
                        memcmp(st->voc.tok[i], gg->voc.tok[i], gg->voc.tok_len[i]) != 0;
            CHECK_EQ(0, diff);
        }
    }
    sqlm_model_free(st);
    sqlm_model_free(dir);
    sqlm_model_free(gg);
}

/* ------------------------------------------------- a synthetic GGUF file */

static void put32(buf *b, uint32_t v) { sqlm_buf_append(b, &v, 4); }
static void put64(buf *b, uint64_t v) { sqlm_buf_append(b, &v, 8); }
static void putstr(buf *b, const char *s) {
    put64(b, strlen(s));
    sqlm_buf_puts(b, s);
}
static void kv32(buf *b, const char *key, uint32_t type, uint32_t v) {
    putstr(b, key);
    put32(b, type);
    put32(b, v);
}

/*
 * A one-layer model: dim 64, 2 heads of 32, 1 kv head, ffn 96, vocab 32, all
 * weights zero, mixed types.  llama3: no scaling keys but a rope_freqs.weight
 * of llama3 divisors (factor 32, low 1, high 4, orig 8192) as llama.cpp writes.
 */
static void write_tiny_gguf(const char *path, const char *arch, bool llama3) {
    static const struct { const char *name; int dt; int64_t ne0, ne1; } ts[] = {
        {"token_embd.weight", DT_Q8_0, 64, 32}, {"output_norm.weight", DT_F32, 64, 0},
        {"blk.0.attn_norm.weight", DT_F32, 64, 0}, {"blk.0.attn_q.weight", DT_Q4_0, 64, 64},
        {"blk.0.attn_k.weight", DT_F16, 64, 32}, {"blk.0.attn_v.weight", DT_BF16, 64, 32},
        {"blk.0.attn_output.weight", DT_F32, 64, 64}, {"blk.0.ffn_norm.weight", DT_F32, 64, 0},
        {"blk.0.ffn_gate.weight", DT_F16, 64, 96}, {"blk.0.ffn_up.weight", DT_F16, 64, 96},
        {"blk.0.ffn_down.weight", DT_Q8_0, 96, 64}, {"blk.0.attn_q.bias", DT_F32, 64, 0},
        {"blk.0.attn_k.bias", DT_F32, 32, 0}, {"blk.0.attn_v.bias", DT_F32, 32, 0},
        {"rope_freqs.weight", DT_F32, 16, 0},
    };
    bool qwen = strcmp(arch, "qwen2") == 0;
    int n_t = 11 + (qwen ? 3 : 0) + (llama3 ? 1 : 0);
    buf h, kv, info;
    char key[96];
    sqlm_buf_init(&h);
    sqlm_buf_init(&kv);
    sqlm_buf_init(&info);
#define AK(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    int n_kv = 0;
    putstr(&kv, "general.architecture"), put32(&kv, 8), putstr(&kv, arch), n_kv++;
    kv32(&kv, AK("embedding_length"), 4, 64), n_kv++;
    kv32(&kv, AK("feed_forward_length"), 4, 96), n_kv++;
    kv32(&kv, AK("block_count"), 5, 1), n_kv++;
    kv32(&kv, AK("attention.head_count"), 4, 2), n_kv++;
    kv32(&kv, AK("attention.head_count_kv"), 4, 1), n_kv++;
    kv32(&kv, AK("context_length"), 4, 256), n_kv++;
    float eps = 1e-6f, theta = 500000.0f;
    uint32_t u;
    memcpy(&u, &eps, 4);
    kv32(&kv, AK("attention.layer_norm_rms_epsilon"), 6, u), n_kv++;
    memcpy(&u, &theta, 4);
    kv32(&kv, AK("rope.freq_base"), 6, u), n_kv++;
    kv32(&kv, "general.alignment", 4, 64), n_kv++;
    putstr(&kv, "tokenizer.ggml.model"), put32(&kv, 8), putstr(&kv, "gpt2"), n_kv++;
    putstr(&kv, "tokenizer.ggml.tokens"), put32(&kv, 9), put32(&kv, 8), put64(&kv, 32), n_kv++;
    for (int i = 0; i < 32; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d", i);
        putstr(&kv, t);
    }
    putstr(&kv, "tokenizer.ggml.merges"), put32(&kv, 9), put32(&kv, 8), put64(&kv, 2), n_kv++;
    putstr(&kv, "t 1"), putstr(&kv, "t1 2");
    kv32(&kv, "tokenizer.ggml.eos_token_id", 4, 31), n_kv++;
    putstr(&kv, "tokenizer.chat_template"), put32(&kv, 8), putstr(&kv, "{{x}}"), n_kv++;
#undef AK
    uint64_t off = 0;
    for (int i = 0, k = 0; k < n_t; i++) {
        if (!qwen && strstr(ts[i].name, ".bias")) continue;
        if (!llama3 && strstr(ts[i].name, "rope_freqs")) continue;
        size_t nb;
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1 ? ts[i].ne1 : 1};
        sqlm_tensor_nbytes(ts[i].dt, ts[i].ne1 ? 2 : 1, ne, &nb);
        putstr(&info, ts[i].name);
        put32(&info, ts[i].ne1 ? 2 : 1);
        put64(&info, (uint64_t)ts[i].ne0);
        if (ts[i].ne1) put64(&info, (uint64_t)ts[i].ne1);
        put32(&info, (uint32_t)ts[i].dt);
        put64(&info, off);
        off += (nb + 63) / 64 * 64;
        k++;
    }
    sqlm_buf_append(&h, "GGUF", 4);
    put32(&h, 3);
    put64(&h, (uint64_t)n_t);
    put64(&h, (uint64_t)n_kv);
    sqlm_buf_append(&h, kv.p, kv.len);
    sqlm_buf_append(&h, info.p, info.len);
    while (h.len % 64) sqlm_buf_putc(&h, 0);
    size_t data = h.len;
    for (uint64_t i = 0; i < off; i++) sqlm_buf_putc(&h, 0);
    if (llama3) { /* rope_freqs is the last tensor: its 16 divisors end the file */
        float *f = (float *)(h.p + data + off - 64);
        for (int i = 0; i < 16; i++) {
            double wl = 2 * M_PI * pow(500000.0, 2.0 * i / 32), lo = 8192.0 / 1, hi = 8192.0 / 4;
            double s = (8192.0 / wl - 1) / 3;
            f[i] = (float)(wl < hi ? 1.0 : wl > lo ? 32.0 : 1.0 / ((1 - s) / 32 + s));
        }
    }
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(h.p, 1, h.len, fp) == h.len);
    if (fp) fclose(fp);
    sqlm_buf_free(&h);
    sqlm_buf_free(&kv);
    sqlm_buf_free(&info);
}

static void test_synthetic_gguf(void) {
    char path[600];
    model *m;
    snprintf(path, sizeof path, "%s", test_tmp_path("t.gguf"));

    write_tiny_gguf(path, "llama", true);
    m = open_ok(path);
    if (m) {
        CHECK_EQ(32, m->cfg.head_dim);
        CHECK_EQ(1, m->cfg.rope_interleaved);
        CHECK_EQ(1, m->cfg.tied); /* no output.weight */
        CHECK(fabsf(m->cfg.rope_scale_factor - 32.0f) < 1e-3f);
        CHECK(m->cfg.rope_low_freq_factor == 1.0f && m->cfg.rope_high_freq_factor == 4.0f);
        CHECK_EQ(8192, m->cfg.rope_orig_ctx);
        CHECK_EQ(VOCAB_BPE, m->voc.type);
        CHECK_EQ(0, m->voc.add_bos);
        CHECK_EQ(0, m->voc.add_space_prefix);
        CHECK_EQ(31, m->voc.eos);
        CHECK_EQ(2, m->voc.n_merges);
        CHECK_STR("t1 2", m->voc.merges[1]);
        CHECK_STR("{{x}}", m->voc.chat_template);
        CHECK_EQ(DT_Q4_0, sqlm_model_find_layer(m, 0, "attn_q.weight")->dtype);
        CHECK_EQ(DT_BF16, sqlm_model_find_layer(m, 0, "attn_v.weight")->dtype);
        CHECK_EQ(0, ((uintptr_t)sqlm_model_find(m, "token_embd.weight")->data) % 64);
        sqlm_model_free(m);
    }
    write_tiny_gguf(path, "llama", false);
    m = open_ok(path);
    if (m) {
        CHECK(m->cfg.rope_scale_factor == 0.0f);
        sqlm_model_free(m);
    }
    write_tiny_gguf(path, "qwen2", false);
    m = open_ok(path);
    if (m) {
        CHECK_STR("qwen2", m->cfg.arch);
        CHECK_EQ(0, m->cfg.rope_interleaved);
        CHECK_EQ(1, m->cfg.qkv_bias);
        check_shape(m, "blk.0.attn_k.bias", 32, 1);
        sqlm_model_free(m);
    }
    unlink(path);
}

static void test_errors(void) {
    model *m = (model *)1;
    CHECK(sqlm_model_open(MODELS "no-such-file.gguf", NULL, &m) != SQLM_OK);
    CHECK(m == NULL);
    CHECK(strstr(sqlm_errmsg(), "no-such-file.gguf") != NULL);
    /* a folder without model.safetensors; a model whose tokenizer is missing
     * (both present, so that the failure is the one meant) */
    if (FIXTURE(MODELS)) {
        CHECK(sqlm_model_open(MODELS, NULL, &m) != SQLM_OK);
        CHECK(strstr(sqlm_errmsg(), "model.safetensors") != NULL);
    }
    if (FIXTURE(STORIES)) {
        CHECK(sqlm_model_open(STORIES, MODELS "no-such-tok.bin", &m) != SQLM_OK);
        CHECK(m == NULL);
        CHECK(strstr(sqlm_errmsg(), "no-such-tok.bin") != NULL);
    }
    sqlm_model_free(m);
}

int main(void) {
    test_fp16();
    test_bf16();
    test_dtype_table();
    test_quant();
    test_stories260k();
    test_tinystories();
    test_synthetic_gguf();
    test_errors();
    return TEST_DONE();
}
