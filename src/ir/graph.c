/*
 * graph.c - the graph IR: a list of operator nodes in topological order,
 * built for the Llama family (RMSNorm, RoPE, grouped-query attention with a
 * KV cache, SwiGLU, tied or separate head, optional q/k/v biases).
 *
 * The graph knows shapes and weight layouts, nothing about SQL: sqlgen/ turns
 * each node into one template instance, and opt passes only flip flags on
 * nodes (materialise or not), never touch SQL text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

const char *sqlm_ir_op_name(int op) {
    static const char *const names[] = {
#define X(name) #name,
        IR_OPS(X)
#undef X
    };
    return op >= 0 && op < IR_OP_COUNT ? names[op] : "?";
}

void sqlm_ir_free(ir_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g->weights);
    memset(g, 0, sizeof *g);
}

const ir_weight *sqlm_ir_find_weight(const ir_graph *g, const char *name) {
    for (int i = 0; i < g->n_weights; i++)
        if (strcmp(g->weights[i].name, name) == 0) return &g->weights[i];
    return NULL;
}

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
    n->pivot_per = w->pivot ? MIN(g->row2col_per > 0 ? g->row2col_per : sqlm_row2col_per_default(w->pivot), w->pivot) : 0;
    n->blocks = w->blocks;
    n->split_tables = w->split_at > 0 || w->blocks > 0;
    if (w->split_at > 0) n->split_at = w->split_at;
    else if (!n->blocks && w->dtype == DT_F32 && (w->chunk <= 0 || w->chunk >= w->n_in))
        n->split_at = sqlm_row2col_split(g->row2col, w->n_out, w->n_in);
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
    if (o->products_only && !(o->cte_merge && o->layer_merge))
        return sqlm_error(SQLM_UNSUPPORTED, "the products-only bound needs a layer-merged program "
                          "(DuckDB, pure SQL, CTE merging on)");
    g->cfg = *cfg;
    g->all_logits = o->all_logits;
    g->row2col_per = o->row2col_per;
    g->products_only = o->products_only;
    g->weights = malloc((size_t)(n_ws ? n_ws : 1) * sizeof *ws);
    if (!g->weights) return sqlm_error(SQLM_NOMEM, "out of memory building the graph");
    memcpy(g->weights, ws, (size_t)n_ws * sizeof *ws);
    g->n_weights = n_ws;
    for (int i = 0; i < n_ws; i++) g->row2col |= ws[i].pivot > 0 || ws[i].split_at > 0 || ws[i].blocks > 0;

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
        /* Without statistics DuckDB estimates the SwiGLU relation from the
         * gate/up product's rows (thousands): a table-split down product
         * would then keep its weights, not SwiGLU's few rows, for the
         * build side of its cross joins and copy them (1.1 + 1.5 ms per
         * 110M layer, profiled).  A filter on this step's positions makes
         * the estimate small. */
        g->nodes[act].est_small = g->nodes[d].split_tables;
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

/*
 * CTE merging (TranSQL+ section 4): a node becomes a table only when it must
 * (KV cache, residual stream, anything read by a later statement, the
 * output); the rest are CTEs inside the statement of the node that ends it.
 * With the pass off, every node is its own table and statement.
 */
void sqlm_opt_cte_merge(ir_graph *g, bool enabled) {
    for (int i = 0; i < g->n_nodes; i++)
        g->nodes[i].materialize = !enabled || g->nodes[i].critical;
    /* A node read by a node of a later statement must be a table.  Statement
     * ends only move earlier when a node is materialised, so iterate. */
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < g->n_nodes; i++) {
            ir_node *n = &g->nodes[i];
            if (n->materialize) continue;
            /* the statement containing i ends at the first materialised node >= i */
            int end = i;
            while (end < g->n_nodes && !g->nodes[end].materialize) end++;
            for (int j = end + 1; j < g->n_nodes; j++)
                for (int k = 0; k < IR_MAX_IN; k++)
                    if (g->nodes[j].in[k] == i && !n->materialize) {
                        n->materialize = true;
                        changed = true;
                    }
        }
    }
}

