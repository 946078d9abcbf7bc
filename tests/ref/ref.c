/*
 * ref.c - reference forward pass of a Llama-family model, one token at a time.
 *
 * Every weight is dequantized to fp32 up front; matmuls, norms, RoPE angles
 * and attention accumulate in double, so the logits differ from a float64
 * implementation only by float rounding of the stored activations.  Set
 * r->f32_accum for a faster float-accumulating matvec.
 *
 * ref_init_stored() is the speed baseline instead: matrices kept in their
 * stored type and multiplied with sqlm's kernels on a few threads (the
 * "stored mode" section); everything else (norms, RoPE, attention) is the
 * same code.  Not here: batching, sampling, tokenizers.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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
            float dh = sqlm_fp16_to_f32(sqlm_f32_to_fp16(d));
            for (int i = 0; i < len; i++) r->xq[b + i] = dh * rintf(x[b + i] * id);
        }
        return r->xq;
    }
    if (wdt == DT_F16) {
        for (int i = 0; i < n; i++) r->xq[i] = sqlm_fp16_to_f32(sqlm_f32_to_fp16(x[i]));
        return r->xq;
    }
    /* the other types: the activation type ggml multiplies them with (Q8_0,
     * Q8_1, Q8_K, BF16), rounded by the kernels' own sqlm_vec_quant */
    const int at = sqlm_vec_act_type(wdt);
    if (at != DT_F32 && n % (int)sqlm_dtype_block(at) == 0) {
        uint8_t *q = malloc((size_t)n * 4 + sizeof(block_q8_K));
        if (!q) return x;
        sqlm_vec_quant(at, x, q, (size_t)n);
        for (int i = 0; i < n; i++) {
            switch (at) {
            case DT_Q8_0: { const block_q8_0 *b = (const block_q8_0 *)q + i / QK; r->xq[i] = sqlm_fp16_to_f32(b->d) * b->qs[i % QK]; break; }
            case DT_Q8_1: { const block_q8_1 *b = (const block_q8_1 *)q + i / QK; r->xq[i] = sqlm_fp16_to_f32(b->d) * b->qs[i % QK]; break; }
            case DT_Q8_K: { const block_q8_K *b = (const block_q8_K *)q + i / QK_K; r->xq[i] = b->d * b->qs[i % QK_K]; break; }
            default: { uint16_t h; memcpy(&h, q + 2 * i, 2); r->xq[i] = sqlm_bf16_to_f32(h); break; }
            }
        }
        free(q);
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

/* ------------------------------------------------------- stored mode */

/* One product of a job: rows of w (stored type dtype) times the input. */
typedef struct ref_mat {
    const void *w;
    int dtype;
    int rows;
    size_t row_bytes;
    float *out;
} ref_mat;

/*
 * The pool.  A job is cut into chunks of whole 16-row groups (no two threads
 * write one cache line of an output); the caller and the workers claim
 * chunks from one atomic word that packs (job number, chunk count, next
 * chunk), so a worker that wakes late claims nothing of a job already done
 * and the caller never waits for a thread that is not running.  The caller
 * waits only for chunks claimed and not yet finished.  Idle workers spin a
 * little, then sleep on cv.
 */
struct ref_stored {
    const void **w;          /* [n_layer][REF_W_COUNT] stored matrices */
    const void *out_w;       /* output head */
    const tensor *embd;      /* token embedding, dequantized a row at a time */
    uint8_t *xq[3];          /* the input in each product's activation type (sqlm_vec_quant) */

    int threads;
    pthread_t *tid;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sleepers;            /* under mu */
    bool quit;               /* under mu */
    _Atomic uint64_t claim;  /* job << 32 | n_chunks << 16 | next chunk */
    atomic_int finished;     /* chunks of the current job done */
    uint32_t job;

    /* the current job: n_mat products over one input of n_in values */
    ref_mat mat[3];
    int n_mat, n_in, total_rows, chunk_rows;
    const float *xf;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Rows [lo, hi) of the job's rows laid end to end, product by product. */
static void job_rows(struct ref_stored *st, int lo, int hi) {
    int base = 0;
    for (int i = 0; i < st->n_mat && lo < hi; i++) {
        const ref_mat *m = &st->mat[i];
        int a = MAX(lo, base) - base, b = MIN(hi, base + m->rows) - base;
        if (a < b) {
            const void *x = sqlm_vec_act_type(m->dtype) != DT_F32 ? (const void *)st->xq[i] : st->xf;
            sqlm_vec_matvec(m->dtype, (const char *)m->w + (size_t)a * m->row_bytes, (size_t)(b - a),
                       (size_t)st->n_in, x, m->out + a);
        }
        base += m->rows;
    }
}

/* Claim and run chunks of job `job` until none is left. */
static void job_work(struct ref_stored *st, uint32_t job) {
    uint64_t c = atomic_load_explicit(&st->claim, memory_order_acquire);
    for (;;) {
        uint32_t n = (uint32_t)(c >> 16) & 0xffff, next = (uint32_t)c & 0xffff;
        if ((uint32_t)(c >> 32) != job || next >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&st->claim, &c, c + 1, memory_order_acquire,
                                                   memory_order_acquire))
            continue;
        int lo = (int)next * st->chunk_rows;
        job_rows(st, lo, MIN(lo + st->chunk_rows, st->total_rows));
        atomic_fetch_add_explicit(&st->finished, 1, memory_order_release);
        c = atomic_load_explicit(&st->claim, memory_order_acquire);
    }
}

#define SPIN_LIMIT 50000     /* pause loops before an idle worker sleeps (well under 1 ms) */

static void *worker(void *arg) {
    struct ref_stored *st = arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t job;
        int spins = 0;
        while ((job = (uint32_t)(atomic_load_explicit(&st->claim, memory_order_acquire) >> 32)) == seen) {
            if (++spins < SPIN_LIMIT) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&st->mu);
            st->sleepers++;
            while ((job = (uint32_t)(atomic_load_explicit(&st->claim, memory_order_acquire) >> 32)) == seen &&
                   !st->quit)
                pthread_cond_wait(&st->cv, &st->mu);
            st->sleepers--;
            bool quit = st->quit;
            pthread_mutex_unlock(&st->mu);
            if (quit) return NULL;
            break;
        }
        seen = job;
        job_work(st, job);
    }
}

