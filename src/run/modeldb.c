/*
 * modeldb.c - the model database as the rest of sqlm sees it: the schema,
 * config as key/value rows, and opening a database for inference (config,
 * weight layout and vocabulary loaded back into the same structs the model
 * readers fill, so a database is self-contained).
 *
 * Schema (every engine; vector columns in the dialect's type, BLOB or FLOAT[],
 * and untyped values as VARCHAR where the engine has no untyped column):
 *   sqlm_meta(key TEXT PRIMARY KEY, value)       config; 'complete' = 1 last
 *   sqlm_weight(name TEXT PRIMARY KEY, dtype, n_out, n_in, tile_rows, chunk, n_pivot, split_at,
 *               blocks)
 *   <weight>(id INTEGER PRIMARY KEY, row, col, v BLOB)   tiles of tile_rows rows
 *        x chunk columns; id = (row / tile_rows) * n_chunks + col / chunk
 *        (DuckDB: v FLOAT[], one float32 row or chunk per table row, tile_rows 1,
 *        holding the values of type dtype exactly, so the products can round
 *        their input as llama.cpp does for that type; Q8_0/Q4_0 tables hold
 *        v TINYINT[32][], the integer values per block, and s FLOAT[], the scales;
 *        ROW2COL: n_pivot columns c0.. in place of v, or the rows from
 *        split_at on in the table <weight>_1, or the matrix as `blocks` blocks
 *        of rows over <weight> and <weight>_1, (row, m FLOAT[][]): a block's
 *        first row and its rows in order)
 *   norm(layer, kind, v)   bias(layer, v)   rope(pos, cs)
 *   vocab(id, piece, score, attr)   merges(rank, pair)   tokenizer(key, value)
 *   program(step, name, sql)          the default decode program, for any client
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "run.h"
#include "../layout/layout.h"

/* Config fields stored in sqlm_meta. */
#define CFG_INT(f) { #f, offsetof(model_config, f), 'i' }
#define CFG_FLT(f) { #f, offsetof(model_config, f), 'f' }
static const struct { const char *key; size_t off; char type; } cfg_fields[] = {
    { "arch", offsetof(model_config, arch), 's' },
    CFG_INT(dim), CFG_INT(hidden_dim), CFG_INT(n_layer), CFG_INT(n_head), CFG_INT(n_head_kv),
    CFG_INT(head_dim), CFG_INT(vocab_size), CFG_INT(seq_len), CFG_FLT(norm_eps),
    CFG_FLT(rope_theta), CFG_INT(rope_interleaved), CFG_INT(tied), CFG_INT(qkv_bias),
    CFG_FLT(rope_scale_factor), CFG_FLT(rope_low_freq_factor), CFG_FLT(rope_high_freq_factor),
    CFG_INT(rope_orig_ctx), CFG_FLT(q_scale),
};

static int put_meta(engine *e, const char *key, db_val v) {
    db_val p[2] = { dbv_text(key), v };
    buf sql;
    sqlm_buf_init(&sql);
    sqlm_dialect_upsert(e->m->dialect, "sqlm_meta", "key", "value", &sql);
    int rc = sql.rc ? sqlm_error(sql.rc, "out of memory") : e->m->query(e, sql.p, p, 2, NULL, NULL);
    sqlm_buf_free(&sql);
    return rc;
}

int sqlm_modeldb_write_config(engine *e, const model_config *c) {
    int rc = put_meta(e, "format", dbv_int(SQLM_DB_FORMAT));
    for (size_t i = 0; !rc && i < ARRAY_LEN(cfg_fields); i++) {
        const char *p = (const char *)c + cfg_fields[i].off;
        db_val v = cfg_fields[i].type == 's' ? dbv_text(p)
                 : cfg_fields[i].type == 'i' ? dbv_int(*(const int32_t *)p)
                                             : dbv_real(*(const float *)p);
        rc = put_meta(e, cfg_fields[i].key, v);
    }
    return rc;
}

/* ----------------------------------------------------------- loading */

typedef struct load_ctx {
    modeldb *db;
    const char *path;
    int complete, format;
    int rc;
} load_ctx;

/* A number of sqlm_meta as a double: engines without untyped columns store
 * the values as text; anything else (a BLOB, text that is not a number) is
 * NaN, which every range check below refuses. */
static double meta_num(const db_val *v) {
    if (v->type == DBV_INT) return (double)v->i;
    if (v->type == DBV_REAL) return v->d;
    if (v->type == DBV_TEXT && v->n > 0 && v->n < 64) {
        char tmp[64], *end;
        memcpy(tmp, v->p, v->n);
        tmp[v->n] = 0;
        double d = strtod(tmp, &end);
        if (end != tmp && !*end) return d;
    }
    return NAN;
}

