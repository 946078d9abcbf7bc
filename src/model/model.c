/*
 * model.c - open a model file: sniff the format, mmap it, hand it to the
 * format reader (gguf.c, safetensors.c, llama2c.c), then check in one common
 * pass that the tensor table and the config agree exactly.
 *
 * Readers only translate a format into struct model; every rule about what a
 * valid Llama-family model looks like lives here.  This file does not convert
 * or copy weights: tensors are borrowed views into the read-only mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"


/* ---------------------------------------------------------------- helpers */

bool sqlm_tensor_nbytes(int dt, int n_dim, const int64_t *ne, size_t *out) {
    size_t n;
    *out = 0;
    if (n_dim < 1 || n_dim > 4 || ne[0] <= 0 || (uint64_t)ne[0] > SIZE_MAX) return false;
    if (!sqlm_dtype_row_bytes(dt, (size_t)ne[0], &n) || n == 0) return false;
    for (int i = 1; i < n_dim; i++) {
        if (ne[i] <= 0 || (uint64_t)ne[i] > SIZE_MAX || !size_mul(n, (size_t)ne[i], &n))
            return false;
    }
    *out = n;
    return true;
}

size_t sqlm_tensor_row_bytes(const tensor *t) {
    size_t n = 0;
    sqlm_dtype_row_bytes(t->dtype, (size_t)t->ne[0], &n);
    return n;
}

const void *sqlm_tensor_row(const tensor *t, int64_t r) {
    return (const uint8_t *)t->data + (size_t)r * sqlm_tensor_row_bytes(t);
}