/* Run the job set up in st on every thread; returns when all are done. */
static void job_run(struct ref_stored *st) {
    st->total_rows = 0;
    for (int i = 0; i < st->n_mat; i++) {
        st->total_rows += st->mat[i].rows;
        const int at = sqlm_vec_act_type(st->mat[i].dtype);
        if (at != DT_F32) sqlm_vec_quant(at, st->xf, st->xq[i], (size_t)st->n_in);
    }
    if (st->n_started == 0) {
        job_rows(st, 0, st->total_rows);
        return;
    }
    /* about four chunks a thread, whole 16-row groups, fewer than 2^16 */
    int groups = (st->total_rows + 15) / 16;
    int per = MAX(1, groups / (st->threads * 4));
    while ((groups + per - 1) / per > 0xffff) per++;
    st->chunk_rows = per * 16;
    uint32_t n_chunks = (uint32_t)((st->total_rows + st->chunk_rows - 1) / st->chunk_rows);
    uint32_t job = ++st->job;
    if (job == 0) job = ++st->job;   /* 0 is what workers saw first */
    atomic_store_explicit(&st->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&st->claim, (uint64_t)job << 32 | (uint64_t)n_chunks << 16,
                          memory_order_release);
    pthread_mutex_lock(&st->mu);
    if (st->sleepers) pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    job_work(st, job);
    int spins = 0;
    while (atomic_load_explicit(&st->finished, memory_order_acquire) < (int)n_chunks)
        if (++spins % 1024 == 0) sched_yield();
        else cpu_relax();
}

static void pool_stop(struct ref_stored *st) {
    if (st->n_started == 0) return;
    pthread_mutex_lock(&st->mu);
    st->quit = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    /* a spinning worker sees quit when it stops spinning (well under 1 ms) */
    for (int i = 0; i < st->n_started; i++) pthread_join(st->tid[i], NULL);
    st->n_started = 0;
}

/* ------------------------------------------------------------ forward */

/* One product of a layer (or of the output head) that reads a shared input. */
typedef struct ref_prod {
    int which;               /* REF_WQ..., ignored for the output head */
    float *out;
    const float *bias;       /* or NULL */
    int n_out;
} ref_prod;

/* The fp32 copy of matrix `which` of layer l (l < 0: the output head). */
static const float *f32_matrix(const ref_model *r, int l, int which, size_t size) {
    if (l < 0) return r->output;
    const float *base = which == REF_WQ ? r->wq : which == REF_WK ? r->wk : which == REF_WV ? r->wv
                      : which == REF_WO ? r->wo : which == REF_WGATE ? r->w_gate
                      : which == REF_WUP ? r->w_up : r->w_down;
    return base + (size_t)l * size;
}

