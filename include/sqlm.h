/*
 * sqlm.h - public API of sqlm: language models compiled to SQL.
 *
 * sqlm imports a model file into a database (weights as tables), compiles the
 * transformer into SQL statements and runs them on an engine (SQLite by
 * default) to generate text.  Every call returns an SQLM_* code; on failure
 * sqlm_errmsg() gives a message naming the file, field or statement at fault.
 *
 * Handles, in the manner of sqlite3.h and llama.h:
 *   sqlm_model    an open model database (a path; later a server URI), its
 *                 vocabulary and chat template.  sqlm_open() / sqlm_close().
 *   sqlm_session  one sequence on a model: its KV cache, sampler state and
 *                 token history.  sqlm_session_new() / sqlm_session_free().
 * A model carries one session at a time (open the model again for a second
 * sequence); a model and its session are used by one thread at a time, and
 * separate models in separate threads run at once.  The library never prints and never exits: notes go to the log
 * callback (sqlm_set_log()), import progress to its params' callback.
 */
#ifndef SQLM_H
#define SQLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- version */

#define SQLM_VERSION_MAJOR 0
#define SQLM_VERSION_MINOR 1
#define SQLM_VERSION_PATCH 0
#define SQLM_VERSION "0.1.0"

/* The library's version string (SQLM_VERSION of the build that made it). */
const char *sqlm_version(void);

/* -------------------------------------------------------------- errors */

enum {
    SQLM_OK = 0,
    SQLM_ERROR,        /* generic failure */
    SQLM_NOMEM,        /* allocation failed or a memory budget was hit */
    SQLM_IO,           /* read/write/mmap failed */
    SQLM_FORMAT,       /* a model or database file is malformed */
    SQLM_DB,           /* the engine rejected a statement */
    SQLM_UNSUPPORTED,  /* feature, type or engine not available */
    SQLM_RANGE,        /* a request exceeds a limit (context, sizes) */
};

/* Static text for a result code. */
const char *sqlm_errstr(int rc);

/*
 * The message of the last error recorded by this thread.  The string is owned
 * by sqlm and stays valid until the next failing sqlm call in this thread.
 */
const char *sqlm_errmsg(void);

/* Free memory that an sqlm function handed to the caller (NULL is a no-op). */
void sqlm_free(void *p);

/* --------------------------------------------------------------- logging */

enum { SQLM_LOG_ERROR, SQLM_LOG_WARN, SQLM_LOG_NOTE, SQLM_LOG_DEBUG };

/* A log message: level SQLM_LOG_*, one line of text without its newline
 * (borrowed for the call). */
typedef void (*sqlm_log_fn)(int level, const char *msg, void *ctx);

/* Send the library's notes to cb (NULL: drop them, the default).  Process
 * wide; set it before opening models. */
void sqlm_set_log(sqlm_log_fn cb, void *ctx);

/* ---------------------------------------------------------------- import */

/* Storage types of weight matrices (--type). */
enum { SQLM_TYPE_F32 = 0, SQLM_TYPE_F16 = 1, SQLM_TYPE_Q4_0 = 2, SQLM_TYPE_Q8_0 = 8,
       SQLM_TYPE_Q4_K = 12,      /* synth only: llama-quantize's Q4_K_M mix of Q4_K and Q6_K */
       SQLM_TYPE_Q6_K = 14 };    /* synth only */
/* DuckDB ROW2COL layout of import (--row2col). */
enum { SQLM_ROW2COL_AUTO = 0, SQLM_ROW2COL_OFF, SQLM_ROW2COL_ON, SQLM_ROW2COL_SPLIT, SQLM_ROW2COL_SPLIT_ROWS };

/* Import progress: what (a table's name) was written, done of total tables.
 * Called with what == NULL once when the import's writing ends. */
typedef void (*sqlm_progress_fn)(const char *what, int done, int total, void *ctx);

