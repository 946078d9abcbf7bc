/*
 * llama.c - the graph IR builder: a list of operator nodes in topological order,
 * built for the Llama family (RMSNorm, RoPE, grouped-query attention with a
 * KV cache, SwiGLU, tied or separate head, optional q/k/v biases).
 *
 * The graph knows shapes and weight layouts, nothing about SQL: sqlgen/ turns
 * each node into one template instance, and opt passes only flip flags on
 * nodes (materialise or not), never touch SQL text.
 *
 * Each product follows the storage layout import chose (ir_weight, decided
 * by layout/layout.c); the builder ends with the CTE-merging pass (cte_merge.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* Append a node; returns its id or -1 (error recorded). */
static int node(ir_graph *g, int op, int layer, const char *name, int a, int b, int c) {
    if (g->n_nodes == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        ir_node *p = realloc(g->nodes, (size_t)cap * sizeof *p);
        if (!p) return sqlm_error(SQLM_NOMEM, "out of memory building the graph"), -1;
        g->nodes = p;
        g->cap = cap;
    }
    ir_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->id = g->n_nodes;
    n->layer = layer;
    n->in[0] = a, n->in[1] = b, n->in[2] = c;
    if (layer >= 0) snprintf(n->name, sizeof n->name, "l%d_%s", layer, name);
    else snprintf(n->name, sizeof n->name, "%s", name);
    return g->n_nodes++;
}

/* A matrix product with weight table wname.  Weights of any type but F32
 * get a QUANT node first: the input rounded as llama.cpp's products of that
 * type round it (Q8_0 blocks for Q8_0/Q4_0, fp16 for F16), or passed through
 * where a dialect's own kernel does the rounding. */
static int matmul(ir_graph *g, int layer, const char *name, int x, const char *wname, bool bias) {
    const ir_weight *w = sqlm_ir_find_weight(g, wname);
    if (!w) return sqlm_error(SQLM_FORMAT, "weight table %s missing", wname), -1;
    if (w->dtype != DT_F32) {
        char qn[32];
        snprintf(qn, sizeof qn, "%s_in", name);
        x = node(g, IR_OP_QUANT, layer, qn, x, -1, -1);
        if (x < 0) return -1;
        g->nodes[x].wdtype = w->dtype;
        g->nodes[x].n_out = w->n_in;
        g->nodes[x].n_in = w->n_in;
    }
    int m = node(g, IR_OP_MATMUL, layer, name, x, -1, -1);
    if (m < 0) return -1;
    ir_node *n = &g->nodes[m];
    snprintf(n->weight, sizeof n->weight, "%s", w->name);
    n->n_out = w->n_out;
    n->n_in = w->n_in;
    n->wdtype = w->dtype;
    n->tile_rows = w->tile_rows;
    n->chunk = w->chunk;
    n->bias = bias;
    n->pivot = w->pivot;
    n->pivot_per = w->pivot ? MIN(g->row2col_per > 0 ? g->row2col_per : w->pivot_per, w->pivot) : 0;
    n->blocks = w->blocks;
    n->split_tables = w->split_at > 0 || w->blocks > 0;
    if (w->split_at > 0) n->split_at = w->split_at;
    else if (!n->blocks && w->dtype == DT_F32 && (w->chunk <= 0 || w->chunk >= w->n_in))
        n->split_at = w->row_split;
    return m;
}

/*
 * The projection blk{L}_{fused}, or, when import kept the parts apart (table
 * fusion off), one product per part joined by CONCAT.  The bias row of the
 * layer covers the fused rows; part i reads it from its offset on.
 */
static int projection(ir_graph *g, int layer, const char *name, int x, const char *fused,
                      const char *const *parts, int n_parts, bool bias) {
    char wn[32], nn[32];
    snprintf(wn, sizeof wn, "blk%d_%s", layer, fused);
    if (sqlm_ir_find_weight(g, wn)) return matmul(g, layer, name, x, wn, bias);
    int in[3] = { -1, -1, -1 };
    int64_t off = 0, n_out = 0;
    for (int i = 0; i < n_parts; i++) {
        snprintf(wn, sizeof wn, "blk%d_%s", layer, parts[i]);
        snprintf(nn, sizeof nn, "%s", parts[i]);
        if ((in[i] = matmul(g, layer, nn, x, wn, bias)) < 0) return -1;
        g->nodes[in[i]].bias_off = off;
        g->nodes[in[i]].bias_part = true;
        off += g->nodes[in[i]].n_out;
    }
    n_out = off;
    int c = node(g, IR_OP_CONCAT, layer, name, in[0], in[1], in[2]);
    if (c >= 0) g->nodes[c].n_out = n_out;
    return c;
}

static int norm(ir_graph *g, int layer, const char *name, int x, const char *kind) {
    int id = node(g, IR_OP_RMSNORM, layer, name, x, -1, -1);
    if (id < 0) return -1;
    snprintf(g->nodes[id].weight, sizeof g->nodes[id].weight, "%s", kind);
    g->nodes[id].n_out = g->cfg.dim;
    return id;
}

