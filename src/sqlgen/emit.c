/*
 * emit.c - graph IR -> SQL program, by instantiating one template per
 * operator for the target dialect.
 *
 * Templates are data: each is readable SQL with {placeholders} that emit
 * fills from the node (shapes, tables, inputs).  Nothing here splices SQL by
 * hand beyond the statement frame (the dialect's frame: CREATE, DELETE,
 * INSERT ... WITH ... SELECT).  Dialects differ only through their rows in
 * the dialect table (the end of the templates section): its template sets,
 * layer-merged templates, frame, placeholders, upserts and layout rules; a
 * missing template is SQLM_UNSUPPORTED naming the operator and the dialect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlgen.h"
#include "../kern/kern.h"
#include "../layout/layout.h"

/* ------------------------------------------------------------- dialects */

/* How a DuckDB dialect turns a quantized weight table's staging lists into
 * int8 blocks (sql_dialect.q_blocks).  (TINYINT[] first: a FLOAT slice cast to TINYINT[32] inside the lambda
 * comes out as zeros after the first row, DuckDB 1.5.6) */
#define DUCK_Q_BLOCKS                                                                             \
    "CREATE TABLE %1$s AS SELECT id, row, col,\n"                                                   \
    "  list_transform(range(len(v) // 32), lambda b: v[b * 32 + 1 : b * 32 + 32]::TINYINT[32]) AS v, s\n" \
    "FROM (SELECT id, row, col, v::TINYINT[] AS v, s FROM %1$s_flat);\n"                            \
    "DROP TABLE %1$s_flat"

/* The dialect table, defined after the templates it points to. */
static const sql_dialect dialects[DIA_COUNT];

int sqlm_dialect_from_name(const char *name) {
    for (int i = 0; i < DIA_COUNT; i++)
        if (strcmp(dialects[i].name, name) == 0) return i;
    return -1;
}

const sql_dialect *sqlm_dialect_get(int dia) { return dia >= 0 && dia < DIA_COUNT ? &dialects[dia] : NULL; }

ir_opts sqlm_dialect_ir_opts(int dia, ir_opts o) {
    const sql_dialect *d = sqlm_dialect_get(dia);
    if (!d || !d->fused_attn) o.fuse_attn = false;
    /* the templates of a cache carrying q: where the dialect has them */
    o.layer_merge = d && d->layer_merge && d->merged && o.cte_merge && !o.fuse_attn;
    return o;
}

void sqlm_dialect_subst(int dia, const char *text, buf *out) {
    const sql_dialect *d = &dialects[dia];
    for (const char *p = text; *p;) {
        if (strncmp(p, "{vec}", 5) == 0) sqlm_buf_puts(out, d->t_vec), p += 5;
        else if (strncmp(p, "{any}", 5) == 0) sqlm_buf_puts(out, d->t_any[0] ? " " : ""), sqlm_buf_puts(out, d->t_any), p += 5;
        else if (strncmp(p, "{pk}", 4) == 0) sqlm_buf_puts(out, d->pk), p += 4;
        else sqlm_buf_putc(out, *p++);
    }
}

void sqlm_dialect_params(int dia, int first, int n, buf *out) {
    for (int i = 0; i < n; i++) {
        if (i) sqlm_buf_puts(out, ", ");
        sqlm_buf_appendf(out, dialects[dia].param, first + i);
    }
}

void sqlm_dialect_upsert(int dia, const char *table, const char *key, const char *value, buf *out) {
    buf p1, p2;
    sqlm_buf_init(&p1), sqlm_buf_init(&p2);
    sqlm_dialect_params(dia, 1, 1, &p1);
    sqlm_dialect_params(dia, 2, 1, &p2);
    if (p1.rc || p2.rc) out->rc = SQLM_NOMEM;
    else sqlm_buf_appendf(out, dialects[dia].upsert, table, key, value, p1.p, p2.p);
    sqlm_buf_free(&p1), sqlm_buf_free(&p2);
}

/* ------------------------------------------------------------ templates */

/*
 * One SELECT per operator and dialect.  {in0}..{in2} are the input
 * relations, {w} the weight table; the other placeholders are node fields
 * (see fill_key()).  {?cond}...{/} keeps its text only when cond holds
 * ({?!cond} when it does not): bias, interleaved, chunked, inplace.  cols is
 * the column list of the relation the SELECT produces, defs its column
 * definitions as a table (with the dialect's {vec} and {pk}), or "USING
 * module" for a virtual table.
 */

#define POS_V "pos, v"
#define POS_V_DEFS "pos INTEGER{pk}, v {vec}"

/* A product's or attention's values gathered into a list in the order of
 * key: sorted as (key, value) structs by list_sort.  list(value ORDER BY
 * key) sets up a sort state per hash table and thread (0.5-0.7 ms of CPU
 * each in a 110M layer statement, for one group); the sort of one list
 * does not (docs/duckdb.md). */
#define DUCK_GATHER(key, value) \
    "list_transform(list_sort(list(struct_pack(k := " key ", v := " value ")), 'ASC', 'NULLS FIRST'), lambda t: t.v)"

/*
 * A product in pure SQL on DuckDB, in the form of the weights' layout
 * (layout/layout.c decides it), its rows gathered in order by DUCK_GATHER
 * (whole Q8_0/Q4_0 rows still by list(... ORDER BY w.row), not measured
 * against it).
 *   - ROW2COL's row split ({split_from}: two UNION ALL branches, the two
 *     tables of a split matrix or the rows of one table below split_at and
 *     the rest, each its own pipeline; a pivoted row's dot product is the
 *     sum of its columns', as the pivot form sums them) is taken before the
 *     pivot form (layout.c: the DuckDB rules split_tables and row_split).  Tables
 *     of blocks ({?blocks}, sqlm_layout_blocks()) give a list of dot products
 *     per block (r.s, bias added inside), gathered by their first rows and
 *     flattened.
 *   - ROW2COL (pivoted weights, columns c0..): {r2c_from} is one subquery
 *     per {pivot_per} pivot columns, each summing their dot products with
 *     the same slices of x, sorted by (row, pos) and lined up by POSITIONAL
 *     JOIN (unsorted, a prefill batch on 2 threads came out in a different
 *     order in each subquery); {r2c_sum} adds their partial sums p.
 *   - Q8_0/Q4_0 weights, as llama.cpp sums them: per block an exact integer
 *     dot product (array_inner_product of integers; sums below 2^24), times
 *     the two scales (exact in DOUBLE), added to a float accumulator in
 *     block order, acc = fl(acc + isum * d_w * d_x), as one fused
 *     multiply-add.  (The DOUBLE sum before the cast to FLOAT rounds twice:
 *     it can differ from the fma in the last bit, about once in 2^29
 *     additions.)
 *   - {?by_head}: one row per (position, kv head) instead of per position,
 *     holding the values of the kv head's query heads, its key and its
 *     value in row order ({hkey_*}: a row's kv head); the fused QKV product
 *     of a merged layer (duck_matmul_heads), which then needs no list of
 *     all its values, no RoPE over that list and no cross join to cut it
 *     into the cache's rows (a 110M layer's KV statement: 3.60 ms against
 *     3.86).
 */