/*
 * out_i = W_i . x (+ bias_i) for the n products p of layer l (l < 0: the
 * output head); x has n_in values.  The stored mode runs them as one job.
 */
static void products(ref_model *r, int l, const float *x, int n_in, int n, const ref_prod *p) {
    if (!r->st) {
        for (int i = 0; i < n; i++) {
            int wdt = l < 0 ? r->out_dtype : r->wdtype[(size_t)l * REF_W_COUNT + p[i].which];
            matvec(r, p[i].out, f32_matrix(r, l, p[i].which, (size_t)p[i].n_out * n_in), x,
                   p[i].bias, n_in, p[i].n_out, wdt);
        }
        return;
    }
    struct ref_stored *st = r->st;
    st->n_mat = n;
    st->n_in = n_in;
    st->xf = x;
    for (int i = 0; i < n; i++) {
        ref_mat *m = &st->mat[i];
        m->dtype = l < 0 ? r->out_dtype : r->wdtype[(size_t)l * REF_W_COUNT + p[i].which];
        m->w = l < 0 ? st->out_w : st->w[(size_t)l * REF_W_COUNT + p[i].which];
        m->rows = p[i].n_out;
        sqlm_dtype_row_bytes(m->dtype, (size_t)n_in, &m->row_bytes);
        m->out = p[i].out;
    }
    job_run(st);
    for (int i = 0; i < n; i++)
        if (p[i].bias)
            for (int j = 0; j < p[i].n_out; j++) p[i].out[j] += p[i].bias[j];
}

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
    if (r->st)
        sqlm_dtype_to_f32(r->st->embd->dtype, sqlm_tensor_row(r->st->embd, token), x, (size_t)dim);
    else
        memcpy(x, r->token_embd + (size_t)token * dim, (size_t)dim * sizeof *x);

    for (int l = 0; l < c->n_layer; l++) {
        /* attention block */
        rmsnorm(r->xb, x, r->attn_norm + (size_t)l * dim, dim, c->norm_eps);
        float *kc = r->key_cache + ((size_t)l * r->max_seq) * kv_dim;
        float *vc = r->value_cache + ((size_t)l * r->max_seq) * kv_dim;
        float *k = kc + (size_t)pos * kv_dim, *v = vc + (size_t)pos * kv_dim;
        products(r, l, r->xb, dim, 3, (ref_prod[]){
            { REF_WQ, r->q, r->bq ? r->bq + (size_t)l * q_dim : NULL, q_dim },
            { REF_WK, k, r->bk ? r->bk + (size_t)l * kv_dim : NULL, kv_dim },
            { REF_WV, v, r->bv ? r->bv + (size_t)l * kv_dim : NULL, kv_dim } });
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
        products(r, l, r->xb2, q_dim, 1, (ref_prod[]){ { REF_WO, r->xb, NULL, dim } });
        for (int i = 0; i < dim; i++) x[i] += r->xb[i];

        /* feed-forward block: down(silu(gate(x)) * up(x)) */
        rmsnorm(r->xb, x, r->ffn_norm + (size_t)l * dim, dim, c->norm_eps);
        products(r, l, r->xb, dim, 2, (ref_prod[]){ { REF_WGATE, r->hb, NULL, hidden },
                                                    { REF_WUP, r->hb2, NULL, hidden } });
        for (int i = 0; i < hidden; i++) {
            double g = r->hb[i];
            r->hb[i] = (float)(g / (1.0 + exp(-g)) * r->hb2[i]);
        }
        products(r, l, r->hb, hidden, 1, (ref_prod[]){ { REF_WDOWN, r->xb, NULL, dim } });
        for (int i = 0; i < dim; i++) x[i] += r->xb[i];
    }

    rmsnorm(x, x, r->output_norm, dim, c->norm_eps);
    products(r, -1, x, dim, 1, (ref_prod[]){ { 0, r->logits, NULL, c->vocab_size } });
    return r->logits;
}

/* ------------------------------------------------------------ loading */

