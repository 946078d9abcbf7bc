/*
 * test-sample.c - the sampler (run/sample.c, sqlm_sample_next) against
 * distributions computed by hand on vocabularies of 2 to 5 tokens:
 *   greedy (temperature 0 or below: the highest logit, the lowest id on
 *   ties; penalties still apply); temperature; top-k; top-p (the token that
 *   crosses p is kept); min-p (relative to the most likely token); the
 *   repetition penalty (llama.cpp's: a positive logit divided, a negative one
 *   multiplied, each distinct token once), the frequency and presence
 *   penalties, the repeat_last_n window; the order of the stages (penalties,
 *   temperature, top-k, min-p, top-p); seeded determinism.
 *
 * A stochastic case draws N = 200000 tokens with a fixed seed, each from a
 * fresh copy of the logits (the penalties write into them), and compares
 * every token's frequency f with its expected probability p: |f - p| must be
 * within 4 standard errors, 4 * sqrt(p (1 - p) / N) (at most 0.0045), and a
 * token with p = 0 must never be drawn.  With the seed fixed the draws are
 * the same on every run, so a pass is not luck that may turn.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/run/run.h"
#include "../test.h"

#define N_DRAWS 200000
#define MAX_V 8

/* ln 1, ln 2, ln 3, ln 4: at temperature 1, p = 0.1, 0.2, 0.3, 0.4 (k / 10). */
static float ln1234[4];

/* Every filter and penalty off, a window of 64, seed 1. */
#define OPTS(t) ((sampler_opts){ .temp = (t), .top_p = 1, .repeat_penalty = 1, .repeat_last_n = 64, .seed = 1 })

/* One token from a copy of logits (the sampler may rewrite its logits). */
static int32_t draw_one(const sampler_opts *o, const float *logits, int nv, const int32_t *hist, int nh,
                        uint64_t *rng) {
    float l[MAX_V];
    memcpy(l, logits, sizeof *l * (size_t)nv);
    return sqlm_sample_next(o, l, nv, hist, nh, rng);
}

static int32_t greedy(const sampler_opts *o, const float *logits, int nv, const int32_t *hist, int nh) {
    uint64_t rng = 1;
    return draw_one(o, logits, nv, hist, nh, &rng);
}

/* Draw N_DRAWS tokens and compare their frequencies with want[0..nv). */
static void expect_dist(int line, const char *what, const sampler_opts *o, const float *logits, int nv,
                        const int32_t *hist, int nh, const double *want) {
    long count[MAX_V] = { 0 };
    uint64_t rng = o->seed;
    bool in_range = true;
    for (int i = 0; i < N_DRAWS; i++) {
        int32_t t = draw_one(o, logits, nv, hist, nh, &rng);
        if (t < 0 || t >= nv) in_range = false;
        else count[t]++;
    }
    if (!in_range) {
        test_fail++;
        fprintf(stderr, "%s:%d: FAIL: %s: a token id outside [0, %d)\n", __FILE__, line, what, nv);
    }
    double sum = 0;
    for (int t = 0; t < nv; t++) sum += want[t];
    if (fabs(sum - 1) > 1e-3) {   /* the expected numbers themselves must be a distribution */
        test_fail++;
        fprintf(stderr, "%s:%d: FAIL: %s: expected probabilities sum to %.6f\n", __FILE__, line, what, sum);
    }
    for (int t = 0; t < nv; t++) {
        double f = (double)count[t] / N_DRAWS, p = want[t];
        double tol = 4 * sqrt(p * (1 - p) / N_DRAWS);
        bool ok = p == 0 ? count[t] == 0 : fabs(f - p) <= tol;
        if (ok) test_pass++;
        else {
            test_fail++;
            fprintf(stderr, "%s:%d: FAIL: %s: token %d drawn %.5f of the time, expected %.5f +- %.5f\n",
                    __FILE__, line, what, t, f, p, tol);
        }
    }
}
#define EXPECT_DIST(what, o, logits, nv, hist, nh, ...)                          \
    expect_dist(__LINE__, what, o, logits, nv, hist, nh, (const double[]){ __VA_ARGS__ })

