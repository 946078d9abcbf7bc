/*
 * tok_json.c - reads a Hugging Face tokenizer.json (BPE models) into a vocab,
 * plus tokenizer_config.json / config.json beside it for the BOS/EOS/PAD
 * tokens, add_bos_token and the chat template.
 *
 * The pipeline of the file (normalizer, pre_tokenizer, post_processor,
 * decoder) is recognised, not interpreted: it is mapped onto the vocab's
 * settings (type, pre, nfc, add_space_prefix, ...), which tokenizer.c
 * implements.  Pipelines we cannot express are rejected with
 * SQLM_UNSUPPORTED rather than tokenized differently.  Not supported:
 * Unigram and WordPiece models, dropout, per-token lstrip/rstrip/single_word.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

/* The split regexes we implement by hand in tokenizer.c, and their names. */
static const struct { const char *regex, *pre; } known_splits[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama3"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "gpt2"},
};

static const char *str_of(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* The step of this type in a pipeline: o itself or inside its Sequence lists. */
static const json_t *find_step(const json_t *o, const char *type) {
    if (!json_is_object(o)) return NULL;
    const char *t = str_of(o, "type");
    if (t && strcmp(t, type) == 0) return o;
    static const char *const lists[] = {"normalizers", "pretokenizers", "decoders", "processors"};
    for (size_t k = 0; k < ARRAY_LEN(lists); k++) {
        const json_t *a = json_object_get(o, lists[k]), *e;
        size_t i;
        json_array_foreach(a, i, e) {
            const json_t *f = find_step(e, type);
            if (f) return f;
        }
    }
    return NULL;
}

/* The first step type in pipeline o that is not in allowed (NULL: all are). */
static const char *unknown_step(const json_t *o, const char *const *allowed) {
    if (!json_is_object(o)) return NULL;
    const char *t = str_of(o, "type");
    if (!t) return "(no type)";
    if (strcmp(t, "Sequence") != 0) {
        for (size_t k = 0; allowed[k]; k++)
            if (strcmp(t, allowed[k]) == 0) return NULL;
        return t;
    }
    static const char *const lists[] = {"normalizers", "pretokenizers"};
    for (size_t k = 0; k < ARRAY_LEN(lists); k++) {
        const json_t *a = json_object_get(o, lists[k]), *e;
        size_t i;
        json_array_foreach(a, i, e) {
            const char *u = unknown_step(e, allowed);
            if (u) return u;
        }
    }
    return NULL;
}

/* Does the normalizer replace " " with "▁"? */
static bool replaces_spaces(const json_t *norm) {
    if (!json_is_object(norm)) return false;
    const char *t = str_of(norm, "type");
    if (t && strcmp(t, "Replace") == 0) {
        const char *pat = str_of(json_object_get(norm, "pattern"), "String");
        const char *to = str_of(norm, "content");
        return pat && to && strcmp(pat, " ") == 0 && strcmp(to, "\xE2\x96\x81") == 0;
    }
    const json_t *a = json_object_get(norm, "normalizers"), *e;
    size_t i;
    json_array_foreach(a, i, e) if (replaces_spaces(e)) return true;
    return false;
}

/* The token content of a config entry: "text" or {"content": "text"}. */
static const char *token_text(const json_t *e) {
    if (json_is_string(e)) return json_string_value(e);
    return str_of(e, "content");
}

static int32_t find_token(const vocab *v, const char *s) {
    if (!s) return -1;
    size_t n = strlen(s);
    for (int32_t i = 0; i < v->n; i++)
        if (v->tok[i] && v->tok_len[i] == n && memcmp(v->tok[i], s, n) == 0) return i;
    return -1;
}

/* "dir/of/path/name", malloc'd. */
static char *path_beside(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = malloc(dir + strlen(name) + 1);
    if (!p) return NULL;
    memcpy(p, path, dir);
    strcpy(p + dir, name);
    return p;
}

/* Read the optional tokenizer_config.json and config.json beside path. */
static int read_configs(vocab *v, const char *path) {
    char *p = path_beside(path, "tokenizer_config.json");
    if (!p) return SQLM_NOMEM;
    json_error_t err;
    json_t *c = json_load_file(p, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
    if (!c && strstr(err.text, "unable to open") == NULL) {
        int rc = sqlm_error(SQLM_FORMAT, "%s: line %d: %s", p, err.line, err.text);
        free(p);
        return rc;
    }
    free(p);
    if (c) {
        int32_t id;
        if ((id = find_token(v, token_text(json_object_get(c, "bos_token")))) >= 0) v->bos = id;
        if ((id = find_token(v, token_text(json_object_get(c, "eos_token")))) >= 0) v->eos = id;
        if ((id = find_token(v, token_text(json_object_get(c, "unk_token")))) >= 0) v->unk = id;
        if ((id = find_token(v, token_text(json_object_get(c, "pad_token")))) >= 0) v->pad = id;
        const json_t *b = json_object_get(c, "add_bos_token");
        if (json_is_boolean(b)) v->add_bos = json_is_true(b);
        b = json_object_get(c, "add_eos_token");
        if (json_is_boolean(b)) v->add_eos = json_is_true(b);
        const json_t *ct = json_object_get(c, "chat_template"), *e;
        const char *tmpl = json_string_value(ct);
        size_t i;
        json_array_foreach(ct, i, e) {   /* [{"name": "default", "template": ...}, ...] */
            const char *name = str_of(e, "name");
            if (!tmpl || (name && strcmp(name, "default") == 0)) tmpl = str_of(e, "template");
        }
        if (tmpl && !(v->chat_template = sqlm_strdup(tmpl))) { json_decref(c); return SQLM_NOMEM; }
        json_decref(c);
    }
    /* config.json: the model's BOS/EOS ids when nothing above named them */
    if (v->bos >= 0 && v->eos >= 0) return SQLM_OK;
    if (!(p = path_beside(path, "config.json"))) return SQLM_NOMEM;
    c = json_load_file(p, JSON_DECODE_INT_AS_REAL, &err);
    free(p);
    if (!c) return SQLM_OK;
    double x = json_number_value(json_object_get(c, "bos_token_id"));
    if (v->bos < 0 && json_is_number(json_object_get(c, "bos_token_id")) && x >= 0 && x < v->n)
        v->bos = (int32_t)x;
    x = json_number_value(json_object_get(c, "eos_token_id"));
    if (v->eos < 0 && json_is_number(json_object_get(c, "eos_token_id")) && x >= 0 && x < v->n)
        v->eos = (int32_t)x;
    json_decref(c);
    return SQLM_OK;
}

/* BOS/EOS from a TemplateProcessing post-processor: specials around "$A". */
static void read_template(vocab *v, const json_t *post) {
    const json_t *tp = find_step(post, "TemplateProcessing");
    v->add_bos = 0;
    v->add_eos = 0;
    if (!tp) return;
    const json_t *single = json_object_get(tp, "single");
    size_t n = json_array_size(single);
    if (n < 2) return;
    int32_t id = find_token(v, str_of(json_object_get(json_array_get(single, 0), "SpecialToken"), "id"));
    if (id >= 0) { v->add_bos = 1; v->bos = id; }
    id = find_token(v, str_of(json_object_get(json_array_get(single, n - 1), "SpecialToken"), "id"));
    if (id >= 0) { v->add_eos = 1; v->eos = id; }
}

int sqlm_tok_read_json(vocab *v, const char *path) {
    json_error_t err;
    sqlm_vocab_init(v);
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!root) {
        if (strstr(err.text, "unable to open"))
            return sqlm_error(SQLM_IO, "%s: %s", path, err.text);
        return sqlm_error(SQLM_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    }
    int rc = SQLM_FORMAT;
    const json_t *model = json_object_get(root, "model");
    const json_t *jvocab = json_object_get(model, "vocab");
    const json_t *jmerges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    const json_t *norm = json_object_get(root, "normalizer");
    const json_t *pretok = json_object_get(root, "pre_tokenizer");
    const char *mtype = str_of(model, "type");
    buf b;
    sqlm_buf_init(&b);
    if (!mtype || strcmp(mtype, "BPE") != 0) {
        rc = sqlm_error(mtype ? SQLM_UNSUPPORTED : SQLM_FORMAT, "%s: model type %s%s%s not supported "
                        "(BPE only)", path, mtype ? "\"" : "", mtype ? mtype : "missing",
                        mtype ? "\"" : "");
        goto fail;
    }
    if (!json_is_object(jvocab)) {
        rc = sqlm_error(SQLM_FORMAT, "%s: model.vocab is not an object", path);
        goto fail;
    }
    /* Size: the largest id of the vocab and of the added tokens. */
    int64_t max_id = -1;
    const char *key;
    const json_t *val, *e;
    size_t i;
    json_object_foreach((json_t *)jvocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= (1 << 24)) {
            rc = sqlm_error(SQLM_FORMAT, "%s: model.vocab: bad id for \"%.40s\"", path, key);
            goto fail;
        }
        if (id > max_id) max_id = id;
    }
    json_array_foreach(added, i, e) {
        json_int_t id = json_integer_value(json_object_get(e, "id"));
        if (!json_is_integer(json_object_get(e, "id")) || id < 0 || id >= (1 << 24) ||
            !json_is_string(json_object_get(e, "content"))) {
            rc = sqlm_error(SQLM_FORMAT, "%s: added_tokens[%zu]: bad id or content", path, i);
            goto fail;
        }
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) {
        rc = sqlm_error(SQLM_FORMAT, "%s: empty vocabulary", path);
        goto fail;
    }
    /* Holes are filled with empty tokens: a few bytes must not claim millions. */
    size_t n_named = json_object_size(jvocab) + json_array_size(added);
    if ((size_t)max_id >= 2 * n_named + 65536) {
        rc = sqlm_error(SQLM_FORMAT, "%s: token id %lld but only %zu tokens named", path,
                        (long long)max_id, n_named);
        goto fail;
    }
    if ((rc = sqlm_vocab_alloc(v, (int32_t)max_id + 1))) {
        rc = sqlm_error_prefix(rc, "%s", path);
        goto fail;
    }
    for (int32_t id = 0; id < v->n; id++)   /* holes stay empty and unused */
        if ((rc = sqlm_vocab_set_token(v, id, "", 0, 0, TOK_UNUSED))) goto fail;

    bool byte_level = find_step(pretok, "ByteLevel") || find_step(json_object_get(root, "decoder"), "ByteLevel");
    v->type = byte_level ? VOCAB_BPE : VOCAB_SPM;
    json_object_foreach((json_t *)jvocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        size_t n = strlen(key);
        int attr = TOK_NORMAL;
        if (!byte_level && n == 6 && memcmp(key, "<0x", 3) == 0 && key[5] == '>') attr = TOK_BYTE;
        if ((rc = sqlm_vocab_set_token(v, id, key, n, 0, attr))) goto fail;
    }
    const char *unk = str_of(model, "unk_token");
    v->unk = find_token(v, unk);
    json_array_foreach(added, i, e) {
        int32_t id = (int32_t)json_integer_value(json_object_get(e, "id"));
        const json_t *c = json_object_get(e, "content");
        int attr = json_is_true(json_object_get(e, "special")) ? TOK_CONTROL : TOK_USER;
        if (unk && strcmp(json_string_value(c), unk) == 0) attr = TOK_UNKNOWN;
        if ((rc = sqlm_vocab_set_token(v, id, json_string_value(c), json_string_length(c), 0, attr)))
            goto fail;
        if (json_is_true(json_object_get(e, "normalized")) && !json_is_null(norm) && norm)
            v->special_normalized = 1;
    }

    /* Merges: "a b" strings or [a, b] pairs, rank = position. */
    size_t nm = json_array_size(jmerges);
    if (nm > (1u << 24)) {
        rc = sqlm_error(SQLM_FORMAT, "%s: %zu merges", path, nm);
        goto fail;
    }
    v->merges = calloc(nm ? nm : 1, sizeof *v->merges);
    if (!v->merges) { rc = sqlm_error(SQLM_NOMEM, "%s: out of memory", path); goto fail; }
    json_array_foreach(jmerges, i, e) {
        sqlm_buf_reset(&b);
        if (json_is_string(e)) {
            sqlm_buf_append(&b, json_string_value(e), json_string_length(e));
        } else if (json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            sqlm_buf_puts(&b, json_string_value(json_array_get(e, 0)));
            sqlm_buf_putc(&b, ' ');
            sqlm_buf_puts(&b, json_string_value(json_array_get(e, 1)));
        } else {
            rc = sqlm_error(SQLM_FORMAT, "%s: model.merges[%zu] is not \"a b\" or [a, b]", path, i);
            goto fail;
        }
        if (b.rc || !(v->merges[i] = sqlm_strdup(b.p))) {
            rc = sqlm_error(SQLM_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        v->n_merges = (int32_t)i + 1;
    }

    /* The pipeline, mapped onto the vocab's settings; steps we do not
     * implement are refused rather than silently skipped. */
    static const char *const bpe_norm[] = {"NFC", NULL};
    static const char *const bpe_pre[] = {"ByteLevel", "Split", "Digits", NULL};
    static const char *const spm_norm[] = {"Prepend", "Replace", "NFC", NULL};
    static const char *const spm_pre[] = {"Metaspace", NULL};
    const char *bad = unknown_step(norm, byte_level ? bpe_norm : spm_norm);
    const char *bad_pre = unknown_step(pretok, byte_level ? bpe_pre : spm_pre);
    if (bad || bad_pre) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: %s step \"%s\" not supported", path,
                        bad ? "normalizer" : "pre_tokenizer", bad ? bad : bad_pre);
        goto fail;
    }
    const json_t *bl = find_step(pretok, "ByteLevel");
    if (byte_level && !find_step(pretok, "Split") && !find_step(pretok, "Digits") && bl &&
        json_is_false(json_object_get(bl, "use_regex"))) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "%s: ByteLevel without a split pattern not supported",
                        path);
        goto fail;
    }
    v->special_in_text = 1;
    v->nfc = find_step(norm, "NFC") != NULL;
    v->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (byte_level) {
        v->add_space_prefix = 0;
        v->escape_spaces = 0;
        v->byte_fallback = 0;
        v->special_normalized = 0;
        const json_t *split = find_step(pretok, "Split");
        const json_t *digits = find_step(pretok, "Digits");
        const char *pre = NULL;
        if (split) {
            const char *re = str_of(json_object_get(split, "pattern"), "Regex");
            for (size_t k = 0; re && k < ARRAY_LEN(known_splits); k++)
                if (strcmp(re, known_splits[k].regex) == 0) pre = known_splits[k].pre;
            if (!pre) {
                rc = sqlm_error(SQLM_UNSUPPORTED, "%s: pre-tokenizer split pattern %.200s not "
                                "supported", path, re ? re : "(not a regex)");
                goto fail;
            }
        } else if (digits && json_is_true(json_object_get(digits, "individual_digits"))) {
            pre = "smollm";
        } else {
            pre = "gpt2";
        }
        if (!(v->pre = sqlm_strdup(pre))) { rc = SQLM_NOMEM; goto fail; }
    } else {
        const json_t *prepend = find_step(norm, "Prepend");
        const json_t *meta = find_step(pretok, "Metaspace");
        v->add_space_prefix = (prepend && str_of(prepend, "prepend") &&
                               strcmp(str_of(prepend, "prepend"), "\xE2\x96\x81") == 0) ||
                              (meta && (json_is_true(json_object_get(meta, "add_prefix_space")) ||
                                        (str_of(meta, "prepend_scheme") &&
                                         strcmp(str_of(meta, "prepend_scheme"), "never") != 0)));
        v->escape_spaces = replaces_spaces(norm) || meta != NULL;
        v->merges_by_rank = 1;
        v->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
        v->byte_fallback = json_is_true(json_object_get(model, "byte_fallback")) &&
                           find_token(v, "<0x00>") >= 0;
        if (!v->add_space_prefix) v->special_normalized = 0;
    }
    read_template(v, json_object_get(root, "post_processor"));
    if ((rc = read_configs(v, path))) goto fail;
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"};
    for (size_t k = 0; k < ARRAY_LEN(eot_names) && v->eot < 0; k++) v->eot = find_token(v, eot_names[k]);
    sqlm_buf_free(&b);
    json_decref(root);
    return SQLM_OK;
fail:
    if (rc == SQLM_NOMEM) sqlm_error(SQLM_NOMEM, "%s: out of memory", path);
    sqlm_buf_free(&b);
    json_decref(root);
    sqlm_vocab_free(v);
    return rc;
}