#define DUCK_MATMUL \
        "{?quant}{?!chunked}" \
        "SELECT x.pos AS pos, {?by_head}{hkey_w} AS h, {/}list(list_reduce(list_transform(w.v, lambda blk, i:\n" \
        "    array_inner_product(blk::FLOAT[32], x.q[i])::DOUBLE * (w.s[i] * x.d[i])),\n" \
        "  lambda acc, t: ((acc + t)::FLOAT)::DOUBLE, 0::DOUBLE)::FLOAT{?bias} + b.v[w.row + {bias_off} + 1]{/} ORDER BY w.row) AS v\n" \
        "FROM {in0} x CROSS JOIN {w} w{?bias} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}\n" \
        "GROUP BY x.pos{?by_head}, h{/}{/}" \
        "{?chunked}" \
        "SELECT p.pos AS pos, {?by_head}{hkey_p} AS h, {/}" DUCK_GATHER("p.row", "p.s{?bias} + b.v[p.row + {bias_off} + 1]{/}") " AS v\n" \
        "FROM (SELECT x.pos AS pos, w.row AS row,\n" \
        "        list_reduce(flatten(list(list_transform(w.v, lambda blk, i:\n" \
        "            array_inner_product(blk::FLOAT[32], x.q[w.col // 32 + i])::DOUBLE * (w.s[i] * x.d[w.col // 32 + i]))\n" \
        "          ORDER BY w.col)), lambda acc, t: ((acc + t)::FLOAT)::DOUBLE, 0::DOUBLE)::FLOAT AS s\n" \
        "      FROM {in0} x CROSS JOIN {w} w GROUP BY x.pos, w.row) p" \
        "{?bias} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}\n" \
        "GROUP BY p.pos{?by_head}, h{/}{/}{/}" \
        "{?!quant}{?row2col}" \
        "SELECT r.pos AS pos, {?by_head}{hkey_r} AS h, {/}" \
        "{?blocks}flatten(" DUCK_GATHER("r.row", "r.s") "){/}" \
        "{?!blocks}" DUCK_GATHER("r.row", "r.s{?bias} + b.v[r.row + {bias_off} + 1]{/}") "{/} AS v\n" \
        "FROM ({?split}{split_from}{/}{?!split}SELECT s0.pos AS pos, s0.row AS row, ({r2c_sum})::FLOAT AS s\n" \
        "      FROM {r2c_from}{/}) r{?bias}{?!blocks} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}{/}\n" \
        "GROUP BY r.pos{?by_head}, h{/}{/}" \
        "{?!row2col}{?!chunked}" \
        "SELECT x.pos AS pos, {?by_head}{hkey_w} AS h, {/}" DUCK_GATHER("w.row", "list_dot_product(w.v, x.v){?bias} + b.v[w.row + {bias_off} + 1]{/}") " AS v\n" \
        "FROM {in0} x CROSS JOIN {w} w{?bias} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}\n" \
        "GROUP BY x.pos{?by_head}, h{/}{/}" \
        "{?chunked}" \
        "SELECT p.pos AS pos, {?by_head}{hkey_p} AS h, {/}" DUCK_GATHER("p.row", "p.s{?bias} + b.v[p.row + {bias_off} + 1]{/}") " AS v\n" \
        "FROM (SELECT x.pos AS pos, w.row AS row,\n" \
        "        sum(list_dot_product(w.v, x.v[w.col + 1 : w.col + {chunk}]))::FLOAT AS s\n" \
        "      FROM {in0} x CROSS JOIN {w} w GROUP BY x.pos, w.row) p" \
        "{?bias} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}\n" \
        "GROUP BY p.pos{?by_head}, h{/}{/}{/}{/}"

/* q (the first {rope_q} values) is scaled first (unless its factor is
 * 1), then the first {rope_rot} values are rotated in pairs with cos/sin
 * from the rope row (cs[2p + 1] = cos, cs[2p + 2] = sin of pair p,
 * 1-based); {?by_head}: per (position, kv head) row of duck_matmul_heads
 * (its query heads and key are rotated, its value is not). */
#define DUCK_ROPE \
        "SELECT x.pos AS pos, {?by_head}x.h AS h, {/}list_transform(x.y, lambda e, i: CASE\n" \
        "  WHEN i > {rope_rot} THEN e\n" \
        "{?interleaved}" \
        "  WHEN (i - 1) % 2 = 0 THEN e * r.cs[(i - 1) % {hd} + 1] - x.y[i + 1] * r.cs[(i - 1) % {hd} + 2]\n" \
        "  ELSE e * r.cs[(i - 1) % {hd}] + x.y[i - 1] * r.cs[(i - 1) % {hd} + 1] END) AS v\n" \
        "{/}" \
        "{?!interleaved}" \
        "  WHEN (i - 1) % {hd} < {half} THEN e * r.cs[2 * ((i - 1) % {hd}) + 1] - x.y[i + {half}] * r.cs[2 * ((i - 1) % {hd}) + 2]\n" \
        "  ELSE e * r.cs[2 * ((i - 1) % {hd} - {half}) + 1] + x.y[i - {half}] * r.cs[2 * ((i - 1) % {hd} - {half}) + 2] END) AS v\n" \
        "{/}" \
        "FROM (SELECT pos, {?by_head}h, {/}{?q_scaled}list_transform(v, lambda e, i: CASE WHEN i <= {rope_q} THEN e * {q_scale}::FLOAT ELSE e END){/}" \
        "{?!q_scaled}v{/} AS y\n" \
        "      FROM {in0}) x\n" \
        "  JOIN rope r ON r.pos = x.pos"

/* ---------------------------------------------------------- SQLite:
     * native C functions over BLOBs of float32 (db/sqlite/functions.c). */
static const sql_template sqlite_templates[IR_OP_COUNT] = {
    [IR_OP_EMBED] = { POS_V, POS_V_DEFS,
        "SELECT i.pos AS pos, sqlm_row(w.v, {dtype}, {n_in}, i.tok - w.row) AS v\n"
        "FROM {in0} i JOIN {w} w ON w.id = i.tok / {tile_rows}" },
    [IR_OP_RMSNORM] = { POS_V, POS_V_DEFS,
        "SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, {eps}) AS v\n"
        "FROM {in0} x, norm n WHERE n.layer = {layer} AND n.kind = '{w}'" },
    [IR_OP_QUANT] = { POS_V, POS_V_DEFS,
        "SELECT pos, sqlm_quant(v, {dtype}) AS v FROM {in0}" },
    /* Copying: one matvec per (position, tile), SQLite copying each tile's
     * BLOB.  In place: the scan reads only the weight table's rowids; the
     * aggregate reads those tiles from its mapping of the file and multiplies
     * each with all the batch's positions (stacked into one value, passed
     * with tile 0 only: SQLite would copy a value given on every row), and
     * sqlm_rows() gives the product back one row per position. */
    [IR_OP_MATMUL] = { POS_V, POS_V_DEFS,
        "{?!inplace}"
        "SELECT x.pos AS pos,\n"
        "  {?bias}sqlm_vadd({/}(SELECT sqlm_gather(w.row, sqlm_matvec(w.v, x.v, w.col, {chunk}, {n_in}, {dtype}), {n_out})\n"
        "   FROM {w} w){?bias}, (SELECT {?bias_part}sqlm_slice(b.v, {bias_off}, {n_out}){/}{?!bias_part}b.v{/} FROM bias b WHERE b.layer = {layer})){/} AS v\n"
        "FROM {in0} x{/}"
        "{?inplace}"
        "SELECT p.pos AS pos, {?bias}sqlm_vadd({/}p.v{?bias}, (SELECT {?bias_part}sqlm_slice(b.v, {bias_off}, {n_out}){/}{?!bias_part}b.v{/} FROM bias b WHERE b.layer = {layer})){/} AS v\n"
        "FROM sqlm_rows((\n"
        "  SELECT sqlm_matmul('{w}', w.id,\n"
        "    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM {in0} x) END) FROM {w} w)) p{/}",
        .rereads_in0 = true },
    [IR_OP_ROPE] = { POS_V, POS_V_DEFS,
        "SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, {n_head}, {n_head_kv}, {hd}, {interleaved}, {q_scale}) AS v\n"
        "FROM {in0} x JOIN rope r ON r.pos = x.pos" },
    [IR_OP_KV_APPEND] = { "pos, k, v", "USING sqlm_kv",   /* a virtual table (db/sqlite/vtab_kv.c) */
        "SELECT pos, sqlm_slice(v, {q_dim}, {kv_dim}) AS k, sqlm_slice(v, {v_off}, {kv_dim}) AS v\n"
        "FROM {in0}" },
    [IR_OP_ATTN_SCORE] = { "qpos, kpos, s", "qpos INTEGER, kpos INTEGER, s BLOB",
        "SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, {n_head}, {n_head_kv}, {hd}) AS s\n"
        "FROM {in0} q CROSS JOIN {in1} k WHERE k.pos <= q.pos" },
    [IR_OP_ATTN_MAX] = { "qpos, mx", "qpos INTEGER PRIMARY KEY, mx BLOB",
        "SELECT qpos, sqlm_vmax(s) AS mx FROM {in0} GROUP BY qpos" },
    [IR_OP_ATTN_OUT] = { POS_V, POS_V_DEFS,
        "SELECT s.qpos AS pos,\n"
        "  sqlm_attn(sqlm_vexp(s.s, m.mx), k.v, {n_head}, {n_head_kv}, {hd}) AS v\n"
        "FROM {in0} s JOIN {in1} m ON m.qpos = s.qpos JOIN {in2} k ON k.pos = s.kpos\n"
        "GROUP BY s.qpos" },
    /* One pass over the cache for the whole batch: the scan gives the
     * positions, the aggregate reads those rows of the sqlm_kv table in place
     * and computes softmax(q . k - max) @ v for every query over the keys at
     * or before its position, in key order (the arithmetic of the three
     * relations above).  The queries come stacked, with the first key's row
     * only: SQLite copies a value passed on every row. */
    [IR_OP_ATTN] = { POS_V, POS_V_DEFS,
        "SELECT p.pos AS pos, p.v AS v\n"
        "FROM sqlm_rows((\n"
        "  SELECT sqlm_attend(CASE WHEN k.pos = (SELECT min(pos) FROM {in1}) THEN\n"
        "           (SELECT sqlm_stack(q.pos, q.v) FROM {in0} q) END,\n"
        "         '{in1}', k.pos, {n_head}, {n_head_kv}, {hd}) FROM {in1} k)) p" },
    [IR_OP_ADD] = { POS_V, POS_V_DEFS,
        "SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM {in0} a JOIN {in1} b ON b.pos = a.pos" },
    [IR_OP_SWIGLU] = { POS_V, POS_V_DEFS,
        "SELECT pos, sqlm_swiglu(v) AS v FROM {in0}" },
    [IR_OP_CONCAT] = { POS_V, POS_V_DEFS,
        "SELECT a.pos AS pos, CAST(a.v || b.v{?in2} || c.v{/} AS BLOB) AS v\n"
        "FROM {in0} a JOIN {in1} b ON b.pos = a.pos{?in2} JOIN {in2} c ON c.pos = a.pos{/}" },
    [IR_OP_LAST] = { POS_V, POS_V_DEFS,
        "SELECT pos, v FROM {in0} WHERE pos = (SELECT max(pos) FROM {in1})" },
    [IR_OP_ARGMAX] = { "pos, tok", "pos INTEGER PRIMARY KEY, tok INTEGER",
        "SELECT pos, sqlm_argmax(v) AS tok FROM {in0}" },
};