/* ------------------------------------------------------------- greedy */

static void test_greedy(void) {
    const float tie[4] = { 1, 3, 3, 2 };
    sampler_opts o = OPTS(0);
    CHECK_EQ(1, greedy(&o, tie, 4, NULL, 0));          /* ids 1 and 2 tie: the lower wins */
    o.temp = -1;
    CHECK_EQ(1, greedy(&o, tie, 4, NULL, 0));          /* below 0 is greedy too */
    o = OPTS(0);
    o.top_k = 3, o.top_p = 0.1f, o.min_p = 0.9f;       /* the filters do not change greedy */
    CHECK_EQ(1, greedy(&o, tie, 4, NULL, 0));
    const float flat[3] = { 0.5f, 0.5f, 0.5f };
    CHECK_EQ(0, greedy(&OPTS(0), flat, 3, NULL, 0));
    const float masked[3] = { -INFINITY, -INFINITY, -7 };
    CHECK_EQ(2, greedy(&OPTS(0), masked, 3, NULL, 0));
    /* top_k = 1 with a temperature: the greedy token on every draw */
    o = OPTS(1);
    o.top_k = 1;
    EXPECT_DIST("top_k 1, ties", &o, tie, 4, NULL, 0, 0, 1, 0, 0);
    /* greedy does not draw from the generator: greedy steps leave a seeded
     * sequence's later draws as they were */
    uint64_t rng = 99;
    float l[4] = { 1, 3, 3, 2 };
    sqlm_sample_next(&OPTS(0), l, 4, NULL, 0, &rng);
    CHECK_EQ(99, rng);
}

/* ------------------------------------------------------------- temperature */

