/*
 * tiles.h - the SQLite engine's in-place reads of weight tiles from the
 * database file, through a mapping or a memory budget's weight cache.
 */
#ifndef SQLM_TILES_H
#define SQLM_TILES_H

#include "../../ir/ir.h"

/* ----------------------------------------------------- db/sqlite/tiles.c */

/*
 * Weight tiles read in place: "the bytes of tile id of weight wi".  The mmap
 * backend maps the SQLite file read from descriptor fd (borrowed: the caller
 * keeps it open and the file unchanged while the store lives) and walks each
 * weight table's b-tree from roots[i], checking every offset against the file
 * and every tile against the layout ws[i].  A malformed file is an
 * SQLM_FORMAT error naming the table, never an out-of-bounds read.
 * Free with sqlm_tiles_close().
 */
typedef struct tile_store tile_store;
struct wcache;
int sqlm_tiles_open(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots, int n);
/* The same, then served by a memory budget's weight cache instead of the
 * mapping (the walk drops the mapping's pages as it goes, the mapping is
 * gone when it returns); sqlm_tiles_get() may then block on a read and returns
 * NULL on an I/O error (sqlm_wcache_error() says which). */
int sqlm_tiles_open_cached(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots,
                      int n, struct wcache *wc);
void sqlm_tiles_close(tile_store *s);
int sqlm_tiles_find(const tile_store *s, const char *name);          /* weight index, or -1 */
const ir_weight *sqlm_tiles_layout(const tile_store *s, int wi);
int64_t sqlm_tiles_count(const tile_store *s, int wi);               /* tiles of weight wi */
/* Tile id of weight wi: *len bytes, valid until sqlm_tiles_put(s, wi, id); NULL if
 * id is out of range.  Safe to call from several threads at once. */
const void *sqlm_tiles_get(tile_store *s, int wi, int64_t id, size_t *len);
void sqlm_tiles_put(tile_store *s, int wi, int64_t id);
/* A hint: tile id will be read soon (its b-tree record by a scan, then its bytes). */
void sqlm_tiles_prefetch(tile_store *s, int wi, int64_t id);

#endif /* SQLM_TILES_H */
