/*
 * vec.c - the numeric kernels behind sqlm's SQL functions: dot products over
 * stored weight rows (F32, F16, Q8_0, Q4_0; the other types in quant.c),
 * batched products on panels, activation quantization, attention, RMSNorm,
 * RoPE, SwiGLU.  Pure functions over plain arrays: no SQL, no allocation.
 *
 * Quantized weights are multiplied with an activation quantized to Q8_0 the
 * way llama.cpp does it (per-block int8 with an fp16 scale, integer sums,
 * fp32 accumulation), so greedy outputs agree with llama.cpp at near-ties.
 */
#include <math.h>
#include <string.h>

#include "simd.h"

/* ------------------------------------------------------------ dot products */

static inline float dot_f32(const float *a, const float *b, size_t n) {
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

float sqlm_vec_dot_f32(const float *a, const float *b, size_t n) { return dot_f32(a, b, n); }

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
    for (; i < n; i++) s += sqlm_fp16_to_f32(a[i]) * b[i];
    return s;
}


#ifdef VEC_AVX2

/* The 32 weights of the Q4_0 block at b as int8 (nibble - 8): low nibbles first. */
static inline __m256i q4_0_unpack(const uint8_t *b) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i raw = _mm_loadu_si128((const __m128i *)(b + 2));
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

/* Lane r of the result = the sum of the 8 lanes of p[r]. */
static inline __m256i reduce8_i32(const __m256i p[8]) {
    __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

/*
 * Up to eight rows (k of them, rb bytes apart) of Q8_0 or Q4_0 times one
 * Q8_0 activation of nb blocks.  Each lane keeps one row's accumulator and
 * takes, block by block, acc = fma(isum, d_w * d_x, acc): the rounding of
 * dot_q8_0 and dot_q4_0, eight rows at a time.  Lanes past k repeat row
 * k - 1 and are not stored.
 *
 * Weights stream from memory once per token, eight short streams at a time,
 * too short for the hardware prefetcher to lock on: the loop also prefetches
 * pf_len bytes at pf (the next rows, or the next tile), spread over its
 * blocks.
 */
static inline void rows8_q(const char *w, size_t rb, size_t nb, const block_q8_0 *x, float *out, bool q4, int k,
                           const char *pf, size_t pf_len) {
    const size_t bb = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const char *row[8];
    for (int r = 0; r < 8; r++) row[r] = w + (size_t)(r < k ? r : k - 1) * rb;
    __m256 acc = _mm256_setzero_ps();
    size_t pf_at = 0;
    for (size_t b = 0; b < nb; b++) {
        for (size_t end = (b + 1) * pf_len / nb; pf_at < end; pf_at += 64) _mm_prefetch(pf + pf_at, _MM_HINT_T0);
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const size_t o = b * bb;
        __m256i p[8];
        for (int r = 0; r < 8; r++) {
            const char *blk = row[r] + o;
            __m256i qw = q4 ? q4_0_unpack((const uint8_t *)blk)
                            : _mm256_loadu_si256((const __m256i *)(blk + 2));
            p[r] = dot_i8x32_parts(qw, qx);
        }
        __m128i dh = _mm_set_epi16((short)load_u16(row[7] + o), (short)load_u16(row[6] + o),
                                   (short)load_u16(row[5] + o), (short)load_u16(row[4] + o),
                                   (short)load_u16(row[3] + o), (short)load_u16(row[2] + o),
                                   (short)load_u16(row[1] + o), (short)load_u16(row[0] + o));
        __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(dh), _mm256_set1_ps(h2f(x[b].d)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8_i32(p)), d, acc);
    }
    if (k == 8) {
        _mm256_storeu_ps(out, acc);
    } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, acc);
        memcpy(out, tmp, sizeof *out * (size_t)k);
    }
}