/* ---------------------------------------------------------- DuckDB:
     * pure SQL, no registered function.  A vector is a FLOAT[] list; a
     * weight table has one matrix row (or chunk of a row) per table row,
     * in float32.  Element-wise maps are list_transform lambdas (1-based
     * index i); products are list_dot_product, gathered in row order by
     * DUCK_GATHER.  Attention is relational, one row per
     * (query, key, head); its softmax subtracts the maximum.
     *
     * Arithmetic is float32 where sqlm's C kernels (and llama.cpp) use
     * float: FLOAT op FLOAT is FLOAT in DuckDB, and one +, -, *, / or sqrt
     * done in DOUBLE then cast to FLOAT rounds as the float op would.
     * Q8_0 and Q4_0 weights are stored as blocks of their int8 values
     * (v TINYINT[32][]) with the block scales (s FLOAT[]); see QUANT and
     * MATMUL. */
static const sql_template duck_templates[IR_OP_COUNT] = {
    [IR_OP_EMBED] = { POS_V, POS_V_DEFS,
        "SELECT i.pos AS pos, {?quant}list_transform(flatten(w.v::FLOAT[][]), lambda e, j: e * w.s[(j - 1) // 32 + 1]){/}"
        "{?!quant}w.v{/} AS v\n"
        "FROM {in0} i JOIN {w} w ON w.row = i.tok" },
    /* as ggml: squares rounded to float, summed in double, the mean rounded
     * to float, scale = 1 / sqrtf(mean + eps), then (x * scale) * g */
    [IR_OP_RMSNORM] = { POS_V, POS_V_DEFS,
        "SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v\n"
        "FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT\n"
        "                                     + {eps}::FLOAT)::FLOAT AS s\n"
        "      FROM {in0}) x,\n"
        "  norm n WHERE n.layer = {layer} AND n.kind = '{w}'" },
    /* A product's input rounded as llama.cpp's CPU backend rounds it: v is
     * the rounded activation; for Q8_0/Q4_0 weights also its blocks of
     * integers q and their scales d.  Q8_0 per block of 32: amax = max |x|,
     * d = fp16(amax / 127), q = round_even(x * (127 / amax)), v = d * q (as
     * ggml's x86 quantize_row_q8_0).  F16: v = fp16(x).  fp16(f) rounds to
     * nearest even at the unit 2^(max(floor(log2 |f|), -14) - 10), exact in
     * DOUBLE, subnormals included; |f| >= 65520 overflows to infinity. */
    [IR_OP_QUANT] = { "pos, v, q, d", "pos INTEGER, v FLOAT[], q FLOAT[32][], d FLOAT[]",
        "{?quant}"
        "SELECT x.pos AS pos, list_transform(x.qv, lambda e, i: x.d[(i - 1) // 32 + 1] * e) AS v,\n"
        "  list_transform(range({n_blocks}), lambda b: x.qv[b * 32 + 1 : b * 32 + 32]::FLOAT[32]) AS q, x.d AS d\n"
        "FROM (SELECT pos, list_transform(v, lambda e, i: round_even(e * id[(i - 1) // 32 + 1], 0)) AS qv, d\n"
        "  FROM (SELECT pos, v,\n"
        "          list_transform(am, lambda a: CASE WHEN a = 0 THEN 0::FLOAT ELSE 127::FLOAT / a END) AS id,\n"
        "          list_transform(am, lambda a: CASE WHEN a = 0 THEN 0::FLOAT\n"
        "            WHEN a / 127::FLOAT >= 65520 THEN 'inf'::FLOAT\n"
        "            ELSE (round_even((a / 127::FLOAT)::DOUBLE\n"
        "                             / pow(2.0, greatest(floor(log2((a / 127::FLOAT)::DOUBLE)), -14) - 10), 0)\n"
        "                  * pow(2.0, greatest(floor(log2((a / 127::FLOAT)::DOUBLE)), -14) - 10))::FLOAT END) AS d\n"
        "        FROM (SELECT pos, v, list_transform(range({n_blocks}), lambda b:\n"
        "                       list_max(list_transform(v[b * 32 + 1 : b * 32 + 32], lambda e: abs(e)))) AS am\n"
        "              FROM {in0}))) x{/}"
        "{?f16}"
        "SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e\n"
        "  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT\n"
        "  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)\n"
        "        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,\n"
        "  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d\n"
        "FROM {in0}{/}"
        "{?!quant}{?!f16}SELECT pos, v, NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d FROM {in0}{/}{/}" },
    [IR_OP_MATMUL] = { POS_V, POS_V_DEFS, DUCK_MATMUL,
        /* DuckDB evaluates an inlined {in0}'s expressions (a norm's or
         * SwiGLU's lambda) above the cross join, once per weight row: a
         * 200-position product over the 4096 x 768 gate/up table took 628 ms
         * with its input's lambda inlined, 323 ms with it MATERIALIZED */
        .rereads_in0 = true },
    [IR_OP_ROPE] = { POS_V, POS_V_DEFS, DUCK_ROPE },
    /* The cache has one row per (position, kv head): the attention joins
     * pick a head's {hd} values by key instead of slicing whole rows per
     * (query, key, head), which DuckDB does slowly (a 32-key decode step's
     * scores: 1.1 ms against 5.9 with 768-value rows, 110M shape). */
    [IR_OP_KV_APPEND] = { "pos, h, k, v", "pos INTEGER, h INTEGER, k FLOAT[], v FLOAT[]",
        "SELECT x.pos AS pos, t.h::INTEGER AS h,\n"
        "  x.v[{q_dim} + t.h * {hd} + 1 : {q_dim} + t.h * {hd} + {hd}] AS k,\n"
        "  x.v[{v_off} + t.h * {hd} + 1 : {v_off} + t.h * {hd} + {hd}] AS v\n"
        "FROM {in0} x CROSS JOIN range({n_head_kv}) t(h)" },
    /* q cut into its heads once per position, then one dot product per
     * (query, key, head) */
    [IR_OP_ATTN_SCORE] = { "qpos, kpos, h, s", "qpos INTEGER, kpos INTEGER, h INTEGER, s FLOAT",
        "SELECT q.pos AS qpos, k.pos AS kpos, q.h AS h, list_dot_product(q.v, k.k) AS s\n"
        "FROM (SELECT pos, t.h::INTEGER AS h, v[t.h * {hd} + 1 : t.h * {hd} + {hd}] AS v\n"
        "      FROM {in0} CROSS JOIN range({n_head}) t(h)) q\n"
        "  JOIN {in1} k ON k.h = q.h // {group} AND k.pos <= q.pos" },
    /* Softmax per (query, head) as one list: e = exp(s - max) in key order,
     * and its sum. */
    [IR_OP_ATTN_MAX] = { "qpos, h, es, den", "qpos INTEGER, h INTEGER, es FLOAT[], den DOUBLE",
        "SELECT qpos, h, es, list_sum(es) AS den\n"
        "FROM (SELECT qpos, h, list_transform(ss, lambda s: exp(s - mx)::FLOAT) AS es\n"
        "      FROM (SELECT qpos, h, list(s ORDER BY kpos) AS ss, max(s) AS mx FROM {in0} GROUP BY qpos, h))" },
    /* out[h * hd + d] = e . V[0 .. len(e) - 1][kvh * hd + d] / sum(e), kvh =
     * h / group: each kv head's cached values transposed into {hd} lists
     * (one per value index, in position order), then one dot product per
     * (query, head, value index) with the softmax list, whose keys are the
     * positions 0 .. qpos.  The other form, an unnest of every (query, key,
     * head)'s values and a grouped sum per (query, value), takes 662-707 ms
     * per 1.1B decode step against 647-650 for this one (build/duckbench
     * run, separate processes alternated). */
    [IR_OP_ATTN_OUT] = { POS_V, POS_V_DEFS,
        "SELECT a.qpos AS pos, flatten(list(a.o ORDER BY a.h)) AS v\n"
        "FROM (SELECT e.qpos AS qpos, e.h AS h,\n"
        "        list_transform(t.m, lambda c: (list_dot_product(e.es, c[1 : len(e.es)]) / e.den)::FLOAT) AS o\n"
        "      FROM {in1} e\n"
        "      JOIN (SELECT h AS g, list_transform(range(1, {hd} + 1), lambda j: list_transform(vs, lambda r: r[j])) AS m\n"
        "            FROM (SELECT h, list(v ORDER BY pos) AS vs FROM {in2} GROUP BY h)) t ON t.g = e.h // {group}) a\n"
        "GROUP BY a.qpos" },
    [IR_OP_ADD] = { POS_V, POS_V_DEFS,
        "SELECT a.pos AS pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v\n"
        "FROM {in0} a JOIN {in1} b ON b.pos = a.pos" },
    /* {?est_small}: every row passes the filter; it only lowers DuckDB's
     * estimate of the relation (read_by_split_product() below) */
    [IR_OP_SWIGLU] = { POS_V, POS_V_DEFS,
        "SELECT pos, list_transform(v[1 : {n_out}], lambda g, i: (g / (1::FLOAT + exp(-g)::FLOAT)) * v[{n_out} + i]) AS v\n"
        "FROM {in0}{?est_small} WHERE pos >= (SELECT min(pos) FROM t_in){/}" },
    [IR_OP_CONCAT] = { POS_V, POS_V_DEFS,
        "SELECT a.pos AS pos, {?in2}list_concat({/}list_concat(a.v, b.v){?in2}, c.v){/} AS v\n"
        "FROM {in0} a JOIN {in1} b ON b.pos = a.pos{?in2} JOIN {in2} c ON c.pos = a.pos{/}" },
    [IR_OP_LAST] = { POS_V, POS_V_DEFS,
        "SELECT pos, v FROM {in0} WHERE pos = (SELECT max(pos) FROM {in1})" },
    [IR_OP_ARGMAX] = { "pos, tok", "pos INTEGER, tok INTEGER",
        "SELECT pos, list_position(v, list_max(v)) - 1 AS tok FROM {in0}" },
};

