/*
 * import.c - `sqlm import`: a model file into a model database.
 *
 * Weights go into tiled tables (see modeldb.c): Q/K/V fused into one table
 * per layer with 1/sqrt(head_dim) folded into the Q rows (and Q bias), gate
 * and up fused likewise, the head and embedding shared when tied.  Quantized
 * weights stay quantized.  Memory stays bounded: one tile at a time.
 *
 * The database is created through the engine (db_create in db/engine.h:
 * file engines write a temporary file inside one transaction, sync it and
 * rename it into place), marked complete last: an interrupted or failed
 * import leaves no database that looks complete.  How each matrix is laid
 * out is layout/layout.c's decision; the SQL differences (placeholders,
 * types) come from the engine's dialect.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"
#include "../kern/kern.h"
#include "../layout/layout.h"

#define ROWS_PER_INSERT 64     /* float rows (WL_ROWS_F32) inserted per statement */
#define APPEND_ROWS 512        /* ... or appended per chunk, where the engine bulk-loads */

/* A fused matrix: the rows of up to three tensors stacked, each with a scale. */
typedef struct fused {
    const tensor *t[3];
    float scale[3];
    int n;
    int units;   /* each part's rows fall in this many equal units (a fused
                  * QKV's kv heads), which ROW2COL's blocks keep whole */
} fused;

static int64_t fused_rows(const fused *f) {
    int64_t r = 0;
    for (int i = 0; i < f->n; i++) r += f->t[i]->ne[1];
    return r;
}

/*
 * Whether a dialect stores weights of type dt as they are: tiles hold every
 * weight type; float rows (DuckDB) hold F32, F16 (as floats) and the types
 * whose value is an integer times one scale per 32, multiplied with a Q8_0
 * activation (Q8_0, Q4_0, Q5_0, IQ4_NL: int8 blocks and scales); the other
 * types are dequantized to F32 at import, their products then in float32
 * (docs/duckdb.md).
 */
static bool dialect_keeps(const sql_dialect *d, int dt) {
    if (d->weight_layout != WL_ROWS_F32) return true;
    return dt == DT_F32 || dt == DT_F16 || dt == DT_Q8_0 || dt == DT_Q4_0 || dt == DT_Q5_0 || dt == DT_IQ4_NL;
}

/* Storage type of a fused matrix: its parts' type when they agree and the
 * dialect keeps it, else F32. */
static int pick_dtype(const sql_dialect *d, const fused *f, int wtype) {
    if (wtype >= 0) return wtype;
    int dt = f->t[0]->dtype;
    for (int i = 1; i < f->n; i++)
        if (f->t[i]->dtype != dt) return DT_F32;
    return dialect_keeps(d, dt) ? dt : DT_F32;
}

/* Parts of a fusion whose types differ (a Q4_K_M file's Q6_K attn_v beside
 * Q4_K q and k) are written as tables of their own where the dialect keeps
 * types: a fused table would hold them all as F32. */
static bool mixed_types(const sql_dialect *d, const fused *f, int wtype) {
    if (wtype >= 0 || d->weight_layout == WL_ROWS_F32) return false;
    for (int i = 1; i < f->n; i++)
        if (f->t[i]->dtype != f->t[0]->dtype) return true;
    return false;
}

/*
 * Columns [c0, c0 + w) of fused row r, in type dt, into out.  Bytes are
 * copied unchanged when types agree and the scale is 1; a scale on a
 * quantized row is applied to the block scales (the import checked that
 * this is exact: q_fold()).
 */
static void fused_row(const fused *f, int64_t r, int64_t c0, int64_t w, int dt, void *out, float *tmp) {
    int i = 0;
    while (r >= f->t[i]->ne[1]) r -= f->t[i++]->ne[1];
    const tensor *t = f->t[i];
    float s = f->scale[i];
    size_t rb, off, wb;
    sqlm_dtype_row_bytes(t->dtype, (size_t)t->ne[0], &rb);
    sqlm_dtype_row_bytes(t->dtype, (size_t)c0, &off);
    sqlm_dtype_row_bytes(dt, (size_t)w, &wb);
    const char *src = (const char *)t->data + rb * (size_t)r + off;
    if (t->dtype == dt && (s == 1.0f || sqlm_dtype_block(dt) > 1)) {
        memcpy(out, src, wb);
        if (s != 1.0f) sqlm_dtype_scale(dt, out, wb / sqlm_dtype_block_bytes(dt), s);
        return;
    }
    sqlm_dtype_to_f32(t->dtype, src, tmp, (size_t)w);
    if (s != 1.0f)
        for (int64_t j = 0; j < w; j++) tmp[j] *= s;
    sqlm_dtype_from_f32(dt, tmp, out, (size_t)w);
}

