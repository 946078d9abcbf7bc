/*
 * safetensors.c - Hugging Face checkpoint reader: model.safetensors (mmapped)
 * plus config.json, and tokenizer.json through sqlm_tok_read_json(), all from the
 * same folder.  HF tensor names become the canonical GGUF-style names.
 *
 * One file, or a sharded checkpoint through model.safetensors.index.json;
 * float types only (F32, F16, BF16).  HF q/k rows are in rotate-half order,
 * so rope_interleaved = 0.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "../tok/tok.h"

#define ST_MAX_HEADER (100u << 20)

/* ----------------------------------------------------------------- names */

/* HF per-layer suffix -> canonical suffix (after "model.layers.N."). */
static const char *const layer_names[][2] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate_proj.bias", "ffn_gate.bias"},
    {"mlp.up_proj.bias", "ffn_up.bias"},
    {"mlp.down_proj.bias", "ffn_down.bias"},
};

static const char *const global_names[][2] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

/* Canonical name of HF tensor hf into out; unknown names are kept as they are. */
static void map_name(const char *hf, char *out, size_t cap) {
    static const char prefix[] = "model.layers.";
    for (size_t i = 0; i < ARRAY_LEN(global_names); i++) {
        if (strcmp(hf, global_names[i][0]) == 0) {
            snprintf(out, cap, "%s", global_names[i][1]);
            return;
        }
    }
    if (strncmp(hf, prefix, sizeof prefix - 1) == 0) {
        const char *p = hf + sizeof prefix - 1;
        long layer = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 7) layer = layer * 10 + (*p++ - '0'), digits++;
        if (digits && *p == '.') {
            for (size_t i = 0; i < ARRAY_LEN(layer_names); i++) {
                if (strcmp(p + 1, layer_names[i][0]) == 0) {
                    snprintf(out, cap, "blk.%ld.%s", layer, layer_names[i][1]);
                    return;
                }
            }
        }
    }
    snprintf(out, cap, "%s", hf);
}

/* ---------------------------------------------------------- config.json */

/* Integer field in [lo, hi] (JSON integer or integral real); absent: untouched. */
static int cfg_int(json_t *root, const char *path, const char *field, bool required, double lo,
                   double hi, int32_t *out) {
    json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v)) {
        if (required) return sqlm_error(SQLM_FORMAT, "%s: missing field %s", path, field);
        return SQLM_OK;
    }
    if (!json_is_number(v))
        return sqlm_error(SQLM_FORMAT, "%s: field %s: not a number", path, field);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi) || d != floor(d))
        return sqlm_error(SQLM_FORMAT, "%s: field %s: %g out of range (%g..%g)", path, field, d,
                          lo, hi);
    *out = (int32_t)d;
    return SQLM_OK;
}

static int cfg_float(json_t *root, const char *path, const char *field, float *out) {
    json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v)) return SQLM_OK;
    if (!json_is_number(v))
        return sqlm_error(SQLM_FORMAT, "%s: field %s: not a number", path, field);
    double d = json_number_value(v);
    if (!isfinite(d) || fabs(d) > 3e38)
        return sqlm_error(SQLM_FORMAT, "%s: field %s: %g out of range", path, field, d);
    *out = (float)d;
    return SQLM_OK;
}

