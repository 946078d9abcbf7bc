/*
 * wcache.c - the weight cache of a memory budget (`--mem-budget`): the
 * SQLite engine's model file read into sqlm's own buffers, never mapped.
 *
 * Why: a mapped page counts in the process's RSS and in its cgroup, and
 * when the model is larger than memory the kernel evicts mapped pages
 * least-recently-used first, which is the worst order for a model read
 * start to end every token (every page is evicted just before it is needed
 * again).  The access order is known in advance, so sqlm keeps a fixed
 * resident set that fits the budget and streams the rest in that order: a
 * token reads exactly (pages of a step - resident pages), the minimum any
 * cache of that size can read for a cyclic scan (Belady's optimum).
 *
 * How: a VFS ("sqlm-wcache") wraps the default one.  For the model file
 * opened read-only it serves SQLite's memory-mapped page interface
 * (xFetch/xUnfetch) from sqlm's buffers: SQLite takes a page in place,
 * without copying it into its own page cache, and says when it is done with
 * it.  The cache has three states:
 *   OFF     xFetch returns NULL: SQLite reads through xRead into its own
 *           (small) page cache, as for any file.  Used while loading the
 *           vocabulary and compiling.
 *   TRACE   one probe step: every page fetched is read synchronously (1 MB
 *           readahead) and recorded in first-touch order with a count.
 *   STREAM  after sqlm_wcache_plan(): pages fetched more than once per step, and
 *           every page that is not a table leaf (interior b-tree pages,
 *           indexes), are pinned; then the leaves whose reads cost most
 *           for their bytes, until the budget is filled (choose_pinned()).
 *           A reader thread reads
 *           the streamed pages in schedule order into a ring of page slots,
 *           ahead of the compute thread, in reads of up to MAX_BATCH_BYTES
 *           (N_READERS threads, so that the device has more than one read
 *           in flight);
 *           a slot is freed as soon as SQLite releases its page.  A fetch of
 *           a streamed page that the reader has not reached re-aims the
 *           reader there (a prompt step that rescans a table); a page outside
 *           the schedule (a position's RoPE row, a token's embedding row) is
 *           read into a small LRU pool.
 * Reads use O_DIRECT where the file system allows it, so the OS page cache
 * (charged to the same cgroup) holds none of the model; --mem-io buffered
 * reads through the page cache instead (when it is free memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sqlite3.h>

#include "wcache.h"

#define TRACE_RA_BYTES (1 << 20)    /* readahead while tracing */
#define MAX_BATCH_BYTES (2 << 20)   /* one read of a streaming reader */
#define N_READERS 3                 /* reads in flight: 2 MB reads, three at a time, kept the disk busiest here */
#define LOAD_BATCH_BYTES (8 << 20)  /* one read while loading the resident set */
#define N_MISC 16                   /* pages of the pool for pages outside the schedule */

enum { MODE_OFF, MODE_TRACE, MODE_STREAM };
enum { SL_FREE, SL_LOADING, SL_READY };
enum { RES_NONE, RES_LOADING, RES_LOADED };

typedef struct slot {
    int64_t pg;          /* page index (pgno - 1), -1 when free */
    uint64_t ticket;     /* position in the endless schedule (streaming slots) */
    uint64_t lru;
    int refs;
    uint8_t state;
    bool consumed;
} slot;

typedef struct tmpbuf {
    struct tmpbuf *next;
    char *p;
    int64_t pg;
    int refs;
    bool ready;          /* read: until then, a second taker waits */
} tmpbuf;

struct wcache {
    char *path;
    dev_t dev;
    ino_t ino;
    int refs;
    int fd;
    bool direct;
    int psz;
    int64_t n_pages;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* any change: data ready, slot freed, work, error */
    int mode;
    size_t ring_bytes;

    /* trace */
    uint32_t *count;             /* [n_pages] fetches in the traced step */
    uint32_t *last;              /* [n_pages] trace sequence number of the last fetch */
    uint32_t seq;
    uint8_t *ptype;              /* [n_pages] b-tree page type */
    int64_t *order;              /* pages in first-touch order */
    int64_t n_order, cap_order;

    /* plan */
    int64_t *sched;              /* streamed pages in schedule order */
    int64_t n_sched;
    int32_t *sidx;               /* [n_pages] index in sched, or -1 */
    char **res;                  /* [n_pages] pinned buffer, or NULL */
    atomic_uchar *res_ok;        /* [n_pages] RES_* */
    char *res_mem;
    size_t res_len;

    /* ring (streaming; the readahead pool while tracing) and misc pool */
    char *ring;
    size_t ring_len;
    slot *slots;
    int n_slots;
    char *misc_mem;
    slot misc[N_MISC];
    int32_t *slot_of;            /* [n_pages] >= 0 ring slot, <= -2 misc -2-i, -1 none */
    uint64_t lru_clock;
    tmpbuf *tmps;

    /* reader */
    pthread_t th[N_READERS];
    int n_th;
    bool stop;
    int64_t rpos;
    uint64_t rticket, cticket;
    int64_t lone_pg;             /* the last streamed page read on its own */

    /* first I/O error: later fetches fail with it */
    int err;
    char errmsg[320];

    wcache_stats st;
    atomic_ullong n_hit_bytes, n_fetch_bytes;
};

/* ------------------------------------------------------------ registry */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static wcache *reg[8];

static wcache *reg_find(dev_t dev, ino_t ino) {
    for (size_t i = 0; i < ARRAY_LEN(reg); i++)
        if (reg[i] && reg[i]->dev == dev && reg[i]->ino == ino) return reg[i];
    return NULL;
}

/* ------------------------------------------------------------- I/O */

static void set_err(wcache *wc, int e, int64_t off, size_t len, ssize_t got) {
    if (wc->err) return;
    wc->err = e ? e : EIO;
    if (got >= 0)
        snprintf(wc->errmsg, sizeof wc->errmsg,
                 "%s: I/O error: reading %zu bytes at offset %lld returned %zd (the file is shorter than "
                 "its header says: truncated or changed during the run?)",
                 wc->path, len, (long long)off, got);
    else
        snprintf(wc->errmsg, sizeof wc->errmsg, "%s: I/O error: reading %zu bytes at offset %lld: %s",
                 wc->path, len, (long long)off, strerror(e));
}

/* Read len bytes at off into the iovecs; the lock is not held.  Falls back
 * from O_DIRECT to buffered reads once if the file system refuses it. */
