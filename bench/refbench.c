/*
 * refbench.c - the C reference speed baseline of `make bench`: the machine's
 * limit that sqlm's SQL path is compared with.
 *
 *   refbench MODEL.gguf PP TG THREADS [REPS]
 *
 * Runs the reference forward pass in its stored mode (tests/ref/ref.c,
 * ref_init_stored: matrices in their stored type, read in place from the
 * file's mapping, multiplied with sqlm's kernels from src/kern/vec.c, each
 * product's rows split over THREADS threads; built -O3 -march=native).
 * The prompt of PP token ids is evaluated token by token (the reference has
 * no batched product, so its "pp" is decode speed over the prompt), then TG
 * greedy tokens are decoded one by one.  Each of REPS repetitions (default 3)
 * starts a fresh sequence after one untimed warm-up token; the median is
 * printed, in the format of `sqlm bench` and build/llamabench (bench/llamabench.c):
 *
 *   pp128 t=2 123.4 tok/s
 *   tg64 t=2 120.1 tok/s 14.07 GB/s
 *   weights: 117.2 MB per token
 *   peak RSS: 140.0 MB
 *
 * GB/s = bytes of every matrix (output head included) x decode tok/s: the
 * weight bytes a decoded token streams.  The prompt ids are the same as
 * `sqlm bench` uses: (i * 7919 + 1) mod vocab_size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/ref/ref.h"

static long arg_long(const char *what, const char *s, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "refbench: %s: expected an integer in [%ld, %ld], got '%s'\n", what, lo, hi, s);
        exit(1);
    }
    return v;
}

/* Bytes of the matrices one decoded token reads. */
static double weight_bytes(const model *m) {
    double total = 0;
    bool has_out = false;
    for (int i = 0; i < m->n_tensors; i++) {
        const tensor *t = &m->tensors[i];
        if (strcmp(t->name, "output.weight") == 0) has_out = true;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const tensor *t = &m->tensors[i];
        bool matrix = strncmp(t->name, "blk.", 4) == 0 && t->n_dim >= 2 && t->ne[1] > 1;
        bool head = strcmp(t->name, "output.weight") == 0 ||
                    (!has_out && strcmp(t->name, "token_embd.weight") == 0);
        if (matrix || head) total += (double)t->nbytes;
    }
    return total;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: refbench MODEL.gguf PP TG THREADS [REPS]\n");
        return 1;
    }
    int pp = (int)arg_long("PP", argv[2], 0, 1 << 20);
    int tg = (int)arg_long("TG", argv[3], 0, 1 << 20);
    int threads = (int)arg_long("THREADS", argv[4], 1, 256);
    int reps = argc > 5 ? (int)arg_long("REPS", argv[5], 1, 1000) : 3;
    if (pp + tg == 0) {
        fprintf(stderr, "refbench: nothing to time (PP and TG both 0)\n");
        return 1;
    }
    model *m = NULL;
    if (sqlm_model_open(argv[1], NULL, &m)) {
        fprintf(stderr, "refbench: %s\n", sqlm_errmsg());
        return 1;
    }
    int vocab = m->cfg.vocab_size;
    int n_ctx = pp + tg + 1;
    if (m->cfg.seq_len > 0 && n_ctx > m->cfg.seq_len) {
        fprintf(stderr, "refbench: %d + %d tokens exceed the model's context of %d\n", pp, tg,
                m->cfg.seq_len);
        return 1;
    }
    ref_model *r = NULL;
    if (ref_init_stored(&r, m, n_ctx, threads)) {
        fprintf(stderr, "refbench: %s\n", sqlm_errmsg());
        return 1;
    }
    double *t_pp = calloc((size_t)reps, sizeof *t_pp), *t_tg = calloc((size_t)reps, sizeof *t_tg);
    for (int rep = 0; rep < reps; rep++) {
        const float *lg = ref_forward(r, 1 % vocab, 0);   /* warm-up, overwritten below */
        int pos = 0;
        double t0 = sqlm_now();
        for (int i = 0; i < pp; i++) lg = ref_forward(r, (int)(((long)i * 7919 + 1) % vocab), pos++);
        t_pp[rep] = sqlm_now() - t0;
        if (pp == 0) lg = ref_forward(r, 1 % vocab, pos++);   /* decode needs a first token */
        t0 = sqlm_now();
        for (int i = 0; i < tg && lg; i++) lg = ref_forward(r, ref_argmax(lg, vocab), pos++);
        t_tg[rep] = sqlm_now() - t0;
        if (!lg) {
            fprintf(stderr, "refbench: %s\n", sqlm_errmsg());
            return 1;
        }
    }
    double wb = weight_bytes(m);
    if (pp > 0) printf("pp%d t=%d %.2f tok/s\n", pp, threads, pp / sqlm_median(t_pp, reps));
    if (tg > 0) {
        double tps = tg / sqlm_median(t_tg, reps);
        printf("tg%d t=%d %.2f tok/s %.2f GB/s\n", tg, threads, tps, wb * tps / 1e9);
    }
    printf("weights: %.1f MB per token\n", wb / 1e6);
    printf("peak RSS: %.1f MB\n", sqlm_peak_rss() / 1048576.0);
    free(t_pp);
    free(t_tg);
    ref_free(r);
    sqlm_model_free(m);
    return 0;
}
