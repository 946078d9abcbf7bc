/*
 * registry.c - the engines sqlm knows, in one table: found by name (the
 * --engine flag) or by the magic bytes of a database file they wrote.  An
 * engine that is not available at run time (DuckDB without its library)
 * is still listed; its open() says what is missing.  Also the row callback
 * that engines' callers share.
 */
#include <stdio.h>
#include <string.h>

#include "engine.h"

static const struct {
    const db_methods *m;
    size_t magic_off;        /* where the file's magic bytes sit */
    const char *magic;
} engines[] = {
    { &sqlm_db_sqlite, 0, "SQLite format 3" },
    { &sqlm_db_duckdb, 8, "DUCK" },
    { &sqlm_db_duckdb_native, 8, "DUCK" },   /* by name only: a file sniffs as duckdb */
};

int sqlm_db_int_row(void *ctx, int ncol, const db_val *vals) {
    if (ncol >= 1 && vals[0].type == DBV_INT) *(int64_t *)ctx = vals[0].i;
    return 0;
}

const db_methods *sqlm_db_find(const char *name) {
    for (size_t i = 0; name && i < ARRAY_LEN(engines); i++)
        if (strcmp(engines[i].m->name, name) == 0) return engines[i].m;
    return NULL;
}

const db_methods *sqlm_db_sniff(const char *path) {
    unsigned char h[32] = { 0 };
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    for (size_t i = 0; i < ARRAY_LEN(engines); i++) {
        size_t len = strlen(engines[i].magic), off = engines[i].magic_off;
        if (n >= off + len && memcmp(h + off, engines[i].magic, len) == 0) return engines[i].m;
    }
    return NULL;
}

int sqlm_db_resolve(const char *name, const char *engine_name, const db_methods **out) {
    *out = NULL;
    const db_methods *m = engine_name ? sqlm_db_find(engine_name) : sqlm_db_sniff(name);
    if (!m && engine_name) return sqlm_error(SQLM_UNSUPPORTED, "unknown engine '%s'", engine_name);
    /* nothing recognised: SQLite, whose open then says what the file is not */
    if (!m) m = &sqlm_db_sqlite;
    if (m->probe) {
        int rc = m->probe(name);
        if (rc) return rc;
    }
    *out = m;
    return SQLM_OK;
}