typedef struct sqlm_import_params {
    const char *engine;          /* "sqlite" (default when NULL), "duckdb" */
    const char *tokenizer;       /* llama2.c tokenizer file, or NULL */
    int32_t type;                /* SQLM_TYPE_* of matrices, -1 = as in the file */
    size_t tile_bytes;           /* bytes per stored weight tile, 0 = default */
    size_t mem_budget;           /* resident memory cap, 0 = none */
    bool no_fuse;                /* q/k/v and gate/up in separate tables (ablation) */
    int32_t row2col;             /* SQLM_ROW2COL_* */
    sqlm_progress_fn progress;   /* NULL: none; also enables the import's notes */
    void *progress_ctx;
} sqlm_import_params;

sqlm_import_params sqlm_import_default_params(void);

/* Import the model file at model_path (.gguf, .safetensors or its folder,
 * llama2.c .bin) into a new database at out_path, written under a temporary
 * name then renamed: an interrupted import leaves nothing that looks
 * complete.  p NULL: sqlm_import_default_params().  Returns SQLM_OK,
 * SQLM_IO (a file cannot be read or written), SQLM_FORMAT (the model file is
 * malformed), SQLM_UNSUPPORTED (an architecture, type or engine sqlm lacks),
 * SQLM_DB or SQLM_NOMEM; sqlm_errmsg() names the file and field. */
int sqlm_import_model(const char *model_path, const char *out_path, const sqlm_import_params *p);

/* Write a GGUF with random weights in the shapes of a real model.  like: a
 * name of sqlm_synth_shape(i); type: SQLM_TYPE_*; the same seed gives the
 * same file.  SQLM_ERROR for an unknown name, SQLM_IO when out_path cannot
 * be written. */
int sqlm_synth(const char *like, const char *out_path, int32_t type, uint64_t seed);
/* The i-th shape name sqlm_synth() knows (static), NULL past the last. */
const char *sqlm_synth_shape(int i);

/* ----------------------------------------------------------------- model */

enum { SQLM_MEM_IO_AUTO, SQLM_MEM_IO_DIRECT, SQLM_MEM_IO_BUFFERED };

typedef struct sqlm_model_params {
    const char *engine;          /* NULL: the engine that wrote the file */
    bool native;                 /* the engine's variant with sqlm's C functions */
    int32_t threads;             /* threads of the products, 0 = the CPUs online */
    size_t mem_budget;           /* hard cap on resident memory, 0 = none.  SQLite's heap
                                  * cap is per process: while several budgeted models are
                                  * open the last one's share applies (the process's own
                                  * limit returns when the last closes); a model file has
                                  * one budgeted handle at a time (SQLM_UNSUPPORTED) */
    int32_t mem_io;              /* SQLM_MEM_IO_*: how a budgeted run reads the file */
    bool no_inplace;             /* copy weight tiles instead of reading them in place */
} sqlm_model_params;

sqlm_model_params sqlm_model_default_params(void);

typedef struct sqlm_model sqlm_model;

/* Open the model database at path read-only (p NULL: defaults).  On success
 * *out is a handle the caller frees with sqlm_close(); on failure *out is
 * NULL and the code is SQLM_IO (cannot open), SQLM_FORMAT (not a complete
 * sqlm database), SQLM_UNSUPPORTED (unknown engine, no native mode) or
 * SQLM_NOMEM (the budget cannot hold what must stay resident). */
int sqlm_open(const char *path, const sqlm_model_params *p, sqlm_model **out);
/* Open only a vocabulary: a model database, a tokenizer file (tokenizer.json,
 * tokenizer.model, tokenizer.bin/tok512.bin) or a model file (.gguf, ...).
 * Tokenizing works on the handle; sessions do not.  A file without a
 * vocabulary opens with sqlm_model_info.n_vocab 0.  Free with sqlm_close();
 * errors as sqlm_open(). */
