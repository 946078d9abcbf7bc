/*
 * gguf.c - GGUF v2/v3 reader: metadata to model_config and vocab, tensor
 * infos to borrowed views into the mmapped file.
 *
 * Every count, length and offset is checked against the bytes that remain
 * before anything is allocated or dereferenced, so a hostile file yields an
 * error naming the field, never a crash.  It does not read GGUF v1, nested
 * arrays, or tensor types other than util/dtype.c's weight types (refused by
 * name, with the list of those that work).
 *
 * File layout (all little-endian):
 *
 *   magic      "GGUF" (4 bytes)
 *   version    u32, 2 or 3
 *   n_tensors  u64
 *   n_kv       u64
 *   kv[n_kv]   key: string; type: u32; value
 *   info[n_tensors]  name: string; n_dims: u32 (1..4); ne: u64[n_dims]
 *                    (ne[0] contiguous); type: u32 (GGML type id); offset: u64
 *                    (from the data section, a multiple of the alignment)
 *   padding    to general.alignment (u32 key, default 32)
 *   data       tensor bytes
 *
 *   string = u64 length + bytes (no NUL)
 *   value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (u8),
 *                8 string, 9 array (u32 elem type, u64 count, elems),
 *                10 u64, 11 i64, 12 f64
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "../tok/tok.h"

enum gguf_type {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_N_TYPES
};

static const size_t gguf_type_size[GGUF_N_TYPES] = {
    [GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4,
    [GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8,
    [GGUF_F64] = 8, /* string and array: variable */
};

/* A read cursor over the mapping; every read checks the bytes left. */
typedef struct gguf_cur {
    const uint8_t *base;   /* start of the file */
    const uint8_t *p;      /* next byte */
    const uint8_t *end;    /* one past the last byte */
    const char *path;
} gguf_cur;

/* One metadata pair; pointers borrow the mapping. */
typedef struct gguf_kv {
    const char *key;       /* not NUL-terminated */
    size_t key_len;
    uint32_t type;         /* enum gguf_type */
    const uint8_t *val;    /* the value (for arrays: the first element) */
    uint32_t elem_type;    /* arrays only */
    uint64_t count;        /* arrays only */
} gguf_kv;

typedef struct gguf_ctx {
    gguf_cur cur;
    gguf_kv *kv;
    uint64_t n_kv;
} gguf_ctx;

static size_t cur_left(const gguf_cur *c) { return (size_t)(c->end - c->p); }
static size_t cur_off(const gguf_cur *c) { return (size_t)(c->p - c->base); }

static int cur_read(gguf_cur *c, void *out, size_t n, const char *what) {
    if (cur_left(c) < n)
        return sqlm_error(SQLM_FORMAT, "%s: truncated: %s at offset %zu needs %zu bytes, "
                          "only %zu left before end of file", c->path, what, cur_off(c), n,
                          cur_left(c));
    memcpy(out, c->p, n);
    c->p += n;
    return SQLM_OK;
}

static int cur_u32(gguf_cur *c, uint32_t *v, const char *what) {
    *v = 0;
    return cur_read(c, v, 4, what);
}

static int cur_u64(gguf_cur *c, uint64_t *v, const char *what) {
    *v = 0;
    return cur_read(c, v, 8, what);
}

static int cur_str(gguf_cur *c, const char **s, size_t *len, const char *what) {
    uint64_t n;
    int rc;
    *s = NULL;
    *len = 0;
    if ((rc = cur_u64(c, &n, what))) return rc;
    if (n > cur_left(c))
        return sqlm_error(SQLM_FORMAT, "%s: %s: string length %llu at offset %zu runs past end "
                          "of file (%zu bytes left)", c->path, what, (unsigned long long)n,
                          cur_off(c) - 8, cur_left(c));
    *s = (const char *)c->p;
    *len = (size_t)n;
    c->p += n;
    return SQLM_OK;
}

/* GGML's names of its tensor types, for messages about the ones sqlm does not read. */
static const char *ggml_type_name(uint32_t t) {
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
        "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
        "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8",
        "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8",
    };
    return t < ARRAY_LEN(names) ? names[t] : NULL;
}

