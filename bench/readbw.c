/*
 * readbw.c - the storage side of `make bench-mem`.
 *
 *   readbw FILE          read FILE start to end with O_DIRECT, 8 MB requests
 *                        into transparent huge pages, one at a time (the
 *                        sequential read the storage bound is defined by),
 *                        drop it from the cache, read it again with two 2 MB
 *                        requests in flight (as sqlm's weight cache reads),
 *                        and print both MB/s: "SEQ QD2"
 *   readbw --drop FILE   drop FILE's pages from the page cache
 *
 * dd iflag=direct reads into a buffer of 4 KB pages, which the device
 * splits into small requests: it measured ~1 GB/s here where huge-page
 * buffers read 2.2-2.7 GB/s.  The storage bound of a decode step must use
 * what the disk can deliver, so the bound is taken from this reader.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REQ ((size_t)8 << 20)
#define HUGE ((size_t)2 << 20)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int g_fd;
static off_t g_size;

static char *huge_buf(size_t n) {
    char *p = mmap(NULL, n + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *buf = (char *)(((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
#ifdef MADV_HUGEPAGE
    madvise(buf, n, MADV_HUGEPAGE);
#endif
    memset(buf, 0, n);
    return buf;
}

/* reader i of 2: requests i, i + 2, ... of 2 MB */
static void *qd2_reader(void *arg) {
    long i = (long)arg;
    char *buf = huge_buf(HUGE);
    if (!buf) return NULL;
    for (off_t off = (off_t)i * (off_t)HUGE; off < g_size; off += 2 * (off_t)HUGE)
        if (pread(g_fd, buf, HUGE, off) <= 0) break;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--drop") == 0) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
            perror(argv[2]);
            return 1;
        }
        close(fd);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: readbw FILE | readbw --drop FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    char *buf = huge_buf(REQ);
    if (fd < 0 || !buf) {
        perror(argv[1]);
        return 1;
    }
    double t0 = now();
    size_t total = 0;
    for (;;) {
        ssize_t r = pread(fd, buf, REQ, (off_t)total);
        if (r < 0) {
            perror("pread");
            return 1;
        }
        if (r == 0) break;
        total += (size_t)r;
        if ((size_t)r < REQ) break;
    }
    double seq = now() - t0;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    g_fd = fd;
    g_size = (off_t)total;
    pthread_t th[2];
    t0 = now();
    for (long i = 0; i < 2; i++) pthread_create(&th[i], NULL, qd2_reader, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    double qd2 = now() - t0;
    printf("%.0f %.0f\n", (double)total / 1048576.0 / (seq > 0 ? seq : 1e-9),
           (double)total / 1048576.0 / (qd2 > 0 ? qd2 : 1e-9));
    return 0;
}