/*
 * ROW2COL rule (TranSQL+ section 4.3), measured on DuckDB 1.5.6, 2 threads,
 * against whole rows as FLOAT[] lists, one decode product each (ms, best of
 * 7, two rounds on a shared machine, load 2 to 3, after a product's input
 * became MATERIALIZED; README "ROW2COL"):
 *
 *   n_out x n_in   whole list ms   2 pivots, 1 per subquery ms
 *   768 x 768      1.27 / 1.27     1.44 / 1.38   (110M o, q, k, v)
 *   2304 x 768     2.14 / 2.14     2.03 / 2.09
 *   4096 x 768     3.62 / 3.38     2.79 / 2.60
 *   768 x 2048     2.27 / 1.99     1.83 / 1.65
 *   2560 x 2048    5.12 / 5.42     4.19 / 3.84
 *   2048 x 2048    4.43 / 4.31     3.36 / 3.01
 *   2048 x 5632    10.5 / 10.6     7.92 / 7.35
 *   11264 x 2048   17.9 (2 threads), 18.3 (1)   11.8   (bench ceiling)
 *
 * DuckDB 1.5.6 gives a table scan one task per 122,880 rows, whatever the
 * row group size, so a whole-row product runs on one thread (11264 x 2048:
 * 17.9 ms on two threads, 18.3 on one); each ROW2COL subquery is a pipeline
 * of its own, so two give the second thread work.  Under 2^20 weights the
 * extra sort and join cost more than the second thread saves.  In a
 * 200-position prefill the 768 x 2048 product took 94 ms pivoted against
 * 165 whole, the 4096 x 768 one 358 against 311 (the sort of rows times
 * positions).  4, 8 or 16 pivots, or several columns per subquery, were
 * slower (earlier rounds).  So run 4's rule pivoted every matrix of at
 * least 2^20 weights, 2 columns, 1 per subquery.  Since run 5 the rule
 * splits a layer matrix's rows over two tables instead, which measured
 * faster on every shape (sqlm_row2col_split_tables() below); the pivot form is
 * what --row2col on asks for (the paper's form, for the ablation and the
 * tests).  The rules live here and nowhere else.
 */
int sqlm_row2col_pivots(int mode, int64_t n_out, int64_t n_in) {
    /* The pivot form only where asked for (--row2col on): under the rule a
     * row split (below) was as fast or faster on every measured shape. */
    if (mode != R2C_ON) return 0;
    /* POSITIONAL JOIN lines subqueries up by scan order; the pivot columns
     * split a row evenly */
    if (n_out > 122880 || n_in % 2 != 0) return 0;
    return 2;
}

/* Pivot columns per subquery: one (each its own pipeline). */
int sqlm_row2col_per_default(int pivots) { return pivots > 0 ? 1 : 0; }

/*
 * ROW2COL's row split (not in the paper; measured here): a product over a
 * table of at least two row groups (2 x 2048 rows) and 2^20 weights runs as
 * two UNION ALL branches, rows below and from a row-group boundary near the
 * middle.  Each branch is a pipeline of its own, so DuckDB gives the second
 * thread work without the pivot form's sorts and POSITIONAL JOIN: on 2
 * threads, one decode product (ms, best of 15, load about 1.2): 4096 x 768
 * (pivoted) 2.25-2.33 against 2.54-2.62 in the pivot form; the 32000 x 768
 * output head (whole rows, never pivoted) 11.0 against 17.7.  Tables of one
 * row group gain nothing from it (2304 x 768: 1.76-1.99 split against
 * 1.85; 768 x 768: 1.06 against 1.09), as the scan of a row group is one
 * task.  Pivoted tables keep their columns and sum their dot products per
 * row.  Applied when the database was laid out by ROW2COL (import
 * --row2col auto or on), to the output head as well.
 */
int64_t sqlm_row2col_split(bool row2col, int64_t n_out, int64_t n_in) {
    const int64_t rg = 2048;   /* rows per row group (db/duckdb.c ROW_GROUP_ROWS) */
    if (!row2col || n_out < 2 * rg || n_out * n_in < (1 << 20)) return 0;
    int64_t at = (n_out / 2 + rg / 2) / rg * rg;
    return at > 0 && at < n_out ? at : 0;
}

