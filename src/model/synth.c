/*
 * synth.c - a GGUF v3 writer and random-weight models of real shapes.
 *
 * `sqlm synth` uses it to make models for speed measurements (real models
 * larger than a few MB cannot be downloaded here) and for testing the SQL
 * path against tests/ref on arbitrary shapes.  Weights are streamed tensor
 * by tensor, so a 1B model needs a few MB of RAM.  It does not convert real
 * models, quantize with importance data, or write GGUF versions before 3.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "../tok/tok.h"

/* ------------------------------------------------------------ GGUF format */

/*
 * GGUF v3, all integers little-endian:
 *
 *   uint32 magic "GGUF", uint32 version = 3,
 *   uint64 n_tensors, uint64 n_kv,
 *   n_kv  x { string key, uint32 type, value }
 *   n_tensors x { string name, uint32 n_dims, uint64 ne[n_dims],
 *                 uint32 ggml_type, uint64 offset (from the data start) }
 *   padding to general.alignment (32), then the tensor data, each tensor
 *   starting at a multiple of the alignment.
 *
 * A string is uint64 length + bytes (no NUL).  An array value is uint32
 * element type, uint64 count, then the elements.
 */
enum {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64,
};
#define GGUF_ALIGN 32
#define CHUNK_BYTES (4u << 20)   /* rows handed to fill() per call */

static void put_u32(buf *b, uint32_t v) {
    unsigned char p[4] = {v, v >> 8, v >> 16, v >> 24};
    sqlm_buf_append(b, p, 4);
}

static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    sqlm_buf_append(b, s, n);
}

/* Metadata under construction: the key/value bytes and their count. */
typedef struct kvs {
    buf b;
    uint64_t n;
} kvs;

static void kv_key(kvs *k, uint32_t type, const char *fmt, const char *arch) {
    char key[128];
    snprintf(key, sizeof key, fmt, arch);
    put_str(&k->b, key, strlen(key));
    put_u32(&k->b, type);
    k->n++;
}

static void kv_u32(kvs *k, const char *key, const char *arch, uint32_t v) {
    kv_key(k, GGUF_U32, key, arch);
    put_u32(&k->b, v);
}

static void kv_i32(kvs *k, const char *key, const char *arch, int32_t v) {
    kv_key(k, GGUF_I32, key, arch);
    put_u32(&k->b, (uint32_t)v);
}

static void kv_f32(kvs *k, const char *key, const char *arch, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    kv_key(k, GGUF_F32, key, arch);
    put_u32(&k->b, u);
}

static void kv_bool(kvs *k, const char *key, const char *arch, bool v) {
    kv_key(k, GGUF_BOOL, key, arch);
    sqlm_buf_putc(&k->b, v ? 1 : 0);
}

static void kv_str(kvs *k, const char *key, const char *arch, const char *v) {
    kv_key(k, GGUF_STRING, key, arch);
    put_str(&k->b, v, strlen(v));
}

static void kv_array(kvs *k, const char *key, uint32_t type, uint64_t n) {
    kv_key(k, GGUF_ARRAY, key, "");
    put_u32(&k->b, type);
    put_u64(&k->b, n);
}

/*
 * RoPE layout implied by an architecture name in llama.cpp: 1 for pairs
 * (2i, 2i+1), 0 for NEOX rotate-half, -1 if unknown here.
 */
static int arch_rope_interleaved(const char *arch) {
    static const char *norm[] = {"llama", "mistral", "granite", "deci"};
    static const char *neox[] = {"qwen2", "qwen3", "qwen2moe", "qwen3moe", "phi3", "gemma",
                                 "gemma2", "gemma3", "stablelm", "olmo2"};
    for (size_t i = 0; i < ARRAY_LEN(norm); i++)
        if (!strcmp(arch, norm[i])) return 1;
    for (size_t i = 0; i < ARRAY_LEN(neox); i++)
        if (!strcmp(arch, neox[i])) return 0;
    return -1;
}

