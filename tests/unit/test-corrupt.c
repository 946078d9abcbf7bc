/*
 * test-corrupt.c - hostile inputs for the model readers, meant to run under
 * ASan/UBSan (make asan).  Corrupted copies of the real models are written to
 * a private mkdtemp folder: truncations, bad magic, absurd counts, lengths,
 * shapes, types and offsets, bad JSON and configs.  Every one must fail with
 * a message naming the file and the reason; the folder is removed at the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../../include/sqlm.h"
#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"
#include "../test.h"

#define STORIES MODELS "stories260K/stories260K.bin"
#define TOK512 MODELS "stories260K/tok512.bin"
#define TS_DIR MODELS "TinyStories-656K"
#define TS_GGUF MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf"

static int n_cases;

typedef struct bytes {
    uint8_t *p;
    size_t len;
} bytes;

/* The whole fixture at path; a missing or empty one is a failure that ends
 * the test (the cases are made from it). */
static bytes read_all(const char *path) {
    bytes b = {0};
    if (!FIXTURE(path)) exit(TEST_DONE());
    b.p = test_read_file(path, &b.len);
    if (!b.len) {
        test_fail++;
        fprintf(stderr, "%s:%d: FAIL: cannot read %s\n", __FILE__, __LINE__, path);
        exit(TEST_DONE());
    }
    return b;
}