static int meta_row(void *ctx, int nc, const db_val *v) {
    load_ctx *l = ctx;
    if (nc < 2 || v[0].type != DBV_TEXT) return 0;
    const char *key = v[0].p;
    const double num = meta_num(&v[1]);
    /* range-checked before any cast: the config checks that follow give
     * each field its own range */
    const bool is_int = num >= INT32_MIN && num <= INT32_MAX && num == (double)(int64_t)num;
    if (strcmp(key, "complete") == 0) l->complete = is_int ? (int)num : 0;
    if (strcmp(key, "format") == 0) l->format = is_int ? (int)num : -1;
    for (size_t i = 0; i < ARRAY_LEN(cfg_fields); i++) {
        if (strcmp(key, cfg_fields[i].key) != 0) continue;
        char *p = (char *)&l->db->cfg + cfg_fields[i].off;
        const char type = cfg_fields[i].type;
        if ((type == 's' && v[1].type != DBV_TEXT) || (type == 'i' && !is_int) ||
            (type == 'f' && !(fabs(num) <= FLT_MAX))) {
            l->rc = sqlm_error(SQLM_FORMAT, "%s: sqlm_meta: config field %s: expected %s", l->path, key,
                               type == 's' ? "text" : type == 'i' ? "a 32-bit integer" : "a finite float");
            return 1;
        }
        if (type == 's') snprintf(p, sizeof l->db->cfg.arch, "%.*s", (int)v[1].n, (const char *)v[1].p);
        else if (type == 'i') *(int32_t *)p = (int32_t)num;
        else *(float *)p = (float)num;
    }
    return 0;
}

typedef struct weights_ctx {
    ir_weight *w;
    int n;
    double bytes;       /* of all the weights, as stored in their type */
    int rc;
} weights_ctx;

static int weight_row(void *ctx, int nc, const db_val *v) {
    weights_ctx *l = ctx;
    if (nc < 6 || v[0].type != DBV_TEXT) return 0;
    ir_weight *w = realloc(l->w, (size_t)(l->n + 1) * sizeof *w);
    if (!w) return l->rc = sqlm_error(SQLM_NOMEM, "out of memory"), 1;
    l->w = w;
    w += l->n++;
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%.*s", (int)v[0].n, (const char *)v[0].p);
    w->dtype = (int)v[1].i;
    w->n_out = v[2].i;
    w->n_in = v[3].i;
    w->tile_rows = (int)v[4].i;
    w->chunk = v[5].i;
    w->pivot = nc >= 7 && v[6].type == DBV_INT ? (int)v[6].i : 0;
    w->split_at = nc >= 8 && v[7].type == DBV_INT ? v[7].i : 0;
    const int64_t blocks = nc >= 9 && v[8].type == DBV_INT ? v[8].i : 0;
    w->blocks = blocks >= 0 && blocks <= 256 ? (int)blocks : -1;
    size_t rb;
    if (w->pivot < 0 || w->pivot > 64 || (w->pivot && w->n_in % w->pivot))
        return l->rc = sqlm_error(SQLM_FORMAT, "weight table %s: bad pivot %d", w->name, w->pivot), 1;
    if (w->split_at < 0 || w->split_at >= w->n_out || (w->split_at && w->chunk != w->n_in))
        return l->rc = sqlm_error(SQLM_FORMAT, "weight table %s: bad split %lld", w->name, (long long)w->split_at), 1;
    if (w->blocks < 0 || (w->blocks && (w->split_at || w->pivot || w->chunk != w->n_in)))
        return l->rc = sqlm_error(SQLM_FORMAT, "weight table %s: bad blocks %lld", w->name, (long long)blocks), 1;
    if (!sqlm_dtype_valid(w->dtype) || w->n_out <= 0 || w->n_in <= 0 || w->n_out > SQLM_MODEL_MAX_DIM ||
        w->n_in > SQLM_MODEL_MAX_DIM || w->tile_rows <= 0 || w->tile_rows > w->n_out || w->chunk <= 0 ||
        w->chunk > w->n_in || !sqlm_dtype_row_bytes(w->dtype, (size_t)w->n_in, &rb))
        return l->rc = sqlm_error(SQLM_FORMAT, "weight table %s: bad layout", w->name), 1;
    l->bytes += (double)rb * (double)w->n_out;
    return 0;
}

/*
 * The weights a database's file can hold: its tiles hold every value in its
 * stored type (SQLite), or wider (DuckDB's FLOAT[] and TINYINT[] columns);
 * four times the file leaves room for an engine that compresses.  Bounds
 * what a hostile sqlm_weight can make the tile index allocate.
 */
