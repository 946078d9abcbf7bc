/*
 * pool.c - a fixed pool of worker threads for the product functions: the
 * calling thread and n-1 workers run one job together, and the call returns
 * when all of them are done (one synchronisation per job, as llama.cpp's
 * graph threads).
 *
 * Workers spin for a short while after a job (the next product of a decode
 * step comes within tens of microseconds), yielding the core after the first
 * microseconds (on a busy machine the thread that would post the next job
 * may be waiting for this core), then sleep on a condition variable, so an
 * idle session costs no CPU.  Jobs must not call SQLite: the
 * workers only read tiles and write disjoint parts of the output.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_PAUSES 2048     /* pause instructions before yielding, after a job */
#define SPIN_SECONDS 0.002   /* waiting before sleeping, after a job */

struct pool {
    int n;                         /* threads, the caller included */
    int solo;                      /* jobs still to run on the caller alone */
    int backoff;                   /* length of the last solo stretch */
    int win_jobs;                  /* jobs in the caller's current window */
    double win_wall, win_cpu;      /* the window's start: wall and caller CPU seconds */
    pthread_t *tid;                /* [n - 1] workers */
    pool_fn fn;                    /* the current job */
    void *ctx;
    _Atomic uint64_t gen;          /* bumped per job */
    _Atomic int pending;           /* workers still running the current job */
    _Atomic int sleeping;          /* workers waiting on cv */
    _Atomic bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct worker_arg {
    pool *p;
    int ith;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    const int ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        /* wait for a new job: spin a little, then yield the core (the
         * caller may be waiting for it on a busy machine), then sleep */
        double t0 = sqlm_now();
        int spins = 0;
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_PAUSES) cpu_relax();
            else sched_yield();
            if (spins % 64 == 0 && sqlm_now() - t0 > SPIN_SECONDS) {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->sleeping, 1);
                while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
                atomic_fetch_sub(&p->sleeping, 1);
                pthread_mutex_unlock(&p->mu);
            }
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_sub(&p->pending, 1);
    }
}

int sqlm_pool_init(pool **out, int n) {
    *out = NULL;
    pool *p = calloc(1, sizeof *p);
    if (!p) return sqlm_error(SQLM_NOMEM, "out of memory");
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n > 1 && !(p->tid = calloc((size_t)n - 1, sizeof *p->tid))) {
        sqlm_pool_free(p);
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        *wa = (worker_arg){ p, i };
        if (pthread_create(&p->tid[i - 1], NULL, worker, wa) != 0) {
            free(wa);
            break;   /* fewer threads than asked: still correct */
        }
        p->n = i + 1;
    }
    *out = p;
    return SQLM_OK;
}

void sqlm_pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->tid);
    free(p);
}

int sqlm_pool_size(const pool *p) { return p ? p->n : 1; }

/*
 * On a machine with more runnable threads than cores, a worker that loses
 * its core in the middle of a job holds the caller up until it runs again,
 * for milliseconds, and a decode step has some fifty jobs.  A job whose
 * workers finish much later than the caller (which only happens when one of
 * them was descheduled: they take work units from a shared counter) starts a
 * stretch of jobs the caller runs alone, twice as long each time it happens
 * again, up to LATE_MAX jobs; a job without trouble halves it.
 */
#define LATE_FIRST 64
#define LATE_MAX 4096
#define WINDOW_JOBS 32    /* jobs per check of the caller's share of a core */

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void go_solo(pool *p) {
    p->backoff = p->backoff ? MIN(2 * p->backoff, LATE_MAX) : LATE_FIRST;
    p->solo = p->backoff;
    p->win_jobs = 0;
}

void sqlm_pool_run(pool *p, pool_fn fn, void *ctx) {
    if (!p || p->n == 1 || p->solo > 0) {
        if (p && p->solo > 0) p->solo--;
        fn(ctx, 0, 1);
        return;
    }
    /* The other sign of a busy machine: the caller itself gets much less
     * than a core (its waiting workers, yielding, still share it), measured
     * over a window of jobs and the work between them. */
    if (p->win_jobs >= WINDOW_JOBS) {
        double wall = sqlm_now() - p->win_wall, cpu = thread_cpu() - p->win_cpu;
        p->win_jobs = 0;
        if (wall > 2e-3 && cpu < 0.75 * wall) {
            go_solo(p);
            fn(ctx, 0, 1);
            return;
        }
    }
    if (p->win_jobs == 0) {   /* a new window */
        p->win_wall = sqlm_now();
        p->win_cpu = thread_cpu();
    }
    p->win_jobs++;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1);   /* publishes fn and ctx (sequentially consistent) */
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    double t0 = sqlm_now();
    fn(ctx, 0, p->n);
    double t1 = sqlm_now();
    /* the workers' shares are about as large as ours: spin, yielding when a
     * worker was descheduled on a busy machine */
    for (int spins = 0; atomic_load(&p->pending) > 0; spins++) {
        if (spins < SPIN_PAUSES) cpu_relax();
        else sched_yield();
    }
    double late = sqlm_now() - t1;
    if (late > 2e-4 + (t1 - t0) / 4) go_solo(p);
    else if (p->win_jobs == WINDOW_JOBS) p->backoff /= 2;   /* a whole window went well */
}
