/*
 * test-tokenizer.c - the tokenizers against the goldens of independent
 * implementations (../shared/golden/tokenizer_*.jsonl): for every line, ids,
 * ids_with_special and the decoded text must match (ids_alt is accepted where
 * the golden marks a disputed case).  Also: a vocab copied field by field (as
 * the model database stores it) must encode identically, hostile inputs must
 * finish quickly, and bad tokenizer files must fail with a clear message.
 * The hand-written split patterns are checked against the splits of Python's
 * `regex` module (tests/data/pretok_cases.jsonl, tools/gen_pretok_cases.py),
 * and NFC against unicodedata.
 *
 * Run from the repository root.  `test-tokenizer --bench [MB [text-file]]`
 * measures encoding throughput instead (on generated English-like prose, or
 * on the given file repeated to MB megabytes).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the tokenizer itself, to reach its static pre-tokenizers */
#include "../../src/tok/tokenizer.c"
#include "../test.h"


enum { SRC_LLAMA2C, SRC_JSON, SRC_SPM_MODEL };

static const struct tok_case {
    const char *name;       /* golden file is tokenizer_<name>.jsonl */
    const char *file;       /* tokenizer file */
    int src;
} cases[] = {
    {"Llama-2-spm", MODELS "llama2-tokenizer/tokenizer.model", SRC_SPM_MODEL},
    {"Llama-2-spm", MODELS "llama2-tokenizer/tokenizer.bin", SRC_LLAMA2C},
    {"stories260K-tok512", MODELS "stories260K/tok512.bin", SRC_LLAMA2C},
    {"TinyStories-656K", MODELS "TinyStories-656K/tokenizer.json", SRC_JSON},
    {"SmolLM2-135M", MODELS "SmolLM2-tokenizer/tokenizer.json", SRC_JSON},
    {"Llama-3", MODELS "llama3-tokenizer/tokenizer.json", SRC_JSON},
    {"Qwen3", MODELS "qwen3-tokenizer/tokenizer.json", SRC_JSON},
};

static int load(const struct tok_case *c, vocab *v) {
    if (!FIXTURE(c->file)) return SQLM_IO;
    switch (c->src) {
    case SRC_LLAMA2C: return sqlm_llama2c_read_tokenizer(v, c->file, 0);
    case SRC_JSON: return sqlm_tok_read_json(v, c->file);
    default: return sqlm_tok_read_spm_model(v, c->file);
    }
}

/* A deep copy through the generic fields only, as the model database does. */
static int vocab_copy(vocab *dst, const vocab *src) {
    sqlm_vocab_init(dst);
#define X(name, def) dst->name = src->name;
    VOCAB_INT_FIELDS(X)
#undef X
#define X(name) dst->name = src->name ? strdup(src->name) : NULL;
    VOCAB_STR_FIELDS(X)
#undef X
    int rc = sqlm_vocab_alloc(dst, src->n);
    for (int32_t i = 0; rc == SQLM_OK && i < src->n; i++)
        rc = sqlm_vocab_set_token(dst, i, src->tok[i], src->tok_len[i], src->score[i], src->attr[i]);
    if (rc) return rc;
    dst->merges = calloc(src->n_merges ? (size_t)src->n_merges : 1, sizeof *dst->merges);
    if (!dst->merges) return SQLM_NOMEM;
    dst->n_merges = src->n_merges;
    for (int32_t i = 0; i < src->n_merges; i++) dst->merges[i] = strdup(src->merges[i]);
    return SQLM_OK;
}

static bool ids_equal(const int32_t *got, int32_t n, const json_t *arr) {
    if (!json_is_array(arr) || (size_t)n != json_array_size(arr)) return false;
    for (int32_t i = 0; i < n; i++)
        if (got[i] != (int32_t)json_integer_value(json_array_get(arr, (size_t)i))) return false;
    return true;
}

