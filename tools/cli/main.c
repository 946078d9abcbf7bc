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
        "  --repeat-last-n N        window of the penalties (default 64, 0 = off, -1 = all)\n"
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
        "  --timeout N              seconds an answer may take, its client silent (default 600)\n"
        "  --idle-timeout N         seconds a client has to send a request's headers and body,\n"
        "                           and may stay idle between requests (default 10)\n"
        "  --conn-per-ip N          open connections from one address (default 16, 0 = 64)\n"
        "  --cors ORIGIN            let browser pages of ORIGIN (or '*': any) call the API\n"
        "  -n N                     max_tokens when a request gives none (default -1: until\n"
        "                           EOS or the end of the context)\n"
        "\n"
        "synth options:\n"
        "  --like NAME              tiny, tiny-k, stories110M, smollm2-135m, qwen2.5-0.5b,\n"
        "                           tinyllama-1.1b, llama-3.2-1b\n"
        "  --type T                 f32, f16, q8_0 (default), q4_0, q4_k_m (llama-quantize's mix of\n"
        "                           Q4_K and Q6_K) or q6_k: widths of 256; -s SEED (default 42)\n"
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
    a->idle_timeout = 10, a->conn_per_ip = 16;
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
        else if (IS("--repeat-last-n", "--repeat-last-n")) a->repeat_last_n = parse_long(o, VAL(), -1, 1 << 30);
        else if (IS("--frequency-penalty", "--frequency-penalty")) a->freq_penalty = parse_double(o, VAL(), -2, 2);
        else if (IS("--presence-penalty", "--presence-penalty")) a->presence_penalty = parse_double(o, VAL(), -2, 2);
        else if (IS("--host", "--host")) a->host = VAL();
        else if (IS("--port", "--port")) a->port = parse_long(o, VAL(), 0, 65535);
        else if (IS("--api-key", "--api-key")) a->api_key = VAL();
        else if (IS("--timeout", "-to")) a->timeout = parse_long(o, VAL(), 1, 1 << 24);
        else if (IS("--alias", "-a")) a->alias = VAL();
        else if (IS("--idle-timeout", "--idle-timeout")) a->idle_timeout = parse_long(o, VAL(), 1, 1 << 24);
        else if (IS("--conn-per-ip", "--conn-per-ip")) a->conn_per_ip = parse_long(o, VAL(), 0, 64);
        else if (IS("--cors", "--cors")) a->cors = VAL();
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
            if (strcmp(v, "auto") == 0) a->row2col = SQLM_ROW2COL_AUTO;
            else if (strcmp(v, "on") == 0) a->row2col = SQLM_ROW2COL_ON;
            else if (strcmp(v, "split") == 0) a->row2col = SQLM_ROW2COL_SPLIT;
            else if (strcmp(v, "split-rows") == 0) a->row2col = SQLM_ROW2COL_SPLIT_ROWS;
            else if (strcmp(v, "off") == 0) a->row2col = SQLM_ROW2COL_OFF;
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
            if (!strcmp(v, "auto")) a->mem_io = SQLM_MEM_IO_AUTO;
            else if (!strcmp(v, "direct")) a->mem_io = SQLM_MEM_IO_DIRECT;
            else if (!strcmp(v, "buffered")) a->mem_io = SQLM_MEM_IO_BUFFERED;
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

/* ---------------------------------------------------------------- buffer */

void buf_init(buf *b) { *b = (buf){ 0 }; }
void buf_free(buf *b) {
    free(b->p);
    *b = (buf){ 0 };
}
void buf_reset(buf *b) {
    b->len = 0;
    if (b->p) b->p[0] = 0;
}
void buf_append(buf *b, const void *p, size_t n) {
    if (b->rc) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + n + 1);
        char *q = realloc(b->p, MAX(cap, 64));
        if (!q) {
            b->rc = SQLM_NOMEM;
            return;
        }
        b->p = q, b->cap = MAX(cap, 64);
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}
void buf_puts(buf *b, const char *s) { buf_append(b, s, strlen(s)); }
void buf_appendf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->rc = SQLM_NOMEM;
        return;
    }
    buf_append(b, s, (size_t)n);
    free(s);
}

/* --------------------------------------------------------------- import */

