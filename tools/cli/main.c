/*
 * main.c - the sqlm command line, in llama.cpp's conventions.
 *
 *   sqlm import MODEL -o model.db [--type f32|f16|q8_0|q4_0] [--tokenizer F]
 *   sqlm run -m model.db -p "text" [-n N] [--temp T] [--top-k K] [--top-p P]
 *            [--min-p P] [--repeat-penalty R] [-s SEED] [-c CTX] [-t N] [--native]
 *   sqlm sql -m model.db [-p P]   print the SQL program of a step, prompt included
 *   sqlm chat -m model.db [--system TEXT]   interactive chat in the terminal
 *   sqlm tokenize -m MODEL "text" print token ids, then the pieces
 *   sqlm synth --like NAME -o x.gguf [--type T] [-s SEED]   random weights, real shapes
 *   sqlm bench -m model.db [-p 128] [-n 64] [-t N] [-r REPS]   prefill and decode tok/s
 *   sqlm serve -m model.db [--host H] [--port P] [--api-key K]   OpenAI-compatible HTTP server
 *
 * tools/ may exit(); the library under src/ never does.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *prog = "sqlm";

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void die_rc(int rc, const char *what) {
    die("%s: %s (%s)", what, sqlm_errmsg(), sqlm_errstr(rc));
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: sqlm COMMAND [options]\n"
        "\n"
        "commands:\n"
        "  import MODEL -o OUT.db   import a .gguf, .safetensors (or its folder) or llama2.c .bin\n"
        "  run -m DB -p PROMPT      generate text\n"
        "  sql -m DB [-p PROMPT]    print the SQL program: one step over the prompt (default\n"
        "                           BOS) ending with the greedy next token\n"
        "  chat -m DB               interactive chat (chat template from the model)\n"
        "  tokenize -m MODEL TEXT   print token ids and pieces; MODEL is a model database\n"
        "                           or a tokenizer file (tokenizer.json, tokenizer.model,\n"
        "                           tokenizer.bin/tok512.bin, .gguf)\n"
        "  synth --like NAME -o F   write a GGUF with random weights of a real model's shapes\n"
        "  bench -m DB              time prefill (pp) and decode (tg) as llama-bench does\n"
        "  serve -m DB              OpenAI-compatible HTTP server (/v1/completions,\n"
        "                           /v1/chat/completions, /v1/models, /health)\n"
        "\n"
        "common options:\n"
        "  --engine NAME            database engine: sqlite, duckdb or duckdb-native (default:\n"
        "                           sqlite for import, the engine that wrote the file otherwise)\n"
        "  --native                 DuckDB: run with sqlm's C functions registered on the\n"
        "                           connection (engine duckdb-native), not in pure SQL\n"
        "  -t, --threads N          threads of the weight products (default: the CPUs online)\n"
        "  --mem-budget SIZE        hard cap on resident memory (e.g. 256M, 1G): engine caches,\n"
        "                           KV cache and sqlm's buffers included; weights that do not\n"
        "                           fit are streamed from the file every token (import, run,\n"
        "                           chat, bench, serve)\n"
        "  --mem-io MODE            how a budgeted run reads the model: direct (O_DIRECT, the\n"
        "                           page cache holds none of it), buffered, or auto (default:\n"
        "                           buffered only when the page cache has room for the file)\n"
        "\n"
        "import options:\n"
        "  -o, --output FILE        output database (required)\n"
        "  --type T                 store matrices as f32, f16, q8_0 or q4_0 (default: as in the file)\n"
        "  --tokenizer FILE         tokenizer for a llama2.c checkpoint\n"
        "  --tile-bytes N           bytes per stored weight tile (default and most 65280:\n"
        "                           one tile per 64 KB page)\n"
        "  --no-fuse                table fusion off: q, k, v and gate, up in separate tables\n"
        "                           (ablation; default: fused blk*_qkv and blk*_gu)\n"
        "  --row2col auto|on|split|split-rows|off\n"
        "                           duckdb: ROW2COL layout (default auto: the measured rule,\n"
        "                           layer matrices as blocks of rows over two tables; on:\n"
        "                           the paper's pivot columns for every matrix; split: every\n"
        "                           layer matrix so; split-rows: the same, a table row per\n"
        "                           matrix row; off: one whole row per table row)\n"
        "\n"
        "run options:\n"
        "  -m, --model FILE         model database from `sqlm import`\n"
        "  -p, --prompt TEXT        prompt (default empty: BOS only)\n"
        "  -n, --n-predict N        tokens to generate (default -1: until EOS or context end)\n"
        "  -c, --ctx-size N         context length (default: the model's)\n"
        "  --temp T                 temperature, 0 = greedy (default 0.8)\n"
        "  --top-k K                (default 40, 0 = off)\n"
        "  --top-p P                (default 0.95, 1 = off)\n"
        "  --min-p P                (default 0.05, 0 = off)\n"
        "  --repeat-penalty R       (default 1.0 = off)\n"
        "  --repeat-last-n N        (default 64)\n"
        "  --frequency-penalty F    minus F per earlier occurrence in that window (default 0)\n"
        "  --presence-penalty F     minus F once if in that window (default 0)\n"
        "  -s, --seed N             sampling seed (default: random)\n"
        "  --ignore-eos             keep generating after EOS\n"
        "  --no-cte-merge           one statement per operator (ablation)\n"
        "  --row2col-cols N         ROW2COL: pivot columns per subquery (default: the rule's)\n"
        "  --no-inplace             let SQLite copy every weight tile instead of reading the\n"
        "                           tiles in place from the mapped file (ablation)\n"
        "  --split-attention        attention as three relations (scores, maxima, output)\n"
        "                           instead of one aggregate over the cache (ablation)\n"
        "  --verbose-prompt         print the prompt's token ids on stderr\n"
        "  --stats                  print peak RSS, bytes read per token, the weight cache's hit\n"
        "                           rate and the time split into compute and waiting for I/O\n"
        "\n"
        "chat options (and run's sampling options):\n"
        "  --system TEXT            system prompt\n"
        "  --chat-template NAME     chatml, llama2, llama3 or zephyr instead of the model's\n"
        "\n"
        "serve options (also run's sampling options, as the defaults of the requests, and\n"
        "--chat-template):\n"
        "  --host ADDR              address to listen on (default 127.0.0.1: this machine only)\n"
        "  --port N                 TCP port (default 8080; 0 = any free port, printed)\n"
        "  --api-key KEY            require 'Authorization: Bearer KEY' (all but /health)\n"
        "  --alias NAME             the model's id in the API (default: the database's file name)\n"
        "  --max-body SIZE          largest request body accepted (default 1M)\n"
        "  --timeout N              seconds a client may leave its connection idle (default 600)\n"
        "  -n N                     max_tokens when a request gives none (default -1: until\n"
        "                           EOS or the end of the context)\n"
        "\n"
        "synth options:\n"
        "  --like NAME              tiny, stories110M, smollm2-135m, qwen2.5-0.5b,\n"
        "                           tinyllama-1.1b, llama-3.2-1b\n"
        "  --type T                 f32, f16, q8_0 (default) or q4_0; -s SEED (default 42)\n"
        "\n"
        "bench options:\n"
        "  -p, --n-prompt N         prompt tokens evaluated in one batch (default 128, 0 = skip)\n"
        "  -n, --n-gen N            tokens decoded one at a time (default 64, 0 = skip)\n"
        "  -r, --repetitions N      runs, each a fresh sequence; medians printed (default 3)\n"
        "\n"
        "tokenize options:\n"
        "  --no-special             do not add BOS/EOS\n");
}

/* ------------------------------------------------------------ arguments */

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