/*
 * 1/sqrt(head_dim) splits into the power of two nearest it, folded into W_q
 * and its bias at import (exact in every storage type, fp16 block scales
 * included), and the residual factor (1 or about sqrt(2)^+-1) that the RoPE
 * step applies to q in fp32.
 */
static float q_folded_scale(int head_dim) { return (float)exp2(round(log2(1.0 / sqrt(head_dim)))); }

/*
 * The factor folded into W_q: q_folded_scale(), or 1 when some quantized
 * W_q's block scales would lose bits by it (fp16 scales pushed below fp16's
 * normal range: small K-quant scales are).  Then RoPE applies all of
 * 1/sqrt(head_dim) in fp32.
 */
static float q_fold(const model *m, int wtype) {
    const float s = q_folded_scale(m->cfg.head_dim);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const tensor *t = sqlm_model_find_layer(m, l, "attn_q.weight");
        if (!t || sqlm_dtype_block(t->dtype) == 1 || (wtype >= 0 && wtype != t->dtype)) continue;
        size_t rb;
        sqlm_dtype_row_bytes(t->dtype, (size_t)t->ne[0], &rb);
        if (!sqlm_dtype_scale_exact(t->dtype, t->data, rb * (size_t)t->ne[1] / sqlm_dtype_block_bytes(t->dtype), s))
            return 1.0f;
    }
    return s;
}

static float q_residual_scale(int head_dim, float folded) { return (float)(1.0 / sqrt(head_dim) / folded); }

typedef struct importer {
    engine *e;
    const sql_dialect *d;    /* the engine's dialect: types and weight layout */
    const model *m;
    const import_opts *o;
    int n_tables, done_tables;
    float q_fold;            /* the part of 1/sqrt(head_dim) folded into W_q */
    size_t released;         /* source bytes used since the last sqlm_model_release_pages() */
} importer;

static void progress(importer *im, const char *what) {
    ++im->done_tables;
    if (im->o->progress) im->o->progress(what, im->done_tables, im->n_tables, im->o->progress_ctx);
}

/*
 * Rows inserted by one statement with a multi-row VALUES list: far fewer
 * statements for engines with a high per-statement cost.  Values are
 * borrowed: what they point to must live until the batch is flushed.
 */
typedef struct batch {
    importer *im;
    const char *into;     /* "table" or "table(cols)" */
    int ncol, cap, n;
    db_val *vals;         /* [cap][ncol] */
    buf sql;
} batch;

static int batch_init(batch *b, importer *im, const char *into, int ncol, int cap) {
    memset(b, 0, sizeof *b);
    b->im = im, b->into = into, b->ncol = ncol, b->cap = cap;
    sqlm_buf_init(&b->sql);
    b->vals = malloc((size_t)ncol * (size_t)cap * sizeof *b->vals);
    return b->vals ? SQLM_OK : sqlm_error(SQLM_NOMEM, "out of memory");
}

static int batch_flush(batch *b) {
    if (b->n == 0) return SQLM_OK;
    engine *e = b->im->e;
    if (e->m->append && !strchr(b->into, '(')) {   /* the engine's bulk load */
        int rc = e->m->append(e, b->into, b->ncol, b->vals, b->n);
        b->n = 0;
        return rc;
    }
    sqlm_buf_reset(&b->sql);
    sqlm_buf_appendf(&b->sql, "INSERT INTO %s VALUES ", b->into);
    for (int r = 0; r < b->n; r++) {
        sqlm_buf_puts(&b->sql, r ? ", (" : "(");
        sqlm_dialect_params(e->m->dialect, r * b->ncol + 1, b->ncol, &b->sql);
        sqlm_buf_putc(&b->sql, ')');
    }
    int rc = b->sql.rc ? sqlm_error(b->sql.rc, "out of memory")
                       : b->im->e->m->query(b->im->e, b->sql.p, b->vals, b->n * b->ncol, NULL, NULL);
    b->n = 0;
    return rc;
}

/* Add one row of ncol values; flushes when the batch is full. */
static int batch_add(batch *b, const db_val *row) {
    memcpy(b->vals + (size_t)b->n * (size_t)b->ncol, row, (size_t)b->ncol * sizeof *row);
    return ++b->n == b->cap ? batch_flush(b) : SQLM_OK;
}

static void batch_free(batch *b) {   /* twice is harmless */
    free(b->vals);
    b->vals = NULL;
    sqlm_buf_free(&b->sql);
}