/* ------------------------------------------------- DuckDB, native:
     * sqlm's C scalar functions over whole FLOAT[] rows (db/duckdb_functions.c):
     * products are sqlm_dot (F32, F16; a row whole or as its ROW2COL pivot
     * columns, read in place) and sqlm_qdot (Q8_0/Q4_0 blocks
     * against the activation quantized by sqlm_q8 to a BLOB of ggml's
     * block_q8_0), computed as vec.c computes them.  Attention
     * gathers each query's scores and values with list() and reduces them
     * in C over whole cache rows.  EMBED, LAST and ARGMAX are DuckDB's templates. */
static const sql_template duck_native_templates[IR_OP_COUNT] = {
    [IR_OP_RMSNORM] = { POS_V, POS_V_DEFS,
        "SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, {eps}::FLOAT) AS v\n"
        "FROM {in0} x, norm n WHERE n.layer = {layer} AND n.kind = '{w}'" },
    [IR_OP_QUANT] = { "pos, v, q", "pos INTEGER, v FLOAT[], q BLOB",
        "{?quant}SELECT pos, v, sqlm_q8(v) AS q FROM {in0}{/}"
        "{?!quant}SELECT pos, {?f16}sqlm_f16(v){/}{?!f16}v{/} AS v, NULL::BLOB AS q FROM {in0}{/}" },
    [IR_OP_MATMUL] = { POS_V, POS_V_DEFS,
        "{?!chunked}"
        "SELECT x.pos AS pos,\n"
        "  list({?quant}sqlm_qdot(w.v, w.s, x.q){/}{?!quant}sqlm_dot(x.v, {wparts}){/}{?bias} + b.v[w.row + {bias_off} + 1]{/}"
        " ORDER BY w.row) AS v\n"
        "FROM {in0} x CROSS JOIN {wsrc} w{?bias} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}\n"
        "GROUP BY x.pos{/}"
        /* chunks: Q8_0/Q4_0 blocks still fold in order across chunks */
        "{?chunked}"
        "SELECT p.pos AS pos, list(p.s{?bias} + b.v[p.row + {bias_off} + 1]{/} ORDER BY p.row) AS v\n"
        "FROM (SELECT x.pos AS pos, w.row AS row,\n"
        "{?quant}"
        "        list_reduce(flatten(list(sqlm_qblocks(w.v, w.s, x.q, w.col // 32) ORDER BY w.col)),\n"
        "          lambda acc, t: ((acc + t)::FLOAT)::DOUBLE, 0::DOUBLE)::FLOAT AS s\n{/}"
        "{?!quant}"
        "        sum(sqlm_dot(x.v[w.col + 1 : w.col + {chunk}], w.v))::FLOAT AS s\n{/}"
        "      FROM {in0} x CROSS JOIN {w} w GROUP BY x.pos, w.row) p"
        "{?bias} CROSS JOIN (SELECT v FROM bias WHERE layer = {layer}) b{/}\n"
        "GROUP BY p.pos{/}" },
    [IR_OP_ROPE] = { POS_V, POS_V_DEFS,
        "SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, {n_head}, {n_head_kv}, {hd}, {interleaved}, {q_scale}::FLOAT) AS v\n"
        "FROM {in0} x JOIN rope r ON r.pos = x.pos" },
    /* whole rows: sqlm_qk and sqlm_attn take every head at once */
    [IR_OP_KV_APPEND] = { "pos, k, v", "pos INTEGER, k FLOAT[], v FLOAT[]",
        "SELECT pos, v[{q_dim} + 1 : {q_dim} + {kv_dim}] AS k, v[{v_off} + 1 : {v_off} + {kv_dim}] AS v\n"
        "FROM {in0}" },
    [IR_OP_ATTN_SCORE] = { "qpos, kpos, s", "qpos INTEGER, kpos INTEGER, s FLOAT[]",
        "SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, {n_head}, {n_head_kv}, {hd}) AS s\n"
        "FROM {in0} q JOIN {in1} k ON k.pos <= q.pos" },
    [IR_OP_ATTN_MAX] = { "qpos, mx", "qpos INTEGER, mx FLOAT[]",
        "SELECT qpos, sqlm_vmax(list(s)) AS mx FROM {in0} GROUP BY qpos" },
    [IR_OP_ATTN_OUT] = { POS_V, POS_V_DEFS,
        "SELECT s.qpos AS pos,\n"
        "  sqlm_attn(list(s.s ORDER BY s.kpos), any_value(m.mx), list(k.v ORDER BY s.kpos),\n"
        "            {n_head}, {n_head_kv}, {hd}) AS v\n"
        "FROM {in0} s JOIN {in1} m ON m.qpos = s.qpos JOIN {in2} k ON k.pos = s.kpos\n"
        "GROUP BY s.qpos" },
    [IR_OP_ADD] = { POS_V, POS_V_DEFS,
        "SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM {in0} a JOIN {in1} b ON b.pos = a.pos" },
    [IR_OP_SWIGLU] = { POS_V, POS_V_DEFS,
        "SELECT pos, sqlm_swiglu(v) AS v FROM {in0}" },
};

