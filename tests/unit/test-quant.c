/*
 * test-quant.c - the weight types beyond F32/F16/Q8_0/Q4_0 without
 * llama.cpp (tests/llama.sh checks them against ggml's own functions):
 * on random blocks of each type,
 *   - dequantization against a float64 evaluation of the block's integers
 *     (d * sc * q - dmin * mn), within a float rounding of each value;
 *   - the activation rounding (Q8_1, Q8_K, BF16) within half a step;
 *   - the dot product (kern/vec.c) against a float64 sum of the dequantized
 *     weights times the rounded activation, within 1e-5 of the sum of
 *     |terms| (the kernel rounds per block in float);
 *   - matvec over several rows equal to one row at a time, and to the
 *     portable code (sqlm_vec_dot_portable), bit for bit;
 *   - the fp16 scale folding of import: exact when it says so;
 *   - synth's Q4_K / Q6_K writer: values back within a rounding step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "../../src/kern/kern.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frnd(void) { return (float)rnd() / 4294967296.0f * 2 - 1; }

static void put16(uint8_t *p, float v) {
    uint16_t h = sqlm_f32_to_fp16(v);
    memcpy(p, &h, 2);
}

static void random_blocks(int dt, uint8_t *w, size_t nb) {
    size_t bb = sqlm_dtype_block_bytes(dt);
    for (size_t i = 0; i < nb * bb; i++) w[i] = (uint8_t)rnd();
    for (size_t b = 0; b < nb; b++) {
        uint8_t *p = w + b * bb;
        switch (dt) {
        case DT_Q5_0: case DT_IQ4_NL: put16(p, frnd() * 0.01f); break;
        case DT_Q4_1: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K: put16(p, frnd() * 0.01f), put16(p + 2, frnd() * 0.01f); break;
        case DT_Q2_K: put16(p + 80, frnd() * 0.01f), put16(p + 82, frnd() * 0.01f); break;
        case DT_Q3_K: put16(p + 108, frnd() * 0.01f); break;
        case DT_Q6_K: put16(p + 208, frnd() * 0.01f); break;
        default: break;
        }
    }
    if (dt == DT_BF16)
        for (size_t i = 0; i < nb; i++) { uint16_t h = sqlm_f32_to_bf16(frnd()); memcpy(w + 2 * i, &h, 2); }
}

/* The activation's values as floats (what the kernel multiplies with). */
static void act_values(int at, const void *xq, size_t n, double *v) {
    const uint8_t *p = xq;
    for (size_t i = 0; i < n; i++) {
        switch (at) {
        case DT_Q8_1: { const block_q8_1 *b = (const block_q8_1 *)p + i / 32; v[i] = sqlm_fp16_to_f32(b->d) * (double)b->qs[i % 32]; break; }
        case DT_Q8_0: { const block_q8_0 *b = (const block_q8_0 *)p + i / 32; v[i] = sqlm_fp16_to_f32(b->d) * (double)b->qs[i % 32]; break; }
        case DT_Q8_K: { const block_q8_K *b = (const block_q8_K *)p + i / 256; v[i] = b->d * (double)b->qs[i % 256]; break; }
        case DT_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); v[i] = sqlm_bf16_to_f32(h); break; }
        default: v[i] = NAN;
        }
    }
}