/* rows rows of Q8_0 / Q4_0 times x, prefetching next (next_len bytes) on the way. */
static void matvec_q(const char *w, size_t rb, size_t rows, size_t nb, const block_q8_0 *x, float *out, bool q4,
                     const char *next, size_t next_len) {
    for (size_t r = 0; r < rows; r += 8) {
        const char *p = w + r * rb;
        int k = (int)MIN(rows - r, 8);
        bool last = r + 8 >= rows;
        const char *pf = last ? next : p + 8 * rb;
        size_t pf_len = last ? next_len : MIN(rows - r - 8, 8) * rb;
        rows8_q(p, rb, nb, x, out + r, q4, k, pf, MIN(pf_len, 8 * rb));
    }
}
#endif

/*
 * Q8_0 x Q8_0 as llama.cpp's x86 CPU backend rounds it: each block's integer
 * dot product is exact, then the float accumulator takes one fused
 * multiply-add per block, acc = fma(isum, d_w * d_x, acc), in block order.
 * (An 8-lane accumulator with a final horizontal sum differs in the last bit
 * now and then, which flips a Q8_0 rounding downstream at near-ties.)
 */
static float dot_q8_0(const uint8_t *w, const block_q8_0 *x, size_t nb) {
    float s = 0;
    for (size_t b = 0; b < nb; b++, w += sizeof(block_q8_0)) {
        int sum;
#ifdef VEC_AVX2
        sum = dot_i8x32(_mm256_loadu_si256((const __m256i *)(w + 2)),
                        _mm256_loadu_si256((const __m256i *)x[b].qs));
#else
        sum = 0;
        for (int j = 0; j < QK; j++) sum += (int8_t)w[2 + j] * x[b].qs[j];
#endif
        s = fmaf((float)sum, h2f(load_u16(w)) * h2f(x[b].d), s);
    }
    return s;
}

/*
 * Q4_0 x Q8_0, rounded the same way: exact integer sum per block, then one
 * fma per block.  This is the order of llama.cpp's x86 Q4_0 path for
 * matrices with a multiple of 8 rows (repacked to q4_0_8x8: one lane per
 * row, acc = fma(isum, d_w * d_x, acc)); no Q4_0 golden checks it yet.
 */
static float dot_q4_0(const uint8_t *w, const block_q8_0 *x, size_t nb) {
    float s = 0;
    for (size_t b = 0; b < nb; b++, w += sizeof(block_q4_0)) {
        int sum;
#ifdef VEC_AVX2
        sum = dot_i8x32(q4_0_unpack(w), _mm256_loadu_si256((const __m256i *)x[b].qs));
#else
        sum = 0;
        for (int j = 0; j < QK / 2; j++) {
            sum += ((w[2 + j] & 15) - 8) * x[b].qs[j];
            sum += ((w[2 + j] >> 4) - 8) * x[b].qs[j + QK / 2];
        }
#endif
        s = fmaf((float)sum, h2f(load_u16(w)) * h2f(x[b].d), s);
    }
    return s;
}

/*
 * Q8_0/Q4_0 weights held as int8 values wq and float block scales ws (what
 * the DuckDB engine stores) times a Q8_0 activation: dot_q8_0's rounding,
 * acc = fma(isum, d_w * d_x, acc) in block order, bit for bit.
 */
float sqlm_vec_dot_q8s(const int8_t *wq, const float *ws, const block_q8_0 *x, size_t nb) {
    float s = 0;
    for (size_t b = 0; b < nb; b++) {
        int sum;
#ifdef VEC_AVX2
        sum = dot_i8x32(_mm256_loadu_si256((const __m256i *)(wq + b * QK)),
                        _mm256_loadu_si256((const __m256i *)x[b].qs));
#else
        sum = 0;
        for (int j = 0; j < QK; j++) sum += wq[b * QK + j] * x[b].qs[j];
#endif
        s = fmaf((float)sum, ws[b] * sqlm_fp16_to_f32(x[b].d), s);
    }
    return s;
}

