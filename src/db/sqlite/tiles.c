/*
 * tiles.c - weight tiles read in place: "the bytes of tile id of weight W",
 * straight from a read-only mapping of the model's SQLite file, so the
 * product functions never wait for SQLite to copy a BLOB.
 *
 * At open, each weight table's b-tree is walked once from its root page and
 * the file offset of every tile's BLOB is recorded; after that a lookup is an
 * array index.  Everything read from the file is checked against the file
 * size, the page bounds and the table's layout in sqlm_weight before it is
 * trusted: a damaged or hostile file makes sqlm_tiles_open() fail with a message
 * (the engine then keeps its copying path), never an out-of-bounds read.
 *
 * This is the mmap backend of the interface in tiles.h; a cache with a
 * memory budget (resident tiles + streaming reads) can replace it behind the
 * same calls.  It neither opens nor locks the file: the caller passes a
 * descriptor and keeps the file from changing while it is mapped (the SQLite
 * engine holds its shared lock, and keeps the descriptor open until SQLite is
 * closed, because closing any descriptor of a file drops the POSIX locks the
 * process holds on it, SQLite's included).
 *
 * The parts of the SQLite file format read here:
 *
 *   file header (page 1, bytes 0..99): "SQLite format 3\0"; page size at 16
 *     (big-endian u16, 1 = 65536); write/read versions at 18/19 (2 = WAL);
 *     reserved bytes per page at 20 (usable size U = page size - reserved).
 *   b-tree page N at offset (N-1) * page size; its header starts at byte 100
 *     on page 1, else 0: type (0x05 interior table, 0x0D leaf table), first
 *     freeblock (u16), cell count (u16), content start (u16), fragmented bytes
 *     (u8), then on interior pages the right-most child (u32); then the cell
 *     pointer array, one u16 offset per cell (from the page start).
 *   interior table cell: left child page (u32), rowid (varint).
 *   leaf table cell: payload size P (varint), rowid (varint), the payload
 *     (P <= U - 35 is stored whole in the page; more spills to overflow pages).
 *   varint: 1..9 bytes, big-endian groups of 7 bits with the high bit meaning
 *     "more"; the 9th byte gives all 8 bits.
 *   record (the payload): header size H (varint, counting itself), one serial
 *     type per column (varints), then the column bodies in order.  Serial
 *     types: 0 NULL, 1..6 big-endian integers of 1, 2, 3, 4, 6, 8 bytes,
 *     7 float, 8 and 9 the integers 0 and 1, N >= 12 even a BLOB of (N-12)/2
 *     bytes, N >= 13 odd a string of (N-13)/2 bytes.
 *
 * A weight table is (id INTEGER PRIMARY KEY, row, col, v BLOB): id is the
 * rowid (its column is stored as NULL), row and col say where the tile sits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "tiles.h"
#include "wcache.h"

typedef struct tile_table {
    ir_weight w;             /* layout, as in sqlm_weight */
    int64_t n_chunks;        /* chunks per row block */
    int64_t n_tiles;
    uint64_t *off;           /* [n_tiles] file offset of the tile's bytes (0 = not found yet) */
    uint32_t *len;           /* [n_tiles] its length */
} tile_table;

struct tile_store {
    const uint8_t *map;
    size_t size;             /* bytes mapped = file size */
    uint32_t page_size, usable;
    uint64_t n_pages;        /* whole pages in the file */
    tile_table *t;
    int n;
    wcache *wc;              /* a memory budget's cache serves the tiles (map is then NULL) */
    unsigned visits;         /* pages walked, to drop the mapping's pages every few */
};