static void print_ids(const char *label, const int32_t *ids, int32_t n) {
    fprintf(stderr, "    %s:", label);
    for (int32_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Check every line of the golden file against tokenizer t; returns mismatches. */
static int check_golden(const char *label, const char *name, const tokenizer *t,
                        bool verbose) {
    char path[512];
    snprintf(path, sizeof path, GOLDEN "tokenizer_%s.jsonl", name);
    FILE *f = FIXTURE(path) ? fopen(path, "r") : NULL;
    if (!f) return 1;
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, bad_ids = 0, bad_special = 0, bad_dec = 0, alt = 0;
    buf dec;
    sqlm_buf_init(&dec);
    while (getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *r = json_loads(line, 0, &err);
        CHECK(r != NULL);
        if (!r) continue;
        lines++;
        const json_t *jt = json_object_get(r, "text");
        const char *text = json_string_value(jt);
        size_t tlen = json_string_length(jt);
        const json_t *jids = json_object_get(r, "ids"), *jalt = json_object_get(r, "ids_alt");
        const json_t *jws = json_object_get(r, "ids_with_special");
        int32_t *ids = NULL, n = 0, *ws = NULL, nws = 0;
        int rc = sqlm_tok_encode(t, text, tlen, false, &ids, &n);
        CHECK_EQ(SQLM_OK, rc);
        rc = sqlm_tok_encode(t, text, tlen, true, &ws, &nws);
        CHECK_EQ(SQLM_OK, rc);
        bool ok = ids_equal(ids, n, jids);
        bool ok_alt = !ok && jalt && ids_equal(ids, n, jalt);
        if (ok_alt) alt++;
        CHECK(ok || ok_alt);
        if (!ok && !ok_alt) {
            bad_ids++;
            if (verbose) {
                fprintf(stderr, "  %s: ids differ for %s\n", label, json_dumps(jt, JSON_ENCODE_ANY));
                print_ids("got", ids, n);
            }
        }
        /* with specials: the golden's extra ids around ids (BOS/EOS) + ours */
        size_t nj = json_array_size(jids), nw = json_array_size(jws);
        bool ok_ws = ids_equal(ws, nws, jws);
        if (!ok_ws && ok_alt && nw >= nj && (size_t)nws == nw - nj + (size_t)n) {
            ok_ws = true;   /* the same specials around the accepted ids_alt */
            for (size_t i = 0; i < nw - nj; i++)
                if (ws[i] != (int32_t)json_integer_value(json_array_get(jws, i))) ok_ws = false;
        }
        CHECK(ok_ws);
        if (!ok_ws) {
            bad_special++;
            if (verbose) {
                fprintf(stderr, "  %s: ids_with_special differ for %s\n", label,
                        json_dumps(jt, JSON_ENCODE_ANY));
                print_ids("got", ws, nws);
            }
        }
        /* decode the golden ids, token by token */
        sqlm_buf_reset(&dec);
        int32_t prev = -1;
        for (size_t i = 0; i < nj; i++) {
            int32_t id = (int32_t)json_integer_value(json_array_get(jids, i));
            CHECK_EQ(SQLM_OK, sqlm_tok_decode(t, prev, id, &dec));
            prev = id;
        }
        const json_t *jd = json_object_get(r, "decoded");
        bool ok_dec = json_string_length(jd) == dec.len &&
                      memcmp(json_string_value(jd), dec.p ? dec.p : "", dec.len) == 0;
        CHECK(ok_dec);
        if (!ok_dec) {
            bad_dec++;
            if (verbose)
                fprintf(stderr, "  %s: decoded \"%s\", expected %s\n", label, dec.p ? dec.p : "",
                        json_dumps(jd, JSON_ENCODE_ANY));
        }
        free(ids);
        free(ws);
        json_decref(r);
    }
    free(line);
    fclose(f);
    sqlm_buf_free(&dec);
    CHECK(lines > 0);   /* an empty golden checks nothing */
    printf("%-46s %3d lines: ids %3d ok, with_special %3d ok, decoded %3d ok%s\n", label,
           lines, lines - bad_ids, lines - bad_special, lines - bad_dec,
           alt ? " (ids_alt accepted)" : "");
    return bad_ids + bad_special + bad_dec;
}

/* After sqlm_tok_drop_encoder: encoding fails with a message, decoding gives
 * what it gave before. */
static void check_dropped(tokenizer *t) {
    const char *text = "Hello world, once upon a time: 42!";
    int32_t *ids, n;
    buf before, after;
    sqlm_buf_init(&before), sqlm_buf_init(&after);
    CHECK_EQ(SQLM_OK, sqlm_tok_encode(t, text, strlen(text), false, &ids, &n));
    for (int32_t i = 0; i < n; i++) sqlm_tok_decode(t, i ? ids[i - 1] : -1, ids[i], &before);
    sqlm_tok_drop_encoder(t);
    int32_t *ids2 = NULL, n2 = -1;
    CHECK_EQ(SQLM_ERROR, sqlm_tok_encode(t, text, strlen(text), false, &ids2, &n2));
    CHECK(ids2 == NULL && n2 == 0 && strstr(sqlm_errmsg(), "encoder released"));
    for (int32_t i = 0; i < n; i++) CHECK_EQ(SQLM_OK, sqlm_tok_decode(t, i ? ids[i - 1] : -1, ids[i], &after));
    CHECK(before.len > 0 && before.len == after.len && memcmp(before.p, after.p, before.len) == 0);
    free(ids);
    sqlm_buf_free(&before), sqlm_buf_free(&after);
}

/* Hostile inputs: must return quickly, and the text must round-trip where the
 * vocabulary can represent every byte. */
static void check_hostile(const char *label, const tokenizer *t, const vocab *v) {
    int32_t *ids = NULL, n = 0;
    CHECK_EQ(SQLM_OK, sqlm_tok_encode(t, "", 0, false, &ids, &n));
    CHECK_EQ(0, n);
    free(ids);

    static const char bad[] = "a\x80\xff\xc3(\xe2\x82 \xf0\x9f\x98 z\xed\xa0\x80\xc0\xaf";
    CHECK_EQ(SQLM_OK, sqlm_tok_encode(t, bad, sizeof bad - 1, true, &ids, &n));
    CHECK(n > 0);
    for (int32_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < v->n);
    free(ids);
    /* Where every byte has a token (SmolLM2 has none for C0, C1, F5..FF),
     * decoding gives back the exact bytes. */
    bool all_bytes = v->type == VOCAB_BPE || v->byte_fallback;
    for (int k = 0; k < 256; k++) all_bytes = all_bytes && t->byte_id[k] >= 0;
    if (all_bytes) {
        buf b;
        sqlm_buf_init(&b);
        CHECK_EQ(SQLM_OK, sqlm_tok_encode(t, bad, sizeof bad - 1, false, &ids, &n));
        for (int32_t i = 0; i < n; i++) sqlm_tok_decode(t, i ? ids[i - 1] : -1, ids[i], &b);
        CHECK(b.len == sizeof bad - 1 && memcmp(b.p, bad, b.len) == 0);
        free(ids);
        sqlm_buf_free(&b);
    }

    static const char *const fill[] = {"a", " ", "\xe4\xbd\xa0", "\x80", "'"};
    size_t big = 1 << 20;
    char *s = malloc(big);
    double worst = 0;
    for (size_t k = 0; k < ARRAY_LEN(fill); k++) {
        size_t fl = strlen(fill[k]), len = big / fl * fl;
        for (size_t i = 0; i < len; i++) s[i] = fill[k][i % fl];
        double t0 = sqlm_now();
        int rc = sqlm_tok_encode(t, s, len, false, &ids, &n);
        double dt = sqlm_now() - t0;
        if (dt > worst) worst = dt;
        CHECK_EQ(SQLM_OK, rc);
        CHECK(n > 0 && (size_t)n <= len + 1);
        CHECK(dt < 5.0);
        free(ids);
    }
    free(s);
    printf("%-46s hostile inputs ok, worst 1 MB case %.2f s\n", label, worst);
}

static void check_bad_files(void) {
    vocab v;
    const char *dir = "build/test-tokenizer-tmp";
    char path[256];
    (void)!system("mkdir -p build/test-tokenizer-tmp");
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    FILE *f = fopen(path, "wb");
    int32_t hdr[3] = {4, 0, 1000};   /* max_len 4, score 0, len 1000 */
    fwrite(hdr, sizeof hdr, 1, f);
    fclose(f);
    CHECK_EQ(SQLM_FORMAT, sqlm_llama2c_read_tokenizer(&v, path, 1));
    CHECK(strstr(sqlm_errmsg(), "bad.bin") != NULL);
    CHECK_EQ(SQLM_IO, sqlm_llama2c_read_tokenizer(&v, "build/no/such/file.bin", 0));
    snprintf(path, sizeof path, "%s/bad.model", dir);
    f = fopen(path, "wb");
    fwrite("\x0a\xff\xff\xff\xff\x0f", 6, 1, f);   /* field 1, length beyond the file */
    fclose(f);
    CHECK_EQ(SQLM_FORMAT, sqlm_tok_read_spm_model(&v, path));
    CHECK(strstr(sqlm_errmsg(), "bad.model") != NULL);
    snprintf(path, sizeof path, "%s/bad.json", dir);
    f = fopen(path, "wb");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2]}}", f);
    fclose(f);
    CHECK(sqlm_tok_read_json(&v, path) != SQLM_OK);
    CHECK(strstr(sqlm_errmsg(), "bad.json") != NULL);
}