/* Skip one value of type type (arrays of scalars or strings; not nested). */
static int cur_skip_value(gguf_cur *c, uint32_t type, bool in_array, const char *key,
                          gguf_kv *kv) {
    const char *s;
    size_t len;
    int rc;
    if (type == GGUF_STRING) return cur_str(c, &s, &len, key);
    if (type == GGUF_ARRAY) {
        uint32_t et;
        uint64_t count;
        if (in_array)
            return sqlm_error(SQLM_UNSUPPORTED, "%s: key %s: nested arrays are not supported",
                              c->path, key);
        if ((rc = cur_u32(c, &et, key)) || (rc = cur_u64(c, &count, key))) return rc;
        if (et >= GGUF_N_TYPES || et == GGUF_ARRAY)
            return sqlm_error(SQLM_FORMAT, "%s: key %s: unknown array element type %u",
                              c->path, key, et);
        size_t min = et == GGUF_STRING ? 8 : gguf_type_size[et];
        if (count > cur_left(c) / min)
            return sqlm_error(SQLM_FORMAT, "%s: key %s: array count %llu runs past end of file "
                              "(%zu bytes left)", c->path, key, (unsigned long long)count,
                              cur_left(c));
        if (kv) {
            kv->elem_type = et;
            kv->count = count;
            kv->val = c->p;
        }
        if (et != GGUF_STRING) {
            c->p += count * min;
            return SQLM_OK;
        }
        for (uint64_t i = 0; i < count; i++)
            if ((rc = cur_str(c, &s, &len, key))) return rc;
        return SQLM_OK;
    }
    if (type >= GGUF_N_TYPES)
        return sqlm_error(SQLM_FORMAT, "%s: key %s: unknown value type %u", c->path, key, type);
    if (cur_left(c) < gguf_type_size[type])
        return sqlm_error(SQLM_FORMAT, "%s: truncated: value of key %s at offset %zu runs past "
                          "end of file", c->path, key, cur_off(c));
    c->p += gguf_type_size[type];
    return SQLM_OK;
}

/* ------------------------------------------------------------ metadata */

static const gguf_kv *kv_find(const gguf_ctx *g, const char *key) {
    size_t n = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0) return &g->kv[i];
    return NULL;
}

/* Read a scalar of type t at p as a double (integers, bools and floats). */
static bool scalar_value(uint32_t t, const uint8_t *p, double *out, int64_t *iout) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } u;
    if (t >= GGUF_N_TYPES || !gguf_type_size[t]) return false;
    memcpy(&u, p, gguf_type_size[t]);
    switch (t) {
    case GGUF_U8: case GGUF_BOOL: *iout = u.u8; break;
    case GGUF_I8: *iout = u.i8; break;
    case GGUF_U16: *iout = u.u16; break;
    case GGUF_I16: *iout = u.i16; break;
    case GGUF_U32: *iout = u.u32; break;
    case GGUF_I32: *iout = u.i32; break;
    case GGUF_U64: *iout = u.u64 > INT64_MAX ? INT64_MAX : (int64_t)u.u64; break;
    case GGUF_I64: *iout = u.i64; break;
    case GGUF_F32: *out = u.f32; *iout = 0; return true;
    case GGUF_F64: *out = u.f64; *iout = 0; return true;
    default: return false;
    }
    *out = (double)*iout;
    return true;
}

/* Integer key in [lo, hi]; *found false (and *v untouched) if absent. */
static int kv_int(const gguf_ctx *g, const char *key, int64_t lo, int64_t hi, bool required,
                  int32_t *v) {
    const gguf_kv *kv = kv_find(g, key);
    double d;
    int64_t i;
    if (!kv) {
        if (required)
            return sqlm_error(SQLM_FORMAT, "%s: missing key %s", g->cur.path, key);
        return SQLM_OK;
    }
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64 || !scalar_value(kv->type, kv->val, &d, &i))
        return sqlm_error(SQLM_FORMAT, "%s: key %s: value type %u is not an integer",
                          g->cur.path, key, kv->type);
    if (i < lo || i > hi)
        return sqlm_error(SQLM_FORMAT, "%s: key %s: value %lld out of range (%lld..%lld)",
                          g->cur.path, key, (long long)i, (long long)lo, (long long)hi);
    *v = (int32_t)i;
    return SQLM_OK;
}

