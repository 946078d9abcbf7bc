/*
 * ref.c - reference forward pass of a Llama-family model, one token at a time.
 *
 * Every weight is dequantized to fp32 up front; matmuls, norms, RoPE angles
 * and attention accumulate in double, so the logits differ from a float64
 * implementation only by float rounding of the stored activations.  Set
 * r->f32_accum for a faster float-accumulating matvec (the speed baseline).
 * Not here: batching, threads, sampling, tokenizers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* ------------------------------------------------------------ kernels */

typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

static inline v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Dot product of n floats, accumulated in double. */
static double dot_f64(const float *a, const float *b, int n) {
    v8d acc0 = {0}, acc1 = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += __builtin_convertvector(load8(a + i), v8d) *
                __builtin_convertvector(load8(b + i), v8d);
        acc1 += __builtin_convertvector(load8(a + i + 8), v8d) *
                __builtin_convertvector(load8(b + i + 8), v8d);
    }
    acc0 += acc1;
    double s = 0;
    for (int k = 0; k < 8; k++) s += acc0[k];
    for (; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Dot product of n floats, accumulated in float (four vector accumulators). */
static float dot_f32(const float *a, const float *b, int n) {
    v8f acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 += load8(a + i) * load8(b + i);
        acc1 += load8(a + i + 8) * load8(b + i + 8);
        acc2 += load8(a + i + 16) * load8(b + i + 16);
        acc3 += load8(a + i + 24) * load8(b + i + 24);
    }
    acc0 += acc1 + acc2 + acc3;
    float s = 0;
    for (int k = 0; k < 8; k++) s += acc0[k];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/*
 * The matmul input as ggml's CPU backend sees it (r->ggml_act): weights of
 * type Q8_0 or Q4_0 are multiplied with the input quantized to Q8_0 blocks
 * (scale max|x|/127 stored as fp16, values x * 127/max|x| rounded half to
 * even, as ggml's x86 quantize_row_q8_0), F16 weights with the input rounded
 * to fp16.  This is what llama.cpp's goldens computed.
 */
static const float *ggml_input(ref_model *r, const float *x, int n, int wdt) {
    if (!r->ggml_act) return x;
    if (wdt == DT_Q8_0 || wdt == DT_Q4_0) {
        for (int b = 0; b < n; b += QK) {
            int len = MIN(QK, n - b);
            float amax = 0;
            for (int i = 0; i < len; i++) amax = fmaxf(amax, fabsf(x[b + i]));
            float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
            float dh = fp16_to_f32(f32_to_fp16(d));
            for (int i = 0; i < len; i++) r->xq[b + i] = dh * rintf(x[b + i] * id);
        }
        return r->xq;
    }
    if (wdt == DT_F16) {
        for (int i = 0; i < n; i++) r->xq[i] = fp16_to_f32(f32_to_fp16(x[i]));
        return r->xq;
    }
    return x;
}

/*
 * out[n_out] = w[n_out][n_in] . x[n_in] (+ bias[n_out] if not NULL); wdt is
 * the dtype the weights had in the file.
 */
static void matvec(ref_model *r, float *out, const float *w, const float *x, const float *bias,
                   int n_in, int n_out, int wdt) {
    x = ggml_input(r, x, n_in, wdt);
    for (int i = 0; i < n_out; i++) {
        const float *row = w + (size_t)i * n_in;
        if (r->f32_accum) {
            out[i] = dot_f32(row, x, n_in) + (bias ? bias[i] : 0.0f);
        } else {
            out[i] = (float)(dot_f64(row, x, n_in) + (bias ? bias[i] : 0.0));
        }
    }
}

/* out = x / sqrt(mean(x^2) + eps) * g; out may equal x. */
static void rmsnorm(float *out, const float *x, const float *g, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = (float)(x[i] * scale * g[i]);
}

/*
 * Rotate each of n_heads head vectors of v by pos * freq.  Interleaved layout
 * pairs (2i, 2i+1) (llama2.c, GGUF); the HF layout pairs (i, i + head_dim/2).
 */
static void rope(const ref_model *r, float *v, int n_heads, int pos) {
    int hd = r->cfg.head_dim, half = hd / 2;
    for (int i = 0; i < half; i++) {
        double angle = pos * r->rope_freq[i];
        double c = cos(angle), s = sin(angle);
        int i0 = r->cfg.rope_interleaved ? 2 * i : i;
        int i1 = r->cfg.rope_interleaved ? 2 * i + 1 : i + half;
        for (int h = 0; h < n_heads; h++) {
            float *p = v + (size_t)h * hd;
            double a = p[i0], b = p[i1];
            p[i0] = (float)(a * c - b * s);
            p[i1] = (float)(a * s + b * c);
        }
    }
}

/*
 * Base frequencies theta^(-2i/head_dim), then Llama-3 scaling (HF rope_type
 * "llama3"): long wavelengths are divided by the factor, short ones kept, and
 * the band between interpolated smoothly.
 */
static void rope_freqs(const model_config *c, double *freq) {
    for (int i = 0; i < c->head_dim / 2; i++) {
        double f = pow(c->rope_theta, -2.0 * i / c->head_dim);
        if (c->rope_scale_factor != 0) {
            double factor = c->rope_scale_factor, lo = c->rope_low_freq_factor;
            double hi = c->rope_high_freq_factor, orig = c->rope_orig_ctx;
            double wavelen = 2 * M_PI / f;
            if (wavelen < orig / hi) {
                /* high frequency: unchanged */
            } else if (wavelen > orig / lo) {
                f /= factor;
            } else {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / factor + smooth * f;
            }
        }
        freq[i] = f;
    }
}

/* ------------------------------------------------------------ forward */

int ref_argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

const float *ref_forward(ref_model *r, int token, int pos) {
    const model_config *c = &r->cfg;
    int dim = c->dim, hd = c->head_dim, hidden = c->hidden_dim;
    int q_dim = c->n_head * hd, kv_dim = c->n_head_kv * hd;
    int group = c->n_head / c->n_head_kv;
    double att_scale = 1.0 / sqrt((double)hd);

    if (token < 0 || token >= c->vocab_size) {
        sqlm_error(SQLM_RANGE, "ref_forward: token %d outside vocabulary of %d", token,
                   c->vocab_size);
        return NULL;
    }
    if (pos < 0 || pos >= r->max_seq) {
        sqlm_error(SQLM_RANGE, "ref_forward: position %d outside cache of %d", pos,
                   r->max_seq);
        return NULL;
    }

    float *x = r->x;
    memcpy(x, r->token_embd + (size_t)token * dim, (size_t)dim * sizeof *x);

    for (int l = 0; l < c->n_layer; l++) {
        const int *wdt = r->wdtype + (size_t)l * REF_W_COUNT;

        /* attention block */
        rmsnorm(r->xb, x, r->attn_norm + (size_t)l * dim, dim, c->norm_eps);
        float *kc = r->key_cache + ((size_t)l * r->max_seq) * kv_dim;
        float *vc = r->value_cache + ((size_t)l * r->max_seq) * kv_dim;
        float *k = kc + (size_t)pos * kv_dim, *v = vc + (size_t)pos * kv_dim;
        matvec(r, r->q, r->wq + (size_t)l * q_dim * dim, r->xb,
               r->bq ? r->bq + (size_t)l * q_dim : NULL, dim, q_dim, wdt[REF_WQ]);
        matvec(r, k, r->wk + (size_t)l * kv_dim * dim, r->xb,
               r->bk ? r->bk + (size_t)l * kv_dim : NULL, dim, kv_dim, wdt[REF_WK]);
        matvec(r, v, r->wv + (size_t)l * kv_dim * dim, r->xb,
               r->bv ? r->bv + (size_t)l * kv_dim : NULL, dim, kv_dim, wdt[REF_WV]);
        rope(r, r->q, c->n_head, pos);
        rope(r, k, c->n_head_kv, pos);

        for (int h = 0; h < c->n_head; h++) {
            const float *qh = r->q + (size_t)h * hd;
            int kvh = h / group;
            double max = -INFINITY, sum = 0;
            for (int t = 0; t <= pos; t++) {
                r->att[t] = dot_f64(qh, kc + (size_t)t * kv_dim + (size_t)kvh * hd, hd) *
                            att_scale;
                if (r->att[t] > max) max = r->att[t];
            }
            for (int t = 0; t <= pos; t++) {
                r->att[t] = exp(r->att[t] - max);
                sum += r->att[t];
            }
            for (int i = 0; i < hd; i++) {
                double acc = 0;
                for (int t = 0; t <= pos; t++)
                    acc += r->att[t] * vc[(size_t)t * kv_dim + (size_t)kvh * hd + i];
                r->xb2[(size_t)h * hd + i] = (float)(acc / sum);
            }
        }
        matvec(r, r->xb, r->wo + (size_t)l * dim * q_dim, r->xb2, NULL, q_dim, dim,
               wdt[REF_WO]);
        for (int i = 0; i < dim; i++) x[i] += r->xb[i];

        /* feed-forward block: down(silu(gate(x)) * up(x)) */
        rmsnorm(r->xb, x, r->ffn_norm + (size_t)l * dim, dim, c->norm_eps);
        matvec(r, r->hb, r->w_gate + (size_t)l * hidden * dim, r->xb, NULL, dim, hidden,
               wdt[REF_WGATE]);
        matvec(r, r->hb2, r->w_up + (size_t)l * hidden * dim, r->xb, NULL, dim, hidden,
               wdt[REF_WUP]);
        for (int i = 0; i < hidden; i++) {
            double g = r->hb[i];
            r->hb[i] = (float)(g / (1.0 + exp(-g)) * r->hb2[i]);
        }
        matvec(r, r->xb, r->w_down + (size_t)l * dim * hidden, r->hb, NULL, hidden, dim,
               wdt[REF_WDOWN]);
        for (int i = 0; i < dim; i++) x[i] += r->xb[i];
    }

    rmsnorm(x, x, r->output_norm, dim, c->norm_eps);
    matvec(r, r->logits, r->output, x, NULL, dim, c->vocab_size, r->out_dtype);
    return r->logits;
}

/* ------------------------------------------------------------ loading */

/*
 * Dequantize tensor name, which must have shape [rows][cols] (ne[0] = cols),
 * into dst and its file dtype into *dtype (if not NULL).
 */
static int load(const model *m, const char *name, int64_t cols, int64_t rows, float *dst,
                int *dtype) {
    const tensor *t = model_find(m, name);
    if (!t) return sqlm_error(SQLM_FORMAT, "%s: tensor %s missing", m->path, name);
    int64_t n = 1;
    for (int d = 0; d < t->n_dim; d++) n *= t->ne[d];
    if (t->ne[0] != cols || n != cols * rows)
        return sqlm_error(SQLM_FORMAT,
                          "%s: tensor %s has shape [%lld x %lld], expected [%lld x %lld]",
                          m->path, name, (long long)t->ne[0], (long long)(n / t->ne[0]),
                          (long long)cols, (long long)rows);
    size_t bytes;
    if (!dtype_row_bytes(t->dtype, (size_t)n, &bytes) || bytes > t->nbytes)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: %zu bytes for %lld %s values",
                          m->path, name, t->nbytes, (long long)n,
                          dtype_name(t->dtype) ? dtype_name(t->dtype) : "?");
    dtype_to_f32(t->dtype, t->data, dst, (size_t)n);
    if (dtype) *dtype = t->dtype;
    return SQLM_OK;
}

