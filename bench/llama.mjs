// bench/llama.mjs MODEL.gguf PP TG THREADS [REPS] - llama.cpp as a peer of
// `sqlm bench`, through node-llama-cpp's prebuilt CPU binaries installed by
// scripts/install-llamacpp.sh into .deps/llama/ (or $SQLM_LLAMA_DIR, the
// folder holding node_modules/).
//
// Loads the GGUF with mmap on the CPU only (gpu: false, build: "never": the
// prebuilt binaries or nothing), a context of PP + TG + 1 positions and
// THREADS threads; then REPS times (default 3), each a fresh sequence after
// one untimed warm-up token: evaluates the prompt of PP token ids in one
// batch (pp), then decodes TG tokens one at a time, each the greedy pick of
// the previous logits (tg; end-of-generation tokens do not stop it).  The
// prompt ids are the ones `sqlm bench` and bench/refbench.c use,
// (i * 7919 + 1) mod vocab_size.  Prints the medians in their format:
//
//   pp128 t=2 456.7 tok/s
//   tg64 t=2 130.2 tok/s
//   peak RSS: 210.3 MB
//
// Exits 2 with "llama.cpp: ..." on stderr when node-llama-cpp is missing or
// cannot load the model: the caller then reports sqlm's figures alone.
// A self-contained process on purpose, so that a memory-budget benchmark can
// run it unchanged under a cgroup (systemd-run --scope -p MemoryMax=...).
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

function fail(msg) {
    process.stderr.write(`llama.cpp: ${msg}\n`);
    process.exit(2);
}

const [modelPath, ppArg, tgArg, thArg, repArg] = process.argv.slice(2);
if (!modelPath || tgArg === undefined || thArg === undefined) {
    process.stderr.write("usage: node bench/llama.mjs MODEL.gguf PP TG THREADS [REPS]\n");
    process.exit(1);
}
function int(name, s, lo, hi) {
    const v = Number(s);
    if (!Number.isInteger(v) || v < lo || v > hi) {
        process.stderr.write(`llama.mjs: ${name}: expected an integer in [${lo}, ${hi}], got '${s}'\n`);
        process.exit(1);
    }
    return v;
}
const pp = int("PP", ppArg, 0, 1 << 20), tg = int("TG", tgArg, 0, 1 << 20);
const threads = int("THREADS", thArg, 1, 1024), reps = repArg === undefined ? 3 : int("REPS", repArg, 1, 1000);
if (pp + tg === 0) fail("nothing to time (PP and TG both 0)");
if (!existsSync(modelPath)) fail(`${modelPath}: no such file`);

const here = dirname(fileURLToPath(import.meta.url));
const depDir = process.env.SQLM_LLAMA_DIR || join(here, "..", ".deps", "llama");
const entry = join(depDir, "node_modules", "node-llama-cpp", "dist", "index.js");
if (!existsSync(entry)) fail(`node-llama-cpp not installed in ${depDir} (run scripts/install-llamacpp.sh)`);

let lib;
try {
    lib = await import(pathToFileURL(entry).href);
} catch (e) {
    fail(`cannot load node-llama-cpp: ${e.message}`);
}

const median = (v) => {
    const s = [...v].sort((a, b) => a - b), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const now = () => Number(process.hrtime.bigint()) / 1e9;

let llama, model, context;
try {
    llama = await lib.getLlama({ gpu: false, build: "never", maxThreads: threads,
                                 logLevel: lib.LlamaLogLevel.error, progressLogs: false });
    model = await llama.loadModel({ modelPath: resolve(modelPath), useMmap: true, gpuLayers: 0 });
    context = await model.createContext({ contextSize: pp + tg + 1, batchSize: Math.max(pp, 1),
                                          threads: { ideal: threads, min: threads }, sequences: 1 });
} catch (e) {
    fail(`cannot load ${modelPath}: ${e.message}`);
}
const seq = context.getSequence();
const vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ??
              model.fileInfo.architectureMetadata?.vocab_size;
if (!vocab) fail(`${modelPath}: vocabulary size unknown`);
const ids = Array.from({ length: pp }, (_, i) => (i * 7919 + 1) % vocab);

const tPP = [], tTG = [];
for (let r = 0; r < reps; r++) {
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens([1 % vocab]);   // warm-up
    await seq.clearHistory();
    let t0 = now();
    if (pp > 0) await seq.evaluateWithoutGeneratingNewTokens(ids);
    tPP.push(now() - t0);
    // Each step of the generator decodes one token and picks the next: the
    // first decodes token 1 (a stand-in for the prompt's last pick), the
    // others the picks; tg steps are tg decodes.
    t0 = now();
    let n = 0;
    if (tg > 0) {
        for await (const tok of seq.evaluate([1 % vocab], { temperature: 0, yieldEogToken: true })) {
            void tok;
            if (++n >= tg) break;
        }
    }
    tTG.push(now() - t0);
}
if (pp > 0) console.log(`pp${pp} t=${threads} ${(pp / median(tPP)).toFixed(2)} tok/s`);
if (tg > 0) console.log(`tg${tg} t=${threads} ${(tg / median(tTG)).toFixed(2)} tok/s`);
console.log(`peak RSS: ${(process.resourceUsage().maxRSS / 1024).toFixed(1)} MB`);
await context.dispose();
await model.dispose();
await llama.dispose();