/* The nb exact block products isum * d_w * d_x of sqlm_vec_dot_q8s, unsummed. */
void sqlm_vec_q8s_products(const int8_t *wq, const float *ws, const block_q8_0 *x, size_t nb, double *out) {
    for (size_t b = 0; b < nb; b++) {
        int sum = 0;
        for (int j = 0; j < QK; j++) sum += wq[b * QK + j] * x[b].qs[j];
        out[b] = (double)sum * (double)(ws[b] * sqlm_fp16_to_f32(x[b].d));
    }
}


/* The activation type a weight type is multiplied with: ggml's vec_dot_type. */
int sqlm_vec_act_type(int wdtype) {
    switch (wdtype) {
    case DT_Q8_0: case DT_Q4_0: case DT_Q5_0: case DT_IQ4_NL: return DT_Q8_0;
    case DT_Q4_1: case DT_Q5_1: return DT_Q8_1;
    case DT_Q2_K: case DT_Q3_K: case DT_Q4_K: case DT_Q5_K: case DT_Q6_K: return DT_Q8_K;
    case DT_BF16: return DT_BF16;
    default: return DT_F32;
    }
}

/*
 * out[r] = dot(row r of w, x) for rows rows of n values each; w has type
 * wdtype, x has type sqlm_vec_act_type(wdtype).  n is a multiple of 32 for
 * quantized types (checked by the caller).
 */
static void matvec_pf(int wdtype, const void *w, size_t rows, size_t n, const void *x, float *out,
                      const void *next, size_t next_len) {
    size_t rb = 0, r = 0;
    sqlm_dtype_row_bytes(wdtype, n, &rb);
    const char *p = w;
#ifdef VEC_AVX2
    if (wdtype == DT_Q8_0 || wdtype == DT_Q4_0) {
        matvec_q(p, rb, rows, n / QK, x, out, wdtype == DT_Q4_0, next, next_len);
        return;
    }
#else
    (void)next, (void)next_len;
#endif
    for (; r < rows; r++, p += rb) {
        switch (wdtype) {
        case DT_F32: out[r] = sqlm_vec_dot_f32((const float *)p, x, n); break;
        case DT_F16: out[r] = dot_f16((const uint16_t *)p, x, n); break;
        case DT_Q8_0: out[r] = dot_q8_0((const uint8_t *)p, x, n / QK); break;
        case DT_Q4_0: out[r] = dot_q4_0((const uint8_t *)p, x, n / QK); break;
        default: out[r] = sqlm_vec_dot_other(wdtype, p, x, n); break;
        }
    }
}

void sqlm_vec_matvec(int wdtype, const void *w, size_t rows, size_t n, const void *x, float *out) {
    matvec_pf(wdtype, w, rows, n, x, out, NULL, 0);
}

void sqlm_vec_matmul(int wdtype, const void *w, size_t rows, size_t n, const void *x, size_t ldx, size_t m,
                float *out, size_t ldo, const void *next, size_t next_len) {
    for (size_t p = 0; p < m; p++)
        matvec_pf(wdtype, w, rows, n, (const char *)x + p * ldx, out + p * ldo, p + 1 == m ? next : NULL,
                  p + 1 == m ? next_len : 0);
}

/* ------------------------------------------------ batched products (prefill) */

/*
 * A tile times many positions runs on "panels": VEC_PANEL rows of Q8_0 or
 * Q4_0 weights repacked so that one 32-bit lane follows one row through a
 * block.  Per block: the 16 row scales as float, the rows' sums times -128,
 * then the 32 quants as 8 groups of 4 bytes, each group holding that group of
 * all 16 rows.  One VNNI instruction (u8 x s8, 4 products per lane) then
 * advances 16 rows by 4 quants against one broadcast group of an activation;
 * the activation is stored as x + 128 (unsigned), which the -128 * sum(w)
 * start value cancels exactly.  A block's integer sums are exact, and each
 * lane then takes acc = fma(isum, d_w * d_x, acc) in block order: the same
 * arithmetic as dot_q8_0 / dot_q4_0, so a batch of positions gives the bits
 * that one position at a time gives.
 */
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define VEC_PANEL_AVX512 1
#elif defined(VEC_AVX2)
/*
 * Without VNNI the panel runs on maddubs (u8 x s8, pairs summed into int16),
 * which saturates for (x + 128) * w: there the quants' magnitudes |w| are the
 * unsigned operand and the activation takes w's signs, |w| * sign(x, w), each
 * pair at most 2 * 128 * 127 and exact, as in dot_i8x32_parts.  The panel
 * then also holds |w|, and the activation stays signed.
 */