/* One row of n values into table, in the engine's placeholders. */
static int insert_row(importer *im, const char *table, const db_val *v, int n) {
    buf sql;
    sqlm_buf_init(&sql);
    sqlm_buf_appendf(&sql, "INSERT INTO %s VALUES (", table);
    sqlm_dialect_params(im->e->m->dialect, 1, n, &sql);
    sqlm_buf_putc(&sql, ')');
    int rc = sql.rc ? sqlm_error(sql.rc, "out of memory") : im->e->m->query(im->e, sql.p, v, n, NULL, NULL);
    sqlm_buf_free(&sql);
    return rc;
}

/* A float vector as the engine's dialect binds it. */
static db_val vec_val(importer *im, const float *p, size_t n) {
    return (db_val){ .type = im->d->vec_val, .p = p, .n = n * sizeof(float) };
}

/* The sqlm_weight row of a matrix written */
static int add_weight(importer *im, const char *name, int vt, int64_t n_out, int64_t n_in, int64_t tile_rows,
                      int64_t chunk, int pivot, int64_t split, int blocks) {
    db_val wv[9] = { dbv_text(name), dbv_int(vt), dbv_int(n_out), dbv_int(n_in), dbv_int(tile_rows),
                     dbv_int(chunk), dbv_int(pivot), dbv_int(split), dbv_int(blocks) };
    int rc = insert_row(im, "sqlm_weight", wv, 9);
    progress(im, name);
    return rc;
}

/* Source pages used: under a budget they leave RSS once a sixteenth of it
 * has been read. */
static void used_source(importer *im, size_t bytes) {
    if (im->o->mem_budget && (im->released += bytes) >= im->o->mem_budget / 16) {
        sqlm_model_release_pages(im->m);
        im->released = 0;
    }
}

/* ROW2COL's blocks of a matrix (layout.c, sqlm_layout_blocks()): the tables name
 * and name_1, of one row per block, (its first row, its rows in float32 as
 * FLOAT[][]), appended as they are converted. */
static int write_blocks(importer *im, const char *name, const fused *f, int vt, int n, const int64_t *first,
                        const int *table) {
    const int64_t n_out = fused_rows(f), n_in = f->t[0]->ne[0];
    int64_t most = 0;
    for (int i = 0; i < n; i++) most = MAX(most, (i + 1 < n ? first[i + 1] : n_out) - first[i]);
    size_t vb = 0;
    sqlm_dtype_row_bytes(vt, (size_t)n_in, &vb);
    float *m = malloc((size_t)most * (size_t)n_in * sizeof *m), *tmp = malloc((size_t)n_in * sizeof *tmp);
    char *vrow = vt != DT_F32 ? malloc(vb) : NULL;
    int rc = !m || !tmp || (vt != DT_F32 && !vrow) ? sqlm_error(SQLM_NOMEM, "out of memory importing %s", name) : 0;
    buf sql;
    sqlm_buf_init(&sql);
    for (int t = 0; t < 2 && !rc; t++) {
        char tn[48];
        snprintf(tn, sizeof tn, t ? "%s_1" : "%s", name);
        sqlm_buf_reset(&sql);
        sqlm_buf_appendf(&sql, "CREATE TABLE %s(row INTEGER, m ", tn);
        sqlm_dialect_subst(im->e->m->dialect, "{vec}[])", &sql);
        rc = sql.rc ? sqlm_error(sql.rc, "out of memory") : im->e->m->exec(im->e, sql.p);
        for (int i = 0; i < n && !rc; i++) {
            if (table[i] != t) continue;
            const int64_t rows = (i + 1 < n ? first[i + 1] : n_out) - first[i];
            for (int64_t r = 0; r < rows; r++) {
                float *out = m + r * n_in;
                if (!vrow) fused_row(f, first[i] + r, 0, n_in, DT_F32, out, tmp);
                else fused_row(f, first[i] + r, 0, n_in, vt, vrow, tmp), sqlm_dtype_to_f32(vt, vrow, out, (size_t)n_in);
            }
            db_val v[2] = { dbv_int(first[i]), dbv_rows(m, (size_t)(rows * n_in), n_in) };
            rc = im->e->m->append(im->e, tn, 2, v, 1);
            used_source(im, vb * (size_t)rows);
        }
    }
    sqlm_buf_free(&sql);
    free(m);
    free(tmp);
    free(vrow);
    return rc;
}

