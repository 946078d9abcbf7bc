/*
 * quant.c - dot products of the weight types beyond F32, F16, Q8_0 and Q4_0
 * (vec.c): Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K and BF16, each row times
 * the activation type sqlm_vec_act_type() names, in the order of ggml's x86
 * CPU backend so that the results are llama.cpp's bit for bit.  A portable
 * version of each (sqlm_vec_dot_portable) and AVX2 ones (blocks unpacked in
 * registers) that give the same bits.
 */
#include <math.h>
#include <string.h>

#include "simd.h"

/*
 * ggml's AVX2 dot products for the other types share one shape: per block
 * (32 values) or super-block (256), the integer products land in 8 int32
 * lanes, lane k taking values 4k..4k+3 of every 32 (what maddubs + madd
 * do), each times its sub-block's scale; the float accumulator then takes
 * acc[k] = fma(scale, (float)lane[k], acc[k]) per block, and the 8 lanes
 * are summed at the end as hsum_float_8 does.  Integer sums are exact in
 * any order, so only the float steps below follow ggml one by one; each
 * function names the ggml function whose order it keeps.
 */
static inline float hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* lanes[k] += sum over the 32 values of q * y in lane k (values 4k..4k+3),
 * times sa for lanes 0-3 and sb for lanes 4-7. */
static inline void lanes32(const int8_t *q, const int8_t *y, int sa, int sb, int32_t lanes[8]) {
#ifdef VEC_AVX2
    __m256i p = dot_i8x32_parts(_mm256_loadu_si256((const __m256i *)q), _mm256_loadu_si256((const __m256i *)y));
    p = _mm256_mullo_epi32(p, _mm256_setr_epi32(sa, sa, sa, sa, sb, sb, sb, sb));
    __m256i l = _mm256_loadu_si256((const __m256i *)lanes);
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi32(l, p));
#else
    for (int k = 0; k < 8; k++) {
        int s = 0;
        for (int j = 4 * k; j < 4 * k + 4; j++) s += q[j] * y[j];
        lanes[k] += s * (k < 4 ? sa : sb);
    }
#endif
}

/* Q4_1, Q5_0, Q5_1, IQ4_NL (and Q8_0 / Q4_0) rows times a Q8_0 or Q8_1
 * activation: ggml_vec_dot_q4_1_q8_1, _q5_0_q8_0, _q5_1_q8_1, _iq4_nl_q8_0. */
static float dot_legacy(int dt, const uint8_t *w, const void *xv, size_t nb) {
    const size_t bb = sqlm_dtype_block_bytes(dt), xb = dt == DT_Q4_1 || dt == DT_Q5_1 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    float acc[2][8] = { { 0 } }, summs = 0;
    int8_t q[QK_K];
    int16_t sc[16], mn[16];
    size_t b = 0;
    for (; b < nb; b++, w += bb) {
        const uint8_t *x = (const uint8_t *)xv + b * xb;
        const int8_t *xq = (const int8_t *)(x + (xb == sizeof(block_q8_1) ? 4 : 2));
        float d, m;
        if (dt == DT_IQ4_NL && b + 1 == nb && nb % 2) break;   /* an odd last block: ggml's scalar tail */
        sqlm_dtype_unpack(dt, w, q, sc, mn, &d, &m);
        int32_t lanes[8] = { 0 };
        lanes32(q, xq, 1, 1, lanes);
        const float dx = h2f(load_u16(x));
        float *a = acc[dt == DT_IQ4_NL ? b % 2 : 0];
        if (dt == DT_Q4_1 || dt == DT_Q5_1) summs = fmaf(m, h2f(load_u16(x + 2)), summs);
        const float dd = dt == DT_IQ4_NL ? dx * d : d * dx;
        for (int k = 0; k < 8; k++) a[k] = fmaf(dd, (float)lanes[k], a[k]);
    }
    float s;
    if (dt == DT_IQ4_NL) {
        float t[8];
        for (int k = 0; k < 8; k++) t[k] = acc[0][k] + acc[1][k];
        s = hsum8(t);
    } else {
        s = hsum8(acc[0]);
    }
    if (dt == DT_Q4_1 || dt == DT_Q5_1) s += summs;
    for (; b < nb; b++, w += bb) {   /* IQ4_NL's odd block: one integer sum, one fma */
        const block_q8_0 *x = (const block_q8_0 *)xv + b;
        float d, m;
        sqlm_dtype_unpack(dt, w, q, sc, mn, &d, &m);
        int sum = 0;
        for (int j = 0; j < QK; j++) sum += q[j] * x->qs[j];
        float dd = h2f(x->d) * d, p = dd * (float)sum;   /* not fused in ggml's build */
        s += p;
    }
    return s;
}

