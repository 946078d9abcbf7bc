/*
 * readbw.c - the storage side of `make bench-mem`.
 *
 *   readbw FILE          read FILE start to end with O_DIRECT (8 MB requests
 *                        into transparent huge pages, as sqlm's weight cache
 *                        reads) and print "MB/s" of that uncached read
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
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    char *p = mmap(NULL, REQ + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    char *buf = (char *)(((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
#ifdef MADV_HUGEPAGE
    madvise(buf, REQ, MADV_HUGEPAGE);
#endif
    memset(buf, 0, REQ);
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
    double dt = now() - t0;
    printf("%.0f\n", (double)total / 1048576.0 / (dt > 0 ? dt : 1e-9));
    return 0;
}