static void check_type(int dt) {
    enum { ROWS = 5, NB = 4, N = NB * 256 };
    const int at = sqlm_vec_act_type(dt);
    const size_t qk = sqlm_dtype_block(dt), n = qk == 1 ? 256 : NB * qk, nb = qk == 1 ? n : NB;
    static uint8_t w[ROWS * N * 4], xq[N * 4];
    static float x[N], y[N], out[ROWS], one;
    static double xv[N];
    size_t rb;
    CHECK(sqlm_dtype_valid(dt));
    CHECK(sqlm_dtype_row_bytes(dt, n, &rb));
    int bad_deq = 0, bad_act = 0, bad_dot = 0, bad_rows = 0;
    for (int round = 0; round < 50; round++) {
        for (int r = 0; r < ROWS; r++) random_blocks(dt, w + r * rb, nb);
        /* dequantization against float64 of the block's integers */
        if (qk > 1) {
            sqlm_dtype_to_f32(dt, w, y, n);
            for (size_t b = 0; b < nb; b++) {
                int8_t q[256];
                int16_t sc[16], mn[16];
                float d, dm;
                sqlm_dtype_unpack(dt, w + b * sqlm_dtype_block_bytes(dt), q, sc, mn, &d, &dm);
                for (size_t j = 0; j < qk; j++) {
                    double want = qk == 32 ? (double)d * q[j] + dm
                                           : (double)d * sc[j / 16] * q[j] - (double)dm * mn[j / 16];
                    double mag = qk == 32 ? fabs((double)d * q[j]) + fabs(dm)
                                          : fabs((double)d * sc[j / 16] * q[j]) + fabs((double)dm * mn[j / 16]);
                    if (!(fabs(y[b * qk + j] - want) <= 1.2e-7 * mag * 2 + 1e-30)) bad_deq++;
                }
            }
        }
        /* the activation, within half a rounding step */
        float scale = round % 2 ? 1.0f : 30.0f;
        for (size_t i = 0; i < n; i++) x[i] = frnd() * scale;
        sqlm_vec_quant(at, x, xq, n);
        act_values(at, xq, n, xv);
        for (size_t i = 0; i < n; i++) {
            double amax = 0;
            size_t g = at == DT_Q8_K ? 256 : at == DT_BF16 ? 1 : 32;
            for (size_t j = i / g * g; j < i / g * g + g; j++) amax = fmax(amax, fabs(x[j]));
            /* Q8_0 / Q8_1: the scale is stored in fp16 after the values were
             * rounded with the exact one, up to 127 * 2^-11 of a step more */
            double step = at == DT_BF16 ? fabs(x[i]) / 128 : amax / 127 * 1.07;
            if (!(fabs(xv[i] - x[i]) <= step / 2 + 1e-12)) bad_act++;
        }
        /* the product against float64, and rows at once against one at a time */
        sqlm_vec_matvec(dt, w, ROWS, n, xq, out);
        for (int r = 0; r < ROWS; r++) {
            sqlm_dtype_to_f32(dt, w + r * rb, y, n);
            double want = 0, mag = 0;
            if (at != DT_Q8_1) {
                for (size_t i = 0; i < n; i++) want += (double)y[i] * xv[i], mag += fabs((double)y[i] * xv[i]);
            } else {   /* Q4_1 / Q5_1: the min times the activation's stored sum s, as ggml */
                for (size_t b = 0; b < nb; b++) {
                    int8_t q[32];
                    int16_t sc[16], mn[16];
                    float d, m;
                    const block_q8_1 *xb = (const block_q8_1 *)xq + b;
                    sqlm_dtype_unpack(dt, w + r * rb + b * sqlm_dtype_block_bytes(dt), q, sc, mn, &d, &m);
                    for (int j = 0; j < 32; j++) want += (double)d * q[j] * xv[b * 32 + j], mag += fabs((double)d * q[j] * xv[b * 32 + j]);
                    want += (double)m * sqlm_fp16_to_f32(xb->s), mag += fabs((double)m * sqlm_fp16_to_f32(xb->s));
                }
            }
            if (!(fabs(out[r] - want) <= 1e-5 * mag + 1e-30)) bad_dot++;
            sqlm_vec_matvec(dt, w + r * rb, 1, n, xq, &one);
            if (memcmp(&one, &out[r], 4)) bad_rows++;
            one = sqlm_vec_dot_portable(dt, w + r * rb, xq, n);   /* the SIMD kernels against the portable code */
            if (memcmp(&one, &out[r], 4)) bad_rows++;
        }
    }
    if (bad_deq || bad_act || bad_dot || bad_rows)
        fprintf(stderr, "  %s: %d values, %d activations, %d products, %d rows wrong\n", sqlm_dtype_name(dt), bad_deq,
                bad_act, bad_dot, bad_rows);
    CHECK_EQ(0, bad_deq);
    CHECK_EQ(0, bad_act);
    CHECK_EQ(0, bad_dot);
    CHECK_EQ(0, bad_rows);
}

