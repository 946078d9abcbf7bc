/*
 * cte_merge.c - the CTE-merging pass: which nodes of a built graph become
 * tables and which stay CTEs of a statement.  It flips node flags only;
 * sqlgen/ reads them when it cuts the program into statements.
 */
#include "ir.h"

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
