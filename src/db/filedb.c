/*
 * filedb.c - what the file engines (SQLite, DuckDB) share of the engine
 * contract: creating a database atomically (written as NAME.tmp-PID inside
 * one transaction, synced, then renamed to NAME, so that an interrupted or
 * failed import leaves no file that looks complete; the next import of NAME
 * removes what a killed one left), probing a name, and
 * removing a database with its side files.  A server engine implements
 * these methods its own way (db_create in engine.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

static void create_free(db_create *c) {
    free(c->name);
    free(c->staging);
    c->name = c->staging = NULL;
    c->e = NULL;
}

static void remove_staging(db_create *c) {
    if (!c->staging) return;
    if (c->m && c->m->remove) c->m->remove(c->staging);
    else sqlm_db_file_remove(c->staging);
}

/* Remove the staging files NAME.tmp-PID that imports killed before they
 * finished left beside name: those whose process is gone (another import of
 * the same name that is still running keeps its own). */
static void remove_stale_staging(db_create *c, const char *name) {
    const char *slash = strrchr(name, '/');
    char dir[4096];
    const char *base = slash ? slash + 1 : name;
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - name + (slash == name)), name);
    else snprintf(dir, sizeof dir, ".");
    DIR *d = opendir(dir);
    if (!d) return;
    size_t n = strlen(base);
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        if (strncmp(e->d_name, base, n) != 0 || strncmp(e->d_name + n, ".tmp-", 5) != 0) continue;
        long pid = strtol(e->d_name + n + 5, &end, 10);
        if (end == e->d_name + n + 5 || *end || pid <= 0 || pid > INT_MAX) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (c->m && c->m->remove) c->m->remove(path);
        else sqlm_db_file_remove(path);
    }
    closedir(d);
}

int sqlm_db_file_create_begin(db_create *c, const char *name, const engine_opts *o) {
    c->e = NULL;
    c->name = sqlm_strdup(name);
    buf b;
    sqlm_buf_init(&b);
    sqlm_buf_appendf(&b, "%s.tmp-%d", name, (int)getpid());
    c->staging = b.rc ? (sqlm_buf_free(&b), NULL) : sqlm_buf_detach(&b);
    if (!c->name || !c->staging) {
        create_free(c);
        return sqlm_error(SQLM_NOMEM, "out of memory");
    }
    remove_staging(c);   /* a leftover of an import killed with this pid */
    remove_stale_staging(c, name);
    engine_opts eo = *o;
    eo.create = true;
    int rc = c->m->open(&c->e, c->staging, &eo);
    if (!rc) rc = c->e->m->exec(c->e, "BEGIN");
    if (rc) sqlm_db_file_create_abort(c);
    return rc;
}

/* A log the engine left beside the file at close: DuckDB moves its
 * write-ahead log into the file when it closes and cannot report a failure
 * then (a full disk); the log stays and the file alone lacks the data. */
static int leftover_log(const char *staging) {
    static const char *const side[] = { ".wal", "-wal", "-journal" };
    char p[4096];
    for (size_t i = 0; i < ARRAY_LEN(side); i++)
        if ((size_t)snprintf(p, sizeof p, "%s%s", staging, side[i]) < sizeof p && access(p, F_OK) == 0)
            return sqlm_error(SQLM_IO, "%s: the engine could not move its log %s into the database when it "
                              "closed (disk full?)", staging, p);
    return SQLM_OK;
}

int sqlm_db_file_create_commit(db_create *c) {
    int rc = c->e->m->exec(c->e, "COMMIT");
    c->e->m->close(c->e);
    c->e = NULL;
    if (!rc) rc = leftover_log(c->staging);
    /* Durable before visible. */
    if (!rc) {
        int fd = open(c->staging, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) rc = sqlm_error(SQLM_IO, "%s: cannot sync", c->staging);
        if (fd >= 0) close(fd);
    }
    if (!rc && rename(c->staging, c->name) != 0)
        rc = sqlm_error(SQLM_IO, "cannot rename %s to %s", c->staging, c->name);
    if (rc) remove_staging(c);
    create_free(c);
    return rc;
}

void sqlm_db_file_create_abort(db_create *c) {
    if (c->e) c->e->m->close(c->e);
    c->e = NULL;
    remove_staging(c);
    create_free(c);
}

int sqlm_db_file_probe(const char *name) {
    int fd = open(name, O_RDONLY);
    if (fd < 0) return sqlm_error(SQLM_IO, "%s: cannot open model database", name);
    close(fd);
    return SQLM_OK;
}

void sqlm_db_file_remove(const char *name) {
    static const char *const side[] = { "-journal", "-wal", "-shm" };
    char p[4096];
    unlink(name);
    for (size_t i = 0; i < ARRAY_LEN(side); i++)
        if ((size_t)snprintf(p, sizeof p, "%s%s", name, side[i]) < sizeof p) unlink(p);
}
