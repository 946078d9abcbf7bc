/*
 * simd.h - what the kernel files (vec.c, quant.c) share: the AVX2 switch,
 * horizontal sums, the exact int8 block product, and reading a block's
 * fp16 scale at any alignment.  Internal to src/kern/.
 */
#ifndef SQLM_KERN_SIMD_H
#define SQLM_KERN_SIMD_H

#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VEC_AVX2 1
#endif

#include "kern.h"

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

/* Weights are read in place from the database file, at any alignment: the
 * kernels address blocks as bytes and load scales with memcpy. */
static inline uint16_t load_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* fp16 scale to float: exact either way, F16C when the CPU has it. */
static inline float h2f(uint16_t h) {
#if defined(VEC_AVX2) && defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return sqlm_fp16_to_f32(h);
#endif
}

#ifdef VEC_AVX2
/* 8 partial sums of 32 int8 products (exact: no saturation for |w| <= 128,
 * |x| <= 127); |w| * sign(x, w) gives the unsigned-by-signed form that
 * maddubs and VNNI take. */
static inline __m256i dot_i8x32_parts(__m256i qw, __m256i qx) {
    __m256i aw = _mm256_sign_epi8(qw, qw), sx = _mm256_sign_epi8(qx, qw);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}

/* Exact sum of 32 int8 products. */
static inline int dot_i8x32(__m256i qw, __m256i qx) { return hsum_i32_8(dot_i8x32_parts(qw, qx)); }
#endif

#endif /* SQLM_KERN_SIMD_H */