/* Tensor name, checked to have shape [rows][cols] (ne[0] = cols) and its bytes. */
static int find_tensor(const model *m, const char *name, int64_t cols, int64_t rows,
                       const tensor **out) {
    const tensor *t = sqlm_model_find(m, name);
    if (!t) return sqlm_error(SQLM_FORMAT, "%s: tensor %s missing", m->path, name);
    int64_t n = 1;
    for (int d = 0; d < t->n_dim; d++) n *= t->ne[d];
    if (t->ne[0] != cols || n != cols * rows)
        return sqlm_error(SQLM_FORMAT,
                          "%s: tensor %s has shape [%lld x %lld], expected [%lld x %lld]",
                          m->path, name, (long long)t->ne[0], (long long)(n / t->ne[0]),
                          (long long)cols, (long long)rows);
    size_t bytes;
    if (!sqlm_dtype_row_bytes(t->dtype, (size_t)n, &bytes) || bytes > t->nbytes)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: %zu bytes for %lld %s values",
                          m->path, name, t->nbytes, (long long)n,
                          sqlm_dtype_name(t->dtype) ? sqlm_dtype_name(t->dtype) : "?");
    *out = t;
    return SQLM_OK;
}

/*
 * Dequantize tensor name, which must have shape [rows][cols] (ne[0] = cols),
 * into dst and its file dtype into *dtype (if not NULL).
 */
static int load(const model *m, const char *name, int64_t cols, int64_t rows, float *dst,
                int *dtype) {
    const tensor *t = NULL;
    int rc = find_tensor(m, name, cols, rows, &t);
    if (rc) return rc;
    sqlm_dtype_to_f32(t->dtype, t->data, dst, (size_t)(cols * rows));
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

/*
 * Matrix "blk.N.<suffix>" of every layer (rows x cols): dequantized into
 * dst[n_layer][rows][cols], or in the stored mode only checked and
 * remembered.  Its dtypes go to r->wdtype[N * REF_W_COUNT + which].
 */
static int load_matrices(ref_model *r, const model *m, const char *suffix, int which,
                         int64_t cols, int64_t rows, float *dst) {
    if (!r->st) return load_layers(m, suffix, cols, rows, dst, r->wdtype + which);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        char name[96];
        const tensor *t = NULL;
        snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
        int rc = find_tensor(m, name, cols, rows, &t);
        if (rc) return rc;
        if (t->dtype == DT_BF16)
            return sqlm_error(SQLM_UNSUPPORTED, "%s: %s is BF16, which sqlm's kernels do not "
                              "multiply", m->path, name);
        r->st->w[(size_t)l * REF_W_COUNT + which] = t->data;
        r->wdtype[(size_t)l * REF_W_COUNT + which] = t->dtype;
    }
    return SQLM_OK;
}

