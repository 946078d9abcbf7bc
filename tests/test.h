/*
 * test.h - a tiny test harness (chibicc, Redis testhelp.h): CHECK(cond) and
 * CHECK_EQ(exp, got) print the failing expression with its values and count
 * failures; TEST_DONE() prints a summary and returns the exit status.
 */
#ifndef SQLM_TEST_H
#define SQLM_TEST_H
#include <stdio.h>
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

#define TEST_DONE()                                                         \
    (fprintf(stderr, "%s: %d passed, %d failed\n", __FILE__, test_pass, test_fail), \
     test_fail ? 1 : 0)

#endif