static bool cfg_bool(json_t *root, const char *field, bool def) {
    json_t *v = json_object_get(root, field);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/*
 * config.json (HF): hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads (default heads), head_dim (default
 * hidden/heads), vocab_size, max_position_embeddings, rms_norm_eps,
 * rope_theta, tie_word_embeddings, attention_bias, model_type, rope_scaling
 * ({rope_type|type: "llama3", factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings} or null).
 */
static int read_config(model *m, const char *path, bool *tie) {
    model_config *c = &m->cfg;
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    const double big = 1 << 20;
    int rc;

    if (!root) {
        if (access(path, F_OK) != 0)
            return sqlm_error(SQLM_IO, "%s: missing config.json beside the safetensors file", path);
        return sqlm_error(SQLM_FORMAT, "%s: bad JSON at line %d: %s", path, err.line, err.text);
    }
    if (!json_is_object(root)) {
        rc = sqlm_error(SQLM_FORMAT, "%s: bad JSON: not an object", path);
        goto fail;
    }
    const char *type = json_string_value(json_object_get(root, "model_type"));
    if (!type || (strcmp(type, "llama") && strcmp(type, "qwen2") && strcmp(type, "mistral"))) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: field model_type: \"%s\" is not supported (llama, "
                        "qwen2, mistral)", path, type ? type : "(missing)");
        goto fail;
    }
    snprintf(c->arch, sizeof c->arch, "%s", type);
    if ((rc = cfg_int(root, path, "hidden_size", true, 1, big, &c->dim)) ||
        (rc = cfg_int(root, path, "intermediate_size", true, 1, big, &c->hidden_dim)) ||
        (rc = cfg_int(root, path, "num_hidden_layers", true, 1, big, &c->n_layer)) ||
        (rc = cfg_int(root, path, "num_attention_heads", true, 1, big, &c->n_head)) ||
        (rc = cfg_int(root, path, "vocab_size", true, 1, big, &c->vocab_size)))
        goto fail;
    c->n_head_kv = c->n_head;
    c->head_dim = c->dim / c->n_head;
    c->seq_len = 2048;
    c->norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    if ((rc = cfg_int(root, path, "num_key_value_heads", false, 1, big, &c->n_head_kv)) ||
        (rc = cfg_int(root, path, "head_dim", false, 1, big, &c->head_dim)) ||
        (rc = cfg_int(root, path, "max_position_embeddings", false, 1, big, &c->seq_len)) ||
        (rc = cfg_float(root, path, "rms_norm_eps", &c->norm_eps)) ||
        (rc = cfg_float(root, path, "rope_theta", &c->rope_theta)))
        goto fail;
    c->rope_interleaved = 0;
    c->qkv_bias = strcmp(type, "qwen2") == 0 || cfg_bool(root, "attention_bias", false);
    if (cfg_bool(root, "mlp_bias", false)) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: field mlp_bias: FFN biases are not supported", path);
        goto fail;
    }
    *tie = cfg_bool(root, "tie_word_embeddings", false);

    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        const char *rt = json_string_value(json_object_get(rs, "rope_type"));
        if (!rt) rt = json_string_value(json_object_get(rs, "type"));
        if (rt && strcmp(rt, "llama3") == 0) {
            c->rope_low_freq_factor = 1.0f;
            c->rope_high_freq_factor = 4.0f;
            c->rope_orig_ctx = 8192;
            if ((rc = cfg_float(rs, path, "factor", &c->rope_scale_factor)) ||
                (rc = cfg_float(rs, path, "low_freq_factor", &c->rope_low_freq_factor)) ||
                (rc = cfg_float(rs, path, "high_freq_factor", &c->rope_high_freq_factor)) ||
                (rc = cfg_int(rs, path, "original_max_position_embeddings", false, 1, big,
                              &c->rope_orig_ctx)))
                goto fail;
            if (c->rope_scale_factor == 0.0f) {
                rc = sqlm_error(SQLM_FORMAT, "%s: field rope_scaling.factor: missing or 0", path);
                goto fail;
            }
        } else if (!rt || strcmp(rt, "default") != 0) {
            rc = sqlm_error(SQLM_UNSUPPORTED, "%s: field rope_scaling: type \"%s\" is not "
                            "supported (llama3)", path, rt ? rt : "(missing)");
            goto fail;
        }
    }
    json_decref(root);
    return SQLM_OK;
fail:
    json_decref(root);
    return rc;
}

/* --------------------------------------------------------------- tensors */