/* ------------------------------------------------------------ reading */

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* A varint at p, not reading at or past end: bytes used, or 0 if truncated. */
static int get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 9; i++) {
        if (p + i >= end) return 0;
        if (i == 8) {
            *v = x << 8 | p[8];
            return 9;
        }
        x = x << 7 | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

/* Body bytes of a serial type; -1 for the reserved types 10 and 11. */
static int64_t serial_size(uint64_t t) {
    static const int8_t small[12] = { 0, 1, 2, 3, 4, 6, 8, 8, 0, 0, -1, -1 };
    if (t < 12) return small[t];
    return (int64_t)((t - 12 - (t & 1)) / 2);
}

/* The integer of serial type t (1..6, 8, 9) at p; false for other types. */
static bool serial_int(uint64_t t, const uint8_t *p, int64_t *v) {
    if (t == 8 || t == 9) {
        *v = (int64_t)t - 8;
        return true;
    }
    if (t < 1 || t > 6) return false;
    int n = (int)serial_size(t);
    uint64_t x = p[0] & 0x80 ? ~(uint64_t)0 : 0;   /* sign-extend */
    for (int i = 0; i < n; i++) x = x << 8 | p[i];
    *v = (int64_t)x;
    return true;
}

/* ------------------------------------------------------------ b-tree */

typedef struct walker {
    tile_store *s;
    tile_table *t;
    uint8_t *seen;           /* [n_pages + 1] pages visited by this walk */
    int64_t found;
} walker;

/* The page's bytes, or NULL when n is not a page of the file. */
static const uint8_t *page_at(const tile_store *s, uint64_t n) {
    if (n < 1 || n > s->n_pages) return NULL;
    /* under a memory budget the walk must not leave the file mapped in the
     * resident set: the mapping's pages are dropped every 64 pages walked
     * (addresses stay valid: a touch maps the page again from the cache) */
    if (s->wc && ++((tile_store *)s)->visits % 64 == 0) madvise((void *)s->map, s->size, MADV_DONTNEED);
    return s->map + (n - 1) * s->page_size;
}

/* Record one leaf cell: a tile's rowid and where its v BLOB lies. */
static int leaf_cell(walker *k, uint64_t pgno, const uint8_t *pg, uint32_t cell) {
    const tile_store *s = k->s;
    const tile_table *t = k->t;
    const ir_weight *w = &t->w;
    const uint8_t *end = pg + s->usable, *p = pg + cell;
    uint64_t size, rowid, hsize;
    int n1 = get_varint(p, end, &size), n2 = n1 ? get_varint(p + n1, end, &rowid) : 0;
    if (!n1 || !n2) return sqlm_error(SQLM_FORMAT, "%s: page %llu: cell header runs off the page", w->name, (unsigned long long)pgno);
    const uint8_t *rec = p + n1 + n2;
    int64_t id = (int64_t)rowid;
    if (size > s->usable - 35)
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld spills into overflow pages (%llu bytes)", w->name,
                          (long long)id, (unsigned long long)size);
    if (size > (uint64_t)(end - rec))
        return sqlm_error(SQLM_FORMAT, "%s: page %llu: tile %lld runs off the page", w->name, (unsigned long long)pgno, (long long)id);
    const uint8_t *rend = rec + size;
    int nh = get_varint(rec, rend, &hsize);
    if (!nh || hsize < (uint64_t)nh || hsize > size)
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld: bad record header", w->name, (long long)id);
    uint64_t type[4];
    const uint8_t *h = rec + nh, *hend = rec + hsize;
    int nc = 0;
    while (h < hend) {
        uint64_t st;
        int m = get_varint(h, hend, &st);
        if (!m || nc == 4) return sqlm_error(SQLM_FORMAT, "%s: tile %lld: record is not (id, row, col, v)", w->name, (long long)id);
        type[nc++] = st;
        h += m;
    }
    if (nc != 4 || type[0] != 0 || type[3] < 12 || (type[3] & 1))
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld: record is not (id, row, col, v BLOB)", w->name, (long long)id);
    int64_t sz[4], body = 0;
    for (int i = 0; i < 4; i++) {
        if ((sz[i] = serial_size(type[i])) < 0) return sqlm_error(SQLM_FORMAT, "%s: tile %lld: reserved serial type", w->name, (long long)id);
        if ((uint64_t)sz[i] > size)   /* also keeps the sum below from overflowing */
            return sqlm_error(SQLM_FORMAT, "%s: tile %lld: record body exceeds its payload", w->name, (long long)id);
        body += sz[i];
    }
    if ((uint64_t)body > size - hsize)
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld: record body exceeds its payload", w->name, (long long)id);
    const uint8_t *col1 = hend, *col2 = col1 + sz[1], *blob = col2 + sz[2];
    int64_t row, col;
    if (!serial_int(type[1], col1, &row) || !serial_int(type[2], col2, &col))
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld: row or col is not an integer", w->name, (long long)id);
    /* the layout recorded in sqlm_weight says what the tile must be */
    if (id < 0 || id >= t->n_tiles)
        return sqlm_error(SQLM_FORMAT, "%s: tile id %lld outside 0..%lld", w->name, (long long)id, (long long)t->n_tiles - 1);
    if (t->off[id]) return sqlm_error(SQLM_FORMAT, "%s: tile %lld appears twice", w->name, (long long)id);
    int64_t row0 = id / t->n_chunks * w->tile_rows, col0 = id % t->n_chunks * w->chunk;
    if (row != row0 || col != col0)
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld is at (%lld, %lld), expected (%lld, %lld)", w->name,
                          (long long)id, (long long)row, (long long)col, (long long)row0, (long long)col0);
    size_t rb;
    sqlm_dtype_row_bytes(w->dtype, (size_t)MIN(w->chunk, w->n_in - col0), &rb);
    uint64_t want = (uint64_t)rb * (uint64_t)MIN((int64_t)w->tile_rows, w->n_out - row0);
    if ((uint64_t)sz[3] != want)
        return sqlm_error(SQLM_FORMAT, "%s: tile %lld has %lld bytes, expected %llu", w->name, (long long)id,
                          (long long)sz[3], (unsigned long long)want);
    k->t->off[id] = (uint64_t)(blob - s->map);
    k->t->len[id] = (uint32_t)sz[3];
    k->found++;
    return SQLM_OK;
}