/* dir/name, malloc'd (NULL when memory runs out). */
static char *in_folder(const char *dir, const char *name) {
    size_t n = strlen(dir);
    bool slash = n && dir[n - 1] == '/';
    char *p = sqlm_xmalloc_checked(n + 1 + strlen(name) + 1);
    if (p) sprintf(p, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

char *sqlm_model_path_beside(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
    size_t nlen = strlen(name);
    char *p = sqlm_xmalloc_checked(dlen + nlen + 1);
    if (!p) return NULL;
    memcpy(p, path, dlen);
    memcpy(p + dlen, name, nlen + 1);
    return p;
}

/* The whole file at path, mapped read-only: *out and *size. */
static int map_file(const char *path, void **out, size_t *size) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sqlm_error(SQLM_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        sqlm_error(SQLM_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        sqlm_error(SQLM_IO, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size == 0) {
        sqlm_error(SQLM_FORMAT, "%s: file is empty (truncated)", path);
        goto fail;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        sqlm_error(SQLM_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    *out = p;
    *size = (size_t)st.st_size;
    return SQLM_OK;
fail:
    close(fd);
    return SQLM_IO;
}

int sqlm_model_map(model *m, const char *path) {
    if (m->map) return SQLM_OK;
    int rc = map_file(path, &m->map, &m->map_size);
    if (rc) return rc;
    if (!m->path && !(m->path = sqlm_strdup(path))) return SQLM_NOMEM;
    return SQLM_OK;
}

int sqlm_model_map_shard(model *m, const char *path, const uint8_t **base, size_t *size) {
    struct model_map *v = realloc(m->shards, sizeof *v * (size_t)(m->n_shards + 1));
    if (!v) return sqlm_error(SQLM_NOMEM, "out of memory");
    m->shards = v;
    void *p = NULL;
    int rc = map_file(path, &p, size);
    if (rc) return rc;
    v[m->n_shards++] = (struct model_map){ p, *size };
    *base = p;
    return SQLM_OK;
}

static bool inside(const void *map, size_t size, const void *p, size_t n) {
    const uint8_t *b = map, *q = p;
    return map && q >= b && (size_t)(q - b) <= size && n <= size - (size_t)(q - b);
}

int sqlm_model_add_tensor(model *m, const char *path, const char *name, int dtype, int n_dim,
                     const int64_t *ne, const void *data, size_t nbytes) {
    size_t want;
    tensor *t;
    if (strlen(name) >= sizeof t->name)
        return sqlm_error(SQLM_FORMAT, "%s: tensor name too long: %.60s...", path, name);
    if (!sqlm_dtype_valid(dtype))
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: unknown tensor type %d", path, name, dtype);
    if (!sqlm_tensor_nbytes(dtype, n_dim, ne, &want) || want != nbytes)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: shape does not match its %zu data bytes",
                          path, name, nbytes);
    bool in = inside(m->map, m->map_size, data, nbytes) || inside(m->map2, m->map2_size, data, nbytes);
    for (int i = 0; !in && i < m->n_shards; i++) in = inside(m->shards[i].p, m->shards[i].n, data, nbytes);
    if (!in) return sqlm_error(SQLM_FORMAT, "%s: tensor %s: data lies past end of file", path, name);
    /* Capacity is implicit: 16, then doubled whenever the count reaches a power of two. */
    int n = m->n_tensors;
    if (n == 0 || (n >= 16 && (n & (n - 1)) == 0)) {
        size_t cap = n ? (size_t)n * 2 : 16;
        if (m->n_tensors >= (1 << 24))
            return sqlm_error(SQLM_FORMAT, "%s: too many tensors", path);
        t = realloc(m->tensors, cap * sizeof *t);
        if (!t) return sqlm_error(SQLM_NOMEM, "%s: out of memory for the tensor table", path);
        m->tensors = t;
    }
    t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->n_dim = n_dim;
    for (int i = 0; i < 4; i++) t->ne[i] = i < n_dim ? ne[i] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return SQLM_OK;
}

const tensor *sqlm_model_find(const model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

const tensor *sqlm_model_find_layer(const model *m, int layer, const char *suffix) {
    char name[128];
    snprintf(name, sizeof name, "blk.%d.%s", layer, suffix);
    return sqlm_model_find(m, name);
}

void sqlm_model_release_pages(const model *m) {
    if (m->map) madvise(m->map, m->map_size, MADV_DONTNEED);
    if (m->map2) madvise(m->map2, m->map2_size, MADV_DONTNEED);
    for (int i = 0; i < m->n_shards; i++) madvise(m->shards[i].p, m->shards[i].n, MADV_DONTNEED);
}

void sqlm_model_free(model *m) {
    if (!m) return;
    if (m->map) munmap(m->map, m->map_size);
    if (m->map2) munmap(m->map2, m->map2_size);
    for (int i = 0; i < m->n_shards; i++) munmap(m->shards[i].p, m->shards[i].n);
    free(m->shards);
    sqlm_vocab_free(&m->voc);
    free(m->tensors);
    free(m->path);
    free(m);
}

/* ------------------------------------------------------------ validation */

int sqlm_config_check(const model_config *c, const char *path) {
#define CHECK_DIM(f)                                                                     \
    if (c->f <= 0 || c->f > SQLM_MODEL_MAX_DIM)                                               \
        return sqlm_error(SQLM_FORMAT, "%s: config field " #f ": %d out of range (1..%d)", \
                          path, (int)c->f, SQLM_MODEL_MAX_DIM);
    CHECK_DIM(dim)
    CHECK_DIM(hidden_dim)
    CHECK_DIM(n_layer)
    CHECK_DIM(n_head)
    CHECK_DIM(n_head_kv)
    CHECK_DIM(head_dim)
    CHECK_DIM(vocab_size)
    CHECK_DIM(seq_len)
#undef CHECK_DIM
    if (c->n_head % c->n_head_kv != 0)
        return sqlm_error(SQLM_FORMAT, "%s: config field n_head_kv: %d does not divide n_head %d",
                          path, c->n_head_kv, c->n_head);
    if (c->head_dim % 2 != 0)
        return sqlm_error(SQLM_FORMAT, "%s: config field head_dim: %d is odd (RoPE needs pairs)",
                          path, c->head_dim);
    if ((int64_t)c->n_head * c->head_dim > SQLM_MODEL_MAX_DIM)
        return sqlm_error(SQLM_FORMAT, "%s: config fields n_head*head_dim: %lld out of range",
                          path, (long long)c->n_head * c->head_dim);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return sqlm_error(SQLM_FORMAT, "%s: config field norm_eps: %g out of range (0..1)",
                          path, (double)c->norm_eps);
    if (!(c->rope_theta > 0.0f && isfinite(c->rope_theta)))
        return sqlm_error(SQLM_FORMAT, "%s: config field rope_theta: %g is not positive",
                          path, (double)c->rope_theta);
    if (c->rope_scale_factor != 0.0f) {
        if (!(c->rope_scale_factor > 0.0f && c->rope_scale_factor < 1e6f && c->rope_orig_ctx > 0 &&
              c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0.0f))
            return sqlm_error(SQLM_FORMAT, "%s: config field rope_scaling: invalid llama3 factors",
                              path);
    }
    if (!memchr(c->arch, 0, sizeof c->arch) || !c->arch[0])
        return sqlm_error(SQLM_FORMAT, "%s: config field arch: missing", path);
    return SQLM_OK;
}

/* Require tensor name to exist with shape {ne0} (ne1 == 0) or {ne0, ne1}. */
static int check_tensor(const model *m, const char *name, int64_t ne0, int64_t ne1) {
    const tensor *t = sqlm_model_find(m, name);
    if (!t) return sqlm_error(SQLM_FORMAT, "%s: missing tensor %s", m->path, name);
    int64_t want[4] = {ne0, ne1 ? ne1 : 1, 1, 1};
    /* A trailing dimension of 1 is the same shape (some writers keep it). */
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] != want[i])
            return sqlm_error(SQLM_FORMAT,
                              "%s: tensor %s: shape [%lld, %lld, %lld, %lld] (ne), expected "
                              "[%lld, %lld] from the config",
                              m->path, name, (long long)t->ne[0], (long long)t->ne[1],
                              (long long)t->ne[2], (long long)t->ne[3], (long long)ne0,
                              (long long)(ne1 ? ne1 : 1));
    }
    return SQLM_OK;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp((*(const tensor *const *)a)->name, (*(const tensor *const *)b)->name);
}

static int check_tensors(const model *m) {
    const model_config *c = &m->cfg;
    int64_t q_dim = (int64_t)c->n_head * c->head_dim, kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    char name[96];
    int rc;

    /* Duplicate names would make sqlm_model_find ambiguous. */
    if (m->n_tensors > 1) {
        const tensor **v = sqlm_xmalloc_checked((size_t)m->n_tensors * sizeof *v);
        if (!v) return SQLM_NOMEM;
        for (int i = 0; i < m->n_tensors; i++) v[i] = &m->tensors[i];
        qsort(v, (size_t)m->n_tensors, sizeof *v, name_cmp);
        for (int i = 1; i < m->n_tensors; i++) {
            if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
                rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: duplicate name", m->path, v[i]->name);
                free(v);
                return rc;
            }
        }
        free(v);
    }
    if ((rc = check_tensor(m, "token_embd.weight", c->dim, c->vocab_size))) return rc;
    if ((rc = check_tensor(m, "output_norm.weight", c->dim, 0))) return rc;
    if (!c->tied && (rc = check_tensor(m, "output.weight", c->dim, c->vocab_size))) return rc;
    for (int l = 0; l < c->n_layer; l++) {
        static const struct {
            const char *suffix;
            int in, out; /* 0 dim, 1 hidden, 2 q_dim, 3 kv_dim; out -1: a vector */
        } req[] = {
            {"attn_norm.weight", 0, -1}, {"attn_q.weight", 0, 2},      {"attn_k.weight", 0, 3},
            {"attn_v.weight", 0, 3},     {"attn_output.weight", 2, 0}, {"ffn_norm.weight", 0, -1},
            {"ffn_gate.weight", 0, 1},   {"ffn_up.weight", 0, 1},      {"ffn_down.weight", 1, 0},
            {"attn_q.bias", 2, -1},      {"attn_k.bias", 3, -1},       {"attn_v.bias", 3, -1},
        };
        int64_t size[4] = {c->dim, c->hidden_dim, q_dim, kv_dim};
        for (size_t i = 0; i < ARRAY_LEN(req); i++) {
            bool bias = strstr(req[i].suffix, ".bias") != NULL;
            snprintf(name, sizeof name, "blk.%d.%s", l, req[i].suffix);
            if (bias && !c->qkv_bias) {
                if (sqlm_model_find(m, name))
                    return sqlm_error(SQLM_FORMAT, "%s: tensor %s: present but the config has no "
                                      "q/k/v biases", m->path, name);
                continue;
            }
            rc = check_tensor(m, name, size[req[i].in], req[i].out < 0 ? 0 : size[req[i].out]);
            if (rc) return rc;
        }
        static const char *const unsupported[] = {"attn_output.bias", "ffn_gate.bias",
                                                  "ffn_up.bias", "ffn_down.bias"};
        for (size_t i = 0; i < ARRAY_LEN(unsupported); i++) {
            snprintf(name, sizeof name, "blk.%d.%s", l, unsupported[i]);
            if (sqlm_model_find(m, name))
                return sqlm_error(SQLM_UNSUPPORTED, "%s: tensor %s: this bias is not supported",
                                  m->path, name);
        }
    }
    /* Every tensor's bytes lie in a mapping (sqlm_model_add_tensor checked) and match its shape. */
    for (int i = 0; i < m->n_tensors; i++) {
        const tensor *t = &m->tensors[i];
        size_t nb;
        if (!sqlm_tensor_nbytes(t->dtype, t->n_dim, t->ne, &nb) || nb != t->nbytes)
            return sqlm_error(SQLM_FORMAT, "%s: tensor %s: size does not match its shape",
                              m->path, t->name);
    }
    return SQLM_OK;
}

int sqlm_vocab_check(const vocab *v, int32_t vocab_size, const char *path) {
    if (v->n == 0) return SQLM_OK;
    if (v->n > vocab_size)
        return sqlm_error(SQLM_FORMAT, "%s: vocabulary has %d tokens, more than vocab_size %d",
                          path, v->n, vocab_size);
    const struct { const char *name; int32_t id; } ids[] = {
        {"bos", v->bos}, {"eos", v->eos}, {"unk", v->unk}, {"pad", v->pad}, {"eot", v->eot},
    };
    for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
        if (ids[i].id < -1 || ids[i].id >= v->n)
            return sqlm_error(SQLM_FORMAT, "%s: vocabulary field %s: token id %d outside 0..%d",
                              path, ids[i].name, ids[i].id, v->n - 1);
    }
    for (int32_t i = 0; i < v->n; i++) {
        if (!v->tok[i])
            return sqlm_error(SQLM_FORMAT, "%s: vocabulary: token %d has no text", path, i);
    }
    return SQLM_OK;
}

