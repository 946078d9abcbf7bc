/*
 * fuzz-model.c - libFuzzer harness of one model-file format, chosen when it is
 * built: -DMODELFUZZ_TARGET=MF_GGUF, MF_SAFETENSORS, MF_LLAMA2C or MF_MODELDB
 * (tests/fuzz/run.sh gguf|safetensors|llama2c|modeldb [seconds] builds
 * build/fuzz/fuzz-NAME).  The input format and the checks are in modelfuzz.h,
 * which tests/unit/test-modelfuzz.c shares to replay the kept corpora.
 */
#include "modelfuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (modelfuzz_init() != 0) exit(1);
    atexit(modelfuzz_done);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return modelfuzz_one(MODELFUZZ_TARGET, data, size);
}