/* --type: a storage type sqlm computes with, or dflt when not given. */
static int parse_type(const args *a, int dflt) {
    static const struct { const char *n; int t; } types[] = {
        { "f32", SQLM_TYPE_F32 }, { "f16", SQLM_TYPE_F16 }, { "q8_0", SQLM_TYPE_Q8_0 }, { "q4_0", SQLM_TYPE_Q4_0 },
        { "q4_k_m", SQLM_TYPE_Q4_K }, { "q6_k", SQLM_TYPE_Q6_K } };
    if (!a->type) return dflt;
    const bool synth = !strcmp(a->cmd, "synth");
    for (size_t i = 0; i < ARRAY_LEN(types); i++)
        if (strcasecmp(a->type, types[i].n) == 0 && (synth || i < 4)) return types[i].t;
    if (synth) die("synth: --type must be f32, f16, q8_0, q4_0, q4_k_m or q6_k, not '%s'", a->type);
    die("%s: --type must be f32, f16, q8_0 or q4_0, not '%s'", a->cmd, a->type);
}

/* Import progress on a terminal: one line rewritten per table. */
static void import_progress(const char *what, int done, int total, void *ctx) {
    (void)ctx;
    if (what) fprintf(stderr, "\rimport: %-16s %3d/%d tables", what, done, total);
    else fputc('\n', stderr);
}