#define VEC_PANEL_AVX2 1
#endif

typedef struct panel_block {
    float d[VEC_PANEL];            /* row scales */
    int32_t corr[VEC_PANEL];       /* -128 * sum of the row's 32 quants (VNNI) */
    uint8_t q[8][VEC_PANEL][4];    /* quants: group k of row r */
#ifdef VEC_PANEL_AVX2
    uint8_t aq[8][VEC_PANEL][4];   /* their magnitudes */
#endif
} panel_block;

bool sqlm_vec_panel_supported(int wdtype) {
#if defined(VEC_PANEL_AVX512) || defined(VEC_PANEL_AVX2)
    return wdtype == DT_Q8_0 || wdtype == DT_Q4_0;
#else
    (void)wdtype;
    return false;
#endif
}

size_t sqlm_vec_panel_bytes(size_t nb) { return nb * sizeof(panel_block); }

/* VNNI takes the activation as x + 128 (unsigned), maddubs as x itself. */
void sqlm_vec_panel_act(const void *x, size_t ldx, size_t m, size_t nb, uint8_t *xu, float *dx) {
#ifdef VEC_PANEL_AVX2
    const int bias = 0;
#else
    const int bias = 128;
#endif
    for (size_t p = 0; p < m; p++) {
        const block_q8_0 *xb = (const block_q8_0 *)((const char *)x + p * ldx);
        for (size_t b = 0; b < nb; b++) {
            dx[p * nb + b] = h2f(xb[b].d);
            for (int j = 0; j < QK; j++) xu[(p * nb + b) * QK + j] = (uint8_t)(xb[b].qs[j] + bias);
        }
    }
}

void sqlm_vec_panel_put(void *panel, size_t nb, int slot, int wdtype, const void *row) {
    panel_block *pb = panel;
    const uint8_t *w = row;
    if (wdtype == DT_Q4_0) {
        for (size_t b = 0; b < nb; b++, w += sizeof(block_q4_0)) {
            int8_t q[QK];
            for (int j = 0; j < QK / 2; j++) {
                q[j] = (int8_t)((w[2 + j] & 15) - 8);
                q[j + QK / 2] = (int8_t)((w[2 + j] >> 4) - 8);
            }
            pb[b].d[slot] = h2f(load_u16(w));
            for (int k = 0; k < 8; k++) memcpy(pb[b].q[k][slot], q + 4 * k, 4);
        }
        return;
    }
    for (size_t b = 0; b < nb; b++, w += sizeof(block_q8_0)) {
        pb[b].d[slot] = h2f(load_u16(w));
        for (int k = 0; k < 8; k++) memcpy(pb[b].q[k][slot], w + 2 + 4 * k, 4);
    }
}

/* Clear slots n.. and compute every row's -128 * sum of quants per block
 * (VNNI: ones times the quants, 16 rows at once). */
void sqlm_vec_panel_seal(void *panel, size_t nb, int n) {
    panel_block *pb = panel;
    for (size_t b = 0; b < nb; b++) {
        for (int r = n; r < VEC_PANEL; r++) {
            pb[b].d[r] = 0;
            for (int k = 0; k < 8; k++) memset(pb[b].q[k][r], 0, 4);
        }
#if defined(VEC_PANEL_AVX512)
        const __m512i ones = _mm512_set1_epi8(1);
        __m512i sum = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_load_si512(pb[b].q[k]));
        _mm512_store_si512(pb[b].corr, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-128)));