/* The prompt_ids of the generation goldens: each reference tokenized the
 * prompt with its own vocabulary (llama.cpp: the GGUF's embedded one, whose
 * scores are all equal and which has no byte pieces). */
static void check_prompts(const char *golden, const char *model_path, const char *tok_path) {
    vocab v;
    model *m = NULL;
    const vocab *pv = &v;
    int rc;
    if (!FIXTURE(golden) || !FIXTURE(tok_path ? tok_path : model_path)) return;
    if (tok_path && strstr(tok_path, ".json")) rc = sqlm_tok_read_json(&v, tok_path);
    else if (tok_path) rc = sqlm_llama2c_read_tokenizer(&v, tok_path, 0);
    else if ((rc = sqlm_model_open(model_path, NULL, &m)) == SQLM_OK) pv = &m->voc;
    CHECK_EQ(SQLM_OK, rc);
    if (rc) { fprintf(stderr, "%s: %s\n", golden, sqlm_errmsg()); return; }
    tokenizer *t = NULL;
    CHECK_EQ(SQLM_OK, sqlm_tok_init(&t, pv));
    FILE *f = fopen(golden, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    int n_ok = 0, n = 0;
    while (t && f && getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        const char *prompt = json_string_value(json_object_get(r, "prompt"));
        CHECK(prompt != NULL);
        if (!prompt) {
            json_decref(r);
            continue;
        }
        int32_t *ids = NULL, nid = 0;
        CHECK_EQ(SQLM_OK, sqlm_tok_encode(t, prompt, strlen(prompt), true, &ids, &nid));
        bool ok = ids_equal(ids, nid, json_object_get(r, "prompt_ids"));
        CHECK(ok);
        if (!ok) {
            fprintf(stderr, "  %s: prompt \"%s\"\n", golden, prompt);
            print_ids("got", ids, nid);
        }
        n_ok += ok;
        n++;
        free(ids);
        json_decref(r);
    }
    free(line);
    if (f) fclose(f);
    CHECK_EQ(5, n);
    printf("%-46s %3d prompts: %d ok\n", strrchr(golden, '/') + 1, n, n_ok);
    sqlm_tok_free(t);
    if (m) sqlm_model_free(m);
    else sqlm_vocab_free(&v);
}

/* The split patterns against an independent regex engine's splits. */
static void check_pretok(void) {
    FILE *f = FIXTURE(TESTS_DIR "data/pretok_cases.jsonl") ? fopen(TESTS_DIR "data/pretok_cases.jsonl", "r") : NULL;
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        const json_t *jt = json_object_get(r, "text"), *sp = json_object_get(r, "splits");
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt), seg = 0, k = 0;
        int pre = pre_from_name(json_string_value(json_object_get(r, "pre")));
        bool ok = pre >= 0;
        for (size_t i = 0; ok && i < len; k++) {
            size_t e = pretok_next(pre, text, len, i, &seg);
            const json_t *want = json_array_get(sp, k);
            ok = e > i && want && json_string_length(want) == e - i &&
                 memcmp(json_string_value(want), text + i, e - i) == 0;
            i = e;
        }
        ok = ok && k == json_array_size(sp);
        CHECK(ok);
        if (!ok && bad++ < 5) fprintf(stderr, "  pre-tokenizer differs: %s", line);
        n++;
        json_decref(r);
    }
    free(line);
    fclose(f);
    CHECK(n > 0);
    printf("%-46s %d strings: %d ok\n", "pre-tokenizer splits vs Python regex", n, n - bad);
}

