-- sqlm program: setup (once per session)
CREATE TEMP TABLE IF NOT EXISTS t_in(pos INTEGER, tok INTEGER);
CREATE TEMP TABLE IF NOT EXISTS tok_embd(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l0_rope(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv0(pos INTEGER, k FLOAT[], v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l0_resid_attn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l0_resid_ffn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l1_rope(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv1(pos INTEGER, k FLOAT[], v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l1_resid_attn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l1_resid_ffn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l2_rope(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv2(pos INTEGER, k FLOAT[], v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l2_resid_attn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l2_resid_ffn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l3_rope(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv3(pos INTEGER, k FLOAT[], v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l3_resid_attn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l3_resid_ffn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l4_rope(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS kv4(pos INTEGER, k FLOAT[], v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l4_resid_attn(pos INTEGER, v FLOAT[]);
CREATE TEMP TABLE IF NOT EXISTS l4_resid_ffn(pos INTEGER, v FLOAT[]);
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
DELETE FROM tok_embd;
INSERT INTO tok_embd(pos, v)
SELECT i.pos AS pos, w.v AS v
FROM t_in i JOIN output w ON w.row = i.tok;
DELETE FROM l0_rope;
INSERT INTO l0_rope(pos, v)
WITH l0_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM tok_embd x, norm n WHERE n.layer = 0 AND n.kind = 'attn'
),
l0_qkv(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l0_attn_norm x CROSS JOIN blk0_qkv w
GROUP BY x.pos
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 8, 1, 1.41421354::FLOAT) AS v
FROM l0_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv0(pos, k, v)
SELECT pos, v[64 + 1 : 64 + 32] AS k, v[96 + 1 : 96 + 32] AS v
FROM l0_rope;
DELETE FROM l0_resid_attn;
INSERT INTO l0_resid_attn(pos, v)
WITH l0_score(qpos, kpos, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, 8, 4, 8) AS s
FROM l0_rope q JOIN kv0 k ON k.pos <= q.pos
),
l0_smax(qpos, mx) AS (
SELECT qpos, sqlm_vmax(list(s)) AS mx FROM l0_score GROUP BY qpos
),
l0_attn(pos, v) AS (
SELECT s.qpos AS pos,
  sqlm_attn(list(s.s ORDER BY s.kpos), any_value(m.mx), list(k.v ORDER BY s.kpos),
            8, 4, 8) AS v
FROM l0_score s JOIN l0_smax m ON m.qpos = s.qpos JOIN kv0 k ON k.pos = s.kpos
GROUP BY s.qpos
),
l0_attn_out(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l0_attn x CROSS JOIN blk0_o w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM tok_embd a JOIN l0_attn_out b ON b.pos = a.pos;
DELETE FROM l0_resid_ffn;
INSERT INTO l0_resid_ffn(pos, v)
WITH l0_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l0_resid_attn x, norm n WHERE n.layer = 0 AND n.kind = 'ffn'
),
l0_gate_up(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l0_ffn_norm x CROSS JOIN blk0_gu w
GROUP BY x.pos
),
l0_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l0_gate_up
),
l0_down(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l0_swiglu x CROSS JOIN blk0_down w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l0_resid_attn a JOIN l0_down b ON b.pos = a.pos;
DELETE FROM l1_rope;
INSERT INTO l1_rope(pos, v)
WITH l1_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l0_resid_ffn x, norm n WHERE n.layer = 1 AND n.kind = 'attn'
),
l1_qkv(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l1_attn_norm x CROSS JOIN blk1_qkv w
GROUP BY x.pos
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 8, 1, 1.41421354::FLOAT) AS v
FROM l1_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv1(pos, k, v)
SELECT pos, v[64 + 1 : 64 + 32] AS k, v[96 + 1 : 96 + 32] AS v
FROM l1_rope;
DELETE FROM l1_resid_attn;
INSERT INTO l1_resid_attn(pos, v)
WITH l1_score(qpos, kpos, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, 8, 4, 8) AS s
FROM l1_rope q JOIN kv1 k ON k.pos <= q.pos
),
l1_smax(qpos, mx) AS (
SELECT qpos, sqlm_vmax(list(s)) AS mx FROM l1_score GROUP BY qpos
),
l1_attn(pos, v) AS (
SELECT s.qpos AS pos,
  sqlm_attn(list(s.s ORDER BY s.kpos), any_value(m.mx), list(k.v ORDER BY s.kpos),
            8, 4, 8) AS v
FROM l1_score s JOIN l1_smax m ON m.qpos = s.qpos JOIN kv1 k ON k.pos = s.kpos
GROUP BY s.qpos
),
l1_attn_out(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l1_attn x CROSS JOIN blk1_o w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l0_resid_ffn a JOIN l1_attn_out b ON b.pos = a.pos;
DELETE FROM l1_resid_ffn;
INSERT INTO l1_resid_ffn(pos, v)
WITH l1_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l1_resid_attn x, norm n WHERE n.layer = 1 AND n.kind = 'ffn'
),
l1_gate_up(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l1_ffn_norm x CROSS JOIN blk1_gu w
GROUP BY x.pos
),
l1_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l1_gate_up
),
l1_down(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l1_swiglu x CROSS JOIN blk1_down w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l1_resid_attn a JOIN l1_down b ON b.pos = a.pos;
DELETE FROM l2_rope;
INSERT INTO l2_rope(pos, v)
WITH l2_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l1_resid_ffn x, norm n WHERE n.layer = 2 AND n.kind = 'attn'
),
l2_qkv(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l2_attn_norm x CROSS JOIN blk2_qkv w
GROUP BY x.pos
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 8, 1, 1.41421354::FLOAT) AS v
FROM l2_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv2(pos, k, v)
SELECT pos, v[64 + 1 : 64 + 32] AS k, v[96 + 1 : 96 + 32] AS v
FROM l2_rope;
DELETE FROM l2_resid_attn;
INSERT INTO l2_resid_attn(pos, v)
WITH l2_score(qpos, kpos, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, 8, 4, 8) AS s
FROM l2_rope q JOIN kv2 k ON k.pos <= q.pos
),
l2_smax(qpos, mx) AS (
SELECT qpos, sqlm_vmax(list(s)) AS mx FROM l2_score GROUP BY qpos
),
l2_attn(pos, v) AS (
SELECT s.qpos AS pos,
  sqlm_attn(list(s.s ORDER BY s.kpos), any_value(m.mx), list(k.v ORDER BY s.kpos),
            8, 4, 8) AS v
FROM l2_score s JOIN l2_smax m ON m.qpos = s.qpos JOIN kv2 k ON k.pos = s.kpos
GROUP BY s.qpos
),
l2_attn_out(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l2_attn x CROSS JOIN blk2_o w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l1_resid_ffn a JOIN l2_attn_out b ON b.pos = a.pos;
DELETE FROM l2_resid_ffn;
INSERT INTO l2_resid_ffn(pos, v)
WITH l2_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l2_resid_attn x, norm n WHERE n.layer = 2 AND n.kind = 'ffn'
),
l2_gate_up(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l2_ffn_norm x CROSS JOIN blk2_gu w
GROUP BY x.pos
),
l2_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l2_gate_up
),
l2_down(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l2_swiglu x CROSS JOIN blk2_down w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l2_resid_attn a JOIN l2_down b ON b.pos = a.pos;
DELETE FROM l3_rope;
INSERT INTO l3_rope(pos, v)
WITH l3_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l2_resid_ffn x, norm n WHERE n.layer = 3 AND n.kind = 'attn'
),
l3_qkv(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l3_attn_norm x CROSS JOIN blk3_qkv w
GROUP BY x.pos
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 8, 1, 1.41421354::FLOAT) AS v
FROM l3_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv3(pos, k, v)
SELECT pos, v[64 + 1 : 64 + 32] AS k, v[96 + 1 : 96 + 32] AS v
FROM l3_rope;
DELETE FROM l3_resid_attn;
INSERT INTO l3_resid_attn(pos, v)
WITH l3_score(qpos, kpos, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, 8, 4, 8) AS s
FROM l3_rope q JOIN kv3 k ON k.pos <= q.pos
),
l3_smax(qpos, mx) AS (
SELECT qpos, sqlm_vmax(list(s)) AS mx FROM l3_score GROUP BY qpos
),
l3_attn(pos, v) AS (
SELECT s.qpos AS pos,
  sqlm_attn(list(s.s ORDER BY s.kpos), any_value(m.mx), list(k.v ORDER BY s.kpos),
            8, 4, 8) AS v
FROM l3_score s JOIN l3_smax m ON m.qpos = s.qpos JOIN kv3 k ON k.pos = s.kpos
GROUP BY s.qpos
),
l3_attn_out(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l3_attn x CROSS JOIN blk3_o w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l2_resid_ffn a JOIN l3_attn_out b ON b.pos = a.pos;
DELETE FROM l3_resid_ffn;
INSERT INTO l3_resid_ffn(pos, v)
WITH l3_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l3_resid_attn x, norm n WHERE n.layer = 3 AND n.kind = 'ffn'
),
l3_gate_up(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l3_ffn_norm x CROSS JOIN blk3_gu w
GROUP BY x.pos
),
l3_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l3_gate_up
),
l3_down(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l3_swiglu x CROSS JOIN blk3_down w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l3_resid_attn a JOIN l3_down b ON b.pos = a.pos;
DELETE FROM l4_rope;
INSERT INTO l4_rope(pos, v)
WITH l4_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l3_resid_ffn x, norm n WHERE n.layer = 4 AND n.kind = 'attn'
),
l4_qkv(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l4_attn_norm x CROSS JOIN blk4_qkv w
GROUP BY x.pos
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 8, 1, 1.41421354::FLOAT) AS v
FROM l4_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv4(pos, k, v)
SELECT pos, v[64 + 1 : 64 + 32] AS k, v[96 + 1 : 96 + 32] AS v
FROM l4_rope;
DELETE FROM l4_resid_attn;
INSERT INTO l4_resid_attn(pos, v)
WITH l4_score(qpos, kpos, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, sqlm_qk(q.v, k.k, 8, 4, 8) AS s
FROM l4_rope q JOIN kv4 k ON k.pos <= q.pos
),
l4_smax(qpos, mx) AS (
SELECT qpos, sqlm_vmax(list(s)) AS mx FROM l4_score GROUP BY qpos
),
l4_attn(pos, v) AS (
SELECT s.qpos AS pos,
  sqlm_attn(list(s.s ORDER BY s.kpos), any_value(m.mx), list(k.v ORDER BY s.kpos),
            8, 4, 8) AS v
FROM l4_score s JOIN l4_smax m ON m.qpos = s.qpos JOIN kv4 k ON k.pos = s.kpos
GROUP BY s.qpos
),
l4_attn_out(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l4_attn x CROSS JOIN blk4_o w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l3_resid_ffn a JOIN l4_attn_out b ON b.pos = a.pos;
DELETE FROM l4_resid_ffn;
INSERT INTO l4_resid_ffn(pos, v)
WITH l4_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM l4_resid_attn x, norm n WHERE n.layer = 4 AND n.kind = 'ffn'
),
l4_gate_up(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l4_ffn_norm x CROSS JOIN blk4_gu w
GROUP BY x.pos
),
l4_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l4_gate_up
),
l4_down(pos, v) AS (
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM l4_swiglu x CROSS JOIN blk4_down w
GROUP BY x.pos
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l4_resid_attn a JOIN l4_down b ON b.pos = a.pos;
DELETE FROM logits;
INSERT INTO logits(pos, v)
WITH last(pos, v) AS (
SELECT pos, v FROM l4_resid_ffn WHERE pos = (SELECT max(pos) FROM t_in)
),
out_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999975e-06::FLOAT) AS v
FROM last x, norm n WHERE n.layer = 5 AND n.kind = 'output'
)
SELECT x.pos AS pos,
  list(sqlm_dot(x.v, w.v) ORDER BY w.row) AS v
FROM out_norm x CROSS JOIN output w
GROUP BY x.pos;
-- the next-token logits are in logits(pos, v); the greedy next token:
SELECT pos, list_position(v, list_max(v)) - 1 AS tok FROM logits ORDER BY pos;
