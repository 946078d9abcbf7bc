/*
 * modelfuzz.h - the model-file fuzzers' checks, shared by the libFuzzer
 * harnesses (tests/fuzz/fuzz-model.c, one per format) and their corpus
 * replay (tests/unit/test-modelfuzz.c).
 *
 * A target takes the bytes of an input, writes them as files into a private
 * folder and hands them to sqlm:
 *   gguf         the input is m.gguf: sqlm_model_open
 *   safetensors  u32 n (little endian), n bytes of config.json, u32 n, n
 *                bytes of tokenizer.json, the rest model.safetensors:
 *                sqlm_model_open on the folder's file
 *   llama2c      u32 n, n bytes of tokenizer.bin, the rest model.bin
 *   modeldb      the input is m.db, a model database: sqlm_open (SQLite) and
 *                one decode step
 * A model file must be read or refused with a message.  One that is read is
 * used: every tensor's first and last byte, its vocabulary built into a
 * tokenizer that encodes and decodes a short text, and, when its sizes are
 * small, imported into a database that is opened and decodes a step (the
 * modeldb target's path).  A crash, a sanitizer report or a leak
 * (LeakSanitizer in the fuzzer) is the finding; MODELFUZZ_FAIL reports a
 * broken rule (abort by default).
 * tests/fuzz/seeds.py writes the seed corpora (tests/fuzz/corpus-NAME).
 */
#ifndef SQLM_MODELFUZZ_H
#define SQLM_MODELFUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../include/sqlm.h"
#include "../../src/model/model.h"
#include "../../src/tok/tok.h"

#ifndef MODELFUZZ_FAIL
#define MODELFUZZ_FAIL(msg)                                                     \
    do {                                                                        \
        fprintf(stderr, "modelfuzz: %s\n", msg);                                \
        abort();                                                                \
    } while (0)
#endif

enum { MF_GGUF, MF_SAFETENSORS, MF_LLAMA2C, MF_MODELDB, MF_N };
static const char *const modelfuzz_names[MF_N] = { "gguf", "safetensors", "llama2c", "modeldb" };

static char modelfuzz_dir[64];
static long modelfuzz_n_read, modelfuzz_n_run;   /* models read; databases that decoded a step */

static const char *modelfuzz_path(const char *name) {
    static char p[8][128];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", modelfuzz_dir, name);
    return s;
}

static int modelfuzz_init(void) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(modelfuzz_dir, sizeof modelfuzz_dir, "%s/sqlm-modelfuzz-XXXXXX", base);
    if (!mkdtemp(modelfuzz_dir)) {
        perror("modelfuzz: mkdtemp");
        return -1;
    }
    return 0;
}

