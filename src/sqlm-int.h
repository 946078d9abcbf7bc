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

void sqlm_buf_init(buf *b);
void sqlm_buf_free(buf *b);
void sqlm_buf_reset(buf *b);                       /* len = 0, keeps memory */
void sqlm_buf_append(buf *b, const void *p, size_t n);
void sqlm_buf_puts(buf *b, const char *s);
void sqlm_buf_putc(buf *b, char c);
void sqlm_buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sqlm_buf_vappendf(buf *b, const char *fmt, va_list ap);
char *sqlm_buf_detach(buf *b);                     /* caller frees; buf is reset */

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

void *sqlm_xmalloc_checked(size_t n);  /* malloc that records SQLM_NOMEM on failure */
char *sqlm_strdup(const char *s);
double sqlm_now(void);            /* monotonic seconds */

/* ------------------------------------------------------------ util/mem.c */

/* "256M", "1.5G", "512MiB", "1073741824": bytes (K/M/G/T are powers of 1024). */
bool sqlm_parse_size(const char *s, size_t *out);
size_t sqlm_rss(void);            /* resident bytes now (VmRSS) */
size_t sqlm_peak_rss(void);       /* most resident bytes so far (VmHWM) */
void sqlm_heap_trim(void);        /* hand the heap's free pages back to the kernel */
size_t sqlm_cgroup_limit(void);   /* this process's cgroup memory limit, 0 = none */
size_t sqlm_mem_available(void);  /* MemAvailable of /proc/meminfo */
uint64_t sqlm_io_read_bytes(void);/* bytes this process caused to be read from storage */
double sqlm_thread_cpu(void);     /* CPU seconds of the calling thread */
double sqlm_median(double *v, int n); /* median of n > 0 values (sorts v) */
/* ----------------------------------------------------------- util/pool.c */

/*
 * A pool of n threads: the caller and n - 1 workers.  sqlm_pool_run() runs
 * fn(ctx, ith, n) on every one of them (the caller is ith 0) and returns when
 * all are done; jobs must not call SQLite.  A pool of 1 (or NULL) runs fn on
 * the caller alone, and so may any job (fn(ctx, 0, 1)): on a busy machine
 * the pool lets the caller run alone for a while when workers come late.  sqlm_pool_init() may start fewer workers than asked when the
 * system refuses threads; sqlm_pool_size() says how many run.  Free with sqlm_pool_free().
 */
typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);
int sqlm_pool_init(pool **out, int n);
void sqlm_pool_free(pool *p);
int sqlm_pool_size(const pool *p);
void sqlm_pool_run(pool *p, pool_fn fn, void *ctx);

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

const char *sqlm_dtype_name(int dt);             /* "F32", ..., NULL if unknown */
int sqlm_dtype_from_name(const char *name);      /* -1 if unknown */
bool sqlm_dtype_valid(int dt);
size_t sqlm_dtype_block(int dt);                 /* values per block: 1 or 32 */
size_t sqlm_dtype_block_bytes(int dt);           /* bytes per block */
/* Bytes of a row of n values; 0 (and false) if n is not a multiple of the block. */
bool sqlm_dtype_row_bytes(int dt, size_t n, size_t *out);
float sqlm_fp16_to_f32(uint16_t h);
uint16_t sqlm_f32_to_fp16(float f);
float sqlm_bf16_to_f32(uint16_t h);
/* Dequantize/convert n values of type dt at src into dst. */
void sqlm_dtype_to_f32(int dt, const void *src, float *dst, size_t n);
/* Quantize n f32 values (n % 32 == 0 for Q types) into dst of type dt. */
void sqlm_dtype_from_f32(int dt, const float *src, void *dst, size_t n);
/* The integer values (as floats) and block scales of n values of Q8_0 or
 * Q4_0: value j is q[j] * d[j / 32]; q has n floats, d n / 32. */
void sqlm_dtype_to_blocks(int dt, const void *src, float *q, float *d, size_t n);

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
} model;

/*
 * Open a model file: a .gguf, a .safetensors (config.json and tokenizer.json
 * read from its folder), that folder, or a llama2.c .bin (tokenizer from
 * tok_path, else tok512.bin or tokenizer.bin beside it).  Every size and
 * offset is validated before use.  On success *out is owned by the caller:
 * free with sqlm_model_free().  On failure *out is NULL and sqlm_errmsg() names the
 * file, the field and the reason.
 */
int sqlm_model_open(const char *path, const char *tok_path, model **out);
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
/* Append a tensor view; data must lie inside m->map or m->map2. */
int sqlm_model_add_tensor(model *m, const char *path, const char *name, int dtype, int n_dim,
                     const int64_t *ne, const void *data, size_t nbytes);
/* "dir/of/path/name", malloc'd (NULL and SQLM_NOMEM recorded on failure). */
char *sqlm_model_path_beside(const char *path, const char *name);

/* Format readers (model/gguf.c, safetensors.c, llama2c.c): fill m from path. */
int sqlm_gguf_read(model *m, const char *path);
int sqlm_safetensors_read(model *m, const char *path);
int sqlm_llama2c_read(model *m, const char *path, const char *tok_path);
/* Read a llama2.c tokenizer.bin / tok512.bin into v (VOCAB_SPM). */
int sqlm_llama2c_read_tokenizer(vocab *v, const char *path, int32_t vocab_size);

