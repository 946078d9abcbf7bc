/*
 * api.h - the insides of the public handles (include/sqlm.h), shared by
 * api/api.c (models, sessions, tokenization, chat, stats) and
 * api/generate.c (the generation loop).
 */
#ifndef SQLM_API_H
#define SQLM_API_H

#include "../chat/chat.h"
#include "../run/run.h"

struct sqlm_model {
    bool has_db;             /* db is open (else a vocabulary alone) */
    modeldb db;
    size_t mem_budget;       /* the sessions' budget */
    bool in_session;         /* a session is open: its KV-cache and step tables are the
                              * engine connection's only set */
    const vocab *voc;        /* db.voc, file->voc or &own */
    tokenizer *tok;          /* db.tok or own_tok; NULL without a vocabulary */
    model *file;             /* sqlm_open_vocab() of a model file */
    vocab own;               /* sqlm_open_vocab() of a tokenizer file */
    tokenizer *own_tok;
};


struct sqlm_session {
    sqlm_model *m;
    session *x;              /* the program-execution session (run/generate.c) */
    int n_ctx, n_vocab;
    int32_t *hist;           /* [n_ctx] the sequence: prompt, then generated */
    int n_hist;
    bool pending;            /* hist[n_hist - 1] is not in the KV cache yet */
    const float *lg;         /* logits of the last evaluated token (owned by x) */
    float *logits;           /* [n_vocab] a copy the sampler may change */
    sampler_opts sp;
    int32_t *bias_id;        /* [sp.n_bias] the logit bias, owned (sp points here) */
    float *bias;
    uint64_t rng;
    /* the running generation */
    int finish;              /* SQLM_FINISH_*, NONE while it runs */
    bool ignore_eos;
    int max_tokens;
    char *stop[SQLM_MAX_STOP];
    int n_stop;
    size_t max_stop_len;
    int n_gen, n_sampled;
    buf text;                /* generated text so far (cut before a stop string) */
    size_t sent;             /* bytes of text released */
};

#endif /* SQLM_API_H */