/*
 * ROW2COL's table split (not in the paper; measured here, README "The
 * passes measured"): a layer matrix's rows are stored as two tables of half
 * its rows each, {name} and {name}_1, and its product runs as two UNION ALL
 * halves, one pipeline per table, so DuckDB gives the second thread work
 * whatever the matrix's row count (a table under two 2048-row groups cannot
 * be split inside itself: both halves would scan the whole row group).  One
 * decode product on 2 threads, isolated (ms, best of 30, load about 1.2):
 *
 *   n_out x n_in    split tables   before (run 4's rule)
 *   2304 x 768      1.13           1.46 (2 pivots)        110M qkv
 *   768 x 768       0.65           0.83 (whole)           110M o
 *   768 x 2048      1.01           1.30 (2 pivots)        110M down
 *   4096 x 768      1.69           1.70 (2 pivots, row split in the table)
 *   2560 x 2048     2.85           3.31 (2 pivots)        1.1B qkv
 *   2048 x 2048     2.25           2.68 (2 pivots)        1.1B o
 *   2048 x 5632     5.84           6.37 (2 pivots)        1.1B down
 *   11264 x 2048    20.3           20.0 (2 pivots, row split in the table; load 2.6)
 *
 * Split pivoted rows measured the same as split whole rows (1.12 / 1.01 /
 * 2.91 / 2.21 / 5.74 ms for the shapes above), so the rule keeps rows
 * whole.  Applied under --row2col auto to layer matrices of at least 2^19
 * float weights (the 110M o projection has 2^19.2; smaller products are
 * mostly fixed cost), to every one under --row2col split; not to the
 * embedding or the output head, which the embedding lookup reads by row
 * (the head keeps the split inside its table, sqlm_row2col_split()).
 */
int64_t sqlm_row2col_split_tables(int mode, int64_t n_out, int64_t n_in) {
    if (n_out < 2 || (mode != R2C_SPLIT && mode != R2C_SPLIT_ROWS && (mode != R2C_AUTO || n_out * n_in < (1 << 19))))
        return 0;
    return n_out / 2;
}

/*
 * ROW2COL's blocks (not in the paper; measured here, README "The passes
 * measured"): the two tables of a split matrix hold one row per block of
 * consecutive matrix rows, (row, m FLOAT[][]), and a product computes a
 * block's dot products at once, list_transform(m, dot).  Its output is then
 * gathered from a handful of (first row, list) pairs instead of a (row,
 * value) pair per matrix row, and the tables have a few rows instead of
 * thousands.  Whole 110M decode steps on 2 threads, processes alternated
 * three times: best 108-113 ms against 110-119 for rows, CPU 188-191
 * against 193-205 (one product alone is as fast either way).
 *
 * Blocks never straddle a unit of a part (a fused QKV's rows of one kv
 * head), so the merged layer's per-head grouping reads a block's head from
 * its first row.  The largest block is halved until there are 4; the
 * blocks are dealt to the two tables largest first, each to the table with
 * fewer rows; a table left with one block has it halved: a one-row table
 * becomes the build side of its cross join (DuckDB weighs estimated rows
 * times width), whose megabytes DuckDB then copies.
 */
int sqlm_row2col_blocks(const int64_t *part, int n_part, int n_unit, int64_t *first, int *table, int max) {
    int64_t size[256];
    int n = 0;
    max = MIN(max, (int)ARRAY_LEN(size));
    for (int i = 0; i < n_part; i++) {
        const int u = n_unit > 1 && part[i] % n_unit == 0 ? n_unit : 1;
        if (part[i] <= 0 || n + u > max) return 0;
        for (int j = 0; j < u; j++) size[n++] = part[i] / u;
    }
    for (;;) {
        /* halve block k (into k and k + 1) where needed */
        int k = -1;
        if (n < 4) {
            for (int i = 0; i < n; i++)
                if (size[i] >= 2 && (k < 0 || size[i] > size[k])) k = i;
        } else {
            /* deal the blocks out; a table of one block halves it */
            int64_t rows[2] = { 0, 0 };
            int count[2] = { 0, 0 }, order[256];
            for (int i = 0; i < n; i++) order[i] = i;
            for (int i = 1; i < n; i++)   /* largest first, stable */
                for (int j = i; j > 0 && size[order[j]] > size[order[j - 1]]; j--) {
                    int t = order[j];
                    order[j] = order[j - 1], order[j - 1] = t;
                }
            for (int i = 0; i < n; i++) {
                const int t = rows[1] < rows[0];
                table[order[i]] = t, rows[t] += size[order[i]], count[t]++;
            }
            for (int i = 0; i < n && k < 0; i++)
                if (count[table[i]] < 2 && size[i] >= 2) k = i;
        }
        if (k < 0 || n >= max) break;
        memmove(size + k + 1, size + k, (size_t)(n - k) * sizeof *size);
        size[k] -= size[k] / 2, size[k + 1] /= 2, n++;
    }
    if (n < 4) return 0;
    int64_t row = 0;
    for (int i = 0; i < n; i++) first[i] = row, row += size[i];
    return n;
}