/* ----------------------------------------------------------- tok/ */

/* Read a HF tokenizer.json (plus tokenizer_config.json beside it if present). */
int sqlm_tok_read_json(vocab *v, const char *path);
/* Read a SentencePiece tokenizer.model protobuf. */
int sqlm_tok_read_spm_model(vocab *v, const char *path);

typedef struct tokenizer tokenizer;

/* Build an encoder over v (borrowed: v must outlive the tokenizer). */
int sqlm_tok_init(tokenizer **out, const vocab *v);
void sqlm_tok_free(tokenizer *t);
/* Free the encoder's tables (piece and merge hashes, special-token trie: 5 MB
 * for a 151k vocabulary), keeping what sqlm_tok_decode needs; sqlm_tok_encode fails
 * afterwards.  For a caller with no more text to encode, before it sizes a
 * memory budget. */
void sqlm_tok_drop_encoder(tokenizer *t);
/*
 * Encode len bytes of text.  add_special: prepend BOS (and append EOS) as the
 * vocabulary says.  *ids is malloc'd, caller frees.
 */
int sqlm_tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
               int32_t **ids, int32_t *n_ids);
/*
 * Append the bytes of token id to out (byte tokens become raw bytes, "▁" a
 * space, byte-level BPE pieces are mapped back).  prev is the previous token
 * (or -1): SPM drops the dummy-prefix space right after BOS.
 */
int sqlm_tok_decode(const tokenizer *t, int32_t prev, int32_t id, buf *out);

/* tok/unicode.c: the UTF-8 and Unicode properties the tokenizers need. */
enum { UCAT_OTHER = 0, UCAT_LETTER = 1, UCAT_NUMBER = 2, UCAT_SPACE = 4 };
/* Decode the code point at s[*pos] (< len) and advance *pos; an invalid or
 * truncated sequence yields 0xFFFD and advances by one byte. */
uint32_t sqlm_tok_utf8_next(const char *s, size_t len, size_t *pos);
int sqlm_tok_utf8_put(uint32_t cp, char *out);        /* 1..4 bytes written */
int sqlm_tok_ucat(uint32_t cp);                        /* UCAT_* bits */
/* Append the NFC form of len bytes of UTF-8 to out (invalid bytes copied). */
void sqlm_tok_nfc(const char *s, size_t len, buf *out);

/* ------------------------------------------------------------ kern/vec.c */

float sqlm_vec_dot_f32(const float *a, const float *b, size_t n);
int sqlm_vec_act_type(int wdtype);   /* activation type a weight type multiplies */
void sqlm_vec_matvec(int wdtype, const void *w, size_t rows, size_t n, const void *x, float *out);
/* rows x n values of w (type wdtype) times m activations of sqlm_vec_act_type(wdtype),
 * ldx bytes apart: out[p * ldo + r] = dot(row r, x + p * ldx), each rounded
 * exactly as sqlm_vec_matvec rounds it.  next (next_len bytes, or NULL) is
 * prefetched on the way: the tile that comes after. */
void sqlm_vec_matmul(int wdtype, const void *w, size_t rows, size_t n, const void *x, size_t ldx, size_t m,
                float *out, size_t ldo, const void *next, size_t next_len);
/*
 * Batched products (prefill) on panels of VEC_PANEL rows repacked for VNNI,
 * when sqlm_vec_panel_supported(wdtype) (Q8_0 and Q4_0 on AVX512-VNNI CPUs):
 *   sqlm_vec_panel_act  m Q8_0 activations of nb blocks (ldx bytes apart) into
 *                  xu[m][nb][32] (quants + 128) and dx[m][nb] (scales)
 *   sqlm_vec_panel_put  one weight row of nb blocks into slot 0..VEC_PANEL-1 of a
 *                  panel of sqlm_vec_panel_bytes(nb) bytes, 64-byte aligned
 *   sqlm_vec_panel_seal clear the slots from n on and finish the panel
 *   sqlm_vec_panel_mul  out[p * VEC_PANEL + r] = row r . position p for m
 *                  positions, nbx blocks apart in xu/dx; bit for bit what
 *                  sqlm_vec_matvec gives
 */
#define VEC_PANEL 16
bool sqlm_vec_panel_supported(int wdtype);
size_t sqlm_vec_panel_bytes(size_t nb);
void sqlm_vec_panel_act(const void *x, size_t ldx, size_t m, size_t nb, uint8_t *xu, float *dx);
void sqlm_vec_panel_put(void *panel, size_t nb, int slot, int wdtype, const void *row);
void sqlm_vec_panel_seal(void *panel, size_t nb, int n);
void sqlm_vec_panel_mul(const void *panel, size_t nb, const uint8_t *xu, const float *dx, size_t nbx, size_t m,
                   float *out);
void sqlm_vec_quant_q8_0(const float *x, block_q8_0 *q, size_t n);
/* Q8_0/Q4_0 weights held as int8 values wq and float block scales ws times a
 * Q8_0 activation: as sqlm_vec_matvec's Q8_0 dot, bit for bit; or its nb block
 * products, unsummed. */
