/*
 * test.h - a tiny test harness (chibicc, Redis testhelp.h): CHECK(cond) and
 * CHECK_EQ(exp, got) print the failing expression with its values and count
 * failures; TEST_DONE() prints a summary and returns the exit status.
 */
#ifndef SQLM_TEST_H
#define SQLM_TEST_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define TEST_DONE()                                                         \
    (fprintf(stderr, "%s: %d passed, %d failed\n", __FILE__, test_pass, test_fail), \
     test_fail ? 1 : 0)

#endif
