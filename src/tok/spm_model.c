/*
 * spm_model.c - reads a SentencePiece tokenizer.model (a ModelProto protobuf)
 * into a vocab, with a small hand-written protobuf reader that checks every
 * length against the bytes left.
 *
 * The fields used (sentencepiece_model.proto):
 *   ModelProto      1: repeated SentencePiece pieces, 2: TrainerSpec,
 *                   3: NormalizerSpec
 *   SentencePiece   1: piece (string), 2: score (float), 3: type (enum:
 *                   NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6)
 *   TrainerSpec     3: model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4),
 *                   35: byte_fallback, 40..43: unk/bos/eos/pad ids
 *   NormalizerSpec  1: name, 3: add_dummy_prefix, 4: remove_extra_whitespaces,
 *                   5: escape_whitespaces
 * Only BPE models with the identity normaliser are accepted (Llama-2,
 * Mistral, TinyLlama); Unigram models and NFKC normalisation are not supported.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static bool pb_varint(pb *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return false;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) { *out = v; return true; }
    }
    return false;
}

/*
 * Read the next field: its number, wire type and either its varint / fixed
 * value (*val) or its length-delimited bytes (*sub).  false at a malformed
 * or truncated field.
 */
static bool pb_field(pb *r, uint32_t *field, int *wire, uint64_t *val, pb *sub) {
    uint64_t key;
    if (!pb_varint(r, &key)) return false;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    if (*field == 0) return false;
    switch (*wire) {
    case 0: return pb_varint(r, val);
    case 1:
        if (r->end - r->p < 8) return false;
        memcpy(val, r->p, 8);
        r->p += 8;
        return true;
    case 5: {
        uint32_t x;
        if (r->end - r->p < 4) return false;
        memcpy(&x, r->p, 4);
        r->p += 4;
        *val = x;
        return true;
    }
    case 2: {
        uint64_t len;
        if (!pb_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return false;
        sub->p = r->p;
        sub->end = r->p + len;
        r->p += len;
        return true;
    }
    default: return false;   /* groups (3, 4) are not used by this format */
    }
}

static int slurp(const char *path, uint8_t **out, size_t *n) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sqlm_error(SQLM_IO, "%s: cannot open: %s", path, strerror(errno));
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return sqlm_error(SQLM_IO, "%s: cannot seek", path);
    }
    if ((unsigned long)sz > (1ul << 30)) {
        fclose(f);
        return sqlm_error(SQLM_FORMAT, "%s: %ld bytes is too large for a tokenizer", path, sz);
    }
    uint8_t *p = malloc((size_t)sz + 1);
    if (!p) { fclose(f); return sqlm_error(SQLM_NOMEM, "%s: out of memory", path); }
    if (fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        fclose(f);
        return sqlm_error(SQLM_IO, "%s: read error", path);
    }
    fclose(f);
    *out = p;
    *n = (size_t)sz;
    return SQLM_OK;
}

typedef struct spec {           /* what we keep of TrainerSpec and NormalizerSpec */
    int64_t model_type, byte_fallback, ids[4];   /* ids: unk, bos, eos, pad */
    int64_t add_dummy_prefix, remove_extra_ws, escape_ws;
    pb norm_name;
} spec;

static int read_specs(const char *path, pb r, spec *s) {
    uint32_t f;
    int w;
    uint64_t val;
    pb sub;
    while (r.p < r.end) {
        if (!pb_field(&r, &f, &w, &val, &sub))
            return sqlm_error(SQLM_FORMAT, "%s: malformed field at offset near %zu", path,
                              (size_t)(r.end - r.p));
        if ((f != 2 && f != 3) || w != 2) continue;
        uint32_t g;
        int gw;
        while (sub.p < sub.end) {
            pb str;
            if (!pb_field(&sub, &g, &gw, &val, &str))
                return sqlm_error(SQLM_FORMAT, "%s: malformed %s", path,
                                  f == 2 ? "trainer_spec" : "normalizer_spec");
            if (f == 2 && gw == 0) {
                if (g == 3) s->model_type = (int64_t)val;
                else if (g == 35) s->byte_fallback = val != 0;
                else if (g >= 40 && g <= 43) s->ids[g - 40] = (int32_t)(uint32_t)val;
            } else if (f == 3) {
                if (g == 1 && gw == 2) s->norm_name = str;
                else if (g == 3 && gw == 0) s->add_dummy_prefix = val != 0;
                else if (g == 4 && gw == 0) s->remove_extra_ws = val != 0;
                else if (g == 5 && gw == 0) s->escape_ws = val != 0;
            }
        }
    }
    return SQLM_OK;
}