#elif defined(VEC_PANEL_AVX2)
        for (int k = 0; k < 8; k++)
            for (int h = 0; h < VEC_PANEL * 4; h += 32) {
                __m256i q = _mm256_load_si256((const __m256i *)((const uint8_t *)pb[b].q[k] + h));
                _mm256_store_si256((__m256i *)((uint8_t *)pb[b].aq[k] + h), _mm256_sign_epi8(q, q));
            }
#else
        for (int r = 0; r < VEC_PANEL; r++) {
            int sum = 0;
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 4; j++) sum += (int8_t)pb[b].q[k][r][j];
            pb[b].corr[r] = -128 * sum;
        }
#endif
    }
}

#ifdef VEC_PANEL_AVX512
/* NP positions (1..4) at a time: out[p * VEC_PANEL + r]. */
static inline void panel_mul_np(const panel_block *pb, size_t nb, const uint8_t *xu, const float *dx, size_t nbx,
                                float *out, const int np) {
    __m512 f[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
    for (size_t b = 0; b < nb; b++) {
        const panel_block *B = &pb[b];
        const __m512i c = _mm512_load_si512(B->corr);
        __m512i acc[4] = { c, c, c, c };
        for (int k = 0; k < 8; k++) {
            const __m512i wk = _mm512_load_si512(B->q[k]);
            for (int p = 0; p < np; p++) {
                int32_t g;
                memcpy(&g, xu + (p * nbx + b) * QK + 4 * k, 4);
                acc[p] = _mm512_dpbusd_epi32(acc[p], _mm512_set1_epi32(g), wk);
            }
        }
        const __m512 d = _mm512_load_ps(B->d);
        for (int p = 0; p < np; p++)
            f[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[p]), _mm512_mul_ps(d, _mm512_set1_ps(dx[p * nbx + b])), f[p]);
    }
    for (int p = 0; p < np; p++) _mm512_storeu_ps(out + p * VEC_PANEL, f[p]);
}
#endif

#ifdef VEC_PANEL_AVX2
/* Rows 8h..8h+7 of the panel times NP positions (1..4): each lane one row,
 * its block sum exact in int32, then fma(isum, d_w * d_x, acc) per block. */
static inline void panel_mul_half(const panel_block *pb, size_t nb, const int8_t *x, const float *dx, size_t nbx,
                                  float *out, const int h, const int np) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (size_t b = 0; b < nb; b++) {
        const panel_block *B = &pb[b];
        __m256i acc[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256() };
        for (int k = 0; k < 8; k++) {
            const __m256i wk = _mm256_load_si256((const __m256i *)B->q[k][8 * h]);
            const __m256i ak = _mm256_load_si256((const __m256i *)B->aq[k][8 * h]);
            for (int p = 0; p < np; p++) {
                int32_t g;
                memcpy(&g, x + (p * nbx + b) * QK + 4 * k, 4);
                const __m256i sx = _mm256_sign_epi8(_mm256_set1_epi32(g), wk);
                acc[p] = _mm256_add_epi32(acc[p], _mm256_madd_epi16(_mm256_maddubs_epi16(ak, sx), ones));
            }
        }
        const __m256 d = _mm256_load_ps(B->d + 8 * h);
        for (int p = 0; p < np; p++)
            f[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[p]), _mm256_mul_ps(d, _mm256_set1_ps(dx[p * nbx + b])), f[p]);
    }
    for (int p = 0; p < np; p++) _mm256_storeu_ps(out + p * VEC_PANEL + 8 * h, f[p]);
}

static inline void panel_mul_np(const panel_block *pb, size_t nb, const uint8_t *xu, const float *dx, size_t nbx,
                                float *out, const int np) {
    for (int h = 0; h < VEC_PANEL / 8; h++) panel_mul_half(pb, nb, (const int8_t *)xu, dx, nbx, out, h, np);
}
#endif