/* DuckDB, CTE merging: the KV append ends the statement of the QKV product
 * and RoPE, so that a layer needs no table of its rotated q, k and v and no
 * statement of its own for the append.  Each cache row also carries the q
 * of the heads of its kv head ({group} x {hd} values), which attention reads
 * for the positions of this step (those of t_in), and the rows of kv head 0
 * carry x, the residual stream entering the layer ({in1}), which the
 * layer's statement reads back (duck_add_kv): so no residual needs a table
 * and a statement of its own. */
static const sql_template duck_kv_qx = { "pos, h, q, k, v, x",
    "pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]",
    "SELECT x.pos AS pos, t.h::INTEGER AS h,\n"
    "  x.v[t.h * {group} * {hd} + 1 : (t.h + 1) * {group} * {hd}] AS q,\n"
    "  x.v[{q_dim} + t.h * {hd} + 1 : {q_dim} + t.h * {hd} + {hd}] AS k,\n"
    "  x.v[{v_off} + t.h * {hd} + 1 : {v_off} + t.h * {hd} + {hd}] AS v,\n"
    "  CASE WHEN t.h = 0 THEN r.v END AS x\n"
    "FROM {in0} x JOIN {in1} r ON r.pos = x.pos CROSS JOIN range({n_head_kv}) t(h)",
    .rereads_in0 = true };
/* The same for a merged layer's fused QKV product, one row per (position,
 * kv head) from product to cache: duck_matmul_heads, duck_rope_heads, then
 * the cache rows cut from each. */
static const sql_template duck_matmul_heads = { "pos, h, v", "pos INTEGER, h INTEGER, v {vec}", DUCK_MATMUL,
    .rereads_in0 = true };
static const sql_template duck_rope_heads = { "pos, h, v", "pos INTEGER, h INTEGER, v {vec}", DUCK_ROPE, false };
static const sql_template duck_kv_qx_heads = { "pos, h, q, k, v, x",
    "pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]",
    "SELECT x.pos AS pos, x.h AS h,\n"
    "  x.v[1 : {group} * {hd}] AS q,\n"
    "  x.v[{group} * {hd} + 1 : ({group} + 1) * {hd}] AS k,\n"
    "  x.v[({group} + 1) * {hd} + 1 : ({group} + 2) * {hd}] AS v,\n"
    "  CASE WHEN x.h = 0 THEN r.v END AS x\n"
    "FROM {in0} x JOIN {in1} r ON r.pos = x.pos", false };
static const sql_template duck_add_kv = { POS_V, POS_V_DEFS,
    "SELECT a.pos AS pos, list_transform(a.x, lambda e, i: e + b.v[i]) AS v\n"
    "FROM {in0} a JOIN {in1} b ON b.pos = a.pos\n"
    "WHERE a.h = 0 AND a.pos >= (SELECT min(pos) FROM t_in)", false };
/* This step's query rows are taken from the cache first, in a CTE of their
 * own: with the filter in the join's WHERE, the plan prepared on empty
 * tables joined every cached row with every earlier one and filtered the
 * n (n + 1) / 2 pairs afterwards.  The query heads of a kv head come from
 * unnest(range(group)), not a cross join with range(group): that join
 * raised DuckDB's estimate of the attention output (8 rows for TinyLlama)
 * above the out-projection's blocks, whose weights it then put on the
 * build side and copied every step (test-duckdb 7). */
static const sql_template duck_score_q = { "qpos, kpos, h, s", "qpos INTEGER, kpos INTEGER, h INTEGER, s FLOAT",
    "WITH q AS MATERIALIZED (SELECT pos, h, q FROM {in0} WHERE pos >= (SELECT min(pos) FROM t_in))\n"
    "{?gqa}"
    "SELECT q.pos AS qpos, k.pos AS kpos, (q.h * {group} + q.g)::INTEGER AS h,\n"
    "  list_dot_product(q.q[q.g * {hd} + 1 : q.g * {hd} + {hd}], k.k) AS s\n"
    "FROM (SELECT pos, h, q, unnest(range({group})) AS g FROM q) q JOIN {in1} k ON k.h = q.h AND k.pos <= q.pos{/}"
    "{?!gqa}"
    "SELECT q.pos AS qpos, k.pos AS kpos, q.h AS h, list_dot_product(q.q, k.k) AS s\n"
    "FROM q JOIN {in1} k ON k.h = q.h AND k.pos <= q.pos{/}", false };

static const sql_merged_templates duck_merged = {
    .matmul_heads = &duck_matmul_heads,
    .rope_heads = &duck_rope_heads,
    .kv_heads = &duck_kv_qx_heads,
    .kv_x = &duck_kv_qx,
    .add_x = &duck_add_kv,
    .score_q = &duck_score_q,
};

/* ---------------------------------------------------------- the table */

/* The statement frame all three dialects share. */
#define FRAME_STANDARD {                                            \
        .create_temp = "CREATE TEMP TABLE IF NOT EXISTS %s(",       \
        .create_close = ")",                                        \
        .create_virtual = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.%1$s %2$s", \
        .clear = "DELETE FROM %s",                                  \
        .insert = "INSERT INTO %1$s(%2$s)\n",                       \
        .end = ";\n",                                               \
    }

static const sql_dialect dialects[DIA_COUNT] = {
    /* SQLite: no MATERIALIZED on a CTE read once, so that SQLite can run it as
     * a co-routine instead of writing its rows (megabytes of BLOBs in a
     * prefill) to a temporary table and reading them back; SQLite (3.35+)
     * still computes a CTE read twice once */
    [DIA_SQLITE] = {
        .name = "sqlite",
        .t_vec = "BLOB",
        .t_any = "",
        .pk = " PRIMARY KEY",
        .cte_mat = "",
        .weight_layout = WL_TILES,
        .vec_val = DBV_BLOB,
        .fused_attn = true,
        .templates = sqlite_templates,
        .base = -1,
        .frame = FRAME_STANDARD,
        .param = "?",
        .upsert = "INSERT OR REPLACE INTO %1$s(%2$s, %3$s) VALUES (%4$s, %5$s)",
        .layout = &sqlm_layout_tiles,
    },
    /* DuckDB, pure SQL; it drops a temporary table's deleted rows only at a
     * checkpoint (once per sequence: sqlm_exec_reset) */
    [DIA_DUCKDB] = {
        .name = "duckdb",
        .t_vec = "FLOAT[]",
        .t_any = "VARCHAR",
        .pk = "",
        .cte_mat = "",
        .weight_layout = WL_ROWS_F32,
        .vec_val = DBV_VEC,
        .q_blocks = DUCK_Q_BLOCKS,
        .row_blocks = true,
        .layer_merge = true,
        .templates = duck_templates,
        .merged = &duck_merged,
        .base = -1,
        .frame = FRAME_STANDARD,
        .param = "?",
        .upsert = "INSERT OR REPLACE INTO %1$s(%2$s, %3$s) VALUES (%4$s, %5$s)",
        .vacuum = "CHECKPOINT temp",
        .layout = &sqlm_layout_duckdb,
    },
    /* DuckDB with sqlm's C functions (db/duckdb_functions.c): the same storage; its
     * own templates where a function does the work, DuckDB's elsewhere; no
     * layer merging (its cache rows carry no q) */
    [DIA_DUCKDB_NATIVE] = {
        .name = "duckdb-native",
        .t_vec = "FLOAT[]",
        .t_any = "VARCHAR",
        .pk = "",
        .cte_mat = "",
        .weight_layout = WL_ROWS_F32,
        .vec_val = DBV_VEC,
        .q_blocks = DUCK_Q_BLOCKS,
        .row_blocks = true,
        .templates = duck_native_templates,
        .base = DIA_DUCKDB,
        .frame = FRAME_STANDARD,
        .param = "?",
        .upsert = "INSERT OR REPLACE INTO %1$s(%2$s, %3$s) VALUES (%4$s, %5$s)",
        .vacuum = "CHECKPOINT temp",
        .layout = &sqlm_layout_duckdb,
    },
};

