/*
 * common.h - what the SQLite extension (tools/sqlite-ext) and the DuckDB
 * extension (tools/duckdb-ext) share: the cache of open models, the options
 * JSON, the messages JSON, a generation to one text, token ids as JSON.  No
 * engine's types: arguments come as C strings and numbers, and an error is
 * a malloc'd message (NULL standing for "out of memory") that the caller
 * turns into its engine's SQL error and frees.  On the public API of
 * include/sqlm.h alone.
 */
#ifndef SQLM_EXT_COMMON_H
#define SQLM_EXT_COMMON_H

#include <pthread.h>
#include <sqlm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A malloc'd message, or NULL when memory runs out. */
char *ext_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* sqlm_errmsg() of this thread as a malloc'd message. */
char *ext_sqlm_err(void);

/* ------------------------------------------------------------- the cache */

typedef struct ext_model {
    char *path;                  /* the model database's file */
    size_t mem_budget;           /* the budget it was opened with (part of the key) */
    sqlm_model *m;
    sqlm_session *s;             /* its one session, NULL until a call generates */
    bool busy;                   /* claimed: s is held by one call or cursor */
    struct ext_model *next;
} ext_model;

/* The models of one SQLite connection or one DuckDB database.  Each
 * registered function holds a reference; the last ext_cache_unref(), when
 * the connection or database closes, closes the models.  The lock makes
 * claims safe from several threads (DuckDB); models are opened outside it. */
typedef struct ext_cache {
    pthread_mutex_t lock;
    int refs;
    ext_model *models;
} ext_cache;

/* A cache with one reference, or NULL. */
ext_cache *ext_cache_new(void);
void ext_cache_ref(ext_cache *c);
void ext_cache_unref(void *c);

/* The model of the file at path opened with mem_budget, opened on first use
 * and kept.  claim: one whose session no one holds, claimed until
 * ext_model_put() (a second handle of the file is opened when every one is
 * held: a handle runs one sequence at a time).  Unclaimed, the handle serves
 * tokenizing only, which reads its vocabulary and nothing a session changes,
 * so it may run beside a claim's generation.  NULL with *err set. */
ext_model *ext_model_get(ext_cache *c, const char *path, size_t mem_budget, bool claim, char **err);
/* The claimed em's session, made on first use; NULL with *err set. */
sqlm_session *ext_session(ext_model *em, char **err);
/* Give back a claim; failed: the session is freed (its KV cache is in
 * doubt) and the next claim makes a new one. */
void ext_model_put(ext_cache *c, ext_model *em, bool failed);

/* ----------------------------------------------------------- the options */

typedef struct ext_opts {
    sqlm_sampling_params sp;     /* greedy, seed 0 unless the options say */
    bool ignore_eos;
    size_t mem_budget;           /* the model's open: 0 = none */
    int32_t max_tokens;          /* -1 = until EOS or the context's end */
    char *stop[SQLM_MAX_STOP];   /* [n_stop], malloc'd */
    int n_stop;
    char *tmpl;                  /* sqlm_chat: a built-in's name or Jinja text, NULL = the model's */
} ext_opts;

/*
 * The options JSON text (NULL: the defaults), an object:
 * {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
 *  "repeat_penalty": 1.1, "repeat_last_n": 64, "frequency_penalty": 0,
 *  "presence_penalty": 0, "seed": 42, "stop": "\n" or ["a", "b"],
 *  "ignore_eos": true, "max_tokens": 16, "mem_budget": 268435456 or "256M"}
 * and, with chat, "chat_template" (a built-in's name or Jinja text).  The
 * defaults are greedy decoding (temperature 0) with llama.cpp's other
 * sampling defaults, seed 0.  false with *err set for bad JSON, an unknown
 * key or a value out of range; *o needs ext_opts_free() after success.
 */
bool ext_opts_parse(const char *json, bool chat, ext_opts *o, char **err);
void ext_opts_free(ext_opts *o);

/* The max_tokens argument's range, and its message. */
#define EXT_MAX_TOKENS_OK(n) ((n) >= -1 && (n) <= (1 << 30))
#define EXT_MAX_TOKENS_MSG "max_tokens: expected an integer >= -1 (-1: until EOS)"

/* ----------------------------------------------------- messages and ids */

/* A parsed messages JSON: msgs borrow the strings of root (a json_t). */
typedef struct ext_messages {
    void *root;
    sqlm_chat_message *msgs;
    int32_t n;
} ext_messages;

/* The messages JSON text, an array of {"role": ..., "content": ...}; false
 * with *err set.  Free with ext_messages_free() either way. */
bool ext_messages_parse(const char *json, ext_messages *out, char **err);
void ext_messages_free(ext_messages *msgs);

/* A JSON array of token ids: *ids malloc'd, false with *err set. */
bool ext_ids_parse(const char *json, int32_t **ids, int32_t *n, char **err);
/* ids[0..n) as a JSON array such as [1,403,407]: malloc'd, NULL when
 * memory runs out; *len its length. */
char *ext_ids_json(const int32_t *ids, int32_t n, size_t *len);

/* ------------------------------------------------------------ generation */

/* Start generating after ids[0..n) on s with the options; *err on failure. */
int ext_begin(sqlm_session *s, const int32_t *ids, int32_t n, const ext_opts *o, char **err);
/* The whole generation after ids as one text: *text malloc'd and
 * NUL-terminated, *len its length.  SQLM_OK, or a code with *err set. */
int ext_generate_text(sqlm_session *s, const int32_t *ids, int32_t n, const ext_opts *o, char **text, size_t *len,
                      char **err);

#endif /* SQLM_EXT_COMMON_H */
