/*
 * tokfuzz.h - the checks of the tokenizer fuzzer, shared by the libFuzzer
 * harness (tests/fuzz/fuzz-tokenizer.c) and its corpus replay
 * (tests/unit/test-tokfuzz.c).  Paths are relative to the repository root.
 *
 * An input is  [mode] [flag] text...
 *   mode < 0x80   one of the real tokenizers (mode % TOKFUZZ_N); flag & 1 is
 *                 add_special.  The text is encoded, every id must lie in the
 *                 vocabulary, every id is decoded (with its predecessor), the
 *                 output is bounded by the pieces' lengths, and where every byte
 *                 of the text has a token (byte-level BPE, or SPM with byte
 *                 fallback) the decode must give the text back: exactly, or
 *                 its NFC form for an NFC vocabulary, or with "▁" read as a
 *                 space for SentencePiece (as SentencePiece itself does).
 *   mode >= 0x80  the file readers: everything after the mode byte is a file
 *                 given to sqlm_tok_read_json, sqlm_llama2c_read_tokenizer or
 *                 sqlm_tok_read_spm_model (mode % 3).  It must be read or refused
 *                 cleanly; a vocabulary that is read is then built into a
 *                 tokenizer and used on a short text.
 * A failed check calls TOKFUZZ_FAIL(input, size, message) (abort by default).
 */
#ifndef SQLM_TOKFUZZ_H
#define SQLM_TOKFUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"

#define TOKFUZZ_MAX_INPUT (64 * 1024)

#ifndef TOKFUZZ_FAIL
#define TOKFUZZ_FAIL(data, size, msg)                                           \
    do {                                                                        \
        fprintf(stderr, "tokfuzz: %s (input of %zu bytes)\n", msg, (size_t)(size)); \
        abort();                                                                \
    } while (0)
#endif

enum { TOKFUZZ_LLAMA2C, TOKFUZZ_JSON, TOKFUZZ_SPM };

static const struct tokfuzz_src {
    const char *path;
    int kind;
} tokfuzz_srcs[] = {
    {"../shared/models/stories260K/tok512.bin", TOKFUZZ_LLAMA2C},
    {"../shared/models/TinyStories-656K/tokenizer.json", TOKFUZZ_JSON},
    {"../shared/models/SmolLM2-tokenizer/tokenizer.json", TOKFUZZ_JSON},
    {"../shared/models/llama3-tokenizer/tokenizer.json", TOKFUZZ_JSON},
    {"../shared/models/qwen3-tokenizer/tokenizer.json", TOKFUZZ_JSON},
    {"../shared/models/llama2-tokenizer/tokenizer.model", TOKFUZZ_SPM},
};
#define TOKFUZZ_N ((int)(sizeof tokfuzz_srcs / sizeof tokfuzz_srcs[0]))

typedef struct tokfuzz_tok {
    vocab v;
    tokenizer *t;
    bool byte_ok[256];       /* the byte decodes back to itself from its own token */
    size_t max_piece;        /* longest piece */
} tokfuzz_tok;

static tokfuzz_tok tokfuzz_toks[TOKFUZZ_N];
static int tokfuzz_fd = -1;  /* memfd for the reader mode */
static long tokfuzz_n_roundtrip;   /* inputs whose round trip was checked */

static int tokfuzz_read(int kind, vocab *v, const char *path) {
    switch (kind) {
    case TOKFUZZ_LLAMA2C: return sqlm_llama2c_read_tokenizer(v, path, 0);
    case TOKFUZZ_JSON: return sqlm_tok_read_json(v, path);
    default: return sqlm_tok_read_spm_model(v, path);
    }
}

/* GPT-2's byte-to-unicode map (as tokenizer.c). */
static uint32_t tokfuzz_byte_cp(int b) {
#define TOKFUZZ_PRINTABLE(k) (((k) >= 0x21 && (k) <= 0x7E) || ((k) >= 0xA1 && (k) <= 0xAC) || (k) >= 0xAE)
    if (TOKFUZZ_PRINTABLE(b)) return (uint32_t)b;
    uint32_t n = 256;
    for (int k = 0; k < b; k++) n += !TOKFUZZ_PRINTABLE(k);
    return n;
#undef TOKFUZZ_PRINTABLE
}

static bool tokfuzz_special(const vocab *v, int32_t id) {
    int a = v->attr[id];
    return a == TOK_CONTROL || a == TOK_UNKNOWN || a == TOK_USER;
}

/* Which bytes the vocabulary can spell with a token that decodes to them. */
static void tokfuzz_bytes(tokfuzz_tok *k) {
    const vocab *v = &k->v;
    memset(k->byte_ok, 0, sizeof k->byte_ok);
    k->max_piece = 0;
    for (int32_t id = 0; id < v->n; id++)
        if (v->tok_len[id] > k->max_piece) k->max_piece = v->tok_len[id];
    if (v->type == VOCAB_SPM && !v->byte_fallback) return;
    char want[8];
    for (int b = 0; b < 256; b++) {
        size_t n;
        if (v->type == VOCAB_SPM) n = (size_t)snprintf(want, sizeof want, "<0x%02X>", b);
        else n = (size_t)sqlm_tok_utf8_put(tokfuzz_byte_cp(b), want);
        for (int32_t id = 0; id < v->n; id++) {   /* the lowest id wins, as in sqlm_tok_init */
            if (v->tok_len[id] != n || memcmp(v->tok[id], want, n) != 0) continue;
            k->byte_ok[b] = v->type == VOCAB_SPM ? v->attr[id] == TOK_BYTE : !tokfuzz_special(v, id);
            break;
        }
    }
}