static double parse_double(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        die("%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    return v;
}

static void parse_args(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->n_predict = -1;
    a->threads = 0;   /* the engine's default: the CPUs online */
    a->temp = 0.8, a->top_k = 40, a->top_p = 0.95, a->min_p = 0.05;
    a->repeat_penalty = 1.0, a->repeat_last_n = 64;
    a->host = "127.0.0.1", a->port = 8080, a->max_body = 1 << 20, a->timeout = 600;
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
#define IS(s, l) (strcmp(o, s) == 0 || strcmp(o, l) == 0)
#define VAL() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", o), ""))
        if (IS("-m", "--model")) a->model = VAL();
        else if (IS("-p", "--prompt")) a->prompt = VAL();
        else if (IS("-o", "--output")) a->output = VAL();
        else if (IS("--engine", "--engine")) a->engine = VAL();
        else if (IS("--tokenizer", "--tokenizer")) a->tokenizer = VAL();
        else if (IS("--type", "--type")) a->type = VAL();
        else if (IS("--like", "--like")) a->like = VAL();
        else if (IS("--system", "-sys")) a->system = VAL();
        else if (IS("--chat-template", "--chat-template")) a->tmpl = VAL();
        else if (IS("-n", "--n-predict") || !strcmp(o, "--n-gen")) a->n_predict = parse_long(o, VAL(), -1, 1 << 30);
        else if (IS("-r", "--repetitions")) a->reps = parse_long(o, VAL(), 1, 1000);
        else if (!strcmp(o, "--n-prompt")) a->prompt = VAL();
        else if (IS("-c", "--ctx-size")) a->n_ctx = parse_long(o, VAL(), 0, 1 << 24);
        else if (IS("-t", "--threads")) a->threads = parse_long(o, VAL(), 1, 1024);
        else if (IS("--tile-bytes", "--tile-bytes")) a->tile_bytes = parse_long(o, VAL(), 64, 65280);
        else if (IS("--temp", "--temperature")) a->temp = parse_double(o, VAL(), 0, 100);
        else if (IS("--top-k", "--top-k")) a->top_k = parse_long(o, VAL(), 0, 1 << 30);
        else if (IS("--top-p", "--top-p")) a->top_p = parse_double(o, VAL(), 0, 1);
        else if (IS("--min-p", "--min-p")) a->min_p = parse_double(o, VAL(), 0, 1);
        else if (IS("--repeat-penalty", "--repeat-penalty")) a->repeat_penalty = parse_double(o, VAL(), 0.01, 100);
        else if (IS("--repeat-last-n", "--repeat-last-n")) a->repeat_last_n = parse_long(o, VAL(), 0, 1 << 30);
        else if (IS("--frequency-penalty", "--frequency-penalty")) a->freq_penalty = parse_double(o, VAL(), -2, 2);
        else if (IS("--presence-penalty", "--presence-penalty")) a->presence_penalty = parse_double(o, VAL(), -2, 2);
        else if (IS("--host", "--host")) a->host = VAL();
        else if (IS("--port", "--port")) a->port = parse_long(o, VAL(), 0, 65535);
        else if (IS("--api-key", "--api-key")) a->api_key = VAL();
        else if (IS("--timeout", "-to")) a->timeout = parse_long(o, VAL(), 1, 1 << 24);
        else if (IS("--alias", "-a")) a->alias = VAL();
        else if (IS("--max-body", "--max-body")) {
            const char *v = VAL();
            if (!sqlm_parse_size(v, &a->max_body) || a->max_body < 1024 || a->max_body > ((size_t)1 << 30))
                die("%s: expected a size from 1K to 1G, got '%s'", o, v);
        }
        else if (IS("-s", "--seed")) {
            a->seed = (unsigned long long)parse_long(o, VAL(), 0, __LONG_MAX__);
            a->seed_set = true;
        }
        else if (IS("--ignore-eos", "--ignore-eos")) a->ignore_eos = true;
        else if (IS("--no-cte-merge", "--no-cte-merge")) a->no_cte = true;
        else if (IS("--no-fuse", "--no-fuse")) a->no_fuse = true;
        else if (IS("--row2col", "--row2col")) {
            const char *v = VAL();
            if (strcmp(v, "auto") == 0) a->row2col = R2C_AUTO;
            else if (strcmp(v, "on") == 0) a->row2col = R2C_ON;
            else if (strcmp(v, "split") == 0) a->row2col = R2C_SPLIT;
            else if (strcmp(v, "split-rows") == 0) a->row2col = R2C_SPLIT_ROWS;
            else if (strcmp(v, "off") == 0) a->row2col = R2C_OFF;
            else die("--row2col: expected auto, on, split, split-rows or off, got '%s'", v);
        }
        else if (IS("--row2col-cols", "--row2col-cols")) a->row2col_cols = parse_long(o, VAL(), 1, 64);
        else if (IS("--no-inplace", "--no-inplace")) a->no_inplace = true;
        else if (IS("--split-attention", "--split-attention")) a->split_attn = true;
        else if (IS("--no-special", "--no-special")) a->no_special = true;
        else if (IS("--verbose-prompt", "--verbose-prompt")) a->verbose_prompt = true;
        else if (IS("--native", "--native")) a->native = true;
        else if (IS("--stats", "--stats")) a->stats = true;
        else if (IS("--mem-budget", "--mem-budget")) {
            const char *v = VAL();
            if (!sqlm_parse_size(v, &a->mem_budget) || a->mem_budget == 0)
                die("%s: expected a size such as 256M or 1.5G, got '%s'", o, v);
            if (a->mem_budget < (16u << 20)) die("%s: %s is below the 16M sqlm needs to run at all", o, v);
        }
        else if (IS("--mem-io", "--mem-io")) {
            const char *v = VAL();
            if (!strcmp(v, "auto")) a->mem_io = WC_IO_AUTO;
            else if (!strcmp(v, "direct")) a->mem_io = WC_IO_DIRECT;
            else if (!strcmp(v, "buffered")) a->mem_io = WC_IO_BUFFERED;
            else die("%s: expected auto, direct or buffered, got '%s'", o, v);
        }
        else if (IS("-h", "--help")) { usage(stdout); exit(0); }
        else if (o[0] == '-' && o[1]) die("unknown option '%s' (see sqlm --help)", o);
        else if (!a->positional) a->positional = o;
        else die("unexpected argument '%s'", o);
#undef IS
#undef VAL
    }
}