/* NFC of a few hard cases (expected values from Python's unicodedata). */
static void check_nfc(void) {
    static const char *const cases[][2] = {
        {"cafe\xcc\x81", "caf\xc3\xa9"},                            /* e + acute */
        {"\xe1\xb8\x8b\xcc\xa3", "\xe1\xb8\x8d\xcc\x87"},              /* reordering */
        {"\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", "\xed\x95\x9c"},       /* Hangul L V T */
        {"\xe2\x84\xab", "\xc3\x85"},                               /* Angstrom sign */
        {"a\xcc\x8a\xcc\x81", "\xc7\xbb"},                            /* a ring acute */
        {"\xe0\xa4\x95\xe0\xa4\xbc", "\xe0\xa4\x95\xe0\xa4\xbc"},       /* exclusion */
        {"x\xff\xcc\x81y", "x\xff\xcc\x81y"},                         /* invalid byte */
        {"plain ascii", "plain ascii"},
    };
    buf b;
    sqlm_buf_init(&b);
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        sqlm_buf_reset(&b);
        sqlm_tok_nfc(cases[k][0], strlen(cases[k][0]), &b);
        CHECK_STR(cases[k][1], b.p);
    }
    /* random strings (tools/gen_pretok_cases.py --nfc) */
    FILE *f = FIXTURE(TESTS_DIR "data/nfc_cases.jsonl") ? fopen(TESTS_DIR "data/nfc_cases.jsonl", "r") : NULL;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, bad = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        const json_t *jt = json_object_get(r, "text"), *jn = json_object_get(r, "nfc");
        sqlm_buf_reset(&b);
        sqlm_tok_nfc(json_string_value(jt), json_string_length(jt), &b);
        bool ok = b.len == json_string_length(jn) && memcmp(b.p, json_string_value(jn), b.len) == 0;
        CHECK(ok);
        if (!ok && bad++ < 5) fprintf(stderr, "  NFC differs: %s", line);
        n++;
        json_decref(r);
    }
    free(line);
    if (f) fclose(f);
    CHECK(n > 0);
    printf("%-46s %d strings: %d ok\n", "NFC vs Python unicodedata", n, n - bad);
    sqlm_buf_free(&b);
}