int sqlm_tok_read_spm_model(vocab *v, const char *path) {
    uint8_t *d;
    size_t n = 0;
    sqlm_vocab_init(v);
    int rc = slurp(path, &d, &n);
    if (rc) return rc;
    pb r = {d, d + n}, sub;
    uint32_t f;
    int w;
    uint64_t val;
    int64_t count = 0;
    /* Pass 1: count the pieces and check the framing of the whole file. */
    while (r.p < r.end) {
        if (!pb_field(&r, &f, &w, &val, &sub)) {
            rc = sqlm_error(SQLM_FORMAT, "%s: malformed or truncated protobuf at byte %zu", path,
                            (size_t)(r.p - d));
            goto fail;
        }
        if (f == 1 && w == 2) count++;
    }
    if (count == 0 || count > (1 << 24)) {
        rc = sqlm_error(SQLM_FORMAT, "%s: %lld pieces (not a SentencePiece model?)", path,
                        (long long)count);
        goto fail;
    }
    spec s = {.model_type = 1, .ids = {0, 1, 2, -1}, .add_dummy_prefix = 1,
              .remove_extra_ws = 1, .escape_ws = 1};
    if ((rc = read_specs(path, (pb){d, d + n}, &s))) goto fail;
    if (s.model_type != 2) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: model_type %lld not supported (BPE only)", path,
                        (long long)s.model_type);
        goto fail;
    }
    size_t nl = (size_t)(s.norm_name.end - s.norm_name.p);
    if (s.norm_name.p && !(nl == 8 && memcmp(s.norm_name.p, "identity", 8) == 0)) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: normalizer \"%.*s\" not supported (identity only)",
                        path, (int)MIN(nl, 64), (const char *)s.norm_name.p);
        goto fail;
    }
    if (s.remove_extra_ws) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: remove_extra_whitespaces not supported", path);
        goto fail;
    }
    if ((rc = sqlm_vocab_alloc(v, (int32_t)count))) { rc = sqlm_error_prefix(rc, "%s", path); goto fail; }
    /* Pass 2: the pieces. */
    int32_t id = 0;
    r = (pb){d, d + n};
    while (r.p < r.end) {
        pb_field(&r, &f, &w, &val, &sub);   /* checked by pass 1 */
        if (f != 1 || w != 2) continue;
        pb piece = {NULL, NULL};
        float score = 0;
        uint64_t type = 1;
        uint32_t g;
        int gw;
        pb str;
        while (sub.p < sub.end) {
            if (!pb_field(&sub, &g, &gw, &val, &str)) {
                rc = sqlm_error(SQLM_FORMAT, "%s: piece %d: malformed", path, id);
                goto fail;
            }
            if (g == 1 && gw == 2) piece = str;
            else if (g == 2 && gw == 5) { uint32_t x = (uint32_t)val; memcpy(&score, &x, 4); }
            else if (g == 3 && gw == 0) type = val;
        }
        if (!piece.p) { rc = sqlm_error(SQLM_FORMAT, "%s: piece %d has no text", path, id); goto fail; }
        if (type < 1 || type > 6) {
            rc = sqlm_error(SQLM_FORMAT, "%s: piece %d: type %llu out of range", path, id,
                            (unsigned long long)type);
            goto fail;
        }
        if (score != score) { rc = sqlm_error(SQLM_FORMAT, "%s: piece %d: score is NaN", path, id); goto fail; }
        /* enum values equal enum tok_attr */
        if ((rc = sqlm_vocab_set_token(v, id, (const char *)piece.p, (size_t)(piece.end - piece.p), score,
                                  (int32_t)type)))
            goto fail;
        id++;
    }
    int32_t *ids[4] = {&v->unk, &v->bos, &v->eos, &v->pad};
    for (int k = 0; k < 4; k++) *ids[k] = s.ids[k] >= 0 && s.ids[k] < v->n ? (int32_t)s.ids[k] : -1;
    v->type = VOCAB_SPM;
    v->add_bos = 1;
    v->add_eos = 0;
    v->add_space_prefix = s.add_dummy_prefix != 0;
    v->escape_spaces = s.escape_ws != 0;
    v->byte_fallback = s.byte_fallback != 0;
    v->merges_by_rank = 0;
    v->special_in_text = 0;   /* SentencePiece reads "<s>" in text as text */
    free(d);
    return SQLM_OK;
fail:
    free(d);
    sqlm_vocab_free(v);
    return rc;
}