/* The template of op for dialect d, or its base dialect's. */
static const sql_template *template_of(int op, const sql_dialect *d) {
    const sql_template *t = &d->templates[op];
    if (!t->sql && d->base >= 0) t = &dialects[d->base].templates[op];
    return t;
}

/* The template of node n of graph g: the hook's, a layer-merged node's
 * (cache rows carrying q and x), or the operator's. */
static const sql_template *node_template(const ir_graph *g, const ir_node *n, const sql_dialect *d) {
    const sql_emit_hook *h = g->emit_hook;
    const sql_template *t = h && h->node_template ? h->node_template(g, n, d) : NULL;
    if (t) return t;
    const sql_merged_templates *m = d->merged;
    if (m) {
        if (n->by_head && n->op == IR_OP_MATMUL) return m->matmul_heads;
        if (n->by_head && n->op == IR_OP_ROPE) return m->rope_heads;
        if (n->by_head && n->op == IR_OP_KV_APPEND) return m->kv_heads;
        if (n->kv_x && n->op == IR_OP_KV_APPEND) return m->kv_x;
        if (n->kv_x && n->op == IR_OP_ADD) return m->add_x;
        if (n->kv_q && n->op == IR_OP_ATTN_SCORE) return m->score_q;
    }
    return template_of(n->op, d);
}

/* A product that runs as two UNION ALL halves ({split_from}): ROW2COL's row
 * split, in a table or over two tables, or its blocks. */
static bool two_halves(const ir_node *n) { return n->split_at > 0 || n->blocks > 0; }

/* How often node n's SQL reads its input k: once per half of a row split,
 * once per ROW2COL subquery, once per weight row where the copying form
 * rereads {in0} (a correlated subquery), else once. */
static int input_reads(const ir_graph *g, const ir_node *n, int k, const sql_dialect *d) {
    if (n->op == IR_OP_MATMUL && two_halves(n)) return 2;
    if (n->op == IR_OP_MATMUL && n->pivot > 0 && n->pivot_per > 0) return (n->pivot + n->pivot_per - 1) / n->pivot_per;
    if (k == 0 && !n->inplace && node_template(g, n, d)->rereads_in0) return 2;
    return 1;
}

/* ----------------------------------------------------------- filling */

typedef struct emit_ctx {
    const ir_graph *g;
    const sql_dialect *d;
    int dia;
} emit_ctx;

#define KEY(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)

/* Whether node n is read by a product over a table-split weight.  Without
 * statistics DuckDB estimates the SwiGLU relation from the gate/up
 * product's rows (thousands): a table-split down product would then keep
 * its weights, not SwiGLU's few rows, for the build side of its cross joins
 * and copy them (1.1 + 1.5 ms per 110M layer, profiled); DuckDB's SWIGLU
 * template ({?est_small}) then adds a filter on this step's positions that
 * makes the estimate small.  A node is read through the QUANT
 * node that rounds it for a product of F16 weights. */
static bool read_by_split_product(const ir_graph *g, const ir_node *n) {
    for (int j = n->id + 1; j < g->n_nodes; j++) {
        const ir_node *r = &g->nodes[j];
        if (r->in[0] != n->id) continue;
        if (r->op == IR_OP_MATMUL && r->split_tables) return true;
        if (r->op == IR_OP_QUANT && read_by_split_product(g, r)) return true;   /* through its rounding */
    }
    return false;
}

/* The truth of a {?cond} section's condition, or -1 when unknown. */
static int cond_value(const ir_graph *g, const ir_node *n, const char *key, size_t klen) {
    const model_config *c = &g->cfg;
    if (KEY("bias")) return n->bias;
    if (KEY("interleaved")) return c->rope_interleaved != 0;
    if (KEY("chunked")) return n->chunk > 0 && n->chunk < n->n_in;
    if (KEY("pivoted")) return n->pivot > 0;
    if (KEY("split")) return two_halves(n);
    if (KEY("blocks")) return n->blocks > 0;
    /* a product's (pos, row, s) rows from ROW2COL's row split, blocks or
     * pivot form */
    if (KEY("row2col")) return two_halves(n) || n->pivot > 0;
    if (KEY("est_small")) return read_by_split_product(g, n);
    if (KEY("by_head")) return n->by_head;
    if (KEY("gqa")) return c->n_head_kv > 0 && c->n_head_kv < c->n_head;
    if (KEY("bias_part")) return n->bias_off > 0 || n->bias_part;
    if (KEY("in2")) return n->in[2] >= 0;
    /* the weight type: Q8_0/Q4_0 (a Q8_0 activation), F16 */
    if (KEY("quant")) return sqlm_vec_act_type(n->wdtype) == DT_Q8_0;
    if (KEY("f16")) return n->wdtype == DT_F16;
    if (KEY("inplace")) return n->inplace;
    /* a factor left for q after import folded a power of two into W_q
     * (x * 1 is x: no pass over the row then) */
    if (KEY("q_scaled")) return c->q_scale > 0 && c->q_scale != 1.0f;
    return -1;
}