int sqlm_ir_build_llama(ir_graph *g, const model_config *cfg, const ir_weight *ws, int n_ws,
                   const ir_opts *o) {
    memset(g, 0, sizeof *g);
    g->cfg = *cfg;
    g->all_logits = o->all_logits;
    g->row2col_per = o->row2col_per;
    g->emit_hook = o->emit_hook;
    g->weights = malloc((size_t)(n_ws ? n_ws : 1) * sizeof *ws);
    if (!g->weights) return sqlm_error(SQLM_NOMEM, "out of memory building the graph");
    memcpy(g->weights, ws, (size_t)n_ws * sizeof *ws);
    g->n_weights = n_ws;

    const int64_t hd = cfg->head_dim, q_dim = (int64_t)cfg->n_head * hd;
    const int64_t kv_dim = (int64_t)cfg->n_head_kv * hd;
    char wn[32];

    int in = node(g, IR_OP_INPUT, -1, "t_in", -1, -1, -1);
    g->nodes[in].critical = true;
    const ir_weight *ew = sqlm_ir_find_weight(g, sqlm_ir_find_weight(g, "embed") ? "embed" : "output");
    if (!ew) return sqlm_error(SQLM_FORMAT, "no embedding table");
    /* Layer merging (CTE merging on DuckDB): the residual stream entering
     * a layer is carried by the rows of its KV cache, written by the
     * statement that computes it, so no residual needs a table of its own
     * and a layer's attention and FFN share a statement with the next
     * layer's norm, QKV product, RoPE and KV append (14 statements per
     * 110M decode step instead of 40). */
    const bool lm = o->cte_merge && o->layer_merge;
    int x = node(g, IR_OP_EMBED, -1, "tok_embd", in, -1, -1);
    if (x < 0) goto fail;
    snprintf(g->nodes[x].weight, sizeof g->nodes[x].weight, "%s", ew->name);
    g->nodes[x].wdtype = ew->dtype;
    g->nodes[x].n_in = ew->n_in;
    g->nodes[x].n_out = cfg->dim;
    g->nodes[x].tile_rows = ew->tile_rows;
    g->nodes[x].critical = !lm;

    for (int l = 0; l < cfg->n_layer; l++) {
        /* attention block */
        int h = norm(g, l, "attn_norm", x, "attn");
        static const char *const qkv_parts[] = { "q", "k", "v" }, *const gu_parts[] = { "gate", "up" };
        int qkv = projection(g, l, "qkv", h, "qkv", qkv_parts, 3, cfg->qkv_bias);
        if (qkv < 0) goto fail;
        int r = node(g, IR_OP_ROPE, l, "rope", qkv, -1, -1);
        if (r < 0) goto fail;
        g->nodes[r].n_out = q_dim + 2 * kv_dim;
        /* read by the cache and attention; merged, by the cache only, whose
         * rows then carry q for attention (and x, the residual) */
        g->nodes[r].critical = !lm;
        char kvn[16];
        snprintf(kvn, sizeof kvn, "kv%d", l);
        int kv = node(g, IR_OP_KV_APPEND, -1, kvn, r, lm ? x : -1, -1);
        if (kv < 0) goto fail;
        g->nodes[kv].layer = l;
        g->nodes[kv].critical = true;
        g->nodes[kv].kv_x = lm;
        /* merged, a fused QKV product gives one row per kv head, which RoPE
         * and the cache append keep */
        const bool by_head = lm && g->nodes[qkv].op == IR_OP_MATMUL;
        g->nodes[qkv].by_head = g->nodes[r].by_head = g->nodes[kv].by_head = by_head;
        int a;
        if (!o->fuse_attn) {
            int s = node(g, IR_OP_ATTN_SCORE, l, "score", lm ? kv : r, kv, -1);
            if (s >= 0) g->nodes[s].kv_q = lm;
            int m = node(g, IR_OP_ATTN_MAX, l, "smax", s, -1, -1);
            if (s < 0 || m < 0) goto fail;
            a = node(g, IR_OP_ATTN_OUT, l, "attn", s, m, kv);
        } else {
            a = node(g, IR_OP_ATTN, l, "attn", r, kv, -1);
        }
        if (a < 0) goto fail;
        g->nodes[a].n_out = q_dim;
        snprintf(wn, sizeof wn, "blk%d_o", l);
        int ao = matmul(g, l, "attn_out", a, wn, false);
        if (ao < 0) goto fail;
        int x1 = node(g, IR_OP_ADD, l, "resid_attn", lm ? kv : x, ao, -1);
        if (x1 < 0) goto fail;
        g->nodes[x1].critical = !lm;   /* merged: a CTE of the FFN statement, read twice */
        g->nodes[x1].kv_x = lm;        /* merged: x from the cache rows */
        g->nodes[x1].n_out = cfg->dim;

        /* feed-forward block */
        h = norm(g, l, "ffn_norm", x1, "ffn");
        int gu = projection(g, l, "gate_up", h, "gu", gu_parts, 2, false);
        if (gu < 0) goto fail;
        int act = node(g, IR_OP_SWIGLU, l, "swiglu", gu, -1, -1);
        if (act < 0) goto fail;
        g->nodes[act].n_out = cfg->hidden_dim;
        snprintf(wn, sizeof wn, "blk%d_down", l);
        int d = matmul(g, l, "down", act, wn, false);
        if (d < 0) goto fail;
        x = node(g, IR_OP_ADD, l, "resid_ffn", x1, d, -1);
        if (x < 0) goto fail;
        g->nodes[x].critical = !lm;    /* merged: carried by the next cache's rows */
        g->nodes[x].n_out = cfg->dim;
    }
    if (!o->all_logits) {
        x = node(g, IR_OP_LAST, -1, "last", x, in, -1);
        if (x < 0) goto fail;
    }
    int h = norm(g, -1, "out_norm", x, "output");
    if (h < 0) goto fail;
    g->nodes[h].layer = cfg->n_layer;      /* the output norm is stored as layer n_layer */
    g->output = matmul(g, -1, "logits", h, "output", false);
    if (g->output < 0) goto fail;
    g->nodes[g->output].critical = true;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].inplace = g->nodes[i].op == IR_OP_MATMUL && o->inplace;
    sqlm_opt_cte_merge(g, o->cte_merge);
    return SQLM_OK;
fail:
    sqlm_ir_free(g);
    return SQLM_ERROR;
}