static void write_config(kvs *k, const model_config *c) {
    const char *a = c->arch;
    kv_str(k, "general.architecture", "", a);
    kv_u32(k, "general.alignment", "", GGUF_ALIGN);
    kv_u32(k, "%s.context_length", a, (uint32_t)c->seq_len);
    kv_u32(k, "%s.embedding_length", a, (uint32_t)c->dim);
    kv_u32(k, "%s.feed_forward_length", a, (uint32_t)c->hidden_dim);
    kv_u32(k, "%s.block_count", a, (uint32_t)c->n_layer);
    kv_u32(k, "%s.attention.head_count", a, (uint32_t)c->n_head);
    kv_u32(k, "%s.attention.head_count_kv", a, (uint32_t)c->n_head_kv);
    kv_u32(k, "%s.attention.key_length", a, (uint32_t)c->head_dim);
    kv_u32(k, "%s.attention.value_length", a, (uint32_t)c->head_dim);
    kv_f32(k, "%s.attention.layer_norm_rms_epsilon", a, c->norm_eps);
    kv_f32(k, "%s.rope.freq_base", a, c->rope_theta);
    kv_u32(k, "%s.rope.dimension_count", a, (uint32_t)c->head_dim);
    kv_u32(k, "%s.vocab_size", a, (uint32_t)c->vocab_size);
    /* Llama-3 RoPE scaling is the tensor rope_freqs.weight alone, as
     * llama.cpp's converter writes it: llama.cpp stops on a rope.scaling.type
     * it does not know ("llama3"), and sqlm derives the factors from the
     * tensor (gguf.c, derive_llama3: low 1, high 4). */
}

static void write_vocab(kvs *k, const vocab *v) {
    kv_str(k, "tokenizer.ggml.model", "", v->type == VOCAB_BPE ? "gpt2" : "llama");
    if (v->pre) kv_str(k, "tokenizer.ggml.pre", "", v->pre);
    kv_array(k, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)v->n);
    for (int32_t i = 0; i < v->n; i++)
        put_str(&k->b, v->tok[i] ? v->tok[i] : "", v->tok[i] ? v->tok_len[i] : 0);
    kv_array(k, "tokenizer.ggml.scores", GGUF_F32, (uint64_t)v->n);
    for (int32_t i = 0; i < v->n; i++) {
        uint32_t u;
        memcpy(&u, &v->score[i], 4);
        put_u32(&k->b, u);
    }
    kv_array(k, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)v->n);
    for (int32_t i = 0; i < v->n; i++) put_u32(&k->b, (uint32_t)v->attr[i]);
    if (v->n_merges > 0) {
        kv_array(k, "tokenizer.ggml.merges", GGUF_STRING, (uint64_t)v->n_merges);
        for (int32_t i = 0; i < v->n_merges; i++) put_str(&k->b, v->merges[i], strlen(v->merges[i]));
    }
    if (v->bos >= 0) kv_u32(k, "tokenizer.ggml.bos_token_id", "", (uint32_t)v->bos);
    if (v->eos >= 0) kv_u32(k, "tokenizer.ggml.eos_token_id", "", (uint32_t)v->eos);
    if (v->unk >= 0) kv_u32(k, "tokenizer.ggml.unknown_token_id", "", (uint32_t)v->unk);
    if (v->pad >= 0) kv_u32(k, "tokenizer.ggml.padding_token_id", "", (uint32_t)v->pad);
    if (v->eot >= 0) kv_u32(k, "tokenizer.ggml.eot_token_id", "", (uint32_t)v->eot);
    kv_bool(k, "tokenizer.ggml.add_bos_token", "", v->add_bos);
    kv_bool(k, "tokenizer.ggml.add_eos_token", "", v->add_eos);
    kv_bool(k, "tokenizer.ggml.add_space_prefix", "", v->add_space_prefix);
    if (v->chat_template) kv_str(k, "tokenizer.chat_template", "", v->chat_template);
    /* Every vocab setting, so a GGUF written here reads back losslessly
     * (llama.cpp ignores unknown keys). */
