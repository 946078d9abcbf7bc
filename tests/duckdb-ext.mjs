// tests/duckdb-ext.mjs - the Node half of tests/duckdb-ext.sh, which sets
// SQLM_EXT (the extension), SQLM_T (its temporary folder: s.db, s.duck,
// two.db, par.db and want.json, the command line's answers), SQLM_N (tokens
// per generation), SQLM_GOLDEN (the golden ids) and NODE_MODULES (where
// @duckdb/node-api is).  Prints a FAIL line per failed check and the counts.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const { DuckDBInstance } = createRequire(process.env.NODE_MODULES + '/')('@duckdb/node-api');
const T = process.env.SQLM_T, N = Number(process.env.SQLM_N);
const want = JSON.parse(readFileSync(`${T}/want.json`, 'utf8'));
const golden = Object.fromEntries(readFileSync(process.env.SQLM_GOLDEN, 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l)).map((d) => [d.prompt, d.generated_ids]));
const DB = `${T}/s.db`;

let pass = 0, fail = 0;
const ok = () => pass++;
const bad = (msg) => { fail++; console.log(`duckdb-ext: FAIL: ${msg}`); };
const check = (cond, msg) => (cond ? ok() : bad(msg));
const same = (got, exp, msg) => check(JSON.stringify(got) === JSON.stringify(exp),
    `${msg}:\n  got:  ${JSON.stringify(got)}\n  want: ${JSON.stringify(exp)}`);
const q = (s) => s.replaceAll("'", "''");   // a SQL string literal's body
const rows = async (con, sql) => (await con.runAndReadAll(sql)).getRows();
const done = () => {
    console.log(`duckdb-ext.mjs: ${pass} passed, ${fail} failed`);
    process.exit(fail ? 1 : 0);
};

// the mappings of a file in this process: an open model handle maps its
// file (the weight tiles are read in place), so more handles, more mappings
const mappings = (path) => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(' ' + path)).length;

// a query that must fail with pattern in its message; the process goes on
async function expectError(con, desc, pattern, sql) {
    try {
        await con.runAndReadAll(sql);
        bad(`${desc}: succeeded`);
    } catch (e) {
        check(e.message.includes(pattern), `${desc}: the error lacks '${pattern}': ${e.message}`);
    }
}

const inst = await DuckDBInstance.create(':memory:', { allow_unsigned_extensions: 'true' });
const con = await inst.connect();
try {
    await con.run(`LOAD '${q(process.env.SQLM_EXT)}'`);
    ok();
} catch (e) {
    bad(`LOAD ${process.env.SQLM_EXT}: ${e.message}`);
    done();
}

// --- a user table of prompts, each row against `sqlm run --temp 0`
await con.run('CREATE TABLE notes(id INTEGER, body VARCHAR)');
for (const [i, p] of want.prompts.entries()) await con.run(`INSERT INTO notes VALUES (${i}, '${q(p)}')`);
const byRow = async (c, model) => (await rows(c, `SELECT id, sqlm_generate('${q(model)}', body, ${N}) FROM notes ORDER BY id`))
    .map((r) => r[1]);
let got = await byRow(con, DB);
same(got.length, want.prompts.length, 'sqlm_generate over the table: rows');
for (const [i, p] of want.prompts.entries()) same(got[i], want.text[i], `row ${i} ('${p}'): sqlm_generate against sqlm run`);
const perHandle = mappings(DB);   // the model stays open, on one handle
check(perHandle > 0, `the model is not kept open: no mapping of ${DB}`);

// --- a DuckDB-format model gives the same texts (its engine runs on the client's own library)
same(await byRow(con, `${T}/s.duck`), want.text, 'a DuckDB-format model');

// --- sqlm_tokens: its pieces add up to sqlm_generate's text, its ids are
// the golden greedy ids, each with a log-probability
let checked = 0;
for (const p of want.prompts) {
    const opt = `options := '{"ignore_eos": true}'`;
    const t = await rows(con, `SELECT i, id, piece, logprob FROM sqlm_tokens('${q(DB)}', '${q(p)}', ${N}, ${opt}) ORDER BY i`);
    const [[text]] = await rows(con, `SELECT sqlm_generate('${q(DB)}', '${q(p)}', ${N}, '{"ignore_eos": true}')`);
    same(t.map((r) => r[2]).join(''), text, `sqlm_tokens('${p}'): the pieces against sqlm_generate`);
    same(t.map((r) => Number(r[0])), [...Array(N).keys()], `sqlm_tokens('${p}'): i`);
    check(t.every((r) => typeof r[3] === 'number' && r[3] <= 0), `sqlm_tokens('${p}'): log-probabilities ${t.map((r) => r[3])}`);
    if (p in golden) {
        checked++;
        same(t.map((r) => r[1]), golden[p].slice(0, N), `sqlm_tokens('${p}'): ids against the golden`);
    }
}
check(checked >= 5, `${checked} prompts checked against the golden ids`);