/* K-quant rows times a Q8_K activation: ggml_vec_dot_q{2,3,4,5,6}_K_q8_K. */
static float dot_k(int dt, const uint8_t *w, const block_q8_K *x, size_t nb) {
    const size_t bb = sqlm_dtype_block_bytes(dt);
    float acc[8] = { 0 }, acc_m[4] = { 0 }, summs = 0;
    int8_t q[QK_K];
    int16_t sc[16], mn[16];
    for (size_t i = 0; i < nb; i++, w += bb, x++) {
        float dw, mw;
        sqlm_dtype_unpack(dt, w, q, sc, mn, &dw, &mw);
        const float d = x->d * dw, dmin = -x->d * mw;
        int32_t lanes[8] = { 0 };
        for (int c = 0; c < QK_K / 32; c++) lanes32(q + 32 * c, x->qs + 32 * c, sc[2 * c], sc[2 * c + 1], lanes);
        if (dt == DT_Q2_K) {   /* the mins first, into the same accumulator */
            for (int k = 0; k < 8; k++)
                acc[k] = fmaf(dmin, (float)(mn[2 * k] * x->bsums[2 * k] + mn[2 * k + 1] * x->bsums[2 * k + 1]), acc[k]);
        } else if (dt == DT_Q4_K || dt == DT_Q5_K) {
            /* mins of 32 values (mn[4k] = mn[4k+1]) times the activation's sums over them */
            int32_t prod[4], total = 0;
            for (int k = 0; k < 4; k++) {
                int s0 = x->bsums[4 * k] + x->bsums[4 * k + 1], s1 = x->bsums[4 * k + 2] + x->bsums[4 * k + 3];
                prod[k] = mn[4 * k] * s0 + mn[4 * k + 2] * s1;
                total += prod[k];
            }
            if (dt == DT_Q4_K)
                for (int k = 0; k < 4; k++) acc_m[k] = fmaf(dmin, (float)prod[k], acc_m[k]);
            else
                summs = fmaf(dmin, (float)total, summs);
        }
        for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lanes[k], acc[k]);
    }
    float s = hsum8(acc);
    if (dt == DT_Q4_K) s += (acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]);
    if (dt == DT_Q5_K) s += summs;
    return s;
}

#ifdef VEC_AVX2
/* 8 lanes of sc * (the 4 products of bytes 4k..4k+3) of 32 unsigned weights
 * (q <= 63) and 32 activations: maddubs then madd, as ggml. */
static inline __m256i lanes_u8(__m256i q, __m256i y, __m256i sc16) {
    return _mm256_madd_epi16(sc16, _mm256_maddubs_epi16(q, y));
}

/* Q4_K / Q5_K x Q8_K with the lanes in registers: dot_k's arithmetic, bit for bit. */
static float dot_q45_K(const uint8_t *w, const block_q8_K *x, size_t nb, bool five) {
    const size_t bb = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float acc_m[4] = { 0 }, summs = 0;
    for (size_t i = 0; i < nb; i++, w += bb, x++) {
        const uint8_t *sb = w + 4, *qh = w + 16, *qs = w + (five ? 48 : 16);
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            if (j < 4) sc[j] = sb[j] & 63, mn[j] = sb[j + 4] & 63;
            else sc[j] = (sb[j + 4] & 0xf) | ((sb[j - 4] >> 6) << 4), mn[j] = (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4);
        }
        const float d = x->d * h2f(load_u16(w)), dmin = -x->d * h2f(load_u16(w + 2));
        int32_t prod[4], total = 0;
        for (int k = 0; k < 4; k++) {
            int s0 = x->bsums[4 * k] + x->bsums[4 * k + 1], s1 = x->bsums[4 * k + 2] + x->bsums[4 * k + 3];
            prod[k] = mn[2 * k] * s0 + mn[2 * k + 1] * s1;
            total += prod[k];
        }
        if (five) summs = fmaf(dmin, (float)total, summs);
        else for (int k = 0; k < 4; k++) acc_m[k] = fmaf(dmin, (float)prod[k], acc_m[k]);
        const __m256i hb = five ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            if (five) {
                const __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one);
                const __m256i b1 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(b0, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(b1, 4));
            }
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c + 32));
            sumi = _mm256_add_epi32(sumi, lanes_u8(lo, y0, _mm256_set1_epi16((short)sc[2 * c])));
            sumi = _mm256_add_epi32(sumi, lanes_u8(hi, y1, _mm256_set1_epi16((short)sc[2 * c + 1])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    float s = hsum256(acc);
    return five ? s + summs : s + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

/* Q6_K x Q8_K with the lanes in registers: dot_k's arithmetic, bit for bit. */
static float dot_q6_K(const uint8_t *w, const block_q8_K *x, size_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++, w += sizeof(block_q6_K), x++) {
        const block_q6_K *b = (const block_q6_K *)w;
        const int8_t *sc = (const int8_t *)(w + 192);
        __m256i sumi = _mm256_setzero_si256();
        for (int n = 0; n < 2; n++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w + 64 * n));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w + 64 * n + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * n));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int t = 0; t < 4; t++) {
                const __m256i y = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * n + 32 * t));
                const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[t], y), _mm256_maddubs_epi16(m32, y));
                const int s0 = sc[8 * n + 2 * t], s1 = sc[8 * n + 2 * t + 1];
                const __m256i s16 = _mm256_setr_m128i(_mm_set1_epi16((short)s0), _mm_set1_epi16((short)s1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(s16, p));
            }
        }
        const float d = x->d * h2f(b->d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum256(acc);
}
#endif