#define X(name, def) kv_i32(k, "tokenizer.sqlm." #name, "", v->name);
    VOCAB_INT_FIELDS(X)
#undef X
}

/* ------------------------------------------------------------ file output */

/* A file being written, with a sticky error that names it. */
typedef struct out_file {
    FILE *f;
    const char *path;
    int rc;
    uint64_t pos;
} out_file;

static void out_write(out_file *o, const void *p, size_t n) {
    if (o->rc || n == 0) return;
    errno = 0;
    if (fwrite(p, 1, n, o->f) != n)
        o->rc = sqlm_error(SQLM_IO, "writing %s: %s", o->path,
                           errno ? strerror(errno) : "short write");
    o->pos += n;
}

static void out_pad(out_file *o) {
    static const char zeros[GGUF_ALIGN];
    size_t pad = (GGUF_ALIGN - o->pos % GGUF_ALIGN) % GGUF_ALIGN;
    out_write(o, zeros, pad);
}

static int tensor_bytes(const synth_tensor *t, size_t *row_bytes, size_t *n_rows) {
    size_t rows = 1;
    if (t->n_dim < 1 || t->n_dim > 4)
        return sqlm_error(SQLM_FORMAT, "tensor %s: %d dimensions", t->name, t->n_dim);
    for (int d = 0; d < t->n_dim; d++) {
        if (t->ne[d] <= 0)
            return sqlm_error(SQLM_FORMAT, "tensor %s: dimension %d is %lld", t->name, d,
                              (long long)t->ne[d]);
        if (d > 0 && !size_mul(rows, (size_t)t->ne[d], &rows))
            return sqlm_error(SQLM_RANGE, "tensor %s: too large", t->name);
    }
    if (!sqlm_dtype_valid(t->dtype))
        return sqlm_error(SQLM_UNSUPPORTED, "tensor %s: unknown dtype %d", t->name, t->dtype);
    if (!sqlm_dtype_row_bytes(t->dtype, (size_t)t->ne[0], row_bytes))
        return sqlm_error(SQLM_UNSUPPORTED, "tensor %s: row of %lld values is not a multiple "
                          "of the %s block", t->name, (long long)t->ne[0], sqlm_dtype_name(t->dtype));
    size_t total;
    if (!size_mul(*row_bytes, rows, &total))
        return sqlm_error(SQLM_RANGE, "tensor %s: too large", t->name);
    *n_rows = rows;
    return SQLM_OK;
}

/* Stream the data of t: whole, or through fill() in chunks of rows. */
static int write_tensor_data(out_file *o, const synth_tensor *t, void **scratch, size_t *cap) {
    size_t row_bytes, n_rows;
    int rc = tensor_bytes(t, &row_bytes, &n_rows);
    if (rc) return rc;
    if (t->data) {
        out_write(o, t->data, row_bytes * n_rows);
        return o->rc;
    }
    size_t chunk = MAX((size_t)1, CHUNK_BYTES / row_bytes);
    if (chunk * row_bytes > *cap) {
        free(*scratch);
        *cap = chunk * row_bytes;
        if (!(*scratch = malloc(*cap))) {
            *cap = 0;
            return sqlm_error(SQLM_NOMEM, "out of memory for %zu bytes of %s", chunk * row_bytes,
                              t->name);
        }
    }
    for (size_t r = 0; r < n_rows && !o->rc; r += chunk) {
        size_t n = MIN(chunk, n_rows - r);
        if ((rc = t->fill(t->ctx, t, (int64_t)r, (int64_t)n, *scratch))) return rc;
        out_write(o, *scratch, n * row_bytes);
    }
    return o->rc;
}