/*
 * Write one fused matrix as table name.  WL_TILES: tiles of tile_rows rows
 * in the storage type, sized near tile_bytes.  WL_ROWS_F32: one matrix row
 * per table row in float32 (F16 values exactly; Q8_0/Q4_0 as their integer
 * values and block scales), split into chunks only when --tile-bytes asks
 * for it; ROW2COL may pivot a float row into columns or store the second
 * half of the rows in a table {name}_1.  The layout is layout/layout.c's
 * decision.  whole_rows keeps rows unsplit and the table whole (the
 * embedding is read by row).
 */
static int write_matrix(importer *im, const char *name, const fused *f, bool whole_rows) {
    const int64_t n_out = fused_rows(f), n_in = f->t[0]->ne[0];
    for (int i = 1; i < f->n; i++)
        if (f->t[i]->ne[0] != n_in)
            return sqlm_error(SQLM_FORMAT, "%s: fused parts of %s disagree on width", im->m->path, name);
    const bool rows = im->d->weight_layout == WL_ROWS_F32;
    const int vt = pick_dtype(im->d, f, im->o->wtype);
    int64_t part_rows[3];
    for (int i = 0; i < f->n; i++) part_rows[i] = f->t[i]->ne[1];
    int64_t align = 1;
    for (int i = 0; i < f->n; i++) align = MAX(align, (int64_t)sqlm_dtype_block(f->t[i]->dtype));
    layout_req q = { .n_out = n_out, .n_in = n_in, .vt = vt, .align = align, .whole_rows = whole_rows,
                     .tile_bytes = im->o->tile_bytes, .row2col = im->o->row2col,
                     .can_append = im->e->m->append != NULL, .part_rows = part_rows, .n_part = f->n,
                     .units = f->units };
    matrix_layout layout, *ly = &layout;
    if (sqlm_layout_matrix(im->d, &q, ly))
        return sqlm_error(SQLM_FORMAT, "%s: %s: width %lld is not a multiple of the %s block",
                          im->m->path, name, (long long)n_in, sqlm_dtype_name(vt));
    const int dt = ly->dt, pivot = ly->pivot;
    const int64_t chunk = ly->chunk, tile_rows = ly->tile_rows, split = ly->split;
    const bool qrows = ly->qrows;
    int64_t n_chunks = (n_in + chunk - 1) / chunk;
    size_t cb;
    sqlm_dtype_row_bytes(dt, (size_t)chunk, &cb);
    if (ly->blocks) {
        int rc = write_blocks(im, name, f, vt, ly->blocks, ly->first, ly->table);
        return rc ? rc : add_weight(im, name, vt, n_out, n_in, 1, n_in, 0, 0, ly->blocks);
    }
    char name1[48];
    snprintf(name1, sizeof name1, "%s_1", name);
    buf sql;
    sqlm_buf_init(&sql);
    /* quantized rows go first, as lists of their integer values, to a TEMP
     * table: the float staging never takes room in the file (138 MB for
     * the 110M-shape Q8_0 database, not 240) */
    char flat[48];
    snprintf(flat, sizeof flat, "%s_flat", name);
    int rc = SQLM_OK;
    for (int part = 0; part < (split ? 2 : 1) && !rc; part++) {
        sqlm_buf_reset(&sql);
        sqlm_buf_appendf(&sql, "CREATE %sTABLE %s(", qrows ? "TEMP " : "", qrows ? flat : part ? name1 : name);
        sqlm_dialect_subst(im->e->m->dialect, "id INTEGER{pk}, row INTEGER, col INTEGER", &sql);
        if (!pivot) sqlm_dialect_subst(im->e->m->dialect, ", v {vec}", &sql);
        for (int p = 0; p < pivot; p++) {
            sqlm_buf_appendf(&sql, ", c%d ", p);
            sqlm_dialect_subst(im->e->m->dialect, "{vec}", &sql);
        }
        if (qrows) sqlm_dialect_subst(im->e->m->dialect, ", s {vec}", &sql);
        sqlm_buf_puts(&sql, ")");
        rc = sql.rc ? sqlm_error(sql.rc, "out of memory") : im->e->m->exec(im->e, sql.p);
    }
    /* one tile per statement; float rows are small, so many per statement
     * (or per appended chunk where the engine bulk-loads) */
    const int per_stmt = !rows ? 1 : im->e->m->append ? APPEND_ROWS : ROWS_PER_INSERT;
    const int ncol = 3 + (pivot ? pivot : 1) + qrows;
    db_val v[3 + 64];
    batch ins = { 0 };
    if (!rc && pivot > 64) rc = sqlm_error(SQLM_RANGE, "%s: %d pivot columns", name, pivot);
    if (!rc) rc = batch_init(&ins, im, qrows ? flat : name, ncol, per_stmt);
    char *data = malloc(cb * (size_t)tile_rows * (size_t)per_stmt);
    float *tmp = malloc((size_t)n_in * sizeof *tmp);
    size_t vb = 0;   /* a chunk of vt's bytes, for float rows of quantized or F16 values */
    sqlm_dtype_row_bytes(vt, (size_t)chunk, &vb);
    char *vrow = rows && vt != DT_F32 ? malloc(vb) : NULL;
    const size_t nsc = (size_t)chunk / QK;   /* block scales per chunk */
    float *scales = qrows ? malloc(nsc * (size_t)per_stmt * sizeof *scales) : NULL;
    if (!rc && (!data || !tmp || sql.rc || (rows && vt != DT_F32 && !vrow) || (qrows && !scales)))
        rc = sqlm_error(SQLM_NOMEM, "out of memory importing %s", name);
    for (int64_t r0 = 0; !rc && r0 < n_out; r0 += tile_rows) {
        int64_t nr = MIN(tile_rows, n_out - r0);
        if (split && r0 == split) {   /* the second table (tile_rows is 1) */
            rc = batch_flush(&ins);
            ins.into = name1;
            if (rc) break;
        }
        for (int64_t c = 0; !rc && c < n_chunks; c++) {
            int64_t c0 = c * chunk, w = MIN(chunk, n_in - c0);
            size_t wb;
            sqlm_dtype_row_bytes(dt, (size_t)w, &wb);
            char *slot = data + cb * (size_t)tile_rows * (size_t)ins.n;   /* kept until the flush */
            float *sc = qrows ? scales + nsc * (size_t)ins.n : NULL;
            for (int64_t r = 0; r < nr; r++) {
                float *out = (float *)(slot + wb * (size_t)r);
                if (!vrow) fused_row(f, r0 + r, c0, w, dt, slot + wb * (size_t)r, tmp);
                else fused_row(f, r0 + r, c0, w, vt, vrow, tmp);
                if (qrows) sqlm_dtype_to_blocks(vt, vrow, out, sc, (size_t)w);
                else if (vrow) sqlm_dtype_to_f32(vt, vrow, out, (size_t)w);
            }
            v[0] = dbv_int(r0 / tile_rows * n_chunks + c), v[1] = dbv_int(r0), v[2] = dbv_int(c0);
            v[3] = rows ? vec_val(im, (const float *)slot, (size_t)w) : dbv_blob(slot, wb * (size_t)nr);
            for (int p = 0; p < pivot; p++)
                v[3 + p] = vec_val(im, (const float *)slot + p * (w / pivot), (size_t)(w / pivot));
            if (qrows) v[4] = vec_val(im, sc, (size_t)w / QK);
            rc = batch_add(&ins, v);
            used_source(im, wb * (size_t)nr);
        }
    }
    if (!rc) rc = batch_flush(&ins);
    /* Tiles: an index on (row, col), written after the table so that its
     * pages sit together after the tiles.  A scan for tile ids (the in-place
     * products) then reads this small index, not the 64 KB leaf pages that
     * hold the tiles: under a memory budget the weight cache streams only
     * the tiles, once, in order. */
    if (!rc && !rows) {
        sqlm_buf_reset(&sql);
        sqlm_buf_appendf(&sql, "CREATE INDEX %s_tiles ON %s(row, col)", name, name);
        rc = sql.rc ? sqlm_error(sql.rc, "out of memory") : im->e->m->exec(im->e, sql.p);
    }
    if (!rc && qrows) {
        sqlm_buf_reset(&sql);
        sqlm_buf_appendf(&sql, im->d->q_blocks, name);
        rc = sql.rc ? sqlm_error(sql.rc, "out of memory") : im->e->m->exec(im->e, sql.p);
    }
    batch_free(&ins);
    free(data);
    free(tmp);
    free(vrow);
    free(scales);
    sqlm_buf_free(&sql);
    return rc ? rc : add_weight(im, name, vt, n_out, n_in, tile_rows, chunk, pivot, split, 0);
}