static void modelfuzz_clean(void) {
    static const char *const files[] = { "m.gguf", "config.json", "tokenizer.json", "model.safetensors", "tokenizer.bin",
                                         "model.bin", "m.db", "m.db-journal", "out.db", "out.db-journal" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(modelfuzz_path(files[i]));
}

static void modelfuzz_done(void) {
    if (!modelfuzz_dir[0]) return;
    modelfuzz_clean();
    rmdir(modelfuzz_dir);
    modelfuzz_dir[0] = 0;
}

/* A new file (a new inode: a mapping of the old one is never changed). */
static int modelfuzz_write(const char *name, const uint8_t *p, size_t n) {
    const char *path = modelfuzz_path(name);
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return fclose(f) != 0 || w != n ? -1 : 0;
}

/* A refusal must say why. */
static void modelfuzz_refused(int rc) {
    const char *m = sqlm_errmsg();
    if (rc != SQLM_OK && (!m || !m[0] || strcmp(m, "no error") == 0)) MODELFUZZ_FAIL("refused without a message");
}

/* The model database at path: opened by SQLite, one decode step. */
static void modelfuzz_run_db(const char *path) {
    sqlm_model_params mp = sqlm_model_default_params();
    mp.engine = "sqlite";
    mp.threads = 1;
    sqlm_model *m = NULL;
    sqlm_session *s = NULL;
    int32_t *ids = NULL, n = 0;
    sqlm_session_params sp = sqlm_session_default_params();
    sp.n_ctx = 16;
    int rc = sqlm_open(path, &mp, &m);
    if (!rc) rc = sqlm_session_new(m, &sp, &s);
    if (!rc) rc = sqlm_tokenize_prompt(m, "ab a", 4, &ids, &n);
    if (!rc && n > 12) n = 12;
    if (!rc) {
        sqlm_sampling_params sa = sqlm_sampling_default_params();
        sa.temperature = 0;
        sqlm_session_set_sampling(s, &sa);
        sqlm_generate_params gp = sqlm_generate_default_params();
        gp.max_tokens = 2;
        sqlm_token_event ev;
        rc = sqlm_generate_begin(s, ids, n, &gp, NULL);
        if (!rc) rc = sqlm_generate_next(s, &ev);
        if (!rc) rc = sqlm_generate_next(s, &ev);
        if (!rc) modelfuzz_n_run++;
    }
    modelfuzz_refused(rc);
    sqlm_free(ids);
    sqlm_session_free(s);
    sqlm_close(m);
}

/* A model that was read: its tensors, its vocabulary, and (small) imported
 * and run. */
static void modelfuzz_use(model *m, const char *path, const char *tok) {
    volatile uint8_t sink = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const tensor *t = &m->tensors[i];
        if (!t->nbytes) MODELFUZZ_FAIL("a tensor of no bytes");
        sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    (void)sink;
    if (m->voc.n > 0) {
        tokenizer *tk = NULL;
        int rc = sqlm_tok_init(&tk, &m->voc);
        modelfuzz_refused(rc);
        int32_t *ids = NULL, n = 0;
        if (!rc) rc = sqlm_tok_encode(tk, "ab a\xE2\x96\x81 <s>", 11, true, &ids, &n);
        buf out;
        sqlm_buf_init(&out);
        for (int32_t i = 0; !rc && i < n; i++) {
            if (ids[i] < 0 || ids[i] >= m->voc.n) MODELFUZZ_FAIL("an id outside the vocabulary");
            rc = sqlm_tok_decode(tk, i ? ids[i - 1] : -1, ids[i], &out);
        }
        sqlm_buf_free(&out);
        free(ids);
        sqlm_tok_free(tk);
    }
    const model_config *c = &m->cfg;
    if (c->dim > 256 || c->hidden_dim > 1024 || c->n_layer > 4 || c->vocab_size > 4096 || c->seq_len > 4096 ||
        c->n_head > 64)
        return;
    sqlm_import_params ip = sqlm_import_default_params();
    ip.tokenizer = tok;
    int rc = sqlm_import_model(path, modelfuzz_path("out.db"), &ip);
    modelfuzz_refused(rc);
    if (!rc) modelfuzz_run_db(modelfuzz_path("out.db"));
    unlink(modelfuzz_path("out.db"));
}

/* The next file of an input of several: u32 n and n bytes (fewer when the
 * input ends first). */
static void modelfuzz_next(const uint8_t **data, size_t *size, const uint8_t **a, size_t *na) {
    uint32_t n = 0;
    if (*size >= 4) memcpy(&n, *data, 4);
    size_t skip = *size >= 4 ? 4 : *size;
    *data += skip, *size -= skip;
    if (n > *size) n = (uint32_t)*size;
    *a = *data, *na = n;
    *data += n, *size -= n;
}

static int modelfuzz_one(int target, const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t na, nb;
    const char *path = NULL, *tok = NULL;
    sqlm_error(SQLM_OK, "%s", "");
    modelfuzz_clean();
    switch (target) {
    case MF_GGUF:
        if (modelfuzz_write("m.gguf", data, size)) return 0;
        path = modelfuzz_path("m.gguf");
        break;
    case MF_SAFETENSORS:
        modelfuzz_next(&data, &size, &a, &na);
        modelfuzz_next(&data, &size, &b, &nb);
        if (modelfuzz_write("config.json", a, na) || (nb && modelfuzz_write("tokenizer.json", b, nb)) ||
            modelfuzz_write("model.safetensors", data, size))
            return 0;
        path = modelfuzz_path("model.safetensors");
        break;
    case MF_LLAMA2C:
        modelfuzz_next(&data, &size, &a, &na);
        if (modelfuzz_write("tokenizer.bin", a, na) || modelfuzz_write("model.bin", data, size)) return 0;
        path = modelfuzz_path("model.bin");
        tok = modelfuzz_path("tokenizer.bin");
        break;
    default:
        if (modelfuzz_write("m.db", data, size)) return 0;
        modelfuzz_run_db(modelfuzz_path("m.db"));
        return 0;
    }
    model *m = NULL;
    int rc = sqlm_model_open(path, tok, &m);
    modelfuzz_refused(rc);
    if (!rc) {
        modelfuzz_n_read++;
        modelfuzz_use(m, path, tok);
    }
    sqlm_model_free(m);
    return 0;
}

#endif