static int read_iov(wcache *wc, struct iovec *iov, int n, int64_t off) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += iov[i].iov_len;
    size_t done = 0;
    while (done < len) {
        /* skip the iovecs already filled */
        struct iovec v[1024];
        int k = 0;
        size_t skip = done;
        for (int i = 0; i < n && k < (int)ARRAY_LEN(v); i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[k].iov_base = (char *)iov[i].iov_base + skip;
            v[k].iov_len = iov[i].iov_len - skip;
            skip = 0;
            k++;
        }
        ssize_t r = preadv(wc->fd, v, k, off + (int64_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            pthread_mutex_lock(&wc->mu);
            set_err(wc, r < 0 ? errno : 0, off, len, r < 0 ? -1 : (ssize_t)done);
            pthread_mutex_unlock(&wc->mu);
            return SQLITE_IOERR_READ;
        }
        done += (size_t)r;
    }
    if (wc->direct) return SQLITE_OK;
    /* buffered: nothing to drop; the page cache is free memory in this mode */
    return SQLITE_OK;
}

static int read_one(wcache *wc, char *dst, int64_t pg, int n) {
    struct iovec v = { dst, (size_t)n * (size_t)wc->psz };
    return read_iov(wc, &v, 1, pg * wc->psz);
}

static char *pages_alloc(size_t bytes) {
    if (!bytes) return NULL;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void pages_free(char *p, size_t bytes) {
    if (p) munmap(p, bytes);
}

/*
 * A buffer of 2 MB transparent huge pages (where the kernel allows them):
 * an O_DIRECT read into 4 KB pages is split at every page (the device
 * takes ~254 segments a request), which capped reads at ~0.9 GB/s here;
 * into huge pages the same reads ran at 2.2-2.7 GB/s.  bytes is rounded up
 * to whole huge pages (they count in RSS whole).
 */
#define HUGE_SZ ((size_t)2 << 20)
static char *huge_alloc(size_t *bytes) {
    size_t n = (*bytes + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
    if (!n) return NULL;
    char *p = mmap(NULL, n + HUGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *a = (char *)(((uintptr_t)p + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (a + n < p + n + HUGE_SZ) munmap(a + n, (size_t)(p + n + HUGE_SZ - (a + n)));
#ifdef MADV_HUGEPAGE
    madvise(a, n, MADV_HUGEPAGE);
#endif
    *bytes = n;
    return a;
}

/* ------------------------------------------------------------ slots */

static char *slot_ptr(wcache *wc, int i) { return wc->ring + (size_t)i * (size_t)wc->psz; }
static char *misc_ptr(wcache *wc, int i) { return wc->misc_mem + (size_t)i * (size_t)wc->psz; }

static void slot_drop(wcache *wc, slot *s) {
    if (s->pg >= 0) wc->slot_of[s->pg] = -1;
    s->pg = -1;
    s->state = SL_FREE;
    s->refs = 0;
    s->consumed = false;
}

/* The least recently used unreferenced, not loading slot of a pool, or -1. */
static int pool_victim(slot *pool, int n) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (pool[i].refs || pool[i].state == SL_LOADING) continue;
        if (pool[i].state == SL_FREE) return i;
        if (best < 0 || pool[i].lru < pool[best].lru) best = i;
    }
    return best;
}

static void wait_cv(wcache *wc, double *waited) {
    double t0 = sqlm_now();
    pthread_cond_wait(&wc->cv, &wc->mu);
    *waited += sqlm_now() - t0;
}

/* A page buffer outside the pools: freed on its last unfetch. */
static tmpbuf *tmp_page(wcache *wc, int64_t pg) {
    tmpbuf *t = malloc(sizeof *t);
    char *p = t ? pages_alloc((size_t)wc->psz) : NULL;
    if (!p) {
        free(t);
        return NULL;
    }
    t->p = p;
    t->pg = pg;
    t->refs = 1;
    t->ready = false;
    t->next = wc->tmps;
    wc->tmps = t;
    return t;
}

static bool tmp_release(wcache *wc, const void *p) {
    for (tmpbuf **t = &wc->tmps; *t; t = &(*t)->next)
        if ((*t)->p == p) {
            tmpbuf *d = *t;
            if (--d->refs > 0) return true;
            *t = d->next;
            pages_free(d->p, (size_t)wc->psz);
            free(d);
            return true;
        }
    return false;
}

/*
 * Read page pg (and, tracing, up to TRACE_RA_BYTES after it) into a pool
 * (P_RING while tracing, P_MISC while streaming) and pin it, or into a
 * buffer of its own (P_TMP, or when every page of the pool is in use).
 * Called with the lock held; drops it around the read.  Returns the page or
 * NULL.
 */
enum { P_RING, P_MISC, P_TMP };
static char *pool_read(wcache *wc, int64_t pg, int where, double *waited) {
    const bool ring = where == P_RING;
    slot *pool = ring ? wc->slots : wc->misc;
    int n_pool = ring ? wc->n_slots : where == P_MISC ? N_MISC : 0;
    int want = ring ? MAX(TRACE_RA_BYTES / wc->psz, 1) : 1;
    int idx[256];
    int k = 0;
    want = MIN(want, (int)ARRAY_LEN(idx));
    while (k < want && pg + k < wc->n_pages) {
        if (k > 0 && (wc->slot_of[pg + k] != -1 || wc->res[pg + k] || (wc->sidx && wc->sidx[pg + k] >= 0)))
            break;
        int v = pool_victim(pool, n_pool);
        if (v < 0) break;
        slot_drop(wc, &pool[v]);
        pool[v].state = SL_LOADING;
        pool[v].pg = pg + k;
        pool[v].lru = ++wc->lru_clock;
        wc->slot_of[pg + k] = ring ? v : -2 - v;
        idx[k++] = v;
    }
    tmpbuf *tb = NULL;
    char *tmp = NULL;
    if (k == 0) {   /* a page of its own */
        for (tmpbuf *t = wc->tmps; t; t = t->next)
            if (t->pg == pg) {
                t->refs++;
                while (!t->ready && !wc->err) wait_cv(wc, waited);
                if (t->ready) return t->p;
                tmp_release(wc, t->p);
                return NULL;
            }
        if (!(tb = tmp_page(wc, pg))) return NULL;
        tmp = tb->p;
    }
    struct iovec iov[256];
    for (int i = 0; i < k; i++) {
        iov[i].iov_base = ring ? slot_ptr(wc, idx[i]) : misc_ptr(wc, idx[i]);
        iov[i].iov_len = (size_t)wc->psz;
    }
    if (tmp) iov[0] = (struct iovec){ tmp, (size_t)wc->psz };
    int n_iov = tmp ? 1 : k;
    pthread_mutex_unlock(&wc->mu);
    double t0 = sqlm_now();
    int rc = read_iov(wc, iov, n_iov, pg * wc->psz);
    double dt = sqlm_now() - t0;
    pthread_mutex_lock(&wc->mu);
    *waited += dt;
    size_t bytes = (size_t)n_iov * (size_t)wc->psz;
    wc->st.read_bytes += bytes;
    wc->st.sync_bytes += bytes;
    for (int i = 0; i < k; i++) {
        if (rc) slot_drop(wc, &pool[idx[i]]);
        else pool[idx[i]].state = SL_READY;
    }
    pthread_cond_broadcast(&wc->cv);
    if (rc) {
        if (tmp) tmp_release(wc, tmp);
        return NULL;
    }
    if (tb) {
        tb->ready = true;
        return tmp;
    }
    pool[idx[0]].refs++;
    return iov[0].iov_base;
}

/* ------------------------------------------------------------ reader */

/*
 * Free the unreferenced pages more than `window` schedule positions behind
 * the furthest page handed out: skipped pages (the probe's embedding row),
 * or pages a re-aimed reader left behind.  The window keeps pages that
 * another compute thread, a little behind the first, has still to take.
 */
static int sweep_stale(wcache *wc, uint64_t window) {
    int n = 0;
    for (int i = 0; i < wc->n_slots; i++) {
        slot *s = &wc->slots[i];
        if (s->state == SL_READY && !s->refs && s->ticket + window < wc->cticket) slot_drop(wc, s), n++;
    }
    return n;
}

static int free_slots(const wcache *wc) {
    int n = 0;
    for (int i = 0; i < wc->n_slots; i++) n += wc->slots[i].state == SL_FREE;
    return n;
}

static void *reader_main(void *arg) {
    wcache *wc = arg;
    const int max_batch = MAX(MAX_BATCH_BYTES / wc->psz, 1);
    int *idx = malloc(sizeof *idx * (size_t)max_batch);
    struct iovec *iov = malloc(sizeof *iov * (size_t)max_batch);
    pthread_mutex_lock(&wc->mu);
    while (idx && iov && !wc->stop) {
        if (wc->err || wc->n_sched == 0 || wc->rticket >= wc->cticket + (uint64_t)wc->n_sched) {
            pthread_cond_wait(&wc->cv, &wc->mu);
            continue;
        }
        int64_t pg = wc->sched[wc->rpos];
        if (wc->slot_of[pg] >= 0) {   /* still held from an earlier cycle: it serves again */
            wc->slots[wc->slot_of[pg]].ticket = wc->rticket;
            wc->rpos = (wc->rpos + 1) % wc->n_sched;
            wc->rticket++;
            continue;
        }
        /* a batch: pages next in the schedule and next in the file, read
         * only when the ring has room for all of it: a short read takes the
         * disk nearly as long as a full one */
        int want = 1;
        while (want < max_batch && want < wc->n_sched) {
            int64_t j = (wc->rpos + want) % wc->n_sched;
            if (wc->sched[j] != pg + want || wc->slot_of[wc->sched[j]] != -1) break;
            if (wc->rticket + (uint64_t)want >= wc->cticket + (uint64_t)wc->n_sched) break;
            want++;
        }
        want = MIN(want, MAX(wc->n_slots / (N_READERS + 1), 1));
        int n_free = free_slots(wc);
        if (n_free < want) n_free += sweep_stale(wc, (uint64_t)wc->n_slots / 4);   /* pages well behind first */
        if (n_free < want) n_free += sweep_stale(wc, 0);                          /* then any behind */
        if (n_free < want) {   /* wait for the compute threads to release pages */
            pthread_cond_wait(&wc->cv, &wc->mu);
            continue;
        }
        int k = 0;
        for (int i = 0; k < want; i++) {
            if (wc->slots[i].state != SL_FREE) continue;
            slot *s = &wc->slots[i];
            s->pg = pg + k;
            s->state = SL_LOADING;
            s->ticket = wc->rticket + (uint64_t)k;
            s->refs = 0;
            s->consumed = false;
            wc->slot_of[pg + k] = i;
            iov[k].iov_base = slot_ptr(wc, i);
            iov[k].iov_len = (size_t)wc->psz;
            idx[k++] = i;
        }
        wc->rpos = (wc->rpos + k) % wc->n_sched;
        wc->rticket += (uint64_t)k;
        pthread_mutex_unlock(&wc->mu);
        double t0 = sqlm_now();
        int rc = read_iov(wc, iov, k, pg * wc->psz);
        double dt = sqlm_now() - t0;
        pthread_mutex_lock(&wc->mu);
        wc->st.reader_s += dt;
        wc->st.read_bytes += (uint64_t)k * (uint64_t)wc->psz;
        wc->st.reads++;
        for (int i = 0; i < k; i++) {
            slot *s = &wc->slots[idx[i]];
            if (rc) slot_drop(wc, s);
            else if (s->ticket + (uint64_t)wc->n_slots / 4 < wc->cticket && !s->refs) slot_drop(wc, s);   /* skipped meanwhile */
            else s->state = SL_READY;
        }
        pthread_cond_broadcast(&wc->cv);
    }
    pthread_mutex_unlock(&wc->mu);
    free(idx);
    free(iov);
    return NULL;
}

/* ------------------------------------------------------------- fetch */

/* How far streamed page pg is ahead of the readers in the schedule. */
static uint64_t reader_ahead(wcache *wc, int64_t pg) {
    return (uint64_t)((wc->sidx[pg] - wc->rpos + wc->n_sched) % wc->n_sched);
}

/*
 * A compute thread needs streamed page pg, which no slot holds: either the
 * reader was elsewhere (not about to reach the page; a page a little ahead
 * is only waited for, as a second compute thread asks for its part just
 * before the reader gets there): re-aim it there, and the pages it read in
 * between go unless pinned; or the reader gets there soon: this thread is
 * now that far, and the pages before it may go when the reader needs room.
 * Asked again at every wake-up: a page the reader had read can be dropped
 * (it needed the room) before the thread takes it, and with the ring full
 * of pages behind the thread the reader waits until cticket moves.
 */
static void want_page(wcache *wc, int64_t pg) {
    uint64_t ahead = reader_ahead(wc, pg);
    if (ahead >= (uint64_t)wc->n_slots / 2) {
        wc->rpos = wc->sidx[pg];
        wc->rticket += ahead;
        if (wc->rticket > wc->cticket) wc->cticket = wc->rticket;
        wc->st.resyncs++;
        sweep_stale(wc, 0);
    } else if (wc->rticket + ahead > wc->cticket) {
        wc->cticket = wc->rticket + ahead;
    } else {
        return;   /* nothing changed: the readers need no wake-up */
    }
    pthread_cond_broadcast(&wc->cv);
}

/* Page pg through the misc pool (pages outside the schedule, and every
 * page before the trace); the lock is held. */
static char *fetch_misc(wcache *wc, int64_t pg, double *waited) {
    int32_t v = wc->slot_of[pg];
    if (v <= -2) {
        slot *s = &wc->misc[-2 - v];
        while (s->state == SL_LOADING && !wc->err) wait_cv(wc, waited);
        if (s->state == SL_READY && s->pg == pg) {
            s->refs++;
            s->lru = ++wc->lru_clock;
            return misc_ptr(wc, -2 - v);
        }
    }
    return pool_read(wc, pg, P_MISC, waited);
}

static char *fetch_stream(wcache *wc, int64_t pg, double *waited) {
    if (wc->res[pg]) {
        while (atomic_load(&wc->res_ok[pg]) == RES_LOADING && !wc->err) wait_cv(wc, waited);
        if (atomic_load(&wc->res_ok[pg]) == RES_LOADED) {
            atomic_fetch_add_explicit(&wc->n_hit_bytes, (unsigned long long)wc->psz, memory_order_relaxed);
            return wc->res[pg];
        }
        /* not loaded (the plan loads every pinned page; only after an error) */
        atomic_store(&wc->res_ok[pg], RES_LOADING);
        pthread_mutex_unlock(&wc->mu);
        double t0 = sqlm_now();
        int rc = read_one(wc, wc->res[pg], pg, 1);
        pthread_mutex_lock(&wc->mu);
        *waited += sqlm_now() - t0;
        wc->st.read_bytes += (uint64_t)wc->psz;
        wc->st.sync_bytes += (uint64_t)wc->psz;
        atomic_store(&wc->res_ok[pg], rc ? RES_NONE : RES_LOADED);
        pthread_cond_broadcast(&wc->cv);
        return rc ? NULL : wc->res[pg];
    }
    if (wc->sidx[pg] >= 0) {
        /* a lone page far from the readers is read on its own: with tied
         * embeddings, the token's row of the table the logits stream at
         * the step's end (re-aiming the readers there and back cost ~12 MB
         * of reads a token).  The page after it is a scan: re-aim. */
        if (wc->slot_of[pg] < 0 && reader_ahead(wc, pg) >= (uint64_t)wc->n_slots / 2 && pg != wc->lone_pg + 1) {
            wc->lone_pg = pg;
            return pool_read(wc, pg, P_TMP, waited);
        }
        int32_t v;
        for (;;) {
            v = wc->slot_of[pg];
            if (wc->err) return NULL;
            if (v >= 0 && wc->slots[v].state == SL_READY) break;
            if (v < 0) want_page(wc, pg);
            wait_cv(wc, waited);
        }
        slot *s = &wc->slots[v];
        s->refs++;
        s->consumed = true;
        if (s->ticket > wc->cticket) {
            wc->cticket = s->ticket;
            pthread_cond_broadcast(&wc->cv);   /* the reader may go one page further */
        }
        return slot_ptr(wc, v);
    }
    return fetch_misc(wc, pg, waited);   /* outside the schedule */
}

static char *fetch_trace(wcache *wc, int64_t pg, double *waited) {
    /* a fetch again within a few fetches is the same use (a tile reader
     * takes the next tile ahead, lets it go, takes it again): not hot */
    uint32_t now = ++wc->seq, prev = wc->last[pg];
    bool first = wc->count[pg] == 0;
    wc->last[pg] = now;
    if (first || now - prev > 16) wc->count[pg]++;
    if (first) {
        if (wc->n_order == wc->cap_order) {
            int64_t cap = wc->cap_order ? wc->cap_order * 2 : 4096;
            int64_t *o = realloc(wc->order, (size_t)cap * sizeof *o);
            if (!o) return NULL;
            wc->order = o;
            wc->cap_order = cap;
        }
        wc->order[wc->n_order++] = pg;
    }
    int32_t v = wc->slot_of[pg];
    char *p = NULL;
    if (v >= 0) {
        slot *s = &wc->slots[v];
        while (s->state == SL_LOADING && !wc->err) wait_cv(wc, waited);
        if (s->state == SL_READY && s->pg == pg) {
            s->refs++;
            s->lru = ++wc->lru_clock;
            p = slot_ptr(wc, v);
        }
    }
    if (!p) p = pool_read(wc, pg, P_RING, waited);
    if (p && first) wc->ptype[pg] = (uint8_t)p[pg == 0 ? 100 : 0];
    return p;
}

/* A page for SQLite (xFetch) or the tile reader: NULL with *rc set on error,
 * NULL with SQLITE_OK when the cache is off (the caller reads normally). */
static char *wc_fetch_page(wcache *wc, int64_t pg, int *rc) {
    *rc = SQLITE_OK;
    if (wc->mode == MODE_OFF || pg < 0 || pg >= wc->n_pages) return NULL;
    /* the hot path: a pinned page, no lock */
    if (wc->mode == MODE_STREAM && wc->res[pg] && atomic_load_explicit(&wc->res_ok[pg], memory_order_acquire) == RES_LOADED) {
        atomic_fetch_add_explicit(&wc->n_fetch_bytes, (unsigned long long)wc->psz, memory_order_relaxed);
        atomic_fetch_add_explicit(&wc->n_hit_bytes, (unsigned long long)wc->psz, memory_order_relaxed);
        return wc->res[pg];
    }
    double waited = 0;
    pthread_mutex_lock(&wc->mu);
    char *p = NULL;
    if (!wc->err) p = wc->mode == MODE_TRACE ? fetch_trace(wc, pg, &waited) : fetch_stream(wc, pg, &waited);
    if (!p) *rc = wc->err ? SQLITE_IOERR_READ : SQLITE_NOMEM;
    if (!p && !wc->err) snprintf(wc->errmsg, sizeof wc->errmsg, "%s: out of memory for a page buffer", wc->path);
    wc->st.wait_s += waited;
    pthread_mutex_unlock(&wc->mu);
    atomic_fetch_add_explicit(&wc->n_fetch_bytes, (unsigned long long)wc->psz, memory_order_relaxed);
    return p;
}

static void wc_unfetch_page(wcache *wc, const void *p) {
    if (!p) return;
    const char *c = p;
    if (wc->res_mem && c >= wc->res_mem && c < wc->res_mem + wc->res_len) return;
    pthread_mutex_lock(&wc->mu);
    if (wc->ring && c >= wc->ring && c < wc->ring + wc->ring_len) {
        slot *s = &wc->slots[(c - wc->ring) / wc->psz];
        /* a used page stays until it falls a window behind (sweep_stale):
         * the tile reader takes the next tile, lets it go and takes it again */
        if (s->refs > 0 && --s->refs == 0 && wc->mode == MODE_STREAM && s->consumed)
            pthread_cond_broadcast(&wc->cv);
    } else if (wc->misc_mem && c >= wc->misc_mem && c < wc->misc_mem + (size_t)N_MISC * (size_t)wc->psz) {
        slot *s = &wc->misc[(c - wc->misc_mem) / wc->psz];
        if (s->refs > 0) s->refs--;
    } else {
        tmp_release(wc, p);
    }
    pthread_mutex_unlock(&wc->mu);
}

const void *sqlm_wcache_fetch(wcache *wc, int64_t offset, size_t len) {
    int64_t pg = offset / wc->psz;
    if (offset < 0 || len == 0 || (offset % wc->psz) + (int64_t)len > wc->psz || pg >= wc->n_pages) return NULL;
    int rc;
    char *p;
    if (wc->mode == MODE_OFF) {   /* before the trace: one page through the misc pool */
        double waited = 0;
        pthread_mutex_lock(&wc->mu);
        p = wc->err ? NULL : fetch_misc(wc, pg, &waited);
        pthread_mutex_unlock(&wc->mu);
    } else {
        p = wc_fetch_page(wc, pg, &rc);
    }
    return p ? p + offset % wc->psz : NULL;
}

void sqlm_wcache_unfetch(wcache *wc, int64_t offset, const void *p) {
    if (p) wc_unfetch_page(wc, (const char *)p - offset % wc->psz);
}

/* The page holding offset, released without its pointer (a tile reader's
 * put): the ring or misc slot that holds it, else the extra buffer. */
void sqlm_wcache_unfetch_at(wcache *wc, int64_t offset) {
    int64_t pg = offset / wc->psz;
    if (offset < 0 || pg >= wc->n_pages || wc->res[pg]) return;
    pthread_mutex_lock(&wc->mu);
    int32_t v = wc->slot_of[pg];
    const char *p = NULL;
    if (v >= 0 && wc->slots[v].refs > 0) p = slot_ptr(wc, v);
    else if (v <= -2 && wc->misc[-2 - v].refs > 0) p = misc_ptr(wc, -2 - v);
    else
        for (tmpbuf *t = wc->tmps; t && !p; t = t->next)
            if (t->pg == pg) p = t->p;
    pthread_mutex_unlock(&wc->mu);
    if (p) wc_unfetch_page(wc, p);
}

/* ---------------------------------------------------------- lifecycle */

static int wc_init_arrays(wcache *wc) {
    size_t n = (size_t)wc->n_pages;
    wc->count = calloc(n, sizeof *wc->count);
    wc->last = calloc(n, sizeof *wc->last);
    wc->ptype = calloc(n, 1);
    wc->sidx = malloc(n * sizeof *wc->sidx);
    wc->res = calloc(n, sizeof *wc->res);
    wc->res_ok = calloc(n, sizeof *wc->res_ok);
    wc->slot_of = malloc(n * sizeof *wc->slot_of);
    if (!wc->count || !wc->last || !wc->ptype || !wc->sidx || !wc->res || !wc->res_ok || !wc->slot_of) return SQLM_NOMEM;
    for (size_t i = 0; i < n; i++) wc->sidx[i] = -1, wc->slot_of[i] = -1;
    return SQLM_OK;
}

static void wc_free(wcache *wc) {
    if (!wc) return;
    if (wc->n_th) {
        pthread_mutex_lock(&wc->mu);
        wc->stop = true;
        pthread_cond_broadcast(&wc->cv);
        pthread_mutex_unlock(&wc->mu);
        for (int i = 0; i < wc->n_th; i++) pthread_join(wc->th[i], NULL);
    }
    while (wc->tmps) {
        tmpbuf *t = wc->tmps;
        wc->tmps = t->next;
        pages_free(t->p, (size_t)wc->psz);
        free(t);
    }
    pages_free(wc->ring, wc->ring_len);
    pages_free(wc->misc_mem, (size_t)N_MISC * (size_t)wc->psz);
    pages_free(wc->res_mem, wc->res_len);
    free(wc->count), free(wc->last), free(wc->ptype), free(wc->order), free(wc->sched), free(wc->sidx);
    free(wc->res), free(wc->res_ok), free(wc->slots), free(wc->slot_of);
    if (wc->fd >= 0) close(wc->fd);
    pthread_mutex_destroy(&wc->mu);
    pthread_cond_destroy(&wc->cv);
    free(wc->path);
    free(wc);
}

int sqlm_wcache_open(wcache **out, const char *path, int io_mode, size_t ring_bytes) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return sqlm_error(SQLM_IO, "%s: %s", path, strerror(errno));
    unsigned char hdr[100];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sqlm_error(SQLM_IO, "%s: cannot open: %s", path, strerror(errno));
    ssize_t r = pread(fd, hdr, sizeof hdr, 0);
    close(fd);
    if (r != (ssize_t)sizeof hdr || memcmp(hdr, "SQLite format 3", 16) != 0)
        return sqlm_error(SQLM_FORMAT, "%s: not an SQLite database", path);
    int psz = hdr[16] << 8 | hdr[17];
    if (psz == 1) psz = 65536;
    if (psz < 512 || (psz & (psz - 1)))
        return sqlm_error(SQLM_FORMAT, "%s: bad page size %d", path, psz);

    wcache *wc = calloc(1, sizeof *wc);
    if (!wc) return sqlm_error(SQLM_NOMEM, "out of memory");
    wc->fd = -1;
    pthread_mutex_init(&wc->mu, NULL);
    pthread_cond_init(&wc->cv, NULL);
    wc->path = sqlm_strdup(path);
    wc->dev = sb.st_dev;
    wc->ino = sb.st_ino;
    wc->psz = psz;
    wc->n_pages = (int64_t)sb.st_size / psz;
    wc->refs = 1;
    wc->lone_pg = -2;
    int rc = wc->path ? wc_init_arrays(wc) : SQLM_NOMEM;
    if (rc) {
        wc_free(wc);
        return sqlm_error(SQLM_NOMEM, "out of memory for the weight cache of %s", path);
    }
    if (io_mode != WC_IO_BUFFERED) {
        /* O_DIRECT where the file system takes it for whole pages (one read
         * of the first page into an aligned buffer tells) */
        wc->fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        char *probe = wc->fd >= 0 ? pages_alloc((size_t)psz) : NULL;
        wc->direct = probe && pread(wc->fd, probe, (size_t)psz, 0) == (ssize_t)psz;
        pages_free(probe, (size_t)psz);
        if (!wc->direct && wc->fd >= 0) {
            close(wc->fd);
            wc->fd = -1;
        }
    }
    if (wc->fd < 0) wc->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (wc->fd < 0) {
        rc = sqlm_error(SQLM_IO, "%s: cannot open: %s", path, strerror(errno));
        wc_free(wc);
        return rc;
    }
    /* ring: at least two full batches and a readahead window */
    size_t min_ring = (size_t)2 * MAX_BATCH_BYTES + TRACE_RA_BYTES;
    ring_bytes = MAX(ring_bytes, min_ring);
    wc->ring_len = ring_bytes;
    wc->ring = huge_alloc(&wc->ring_len);
    wc->n_slots = (int)(wc->ring_len / (size_t)psz);
    wc->ring_bytes = wc->ring_len + (size_t)N_MISC * (size_t)psz;
    wc->st.ring_bytes = wc->ring_bytes;
    wc->misc_mem = pages_alloc((size_t)N_MISC * (size_t)psz);
    wc->slots = calloc((size_t)wc->n_slots, sizeof *wc->slots);
    if (!wc->ring || !wc->misc_mem || !wc->slots) {
        wc_free(wc);
        return sqlm_error(SQLM_NOMEM, "out of memory for the weight cache's %zu MB ring", ring_bytes >> 20);
    }
    for (int i = 0; i < wc->n_slots; i++) wc->slots[i].pg = -1;
    for (int i = 0; i < N_MISC; i++) wc->misc[i].pg = -1;
    pthread_mutex_lock(&reg_mu);
    size_t i = 0;
    while (i < ARRAY_LEN(reg) && reg[i]) i++;
    if (i == ARRAY_LEN(reg) || reg_find(wc->dev, wc->ino)) {
        pthread_mutex_unlock(&reg_mu);
        wc_free(wc);
        return sqlm_error(SQLM_UNSUPPORTED, "%s: a weight cache is already open on this file (one budgeted handle per model file at a time)", path);
    }
    reg[i] = wc;
    pthread_mutex_unlock(&reg_mu);
    *out = wc;
    return SQLM_OK;
}

void sqlm_wcache_close(wcache *wc) {
    if (!wc) return;
    pthread_mutex_lock(&reg_mu);
    bool last = --wc->refs == 0;
    if (last)
        for (size_t i = 0; i < ARRAY_LEN(reg); i++)
            if (reg[i] == wc) reg[i] = NULL;
    pthread_mutex_unlock(&reg_mu);
    if (last) wc_free(wc);
}

int sqlm_wcache_trace(wcache *wc) {
    pthread_mutex_lock(&wc->mu);
    int rc = SQLM_OK;
    if (wc->mode != MODE_OFF) rc = sqlm_error(SQLM_ERROR, "weight cache: already traced");
    else wc->mode = MODE_TRACE;
    pthread_mutex_unlock(&wc->mu);
    return rc;
}

/* b-tree page types: 0x0D a table leaf; 0x05 table interior, 0x02/0x0A index */
static bool is_hot(const wcache *wc, int64_t pg) { return wc->count[pg] > 1 || wc->ptype[pg] != 0x0D; }

size_t sqlm_wcache_traced_bytes(const wcache *wc, size_t *hot_bytes) {
    size_t hot = 0;
    for (int64_t i = 0; i < wc->n_order; i++)
        if (is_hot(wc, wc->order[i])) hot += (size_t)wc->psz;
    if (hot_bytes) *hot_bytes = hot;
    return (size_t)wc->n_order * (size_t)wc->psz;
}

/* Load the pinned pages, in reads of consecutive pages. */
static int load_resident(wcache *wc) {
    const int64_t max_run = MAX(LOAD_BATCH_BYTES / wc->psz, 1);
    for (int64_t i = 0; i < wc->n_order;) {
        int64_t pg = wc->order[i];
        if (!wc->res[pg]) {
            i++;
            continue;
        }
        int64_t k = 1;
        while (i + k < wc->n_order && k < max_run && wc->order[i + k] == pg + k && wc->res[pg + k] &&
               wc->res[pg + k] == wc->res[pg] + k * wc->psz)
            k++;
        if (read_one(wc, wc->res[pg], pg, (int)k)) return SQLM_IO;
        wc->st.load_bytes += (uint64_t)k * (uint64_t)wc->psz;
        for (int64_t j = 0; j < k; j++) atomic_store(&wc->res_ok[pg + j], RES_LOADED);
        i += k;
    }
    return SQLM_OK;
}

typedef struct piece {
    int64_t at, len;   /* candidates [at, at + len) */
} piece;

static int cmp_piece_len(const void *a, const void *b) {
    const piece *x = a, *y = b;
    return x->len != y->len ? (x->len > y->len) - (x->len < y->len) : (x->at > y->at) - (x->at < y->at);
}

/*
 * Choose n_pin of the n streamed candidates (the pages a step reads once,
 * in schedule order) to pin; pin[i] = 1 for each.  The disk takes a read
 * of 64 KB nearly as long as one of 2 MB (~1 ms each with three in flight,
 * here), so what costs is the number of reads, not only their bytes.  The
 * candidates fall into extents, pages next in the schedule and next in the
 * file (a table), each read as full reads of MAX_BATCH_BYTES and one
 * shorter rest.  Pinned first: the small extents and the rests, smallest
 * first (each saves a read for the fewest bytes); then whole full reads,
 * spread evenly over the step, so that the readers have work all through
 * it (compute runs through a pinned stretch far faster than the disk).
 */
static int choose_pinned(const wcache *wc, int64_t n, int64_t n_pin, uint8_t *pin) {
    const int64_t full = MAX(MAX_BATCH_BYTES / wc->psz, 1);
    int64_t *cand = malloc(sizeof *cand * (size_t)MAX(n, 1));
    piece *rest = malloc(sizeof *rest * (size_t)MAX(n, 1)), *fulls = malloc(sizeof *fulls * (size_t)MAX(n, 1));
    if (!cand || !rest || !fulls) {
        free(cand), free(rest), free(fulls);
        return SQLM_NOMEM;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < wc->n_order; i++)
        if (!is_hot(wc, wc->order[i])) cand[k++] = wc->order[i];
    /* the rests (and small extents), then the full reads, in schedule order */
    int64_t n_rest = 0, n_full = 0;
    for (int64_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && cand[b] == cand[b - 1] + 1;) b++;
        int64_t m = (b - a) / full;
        for (int64_t j = 0; j < m; j++) fulls[n_full++] = (piece){ a + j * full, full };
        if ((b - a) % full) rest[n_rest++] = (piece){ a + m * full, (b - a) % full };
    }
    qsort(rest, (size_t)n_rest, sizeof *rest, cmp_piece_len);
    int64_t left = n_pin;
    for (int64_t i = 0; i < n_rest && left > 0; i++) {
        int64_t take = MIN(rest[i].len, left);
        memset(pin + rest[i].at, 1, (size_t)take);
        left -= take;
    }
    /* whole full reads, evenly (Bresenham); what is left, the start of one more */
    int64_t k_full = MIN(left / full, n_full);
    for (int64_t i = 0; i < n_full; i++)
        if ((i + 1) * k_full / n_full > i * k_full / n_full) {
            memset(pin + fulls[i].at, 1, (size_t)full);
            left -= full;
        }
    for (int64_t i = 0; i < n_full && left > 0; i++)
        if (!pin[fulls[i].at]) {
            memset(pin + fulls[i].at, 1, (size_t)left);
            left = 0;
        }
    free(cand), free(rest), free(fulls);
    return SQLM_OK;
}

int sqlm_wcache_plan(wcache *wc, size_t resident_cap) {
    pthread_mutex_lock(&wc->mu);
    if (wc->mode != MODE_TRACE) {
        pthread_mutex_unlock(&wc->mu);
        return sqlm_error(SQLM_ERROR, "weight cache: no trace to plan from");
    }
    if (wc->err) {
        pthread_mutex_unlock(&wc->mu);
        return sqlm_error(SQLM_IO, "%s", wc->errmsg);
    }
    for (int i = 0; i < wc->n_slots; i++) {
        if (wc->slots[i].refs) {
            pthread_mutex_unlock(&wc->mu);
            return sqlm_error(SQLM_ERROR, "weight cache: a page is still in use after the traced step");
        }
        slot_drop(wc, &wc->slots[i]);
    }
    size_t hot;
    size_t total = sqlm_wcache_traced_bytes(wc, &hot);
    if (hot > resident_cap) {
        pthread_mutex_unlock(&wc->mu);
        return sqlm_error(SQLM_NOMEM,
                          "the memory budget leaves %.1f MB for weights, but the model's index and small "
                          "tables alone take %.1f MB",
                          resident_cap / 1048576.0, hot / 1048576.0);
    }
    /* the streamed candidates, in schedule order */
    int64_t n_cand = 0;
    for (int64_t i = 0; i < wc->n_order; i++) n_cand += !is_hot(wc, wc->order[i]);
    int64_t n_res_cand = MIN(n_cand, (int64_t)((resident_cap - hot) / (size_t)wc->psz));
    /* whole huge pages: the capacity is rounded down to them, the length up */
    n_res_cand = MIN(n_res_cand, (int64_t)(((resident_cap - hot) / HUGE_SZ * HUGE_SZ) / (size_t)wc->psz));
    size_t res_pages = hot / (size_t)wc->psz + (size_t)n_res_cand;
    wc->res_len = res_pages * (size_t)wc->psz;
    wc->res_mem = huge_alloc(&wc->res_len);
    wc->sched = malloc(sizeof *wc->sched * (size_t)MAX(n_cand, 1));
    if ((res_pages && !wc->res_mem) || !wc->sched) {
        pthread_mutex_unlock(&wc->mu);
        return sqlm_error(SQLM_NOMEM, "out of memory for %.1f MB of resident weights", wc->res_len / 1048576.0);
    }
    /* which candidates to pin: see choose_pinned() */
    uint8_t *pin = calloc((size_t)MAX(n_cand, 1), 1);
    if (!pin || choose_pinned(wc, n_cand, n_res_cand, pin)) {
        free(pin);
        pthread_mutex_unlock(&wc->mu);
        return sqlm_error(SQLM_NOMEM, "out of memory for the weight cache's plan");
    }
    size_t used = 0;
    for (int64_t i = 0, c = 0; i < wc->n_order; i++) {
        int64_t pg = wc->order[i];
        bool hot = is_hot(wc, pg);
        if (hot || pin[c]) {
            wc->res[pg] = wc->res_mem + used;
            used += (size_t)wc->psz;
        } else {
            wc->sidx[pg] = (int32_t)wc->n_sched;
            wc->sched[wc->n_sched++] = pg;
        }
        c += !hot;
    }
    free(pin);
    wc->st.resident_bytes = used;
    wc->st.sched_bytes = total;
    wc->st.ring_bytes = wc->ring_bytes;
    pthread_mutex_unlock(&wc->mu);

    double t0 = sqlm_now();
    int rc = load_resident(wc);
    wc->st.load_s = sqlm_now() - t0;
    if (rc) return sqlm_error(SQLM_IO, "%s", wc->errmsg);

    pthread_mutex_lock(&wc->mu);
    wc->mode = MODE_STREAM;
    wc->rpos = 0;
    wc->rticket = wc->cticket = 0;
    while (wc->n_sched > 0 && wc->n_th < N_READERS && pthread_create(&wc->th[wc->n_th], NULL, reader_main, wc) == 0)
        wc->n_th++;
    rc = wc->n_sched > 0 && !wc->n_th ? sqlm_error(SQLM_ERROR, "weight cache: cannot start the reader thread")
                                      : SQLM_OK;
    pthread_mutex_unlock(&wc->mu);
    return rc;
}

void sqlm_wcache_get_stats(wcache *wc, wcache_stats *st) {
    pthread_mutex_lock(&wc->mu);
    *st = wc->st;
    st->fetch_bytes = atomic_load(&wc->n_fetch_bytes);
    st->hit_bytes = atomic_load(&wc->n_hit_bytes);
    st->direct = wc->direct;
    pthread_mutex_unlock(&wc->mu);
}

const char *sqlm_wcache_error(wcache *wc) {
    pthread_mutex_lock(&wc->mu);
    const char *m = wc->err || wc->errmsg[0] ? wc->errmsg : NULL;
    pthread_mutex_unlock(&wc->mu);
    return m;
}

/* ------------------------------------------------------------- the VFS */

typedef struct wc_file {
    sqlite3_file base;
    wcache *wc;             /* NULL: every call goes to the real file */
    sqlite3_file *real;
} wc_file;

static sqlite3_vfs wc_vfs;
static sqlite3_vfs *parent_vfs;

#define REAL(f) (((wc_file *)(f))->real)

static int x_close(sqlite3_file *f) {
    wc_file *w = (wc_file *)f;
    int rc = w->real->pMethods ? w->real->pMethods->xClose(w->real) : SQLITE_OK;
    if (w->wc) sqlm_wcache_close(w->wc);
    w->wc = NULL;
    return rc;
}
static int x_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off) { return REAL(f)->pMethods->xRead(REAL(f), p, n, off); }
static int x_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) { return REAL(f)->pMethods->xWrite(REAL(f), p, n, off); }
static int x_truncate(sqlite3_file *f, sqlite3_int64 n) { return REAL(f)->pMethods->xTruncate(REAL(f), n); }
static int x_sync(sqlite3_file *f, int fl) { return REAL(f)->pMethods->xSync(REAL(f), fl); }
static int x_size(sqlite3_file *f, sqlite3_int64 *n) { return REAL(f)->pMethods->xFileSize(REAL(f), n); }
static int x_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int x_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int x_check(sqlite3_file *f, int *o) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), o); }
static int x_fcntl(sqlite3_file *f, int op, void *arg) {
    wc_file *w = (wc_file *)f;
    /* the mapping is ours: the real file must not map the model */
    if (w->wc && op == SQLITE_FCNTL_MMAP_SIZE) return SQLITE_OK;
    return w->real->pMethods->xFileControl(w->real, op, arg);
}
static int x_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int x_devchar(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
#define HAS_SHM(f) (REAL(f)->pMethods->iVersion >= 2 && REAL(f)->pMethods->xShmMap)
static int x_shmmap(sqlite3_file *f, int i, int sz, int b, void volatile **pp) { return HAS_SHM(f) ? REAL(f)->pMethods->xShmMap(REAL(f), i, sz, b, pp) : SQLITE_IOERR; }
static int x_shmlock(sqlite3_file *f, int o, int n, int fl) { return HAS_SHM(f) ? REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl) : SQLITE_IOERR; }
static void x_shmbarrier(sqlite3_file *f) { if (HAS_SHM(f)) REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int x_shmunmap(sqlite3_file *f, int d) { return HAS_SHM(f) ? REAL(f)->pMethods->xShmUnmap(REAL(f), d) : SQLITE_OK; }

static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
    wc_file *w = (wc_file *)f;
    *pp = NULL;
    if (!w->wc) return REAL(f)->pMethods->iVersion >= 3 ? REAL(f)->pMethods->xFetch(REAL(f), off, n, pp) : SQLITE_OK;
    if (n != w->wc->psz || off % n) return SQLITE_OK;
    int rc;
    *pp = wc_fetch_page(w->wc, off / n, &rc);
    return rc;
}

