/*
 * tokbench.c - tokenizer throughput: encode about 8 MB of English text
 * (the golden TinyStories generations, repeated) with each tokenizer and
 * print MB/s as a table row per tokenizer.  Run from the repository root.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/run/run.h"

static char *english(size_t want, size_t *len) {
    buf b;
    sqlm_buf_init(&b);
    const char *files[] = { "../shared/golden/generation_stories260K.jsonl",
                            "../shared/golden/generation_TinyStories-656K-F32.jsonl" };
    buf one;
    sqlm_buf_init(&one);
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        char *line = NULL;
        size_t cap = 0;
        while (f && getline(&line, &cap, f) > 0) {
            json_t *j = json_loads(line, 0, NULL);
            const char *t = json_string_value(json_object_get(j, "text"));
            if (t) sqlm_buf_puts(&one, t), sqlm_buf_puts(&one, "\n");
            json_decref(j);
        }
        free(line);
        if (f) fclose(f);
    }
    while (b.len < want && one.len) sqlm_buf_append(&b, one.p, one.len);
    sqlm_buf_free(&one);
    *len = b.len;
    return sqlm_buf_detach(&b);
}

int main(void) {
    static const struct { const char *name, *path; } toks[] = {
        { "SmolLM2 (byte-level BPE)", "../shared/models/SmolLM2-tokenizer/tokenizer.json" },
        { "Llama-3 (byte-level BPE)", "../shared/models/llama3-tokenizer/tokenizer.json" },
        { "Qwen3 (byte-level BPE, NFC)", "../shared/models/qwen3-tokenizer/tokenizer.json" },
        { "Llama-2 (SentencePiece)", "../shared/models/llama2-tokenizer/tokenizer.model" },
    };
    size_t len;
    char *text = english(8u << 20, &len);
    printf("| tokenizer | MB | tokens | seconds | MB/s |\n|---|---|---|---|---|\n");
    int rc = 0;
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        vocab v;
        sqlm_vocab_init(&v);
        tokenizer *t = NULL;
        int r = strstr(toks[i].path, ".json") ? sqlm_tok_read_json(&v, toks[i].path)
                                               : sqlm_tok_read_spm_model(&v, toks[i].path);
        if (!r) r = sqlm_tok_init(&t, &v);
        if (r) {
            printf("| %s | error: %s | | | |\n", toks[i].name, sqlm_errmsg());
            rc = 1;
            continue;
        }
        int32_t *ids = NULL, n = 0;
        double t0 = sqlm_now();
        r = sqlm_tok_encode(t, text, len, false, &ids, &n);
        double dt = sqlm_now() - t0;
        printf("| %s | %.1f | %d | %.3f | %.1f |\n", toks[i].name, len / 1e6, n, dt, len / 1e6 / dt);
        free(ids);
        sqlm_tok_free(t);
        sqlm_vocab_free(&v);
    }
    free(text);
    return rc;
}
