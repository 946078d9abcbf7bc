/*
 * llamabench.c - llama.cpp as the native peer of `sqlm bench`: the library
 * built from ../shared/peers/ by scripts/build-llamacpp.sh (CPU, -O3, the
 * machine's own SIMD), called through its C API.
 *
 *   llamabench MODEL.gguf PP TG THREADS [REPS]
 *
 * Loads the GGUF with mmap, a context of PP + TG + 1 positions, one
 * sequence, THREADS threads for decode and prompt, llama.cpp's default KV
 * cache type (F16) and attention: the settings a user of llama-cli gets.
 * Then REPS times (default 3), each a fresh sequence after one untimed
 * warm-up token: the prompt of PP token ids in one batch (pp), then TG
 * tokens decoded one at a time, each the greedy pick of the previous logits
 * (tg; an end-of-generation pick does not stop it).  The prompt ids are
 * (i * 7919 + 1) mod vocab_size, as in `sqlm bench` and bench/refbench.c.
 * Prints the medians in their format:
 *
 *   pp128 t=2 456.7 tok/s
 *   tg64 t=2 130.2 tok/s
 *   peak RSS: 210.3 MB
 *
 * Exits 2 with "llama.cpp: ..." on stderr when the model cannot be loaded
 * or a decode fails.  A process of its own, so that a memory benchmark can
 * run it under a cgroup as it runs sqlm.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <llama.h>

static long arg_long(const char *what, const char *s, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "llamabench: %s: expected an integer in [%ld, %ld], got '%s'\n", what, lo, hi, s);
        exit(1);
    }
    return v;
}

static void fail(const char *msg, const char *detail) {
    fprintf(stderr, "llama.cpp: %s%s\n", msg, detail ? detail : "");
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Keep llama.cpp's log quiet but for errors. */
static void log_errors(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static void decode(struct llama_context *ctx, llama_token *ids, int n) {
    int rc = llama_decode(ctx, llama_batch_get_one(ids, n));
    if (rc) {
        char why[32];
        snprintf(why, sizeof why, "%d", rc);
        fail("llama_decode failed with status ", why);
    }
}

static llama_token argmax(const float *logits, int n) {
    llama_token best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: llamabench MODEL.gguf PP TG THREADS [REPS]\n");
        return 1;
    }
    int pp = (int)arg_long("PP", argv[2], 0, 1 << 20), tg = (int)arg_long("TG", argv[3], 0, 1 << 20);
    int threads = (int)arg_long("THREADS", argv[4], 1, 1024);
    int reps = argc > 5 ? (int)arg_long("REPS", argv[5], 1, 1000) : 3;
    if (pp + tg == 0) fail("nothing to time (PP and TG both 0)", NULL);

    llama_log_set(log_errors, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) fail("cannot load ", argv[1]);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(pp + tg + 1);
    cp.n_batch = cp.n_ubatch = (uint32_t)(pp > 0 ? pp : 1);
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) fail("cannot make a context for ", argv[1]);
    int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    llama_token *ids = malloc(sizeof *ids * (pp + 1));
    double *t_pp = malloc(sizeof *t_pp * reps), *t_tg = malloc(sizeof *t_tg * reps);
    if (!ids || !t_pp || !t_tg) fail("out of memory", NULL);
    for (int i = 0; i < pp; i++) ids[i] = (llama_token)(((long)i * 7919 + 1) % vocab);

    for (int r = 0; r < reps; r++) {
        llama_token warm = 1 % vocab;
        llama_kv_cache_clear(ctx);
        decode(ctx, &warm, 1);
        llama_kv_cache_clear(ctx);
        double t0 = now();
        if (pp > 0) decode(ctx, ids, pp);
        t_pp[r] = now() - t0;
        /* the first step decodes token 1 (a stand-in for the prompt's
         * last pick), the others the picks: tg decodes in all */
        t0 = now();
        llama_token tok = 1 % vocab;
        for (int i = 0; i < tg; i++) {
            decode(ctx, &tok, 1);
            tok = argmax(llama_get_logits_ith(ctx, -1), vocab);
        }
        t_tg[r] = now() - t0;
    }
    if (pp > 0) printf("pp%d t=%d %.2f tok/s\n", pp, threads, pp / median(t_pp, reps));
    if (tg > 0) printf("tg%d t=%d %.2f tok/s\n", tg, threads, tg / median(t_tg, reps));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS: %.1f MB\n", ru.ru_maxrss / 1024.0);

    free(ids);
    free(t_pp);
    free(t_tg);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
