-- sqlm program: setup (once per session)
CREATE TEMP TABLE IF NOT EXISTS t_in(pos INTEGER PRIMARY KEY, tok INTEGER);
CREATE TEMP TABLE IF NOT EXISTS tok_embd(pos INTEGER PRIMARY KEY, v BLOB);
CREATE TEMP TABLE IF NOT EXISTS l0_rope(pos INTEGER PRIMARY KEY, v BLOB);
CREATE VIRTUAL TABLE IF NOT EXISTS temp.kv0 USING sqlm_kv;
CREATE TEMP TABLE IF NOT EXISTS l0_resid_attn(pos INTEGER PRIMARY KEY, v BLOB);
CREATE TEMP TABLE IF NOT EXISTS l0_resid_ffn(pos INTEGER PRIMARY KEY, v BLOB);
CREATE TEMP TABLE IF NOT EXISTS l1_rope(pos INTEGER PRIMARY KEY, v BLOB);
CREATE VIRTUAL TABLE IF NOT EXISTS temp.kv1 USING sqlm_kv;
CREATE TEMP TABLE IF NOT EXISTS l1_resid_attn(pos INTEGER PRIMARY KEY, v BLOB);
CREATE TEMP TABLE IF NOT EXISTS l1_resid_ffn(pos INTEGER PRIMARY KEY, v BLOB);
CREATE TEMP TABLE IF NOT EXISTS logits(pos INTEGER PRIMARY KEY, v BLOB);

-- reset (once per sequence: empties the KV cache)
DELETE FROM kv0;
DELETE FROM kv1;

-- the tokens of this step at positions 0..
DELETE FROM t_in;
INSERT INTO t_in(pos, tok) VALUES (0, 1);

-- step (once per batch of tokens inserted into t_in(pos, tok))
DELETE FROM tok_embd;
INSERT INTO tok_embd(pos, v)
SELECT i.pos AS pos, sqlm_row(w.v, 8, 128, i.tok - w.row) AS v
FROM t_in i JOIN output w ON w.id = i.tok / 480;
DELETE FROM l0_rope;
INSERT INTO l0_rope(pos, v)
WITH l0_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999997e-07) AS v
FROM tok_embd x, norm n WHERE n.layer = 0 AND n.kind = 'attn'
),
l0_qkv_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l0_attn_norm
),
l0_qkv(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk0_qkv', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l0_qkv_in x) END) FROM blk0_qkv w)) p
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 16, 1, 1) AS v
FROM l0_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv0(pos, k, v)
SELECT pos, sqlm_slice(v, 128, 64) AS k, sqlm_slice(v, 192, 64) AS v
FROM l0_rope;
DELETE FROM l0_resid_attn;
INSERT INTO l0_resid_attn(pos, v)
WITH l0_attn(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_attend(CASE WHEN k.pos = (SELECT min(pos) FROM kv0) THEN
           (SELECT sqlm_stack(q.pos, q.v) FROM l0_rope q) END,
         'kv0', k.pos, 8, 4, 16) FROM kv0 k)) p
),
l0_attn_out_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l0_attn
),
l0_attn_out(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk0_o', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l0_attn_out_in x) END) FROM blk0_o w)) p
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM tok_embd a JOIN l0_attn_out b ON b.pos = a.pos;
DELETE FROM l0_resid_ffn;
INSERT INTO l0_resid_ffn(pos, v)
WITH l0_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999997e-07) AS v
FROM l0_resid_attn x, norm n WHERE n.layer = 0 AND n.kind = 'ffn'
),
l0_gate_up_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l0_ffn_norm
),
l0_gate_up(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk0_gu', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l0_gate_up_in x) END) FROM blk0_gu w)) p
),
l0_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l0_gate_up
),
l0_down_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l0_swiglu
),
l0_down(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk0_down', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l0_down_in x) END) FROM blk0_down w)) p
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l0_resid_attn a JOIN l0_down b ON b.pos = a.pos;
DELETE FROM l1_rope;
INSERT INTO l1_rope(pos, v)
WITH l1_attn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999997e-07) AS v
FROM l0_resid_ffn x, norm n WHERE n.layer = 1 AND n.kind = 'attn'
),
l1_qkv_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l1_attn_norm
),
l1_qkv(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk1_qkv', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l1_qkv_in x) END) FROM blk1_qkv w)) p
)
SELECT x.pos AS pos, sqlm_rope(x.v, r.cs, 8, 4, 16, 1, 1) AS v
FROM l1_qkv x JOIN rope r ON r.pos = x.pos;
INSERT INTO kv1(pos, k, v)
SELECT pos, sqlm_slice(v, 128, 64) AS k, sqlm_slice(v, 192, 64) AS v
FROM l1_rope;
DELETE FROM l1_resid_attn;
INSERT INTO l1_resid_attn(pos, v)
WITH l1_attn(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_attend(CASE WHEN k.pos = (SELECT min(pos) FROM kv1) THEN
           (SELECT sqlm_stack(q.pos, q.v) FROM l1_rope q) END,
         'kv1', k.pos, 8, 4, 16) FROM kv1 k)) p
),
l1_attn_out_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l1_attn
),
l1_attn_out(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk1_o', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l1_attn_out_in x) END) FROM blk1_o w)) p
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l0_resid_ffn a JOIN l1_attn_out b ON b.pos = a.pos;
DELETE FROM l1_resid_ffn;
INSERT INTO l1_resid_ffn(pos, v)
WITH l1_ffn_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999997e-07) AS v
FROM l1_resid_attn x, norm n WHERE n.layer = 1 AND n.kind = 'ffn'
),
l1_gate_up_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l1_ffn_norm
),
l1_gate_up(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk1_gu', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l1_gate_up_in x) END) FROM blk1_gu w)) p
),
l1_swiglu(pos, v) AS (
SELECT pos, sqlm_swiglu(v) AS v FROM l1_gate_up
),
l1_down_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM l1_swiglu
),
l1_down(pos, v) AS (
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('blk1_down', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM l1_down_in x) END) FROM blk1_down w)) p
)
SELECT a.pos AS pos, sqlm_vadd(a.v, b.v) AS v FROM l1_resid_attn a JOIN l1_down b ON b.pos = a.pos;
DELETE FROM logits;
INSERT INTO logits(pos, v)
WITH last(pos, v) AS (
SELECT pos, v FROM l1_resid_ffn WHERE pos = (SELECT max(pos) FROM t_in)
),
out_norm(pos, v) AS (
SELECT x.pos AS pos, sqlm_rmsnorm(x.v, n.v, 9.99999997e-07) AS v
FROM last x, norm n WHERE n.layer = 2 AND n.kind = 'output'
),
logits_in(pos, v) AS (
SELECT pos, sqlm_quant(v, 8) AS v FROM out_norm
)
SELECT p.pos AS pos, p.v AS v
FROM sqlm_rows((
  SELECT sqlm_matmul('output', w.id,
    CASE WHEN w.id = 0 THEN (SELECT sqlm_stack(x.pos, x.v) FROM logits_in x) END) FROM output w)) p;
-- the next-token logits are in logits(pos, v); the greedy next token:
SELECT pos, sqlm_argmax(v) AS tok FROM logits ORDER BY pos;