static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    wc_file *w = (wc_file *)f;
    if (!w->wc) return REAL(f)->pMethods->iVersion >= 3 ? REAL(f)->pMethods->xUnfetch(REAL(f), off, p) : SQLITE_OK;
    wc_unfetch_page(w->wc, p);
    return SQLITE_OK;
}

static const sqlite3_io_methods wc_io = {
    3, x_close, x_read, x_write, x_truncate, x_sync, x_size, x_lock, x_unlock, x_check, x_fcntl,
    x_sector, x_devchar, x_shmmap, x_shmlock, x_shmbarrier, x_shmunmap, x_fetch, x_unfetch,
};

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags) {
    (void)vfs;
    wc_file *w = (wc_file *)f;
    memset(w, 0, sizeof *w);
    w->real = (sqlite3_file *)(w + 1);
    int rc = parent_vfs->xOpen(parent_vfs, name, w->real, flags, out_flags);
    if (rc != SQLITE_OK) return rc;
    w->base.pMethods = &wc_io;
    struct stat sb;
    /* the cache needs the real file's fetch interface (version 3) to be
     * the one asked for pages; a file without it is passed through */
    if (w->real->pMethods->iVersion >= 3 && (flags & SQLITE_OPEN_MAIN_DB) && (flags & SQLITE_OPEN_READONLY) && name && stat(name, &sb) == 0) {
        pthread_mutex_lock(&reg_mu);
        wcache *wc = reg_find(sb.st_dev, sb.st_ino);
        if (wc) wc->refs++;
        pthread_mutex_unlock(&reg_mu);
        w->wc = wc;
    }
    return SQLITE_OK;
}

