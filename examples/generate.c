/*
 * generate.c - the smallest program on libsqlm's public API: open a model
 * database, tokenize a prompt, print the greedy continuation as it comes.
 *
 *   examples/generate MODEL.db "Once upon a time" 64
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlm.h>

/* Each token's text, printed as soon as it is whole. */
static int print_piece(int32_t token, const char *text, size_t len, float logprob, void *ctx) {
    (void)token, (void)logprob, (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;   /* go on */
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.db PROMPT N\n", argv[0]);
        return 1;
    }
    sqlm_model *m = NULL;
    sqlm_session *s = NULL;
    int32_t *ids = NULL, n_ids = 0;
    int rc = sqlm_open(argv[1], NULL, &m);
    if (!rc) rc = sqlm_session_new(m, NULL, &s);
    if (!rc) rc = sqlm_tokenize_prompt(m, argv[2], strlen(argv[2]), &ids, &n_ids);
    if (!rc) {
        sqlm_sampling_params sp = sqlm_sampling_default_params();
        sp.temperature = 0;   /* greedy */
        sqlm_session_set_sampling(s, &sp);
        sqlm_generate_params gp = sqlm_generate_default_params();
        gp.max_tokens = atoi(argv[3]);
        fputs(argv[2], stdout);
        rc = sqlm_generate(s, ids, n_ids, &gp, print_piece, NULL, NULL);
        putchar('\n');
    }
    if (rc) fprintf(stderr, "generate: %s (%s)\n", sqlm_errmsg(), sqlm_errstr(rc));
    sqlm_free(ids);
    sqlm_session_free(s);
    sqlm_close(m);
    return rc ? 1 : 0;
}
