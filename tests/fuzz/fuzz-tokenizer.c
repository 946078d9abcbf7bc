/*
 * fuzz-tokenizer.c - libFuzzer harness for the tokenizers and their file
 * readers; the input format and the checks are in tokfuzz.h, which
 * tests/unit/test-tokfuzz.c shares to replay tests/fuzz/corpus-tokenizer.
 * Build and run with tests/fuzz/run.sh tokenizer [seconds] (from anywhere:
 * it runs in the repository root, where the model paths are relative to).
 */
#include "tokfuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (tokfuzz_init() != 0) {
        fprintf(stderr, "fuzz-tokenizer: run from the repository root (models in ../shared/models)\n");
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return tokfuzz_one(data, size);
}