void sqlm_vec_panel_mul(const void *panel, size_t nb, const uint8_t *xu, const float *dx, size_t nbx, size_t m,
                   float *out) {
#if defined(VEC_PANEL_AVX512) || defined(VEC_PANEL_AVX2)
    const panel_block *pb = panel;
    size_t p = 0;
    for (; p + 4 <= m; p += 4) panel_mul_np(pb, nb, xu + p * nbx * QK, dx + p * nbx, nbx, out + p * VEC_PANEL, 4);
    switch (m - p) {
    case 3: panel_mul_np(pb, nb, xu + p * nbx * QK, dx + p * nbx, nbx, out + p * VEC_PANEL, 3); break;
    case 2: panel_mul_np(pb, nb, xu + p * nbx * QK, dx + p * nbx, nbx, out + p * VEC_PANEL, 2); break;
    case 1: panel_mul_np(pb, nb, xu + p * nbx * QK, dx + p * nbx, nbx, out + p * VEC_PANEL, 1); break;
    default: break;
    }
#else
    (void)panel, (void)nb, (void)xu, (void)dx, (void)nbx, (void)m, (void)out;
#endif
}

/*
 * Quantize an activation to Q8_0 exactly as ggml's x86 quantize_row_q8_0
 * (AVX/AVX2 build): scale d = amax/127 stored as fp16, values x * (127/amax)
 * rounded half to even (_mm256_round_ps; rintf in the default rounding
 * mode).  The portable reference (x * (1/d), roundf) differs at ties and in
 * the last bit of the multiplier, and those int8 flips move logits by up to
 * ~0.1 on small models.
 */
void sqlm_vec_quant_q8_0(const float *x, block_q8_0 *q, size_t n) {
    for (size_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0;
        for (int j = 0; j < QK; j++) {   /* fmaxf(amax, |x|), inline: a NaN is skipped */
            float ax = fabsf(xb[j]);
            if (ax > amax) amax = ax;
        }
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        q[b].d = sqlm_f32_to_fp16(d);
        /* a NaN (from a NaN or infinite input) or an infinity (a subnormal
         * amax makes id infinite) becomes -128, as ggml's SIMD conversion
         * and saturating packs make it; a cast would be undefined */
        for (int j = 0; j < QK; j++) {
            float v = rintf(xb[j] * id);
            q[b].qs[j] = v >= -128.0f && v <= 127.0f ? (int8_t)v : INT8_MIN;
        }
    }
}

/*
 * Q8_1 as ggml's x86 quantize_row_q8_1: Q8_0's rounding, and s = d * the
 * sum of the block's quants, stored as fp16.
 */
static void quant_q8_1(const float *x, block_q8_1 *q, size_t n) {
    for (size_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0;
        for (int j = 0; j < QK; j++) {
            float ax = fabsf(xb[j]);
            if (ax > amax) amax = ax;
        }
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        q[b].d = sqlm_f32_to_fp16(d);
        for (int j = 0; j < QK; j++) sum += q[b].qs[j] = (int8_t)rintf(xb[j] * id);
        q[b].s = sqlm_f32_to_fp16(d * (float)sum);
    }
}

/*
 * Q8_K as ggml's quantize_row_q8_K (its scalar reference on x86): the value
 * of largest magnitude m (the first such), scale -127/m, each value
 * iscale * x rounded to float, then to an integer half to even by ggml's
 * 1.5 * 2^23 trick (two roundings: ggml's build does not fuse them), capped
 * at 127; d = 1/iscale; bsums: the sums of 16 quants.
 */
static void quant_q8_K(const float *x, block_q8_K *q, size_t n) {
    for (size_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(xb[j]);
            if (ax > amax) amax = ax, max = xb[j];
        }
        if (amax == 0) {
            memset(&q[b], 0, sizeof q[b]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            float v = iscale * xb[j];
            v += 12582912.0f;
            int32_t i;
            memcpy(&i, &v, 4);
            i = (i & 0x007fffff) - 0x00400000;
            q[b].qs[j] = (int8_t)MIN(127, i);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[b].qs[16 * g + j];
            q[b].bsums[g] = (int16_t)s;
        }
        q[b].d = 1.0f / iscale;
    }
}

