/*
 * api.c - loading libduckdb.so with dlopen: where it is looked for (the
 * process's own, $SQLM_DUCKDB_LIB, .deps/duckdb/..., the system's), its
 * functions bound once (sqlm_duckdb_load()), and its allocator's settings.
 * A library that lacks a function of the core subset is refused with its
 * name; the scalar-function symbols are needed by the native engine only.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"

struct sqlm_duckdb_api sqlm_duckdb_api;
const char *sqlm_duckdb_udf_missing;

/* ------------------------------------------------------------- loading */

/* Where scripts/install-duckdb.sh puts the npm package's library. */
#if defined(__aarch64__)
#define NPM_LIB ".deps/duckdb/node_modules/@duckdb/node-bindings-linux-arm64/libduckdb.so"
#else
#define NPM_LIB ".deps/duckdb/node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so"
#endif

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc;
static char load_msg[PATH_MAX + 512];
static const char *lib_version;

static void *try_open(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }

/* The library: one the process has loaded already (a DuckDB client that
 * loaded the extension sqlm.duckdb_extension: a second copy of DuckDB in
 * the process would be a second set of globals and a second allocator),
 * else $SQLM_DUCKDB_LIB, else the npm install beside the running program
 * (or its parent: build/ holds the tests), else in the current folder, else
 * the system's libduckdb.so. */
static void *open_library(char *detail, size_t n) {
    const char *env = getenv("SQLM_DUCKDB_LIB");
    detail[0] = 0;
    void *loaded = dlopen("libduckdb.so", RTLD_NOW | RTLD_NOLOAD);
    if (loaded) return loaded;
    if (env && *env) {
        void *h = try_open(env);
        if (!h) snprintf(detail, n, ": SQLM_DUCKDB_LIB=%s: %s", env, dlerror());
        return h;
    }
    char exe[PATH_MAX], path[PATH_MAX + 128];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/%s", exe, NPM_LIB);
        void *h = try_open(path);
        if (h) return h;
        snprintf(path, sizeof path, "%s/../%s", exe, NPM_LIB);
        if ((h = try_open(path))) return h;
    }
    void *h = try_open("./" NPM_LIB);
    return h ? h : try_open("libduckdb.so");
}

/* The npm library allocates through its own jemalloc, which returns freed
 * pages to the kernel within a second (DuckDB sets dirty and muzzy decay to
 * 1 s); the next statement of a step then faults them in again, zeroed.  A
 * 1.1B decode step took 140 000 such faults and 0.35 CPU-seconds of system
 * time, and varied from 760 to 1250 ms.  With a 10 s decay a step reuses the
 * pages the one before it freed, as with decay off: best and mean step 627-671
 * and 673-714 ms in two runs of 12 steps after a 25-token prompt, against
 * 656-667 and 690-701 off; 1.66-1.77 million faults for the whole run against
 * 1.53-1.56 off and 3.5 at 1 s.  Decay off is not an option: pages
 * are never handed back, and a process running one short sequence after
 * another (a server) grows by 21 MB a sequence, to 2.2 GB after 70 (110M
 * shape); at 10 s it levels off at about 900 MB.  A value the user set wins;
 * it must be in place before the library's allocator starts. */
#define JE_CONF_ENV "DUCKDB_JE_MALLOC_CONF"
#define JE_CONF "dirty_decay_ms:10000,muzzy_decay_ms:10000"

static void load(void) {
    char detail[PATH_MAX + 128];
    setenv(JE_CONF_ENV, JE_CONF, 0);
    void *h = open_library(detail, sizeof detail);
    if (!h) {
        snprintf(load_msg, sizeof load_msg,
                 "engine duckdb: cannot load libduckdb.so (run scripts/install-duckdb.sh or set "
                 "SQLM_DUCKDB_LIB)%s", detail);
        load_rc = SQLM_UNSUPPORTED;
        return;
    }
#define X(ret, name, args)                                                                   \
    if (!(api.name = (ret(*) args)dlsym(h, #name))) {                                          \
        snprintf(load_msg, sizeof load_msg, "engine duckdb: libduckdb.so lacks %s (DuckDB 1.1 " \
                 "or later is needed)", #name);                                                \
        load_rc = SQLM_UNSUPPORTED;                                                            \
        return;                                                                                \
    }
    DUCKDB_FUNCS(X)
#undef X
#define X(ret, name, args) \
    if (!(api.name = (ret(*) args)dlsym(h, #name)) && !sqlm_duckdb_udf_missing) sqlm_duckdb_udf_missing = #name;
    DUCKDB_UDF_FUNCS(X)
#undef X
    lib_version = api.duckdb_library_version();
    load_rc = SQLM_OK;
}

int sqlm_duckdb_load(void) {
    pthread_once(&load_once, load);
    return load_rc ? sqlm_error(load_rc, "%s", load_msg) : SQLM_OK;
}

const char *sqlm_duckdb_lib_version(void) { return load_rc == SQLM_OK ? lib_version : NULL; }