float sqlm_vec_dot_q8s(const int8_t *wq, const float *ws, const block_q8_0 *x, size_t nb);
void sqlm_vec_q8s_products(const int8_t *wq, const float *ws, const block_q8_0 *x, size_t nb, double *out);
/* Attention of one head of one query over nk keys (rows[i] + k_off: the key
 * head, rows[i] + v_off: the value head); s is scratch for nk floats. */
void sqlm_vec_attend_head(const float *q, const float *const *rows, size_t nk, size_t k_off, size_t v_off, size_t hd,
                     float *s, float *out);
void sqlm_vec_rmsnorm(float *out, const float *x, const float *g, size_t n, float eps);
void sqlm_vec_rope(float *v, const float *cs, int n_q, int n_kv, int hd, bool interleaved, float q_scale);
void sqlm_vec_swiglu(float *out, const float *gu, size_t n);
/* cos/sin pairs for position pos: cs[2i] = cos, cs[2i+1] = sin, i < hd/2. */
void sqlm_rope_table_row(const model_config *c, int pos, float *cs);

/* ------------------------------------------------------------- ir/graph.c */

#define IR_OPS(X)                                                            \
    X(INPUT)      /* token ids and positions of this step: t_in(pos, tok) */ \
    X(EMBED)      /* table lookup: row tok of the embedding */               \
    X(RMSNORM)    /* normalisation with a gain vector */                     \
    X(QUANT)      /* round the activation as the weight type's products do */ \
    X(MATMUL)     /* x @ W^T over a tiled weight table (+ optional bias) */  \
    X(ROPE)       /* rotate q and k heads by position */                     \
    X(KV_APPEND)  /* append k, v of this step to the layer's cache */        \
    X(ATTN_SCORE) /* q . k for every head and cached position (causal) */    \
    X(ATTN_MAX)   /* row maximum of the scores, per query */                 \
    X(ATTN_OUT)   /* softmax(scores - max) @ v, grouped-query heads */       \
    X(ATTN)       /* the three above as one aggregate over the cache */      \
    X(ADD)        /* residual add */                                         \
    X(SWIGLU)     /* silu(gate) * up */                                      \
    X(CONCAT)     /* in0 | in1 [| in2] per position (unfused projections) */ \
    X(LAST)       /* keep the last position only */                          \
    X(ARGMAX)     /* index of the largest logit */

enum ir_op {
#define X(name) IR_OP_##name,
    IR_OPS(X)
#undef X
    IR_OP_COUNT
};

const char *sqlm_ir_op_name(int op);

#define IR_MAX_IN 3

typedef struct ir_node {
    int op;               /* enum ir_op */
    int id;
    int in[IR_MAX_IN];    /* input node ids, -1 if unused */
    int layer;            /* -1 outside the layers */
    char name[32];        /* relation name: CTE or table */
    char weight[32];      /* weight / norm table, or "" */
    int64_t n_out;        /* output vector length */
    int64_t n_in;         /* input vector length */
    int wdtype;           /* weight dtype of a MATMUL/EMBED/QUANT */
    int tile_rows;        /* rows per stored tile */
    int64_t chunk;        /* columns per stored chunk */
    bool bias;            /* MATMUL adds the bias table row for the layer */
    int64_t bias_off;     /* ... from this offset on (unfused q, k, v) */
    bool bias_part;       /* ... and only n_out values of it (unfused) */
    int pivot;            /* ROW2COL: the weight is stored as pivot columns c0.. */
    int pivot_per;        /* ROW2COL: pivot columns per subquery */
    int64_t split_at;     /* ROW2COL: 0, or the product runs as two UNION ALL
                           * halves, rows < split_at and rows >= split_at */
    bool split_tables;    /* ... the halves being the tables {weight} and {weight}_1 */
    int blocks;           /* ROW2COL: 0, or the two tables hold this many blocks of rows
                           * (row, m) instead of rows (ir_weight.blocks) */
    bool est_small;       /* DuckDB: lower this relation's cardinality estimate (a
                           * filter on this step's positions) for the table-split
                           * product that reads it (emit.c, SWIGLU) */
    bool inplace;         /* MATMUL scans tile ids; the engine reads the tiles in place */
    bool kv_q;            /* ATTN_SCORE: q from the cache rows (kv_x's) */
    bool by_head;         /* MATMUL (fused QKV), ROPE, KV_APPEND of a merged layer: one
                           * row per (position, kv head) instead of per position */
    bool kv_x;            /* KV_APPEND: the cache rows carry q, and those of kv head 0
                           * the layer's input residual x ({in1}); ADD: x read back
                           * from them */
    bool critical;        /* must be materialised (cache, residual, output) */
    bool materialize;     /* decided by the passes: a table, not a CTE */
} ir_node;

/* Storage layout of one weight table in the model database. */
typedef struct ir_weight {
    char name[32];        /* table name, e.g. "blk0_qkv" */
    int dtype;            /* type of the values (stored as such, or dequantized to
                           * float32 by a WL_ROWS_F32 dialect) */
    int64_t n_out, n_in;
    int tile_rows;        /* rows per tile */
    int64_t chunk;        /* columns per chunk (== n_in when rows are whole) */
    int pivot;            /* ROW2COL: 0, or the number of pivot columns c0..c{pivot-1}
                           * (each n_in / pivot floats) that replace v */
    int64_t split_at;     /* ROW2COL: 0, or rows >= split_at are stored in the table
                           * "{name}_1" (row numbers kept), the rest in {name} */
    int blocks;           /* ROW2COL: 0, or the matrix is stored as this many blocks of
                           * rows over the tables {name} and {name}_1, one table row
                           * (row, m) per block: its first row and its rows in order */
} ir_weight;

