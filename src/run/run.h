/*
 * run.h - running a model database: import, opening a model database,
 * the session that executes the compiled program step by step, and the
 * sampler.
 */
#ifndef SQLM_RUN_H
#define SQLM_RUN_H

#include "../db/engine.h"
#include "../tok/tok.h"

/* ---------------------------------------------------------- run/modeldb.c */

#define SQLM_DB_FORMAT 1

/* Options of `sqlm import`. */
typedef struct import_opts {
    const char *engine;      /* "sqlite" (default) */
    const char *tok_path;    /* llama2.c tokenizer override or NULL */
    int wtype;               /* storage type of matrices, -1 = as in the file */
    size_t tile_bytes;       /* target bytes per stored tile (0 = default) */
    sqlm_progress_fn progress; /* called per table written, and once with NULL at the end;
                              * NULL: none, and no notes */
    void *progress_ctx;
    size_t mem_budget;       /* resident memory cap (0 = none): engine cache, and the
                              * model file's mapping dropped as it is consumed */
    bool no_fuse;            /* table fusion off: separate q/k/v and gate/up tables */
    int row2col;             /* R2C_AUTO (the rule), R2C_OFF, R2C_ON (pivot every matrix),
                              * R2C_SPLIT (split every layer matrix), R2C_SPLIT_ROWS (the
                              * same, a table row per matrix row, not per block of rows);
                              * WL_ROWS_F32 only */
} import_opts;

/* Import a model file into a new database at out_path (written to a
 * temporary name, then renamed: an interrupted import leaves nothing that
 * looks complete). */
int sqlm_import_file(const char *model_path, const char *out_path, const import_opts *o);

/* A model database opened for inference. */
typedef struct modeldb {
    engine *e;
    model_config cfg;
    ir_weight *weights;
    int n_weights;
    vocab voc;
    tokenizer *tok;
    bool inplace;            /* the engine reads weight tiles in place */
    char note[320];          /* why it does not, when it was tried ("" if not) */
} modeldb;

/* Open path read-only on the named engine (NULL: the engine that wrote the
 * file, by its magic); check it is a complete sqlm database; load config,
 * weight layout and vocabulary, each checked with the model readers' rules
 * (a database from elsewhere is as hostile as a GGUF). */
int sqlm_modeldb_open(modeldb *db, const char *path, const char *engine_name, const engine_opts *o);
void sqlm_modeldb_close(modeldb *db);
/* Config fields as (key, value) rows: shared by the writer and the reader. */
int sqlm_modeldb_write_config(engine *e, const model_config *c);
/* The weight layout recorded in sqlm_weight; *out malloc'd, caller frees.
 * path (NULL: not checked) is the database's file, whose size bounds the
 * bytes the shapes may claim. */
int sqlm_modeldb_read_weights(engine *e, const char *path, ir_weight **out, int *n);

/* ---------------------------------------------------------- run/generate.c */

typedef struct sampler_opts {
    float temp;              /* 0 = greedy */
    int top_k;               /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off */
    float freq_penalty;      /* subtracted per occurrence in the window; 0 = off */
    float presence_penalty;  /* subtracted once if present in the window; 0 = off */
    int repeat_last_n;
    uint64_t seed;
    const int32_t *bias_id;  /* [n_bias] logit_bias: bias[i] added to logits[bias_id[i]] first */
    const float *bias;
    int n_bias;
} sampler_opts;

typedef struct session session;

typedef struct session_opts {
    ir_opts ir;
    int n_ctx;               /* context length (0 = the model's; set by sqlm_exec_init) */
    size_t mem_budget;       /* the engine's budget (engine_opts.mem_budget), 0 = none */
    bool quiet;              /* no notes to the log callback */
} session_opts;

int sqlm_exec_init(session **out, modeldb *db, const session_opts *o);
void sqlm_exec_free(session *s);
/* Forget the sequence (empties the KV cache). */
int sqlm_exec_reset(session *s);
/* Keep the first n positions of the sequence (n >= its length: no-op): the
 * cache tables lose their rows at pos >= n. */
int sqlm_exec_truncate(session *s, int n);
/* Feed n tokens at the next positions; *logits (owned by s, valid until the
 * next call) gets vocab_size floats for the last one, or n * vocab_size when
 * ir.all_logits was set. */
int sqlm_exec_eval(session *s, const int32_t *toks, int n, const float **logits);
/* Make the sequence toks[0..n) and set *logits as sqlm_exec_eval() does for
 * its last token, feeding only the tokens past the longest prefix of toks
 * the KV cache already holds.  When the cache holds tokens toks lacks, or
 * all n of them, the sequence starts over (sqlm_exec_reset()).  *n_kept (may
 * be NULL) gets the number of tokens reused.  SQLM_RANGE when n > n_ctx. */
int sqlm_exec_feed(session *s, const int32_t *toks, int n, const float **logits, int *n_kept);
/* The engine's weight-cache counters; false when the session has no budget. */
bool sqlm_exec_mem_stats(session *s, wcache_stats *st);
/* The context length in force (a budget may have capped the model's). */
int sqlm_exec_n_ctx(const session *s);
/* How the budget was split (process, KV cache, buffers, weights), or NULL. */
const char *sqlm_exec_mem_plan(const session *s);

/* Seconds spent in each statement of the session's program, summed over
 * every step so far (the program's statement i is *prog->steps[i]). */
const double *sqlm_exec_stmt_seconds(const session *s, const sql_program **prog);

/* Pick the next token from logits (vocab_size floats; modified in place). */
int32_t sqlm_sample_next(const sampler_opts *o, float *logits, int n_vocab, const int32_t *hist,
                    int n_hist, uint64_t *rng);

#endif /* SQLM_RUN_H */
