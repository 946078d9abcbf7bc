/*
 * model.h - model files: the vocabulary, the hyperparameters, tensor views,
 * the readers (GGUF, safetensors + config.json, llama2.c) and the GGUF writer
 * of `sqlm synth`.  Every size and offset a reader takes from a file is
 * checked before use.
 */
#ifndef SQLM_MODEL_H
#define SQLM_MODEL_H

#include "../util/util.h"

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
    X(nfc, 0)                /* NFC-normalise input first */                   \
    X(fuse_unk, 0)           /* SPM: a run of unknown characters is one unk */  \
    X(special_normalized, 0) /* SPM: specials match after a space or at start */ \
    X(ignore_merges, 0)      /* BPE: a pre-token that is a whole token is kept */

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
    char *arena;             /* after sqlm_vocab_pack: every piece, tok[i] point into it */
} vocab;

void sqlm_vocab_init(vocab *v);          /* fields to their defaults, arrays NULL */
void sqlm_vocab_free(vocab *v);          /* accepts a zeroed or half-built vocab */
/* Allocate arrays for n tokens (pieces NULL, score 0, attr TOK_NORMAL). */
int sqlm_vocab_alloc(vocab *v, int32_t n);
int sqlm_vocab_set_token(vocab *v, int32_t id, const char *piece, size_t len, float score, int32_t attr);
/* For a vocabulary that no longer changes: the pieces moved into one block
 * (a 151k-token vocabulary: 1.1 MB instead of 4.9 in small allocations), and
 * the merges dropped (a tokenizer built from v has them as a table). */
int sqlm_vocab_pack(vocab *v);

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
    /* Set by import: the part of 1/sqrt(head_dim) not folded into W_q (import
     * folds only the nearest power of two, exact in every storage type); the
     * RoPE step multiplies q by it.  0 is read as 1. */
    float q_scale;
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
    struct model_map {       /* the other files of a sharded checkpoint */
        void *p;
        size_t n;
    } *shards;
    int n_shards;
} model;

/*
 * Open a model file: a .gguf, a .safetensors (config.json and tokenizer.json
 * read from its folder), a sharded checkpoint's model.safetensors.index.json,
 * a folder holding either, or a llama2.c .bin (tokenizer from
 * tok_path, else tok512.bin or tokenizer.bin beside it).  Every size and
 * offset is validated before use.  On success *out is owned by the caller:
 * free with sqlm_model_free().  On failure *out is NULL and sqlm_errmsg() names the
 * file, the field and the reason.
 */
int sqlm_model_open(const char *path, const char *tok_path, model **out);

/* The readers' rules, shared with the model database's open (run/modeldb.c):
 * every size in 1..SQLM_MODEL_MAX_DIM and consistent, norm_eps and the rope
 * settings in range, arch named; and a vocabulary of at most vocab_size
 * tokens whose special ids lie inside it.  Errors name path and the field. */
#define SQLM_MODEL_MAX_DIM (1 << 20)
int sqlm_config_check(const model_config *c, const char *path);
int sqlm_vocab_check(const vocab *v, int32_t vocab_size, const char *path);
void sqlm_model_free(model *m);
/* Drop the model file's pages from this process's memory (they stay in the
 * page cache; touching them again maps them back): bounds the RSS of a pass
 * over a model larger than a memory budget. */
void sqlm_model_release_pages(const model *m);
const tensor *sqlm_model_find(const model *m, const char *name);   /* NULL if absent */
const tensor *sqlm_model_find_layer(const model *m, int layer, const char *suffix);

/* Bytes of ne[0] values of t (one row); rows are ne[1]*ne[2]*ne[3]. */
size_t sqlm_tensor_row_bytes(const tensor *t);
/* Row r (0 <= r < ne[1]*ne[2]*ne[3]) of t: sqlm_tensor_row_bytes(t) bytes of t->dtype. */
const void *sqlm_tensor_row(const tensor *t, int64_t r);
/* Bytes of a tensor of type dt and shape ne[n_dim]; false on overflow or if
 * ne[0] is not a multiple of the type's block. */
bool sqlm_tensor_nbytes(int dt, int n_dim, const int64_t *ne, size_t *out);

/* Reader helpers (model.c).  sqlm_model_map mmaps path read-only into m->map
 * (and sets m->path) unless m->map is already set. */
int sqlm_model_map(model *m, const char *path);
/* Map one more file of a sharded checkpoint: *base and *size its bytes. */
int sqlm_model_map_shard(model *m, const char *path, const uint8_t **base, size_t *size);
/* Append a tensor view; data must lie inside m->map or m->map2. */
int sqlm_model_add_tensor(model *m, const char *path, const char *name, int dtype, int n_dim,
                     const int64_t *ne, const void *data, size_t nbytes);
/* "dir/of/path/name", malloc'd (NULL and SQLM_NOMEM recorded on failure). */
char *sqlm_model_path_beside(const char *path, const char *name);

/* Format readers (model/gguf.c, safetensors.c, llama2c.c): fill m from path. */
int sqlm_gguf_read(model *m, const char *path);
int sqlm_safetensors_read(model *m, const char *path);
/* A sharded checkpoint: model.safetensors.index.json and the shards its
 * weight_map names, beside it. */
int sqlm_safetensors_read_index(model *m, const char *index_path);
int sqlm_llama2c_read(model *m, const char *path, const char *tok_path);
/* Read a llama2.c tokenizer.bin / tok512.bin into v (VOCAB_SPM). */
int sqlm_llama2c_read_tokenizer(vocab *v, const char *path, int32_t vocab_size);


/* ---------------------------------------------------------- model/synth.c */

/*
 * One tensor for sqlm_gguf_write().  Its bytes come from data (borrowed, the whole
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
int sqlm_gguf_write(const char *path, const model_config *cfg, const vocab *v,
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
const synth_spec *sqlm_synth_like(const char *name);
/* Name of the i-th built-in spec, NULL past the end (for listings). */
const char *sqlm_synth_name(int i);

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
int sqlm_synth_model(const char *path, const synth_spec *spec, int dtype, uint64_t seed);

#endif /* SQLM_MODEL_H */