int sqlm_open_vocab(const char *path, sqlm_model **out);
/* Free a model (NULL: no-op).  Its sessions must be freed first. */
void sqlm_close(sqlm_model *m);

/* True when an engine of that name is compiled in ("sqlite", "duckdb"). */
bool sqlm_engine_available(const char *name);

typedef struct sqlm_model_info {
    int32_t n_vocab;             /* tokens of the vocabulary, 0 when the file has none */
    int32_t n_logits;            /* logits per position (the output head's rows, which may
                                  * exceed n_vocab); 0 without a model database */
    int32_t n_ctx_train;         /* the model's context length */
    int32_t n_layer, dim;
    int32_t bos, eos, eot;       /* special ids, -1 if none */
    const char *engine;          /* engine name (static) */
    const char *note;            /* why weights are not read in place, "" if they are */
    double weight_bytes;         /* bytes of the weight tables a decoded token reads */
} sqlm_model_info;

/* Facts of the model; strings are owned by m. */
void sqlm_model_info_get(const sqlm_model *m, sqlm_model_info *info);
/* Free the tokenizer's encoding tables (megabytes for a large vocabulary)
 * when no more text will be tokenized: a memory budget then has them back.
 * Decoding and sqlm_token_to_piece() still work; sqlm_tokenize() must not
 * be called on m afterwards. */
void sqlm_model_drop_encoder(sqlm_model *m);

/* ---------------------------------------------------------- tokenization */

/* Tokenize len bytes of text.  add_special: BOS (and EOS) as the vocabulary
 * adds them.  *ids is malloc'd (free with sqlm_free()), NULL on failure. */
int sqlm_tokenize(const sqlm_model *m, const char *text, size_t len, bool add_special, int32_t **ids,
                  int32_t *n_ids);
/* The tokens of a plain prompt as `sqlm run` reads it: BOS first where the
 * vocabulary adds it, BOS alone for an empty prompt (SQLM_ERROR when there is
 * no BOS).  *ids as sqlm_tokenize(). */
int sqlm_tokenize_prompt(const sqlm_model *m, const char *text, size_t len, int32_t **ids, int32_t *n_ids);
/* The vocabulary's stored piece of id (raw bytes, not decoded), *len its
 * length; owned by m.  NULL for an id out of range. */
const char *sqlm_token_to_piece(const sqlm_model *m, int32_t id, size_t *len);
/* The text of ids[0..n) (byte tokens as bytes, SPM spaces restored; control
 * tokens such as BOS, EOS and end of turn left out).  *out is malloc'd and
 * NUL-terminated (free with sqlm_free()), *len its length.  SQLM_RANGE for
 * an id outside the vocabulary. */
int sqlm_detokenize(const sqlm_model *m, const int32_t *ids, int32_t n, char **out, size_t *len);

/* ------------------------------------------------------------------ chat */

typedef struct sqlm_chat_message {
    const char *role;            /* "system", "user", "assistant", ... */
    const char *content;         /* may be NULL */
} sqlm_chat_message;

/* The chat template in force: a built-in (chatml, llama2, llama3, zephyr)
 * when name is non-NULL (SQLM_ERROR if unknown), else the model's own, else
 * one guessed from its vocabulary, else ChatML.  *tmpl is static or owned by m. */
int sqlm_chat_template(const sqlm_model *m, const char *name, const char **tmpl);
/* Render msgs[0..n) with the template and the generation prompt when
 * add_generation_prompt.  tmpl: Jinja text (e.g. from sqlm_chat_template()),
 * a built-in's name (chatml, llama2, llama3, zephyr), or NULL for the
 * model's default.  *out is malloc'd (sqlm_free()), NUL-terminated; on
 * failure NULL with SQLM_FORMAT (template syntax), SQLM_ERROR (a runtime
 * error, the template's raise_exception() included), SQLM_RANGE or
 * SQLM_NOMEM, and sqlm_errmsg() giving the template's line and column. */