static int kv_float(const gguf_ctx *g, const char *key, bool required, float *v) {
    const gguf_kv *kv = kv_find(g, key);
    double d;
    int64_t i;
    if (!kv) {
        if (required)
            return sqlm_error(SQLM_FORMAT, "%s: missing key %s", g->cur.path, key);
        return SQLM_OK;
    }
    if (!scalar_value(kv->type, kv->val, &d, &i))
        return sqlm_error(SQLM_FORMAT, "%s: key %s: value type %u is not a number",
                          g->cur.path, key, kv->type);
    if (!isfinite(d) || fabs(d) > 3e38)
        return sqlm_error(SQLM_FORMAT, "%s: key %s: value %g out of range", g->cur.path, key, d);
    *v = (float)d;
    return SQLM_OK;
}

/* String key: *s (not NUL-terminated) and *len, or *s NULL if absent. */
static int kv_str(const gguf_ctx *g, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = kv_find(g, key);
    *s = NULL;
    *len = 0;
    if (!kv) return SQLM_OK;
    if (kv->type != GGUF_STRING)
        return sqlm_error(SQLM_FORMAT, "%s: key %s: value type %u is not a string",
                          g->cur.path, key, kv->type);
    uint64_t n;
    memcpy(&n, kv->val, 8);
    *s = (const char *)kv->val + 8;
    *len = (size_t)n;
    return SQLM_OK;
}

/* Array key of elem_type with exactly count elements (count 0: any). */
static int kv_array(const gguf_ctx *g, const char *key, uint32_t elem_type, uint64_t count,
                    const gguf_kv **out) {
    const gguf_kv *kv = kv_find(g, key);
    *out = NULL;
    if (!kv) return SQLM_OK;
    if (kv->type != GGUF_ARRAY || kv->elem_type != elem_type)
        return sqlm_error(SQLM_FORMAT, "%s: key %s: expected an array of type %u", g->cur.path,
                          key, elem_type);
    if (count && kv->count != count)
        return sqlm_error(SQLM_FORMAT, "%s: key %s: %llu elements, expected %llu", g->cur.path,
                          key, (unsigned long long)kv->count, (unsigned long long)count);
    *out = kv;
    return SQLM_OK;
}