static int cmd_import(args *a) {
    const char *in = a->positional;
    if (!in) die("import: which model file? (sqlm import MODEL -o OUT.db)");
    if (!a->output) die("import: no output database (-o OUT.db)");
    sqlm_import_params p = sqlm_import_default_params();
    p.engine = a->engine ? a->engine : "sqlite";
    p.tokenizer = a->tokenizer;
    p.type = parse_type(a, -1);
    p.tile_bytes = (size_t)a->tile_bytes;
    p.progress = isatty(2) ? import_progress : NULL;
    p.no_fuse = a->no_fuse;
    p.row2col = a->row2col;
    p.mem_budget = a->mem_budget;
    double t0 = sqlm_now();
    int rc = sqlm_import_model(in, a->output, &p);
    if (rc) die_rc(rc, "import");
    fprintf(stderr, "import: wrote %s in %.1f s\n", a->output, sqlm_now() - t0);
    if (a->stats) fprintf(stderr, "stats: peak RSS %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    return 0;
}

/* ------------------------------------------------------------------ run */

/* The sampling options of run, chat and serve, seeded from -s (or the clock). */
sqlm_sampling_params sampling_from_args(const args *a) {
    return (sqlm_sampling_params){ .temperature = (float)a->temp, .top_k = (int32_t)a->top_k,
                                   .top_p = (float)a->top_p, .min_p = (float)a->min_p,
                                   .repeat_penalty = (float)a->repeat_penalty,
                                   .frequency_penalty = (float)a->freq_penalty,
                                   .presence_penalty = (float)a->presence_penalty,
                                   .repeat_last_n = (int32_t)a->repeat_last_n,
                                   .seed = a->seed_set ? a->seed : (uint64_t)time(NULL) };
}

/* The compilation options of run, chat, bench and sql: the passes' flags. */
static sqlm_session_params session_params(const args *a) {
    sqlm_session_params p = sqlm_session_default_params();
    p.n_ctx = (int32_t)a->n_ctx;
    p.no_cte_merge = a->no_cte;
    p.split_attention = a->split_attn;
    p.row2col_cols = (int32_t)a->row2col_cols;
    return p;
}

sqlm_model *open_model(const args *a) {
    if (!a->model) die("%s: no model database (-m model.db; make one with sqlm import)", a->cmd);
    sqlm_model_params p = sqlm_model_default_params();
    p.engine = a->engine;
    p.native = a->native;
    p.threads = (int32_t)a->threads;
    p.mem_budget = a->mem_budget;
    p.mem_io = a->mem_io;
    p.no_inplace = a->no_inplace;
    size_t cg = sqlm_cgroup_limit();
    if (a->mem_budget && cg && cg < a->mem_budget)
        fprintf(stderr, "%s: note: --mem-budget %.0f MB is above this process's cgroup memory limit of %.0f MB: "
                        "the kernel may stop sqlm before the budget is reached\n",
                prog, a->mem_budget / 1048576.0, cg / 1048576.0);
    sqlm_model *m;
    int rc = sqlm_open(a->model, &p, &m);
    if (rc) die_rc(rc, a->cmd);
    sqlm_model_info mi;
    sqlm_model_info_get(m, &mi);
    if (mi.note[0]) fprintf(stderr, "%s: note: %s\n", prog, mi.note);
    return m;
}

sqlm_session *open_session(const args *a, sqlm_model *m) {
    sqlm_session_params p = session_params(a);
    sqlm_session *s;
    int rc = sqlm_session_new(m, &p, &s);
    if (rc) die_rc(rc, a->cmd);
    sqlm_sampling_params sp = sampling_from_args(a);
    sqlm_session_set_sampling(s, &sp);
    return s;
}

/* Between two snapshots: seconds waiting for I/O (the cache's count; without
 * a cache, time the thread was not on a CPU: page faults), bytes read (the
 * cache's reads; without one, the storage reads of the process). */
static double snap_wait(const sqlm_stats *a, const sqlm_stats *b) {
    /* the cache sums the waits of all compute threads: at most the wall time */
    double w = b->cache ? b->wait_s - a->wait_s : (b->t - a->t) - (b->cpu - a->cpu);
    return MIN(MAX(w, 0), b->t - a->t);
}
static double snap_read(const sqlm_stats *a, const sqlm_stats *b) {
    return b->cache ? (double)(b->read_bytes - a->read_bytes) : (double)(b->io_read_bytes - a->io_read_bytes);
}
static double snap_hit(const sqlm_stats *a, const sqlm_stats *b) {
    double f = (double)(b->fetch_bytes - a->fetch_bytes);
    return f > 0 ? 100.0 * (double)(b->hit_bytes - a->hit_bytes) / f : 0;
}

/* Without a weight cache the wait is the time the main thread spent off the
 * CPU: page faults on the mapped model, or other threads of the engine. */
#define WAIT_LABEL(sn) ((sn)->cache ? "waiting for I/O" : "off-CPU (I/O, engine threads)")

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The spread of the per-token times: 10th, 50th and 90th percentiles
 * (nearest rank) of the n steps between the snapshots tok[0..n]. */
static void print_spread(const sqlm_stats *tok, int n) {
    double *d = malloc(sizeof *d * (size_t)n);
    if (!d) return;
    for (int i = 0; i < n; i++) d[i] = (tok[i + 1].t - tok[i].t) * 1e3;
    qsort(d, (size_t)n, sizeof *d, cmp_double);
    double p10 = d[(n - 1) / 10], p50 = d[(n - 1) / 2], p90 = d[(n - 1) * 9 / 10];
    fprintf(stderr, "stats: decode spread: p10 %.1f ms, p50 %.1f ms, p90 %.1f ms (p90/p10 %.2f)\n", p10, p50, p90,
            p10 > 0 ? p90 / p10 : 0);
    free(d);
}

static void print_stats(const args *a, sqlm_session *ses, const sqlm_stats *s0, const sqlm_stats *s1,
                        const sqlm_stats *tok, int n_tok, int n_prompt) {
    const double MB = 1048576.0;
    if (sqlm_session_mem_plan(ses)) fprintf(stderr, "stats: budget: %s\n", sqlm_session_mem_plan(ses));
    for (int i = 1; i < n_tok; i++) {
        const sqlm_stats *p = &tok[i - 1], *q = &tok[i];
        double dt = q->t - p->t, w = snap_wait(p, q);
        fprintf(stderr, "stats: token %d: %.1f ms (compute %.1f, %s %.1f), read %.1f MB",
                i, dt * 1e3, (dt - w) * 1e3, WAIT_LABEL(q), w * 1e3, snap_read(p, q) / MB);
        if (q->cache) fprintf(stderr, ", hit rate %.1f%%", snap_hit(p, q));
        fputc('\n', stderr);
    }
    fprintf(stderr, "stats: peak RSS %.1f MB", sqlm_peak_rss() / MB);
    if (a->mem_budget) fprintf(stderr, " (budget %.1f MB)", a->mem_budget / MB);
    fputc('\n', stderr);
    if (s1->cache && s1->heap_limit)
        fprintf(stderr, "stats: engine heap: peak %.1f MB of its %.1f MB share\n", s1->heap_peak / MB,
                s1->heap_limit / MB);
    if (s1->cache)
        fprintf(stderr, "stats: weight cache: %.1f MB resident of the %.1f MB a step reads, %.1f MB read buffers, "
                        "%s reads; resident set loaded in %.2f s\n",
                s1->resident_bytes / MB, s1->sched_bytes / MB, s1->ring_bytes / MB,
                s1->direct ? "O_DIRECT" : "buffered", s1->load_s);
    if (s1->cache && n_tok > 1)
        fprintf(stderr, "stats: weight cache while decoding: %.1f MB/token read by the compute threads themselves "
                        "(misses), %.1f re-aims of the readers per token\n",
                (double)(tok[n_tok - 1].sync_bytes - tok[0].sync_bytes) / (n_tok - 1) / MB,
                (double)(tok[n_tok - 1].resyncs - tok[0].resyncs) / (n_tok - 1));
    double dt = s1->t - s0->t, w = snap_wait(s0, s1);
    fprintf(stderr, "stats: prompt: %d tokens in %.3f s: compute %.3f s, %s %.3f s, read %.1f MB\n",
            n_prompt, dt, dt - w, WAIT_LABEL(s1), w, snap_read(s0, s1) / MB);
    int n = n_tok - 1;
    if (n > 0) {
        const sqlm_stats *p = &tok[0], *q = &tok[n];
        double d = (q->t - p->t) / n, wt = snap_wait(p, q) / n;
        fprintf(stderr, "stats: decode: %d tokens, %.1f ms/token: compute %.1f ms, %s %.1f ms; "
                        "read %.1f MB/token",
                n, d * 1e3, (d - wt) * 1e3, WAIT_LABEL(q), wt * 1e3, snap_read(p, q) / n / MB);
        if (q->cache)
            fprintf(stderr, ", hit rate %.1f%%, storage %.1f MB/token; reader busy %.1f ms/token, %.0f reads/token",
                    snap_hit(p, q), (double)(q->io_read_bytes - p->io_read_bytes) / n / MB,
                    (q->reader_s - p->reader_s) / n * 1e3, (double)(q->reads - p->reads) / n);
        fputc('\n', stderr);
        print_spread(tok, n);
    }
}

static sqlm_generate_params generate_params(const args *a) {
    sqlm_generate_params p = sqlm_generate_default_params();
    p.max_tokens = a->n_predict < 0 ? -1 : (int32_t)a->n_predict;
    p.ignore_eos = a->ignore_eos;
    return p;
}

static int cmd_run(args *a) {
    sqlm_model *m = open_model(a);
    sqlm_model_info mi;
    sqlm_model_info_get(m, &mi);
    if (!mi.n_vocab) die("run: %s has no vocabulary", a->model);
    const char *prompt = a->prompt ? a->prompt : "";
    int32_t *ids = NULL, n_ids = 0;
    int rc = sqlm_tokenize_prompt(m, prompt, strlen(prompt), &ids, &n_ids);
    if (rc) die_rc(rc, "run: tokenizing the prompt");
    sqlm_model_drop_encoder(m);   /* no more text to encode: its tables are not the budget's */
    if (a->verbose_prompt) {
        fprintf(stderr, "prompt ids:");
        for (int i = 0; i < n_ids; i++) fprintf(stderr, " %d", ids[i]);
        fputc('\n', stderr);
    }
    sqlm_session *s = open_session(a, m);
    int n_ctx = sqlm_session_n_ctx(s);
    if (n_ids >= n_ctx) die("run: prompt of %d tokens does not fit the context of %d", n_ids, n_ctx);

    fputs(prompt, stdout);
    fflush(stdout);

    /* snapshots for --stats: before the prompt, then after each step */
    int cap_snaps = a->stats ? (a->n_predict >= 0 ? (int)a->n_predict : n_ctx) + 2 : 0;
    sqlm_stats s0 = { 0 }, *snaps = a->stats ? malloc(sizeof *snaps * (size_t)cap_snaps) : NULL;
    int n_snaps = 0;
    if (a->stats) sqlm_session_stats(s, &s0);

    sqlm_generate_params gp = generate_params(a);
    double t0 = sqlm_now();
    if ((rc = sqlm_generate_begin(s, ids, n_ids, &gp, NULL))) die_rc(rc, "run: prompt");
    double t_prompt = sqlm_now() - t0;
    if (snaps) sqlm_session_stats(s, &snaps[n_snaps++]);
    int n_gen = 0;
    double t1 = sqlm_now();
    sqlm_token_event ev = { .finish = SQLM_FINISH_NONE };
    while (!ev.finish) {
        if ((rc = sqlm_generate_next(s, &ev))) {
            fputc('\n', stdout);
            die_rc(rc, "run");
        }
        /* every step but the first fed the token before it */
        if (snaps && n_gen > 0 && n_snaps < cap_snaps) sqlm_session_stats(s, &snaps[n_snaps++]);
        if (ev.token >= 0 || ev.finish == SQLM_FINISH_EOS) n_gen++;   /* a token was sampled */
        fwrite(ev.text, 1, ev.len, stdout);
        fflush(stdout);
    }
    if (ev.finish == SQLM_FINISH_CONTEXT) fprintf(stderr, "\n%s: context full (%d tokens)\n", prog, n_ctx);
    double t_gen = sqlm_now() - t1;
    putchar('\n');
    fflush(stdout);
    fprintf(stderr, "\nprompt: %d tokens, %.1f tok/s\n", n_ids, n_ids / (t_prompt > 0 ? t_prompt : 1e-9));
    fprintf(stderr, "generation: %d tokens, %.1f tok/s\n", n_gen, n_gen / (t_gen > 0 ? t_gen : 1e-9));
    fprintf(stderr, "time to first token: %.1f ms\n", t_prompt * 1000);
    fprintf(stderr, "peak RSS: %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    if (snaps) print_stats(a, s, &s0, &snaps[0], snaps, n_snaps, n_ids);
    free(snaps);
    sqlm_free(ids);
    sqlm_session_free(s);
    sqlm_close(m);
    return 0;
}

/* ------------------------------------------------------------------ sql */

static int cmd_sql(args *a) {
    sqlm_model *m = open_model(a);
    sqlm_session_params p = session_params(a);
    char *text;
    int rc = sqlm_model_sql(m, &p, a->prompt, &text);
    if (rc) die_rc(rc, "sql");
    fputs(text, stdout);
    sqlm_free(text);
    sqlm_close(m);
    return 0;
}

/* ------------------------------------------------------------- tokenize */

static int cmd_tokenize(args *a) {
    if (!a->model) die("tokenize: no model (-m model.db, or a tokenizer file)");
    const char *text = a->positional ? a->positional : a->prompt ? a->prompt : "";
    sqlm_model *m;
    int rc = sqlm_open_vocab(a->model, &m);   /* a model database, a tokenizer or a model file */
    if (rc) die_rc(rc, "tokenize");
    sqlm_model_info mi;
    sqlm_model_info_get(m, &mi);
    if (!mi.n_vocab) die("tokenize: %s has no vocabulary", a->model);
    int32_t *ids, n;
    if ((rc = sqlm_tokenize(m, text, strlen(text), !a->no_special, &ids, &n))) die_rc(rc, "tokenize");
    for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    putchar('\n');
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const char *piece = sqlm_token_to_piece(m, ids[i], &len);
        printf("%s", i ? " " : "");
        if (piece) fwrite(piece, 1, len, stdout);
    }
    putchar('\n');
    sqlm_free(ids);
    sqlm_close(m);
    return 0;
}

/* ----------------------------------------------------------------- chat */

const char *chat_template_for(const args *a, const sqlm_model *m) {
    const char *t;
    if (sqlm_chat_template(m, a->tmpl, &t))
        die("%s: unknown --chat-template '%s' (chatml, llama2, llama3, zephyr)", a->cmd, a->tmpl);
    return t;
}

int chat_prompt(const sqlm_model *m, const char *tmpl, const sqlm_chat_message *msgs, int n_msgs, bool verbose,
                int32_t **ids, int32_t *n_ids) {
    char *text = NULL;
    int rc = sqlm_chat_tokenize(m, msgs, n_msgs, tmpl, verbose ? &text : NULL, ids, n_ids);
    if (!rc && verbose) fprintf(stderr, "[prompt]\n%s[/prompt]\n", text);
    sqlm_free(text);
    return rc;
}

/*
 * An interactive chat: each turn renders the whole conversation with the
 * model's chat template, feeds only the tokens past what the KV cache holds,
 * and generates until end of turn.  Lines are read from stdin; an empty line
 * or end of input ends the chat.
 */
static int cmd_chat(args *a) {
    sqlm_model *m = open_model(a);
    sqlm_model_info mi;
    sqlm_model_info_get(m, &mi);
    if (!mi.n_vocab) die("chat: %s has no vocabulary", a->model);
    const char *tmpl = chat_template_for(a, m);
    sqlm_session *s = open_session(a, m);
    const int n_ctx = sqlm_session_n_ctx(s);
    sqlm_chat_message *msgs = calloc(1024, sizeof *msgs);
    if (!msgs) die("chat: out of memory");
    int n_msgs = 0;
    if (a->system) msgs[n_msgs++] = (sqlm_chat_message){ "system", a->system };
    sqlm_generate_params gp = generate_params(a);
    char *line = NULL;
    size_t cap = 0;
    bool tty = isatty(0), full = false;
    int rc;
    while (!full) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        ssize_t len = getline(&line, &cap, stdin);
        if (len <= 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) break;
        if (n_msgs + 2 > 1024) die("chat: too many turns");
        char *content = strdup(line);
        if (!content) die("chat: out of memory");
        msgs[n_msgs++] = (sqlm_chat_message){ "user", content };
        int32_t *ids, n;
        if ((rc = chat_prompt(m, tmpl, msgs, n_msgs, a->verbose_prompt, &ids, &n))) die_rc(rc, "chat");
        if (n >= n_ctx) die("chat: conversation of %d tokens exceeds the context of %d", n, n_ctx);
        /* only the tokens past what the KV cache holds are fed (all of
         * them when the template rewrote history) */
        rc = sqlm_generate_begin(s, ids, n, &gp, NULL);
        sqlm_free(ids);
        if (rc) die_rc(rc, "chat");
        buf reply;
        buf_init(&reply);
        sqlm_token_event ev = { .finish = SQLM_FINISH_NONE };
        while (!ev.finish) {
            if ((rc = sqlm_generate_next(s, &ev))) die_rc(rc, "chat");
            fwrite(ev.text, 1, ev.len, stdout);
            fflush(stdout);
            buf_append(&reply, ev.text, ev.len);
        }
        if (ev.finish == SQLM_FINISH_CONTEXT) {
            fprintf(stderr, "\n%s: context full (%d tokens)\n", prog, n_ctx);
            full = true;
        }
        putchar('\n');
        if (reply.rc) die("chat: out of memory");
        msgs[n_msgs++] = (sqlm_chat_message){ "assistant", reply.p ? reply.p : strdup("") };
    }
    for (int i = 0; i < n_msgs; i++)
        if (msgs[i].content != a->system) free((char *)msgs[i].content);
    free(msgs), free(line);
    sqlm_session_free(s);
    sqlm_close(m);
    return 0;
}

