/*
 * vocab.c - the vocabulary container shared by the model readers, the
 * tokenizer and the database writer.  It only stores; encoding lives in tok/.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"

void sqlm_vocab_init(vocab *v) {
    memset(v, 0, sizeof *v);
#define X(name, def) v->name = (def);
    VOCAB_INT_FIELDS(X)
#undef X
}

void sqlm_vocab_free(vocab *v) {
    if (!v) return;
    for (int32_t i = 0; v->tok && !v->arena && i < v->n; i++) free(v->tok[i]);
    free(v->arena);
    for (int32_t i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
#define X(name) free(v->name);
    VOCAB_STR_FIELDS(X)
#undef X
    free(v->tok);
    free(v->tok_len);
    free(v->score);
    free(v->attr);
    free(v->merges);
    sqlm_vocab_init(v);
}

int sqlm_vocab_alloc(vocab *v, int32_t n) {
    if (n <= 0 || n > (1 << 24))
        return sqlm_error(SQLM_FORMAT, "vocabulary size %d out of range (1..16777216)", n);
    v->tok = calloc((size_t)n, sizeof *v->tok);
    v->tok_len = calloc((size_t)n, sizeof *v->tok_len);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->attr = calloc((size_t)n, sizeof *v->attr);
    if (!v->tok || !v->tok_len || !v->score || !v->attr) {
        free(v->tok); free(v->tok_len); free(v->score); free(v->attr);
        v->tok = NULL; v->tok_len = NULL; v->score = NULL; v->attr = NULL;
        return sqlm_error(SQLM_NOMEM, "out of memory for a vocabulary of %d tokens", n);
    }
    for (int32_t i = 0; i < n; i++) v->attr[i] = TOK_NORMAL;
    v->n = n;
    return SQLM_OK;
}

int sqlm_vocab_set_token(vocab *v, int32_t id, const char *piece, size_t len, float score,
                    int32_t attr) {
    if (id < 0 || id >= v->n)
        return sqlm_error(SQLM_FORMAT, "token id %d outside vocabulary of %d", id, v->n);
    if (len > (1u << 20)) return sqlm_error(SQLM_FORMAT, "token %d: piece of %zu bytes", id, len);
    if (v->arena) return sqlm_error(SQLM_ERROR, "token %d: the vocabulary is packed", id);
    char *p = malloc(len + 1);
    if (!p) return sqlm_error(SQLM_NOMEM, "out of memory for token %d", id);
    memcpy(p, piece, len);
    p[len] = 0;
    free(v->tok[id]);
    v->tok[id] = p;
    v->tok_len[id] = (uint32_t)len;
    v->score[id] = score;
    v->attr[id] = attr;
    return SQLM_OK;
}

int sqlm_vocab_pack(vocab *v) {
    if (v->arena) return SQLM_OK;
    size_t total = 0;
    for (int32_t i = 0; i < v->n; i++) total += v->tok[i] ? v->tok_len[i] + 1 : 0;
    char *a = malloc(total ? total : 1), *p = a;
    if (!a) return sqlm_error(SQLM_NOMEM, "out of memory packing a vocabulary of %d tokens", v->n);
    for (int32_t i = 0; i < v->n; i++) {
        if (!v->tok[i]) continue;
        memcpy(p, v->tok[i], v->tok_len[i] + 1);
        free(v->tok[i]);
        v->tok[i] = p;
        p += v->tok_len[i] + 1;
    }
    v->arena = a;
    for (int32_t i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->merges);
    v->merges = NULL;
    v->n_merges = 0;
    return SQLM_OK;
}
