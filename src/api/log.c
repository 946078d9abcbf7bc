/*
 * log.c - the library's log channel: notes go to the callback installed with
 * sqlm_set_log() (include/sqlm.h), never to a stream of their own; without a
 * callback they are dropped.  The callback and its context are read as a
 * pair under a lock, so a thread that logs while another installs a new
 * callback never calls one with the other's context.  Not here: levels
 * filtering, timestamps (the callback decides what to show).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "../util/util.h"

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlm_log_fn log_cb;
static void *log_ctx;

void sqlm_set_log(sqlm_log_fn cb, void *ctx) {
    pthread_mutex_lock(&log_mu);
    log_cb = cb;
    log_ctx = ctx;
    pthread_mutex_unlock(&log_mu);
}

void sqlm_log(int level, const char *fmt, ...) {
    pthread_mutex_lock(&log_mu);
    sqlm_log_fn cb = log_cb;
    void *ctx = log_ctx;
    pthread_mutex_unlock(&log_mu);
    if (!cb) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb(level, msg, ctx);
}
