/*
 * mem.c - what a memory budget needs to know about the process and the
 * machine: sizes as people write them, resident memory, the memory limit of
 * the process's cgroup, bytes read from storage, CPU time of a thread.
 * Everything reads /proc and /sys; a missing file reads as "unknown" (0).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "util.h"

bool sqlm_parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return false;
    while (*end == ' ') end++;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1048576.0; end++; break;
    case 'G': mul = 1073741824.0; end++; break;
    case 'T': mul = 1099511627776.0; end++; break;
    case 'B': case 0: break;
    default: return false;
    }
    if (mul > 1 && (*end == 'i' || *end == 'I')) end++;   /* MiB */
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return false;
    double b = v * mul;
    if (b >= 9.2e18) return false;
    *out = (size_t)b;
    return true;
}

/* A "Key: N kB" line of a /proc file (status, meminfo), in bytes. */
static size_t proc_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    char line[256];
    size_t kb = 0, n = strlen(key);
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kb = (size_t)strtoull(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

size_t sqlm_rss(void) { return proc_kb("/proc/self/status", "VmRSS"); }
size_t sqlm_peak_rss(void) { return proc_kb("/proc/self/status", "VmHWM"); }

void sqlm_heap_trim(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* The file "name" of this process's memory cgroup (v1 or v2), read as a
 * number; 0 when absent or unlimited. */
static size_t cgroup_value(const char *v1_name, const char *v2_name) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096], path[4352];
    size_t val = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrl = c1 + 1, *cg = c2 + 1;
        if (strcmp(ctrl, "memory") == 0 || strstr(ctrl, "memory"))
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/%s", cg, v1_name);
        else if (*ctrl == 0)
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/%s", cg, v2_name);
        else
            continue;
        FILE *g = fopen(path, "r");
        if (!g) continue;
        char buf[64] = "";
        if (fgets(buf, sizeof buf, g) && isdigit((unsigned char)buf[0])) {
            unsigned long long x = strtoull(buf, NULL, 10);
            /* v1 reports "no limit" as a huge page-rounded number */
            if (x < (1ull << 60)) val = (size_t)x;
        }
        fclose(g);
        if (val) break;
    }
    fclose(f);
    return val;
}

size_t sqlm_cgroup_limit(void) { return cgroup_value("memory.limit_in_bytes", "memory.max"); }

size_t sqlm_mem_available(void) { return proc_kb("/proc/meminfo", "MemAvailable"); }

uint64_t sqlm_io_read_bytes(void) {
    FILE *f = fopen("/proc/self/io", "r");
    char line[256];
    unsigned long long v = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "read_bytes: %llu", &v) == 1) break;
    fclose(f);
    return v;
}

double sqlm_thread_cpu(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sqlm_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