typedef struct ir_graph {
    model_config cfg;
    ir_node *nodes;
    int n_nodes, cap;
    ir_weight *weights;
    int n_weights;
    int output;           /* id of the logits node */
    bool all_logits;      /* keep logits of every position (tests), not just the last */
    int row2col_per;      /* ir_opts.row2col_per */
    bool row2col;         /* the weights were laid out by the ROW2COL pass (some
                           * pivoted or split) */
    bool products_only;   /* ir_opts.products_only */
} ir_graph;

/* Options of compilation: passes (switchable for ablation) and outputs. */
typedef struct ir_opts {
    bool cte_merge;       /* chain non-critical nodes as CTEs of one statement */
    bool all_logits;      /* logits for every position of the step */
    int row2col_per;      /* ROW2COL: pivot columns per subquery (0: sqlm_row2col_per_default) */
    bool inplace;         /* products read weight tiles in place (modeldb.inplace) */
    bool fuse_attn;       /* attention as one ATTN aggregate over the cache instead of
                           * score, max and output relations (sqlm_dialect_ir_opts() turns it
                           * off where the dialect has no ATTN template) */
    bool layer_merge;     /* with cte_merge: the KV append ends the QKV statement (the
                           * cache rows carry q too), and a layer's attention and FFN
                           * and the next layer's norm, QKV and KV append are one
                           * statement (the cache rows carry the residual stream too);
                           * sqlm_dialect_ir_opts(): DuckDB pure SQL only */
    bool products_only;   /* a bound, for the benchmark only (duckbench --products-only):
                           * every operator but the products, the embedding, the cache
                           * append and the last position copies its input, so a step
                           * costs what its products cost in this SQL; layer-merged
                           * DuckDB programs only; the logits are meaningless */
} ir_opts;

/* Table fusion is a storage layout: import writes blk{L}_qkv and blk{L}_gu
 * (fused) or blk{L}_q/_k/_v and blk{L}_gate/_up; the graph builder follows
 * whatever sqlm_weight lists, joining unfused outputs with CONCAT.
 *
 * ROW2COL is a storage layout too: pivot columns instead of one vector per
 * row (sqlm_row2col_pivots(); the matmul template then sums one dot product per
 * pivot column, pivot_per columns per subquery, and lines the subqueries up
 * with POSITIONAL JOIN), or a layer matrix's rows split over two tables
 * (sqlm_row2col_split_tables(); the product runs as two UNION ALL halves), each
 * table row a block of consecutive matrix rows (sqlm_row2col_blocks()) or, with
 * R2C_SPLIT_ROWS, one matrix row; chosen per matrix at import. */
enum { R2C_AUTO = 0, R2C_OFF, R2C_ON, R2C_SPLIT, R2C_SPLIT_ROWS };
/* Pivot columns for an n_out x n_in float32 matrix under mode (R2C_*), or 0
 * to store it unpivoted.  The measured rules live in graph.c and only there. */
int sqlm_row2col_pivots(int mode, int64_t n_out, int64_t n_in);
int sqlm_row2col_per_default(int pivots);
/* ROW2COL's row split: the first row of a product's second half, or 0 */
int64_t sqlm_row2col_split(bool row2col, int64_t n_out, int64_t n_in);
/* ROW2COL's table split of a layer matrix: the first row stored in the
 * second table, or 0 to keep one table */
int64_t sqlm_row2col_split_tables(int mode, int64_t n_out, int64_t n_in);
/* ROW2COL's blocks of a split layer matrix made of n_part parts of part[i]
 * rows, each part cut in n_unit equal units (a fused QKV's kv heads) where
 * it divides: the first row of each block, in row order, in first[], and the
 * table (0 or 1) that holds it in table[]; returns the number of blocks (at
 * most max), 0 if the matrix cannot be cut so. */
int sqlm_row2col_blocks(const int64_t *part, int n_part, int n_unit, int64_t *first, int *table, int max);

/* Build the Llama-family graph for cfg over the weights in ws (copied). */
int sqlm_ir_build_llama(ir_graph *g, const model_config *cfg, const ir_weight *ws, int n_ws,
                   const ir_opts *o);
void sqlm_ir_free(ir_graph *g);
const ir_weight *sqlm_ir_find_weight(const ir_graph *g, const char *name);
/* Pass: decide which nodes are materialised (CTE merging). */
void sqlm_opt_cte_merge(ir_graph *g, bool enabled);

/* ------------------------------------------------------------ sqlgen/ */

enum { DIA_SQLITE = 0, DIA_DUCKDB, DIA_DUCKDB_NATIVE, DIA_COUNT };

/* How a dialect stores weight matrices (a row of the dialect table). */
enum {
    WL_TILES,             /* (id, row, col, v BLOB): tiles of tile_rows rows in the file's dtype */
    WL_ROWS_F32,          /* (id, row, col, v <float list>): one matrix row (or chunk) per table
                           * row, dequantized to float32; Q8_0/Q4_0 rows as blocks instead:
                           * (id, row, col, v <blocks of 32 int8 values>, s <float scales>) */
};

