/*
 * sqlm-int.h - the internal header: one section per module (as chibicc.h).
 *
 * Pipeline: model file --(model/)--> struct model --(run/import.c)--> model
 * database --(ir/ + sqlgen/)--> SQL program --(db/ + run/)--> tokens.
 *
 * Errors: internal functions return an SQLM_* code and record a message with
 * sqlm_error() (thread-local, read back with sqlm_errmsg()).  src/ never
 * exits or prints except progress written through the progress hook.
 */
#ifndef SQLM_INT_H
#define SQLM_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../include/sqlm.h"

#define SQLM_VERSION "0.1.0"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- errors */

/* Record a printf-style message for this thread and return rc. */
int sqlm_error(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: " and return rc (adds context). */
int sqlm_error_prefix(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------ util/buf.c */

/* Growable byte/text buffer with a sticky error (sqlite3_str). */
typedef struct buf {
    char *p;       /* NUL-terminated contents (may hold binary bytes) */
    size_t len;    /* bytes used, excluding the NUL */
    size_t cap;    /* bytes allocated */
    int rc;        /* SQLM_OK or the first error (SQLM_NOMEM) */
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b);                       /* len = 0, keeps memory */
void buf_append(buf *b, const void *p, size_t n);
void buf_puts(buf *b, const char *s);
void buf_putc(buf *b, char c);
void buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vappendf(buf *b, const char *fmt, va_list ap);
char *buf_detach(buf *b);                     /* caller frees; buf is reset */

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

void *xmalloc_checked(size_t n);  /* malloc that records SQLM_NOMEM on failure */
char *sqlm_strdup(const char *s);
double sqlm_now(void);            /* monotonic seconds */
size_t sqlm_peak_rss(void);       /* bytes, from /proc/self/status VmHWM */

/* ---------------------------------------------------------- util/dtype.c */

/*
 * Tensor element types.  Values equal GGML's type ids, so a GGUF type field
 * maps directly; BF16 is GGML's 30.
 */
enum dtype {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_Q4_0 = 2,
    DT_Q8_0 = 8,
    DT_BF16 = 30,
};

#define QK 32                      /* values per Q8_0 / Q4_0 block */
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;        /* 34 bytes */
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;   /* 18 bytes */

const char *dtype_name(int dt);             /* "F32", ..., NULL if unknown */
int dtype_from_name(const char *name);      /* -1 if unknown */
bool dtype_valid(int dt);
size_t dtype_block(int dt);                 /* values per block: 1 or 32 */
size_t dtype_block_bytes(int dt);           /* bytes per block */
/* Bytes of a row of n values; 0 (and false) if n is not a multiple of the block. */
bool dtype_row_bytes(int dt, size_t n, size_t *out);
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
/* Dequantize/convert n values of type dt at src into dst. */
void dtype_to_f32(int dt, const void *src, float *dst, size_t n);
/* Quantize n f32 values (n % 32 == 0 for Q types) into dst of type dt. */
void dtype_from_f32(int dt, const float *src, void *dst, size_t n);

/* ---------------------------------------------------------- model/vocab */

/* Token attributes (as GGUF tokenizer.ggml.token_type). */
enum tok_attr {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER = 4,      /* user-defined / added token matched in text */
    TOK_UNUSED = 5,
    TOK_BYTE = 6,      /* <0xXX> byte-fallback piece */
};

/* Tokenizer families. */
enum vocab_type {
    VOCAB_SPM = 1,     /* SentencePiece-style BPE over scores or merges, byte fallback */
    VOCAB_BPE = 2,     /* byte-level BPE (GPT-2 byte-to-unicode), merges by rank */
};

/*
 * Scalar settings of a vocabulary.  An X-macro so that readers, the database
 * writer and the loader treat every field the same way: X(name, default).
 */
#define VOCAB_INT_FIELDS(X) \
    X(type, VOCAB_SPM)       /* enum vocab_type */                              \
    X(bos, -1)               /* BOS id or -1 */                                 \
    X(eos, -1)               /* EOS id or -1 */                                 \
    X(unk, -1)               /* unknown id or -1 */                             \
    X(pad, -1)                                                                  \
    X(eot, -1)               /* end-of-turn id (chat) or -1 */                  \
    X(add_bos, 1)            /* prepend BOS when encoding with specials */     \
    X(add_eos, 0)                                                               \
    X(add_space_prefix, 1)   /* SPM dummy prefix "▁" */                         \
    X(escape_spaces, 1)      /* SPM: spaces become "▁" */                       \
    X(byte_fallback, 1)      /* SPM: unknown bytes become <0xXX> */             \
    X(merges_by_rank, 0)     /* SPM from tokenizer.json: merges rank, not scores */ \
    X(special_in_text, 1)    /* control/user tokens are matched in input text */ \
    X(nfc, 0)                /* NFC-normalise input first */

#define VOCAB_STR_FIELDS(X) \
    X(pre)                   /* byte-level pre-tokenizer: "gpt2", "llama3", "qwen2", "smollm" */ \
    X(chat_template)         /* Jinja chat template text or NULL */

typedef struct vocab {
#define X(name, def) int32_t name;
    VOCAB_INT_FIELDS(X)
#undef X
#define X(name) char *name;
    VOCAB_STR_FIELDS(X)
#undef X
    int32_t n;               /* number of tokens */
    char **tok;              /* [n] piece bytes (NUL-terminated copies) */
    uint32_t *tok_len;       /* [n] piece length in bytes */
    float *score;            /* [n] SPM scores (0 if none) */
    int32_t *attr;           /* [n] enum tok_attr */
    int32_t n_merges;
    char **merges;           /* [n_merges] "left right", rank = index */
} vocab;

void vocab_init(vocab *v);          /* fields to their defaults, arrays NULL */
void vocab_free(vocab *v);          /* accepts a zeroed or half-built vocab */
/* Allocate arrays for n tokens (pieces NULL, score 0, attr TOK_NORMAL). */
int vocab_alloc(vocab *v, int32_t n);
int vocab_set_token(vocab *v, int32_t id, const char *piece, size_t len, float score, int32_t attr);

/* ---------------------------------------------------------- model/model.c */

/* Hyperparameters of a Llama-family model. */
typedef struct model_config {
    char arch[32];           /* "llama", "qwen2", ... */
    int32_t dim;             /* hidden size */
    int32_t hidden_dim;      /* FFN inner size */
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;        /* usually dim / n_head */
    int32_t vocab_size;
    int32_t seq_len;         /* trained context length */
    float norm_eps;
    float rope_theta;
    int32_t rope_interleaved;/* 1: pairs (2i, 2i+1) (GGUF, llama2.c); 0: HF rotate-half (i, i+d/2) */
    int32_t tied;            /* output head is the token embedding */
    int32_t qkv_bias;        /* q/k/v projections have biases (Qwen2) */
    /* Llama-3 RoPE frequency scaling; rope_scale_factor == 0 means none. */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
} model_config;

/*
 * A tensor view.  Canonical names follow GGUF: "token_embd.weight",
 * "output_norm.weight", "output.weight", "blk.N.attn_norm.weight",
 * "blk.N.attn_q.weight" (also attn_k, attn_v, attn_output), "blk.N.attn_q.bias"
 * (k, v), "blk.N.ffn_norm.weight", "blk.N.ffn_gate.weight", ffn_up, ffn_down.
 * ne[0] is the contiguous dimension (n_in of a matrix), ne[1] the rows (n_out):
 * the memory layout of GGUF, safetensors [out][in] and llama2.c alike.
 */
typedef struct tensor {
    char name[96];
    int dtype;               /* enum dtype */
    int n_dim;               /* 1..4 */
    int64_t ne[4];           /* elements per dimension, unused dims 1 */
    const void *data;        /* borrowed from the model's mapping */
    size_t nbytes;           /* checked to lie inside the file */
} tensor;

typedef struct model {
    char *path;              /* the file the weights were read from */
    model_config cfg;
    tensor *tensors;
    int n_tensors;
    vocab voc;               /* vocabulary (n == 0 if the file carries none) */
    void *map;               /* mmap of the weight file(s) */
    size_t map_size;
    void *map2;              /* a second mapping (e.g. tokenizer file) or NULL */
    size_t map2_size;
} model;

/*
 * Open a model file: a .gguf, a .safetensors (config.json and tokenizer.json
 * read from its folder), that folder, or a llama2.c .bin (tokenizer from
 * tok_path, else tok512.bin or tokenizer.bin beside it).  Every size and
 * offset is validated before use.  On success *out is owned by the caller:
 * free with model_free().  On failure *out is NULL and sqlm_errmsg() names the
 * file, the field and the reason.
 */
int model_open(const char *path, const char *tok_path, model **out);
void model_free(model *m);
const tensor *model_find(const model *m, const char *name);   /* NULL if absent */
const tensor *model_find_layer(const model *m, int layer, const char *suffix);

/* Format readers (model/gguf.c, safetensors.c, llama2c.c): fill m from path. */
int gguf_read(model *m, const char *path);
int safetensors_read(model *m, const char *path);
int llama2c_read(model *m, const char *path, const char *tok_path);
/* Read a llama2.c tokenizer.bin / tok512.bin into v (VOCAB_SPM). */
int llama2c_read_tokenizer(vocab *v, const char *path, int32_t vocab_size);

/* ----------------------------------------------------------- tok/ */

/* Read a HF tokenizer.json (plus tokenizer_config.json beside it if present). */
int tok_read_json(vocab *v, const char *path);
/* Read a SentencePiece tokenizer.model protobuf. */
int tok_read_spm_model(vocab *v, const char *path);

typedef struct tokenizer tokenizer;

/* Build an encoder over v (borrowed: v must outlive the tokenizer). */
int tok_init(tokenizer **out, const vocab *v);
void tok_free(tokenizer *t);
/*
 * Encode len bytes of text.  add_special: prepend BOS (and append EOS) as the
 * vocabulary says.  *ids is malloc'd, caller frees.
 */
int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
               int32_t **ids, int32_t *n_ids);
/*
 * Append the bytes of token id to out (byte tokens become raw bytes, "▁" a
 * space, byte-level BPE pieces are mapped back).  prev is the previous token
 * (or -1): SPM drops the dummy-prefix space right after BOS.
 */
int tok_decode(const tokenizer *t, int32_t prev, int32_t id, buf *out);

/* ---------------------------------------------------------- model/synth.c */

/*
 * One tensor for gguf_write().  Its bytes come from data (borrowed, the whole
 * tensor) or, when data is NULL, from fill(), which writes rows row0 ..
 * row0+n_rows-1 (a row is ne[0] values) into dst: the writer calls it in
 * chunks of a few MB, so a model streams to disk without being held in RAM.
 */
typedef struct synth_tensor synth_tensor;
struct synth_tensor {
    char name[96];           /* GGUF name, e.g. "blk.0.attn_q.weight" */
    int dtype;               /* enum dtype */
    int n_dim;               /* 1..4 */
    int64_t ne[4];           /* ne[0] contiguous, unused dims 1 */
    const void *data;        /* whole tensor, or NULL to use fill */
    int (*fill)(void *ctx, const synth_tensor *t, int64_t row0, int64_t n_rows, void *dst);
    void *ctx;               /* passed to fill */
};

/*
 * Write a GGUF v3 file: the hyperparameters of cfg under cfg->arch, the
 * vocabulary v as tokenizer.ggml.* keys (v NULL or v->n == 0: none), and the
 * n tensors with data aligned to 32 bytes.  The file is written to
 * "<path>.tmp", fsync'ed and renamed to path, so a failure (full disk: every
 * write is checked) never leaves a complete-looking file.  cfg->rope_interleaved
 * must match what the architecture implies (llama: 1, qwen2/qwen3: 0).
 * Returns SQLM_OK, SQLM_IO (the message names the path), SQLM_UNSUPPORTED,
 * SQLM_NOMEM, or what a fill() returned.
 */
int gguf_write(const char *path, const model_config *cfg, const vocab *v,
               const synth_tensor *tensors, int n);

/* The shapes (and vocabulary) of a random-weight model. */
typedef struct synth_spec {
    const char *name;        /* "tiny", "stories110M", ... */
    model_config cfg;        /* sizes, arch, rope, tied, qkv_bias */
    const char *tokenizer;   /* vocabulary file: "*.bin" llama2.c, else tokenizer.json;
                                relative paths are searched in $SQLM_MODELS and
                                ../shared/models; NULL: a synthetic byte vocab */
} synth_spec;

/* The built-in spec called name ("tiny", "stories110M", "smollm2-135m",
 * "qwen2.5-0.5b", "tinyllama-1.1b", "llama-3.2-1b"), or NULL.  Static data. */
const synth_spec *synth_like(const char *name);
/* Name of the i-th built-in spec, NULL past the end (for listings). */
const char *synth_name(int i);

/*
 * Write a GGUF model with spec's shapes and deterministic random weights:
 * matrices uniform with std 1/sqrt(n_in) in dtype (DT_F32, DT_F16, DT_Q8_0 or
 * DT_Q4_0; Q types need row lengths that are multiples of 32), norms 1 +- 0.1
 * and biases +-0.1 in F32.  The values of a tensor depend only on seed and its
 * name, not on dtype.  Streams tensor by tensor (memory stays a few MB plus
 * the vocabulary).  If spec->tokenizer cannot be read, a synthetic byte vocab
 * is used and a note goes to stderr.  The vocabulary is padded with
 * "<|unused_N|>" (TOK_UNUSED) or trimmed to cfg.vocab_size.
 */
int synth_model(const char *path, const synth_spec *spec, int dtype, uint64_t seed);

#endif /* SQLM_INT_H */