/*
 * Load "blk.N.<suffix>" of every layer into dst[n_layer][rows][cols]; the
 * dtypes go to dtype[N * REF_W_COUNT] if dtype is not NULL.
 */
static int load_layers(const model *m, const char *suffix, int64_t cols, int64_t rows,
                       float *dst, int *dtype) {
    for (int l = 0; l < m->cfg.n_layer; l++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
        int rc = load(m, name, cols, rows, dst + (size_t)l * rows * cols,
                      dtype ? dtype + (size_t)l * REF_W_COUNT : NULL);
        if (rc) return rc;
    }
    return SQLM_OK;
}

static float *alloc_f(size_t n, int *rc) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p && *rc == SQLM_OK)
        *rc = sqlm_error(SQLM_NOMEM, "ref: out of memory for %zu floats", n);
    return p;
}

static int check_config(const model_config *c) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layer <= 0 || c->n_head <= 0 ||
        c->n_head_kv <= 0 || c->head_dim <= 0 || c->vocab_size <= 0)
        return sqlm_error(SQLM_FORMAT, "ref: non-positive size in model config");
    if (c->n_head % c->n_head_kv)
        return sqlm_error(SQLM_FORMAT, "ref: n_head %d not a multiple of n_head_kv %d",
                          c->n_head, c->n_head_kv);
    if (c->head_dim % 2)
        return sqlm_error(SQLM_FORMAT, "ref: odd head_dim %d", c->head_dim);
    if (c->rope_scale_factor != 0 &&
        (c->rope_orig_ctx <= 0 || c->rope_low_freq_factor <= 0 ||
         c->rope_high_freq_factor <= c->rope_low_freq_factor))
        return sqlm_error(SQLM_FORMAT, "ref: invalid llama3 rope scaling parameters");
    return SQLM_OK;
}

