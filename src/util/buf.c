/*
 * buf.c - growable byte buffer with a sticky error, thread-local error
 * messages, and small system helpers (clock, peak RSS).
 *
 * A buf never fails loudly: the first allocation failure sets b->rc and every
 * later append is a no-op, so builders append freely and check once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* ---------------------------------------------------------------- errors */

static _Thread_local char errmsg[1024];

int sqlm_error(int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return rc;
}

int sqlm_error_prefix(int rc, const char *fmt, ...) {
    char prefix[512], old[sizeof errmsg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof errmsg - 3) n = sizeof errmsg - 3;
    memcpy(errmsg, prefix, n);
    memcpy(errmsg + n, ": ", 2);
    size_t m = strlen(old);
    if (m > sizeof errmsg - n - 3) m = sizeof errmsg - n - 3;
    memcpy(errmsg + n + 2, old, m);
    errmsg[n + 2 + m] = 0;
    return rc;
}

const char *sqlm_errmsg(void) { return errmsg[0] ? errmsg : "no error"; }

const char *sqlm_errstr(int rc) {
    static const char *const s[] = {
        [SQLM_OK] = "ok",
        [SQLM_ERROR] = "error",
        [SQLM_NOMEM] = "out of memory",
        [SQLM_IO] = "I/O error",
        [SQLM_FORMAT] = "malformed file",
        [SQLM_DB] = "database error",
        [SQLM_UNSUPPORTED] = "unsupported",
        [SQLM_RANGE] = "out of range",
    };
    return rc >= 0 && (size_t)rc < ARRAY_LEN(s) && s[rc] ? s[rc] : "unknown error";
}

/* ------------------------------------------------------------------ buf */

void sqlm_buf_init(buf *b) { memset(b, 0, sizeof *b); }

void sqlm_buf_free(buf *b) {
    free(b->p);
    sqlm_buf_init(b);
}

void sqlm_buf_reset(buf *b) {
    b->len = 0;
    if (b->p) b->p[0] = 0;
}

static bool buf_reserve(buf *b, size_t extra) {
    size_t need;
    if (b->rc) return false;
    if (!size_add(b->len, extra, &need) || !size_add(need, 1, &need)) {
        b->rc = sqlm_error(SQLM_NOMEM, "out of memory: a text of more than %zu bytes", b->len);
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {   /* the message too: callers hand b->rc on as their error */
        b->rc = sqlm_error(SQLM_NOMEM, "out of memory allocating %zu bytes of text", cap);
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sqlm_buf_append(buf *b, const void *p, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sqlm_buf_puts(buf *b, const char *s) { sqlm_buf_append(b, s, strlen(s)); }
void sqlm_buf_putc(buf *b, char c) { sqlm_buf_append(b, &c, 1); }

void sqlm_buf_vappendf(buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->rc = sqlm_error(SQLM_ERROR, "cannot format \"%s\"", fmt);
        return;
    }
    if (!buf_reserve(b, (size_t)n)) return;
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sqlm_buf_appendf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sqlm_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

char *sqlm_buf_detach(buf *b) {
    char *p = b->p;
    if (!p) p = calloc(1, 1);
    sqlm_buf_init(b);
    return p;
}

/* --------------------------------------------------------------- system */

void *sqlm_xmalloc_checked(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) sqlm_error(SQLM_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

char *sqlm_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = sqlm_xmalloc_checked(n);
    if (p) memcpy(p, s, n);
    return p;
}

double sqlm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