/* Load the real tokenizers; 0 or the index + 1 of the first that failed. */
static int tokfuzz_init(void) {
    for (int i = 0; i < TOKFUZZ_N; i++) {
        tokfuzz_tok *k = &tokfuzz_toks[i];
        if (tokfuzz_read(tokfuzz_srcs[i].kind, &k->v, tokfuzz_srcs[i].path) != SQLM_OK ||
            sqlm_tok_init(&k->t, &k->v) != SQLM_OK) {
            fprintf(stderr, "tokfuzz: %s: %s\n", tokfuzz_srcs[i].path, sqlm_errmsg());
            return i + 1;
        }
        tokfuzz_bytes(k);
    }
    tokfuzz_fd = memfd_create("tokfuzz", 0);
    if (tokfuzz_fd < 0) {
        perror("tokfuzz: memfd_create");
        return TOKFUZZ_N + 1;
    }
    return 0;
}

static inline void tokfuzz_done(void) {
    for (int i = 0; i < TOKFUZZ_N; i++) {
        sqlm_tok_free(tokfuzz_toks[i].t);
        sqlm_vocab_free(&tokfuzz_toks[i].v);
        tokfuzz_toks[i].t = NULL;
    }
    if (tokfuzz_fd >= 0) close(tokfuzz_fd);
    tokfuzz_fd = -1;
}

/* Text with every "▁" read as a space (SentencePiece's decoding). */
static void tokfuzz_unescape(const char *s, size_t n, buf *out) {
    for (size_t i = 0; i < n; i++) {
        if (n - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            sqlm_buf_putc(out, ' ');
            i += 2;
        } else {
            sqlm_buf_putc(out, s[i]);
        }
    }
}

#define TOKFUZZ_CHECK(cond, msg)                                                \
    do {                                                                        \
        if (!(cond)) { TOKFUZZ_FAIL(data, size, msg); goto out; }               \
    } while (0)

/* One of the real tokenizers on text. */
static int tokfuzz_text(const uint8_t *data, size_t size) {
    const tokfuzz_tok *k = &tokfuzz_toks[data[0] % TOKFUZZ_N];
    const vocab *v = &k->v;
    bool add_special = size > 1 && (data[1] & 1);
    const char *text = size > 2 ? (const char *)data + 2 : "";
    size_t len = size > 2 ? size - 2 : 0;
    int32_t *ids = NULL, n = 0;
    buf all, mid, want;
    sqlm_buf_init(&all);
    sqlm_buf_init(&mid);
    sqlm_buf_init(&want);

    int rc = sqlm_tok_encode(k->t, text, len, add_special, &ids, &n);
    TOKFUZZ_CHECK(rc == SQLM_OK, "sqlm_tok_encode failed");
    TOKFUZZ_CHECK(ids != NULL && n >= 0, "sqlm_tok_encode returned no array");
    TOKFUZZ_CHECK((size_t)n <= 3 * len + 2, "more ids than the text can explain");
    size_t bound = 0;
    for (int32_t i = 0; i < n; i++) {
        TOKFUZZ_CHECK(ids[i] >= 0 && ids[i] < v->n, "id outside the vocabulary");
        bound += v->tok_len[ids[i]];
    }
    /* the specials asked for, around the text's own ids */
    int32_t lo = 0, hi = n;
    if (add_special && v->add_bos && v->bos >= 0) {
        TOKFUZZ_CHECK(n > 0 && ids[0] == v->bos, "BOS missing");
        lo = 1;
    }
    if (add_special && v->add_eos && v->eos >= 0) {
        TOKFUZZ_CHECK(n > lo && ids[n - 1] == v->eos, "EOS missing");
        hi = n - 1;
    }
    for (int32_t i = 0; i < n; i++)
        TOKFUZZ_CHECK(sqlm_tok_decode(k->t, i ? ids[i - 1] : -1, ids[i], &all) == SQLM_OK,
                      "sqlm_tok_decode failed");
    TOKFUZZ_CHECK(all.len <= bound, "decoded text longer than its pieces");
    TOKFUZZ_CHECK(sqlm_tok_decode(k->t, -1, -1, &mid) == SQLM_RANGE, "id -1 accepted");
    TOKFUZZ_CHECK(sqlm_tok_decode(k->t, -1, v->n, &mid) == SQLM_RANGE, "id n accepted");
    TOKFUZZ_CHECK(mid.len == 0, "a refused id wrote output");

    /* round trip: where every byte of the text has a token of its own */
    bool rt = v->type == VOCAB_BPE || v->byte_fallback;
    for (size_t i = 0; rt && i < len; i++) rt = k->byte_ok[(uint8_t)text[i]];
    bool specials = false;
    for (int32_t i = lo; i < hi; i++) specials = specials || tokfuzz_special(v, ids[i]);
    /* SPM puts the dummy prefix after every special in the text; NFC applies
     * to the text between specials only */
    if (specials && (v->type == VOCAB_SPM || v->nfc)) rt = false;
    if (rt) {
        for (int32_t i = lo; i < hi; i++)
            TOKFUZZ_CHECK(sqlm_tok_decode(k->t, i > lo ? ids[i - 1] : lo ? ids[0] : -1, ids[i], &mid) ==
                          SQLM_OK, "sqlm_tok_decode failed");
        if (v->nfc) sqlm_tok_nfc(text, len, &want);
        else if (v->type == VOCAB_SPM && v->escape_spaces) tokfuzz_unescape(text, len, &want);
        else sqlm_buf_append(&want, text, len);
        TOKFUZZ_CHECK(mid.rc == 0 && want.rc == 0, "out of memory");
        TOKFUZZ_CHECK(mid.len == want.len && (want.len == 0 || memcmp(mid.p, want.p, want.len) == 0),
                      "decode(encode(text)) differs from the text");
        tokfuzz_n_roundtrip++;
    }
out:
    free(ids);
    sqlm_buf_free(&all);
    sqlm_buf_free(&mid);
    sqlm_buf_free(&want);
    return 0;
}

