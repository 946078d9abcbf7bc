/*
 * tok.h - tokenizers: vocabulary files (tokenizer.json, tokenizer.model),
 * the encoder and decoder over a vocab, and the UTF-8 and Unicode tables
 * they need.
 */
#ifndef SQLM_TOK_H
#define SQLM_TOK_H

#include "../model/model.h"

/* ----------------------------------------------------------- tok/ */

/* Read a HF tokenizer.json (plus tokenizer_config.json beside it if present). */
int sqlm_tok_read_json(vocab *v, const char *path);
/* Read a SentencePiece tokenizer.model protobuf. */
int sqlm_tok_read_spm_model(vocab *v, const char *path);

typedef struct tokenizer tokenizer;

/* Build an encoder over v (borrowed: v must outlive the tokenizer). */
int sqlm_tok_init(tokenizer **out, const vocab *v);
void sqlm_tok_free(tokenizer *t);
/* Free the encoder's tables (piece and merge hashes, special-token trie: 5 MB
 * for a 151k vocabulary), keeping what sqlm_tok_decode needs; sqlm_tok_encode fails
 * afterwards.  For a caller with no more text to encode, before it sizes a
 * memory budget. */
void sqlm_tok_drop_encoder(tokenizer *t);
/*
 * Encode len bytes of text.  add_special: prepend BOS (and append EOS) as the
 * vocabulary says.  *ids is malloc'd, caller frees.
 */
int sqlm_tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
               int32_t **ids, int32_t *n_ids);
/*
 * Append the bytes of token id to out (byte tokens become raw bytes, "▁" a
 * space, byte-level BPE pieces are mapped back).  prev is the previous token
 * (or -1): SPM drops the dummy-prefix space right after BOS.
 */
int sqlm_tok_decode(const tokenizer *t, int32_t prev, int32_t id, buf *out);

/* tok/unicode.c: the UTF-8 and Unicode properties the tokenizers need. */
enum { UCAT_OTHER = 0, UCAT_LETTER = 1, UCAT_NUMBER = 2, UCAT_SPACE = 4 };
/* Decode the code point at s[*pos] (< len) and advance *pos; an invalid or
 * truncated sequence yields 0xFFFD and advances by one byte. */
uint32_t sqlm_tok_utf8_next(const char *s, size_t len, size_t *pos);
int sqlm_tok_utf8_put(uint32_t cp, char *out);        /* 1..4 bytes written */
int sqlm_tok_ucat(uint32_t cp);                        /* UCAT_* bits */
/* Append the NFC form of len bytes of UTF-8 to out (invalid bytes copied). */
void sqlm_tok_nfc(const char *s, size_t len, buf *out);

#endif /* SQLM_TOK_H */