int sqlm_chat_apply(const sqlm_model *m, const sqlm_chat_message *msgs, int32_t n, bool add_generation_prompt,
                    const char *tmpl, char **out);
/* sqlm_chat_apply() with the generation prompt, tokenized (BOS added unless
 * the template writes special pieces itself).  *text (may be NULL) gets the
 * rendered text (sqlm_free()); *ids as sqlm_tokenize(). */
int sqlm_chat_tokenize(const sqlm_model *m, const sqlm_chat_message *msgs, int32_t n, const char *tmpl,
                       char **text, int32_t **ids, int32_t *n_ids);

/* ------------------------------------------------------------------- sql */

typedef struct sqlm_session_params {
    int32_t n_ctx;               /* context length, 0 = the model's (a budget may cap it) */
    bool no_cte_merge;           /* one statement per operator (ablation) */
    bool split_attention;        /* attention as three relations (ablation) */
    int32_t row2col_cols;        /* ROW2COL pivot columns per subquery, 0 = the rule's */
} sqlm_session_params;

sqlm_session_params sqlm_session_default_params(void);

/* The SQL program of one step over the prompt's tokens (BOS for NULL or ""),
 * ending with the greedy next token, as text.  *out is malloc'd (sqlm_free()). */
int sqlm_model_sql(sqlm_model *m, const sqlm_session_params *p, const char *prompt, char **out);

/* --------------------------------------------------------------- session */

typedef struct sqlm_session sqlm_session;

/* A value added to one token's logit before sampling (-INFINITY bans it). */
typedef struct sqlm_logit_bias {
    int32_t token;
    float bias;
} sqlm_logit_bias;

typedef struct sqlm_sampling_params {
    float temperature;           /* 0 = greedy (lowest id wins ties) */
    int32_t top_k;               /* 0 = off */
    float top_p;                 /* 1 = off */
    float min_p;                 /* 0 = off */
    float repeat_penalty;        /* 1 = off */
    int32_t repeat_last_n;       /* window of the penalties */
    float frequency_penalty;     /* minus this per occurrence in the window */
    float presence_penalty;      /* minus this once if present in the window */
    uint64_t seed;               /* the generator's seed */
    const sqlm_logit_bias *logit_bias;   /* [n_logit_bias] added to the logits first, before the
                                  * penalties and greedy choice too (copied; a token given
                                  * twice takes both); NULL: none */
    int32_t n_logit_bias;
} sqlm_sampling_params;

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * no penalties, window 64, seed 0, no logit bias. */
sqlm_sampling_params sqlm_sampling_default_params(void);

/* A session on m (p NULL: defaults), its sampler at
 * sqlm_sampling_default_params().  On success *out is freed by the caller
 * with sqlm_session_free() (NULL: no-op) before sqlm_close(m); on failure
 * *out is NULL: SQLM_UNSUPPORTED on a handle from sqlm_open_vocab() or on a
 * model whose session is not freed yet,
 * SQLM_DB when the engine rejects the program, SQLM_NOMEM. */
int sqlm_session_new(sqlm_model *m, const sqlm_session_params *p, sqlm_session **out);
void sqlm_session_free(sqlm_session *s);
/* The context length in force. */
int32_t sqlm_session_n_ctx(const sqlm_session *s);
/* Tokens the session's sequence holds. */
int32_t sqlm_session_n_tokens(const sqlm_session *s);
/* The sequence's tokens (prompt, then generated), *n of them; owned by s,
 * valid until the next call on s. */
const int32_t *sqlm_session_tokens(const sqlm_session *s, int32_t *n);
/* Set the sampler and seed its generator from p->seed.  The generator goes
 * on across generations until the next call.  SQLM_RANGE (and the sampler
 * unchanged) for a logit bias on a token outside the vocabulary or a NaN
 * bias, SQLM_NOMEM. */
