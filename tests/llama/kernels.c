/*
 * kernels.c - sqlm's kernels against ggml's own, linked from the llama.cpp
 * build (.deps/llama.cpp): for every weight type, random blocks dequantized
 * by both (ggml_get_type_traits()->to_float) must give the same floats, the
 * activation rounded by both (ggml_get_type_traits_cpu()->from_float) the
 * same bytes, and the dot product of the two (->vec_dot, the function
 * llama.cpp's CPU backend calls for one token) the same float, bit for bit.
 * usage: kernels [ROUNDS]; exit status 1 on any difference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ggml-cpu.h"

#include "../../src/kern/kern.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frnd(void) { return (float)rnd() / 4294967296.0f * 2 - 1; }

/* Random blocks of type dt: random bytes, then sane fp16 scales (d, dmin). */
static void random_blocks(int dt, uint8_t *w, size_t nb) {
    size_t bb = sqlm_dtype_block_bytes(dt);
    for (size_t i = 0; i < nb * bb; i++) w[i] = (uint8_t)rnd();
    int od = -1, om = -1;
    switch (dt) {
    case DT_Q8_0: case DT_Q4_0: case DT_Q5_0: case DT_IQ4_NL: od = 0; break;
    case DT_Q4_1: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K: od = 0, om = 2; break;
    case DT_Q2_K: od = 80, om = 82; break;
    case DT_Q3_K: od = 108; break;
    case DT_Q6_K: od = 208; break;
    default: break;
    }
    for (size_t b = 0; b < nb; b++) {
        uint8_t *p = w + b * bb;
        if (od >= 0) { uint16_t h = sqlm_f32_to_fp16(frnd() * 0.01f); memcpy(p + od, &h, 2); }
        if (om >= 0) { uint16_t h = sqlm_f32_to_fp16(frnd() * 0.01f); memcpy(p + om, &h, 2); }
    }
    if (dt == DT_BF16)
        for (size_t i = 0; i < nb; i++) { uint16_t h = sqlm_f32_to_bf16(frnd()); memcpy(w + 2 * i, &h, 2); }
}

static int fails;
#define FAIL(...) do { fails++; fprintf(stderr, "kernels: " __VA_ARGS__); fputc('\n', stderr); } while (0)

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    static const int types[] = { DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_IQ4_NL, DT_Q2_K,
                                 DT_Q3_K, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_BF16 };
    ggml_cpu_init();
    enum { NMAX = 3 * 256 + 32 * 3 };
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const int dt = types[t], at = sqlm_vec_act_type(dt);
        const struct ggml_type_traits *tt = ggml_get_type_traits((enum ggml_type)dt);
        const struct ggml_type_traits_cpu *tc = ggml_get_type_traits_cpu((enum ggml_type)dt);
        const struct ggml_type_traits_cpu *ta = ggml_get_type_traits_cpu(tc->vec_dot_type);
        if ((int)tc->vec_dot_type != at) {
            FAIL("%s: sqlm multiplies it with %s, ggml with %s", sqlm_dtype_name(dt), sqlm_dtype_name(at),
                 ggml_type_name(tc->vec_dot_type));
            continue;
        }
        int bad_deq = 0, bad_act = 0, bad_dot = 0, dots = 0;
        for (int r = 0; r < rounds; r++) {
            const size_t qk = sqlm_dtype_block(dt) > 1 ? sqlm_dtype_block(dt) : 32;
            const size_t nb = 1 + rnd() % (qk == 256 ? 3 : 9), n = nb * qk;
            static uint8_t w[NMAX * 4], xa[NMAX * 4], xb[NMAX * 4];
            static float x[NMAX], y0[NMAX], y1[NMAX];
            random_blocks(dt, w, dt == DT_BF16 ? n : nb);
            /* dequantization */
            tt->to_float(w, y0, (int64_t)n);
            sqlm_dtype_to_f32(dt, w, y1, n);
            for (size_t i = 0; i < n; i++)
                if (memcmp(&y0[i], &y1[i], 4)) { bad_deq++; break; }
            /* the activation: some values repeated and exact halves, for ties */
            float scale = r % 3 == 0 ? 1e-3f : r % 3 == 1 ? 1.0f : 40.0f;
            for (size_t i = 0; i < n; i++) x[i] = frnd() * scale;
            if (r % 4 == 1) for (size_t i = 0; i < n; i++) x[i] = (float)((int)(frnd() * 254)) / 2.0f;
            if (r % 5 == 2) for (size_t i = 0; i < n; i += 7) x[i] = -x[i / 2];
            ta->from_float(x, xa, (int64_t)n);
            sqlm_vec_quant(at, x, xb, n);
            size_t ab = sqlm_vec_act_bytes(at, n);
            if (memcmp(xa, xb, ab)) {
                bad_act++;
                if (bad_act == 1)
                    for (size_t i = 0; i < ab; i++)
                        if (xa[i] != xb[i]) { fprintf(stderr, "  %s act byte %zu: ggml %d sqlm %d\n", sqlm_dtype_name(at), i, xa[i], xb[i]); break; }
            }
            /* the product, both on ggml's activation.  Not Q8_0 and Q4_0:
             * sqlm sums those as ggml's repacked Q4_0 kernel does (one fma
             * per block, kern/vec.c), not as vec_dot's 8 lanes */
            if (dt == DT_Q8_0 || dt == DT_Q4_0) continue;
            float s0 = 0, s1 = 0;
            tc->vec_dot((int)n, &s0, 0, w, 0, xa, 0, 1);
            sqlm_vec_matvec(dt, w, 1, n, xa, &s1);
            dots++;
            if (memcmp(&s0, &s1, 4)) {
                if (!bad_dot) fprintf(stderr, "  %s dot n=%zu: ggml %.9g sqlm %.9g\n", sqlm_dtype_name(dt), n, s0, s1);
                bad_dot++;
            }
        }
        if (bad_deq) FAIL("%s: %d of %d dequantized rows differ from ggml's", sqlm_dtype_name(dt), bad_deq, rounds);
        if (bad_act) FAIL("%s: %d of %d %s activations differ from ggml's", sqlm_dtype_name(dt), bad_act, rounds, sqlm_dtype_name(at));
        if (bad_dot) FAIL("%s: %d of %d dot products differ from ggml's", sqlm_dtype_name(dt), bad_dot, dots);
        if (!bad_deq && !bad_act && (dt == DT_Q8_0 || dt == DT_Q4_0))
            printf("  %-6s x %-4s: dequantization and activation equal ggml's bit for bit (products: sqlm's order)\n",
                   sqlm_dtype_name(dt), sqlm_dtype_name(at));
        else if (!bad_deq && !bad_act && !bad_dot)
            printf("  %-6s x %-4s: dequantization, activation and %d dot products equal ggml's bit for bit\n",
                   sqlm_dtype_name(dt), sqlm_dtype_name(at), dots);
        (void)y1;
    }
    return fails ? 1 : 0;
}
