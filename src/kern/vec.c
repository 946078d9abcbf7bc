/*
 * vec.c - the numeric kernels behind sqlm's SQL functions: dot products over
 * stored weight rows (F32, F16, Q8_0, Q4_0), activation quantization, RMSNorm,
 * RoPE, SwiGLU.  Pure functions over plain arrays: no SQL, no allocation.
 *
 * Quantized weights are multiplied with an activation quantized to Q8_0 the
 * way llama.cpp does it (per-block int8 with an fp16 scale, integer sums,
 * fp32 accumulation), so greedy outputs agree with llama.cpp at near-ties.
 */
#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VEC_AVX2 1
#endif

#include "../sqlm-int.h"

/* ------------------------------------------------------------ dot products */

#ifdef VEC_AVX2
static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline int hsum_i32_8(__m256i v) {
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(h);
}
#endif

float vec_dot_f32(const float *a, const float *b, size_t n) {
    size_t i = 0;
    float s = 0;
#ifdef VEC_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16(const uint16_t *a, const float *b, size_t n) {
    size_t i = 0;
    float s = 0;
#if defined(VEC_AVX2) && defined(__F16C__)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        s0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b + i + 8), s1);
    }
    s = hsum256(_mm256_add_ps(s0, s1));
#endif
    for (; i < n; i++) s += fp16_to_f32(a[i]) * b[i];
    return s;
}

#ifdef VEC_AVX2
/* Exact sum of 32 int8 products; |w| * sign(x, w) keeps maddubs's
 * unsigned-by-signed form exact. */
static inline int dot_i8x32(__m256i qw, __m256i qx) {
    __m256i aw = _mm256_sign_epi8(qw, qw), sx = _mm256_sign_epi8(qx, qw);
    return hsum_i32_8(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1)));
}
#endif

/*
 * Q8_0 x Q8_0 as llama.cpp's x86 CPU backend rounds it: each block's integer
 * dot product is exact, then the float accumulator takes one fused
 * multiply-add per block, acc = fma(isum, d_w * d_x, acc), in block order.
 * (An 8-lane accumulator with a final horizontal sum differs in the last bit
 * now and then, which flips a Q8_0 rounding downstream at near-ties.)
 */
static float dot_q8_0(const block_q8_0 *w, const block_q8_0 *x, size_t nb) {
    float s = 0;
    for (size_t b = 0; b < nb; b++) {
        int sum;
#ifdef VEC_AVX2
        sum = dot_i8x32(_mm256_loadu_si256((const __m256i *)w[b].qs),
                        _mm256_loadu_si256((const __m256i *)x[b].qs));
#else
        sum = 0;
        for (int j = 0; j < QK; j++) sum += w[b].qs[j] * x[b].qs[j];
#endif
        s = fmaf((float)sum, fp16_to_f32(w[b].d) * fp16_to_f32(x[b].d), s);
    }
    return s;
}

/*
 * Q4_0 x Q8_0, rounded the same way: exact integer sum per block, then one
 * fma per block.  This is the order of llama.cpp's x86 Q4_0 path for
 * matrices with a multiple of 8 rows (repacked to q4_0_8x8: one lane per
 * row, acc = fma(isum, d_w * d_x, acc)); no Q4_0 golden checks it yet.
 */
static float dot_q4_0(const block_q4_0 *w, const block_q8_0 *x, size_t nb) {
    float s = 0;
#ifdef VEC_AVX2
    const __m128i m4 = _mm_set1_epi8(0x0f);
#endif
    for (size_t b = 0; b < nb; b++) {
        int sum;
#ifdef VEC_AVX2
        __m128i raw = _mm_loadu_si128((const __m128i *)w[b].qs);
        __m256i qw = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4),
                                      _mm_and_si128(raw, m4));
        qw = _mm256_sub_epi8(qw, _mm256_set1_epi8(8));
        sum = dot_i8x32(qw, _mm256_loadu_si256((const __m256i *)x[b].qs));
