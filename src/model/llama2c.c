/*
 * llama2c.c - reader for Karpathy's legacy llama2.c checkpoints (the "v0"
 * export of run.c): a 7-int header, then fp32 tensors back to back.  The
 * vocabulary comes from a separate tokenizer.bin via sqlm_llama2c_read_tokenizer().
 *
 * Not supported: the versioned exports (magic "ak42", v1 fp32 / v2 int8).
 * q/k rows are already in interleaved-pair RoPE order, as run.c uses them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "../tok/tok.h"

#define L2C_MAX_DIM (1 << 20)

/*
 * Layout (little-endian):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *     (vocab_size < 0: untied, a separate classifier follows at the end)
 *   float token_embedding[vocab][dim]
 *   float rms_att[L][dim]
 *   float wq[L][dim][dim]          (n_heads * head_size == dim)
 *   float wk[L][kv_dim][dim]       (kv_dim = n_kv_heads * head_size)
 *   float wv[L][kv_dim][dim]
 *   float wo[L][dim][dim]
 *   float rms_ffn[L][dim]
 *   float w1[L][hidden][dim]       (gate)
 *   float w2[L][dim][hidden]       (down)
 *   float w3[L][hidden][dim]       (up)
 *   float rms_final[dim]
 *   float freq_cis_real[seq_len][head_size/2], freq_cis_imag[same]  (unused)
 *   float wcls[vocab][dim]         (only if untied)
 */
enum { L_ATT_NORM, L_Q, L_K, L_V, L_O, L_FFN_NORM, L_GATE, L_DOWN, L_UP, L_N };

