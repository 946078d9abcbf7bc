/*
 * ref.h - the plain C reference forward pass: the project's oracle.
 *
 * A Llama-family transformer in fp32 arrays, in the style of llama2.c run.c,
 * with double accumulation so its logits can judge every SQL engine.  It
 * deliberately does no batching, no sampling and no tokenizing: one token in,
 * one row of logits out.
 *
 * A second mode, ref_init_stored(), is the speed baseline of `make bench`
 * (bench/refbench.c): the same forward pass, but the matrices stay in their
 * stored type inside the model's mapping and are multiplied with sqlm's SIMD
 * kernels (src/kern/vec.c, activation quantized to Q8_0 for Q8_0/Q4_0
 * weights), each product's rows split over a few threads.
 */
#ifndef SQLM_REF_H
#define SQLM_REF_H

#include <stdbool.h>

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"

/* The matrices of a layer, to index ref_model.wdtype. */
enum { REF_WQ, REF_WK, REF_WV, REF_WO, REF_WGATE, REF_WUP, REF_WDOWN, REF_W_COUNT };

typedef struct ref_model {
    model_config cfg;        /* copied from the model */
    int max_seq;             /* positions the KV cache holds */
    bool f32_accum;          /* matmuls accumulate in float (fast) instead of double */
    bool ggml_act;           /* round matmul inputs as ggml's CPU backend does: to Q8_0
                                blocks for Q8_0/Q4_0 weights, to fp16 for F16 weights, to
                                sqlm_vec_act_type()'s type for the others */

    /* Weights, dequantized to fp32.  q_dim = n_head*head_dim, kv_dim = n_head_kv*head_dim. */
    float *token_embd;       /* [vocab_size][dim] */
    float *attn_norm;        /* [n_layer][dim] */
    float *wq;               /* [n_layer][q_dim][dim] */
    float *wk;               /* [n_layer][kv_dim][dim] */
    float *wv;               /* [n_layer][kv_dim][dim] */
    float *bq;               /* [n_layer][q_dim] or NULL (cfg.qkv_bias == 0) */
    float *bk;               /* [n_layer][kv_dim] or NULL */
    float *bv;               /* [n_layer][kv_dim] or NULL */
    float *wo;               /* [n_layer][dim][q_dim] */
    float *ffn_norm;         /* [n_layer][dim] */
    float *w_gate;           /* [n_layer][hidden_dim][dim] */
    float *w_up;             /* [n_layer][hidden_dim][dim] */
    float *w_down;           /* [n_layer][dim][hidden_dim] */
    float *output_norm;      /* [dim] */
    float *output;           /* [vocab_size][dim]; == token_embd when tied */
    double *rope_freq;       /* [head_dim/2] angle per position, after llama3 scaling */
    int *wdtype;             /* [n_layer][REF_W_COUNT] file dtype of each matrix */
    int out_dtype;           /* file dtype of the output head */

    /* Activations of the current token. */
    float *x;                /* [dim] residual stream */
    float *xb;               /* [dim] normed input / projection output */
    float *xb2;              /* [q_dim] attention output before wo */
    float *q;                /* [q_dim] */
    float *hb;               /* [hidden_dim] gate, then silu(gate)*up */
    float *hb2;              /* [hidden_dim] up */
    double *att;             /* [max_seq] attention weights of one head */
    float *xq;               /* [MAX(dim, q_dim, hidden_dim)] rounded matmul input (ggml_act) */
    float *logits;           /* [vocab_size] */
    float *key_cache;        /* [n_layer][max_seq][kv_dim] */
    float *value_cache;      /* [n_layer][max_seq][kv_dim] */

    /* Stored mode (ref_init_stored): the matrices, the thread pool; NULL in
     * the default mode.  Then the fp32 matrix fields above are NULL too. */
    struct ref_stored *st;
} ref_model;

/*
 * Dequantize every tensor of m into a new ref_model with a KV cache of
 * MIN(cfg.seq_len, 4096) positions.  m may be freed afterwards.  On success
 * *out is owned by the caller (free with ref_free()); on failure it is NULL
 * and sqlm_errmsg() names the missing or misshapen tensor.
 */
int ref_init(ref_model **out, const model *m);
/* As ref_init() with a KV cache of max_seq positions (0: the default). */
int ref_init_ctx(ref_model **out, const model *m, int max_seq);
void ref_free(ref_model *r);        /* accepts NULL */

/*
 * The stored mode: only norms, biases and activations are allocated; the
 * matrices (and the embedding, read a row at a time) are borrowed from m,
 * which must stay open until ref_free(r).  Products run on `threads` threads
 * (the caller's and threads - 1 workers), the rows of each product (or of
 * the q/k/v and gate/up products together) split evenly between them.
 * f32_accum and ggml_act have no effect: the kernels decide the rounding.
 */
int ref_init_stored(ref_model **out, const model *m, int max_seq, int threads);

/*
 * Run token at position pos (positions 0..pos-1 must have been run before:
 * their keys and values are in the cache).  Returns vocab_size logits owned
 * by r, valid until the next call, or NULL (sqlm_errmsg() says why) if token
 * or pos is out of range.
 */
const float *ref_forward(ref_model *r, int token, int pos);

/* Index of the largest of n values, the lowest index on ties. */
int ref_argmax(const float *v, int n);

#endif /* SQLM_REF_H */