static int json_u64(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* One header entry: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}. */
static int read_entry(model *m, const char *path, const char *name, json_t *e,
                      const uint8_t *data, size_t data_size) {
    int64_t ne[4] = {1, 1, 1, 1};
    uint64_t begin, end;
    char cname[96];
    size_t nbytes;

    if (!json_is_object(e))
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: header entry is not an object", path, name);
    const char *dts = json_string_value(json_object_get(e, "dtype"));
    int dt = dts ? sqlm_dtype_from_name(dts) : -1;
    if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16)
        return sqlm_error(SQLM_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported (F32, F16, "
                          "BF16)", path, name, dts ? dts : "(missing)");
    json_t *shape = json_object_get(e, "shape");
    if (!json_is_array(shape) || json_array_size(shape) > 4)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: shape is not an array of at most 4 "
                          "dimensions", path, name);
    int n_dim = (int)json_array_size(shape);
    for (int i = 0; i < n_dim; i++) {
        uint64_t d;
        if (json_u64(json_array_get(shape, (size_t)i), &d) || d == 0 || d > (1ull << 40))
            return sqlm_error(SQLM_FORMAT, "%s: tensor %s: shape[%d] is not a positive integer",
                              path, name, i);
        ne[n_dim - 1 - i] = (int64_t)d; /* row-major [out][in] -> ne[0] = in */
    }
    if (n_dim == 0) n_dim = 1; /* a scalar */
    json_t *off = json_object_get(e, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        json_u64(json_array_get(off, 0), &begin) || json_u64(json_array_get(off, 1), &end))
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: data_offsets is not [begin, end]", path,
                          name);
    if (begin > end)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu]: begin > end",
                          path, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] lie past end of "
                          "the %zu data bytes", path, name, (unsigned long long)begin,
                          (unsigned long long)end, data_size);
    if (!sqlm_tensor_nbytes(dt, n_dim, ne, &nbytes) || nbytes != end - begin)
        return sqlm_error(SQLM_FORMAT, "%s: tensor %s: shape needs %zu bytes but data_offsets "
                          "span %llu (shape mismatch)", path, name, nbytes,
                          (unsigned long long)(end - begin));
    map_name(name, cname, sizeof cname);
    if (strlen(name) >= sizeof cname) return SQLM_OK; /* an unknown, overlong name: ignore */
    return sqlm_model_add_tensor(m, path, cname, dt, n_dim, ne, data + begin, nbytes);
}

static int find_tensor(const model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

/*
 * File layout: u64 header_len (LE); header_len bytes of JSON
 *   {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}, ...};
 * then the data section, which data_offsets index (relative to its start).
 * The tensors of the file at path (mapped at base, size bytes).  With an
 * index's weight_map, every tensor must be one the map puts in this file
 * (shard, its name there); *n counts them.
 */
static int read_file(model *m, const char *path, const uint8_t *base, size_t size, json_t *weight_map,
                     const char *shard, size_t *n) {
    uint64_t hlen;
    json_error_t err;
    if (size < 8) return sqlm_error(SQLM_FORMAT, "%s: truncated: %zu bytes, no header length", path, size);
    memcpy(&hlen, base, 8);
    if (hlen > ST_MAX_HEADER || hlen > size - 8)
        return sqlm_error(SQLM_FORMAT, "%s: header length %llu runs past end of file (%zu bytes) "
                          "or exceeds 100 MB", path, (unsigned long long)hlen, size);
    if (hlen < 2 || base[8] != '{')
        return sqlm_error(SQLM_FORMAT, "%s: bad magic: header does not start with '{' (not a "
                          "safetensors file)", path);
    json_t *root = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root || !json_is_object(root)) {
        int rc = sqlm_error(SQLM_FORMAT, "%s: bad JSON in header at column %d: %s", path, err.column,
                            root ? "not an object" : err.text);
        json_decref(root);
        return rc;
    }
    const uint8_t *data = base + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    const char *name;
    json_t *e;
    int rc = SQLM_OK;
    json_object_foreach(root, name, e) {
        if (strcmp(name, "__metadata__") == 0) continue;
        const char *in = weight_map ? json_string_value(json_object_get(weight_map, name)) : shard;
        if (weight_map && (!in || strcmp(in, shard) != 0)) {
            rc = sqlm_error(SQLM_FORMAT, "%s: tensor %s: the index puts it in %s", path, name, in ? in : "no shard");
            break;
        }
        if ((rc = read_entry(m, path, name, e, data, data_size))) break;
        ++*n;
    }
    json_decref(root);
    return rc;
}

/* config.json and tokenizer.json beside path, the tied head; after the
 * tensors are read. */