int sqlm_llama2c_read(model *m, const char *path, const char *tok_path) {
    model_config *c = &m->cfg;
    int32_t h[7];
    char *tok_try[2] = {NULL, NULL};
    int rc;

    if ((rc = sqlm_model_map(m, path))) return rc;
    const uint8_t *base = m->map;
    size_t size = m->map_size;
    if (size < sizeof h)
        return sqlm_error(SQLM_FORMAT, "%s: truncated: %zu bytes, a llama2.c header needs 28",
                          path, size);
    memcpy(h, base, sizeof h);
    if (memcmp(base, "ak42", 4) == 0)
        return sqlm_error(SQLM_UNSUPPORTED, "%s: versioned llama2.c export (magic ak42) is not "
                          "supported, only the legacy format", path);
    static const char *const field[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        int64_t v = i == 5 ? (h[i] < 0 ? -(int64_t)h[i] : h[i]) : h[i];
        if (v <= 0 || v > L2C_MAX_DIM)
            return sqlm_error(SQLM_FORMAT, "%s: header field %s: %d out of range (1..%d; bad "
                              "magic or not a llama2.c checkpoint?)", path, field[i], (int)h[i],
                              L2C_MAX_DIM);
    }
    int32_t dim = h[0], hidden = h[1], n_layer = h[2], n_head = h[3], n_kv = h[4];
    int32_t vocab_size = h[5] < 0 ? -h[5] : h[5], seq_len = h[6];
    bool tied = h[5] > 0;
    if (dim % n_head != 0)
        return sqlm_error(SQLM_FORMAT, "%s: header field n_heads: %d does not divide dim %d",
                          path, n_head, dim);
    if (n_kv > n_head || n_head % n_kv != 0)
        return sqlm_error(SQLM_FORMAT, "%s: header field n_kv_heads: %d does not divide n_heads "
                          "%d", path, n_kv, n_head);
    int32_t head_dim = dim / n_head, kv_dim = n_kv * head_dim;
    if (head_dim % 2)
        return sqlm_error(SQLM_FORMAT, "%s: header field dim: head size %d is odd", path, head_dim);

    /* Per-layer tensor shapes {ne0, ne1} and canonical suffixes, in file order. */
    const struct { const char *suffix; int64_t ne0, ne1; } lt[L_N] = {
        [L_ATT_NORM] = {"attn_norm.weight", dim, 0},
        [L_Q] = {"attn_q.weight", dim, dim},
        [L_K] = {"attn_k.weight", dim, kv_dim},
        [L_V] = {"attn_v.weight", dim, kv_dim},
        [L_O] = {"attn_output.weight", dim, dim},
        [L_FFN_NORM] = {"ffn_norm.weight", dim, 0},
        [L_GATE] = {"ffn_gate.weight", dim, hidden},
        [L_DOWN] = {"ffn_down.weight", hidden, dim},
        [L_UP] = {"ffn_up.weight", dim, hidden},
    };
    static const int order[L_N] = {L_ATT_NORM, L_Q, L_K, L_V, L_O, L_FFN_NORM,
                                   L_GATE, L_DOWN, L_UP};

    /* Expected size, overflow-checked: every header value is <= 2^20, so each
     * product of two fits in 64 bits; the sums and the * n_layer are checked. */
    uint64_t per_layer = 0, floats = 0, want = 0;
    for (int i = 0; i < L_N; i++) per_layer += (uint64_t)lt[i].ne0 * (lt[i].ne1 ? lt[i].ne1 : 1);
    bool ok = !__builtin_mul_overflow(per_layer, (uint64_t)n_layer, &floats) &&
              !__builtin_add_overflow(floats, (uint64_t)vocab_size * dim * (tied ? 1 : 2), &floats) &&
              !__builtin_add_overflow(floats, (uint64_t)dim, &floats) &&
              !__builtin_add_overflow(floats, (uint64_t)seq_len * (uint64_t)head_dim, &floats) &&
              !__builtin_mul_overflow(floats, (uint64_t)4, &want) &&
              !__builtin_add_overflow(want, (uint64_t)28, &want);
    if (!ok || want != size)
        return sqlm_error(SQLM_FORMAT, "%s: file size %zu bytes, expected %llu from the header "
                          "(%s)", path, size, ok ? (unsigned long long)want : 0ull,
                          !ok || want > size ? "truncated" : "size mismatch");

    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = dim;
    c->hidden_dim = hidden;
    c->n_layer = n_layer;
    c->n_head = n_head;
    c->n_head_kv = n_kv;
    c->head_dim = head_dim;
    c->vocab_size = vocab_size;
    c->seq_len = seq_len;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_interleaved = 1;
    c->tied = tied;
    c->qkv_bias = 0;

    /* Walk the file in order; sizes were checked above, so views stay inside. */
    const uint8_t *p = base + 28;
    char name[96];
    int64_t ne[2];
#define ADD(nm, a, b)                                                                     \
    do {                                                                                   \
        ne[0] = (a);                                                                       \
        ne[1] = (b);                                                                       \
        size_t nb_ = (size_t)(a) * (size_t)((b) ? (b) : 1) * 4;                            \
        if ((rc = sqlm_model_add_tensor(m, path, nm, DT_F32, (b) ? 2 : 1, ne, p, nb_))) return rc; \
        p += nb_;                                                                          \
    } while (0)
    ADD("token_embd.weight", dim, vocab_size);
    for (int k = 0; k < L_N; k++) {
        int i = order[k];
        for (int l = 0; l < n_layer; l++) {
            snprintf(name, sizeof name, "blk.%d.%s", l, lt[i].suffix);
            ADD(name, lt[i].ne0, lt[i].ne1);
        }
    }
    ADD("output_norm.weight", dim, 0);
    p += (size_t)seq_len * (size_t)(head_dim / 2) * 2 * 4; /* freq_cis_real, freq_cis_imag */
    if (!tied) ADD("output.weight", dim, vocab_size);
#undef ADD

    /* The tokenizer: tok_path, else tok512.bin or tokenizer.bin beside the checkpoint. */
    const char *tp = tok_path;
    if (!tp) {
        if (!(tok_try[0] = sqlm_model_path_beside(path, "tok512.bin")) ||
            !(tok_try[1] = sqlm_model_path_beside(path, "tokenizer.bin"))) {
            rc = SQLM_NOMEM;
            goto fail;
        }
        tp = access(tok_try[0], R_OK) == 0 ? tok_try[0]
           : access(tok_try[1], R_OK) == 0 ? tok_try[1] : NULL;
        if (!tp) {
            rc = sqlm_error(SQLM_IO, "%s: no tokenizer found (tried %s and %s)", path,
                            tok_try[0], tok_try[1]);
            goto fail;
        }
    }
    rc = sqlm_llama2c_read_tokenizer(&m->voc, tp, vocab_size);
fail:
    free(tok_try[0]);
    free(tok_try[1]);
    return rc;
}