#define WEIGHT_BYTES_PER_FILE_BYTE 4

int sqlm_modeldb_read_weights(engine *e, const char *path, ir_weight **out, int *n) {
    weights_ctx l = { NULL, 0, 0, 0 };
    /* the widest column list first: a database of format 1 may lack the
     * optional ROW2COL columns (blocks; then split_at; then n_pivot), which
     * then read as 0 */
    static const char *const q[] = {
        "SELECT name, dtype, n_out, n_in, tile_rows, chunk, n_pivot, split_at, blocks FROM sqlm_weight",
        "SELECT name, dtype, n_out, n_in, tile_rows, chunk, n_pivot, split_at FROM sqlm_weight",
        "SELECT name, dtype, n_out, n_in, tile_rows, chunk, n_pivot FROM sqlm_weight",
        "SELECT name, dtype, n_out, n_in, tile_rows, chunk FROM sqlm_weight",
    };
    int rc = SQLM_ERROR;
    for (size_t i = 0; i < ARRAY_LEN(q) && rc && !l.rc && !l.n; i++)
        rc = e->m->query(e, q[i], NULL, 0, weight_row, &l);
    if (!rc) rc = l.rc;
    if (rc && l.rc && path) sqlm_error_prefix(rc, "%s", path);
    struct stat st;
    if (!rc && l.n == 0) rc = sqlm_error(SQLM_FORMAT, "%s: sqlm_weight: no weights", path);
    if (!rc && path && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        l.bytes > (double)st.st_size * WEIGHT_BYTES_PER_FILE_BYTE)
        rc = sqlm_error(SQLM_FORMAT, "%s: sqlm_weight: the shapes need %.0f bytes of weights, the file has %lld",
                        path, l.bytes, (long long)st.st_size);
    /* what the engine's layout rules derive from the stored layout */
    const sql_dialect *d = sqlm_dialect_get(e->m->dialect);
    if (!rc) sqlm_layout_derive(d ? d->layout : NULL, l.w, l.n);
    if (rc) {
        free(l.w);
        l.w = NULL;
        l.n = 0;
    }
    *out = l.w;
    *n = l.n;
    return rc;
}