static bytes copy_of(bytes b) {
    bytes c = {malloc(b.len), b.len};
    memcpy(c.p, b.p, b.len);
    return c;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* True if msg contains one of the '|'-separated words. */
static bool has_word(const char *msg, const char *words) {
    char w[128];
    while (*words) {
        size_t n = strcspn(words, "|");
        snprintf(w, sizeof w, "%.*s", (int)n, words);
        if (strstr(msg, w)) return true;
        words += n + (words[n] == '|');
    }
    return false;
}

/* sqlm_model_open(path) must fail, naming name and one of words. */
static void expect_fail_at(int line, const char *path, const char *tok, const char *name,
                           const char *words) {
    model *m = (model *)&m;
    int rc = sqlm_model_open(path, tok, &m);
    const char *msg = sqlm_errmsg();
    n_cases++;
    CHECK(rc != SQLM_OK);
    CHECK(m == NULL);
    if (rc == SQLM_OK) {
        fprintf(stderr, "  line %d: %s opened but should not\n", line, path);
        sqlm_model_free(m);
        return;
    }
    bool ok = strstr(msg, name) && has_word(msg, words);
    CHECK(ok);
    if (!ok) fprintf(stderr, "  line %d: want \"%s\" and \"%s\" in: %s\n", line, name, words, msg);
}
#define expect_fail(path, tok, name, words) expect_fail_at(__LINE__, path, tok, name, words)

/* Write b as test_tmpdir()/name and expect failure. */
static void expect_fail_bytes_at(int line, bytes b, const char *name, const char *tok,
                                 const char *words) {
    const char *path = test_tmp_path(name);
    write_file(path, b.p, b.len);
    expect_fail_at(line, path, tok, name, words);
}
#define expect_fail_bytes(b, name, tok, words) expect_fail_bytes_at(__LINE__, b, name, tok, words)

static void put_u32(bytes b, size_t off, uint32_t v) { memcpy(b.p + off, &v, 4); }
static void put_u64(bytes b, size_t off, uint64_t v) { memcpy(b.p + off, &v, 8); }

/* Offset of the first occurrence of n bytes s in b (exit if absent). */
static size_t find(bytes b, const void *s, size_t n) {
    const uint8_t *p = memmem(b.p, b.len, s, n);
    if (!p) {
        fprintf(stderr, "pattern not found in the test model\n");
        exit(2);
    }
    return (size_t)(p - b.p);
}

/* Offset just past a GGUF string (u64 length + bytes) equal to s. */
static size_t gguf_after_str(bytes b, const char *s) {
    uint8_t pat[128];
    uint64_t n = strlen(s);
    memcpy(pat, &n, 8);
    memcpy(pat + 8, s, n);
    return find(b, pat, 8 + n) + 8 + n;
}

/* End of the last tensor's bytes: truncating anywhere before it must fail. */
static size_t data_end(const char *path, const char *tok) {
    model *m;
    size_t end = 0;
    if (sqlm_model_open(path, tok, &m)) {
        fprintf(stderr, "cannot open %s: %s\n", path, sqlm_errmsg());
        exit(2);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const uint8_t *e = (const uint8_t *)m->tensors[i].data + m->tensors[i].nbytes;
        end = MAX(end, (size_t)(e - (const uint8_t *)m->map));
    }
    sqlm_model_free(m);
    return end;
}

/* Truncate b at every length below 512 and at a spread of later points. */
static void truncations(bytes b, size_t end, const char *name, const char *tok) {
    for (size_t n = 0; n < end; n = n < 512 ? n + 1 : n + 4099 + n / 8) {
        bytes t = {b.p, n};
        expect_fail_bytes(t, name, tok, "truncated|past end|size mismatch");
    }
    bytes t = {b.p, end - 1};
    expect_fail_bytes(t, name, tok, "truncated|past end");
}

/* ----------------------------------------------------------------- GGUF */

static void test_gguf(void) {
    bytes orig = read_all(TS_GGUF), b;
    const char *nm = "bad.gguf";
    CHECK(orig.len > 0);
    truncations(orig, data_end(TS_GGUF, NULL), "trunc.gguf", NULL);

    b = copy_of(orig);
    memcpy(b.p, "GGUX", 4);
    expect_fail_bytes(b, nm, NULL, "magic");
    put_u32(b, 0, 0x46554747); /* "GGUF" */
    put_u32(b, 4, 1);
    expect_fail_bytes(b, nm, NULL, "version");
    put_u32(b, 4, 4);
    expect_fail_bytes(b, nm, NULL, "version");
    free(b.p);

    static const struct { size_t off; uint64_t v; const char *words; } hdr[] = {
        {8, 1ull << 62, "n_tensors"},
        {8, 100000, "n_tensors"},
        {8, UINT64_MAX, "n_tensors"},
        {16, 1ull << 62, "n_kv"},
        {16, UINT64_MAX, "n_kv"},
        {16, 1000, "truncated|past end|unknown value type|string length"},
        {24, 1ull << 40, "string length"},   /* the first key's length */
        {24, UINT64_MAX, "string length"},
        {24, 0, "missing key|unknown value type|string length|array"},
    };
    for (size_t i = 0; i < ARRAY_LEN(hdr); i++) {
        b = copy_of(orig);
        put_u64(b, hdr[i].off, hdr[i].v);
        expect_fail_bytes(b, nm, NULL, hdr[i].words);
        free(b.p);
    }

    /* Metadata values. */
    size_t model_str = gguf_after_str(orig, "tokenizer.ggml.model") + 4;    /* past type */
    size_t tokens = gguf_after_str(orig, "tokenizer.ggml.tokens");          /* type, et, count */
    size_t heads = gguf_after_str(orig, "llama.attention.head_count");      /* type, u32 */
    size_t emb = gguf_after_str(orig, "llama.embedding_length");
    size_t bos = gguf_after_str(orig, "tokenizer.ggml.bos_token_id");
    size_t arch = gguf_after_str(orig, "general.architecture") + 4;
    static const struct { int which; size_t add; int size; uint64_t v; const char *words; } kv[] = {
        {0, 0, 8, 1ull << 40, "string length"},
        {0, 0, 8, UINT64_MAX - 3, "string length"},
        {1, 8, 8, 1ull << 61, "array count"},
        {1, 8, 8, UINT64_MAX, "array count"},
        {1, 8, 8, 1 << 20, "array count"},
        {1, 4, 4, 99, "array element type"},
        {1, 4, 4, 9, "array element type|nested"},
        {1, 0, 4, 99, "unknown value type"},
        {2, 4, 4, 0, "head_count"},
        {2, 4, 4, 7, "divide|rotary"},
        {2, 4, 4, 0xffffffffu, "head_count"},
        {3, 4, 4, 0xffffffffu, "embedding_length"},
        {3, 4, 4, 0, "embedding_length"},
        {3, 0, 4, 8, "embedding_length"},      /* type string: reads a garbage length */
        {3, 4, 4, 129, "shape|head_dim|odd"},
        {4, 4, 4, 5000, "bos"},
        {5, 0, 8, 1ull << 50, "string length"},
        {5, 8, 1, 'x', "architecture"},
    };
    size_t base[] = {model_str, tokens, heads, emb, bos, arch};
    for (size_t i = 0; i < ARRAY_LEN(kv); i++) {
        b = copy_of(orig);
        size_t off = base[kv[i].which] + kv[i].add;
        if (kv[i].size == 8) put_u64(b, off, kv[i].v);
        else if (kv[i].size == 4) put_u32(b, off, (uint32_t)kv[i].v);
        else b.p[off] = (uint8_t)kv[i].v;
        expect_fail_bytes(b, nm, NULL, kv[i].words);
        free(b.p);
    }

    /* Tensor infos: token_embd.weight is 2-D Q8_0: n_dims, ne[0], ne[1], type, offset. */
    size_t ti = gguf_after_str(orig, "token_embd.weight");
    uint64_t offset;
    memcpy(&offset, orig.p + ti + 24, 8);
    static const struct { size_t add; int size; uint64_t v; const char *words; } info[] = {
        {0, 4, 5, "n_dims"},
        {0, 4, 0, "n_dims"},
        {0, 4, 0xffffffffu, "n_dims"},
        {4, 8, 0, "ne[0]"},
        {4, 8, UINT64_MAX, "ne[0]"},
        {12, 8, 1ull << 39, "past end"},
        {12, 8, 1024, "shape"},
        {4, 8, 100, "multiple"},
        {20, 4, 99, "tensor type 99"},
        {20, 4, 16, "tensor type IQ2_XXS (16) is not supported"},   /* named, with the list */
        {20, 4, 23, "supported types: F32, F16, BF16, Q8_0, Q4_0"},   /* IQ4_XS */
        {20, 4, 0xffffffffu, "tensor type"},
        {20, 4, 0, "past end|shape"},          /* F32: 4x the bytes */
        {24, 8, UINT64_MAX - 31, "past end"},
        {24, 8, 1ull << 40, "past end"},
        {24, 8, 1, "misaligned"},
    };
    for (size_t i = 0; i < ARRAY_LEN(info); i++) {
        b = copy_of(orig);
        if (info[i].size == 8) put_u64(b, ti + info[i].add, info[i].v);
        else put_u32(b, ti + info[i].add, (uint32_t)info[i].v);
        expect_fail_bytes(b, nm, NULL, info[i].words);
        free(b.p);
    }
    /* Both ne huge: the byte count overflows. */
    b = copy_of(orig);
    put_u64(b, ti + 4, 1ull << 40);
    put_u64(b, ti + 12, 1ull << 40);
    expect_fail_bytes(b, nm, NULL, "overflow");
    /* Offset exactly at the end of the file. */
    memcpy(b.p, orig.p, orig.len);
    put_u64(b, ti + 24, offset + orig.len);
    expect_fail_bytes(b, nm, NULL, "past end");
    /* A renamed tensor: the validation pass misses it. */
    memcpy(b.p, orig.p, orig.len);
    b.p[ti - 1] = 'X';
    expect_fail_bytes(b, nm, NULL, "missing tensor token_embd.weight");
    free(b.p);
    free(orig.p);
}

/* ----------------------------------------------------------- safetensors */

static bytes st_build(const char *header, const uint8_t *data, size_t n) {
    uint64_t h = strlen(header);
    bytes b = {malloc(8 + h + n), 8 + h + n};
    memcpy(b.p, &h, 8);
    memcpy(b.p + 8, header, h);
    memcpy(b.p + 8 + h, data, n);
    return b;
}

/* header with the first occurrence of from replaced by to, then the data. */
static void st_expect(const char *hdr, const uint8_t *data, size_t n, const char *from,
                      const char *to, const char *words) {
    char *h = malloc(strlen(hdr) + strlen(to) + 1);
    const char *at = strstr(hdr, from);
    if (!at) {
        fprintf(stderr, "pattern %s not in header\n", from);
        exit(2);
    }
    sprintf(h, "%.*s%s%s", (int)(at - hdr), hdr, to, at + strlen(from));
    bytes b = st_build(h, data, n);
    expect_fail_bytes(b, "bad.safetensors", NULL, words);
    free(b.p);
    free(h);
}

static void write_config(const char *dir, const char *cfg, const char *from, const char *to) {
    char path[600];
    char *c = malloc(strlen(cfg) + strlen(to) + 1);
    const char *at = strstr(cfg, from);
    if (!at) {
        fprintf(stderr, "pattern %s not in config.json\n", from);
        exit(2);
    }
    sprintf(c, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, c, strlen(c));
    free(c);
}

static void test_safetensors(void) {
    bytes orig = read_all(TS_DIR "/model.safetensors"), cfg = read_all(TS_DIR "/config.json");
    CHECK(orig.len > 8 && cfg.len > 0);
    char *cfgs = calloc(1, cfg.len + 1);
    memcpy(cfgs, cfg.p, cfg.len);
    write_file(test_tmp_path("config.json"), cfg.p, cfg.len);

    /* Sanity: an unmodified copy (no tokenizer.json beside) opens. */
    write_file(test_tmp_path("good.safetensors"), orig.p, orig.len);
    model *m;
    CHECK_EQ(SQLM_OK, sqlm_model_open(test_tmp_path("good.safetensors"), NULL, &m));
    sqlm_model_free(m);

    truncations(orig, data_end(test_tmp_path("good.safetensors"), NULL), "trunc.safetensors", NULL);

    uint64_t hlen;
    memcpy(&hlen, orig.p, 8);
    char *hdr = calloc(1, hlen + 1);
    memcpy(hdr, orig.p + 8, hlen);
    const uint8_t *data = orig.p + 8 + hlen;
    size_t n = orig.len - 8 - hlen;

    bytes b = copy_of(orig);
    put_u64(b, 0, orig.len - 7);
    expect_fail_bytes(b, "bad.safetensors", NULL, "past end");
    put_u64(b, 0, UINT64_MAX);
    expect_fail_bytes(b, "bad.safetensors", NULL, "past end");
    put_u64(b, 0, 0);
    expect_fail_bytes(b, "bad.safetensors", NULL, "magic");
    put_u64(b, 0, hlen);
    b.p[8] = 'x';
    expect_fail_bytes(b, "bad.safetensors", NULL, "magic");
    free(b.p);

    st_expect(hdr, data, n, "\"dtype\":\"F32\"", "\"dtype\":\"I64\"", "dtype I64");
    st_expect(hdr, data, n, "\"dtype\":\"F32\"", "\"dtype\":7", "dtype");
    st_expect(hdr, data, n, "[0,1048576]", "[0,99999999]", "past end");
    st_expect(hdr, data, n, "[0,1048576]", "[0,18446744073709551615]", "data_offsets|bad JSON");
    st_expect(hdr, data, n, "[0,1048576]", "[1048576,0]", "begin > end");
    st_expect(hdr, data, n, "[0,1048576]", "[-5,1048576]", "data_offsets");
    st_expect(hdr, data, n, "[0,1048576]", "[0]", "data_offsets");
    st_expect(hdr, data, n, "[2048,128]", "[2048,127]", "shape mismatch");
    st_expect(hdr, data, n, "[2048,128]", "[2048,-128]", "shape");
    st_expect(hdr, data, n, "[2048,128]", "[2048,128,1,1,1]", "shape");
    st_expect(hdr, data, n, "[2048,128]", "[4294967296,4294967296]", "shape");
    st_expect(hdr, data, n, "[2048,128]", "[1024,256]", "shape");  /* validation pass */
    st_expect(hdr, data, n, "[2048,128]", "\"x\"", "shape");
    st_expect(hdr, data, n, "{\"dtype\"", "[\"dtype\"", "bad JSON");
    st_expect(hdr, data, n, "\"lm_head.weight\":{", "\"lm_head.weight\":1,\"x\":{",
              "not an object");
    st_expect(hdr, data, n, "\"lm_head.weight\":{",
              "\"model.layers.0.input_layernorm.weight\":{", "bad JSON"); /* a duplicate key */
    st_expect(hdr, data, n, "\"lm_head.weight\":{", "\"lm_head.weighX\":{", "missing tensor");
    st_expect(hdr, data, n, "\"lm_head.weight\":{", "\"model.layers.9.mlp.up_proj.bias\":{",
              "missing tensor");

    /* config.json variants: each in its own folder beside a link to the model. */
    /* name: the file the message must name (S: the weights, C: config.json) */
#define S "model.safetensors"
#define C "config.json"
    static const struct { const char *from, *to, *name, *words; } cv[] = {
        {"\"hidden_size\": 128", "\"hidden_size\": 1e12", C, "hidden_size"},
        {"\"hidden_size\": 128", "\"hidden_size\": -128", C, "hidden_size"},
        {"\"hidden_size\": 128", "\"hidden_size\": \"big\"", C, "hidden_size"},
        {"\"hidden_size\": 128", "\"hidden_size\": 128.5", C, "hidden_size"},
        {"\"hidden_size\": 128", "\"hidden_size\": 256", S, "shape|token_embd"},
        {"\"num_attention_heads\": 8", "\"num_attention_heads\": 0", C, "num_attention_heads"},
        {"\"num_attention_heads\": 8", "\"num_attention_heads\": 3", S, "divide|head_dim|shape"},
        {"\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", S, "divide"},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1e9", C, "num_hidden_layers"},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", S, "missing tensor blk.2"},
        {"\"vocab_size\": 2048", "\"vocab_size\": 4096", S, "shape"},
        {"\"vocab_size\": 2048", "\"vocab_size\": 0", C, "vocab_size"},
        {"\"intermediate_size\": 384", "\"intermediate_size\": 383", S, "shape"},
        {"\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", C, "model_type"},
        {"\"model_type\": \"llama\"", "\"model_type\": 5", C, "model_type"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 0", S, "norm_eps"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e300", C, "rms_norm_eps"},
        {"\"rope_theta\": 10000.0", "\"rope_theta\": -1", S, "rope_theta"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}", C,
         "rope_scaling"},
        {"\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", S, "missing tensor"},
        {"\"attention_bias\": false", "\"attention_bias\": true", S,
         "missing tensor blk.0.attn_q.bias"},
        {"{", "[", C, "bad JSON"},
        {"\"hidden_act\"", "hidden_act", C, "bad JSON"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cv); i++) {
        char dir[256], link[300];
        snprintf(dir, sizeof dir, "%s/cfg%zu", test_tmpdir(), i);
        mkdir(dir, 0700);
        write_config(dir, cfgs, cv[i].from, cv[i].to);
        snprintf(link, sizeof link, "%s/model.safetensors", dir);
        write_file(link, orig.p, orig.len);
        expect_fail_at(__LINE__ * 1000 + (int)i, dir, NULL, cv[i].name, cv[i].words);
    }