size_t sqlm_vec_act_bytes(int at, size_t n) {
    size_t b = 0;
    sqlm_dtype_row_bytes(at, n, &b);
    return b;
}

void sqlm_vec_quant(int at, const float *x, void *out, size_t n) {
    switch (at) {
    case DT_Q8_0: sqlm_vec_quant_q8_0(x, out, n); break;
    case DT_Q8_1: quant_q8_1(x, out, n); break;
    case DT_Q8_K: quant_q8_K(x, out, n); break;
    case DT_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)out)[i] = sqlm_f32_to_bf16(x[i]);
        break;
    default: memcpy(out, x, n * sizeof *x); break;
    }
}

/* -------------------------------------------------------------- attention */

/*
 * One head of one query over nk cached keys: s_i = q . k_i (sqlm_vec_dot_f32),
 * m = max s_i, e_i = expf(s_i - m), out = (sum e_i v_i) / (sum e_i), keys in
 * the order given; key i's head is at rows[i] + k_off, its value head at
 * rows[i] + v_off.  s is scratch for nk floats.  The order of every
 * operation is that of sqlm_qk, sqlm_vmax, sqlm_vexp and sqlm_attn.
 */
void sqlm_vec_attend_head(const float *q, const float *const *rows, size_t nk, size_t k_off, size_t v_off, size_t hd,
                     float *s, float *out) {
    for (size_t i = 0; i < nk; i++) {
        if (i + 4 < nk) __builtin_prefetch(rows[i + 4] + k_off);
        s[i] = dot_f32(q, rows[i] + k_off, hd);
    }
    /* fmaxf, inline: a NaN is skipped (the sign of a zero maximum does not
     * matter: exp(s - m) is the same) */
    float m = s[0], z = 0;
    for (size_t i = 1; i < nk; i++)
        if (m != m || s[i] > m) m = s[i];
    memset(out, 0, sizeof *out * hd);
    for (size_t i = 0; i < nk; i++) {
        const float e = expf(s[i] - m), *v = rows[i] + v_off;
        for (size_t d = 0; d < hd; d++) out[d] += e * v[d];
        z += e;
    }
    for (size_t d = 0; d < hd; d++) out[d] /= z;
}

/* ------------------------------------------------------- element-wise ops */

/*
 * RMSNorm as ggml computes it: squares rounded to float, summed in double,
 * the mean rounded to float, scale = 1/sqrtf(mean + eps) in float, then
 * (x * scale) * g.  The quantized matmul that follows is sensitive to the
 * last bit of its input, so this order is kept exactly.
 */
void sqlm_vec_rmsnorm(float *out, const float *x, const float *g, size_t n, float eps) {
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
 * The RoPE step of sqlm's graph, in place: the n_q query heads of hd values
 * are scaled by q_scale (what import left of 1/sqrt(hd)), then those and the
 * n_kv key heads after them are rotated; cs holds hd/2 (cos, sin) pairs for
 * this position.  interleaved: pairs (2i, 2i+1) as in GGUF and llama2.c;
 * otherwise HF rotate-half pairs (i, i + hd/2).
 */
void sqlm_vec_rope(float *v, const float *cs, int n_q, int n_kv, int hd, bool interleaved, float q_scale) {
    if (q_scale != 1.0f)
        for (size_t i = 0; i < (size_t)n_q * hd; i++) v[i] *= q_scale;
    const int half = hd / 2, n_heads = n_q + n_kv;
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
void sqlm_vec_swiglu(float *out, const float *gu, size_t n) {
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
void sqlm_rope_table_row(const model_config *c, int pos, float *cs) {
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