static int read_beside(model *m, const char *path) {
    char *cfg_path = sqlm_model_path_beside(path, "config.json");
    char *tok_path = sqlm_model_path_beside(path, "tokenizer.json");
    bool tie = false;
    int rc = !cfg_path || !tok_path ? SQLM_NOMEM : read_config(m, cfg_path, &tie);
    if (!rc) {
        /* Tied: the embedding may be stored only as lm_head.weight (the HF alias). */
        int emb = find_tensor(m, "token_embd.weight"), out = find_tensor(m, "output.weight");
        m->cfg.tied = tie;
        if (tie && out >= 0) {
            if (emb < 0) {
                snprintf(m->tensors[out].name, sizeof m->tensors[out].name, "token_embd.weight");
            } else {
                m->tensors[out] = m->tensors[m->n_tensors - 1];
                m->n_tensors--;
            }
        }
        if (access(tok_path, F_OK) == 0) rc = sqlm_tok_read_json(&m->voc, tok_path);
    }
    free(cfg_path);
    free(tok_path);
    return rc;
}

int sqlm_safetensors_read(model *m, const char *path) {
    size_t n = 0;
    int rc = sqlm_model_map(m, path);
    if (!rc) rc = read_file(m, path, m->map, m->map_size, NULL, NULL, &n);
    return rc ? rc : read_beside(m, path);
}

/* A shard's file name as the index gives it: a plain name in the folder. */
static bool shard_name_ok(const char *s) {
    size_t n = strlen(s);
    return n > 12 && n < 256 && !strchr(s, '/') && s[0] != '.' && strcmp(s + n - 12, ".safetensors") == 0;
}

/*
 * model.safetensors.index.json: {"metadata": {...}, "weight_map": {"<tensor>":
 * "model-00001-of-00002.safetensors", ...}}.  Every shard named is read,
 * each holding exactly the tensors the map gives it.
 */
int sqlm_safetensors_read_index(model *m, const char *index_path) {
    json_error_t err;
    struct stat st;
    if (stat(index_path, &st) != 0) return sqlm_error(SQLM_IO, "%s: cannot open: %s", index_path, strerror(errno));
    if (st.st_size > ST_MAX_HEADER)
        return sqlm_error(SQLM_FORMAT, "%s: %lld bytes, more than an index can be", index_path, (long long)st.st_size);
    if (!m->path && !(m->path = sqlm_strdup(index_path))) return SQLM_NOMEM;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &err);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map) || json_object_size(map) == 0) {
        int rc = sqlm_error(SQLM_FORMAT, "%s: %s", index_path, root ? "no weight_map object" : err.text);
        json_decref(root);
        return rc;
    }
    const char *name, *shard;
    json_t *v;
    int rc = SQLM_OK;
    json_object_foreach(map, name, v) {
        if (!(shard = json_string_value(v)) || !shard_name_ok(shard)) {
            rc = sqlm_error(SQLM_FORMAT, "%s: weight_map: tensor %s: not a .safetensors file name in the folder",
                            index_path, name);
            break;
        }
    }
    /* each shard once, in the order the map first names it; a shard that
     * cannot be read ends the loop, so the list stays as short as the
     * folder's real shards */
    size_t total = 0, n_seen = 0;
    const char **seen = NULL;
    json_object_foreach(map, name, v) {
        if (rc) break;
        shard = json_string_value(v);
        size_t k = 0;
        while (k < n_seen && strcmp(seen[k], shard) != 0) k++;
        if (k < n_seen) continue;
        const char **grown = realloc(seen, sizeof *seen * (n_seen + 1));
        if (!grown) {
            rc = sqlm_error(SQLM_NOMEM, "out of memory");
            break;
        }
        (seen = grown)[n_seen++] = shard;
        char *path = sqlm_model_path_beside(index_path, shard);
        const uint8_t *base;
        size_t size;
        if (!path) rc = SQLM_NOMEM;
        else if (!(rc = sqlm_model_map_shard(m, path, &base, &size)))
            rc = read_file(m, path, base, size, map, shard, &total);
        free(path);
    }
    free(seen);
    if (!rc && total != json_object_size(map))
        rc = sqlm_error(SQLM_FORMAT, "%s: weight_map lists %zu tensors, its shards hold %zu", index_path,
                        json_object_size(map), total);
    json_decref(root);
    return rc ? rc : read_beside(m, index_path);
}