int sqlm_session_set_sampling(sqlm_session *s, const sqlm_sampling_params *p);
/* Empty the sequence and its KV cache.  SQLM_DB if the engine fails. */
int sqlm_session_reset(sqlm_session *s);
/* Keep the first n tokens of the sequence (n >= the length: no-op): the KV
 * cache's rows past them are deleted in place, nothing is evaluated again.
 * The next sqlm_generate_begin() over a sequence that extends the prefix
 * evaluates only the tokens past it.  SQLM_RANGE for n < 0, SQLM_DB if the
 * engine fails (the sequence is then best reset). */
int sqlm_session_truncate(sqlm_session *s, int32_t n);
/* Evaluate n tokens at the next positions, no sampling (benchmarks).
 * *logits (may be NULL) gets n_vocab floats for the last one, owned by s
 * and valid until the next call on s. */
int sqlm_session_eval(sqlm_session *s, const int32_t *ids, int32_t n, const float **logits);

/* --------------------------------------------------------- generation */

enum { SQLM_FINISH_NONE, SQLM_FINISH_EOS, SQLM_FINISH_STOP, SQLM_FINISH_LENGTH, SQLM_FINISH_CONTEXT };

/* "stop" (EOS, end of turn, a stop string), "length" (max tokens, full
 * context) or NULL while generation runs. */
const char *sqlm_finish_reason(int finish);

#define SQLM_MAX_STOP 16         /* stop strings of one generation, at most */

typedef struct sqlm_generate_params {
    int32_t max_tokens;          /* tokens to generate, -1 = until EOS or context end */
    bool ignore_eos;             /* go on after EOS and end of turn */
    const char *const *stop;     /* [n_stop] stop strings (non-empty; borrowed) */
    int32_t n_stop;
} sqlm_generate_params;

sqlm_generate_params sqlm_generate_default_params(void);

/* One step of generation (sqlm_generate_next()). */
typedef struct sqlm_token_event {
    int32_t token;               /* the sampled token, -1 if none this step */
    float logprob;               /* its log-probability under the raw logits */
    const char *text;            /* text released now (owned by s, valid until the next call) */
    size_t len;                  /* its bytes; 0 while held back */
    int finish;                  /* SQLM_FINISH_*, NONE while generation runs */
} sqlm_token_event;

/*
 * Start generating after the sequence ids[0..n) (copied; p NULL: defaults,
 * stop strings copied): the tokens past the longest prefix the KV cache
 * already holds are evaluated (*n_kept, may be NULL, gets how many were
 * reused; a sequence that the cache holds whole, or that departs from it,
 * starts over).  SQLM_RANGE when n is 0, n >= the context, an id is outside
 * the vocabulary or more than SQLM_MAX_STOP stop strings are given; SQLM_DB when the
 * engine fails (the cache is then empty).
 */
int sqlm_generate_begin(sqlm_session *s, const int32_t *ids, int32_t n, const sqlm_generate_params *p,
                        int32_t *n_kept);
/*
 * Evaluate the previous token (the last one of a generation never is),
 * then sample and decode one.  ev->token is -1 when none was added (EOS
 * ends generation, or it had ended).  Text is released whole: never a
 * part of a UTF-8 character (bytes that can form none are passed on as they
 * are), never a tail that may still become a stop string; generation ends
 * before the first stop string, and all that is held back comes out with
 * the finishing event.  After ev->finish != SQLM_FINISH_NONE further calls
 * return the same finish with no token.  Returns SQLM_DB/SQLM_NOMEM when the
 * step fails; generation has then ended, the sequence and its cache emptied.
 */
int sqlm_generate_next(sqlm_session *s, sqlm_token_event *ev);

/* The k most probable tokens of the last sampled step (the logits of the
 * token sqlm_generate_next() just chose, or of the prompt's end before the
 * first step), most probable first, lowest id first on ties: ids[i] and
 * logprobs[i] (log-probabilities under the raw logits, as
 * sqlm_token_event.logprob, whose value for the same token is the same
 * float).  The raw logits are the model's: before logit bias, penalties and
 * temperature.  Returns how many were written (k clamped to the
 * vocabulary), 0 when the session has no logits. */