// --- LIMIT 3 gives three rows and stops generation: far quicker than 500 tokens
let t0 = performance.now();
const [[n3]] = await rows(con, `SELECT count(*) FROM (SELECT * FROM sqlm_tokens('${q(DB)}', 'Once upon a time', 500,
                                options := '{"ignore_eos": true}') LIMIT 3)`);
let t1 = performance.now();
const [[n500]] = await rows(con, `SELECT count(*) FROM sqlm_tokens('${q(DB)}', 'Once upon a time', 500,
                                  options := '{"ignore_eos": true}')`);
let t2 = performance.now();
same(Number(n3), 3, 'LIMIT 3: rows');
same(Number(n500), 500, '500 tokens: rows');
check(t1 - t0 < (t2 - t1) / 2, `LIMIT 3 took ${(t1 - t0).toFixed(0)} ms, 500 tokens ${(t2 - t1).toFixed(0)} ms`);
same(mappings(DB), perHandle, 'mappings of the model after queries one at a time (a query that stopped reading gave its handle back)');

// --- sqlm_tokenize and sqlm_detokenize against sqlm tokenize
for (const [p, ids] of Object.entries(want.tokenize)) {
    const [[tok, detok]] = await rows(con, `SELECT sqlm_tokenize('${q(DB)}', '${q(p)}'),
                                            sqlm_detokenize('${q(DB)}', sqlm_tokenize('${q(DB)}', '${q(p)}'))`);
    same(tok, JSON.stringify(ids), `sqlm_tokenize('${p}')`);
    same(detok, p, `sqlm_detokenize(sqlm_tokenize('${p}'))`);
}

// --- sqlm_chat: the reply of `sqlm chat` to one user message
const [[reply]] = await rows(con, `SELECT sqlm_chat('${q(DB)}', '[{"role": "user", "content": "Hello there"}]',
                                   '{"max_tokens": ${N}}')`);
same(reply, want.chat, 'sqlm_chat against sqlm chat');

// --- options: a seed repeats, stop strings cut the text, NULLs
const seeded = `sqlm_generate('${q(DB)}', 'Lily', 20, '{"temperature": 1.5, "top_k": 0, "min_p": 0, "seed": 7}')`;
const [[a, b]] = await rows(con, `SELECT ${seeded}, ${seeded}`);
check(a && a === b, `seed 7 does not repeat: '${a}' / '${b}'`);
const [[cut]] = await rows(con, `SELECT sqlm_generate('${q(DB)}', 'Once upon a time', ${N}, '{"stop": ["Lily", "zzz"]}')`);
same(cut, ', there was a little girl named ', 'stop strings');
const [[nul, dflt]] = await rows(con, `SELECT sqlm_generate('${q(DB)}', NULL, 4),
                                       sqlm_generate('${q(DB)}', 'Once upon a time', NULL, '{"max_tokens": ${N}}')`);
same([nul, dflt], [null, want.text[1]], 'a NULL prompt gives NULL, a NULL max_tokens the options\' value');

// --- two connections generating at once: both right, on two handles of the model
const two = `${T}/two.db`;
const [c1, c2] = [await inst.connect(), await inst.connect()];
const [r1, r2] = await Promise.all([byRow(c1, two), byRow(c2, two)]);
same(r1, want.text, 'connection 1 of 2 at once');
same(r2, want.text, 'connection 2 of 2 at once');
check(mappings(two) >= 2 * perHandle, `two connections at once mapped the model ${mappings(two)} times, one handle ${perHandle}`);

// --- one query calling sqlm_generate from two threads: three row groups of
// a table are scanned in parallel
const par = `${T}/par.db`;
await con.run('SET threads = 2');
await con.run(`CREATE TABLE big AS SELECT i, (['${want.prompts.map(q).join("', '")}'])[i % 6 + 1] AS body
               FROM range(300000) r(i)`);
