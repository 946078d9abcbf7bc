/*
 * cli.h - what the command line's files share: the parsed options, dying
 * with a message, opening the model database and the session's options as
 * run does (--mem-budget included), the sampler from the flags, and the
 * prompt of a conversation, which chat and serve build the same way.
 *
 * main.c parses the options and runs every command but serve (serve.c).
 * tools/ may exit(); the library under src/ never does.
 */
#ifndef SQLM_CLI_H
#define SQLM_CLI_H

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"

/* The command line, parsed (parse_args() in main.c). */
typedef struct args {
    const char *cmd;
    const char *model, *prompt, *output, *engine, *tokenizer, *type, *like, *system, *tmpl;
    const char *positional;
    long n_predict, n_ctx, threads, tile_bytes, repeat_last_n, reps;
    double temp, top_p, min_p, repeat_penalty, freq_penalty, presence_penalty;
    long top_k;
    unsigned long long seed;
    bool seed_set, ignore_eos, no_cte, no_special, verbose_prompt, no_fuse, native, stats, no_inplace,
        split_attn;
    int row2col;             /* R2C_* */
    long row2col_cols;
    size_t mem_budget;
    int mem_io;
    /* serve */
    const char *host;        /* address to listen on (default 127.0.0.1) */
    long port;               /* 0: any free port (printed) */
    const char *api_key;     /* NULL: no Authorization needed */
    const char *alias;       /* model id in the API (default: the file's name) */
    size_t max_body;         /* bytes of a request body (default 1 MiB) */
    long timeout;            /* seconds a connection may stay idle (default 600) */
} args;

extern const char *prog;

/* Print "sqlm: message" on stderr and exit(1). */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* die() with sqlm_errmsg() and the code's text after what. */
void die_rc(int rc, const char *what) __attribute__((noreturn));

/* Open -m read-only on --engine (or the engine that wrote it) with the
 * engine options of -t, --mem-budget, --mem-io and --no-inplace; note on
 * stderr a budget above the cgroup's limit.  Dies on failure. */
void open_db(args *a, modeldb *db);
/* The session's options: the passes' flags, -c and --mem-budget. */
session_opts session_opts_from_args(const args *a);
/* The sampling options of the flags, and *rng seeded from -s (or the clock). */
sampler_opts sampler_from_args(const args *a, uint64_t *rng);
/* The generator state for a seed (what -s N gives). */
uint64_t sampler_rng(uint64_t seed);

/* The tokens of a plain prompt, as run and serve read it: BOS first where
 * the vocabulary adds it, and BOS alone for an empty prompt that gave none
 * (an error when the vocabulary has no BOS).  *ids is malloc'd. */
int prompt_ids(const modeldb *db, const char *text, size_t len, int32_t **ids, int32_t *n_ids);
/* The chat template: --chat-template's built-in (dies if unknown), else the
 * model's own, else one guessed from its vocabulary, else ChatML.  Static
 * or owned by db. */
const char *chat_template_for(const args *a, const modeldb *db);
/*
 * The tokens of a conversation: msgs rendered with tmpl and the generation
 * prompt, then tokenized (BOS added unless the template writes the special
 * pieces itself).  verbose: the text goes to stderr.  *ids is malloc'd,
 * caller frees.  Returns SQLM_OK, or the template's or tokenizer's code with
 * sqlm_errmsg() saying why (a template's own raise_exception() included).
 */
int chat_prompt(const modeldb *db, const char *tmpl, const chat_msg *msgs, int n_msgs, bool verbose,
                int32_t **ids, int32_t *n_ids);

/* The length of the longest prefix of p[0..n) that does not end inside an
 * incomplete UTF-8 sequence (the rest may still be completed by the next
 * token). */
size_t utf8_whole(const char *p, size_t n);

/* sqlm serve (serve.c): the OpenAI-compatible HTTP server.  Returns 0 after
 * SIGINT or SIGTERM. */
int cmd_serve(args *a);

#endif /* SQLM_CLI_H */
