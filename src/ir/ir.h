/*
 * ir.h - the graph IR: operators, nodes and the storage layout of weight
 * tables (ir.c), the Llama-family builder (llama.c) and the CTE-merging
 * pass (cte_merge.c).  One section per file.  Which layout a matrix gets is
 * decided at import by layout/layout.c; the graph follows ir_weight.
 */
#ifndef SQLM_IR_H
#define SQLM_IR_H

#include "../model/model.h"

/* ---------------------------------------------------------------- ir/ir.c */

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
    int64_t row_split;    /* ROW2COL: 0, or a product over this table runs as two
                           * halves, rows below and from row_split (not stored: set
                           * at open by the engine's layout rules, layout/layout.h) */
    int pivot_per;        /* ROW2COL: pivot columns per subquery (as row_split) */
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
    const struct sql_emit_hook *emit_hook;   /* ir_opts.emit_hook */
} ir_graph;

/* Options of compilation: passes (switchable for ablation) and outputs. */
typedef struct ir_opts {
    bool cte_merge;       /* chain non-critical nodes as CTEs of one statement */
    bool all_logits;      /* logits for every position of the step */
    int row2col_per;      /* ROW2COL: pivot columns per subquery (0: the weight's pivot_per) */
    bool inplace;         /* products read weight tiles in place (modeldb.inplace) */
    bool fuse_attn;       /* attention as one ATTN aggregate over the cache instead of
                           * score, max and output relations (sqlm_dialect_ir_opts() turns it
                           * off where the dialect has no ATTN template) */
    bool layer_merge;     /* with cte_merge: the KV append ends the QKV statement (the
                           * cache rows carry q too), and a layer's attention and FFN
                           * and the next layer's norm, QKV and KV append are one
                           * statement (the cache rows carry the residual stream too);
                           * sqlm_dialect_ir_opts(): where the dialect's layer_merge says */
    const struct sql_emit_hook *emit_hook;   /* a per-node template override the emitter
                           * consults (sqlgen.h; bench/bound.c), or NULL */
} ir_opts;

/* Free a graph's nodes and its copy of the weights, and zero it; g may be
 * NULL or zeroed. */
void sqlm_ir_free(ir_graph *g);
/* The weight table called name, or NULL; it belongs to g (valid until
 * sqlm_ir_free(g)). */
const ir_weight *sqlm_ir_find_weight(const ir_graph *g, const char *name);

/* Table fusion is a storage layout: import writes blk{L}_qkv and blk{L}_gu
 * (fused) or blk{L}_q/_k/_v and blk{L}_gate/_up; the graph builder follows
 * whatever sqlm_weight lists, joining unfused outputs with CONCAT.
 *
 * ROW2COL is a storage layout too: pivot columns instead of one vector per
 * row (layout_rules.pivots; the matmul template then sums one dot product per
 * pivot column, pivot_per columns per subquery, and lines the subqueries up
 * with POSITIONAL JOIN), or a layer matrix's rows split over two tables
 * (layout_rules.split_tables; the product runs as two UNION ALL halves), each
 * table row a block of consecutive matrix rows (sqlm_layout_blocks()) or, with
 * R2C_SPLIT_ROWS, one matrix row; chosen per matrix at import. */
enum { R2C_AUTO = 0, R2C_OFF, R2C_ON, R2C_SPLIT, R2C_SPLIT_ROWS };
/* The rules that choose a layout per matrix live with the engines' layout
 * defaults (layout/layout.h); the graph follows what ir_weight says. */

/* ------------------------------------------------------------ ir/llama.c */

/* Build the Llama-family graph for cfg over the weights in ws (copied). */
int sqlm_ir_build_llama(ir_graph *g, const model_config *cfg, const ir_weight *ws, int n_ws,
                   const ir_opts *o);

/* -------------------------------------------------------- ir/cte_merge.c */

/* Pass: decide which nodes are materialised (CTE merging). */
void sqlm_opt_cte_merge(ir_graph *g, bool enabled);

#endif /* SQLM_IR_H */