/* A tokenizer file: read or refused cleanly; if read, usable. */
static int tokfuzz_file(const uint8_t *data, size_t size) {
    char path[64];
    vocab v;
    tokenizer *t = NULL;
    int32_t *ids = NULL, n = 0;
    buf out;
    sqlm_buf_init(&out);
    sqlm_vocab_init(&v);
    TOKFUZZ_CHECK(tokfuzz_fd >= 0, "no memfd");
    TOKFUZZ_CHECK(ftruncate(tokfuzz_fd, 0) == 0, "ftruncate");
    TOKFUZZ_CHECK(pwrite(tokfuzz_fd, data + 1, size - 1, 0) == (ssize_t)(size - 1), "pwrite");
    snprintf(path, sizeof path, "/proc/self/fd/%d", tokfuzz_fd);
    int rc = tokfuzz_read(data[0] % 3, &v, path);
    if (rc != SQLM_OK) {
        TOKFUZZ_CHECK(rc < 0 || rc > 0, "error without a code");
        TOKFUZZ_CHECK(sqlm_errmsg() && sqlm_errmsg()[0], "error without a message");
        goto out;
    }
    TOKFUZZ_CHECK(v.n > 0 && v.tok && v.tok_len && v.attr && v.score, "read an empty vocabulary");
    /* every token costs the file a few bytes: no tiny file claims millions */
    TOKFUZZ_CHECK((size_t)v.n <= 2 * size + 65536, "vocabulary out of proportion with the file");
    for (int32_t i = 0; i < v.n; i++)
        TOKFUZZ_CHECK(v.tok[i] && strlen(v.tok[i]) <= v.tok_len[i] && v.tok[i][v.tok_len[i]] == 0,
                      "piece not NUL-terminated");
    TOKFUZZ_CHECK(v.bos < v.n && v.eos < v.n && v.unk < v.n && v.pad < v.n && v.eot < v.n,
                  "special id outside the vocabulary");
    if (sqlm_tok_init(&t, &v) != SQLM_OK) goto out;
    /* the file's own bytes as text (they name its pieces), then a fixed one */
    size_t tl = size - 1 < 512 ? size - 1 : 512;
    for (int pass = 0; pass < 2; pass++) {
        const char *s = pass ? " Hello world, <s>caf\xC3\xA9 123\n" : (const char *)data + 1;
        size_t sl = pass ? strlen(s) : tl;
        rc = sqlm_tok_encode(t, s, sl, true, &ids, &n);
        TOKFUZZ_CHECK(rc == SQLM_OK, "sqlm_tok_encode failed on a vocabulary that was read");
        for (int32_t i = 0; i < n; i++) {
            TOKFUZZ_CHECK(ids[i] >= 0 && ids[i] < v.n, "id outside the read vocabulary");
            TOKFUZZ_CHECK(sqlm_tok_decode(t, i ? ids[i - 1] : -1, ids[i], &out) == SQLM_OK,
                          "sqlm_tok_decode failed");
        }
        free(ids);
        ids = NULL;
    }
out:
    free(ids);
    sqlm_buf_free(&out);
    sqlm_tok_free(t);
    sqlm_vocab_free(&v);
    return 0;
}

/* One input; always 0 (a failed check calls TOKFUZZ_FAIL). */
static int tokfuzz_one(const uint8_t *data, size_t size) {
    if (size < 1 || size > TOKFUZZ_MAX_INPUT) return 0;
    if (data[0] >= 0x80) return tokfuzz_file(data, size);
    return tokfuzz_text(data, size);
}

#endif
