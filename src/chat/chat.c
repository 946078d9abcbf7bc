/*
 * chat.c - chat prompts: render a model's chat template (jinja.c) over a
 * conversation, and built-in templates for models that ship none.
 *
 * The built-ins are written for sqlm in the same Jinja subset, so they go
 * through the same renderer and limits.  Guessing a style only looks at
 * which marker tokens the vocabulary has; it does not tokenize anything and
 * does not second-guess a template the model carries.
 */
#include <string.h>

#include "chat.h"

int sqlm_chat_render(const char *tmpl, const chat_msg *msgs, int n_msgs, bool add_generation_prompt,
                const char *bos_token, const char *eos_token, buf *out) {
    if (!tmpl) return sqlm_error(SQLM_ERROR, "template: no template");
    chat_vars v = {
        .msgs = msgs,
        .n_msgs = n_msgs,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = bos_token,
        .eos_token = eos_token,
    };
    return sqlm_jinja_render(tmpl, strlen(tmpl), &v, NULL, out);
}

/* ------------------------------------------------------------- built-ins */

/* <|im_start|>role\ncontent<|im_end|>\n (Qwen, SmolLM, many others). */
static const char chatml[] =
    "{%- for message in messages %}\n"
    "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n";

/*
 * <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ...
 * The system prompt goes into the first user turn; the prompt already ends
 * where the assistant speaks, so add_generation_prompt adds nothing.
 */
static const char llama2[] =
    "{%- set ns = namespace(system='', first=true) %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.role == 'system' %}\n"
    "        {%- set ns.system = message.content | trim %}\n"
    "    {%- elif message.role == 'user' %}\n"
    "        {%- set text = message.content | trim %}\n"
    "        {%- if ns.first and ns.system %}\n"
    "            {%- set text = '<<SYS>>\\n' + ns.system + '\\n<</SYS>>\\n\\n' + text %}\n"
    "        {%- endif %}\n"
    "        {%- set ns.first = false %}\n"
    "        {{- bos_token + '[INST] ' + text + ' [/INST]' }}\n"
    "    {%- elif message.role == 'assistant' %}\n"
    "        {{- ' ' + message.content | trim + ' ' + eos_token }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

/* <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
static const char llama3[] =
    "{{- bos_token }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n";

/* <|role|>\ncontent</s>\n (Zephyr, TinyLlama chat). */
static const char zephyr[] =
    "{%- for message in messages %}\n"
    "    {{- '<|' + message.role + '|>\\n' + message.content + eos_token + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|assistant|>\\n' }}\n"
    "{%- endif %}\n";

static const struct { const char *name, *text; } builtins[] = {
    { "chatml", chatml },
    { "llama2", llama2 },
    { "llama3", llama3 },
    { "zephyr", zephyr },
};

const char *sqlm_chat_builtin(const char *name) {
    for (size_t i = 0; name && i < ARRAY_LEN(builtins); i++)
        if (!strcmp(builtins[i].name, name)) return builtins[i].text;
    return NULL;
}

/* ------------------------------------------------------------- guessing */

const char *sqlm_chat_guess_style(bool (*has_piece)(void *ctx, const char *piece), void *ctx, bool spm) {
    if (has_piece(ctx, "<|im_start|>")) return "chatml";
    if (has_piece(ctx, "<|start_header_id|>")) return "llama3";
    if (has_piece(ctx, "[INST]")) return "llama2";
    if (has_piece(ctx, "<|user|>")) return "zephyr";
    /* Llama-2 chat spells [INST] with ordinary pieces; its SPM vocab has <s>. */
    if (spm && has_piece(ctx, "<s>") && has_piece(ctx, "</s>")) return "llama2";
    return NULL;
}

static bool vocab_has_piece(void *ctx, const char *piece) {
    const vocab *v = ctx;
    size_t len = strlen(piece);
    for (int32_t i = 0; v->tok && i < v->n; i++)
        if (v->tok[i] && v->tok_len[i] == len && !memcmp(v->tok[i], piece, len)) return true;
    return false;
}

const char *sqlm_chat_vocab_template(const vocab *v) {
    if (!v) return NULL;
    if (v->chat_template && v->chat_template[0]) return v->chat_template;
    return sqlm_chat_builtin(sqlm_chat_guess_style(vocab_has_piece, (void *)v, v->type == VOCAB_SPM));
}