static int bench(double mb, const char *file) {
    /* English prose: the English lines of the corpus, shuffled into 1 KB
     * paragraphs, repeated to the requested size. */
    static const char *const words[] = {
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Once", "upon",
        "a", "time,", "there", "was", "little", "girl", "named", "Lily.", "She", "loved",
        "to", "play", "outside", "in", "park", "with", "her", "friends.", "Tom", "and",
        "went", "swings.", "I", "like", "apples,", "bananas,", "cherries.", "What", "is",
        "your", "name?", "This", "test.", "don't", "won't", "they're", "1984", "people",
        "government", "information", "understanding", "extraordinary", "(see", "below)",
        "e.g.", "world!", "\n\n", "tokenization", "benchmark", "throughput", "SQL",
    };
    size_t len = (size_t)(mb * 1e6);
    char *s = malloc(len + 64);
    size_t n = 0;
    uint64_t x = 88172645463325252ull;
    FILE *tf = file ? fopen(file, "rb") : NULL;
    size_t got = tf ? fread(s, 1, len, tf) : 0;
    if (tf) fclose(tf);
    if (got > 0) {   /* a real text, repeated to the requested size */
        for (n = got; n < len; n += MIN(got, len - n)) memcpy(s + n, s, MIN(got, len - n));
        printf("text: %s (%zu bytes) repeated to %zu bytes\n", file, got, n);
    }
    while (n < len) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        const char *w = words[x % ARRAY_LEN(words)];
        size_t wl = strlen(w);
        memcpy(s + n, w, wl);
        n += wl;
        s[n++] = ' ';
    }
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        vocab v;
        tokenizer *t;
        if (load(&cases[k], &v) || sqlm_tok_init(&t, &v)) {
            fprintf(stderr, "%s: %s\n", cases[k].file, sqlm_errmsg());
            continue;
        }
        int32_t *ids, nid;
        double t0 = sqlm_now();
        sqlm_tok_encode(t, s, n, false, &ids, &nid);
        double dt = sqlm_now() - t0;
        printf("%-20s %-8s %6.1f MB/s  (%zu bytes -> %d tokens in %.3f s)\n", cases[k].name,
               v.type == VOCAB_BPE ? "bpe" : "spm", n / dt / 1e6, n, nid, dt);
        free(ids);
        sqlm_tok_free(t);
        sqlm_vocab_free(&v);
    }
    free(s);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench(argc > 2 ? atof(argv[2]) : 8, argc > 3 ? argv[3] : NULL);
    bool verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        const struct tok_case *c = &cases[k];
        char label[160];
        snprintf(label, sizeof label, "%s (%s)", c->name, strrchr(c->file, '/') + 1);
        vocab v, copy;
        tokenizer *t = NULL, *t2 = NULL;
        double t0 = sqlm_now();
        int rc = load(c, &v);
        CHECK_EQ(SQLM_OK, rc);
        if (rc) {
            fprintf(stderr, "%s: %s\n", label, sqlm_errmsg());
            continue;
        }
        rc = sqlm_tok_init(&t, &v);
        CHECK_EQ(SQLM_OK, rc);
        if (rc) {
            fprintf(stderr, "%s: %s\n", label, sqlm_errmsg());
            sqlm_vocab_free(&v);
            continue;
        }
        double dt = sqlm_now() - t0;
        check_golden(label, c->name, t, verbose);
        /* the same vocabulary as the database stores it */
        CHECK_EQ(SQLM_OK, vocab_copy(&copy, &v));
        CHECK_EQ(SQLM_OK, sqlm_tok_init(&t2, &copy));
        if (t2) {
            snprintf(label, sizeof label, "%s (copied vocab)", c->name);
            check_golden(label, c->name, t2, verbose);
            check_dropped(t2);
        }
        snprintf(label, sizeof label, "%s (%s)", c->name, strrchr(c->file, '/') + 1);
        check_hostile(label, t, &v);
        printf("%-46s loaded in %.3f s (%d tokens, %d merges)\n", label, dt, v.n, v.n_merges);
        sqlm_tok_free(t);
        sqlm_tok_free(t2);
        sqlm_vocab_free(&v);
        sqlm_vocab_free(&copy);
    }
    check_prompts(GOLDEN "generation_stories260K.jsonl", NULL, MODELS "stories260K/tok512.bin");
    check_prompts(GOLDEN "generation_TinyStories-656K-F32.jsonl", NULL,
                  MODELS "TinyStories-656K/tokenizer.json");
    check_prompts(GOLDEN "generation_TinyStories-656K-Q8_0.jsonl",
                  MODELS "TinyStories-656K-GGUF/TinyStories-656K-Q8_0.gguf", NULL);
    check_pretok();
    check_nfc();
    check_bad_files();
    return TEST_DONE();
}