/* The facts about a dialect that import and the engines need; the SQL
 * templates themselves stay private to emit.c. */
typedef struct sql_dialect {
    const char *name;
    const char *t_vec;       /* column type of a float vector: BLOB, FLOAT[] */
    const char *t_any;       /* column type of a value of any type ("" = untyped) */
    const char *pk;          /* " PRIMARY KEY" on keys that help lookups, or "" */
    const char *cte_mat;     /* keyword that forces a CTE to be computed once */
    int weight_layout;       /* WL_* */
    int vec_val;             /* how a float vector is bound: DBV_BLOB or DBV_VEC */
    const char *q_blocks;    /* WL_ROWS_F32: statements (printf format, %1$s = table) that
                              * make a quantized weight table from <table>_flat, filled with
                              * lists of the integer values, in the int8 blocks the templates
                              * read */
    bool row_blocks;         /* WL_ROWS_F32: has ROW2COL's blocks (FLOAT[][] rows of
                              * matrix rows, appended by the engine) */
    bool fused_attn;         /* has a template for the fused ATTN node */
    int base;                /* dialect whose templates stand in for missing ones, or -1 */
    const char *vacuum;      /* statement that frees the rows DELETE left behind, run by a
                              * session after its reset (not in the printed script), or NULL */
} sql_dialect;

typedef struct sql_stmt {
    char *name;           /* the node that ends the statement */
    char *sql;
} sql_stmt;

/* A compiled program: setup once per session, reset per sequence, step per batch. */
typedef struct sql_program {
    char *setup;          /* CREATE TEMP TABLE ... */
    char *reset;          /* clear KV cache and step tables */
    sql_stmt *steps;
    int n_steps;
    char *logits_table;   /* table holding (pos, v) logits after a step */
    char *next_token;     /* SELECT pos, tok: the greedy next token, in SQL */
} sql_program;

int sqlm_dialect_from_name(const char *name);
const sql_dialect *sqlm_dialect_get(int dia);   /* NULL if out of range */
/* o less what the dialect cannot do (fuse_attn without an ATTN template). */
ir_opts sqlm_dialect_ir_opts(int dia, ir_opts o);
/* Append text to out with the dialect's {vec}, {any} and {pk} filled in. */
void sqlm_dialect_subst(int dia, const char *text, buf *out);
/* Compile g into a program for dialect dia; free with sqlm_sql_program_free(). */
int sqlm_emit_program(const ir_graph *g, int dia, sql_program *out);
void sqlm_sql_program_free(sql_program *p);
/* The whole program as one printable script. With n_toks > 0 the script
 * also inserts those tokens at positions 0.. and ends with the query of the
 * next token, so any client of the engine can run it unchanged. Caller frees. */
char *sqlm_sql_program_text(const sql_program *p, const int32_t *toks, int n_toks);

/* ------------------------------------------------------------ db/tiles.c */

/*
 * Weight tiles read in place: "the bytes of tile id of weight wi".  The mmap
 * backend maps the SQLite file read from descriptor fd (borrowed: the caller
 * keeps it open and the file unchanged while the store lives) and walks each
 * weight table's b-tree from roots[i], checking every offset against the file
 * and every tile against the layout ws[i].  A malformed file is an
 * SQLM_FORMAT error naming the table, never an out-of-bounds read.
 * Free with sqlm_tiles_close().
 */
typedef struct tile_store tile_store;
struct wcache;
int sqlm_tiles_open(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots, int n);
/* The same, then served by a memory budget's weight cache instead of the
 * mapping (the walk drops the mapping's pages as it goes, the mapping is
 * gone when it returns); sqlm_tiles_get() may then block on a read and returns
 * NULL on an I/O error (sqlm_wcache_error() says which). */
int sqlm_tiles_open_cached(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots,
                      int n, struct wcache *wc);
void sqlm_tiles_close(tile_store *s);
int sqlm_tiles_find(const tile_store *s, const char *name);          /* weight index, or -1 */
const ir_weight *sqlm_tiles_layout(const tile_store *s, int wi);
int64_t sqlm_tiles_count(const tile_store *s, int wi);               /* tiles of weight wi */
/* Tile id of weight wi: *len bytes, valid until sqlm_tiles_put(s, wi, id); NULL if
 * id is out of range.  Safe to call from several threads at once. */
const void *sqlm_tiles_get(tile_store *s, int wi, int64_t id, size_t *len);
void sqlm_tiles_put(tile_store *s, int wi, int64_t id);
/* A hint: tile id will be read soon (its b-tree record by a scan, then its bytes). */
void sqlm_tiles_prefetch(tile_store *s, int wi, int64_t id);

/* ------------------------------------------------------------ db/wcache.c */

enum { WC_IO_AUTO, WC_IO_DIRECT, WC_IO_BUFFERED };