#define MAX_DEPTH 24

/* Walk the table b-tree rooted at page root, depth first, recording every
 * leaf cell.  Each page is visited at most once (a cycle is an error). */
static int walk(walker *k, uint64_t root) {
    const tile_store *s = k->s;
    const char *name = k->t->w.name;
    struct { uint64_t pgno; uint32_t next; } stack[MAX_DEPTH];   /* next: cell to descend into */
    int depth = 0;
    stack[0].pgno = root, stack[0].next = 0;
    bool enter = true;
    while (depth >= 0) {
        uint64_t pgno = stack[depth].pgno;
        const uint8_t *pg = page_at(s, pgno);
        if (!pg) return sqlm_error(SQLM_FORMAT, "%s: page %llu outside the file", name, (unsigned long long)pgno);
        uint32_t hdr = pgno == 1 ? 100 : 0;
        uint8_t type = pg[hdr];
        uint32_t hlen = type == 0x05 ? 12 : 8, ncell = be16(pg + hdr + 3);
        if (type != 0x05 && type != 0x0D)
            return sqlm_error(SQLM_FORMAT, "%s: page %llu is not a table b-tree page (type 0x%02x)", name,
                              (unsigned long long)pgno, type);
        if (hdr + hlen + 2 * (uint64_t)ncell > s->usable)
            return sqlm_error(SQLM_FORMAT, "%s: page %llu: %u cells do not fit", name, (unsigned long long)pgno, ncell);
        if (enter) {
            if (k->seen[pgno]) return sqlm_error(SQLM_FORMAT, "%s: page %llu is reached twice", name, (unsigned long long)pgno);
            k->seen[pgno] = 1;
        }
        const uint8_t *cp = pg + hdr + hlen;
        if (type == 0x0D) {
            for (uint32_t i = 0; i < ncell; i++) {
                uint32_t c = be16(cp + 2 * i);
                if (c < hdr + hlen + 2 * ncell || c >= s->usable)
                    return sqlm_error(SQLM_FORMAT, "%s: page %llu: cell %u outside the page", name, (unsigned long long)pgno, i);
                int rc = leaf_cell(k, pgno, pg, c);
                if (rc) return rc;
            }
            depth--;
            enter = false;
            continue;
        }
        /* interior: children are the left pointers of cells 0..ncell-1, then the right-most */
        uint32_t i = stack[depth].next++;
        if (i > ncell) {
            depth--;
            enter = false;
            continue;
        }
        uint64_t child;
        if (i < ncell) {
            uint32_t c = be16(cp + 2 * i);
            uint64_t key;
            if (c < hdr + hlen + 2 * ncell || c + 4 > s->usable || !get_varint(pg + c + 4, pg + s->usable, &key))
                return sqlm_error(SQLM_FORMAT, "%s: page %llu: cell %u outside the page", name, (unsigned long long)pgno, i);
            child = be32(pg + c);
        } else {
            child = be32(pg + hdr + 8);
        }
        if (depth + 1 >= MAX_DEPTH) return sqlm_error(SQLM_FORMAT, "%s: b-tree deeper than %d pages", name, MAX_DEPTH);
        depth++;
        stack[depth].pgno = child, stack[depth].next = 0;
        enter = true;
    }
    return SQLM_OK;
}