#undef S
#undef C
    /* No config.json at all. */
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s/nocfg", test_tmpdir());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, orig.p, orig.len);
    expect_fail(path, NULL, "config.json", "missing config.json");
    /* A folder without model.safetensors. */
    snprintf(dir, sizeof dir, "%s/empty", test_tmpdir());
    mkdir(dir, 0700);
    expect_fail(dir, NULL, "empty", "model.safetensors");

    free(hdr);
    free(cfgs);
    free(cfg.p);
    free(orig.p);
}

/* -------------------------------------------------------------- llama2.c */

static void test_llama2c(void) {
    bytes orig = read_all(STORIES), b;
    const char *nm = "bad.bin";
    CHECK(orig.len > 28);
    truncations(orig, orig.len, "trunc.bin", TOK512);

    b = copy_of(orig);
    b.p = realloc(b.p, orig.len + 4);
    memset(b.p + orig.len, 0, 4);
    b.len = orig.len + 4;
    expect_fail_bytes(b, nm, TOK512, "size mismatch");
    free(b.p);

    static const struct { int field; int32_t v; const char *words; } hv[] = {
        {0, -64, "dim"}, {0, 0, "dim"}, {0, 1 << 30, "dim"}, {0, INT32_MIN, "dim"},
        {0, 128, "truncated|size mismatch"},
        {1, 0, "hidden_dim"}, {1, -1, "hidden_dim"}, {1, 1 << 20, "truncated"},
        {2, 0, "n_layers"}, {2, INT32_MAX, "n_layers"}, {2, 1 << 20, "truncated"},
        {2, 4, "size mismatch"},
        {3, 0, "n_heads"}, {3, 7, "divide"}, {3, -8, "n_heads"}, {3, 64, "odd|divide"},
        {4, 0, "n_kv_heads"}, {4, 3, "divide"}, {4, 16, "divide"},
        {5, 0, "vocab_size"}, {5, -512, "truncated"}, {5, INT32_MIN, "vocab_size"},
        {5, 1 << 20, "truncated"},
        {6, 0, "seq_len"}, {6, -1, "seq_len"}, {6, 1 << 20, "truncated"},
    };
    for (size_t i = 0; i < ARRAY_LEN(hv); i++) {
        b = copy_of(orig);
        put_u32(b, 4 * (size_t)hv[i].field, (uint32_t)hv[i].v);
        expect_fail_bytes_at(__LINE__ * 1000 + (int)i, b, nm, TOK512, hv[i].words);
        free(b.p);
    }
    /* The versioned export's magic. */
    b = copy_of(orig);
    memcpy(b.p, "ak42", 4);
    expect_fail_bytes(b, nm, TOK512, "ak42");
    free(b.p);
    /* No tokenizer beside the checkpoint: the error names the paths tried. */
    write_file(test_tmp_path("notok.bin"), orig.p, orig.len);
    expect_fail(test_tmp_path("notok.bin"), NULL, "tok512.bin", "tokenizer.bin");
    free(orig.p);
}