#ifdef VEC_AVX2
/* 32 bytes: byte j = 0xff where bit j of the 32 bits at p is set. */
static inline __m256i bits_to_bytes(const uint8_t *p) {
    uint32_t b;
    memcpy(&b, p, 4);
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)b), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* The 32 integer weights of a Q4_1 / Q5_0 / Q5_1 / IQ4_NL block, low nibbles first. */
static inline __m256i legacy_q(int dt, const uint8_t *b) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const uint8_t *qs = b + (dt == DT_Q4_1 ? 4 : dt == DT_Q5_0 ? 6 : dt == DT_Q5_1 ? 8 : 2);
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
    if (dt == DT_IQ4_NL) {
        const __m128i tab = _mm_loadu_si128((const __m128i *)sqlm_iq4nl_values);
        return _mm256_set_m128i(_mm_shuffle_epi8(tab, hi), _mm_shuffle_epi8(tab, lo));
    }
    __m256i q = _mm256_set_m128i(hi, lo);
    if (dt == DT_Q5_0) return _mm256_or_si256(q, _mm256_andnot_si256(bits_to_bytes(b + 2), _mm256_set1_epi8((char)0xf0)));
    if (dt == DT_Q5_1) return _mm256_or_si256(q, _mm256_and_si256(bits_to_bytes(b + 4), _mm256_set1_epi8(0x10)));
    return q;
}

/* dot_legacy with the lanes in registers: its arithmetic, bit for bit. */
static float dot_legacy_avx2(int dt, const uint8_t *w, const void *xv, size_t nb) {
    const bool q81 = dt == DT_Q4_1 || dt == DT_Q5_1;
    const size_t bb = sqlm_dtype_block_bytes(dt), xb = q81 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    __m256 acc[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
    float summs = 0;
    size_t b = 0;
    const size_t paired = dt == DT_IQ4_NL ? nb / 2 * 2 : nb;
    for (; b < paired; b++, w += bb) {
        const uint8_t *x = (const uint8_t *)xv + b * xb;
        const __m256i y = _mm256_loadu_si256((const __m256i *)(x + (q81 ? 4 : 2)));
        const __m256 lanes = _mm256_cvtepi32_ps(dot_i8x32_parts(legacy_q(dt, w), y));
        const float dw = h2f(load_u16(w)), dx = h2f(load_u16(x));
        if (q81) summs = fmaf(h2f(load_u16(w + 2)), h2f(load_u16(x + 2)), summs);
        const int a = dt == DT_IQ4_NL ? (int)(b % 2) : 0;
        acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(dt == DT_IQ4_NL ? dx * dw : dw * dx), lanes, acc[a]);
    }
    float s = hsum256(dt == DT_IQ4_NL ? _mm256_add_ps(acc[0], acc[1]) : acc[0]);
    if (q81) s += summs;
    for (; b < nb; b++, w += bb) {   /* IQ4_NL's odd last block: ggml's scalar tail, not fused */
        const block_q8_0 *x = (const block_q8_0 *)xv + b;
        const int sum = hsum_i32_8(dot_i8x32_parts(legacy_q(dt, w), _mm256_loadu_si256((const __m256i *)x->qs)));
        const float dd = h2f(x->d) * h2f(load_u16(w)), p = dd * (float)sum;
        s += p;
    }
    return s;
}
#endif

#ifdef VEC_AVX2
/* Q2_K / Q3_K x Q8_K with the blocks unpacked in registers: dot_k's
 * arithmetic, bit for bit. */
