/*
 * chat.h - chat templates: a sandboxed Jinja subset (jinja.c) and the
 * chat-level functions over it (chat.c).
 */
#ifndef SQLM_CHAT_H
#define SQLM_CHAT_H

#include "../model/model.h"

/* ------------------------------------------- chat/jinja.c, chat/chat.c */

/*
 * Chat templates: a sandboxed Jinja subset (jinja.c) and the chat-level API
 * over it (chat.c).  Templates only see the variables passed in; there is no
 * file, import or Python object access.  Every render is bounded in output,
 * memory, steps and nesting; exceeding a bound is an SQLM_RANGE error.
 */
typedef struct chat_msg {
    const char *role;        /* "system", "user", "assistant", "tool" */
    const char *content;     /* UTF-8 text; NULL renders as none */
} chat_msg;

/* Resource bounds of one render (0 in a field: the default). */
typedef struct jinja_limits {
    size_t max_output;       /* bytes appended to out; default 1 MiB + 2x input */
    size_t max_memory;       /* bytes of working memory; default 64 MiB + 16x input */
    int64_t max_steps;       /* statements + expression nodes; default 4M */
    int max_depth;           /* block / bracket / macro nesting; default 64 */
} jinja_limits;

/* An extra template variable (e.g. enable_thinking). */
enum { JINJA_BOOL, JINJA_INT, JINJA_STR, JINJA_NONE };
typedef struct jinja_var {
    const char *name;
    int type;                /* JINJA_* */
    int64_t i;               /* JINJA_BOOL (0/1), JINJA_INT */
    const char *s;           /* JINJA_STR */
} jinja_var;

/* Everything a chat template can see. */
typedef struct chat_vars {
    const chat_msg *msgs;    /* [n_msgs] -> messages (list of {role, content}) */
    int n_msgs;
    bool add_generation_prompt;
    const char *bos_token;   /* NULL renders as "" */
    const char *eos_token;   /* NULL renders as "" */
    const jinja_var *extra;  /* [n_extra] more variables, or NULL */
    int n_extra;
} chat_vars;

/*
 * Render tmpl (tmpl_len bytes, need not be NUL-terminated) with the variables
 * in v and append the text to out.  HF semantics: trim_blocks, lstrip_blocks,
 * the final newline of the template dropped, no autoescape.  lim may be NULL.
 * On failure out is restored to its old length and sqlm_errmsg() reads
 * "template: line L col C: ...".  Returns SQLM_OK, SQLM_FORMAT (syntax),
 * SQLM_ERROR (runtime: type error, undefined value, raise_exception()),
 * SQLM_RANGE (a limit) or SQLM_NOMEM.
 */
int sqlm_jinja_render(const char *tmpl, size_t tmpl_len, const chat_vars *v,
                 const jinja_limits *lim, buf *out);

/* sqlm_jinja_render() of a NUL-terminated template with default limits. */
int sqlm_chat_render(const char *tmpl, const chat_msg *msgs, int n_msgs, bool add_generation_prompt,
                const char *bos_token, const char *eos_token, buf *out);

/*
 * Built-in template text for a style: "chatml" (Qwen, SmolLM), "llama2"
 * ([INST] <<SYS>>), "llama3" (<|start_header_id|>), "zephyr" (<|user|>).
 * Returns static text, or NULL for an unknown name.
 */
const char *sqlm_chat_builtin(const char *name);

/*
 * Guess a style from the vocabulary: has_piece(ctx, piece) says whether a
 * token with that exact text exists; spm says the vocabulary is SentencePiece.
 * Returns "chatml", "llama3", "llama2", "zephyr", or NULL when nothing fits.
 */
const char *sqlm_chat_guess_style(bool (*has_piece)(void *ctx, const char *piece), void *ctx, bool spm);

/* The template for v: its own chat_template, else the guessed built-in, else NULL. */
const char *sqlm_chat_vocab_template(const vocab *v);

#endif /* SQLM_CHAT_H */