static void check_scale(void) {
    /* Q4_K with normal scales: folding 1/8 is exact and scales every value */
    uint8_t w[144], v[144];
    float a[256], b[256];
    random_blocks(DT_Q4_K, w, 1);
    put16(w, 0.01f), put16(w + 2, 0.005f);
    CHECK(sqlm_dtype_scale_exact(DT_Q4_K, w, 1, 0.125f));
    memcpy(v, w, sizeof v);
    sqlm_dtype_scale(DT_Q4_K, v, 1, 0.125f);
    sqlm_dtype_to_f32(DT_Q4_K, w, a, 256);
    sqlm_dtype_to_f32(DT_Q4_K, v, b, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) bad += a[i] * 0.125f != b[i];
    CHECK_EQ(0, bad);
    /* a scale that would turn subnormal in fp16: not exact */
    put16(w, 1e-4f);
    CHECK(!sqlm_dtype_scale_exact(DT_Q4_K, w, 1, 0.125f));
    CHECK(!sqlm_dtype_scale_exact(DT_Q4_K, w, 1, 0.3f));   /* not a power of two */
    CHECK(!sqlm_dtype_scale_exact(DT_F32, w, 1, 0.125f));  /* no block scales */
}

/* sqlm_dtype_from_f32's plain Q4_K / Q6_K: each value back within about half
 * a step of its sub-block (the 6-bit and int8 scales add a little). */
static void check_writer(int dt) {
    enum { N = 4 * 256 };
    static float x[N], y[N];
    static uint8_t q[N];
    int bad = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++) x[i] = frnd() * (round % 2 ? 0.05f : 3.0f);
        sqlm_dtype_from_f32(dt, x, q, N);
        sqlm_dtype_to_f32(dt, q, y, N);
        for (int i = 0; i < N; i++) {
            const int g = dt == DT_Q4_K ? 32 : 16;
            float lo = 0, hi = 0, amax = 0;
            for (int j = i / g * g; j < i / g * g + g; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]), amax = fmaxf(amax, fabsf(x[j]));
            float step = dt == DT_Q4_K ? (hi - lo) / 15 : amax / 31;
            if (!(fabsf(y[i] - x[i]) <= 0.75f * step + 1e-6f)) bad++;
        }
    }
    if (bad) fprintf(stderr, "  %s writer: %d values off\n", sqlm_dtype_name(dt), bad);
    CHECK_EQ(0, bad);
    CHECK(sqlm_dtype_can_quantize(dt));
}

int main(void) {
    static const int types[] = { DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_IQ4_NL, DT_Q2_K, DT_Q3_K,
                                 DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_BF16 };
    for (size_t i = 0; i < ARRAY_LEN(types); i++) check_type(types[i]);
    check_scale();
    check_writer(DT_Q4_K);
    check_writer(DT_Q6_K);
    /* names and sizes */
    CHECK_STR("Q4_K", sqlm_dtype_name(DT_Q4_K));
    CHECK_EQ(DT_Q6_K, sqlm_dtype_from_name("Q6_K"));
    CHECK_EQ(256, sqlm_dtype_block(DT_Q3_K));
    CHECK_EQ(210, sqlm_dtype_block_bytes(DT_Q6_K));
    CHECK(!sqlm_dtype_valid(DT_Q8_K));   /* an activation type only */
    CHECK(!sqlm_dtype_valid(16));        /* IQ2_XXS */
    size_t rb;
    CHECK(!sqlm_dtype_row_bytes(DT_Q4_K, 128, &rb));
    return TEST_DONE();
}