static int x_delete(sqlite3_vfs *v, const char *n, int s) { (void)v; return parent_vfs->xDelete(parent_vfs, n, s); }
static int x_access(sqlite3_vfs *v, const char *n, int fl, int *o) { (void)v; return parent_vfs->xAccess(parent_vfs, n, fl, o); }
static int x_fullpath(sqlite3_vfs *v, const char *n, int sz, char *o) { (void)v; return parent_vfs->xFullPathname(parent_vfs, n, sz, o); }
static void *x_dlopen(sqlite3_vfs *v, const char *n) { (void)v; return parent_vfs->xDlOpen(parent_vfs, n); }
static void x_dlerror(sqlite3_vfs *v, int n, char *o) { (void)v; parent_vfs->xDlError(parent_vfs, n, o); }
static void (*x_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return parent_vfs->xDlSym(parent_vfs, h, s); }
static void x_dlclose(sqlite3_vfs *v, void *h) { (void)v; parent_vfs->xDlClose(parent_vfs, h); }
static int x_random(sqlite3_vfs *v, int n, char *o) { (void)v; return parent_vfs->xRandomness(parent_vfs, n, o); }
static int x_sleep(sqlite3_vfs *v, int us) { (void)v; return parent_vfs->xSleep(parent_vfs, us); }
static int x_time(sqlite3_vfs *v, double *t) { (void)v; return parent_vfs->xCurrentTime(parent_vfs, t); }
static int x_lasterr(sqlite3_vfs *v, int n, char *o) { (void)v; return parent_vfs->xGetLastError ? parent_vfs->xGetLastError(parent_vfs, n, o) : 0; }
static int x_time64(sqlite3_vfs *v, sqlite3_int64 *t) { (void)v; return parent_vfs->xCurrentTimeInt64(parent_vfs, t); }

static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;
static int vfs_rc = SQLITE_ERROR;

static void vfs_register(void) {
    parent_vfs = sqlite3_vfs_find(NULL);
    if (!parent_vfs || parent_vfs->iVersion < 2) return;
    wc_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(wc_file) + parent_vfs->szOsFile,
        .mxPathname = parent_vfs->mxPathname,
        .zName = "sqlm-wcache",
        .xOpen = x_open, .xDelete = x_delete, .xAccess = x_access, .xFullPathname = x_fullpath,
        .xDlOpen = x_dlopen, .xDlError = x_dlerror, .xDlSym = x_dlsym, .xDlClose = x_dlclose,
        .xRandomness = x_random, .xSleep = x_sleep, .xCurrentTime = x_time,
        .xGetLastError = x_lasterr, .xCurrentTimeInt64 = x_time64,
    };
    vfs_rc = sqlite3_vfs_register(&wc_vfs, 0);
}

const char *sqlm_wcache_vfs(void) {
    pthread_once(&vfs_once, vfs_register);
    return vfs_rc == SQLITE_OK ? wc_vfs.zName : NULL;
}