/* ------------------------------------------------------- random damage */

/*
 * Flip random bytes in the first span bytes of each model: the reader may
 * accept the file (a flipped weight is still a valid file) or reject it, but
 * it must never crash or touch memory outside the mapping (ASan watches).
 */
static void test_random(void) {
    static const struct { const char *src, *name, *tok; size_t span; } f[] = {
        {TS_GGUF, "rand.gguf", NULL, 4096},
        {TS_GGUF, "rand.gguf", NULL, 96 * 1024}, /* the vocabulary and tensor infos */
        {TS_DIR "/model.safetensors", "rand.safetensors", NULL, 3000},
        {STORIES, "rand.bin", TOK512, 28},
    };
    uint32_t seed = 12345;
    int accepted = 0, rejected = 0;
    for (size_t k = 0; k < ARRAY_LEN(f); k++) {
        bytes orig = read_all(f[k].src);
        for (int round = 0; round < 150; round++) {
            bytes b = copy_of(orig);
            int flips = 1 + round % 4;
            for (int i = 0; i < flips; i++) {
                seed = seed * 1664525u + 1013904223u;
                size_t off = (seed >> 8) % MIN(f[k].span, b.len);
                seed = seed * 1664525u + 1013904223u;
                b.p[off] ^= (uint8_t)(1u << ((seed >> 16) % 8));
            }
            write_file(test_tmp_path(f[k].name), b.p, b.len);
            model *m;
            if (sqlm_model_open(test_tmp_path(f[k].name), f[k].tok, &m) == SQLM_OK) {
                accepted++;
                sqlm_model_free(m);
            } else {
                rejected++;
                CHECK(strstr(sqlm_errmsg(), f[k].name) != NULL);
            }
            free(b.p);
        }
        free(orig.p);
    }
    fprintf(stderr, "random damage: %d accepted, %d rejected\n", accepted, rejected);
}