/* A 1-D float tensor (norm gain, bias) as float32, scaled. */
static int put_vector(importer *im, const char *table, int layer, const char *kind, const tensor **ts,
                      const float *scales, int n) {
    int64_t len = 0;
    for (int i = 0; i < n; i++) len += ts[i]->ne[0];
    float *v = malloc((size_t)len * sizeof *v);
    if (!v) return sqlm_error(SQLM_NOMEM, "out of memory");
    for (int i = 0, off = 0; i < n; off += (int)ts[i]->ne[0], i++) {
        sqlm_dtype_to_f32(ts[i]->dtype, ts[i]->data, v + off, (size_t)ts[i]->ne[0]);
        for (int64_t j = 0; j < ts[i]->ne[0]; j++) v[off + j] *= scales[i];
    }
    db_val p[3] = { dbv_int(layer), kind ? dbv_text(kind) : vec_val(im, v, (size_t)len),
                    vec_val(im, v, (size_t)len) };
    int rc = insert_row(im, table, p, kind ? 3 : 2);
    free(v);
    return rc;
}

static const tensor *need(const model *m, int layer, const char *suffix) {
    const tensor *t = layer >= 0 ? sqlm_model_find_layer(m, layer, suffix) : sqlm_model_find(m, suffix);
    if (!t && layer >= 0) sqlm_error(SQLM_FORMAT, "%s: tensor blk.%d.%s missing", m->path, layer, suffix);
    else if (!t) sqlm_error(SQLM_FORMAT, "%s: tensor %s missing", m->path, suffix);
    return t;
}

