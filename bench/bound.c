/*
 * bound.c - the products-only bound of the DuckDB benchmark (duckbench run
 * --products-only, scripts/bench-duckdb-passes.sh): in a layer-merged
 * DuckDB program every operator but the products, the embedding, the cache
 * append and the last position copies its input, so that a step costs what
 * its products (and the statements around them) cost.  Attention becomes
 * this step's query rows, from the cache; SwiGLU the gate half.  For the
 * benchmark only: the logits mean nothing.
 *
 * It reaches the emitter through ir_opts.emit_hook (sqlgen.h), a per-node
 * template override; the library itself has no products-only code.
 */
#include "../src/sqlgen/sqlgen.h"

#define POS_V "pos, v"
#define POS_V_DEFS "pos INTEGER{pk}, v {vec}"

static const sql_template bound_templates[IR_OP_COUNT] = {
    [IR_OP_RMSNORM] = { POS_V, POS_V_DEFS, "SELECT pos, v FROM {in0}", false },
    [IR_OP_ROPE] = { POS_V, POS_V_DEFS, "SELECT pos, v FROM {in0}", false },
    [IR_OP_ATTN_SCORE] = { "qpos, kpos, h, s", "qpos INTEGER, kpos INTEGER, h INTEGER, s FLOAT",
        "SELECT 0 AS qpos, 0 AS kpos, 0 AS h, 0::FLOAT AS s WHERE false", false },
    [IR_OP_ATTN_MAX] = { "qpos, h, es, den", "qpos INTEGER, h INTEGER, es FLOAT[], den DOUBLE",
        "SELECT 0 AS qpos, 0 AS h, []::FLOAT[] AS es, 0::DOUBLE AS den WHERE false", false },
    [IR_OP_ATTN_OUT] = { POS_V, POS_V_DEFS,
        "SELECT pos, flatten(list(q ORDER BY h)) AS v FROM {in2}\n"
        "WHERE pos >= (SELECT min(pos) FROM t_in) GROUP BY pos", false },
    [IR_OP_ADD] = { POS_V, POS_V_DEFS, "SELECT pos, v FROM {in1}", false },
    [IR_OP_SWIGLU] = { POS_V, POS_V_DEFS,
        "SELECT pos, v[1 : {n_out}] AS v\n"
        "FROM {in0}{?est_small} WHERE pos >= (SELECT min(pos) FROM t_in){/}", false },
};
static const sql_template bound_rope_heads = { "pos, h, v", "pos INTEGER, h INTEGER, v {vec}",
    "SELECT pos, h, v FROM {in0}", false };

/* The templates above read the cache rows of a layer-merged program (q and
 * the residual x in them): refuse any other. */
static int bound_check(const ir_graph *g, const sql_dialect *d) {
    (void)d;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].kv_x) return SQLM_OK;
    return sqlm_error(SQLM_UNSUPPORTED, "the products-only bound needs a layer-merged program "
                      "(DuckDB, pure SQL, CTE merging on)");
}

static const sql_template *bound_node(const ir_graph *g, const ir_node *n, const sql_dialect *d) {
    (void)g, (void)d;
    if (n->by_head && n->op == IR_OP_ROPE) return &bound_rope_heads;
    return bound_templates[n->op].sql ? &bound_templates[n->op] : NULL;
}

const sql_emit_hook bench_products_only = { bound_check, bound_node };