static bool str_is(const char *s, size_t len, const char *lit) {
    return s && len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static char *dup_n(const char *s, size_t n) {
    char *p = sqlm_xmalloc_checked(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* The KV section: n_kv pairs, parsed into g->kv (pointers into the map). */
static int read_kvs(gguf_ctx *g, uint64_t n_kv) {
    gguf_cur *c = &g->cur;
    int rc;
    /* Smallest pair: 8-byte key length + 1 key byte + 4-byte type + 1-byte value. */
    if (n_kv > cur_left(c) / 14 || n_kv > (1u << 20))
        return sqlm_error(SQLM_FORMAT, "%s: header field n_kv: %llu pairs cannot fit in the "
                          "%zu bytes left (past end of file)", c->path,
                          (unsigned long long)n_kv, cur_left(c));
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    if (!g->kv) return sqlm_error(SQLM_NOMEM, "%s: out of memory for %llu keys", c->path,
                                  (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        char key[128];
        if ((rc = cur_str(c, &kv->key, &kv->key_len, "metadata key"))) return rc;
        snprintf(key, sizeof key, "%.*s", (int)MIN(kv->key_len, 100), kv->key);
        if ((rc = cur_u32(c, &kv->type, key))) return rc;
        kv->val = c->p;
        if ((rc = cur_skip_value(c, kv->type, false, key, kv))) return rc;
        g->n_kv = i + 1;
    }
    return SQLM_OK;
}

/* ---------------------------------------------------------------- config */

static int read_config(gguf_ctx *g, model *m) {
    model_config *c = &m->cfg;
    const char *path = g->cur.path, *arch, *s;
    size_t arch_len, len;
    char k[160];
    int rc;

    if ((rc = kv_str(g, "general.architecture", &arch, &arch_len))) return rc;
    if (!arch) return sqlm_error(SQLM_FORMAT, "%s: missing key general.architecture", path);
    if (!str_is(arch, arch_len, "llama") && !str_is(arch, arch_len, "qwen2") &&
        !str_is(arch, arch_len, "mistral"))
        return sqlm_error(SQLM_UNSUPPORTED, "%s: key general.architecture: \"%.*s\" is not "
                          "supported (llama, qwen2, mistral)", path, (int)MIN(arch_len, 40), arch);
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)arch_len, arch);
    /* llama.cpp permutes q/k rows of llama/mistral to pairs; qwen2 stays rotate-half. */
    c->rope_interleaved = strcmp(c->arch, "qwen2") != 0;

#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, c->arch), k)
    const int32_t big = INT32_MAX;
    if ((rc = kv_int(g, KEY("embedding_length"), 1, big, true, &c->dim))) return rc;
    if ((rc = kv_int(g, KEY("feed_forward_length"), 1, big, true, &c->hidden_dim))) return rc;
    if ((rc = kv_int(g, KEY("block_count"), 1, big, true, &c->n_layer))) return rc;
    if ((rc = kv_int(g, KEY("attention.head_count"), 1, big, true, &c->n_head))) return rc;
    c->n_head_kv = c->n_head;
    if ((rc = kv_int(g, KEY("attention.head_count_kv"), 1, big, false, &c->n_head_kv))) return rc;
    c->head_dim = c->dim / c->n_head;
    if ((rc = kv_int(g, KEY("attention.key_length"), 1, big, false, &c->head_dim))) return rc;
    int32_t vlen = c->head_dim;
    if ((rc = kv_int(g, KEY("attention.value_length"), 1, big, false, &vlen))) return rc;
    if (vlen != c->head_dim)
        return sqlm_error(SQLM_UNSUPPORTED, "%s: key %s: %d differs from key_length %d", path,
                          k, vlen, c->head_dim);
    int32_t rot = c->head_dim;
    if ((rc = kv_int(g, KEY("rope.dimension_count"), 1, big, false, &rot))) return rc;
    if (rot != c->head_dim)
        return sqlm_error(SQLM_UNSUPPORTED, "%s: key %s: partial rotary (%d of head_dim %d) is "
                          "not supported", path, k, rot, c->head_dim);
    if ((rc = kv_int(g, KEY("context_length"), 1, big, true, &c->seq_len))) return rc;
    if ((rc = kv_float(g, KEY("attention.layer_norm_rms_epsilon"), true, &c->norm_eps))) return rc;
    c->rope_theta = 10000.0f;
    if ((rc = kv_float(g, KEY("rope.freq_base"), false, &c->rope_theta))) return rc;
    c->vocab_size = 0;
    if ((rc = kv_int(g, KEY("vocab_size"), 1, big, false, &c->vocab_size))) return rc;

    /* RoPE scaling: only Llama-3 style is representable in model_config. */
    if ((rc = kv_str(g, KEY("rope.scaling.type"), &s, &len))) return rc;
    float factor = 0.0f;
    if ((rc = kv_float(g, KEY("rope.scaling.factor"), false, &factor))) return rc;
    if (str_is(s, len, "llama3")) {
        c->rope_scale_factor = factor;
        c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f;
        c->rope_orig_ctx = 8192;
        if ((rc = kv_float(g, KEY("rope.scaling.low_freq_factor"), false,
                           &c->rope_low_freq_factor)) ||
            (rc = kv_float(g, KEY("rope.scaling.high_freq_factor"), false,
                           &c->rope_high_freq_factor)) ||
            (rc = kv_int(g, KEY("rope.scaling.original_context_length"), 1, big, false,
                         &c->rope_orig_ctx)))
            return rc;
    } else if (s && !str_is(s, len, "none") && factor != 0.0f && factor != 1.0f) {
        return sqlm_error(SQLM_UNSUPPORTED, "%s: key %s.rope.scaling.type: \"%.*s\" scaling is "
                          "not supported", path, c->arch, (int)MIN(len, 40), s);
    }
#undef KEY
    return SQLM_OK;
}

/* ----------------------------------------------------------------- vocab */

static int read_vocab(gguf_ctx *g, model *m) {
    vocab *v = &m->voc;
    const char *path = g->cur.path, *s;
    size_t len;
    const gguf_kv *toks, *scores, *types, *merges;
    int rc;

    if ((rc = kv_array(g, "tokenizer.ggml.tokens", GGUF_STRING, 0, &toks))) return rc;
    if (!toks) return SQLM_OK; /* no embedded vocabulary */
    if ((rc = kv_str(g, "tokenizer.ggml.model", &s, &len))) return rc;
    if (str_is(s, len, "llama")) {
        v->type = VOCAB_SPM;
    } else if (str_is(s, len, "gpt2")) {
        v->type = VOCAB_BPE;
        v->add_space_prefix = 0;
        v->add_bos = 0;
    } else {
        return sqlm_error(SQLM_UNSUPPORTED, "%s: key tokenizer.ggml.model: \"%.*s\" is not "
                          "supported (llama, gpt2)", path, (int)MIN(len, 40), s ? s : "");
    }
    if (toks->count == 0 || toks->count > (1u << 24))
        return sqlm_error(SQLM_FORMAT, "%s: key tokenizer.ggml.tokens: %llu tokens out of range",
                          path, (unsigned long long)toks->count);
    int32_t n = (int32_t)toks->count;
    if ((rc = kv_array(g, "tokenizer.ggml.scores", GGUF_F32, toks->count, &scores))) return rc;
    if ((rc = kv_array(g, "tokenizer.ggml.token_type", GGUF_I32, toks->count, &types))) return rc;
    if ((rc = sqlm_vocab_alloc(v, n))) return sqlm_error_prefix(rc, "%s", path);

    gguf_cur c = {g->cur.base, toks->val, g->cur.end, path};
    bool any_byte = false;
    for (int32_t i = 0; i < n; i++) {
        const char *piece;
        size_t plen;
        float score = 0.0f;
        int32_t attr = TOK_NORMAL;
        if ((rc = cur_str(&c, &piece, &plen, "tokenizer.ggml.tokens"))) return rc;
        if (scores) memcpy(&score, scores->val + 4 * (size_t)i, 4);
        if (types) {
            memcpy(&attr, types->val + 4 * (size_t)i, 4);
            if (attr == 0) attr = TOK_NORMAL; /* undefined */
            if (attr < TOK_NORMAL || attr > TOK_BYTE)
                return sqlm_error(SQLM_FORMAT, "%s: key tokenizer.ggml.token_type: token %d has "
                                  "unknown type %d", path, i, attr);
        }
        any_byte |= attr == TOK_BYTE;
        if ((rc = sqlm_vocab_set_token(v, i, piece, plen, score, attr)))
            return sqlm_error_prefix(rc, "%s", path);
    }
    if (v->type == VOCAB_SPM) v->byte_fallback = any_byte;

    if ((rc = kv_array(g, "tokenizer.ggml.merges", GGUF_STRING, 0, &merges))) return rc;
    if (merges && merges->count) {
        if (merges->count > INT32_MAX)
            return sqlm_error(SQLM_FORMAT, "%s: key tokenizer.ggml.merges: too many", path);
        v->merges = calloc((size_t)merges->count, sizeof *v->merges);
        if (!v->merges) return sqlm_error(SQLM_NOMEM, "%s: out of memory for merges", path);
        c.p = merges->val;
        for (uint64_t i = 0; i < merges->count; i++) {
            const char *ms;
            size_t ml;
            if ((rc = cur_str(&c, &ms, &ml, "tokenizer.ggml.merges"))) return rc;
            if (!(v->merges[i] = dup_n(ms, ml))) return SQLM_NOMEM;
            v->n_merges = (int32_t)i + 1;
        }
    }

    static const struct { const char *key; size_t off; } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(vocab, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(vocab, eos)},
        {"tokenizer.ggml.unknown_token_id", offsetof(vocab, unk)},
        {"tokenizer.ggml.padding_token_id", offsetof(vocab, pad)},
        {"tokenizer.ggml.eot_token_id", offsetof(vocab, eot)},
        {"tokenizer.ggml.add_bos_token", offsetof(vocab, add_bos)},
        {"tokenizer.ggml.add_eos_token", offsetof(vocab, add_eos)},
        {"tokenizer.ggml.add_space_prefix", offsetof(vocab, add_space_prefix)},
    };
    for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
        int32_t *dst = (int32_t *)((char *)v + ids[i].off);
        if ((rc = kv_int(g, ids[i].key, 0, INT32_MAX, false, dst))) return rc;
    }
    if ((rc = kv_str(g, "tokenizer.ggml.pre", &s, &len))) return rc;
    if (s && !(v->pre = dup_n(s, len))) return SQLM_NOMEM;
    if ((rc = kv_str(g, "tokenizer.chat_template", &s, &len))) return rc;
    if (s && !(v->chat_template = dup_n(s, len))) return SQLM_NOMEM;

    /* sqlm's own writer (model/synth.c) stores every vocab setting losslessly. */
#define X(name, def)                                                                       \
    if ((rc = kv_int(g, "tokenizer.sqlm." #name, INT32_MIN, INT32_MAX, false, &v->name))) \
        return rc;
    VOCAB_INT_FIELDS(X)
#undef X

    if (m->cfg.vocab_size == 0) m->cfg.vocab_size = n;
    if (m->cfg.vocab_size != n)
        return sqlm_error(SQLM_FORMAT, "%s: key %s.vocab_size: %d but tokenizer.ggml.tokens has "
                          "%d tokens", path, m->cfg.arch, m->cfg.vocab_size, n);
    return SQLM_OK;
}

/* --------------------------------------------------------------- tensors */

typedef struct gguf_info {
    char name[96];
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t type;
    uint64_t offset;
} gguf_info;

static int read_infos(gguf_ctx *g, model *m, uint64_t n_tensors) {
    gguf_cur *c = &g->cur;
    const char *path = c->path;
    gguf_info *info = NULL;
    int32_t align = 32;
    int rc;

    /* Smallest info: name length 8 + 1 byte + n_dims 4 + ne 8 + type 4 + offset 8. */
    if (n_tensors > cur_left(c) / 33 || n_tensors > (1u << 20))
        return sqlm_error(SQLM_FORMAT, "%s: header field n_tensors: %llu infos cannot fit in the "
                          "%zu bytes left (past end of file)", path,
                          (unsigned long long)n_tensors, cur_left(c));
    if ((rc = kv_int(g, "general.alignment", 1, 1 << 20, false, &align))) return rc;
    if (align & (align - 1))
        return sqlm_error(SQLM_FORMAT, "%s: key general.alignment: %d is not a power of two",
                          path, align);
    info = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *info);
    if (!info) return sqlm_error(SQLM_NOMEM, "%s: out of memory for tensor infos", path);

    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_info *t = &info[i];
        const char *name;
        size_t len;
        if ((rc = cur_str(c, &name, &len, "tensor name"))) goto fail;
        if (len == 0 || len >= sizeof t->name || memchr(name, 0, len)) {
            rc = sqlm_error(SQLM_FORMAT, "%s: tensor %llu: name of %zu bytes is empty, too long "
                            "or holds a NUL", path, (unsigned long long)i, len);
            goto fail;
        }
        memcpy(t->name, name, len);
        if ((rc = cur_u32(c, &t->n_dims, t->name))) goto fail;
        if (t->n_dims < 1 || t->n_dims > 4) {
            rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: n_dims %u out of range (1..4)", path,
                            t->name, t->n_dims);
            goto fail;
        }
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if ((rc = cur_u64(c, &ne, t->name))) goto fail;
            if (ne == 0 || ne > (1ull << 40)) {
                rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: ne[%u] = %llu out of range", path,
                                t->name, d, (unsigned long long)ne);
                goto fail;
            }
            t->ne[d] = (int64_t)ne;
        }
        if ((rc = cur_u32(c, &t->type, t->name)) || (rc = cur_u64(c, &t->offset, t->name)))
            goto fail;
        if (!sqlm_dtype_valid((int)t->type)) {
            const char *tn = ggml_type_name(t->type);
            if (tn)
                rc = sqlm_error(SQLM_UNSUPPORTED, "%s: tensor %s: tensor type %s (%u) is not supported; "
                                "supported types: %s", path, t->name, tn, t->type, sqlm_dtype_supported());
            else
                rc = sqlm_error(SQLM_UNSUPPORTED, "%s: tensor %s: tensor type %u is not a GGML type; "
                                "supported types: %s", path, t->name, t->type, sqlm_dtype_supported());
            goto fail;
        }
    }

    /* The data section starts at the next multiple of the alignment. */
    size_t data = cur_off(c), size = (size_t)(c->end - c->base);
    if (data % (size_t)align) data += (size_t)align - data % (size_t)align;
    if (n_tensors && data > size) {
        rc = sqlm_error(SQLM_FORMAT, "%s: truncated: data section at offset %zu lies past end of "
                        "file (%zu bytes)", path, data, size);
        goto fail;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_info *t = &info[i];
        size_t nbytes, end;
        if (!sqlm_tensor_nbytes((int)t->type, (int)t->n_dims, t->ne, &nbytes)) {
            rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: shape [%lld, ...] overflows or ne[0] is "
                            "not a multiple of the %s block", path, t->name, (long long)t->ne[0],
                            sqlm_dtype_name((int)t->type));
            goto fail;
        }
        if (t->offset % (uint64_t)align) {
            rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: data offset %llu is misaligned (alignment "
                            "%d)", path, t->name, (unsigned long long)t->offset, align);
            goto fail;
        }
        if (t->offset > size - data || !size_add(data + (size_t)t->offset, nbytes, &end) ||
            end > size) {
            rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: data at offset %llu + %zu bytes lies "
                            "past end of file (%zu bytes)", path, t->name,
                            (unsigned long long)t->offset, nbytes, size);
            goto fail;
        }
        rc = sqlm_model_add_tensor(m, path, t->name, (int)t->type, (int)t->n_dims, t->ne,
                              c->base + data + t->offset, nbytes);
        if (rc) goto fail;
    }
    free(info);
    return SQLM_OK;
