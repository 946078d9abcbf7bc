/*
 * dtype.c - tensor element types: names, block sizes, fp16/bf16 conversion,
 * dequantization of every weight type in GGML's block layouts, and Q8_0 /
 * Q4_0 quantization.
 *
 * Dequantization gives the floats of ggml's dequantize_row_* bit for bit
 * (ggml is built as GNU C, where a product added to a value is one fused
 * multiply-add: the fmaf() calls below).  Quantization follows ggml's scalar
 * reference (quantize_row_q8_0_ref and quantize_row_q4_0_ref) so that files
 * we write match what llama.cpp writes; Q4_K and Q6_K are written by plain
 * min/max rounding (synth's random weights); other types are read only.
 * Assumes a little-endian host, as GGUF and safetensors data are LE.
 */
#include <math.h>
#include <string.h>

#include "util.h"

static const struct dtype_info {
    int dt;
    const char *name;
    size_t block;        /* values per block */
    size_t block_bytes;  /* bytes per block */
    bool weight;         /* a weight type (not only an activation's) */
} dtype_table[] = {
    {DT_F32, "F32", 1, 4, true},
    {DT_F16, "F16", 1, 2, true},
    {DT_BF16, "BF16", 1, 2, true},
    {DT_Q8_0, "Q8_0", QK, sizeof(block_q8_0), true},
    {DT_Q4_0, "Q4_0", QK, sizeof(block_q4_0), true},
    {DT_Q4_1, "Q4_1", QK, sizeof(block_q4_1), true},
    {DT_Q5_0, "Q5_0", QK, sizeof(block_q5_0), true},
    {DT_Q5_1, "Q5_1", QK, sizeof(block_q5_1), true},
    {DT_IQ4_NL, "IQ4_NL", QK, sizeof(block_iq4_nl), true},
    {DT_Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), true},
    {DT_Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), true},
    {DT_Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), true},
    {DT_Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), true},
    {DT_Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), true},
    {DT_Q8_1, "Q8_1", QK, sizeof(block_q8_1), false},
    {DT_Q8_K, "Q8_K", QK_K, sizeof(block_q8_K), false},
};

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes as in ggml");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes as in ggml");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 must be 20 bytes as in ggml");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes as in ggml");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 must be 24 bytes as in ggml");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 must be 36 bytes as in ggml");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K must be 84 bytes as in ggml");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K must be 110 bytes as in ggml");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes as in ggml");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes as in ggml");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes as in ggml");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K must be 292 bytes as in ggml");
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl must be 18 bytes as in ggml");

static const struct dtype_info *dtype_info(int dt) {
    for (size_t i = 0; i < ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].dt == dt) return &dtype_table[i];
    return NULL;
}

const char *sqlm_dtype_supported(void) {
    return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
}

const char *sqlm_dtype_name(int dt) {
    const struct dtype_info *t = dtype_info(dt);
    return t ? t->name : NULL;
}

int sqlm_dtype_from_name(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(dtype_table); i++)
        if (strcmp(dtype_table[i].name, name) == 0) return dtype_table[i].dt;
    return -1;
}

bool sqlm_dtype_valid(int dt) {
    const struct dtype_info *t = dtype_info(dt);
    return t && t->weight;
}

size_t sqlm_dtype_block(int dt) {
    const struct dtype_info *t = dtype_info(dt);
    return t ? t->block : 0;
}

size_t sqlm_dtype_block_bytes(int dt) {
    const struct dtype_info *t = dtype_info(dt);
    return t ? t->block_bytes : 0;
}

bool sqlm_dtype_row_bytes(int dt, size_t n, size_t *out) {
    const struct dtype_info *t = dtype_info(dt);
    *out = 0;
    if (!t || n % t->block != 0) return false;
    return size_mul(n / t->block, t->block_bytes, out);
}

/* ------------------------------------------------------------ fp16/bf16 */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/*
 * IEEE half: sign(1) exponent(5, bias 15) mantissa(10).  Exponent 0 holds
 * zero and subnormals (m * 2^-24), exponent 31 holds inf (m == 0) and NaN.
 */
