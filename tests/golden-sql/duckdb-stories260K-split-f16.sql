-- sqlm program: setup (once per session)
CREATE TEMP TABLE IF NOT EXISTS t_in(pos INTEGER, tok INTEGER);
CREATE TEMP TABLE IF NOT EXISTS kv0(pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv1(pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv2(pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv3(pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv4(pos INTEGER, h INTEGER, q FLOAT[], k FLOAT[], v FLOAT[], x FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS logits(pos INTEGER, v FLOAT[]);

-- reset (once per sequence: empties the KV cache)
DELETE FROM kv0;
DELETE FROM kv1;
DELETE FROM kv2;
DELETE FROM kv3;
DELETE FROM kv4;

-- the tokens of this step at positions 0..
DELETE FROM t_in;
INSERT INTO t_in(pos, tok) VALUES (0, 1);

-- step (once per batch of tokens inserted into t_in(pos, tok))
INSERT INTO kv0(pos, h, q, k, v, x)
WITH tok_embd(pos, v) AS MATERIALIZED (
SELECT i.pos AS pos, w.v AS v
FROM t_in i JOIN output w ON w.row = i.tok
),
l0_attn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM tok_embd) x,
  norm n WHERE n.layer = 0 AND n.kind = 'attn'
),
l0_qkv_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l0_attn_norm
),
l0_qkv(pos, h, v) AS (
SELECT r.pos AS pos, (CASE WHEN r.row < 64 THEN r.row // 16 WHEN r.row < 96 THEN (r.row - 64) // 8 ELSE (r.row - 96) // 8 END)::INTEGER AS h, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_qkv w CROSS JOIN l0_qkv_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_qkv_1 w CROSS JOIN l0_qkv_in x) r
GROUP BY r.pos, h
),
l0_rope(pos, h, v) AS (
SELECT x.pos AS pos, x.h AS h, list_transform(x.y, lambda e, i: CASE
  WHEN i > 24 THEN e
  WHEN (i - 1) % 2 = 0 THEN e * r.cs[(i - 1) % 8 + 1] - x.y[i + 1] * r.cs[(i - 1) % 8 + 2]
  ELSE e * r.cs[(i - 1) % 8] + x.y[i - 1] * r.cs[(i - 1) % 8 + 1] END) AS v
FROM (SELECT pos, h, list_transform(v, lambda e, i: CASE WHEN i <= 16 THEN e * 1.41421354::FLOAT ELSE e END) AS y
      FROM l0_qkv) x
  JOIN rope r ON r.pos = x.pos
)
SELECT x.pos AS pos, x.h AS h,
  x.v[1 : 2 * 8] AS q,
  x.v[2 * 8 + 1 : (2 + 1) * 8] AS k,
  x.v[(2 + 1) * 8 + 1 : (2 + 2) * 8] AS v,
  CASE WHEN x.h = 0 THEN r.v END AS x
FROM l0_rope x JOIN tok_embd r ON r.pos = x.pos;
INSERT INTO kv1(pos, h, q, k, v, x)
WITH l0_score(qpos, kpos, h, s) AS MATERIALIZED (
WITH q AS MATERIALIZED (SELECT pos, h, q FROM kv0 WHERE pos >= (SELECT min(pos) FROM t_in))
SELECT q.pos AS qpos, k.pos AS kpos, (q.h * 2 + q.g)::INTEGER AS h,
  list_dot_product(q.q[q.g * 8 + 1 : q.g * 8 + 8], k.k) AS s
FROM (SELECT pos, h, q, unnest(range(2)) AS g FROM q) q JOIN kv0 k ON k.h = q.h AND k.pos <= q.pos
),
l0_smax(qpos, h, es, den) AS (
SELECT qpos, h, es, list_sum(es) AS den
FROM (SELECT qpos, h, list_transform(ss, lambda s: exp(s - mx)::FLOAT) AS es
      FROM (SELECT qpos, h, list(s ORDER BY kpos) AS ss, max(s) AS mx FROM l0_score GROUP BY qpos, h))
),
l0_attn(pos, v) AS (
SELECT a.qpos AS pos, flatten(list(a.o ORDER BY a.h)) AS v
FROM (SELECT e.qpos AS qpos, e.h AS h,
        list_transform(t.m, lambda c: (list_dot_product(e.es, c[1 : len(e.es)]) / e.den)::FLOAT) AS o
      FROM l0_smax e
      JOIN (SELECT h AS g, list_transform(range(1, 8 + 1), lambda j: list_transform(vs, lambda r: r[j])) AS m
            FROM (SELECT h, list(v ORDER BY pos) AS vs FROM kv0 GROUP BY h)) t ON t.g = e.h // 2) a
GROUP BY a.qpos
),
l0_attn_out_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l0_attn
),
l0_attn_out(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_o w CROSS JOIN l0_attn_out_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_o_1 w CROSS JOIN l0_attn_out_in x) r
GROUP BY r.pos
),
l0_resid_attn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.x, lambda e, i: e + b.v[i]) AS v
FROM kv0 a JOIN l0_attn_out b ON b.pos = a.pos
WHERE a.h = 0 AND a.pos >= (SELECT min(pos) FROM t_in)
),
l0_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l0_resid_attn) x,
  norm n WHERE n.layer = 0 AND n.kind = 'ffn'
),
l0_gate_up_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l0_ffn_norm
),
l0_gate_up(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_gu w CROSS JOIN l0_gate_up_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_gu_1 w CROSS JOIN l0_gate_up_in x) r
GROUP BY r.pos
),
l0_swiglu(pos, v) AS (
SELECT pos, list_transform(v[1 : 172], lambda g, i: (g / (1::FLOAT + exp(-g)::FLOAT)) * v[172 + i]) AS v
FROM l0_gate_up WHERE pos >= (SELECT min(pos) FROM t_in)
),
l0_down_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l0_swiglu
),
l0_down(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_down w CROSS JOIN l0_down_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk0_down_1 w CROSS JOIN l0_down_in x) r
GROUP BY r.pos
),
l0_resid_ffn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v
FROM l0_resid_attn a JOIN l0_down b ON b.pos = a.pos
),
l1_attn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l0_resid_ffn) x,
  norm n WHERE n.layer = 1 AND n.kind = 'attn'
),
l1_qkv_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l1_attn_norm
),
l1_qkv(pos, h, v) AS (
SELECT r.pos AS pos, (CASE WHEN r.row < 64 THEN r.row // 16 WHEN r.row < 96 THEN (r.row - 64) // 8 ELSE (r.row - 96) // 8 END)::INTEGER AS h, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_qkv w CROSS JOIN l1_qkv_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_qkv_1 w CROSS JOIN l1_qkv_in x) r
GROUP BY r.pos, h
),
l1_rope(pos, h, v) AS (
SELECT x.pos AS pos, x.h AS h, list_transform(x.y, lambda e, i: CASE
  WHEN i > 24 THEN e
  WHEN (i - 1) % 2 = 0 THEN e * r.cs[(i - 1) % 8 + 1] - x.y[i + 1] * r.cs[(i - 1) % 8 + 2]
  ELSE e * r.cs[(i - 1) % 8] + x.y[i - 1] * r.cs[(i - 1) % 8 + 1] END) AS v
FROM (SELECT pos, h, list_transform(v, lambda e, i: CASE WHEN i <= 16 THEN e * 1.41421354::FLOAT ELSE e END) AS y
      FROM l1_qkv) x
  JOIN rope r ON r.pos = x.pos
)
SELECT x.pos AS pos, x.h AS h,
  x.v[1 : 2 * 8] AS q,
  x.v[2 * 8 + 1 : (2 + 1) * 8] AS k,
  x.v[(2 + 1) * 8 + 1 : (2 + 2) * 8] AS v,
  CASE WHEN x.h = 0 THEN r.v END AS x
FROM l1_rope x JOIN l0_resid_ffn r ON r.pos = x.pos;
INSERT INTO kv2(pos, h, q, k, v, x)
WITH l1_score(qpos, kpos, h, s) AS MATERIALIZED (
WITH q AS MATERIALIZED (SELECT pos, h, q FROM kv1 WHERE pos >= (SELECT min(pos) FROM t_in))
SELECT q.pos AS qpos, k.pos AS kpos, (q.h * 2 + q.g)::INTEGER AS h,
  list_dot_product(q.q[q.g * 8 + 1 : q.g * 8 + 8], k.k) AS s
FROM (SELECT pos, h, q, unnest(range(2)) AS g FROM q) q JOIN kv1 k ON k.h = q.h AND k.pos <= q.pos
),
l1_smax(qpos, h, es, den) AS (
SELECT qpos, h, es, list_sum(es) AS den
FROM (SELECT qpos, h, list_transform(ss, lambda s: exp(s - mx)::FLOAT) AS es
      FROM (SELECT qpos, h, list(s ORDER BY kpos) AS ss, max(s) AS mx FROM l1_score GROUP BY qpos, h))
),
l1_attn(pos, v) AS (
SELECT a.qpos AS pos, flatten(list(a.o ORDER BY a.h)) AS v
FROM (SELECT e.qpos AS qpos, e.h AS h,
        list_transform(t.m, lambda c: (list_dot_product(e.es, c[1 : len(e.es)]) / e.den)::FLOAT) AS o
      FROM l1_smax e
      JOIN (SELECT h AS g, list_transform(range(1, 8 + 1), lambda j: list_transform(vs, lambda r: r[j])) AS m
            FROM (SELECT h, list(v ORDER BY pos) AS vs FROM kv1 GROUP BY h)) t ON t.g = e.h // 2) a
GROUP BY a.qpos
),
l1_attn_out_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l1_attn
),
l1_attn_out(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_o w CROSS JOIN l1_attn_out_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_o_1 w CROSS JOIN l1_attn_out_in x) r
GROUP BY r.pos
),
l1_resid_attn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.x, lambda e, i: e + b.v[i]) AS v
FROM kv1 a JOIN l1_attn_out b ON b.pos = a.pos
WHERE a.h = 0 AND a.pos >= (SELECT min(pos) FROM t_in)
),
l1_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l1_resid_attn) x,
  norm n WHERE n.layer = 1 AND n.kind = 'ffn'
),
l1_gate_up_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l1_ffn_norm
),
l1_gate_up(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_gu w CROSS JOIN l1_gate_up_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_gu_1 w CROSS JOIN l1_gate_up_in x) r
GROUP BY r.pos
),
l1_swiglu(pos, v) AS (
SELECT pos, list_transform(v[1 : 172], lambda g, i: (g / (1::FLOAT + exp(-g)::FLOAT)) * v[172 + i]) AS v
FROM l1_gate_up WHERE pos >= (SELECT min(pos) FROM t_in)
),
l1_down_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l1_swiglu
),
l1_down(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_down w CROSS JOIN l1_down_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk1_down_1 w CROSS JOIN l1_down_in x) r
GROUP BY r.pos
),
l1_resid_ffn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v
FROM l1_resid_attn a JOIN l1_down b ON b.pos = a.pos
),
l2_attn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l1_resid_ffn) x,
  norm n WHERE n.layer = 2 AND n.kind = 'attn'
),
l2_qkv_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l2_attn_norm
),
l2_qkv(pos, h, v) AS (
SELECT r.pos AS pos, (CASE WHEN r.row < 64 THEN r.row // 16 WHEN r.row < 96 THEN (r.row - 64) // 8 ELSE (r.row - 96) // 8 END)::INTEGER AS h, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_qkv w CROSS JOIN l2_qkv_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_qkv_1 w CROSS JOIN l2_qkv_in x) r
GROUP BY r.pos, h
),
l2_rope(pos, h, v) AS (
SELECT x.pos AS pos, x.h AS h, list_transform(x.y, lambda e, i: CASE
  WHEN i > 24 THEN e
  WHEN (i - 1) % 2 = 0 THEN e * r.cs[(i - 1) % 8 + 1] - x.y[i + 1] * r.cs[(i - 1) % 8 + 2]
  ELSE e * r.cs[(i - 1) % 8] + x.y[i - 1] * r.cs[(i - 1) % 8 + 1] END) AS v
FROM (SELECT pos, h, list_transform(v, lambda e, i: CASE WHEN i <= 16 THEN e * 1.41421354::FLOAT ELSE e END) AS y
      FROM l2_qkv) x
  JOIN rope r ON r.pos = x.pos
)
SELECT x.pos AS pos, x.h AS h,
  x.v[1 : 2 * 8] AS q,
  x.v[2 * 8 + 1 : (2 + 1) * 8] AS k,
  x.v[(2 + 1) * 8 + 1 : (2 + 2) * 8] AS v,
  CASE WHEN x.h = 0 THEN r.v END AS x
FROM l2_rope x JOIN l1_resid_ffn r ON r.pos = x.pos;
INSERT INTO kv3(pos, h, q, k, v, x)
WITH l2_score(qpos, kpos, h, s) AS MATERIALIZED (
WITH q AS MATERIALIZED (SELECT pos, h, q FROM kv2 WHERE pos >= (SELECT min(pos) FROM t_in))
SELECT q.pos AS qpos, k.pos AS kpos, (q.h * 2 + q.g)::INTEGER AS h,
  list_dot_product(q.q[q.g * 8 + 1 : q.g * 8 + 8], k.k) AS s
FROM (SELECT pos, h, q, unnest(range(2)) AS g FROM q) q JOIN kv2 k ON k.h = q.h AND k.pos <= q.pos
),
l2_smax(qpos, h, es, den) AS (
SELECT qpos, h, es, list_sum(es) AS den
FROM (SELECT qpos, h, list_transform(ss, lambda s: exp(s - mx)::FLOAT) AS es
      FROM (SELECT qpos, h, list(s ORDER BY kpos) AS ss, max(s) AS mx FROM l2_score GROUP BY qpos, h))
),
l2_attn(pos, v) AS (
SELECT a.qpos AS pos, flatten(list(a.o ORDER BY a.h)) AS v
FROM (SELECT e.qpos AS qpos, e.h AS h,
        list_transform(t.m, lambda c: (list_dot_product(e.es, c[1 : len(e.es)]) / e.den)::FLOAT) AS o
      FROM l2_smax e
      JOIN (SELECT h AS g, list_transform(range(1, 8 + 1), lambda j: list_transform(vs, lambda r: r[j])) AS m
            FROM (SELECT h, list(v ORDER BY pos) AS vs FROM kv2 GROUP BY h)) t ON t.g = e.h // 2) a
GROUP BY a.qpos
),
l2_attn_out_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l2_attn
),
l2_attn_out(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_o w CROSS JOIN l2_attn_out_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_o_1 w CROSS JOIN l2_attn_out_in x) r
GROUP BY r.pos
),
l2_resid_attn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.x, lambda e, i: e + b.v[i]) AS v
FROM kv2 a JOIN l2_attn_out b ON b.pos = a.pos
WHERE a.h = 0 AND a.pos >= (SELECT min(pos) FROM t_in)
),
l2_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l2_resid_attn) x,
  norm n WHERE n.layer = 2 AND n.kind = 'ffn'
),
l2_gate_up_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l2_ffn_norm
),
l2_gate_up(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_gu w CROSS JOIN l2_gate_up_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_gu_1 w CROSS JOIN l2_gate_up_in x) r
GROUP BY r.pos
),
l2_swiglu(pos, v) AS (
SELECT pos, list_transform(v[1 : 172], lambda g, i: (g / (1::FLOAT + exp(-g)::FLOAT)) * v[172 + i]) AS v
FROM l2_gate_up WHERE pos >= (SELECT min(pos) FROM t_in)
),
l2_down_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l2_swiglu
),
l2_down(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_down w CROSS JOIN l2_down_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk2_down_1 w CROSS JOIN l2_down_in x) r
GROUP BY r.pos
),
l2_resid_ffn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v
FROM l2_resid_attn a JOIN l2_down b ON b.pos = a.pos
),
l3_attn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l2_resid_ffn) x,
  norm n WHERE n.layer = 3 AND n.kind = 'attn'
),
l3_qkv_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l3_attn_norm
),
l3_qkv(pos, h, v) AS (
SELECT r.pos AS pos, (CASE WHEN r.row < 64 THEN r.row // 16 WHEN r.row < 96 THEN (r.row - 64) // 8 ELSE (r.row - 96) // 8 END)::INTEGER AS h, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_qkv w CROSS JOIN l3_qkv_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_qkv_1 w CROSS JOIN l3_qkv_in x) r
GROUP BY r.pos, h
),
l3_rope(pos, h, v) AS (
SELECT x.pos AS pos, x.h AS h, list_transform(x.y, lambda e, i: CASE
  WHEN i > 24 THEN e
  WHEN (i - 1) % 2 = 0 THEN e * r.cs[(i - 1) % 8 + 1] - x.y[i + 1] * r.cs[(i - 1) % 8 + 2]
  ELSE e * r.cs[(i - 1) % 8] + x.y[i - 1] * r.cs[(i - 1) % 8 + 1] END) AS v
FROM (SELECT pos, h, list_transform(v, lambda e, i: CASE WHEN i <= 16 THEN e * 1.41421354::FLOAT ELSE e END) AS y
      FROM l3_qkv) x
  JOIN rope r ON r.pos = x.pos
)
SELECT x.pos AS pos, x.h AS h,
  x.v[1 : 2 * 8] AS q,
  x.v[2 * 8 + 1 : (2 + 1) * 8] AS k,
  x.v[(2 + 1) * 8 + 1 : (2 + 2) * 8] AS v,
  CASE WHEN x.h = 0 THEN r.v END AS x
FROM l3_rope x JOIN l2_resid_ffn r ON r.pos = x.pos;
INSERT INTO kv4(pos, h, q, k, v, x)
WITH l3_score(qpos, kpos, h, s) AS MATERIALIZED (
WITH q AS MATERIALIZED (SELECT pos, h, q FROM kv3 WHERE pos >= (SELECT min(pos) FROM t_in))
SELECT q.pos AS qpos, k.pos AS kpos, (q.h * 2 + q.g)::INTEGER AS h,
  list_dot_product(q.q[q.g * 8 + 1 : q.g * 8 + 8], k.k) AS s
FROM (SELECT pos, h, q, unnest(range(2)) AS g FROM q) q JOIN kv3 k ON k.h = q.h AND k.pos <= q.pos
),
l3_smax(qpos, h, es, den) AS (
SELECT qpos, h, es, list_sum(es) AS den
FROM (SELECT qpos, h, list_transform(ss, lambda s: exp(s - mx)::FLOAT) AS es
      FROM (SELECT qpos, h, list(s ORDER BY kpos) AS ss, max(s) AS mx FROM l3_score GROUP BY qpos, h))
),
l3_attn(pos, v) AS (
SELECT a.qpos AS pos, flatten(list(a.o ORDER BY a.h)) AS v
FROM (SELECT e.qpos AS qpos, e.h AS h,
        list_transform(t.m, lambda c: (list_dot_product(e.es, c[1 : len(e.es)]) / e.den)::FLOAT) AS o
      FROM l3_smax e
      JOIN (SELECT h AS g, list_transform(range(1, 8 + 1), lambda j: list_transform(vs, lambda r: r[j])) AS m
            FROM (SELECT h, list(v ORDER BY pos) AS vs FROM kv3 GROUP BY h)) t ON t.g = e.h // 2) a
GROUP BY a.qpos
),
l3_attn_out_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l3_attn
),
l3_attn_out(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_o w CROSS JOIN l3_attn_out_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_o_1 w CROSS JOIN l3_attn_out_in x) r
GROUP BY r.pos
),
l3_resid_attn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.x, lambda e, i: e + b.v[i]) AS v
FROM kv3 a JOIN l3_attn_out b ON b.pos = a.pos
WHERE a.h = 0 AND a.pos >= (SELECT min(pos) FROM t_in)
),
l3_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l3_resid_attn) x,
  norm n WHERE n.layer = 3 AND n.kind = 'ffn'
),
l3_gate_up_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l3_ffn_norm
),
l3_gate_up(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_gu w CROSS JOIN l3_gate_up_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_gu_1 w CROSS JOIN l3_gate_up_in x) r
GROUP BY r.pos
),
l3_swiglu(pos, v) AS (
SELECT pos, list_transform(v[1 : 172], lambda g, i: (g / (1::FLOAT + exp(-g)::FLOAT)) * v[172 + i]) AS v
FROM l3_gate_up WHERE pos >= (SELECT min(pos) FROM t_in)
),
l3_down_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l3_swiglu
),
l3_down(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_down w CROSS JOIN l3_down_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk3_down_1 w CROSS JOIN l3_down_in x) r
GROUP BY r.pos
),
l3_resid_ffn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v
FROM l3_resid_attn a JOIN l3_down b ON b.pos = a.pos
),
l4_attn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l3_resid_ffn) x,
  norm n WHERE n.layer = 4 AND n.kind = 'attn'
),
l4_qkv_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l4_attn_norm
),
l4_qkv(pos, h, v) AS (
SELECT r.pos AS pos, (CASE WHEN r.row < 64 THEN r.row // 16 WHEN r.row < 96 THEN (r.row - 64) // 8 ELSE (r.row - 96) // 8 END)::INTEGER AS h, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_qkv w CROSS JOIN l4_qkv_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_qkv_1 w CROSS JOIN l4_qkv_in x) r
GROUP BY r.pos, h
),
l4_rope(pos, h, v) AS (
SELECT x.pos AS pos, x.h AS h, list_transform(x.y, lambda e, i: CASE
  WHEN i > 24 THEN e
  WHEN (i - 1) % 2 = 0 THEN e * r.cs[(i - 1) % 8 + 1] - x.y[i + 1] * r.cs[(i - 1) % 8 + 2]
  ELSE e * r.cs[(i - 1) % 8] + x.y[i - 1] * r.cs[(i - 1) % 8 + 1] END) AS v
FROM (SELECT pos, h, list_transform(v, lambda e, i: CASE WHEN i <= 16 THEN e * 1.41421354::FLOAT ELSE e END) AS y
      FROM l4_qkv) x
  JOIN rope r ON r.pos = x.pos
)
SELECT x.pos AS pos, x.h AS h,
  x.v[1 : 2 * 8] AS q,
  x.v[2 * 8 + 1 : (2 + 1) * 8] AS k,
  x.v[(2 + 1) * 8 + 1 : (2 + 2) * 8] AS v,
  CASE WHEN x.h = 0 THEN r.v END AS x
FROM l4_rope x JOIN l3_resid_ffn r ON r.pos = x.pos;
DELETE FROM logits;
INSERT INTO logits(pos, v)
WITH l4_score(qpos, kpos, h, s) AS MATERIALIZED (
WITH q AS MATERIALIZED (SELECT pos, h, q FROM kv4 WHERE pos >= (SELECT min(pos) FROM t_in))
SELECT q.pos AS qpos, k.pos AS kpos, (q.h * 2 + q.g)::INTEGER AS h,
  list_dot_product(q.q[q.g * 8 + 1 : q.g * 8 + 8], k.k) AS s
FROM (SELECT pos, h, q, unnest(range(2)) AS g FROM q) q JOIN kv4 k ON k.h = q.h AND k.pos <= q.pos
),
l4_smax(qpos, h, es, den) AS (
SELECT qpos, h, es, list_sum(es) AS den
FROM (SELECT qpos, h, list_transform(ss, lambda s: exp(s - mx)::FLOAT) AS es
      FROM (SELECT qpos, h, list(s ORDER BY kpos) AS ss, max(s) AS mx FROM l4_score GROUP BY qpos, h))
),
l4_attn(pos, v) AS (
SELECT a.qpos AS pos, flatten(list(a.o ORDER BY a.h)) AS v
FROM (SELECT e.qpos AS qpos, e.h AS h,
        list_transform(t.m, lambda c: (list_dot_product(e.es, c[1 : len(e.es)]) / e.den)::FLOAT) AS o
      FROM l4_smax e
      JOIN (SELECT h AS g, list_transform(range(1, 8 + 1), lambda j: list_transform(vs, lambda r: r[j])) AS m
            FROM (SELECT h, list(v ORDER BY pos) AS vs FROM kv4 GROUP BY h)) t ON t.g = e.h // 2) a
GROUP BY a.qpos
),
l4_attn_out_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l4_attn
),
l4_attn_out(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_o w CROSS JOIN l4_attn_out_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_o_1 w CROSS JOIN l4_attn_out_in x) r
GROUP BY r.pos
),
l4_resid_attn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, list_transform(a.x, lambda e, i: e + b.v[i]) AS v
FROM kv4 a JOIN l4_attn_out b ON b.pos = a.pos
WHERE a.h = 0 AND a.pos >= (SELECT min(pos) FROM t_in)
),
l4_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM l4_resid_attn) x,
  norm n WHERE n.layer = 4 AND n.kind = 'ffn'
),
l4_gate_up_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l4_ffn_norm
),
l4_gate_up(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_gu w CROSS JOIN l4_gate_up_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_gu_1 w CROSS JOIN l4_gate_up_in x) r
GROUP BY r.pos
),
l4_swiglu(pos, v) AS (
SELECT pos, list_transform(v[1 : 172], lambda g, i: (g / (1::FLOAT + exp(-g)::FLOAT)) * v[172 + i]) AS v
FROM l4_gate_up WHERE pos >= (SELECT min(pos) FROM t_in)
),
l4_down_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM l4_swiglu
),
l4_down(pos, v) AS (
SELECT r.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := r.row, v := r.s)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_down w CROSS JOIN l4_down_in x
      UNION ALL
      SELECT x.pos AS pos, w.row AS row, list_transform(w.m, lambda e: list_dot_product(e, x.v)) AS s
        FROM blk4_down_1 w CROSS JOIN l4_down_in x) r