/* ------------------------------------------------------ model databases */

/* A copy of the database at src, as name, changed by the SQL statement sql
 * (with blob bound to ?1 when given); returns its path. */
static const char *db_case(const char *src, const char *name, const char *sql, const void *blob, int n) {
    bytes b = read_all(src);
    const char *path = test_tmp_path(name);
    write_file(path, b.p, b.len);
    free(b.p);
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    CHECK_EQ(SQLITE_OK, sqlite3_open(path, &db));
    CHECK_EQ(SQLITE_OK, sqlite3_prepare_v2(db, sql, -1, &st, NULL));
    if (blob) sqlite3_bind_blob(st, 1, blob, n, SQLITE_TRANSIENT);
    CHECK_EQ(SQLITE_DONE, sqlite3_step(st));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return path;
}

/* Opening the database made from src by sql must fail, naming the file and
 * one of words. */
static void db_expect_fail_at(int line, const char *src, const char *name, const char *sql, const char *words) {
    const char *path = db_case(src, name, sql, NULL, 0);
    modeldb d;
    engine_opts eo = { .readonly = true, .threads = 1 };
    int rc = sqlm_modeldb_open(&d, path, "sqlite", &eo);
    n_cases++;
    CHECK(rc != SQLM_OK);
    if (rc == SQLM_OK) {
        fprintf(stderr, "  line %d: %s opened but should not\n", line, name);
        sqlm_modeldb_close(&d);
        return;
    }
    bool ok = strstr(sqlm_errmsg(), name) && has_word(sqlm_errmsg(), words);
    CHECK(ok);
    if (!ok) fprintf(stderr, "  line %d: want \"%s\" and \"%s\" in: %s\n", line, name, words, sqlm_errmsg());
}
#define db_expect_fail(src, name, sql, words) db_expect_fail_at(__LINE__, src, name, sql, words)