int sqlm_gguf_write(const char *path, const model_config *cfg, const vocab *v,
               const synth_tensor *tensors, int n) {
    int rc = SQLM_OK;
    kvs k = {0};
    buf info;
    char *tmp = NULL;
    void *scratch = NULL;
    size_t cap = 0;
    out_file o = {0};
    sqlm_buf_init(&k.b);
    sqlm_buf_init(&info);

    int want = arch_rope_interleaved(cfg->arch);
    if (want >= 0 && want != (cfg->rope_interleaved != 0)) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: architecture %s implies %s RoPE; the config asks "
                        "for the other layout", path, cfg->arch, want ? "interleaved" : "NEOX");
        goto fail;
    }

    write_config(&k, cfg);
    if (v && v->n > 0) write_vocab(&k, v);

    /* Tensor infos, with offsets from the sizes alone: no data needed yet. */
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const synth_tensor *t = &tensors[i];
        size_t row_bytes, n_rows;
        if ((rc = tensor_bytes(t, &row_bytes, &n_rows))) goto fail;
        if (!t->data && !t->fill) {
            rc = sqlm_error(SQLM_ERROR, "tensor %s: neither data nor fill", t->name);
            goto fail;
        }
        put_str(&info, t->name, strlen(t->name));
        put_u32(&info, (uint32_t)t->n_dim);
        for (int d = 0; d < t->n_dim; d++) put_u64(&info, (uint64_t)t->ne[d]);
        put_u32(&info, (uint32_t)t->dtype);
        put_u64(&info, offset);
        offset += row_bytes * n_rows;
        offset += (GGUF_ALIGN - offset % GGUF_ALIGN) % GGUF_ALIGN;
    }
    if (k.b.rc || info.rc) {
        rc = sqlm_error(SQLM_NOMEM, "%s: out of memory for the GGUF header", path);
        goto fail;
    }

    buf name;
    sqlm_buf_init(&name);
    sqlm_buf_appendf(&name, "%s.tmp", path);
    tmp = sqlm_buf_detach(&name);
    if (!tmp) {
        rc = sqlm_error(SQLM_NOMEM, "out of memory");
        goto fail;
    }
    o.path = tmp;
    if (!(o.f = fopen(tmp, "wb"))) {
        rc = sqlm_error(SQLM_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }

    buf head;
    sqlm_buf_init(&head);
    sqlm_buf_append(&head, "GGUF", 4);
    put_u32(&head, 3);
    put_u64(&head, (uint64_t)n);
    put_u64(&head, k.n);
    out_write(&o, head.p, head.len);
    sqlm_buf_free(&head);
    out_write(&o, k.b.p, k.b.len);
    out_write(&o, info.p, info.len);
    out_pad(&o);
    for (int i = 0; i < n && !o.rc; i++) {
        if ((rc = write_tensor_data(&o, &tensors[i], &scratch, &cap))) goto fail;
        out_pad(&o);
    }
    if ((rc = o.rc)) goto fail;
    if (fflush(o.f) || fsync(fileno(o.f))) {
        rc = sqlm_error(SQLM_IO, "writing %s: %s", tmp, strerror(errno));
        goto fail;
    }
    FILE *f = o.f;
    o.f = NULL;
    if (fclose(f)) {
        rc = sqlm_error(SQLM_IO, "closing %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path)) {
        rc = sqlm_error(SQLM_IO, "renaming %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    free(tmp);
    tmp = NULL;

fail:
    if (o.f) fclose(o.f);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(scratch);
    sqlm_buf_free(&k.b);
    sqlm_buf_free(&info);
    return rc;
}

/* ------------------------------------------------------------ random weights */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

enum fill_kind { FILL_MATRIX, FILL_NORM, FILL_BIAS, FILL_ROPE_FREQS };

typedef struct fill_ctx {
    int kind;                /* enum fill_kind */
    uint64_t seed;           /* from the model seed and the tensor name */
    const model_config *cfg;
} fill_ctx;

/*
 * llama.cpp's rope_freqs.weight for llama3 scaling: the divisor of each base
 * frequency (1 for short wavelengths, factor for long, interpolated between).
 */
static float llama3_freq_divisor(const model_config *c, int i) {
    double f = pow(c->rope_theta, -2.0 * i / c->head_dim);
    double wavelen = 2 * M_PI / f, orig = c->rope_orig_ctx;
    double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    if (wavelen < orig / hi) return 1.0f;
    if (wavelen > orig / lo) return c->rope_scale_factor;
    double smooth = (orig / wavelen - lo) / (hi - lo);
    return (float)(1.0 / ((1 - smooth) / c->rope_scale_factor + smooth));
}

/* Row r of a tensor comes from its own stream, so chunking does not matter. */
static int fill_random(void *vctx, const synth_tensor *t, int64_t row0, int64_t n_rows,
                       void *dst) {
    const fill_ctx *c = vctx;
    size_t cols = (size_t)t->ne[0], row_bytes;
    sqlm_dtype_row_bytes(t->dtype, cols, &row_bytes);
    float *row = malloc(cols * sizeof *row);
    if (!row) return sqlm_error(SQLM_NOMEM, "out of memory for a row of %s", t->name);
    double amp = c->kind == FILL_MATRIX ? sqrt(3.0 / (double)cols) : 0.1;
    for (int64_t r = row0; r < row0 + n_rows; r++) {
        uint64_t s = c->seed ^ ((uint64_t)(r + 1) * 0xd1342543de82ef95ull);
        for (size_t i = 0; i < cols; i++) {
            double u = (double)(splitmix64(&s) >> 11) * 0x1.0p-53 * 2.0 - 1.0;  /* [-1, 1) */
            switch (c->kind) {
            case FILL_NORM: row[i] = (float)(1.0 + amp * u); break;
            case FILL_ROPE_FREQS: row[i] = llama3_freq_divisor(c->cfg, (int)i); break;
            default: row[i] = (float)(amp * u); break;
            }
        }
        sqlm_dtype_from_f32(t->dtype, row, (char *)dst + (size_t)(r - row0) * row_bytes, cols);
    }
    free(row);
    return SQLM_OK;
}

/* ------------------------------------------------------------ vocabulary */

/* A byte-level SPM vocabulary: <unk> <s> </s>, <0x00>..<0xFF>, then unused. */
static int synthetic_vocab(vocab *v, int32_t n) {
    int rc = sqlm_vocab_alloc(v, n);
    static const char *special[] = {"<unk>", "<s>", "</s>"};
    for (int32_t i = 0; i < n && !rc; i++) {
        char piece[32];
        if (i < 3) {
            rc = sqlm_vocab_set_token(v, i, special[i], strlen(special[i]), 0,
                                 i ? TOK_CONTROL : TOK_UNKNOWN);
        } else if (i < 3 + 256) {
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
            rc = sqlm_vocab_set_token(v, i, piece, strlen(piece), 0, TOK_BYTE);
        } else {
            snprintf(piece, sizeof piece, "<|unused_%d|>", i - 259);
            rc = sqlm_vocab_set_token(v, i, piece, strlen(piece), 0, TOK_UNUSED);
        }
    }
    if (rc) return rc;
    v->type = VOCAB_SPM;
    v->unk = 0;
    v->bos = n > 1 ? 1 : -1;
    v->eos = n > 2 ? 2 : -1;
    return SQLM_OK;
}

/* Pad v with "<|unused_N|>" tokens or trim it to n tokens. */
static int vocab_resize(vocab *v, int32_t n) {
    int32_t old = v->n;
    for (int32_t i = n; i < old; i++) free(v->tok[i]);
    if (n < old) v->n = n;
    char **tok = realloc(v->tok, (size_t)n * sizeof *tok);
    if (tok) v->tok = tok;
    uint32_t *len = realloc(v->tok_len, (size_t)n * sizeof *len);
    if (len) v->tok_len = len;
    float *score = realloc(v->score, (size_t)n * sizeof *score);
    if (score) v->score = score;
    int32_t *attr = realloc(v->attr, (size_t)n * sizeof *attr);
    if (attr) v->attr = attr;
    if (!tok || !len || !score || !attr)
        return sqlm_error(SQLM_NOMEM, "out of memory resizing the vocabulary to %d", n);
    v->n = n;
    for (int32_t i = old; i < n; i++) {
        v->tok[i] = NULL;
        char piece[32];
        snprintf(piece, sizeof piece, "<|unused_%d|>", i - old);
        int rc = sqlm_vocab_set_token(v, i, piece, strlen(piece), 0, TOK_UNUSED);
        if (rc) return rc;
    }
    /* Special ids that fell off the end no longer exist. */
#define DROP(f) if (v->f >= n) v->f = -1;
    DROP(bos) DROP(eos) DROP(unk) DROP(pad) DROP(eot)
#undef DROP
    return SQLM_OK;
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Read spec's tokenizer file, searched as given, in $SQLM_MODELS, in ../shared/models. */
static int load_vocab(vocab *v, const synth_spec *spec) {
    const char *dirs[] = {NULL, getenv("SQLM_MODELS"), "../shared/models"};
    char path[4096];
    int rc = SQLM_IO;
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        if (i == 0) snprintf(path, sizeof path, "%s", spec->tokenizer);
        else if (dirs[i] && spec->tokenizer[0] != '/')
            snprintf(path, sizeof path, "%s/%s", dirs[i], spec->tokenizer);
        else continue;
        if (access(path, R_OK)) continue;
        sqlm_vocab_free(v);
        rc = has_suffix(path, ".bin") ? sqlm_llama2c_read_tokenizer(v, path, spec->cfg.vocab_size)
                                      : sqlm_tok_read_json(v, path);
        if (rc == SQLM_OK) return SQLM_OK;
        break;
    }
    if (rc == SQLM_IO && access(path, R_OK))
        sqlm_error(SQLM_IO, "%s not found (searched as given, $SQLM_MODELS, ../shared/models)",
                   spec->tokenizer);
    sqlm_vocab_free(v);
    return rc;
}

/* ------------------------------------------------------------ models */

static const synth_spec specs[] = {
    /* name, {arch, dim, hidden, layers, heads, kv heads, head_dim, vocab, ctx, eps, theta,
     *        interleaved, tied, qkv_bias, llama3 factor, low, high, orig ctx, q_scale (import sets it)}, tokenizer */
    {"tiny", {"llama", 64, 192, 2, 4, 2, 16, 320, 256, 1e-5f, 10000.0f, 1, 0, 0, 0, 0, 0, 0, 0},
     NULL},
    /* every width a multiple of 256: the K-quants' super-blocks (llama-quantize
     * falls back to another type for rows that are not) */
    {"tiny-k", {"llama", 256, 768, 2, 4, 2, 64, 320, 256, 1e-5f, 10000.0f, 1, 0, 0, 0, 0, 0, 0, 0},
     NULL},
    {"stories110M",
     {"llama", 768, 2048, 12, 12, 12, 64, 32000, 1024, 1e-5f, 10000.0f, 1, 1, 0, 0, 0, 0, 0, 0},
     "llama2-tokenizer/tokenizer.bin"},
    {"smollm2-135m",
     {"llama", 576, 1536, 30, 9, 3, 64, 49152, 8192, 1e-5f, 100000.0f, 1, 1, 0, 0, 0, 0, 0, 0},
     "SmolLM2-tokenizer/tokenizer.json"},
    {"qwen2.5-0.5b",
     {"qwen2", 896, 4864, 24, 14, 2, 64, 151936, 32768, 1e-6f, 1000000.0f, 0, 1, 1, 0, 0, 0, 0, 0},
     "qwen3-tokenizer/tokenizer.json"},
    {"tinyllama-1.1b",
     {"llama", 2048, 5632, 22, 32, 4, 64, 32000, 2048, 1e-5f, 10000.0f, 1, 0, 0, 0, 0, 0, 0, 0},
     "llama2-tokenizer/tokenizer.bin"},
    {"llama-3.2-1b",
     {"llama", 2048, 8192, 16, 32, 8, 64, 128256, 131072, 1e-5f, 500000.0f, 1, 1, 0,
      32.0f, 1.0f, 4.0f, 8192, 0},
     "llama3-tokenizer/tokenizer.json"},
};

const synth_spec *sqlm_synth_like(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(specs); i++)
        if (!strcmp(specs[i].name, name)) return &specs[i];
    return NULL;
}

const char *sqlm_synth_name(int i) {
    return i >= 0 && i < (int)ARRAY_LEN(specs) ? specs[i].name : NULL;
}

static int check_spec(const model_config *c, int dtype) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layer <= 0 || c->n_head <= 0 ||
        c->n_head_kv <= 0 || c->head_dim <= 0 || c->vocab_size <= 0 || c->seq_len <= 0)
        return sqlm_error(SQLM_FORMAT, "synth: every size must be positive");
    if (c->n_head % c->n_head_kv || c->head_dim % 2)
        return sqlm_error(SQLM_FORMAT, "synth: n_head %d must be a multiple of n_head_kv %d "
                          "and head_dim %d even", c->n_head, c->n_head_kv, c->head_dim);
    if (dtype != DT_F32 && dtype != DT_F16 && dtype != DT_Q8_0 && dtype != DT_Q4_0 && dtype != DT_Q4_K &&
        dtype != DT_Q6_K)
        return sqlm_error(SQLM_UNSUPPORTED, "synth: dtype %s not supported (F32, F16, Q8_0, Q4_0, Q4_K, Q6_K)",
                          sqlm_dtype_name(dtype) ? sqlm_dtype_name(dtype) : "?");
    size_t unused;
    int q_dim = c->n_head * c->head_dim;
    if (!sqlm_dtype_row_bytes(dtype, (size_t)c->dim, &unused) ||
        !sqlm_dtype_row_bytes(dtype, (size_t)c->hidden_dim, &unused) ||
        !sqlm_dtype_row_bytes(dtype, (size_t)q_dim, &unused))
        return sqlm_error(SQLM_UNSUPPORTED, "synth: dim %d, hidden_dim %d and n_head*head_dim %d "
                          "must be multiples of %zu for %s", c->dim, c->hidden_dim, q_dim,
                          sqlm_dtype_block(dtype), sqlm_dtype_name(dtype));
    return SQLM_OK;
}