/* Both modes: threads == 0 dequantizes every matrix (the oracle). */
static int init(ref_model **out, const model *m, int max_seq, int threads) {
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
    bool stored = threads > 0;

    if (stored) {
        struct ref_stored *st = calloc(1, sizeof *st);
        if (!st) {
            free(r);
            return sqlm_error(SQLM_NOMEM, "ref: out of memory");
        }
        r->st = st;
        st->threads = threads;
        pthread_mutex_init(&st->mu, NULL);
        pthread_cond_init(&st->cv, NULL);
        st->w = calloc(L * REF_W_COUNT, sizeof *st->w);
        st->tid = calloc((size_t)threads, sizeof *st->tid);
        for (int i = 0; i < 3; i++) st->xq[i] = calloc((size_t)MAX(MAX(dim, q_dim), hidden) * 4 + sizeof(block_q8_K), 1);
        if (!st->w || !st->tid || !st->xq[0] || !st->xq[1] || !st->xq[2]) rc = sqlm_error(SQLM_NOMEM, "ref: out of memory");
    } else {
        r->token_embd = alloc_f(vocab * dim, &rc);
        r->wq = alloc_f(L * q_dim * dim, &rc);
        r->wk = alloc_f(L * kv_dim * dim, &rc);
        r->wv = alloc_f(L * kv_dim * dim, &rc);
        r->wo = alloc_f(L * dim * q_dim, &rc);
        r->w_gate = alloc_f(L * hidden * dim, &rc);
        r->w_up = alloc_f(L * hidden * dim, &rc);
        r->w_down = alloc_f(L * dim * hidden, &rc);
    }
    r->attn_norm = alloc_f(L * dim, &rc);
    if (c->qkv_bias) {
        r->bq = alloc_f(L * q_dim, &rc);
        r->bk = alloc_f(L * kv_dim, &rc);
        r->bv = alloc_f(L * kv_dim, &rc);
    }
    r->ffn_norm = alloc_f(L * dim, &rc);
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
    bool has_embd = sqlm_model_find(m, "token_embd.weight") != NULL;
    bool has_out = sqlm_model_find(m, "output.weight") != NULL;
    const char *embd_name = has_embd || !has_out ? "token_embd.weight" : "output.weight";
    bool own_output = !c->tied && has_out && has_embd;
    if (stored) {
        const tensor *te = NULL, *to = NULL;
        if ((rc = find_tensor(m, embd_name, (int64_t)dim, (int64_t)vocab, &te)) ||
            (rc = find_tensor(m, own_output ? "output.weight" : embd_name, (int64_t)dim,
                              (int64_t)vocab, &to)))
            goto fail;
        if (to->dtype == DT_BF16) {
            rc = sqlm_error(SQLM_UNSUPPORTED, "%s: the output head is BF16, which sqlm's "
                            "kernels do not multiply", m->path);
            goto fail;
        }
        r->st->embd = te;
        r->st->out_w = to->data;
        r->out_dtype = to->dtype;
    } else {
        if ((rc = load(m, embd_name, (int64_t)dim, (int64_t)vocab, r->token_embd, &r->out_dtype)))
            goto fail;
        if (own_output) {
            if (!(r->output = alloc_f(vocab * dim, &rc))) goto fail;
            if ((rc = load(m, "output.weight", (int64_t)dim, (int64_t)vocab, r->output,
                           &r->out_dtype)))
                goto fail;
        } else {
            r->output = r->token_embd;
        }
    }
    if ((rc = load(m, "output_norm.weight", (int64_t)dim, 1, r->output_norm, NULL)) ||
        (rc = load_layers(m, "attn_norm.weight", dim, 1, r->attn_norm, NULL)) ||
        (rc = load_matrices(r, m, "attn_q.weight", REF_WQ, dim, q_dim, r->wq)) ||
        (rc = load_matrices(r, m, "attn_k.weight", REF_WK, dim, kv_dim, r->wk)) ||
        (rc = load_matrices(r, m, "attn_v.weight", REF_WV, dim, kv_dim, r->wv)) ||
        (rc = load_matrices(r, m, "attn_output.weight", REF_WO, q_dim, dim, r->wo)) ||
        (rc = load_layers(m, "ffn_norm.weight", dim, 1, r->ffn_norm, NULL)) ||
        (rc = load_matrices(r, m, "ffn_gate.weight", REF_WGATE, dim, hidden, r->w_gate)) ||
        (rc = load_matrices(r, m, "ffn_up.weight", REF_WUP, dim, hidden, r->w_up)) ||
        (rc = load_matrices(r, m, "ffn_down.weight", REF_WDOWN, hidden, dim, r->w_down)))
        goto fail;
    if (c->qkv_bias &&
        ((rc = load_layers(m, "attn_q.bias", q_dim, 1, r->bq, NULL)) ||
         (rc = load_layers(m, "attn_k.bias", kv_dim, 1, r->bk, NULL)) ||
         (rc = load_layers(m, "attn_v.bias", kv_dim, 1, r->bv, NULL))))
        goto fail;
    rope_freqs(c, r->rope_freq);

    /* the workers last: nothing above can fail after they start */
    for (int t = 1; stored && t < threads; t++) {
        if (pthread_create(&r->st->tid[t - 1], NULL, worker, r->st)) {
            rc = sqlm_error(SQLM_ERROR, "ref: cannot start thread %d of %d", t + 1, threads);
            goto fail;
        }
        r->st->n_started++;
    }
    *out = r;
    return SQLM_OK;

fail:
    ref_free(r);
    return rc;
}

int ref_init_ctx(ref_model **out, const model *m, int max_seq) {
    return init(out, m, max_seq, 0);
}

int ref_init_stored(ref_model **out, const model *m, int max_seq, int threads) {
    if (threads < 1 || threads > 256)
        return sqlm_error(SQLM_RANGE, "ref: %d threads (1..256)", threads);
    return init(out, m, max_seq, threads);
}

void ref_free(ref_model *r) {
    if (!r) return;
    if (r->st) {
        pool_stop(r->st);
        pthread_mutex_destroy(&r->st->mu);
        pthread_cond_destroy(&r->st->cv);
        free(r->st->w);
        free(r->st->tid);
        for (int i = 0; i < 3; i++) free(r->st->xq[i]);
        free(r->st);
    }
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
