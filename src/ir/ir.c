/*
 * ir.c - the graph IR's core: operator names, the weight lookup and freeing
 * a graph.  The builder is llama.c, the pass cte_merge.c; the storage layout it follows
 * is chosen at import (layout/layout.c).
 */
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
