/*
 * sample.c - next-token choice from logits: greedy (lowest index on ties),
 * or the logit bias, the repetition penalty (and OpenAI's frequency and presence penalties),
 * temperature, top-k, top-p and min-p, in llama.cpp's order, with a seeded
 * xorshift generator so runs repeat exactly.
 */
#include <math.h>
#include <stdlib.h>

#include "run.h"

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static float rng_float(uint64_t *s) { return (float)(rng_next(s) >> 40) / (float)(1 << 24); }

typedef struct cand { float p; int32_t id; } cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t sqlm_sample_next(const sampler_opts *o, float *logits, int n, const int32_t *hist, int n_hist,
                    uint64_t *rng) {
    /* the logit bias first, as llama.cpp's sampler chain has it */
    for (int i = 0; i < o->n_bias; i++)
        if (o->bias_id[i] >= 0 && o->bias_id[i] < n) logits[o->bias_id[i]] += o->bias[i];
    /* the window is the last repeat_last_n tokens of hist: as in llama.cpp,
     * 0 turns the penalties off and a negative count takes the whole history */
    bool window = o->repeat_last_n != 0;
    bool rep = window && o->repeat_penalty != 1.0f && o->repeat_penalty > 0;
    bool freq = window && (o->freq_penalty != 0 || o->presence_penalty != 0);
    if (rep || freq) {
        int from = o->repeat_last_n > 0 && n_hist > o->repeat_last_n ? n_hist - o->repeat_last_n : 0;
        for (int i = from; i < n_hist; i++) {
            int32_t t = hist[i];
            if (t < 0 || t >= n) continue;
            /* penalise each distinct token once */
            bool seen = false;
            for (int j = from; j < i && !seen; j++) seen = hist[j] == t;
            if (seen) continue;
            if (rep) logits[t] = logits[t] > 0 ? logits[t] / o->repeat_penalty : logits[t] * o->repeat_penalty;
            if (freq) {   /* OpenAI's: minus count x frequency, minus presence once */
                int count = 1;
                for (int j = i + 1; j < n_hist; j++) count += hist[j] == t;
                logits[t] -= (float)count * o->freq_penalty + o->presence_penalty;
            }
        }
    }
    if (o->temp <= 0) {
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand *c = malloc((size_t)n * sizeof *c);
    if (!c) {  /* fall back to greedy rather than fail mid-generation */
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, logits[i]);
    if (mx == -INFINITY) {   /* a bias banned every token: the lowest id, as greedy's tie */
        free(c);
        return 0;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        c[i].id = i;
        c[i].p = expf((logits[i] - mx) / o->temp);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    int k = o->top_k > 0 && o->top_k < n ? o->top_k : n;
    if (o->min_p > 0)
        for (int i = 1; i < k; i++)
            if (c[i].p < o->min_p * c[0].p) { k = i; break; }
    if (o->top_p > 0 && o->top_p < 1) {
        double cum = 0;
        for (int i = 0; i < k; i++) {
            cum += c[i].p;
            if (cum >= o->top_p) { k = i + 1; break; }
        }
    }
    double tot = 0;
    for (int i = 0; i < k; i++) tot += c[i].p;
    double r = rng_float(rng) * tot, acc = 0;
    int32_t pick = c[k - 1].id;
    for (int i = 0; i < k; i++) {
        acc += c[i].p;
        if (r < acc) { pick = c[i].id; break; }
    }
    free(c);
    return pick;
}
