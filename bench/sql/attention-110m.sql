Attention forms in pure SQL on DuckDB, measured in session 8 (README, "Left to
do" of the DuckDB section).  On a database of the stories110M shape written by
`sqlm import --engine duckdb` (12 heads of 64, no GQA), after a 25-token prompt
and one decode step:

    build/duckbench sql DB.duck bench/sql/attention-110m.sql -t 2 --prompt 25 --reps 30

Each block computes layer 0's attention output for this step's query from the
cache kv0(pos, h, q, k, v, x) and sums it (all blocks give the same sum):
  current   the emitted form: scores, their maximum, then the values unnested
            and summed per (query, head * 64 + d), gathered in order;
  slices    per (query, head) one aggregate of (score, values) pairs, softmax
            over the list, out[d] = list_dot_product(e, every 64th value);
  reduce    per (query, head) the values times e, summed by list_reduce.
Then the weighted sum alone on 12 (or 32) heads of 26 keys (TEMP tables made by
the "once" block): strided slices, list_reduce, an index lambda, and unnest
with GROUP BY; and DuckDB's fixed cost per materialised CTE on one row, with a
lambda only (chainN) and with a hash join (joinN).
Session 8, load about 1.2: current 1.6-1.9 ms, slices 1.96, reduce 2.0; the
weighted sum on 12 heads: slices 1.12, reduce 1.36, index 0.79, unnest 0.65
(32 heads: slices 3.13, unnest 1.26); chain10 0.20, chain40 0.57, join10 0.91,
join40 3.21 ms.

-- @current
WITH l0_score(qpos, kpos, h, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, q.h AS h, list_dot_product(q.q, k.k) AS s
FROM kv0 q JOIN kv0 k ON k.h = q.h AND k.pos <= q.pos
WHERE q.pos >= (SELECT min(pos) FROM t_in)
),
l0_smax(qpos, h, mx) AS (
SELECT qpos, h, max(s) AS mx FROM l0_score GROUP BY qpos, h
),
l0_attn(pos, v) AS MATERIALIZED (
SELECT a.qpos AS pos, list_transform(list_sort(list(struct_pack(k := a.hj, v := a.o)), 'ASC', 'NULLS FIRST'), lambda t: t.v) AS v
FROM (SELECT qpos, hj, (sum(e * x) / sum(e))::FLOAT AS o
      FROM (SELECT s.qpos AS qpos, exp(s.s - m.mx) AS e,
              unnest(c.v) AS x, unnest(range(s.h * 64, s.h * 64 + 64)) AS hj
            FROM l0_score s JOIN l0_smax m ON m.qpos = s.qpos AND m.h = s.h
            JOIN kv0 c ON c.pos = s.kpos AND c.h = s.h)
      GROUP BY qpos, hj) a
GROUP BY a.qpos
)
SELECT sum(list_sum(v)) FROM l0_attn;
-- @slices
WITH l0_attn(pos, v) AS MATERIALIZED (
SELECT a.pos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := a.h, v := a.o)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT pos, h, list_transform(range(1, 65), lambda j: (list_dot_product(es, list_slice(vs, j, -1, 64)) / den)::FLOAT) AS o
      FROM (SELECT pos, h, es, list_sum(es) AS den, vs
            FROM (SELECT pos, h, list_transform(l, lambda t: exp(t.s - mx)::FLOAT) AS es, flatten(list_transform(l, lambda t: t.v)) AS vs
                  FROM (SELECT pos, h, l, list_max(list_transform(l, lambda t: t.s)) AS mx
                        FROM (SELECT q.pos AS pos, q.h AS h, list(struct_pack(s := list_dot_product(q.q, k.k), v := k.v)) AS l
                              FROM kv0 q JOIN kv0 k ON k.h = q.h AND k.pos <= q.pos
                              WHERE q.pos >= (SELECT min(pos) FROM t_in)
                              GROUP BY q.pos, q.h))))) a