const pr = await rows(con, `SELECT i, sqlm_generate('${q(par)}', body, ${N}) FROM big WHERE i % 5000 = 0 ORDER BY i`);
same(pr.length, 60, 'the threaded query: rows');
check(pr.every(([i, text]) => text === want.text[Number(i) % 6]), 'the threaded query: a text differs from sqlm run\'s: ' +
    JSON.stringify(pr.filter(([i, text]) => text !== want.text[Number(i) % 6]).slice(0, 2)));
check(mappings(par) >= 2 * perHandle, `the threaded query mapped the model ${mappings(par)} times, one handle ${perHandle}: ` +
    'not run on two threads');

// --- bad input: SQL errors with sqlm's message, never a crash
await expectError(con, 'missing model', '/nonexistent/m.db', "SELECT sqlm_generate('/nonexistent/m.db', 'a', 4)");
await expectError(con, 'missing model (sqlm_tokens)', '/nonexistent/m.db',
    "SELECT * FROM sqlm_tokens('/nonexistent/m.db', 'a', 4)");
await expectError(con, 'missing model (sqlm_tokenize)', '/nonexistent/m.db', "SELECT sqlm_tokenize('/nonexistent/m.db', 'a')");
await expectError(con, 'no model', 'no model given', `SELECT sqlm_generate('', 'a', 4)`);
await expectError(con, 'not a model', 'sqlm_generate: ', `SELECT sqlm_generate('${q(T)}/want.json', 'a', 4)`);
await expectError(con, 'bad options JSON', 'bad JSON', `SELECT sqlm_generate('${q(DB)}', 'a', 4, '{"temperature": ')`);
await expectError(con, 'bad options JSON (sqlm_tokens)', 'bad JSON',
    `SELECT * FROM sqlm_tokens('${q(DB)}', 'a', 4, options := '[1')`);
await expectError(con, 'unknown option', "unknown option 'temp'", `SELECT sqlm_generate('${q(DB)}', 'a', 4, '{"temp": 1}')`);
await expectError(con, 'unknown option (sqlm_tokens)', "unknown option 'temp'",
    `SELECT * FROM sqlm_tokens('${q(DB)}', 'a', 4, options := '{"temp": 1}')`);
await expectError(con, 'option out of range', 'option top_p', `SELECT sqlm_generate('${q(DB)}', 'a', 4, '{"top_p": 7}')`);
await expectError(con, 'options not an object', 'expected a JSON object', `SELECT sqlm_generate('${q(DB)}', 'a', 4, '[1]')`);
await expectError(con, 'options of the wrong type', 'sqlm_generate', `SELECT sqlm_generate('${q(DB)}', 'a', 4, 5)`);
await expectError(con, 'max_tokens of the wrong type', 'many', `SELECT sqlm_generate('${q(DB)}', 'a', 'many')`);
await expectError(con, 'max_tokens out of range', 'max_tokens', `SELECT sqlm_generate('${q(DB)}', 'a', -5)`);
await expectError(con, 'max_tokens out of range (sqlm_tokens)', 'max_tokens', `SELECT * FROM sqlm_tokens('${q(DB)}', 'a', -5)`);
await expectError(con, 'bad messages', 'messages', `SELECT sqlm_chat('${q(DB)}', '{"role": "user"}')`);
await expectError(con, 'id out of range', 'out of range', `SELECT sqlm_detokenize('${q(DB)}', '[1, 99999]')`);
await expectError(con, 'ids not integers', 'ids[1]', `SELECT sqlm_detokenize('${q(DB)}', '[1, "x"]')`);
await expectError(con, 'no arguments', 'sqlm_tokens', 'SELECT * FROM sqlm_tokens()');
await expectError(con, 'too many arguments', 'sqlm_generate', `SELECT sqlm_generate('${q(DB)}', 'a', 4, '{}', 5)`);
await expectError(con, 'a failing row in a table', '/nonexistent/m.db',
    "SELECT sqlm_generate(CASE WHEN id = 3 THEN '/nonexistent/m.db' ELSE '" + q(DB) + "' END, body, 4) FROM notes");
// and the database still answers, the model's session reusable after the errors
same(await byRow(con, DB), want.text, 'after the errors');

// --- the models are closed with the database
for (const c of [c1, c2, con]) c.closeSync();
inst.closeSync();
const left = [DB, two, par].map(mappings);
same(left, [0, 0, 0], 'mappings of the models left after the database closed');
done();
