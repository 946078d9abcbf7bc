/*
 * emit.c - graph IR -> SQL program, by instantiating one template per
 * operator for the target dialect.
 *
 * Templates are data: each is readable SQL with {placeholders} that emit
 * fills from the node (shapes, tables, inputs).  Nothing here splices SQL by
 * hand beyond the statement frame (DELETE / INSERT ... WITH ... SELECT).
 * Dialects differ only through their rows in the tables below; a missing
 * template is SQLM_UNSUPPORTED naming the operator and the dialect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sqlm-int.h"

/* ------------------------------------------------------------- dialects */

typedef struct dialect {
    const char *name;
    const char *t_blob;      /* column type of a vector */
    const char *cte_mat;     /* keyword that forces a CTE to be computed once */
} dialect;

static const dialect dialects[DIA_COUNT] = {
    /* name      vector   materialised CTE */
    { "sqlite", "BLOB", " MATERIALIZED" },
};

int dialect_from_name(const char *name) {
    for (int i = 0; i < DIA_COUNT; i++)
        if (strcmp(dialects[i].name, name) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------ templates */

/*
 * One SELECT per operator.  {in0}..{in2} are the input relations, {w} the
 * weight table; the other placeholders are node fields (see fill()).  cols
 * is the column list of the relation the SELECT produces.
 */
typedef struct op_template {
    const char *cols;
    const char *sql[DIA_COUNT];
} op_template;

static const op_template templates[IR_OP_COUNT] = {
    [IR_OP_EMBED] = { "pos, v", {
        "SELECT i.pos AS pos, sqlm_row(w.v, {dtype}, {n_in}, i.tok - w.row) AS v\n"
        "FROM {in0} i JOIN {w} w ON w.id = i.tok / {tile_rows}" } },
    [IR_OP_RMSNORM] = { "pos, v", {
        "SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, {eps}) AS v\n"
        "FROM {in0} x, norm n WHERE n.layer = {layer} AND n.kind = '{w}'" } },
    [IR_OP_QUANT] = { "pos, v", {
        "SELECT pos, sqlm_quant(v, {dtype}) AS v FROM {in0}" } },
    [IR_OP_MATMUL] = { "pos, v", {
        "SELECT x.pos AS pos,\n"
        "  {bias_open}sqlm_gather(w.row, sqlm_matvec(w.v, x.v, w.col, {chunk}, {n_in}, {dtype}), {n_out}){bias_close} AS v\n"
        "FROM {in0} x CROSS JOIN {w} w GROUP BY x.pos" } },
    [IR_OP_ROPE] = { "pos, v", {
        "SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, {n_head}, {n_head_kv}, {hd}, {interleaved}, {q_scale}) AS v\n"
        "FROM {in0} x JOIN rope r ON r.pos = x.pos" } },
    [IR_OP_KV_APPEND] = { "pos, k, v", {
        "SELECT pos, sqlm_slice(v, {q_dim}, {kv_dim}) AS k, sqlm_slice(v, {v_off}, {kv_dim}) AS v\n"
        "FROM {in0}" } },
    [IR_OP_ATTN_SCORE] = { "qpos, kpos, s", {
        "SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, {n_head}, {n_head_kv}, {hd}) AS s\n"
        "FROM {in0} q CROSS JOIN {in1} k WHERE k.pos <= q.pos" } },
    [IR_OP_ATTN_MAX] = { "qpos, mx", {
        "SELECT qpos, sqlm_vmax(s) AS mx FROM {in0} GROUP BY qpos" } },
    [IR_OP_ATTN_OUT] = { "pos, v", {
        "SELECT s.qpos AS pos,\n"
        "  sqlm_attn(sqlm_vexp(s.s, m.mx), k.v, {n_head}, {n_head_kv}, {hd}) AS v\n"
        "FROM {in0} s JOIN {in1} m ON m.qpos = s.qpos JOIN {in2} k ON k.pos = s.kpos\n"
        "GROUP BY s.qpos" } },
    [IR_OP_ADD] = { "pos, v", {
        "SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM {in0} a JOIN {in1} b ON b.pos = a.pos" } },
    [IR_OP_SWIGLU] = { "pos, v", {
        "SELECT pos, sqlm_swiglu(v) AS v FROM {in0}" } },
    [IR_OP_LAST] = { "pos, v", {
        "SELECT pos, v FROM {in0} WHERE pos = (SELECT max(pos) FROM {in1})" } },
    [IR_OP_ARGMAX] = { "pos, tok", {
        "SELECT pos, sqlm_argmax(v) AS tok FROM {in0}" } },
};

/* The statement frame, per dialect. */
static const char *const create_fmt[DIA_COUNT] = {
    "CREATE TEMP TABLE IF NOT EXISTS %s(%s)",
};

/* Column definitions of a materialised relation. */
static const char *col_defs(int op) {
    switch (op) {
    case IR_OP_KV_APPEND: return "pos INTEGER PRIMARY KEY, k BLOB, v BLOB";
    case IR_OP_ATTN_SCORE: return "qpos INTEGER, kpos INTEGER, s BLOB";
    case IR_OP_ATTN_MAX: return "qpos INTEGER PRIMARY KEY, mx BLOB";
    case IR_OP_ARGMAX: return "pos INTEGER PRIMARY KEY, tok INTEGER";
    default: return "pos INTEGER PRIMARY KEY, v BLOB";
    }
}

/* ----------------------------------------------------------- filling */

typedef struct emit_ctx {
    const ir_graph *g;
    const dialect *d;
    int dia;
} emit_ctx;

/* Append the value of placeholder key for node n. */
static bool fill_key(emit_ctx *e, const ir_node *n, const char *key, size_t klen, buf *b) {
    const model_config *c = &e->g->cfg;
    const int64_t q_dim = (int64_t)c->n_head * c->head_dim;
    const int64_t kv_dim = (int64_t)c->n_head_kv * c->head_dim;
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
    if (klen == 3 && memcmp(key, "in", 2) == 0 && key[2] >= '0' && key[2] < '0' + IR_MAX_IN) {
        int in = n->in[key[2] - '0'];
        if (in < 0) return false;
        buf_puts(b, e->g->nodes[in].name);
    }
    else if (KEY("w")) buf_puts(b, n->weight);
    else if (KEY("layer")) buf_appendf(b, "%d", n->layer);
    else if (KEY("n_out")) buf_appendf(b, "%lld", (long long)n->n_out);
    else if (KEY("n_in")) buf_appendf(b, "%lld", (long long)n->n_in);
    else if (KEY("dtype")) buf_appendf(b, "%d", n->wdtype);
    else if (KEY("chunk")) buf_appendf(b, "%lld", (long long)n->chunk);
    else if (KEY("tile_rows")) buf_appendf(b, "%d", n->tile_rows);
    else if (KEY("eps")) buf_appendf(b, "%.9g", c->norm_eps);
    else if (KEY("n_head")) buf_appendf(b, "%d", c->n_head);
    else if (KEY("n_head_kv")) buf_appendf(b, "%d", c->n_head_kv);
    else if (KEY("hd")) buf_appendf(b, "%d", c->head_dim);
    else if (KEY("q_scale")) buf_appendf(b, "%.9g", c->q_scale > 0 ? c->q_scale : 1.0f);
    else if (KEY("interleaved")) buf_appendf(b, "%d", c->rope_interleaved ? 1 : 0);
    else if (KEY("q_dim")) buf_appendf(b, "%lld", (long long)q_dim);
    else if (KEY("kv_dim")) buf_appendf(b, "%lld", (long long)kv_dim);
    else if (KEY("v_off")) buf_appendf(b, "%lld", (long long)(q_dim + kv_dim));
    else if (KEY("bias_open")) buf_puts(b, n->bias ? "sqlm_vadd(" : "");
    else if (KEY("bias_close"))
        buf_appendf(b, n->bias ? ", (SELECT b.v FROM bias b WHERE b.layer = %d))" : "", n->layer);
    else return false;
#undef KEY
    return true;
}

static int fill(emit_ctx *e, const ir_node *n, const char *tmpl, buf *b) {
    for (const char *p = tmpl; *p;) {
        if (*p != '{') {
            const char *q = strchr(p, '{');
            size_t len = q ? (size_t)(q - p) : strlen(p);
            buf_append(b, p, len);
            p += len;
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end || !fill_key(e, n, p + 1, (size_t)(end - p - 1), b))
            return sqlm_error(SQLM_ERROR, "template of %s: bad placeholder at \"%.20s\"",
                              ir_op_name(n->op), p);
        p = end + 1;
    }
    return b->rc;
}

/* ------------------------------------------------------------- program */

static int add_step(sql_program *p, const char *name, buf *sql) {
    sql_stmt *s = realloc(p->steps, (size_t)(p->n_steps + 1) * sizeof *s);
    if (!s || sql->rc) return sqlm_error(SQLM_NOMEM, "out of memory emitting SQL");
    p->steps = s;
    s[p->n_steps].name = sqlm_strdup(name);
    s[p->n_steps].sql = buf_detach(sql);
    if (!s[p->n_steps].name) return SQLM_NOMEM;
    p->n_steps++;
    return SQLM_OK;
}

void sql_program_free(sql_program *p) {
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) {
        free(p->steps[i].name);
        free(p->steps[i].sql);
    }
    free(p->steps);
    free(p->setup);
    free(p->reset);
    free(p->logits_table);
    memset(p, 0, sizeof *p);
}

int emit_program(const ir_graph *g, int dia, sql_program *out) {
    emit_ctx e = { g, &dialects[dia], dia };
    buf setup, reset, sql;
    int rc = SQLM_OK;
    memset(out, 0, sizeof *out);
    buf_init(&setup), buf_init(&reset), buf_init(&sql);
    if (dia < 0 || dia >= DIA_COUNT) return sqlm_error(SQLM_UNSUPPORTED, "unknown dialect %d", dia);

    buf_appendf(&setup, create_fmt[dia], "t_in", "pos INTEGER PRIMARY KEY, tok INTEGER");
    buf_puts(&setup, ";\n");
    int first = -1;   /* first node of the pending statement */
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == IR_OP_INPUT) continue;
        const char *t = templates[n->op].sql[dia];
        if (!t) {
            rc = sqlm_error(SQLM_UNSUPPORTED, "operator %s has no template for dialect %s",
                            ir_op_name(n->op), e.d->name);
            goto fail;
        }
        if (first < 0) first = i;
        if (!n->materialize) continue;

        /* n ends a statement: its table, then the CTEs since `first`. */
        buf_appendf(&setup, create_fmt[dia], n->name, col_defs(n->op));
        buf_puts(&setup, ";\n");
        bool append = n->op == IR_OP_KV_APPEND;   /* the cache only grows */
        buf_appendf(append ? &reset : &sql, "DELETE FROM %s", n->name);
        if (!append) {
            if ((rc = add_step(out, n->name, &sql))) goto fail;
        } else {
            buf_puts(&reset, ";\n");
        }
        buf_appendf(&sql, "INSERT INTO %s(%s)\n", n->name, templates[n->op].cols);
        bool with = false;
        for (int j = first; j < i; j++) {
            const ir_node *c = &g->nodes[j];
            if (c->materialize || c->op == IR_OP_INPUT) continue;
            buf_appendf(&sql, "%s%s(%s) AS%s (\n", with ? ",\n" : "WITH ", c->name,
                        templates[c->op].cols, e.d->cte_mat);
            if ((rc = fill(&e, c, templates[c->op].sql[dia], &sql))) goto fail;
            buf_puts(&sql, "\n)");
            with = true;
        }
        if (with) buf_puts(&sql, "\n");
        if ((rc = fill(&e, n, t, &sql))) goto fail;
        if ((rc = add_step(out, n->name, &sql))) goto fail;
        first = -1;
    }
    /* Per-step tables are cleared by the step itself; reset clears the cache. */
    out->setup = buf_detach(&setup);
    out->reset = buf_detach(&reset);
    out->logits_table = sqlm_strdup(g->nodes[g->output].name);
    if (!out->setup || !out->reset || !out->logits_table) {
        rc = SQLM_NOMEM;
        goto fail;
    }
    return SQLM_OK;
fail:
    buf_free(&setup), buf_free(&reset), buf_free(&sql);
    sql_program_free(out);
    return rc ? rc : SQLM_NOMEM;
}

char *sql_program_text(const sql_program *p) {
    buf b;
    buf_init(&b);
    buf_puts(&b, "-- sqlm program: setup (once per session)\n");
    buf_puts(&b, p->setup);
    buf_puts(&b, "\n-- reset (once per sequence: empties the KV cache)\n");
    buf_puts(&b, p->reset);
    buf_puts(&b, "\n-- step (once per batch of tokens inserted into t_in(pos, tok))\n");
    for (int i = 0; i < p->n_steps; i++) buf_appendf(&b, "%s;\n", p->steps[i].sql);
    buf_appendf(&b, "-- the next-token logits are in %s(pos, v)\n", p->logits_table);
    return b.rc ? (buf_free(&b), NULL) : buf_detach(&b);
}