/* Append the value of placeholder key for node n. */
static bool fill_key(emit_ctx *e, const ir_node *n, const char *key, size_t klen, buf *b) {
    const model_config *c = &e->g->cfg;
    const int64_t q_dim = (int64_t)c->n_head * c->head_dim;
    const int64_t kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    if (klen == 3 && memcmp(key, "in", 2) == 0 && key[2] >= '0' && key[2] < '0' + IR_MAX_IN) {
        int in = n->in[key[2] - '0'];
        if (in < 0) return false;
        sqlm_buf_puts(b, e->g->nodes[in].name);
    }
    else if (KEY("w")) sqlm_buf_puts(b, n->weight);
    else if (KEY("layer")) sqlm_buf_appendf(b, "%d", n->layer);
    else if (KEY("n_out")) sqlm_buf_appendf(b, "%lld", (long long)n->n_out);
    else if (KEY("n_in")) sqlm_buf_appendf(b, "%lld", (long long)n->n_in);
    else if (KEY("dtype")) sqlm_buf_appendf(b, "%d", n->wdtype);
    else if (KEY("chunk")) sqlm_buf_appendf(b, "%lld", (long long)n->chunk);
    else if (KEY("n_blocks")) sqlm_buf_appendf(b, "%lld", (long long)(n->n_in / QK));
    else if (KEY("tile_rows")) sqlm_buf_appendf(b, "%d", n->tile_rows);
    else if (KEY("eps")) sqlm_buf_appendf(b, "%.9g", c->norm_eps);
    else if (KEY("n_head")) sqlm_buf_appendf(b, "%d", c->n_head);
    else if (KEY("n_head_kv")) sqlm_buf_appendf(b, "%d", c->n_head_kv);
    else if (KEY("group")) sqlm_buf_appendf(b, "%d", c->n_head_kv > 0 ? c->n_head / c->n_head_kv : 1);
    else if (KEY("hd")) sqlm_buf_appendf(b, "%d", c->head_dim);
    else if (KEY("half")) sqlm_buf_appendf(b, "%d", c->head_dim / 2);
    else if (KEY("q_scale")) sqlm_buf_appendf(b, "%.9g", c->q_scale > 0 ? c->q_scale : 1.0f);
    else if (KEY("interleaved")) sqlm_buf_appendf(b, "%d", c->rope_interleaved ? 1 : 0);
    else if (KEY("q_dim")) sqlm_buf_appendf(b, "%lld", (long long)q_dim);
    else if (KEY("kv_dim")) sqlm_buf_appendf(b, "%lld", (long long)kv_dim);
    else if (KEY("rot_dim")) sqlm_buf_appendf(b, "%lld", (long long)(q_dim + kv_dim));
    /* RoPE's q values and rotated values: of a row, or of a kv head's row */
    else if (KEY("rope_q")) sqlm_buf_appendf(b, "%lld", (long long)(n->by_head ? q_dim / MAX(c->n_head_kv, 1) : q_dim));
    else if (KEY("rope_rot"))
        sqlm_buf_appendf(b, "%lld", (long long)(n->by_head ? (q_dim + kv_dim) / MAX(c->n_head_kv, 1) : q_dim + kv_dim));
    else if (KEY("hkey_w") || KEY("hkey_r") || KEY("hkey_p")) {   /* the kv head of w.row, r.row or p.row */
        const char t = key[5];
        const int g = c->n_head_kv > 0 ? c->n_head / c->n_head_kv : 1;
        sqlm_buf_appendf(b, "(CASE WHEN %c.row < %lld THEN %c.row // %lld WHEN %c.row < %lld THEN (%c.row - %lld) // %d"
                       " ELSE (%c.row - %lld) // %d END)::INTEGER",
                    t, (long long)q_dim, t, (long long)g * c->head_dim, t, (long long)(q_dim + kv_dim), t,
                    (long long)q_dim, c->head_dim, t, (long long)(q_dim + kv_dim), c->head_dim);
    }
    else if (KEY("v_off")) sqlm_buf_appendf(b, "%lld", (long long)(q_dim + kv_dim));
    else if (KEY("bias_off")) sqlm_buf_appendf(b, "%lld", (long long)n->bias_off);
    else if (KEY("pivot_per")) sqlm_buf_appendf(b, "%d", n->pivot_per);
    else if (KEY("wparts")) {   /* a weight row: v, or its ROW2COL pivot columns in order */
        if (n->pivot <= 0) sqlm_buf_puts(b, "w.v");
        for (int c = 0; c < n->pivot; c++) sqlm_buf_appendf(b, "%sw.c%d", c ? ", " : "", c);
    }
    else if (KEY("split_from")) {
        if (!two_halves(n) || n->in[0] < 0) return false;
        const char *x = e->g->nodes[n->in[0]].name;
        for (int h = 0; h < 2; h++) {
            sqlm_buf_appendf(b, "%sSELECT x.pos AS pos, w.row AS row, ", h ? "\n      UNION ALL\n      " : "");
            /* a block's dot products (and biases: its rows are w.row..) */
            if (n->blocks > 0 && n->bias)
                sqlm_buf_appendf(b, "list_transform(w.m, lambda e, i: list_dot_product(e, x.v) + b.v[w.row + i + %lld])",
                            (long long)n->bias_off);
            else if (n->blocks > 0) sqlm_buf_puts(b, "list_transform(w.m, lambda e: list_dot_product(e, x.v))");
            else if (n->pivot <= 0) sqlm_buf_puts(b, "list_dot_product(w.v, x.v)");
            else {
                sqlm_buf_puts(b, "(");
                for (int c = 0; c < n->pivot; c++)
                    sqlm_buf_appendf(b, "%slist_dot_product(w.c%d, x.c%d)", c ? " + " : "", c, c);
                sqlm_buf_puts(b, ")::FLOAT");
            }
            /* the halves: the tables {w} and {w}_1, or the rows of {w} on
             * either side of split_at */
            sqlm_buf_appendf(b, " AS s\n        FROM %s%s w CROSS JOIN ", n->weight, n->split_tables && h ? "_1" : "");
            if (n->pivot <= 0) sqlm_buf_appendf(b, "%s x", x);
            else {
                const int64_t k = n->n_in / n->pivot;
                sqlm_buf_puts(b, "(SELECT pos");
                for (int c = 0; c < n->pivot; c++)
                    sqlm_buf_appendf(b, ", v[%lld : %lld] AS c%d", (long long)(c * k + 1), (long long)(c * k + k), c);
                sqlm_buf_appendf(b, " FROM %s) x", x);
            }
            if (n->blocks > 0 && n->bias)
                sqlm_buf_appendf(b, " CROSS JOIN (SELECT v FROM bias WHERE layer = %d) b", n->layer);
            if (!n->split_tables) sqlm_buf_appendf(b, " WHERE w.row %s %lld", h ? ">=" : "<", (long long)n->split_at);
        }
    }
    else if (KEY("wsrc")) {   /* the weight rows as one relation */
        if (!n->split_tables) sqlm_buf_puts(b, n->weight);
        else if (!n->blocks) sqlm_buf_appendf(b, "(SELECT * FROM %s UNION ALL SELECT * FROM %s_1)", n->weight, n->weight);
        else   /* a row per block: its rows unnested */
            for (int h = 0; h < 2; h++)
                sqlm_buf_appendf(b, "%sSELECT row + generate_subscripts(m, 1) - 1 AS row, unnest(m) AS v FROM %s%s%s",
                            h ? " UNION ALL " : "(", n->weight, h ? "_1" : "", h ? ")" : "");
    }
    else if (KEY("r2c_sum") || KEY("r2c_from")) {
        if (n->pivot <= 0 || n->pivot_per <= 0 || n->in[0] < 0) return false;
        const int per = n->pivot_per, n_sub = (n->pivot + per - 1) / per;
        const int64_t k = n->n_in / n->pivot;
        for (int s = 0; s < n_sub; s++) {
            if (KEY("r2c_sum")) {
                sqlm_buf_appendf(b, "%ss%d.p", s ? " + " : "", s);
                continue;
            }
            const int c0 = s * per, c1 = MIN((s + 1) * per, n->pivot);
            sqlm_buf_appendf(b, "%s(SELECT x.pos AS pos, w.row AS row, ", s ? "\n      POSITIONAL JOIN " : "");
            for (int c = c0; c < c1; c++)
                sqlm_buf_appendf(b, "%slist_dot_product(w.c%d, x.c%d)", c > c0 ? " + " : "", c, c);
            sqlm_buf_appendf(b, " AS p\n        FROM %s w CROSS JOIN (SELECT pos", n->weight);
            for (int c = c0; c < c1; c++)
                sqlm_buf_appendf(b, ", v[%lld : %lld] AS c%d", (long long)(c * k + 1), (long long)(c * k + k), c);
            sqlm_buf_appendf(b, " FROM %s) x ORDER BY w.row, x.pos) s%d", e->g->nodes[n->in[0]].name, s);
        }
    }
    else return false;
    return true;
}

static int fill(emit_ctx *e, const ir_node *n, const char *tmpl, buf *b) {
    int depth = 0, off = 0;   /* open {?cond} sections; the first `off` levels deep that is false */
    for (const char *p = tmpl; *p;) {
        bool skip = off > 0;
        if (*p != '{') {
            const char *q = strchr(p, '{');
            size_t len = q ? (size_t)(q - p) : strlen(p);
            if (!skip) sqlm_buf_append(b, p, len);
            p += len;
            continue;
        }
        const char *end = strchr(p, '}');
        const char *key = p + 1;
        size_t klen = end ? (size_t)(end - key) : 0;
        bool ok = end != NULL;
        if (ok && klen >= 2 && key[0] == '?') {
            bool neg = key[1] == '!';
            int v = cond_value(e->g, n, key + 1 + neg, klen - 1 - neg);
            ok = v >= 0;
            depth++;
            if (!off && v == neg) off = depth;
        } else if (ok && klen == 1 && key[0] == '/') {
            ok = depth > 0;
            if (off == depth) off = 0;
            depth--;
        } else if (ok && !skip) {
            ok = fill_key(e, n, key, klen, b);
        }
        if (!ok)
            return sqlm_error(SQLM_ERROR, "template of %s: bad placeholder at \"%.20s\"",
                              sqlm_ir_op_name(n->op), p);
        p = end + 1;
    }
    if (depth)
        return sqlm_error(SQLM_ERROR, "template of %s: unclosed {?...} section", sqlm_ir_op_name(n->op));
    return b->rc;
}

