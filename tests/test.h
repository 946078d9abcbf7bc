/*
 * test.h - a tiny test harness (chibicc, Redis testhelp.h): CHECK(cond) and
 * CHECK_EQ(exp, got) print the failing expression with its values and count
 * failures; TEST_DONE() prints a summary and returns the exit status.
 * And what the unit tests share: where the fixtures are (a missing one is a
 * counted failure), a temporary folder removed at exit, argmax, NMSE, the
 * largest difference, reading a file or a .npy array, and the goldens'
 * near-tie rule.
 */
#ifndef SQLM_TEST_H
#define SQLM_TEST_H
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The fixtures, relative to the repository root, where the tests run (make
 * check): the shared models and goldens beside the repository, and the data
 * under tests/. */
#define MODELS "../shared/models/"
#define GOLDEN "../shared/golden/"
#define TESTS_DIR "tests/"

static int test_fail, test_pass;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (cond) test_pass++;                                              \
        else { test_fail++;                                                 \
            fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)

#define CHECK_EQ(exp, got)                                                  \
    do {                                                                    \
        long long e_ = (long long)(exp), g_ = (long long)(got);             \
        if (e_ == g_) test_pass++;                                          \
        else { test_fail++;                                                 \
            fprintf(stderr, "%s:%d: FAIL: %s => %lld, expected %s => %lld\n", \
                    __FILE__, __LINE__, #got, g_, #exp, e_); }              \
    } while (0)

#define CHECK_STR(exp, got)                                                 \
    do {                                                                    \
        const char *e_ = (exp), *g_ = (got);                                \
        if (g_ && strcmp(e_, g_) == 0) test_pass++;                         \
        else { test_fail++;                                                 \
            fprintf(stderr, "%s:%d: FAIL: %s => \"%s\", expected \"%s\"\n", \
                    __FILE__, __LINE__, #got, g_ ? g_ : "(null)", e_); }    \
    } while (0)

/* A malloc'd buffer (at least 1 byte) holding the whole file at path; its
 * size in *len, 0 when the file cannot be read. */
static inline uint8_t *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    long n = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    *len = p && n > 0 && fseek(f, 0, SEEK_SET) == 0 && fread(p, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
    if (f) fclose(f);
    return p;
}

/* true when the fixture at path can be read; otherwise a counted failure
 * that names the path (a missing fixture is never a skip). */
#define FIXTURE(path) test_fixture(__FILE__, __LINE__, path)
static inline bool test_fixture(const char *file, int line, const char *path) {
    if (access(path, R_OK) == 0) return true;
    int e = errno;
    test_fail++;
    fprintf(stderr, "%s:%d: FAIL: missing fixture %s (%s; the tests run from the repository root)\n", file, line,
            path, strerror(e));
    return false;
}

/* This process's temporary folder ("" until test_tmpdir()), and the
 * process that made it. */
static inline char *test_tmp_name(void) {
    static char name[64];
    return name;
}
static inline pid_t *test_tmp_owner(void) {
    static pid_t pid;
    return &pid;
}

static inline int test_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* At exit: the folder and all in it removed, by the process that made it
 * (a forked child's exit leaves it). */
static inline void test_tmp_remove(void) {
    char *dir = test_tmp_name();
    if (dir[0] && getpid() == *test_tmp_owner() && nftw(dir, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* A private folder under /tmp, made (mkdtemp) on the first call and removed
 * with its contents at exit; the test exits with failure if it cannot be made. */
static inline const char *test_tmpdir(void) {
    char *dir = test_tmp_name();
    if (!dir[0]) {
        snprintf(dir, 64, "/tmp/sqlm-test-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp /tmp/sqlm-test-XXXXXX");
            exit(1);
        }
        *test_tmp_owner() = getpid();
        atexit(test_tmp_remove);
    }
    return dir;
}

/* test_tmpdir()/name, in one of four static buffers used in turn (so that
 * up to four such paths can be held at once). */
static inline const char *test_tmp_path(const char *name) {
    static char paths[4][512];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", test_tmpdir(), name);
    return p;
}

/* The index of the largest of v[0..n), the lowest on ties (greedy decoding). */
static inline int test_argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Normalised squared error of a against ref: sum (a - ref)^2 / sum ref^2
 * (the plain sum when ref is all zeros). */
static inline double test_nmse(const float *a, const float *ref, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        m += (double)ref[i] * ref[i];
    }
    return m > 0 ? e / m : e;
}

/* The largest |a[i] - b[i]| over n values. */
static inline double test_max_abs_diff(const float *a, const float *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* A float32 C-order .npy of shape (rows, cols), format 1 or 2; malloc'd
 * data, or NULL when the file cannot be read or is not that. */
static inline float *test_read_npy(const char *path, int *rows, int *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char head[12];
    float *data = NULL;
    char *h = NULL;
    if (fread(head, 1, 12, f) != 12 || memcmp(head, "\x93NUMPY", 6) != 0) goto done;
    size_t hlen = head[6] == 1 ? (size_t)(head[8] | head[9] << 8)
                               : (size_t)(head[8] | head[9] << 8 | head[10] << 16 | (size_t)head[11] << 24);
    size_t off = head[6] == 1 ? 10 : 12;
    h = calloc(1, hlen + 1);
    if (!h || fseek(f, (long)off, SEEK_SET) || fread(h, 1, hlen, f) != hlen || !strstr(h, "'<f4'") ||
        strstr(h, "'fortran_order': True") || !strstr(h, "'shape': (") ||
        sscanf(strstr(h, "'shape': (") + 10, "%d, %d", rows, cols) != 2 || *rows <= 0 || *cols <= 0)
        goto done;
    size_t n = (size_t)*rows * (size_t)*cols;
    data = malloc(n * sizeof *data);
    if (data && fread(data, sizeof *data, n, f) != n) {
        free(data);
        data = NULL;
    }
done:
    free(h);
    fclose(f);
    return data;
}

/* golden/README.md's near-tie rule: a greedy run may part from the golden
 * ids only at a step whose top-2 margin in the golden is below
 * TEST_NEAR_TIE, where the golden's engine (llama.cpp, activations rounded
 * to 8 bits) and ours can round the two best tokens apart.
 * test_near_tie_ok() also asks that our own logits lg nearly tie there: the
 * golden token want within TEST_TIE_GAP of our choice got, a bound on what
 * rounding activations another way moves a logit (the reference's Q8_0
 * path: 0.14 on "Lily and Tom went to the park", step 1), where a wrong
 * token of a broken engine is units away.  So every step up to the first
 * difference is checked, the first one included. */
#define TEST_NEAR_TIE 0.01
#define TEST_TIE_GAP 0.25
static inline bool test_near_tie_ok(const char *what, int step, double golden_margin, const float *lg, int got,
                                    int want) {
    double gap = fabs((double)lg[got] - lg[want]);
    bool ok = golden_margin < TEST_NEAR_TIE && gap < TEST_TIE_GAP;
    fprintf(stderr, "  %s: step %d: %d instead of %d, golden margin %.4f (bound %.2f), ours %.4f (bound %.2f)%s\n",
            what, step, got, want, golden_margin, TEST_NEAR_TIE, gap, TEST_TIE_GAP, ok ? "" : ": FAIL");
    return ok;
}

#define TEST_DONE()                                                         \
    (fprintf(stderr, "%s: %d passed, %d failed\n", __FILE__, test_pass, test_fail), \
     test_fail ? 1 : 0)

#endif