/* ------------------------------------------------------------ open, close */

static int map_file(tile_store *s, int fd, const char *path) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return sqlm_error(SQLM_IO, "%s: not a regular file", path);
    if (st.st_size < 512) return sqlm_error(SQLM_FORMAT, "%s: too short for a database (%lld bytes)", path, (long long)st.st_size);
    s->size = (size_t)st.st_size;
    void *m = mmap(NULL, s->size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        s->size = 0;
        return sqlm_error(SQLM_IO, "%s: cannot map %lld bytes", path, (long long)st.st_size);
    }
    s->map = m;
    const uint8_t *h = s->map;
    if (memcmp(h, "SQLite format 3", 16) != 0) return sqlm_error(SQLM_FORMAT, "%s: not an SQLite database", path);
    uint32_t ps = be16(h + 16);
    if (ps == 1) ps = 65536;
    if (ps < 512 || ps > 65536 || (ps & (ps - 1))) return sqlm_error(SQLM_FORMAT, "%s: bad page size %u", path, ps);
    if (h[18] != 1 || h[19] != 1)
        return sqlm_error(SQLM_UNSUPPORTED, "%s: WAL-mode database (pages may live in the WAL file)", path);
    s->page_size = ps;
    s->usable = ps - h[20];
    if (s->usable < 480) return sqlm_error(SQLM_FORMAT, "%s: %u reserved bytes per page", path, h[20]);
    s->n_pages = s->size / ps;
    return SQLM_OK;
}

