/*
 * test-tokfuzz.c - replay the tokenizer fuzz corpus (tests/fuzz/corpus-tokenizer,
 * minimised from libFuzzer runs of tests/fuzz/fuzz-tokenizer.c) through the
 * fuzzer's own checks (tests/fuzz/tokfuzz.h): every real tokenizer must encode
 * each text to ids inside its vocabulary, decode them within bounds and give
 * the text back where every byte has a token; every fuzzed tokenizer file must
 * be read or refused cleanly.  Run from the repository root.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

static const char *cur_file;
static int cur_failed;
#define TOKFUZZ_FAIL(data, size, msg)                                           \
    do {                                                                        \
        (void)(data);                                                           \
        fprintf(stderr, "  %s (%zu bytes): %s\n", cur_file, (size_t)(size), msg); \
        cur_failed = 1;                                                         \
    } while (0)
#include "../fuzz/tokfuzz.h"

#define CORPUS_DIR TESTS_DIR "fuzz/corpus-tokenizer"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    double t0 = sqlm_now();
    int rc = tokfuzz_init();
    CHECK_EQ(0, rc);
    if (rc) return TEST_DONE();
    double t_load = sqlm_now() - t0;

    DIR *d = FIXTURE(CORPUS_DIR) ? opendir(CORPUS_DIR) : NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = realloc(names, (cap = cap ? cap * 2 : 256) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    if (d) closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);

    int replayed = 0, text = 0, files = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, names[i]);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        if (!f) continue;
        uint8_t *data = malloc(TOKFUZZ_MAX_INPUT + 1);
        size_t size = fread(data, 1, TOKFUZZ_MAX_INPUT + 1, f);
        fclose(f);
        CHECK(size <= TOKFUZZ_MAX_INPUT);
        cur_file = names[i];
        cur_failed = 0;
        tokfuzz_one(data, size);
        CHECK(!cur_failed);
        replayed++;
        bytes += size;
        if (size > 0 && data[0] >= 0x80) files++;
        else if (size > 0) text++;
        free(data);
        free(names[i]);
    }
    free(names);
    tokfuzz_done();
    double dt = sqlm_now() - t0;
    printf("%-46s %d inputs (%zu bytes): %d texts (%ld round trips), %d files; "
           "%.2f s (%.2f s loading)\n", "tokenizer fuzz corpus", replayed, bytes, text,
           tokfuzz_n_roundtrip, files, dt, t_load);
    CHECK(replayed >= 50);
    CHECK(text > 0 && files > 0);
    CHECK(tokfuzz_n_roundtrip > 0);
    CHECK(dt < 30.0);
    return TEST_DONE();
}