/* {vec}, {any}: the dialect's vector and untyped column types. */
static const char *const schema =
    "CREATE TABLE sqlm_meta(key TEXT PRIMARY KEY, value{any});\n"
    "CREATE TABLE sqlm_weight(name TEXT PRIMARY KEY, dtype INTEGER, n_out INTEGER,"
    " n_in INTEGER, tile_rows INTEGER, chunk INTEGER, n_pivot INTEGER, split_at INTEGER,"
    " blocks INTEGER);\n"
    "CREATE TABLE norm(layer INTEGER, kind TEXT, v {vec}, PRIMARY KEY(layer, kind));\n"
    "CREATE TABLE bias(layer INTEGER PRIMARY KEY, v {vec});\n"
    "CREATE TABLE rope(pos INTEGER PRIMARY KEY, cs {vec});\n"
    "CREATE TABLE vocab(id INTEGER PRIMARY KEY, piece BLOB, score REAL, attr INTEGER);\n"
    "CREATE TABLE merges(rank INTEGER PRIMARY KEY, pair TEXT);\n"
    "CREATE TABLE tokenizer(key TEXT PRIMARY KEY, value{any});\n"
    "CREATE TABLE program(step INTEGER PRIMARY KEY, name TEXT, sql TEXT);\n";

static int write_vocab(importer *im) {
    const vocab *v = &im->m->voc;
    batch b;
    int rc = batch_init(&b, im, "vocab", 4, 128);
    for (int32_t i = 0; !rc && i < v->n; i++) {
        db_val p[4] = { dbv_int(i), dbv_blob(v->tok[i], v->tok_len[i]), dbv_real(v->score[i]),
                        dbv_int(v->attr[i]) };
        rc = batch_add(&b, p);
    }
    if (!rc) rc = batch_flush(&b);
    batch_free(&b);
    if (!rc) rc = batch_init(&b, im, "merges", 2, 256);
    for (int32_t i = 0; !rc && i < v->n_merges; i++) {
        db_val p[2] = { dbv_int(i), dbv_text(v->merges[i]) };
        rc = batch_add(&b, p);
    }
    if (!rc) rc = batch_flush(&b);
    batch_free(&b);
#define X(name, def) \
    if (!rc) rc = insert_row(im, "tokenizer", (db_val[]){ dbv_text(#name), dbv_int(v->name) }, 2);
    VOCAB_INT_FIELDS(X)
#undef X
#define X(name) \
    if (!rc && v->name) rc = insert_row(im, "tokenizer", (db_val[]){ dbv_text(#name), dbv_text(v->name) }, 2);
    VOCAB_STR_FIELDS(X)
#undef X
    return rc;
}

/* Compile the default program and store it, so any client can run it. */
static int write_program(importer *im) {
    ir_weight *ws;
    int n_ws;
    ir_graph g;
    sql_program p;
    int rc = sqlm_modeldb_read_weights(im->e, NULL, &ws, &n_ws);   /* the layout just written */
    if (rc) return rc;
    ir_opts o = sqlm_dialect_ir_opts(im->e->m->dialect, (ir_opts){ .cte_merge = true, .fuse_attn = true });
    model_config cfg = im->m->cfg;
    cfg.q_scale = q_residual_scale(cfg.head_dim, im->q_fold);
    rc = sqlm_ir_build_llama(&g, &cfg, ws, n_ws, &o);
    free(ws);
    if (rc) return rc;
    rc = sqlm_emit_program(&g, im->e->m->dialect, &p);
    sqlm_ir_free(&g);
    for (int i = 0; !rc && i < p.n_steps; i++) {
        db_val v[3] = { dbv_int(i), dbv_text(p.steps[i].name), dbv_text(p.steps[i].sql) };
        rc = insert_row(im, "program", v, 3);
    }
    sqlm_sql_program_free(&p);
    return rc;
}

static int write_model(importer *im) {
    const model *m = im->m;
    const model_config *c = &m->cfg;
    model_config cfg = m->cfg;
    cfg.q_scale = q_residual_scale(c->head_dim, im->q_fold);
    buf ddl;
    sqlm_buf_init(&ddl);
    sqlm_dialect_subst(im->e->m->dialect, schema, &ddl);
    int rc = ddl.rc ? ddl.rc : im->e->m->exec(im->e, ddl.p);   /* inside create_begin's transaction */
    sqlm_buf_free(&ddl);
    if (!rc) rc = sqlm_modeldb_write_config(im->e, &cfg);
    if (!rc) rc = write_vocab(im);
    im->n_tables = (im->o->no_fuse ? 7 : 4) * c->n_layer + (c->tied ? 1 : 2);

    const float qscale = im->q_fold;
    char name[32];
    for (int l = 0; !rc && l < c->n_layer; l++) {
        fused qkv = { { need(m, l, "attn_q.weight"), need(m, l, "attn_k.weight"),
                        need(m, l, "attn_v.weight") }, { qscale, 1, 1 }, 3,
                      c->n_head_kv > 0 ? c->n_head_kv : c->n_head };
        fused o = { { need(m, l, "attn_output.weight") }, { 1 }, 1, 1 };
        fused gu = { { need(m, l, "ffn_gate.weight"), need(m, l, "ffn_up.weight") }, { 1, 1 }, 2, 1 };
        fused down = { { need(m, l, "ffn_down.weight") }, { 1 }, 1, 1 };
        const tensor *an = need(m, l, "attn_norm.weight"), *fn = need(m, l, "ffn_norm.weight");
        if (!qkv.t[0] || !qkv.t[1] || !qkv.t[2] || !o.t[0] || !gu.t[0] || !gu.t[1] || !down.t[0] ||
            !an || !fn)
            return SQLM_FORMAT;
        const bool split_qkv = im->o->no_fuse || mixed_types(im->d, &qkv, im->o->wtype);
        const bool split_gu = im->o->no_fuse || mixed_types(im->d, &gu, im->o->wtype);
        if (split_qkv || split_gu) {   /* table fusion off: one table per projection */
            static const char *const qkv_names[] = { "q", "k", "v" }, *const gu_names[] = { "gate", "up" };
            for (int i = 0; !rc && split_qkv && i < 3; i++) {
                fused part = { { qkv.t[i] }, { qkv.scale[i] }, 1, 1 };
                snprintf(name, sizeof name, "blk%d_%s", l, qkv_names[i]);
                rc = write_matrix(im, name, &part, false);
            }
            for (int i = 0; !rc && split_gu && i < 2; i++) {
                fused part = { { gu.t[i] }, { 1 }, 1, 1 };
                snprintf(name, sizeof name, "blk%d_%s", l, gu_names[i]);
                rc = write_matrix(im, name, &part, false);
            }
        }
        snprintf(name, sizeof name, "blk%d_qkv", l);
        if (!rc && !split_qkv) rc = write_matrix(im, name, &qkv, false);
        snprintf(name, sizeof name, "blk%d_o", l);
        if (!rc) rc = write_matrix(im, name, &o, false);
        snprintf(name, sizeof name, "blk%d_gu", l);
        if (!rc && !split_gu) rc = write_matrix(im, name, &gu, false);
        snprintf(name, sizeof name, "blk%d_down", l);
        if (!rc) rc = write_matrix(im, name, &down, false);
        const float one = 1;
        if (!rc) rc = put_vector(im, "norm", l, "attn", &an, &one, 1);
        if (!rc) rc = put_vector(im, "norm", l, "ffn", &fn, &one, 1);
        if (!rc && c->qkv_bias) {
            const tensor *b[3] = { need(m, l, "attn_q.bias"), need(m, l, "attn_k.bias"),
                                   need(m, l, "attn_v.bias") };
            const float sc[3] = { qscale, 1, 1 };
            if (!b[0] || !b[1] || !b[2]) return SQLM_FORMAT;
            rc = put_vector(im, "bias", l, NULL, b, sc, 3);
        }
    }
    const tensor *embd = need(m, -1, "token_embd.weight"), *on = need(m, -1, "output_norm.weight");
    if (!embd || !on) return SQLM_FORMAT;
    if (!rc && !c->tied) {
        fused e = { { embd }, { 1 }, 1, 1 };
        rc = write_matrix(im, "embed", &e, true);
    }
    if (!rc) {
        const tensor *ot = c->tied ? embd : need(m, -1, "output.weight");
        if (!ot) return SQLM_FORMAT;
        fused out = { { ot }, { 1 }, 1, 1 };
        rc = write_matrix(im, "output", &out, true);
    }
    const float one = 1;
    if (!rc) rc = put_vector(im, "norm", c->n_layer, "output", &on, &one, 1);

    float *cs = malloc((size_t)c->head_dim * ROWS_PER_INSERT * sizeof *cs);
    if (!cs) return sqlm_error(SQLM_NOMEM, "out of memory");
    batch rope = { 0 };
    if (!rc) rc = batch_init(&rope, im, "rope", 2, ROWS_PER_INSERT);
    for (int pos = 0; !rc && pos < c->seq_len; pos++) {
        float *row = cs + (size_t)c->head_dim * (size_t)rope.n;   /* kept until the flush */
        sqlm_rope_table_row(c, pos, row);
        db_val v[2] = { dbv_int(pos), vec_val(im, row, (size_t)c->head_dim) };
        rc = batch_add(&rope, v);
    }
    if (!rc) rc = batch_flush(&rope);
    batch_free(&rope);
    free(cs);
    if (!rc) rc = write_program(im);
    if (!rc) {
        db_val v[2] = { dbv_text("complete"), dbv_int(1) };
        rc = insert_row(im, "sqlm_meta", v, 2);
    }
    return rc;   /* committed by create_commit */
}

int sqlm_import_file(const char *model_path, const char *out_path, const import_opts *o) {
    const db_methods *dm = NULL;
    model *m = NULL;
    db_create cr = { 0 };
    int rc = sqlm_model_open(model_path, o->tok_path, &m);
    if (rc) return rc;
    if (o->wtype >= 0 && o->wtype != DT_F32 && o->wtype != DT_F16 && o->wtype != DT_Q8_0 &&
        o->wtype != DT_Q4_0) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "storage type %s not supported (--type converts to F32, F16, Q8_0 or Q4_0)",
                        sqlm_dtype_name(o->wtype) ? sqlm_dtype_name(o->wtype) : "?");
        goto done;
    }
    dm = sqlm_db_find(o->engine ? o->engine : "sqlite");
    if (!dm) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "unknown engine '%s'", o->engine);
        goto done;
    }
    const sql_dialect *dl = sqlm_dialect_get(dm->dialect);
    if (dl->weight_layout != WL_ROWS_F32 && o->row2col != R2C_AUTO && o->row2col != R2C_OFF) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "engine %s: ROW2COL needs float rows (engine duckdb)", dm->name);
        goto done;
    }
    if (!dm->create_begin || !dm->create_commit || !dm->create_abort) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "engine %s cannot create a database", dm->name);
        goto done;
    }
    /* written where it cannot be taken for a database under out_path until
     * create_commit publishes it (engine.h, db_create) */
    engine_opts eo = { .create = true, .page_size = dl->layout->page_size, .mem_budget = o->mem_budget };
    cr.m = dm;
    if ((rc = dm->create_begin(&cr, out_path, &eo))) goto done;
    if (o->progress && dl->weight_layout == WL_ROWS_F32) {
        bool quant = false, deq = false;
        for (int i = 0; i < m->n_tensors; i++) {
            quant |= m->tensors[i].dtype != DT_F32;
            deq |= m->tensors[i].n_dim == 2 && o->wtype < 0 && !dialect_keeps(dl, m->tensors[i].dtype);
        }
        if (quant)
            sqlm_log(SQLM_LOG_NOTE, "import: engine %s stores F16 weights as float32 and Q8_0/Q4_0/Q5_0/IQ4_NL "
                                    "as int8 blocks with float scales; every value stays exact", dm->name);
        if (deq)
            sqlm_log(SQLM_LOG_NOTE, "import: engine %s dequantizes the other types (K-quants, Q4_1, Q5_1, BF16) "
                                    "to float32: exact values, 4 bytes each, float32 products", dm->name);
    }
    importer im = { cr.e, dl, m, o, 0, 0, q_fold(m, o->wtype), 0 };
    rc = write_model(&im);
    if (o->progress) o->progress(NULL, im.done_tables, im.n_tables, o->progress_ctx);
    if (!rc) rc = dm->create_commit(&cr);   /* durable, then visible */
    else dm->create_abort(&cr);
done:
    sqlm_model_free(m);
    return rc;
}