/*
 * A model database is as hostile as a model file: special ids outside the
 * vocabulary, config values that do not fit their type, shapes the file
 * cannot hold, no weights at all; each must be refused on open, naming
 * the table or field.  A NaN norm weight is a valid file: generation must
 * still not crash (its activations quantize without an undefined cast).
 */
static void test_modeldb(void) {
    char src[4096];   /* test_tmp_path's buffer is reused */
    snprintf(src, sizeof src, "%s", test_tmp_path("ok.db"));
    import_opts io = { .wtype = -1, .engine = "sqlite" };
    if (!FIXTURE(TS_GGUF)) return;
    int rc = sqlm_import_file(TS_GGUF, src, &io);
    CHECK_EQ(SQLM_OK, rc);
    if (rc) {
        fprintf(stderr, "import: %s\n", sqlm_errmsg());
        return;
    }
    db_expect_fail(src, "bos.db", "UPDATE tokenizer SET value = 99999 WHERE key = 'bos'", "bos");
    db_expect_fail(src, "unk.db", "INSERT OR REPLACE INTO tokenizer VALUES ('unk', -7)", "unk");
    db_expect_fail(src, "nlayer.db", "UPDATE sqlm_meta SET value = 2.65e233 WHERE key = 'n_layer'", "n_layer");
    db_expect_fail(src, "nlayer2.db", "UPDATE sqlm_meta SET value = 2.5 WHERE key = 'n_layer'", "n_layer");
    db_expect_fail(src, "eps.db", "UPDATE sqlm_meta SET value = 'x' WHERE key = 'norm_eps'", "norm_eps");
    db_expect_fail(src, "theta.db", "UPDATE sqlm_meta SET value = 1e300 WHERE key = 'rope_theta'", "rope_theta");
    db_expect_fail(src, "seq1.db", "UPDATE sqlm_meta SET value = -5 WHERE key = 'seq_len'", "seq_len");
    db_expect_fail(src, "seq2.db", "UPDATE sqlm_meta SET value = 2147483647 WHERE key = 'seq_len'", "seq_len");
    db_expect_fail(src, "nout1.db", "UPDATE sqlm_weight SET n_out = 1099511627776 WHERE rowid = 1", "bad layout");
    db_expect_fail(src, "nout2.db", "UPDATE sqlm_weight SET n_out = 9223372036854775807 WHERE rowid = 1",
                   "bad layout");
    db_expect_fail(src, "nout3.db", "UPDATE sqlm_weight SET n_out = 1000000, n_in = 1000000", "bytes of weights");
    db_expect_fail(src, "noweights.db", "DELETE FROM sqlm_weight", "no weights");

    /* NaN norm weights: open, tokenize and generate a few tokens */
    float nan[4096];
    for (size_t i = 0; i < ARRAY_LEN(nan); i++) nan[i] = NAN;
    sqlite3 *db;
    sqlite3_stmt *st;
    int len = 0;
    CHECK_EQ(SQLITE_OK, sqlite3_open(src, &db));
    if (sqlite3_prepare_v2(db, "SELECT length(v) FROM norm LIMIT 1", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        len = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(len > 0 && len <= (int)sizeof nan);
    if (len <= 0 || len > (int)sizeof nan) return;
    const char *path = db_case(src, "nan.db", "UPDATE norm SET v = ?1", nan, len);
    sqlm_model *m;
    sqlm_session *ses;
    CHECK_EQ(SQLM_OK, rc = sqlm_open(path, NULL, &m));
    if (rc) return;
    int32_t *ids = NULL, n = 0;
    CHECK_EQ(SQLM_OK, sqlm_tokenize(m, "Once upon", 9, true, &ids, &n));
    CHECK_EQ(SQLM_OK, rc = sqlm_session_new(m, NULL, &ses));
    if (!rc) {
        sqlm_generate_params gp = sqlm_generate_default_params();
        gp.max_tokens = 4;
        gp.ignore_eos = true;
        sqlm_generate_result res;
        CHECK_EQ(SQLM_OK, sqlm_generate(ses, ids, n, &gp, NULL, NULL, &res));
        sqlm_session_free(ses);
    }
    sqlm_free(ids);
    sqlm_close(m);
}

int main(void) {
    test_modeldb();
    test_gguf();
    test_safetensors();
    test_llama2c();
    test_random();
    fprintf(stderr, "%d corrupted files rejected\n", n_cases);
    return TEST_DONE();
}
