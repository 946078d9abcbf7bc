/*
 * llama2c_tok.c - reads llama2.c's tokenizer.bin / tok512.bin into a vocab.
 *
 * Format (little-endian):
 *     int32 max_token_length
 *     vocab_size times: float32 score, int32 len, len bytes of piece
 *
 * llama2.c exports pieces with spaces where SentencePiece has "▁" and BOS/EOS
 * as "\n<s>\n" / "\n</s>\n"; we store the SentencePiece spelling so every SPM
 * vocabulary looks alike downstream.  Ids 0, 1, 2 are <unk>, <s>, </s> and
 * 3..258 the byte pieces <0x00>..<0xFF>.  Encoding is tok/tokenizer.c's job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Is p[0..len) "<0xHH>" with HH == want (two upper-case hex digits)? */
static bool is_byte_piece(const char *p, size_t len, int want) {
    static const char hex[] = "0123456789ABCDEF";
    return len == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' &&
           p[3] == hex[(want >> 4) & 15] && p[4] == hex[want & 15];
}

/* Read the whole file into a malloc'd buffer (it is small: < 1 MB usually). */
static int read_file(const char *path, unsigned char **out, size_t *n) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sqlm_error(SQLM_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    if ((unsigned long)sz > (1ul << 30)) {
        fclose(f);
        return sqlm_error(SQLM_FORMAT, "%s: %ld bytes is too large for a tokenizer", path, sz);
    }
    unsigned char *p = malloc((size_t)sz + 1);
    if (!p) { fclose(f); return sqlm_error(SQLM_NOMEM, "%s: out of memory", path); }
    if (fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); goto io; }
    fclose(f);
    *out = p;
    *n = (size_t)sz;
    return SQLM_OK;
io:
    fclose(f);
    return sqlm_error(SQLM_IO, "%s: read error", path);
}

int sqlm_llama2c_read_tokenizer(vocab *v, const char *path, int32_t vocab_size) {
    unsigned char *d;
    size_t n = 0, off = 4;
    int rc = read_file(path, &d, &n);
    if (rc) return rc;
    sqlm_vocab_init(v);
    buf piece;
    sqlm_buf_init(&piece);
    if (n < 4) { rc = sqlm_error(SQLM_FORMAT, "%s: %zu bytes, no header", path, n); goto fail; }
    int32_t max_len = (int32_t)rd_u32(d);
    if (max_len <= 0 || max_len > (1 << 20)) {
        rc = sqlm_error(SQLM_FORMAT, "%s: max_token_length %d out of range", path, max_len);
        goto fail;
    }
    /* Without a size from the checkpoint, count the records first. */
    if (vocab_size <= 0) {
        vocab_size = 0;
        for (size_t o = 4; o < n; vocab_size++) {
            if (n - o < 8) break;
            uint32_t len = rd_u32(d + o + 4);
            if (len > n - o - 8) break;
            o += 8 + len;
        }
        if (vocab_size == 0) {
            rc = sqlm_error(SQLM_FORMAT, "%s: no tokens", path);
            goto fail;
        }
    }
    if ((rc = sqlm_vocab_alloc(v, vocab_size)) != SQLM_OK) {
        rc = sqlm_error_prefix(rc, "%s", path);
        goto fail;
    }
    for (int32_t i = 0; i < vocab_size; i++) {
        if (n - off < 8) {
            rc = sqlm_error(SQLM_FORMAT, "%s: truncated at token %d of %d (offset %zu)", path,
                            i, vocab_size, off);
            goto fail;
        }
        float score;
        uint32_t bits = rd_u32(d + off), len = rd_u32(d + off + 4);
        memcpy(&score, &bits, sizeof score);
        off += 8;
        if (len > (uint32_t)max_len || len > n - off) {
            rc = sqlm_error(SQLM_FORMAT,
                            "%s: token %d: length %u exceeds max_token_length %d or the "
                            "%zu bytes left", path, i, len, max_len, n - off);
            goto fail;
        }
        if (score != score) {
            rc = sqlm_error(SQLM_FORMAT, "%s: token %d: score is NaN", path, i);
            goto fail;
        }
        const char *p = (const char *)d + off;
        off += len;
        int32_t attr = TOK_NORMAL;
        sqlm_buf_reset(&piece);
        if (i == 0) {
            attr = TOK_UNKNOWN;
            sqlm_buf_append(&piece, p, len);
        } else if (i == 1 || i == 2) {
            attr = TOK_CONTROL;
            /* "\n<s>\n" -> "<s>" */
            size_t a = 0, b = len;
            while (a < b && p[a] == '\n') a++;
            while (b > a && p[b - 1] == '\n') b--;
            sqlm_buf_append(&piece, p + a, b - a);
        } else if (i >= 3 && i <= 258 && is_byte_piece(p, len, i - 3)) {
            attr = TOK_BYTE;
            sqlm_buf_append(&piece, p, len);
        } else {
            for (uint32_t k = 0; k < len; k++) {
                if (p[k] == ' ') sqlm_buf_puts(&piece, "\xE2\x96\x81");   /* "▁" */
                else sqlm_buf_putc(&piece, p[k]);
            }
        }
        if (piece.rc) { rc = sqlm_error(SQLM_NOMEM, "%s: out of memory", path); goto fail; }
        if ((rc = sqlm_vocab_set_token(v, i, piece.p ? piece.p : "", piece.len, score, attr)))
            goto fail;
    }
    v->type = VOCAB_SPM;
    v->unk = 0;
    v->bos = vocab_size > 1 ? 1 : -1;
    v->eos = vocab_size > 2 ? 2 : -1;
    v->add_bos = 1;
    v->add_eos = 0;
    v->add_space_prefix = 1;
    v->escape_spaces = 1;
    v->byte_fallback = vocab_size > 258 && v->attr[3] == TOK_BYTE;
    v->merges_by_rank = 0;
    v->special_in_text = 0;   /* llama2.c encode() never matches "<s>" in text */
    sqlm_buf_free(&piece);
    free(d);
    return SQLM_OK;
fail:
    sqlm_buf_free(&piece);
    free(d);
    sqlm_vocab_free(v);
    return rc;
}