#undef KEY

/* ------------------------------------------------------------- program */

static int add_step(sql_program *p, const char *name, buf *sql) {
    sql_stmt *s = realloc(p->steps, (size_t)(p->n_steps + 1) * sizeof *s);
    if (s) p->steps = s;   /* the old block is gone once realloc moved it */
    if (!s || sql->rc) return sqlm_error(SQLM_NOMEM, "out of memory emitting SQL");
    char *nm = sqlm_strdup(name), *text = sqlm_buf_detach(sql);
    if (!nm || !text) {
        free(nm);
        free(text);
        return sqlm_error(SQLM_NOMEM, "out of memory emitting SQL");
    }
    s[p->n_steps].name = nm;
    s[p->n_steps].sql = text;
    p->n_steps++;
    return SQLM_OK;
}

void sqlm_sql_program_free(sql_program *p) {
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) {
        free(p->steps[i].name);
        free(p->steps[i].sql);
    }
    free(p->steps);
    free(p->setup);
    free(p->reset);
    free(p->logits_table);
    free(p->next_token);
    memset(p, 0, sizeof *p);
}

/* defs "USING module" makes a TEMP virtual table. */
static void create_table(emit_ctx *e, buf *b, const char *name, const char *defs) {
    const sql_frame *f = &e->d->frame;
    if (strncmp(defs, "USING ", 6) == 0) {
        sqlm_buf_appendf(b, f->create_virtual, name, defs);
        sqlm_buf_puts(b, f->end);
        return;
    }
    sqlm_buf_appendf(b, f->create_temp, name);
    sqlm_dialect_subst(e->dia, defs, b);
    sqlm_buf_puts(b, f->create_close);
    sqlm_buf_puts(b, f->end);
}

int sqlm_emit_program(const ir_graph *g, int dia, sql_program *out) {
    memset(out, 0, sizeof *out);
    if (dia < 0 || dia >= DIA_COUNT) return sqlm_error(SQLM_UNSUPPORTED, "unknown dialect %d", dia);
    emit_ctx e = { g, &dialects[dia], dia };
    const sql_frame *f = &e.d->frame;
    const sql_emit_hook *h = g->emit_hook;
    if (h && h->check) {
        int rc = h->check(g, e.d);
        if (rc) return rc;
    }
    out->dialect = dia;
    buf setup, reset, sql;
    int rc = SQLM_OK;
    sqlm_buf_init(&setup), sqlm_buf_init(&reset), sqlm_buf_init(&sql);

    create_table(&e, &setup, "t_in", "pos INTEGER{pk}, tok INTEGER");
    int first = -1;   /* first node of the pending statement */
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == IR_OP_INPUT) continue;
        const sql_template *t = node_template(g, n, e.d);
        if (!t->sql) {
            rc = sqlm_error(SQLM_UNSUPPORTED, "operator %s has no template for dialect %s",
                            sqlm_ir_op_name(n->op), e.d->name);
            goto fail;
        }
        if (first < 0) first = i;
        if (!n->materialize) continue;

        /* n ends a statement: its table, then the CTEs since `first`. */
        create_table(&e, &setup, n->name, t->defs);
        bool append = n->op == IR_OP_KV_APPEND;   /* the cache only grows */
        sqlm_buf_appendf(append ? &reset : &sql, f->clear, n->name);
        if (!append) {
            if ((rc = add_step(out, n->name, &sql))) goto fail;
        } else {
            sqlm_buf_puts(&reset, f->end);
        }
        sqlm_buf_appendf(&sql, f->insert, n->name, t->cols);
        bool with = false;
        for (int j = first; j < i; j++) {
            const ir_node *c = &g->nodes[j];
            if (c->materialize || c->op == IR_OP_INPUT) continue;
            const sql_template *ct = node_template(g, c, e.d);
            /* A CTE read more than once in its statement (by the subqueries of
             * a ROW2COL product, or by unfused q/k/v) is computed once: DuckDB
             * would otherwise inline it into every reader (1.1B shape, all
             * passes: 4.7 s per decode step instead of about 1.2 s). */
            int reads = 0;
            for (int r = j + 1; r <= i; r++)
                for (int k = 0; k < IR_MAX_IN; k++)
                    if (g->nodes[r].in[k] == j) reads += input_reads(g, &g->nodes[r], k, e.d);
            sqlm_buf_appendf(&sql, "%s%s(%s) AS%s (\n", with ? ",\n" : "WITH ", c->name, ct->cols,
                        reads > 1 ? " MATERIALIZED" : e.d->cte_mat);
            if ((rc = fill(&e, c, ct->sql, &sql))) goto fail;
            sqlm_buf_puts(&sql, "\n)");
            with = true;
        }
        if (with) sqlm_buf_puts(&sql, "\n");
        if ((rc = fill(&e, n, t->sql, &sql))) goto fail;
        if ((rc = add_step(out, n->name, &sql))) goto fail;
        first = -1;
    }
    /* The greedy next token, in SQL: argmax over the logits table. */
    ir_node am = { .op = IR_OP_ARGMAX, .in = { g->output, -1, -1 }, .layer = -1 };
    if (!template_of(IR_OP_ARGMAX, e.d)->sql) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "operator ARGMAX has no template for dialect %s", e.d->name);
        goto fail;
    }
    if ((rc = fill(&e, &am, template_of(IR_OP_ARGMAX, e.d)->sql, &sql))) goto fail;
    sqlm_buf_puts(&sql, " ORDER BY pos");
    out->next_token = sqlm_buf_detach(&sql);
    /* Per-step tables are cleared by the step itself; reset clears the cache. */
    out->setup = sqlm_buf_detach(&setup);
    out->reset = sqlm_buf_detach(&reset);
    out->logits_table = sqlm_strdup(g->nodes[g->output].name);
    if (!out->setup || !out->reset || !out->logits_table || !out->next_token) {
        rc = sqlm_error(SQLM_NOMEM, "out of memory");
        goto fail;
    }
    return SQLM_OK;
fail:
    sqlm_buf_free(&setup), sqlm_buf_free(&reset), sqlm_buf_free(&sql);
    sqlm_sql_program_free(out);
    return rc ? rc : SQLM_NOMEM;
}

char *sqlm_sql_program_text(const sql_program *p, const int32_t *toks, int n_toks) {
    buf b;
    sqlm_buf_init(&b);
    sqlm_buf_puts(&b, "-- sqlm program: setup (once per session)\n");
    sqlm_buf_puts(&b, p->setup);
    sqlm_buf_puts(&b, "\n-- reset (once per sequence: empties the KV cache)\n");
    sqlm_buf_puts(&b, p->reset);
    if (n_toks > 0) {
        sqlm_buf_puts(&b, "\n-- the tokens of this step at positions 0..\nDELETE FROM t_in;\nINSERT INTO t_in(pos, tok) VALUES ");
        for (int i = 0; i < n_toks; i++) sqlm_buf_appendf(&b, "%s(%d, %d)", i ? ", " : "", i, (int)toks[i]);
        sqlm_buf_puts(&b, ";\n");
    }
    sqlm_buf_puts(&b, "\n-- step (once per batch of tokens inserted into t_in(pos, tok))\n");
    const char *end = sqlm_dialect_get(p->dialect) ? dialects[p->dialect].frame.end : ";\n";
    for (int i = 0; i < p->n_steps; i++) sqlm_buf_puts(&b, p->steps[i].sql), sqlm_buf_puts(&b, end);
    sqlm_buf_appendf(&b, "-- the next-token logits are in %s(pos, v); the greedy next token:\n%s%s",
                p->logits_table, p->next_token, end);
    return b.rc ? (sqlm_buf_free(&b), NULL) : sqlm_buf_detach(&b);
}