fail:
    free(info);
    return rc;
}

/* ------------------------------------------------------ llama3 scaling */

/* llama3 frequency divisor for a RoPE wavelength (HF _compute_llama3_parameters). */
static double llama3_divisor(double wl, double factor, double low, double high, double orig) {
    if (wl < orig / high) return 1.0;
    if (wl > orig / low) return factor;
    double smooth = (orig / wl - low) / (high - low);
    return 1.0 / ((1.0 - smooth) / factor + smooth);
}

/*
 * llama.cpp stores Llama-3 RoPE scaling as a tensor rope_freqs.weight of
 * head_dim/2 divisors, not as keys.  Recover (factor, low 1, high 4, orig)
 * from it, and insist the divisors follow that formula exactly, so that
 * model_config describes the model truthfully.
 */
static int derive_llama3(model *m, const char *path) {
    model_config *c = &m->cfg;
    const tensor *t = sqlm_model_find(m, "rope_freqs.weight");
    if (!t || c->rope_scale_factor != 0.0f) return SQLM_OK;
    int n = c->head_dim / 2;
    if (t->dtype != DT_F32 || t->n_dim != 1 || t->ne[0] != n)
        return sqlm_error(SQLM_FORMAT, "%s: tensor rope_freqs.weight: expected F32 [%d]", path, n);
    double factor = 1.0, orig = 0.0;
    int rc = SQLM_OK;
    float *f = sqlm_xmalloc_checked((size_t)n * sizeof *f);
    if (!f) return SQLM_NOMEM;
    sqlm_dtype_to_f32(DT_F32, t->data, f, (size_t)n);
    for (int i = 0; i < n; i++) {
        if (!(f[i] >= 1.0f && f[i] < 1e6f)) {
            rc = sqlm_error(SQLM_UNSUPPORTED, "%s: tensor rope_freqs.weight: divisor %g is not "
                            "llama3 scaling", path, (double)f[i]);
            goto done;
        }
        factor = fmax(factor, f[i]);
    }
    if (factor == 1.0) goto done; /* no scaling at all */
    for (int i = 0; i < n && orig == 0.0; i++) {
        if (f[i] > 1.0f + 1e-4f && f[i] < factor * (1.0 - 1e-4)) {
            double wl = 2.0 * M_PI * pow(c->rope_theta, 2.0 * i / c->head_dim);
            double smooth = (1.0 / f[i] - 1.0 / factor) / (1.0 - 1.0 / factor);
            orig = round(wl * (1.0 + 3.0 * smooth)); /* low 1, high 4 */
        }
    }
    for (int i = 0; i < n; i++) {
        double wl = 2.0 * M_PI * pow(c->rope_theta, 2.0 * i / c->head_dim);
        if (orig == 0.0 || orig > INT32_MAX ||
            fabs(llama3_divisor(wl, factor, 1, 4, orig) - f[i]) > 1e-3 * f[i]) {
            rc = sqlm_error(SQLM_UNSUPPORTED, "%s: tensor rope_freqs.weight: divisors do not "
                            "follow llama3 scaling (low 1, high 4)", path);
            goto done;
        }
    }
    c->rope_scale_factor = (float)factor;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_orig_ctx = (int32_t)orig;
done:
    free(f);
    return rc;
}