/* Counters of a weight cache, cumulative since it was opened. */
typedef struct wcache_stats {
    uint64_t fetch_bytes;    /* pages handed to the engine */
    uint64_t hit_bytes;      /* of which from the resident set */
    uint64_t read_bytes;     /* read from the file while running (streamed + misses) */
    uint64_t sync_bytes;     /* of which read by the compute thread itself */
    uint64_t load_bytes;     /* read once to fill the resident set */
    uint64_t resyncs;        /* times the reader was re-aimed */
    uint64_t reads;          /* reads the reader threads made (streamed pages) */
    double wait_s;           /* time compute threads waited for reads */
    double load_s;           /* time filling the resident set */
    double reader_s;         /* time the reader thread spent reading */
    size_t resident_bytes;   /* pinned pages */
    size_t sched_bytes;      /* pages one step reads */
    size_t ring_bytes;       /* streaming buffers */
    int direct;              /* O_DIRECT reads */
    size_t heap_peak;        /* the engine's heap: most it held, */
    size_t heap_limit;       /* and its share of the budget */
} wcache_stats;

typedef struct wcache wcache;

/* The VFS that serves a cached file (registered on first use), or NULL. */
const char *sqlm_wcache_vfs(void);
/* A cache for the file at path: files opened read-only as a main database
 * through sqlm_wcache_vfs() use it.  ring_bytes of streaming buffers. */
int sqlm_wcache_open(wcache **out, const char *path, int io_mode, size_t ring_bytes);
void sqlm_wcache_close(wcache *wc);
int sqlm_wcache_trace(wcache *wc);                      /* record the next step's pages */
size_t sqlm_wcache_traced_bytes(const wcache *wc, size_t *hot_bytes);
int sqlm_wcache_plan(wcache *wc, size_t resident_cap);  /* pin, then stream the rest */
void sqlm_wcache_get_stats(wcache *wc, wcache_stats *st);
const char *sqlm_wcache_error(wcache *wc);              /* the first I/O error, or NULL */
/* In-place reads of len bytes inside one page at offset (a tile reader's
 * backend); NULL when the cache is off or on error. */
const void *sqlm_wcache_fetch(wcache *wc, int64_t offset, size_t len);
void sqlm_wcache_unfetch(wcache *wc, int64_t offset, const void *p);
void sqlm_wcache_unfetch_at(wcache *wc, int64_t offset);   /* the same, by offset alone */

/* ------------------------------------------------------------- db/ */

enum { DBV_NULL, DBV_INT, DBV_REAL, DBV_TEXT, DBV_BLOB, DBV_VEC };

/*
 * A value crossing the engine interface; p borrowed for TEXT/BLOB/VEC, n in
 * bytes.  DBV_VEC is a float32 vector bound as the dialect's vector type
 * (SQLite: a BLOB of the same bytes; DuckDB: FLOAT[]).  Vectors read back
 * as DBV_BLOB of little-endian float32 on every engine; TEXT read back is
 * NUL-terminated.
 */
typedef struct db_val {
    int type;
    int64_t i;
    double d;
    const void *p;
    size_t n;
} db_val;

static inline db_val dbv_int(int64_t i) { return (db_val){ .type = DBV_INT, .i = i }; }
static inline db_val dbv_real(double d) { return (db_val){ .type = DBV_REAL, .d = d }; }
static inline db_val dbv_blob(const void *p, size_t n) { return (db_val){ .type = DBV_BLOB, .p = p, .n = n }; }
static inline db_val dbv_vec(const float *p, size_t n_floats) {
    return (db_val){ .type = DBV_VEC, .p = p, .n = n_floats * sizeof(float) };
}
/* rows of width floats each, n_floats in all: a FLOAT[][] value (DuckDB's
 * append only) */
static inline db_val dbv_rows(const float *p, size_t n_floats, int64_t width) {
    return (db_val){ .type = DBV_VEC, .i = width, .p = p, .n = n_floats * sizeof(float) };
}
static inline db_val dbv_text(const char *s) {
    return (db_val){ .type = s ? DBV_TEXT : DBV_NULL, .p = s, .n = s ? __builtin_strlen(s) : 0 };
}

typedef struct engine_opts {
    int threads;             /* worker threads (0 = engine default) */
    bool create;             /* create a new database (import) */
    bool readonly;           /* never write the model database (run) */
    int page_size;           /* bytes, create only (0 = engine default) */
    bool plain;              /* no sqlm settings or functions: the engine as any
                              * stock client opens it (tests of printed scripts) */
    size_t mem_budget;       /* bytes of resident memory for the whole process, 0 = none */
    int mem_io;              /* WC_IO_*: how a budgeted run reads the model file */
    bool copy_tiles;         /* sqlm_modeldb_open: leave weight tiles to the engine's
                              * copying reads, do not map them (ablation, tests) */
} engine_opts;

typedef struct engine engine;
typedef int (*db_row_cb)(void *ctx, int ncol, const db_val *vals);