#else
        sum = 0;
        for (int j = 0; j < QK / 2; j++) {
            sum += ((w[b].qs[j] & 15) - 8) * x[b].qs[j];
            sum += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + QK / 2];
        }
#endif
        s = fmaf((float)sum, fp16_to_f32(w[b].d) * fp16_to_f32(x[b].d), s);
    }
    return s;
}

/*
 * Exact block sums of products for nb blocks of 32 float-held integers
 * (|sums| < 2^24, so any order is exact): w contiguous, x's block b at
 * x + b * xstride.
 */
static void isums_f32(const float *w, const float *x, size_t xstride, size_t nb, float *out) {
    size_t b = 0;
#ifdef VEC_AVX2
    for (; b + 8 <= nb; b += 8) {
        __m256 a[8];
        for (int k = 0; k < 8; k++) {
            const float *wb = w + (b + k) * QK, *xb = x + (b + k) * xstride;
            __m256 s = _mm256_mul_ps(_mm256_loadu_ps(wb), _mm256_loadu_ps(xb));
            s = _mm256_fmadd_ps(_mm256_loadu_ps(wb + 8), _mm256_loadu_ps(xb + 8), s);
            s = _mm256_fmadd_ps(_mm256_loadu_ps(wb + 16), _mm256_loadu_ps(xb + 16), s);
            a[k] = _mm256_fmadd_ps(_mm256_loadu_ps(wb + 24), _mm256_loadu_ps(xb + 24), s);
        }
        __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
        _mm256_storeu_ps(out + b, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                                _mm256_permute2f128_ps(u0, u1, 0x31)));
    }
#endif
    for (; b < nb; b++) {
        float s = 0;
        for (int j = 0; j < QK; j++) s += w[b * QK + j] * x[b * xstride + j];
        out[b] = s;
    }
}

/*
 * A Q8_0/Q4_0 row held as floats (wq: the integer values, ws: the block
 * scales) times an activation packed per block as its scale and then its 32
 * integer values (33 floats), rounded as dot_q8_0: acc = fma(isum, d_w *
 * d_x, acc) in block order.  Gives dot_q8_0's result bit for bit.
 */
float vec_dot_qpacked(const float *wq, const float *ws, const float *xp, size_t nb) {
    float acc = 0, is[64];
    for (size_t b0 = 0; b0 < nb; b0 += 64) {
        size_t n = MIN(nb - b0, 64);
        isums_f32(wq + b0 * QK, xp + b0 * (QK + 1) + 1, QK + 1, n, is);
        for (size_t b = 0; b < n; b++) acc = fmaf(is[b], ws[b0 + b] * xp[(b0 + b) * (QK + 1)], acc);
    }
    return acc;
}

/* The nb exact block products isum * d_w * d_x of vec_dot_qpacked, unsummed. */
void vec_qpacked_products(const float *wq, const float *ws, const float *xp, size_t nb, double *out) {
    float is[64];
    for (size_t b0 = 0; b0 < nb; b0 += 64) {
        size_t n = MIN(nb - b0, 64);
        isums_f32(wq + b0 * QK, xp + b0 * (QK + 1) + 1, QK + 1, n, is);
        for (size_t b = 0; b < n; b++) out[b0 + b] = (double)is[b] * (double)(ws[b0 + b] * xp[(b0 + b) * (QK + 1)]);
    }
}

/* The activation type a weight type is multiplied with. */
int vec_act_type(int wdtype) {
    return wdtype == DT_Q8_0 || wdtype == DT_Q4_0 ? DT_Q8_0 : DT_F32;
}

/*
 * out[r] = dot(row r of w, x) for rows rows of n values each; w has type
 * wdtype, x has type vec_act_type(wdtype).  n is a multiple of 32 for
 * quantized types (checked by the caller).
 */