static float dot_q23_K(const uint8_t *w, const block_q8_K *x, size_t nb, bool three) {
    const size_t bb = three ? sizeof(block_q3_K) : sizeof(block_q2_K);
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++, w += bb, x++) {
        int sc[16];
        float dw, dmin = 0;
        const uint8_t *qs = three ? w + 32 : w + 16, *hm = w;
        if (three) {
            const uint8_t *s = w + 96;
            for (int k = 0; k < 16; k++)
                sc[k] = ((k < 8 ? s[k % 8] & 15 : s[k % 8] >> 4) | ((s[8 + k % 4] >> (2 * (k / 4))) & 3) << 4) - 32;
            dw = h2f(load_u16(w + 108));
        } else {
            int32_t mlanes[8];
            for (int k = 0; k < 16; k++) sc[k] = w[k] & 15;
            for (int k = 0; k < 8; k++)
                mlanes[k] = (w[2 * k] >> 4) * x->bsums[2 * k] + (w[2 * k + 1] >> 4) * x->bsums[2 * k + 1];
            dw = h2f(load_u16(w + 80));
            dmin = -x->d * h2f(load_u16(w + 82));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)mlanes)), acc);
        }
        const float d = x->d * dw;
        const __m256i hb = three ? _mm256_loadu_si256((const __m256i *)hm) : _mm256_setzero_si256();
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 8; c++) {
            const int n = c / 4, j = c % 4;
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
            __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
            if (three) {
                const __m256i h = _mm256_and_si256(_mm256_srli_epi16(hb, 4 * n + j), one);
                q = _mm256_sub_epi8(_mm256_add_epi8(q, _mm256_slli_epi16(h, 2)), four);
            }
            __m256i p = dot_i8x32_parts(q, _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c)));
            p = _mm256_mullo_epi32(p, _mm256_setr_epi32(sc[2 * c], sc[2 * c], sc[2 * c], sc[2 * c], sc[2 * c + 1],
                                                        sc[2 * c + 1], sc[2 * c + 1], sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, p);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum256(acc);
}
#endif

/* BF16 rows times a BF16 activation: ggml_vec_dot_bf16 (AVX2): four 8-lane
 * accumulators over 32 values at a time (products of two bf16 are exact),
 * the rest in double. */
static float dot_bf16(const uint8_t *w, const uint16_t *x, size_t n) {
    float c[4][8] = { { 0 } };
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int a = 0; a < 4; a++)
            for (int k = 0; k < 8; k++)
                c[a][k] += sqlm_bf16_to_f32(load_u16(w + 2 * (i + 8 * a + k))) * sqlm_bf16_to_f32(x[i + 8 * a + k]);
    float t[8];
    for (int k = 0; k < 8; k++) t[k] = (c[0][k] + c[2][k]) + (c[1][k] + c[3][k]);
    double sum = hsum8(t);
    for (; i < n; i++) sum += (double)(sqlm_bf16_to_f32(load_u16(w + 2 * i)) * sqlm_bf16_to_f32(x[i]));
    return (float)sum;
}

float sqlm_vec_dot_portable(int wdtype, const void *w, const void *x, size_t n) {
    if (sqlm_dtype_block(wdtype) == QK_K) return dot_k(wdtype, w, x, n / QK_K);
    if (wdtype == DT_BF16) return dot_bf16(w, x, n);
    return dot_legacy(wdtype, w, x, n / QK);
}

/* One row of the types above times x: the AVX2 kernel where there is one. */
float sqlm_vec_dot_other(int wdtype, const void *w, const void *x, size_t n) {
    switch (wdtype) {
    case DT_Q4_1: case DT_Q5_0: case DT_Q5_1: case DT_IQ4_NL:
#ifdef VEC_AVX2
        return dot_legacy_avx2(wdtype, w, x, n / QK);
#else
        return dot_legacy(wdtype, w, x, n / QK);
#endif
#ifdef VEC_AVX2
    case DT_Q4_K: case DT_Q5_K: return dot_q45_K(w, x, n / QK_K, wdtype == DT_Q5_K);
    case DT_Q6_K: return dot_q6_K(w, x, n / QK_K);
    case DT_Q2_K: case DT_Q3_K: return dot_q23_K(w, x, n / QK_K, wdtype == DT_Q3_K);
#else
    case DT_Q2_K: case DT_Q3_K: case DT_Q4_K: case DT_Q5_K: case DT_Q6_K: return dot_k(wdtype, w, x, n / QK_K);
#endif
    case DT_BF16: return dot_bf16(w, x, n);
    default: return NAN;
    }
}