/* ---------------------------------------------------------------- synth */

static int cmd_synth(args *a) {
    bool known = false;
    for (int i = 0; a->like && sqlm_synth_shape(i); i++) known |= !strcmp(a->like, sqlm_synth_shape(i));
    if (!known) {
        fprintf(stderr, "%s: synth: --like must be one of:", prog);
        for (int i = 0; sqlm_synth_shape(i); i++) fprintf(stderr, " %s", sqlm_synth_shape(i));
        fputc('\n', stderr);
        exit(1);
    }
    if (!a->output) die("synth: no output file (-o x.gguf)");
    int rc = sqlm_synth(a->like, a->output, parse_type(a, SQLM_TYPE_Q8_0), a->seed_set ? a->seed : 42);
    if (rc) die_rc(rc, "synth");
    fprintf(stderr, "synth: wrote %s (%s shapes, random weights)\n", a->output, a->like);
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
 * GB/s = bytes of the weight tables (every matrix, output head included, as
 * stored; not an untied embedding, read a row at a time) x decode tok/s, the
 * weights a decoded token streams.
 * Prompt ids are (i * 7919 + 1) mod vocab_size, as bench/refbench.c uses.
 */
static int cmd_bench(args *a) {
    long pp = 128, tg = a->n_predict < 0 ? 64 : a->n_predict;
    int reps = a->reps > 0 ? (int)a->reps : 3;
    if (a->prompt) pp = parse_long("-p", a->prompt, 0, 1 << 20);
    if (pp == 0 && tg == 0) die("bench: nothing to time (-p 0 and -n 0)");
    if (a->positional) die("bench: unexpected argument '%s' (the model goes after -m)", a->positional);
    sqlm_model *m = open_model(a);
    sqlm_model_info mi;
    sqlm_model_info_get(m, &mi);
    int vocab = mi.n_logits > 0 ? mi.n_logits : 1;
    /* pp + tg positions, and one for the warm-up or the first decoded token */
    long n_ctx = pp + tg + 1;
    if (n_ctx > mi.n_ctx_train)
        die("bench: -p %ld + -n %ld tokens exceed the model's context of %d", pp, tg, mi.n_ctx_train);
    sqlm_session_params sp = session_params(a);
    sp.n_ctx = (int32_t)n_ctx;
    sqlm_session *s;
    int rc = sqlm_session_new(m, &sp, &s);
    if (rc) die_rc(rc, "bench");
    int32_t *ids = malloc(sizeof *ids * (size_t)(pp + 1));
    double *t_pp = calloc((size_t)reps, sizeof *t_pp), *t_tg = calloc((size_t)reps, sizeof *t_tg);
    if (!ids || !t_pp || !t_tg) die("bench: out of memory");
    for (long i = 0; i < pp; i++) ids[i] = (int32_t)((i * 7919 + 1) % vocab);
    for (int r = 0; r < reps; r++) {
        const float *lg;
        int32_t tok = 1 % vocab;
        /* warm-up: one token, then a fresh sequence */
        if ((rc = sqlm_session_eval(s, &tok, 1, &lg)) || (rc = sqlm_session_reset(s))) die_rc(rc, "bench: warm-up");
        double t0 = sqlm_now();
        if (pp > 0 && (rc = sqlm_session_eval(s, ids, (int)pp, &lg))) die_rc(rc, "bench: prompt");
        t_pp[r] = sqlm_now() - t0;
        if (pp == 0 && (rc = sqlm_session_eval(s, &tok, 1, &lg))) die_rc(rc, "bench: first token");
        t0 = sqlm_now();
        for (long i = 0; i < tg; i++) {
            tok = argmax(lg, vocab);
            if ((rc = sqlm_session_eval(s, &tok, 1, &lg))) die_rc(rc, "bench: decode");
        }
        t_tg[r] = sqlm_now() - t0;
        if ((rc = sqlm_session_reset(s))) die_rc(rc, "bench");
    }
    double wbytes = mi.weight_bytes;
    if (pp > 0) printf("pp%ld t=%ld %.2f tok/s\n", pp, a->threads, pp / sqlm_median(t_pp, reps));
    if (tg > 0) {
        double tps = tg / sqlm_median(t_tg, reps);
        printf("tg%ld t=%ld %.2f tok/s %.2f GB/s\n", tg, a->threads, tps, wbytes * tps / 1e9);
    }
    printf("weights: %.1f MB per token\n", wbytes / 1e6);
    printf("peak RSS: %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    free(ids), free(t_pp), free(t_tg);
    sqlm_session_free(s);
    sqlm_close(m);
    return 0;
}

/* The library's notes, on stderr as they are. */
static void log_stderr(int level, const char *msg, void *ctx) {
    (void)level, (void)ctx;
    fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv) {
    /* Every decode step allocates and frees megabytes (SQLite's step tables,
     * product buffers); glibc would hand the top of the heap back to the
     * kernel each time and take ~260 page faults per step to get it again
     * (8-9% of a 110M decode step).  Keep it. */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    sqlm_set_log(log_stderr, NULL);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sqlm %s\n", sqlm_version());
        return 0;
    }
    args a;
    parse_args(argc, argv, &a);
    if (a.engine && !sqlm_engine_available(a.engine))
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