GROUP BY a.pos
)
SELECT sum(list_sum(v)) FROM l0_attn;
-- @reduce
WITH l0_score(qpos, kpos, h, s) AS MATERIALIZED (
SELECT q.pos AS qpos, k.pos AS kpos, q.h AS h, list_dot_product(q.q, k.k) AS s
FROM kv0 q JOIN kv0 k ON k.h = q.h AND k.pos <= q.pos
WHERE q.pos >= (SELECT min(pos) FROM t_in)
),
l0_smax(qpos, h, mx) AS (
SELECT qpos, h, max(s) AS mx FROM l0_score GROUP BY qpos, h
),
l0_attn(pos, v) AS MATERIALIZED (
SELECT a.qpos AS pos, flatten(list_transform(list_sort(list(struct_pack(k := a.h, v := a.o)), 'ASC', 'NULLS FIRST'), lambda t: t.v)) AS v
FROM (SELECT qpos, h, list_transform(list_reduce(ws, lambda p, r: list_transform(p, lambda x, i: x + r[i])),
                                     lambda x: (x / den)::FLOAT) AS o
      FROM (SELECT s.qpos AS qpos, s.h AS h, sum(exp(s.s - m.mx)) AS den,
              list(list_transform(c.v, lambda x: x * exp(s.s - m.mx))) AS ws
            FROM l0_score s JOIN l0_smax m ON m.qpos = s.qpos AND m.h = s.h
            JOIN kv0 c ON c.pos = s.kpos AND c.h = s.h // 1
            GROUP BY s.qpos, s.h)) a
GROUP BY a.qpos
)
SELECT sum(list_sum(v)) FROM l0_attn;
-- @mk once
CREATE TEMP TABLE g AS SELECT h, list_transform(range(26), lambda k: ((k * 7 + h) % 11)::FLOAT / 11) AS es, list_transform(range(26 * 64), lambda i: ((i * 13 + h) % 17)::FLOAT / 17) AS vs FROM range(12) t(h);
CREATE TEMP TABLE g32 AS SELECT h, list_transform(range(26), lambda k: ((k * 7 + h) % 11)::FLOAT / 11) AS es, list_transform(range(26 * 64), lambda i: ((i * 13 + h) % 17)::FLOAT / 17) AS vs FROM range(32) t(h);
-- @wsum_slices
SELECT sum(list_sum(o)) FROM (SELECT h, list_transform(range(1, 65), lambda j: list_dot_product(es, list_slice(vs, j, -1, 64))) AS o FROM g);
-- @wsum_slices32
SELECT sum(list_sum(o)) FROM (SELECT h, list_transform(range(1, 65), lambda j: list_dot_product(es, list_slice(vs, j, -1, 64))) AS o FROM g32);
-- @wsum_reduce
SELECT sum(list_sum(o)) FROM (SELECT h, list_reduce(list_transform(range(26), lambda k: list_transform(vs[k * 64 + 1 : k * 64 + 64], lambda x: x * es[k + 1])), lambda a, b: list_transform(a, lambda x, i: x + b[i])) AS o FROM g);
-- @wsum_unnest
SELECT sum(o) FROM (SELECT h, j, sum(x * es[k + 1]) AS o FROM (SELECT h, es, unnest(vs) AS x, unnest(range(26 * 64)) // 64 AS k, unnest(range(26 * 64)) % 64 AS j FROM g) GROUP BY h, j);
-- @wsum_unnest32
SELECT sum(o) FROM (SELECT h, j, sum(x * es[k + 1]) AS o FROM (SELECT h, es, unnest(vs) AS x, unnest(range(26 * 64)) // 64 AS k, unnest(range(26 * 64)) % 64 AS j FROM g32) GROUP BY h, j);
-- @wsum_index
SELECT sum(list_sum(o)) FROM (SELECT h, list_transform(range(64), lambda j: list_sum(list_transform(es, lambda e, k: e * vs[(k - 1) * 64 + j + 1]))) AS o FROM g);
-- @chain10
WITH c0(pos, v) AS MATERIALIZED (SELECT pos, [pos::FLOAT] AS v FROM t_in), c1(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c0)
, c2(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c1)
, c3(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c2)
, c4(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c3)
, c5(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c4)
, c6(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c5)
, c7(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c6)
, c8(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c7)
, c9(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c8)
, c10(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c9)
SELECT sum(list_sum(v)) FROM c10;
-- @chain40
WITH c0(pos, v) AS MATERIALIZED (SELECT pos, [pos::FLOAT] AS v FROM t_in), c1(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c0)
, c2(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c1)
, c3(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c2)
, c4(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c3)
, c5(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c4)
, c6(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c5)
, c7(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c6)
, c8(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c7)
, c9(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c8)
, c10(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c9)
, c11(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c10)
, c12(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c11)
, c13(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c12)
, c14(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c13)
, c15(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c14)
, c16(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c15)
, c17(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c16)
, c18(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c17)
, c19(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c18)
, c20(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c19)
, c21(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c20)
, c22(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c21)
, c23(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c22)
, c24(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c23)
, c25(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c24)
, c26(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c25)
, c27(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c26)
, c28(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c27)
, c29(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c28)
, c30(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c29)
, c31(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c30)
, c32(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c31)
, c33(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c32)
, c34(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c33)
, c35(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c34)
, c36(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c35)
, c37(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c36)
, c38(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c37)
, c39(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c38)
, c40(pos, v) AS MATERIALIZED (SELECT pos, list_transform(v, lambda e: e + 1) AS v FROM c39)
SELECT sum(list_sum(v)) FROM c40;
-- @join10
WITH c0(pos, v) AS MATERIALIZED (SELECT pos, [pos::FLOAT] AS v FROM t_in), c1(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c0 a JOIN c0 b ON b.pos = a.pos)
, c2(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c1 a JOIN c0 b ON b.pos = a.pos)
, c3(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c2 a JOIN c0 b ON b.pos = a.pos)
, c4(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c3 a JOIN c0 b ON b.pos = a.pos)
, c5(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c4 a JOIN c0 b ON b.pos = a.pos)
, c6(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c5 a JOIN c0 b ON b.pos = a.pos)
, c7(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c6 a JOIN c0 b ON b.pos = a.pos)
, c8(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c7 a JOIN c0 b ON b.pos = a.pos)
, c9(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c8 a JOIN c0 b ON b.pos = a.pos)
, c10(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c9 a JOIN c0 b ON b.pos = a.pos)
SELECT sum(list_sum(v)) FROM c10;
-- @join40
WITH c0(pos, v) AS MATERIALIZED (SELECT pos, [pos::FLOAT] AS v FROM t_in), c1(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c0 a JOIN c0 b ON b.pos = a.pos)
, c2(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c1 a JOIN c0 b ON b.pos = a.pos)
, c3(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c2 a JOIN c0 b ON b.pos = a.pos)
, c4(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c3 a JOIN c0 b ON b.pos = a.pos)
, c5(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c4 a JOIN c0 b ON b.pos = a.pos)
, c6(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c5 a JOIN c0 b ON b.pos = a.pos)
, c7(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c6 a JOIN c0 b ON b.pos = a.pos)
, c8(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c7 a JOIN c0 b ON b.pos = a.pos)
, c9(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c8 a JOIN c0 b ON b.pos = a.pos)
, c10(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c9 a JOIN c0 b ON b.pos = a.pos)
, c11(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c10 a JOIN c0 b ON b.pos = a.pos)
, c12(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c11 a JOIN c0 b ON b.pos = a.pos)
, c13(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c12 a JOIN c0 b ON b.pos = a.pos)
, c14(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c13 a JOIN c0 b ON b.pos = a.pos)
, c15(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c14 a JOIN c0 b ON b.pos = a.pos)
, c16(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c15 a JOIN c0 b ON b.pos = a.pos)
, c17(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c16 a JOIN c0 b ON b.pos = a.pos)
, c18(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c17 a JOIN c0 b ON b.pos = a.pos)
, c19(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c18 a JOIN c0 b ON b.pos = a.pos)
, c20(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c19 a JOIN c0 b ON b.pos = a.pos)
, c21(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c20 a JOIN c0 b ON b.pos = a.pos)
, c22(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c21 a JOIN c0 b ON b.pos = a.pos)
, c23(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c22 a JOIN c0 b ON b.pos = a.pos)
, c24(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c23 a JOIN c0 b ON b.pos = a.pos)
, c25(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c24 a JOIN c0 b ON b.pos = a.pos)
, c26(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c25 a JOIN c0 b ON b.pos = a.pos)
, c27(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c26 a JOIN c0 b ON b.pos = a.pos)
, c28(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c27 a JOIN c0 b ON b.pos = a.pos)
, c29(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c28 a JOIN c0 b ON b.pos = a.pos)
, c30(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c29 a JOIN c0 b ON b.pos = a.pos)
, c31(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c30 a JOIN c0 b ON b.pos = a.pos)
, c32(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c31 a JOIN c0 b ON b.pos = a.pos)
, c33(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c32 a JOIN c0 b ON b.pos = a.pos)
, c34(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c33 a JOIN c0 b ON b.pos = a.pos)
, c35(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c34 a JOIN c0 b ON b.pos = a.pos)
, c36(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c35 a JOIN c0 b ON b.pos = a.pos)
, c37(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c36 a JOIN c0 b ON b.pos = a.pos)
, c38(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c37 a JOIN c0 b ON b.pos = a.pos)
, c39(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c38 a JOIN c0 b ON b.pos = a.pos)
, c40(pos, v) AS MATERIALIZED (SELECT a.pos, list_transform(a.v, lambda e, i: e + b.v[i]) AS v FROM c39 a JOIN c0 b ON b.pos = a.pos)
SELECT sum(list_sum(v)) FROM c40;