static void test_temperature(void) {
    /* T = 1: p = exp(ln k) / sum = k / 10 */
    EXPECT_DIST("temp 1", &OPTS(1), ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    /* T = 0.5: exp(2 ln k) = k^2 = 1, 4, 9, 16; sum 30 */
    EXPECT_DIST("temp 0.5", &OPTS(0.5f), ln1234, 4, NULL, 0, 1 / 30.0, 4 / 30.0, 9 / 30.0, 16 / 30.0);
    /* T = 2: exp(ln k / 2) = sqrt k = 1, 1.41421, 1.73205, 2; sum 6.14626 */
    EXPECT_DIST("temp 2", &OPTS(2), ln1234, 4, NULL, 0, 0.162700, 0.230093, 0.281805, 0.325401);
    /* equal logits: uniform; -inf logits are never drawn */
    const float masked[4] = { -INFINITY, 0, 0, -INFINITY };
    EXPECT_DIST("masked", &OPTS(1), masked, 4, NULL, 0, 0, 0.5, 0.5, 0);
    const float flat[4] = { 3, 3, 3, 3 };
    EXPECT_DIST("flat", &OPTS(0.7f), flat, 4, NULL, 0, 0.25, 0.25, 0.25, 0.25);
}

/* ------------------------------------------------------------- top-k */

static void test_top_k(void) {
    sampler_opts o = OPTS(1);
    /* k = 2 keeps ids 3 and 2 (0.4, 0.3), renormalised: 4/7, 3/7 */
    o.top_k = 2;
    EXPECT_DIST("top_k 2", &o, ln1234, 4, NULL, 0, 0, 0, 3 / 7.0, 4 / 7.0);
    /* k = 3: 0.4, 0.3, 0.2 over 0.9 */
    o.top_k = 3;
    EXPECT_DIST("top_k 3", &o, ln1234, 4, NULL, 0, 0, 2 / 9.0, 3 / 9.0, 4 / 9.0);
    /* k at or above the vocabulary: off */
    o.top_k = 4;
    EXPECT_DIST("top_k 4", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    o.top_k = 100;
    EXPECT_DIST("top_k 100", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    /* a tie at the cut: three tokens of logit 1, k = 2 keeps the two lowest ids */
    const float tie[4] = { 1, 0, 1, 1 };
    o.top_k = 2;
    EXPECT_DIST("top_k 2, tie at the cut", &o, tie, 4, NULL, 0, 0.5, 0, 0.5, 0);
}

/* ------------------------------------------------------------- top-p */

static void test_top_p(void) {
    sampler_opts o = OPTS(1);
    /* sorted 0.4, 0.3, 0.2, 0.1: cumulative 0.4, 0.7, 0.9, 1.0 */
    o.top_p = 0.5f;   /* 0.4 < 0.5, 0.7 >= 0.5: the crossing token (id 2) stays: 4/7, 3/7 */
    EXPECT_DIST("top_p 0.5", &o, ln1234, 4, NULL, 0, 0, 0, 3 / 7.0, 4 / 7.0);
    o.top_p = 0.75f;  /* 0.9 crosses: 4/9, 3/9, 2/9 */
    EXPECT_DIST("top_p 0.75", &o, ln1234, 4, NULL, 0, 0, 2 / 9.0, 3 / 9.0, 4 / 9.0);
    o.top_p = 0.35f;  /* the first token alone reaches it */
    EXPECT_DIST("top_p 0.35", &o, ln1234, 4, NULL, 0, 0, 0, 0, 1);
    o.top_p = 1;      /* 1 is off */
    EXPECT_DIST("top_p 1", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    o.top_p = 0;      /* 0 is off too */
    EXPECT_DIST("top_p 0", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    /* exactly on the boundary: four tokens of p = 0.25 (exact in binary),
     * cumulative 0.25, 0.5: reaching p stops, so p = 0.5 keeps two tokens
     * and p = 0.51 three */
    const float flat[4] = { 0, 0, 0, 0 };
    o.top_p = 0.5f;
    EXPECT_DIST("top_p 0.5 on the boundary", &o, flat, 4, NULL, 0, 0.5, 0.5, 0, 0);
    o.top_p = 0.51f;
    EXPECT_DIST("top_p 0.51", &o, flat, 4, NULL, 0, 1 / 3.0, 1 / 3.0, 1 / 3.0, 0);
}

/* ------------------------------------------------------------- min-p */

static void test_min_p(void) {
    sampler_opts o = OPTS(1);
    /* p max 0.4: min_p 0.6 keeps p >= 0.24: 0.4, 0.3 -> 4/7, 3/7 */
    o.min_p = 0.6f;
    EXPECT_DIST("min_p 0.6", &o, ln1234, 4, NULL, 0, 0, 0, 3 / 7.0, 4 / 7.0);
    /* min_p 0.3 keeps p >= 0.12: 0.4, 0.3, 0.2 -> 4/9, 3/9, 2/9 */
    o.min_p = 0.3f;
    EXPECT_DIST("min_p 0.3", &o, ln1234, 4, NULL, 0, 0, 2 / 9.0, 3 / 9.0, 4 / 9.0);
    /* min_p 0.2 keeps p >= 0.08: all four */
    o.min_p = 0.2f;
    EXPECT_DIST("min_p 0.2", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    /* p equal to the threshold is kept: min_p 1 keeps exactly the tokens
     * tied for the top */
    const float tie[3] = { 1, 1, 0 };
    o.min_p = 1;
    EXPECT_DIST("min_p 1", &o, tie, 3, NULL, 0, 0.5, 0.5, 0);
}

/* ------------------------------------------------------------- penalties */

static void test_repeat_penalty(void) {
    sampler_opts o = OPTS(0);
    o.repeat_penalty = 1.1f;
    /* a positive logit is divided: 2.0 / 1.1 = 1.818 < 1.9 */
    const float pos[2] = { 2.0f, 1.9f };
    CHECK_EQ(0, greedy(&o, pos, 2, NULL, 0));
    CHECK_EQ(1, greedy(&o, pos, 2, (const int32_t[]){ 0 }, 1));
    /* a negative logit is multiplied: -1 * 2 = -2 < -1.5 (dividing would give
     * -0.5 and keep id 0 first) */
    const float neg[2] = { -1.0f, -1.5f };
    o.repeat_penalty = 2;
    CHECK_EQ(0, greedy(&o, neg, 2, NULL, 0));
    CHECK_EQ(1, greedy(&o, neg, 2, (const int32_t[]){ 0 }, 1));
    /* each distinct token once: three 0s divide 2.0 by 1.5 once (1.333 >
     * 1.2), not three times (0.593) */
    const float once[2] = { 2.0f, 1.2f };
    o.repeat_penalty = 1.5f;
    CHECK_EQ(0, greedy(&o, once, 2, (const int32_t[]){ 0, 0, 0 }, 3));
    /* 1 and 0 are off */
    o.repeat_penalty = 1;
    CHECK_EQ(0, greedy(&o, pos, 2, (const int32_t[]){ 0 }, 1));
    o.repeat_penalty = 0;
    CHECK_EQ(0, greedy(&o, pos, 2, (const int32_t[]){ 0 }, 1));
    /* ids outside the vocabulary in the history are ignored */
    o.repeat_penalty = 1.1f;
    CHECK_EQ(0, greedy(&o, pos, 2, (const int32_t[]){ -1, 2, 7 }, 3));
    /* with a temperature: logits ln 1 .. ln 4, id 3 repeated, penalty 2:
     * ln 4 / 2 = ln 2, so exp: 1, 2, 3, 2, sum 8 */
    o = OPTS(1);
    o.repeat_penalty = 2;
    EXPECT_DIST("repeat_penalty 2", &o, ln1234, 4, (const int32_t[]){ 3 }, 1, 1 / 8.0, 2 / 8.0, 3 / 8.0, 2 / 8.0);
}

static void test_freq_presence(void) {
    /* four equal logits 0; history 0 1 0 0: id 0 three times, id 1 once.
     * frequency 0.5, presence 0.25: id 0: -(3 x 0.5 + 0.25) = -1.75,
     * id 1: -(0.5 + 0.25) = -0.75, ids 2 and 3: 0.
     * exp: 0.173774, 0.472367, 1, 1; sum 2.646141 */
    const float zero[4] = { 0, 0, 0, 0 };
    const int32_t hist[4] = { 0, 1, 0, 0 };
    sampler_opts o = OPTS(1);
    o.freq_penalty = 0.5f, o.presence_penalty = 0.25f;
    EXPECT_DIST("frequency 0.5, presence 0.25", &o, zero, 4, hist, 4, 0.065671, 0.178512, 0.377909, 0.377909);
    /* presence alone: -1 for ids 0 and 1: exp -1 = 0.367879; sum 2.735759 */
    o.freq_penalty = 0, o.presence_penalty = 1;
    EXPECT_DIST("presence 1", &o, zero, 4, hist, 4, 0.134471, 0.134471, 0.365529, 0.365529);
    /* frequency alone, greedy: id 0 -1.5, id 1 -0.5: id 2 first */
    o = OPTS(0);
    o.freq_penalty = 0.5f;
    CHECK_EQ(2, greedy(&o, zero, 4, hist, 4));
    /* a negative penalty raises a token: id 1 +0.5, id 0 +1.5 */
    o.freq_penalty = -0.5f;
    CHECK_EQ(0, greedy(&o, zero, 4, hist, 4));
    /* penalties with an empty history change nothing */
    o = OPTS(1);
    o.repeat_penalty = 3, o.freq_penalty = 1, o.presence_penalty = 1;
    EXPECT_DIST("penalties, no history", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
}

static void test_window(void) {
    /* repeat_last_n: only the last n tokens of the history count.
     * logits 2.0, 1.9, 0; history 0 2; penalty 1.1: with id 0 penalised,
     * 2.0 / 1.1 = 1.818 < 1.9 */
    const float l[3] = { 2.0f, 1.9f, 0 };
    const int32_t hist[2] = { 0, 2 };
    sampler_opts o = OPTS(0);
    o.repeat_penalty = 1.1f;
    o.repeat_last_n = 1;   /* the window is { 2 }: id 0 keeps 2.0 */
    CHECK_EQ(0, greedy(&o, l, 3, hist, 2));
    o.repeat_last_n = 2;   /* { 0, 2 } */
    CHECK_EQ(1, greedy(&o, l, 3, hist, 2));
    o.repeat_last_n = 64;  /* longer than the history: all of it */
    CHECK_EQ(1, greedy(&o, l, 3, hist, 2));
    o.repeat_last_n = -1;  /* llama.cpp's -1: the whole history (the context) */
    CHECK_EQ(1, greedy(&o, l, 3, hist, 2));
    o.repeat_last_n = 0;   /* llama.cpp's 0: no penalties */
    CHECK_EQ(0, greedy(&o, l, 3, hist, 2));
    o.repeat_penalty = 1, o.presence_penalty = 0.5f;   /* 2.0 - 0.5 < 1.9 */
    CHECK_EQ(0, greedy(&o, l, 3, hist, 2));
    o.repeat_last_n = 2;
    CHECK_EQ(1, greedy(&o, l, 3, hist, 2));

    /* the frequency counts occurrences inside the window only: history
     * 0 0 0 1 0 with a window of 2 is { 1, 0 }: id 0 once, id 1 once;
     * frequency 1 on logits 0: -1, -1, 0, 0; exp 0.367879 twice, sum 2.735759 */
    const float zero[4] = { 0, 0, 0, 0 };
    const int32_t h5[5] = { 0, 0, 0, 1, 0 };
    o = OPTS(1);
    o.freq_penalty = 1;
    o.repeat_last_n = 2;
    EXPECT_DIST("frequency, window 2", &o, zero, 4, h5, 5, 0.134471, 0.134471, 0.365529, 0.365529);
    /* the whole history: id 0 four times (-4), id 1 once (-1):
     * exp 0.018316, 0.367879, 1, 1; sum 2.386195 */
    o.repeat_last_n = 64;
    EXPECT_DIST("frequency, window 64", &o, zero, 4, h5, 5, 0.007676, 0.154170, 0.419077, 0.419077);
}

/* ------------------------------------------------------------- order */

static void test_order(void) {
    /* penalties before temperature: logits 2, 1, presence 1 on id 0 give
     * 1, 1, then T = 0.5 gives 2, 2: even.  (Temperature first would give
     * 4 - 1 = 3 against 2: 0.731, 0.269.) */
    const float two[2] = { 2, 1 };
    sampler_opts o = OPTS(0.5f);
    o.presence_penalty = 1;
    EXPECT_DIST("presence before temperature", &o, two, 2, (const int32_t[]){ 0 }, 1, 0.5, 0.5);

    /* temperature before top-p: at T = 0.5, p = 16, 9, 4, 1 / 30 = 0.533,
     * 0.3, 0.133, 0.033, cumulative 0.533, 0.833: top_p 0.8 keeps two,
     * 16/25, 9/25 (at T = 1 it keeps three: 0.4, 0.7, 0.9) */
    o = OPTS(0.5f);
    o.top_p = 0.8f;
    EXPECT_DIST("temperature before top-p", &o, ln1234, 4, NULL, 0, 0, 0, 9 / 25.0, 16 / 25.0);
    o.temp = 1;
    EXPECT_DIST("top-p at T 1", &o, ln1234, 4, NULL, 0, 0, 2 / 9.0, 3 / 9.0, 4 / 9.0);

    /* temperature before min-p: at T = 0.5, min_p 0.2 keeps p >= 0.2 x 16/30
     * = 3.2/30: 16, 9, 4 over 29 (at T = 1 it keeps all four) */
    o = OPTS(0.5f);
    o.min_p = 0.2f;
    EXPECT_DIST("temperature before min-p", &o, ln1234, 4, NULL, 0, 0, 4 / 29.0, 9 / 29.0, 16 / 29.0);

    /* top-k, min-p and top-p together on 0.1 .. 0.4: top_k 3 drops id 0,
     * min_p 0.6 (p >= 0.24) drops id 1, top_p 0.35 keeps id 3 alone */
    o = OPTS(1);
    o.top_k = 3, o.min_p = 0.6f;
    EXPECT_DIST("top-k then min-p", &o, ln1234, 4, NULL, 0, 0, 0, 3 / 7.0, 4 / 7.0);
    o.top_p = 0.35f;
    EXPECT_DIST("top-k, min-p, top-p", &o, ln1234, 4, NULL, 0, 0, 0, 0, 1);

    /* top-p after top-k cumulates the probabilities of the whole vocabulary
     * (0.4, 0.7), not the ones renormalised over the k kept (4/7 = 0.571):
     * top_k 2, top_p 0.55 keeps both.  (llama.cpp's top-p renormalises
     * over what top-k kept and would keep id 3 alone; this case pins
     * sample.c's choice so that a change to it is seen.) */
    o = OPTS(1);
    o.top_k = 2, o.top_p = 0.55f;
    EXPECT_DIST("top-p after top-k", &o, ln1234, 4, NULL, 0, 0, 0, 3 / 7.0, 4 / 7.0);

    /* the repetition penalty before top-k: penalty 4 on id 3 turns ln 4 into
     * ln 4 / 4 = ln 1.414, so exp: 1, 2, 3, 1.414 and top_k 2 keeps ids 2
     * and 1: 3/5, 2/5 (top-k first would keep ids 3 and 2) */
    o = OPTS(1);
    o.repeat_penalty = 4, o.top_k = 2;
    EXPECT_DIST("repetition penalty before top-k", &o, ln1234, 4, (const int32_t[]){ 3 }, 1, 0, 2 / 5.0, 3 / 5.0, 0);
}

/* ------------------------------------------------------------- seeds */

static void test_seeds(void) {
    enum { N = 1000 };
    static int32_t a[N], b[N], c[N];
    sampler_opts o = OPTS(1);
    uint64_t ra = 7, rb = 7, rc = 8;
    for (int i = 0; i < N; i++) {
        a[i] = draw_one(&o, ln1234, 4, NULL, 0, &ra);
        b[i] = draw_one(&o, ln1234, 4, NULL, 0, &rb);
        c[i] = draw_one(&o, ln1234, 4, NULL, 0, &rc);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);   /* the same seed: the same tokens */
    CHECK_EQ(ra, rb);
    CHECK(memcmp(a, c, sizeof a) != 0);   /* another seed: other tokens */
    CHECK(ra != 7);                       /* the state moves on */
    /* seed 0 is a usable seed, not a stuck generator */
    o.seed = 0;
    EXPECT_DIST("seed 0", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
    o.seed = 0xFFFFFFFFFFFFFFFFull;
    EXPECT_DIST("seed 2^64 - 1", &o, ln1234, 4, NULL, 0, 0.1, 0.2, 0.3, 0.4);
}

int main(void) {
    for (int k = 0; k < 4; k++) ln1234[k] = logf((float)(k + 1));
    test_greedy();
    test_temperature();
    test_top_k();
    test_top_p();
    test_min_p();
    test_repeat_penalty();
    test_freq_presence();
    test_window();
    test_order();
    test_seeds();
    return TEST_DONE();
}