void vec_matvec(int wdtype, const void *w, size_t rows, size_t n, const void *x, float *out) {
    size_t rb = 0;
    dtype_row_bytes(wdtype, n, &rb);
    const char *p = w;
    for (size_t r = 0; r < rows; r++, p += rb) {
        switch (wdtype) {
        case DT_F32: out[r] = vec_dot_f32((const float *)p, x, n); break;
        case DT_F16: out[r] = dot_f16((const uint16_t *)p, x, n); break;
        case DT_Q8_0: out[r] = dot_q8_0((const block_q8_0 *)p, x, n / QK); break;
        case DT_Q4_0: out[r] = dot_q4_0((const block_q4_0 *)p, x, n / QK); break;
        default: out[r] = NAN; break;
        }
    }
}

/*
 * Quantize an activation to Q8_0 exactly as ggml's x86 quantize_row_q8_0
 * (AVX/AVX2 build): scale d = amax/127 stored as fp16, values x * (127/amax)
 * rounded half to even (_mm256_round_ps; rintf in the default rounding
 * mode).  The portable reference (x * (1/d), roundf) differs at ties and in
 * the last bit of the multiplier, and those int8 flips move logits by up to
 * ~0.1 on small models.
 */
void vec_quant_q8_0(const float *x, block_q8_0 *q, size_t n) {
    for (size_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        q[b].d = f32_to_fp16(d);
        for (int j = 0; j < QK; j++) q[b].qs[j] = (int8_t)rintf(xb[j] * id);
    }
}

/* ------------------------------------------------------- element-wise ops */

/*
 * RMSNorm as ggml computes it: squares rounded to float, summed in double,
 * the mean rounded to float, scale = 1/sqrtf(mean + eps) in float, then
 * (x * scale) * g.  The quantized matmul that follows is sensitive to the
 * last bit of its input, so this order is kept exactly.
 */
void vec_rmsnorm(float *out, const float *x, const float *g, size_t n, float eps) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        float sq = x[i] * x[i];
        ss += sq;
    }
    float mean = (float)(ss / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (size_t i = 0; i < n; i++) out[i] = (x[i] * scale) * g[i];
}

/*
 * Rotate n_heads heads of hd values in place; cs holds hd/2 (cos, sin) pairs
 * for this position.  interleaved: pairs (2i, 2i+1) as in GGUF and llama2.c;
 * otherwise HF rotate-half pairs (i, i + hd/2).
 */
void vec_rope(float *v, const float *cs, int n_heads, int hd, bool interleaved) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/* out[i] = silu(gu[i]) * gu[n + i] */
void vec_swiglu(float *out, const float *gu, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gu[i];
        out[i] = g / (1.0f + expf(-g)) * gu[n + i];
    }
}

/*
 * RoPE angles for one position, in double then rounded: cs[2i] = cos,
 * cs[2i+1] = sin of pos * theta^(-2i/hd), with Llama-3 frequency scaling
 * when the config asks for it (long wavelengths slowed by the factor, a
 * smooth blend between the low and high frequency bounds).
 */
void rope_table_row(const model_config *c, int pos, float *cs) {
    int hd = c->head_dim;
    for (int i = 0; i < hd / 2; i++) {
        double freq = pow((double)c->rope_theta, -2.0 * i / hd);
        if (c->rope_scale_factor > 0 && c->rope_orig_ctx > 0) {
            double wavelen = 2 * M_PI / freq, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double lo_wl = c->rope_orig_ctx / lo, hi_wl = c->rope_orig_ctx / hi;
            if (wavelen > lo_wl) freq /= c->rope_scale_factor;
            else if (wavelen >= hi_wl && hi != lo) {
                double smooth = (c->rope_orig_ctx / wavelen - lo) / (hi - lo);
                freq = (1 - smooth) * freq / c->rope_scale_factor + smooth * freq;
            }
        }
        double a = pos * freq;
        cs[2 * i] = (float)cos(a);
        cs[2 * i + 1] = (float)sin(a);
    }
}