/* The backend vtable (sqlite3_io_methods). */
typedef struct db_methods {
    const char *name;
    int dialect;
    int (*open)(engine **out, const char *path, const engine_opts *o);
    void (*close)(engine *e);
    /* Run one or more statements, no results. */
    int (*exec)(engine *e, const char *sql);
    /* Run a query; cb is called per row (return non-zero to stop). */
    int (*query)(engine *e, const char *sql, const db_val *params, int n_params,
                 db_row_cb cb, void *ctx);
    /* Prepare a program's statements once; then run them per step. */
    int (*load_program)(engine *e, const sql_program *p);
    int (*run_program)(engine *e, double *stmt_seconds /* [n_steps] or NULL */);
    /* Optional: read the tiles of weight tables ws in place from now on, for
     * the templates' in-place products.  SQLM_OK when that works; otherwise
     * the copying path stays and sqlm_errmsg() says why. */
    int (*map_weights)(engine *e, const ir_weight *ws, int n);
    /* Remove a database file and the engine's side files (journal, WAL). */
    void (*remove)(const char *path);
    /* Memory budget (NULL where the engine has no weight cache): cap the
     * engine's heap at heap_limit bytes and record the pages the next step
     * reads; then keep weight_bytes of them resident and stream the rest. */
    int (*mem_trace)(engine *e, size_t heap_limit);
    int (*mem_plan)(engine *e, size_t weight_bytes);
    bool (*mem_stats)(engine *e, struct wcache_stats *st);   /* false: no cache */
    /* Optional bulk load: n_rows rows of ncol values (row-major) appended to
     * table, inside the current transaction; NULL: import uses INSERTs. */
    int (*append)(engine *e, const char *table, int ncol, const db_val *vals, int n_rows);
} db_methods;

struct engine {
    const db_methods *m;
};

/* An engine by name ("sqlite", "duckdb"); NULL if unknown (db/registry.c). */
const db_methods *sqlm_db_find(const char *name);
/* The engine that wrote the database file at path (by its magic), or NULL. */
const db_methods *sqlm_db_sniff(const char *path);
/* A db_row_cb that stores the row's first value, an integer, in *(int64_t *)ctx. */
int sqlm_db_int_row(void *ctx, int ncol, const db_val *vals);
extern const db_methods sqlm_db_sqlite;
extern const db_methods sqlm_db_duckdb;
extern const db_methods sqlm_db_duckdb_native;   /* DuckDB with sqlm's C functions (same files) */
/* Load libduckdb.so once ($SQLM_DUCKDB_LIB, .deps/duckdb/..., the system's);
 * SQLM_OK, or SQLM_UNSUPPORTED with a message saying how to install it. */
int sqlm_duckdb_load(void);
const char *sqlm_duckdb_lib_version(void);   /* after sqlm_duckdb_load(), else NULL */

/* ---------------------------------------------------------- run/modeldb.c */

#define SQLM_DB_FORMAT 1

/* Options of `sqlm import`. */
typedef struct import_opts {
    const char *engine;      /* "sqlite" (default) */
    const char *tok_path;    /* llama2.c tokenizer override or NULL */
    int wtype;               /* storage type of matrices, -1 = as in the file */
    size_t tile_bytes;       /* target bytes per stored tile (0 = default) */
    bool progress;           /* progress lines on stderr */
    size_t mem_budget;       /* resident memory cap (0 = none): engine cache, and the
                              * model file's mapping dropped as it is consumed */
    bool no_fuse;            /* table fusion off: separate q/k/v and gate/up tables */
    int row2col;             /* R2C_AUTO (the rule), R2C_OFF, R2C_ON (pivot every matrix),
                              * R2C_SPLIT (split every layer matrix), R2C_SPLIT_ROWS (the
                              * same, a table row per matrix row, not per block of rows);
                              * WL_ROWS_F32 only */
} import_opts;

/* Import a model file into a new database at out_path (written to a
 * temporary name, then renamed: an interrupted import leaves nothing that
 * looks complete). */
int sqlm_import(const char *model_path, const char *out_path, const import_opts *o);

/* A model database opened for inference. */
typedef struct modeldb {
    engine *e;
    model_config cfg;
    ir_weight *weights;
    int n_weights;
    vocab voc;
    tokenizer *tok;
    bool inplace;            /* the engine reads weight tiles in place */
    char note[320];          /* why it does not, when it was tried ("" if not) */
} modeldb;

/* Open path read-only on the named engine (NULL: the engine that wrote the
 * file, by its magic); check it is a complete sqlm
 * database; load config, weight layout and vocabulary. */
int sqlm_modeldb_open(modeldb *db, const char *path, const char *engine_name, const engine_opts *o);
void sqlm_modeldb_close(modeldb *db);
/* Config fields as (key, value) rows: shared by the writer and the reader. */
int sqlm_modeldb_write_config(engine *e, const model_config *c);
/* The weight layout recorded in sqlm_weight; *out malloc'd, caller frees. */
int sqlm_modeldb_read_weights(engine *e, ir_weight **out, int *n);

/* ---------------------------------------------------------- run/generate.c */

typedef struct sampler_opts {
    float temp;              /* 0 = greedy */
    int top_k;               /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off */
    float freq_penalty;      /* subtracted per occurrence in the window; 0 = off */
    float presence_penalty;  /* subtracted once if present in the window; 0 = off */
    int repeat_last_n;
    uint64_t seed;
} sampler_opts;

typedef struct session session;

typedef struct session_opts {
    ir_opts ir;
    int n_ctx;               /* context length (0 = the model's; set by sqlm_exec_init) */
    size_t mem_budget;       /* the engine's budget (engine_opts.mem_budget), 0 = none */
    bool quiet;              /* no notes on stderr */
} session_opts;

int sqlm_exec_init(session **out, modeldb *db, const session_opts *o);
void sqlm_exec_free(session *s);
/* Forget the sequence (empties the KV cache). */
int sqlm_exec_reset(session *s);
/* Feed n tokens at the next positions; *logits (owned by s, valid until the
 * next call) gets vocab_size floats for the last one, or n * vocab_size when
 * ir.all_logits was set. */