/* ------------------------------------------------------------- the file */

int sqlm_gguf_read(model *m, const char *path) {
    gguf_ctx g = {0};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    int rc;

    if ((rc = sqlm_model_map(m, path))) return rc;
    g.cur = (gguf_cur){m->map, m->map, (const uint8_t *)m->map + m->map_size, path};
    if ((rc = cur_u32(&g.cur, &magic, "magic"))) goto fail;
    if (memcmp(&magic, "GGUF", 4) != 0) {
        rc = sqlm_error(SQLM_FORMAT, "%s: bad magic: not a GGUF file", path);
        goto fail;
    }
    if ((rc = cur_u32(&g.cur, &version, "header field version"))) goto fail;
    if (version != 2 && version != 3) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: header field version: GGUF version %u is not "
                        "supported (2, 3)", path, version);
        goto fail;
    }
    if ((rc = cur_u64(&g.cur, &n_tensors, "header field n_tensors")) ||
        (rc = cur_u64(&g.cur, &n_kv, "header field n_kv")))
        goto fail;
    if ((rc = read_kvs(&g, n_kv))) goto fail;
    if ((rc = read_config(&g, m))) goto fail;
    if ((rc = read_infos(&g, m, n_tensors))) goto fail;
    if ((rc = read_vocab(&g, m))) goto fail;
    if (m->cfg.head_dim > 0 && m->cfg.head_dim <= (1 << 20) && (rc = derive_llama3(m, path)))
        goto fail;

    const tensor *emb = sqlm_model_find(m, "token_embd.weight");
    if (m->cfg.vocab_size == 0 && emb && emb->ne[1] <= INT32_MAX)
        m->cfg.vocab_size = (int32_t)emb->ne[1];
    m->cfg.tied = sqlm_model_find(m, "output.weight") == NULL;
    m->cfg.qkv_bias = sqlm_model_find(m, "blk.0.attn_q.bias") != NULL;
    free(g.kv);
    return SQLM_OK;
fail:
    free(g.kv);
    return rc;
}