GROUP BY r.pos
),
l4_resid_ffn(pos, v) AS (
SELECT a.pos AS pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v
FROM l4_resid_attn a JOIN l4_down b ON b.pos = a.pos
),
last(pos, v) AS (
SELECT pos, v FROM l4_resid_ffn WHERE pos = (SELECT max(pos) FROM t_in)
),
out_norm(pos, v) AS (
SELECT x.pos AS pos, list_transform(x.v, lambda e, i: (e * x.s) * n.v[i]) AS v
FROM (SELECT pos, v, 1::FLOAT / sqrt((list_sum(list_transform(v, lambda e: (e * e)::DOUBLE)) / len(v))::FLOAT
                                     + 9.99999975e-06::FLOAT)::FLOAT AS s
      FROM last) x,
  norm n WHERE n.layer = 5 AND n.kind = 'output'
),
logits_in(pos, v, q, d) AS MATERIALIZED (
SELECT pos, list_transform(v, lambda e: CASE WHEN e = 0 THEN e
  WHEN abs(e) >= 65520 THEN sign(e) * 'inf'::FLOAT
  ELSE (round_even(e::DOUBLE / pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10), 0)
        * pow(2.0, greatest(floor(log2(abs(e)::DOUBLE)), -14) - 10))::FLOAT END) AS v,
  NULL::FLOAT[32][] AS q, NULL::FLOAT[] AS d
FROM out_norm
)
SELECT x.pos AS pos, list_transform(list_sort(list(struct_pack(k := w.row, v := list_dot_product(w.v, x.v))), 'ASC', 'NULLS FIRST'), lambda t: t.v) AS v
FROM logits_in x CROSS JOIN output w
GROUP BY x.pos;
-- the next-token logits are in logits(pos, v); the greedy next token:
SELECT pos, list_position(v, list_max(v)) - 1 AS tok FROM logits ORDER BY pos;
