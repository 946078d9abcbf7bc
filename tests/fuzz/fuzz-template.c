/*
 * fuzz-template.c - libFuzzer harness for the chat template renderer.
 *
 * The input is the template; the conversation is fixed (every role, a think
 * block, a tool reply) so the fuzzer explores the language, not the data.
 * Limits are tighter than the defaults to keep runs fast; the renderer must
 * return (any code) without crashing, leaking or hanging.  tests/unit/
 * test-template.c includes this file to replay the corpus as a regression test.
 */
#include <stddef.h>
#include <stdint.h>

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const chat_msg msgs[] = {
        { "system", "You are a helpful assistant." },
        { "user", "Hello!" },
        { "assistant", "<think>\nHmm.\n</think>\n\nHi there!" },
        { "tool", "{\"t\": 20}" },
        { "user", " What is 2+2? " },
    };
    static const jinja_var extra[] = {
        { "enable_thinking", JINJA_BOOL, 0, NULL },
        { "tools", JINJA_NONE, 0, NULL },
    };
    chat_vars v = {
        .msgs = msgs, .n_msgs = 5, .add_generation_prompt = true,
        .bos_token = "<s>", .eos_token = "</s>", .extra = extra, .n_extra = 2,
    };
    jinja_limits lim = { .max_output = 1 << 16, .max_memory = 16 << 20,
                         .max_steps = 200000, .max_depth = 64 };
    buf out;
    sqlm_buf_init(&out);
    sqlm_jinja_render((const char *)data, size, &v, &lim, &out);
    sqlm_buf_free(&out);
    return 0;
}
