/*
 * sqlm.h - public API of sqlm: language models compiled to SQL.
 *
 * sqlm imports a model file into a database (weights as tables), compiles the
 * transformer into SQL statements and runs them on an engine (SQLite by
 * default) to generate text.  Every call returns an SQLM_* code; on failure
 * sqlm_errmsg() gives a message naming the file, field or statement at fault.
 */
#ifndef SQLM_H
#define SQLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SQLM_OK = 0,
    SQLM_ERROR,        /* generic failure */
    SQLM_NOMEM,        /* allocation failed or a memory budget was hit */
    SQLM_IO,           /* read/write/mmap failed */
    SQLM_FORMAT,       /* a model or database file is malformed */
    SQLM_DB,           /* the engine rejected a statement */
    SQLM_UNSUPPORTED,  /* feature, type or engine not available */
    SQLM_RANGE,        /* a request exceeds a limit (context, sizes) */
};

/* Static text for a result code. */
const char *sqlm_errstr(int rc);

/*
 * The message of the last error recorded by this thread.  The string is owned
 * by sqlm and stays valid until the next failing sqlm call in this thread.
 */
const char *sqlm_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif /* SQLM_H */
