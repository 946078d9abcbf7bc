/*
 * cli.h - what the command line's files share: the parsed options, dying
 * with a message, opening the model and its session as run does
 * (--mem-budget included), the sampler from the flags, and the prompt of a
 * conversation, which chat and serve build the same way.
 *
 * main.c parses the options and runs every command but serve (serve.c).
 * Both stand on the public API alone (<sqlm.h>, libsqlm): nothing under
 * src/ is included.  tools/ may exit(); the library never does.
 */
#ifndef SQLM_CLI_H
#define SQLM_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlm.h>

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A growable byte/text buffer with a sticky error (main.c), for the
 * command line's own text: p is NUL-terminated, rc SQLM_NOMEM after a
 * failed growth. */
typedef struct buf {
    char *p;
    size_t len, cap;
    int rc;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b);
void buf_append(buf *b, const void *p, size_t n);
void buf_puts(buf *b, const char *s);
void buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
    int row2col;             /* SQLM_ROW2COL_* */
    long row2col_cols;
    size_t mem_budget;
    int mem_io;              /* SQLM_MEM_IO_* */
    /* serve */
    const char *host;        /* address to listen on (default 127.0.0.1) */
    long port;               /* 0: any free port (printed) */
    const char *api_key;     /* NULL: no Authorization needed */
    const char *alias;       /* model id in the API (default: the file's name) */
    size_t max_body;         /* bytes of a request body (default 1 MiB) */
    long timeout;            /* seconds an answer may take with its client silent (default 600) */
    long idle_timeout;       /* seconds to send a request, or idle between requests (default 10) */
    long conn_per_ip;        /* connections from one address (default 16, 0: the server's 64) */
    const char *cors;        /* Access-Control-Allow-Origin: an origin or "*", NULL: none */
} args;

extern const char *prog;

/* Print "sqlm: message" on stderr and exit(1). */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* die() with sqlm_errmsg() and the code's text after what. */
void die_rc(int rc, const char *what) __attribute__((noreturn));

/* Open -m read-only on --engine (or the engine that wrote it) with the
 * engine options of -t, --mem-budget, --mem-io, --native and --no-inplace;
 * note on stderr a budget above the cgroup's limit and why weights are not
 * read in place.  Dies on failure. */
sqlm_model *open_model(const args *a);
/* A session with the options of -c, --no-cte-merge, --split-attention and
 * --row2col-cols, its sampler from the flags.  Dies on failure. */
sqlm_session *open_session(const args *a, sqlm_model *m);
/* The sampling options of the flags (seed: -s, or the clock). */
sqlm_sampling_params sampling_from_args(const args *a);

/* The chat template: --chat-template's built-in (dies if unknown), else the
 * model's own, else one guessed from its vocabulary, else ChatML.  Static
 * or owned by m. */
const char *chat_template_for(const args *a, const sqlm_model *m);
/*
 * The tokens of a conversation: msgs rendered with tmpl and the generation
 * prompt, then tokenized.  verbose: the text goes to stderr.  *ids is
 * sqlm_free()d by the caller.  Returns SQLM_OK, or the template's or
 * tokenizer's code with sqlm_errmsg() saying why.
 */
int chat_prompt(const sqlm_model *m, const char *tmpl, const sqlm_chat_message *msgs, int n_msgs, bool verbose,
                int32_t **ids, int32_t *n_ids);

/* sqlm serve (serve.c): the OpenAI-compatible HTTP server.  Returns 0 after
 * SIGINT or SIGTERM. */
int cmd_serve(args *a);

#endif /* SQLM_CLI_H */