/* Check cfg, the tensor table and the vocabulary against each other. */
static int model_validate(const model *m) {
    int rc;
    if ((rc = sqlm_config_check(&m->cfg, m->path))) return rc;
    if ((rc = check_tensors(m))) return rc;
    return sqlm_vocab_check(&m->voc, m->cfg.vocab_size, m->path);
}

/* ------------------------------------------------------------ sqlm_model_open */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int sqlm_model_open(const char *path, const char *tok_path, model **out) {
    struct stat st;
    char *file = NULL;
    int rc;
    model *m;

    *out = NULL;
    m = calloc(1, sizeof *m);
    if (!m) return sqlm_error(SQLM_NOMEM, "%s: out of memory", path);
    sqlm_vocab_init(&m->voc);
    if (stat(path, &st) != 0) {
        rc = sqlm_error(SQLM_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        /* one file, or a sharded checkpoint whose index names the shards */
        file = in_folder(path, "model.safetensors");
        if (file && access(file, R_OK) != 0) {
            free(file);
            file = in_folder(path, "model.safetensors.index.json");
            if (file && access(file, R_OK) != 0) {
                rc = sqlm_error(SQLM_IO, "%s: no readable model.safetensors or model.safetensors.index.json "
                                "in this folder", path);
                goto fail;
            }
        }
        if (!file) {
            rc = SQLM_NOMEM;
            goto fail;
        }
    } else if (!(file = sqlm_strdup(path))) {
        rc = SQLM_NOMEM;
        goto fail;
    }
    if (ends_with(file, ".safetensors.index.json"))
        rc = sqlm_safetensors_read_index(m, file);
    else if ((rc = sqlm_model_map(m, file)))
        goto fail;
    else if ((m->map_size >= 4 && memcmp(m->map, "GGUF", 4) == 0) || ends_with(file, ".gguf"))
        rc = sqlm_gguf_read(m, file);
    else if (ends_with(file, ".safetensors"))
        rc = sqlm_safetensors_read(m, file);
    else
        rc = sqlm_llama2c_read(m, file, tok_path);
    if (rc) goto fail;
    if ((rc = model_validate(m))) goto fail;
    free(file);
    *out = m;
    return SQLM_OK;
fail:
    free(file);
    sqlm_model_free(m);
    return rc;
}
