/*
 * dtype.c - tensor element types: names, block sizes, fp16/bf16 conversion,
 * and Q8_0 / Q4_0 (de)quantization with GGML's exact block layouts.
 *
 * Quantization follows ggml's scalar reference (quantize_row_q8_0_ref and
 * quantize_row_q4_0_ref) so that files we write match what llama.cpp writes.
 * No SIMD, no other quant types (K-quants, IQ*): readers reject them.
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
} dtype_table[] = {
    {DT_F32, "F32", 1, 4},
    {DT_F16, "F16", 1, 2},
    {DT_BF16, "BF16", 1, 2},
    {DT_Q8_0, "Q8_0", QK, sizeof(block_q8_0)},
    {DT_Q4_0, "Q4_0", QK, sizeof(block_q4_0)},
};

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes as in ggml");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes as in ggml");

static const struct dtype_info *dtype_info(int dt) {
    for (size_t i = 0; i < ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].dt == dt) return &dtype_table[i];
    return NULL;
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

bool sqlm_dtype_valid(int dt) { return dtype_info(dt) != NULL; }

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

static uint16_t f32_to_bf16(float f) {
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
    default:
        break;
    }
}

void sqlm_dtype_to_blocks(int dt, const void *src, float *q, float *d, size_t n) {
    const uint8_t *s = src;
    for (size_t b = 0; b < n / QK; b++) {
        const uint8_t *blk = s + b * sqlm_dtype_block_bytes(dt);
        d[b] = sqlm_fp16_to_f32(load_u16(blk));
        for (int j = 0; j < QK; j++) {
            if (dt == DT_Q8_0) q[b * QK + j] = ((const int8_t *)(blk + 2))[j];
            else q[b * QK + j] = j < QK / 2 ? (int)(blk[2 + j] & 0x0f) - 8 : (int)(blk[2 + j - QK / 2] >> 4) - 8;
        }
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
            uint16_t h = f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case DT_Q8_0:
        for (size_t b = 0; b < n / QK; b++) quantize_q8_0(src + b * QK, d + b * sizeof(block_q8_0));
        break;
    case DT_Q4_0:
        for (size_t b = 0; b < n / QK; b++) quantize_q4_0(src + b * QK, d + b * sizeof(block_q4_0));
        break;
    default:
        break;
    }
}