static int open_store(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots, int n,
                      wcache *wc) {
    *out = NULL;
    tile_store *s = calloc(1, sizeof *s);
    if (!s) return sqlm_error(SQLM_NOMEM, "out of memory");
    s->wc = wc;
    int rc = map_file(s, fd, path);
    uint8_t *seen = rc ? NULL : calloc(s->n_pages + 1, 1);
    if (!rc && !seen) rc = sqlm_error(SQLM_NOMEM, "out of memory");
    if (!rc && !(s->t = calloc((size_t)(n > 0 ? n : 1), sizeof *s->t))) rc = sqlm_error(SQLM_NOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        tile_table *t = &s->t[i];
        s->n = i + 1;
        t->w = ws[i];
        size_t rb;
        if (t->w.tile_rows <= 0 || t->w.chunk <= 0 || t->w.chunk > t->w.n_in || t->w.n_out <= 0 ||
            !sqlm_dtype_row_bytes(t->w.dtype, (size_t)t->w.chunk, &rb) || (t->w.chunk % (int64_t)sqlm_dtype_block(t->w.dtype))) {
            rc = sqlm_error(SQLM_FORMAT, "%s: bad layout in sqlm_weight", t->w.name);
            break;
        }
        t->n_chunks = (t->w.n_in + t->w.chunk - 1) / t->w.chunk;
        t->n_tiles = (t->w.n_out + t->w.tile_rows - 1) / t->w.tile_rows * t->n_chunks;
        t->off = calloc((size_t)t->n_tiles, sizeof *t->off);
        t->len = calloc((size_t)t->n_tiles, sizeof *t->len);
        if (!t->off || !t->len) {
            rc = sqlm_error(SQLM_NOMEM, "out of memory");
            break;
        }
        walker k = { s, t, seen, 0 };
        memset(seen, 0, s->n_pages + 1);
        rc = walk(&k, roots[i]);
        if (!rc && k.found != t->n_tiles)
            rc = sqlm_error(SQLM_FORMAT, "%s: %lld of %lld tiles found", t->w.name, (long long)k.found, (long long)t->n_tiles);
    }
    free(seen);
    if (rc) {
        sqlm_tiles_close(s);
        return rc;
    }
    if (wc) {   /* the walk is done: the cache serves the tiles from now on */
        munmap((void *)s->map, s->size);
        s->map = NULL;
    }
    *out = s;
    return SQLM_OK;
}

int sqlm_tiles_open(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots, int n) {
    return open_store(out, fd, path, ws, roots, n, NULL);
}

int sqlm_tiles_open_cached(tile_store **out, int fd, const char *path, const ir_weight *ws, const uint32_t *roots,
                      int n, wcache *wc) {
    return open_store(out, fd, path, ws, roots, n, wc);
}

void sqlm_tiles_close(tile_store *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->t[i].off);
        free(s->t[i].len);
    }
    free(s->t);
    if (s->map) munmap((void *)s->map, s->size);
    free(s);
}

/* ------------------------------------------------------------ lookups */

int sqlm_tiles_find(const tile_store *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].w.name, name) == 0) return i;
    return -1;
}

const ir_weight *sqlm_tiles_layout(const tile_store *s, int wi) { return &s->t[wi].w; }

int64_t sqlm_tiles_count(const tile_store *s, int wi) { return s->t[wi].n_tiles; }

const void *sqlm_tiles_get(tile_store *s, int wi, int64_t id, size_t *len) {
    const tile_table *t = &s->t[wi];
    if (id < 0 || id >= t->n_tiles) {
        *len = 0;
        return NULL;
    }
    *len = t->len[id];
    if (s->wc) return sqlm_wcache_fetch(s->wc, (int64_t)t->off[id], t->len[id]);
    return s->map + t->off[id];
}

void sqlm_tiles_put(tile_store *s, int wi, int64_t id) {
    /* mapped tiles need no release; cached ones give their page back */
    if (s->wc && id >= 0 && id < s->t[wi].n_tiles) sqlm_wcache_unfetch_at(s->wc, (int64_t)s->t[wi].off[id]);
}

void sqlm_tiles_prefetch(tile_store *s, int wi, int64_t id) {
    const tile_table *t = &s->t[wi];
    if (id < 0 || id >= t->n_tiles || !s->map) return;   /* the cache's readers prefetch */
    /* the cell before the bytes (its header is what a scan of the table
     * reads), the header of its page, and the first bytes */
    const uint8_t *p = s->map + t->off[id];
    size_t page = (t->off[id] / s->page_size) * s->page_size;
    __builtin_prefetch(s->map + page);
    __builtin_prefetch(p - 16);
    __builtin_prefetch(p + 48);
}