int sqlm_exec_eval(session *s, const int32_t *toks, int n, const float **logits);
/* Make the sequence toks[0..n) and set *logits as sqlm_exec_eval() does for
 * its last token, feeding only the tokens past the longest prefix of toks
 * the KV cache already holds.  When the cache holds tokens toks lacks, or
 * all n of them, the sequence starts over (sqlm_exec_reset()).  *n_kept (may
 * be NULL) gets the number of tokens reused.  SQLM_RANGE when n > n_ctx. */
int sqlm_exec_feed(session *s, const int32_t *toks, int n, const float **logits, int *n_kept);
/* The engine's weight-cache counters; false when the session has no budget. */
bool sqlm_exec_mem_stats(session *s, wcache_stats *st);
/* The context length in force (a budget may have capped the model's). */
int sqlm_exec_n_ctx(const session *s);
/* How the budget was split (process, KV cache, buffers, weights), or NULL. */
const char *sqlm_exec_mem_plan(const session *s);

/* Seconds spent in each statement of the session's program, summed over
 * every step so far (the program's statement i is *prog->steps[i]). */
const double *sqlm_exec_stmt_seconds(const session *s, const sql_program **prog);

/* Pick the next token from logits (vocab_size floats; modified in place). */
int32_t sqlm_sample_next(const sampler_opts *o, float *logits, int n_vocab, const int32_t *hist,
                    int n_hist, uint64_t *rng);

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

/* ------------------------------------------- tok/jinja.c, tok/chat.c */

/*
 * Chat templates: a sandboxed Jinja subset (jinja.c) and the chat-level API
 * over it (chat.c).  Templates only see the variables passed in; there is no
 * file, import or Python object access.  Every render is bounded in output,
 * memory, steps and nesting; exceeding a bound is an SQLM_RANGE error.
 */
typedef struct chat_msg {
    const char *role;        /* "system", "user", "assistant", "tool" */
    const char *content;     /* UTF-8 text; NULL renders as none */
} chat_msg;

/* Resource bounds of one render (0 in a field: the default). */
typedef struct jinja_limits {
    size_t max_output;       /* bytes appended to out; default 1 MiB + 2x input */
    size_t max_memory;       /* bytes of working memory; default 64 MiB + 16x input */
    int64_t max_steps;       /* statements + expression nodes; default 4M */
    int max_depth;           /* block / bracket / macro nesting; default 64 */
} jinja_limits;

/* An extra template variable (e.g. enable_thinking). */
enum { JINJA_BOOL, JINJA_INT, JINJA_STR, JINJA_NONE };
typedef struct jinja_var {
    const char *name;
    int type;                /* JINJA_* */
    int64_t i;               /* JINJA_BOOL (0/1), JINJA_INT */
    const char *s;           /* JINJA_STR */
} jinja_var;

/* Everything a chat template can see. */
typedef struct chat_vars {
    const chat_msg *msgs;    /* [n_msgs] -> messages (list of {role, content}) */
    int n_msgs;
    bool add_generation_prompt;
    const char *bos_token;   /* NULL renders as "" */
    const char *eos_token;   /* NULL renders as "" */
    const jinja_var *extra;  /* [n_extra] more variables, or NULL */
    int n_extra;
} chat_vars;

/*
 * Render tmpl (tmpl_len bytes, need not be NUL-terminated) with the variables
 * in v and append the text to out.  HF semantics: trim_blocks, lstrip_blocks,
 * the final newline of the template dropped, no autoescape.  lim may be NULL.
 * On failure out is restored to its old length and sqlm_errmsg() reads
 * "template: line L col C: ...".  Returns SQLM_OK, SQLM_FORMAT (syntax),
 * SQLM_ERROR (runtime: type error, undefined value, raise_exception()),
 * SQLM_RANGE (a limit) or SQLM_NOMEM.
 */
int sqlm_jinja_render(const char *tmpl, size_t tmpl_len, const chat_vars *v,
                 const jinja_limits *lim, buf *out);

/* sqlm_jinja_render() of a NUL-terminated template with default limits. */
int sqlm_chat_render(const char *tmpl, const chat_msg *msgs, int n_msgs, bool add_generation_prompt,
                const char *bos_token, const char *eos_token, buf *out);

/*
 * Built-in template text for a style: "chatml" (Qwen, SmolLM), "llama2"
 * ([INST] <<SYS>>), "llama3" (<|start_header_id|>), "zephyr" (<|user|>).
 * Returns static text, or NULL for an unknown name.
 */
const char *sqlm_chat_builtin(const char *name);

/*
 * Guess a style from the vocabulary: has_piece(ctx, piece) says whether a
 * token with that exact text exists; spm says the vocabulary is SentencePiece.
 * Returns "chatml", "llama3", "llama2", "zephyr", or NULL when nothing fits.
 */
const char *sqlm_chat_guess_style(bool (*has_piece)(void *ctx, const char *piece), void *ctx, bool spm);

/* The template for v: its own chat_template, else the guessed built-in, else NULL. */
const char *sqlm_chat_vocab_template(const vocab *v);

#endif /* SQLM_INT_H */