/* llama-quantize's Q4_K_M choice of the layers whose attn_v and ffn_down
 * take Q6_K (use_more_bits of llama.cpp's llama_tensor_get_type). */
static bool more_bits(int l, int n) { return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2; }

int sqlm_synth_model(const char *path, const synth_spec *spec, int dtype, uint64_t seed) {
    const model_config *c = &spec->cfg;
    int rc = check_spec(c, dtype);
    if (rc) return rc;

    vocab v;
    sqlm_vocab_init(&v);
    if (spec->tokenizer && (rc = load_vocab(&v, spec)) != SQLM_OK)
        sqlm_log(SQLM_LOG_WARN, "sqlm synth: using a synthetic byte vocabulary: %s", sqlm_errmsg());
    if (!spec->tokenizer || rc) rc = synthetic_vocab(&v, c->vocab_size);
    else if (v.n != c->vocab_size) rc = vocab_resize(&v, c->vocab_size);
    if (rc) {
        sqlm_vocab_free(&v);
        return rc;
    }

    /* The tensor list, in llama.cpp's order; at most 3 + 12 per layer. */
    int max_t = 4 + 12 * c->n_layer, n = 0;
    synth_tensor *t = calloc((size_t)max_t, sizeof *t);
    fill_ctx *ctx = calloc((size_t)max_t, sizeof *ctx);
    if (!t || !ctx) {
        rc = sqlm_error(SQLM_NOMEM, "synth: out of memory");
        goto done;
    }
    int q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    /* Q4_K is written as llama-quantize's Q4_K_M mix: the output head (the
     * embedding when tied) Q6_K, and attn_v / ffn_down of more_bits layers */
    const int head_dt = dtype == DT_Q4_K ? DT_Q6_K : dtype;
#define ADD(kind_, dt_, cols, rows, ...)                                          \
    do {                                                                          \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);                       \
        t[n].dtype = (dt_);                                                       \
        t[n].n_dim = (rows) > 1 ? 2 : 1;                                          \
        t[n].ne[0] = (cols); t[n].ne[1] = (rows); t[n].ne[2] = t[n].ne[3] = 1;    \
        ctx[n] = (fill_ctx){(kind_), 0, c};                                       \
        ctx[n].seed = seed ^ fnv1a(t[n].name);                                    \
        t[n].fill = fill_random;                                                  \
        t[n].ctx = &ctx[n];                                                       \
        n++;                                                                      \
    } while (0)
    ADD(FILL_MATRIX, c->tied ? head_dt : dtype, c->dim, c->vocab_size, "token_embd.weight");
    if (c->rope_scale_factor != 0)
        ADD(FILL_ROPE_FREQS, DT_F32, c->head_dim / 2, 1, "rope_freqs.weight");
    ADD(FILL_NORM, DT_F32, c->dim, 1, "output_norm.weight");
    if (!c->tied) ADD(FILL_MATRIX, head_dt, c->dim, c->vocab_size, "output.weight");
    for (int l = 0; l < c->n_layer; l++) {
        const int more_dt = dtype == DT_Q4_K && more_bits(l, c->n_layer) ? DT_Q6_K : dtype;
        ADD(FILL_NORM, DT_F32, c->dim, 1, "blk.%d.attn_norm.weight", l);
        ADD(FILL_MATRIX, dtype, c->dim, q_dim, "blk.%d.attn_q.weight", l);
        if (c->qkv_bias) ADD(FILL_BIAS, DT_F32, q_dim, 1, "blk.%d.attn_q.bias", l);
        ADD(FILL_MATRIX, dtype, c->dim, kv_dim, "blk.%d.attn_k.weight", l);
        if (c->qkv_bias) ADD(FILL_BIAS, DT_F32, kv_dim, 1, "blk.%d.attn_k.bias", l);
        ADD(FILL_MATRIX, more_dt, c->dim, kv_dim, "blk.%d.attn_v.weight", l);
        if (c->qkv_bias) ADD(FILL_BIAS, DT_F32, kv_dim, 1, "blk.%d.attn_v.bias", l);
        ADD(FILL_MATRIX, dtype, q_dim, c->dim, "blk.%d.attn_output.weight", l);
        ADD(FILL_NORM, DT_F32, c->dim, 1, "blk.%d.ffn_norm.weight", l);
        ADD(FILL_MATRIX, dtype, c->dim, c->hidden_dim, "blk.%d.ffn_gate.weight", l);
        ADD(FILL_MATRIX, dtype, c->dim, c->hidden_dim, "blk.%d.ffn_up.weight", l);
        ADD(FILL_MATRIX, more_dt, c->hidden_dim, c->dim, "blk.%d.ffn_down.weight", l);
    }
#undef ADD
    rc = sqlm_gguf_write(path, c, &v, t, n);
done:
    free(t);
    free(ctx);
    sqlm_vocab_free(&v);
    return rc;
}