float sqlm_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        /* Subnormal: shift the mantissa up until the implicit bit appears. */
        uint32_t fe = 113;
        while (!(m & 0x400)) {
            m <<= 1;
            fe--;
        }
        return bits_f32(sign | (fe << 23) | ((m & 0x3ff) << 13));
    }
    if (e == 31) return bits_f32(sign | 0x7f800000 | (m << 13) | (m ? 0x400000 : 0));
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* Round-to-nearest-even; overflow gives inf, NaN stays a (quiet) NaN. */
uint16_t sqlm_f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff);
    if (ax >= 0x477ff000) return sign | 0x7c00; /* >= 65520 rounds to inf */
    uint32_t e = ax >> 23, m = ax & 0x7fffff;
    if (e < 113) {
        /* Half subnormal (or zero): value = (m|implicit) * 2^(e-150), unit 2^-24. */
        if (e < 102) return sign; /* below 2^-25: rounds to zero */
        uint32_t mant = m | 0x800000, shift = 126 - e; /* 14..24 */
        uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q; /* q == 0x400 is the smallest normal: correct */
    }
    uint32_t h = ((e - 112) << 10) | (m >> 13), rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* carry may bump the exponent */
    return sign | (uint16_t)h;
}

float sqlm_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t sqlm_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---------------------------------------------------------- conversions */

static uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* IQ4_NL's 16 values (ggml's kvalues_iq4nl). */
const int8_t sqlm_iq4nl_values[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/* Scale j and min j (6 bits each) of a Q4_K / Q5_K block's 12 scale bytes. */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/*
 * One block of a quantized weight type as integers: value v is
 * d * sc[v / 16] * q[v] - dmin * mn[v / 16] for the K-quants (types without
 * mins leave mn 0, Q3_K and Q6_K's q are signed), d * q[v] + dmin for the
 * legacy types (q[32]; dmin is Q4_1 / Q5_1's m, else 0; IQ4_NL's q are its
 * table's values).  Scales of 32 values (Q4_K, Q5_K) come twice.
 */
void sqlm_dtype_unpack(int dt, const void *blk, int8_t *q, int16_t *sc, int16_t *mn, float *d, float *dmin) {
    const uint8_t *b = blk;
    *dmin = 0;
    switch (dt) {
    case DT_Q8_0:
        *d = sqlm_fp16_to_f32(load_u16(b));
        memcpy(q, b + 2, QK);
        break;
    case DT_Q4_0:
    case DT_IQ4_NL:
        *d = sqlm_fp16_to_f32(load_u16(b));
        for (int j = 0; j < QK / 2; j++) {
            int lo = b[2 + j] & 15, hi = b[2 + j] >> 4;
            q[j] = (int8_t)(dt == DT_Q4_0 ? lo - 8 : sqlm_iq4nl_values[lo]);
            q[j + QK / 2] = (int8_t)(dt == DT_Q4_0 ? hi - 8 : sqlm_iq4nl_values[hi]);
        }
        break;
    case DT_Q4_1:
        *d = sqlm_fp16_to_f32(load_u16(b));
        *dmin = sqlm_fp16_to_f32(load_u16(b + 2));
        for (int j = 0; j < QK / 2; j++) q[j] = (int8_t)(b[4 + j] & 15), q[j + QK / 2] = (int8_t)(b[4 + j] >> 4);
        break;
    case DT_Q5_0:
    case DT_Q5_1: {
        const bool one = dt == DT_Q5_1;
        const uint8_t *qh = b + (one ? 4 : 2), *qs = qh + 4;
        uint32_t h;
        memcpy(&h, qh, 4);
        *d = sqlm_fp16_to_f32(load_u16(b));
        if (one) *dmin = sqlm_fp16_to_f32(load_u16(b + 2));
        for (int j = 0; j < QK / 2; j++) {
            int lo = (qs[j] & 15) | (int)((h >> j) & 1) << 4, hi = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            q[j] = (int8_t)(one ? lo : lo - 16);
            q[j + QK / 2] = (int8_t)(one ? hi : hi - 16);
        }
        break;
    }
    case DT_Q2_K: {
        const block_q2_K *x = blk;
        *d = sqlm_fp16_to_f32(x->d);
        *dmin = sqlm_fp16_to_f32(x->dmin);
        for (int i = 0; i < 16; i++) sc[i] = x->scales[i] & 15, mn[i] = x->scales[i] >> 4;
        for (int v = 0; v < QK_K; v++) {
            int n = v / 128, j = (v % 128) / 32, l = v % 32;
            q[v] = (int8_t)((x->qs[32 * n + l] >> (2 * j)) & 3);
        }
        break;
    }
    case DT_Q3_K: {
        const block_q3_K *x = blk;
        *d = sqlm_fp16_to_f32(x->d);
        const uint8_t *s = x->scales;
        for (int i = 0; i < 16; i++) {
            int lo = i < 8 ? s[i % 8] & 15 : s[i % 8] >> 4;
            int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
            sc[i] = (int16_t)((lo | hi << 4) - 32);
            mn[i] = 0;
        }
        for (int v = 0; v < QK_K; v++) {
            int n = v / 128, j = (v % 128) / 32, l = v % 32;
            int lo = (x->qs[32 * n + l] >> (2 * j)) & 3;
            q[v] = (int8_t)(lo - ((x->hmask[l] >> (4 * n + j)) & 1 ? 0 : 4));
        }
        break;
    }
    case DT_Q4_K:
    case DT_Q5_K: {
        const bool five = dt == DT_Q5_K;
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
        *d = sqlm_fp16_to_f32(load_u16(b));
        *dmin = sqlm_fp16_to_f32(load_u16(b + 2));
        for (int i = 0; i < 8; i++) {
            int a, m;
            scale_min_k4(i, scales, &a, &m);
            sc[2 * i] = sc[2 * i + 1] = (int16_t)a;
            mn[2 * i] = mn[2 * i + 1] = (int16_t)m;
        }
        for (int v = 0; v < QK_K; v++) {
            int c = v / 64, hi = (v % 64) / 32, l = v % 32;
            int x = (qs[32 * c + l] >> (4 * hi)) & 15;
            if (five) x |= ((qh[l] >> (2 * c + hi)) & 1) << 4;
            q[v] = (int8_t)x;
        }
        break;
    }
    case DT_Q6_K: {
        const block_q6_K *x = blk;
        *d = sqlm_fp16_to_f32(x->d);
        for (int i = 0; i < 16; i++) sc[i] = x->scales[i], mn[i] = 0;
        for (int v = 0; v < QK_K; v++) {
            int n = v / 128, t = (v % 128) / 32, l = v % 32;
            int lo = (x->ql[64 * n + l + 32 * (t & 1)] >> (4 * (t >> 1))) & 15;
            int hi = (x->qh[32 * n + l] >> (2 * t)) & 3;
            q[v] = (int8_t)((lo | hi << 4) - 32);
        }
        break;
    }
    default:
        break;
    }
}

/* Sources may be unaligned (safetensors data need not be): read via memcpy. */
void sqlm_dtype_to_f32(int dt, const void *src, float *dst, size_t n) {
    const uint8_t *s = src;
    switch (dt) {
    case DT_F32:
        memcpy(dst, s, n * 4);
        break;
    case DT_F16:
        for (size_t i = 0; i < n; i++) dst[i] = sqlm_fp16_to_f32(load_u16(s + 2 * i));
        break;
    case DT_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = sqlm_bf16_to_f32(load_u16(s + 2 * i));
        break;
    case DT_Q8_0:
        for (size_t b = 0; b < n / QK; b++) {
            const uint8_t *blk = s + b * sizeof(block_q8_0);
            float d = sqlm_fp16_to_f32(load_u16(blk));
            const int8_t *qs = (const int8_t *)(blk + 2);
            for (int j = 0; j < QK; j++) dst[b * QK + j] = qs[j] * d;
        }
        break;
    case DT_Q4_0:
        for (size_t b = 0; b < n / QK; b++) {
            const uint8_t *blk = s + b * sizeof(block_q4_0);
            float d = sqlm_fp16_to_f32(load_u16(blk));
            const uint8_t *qs = blk + 2;
            for (int j = 0; j < QK / 2; j++) {
                dst[b * QK + j] = ((int)(qs[j] & 0x0f) - 8) * d;
                dst[b * QK + j + QK / 2] = ((int)(qs[j] >> 4) - 8) * d;
            }
        }
        break;
    case DT_Q4_1:
    case DT_Q5_0:
    case DT_Q5_1:
    case DT_IQ4_NL:
    case DT_Q2_K:
    case DT_Q3_K:
    case DT_Q4_K:
    case DT_Q5_K:
    case DT_Q6_K: {
        const size_t qk = sqlm_dtype_block(dt), bb = sqlm_dtype_block_bytes(dt);
        int8_t q[QK_K];
        int16_t sc[16], mn[16];
        float d, dm;
        for (size_t b = 0; b < n / qk; b++) {
            float *y = dst + b * qk;
            sqlm_dtype_unpack(dt, s + b * bb, q, sc, mn, &d, &dm);
            if (qk == QK) {
                for (int j = 0; j < QK; j++)
                    y[j] = dt == DT_Q4_1 || dt == DT_Q5_1 ? fmaf((float)q[j], d, dm) : (float)q[j] * d;
            } else if (dt == DT_Q3_K || dt == DT_Q6_K) {
                for (int j = 0; j < QK_K; j++) y[j] = d * (float)sc[j / 16] * (float)q[j];
            } else {
                for (int j = 0; j < QK_K; j++) y[j] = fmaf(d * (float)sc[j / 16], (float)q[j], -(dm * (float)mn[j / 16]));
            }
        }
        break;
    }
    default:
        break;
    }
}

void sqlm_dtype_to_blocks(int dt, const void *src, float *q, float *d, size_t n) {
    const uint8_t *s = src;
    const size_t bb = sqlm_dtype_block_bytes(dt);
    int8_t v[QK_K];
    int16_t sc[16], mn[16];
    float dm;
    for (size_t b = 0; b < n / QK; b++) {
        sqlm_dtype_unpack(dt, s + b * bb, v, sc, mn, &d[b], &dm);
        for (int j = 0; j < QK; j++) q[b * QK + j] = v[j];
    }
}

static void quantize_q8_0(const float *x, uint8_t *out) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = MAX(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t dh = sqlm_f32_to_fp16(d);
    memcpy(out, &dh, 2);
    for (int j = 0; j < QK; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

static void quantize_q4_0(const float *x, uint8_t *out) {
    float amax = 0.0f, max = 0.0f; /* max: the value of largest magnitude, signed */
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t dh = sqlm_f32_to_fp16(d);
    memcpy(out, &dh, 2);
    for (int j = 0; j < QK / 2; j++) {
        int8_t a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + QK / 2] * id + 8.5f);
        uint8_t lo = (uint8_t)MIN(15, a), hi = (uint8_t)MIN(15, b);
        out[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

/*
 * Q4_K and Q6_K by plain min/max rounding (for `sqlm synth`'s random weights,
 * not llama-quantize's search for the best scales): Q4_K sub-blocks of 32
 * with scale (max - min) / 15 and min -min (min <= 0), both as 6-bit
 * multiples of the super-block's fp16 d and dmin; Q6_K sub-blocks of 16 with
 * scale amax / 31 as int8 multiples of d.  The blocks are valid ggml blocks.
 */
static int iround(float v) { return (int)lrintf(v); }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void quantize_q4_K(const float *x, uint8_t *out) {
    float sc[8], mn[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        float lo = x[32 * j], hi = lo;
        for (int i = 1; i < 32; i++) lo = fminf(lo, x[32 * j + i]), hi = fmaxf(hi, x[32 * j + i]);
        if (lo > 0) lo = 0;
        sc[j] = (hi - lo) / 15, mn[j] = -lo;
        smax = fmaxf(smax, sc[j]), mmax = fmaxf(mmax, mn[j]);
    }
    uint16_t dh = sqlm_f32_to_fp16(smax / 63), mh = sqlm_f32_to_fp16(mmax / 63);
    float d = sqlm_fp16_to_f32(dh), dmin = sqlm_fp16_to_f32(mh);
    memset(out, 0, 144);
    memcpy(out, &dh, 2), memcpy(out + 2, &mh, 2);
    uint8_t *scales = out + 4, *qs = out + 16;
    for (int j = 0; j < 8; j++) {
        int ls = d > 0 ? clampi(iround(sc[j] / d), 0, 63) : 0, lm = dmin > 0 ? clampi(iround(mn[j] / dmin), 0, 63) : 0;
        if (j < 4) {
            scales[j] = (uint8_t)ls, scales[j + 4] = (uint8_t)lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
        float dd = d * (float)ls, dm = dmin * (float)lm;
        for (int i = 0; i < 32; i++) {
            int q = dd > 0 ? clampi(iround((x[32 * j + i] + dm) / dd), 0, 15) : 0;
            qs[32 * (j / 2) + i] |= (uint8_t)(q << (4 * (j % 2)));
        }
    }
}

static void quantize_q6_K(const float *x, uint8_t *out) {
    float sc[16], smax = 0;
    for (int j = 0; j < 16; j++) {
        float amax = 0;
        for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[16 * j + i]));
        sc[j] = amax / 31;
        smax = fmaxf(smax, sc[j]);
    }
    uint16_t dh = sqlm_f32_to_fp16(smax / 127);
    float d = sqlm_fp16_to_f32(dh);
    memset(out, 0, 210);
    memcpy(out + 208, &dh, 2);
    uint8_t *ql = out, *qh = out + 128;
    int8_t *scales = (int8_t *)(out + 192);
    for (int j = 0; j < 16; j++) {
        int ls = d > 0 ? clampi(iround(sc[j] / d), 0, 127) : 0;
        scales[j] = (int8_t)ls;
        float dd = d * (float)ls;
        for (int i = 0; i < 16; i++) {
            int v = 16 * j + i, q = dd > 0 ? clampi(iround(x[v] / dd), -32, 31) + 32 : 32;
            int n = v / 128, t = (v % 128) / 32, l = v % 32;
            ql[64 * n + l + 32 * (t & 1)] |= (uint8_t)((q & 15) << (4 * (t >> 1)));
            qh[32 * n + l] |= (uint8_t)((q >> 4) << (2 * t));
        }
    }
}

void sqlm_dtype_from_f32(int dt, const float *src, void *dst, size_t n) {
    uint8_t *d = dst;
    switch (dt) {
    case DT_F32:
        memcpy(d, src, n * 4);
        break;
    case DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = sqlm_f32_to_fp16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = sqlm_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case DT_Q8_0:
        for (size_t b = 0; b < n / QK; b++) quantize_q8_0(src + b * QK, d + b * sizeof(block_q8_0));
        break;
    case DT_Q4_0:
        for (size_t b = 0; b < n / QK; b++) quantize_q4_0(src + b * QK, d + b * sizeof(block_q4_0));
        break;
    case DT_Q4_K:
        for (size_t b = 0; b < n / QK_K; b++) quantize_q4_K(src + b * QK_K, d + b * sizeof(block_q4_K));
        break;
    case DT_Q6_K:
        for (size_t b = 0; b < n / QK_K; b++) quantize_q6_K(src + b * QK_K, d + b * sizeof(block_q6_K));
        break;
    default:
        break;
    }
}

bool sqlm_dtype_can_quantize(int dt) {
    return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16 || dt == DT_Q8_0 || dt == DT_Q4_0 || dt == DT_Q4_K ||
           dt == DT_Q6_K;
}

/* Byte offsets of a block's fp16 scales (d, and the min's where it has one), -1 for none. */
static void scale_offsets(int dt, int *od, int *om) {
    *od = -1, *om = -1;
    switch (dt) {
    case DT_Q8_0: case DT_Q4_0: case DT_Q5_0: case DT_IQ4_NL: *od = 0; break;
    case DT_Q4_1: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K: *od = 0, *om = 2; break;
    case DT_Q2_K: *od = 80, *om = 82; break;
    case DT_Q3_K: *od = 108; break;
    case DT_Q6_K: *od = 208; break;
    default: break;
    }
}

static bool fp16_scale_exact(uint16_t h, float s) {
    float v = sqlm_fp16_to_f32(h), w = v * s;
    uint16_t r = sqlm_f32_to_fp16(w);
    /* exact, and no subnormal result (fewer bits than its source had) */
    return sqlm_fp16_to_f32(r) == w && (w == 0 || (r & 0x7c00) != 0);
}

bool sqlm_dtype_scale_exact(int dt, const void *src, size_t nb, float s) {
    int od, om;
    scale_offsets(dt, &od, &om);
    int e;
    if (od < 0 || frexpf(s, &e) != 0.5f) return false;   /* s must be a power of two */
    const uint8_t *p = src;
    const size_t bb = sqlm_dtype_block_bytes(dt);
    for (size_t b = 0; b < nb; b++, p += bb)
        if (!fp16_scale_exact(load_u16(p + od), s) || (om >= 0 && !fp16_scale_exact(load_u16(p + om), s)))
            return false;
    return true;
}

void sqlm_dtype_scale(int dt, void *blocks, size_t nb, float s) {
    int od, om;
    scale_offsets(dt, &od, &om);
    uint8_t *p = blocks;
    const size_t bb = sqlm_dtype_block_bytes(dt);
    for (size_t b = 0; od >= 0 && b < nb; b++, p += bb) {
        uint16_t h = sqlm_f32_to_fp16(sqlm_fp16_to_f32(load_u16(p + od)) * s);
        memcpy(p + od, &h, 2);
        if (om >= 0) {
            h = sqlm_f32_to_fp16(sqlm_fp16_to_f32(load_u16(p + om)) * s);
            memcpy(p + om, &h, 2);
        }
    }
}