/* --------------------------------------------------------------- import */

/* --type: a storage type sqlm computes with, or dflt when not given. */
static int parse_type(const args *a, int dflt) {
    static const struct { const char *n; int t; } types[] = {
        { "f32", DT_F32 }, { "f16", DT_F16 }, { "q8_0", DT_Q8_0 }, { "q4_0", DT_Q4_0 } };
    if (!a->type) return dflt;
    for (size_t i = 0; i < ARRAY_LEN(types); i++)
        if (strcasecmp(a->type, types[i].n) == 0) return types[i].t;
    die("%s: --type must be f32, f16, q8_0 or q4_0, not '%s'", a->cmd, a->type);
}

static int cmd_import(args *a) {
    const char *in = a->positional;
    if (!in) die("import: which model file? (sqlm import MODEL -o OUT.db)");
    if (!a->output) die("import: no output database (-o OUT.db)");
    int wtype = parse_type(a, -1);
    import_opts o = { .engine = a->engine ? a->engine : "sqlite", .tok_path = a->tokenizer, .wtype = wtype,
                      .tile_bytes = (size_t)a->tile_bytes, .progress = isatty(2),
                      .no_fuse = a->no_fuse, .row2col = a->row2col, .mem_budget = a->mem_budget };
    double t0 = sqlm_now();
    int rc = sqlm_import(in, a->output, &o);
    if (rc) die_rc(rc, "import");
    fprintf(stderr, "import: wrote %s in %.1f s\n", a->output, sqlm_now() - t0);
    if (a->stats) fprintf(stderr, "stats: peak RSS %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    return 0;
}

/* ------------------------------------------------------------------ run */

int prompt_ids(const modeldb *db, const char *text, size_t len, int32_t **ids, int32_t *n_ids) {
    int rc = sqlm_tok_encode(db->tok, text, len, true, ids, n_ids);
    if (rc || *n_ids > 0) return rc;
    /* an empty prompt without BOS: start from BOS anyway */
    free(*ids);
    *ids = NULL;
    if (db->voc.bos < 0) return sqlm_error(SQLM_ERROR, "empty prompt and the vocabulary has no BOS");
    if (!(*ids = malloc(sizeof **ids))) return sqlm_error(SQLM_NOMEM, "out of memory");
    (*ids)[0] = db->voc.bos;
    *n_ids = 1;
    return SQLM_OK;
}

size_t utf8_whole(const char *p, size_t n) {
    /* back up over a trailing incomplete sequence */
    size_t i = n, k = 0;
    while (i > 0 && k < 4 && ((unsigned char)p[i - 1] & 0xC0) == 0x80) i--, k++;
    if (i > 0) {
        unsigned char c = (unsigned char)p[i - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > k + 1 && c >= 0xC0) return i - 1;
    }
    return n;
}

/* Print the complete UTF-8 prefix of pending text; keep a split character. */
static void flush_utf8(buf *pending, bool all) {
    size_t n = all ? pending->len : utf8_whole(pending->p, pending->len);
    fwrite(pending->p, 1, n, stdout);
    fflush(stdout);
    memmove(pending->p, pending->p + n, pending->len - n);
    pending->len -= n;
}

uint64_t sampler_rng(uint64_t seed) { return seed * 0x9E3779B97F4A7C15ull + 1; }

/* The sampling options of run, chat and serve, and the generator seeded from -s. */
sampler_opts sampler_from_args(const args *a, uint64_t *rng) {
    sampler_opts sp = { .temp = (float)a->temp, .top_k = (int)a->top_k, .top_p = (float)a->top_p,
                        .min_p = (float)a->min_p, .repeat_penalty = (float)a->repeat_penalty,
                        .freq_penalty = (float)a->freq_penalty, .presence_penalty = (float)a->presence_penalty,
                        .repeat_last_n = (int)a->repeat_last_n,
                        .seed = a->seed_set ? a->seed : (uint64_t)time(NULL) };
    *rng = sampler_rng(sp.seed);
    return sp;
}

/* The compilation options of run, chat, bench and sql: the passes' flags. */
static ir_opts args_ir_opts(const args *a) {
    return (ir_opts){ .cte_merge = !a->no_cte, .row2col_per = (int)a->row2col_cols, .fuse_attn = !a->split_attn };
}

session_opts session_opts_from_args(const args *a) {
    return (session_opts){ .ir = args_ir_opts(a), .n_ctx = (int)a->n_ctx, .mem_budget = a->mem_budget };
}

void open_db(args *a, modeldb *db) {
    if (!a->model) die("%s: no model database (-m model.db; make one with sqlm import)", a->cmd);
    /* --engine, or else the engine that wrote the file; --native: its
     * variant with sqlm's functions registered */
    const char *engine = a->engine;
    char native[64];
    if (a->native) {
        const db_methods *m = engine ? sqlm_db_find(engine) : sqlm_db_sniff(a->model);
        if (!m) die("%s: --native: unknown engine of %s", a->cmd, a->model);
        snprintf(native, sizeof native, "%s-native", m->name);
        if (!sqlm_db_find(native)) die("%s: --native: engine %s has no native mode", a->cmd, m->name);
        engine = native;
    }
    engine_opts eo = { .threads = (int)a->threads, .readonly = true, .mem_budget = a->mem_budget,
                       .mem_io = a->mem_io, .copy_tiles = a->no_inplace };
    size_t cg = sqlm_cgroup_limit();
    if (a->mem_budget && cg && cg < a->mem_budget)
        fprintf(stderr, "%s: note: --mem-budget %.0f MB is above this process's cgroup memory limit of %.0f MB: "
                        "the kernel may stop sqlm before the budget is reached\n",
                prog, a->mem_budget / 1048576.0, cg / 1048576.0);
    int rc = sqlm_modeldb_open(db, a->model, engine, &eo);
    if (rc) die_rc(rc, a->cmd);
    if (db->note[0]) fprintf(stderr, "%s: note: %s\n", prog, db->note);
}

/* A point in time for --stats: wall and compute-thread CPU time, bytes read
 * from storage, the weight cache's counters. */
typedef struct snap {
    double t, cpu;
    uint64_t io;
    wcache_stats wc;
    bool cache;
} snap;

static snap take_snap(session *s) {
    snap x;
    x.cache = sqlm_exec_mem_stats(s, &x.wc);
    x.t = sqlm_now();
    x.cpu = sqlm_thread_cpu();
    x.io = sqlm_io_read_bytes();
    return x;
}

/* Between two snaps: seconds waiting for I/O (the cache's count; without a
 * cache, time the thread was not on a CPU: page faults), bytes read
 * (the cache's reads; without one, the storage reads of the process). */
static double snap_wait(const snap *a, const snap *b) {
    /* the cache sums the waits of all compute threads: at most the wall time */
    double w = b->cache ? b->wc.wait_s - a->wc.wait_s : (b->t - a->t) - (b->cpu - a->cpu);
    return MIN(MAX(w, 0), b->t - a->t);
}
static double snap_read(const snap *a, const snap *b) {
    return b->cache ? (double)(b->wc.read_bytes - a->wc.read_bytes) : (double)(b->io - a->io);
}
static double snap_hit(const snap *a, const snap *b) {
    double f = (double)(b->wc.fetch_bytes - a->wc.fetch_bytes);
    return f > 0 ? 100.0 * (double)(b->wc.hit_bytes - a->wc.hit_bytes) / f : 0;
}

/* Without a weight cache the wait is the time the main thread spent off the
 * CPU: page faults on the mapped model, or other threads of the engine. */
#define WAIT_LABEL(sn) ((sn)->cache ? "waiting for I/O" : "off-CPU (I/O, engine threads)")

static void print_stats(const args *a, session *ses, const snap *s0, const snap *s1, const snap *tok, int n_tok,
                        int n_prompt) {
    const double MB = 1048576.0;
    if (sqlm_exec_mem_plan(ses)) fprintf(stderr, "stats: budget: %s\n", sqlm_exec_mem_plan(ses));
    for (int i = 1; i < n_tok; i++) {
        const snap *p = &tok[i - 1], *q = &tok[i];
        double dt = q->t - p->t, w = snap_wait(p, q);
        fprintf(stderr, "stats: token %d: %.1f ms (compute %.1f, %s %.1f), read %.1f MB",
                i, dt * 1e3, (dt - w) * 1e3, WAIT_LABEL(q), w * 1e3, snap_read(p, q) / MB);
        if (q->cache) fprintf(stderr, ", hit rate %.1f%%", snap_hit(p, q));
        fputc('\n', stderr);
    }
    fprintf(stderr, "stats: peak RSS %.1f MB", sqlm_peak_rss() / MB);
    if (a->mem_budget) fprintf(stderr, " (budget %.1f MB)", a->mem_budget / MB);
    fputc('\n', stderr);
    if (s1->cache && s1->wc.heap_limit)
        fprintf(stderr, "stats: engine heap: peak %.1f MB of its %.1f MB share\n", s1->wc.heap_peak / MB,
                s1->wc.heap_limit / MB);
    if (s1->cache)
        fprintf(stderr, "stats: weight cache: %.1f MB resident of the %.1f MB a step reads, %.1f MB read buffers, "
                        "%s reads; resident set loaded in %.2f s\n",
                s1->wc.resident_bytes / MB, s1->wc.sched_bytes / MB, s1->wc.ring_bytes / MB,
                s1->wc.direct ? "O_DIRECT" : "buffered", s1->wc.load_s);
    if (s1->cache && n_tok > 1)
        fprintf(stderr, "stats: weight cache while decoding: %.1f MB/token read by the compute threads themselves "
                        "(misses), %.1f re-aims of the readers per token\n",
                (double)(tok[n_tok - 1].wc.sync_bytes - tok[0].wc.sync_bytes) / (n_tok - 1) / MB,
                (double)(tok[n_tok - 1].wc.resyncs - tok[0].wc.resyncs) / (n_tok - 1));
    double dt = s1->t - s0->t, w = snap_wait(s0, s1);
    fprintf(stderr, "stats: prompt: %d tokens in %.3f s: compute %.3f s, %s %.3f s, read %.1f MB\n",
            n_prompt, dt, dt - w, WAIT_LABEL(s1), w, snap_read(s0, s1) / MB);
    int n = n_tok - 1;
    if (n > 0) {
        const snap *p = &tok[0], *q = &tok[n];
        double d = (q->t - p->t) / n, wt = snap_wait(p, q) / n;
        fprintf(stderr, "stats: decode: %d tokens, %.1f ms/token: compute %.1f ms, %s %.1f ms; "
                        "read %.1f MB/token",
                n, d * 1e3, (d - wt) * 1e3, WAIT_LABEL(q), wt * 1e3, snap_read(p, q) / n / MB);
        if (q->cache)
            fprintf(stderr, ", hit rate %.1f%%, storage %.1f MB/token; reader busy %.1f ms/token, %.0f reads/token",
                    snap_hit(p, q), (double)(q->io - p->io) / n / MB, (q->wc.reader_s - p->wc.reader_s) / n * 1e3,
                    (double)(q->wc.reads - p->wc.reads) / n);
        fputc('\n', stderr);
    }
}

static int cmd_run(args *a) {
    modeldb db;
    open_db(a, &db);
    if (!db.tok) die("run: %s has no vocabulary", a->model);
    const char *prompt = a->prompt ? a->prompt : "";
    int32_t *ids = NULL, n_ids = 0;
    int rc = prompt_ids(&db, prompt, strlen(prompt), &ids, &n_ids);
    if (rc) die_rc(rc, "run: tokenizing the prompt");
    sqlm_tok_drop_encoder(db.tok);   /* no more text to encode: its tables are not the budget's */
    if (a->verbose_prompt) {
        fprintf(stderr, "prompt ids:");
        for (int i = 0; i < n_ids; i++) fprintf(stderr, " %d", ids[i]);
        fputc('\n', stderr);
    }
    session *s;
    session_opts so = session_opts_from_args(a);
    if ((rc = sqlm_exec_init(&s, &db, &so))) die_rc(rc, "run");
    int n_ctx = sqlm_exec_n_ctx(s);
    if (n_ids >= n_ctx) die("run: prompt of %d tokens does not fit the context of %d", n_ids, n_ctx);

    uint64_t rng;
    sampler_opts sp = sampler_from_args(a, &rng);

    fputs(prompt, stdout);
    fflush(stdout);
    int32_t *hist = malloc(sizeof *hist * (size_t)n_ctx);
    if (!hist) die("run: out of memory");
    memcpy(hist, ids, sizeof *ids * (size_t)n_ids);
    int n_hist = n_ids;

    /* snapshots for --stats: before the prompt, then after each step */
    int cap_snaps = a->stats ? (a->n_predict >= 0 ? (int)a->n_predict : n_ctx) + 2 : 0;
    snap s0 = { 0 }, *snaps = a->stats ? malloc(sizeof *snaps * (size_t)cap_snaps) : NULL;
    int n_snaps = 0;
    if (a->stats) s0 = take_snap(s);

    double t0 = sqlm_now();
    const float *lg;
    if ((rc = sqlm_exec_eval(s, ids, n_ids, &lg))) die_rc(rc, "run: prompt");
    double t_prompt = sqlm_now() - t0;
    if (snaps) snaps[n_snaps++] = take_snap(s);
    float *logits = malloc(sizeof *logits * (size_t)db.cfg.vocab_size);
    buf out;
    sqlm_buf_init(&out);
    int n_gen = 0;
    double t1 = sqlm_now();
    while (a->n_predict < 0 || n_gen < a->n_predict) {
        memcpy(logits, lg, sizeof *logits * (size_t)db.cfg.vocab_size);
        int32_t next = sqlm_sample_next(&sp, logits, db.cfg.vocab_size, hist, n_hist, &rng);
        n_gen++;
        if (!a->ignore_eos && (next == db.voc.eos || next == db.voc.eot)) break;
        sqlm_tok_decode(db.tok, hist[n_hist - 1], next, &out);
        flush_utf8(&out, false);
        hist[n_hist++] = next;
        if (a->n_predict >= 0 && n_gen >= a->n_predict) break;
        if (n_hist >= n_ctx) {
            fprintf(stderr, "\n%s: context full (%d tokens)\n", prog, n_ctx);
            break;
        }
        if ((rc = sqlm_exec_eval(s, &next, 1, &lg))) {
            flush_utf8(&out, true);
            fputc('\n', stdout);
            die_rc(rc, "run: decode");
        }
        if (snaps && n_snaps < cap_snaps) snaps[n_snaps++] = take_snap(s);
    }
    flush_utf8(&out, true);
    double t_gen = sqlm_now() - t1;
    putchar('\n');
    fflush(stdout);
    fprintf(stderr, "\nprompt: %d tokens, %.1f tok/s\n", n_ids, n_ids / (t_prompt > 0 ? t_prompt : 1e-9));
    fprintf(stderr, "generation: %d tokens, %.1f tok/s\n", n_gen, n_gen / (t_gen > 0 ? t_gen : 1e-9));
    fprintf(stderr, "time to first token: %.1f ms\n", t_prompt * 1000);
    fprintf(stderr, "peak RSS: %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    if (snaps) print_stats(a, s, &s0, &snaps[0], snaps, n_snaps, n_ids);
    free(snaps);
    sqlm_buf_free(&out);
    free(logits);
    free(hist);
    free(ids);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
    return 0;
}

/* ------------------------------------------------------------------ sql */

static int cmd_sql(args *a) {
    modeldb db;
    open_db(a, &db);
    ir_graph g;
    sql_program p;
    ir_opts o = args_ir_opts(a);
    o.inplace = db.inplace;
    o = sqlm_dialect_ir_opts(db.e->m->dialect, o);
    int rc = sqlm_ir_build_llama(&g, &db.cfg, db.weights, db.n_weights, &o);
    if (!rc) rc = sqlm_emit_program(&g, db.e->m->dialect, &p);
    if (rc) die_rc(rc, "sql");
    /* the script feeds the prompt (default: BOS alone) and ends with the next token */
    int32_t *ids = NULL, n_ids = 0;
    if (db.tok && (rc = sqlm_tok_encode(db.tok, a->prompt ? a->prompt : "", a->prompt ? strlen(a->prompt) : 0,
                                   true, &ids, &n_ids)))
        die_rc(rc, "sql: tokenizing the prompt");
    if (n_ids == 0 && db.voc.bos >= 0) {
        free(ids);
        ids = malloc(sizeof *ids);
        ids[0] = db.voc.bos;
        n_ids = 1;
    }
    if (n_ids > db.cfg.seq_len) die("sql: prompt of %d tokens exceeds the context of %d", n_ids, db.cfg.seq_len);
    char *text = sqlm_sql_program_text(&p, ids, n_ids);
    free(ids);
    if (!text) die("sql: out of memory");
    fputs(text, stdout);
    free(text);
    sqlm_sql_program_free(&p);
    sqlm_ir_free(&g);
    sqlm_modeldb_close(&db);
    return 0;
}

/* ------------------------------------------------------------- tokenize */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A vocabulary from a tokenizer file or a model file. */
static void read_vocab_file(const char *path, vocab *v, model **m) {
    int rc;
    *m = NULL;
    sqlm_vocab_init(v);
    if (ends_with(path, ".json")) rc = sqlm_tok_read_json(v, path);
    else if (ends_with(path, ".model")) rc = sqlm_tok_read_spm_model(v, path);
    else if (ends_with(path, "tokenizer.bin") || ends_with(path, "tok512.bin") ||
             (ends_with(path, ".bin") && strstr(path, "tok")))
        rc = sqlm_llama2c_read_tokenizer(v, path, 0);
    else {
        rc = sqlm_model_open(path, NULL, m);   /* GGUF, safetensors folder, llama2.c checkpoint */
        if (!rc) *v = (*m)->voc;
    }
    if (rc) die_rc(rc, "tokenize");
    if (v->n == 0) die("tokenize: %s has no vocabulary", path);
}

static int cmd_tokenize(args *a) {
    if (!a->model) die("tokenize: no model (-m model.db, or a tokenizer file)");
    const char *text = a->positional ? a->positional : a->prompt ? a->prompt : "";
    modeldb db;
    model *m = NULL;
    vocab own;
    const vocab *v;
    tokenizer *tok;
    bool from_db = sqlm_db_sniff(a->model) != NULL;   /* a model database of any engine */
    if (from_db) {
        a->no_inplace = true;   /* no products: the weight tiles need no mapping (a 1.1B model's: 1.5 GB of RSS) */
        open_db(a, &db);
        if (!db.tok) die("tokenize: %s has no vocabulary", a->model);
        v = &db.voc;
        tok = db.tok;
    } else {
        read_vocab_file(a->model, &own, &m);
        v = &own;
        int rc = sqlm_tok_init(&tok, v);
        if (rc) die_rc(rc, "tokenize");
    }
    int32_t *ids, n;
    int rc = sqlm_tok_encode(tok, text, strlen(text), !a->no_special, &ids, &n);
    if (rc) die_rc(rc, "tokenize");
    for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    putchar('\n');
    for (int i = 0; i < n; i++) {
        printf("%s", i ? " " : "");
        fwrite(v->tok[ids[i]], 1, v->tok_len[ids[i]], stdout);
    }
    putchar('\n');
    free(ids);
    if (from_db) {
        sqlm_modeldb_close(&db);
    } else {
        sqlm_tok_free(tok);
        if (m) sqlm_model_free(m);   /* owns the vocabulary */
        else sqlm_vocab_free(&own);
    }
    return 0;
}

/* ----------------------------------------------------------------- chat */

const char *chat_template_for(const args *a, const modeldb *db) {
    if (a->tmpl) {
        const char *t = sqlm_chat_builtin(a->tmpl);
        if (!t) die("%s: unknown --chat-template '%s' (chatml, llama2, llama3, zephyr)", a->cmd, a->tmpl);
        return t;
    }
    const char *t = sqlm_chat_vocab_template(&db->voc);   /* the model's own, else a guess */
    return t ? t : sqlm_chat_builtin("chatml");
}

/* A special token's text for the template, where the tokenizer reads special
 * pieces in text ("" where it does not: BOS is then added by the encoder). */
static const char *piece_or_empty(const vocab *v, int32_t id) {
    return id >= 0 && id < v->n && v->special_in_text ? v->tok[id] : "";
}

int chat_prompt(const modeldb *db, const char *tmpl, const chat_msg *msgs, int n_msgs, bool verbose,
                int32_t **ids, int32_t *n_ids) {
    *ids = NULL, *n_ids = 0;
    buf text;
    sqlm_buf_init(&text);
    int rc = sqlm_chat_render(tmpl, msgs, n_msgs, true, piece_or_empty(&db->voc, db->voc.bos),
                         piece_or_empty(&db->voc, db->voc.eos), &text);
    if (rc) {
        sqlm_error_prefix(rc, "chat template");
    } else {
        if (verbose) fprintf(stderr, "[prompt]\n%s[/prompt]\n", text.p);
        rc = sqlm_tok_encode(db->tok, text.p, text.len, !db->voc.special_in_text, ids, n_ids);
    }
    sqlm_buf_free(&text);
    return rc;
}

/*
 * An interactive chat: each turn renders the whole conversation with the
 * model's chat template, feeds only the tokens past what the KV cache holds,
 * and generates until end of turn.  Lines are read from stdin; an empty line
 * or end of input ends the chat.
 */
static int cmd_chat(args *a) {
    modeldb db;
    open_db(a, &db);
    if (!db.tok) die("chat: %s has no vocabulary", a->model);
    const char *tmpl = chat_template_for(a, &db);
    session *s;
    session_opts so = session_opts_from_args(a);
    int rc = sqlm_exec_init(&s, &db, &so);
    if (rc) die_rc(rc, "chat");
    const int n_ctx = sqlm_exec_n_ctx(s);
    uint64_t rng;
    sampler_opts sp = sampler_from_args(a, &rng);
    chat_msg *msgs = calloc(1024, sizeof *msgs);
    int n_msgs = 0;
    if (a->system) msgs[n_msgs++] = (chat_msg){ "system", a->system };
    int32_t *hist = malloc(sizeof *hist * (size_t)n_ctx);   /* the conversation's tokens */
    float *logits = malloc(sizeof *logits * (size_t)db.cfg.vocab_size);
    int n_hist = 0;
    char *line = NULL;
    size_t cap = 0;
    buf out;
    sqlm_buf_init(&out);
    bool tty = isatty(0);
    for (;;) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        ssize_t len = getline(&line, &cap, stdin);
        if (len <= 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) break;
        if (n_msgs + 2 > 1024) die("chat: too many turns");
        msgs[n_msgs++] = (chat_msg){ "user", sqlm_strdup(line) };
        int32_t *ids, n;
        if ((rc = chat_prompt(&db, tmpl, msgs, n_msgs, a->verbose_prompt, &ids, &n))) die_rc(rc, "chat");
        if (n >= n_ctx) die("chat: conversation of %d tokens exceeds the context of %d", n, n_ctx);
        /* only the tokens past what the KV cache holds (all of them when
         * the template rewrote history) */
        const float *lg;
        if ((rc = sqlm_exec_feed(s, ids, n, &lg, NULL))) die_rc(rc, "chat");
        memcpy(hist, ids, sizeof *ids * (size_t)n);
        n_hist = n;
        free(ids);
        sqlm_buf_reset(&out);
        buf reply;
        sqlm_buf_init(&reply);
        for (int i = 0; a->n_predict < 0 || i < a->n_predict; i++) {
            memcpy(logits, lg, sizeof *logits * (size_t)db.cfg.vocab_size);
            int32_t next = sqlm_sample_next(&sp, logits, db.cfg.vocab_size, hist, n_hist, &rng);
            if (next == db.voc.eos || next == db.voc.eot) break;
            size_t before = out.len;
            sqlm_tok_decode(db.tok, hist[n_hist - 1], next, &out);
            sqlm_buf_append(&reply, out.p + before, out.len - before);
            flush_utf8(&out, false);
            hist[n_hist++] = next;
            if (n_hist >= n_ctx) {
                fprintf(stderr, "\n%s: context full (%d tokens)\n", prog, n_ctx);
                break;
            }
            if ((rc = sqlm_exec_eval(s, &next, 1, &lg))) die_rc(rc, "chat");
        }
        flush_utf8(&out, true);
        putchar('\n');
        msgs[n_msgs++] = (chat_msg){ "assistant", sqlm_buf_detach(&reply) };
        if (n_hist >= n_ctx) break;
    }
    for (int i = 0; i < n_msgs; i++)
        if (msgs[i].content != a->system) free((char *)msgs[i].content);
    free(msgs), free(hist), free(logits), free(line);
    sqlm_buf_free(&out);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
    return 0;
}

/* ---------------------------------------------------------------- synth */

static int cmd_synth(args *a) {
    const synth_spec *sp = a->like ? sqlm_synth_like(a->like) : NULL;
    if (!sp) {
        fprintf(stderr, "%s: synth: --like must be one of:", prog);
        for (int i = 0; sqlm_synth_name(i); i++) fprintf(stderr, " %s", sqlm_synth_name(i));
        fputc('\n', stderr);
        exit(1);
    }
    if (!a->output) die("synth: no output file (-o x.gguf)");
    int rc = sqlm_synth_model(a->output, sp, parse_type(a, DT_Q8_0), a->seed_set ? a->seed : 42);
    if (rc) die_rc(rc, "synth");
    fprintf(stderr, "synth: wrote %s (%s shapes, random weights)\n", a->output, sp->name);
    return 0;
}

/* ---------------------------------------------------------------- bench */

static int32_t argmax(const float *v, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/*
 * sqlm bench, after llama-bench: a prompt of p token ids evaluated in one
 * batch (pp), then n tokens decoded one at a time, each the greedy pick of
 * the last logits (tg); r runs, each a fresh sequence after one untimed
 * warm-up token; medians printed one line a test:
 *
 *   pp128 t=2 123.4 tok/s
 *   tg64 t=2 21.0 tok/s 2.45 GB/s
 *   weights: 116.4 MB per token
 *   peak RSS: 154.1 MB
 *
 * GB/s = bytes of the weight tables (sqlm_weight: every matrix, output head
 * included, as stored; not an untied embedding, read a row at a time) x
 * decode tok/s, the weights a decoded token streams.
 * Prompt ids are (i * 7919 + 1) mod vocab_size, as bench/refbench.c uses.
 */
static int cmd_bench(args *a) {
    long pp = 128, tg = a->n_predict < 0 ? 64 : a->n_predict;
    int reps = a->reps > 0 ? (int)a->reps : 3;
    if (a->prompt) pp = parse_long("-p", a->prompt, 0, 1 << 20);
    if (pp == 0 && tg == 0) die("bench: nothing to time (-p 0 and -n 0)");
    if (a->positional) die("bench: unexpected argument '%s' (the model goes after -m)", a->positional);
    modeldb db;
    open_db(a, &db);
    int vocab = db.cfg.vocab_size;
    /* pp + tg positions, and one for the warm-up or the first decoded token */
    long n_ctx = pp + tg + 1;
    if (n_ctx > db.cfg.seq_len)
        die("bench: -p %ld + -n %ld tokens exceed the model's context of %d", pp, tg, db.cfg.seq_len);
    session *s;
    session_opts so = session_opts_from_args(a);
    so.n_ctx = (int)n_ctx;
    int rc = sqlm_exec_init(&s, &db, &so);
    if (rc) die_rc(rc, "bench");
    int32_t *ids = malloc(sizeof *ids * (size_t)(pp + 1));
    double *t_pp = calloc((size_t)reps, sizeof *t_pp), *t_tg = calloc((size_t)reps, sizeof *t_tg);
    if (!ids || !t_pp || !t_tg) die("bench: out of memory");
    for (long i = 0; i < pp; i++) ids[i] = (int32_t)((i * 7919 + 1) % vocab);
    for (int r = 0; r < reps; r++) {
        const float *lg;
        int32_t tok = 1 % vocab;
        /* warm-up: one token, then a fresh sequence */
        if ((rc = sqlm_exec_eval(s, &tok, 1, &lg)) || (rc = sqlm_exec_reset(s))) die_rc(rc, "bench: warm-up");
        double t0 = sqlm_now();
        if (pp > 0 && (rc = sqlm_exec_eval(s, ids, (int)pp, &lg))) die_rc(rc, "bench: prompt");
        t_pp[r] = sqlm_now() - t0;
        if (pp == 0 && (rc = sqlm_exec_eval(s, &tok, 1, &lg))) die_rc(rc, "bench: first token");
        t0 = sqlm_now();
        for (long i = 0; i < tg; i++) {
            tok = argmax(lg, vocab);
            if ((rc = sqlm_exec_eval(s, &tok, 1, &lg))) die_rc(rc, "bench: decode");
        }
        t_tg[r] = sqlm_now() - t0;
        if ((rc = sqlm_exec_reset(s))) die_rc(rc, "bench");
    }
    double wbytes = 0;
    for (int i = 0; i < db.n_weights; i++) {
        size_t rb = 0;
        if (!strcmp(db.weights[i].name, "embed")) continue;   /* a lookup: one row a token */
        sqlm_dtype_row_bytes(db.weights[i].dtype, (size_t)db.weights[i].n_in, &rb);
        wbytes += (double)rb * (double)db.weights[i].n_out;
    }
    if (pp > 0) printf("pp%ld t=%ld %.2f tok/s\n", pp, a->threads, pp / sqlm_median(t_pp, reps));
    if (tg > 0) {
        double tps = tg / sqlm_median(t_tg, reps);
        printf("tg%ld t=%ld %.2f tok/s %.2f GB/s\n", tg, a->threads, tps, wbytes * tps / 1e9);
    }
    printf("weights: %.1f MB per token\n", wbytes / 1e6);
    printf("peak RSS: %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    free(ids), free(t_pp), free(t_tg);
    sqlm_exec_free(s);
    sqlm_modeldb_close(&db);
    return 0;
}

int main(int argc, char **argv) {
    /* Every decode step allocates and frees megabytes (SQLite's step tables,
     * product buffers); glibc would hand the top of the heap back to the
     * kernel each time and take ~260 page faults per step to get it again
     * (8-9% of a 110M decode step).  Keep it. */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sqlm %s\n", SQLM_VERSION);
        return 0;
    }
    args a;
    parse_args(argc, argv, &a);
    if (a.engine && sqlm_db_find(a.engine) == NULL)
        die("unknown engine '%s' (available: sqlite, duckdb)", a.engine);
    if (!strcmp(a.cmd, "import")) return cmd_import(&a);
    if (!strcmp(a.cmd, "run")) return cmd_run(&a);
    if (!strcmp(a.cmd, "sql")) return cmd_sql(&a);
    if (!strcmp(a.cmd, "tokenize")) return cmd_tokenize(&a);
    if (!strcmp(a.cmd, "chat")) return cmd_chat(&a);
    if (!strcmp(a.cmd, "synth")) return cmd_synth(&a);
    if (!strcmp(a.cmd, "bench")) return cmd_bench(&a);
    if (!strcmp(a.cmd, "serve")) return cmd_serve(&a);
    die("unknown command '%s' (see sqlm --help)", a.cmd);
}
