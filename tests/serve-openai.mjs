// tests/serve-openai.mjs URL KEY EXPECT.json - drives `sqlm serve` with the
// official `openai` npm client (.deps/openai, scripts/install-openai.sh):
// models.list/retrieve, completions and chat completions whole and streamed
// (their text equal to `sqlm run --temp 0` / `sqlm chat`'s, given in
// EXPECT.json), logprobs, token-id prompts, logit_bias, the errors the
// client maps to its exception classes, a stream aborted mid-way and
// concurrent requests.  Prints "ok N" or the failures; exit 1 on a failure.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, ".deps/openai/"));
const { default: OpenAI } = require("openai");

const [url, key, expectFile] = process.argv.slice(2);
const want = JSON.parse(readFileSync(expectFile, "utf8"));
const client = new OpenAI({ baseURL: url + "/v1", apiKey: key, maxRetries: 0, timeout: 60000 });
let pass = 0, fail = 0;
const ok = () => pass++;
const bad = (msg) => { fail++; console.error("serve-openai: FAIL: " + msg); };
const eq = (got, exp, what) => (JSON.stringify(got) === JSON.stringify(exp) ? ok() : bad(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(exp)}`));

// an error of the client's class with the status and a message naming what
async function rejects(what, fn, cls, status, word) {
  try {
    await fn();
    bad(`${what}: no error`);
  } catch (e) {
    if (!(e instanceof cls)) return bad(`${what}: ${e.constructor.name} (${e.message}), want ${cls.name}`);
    if (e.status !== status) return bad(`${what}: status ${e.status}, want ${status}`);
    if (word && !String(e.message).includes(word)) return bad(`${what}: message '${e.message}' lacks '${word}'`);
    ok();
  }
}

// logprobs of a greedy answer: sorted alternatives, the chosen token first, a distribution
function checkLogprobs(what, content, text, k) {
  if (content.map((c) => c.token).join("") !== text) return bad(`${what}: tokens do not make the text`);
  for (const c of content) {
    const v = c.top_logprobs.map((t) => t.logprob);
    if (v.length !== k) return bad(`${what}: ${v.length} alternatives, want ${k}`);
    if (v.some((x, i) => i && x > v[i - 1])) return bad(`${what}: alternatives not sorted`);
    if (v.reduce((s, x) => s + Math.exp(x), 0) > 1 + 1e-5) return bad(`${what}: probabilities add up past 1`);
    if (k && (c.top_logprobs[0].token !== c.token || c.top_logprobs[0].logprob !== c.logprob))
      return bad(`${what}: the greedy token is not the first alternative`);
  }
  ok();
}

const prompt = "Once upon a time";
const chatMsgs = [{ role: "system", content: "Be kind" }, { role: "user", content: "Hello there" }];

// models
const list = await client.models.list();
eq(list.data.map((m) => m.id), [want.model], "models.list");
eq((await client.models.retrieve(want.model)).id, want.model, "models.retrieve");
await rejects("models.retrieve of another id", () => client.models.retrieve("gpt-4o"), OpenAI.NotFoundError, 404, "gpt-4o");

// completions, whole and streamed
const c1 = await client.completions.create({ model: want.model, prompt, max_tokens: 48, temperature: 0 });
eq(c1.choices[0].text, want.text, "completion text");
eq(c1.usage.prompt_tokens, want.prompt_ids.length, "completion usage.prompt_tokens");
let s = "";
for await (const ch of await client.completions.create({ model: want.model, prompt, max_tokens: 48, temperature: 0, stream: true }))
  s += ch.choices[0]?.text ?? "";
eq(s, want.text, "streamed completion text");
const c2 = await client.completions.create({ model: want.model, prompt: want.prompt_ids, max_tokens: 48, temperature: 0 });
eq(c2.choices[0].text, want.text, "completion of token ids");
const c3 = await client.completions.create({ model: want.model, prompt, max_tokens: 8, temperature: 0, logprobs: 3 });
const lp = c3.choices[0].logprobs;
eq(lp.tokens.join(""), c3.choices[0].text, "completion logprobs tokens");
eq(lp.top_logprobs.every((t, i) => Object.keys(t).length === 3 && Math.max(...Object.values(t)) === lp.token_logprobs[i]), true,
   "completion top_logprobs hold the greedy token's");

// chat, whole and streamed, with logprobs and usage
const r1 = await client.chat.completions.create({ model: want.model, messages: chatMsgs, max_tokens: 8, temperature: 0 });
eq(r1.choices[0].message.content, want.chat, "chat reply");
eq(r1.choices[0].message.role, "assistant", "chat role");
const r2 = await client.chat.completions.create({ model: want.model, messages: chatMsgs, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 4 });
checkLogprobs("chat logprobs", r2.choices[0].logprobs.content, r2.choices[0].message.content, 4);
let sc = "", usage = null, finish = null;
const lps = [];
for await (const ch of await client.chat.completions.create({ model: want.model, messages: chatMsgs, max_tokens: 8, temperature: 0,
                                                              stream: true, stream_options: { include_usage: true }, logprobs: true, top_logprobs: 2 })) {
  if (ch.usage) usage = ch.usage;
  const c = ch.choices[0];
  if (!c) continue;
  sc += c.delta?.content ?? "";
  if (c.logprobs?.content) lps.push(...c.logprobs.content);
  if (c.finish_reason) finish = c.finish_reason;
}
eq(sc, want.chat, "streamed chat reply");
eq(usage?.completion_tokens, lps.length, "streamed chat: a logprob per token");
checkLogprobs("streamed chat logprobs", lps, sc, 2);
eq(["stop", "length"].includes(finish), true, "streamed chat finish_reason");
const r3 = await client.chat.completions.create({ model: want.model, messages: [{ role: "developer", content: "Be kind" }, chatMsgs[1]], max_tokens: 8, temperature: 0 });
eq(r3.choices[0].message.content, want.chat, "developer as system");

// logit_bias: the greedy first token banned gives the runner-up
const first = await client.completions.create({ model: want.model, prompt, max_tokens: 1, temperature: 0, logprobs: 2 });
const alts = Object.entries(first.choices[0].logprobs.top_logprobs[0]).sort((a, b) => b[1] - a[1]);
const biased = await client.completions.create({ model: want.model, prompt, max_tokens: 1, temperature: 0, logit_bias: { [want.first_id]: -100 } });
eq(biased.choices[0].text, alts[1][0], "logit_bias -100");

// errors the client maps to its classes
const bad401 = new OpenAI({ baseURL: url + "/v1", apiKey: key + "x", maxRetries: 0 });
await rejects("wrong key", () => bad401.models.list(), OpenAI.AuthenticationError, 401);
const chat = (extra) => () => client.chat.completions.create({ model: want.model, messages: chatMsgs, max_tokens: 4, ...extra });
await rejects("response_format json_object", chat({ response_format: { type: "json_object" } }), OpenAI.BadRequestError, 400, "response_format");
await rejects("tools", chat({ tools: [{ type: "function", function: { name: "f", parameters: {} } }] }), OpenAI.BadRequestError, 400, "tools");
await rejects("n 2", chat({ n: 2 }), OpenAI.BadRequestError, 400, "'n'");
await rejects("max_tokens 0", chat({ max_tokens: 0 }), OpenAI.BadRequestError, 400, "max_tokens");
await rejects("a tool message the template drops", () => client.chat.completions.create({ model: want.model, max_tokens: 4,
  messages: [...chatMsgs, { role: "assistant", content: "Hi" }, { role: "tool", content: "42", tool_call_id: "c1" }] }),
  OpenAI.BadRequestError, 400, "tool");
await rejects("prompt id out of range", () => client.completions.create({ model: want.model, prompt: [1, 1 << 20] }), OpenAI.BadRequestError, 400, String(1 << 20));
await rejects("overlong prompt", () => client.completions.create({ model: want.model, prompt: "Once upon a time ".repeat(300) }),
  OpenAI.BadRequestError, 400, "context");

// a stream aborted mid-way, then concurrent requests
const ac = new AbortController();
try {
  let n = 0;
  for await (const _ of await client.completions.create({ model: want.model, prompt, max_tokens: 400, ignore_eos: true, stream: true }, { signal: ac.signal }))
    if (++n === 3) {
      ac.abort();
      break;
    }
  ok();
} catch (e) {
  e instanceof OpenAI.APIUserAbortError ? ok() : bad(`aborted stream: ${e.constructor.name} ${e.message}`);
}
const all = await Promise.all([0, 1, 2].map(() => client.completions.create({ model: want.model, prompt, max_tokens: 48, temperature: 0 })));
eq(all.map((c) => c.choices[0].text), [want.text, want.text, want.text], "concurrent completions");

console.log(`serve-openai: ${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
