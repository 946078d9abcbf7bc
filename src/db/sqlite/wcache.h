/*
 * wcache.h - the SQLite engine's weight cache under a memory budget: a VFS
 * that keeps a resident set of the model file's pages and streams the rest
 * in the order a step reads them.
 */
#ifndef SQLM_WCACHE_H
#define SQLM_WCACHE_H

#include "../engine.h"

typedef struct wcache wcache;

/* The VFS that serves a cached file (registered on first use), or NULL. */
const char *sqlm_wcache_vfs(void);
/* A cache for the file at path: files opened read-only as a main database
 * through sqlm_wcache_vfs() use it.  ring_bytes of streaming buffers. */
int sqlm_wcache_open(wcache **out, const char *path, int io_mode, size_t ring_bytes);
void sqlm_wcache_close(wcache *wc);
int sqlm_wcache_trace(wcache *wc);                      /* record the next step's pages */
size_t sqlm_wcache_traced_bytes(const wcache *wc, size_t *hot_bytes);
int sqlm_wcache_plan(wcache *wc, size_t resident_cap);  /* pin, then stream the rest */
void sqlm_wcache_get_stats(wcache *wc, wcache_stats *st);
const char *sqlm_wcache_error(wcache *wc);              /* the first I/O error, or NULL */
/* In-place reads of len bytes inside one page at offset (a tile reader's
 * backend); NULL when the cache is off or on error. */
const void *sqlm_wcache_fetch(wcache *wc, int64_t offset, size_t len);
void sqlm_wcache_unfetch(wcache *wc, int64_t offset, const void *p);
void sqlm_wcache_unfetch_at(wcache *wc, int64_t offset);   /* the same, by offset alone */

#endif /* SQLM_WCACHE_H */