int ref_init(ref_model **out, const model *m) {
    return ref_init_ctx(out, m, 0);
}

int ref_init_ctx(ref_model **out, const model *m, int max_seq) {
    *out = NULL;
    const model_config *c = &m->cfg;
    int rc = check_config(c);
    if (rc) return rc;
    ref_model *r = calloc(1, sizeof *r);
    if (!r) return sqlm_error(SQLM_NOMEM, "ref: out of memory");
    r->cfg = *c;
    if (max_seq <= 0) max_seq = c->seq_len > 0 ? MIN(c->seq_len, 4096) : 2048;
    r->max_seq = max_seq;

    size_t L = (size_t)c->n_layer, dim = (size_t)c->dim, hidden = (size_t)c->hidden_dim;
    size_t q_dim = (size_t)c->n_head * c->head_dim, kv_dim = (size_t)c->n_head_kv * c->head_dim;
    size_t vocab = (size_t)c->vocab_size;

    r->token_embd = alloc_f(vocab * dim, &rc);
    r->attn_norm = alloc_f(L * dim, &rc);
    r->wq = alloc_f(L * q_dim * dim, &rc);
    r->wk = alloc_f(L * kv_dim * dim, &rc);
    r->wv = alloc_f(L * kv_dim * dim, &rc);
    if (c->qkv_bias) {
        r->bq = alloc_f(L * q_dim, &rc);
        r->bk = alloc_f(L * kv_dim, &rc);
        r->bv = alloc_f(L * kv_dim, &rc);
    }
    r->wo = alloc_f(L * dim * q_dim, &rc);
    r->ffn_norm = alloc_f(L * dim, &rc);
    r->w_gate = alloc_f(L * hidden * dim, &rc);
    r->w_up = alloc_f(L * hidden * dim, &rc);
    r->w_down = alloc_f(L * dim * hidden, &rc);
    r->output_norm = alloc_f(dim, &rc);
    r->rope_freq = calloc((size_t)c->head_dim / 2, sizeof(double));
    r->x = alloc_f(dim, &rc);
    r->xb = alloc_f(dim, &rc);
    r->xb2 = alloc_f(q_dim, &rc);
    r->q = alloc_f(q_dim, &rc);
    r->hb = alloc_f(hidden, &rc);
    r->hb2 = alloc_f(hidden, &rc);
    r->att = calloc((size_t)max_seq, sizeof(double));
    r->xq = alloc_f(MAX(MAX(dim, q_dim), hidden), &rc);
    r->logits = alloc_f(vocab, &rc);
    r->wdtype = calloc(L * REF_W_COUNT, sizeof *r->wdtype);
    r->key_cache = alloc_f(L * max_seq * kv_dim, &rc);
    r->value_cache = alloc_f(L * max_seq * kv_dim, &rc);
    if (!rc && (!r->rope_freq || !r->att || !r->wdtype)) rc = sqlm_error(SQLM_NOMEM, "ref: out of memory");
    if (rc) goto fail;

    /*
     * The output head: output.weight unless the model is tied; a tied model
     * may carry its embedding under either name (HF keeps only lm_head).
     */
    bool has_embd = model_find(m, "token_embd.weight") != NULL;
    bool has_out = model_find(m, "output.weight") != NULL;
    if ((rc = load(m, has_embd || !has_out ? "token_embd.weight" : "output.weight", (int64_t)dim,
                   (int64_t)vocab, r->token_embd, &r->out_dtype)))
        goto fail;
    if (!c->tied && has_out && has_embd) {
        if (!(r->output = alloc_f(vocab * dim, &rc))) goto fail;
        if ((rc = load(m, "output.weight", (int64_t)dim, (int64_t)vocab, r->output,
                       &r->out_dtype)))
            goto fail;
    } else {
        r->output = r->token_embd;
    }
    int *wdt = r->wdtype;
    if ((rc = load(m, "output_norm.weight", (int64_t)dim, 1, r->output_norm, NULL)) ||
        (rc = load_layers(m, "attn_norm.weight", dim, 1, r->attn_norm, NULL)) ||
        (rc = load_layers(m, "attn_q.weight", dim, q_dim, r->wq, wdt + REF_WQ)) ||
        (rc = load_layers(m, "attn_k.weight", dim, kv_dim, r->wk, wdt + REF_WK)) ||
        (rc = load_layers(m, "attn_v.weight", dim, kv_dim, r->wv, wdt + REF_WV)) ||
        (rc = load_layers(m, "attn_output.weight", q_dim, dim, r->wo, wdt + REF_WO)) ||
        (rc = load_layers(m, "ffn_norm.weight", dim, 1, r->ffn_norm, NULL)) ||
        (rc = load_layers(m, "ffn_gate.weight", dim, hidden, r->w_gate, wdt + REF_WGATE)) ||
        (rc = load_layers(m, "ffn_up.weight", dim, hidden, r->w_up, wdt + REF_WUP)) ||
        (rc = load_layers(m, "ffn_down.weight", hidden, dim, r->w_down, wdt + REF_WDOWN)))
        goto fail;
    if (c->qkv_bias &&
        ((rc = load_layers(m, "attn_q.bias", q_dim, 1, r->bq, NULL)) ||
         (rc = load_layers(m, "attn_k.bias", kv_dim, 1, r->bk, NULL)) ||
         (rc = load_layers(m, "attn_v.bias", kv_dim, 1, r->bv, NULL))))
        goto fail;
    rope_freqs(c, r->rope_freq);
    *out = r;
    return SQLM_OK;

fail:
    ref_free(r);
    return rc;
}

void ref_free(ref_model *r) {
    if (!r) return;
    if (r->output != r->token_embd) free(r->output);
    free(r->token_embd);
    free(r->attn_norm);
    free(r->wq);
    free(r->wk);
    free(r->wv);
    free(r->bq);
    free(r->bk);
    free(r->bv);
    free(r->wo);
    free(r->ffn_norm);
    free(r->w_gate);
    free(r->w_up);
    free(r->w_down);
    free(r->output_norm);
    free(r->rope_freq);
    free(r->x);
    free(r->xb);
    free(r->xb2);
    free(r->q);
    free(r->hb);
    free(r->hb2);
    free(r->att);
    free(r->xq);
    free(r->wdtype);
    free(r->logits);
    free(r->key_cache);
    free(r->value_cache);
    free(r);
}