int32_t sqlm_generate_top_logprobs(const sqlm_session *s, int32_t k, int32_t *ids, float *logprobs);

/* Per token: its id, the text released with it (may be empty), its
 * log-probability.  Return non-zero to stop generation (finish "stop").
 * The last call may have token -1: text released when generation ended. */
typedef int (*sqlm_token_fn)(int32_t token, const char *text, size_t len, float logprob, void *ctx);

typedef struct sqlm_generate_result {
    int32_t n_prompt, n_kept;    /* prompt tokens; of them, reused from the cache */
    int32_t n_sampled;           /* tokens sampled, an ending EOS included */
    int32_t n_generated;         /* tokens added to the sequence */
    int finish;                  /* SQLM_FINISH_* */
    double t_prompt, t_gen;      /* seconds */
} sqlm_generate_result;

/* The whole loop: sqlm_generate_begin(), then sqlm_generate_next() until it
 * finishes or cb (may be NULL) asks to stop.  *res (may be NULL) gets the
 * counts.  Returns the first failing call's code. */
int sqlm_generate(sqlm_session *s, const int32_t *ids, int32_t n, const sqlm_generate_params *p,
                  sqlm_token_fn cb, void *ctx, sqlm_generate_result *res);

/* ----------------------------------------------------------------- stats */

typedef struct sqlm_stats {
    double t;                    /* monotonic seconds */
    double cpu;                  /* CPU seconds of the calling thread */
    uint64_t io_read_bytes;      /* bytes the process read from storage */
    bool cache;                  /* the weight cache fields are valid (a budget is set) */
    uint64_t fetch_bytes;        /* pages handed to the engine */
    uint64_t hit_bytes;          /* of which from the resident set */
    uint64_t read_bytes;         /* read from the file while running */
    uint64_t sync_bytes;         /* of which read by the compute threads themselves */
    uint64_t load_bytes;         /* read once to fill the resident set */
    uint64_t resyncs;            /* times the reader was re-aimed */
    uint64_t reads;              /* reads the reader threads made */
    double wait_s;               /* time compute threads waited for reads */
    double load_s;               /* time filling the resident set */
    double reader_s;             /* time the reader threads spent reading */
    size_t resident_bytes;       /* pinned pages */
    size_t sched_bytes;          /* pages one step reads */
    size_t ring_bytes;           /* streaming buffers */
    bool direct;                 /* O_DIRECT reads */
    size_t heap_peak, heap_limit;/* the engine's heap: most it held, its share */
} sqlm_stats;

/* A snapshot of the session's counters now. */
void sqlm_session_stats(sqlm_session *s, sqlm_stats *st);
/* How the memory budget was split, or NULL (owned by s). */
const char *sqlm_session_mem_plan(const sqlm_session *s);
/* Seconds spent in each statement of the program so far; *n gets the count.
 * Owned by s. */
const double *sqlm_session_stmt_seconds(const sqlm_session *s, int32_t *n);

/* Process facts: monotonic seconds, peak resident bytes, the cgroup's
 * memory limit (0: none). */
double sqlm_now(void);
size_t sqlm_peak_rss(void);
size_t sqlm_cgroup_limit(void);
/* Parse a size such as 256M, 1.5G or 4096 into *out; false if malformed. */
bool sqlm_parse_size(const char *s, size_t *out);
/* The median of v[0..n), n > 0 (sorts v). */
double sqlm_median(double *v, int n);
/* Decode the code point at s[*pos] (< len) and advance *pos; a byte that
 * starts no valid sequence (overlong forms, surrogates and code points past
 * U+10FFFF included) gives 0xFFFD and advances by one. */
uint32_t sqlm_utf8_next(const char *s, size_t len, size_t *pos);

#ifdef __cplusplus
}
#endif
#endif /* SQLM_H */