static int tokcfg_row(void *ctx, int nc, const db_val *v) {
    load_ctx *l = ctx;
    vocab *voc = &l->db->voc;
    if (nc < 2 || v[0].type != DBV_TEXT) return 0;
    const char *key = v[0].p;
#define X(name, def)                                                         \
    if (strcmp(key, #name) == 0 && v[1].type == DBV_INT) voc->name = (int32_t)v[1].i; \
    if (strcmp(key, #name) == 0 && v[1].type == DBV_TEXT) voc->name = (int32_t)strtol(v[1].p, NULL, 10);
    VOCAB_INT_FIELDS(X)
#undef X
#define X(name)                                                              \
    if (strcmp(key, #name) == 0 && v[1].type == DBV_TEXT) {                  \
        free(voc->name);                                                     \
        voc->name = strndup(v[1].p, v[1].n);                                 \
    }
    VOCAB_STR_FIELDS(X)
#undef X
    return 0;
}

static int vocab_row(void *ctx, int nc, const db_val *v) {
    load_ctx *l = ctx;
    vocab *voc = &l->db->voc;
    if (nc < 4 || v[0].type != DBV_INT || v[0].i < 0 || v[0].i >= voc->n) {
        l->rc = sqlm_error(SQLM_FORMAT, "vocab table: bad row");
        return 1;
    }
    int rc = sqlm_vocab_set_token(voc, (int32_t)v[0].i, v[1].p ? v[1].p : "", v[1].n,
                             v[2].type == DBV_REAL ? (float)v[2].d : (float)v[2].i, (int32_t)v[3].i);
    if (rc) return l->rc = rc, 1;
    return 0;
}

static int merge_row(void *ctx, int nc, const db_val *v) {
    load_ctx *l = ctx;
    vocab *voc = &l->db->voc;
    if (nc < 2 || v[0].type != DBV_INT || v[0].i < 0 || v[0].i >= voc->n_merges || v[1].type != DBV_TEXT) {
        l->rc = sqlm_error(SQLM_FORMAT, "merges table: bad row");
        return 1;
    }
    voc->merges[v[0].i] = strndup(v[1].p, v[1].n);
    if (!voc->merges[v[0].i]) return l->rc = SQLM_NOMEM, 1;
    return 0;
}

int sqlm_modeldb_open(modeldb *db, const char *path, const char *engine_name, const engine_opts *o) {
    memset(db, 0, sizeof *db);
    sqlm_vocab_init(&db->voc);
    /* no engine named: the one that wrote the database; reachable */
    const db_methods *m;
    int rc = sqlm_db_resolve(path, engine_name, &m);
    if (rc) return rc;
    rc = m->open(&db->e, path, o);
    if (rc) return rc;
    load_ctx l = { db, path, 0, 0, 0 };
    rc = db->e->m->query(db->e, "SELECT key, value FROM sqlm_meta", NULL, 0, meta_row, &l);
    if (l.rc) {
        rc = l.rc;
        goto fail;
    }
    if (rc) {
        sqlm_error_prefix(rc, "%s: not an sqlm model database", path);
        goto fail;
    }
    if (l.format != SQLM_DB_FORMAT) {
        rc = sqlm_error(SQLM_FORMAT, "%s: database format %d, this sqlm reads %d", path, l.format,
                        SQLM_DB_FORMAT);
        goto fail;
    }
    if (l.complete != 1) {
        rc = sqlm_error(SQLM_FORMAT, "%s: incomplete database (its import did not finish)", path);
        goto fail;
    }
    char where[PATH_MAX + 32];
    snprintf(where, sizeof where, "%s: sqlm_meta", path);
    if ((rc = sqlm_config_check(&db->cfg, where))) goto fail;
    if ((rc = sqlm_modeldb_read_weights(db->e, path, &db->weights, &db->n_weights))) goto fail;
    /* weight tiles read in place when the engine can; else a note and the
     * copying path.  Under --mem-budget the tiles come from the budget's
     * weight cache, not a mapping of the whole file (db/sqlite/tiles.c). */
    if (o->readonly && !o->plain && !o->copy_tiles && db->e->m->map_weights) {
        if (db->e->m->map_weights(db->e, db->weights, db->n_weights) == SQLM_OK) db->inplace = true;
        else snprintf(db->note, sizeof db->note, "weight tiles are read through %s (copied): %s",
                      db->e->m->name, sqlm_errmsg());
    }

    int64_t n = 0, nm = 0;
    rc = db->e->m->query(db->e, "SELECT key, value FROM tokenizer", NULL, 0, tokcfg_row, &l);
    if (!rc) rc = db->e->m->query(db->e, "SELECT count(*) FROM vocab", NULL, 0, sqlm_db_int_row, &n);
    if (!rc) rc = db->e->m->query(db->e, "SELECT count(*) FROM merges", NULL, 0, sqlm_db_int_row, &nm);
    if (rc) goto fail;
    if (n > 0) {
        if ((rc = sqlm_vocab_alloc(&db->voc, (int32_t)MIN(n, INT32_MAX)))) goto fail;
        rc = db->e->m->query(db->e, "SELECT id, piece, score, attr FROM vocab", NULL, 0, vocab_row, &l);
        if (rc || (rc = l.rc)) goto fail;
        for (int32_t i = 0; i < db->voc.n; i++)
            if (!db->voc.tok[i]) {
                rc = sqlm_error(SQLM_FORMAT, "%s: vocab table misses id %d", path, i);
                goto fail;
            }
    }
    if (nm > 0) {
        if (nm > (1 << 24) || !(db->voc.merges = calloc((size_t)nm, sizeof(char *)))) {
            rc = sqlm_error(SQLM_FORMAT, "%s: %lld merges", path, (long long)nm);
            goto fail;
        }
        db->voc.n_merges = (int32_t)nm;
        rc = db->e->m->query(db->e, "SELECT rank, pair FROM merges", NULL, 0, merge_row, &l);
        if (rc || (rc = l.rc)) goto fail;
        for (int32_t i = 0; i < db->voc.n_merges; i++)
            if (!db->voc.merges[i]) {
                rc = sqlm_error(SQLM_FORMAT, "%s: merges table misses rank %d", path, i);
                goto fail;
            }
    }
    snprintf(where, sizeof where, "%s: tokenizer and vocab tables", path);
    if ((rc = sqlm_vocab_check(&db->voc, db->cfg.vocab_size, where))) goto fail;
    if (db->voc.n > 0 && ((rc = sqlm_tok_init(&db->tok, &db->voc)) || (rc = sqlm_vocab_pack(&db->voc)))) goto fail;
    return SQLM_OK;
fail:
    sqlm_modeldb_close(db);
    return rc;
}

void sqlm_modeldb_close(modeldb *db) {
    if (!db) return;
    sqlm_tok_free(db->tok);
    sqlm_vocab_free(&db->voc);
    free(db->weights);
    if (db->e) db->e->m->close(db->e);
    memset(db, 0, sizeof *db);
}
