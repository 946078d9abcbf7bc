/*
 * test-modelfuzz.c - replay the kept model-file fuzz corpora
 * (tests/fuzz/corpus-gguf, -safetensors, -llama2c, -modeldb: the seeds of
 * tests/fuzz/seeds.py and what libFuzzer runs of tests/fuzz/fuzz-model.c
 * added) through the fuzzers' own checks (tests/fuzz/modelfuzz.h): every
 * input is read or refused with a message, a model that is read is used,
 * imported and run.  The seeds themselves must be read and run.  Under ASan
 * (make asan) a leak or a bad access is a failure too.  Run from the
 * repository root.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

static int cur_failed;
#define MODELFUZZ_FAIL(msg)                                                     \
    do {                                                                        \
        fprintf(stderr, "  %s\n", msg);                                         \
        cur_failed = 1;                                                         \
    } while (0)
#include "../fuzz/modelfuzz.h"

#define CORPUS_MAX_INPUT (1 << 20)

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    double t0 = sqlm_now();
    CHECK_EQ(0, modelfuzz_init());
    uint8_t *data = malloc(CORPUS_MAX_INPUT + 1);
    for (int target = 0; target < MF_N; target++) {
        double t1 = sqlm_now();
        char dir[256];
        snprintf(dir, sizeof dir, TESTS_DIR "fuzz/corpus-%s", modelfuzz_names[target]);
        DIR *d = FIXTURE(dir) ? opendir(dir) : NULL;
        char **names = NULL;
        size_t n = 0, cap = 0;
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) names = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        if (d) closedir(d);
        if (n) qsort(names, n, sizeof *names, cmp_str);
        long read0 = modelfuzz_n_read, run0 = modelfuzz_n_run;
        size_t bytes = 0;
        int seeds = 0;
        for (size_t i = 0; i < n; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            FILE *f = fopen(path, "rb");
            CHECK(f != NULL);
            if (!f) continue;
            size_t size = fread(data, 1, CORPUS_MAX_INPUT + 1, f);
            fclose(f);
            CHECK(size <= CORPUS_MAX_INPUT);
            cur_failed = 0;
            long r0 = modelfuzz_n_run;
            modelfuzz_one(target, data, size);
            if (cur_failed) fprintf(stderr, "  ^ %s\n", path);
            CHECK(!cur_failed);
            if (strncmp(names[i], "seed-", 5) == 0) {   /* a seed is a good model */
                seeds++;
                if (modelfuzz_n_run == r0) fprintf(stderr, "  seed %s did not run: %s\n", path, sqlm_errmsg());
                CHECK(modelfuzz_n_run > r0);
            }
            bytes += size;
            free(names[i]);
        }
        free(names);
        printf("%-12s %4zu inputs (%7zu bytes, %d seeds): %4ld models read, %4ld databases decoded; %.2f s\n",
               modelfuzz_names[target], n, bytes, seeds, modelfuzz_n_read - read0, modelfuzz_n_run - run0,
               sqlm_now() - t1);
        CHECK(seeds >= 1);
    }
    free(data);
    modelfuzz_done();
    printf("model fuzz corpora: %.2f s\n", sqlm_now() - t0);
    return TEST_DONE();
}
