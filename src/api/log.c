/*
 * log.c - the library's log channel: notes go to the callback installed with
 * sqlm_set_log() (include/sqlm.h), never to a stream of their own; without a
 * callback they are dropped.  Not here: levels filtering, timestamps (the
 * callback decides what to show).
 */
#include <stdarg.h>
#include <stdio.h>

#include "../util/util.h"

static sqlm_log_fn log_cb;
static void *log_ctx;

void sqlm_set_log(sqlm_log_fn cb, void *ctx) {
    log_cb = cb;
    log_ctx = ctx;
}

void sqlm_log(int level, const char *fmt, ...) {
    if (!log_cb) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_cb(level, msg, log_ctx);
}
