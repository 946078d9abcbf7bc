/*
 * test-template.c - chat templates (chat/jinja.c, chat/chat.c).
 *
 * The real Llama-3 and Qwen3 templates against expected prompts derived by
 * reading the templates (and cross-checked once against Python Jinja2), the
 * built-in styles, style guessing, a table of Jinja features, hostile
 * templates that must fail cleanly within the limits, and a replay of the
 * fuzz corpus.  Run from the repository root.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/run/run.h"
#include "../../src/chat/chat.h"
#include "../../src/kern/kern.h"
#include "../../src/db/sqlite/tiles.h"
#include "../../src/db/sqlite/wcache.h"
#include "../test.h"
#include "../fuzz/fuzz-template.c"

#define LLAMA3_CONFIG MODELS "llama3-tokenizer/tokenizer_config.json"
#define QWEN3_CONFIG  MODELS "qwen3-tokenizer/tokenizer_config.json"
#define CORPUS_DIR    TESTS_DIR "fuzz/corpus-template"

/* system + user + assistant + user; the first user turn has stray whitespace. */
static const chat_msg conv[] = {
    { "system", "You are a helpful assistant." },
    { "user", "  Hello!\n" },
    { "assistant", "Hi there! How can I help?" },
    { "user", "What is 2+2?" },
};

static int last_rc;

/* Render and return a malloc'd copy of the text, or NULL on error (last_rc says why). */
static char *render_vars(const char *tmpl, size_t len, const chat_vars *v, const jinja_limits *lim) {
    buf b;
    sqlm_buf_init(&b);
    last_rc = sqlm_jinja_render(tmpl, len, v, lim, &b);
    if (last_rc) {
        sqlm_buf_free(&b);
        return NULL;
    }
    char *s = sqlm_strdup(b.p ? b.p : "");
    sqlm_buf_free(&b);
    return s;
}

static char *render(const char *tmpl, const chat_msg *m, int n, bool agp, const char *bos, const char *eos) {
    chat_vars v = { .msgs = m, .n_msgs = n, .add_generation_prompt = agp, .bos_token = bos, .eos_token = eos };
    return render_vars(tmpl, strlen(tmpl), &v, NULL);
}

#define CHECK_RENDER(exp, tmpl, m, n, agp, bos, eos)                        \
    do {                                                                    \
        char *got_ = render(tmpl, m, n, agp, bos, eos);                     \
        if (!got_) fprintf(stderr, "  error: %s\n", sqlm_errmsg());         \
        CHECK_STR(exp, got_);                                               \
        free(got_);                                                         \
    } while (0)

/* The template must fail with rc and a message containing what. */
static void expect_error_len(int line, const char *tmpl, size_t len, int rc, const char *what) {
    chat_vars v = { .msgs = conv, .n_msgs = 4, .add_generation_prompt = true };
    char *got = render_vars(tmpl, len, &v, NULL);
    bool ok = !got && last_rc == rc && strstr(sqlm_errmsg(), what);
    if (ok) test_pass++;
    else {
        test_fail++;
        fprintf(stderr, "%s:%d: FAIL: expected rc %d with \"%s\", got rc %d: %s\n", __FILE__, line, rc,
                what, last_rc, got ? got : sqlm_errmsg());
    }
    free(got);
}
#define EXPECT_ERROR(tmpl, rc, what) expect_error_len(__LINE__, tmpl, strlen(tmpl), rc, what)

/* The chat_template string of a tokenizer_config.json (malloc'd); NULL, with
 * a counted failure naming the file, when it is missing or has none. */
static char *load_template(const char *path) {
    if (!FIXTURE(path)) return NULL;
    json_error_t err;
    json_t *root = json_load_file(path, JSON_DECODE_INT_AS_REAL, &err);
    const char *t = root ? json_string_value(json_object_get(root, "chat_template")) : NULL;
    char *s = t ? sqlm_strdup(t) : NULL;
    if (!s) fprintf(stderr, "%s: %s\n", path, root ? "no chat_template string" : err.text);
    CHECK(s != NULL);
    json_decref(root);
    return s;
}

/* "x" repeated n times between prefix and suffix (malloc'd). */
static char *repeat3(const char *prefix, const char *x, int n, const char *mid, const char *y, int m) {
    size_t len = strlen(prefix) + strlen(x) * (size_t)n + strlen(mid) + strlen(y) * (size_t)m + 4;   /* room for a closing "}}" */
    char *s = malloc(len), *p = s;
    p += sprintf(p, "%s", prefix);
    for (int i = 0; i < n; i++) p += sprintf(p, "%s", x);
    p += sprintf(p, "%s", mid);
    for (int i = 0; i < m; i++) p += sprintf(p, "%s", y);
    return s;
}

/* ------------------------------------------------------------- real templates */

static const char llama3_expected[] =
    "<|begin_of_text|>"
    "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHi there! How can I help?<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n";

static const char qwen3_expected[] =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n  Hello!\n<|im_end|>\n"
    "<|im_start|>assistant\nHi there! How can I help?<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n";

static void test_llama3(void) {
    char *t = load_template(LLAMA3_CONFIG);
    if (!t) return;
    /* message['content'] | trim binds before +; BOS only before the first message;
     * this template always appends the assistant header. */
    CHECK_RENDER(llama3_expected, t, conv, 4, true, "<|begin_of_text|>", "<|eot_id|>");
    CHECK_RENDER(llama3_expected, t, conv, 4, false, "<|begin_of_text|>", "<|eot_id|>");
    CHECK_RENDER("<|start_header_id|>assistant<|end_header_id|>\n\n", t, conv, 0, true, "<|begin_of_text|>", "");
    /* The built-in llama3 style matches the real template when a prompt is asked for. */
    CHECK_RENDER(llama3_expected, sqlm_chat_builtin("llama3"), conv, 4, true, "<|begin_of_text|>", "<|eot_id|>");
    free(t);
}

static void test_qwen3(void) {
    char *t = load_template(QWEN3_CONFIG);
    if (!t) return;
    /* tools undefined: system block from messages[0]; last_query_index = 3, so the
     * assistant turn at index 2 is printed plainly without a think block. */
    CHECK_RENDER(qwen3_expected, t, conv, 4, true, NULL, "<|im_end|>");

    /* Without the generation prompt the text simply stops after the last turn. */
    char *no_prompt = sqlm_strdup(qwen3_expected);
    no_prompt[strlen(no_prompt) - strlen("<|im_start|>assistant\n")] = 0;
    CHECK_RENDER(no_prompt, t, conv, 4, false, NULL, "<|im_end|>");
    free(no_prompt);

    /* The last assistant turn keeps its reasoning: split('</think>'), lstrip/rstrip('\n'). */
    static const chat_msg think[] = {
        { "user", "Hi" },
        { "assistant", "<think>\nPonder.\n</think>\n\nHello!" },
    };
    CHECK_RENDER("<|im_start|>user\nHi<|im_end|>\n"
                 "<|im_start|>assistant\n<think>\nPonder.\n</think>\n\nHello!<|im_end|>\n",
                 t, think, 2, false, NULL, NULL);

    /* A tool reply becomes a user turn wrapped in <tool_response>. */
    static const chat_msg tool[] = {
        { "user", "Weather?" },
        { "assistant", "Checking." },
        { "tool", "{\"t\": 20}" },
    };
    CHECK_RENDER("<|im_start|>user\nWeather?<|im_end|>\n"
                 "<|im_start|>assistant\nChecking.<|im_end|>\n"
                 "<|im_start|>user\n<tool_response>\n{\"t\": 20}\n</tool_response><|im_end|>\n"
                 "<|im_start|>assistant\n",
                 t, tool, 3, true, NULL, NULL);

    /* enable_thinking=false adds an empty think block to the prompt. */
    jinja_var ex = { "enable_thinking", JINJA_BOOL, 0, NULL };
    chat_vars v = { .msgs = conv, .n_msgs = 4, .add_generation_prompt = true, .extra = &ex, .n_extra = 1 };
    char *got = render_vars(t, strlen(t), &v, NULL);
    char want[1024];
    snprintf(want, sizeof want, "%s<think>\n\n</think>\n\n", qwen3_expected);
    CHECK_STR(want, got);
    free(got);

    /* messages[0].role with no messages: an undefined value, reported with its place. */
    char *none = render(t, conv, 0, true, NULL, NULL);
    CHECK(!none && last_rc == SQLM_ERROR);
    CHECK(strstr(sqlm_errmsg(), "template: line 13 col 23: undefined value"));
    free(none);
    free(t);
}

/* ------------------------------------------------------------- built-ins */

static void test_builtins(void) {
    CHECK_RENDER("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n  Hello!\n<|im_end|>\n"
                 "<|im_start|>assistant\nHi there! How can I help?<|im_end|>\n"
                 "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                 "<|im_start|>assistant\n",
                 sqlm_chat_builtin("chatml"), conv, 4, true, NULL, NULL);
    CHECK_RENDER("<|im_start|>user\nWhat is 2+2?<|im_end|>\n", sqlm_chat_builtin("chatml"), conv + 3, 1, false, NULL, NULL);
    CHECK_RENDER("<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST]"
                 " Hi there! How can I help? </s><s>[INST] What is 2+2? [/INST]",
                 sqlm_chat_builtin("llama2"), conv, 4, true, "<s>", "</s>");
    CHECK_RENDER("<s>[INST] Hello! [/INST]", sqlm_chat_builtin("llama2"), conv + 1, 1, true, "<s>", "</s>");
    CHECK_RENDER("<|system|>\nYou are a helpful assistant.</s>\n"
                 "<|user|>\n  Hello!\n</s>\n"
                 "<|assistant|>\nHi there! How can I help?</s>\n"
                 "<|user|>\nWhat is 2+2?</s>\n"
                 "<|assistant|>\n",
                 sqlm_chat_builtin("zephyr"), conv, 4, true, "<s>", "</s>");
    CHECK(sqlm_chat_builtin("nope") == NULL);
    CHECK(sqlm_chat_builtin(NULL) == NULL);
}

static bool has_piece_list(void *ctx, const char *piece) {
    for (const char *const *p = ctx; *p; p++)
        if (!strcmp(*p, piece)) return true;
    return false;
}

static void test_guess(void) {
    const char *chatml[] = { "<s>", "<|im_start|>", "<|im_end|>", NULL };
    const char *llama3[] = { "<|begin_of_text|>", "<|start_header_id|>", NULL };
    const char *llama2[] = { "[INST]", NULL };
    const char *zephyr[] = { "<|user|>", "<|assistant|>", NULL };
    const char *spm[] = { "<unk>", "<s>", "</s>", NULL };
    const char *none[] = { "hello", NULL };
    CHECK_STR("chatml", sqlm_chat_guess_style(has_piece_list, chatml, true));
    CHECK_STR("llama3", sqlm_chat_guess_style(has_piece_list, llama3, false));
    CHECK_STR("llama2", sqlm_chat_guess_style(has_piece_list, llama2, false));
    CHECK_STR("zephyr", sqlm_chat_guess_style(has_piece_list, zephyr, true));
    CHECK_STR("llama2", sqlm_chat_guess_style(has_piece_list, spm, true));
    CHECK(sqlm_chat_guess_style(has_piece_list, spm, false) == NULL);
    CHECK(sqlm_chat_guess_style(has_piece_list, none, true) == NULL);

    vocab v;
    sqlm_vocab_init(&v);
    CHECK(sqlm_chat_vocab_template(&v) == NULL);
    CHECK_EQ(SQLM_OK, sqlm_vocab_alloc(&v, 3));
    CHECK_EQ(SQLM_OK, sqlm_vocab_set_token(&v, 0, "a", 1, 0, TOK_NORMAL));
    CHECK_EQ(SQLM_OK, sqlm_vocab_set_token(&v, 1, "<|im_start|>", 12, 0, TOK_CONTROL));
    CHECK_EQ(SQLM_OK, sqlm_vocab_set_token(&v, 2, "<|im_end|>", 10, 0, TOK_CONTROL));
    CHECK(sqlm_chat_vocab_template(&v) == sqlm_chat_builtin("chatml"));
    v.chat_template = sqlm_strdup("{{ 'own' }}");
    CHECK_STR("{{ 'own' }}", sqlm_chat_vocab_template(&v));
    sqlm_vocab_free(&v);
    CHECK(sqlm_chat_vocab_template(NULL) == NULL);
}

/* ------------------------------------------------------------- features */

/* Rendered with conv, add_generation_prompt, bos "<s>", eos "</s>"; expected
 * text as Python Jinja2 with transformers' settings renders it. */
static const struct { const char *tmpl, *want; } features[] = {
    { "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 'a' ~ 1 ~ none }}",
      "7 3 -4 2 1024 a1None" },
    { "{{ [1, 'a', none, true, [2]] }} {{ {'a': 1, \"b'\": 'x'} }} {{ (1, 2) }} {{ 'it\\'s' }}",
      "[1, 'a', None, True, [2]] {'a': 1, \"b'\": 'x'} (1, 2) it's" },
    { "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
      "1043TrueFalse4|2132FalseFalse4|3221FalseFalse4|4310FalseTrue4|" },
    { "{% for m in messages[::-1] %}{{ m.role }},{% endfor %} {% for m in messages[1:3] %}{{ m.role }},{% endfor %} {{ messages[-1].role }}",
      "user,assistant,user,system, user,assistant, user" },
    { "{% for x in 'héllo'[::-2] %}[{{ x }}]{% endfor %} {{ 'héllo'[1:3] }} {{ 'héllo'|length }} {{ 'abc'[-1] }}",
      "[o][l][h] él 5 c" },
    { "{{ '  x  '|trim }}|{{ 'a,b,,c'.split(',') }}|{{ '  a  b c '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'xxhixx'.strip('x') }}|{{ 'hello'.lstrip('he') }}|{{ 'hello'.rstrip('lo') }}",
      "x|['a', 'b', '', 'c']|['a', 'b', 'c']|['a', 'b c']|hi|llo|he" },
    { "{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'b' in 'abc' }} {{ 'z' not in 'abc' }} {{ 1 in [1,2] }} {{ 'a' in {'a':1} }}",
      "True True True True True True" },
    { "{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is string }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 1 is number }} {{ true is boolean }} {{ false is false }} {{ [] is iterable }} {{ {} is mapping }}",
      "False True True True False True True True True True True True True" },
    { "{{ messages|length }} {{ messages|first|tojson }} {{ (messages|last).role }} {{ [1,2,3]|join('-') }} {{ 'abc'|upper }} {{ 'ABC'|lower }} {{ 'hello world'|title }} {{ 'hELLO'|capitalize }}",
      "4 {\"role\": \"system\", \"content\": \"You are a helpful assistant.\"} user 1-2-3 ABC abc Hello World Hello" },
    { "{{ {'a': [1, 'x', none, true], 'b': {'c': \"q\\\"\\n\"}}|tojson }} {{ [1,[2,{}],[]]|tojson(indent=2) }} {{ 'é<>&'|tojson }}",
      "{\"a\": [1, \"x\", null, true], \"b\": {\"c\": \"q\\\"\\n\"}} [\n  1,\n  [\n    2,\n    {}\n  ],\n  []\n] \"é<>&\"" },
    { "{% set ns = namespace(a=1, b='x') %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.b }}",
      "4x" },
    { "{% set x = 1 %}{% for i in range(2) %}{% set x = 5 %}{% endfor %}{{ x }}",
      "1" },
    { "{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Yo') }} {{ greet(name='Z') }}",
      "Hi, Bob! Yo, Al! Hi, Z!" },
    { "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
      "0134" },
    { "{% for i in [] %}x{% else %}empty{% endfor %} {% for i in range(5) if i is odd %}{{ i }}{{ loop.index }}{% endfor %}",
      "empty 1132" },
    { "{{ 'a' if true else 'b' }} {{ 'a' if false else 'b' }} [{{ 'a' if false }}] {{ 1 and 2 }} {{ 0 or 'x' }} {{ not 0 }}",
      "a b [] 2 x True" },
    { "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 1 == 1.__class__ if false else 1 == true }}",
      "True False True True True" },
    { "{%- if true %}\n  a\n  {%- endif %}\n  {% if true %}\n    b\n  {% endif %}\nc {# comment #}\n  {# another #}\nd",
      "  a    b\nc d" },
    { "{% set x %}captured {{ 1 + 1 }}{% endset %}[{{ x }}] {{ x|length }}",
      "[captured 2] 10" },
    { "{{ [3,1,2]|reverse|list }} {{ 'abc'|reverse }} {{ {'a':1,'b':2}|items|list }} {{ {'a':1}.items()|list }} {{ {'a':1}.get('a') }} {{ {'a':1}.get('z', 9) }} {{ {'k':1}.keys()|list }}",
      "[2, 1, 3] cba [('a', 1), ('b', 2)] [('a', 1)] 1 9 ['k']" },
    { "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('|') }} {{ messages|rejectattr('role', 'eq', 'user')|list|length }} {{ [1,0,2]|select|list }} {{ ['a','b']|map('upper')|list }}",
      "  Hello!\n|What is 2+2? 2 [1, 2] ['A', 'B']" },
    { "{{ 'x' * 3 }} {{ [1] * 3 }} {{ [1,2] + [3] }} {{ 'a' + 'b' }} {{ '%d' }} {{ 10 - 3 }} {{ -(3) }}",
      "xxx [1, 1, 1] [1, 2, 3] ab %d 7 -3" },
    { "{{ 'a\\tb\\u00e9\\x41' }} {{ \"a\" 'b' }} {{ '{{ not a tag }}' }}",
      "a\tbéA ab {{ not a tag }}" },
    { "{%- for message in messages %}{%- if loop.first and message.role != 'system' %}X{%- endif %}{{ message.role[0]|upper }}{% endfor %}",
      "SUAU" },
    { "{{ ('a', 'b')|join }} {{ messages[0]['role'] }} {{ messages.0.role }} {{ none|string }} {{ true|string }}",
      "ab system system None True" },
    { "{{ 'aaa'.replace('a', 'b', 2) }} {{ 'ab'.replace('', '-') }} {{ 'abcabc'.find('c') }} {{ 'abcabc'.count('b') }} {{ ', '.join(['x','y']) }}",
      "bba -a-b- 2 2 x, y" },
    { "{% set a, b = [1, 2] %}{{ a }}{{ b }} {% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}",
      "12 x=1;y=2;" },
    { "{{ \"a\\nb\"|tojson }} {{ [none, true, false]|tojson }} {{ 5|tojson }} {{ \"tab\\there\"|tojson }} {{ \"\\x01\"|tojson }}",
      "\"a\\nb\" [null, true, false] 5 \"tab\\there\" \"\\u0001\"" },
    { "{{ '  a  '|trim('a ') }}|{{ 'xay'|trim('xy') }}|{{ 3|abs }}|{{ -3|abs }}|{{ '12'|int + 1 }}|{{ 'zz'|int }}|{{ '-4'|int }}",
      "|a|3|3|13|0|-4" },
    { "{% for a in [[1,2],[3,4]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }};{% endfor %}",
      "11221;13242;" },
    { "{{ 1 if 1 in [1] else 2 }} {{ not 1 in [1] }} {{ not 'a' == 'b' }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }}",
      "1 False True 4 64" },
    { "{% if messages[0].role == 'system' %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ loop_messages|length }}",
      "3" },
    { "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {% endfor %}",
      "->user system>assistant user>user assistant>- " },
    { "{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}",
      "[0, 1, 2] [1, 4, 7] [5, 3, 1] []" },
    { "   {%+ if true %}x{% endif %}\n   {% if true %}y{% endif %}",
      "   xy" },
    { "a\n{%- if true -%}\n   b   \n{%- endif -%}\n   c",
      "abc" },
    { "{{ 'Ab'|lower is lower }} {{ 'AB' is upper }} {{ 'x' is in ['x'] }} {{ 1 is sameas 1 }} {{ none is sameas none }}",
      "True True True True True" },
    { "{{ messages[10] is defined }} {{ messages[0].nope is defined }} {{ {'a':{'b':1}}['a']['b'] }}",
      "False False 1" },
    { "{{ [1,2,3][1:] }} {{ [1,2,3][:-1] }} {{ [1,2,3][::2] }} {{ [1,2,3][5:] }} {{ [1,2,3][-10:] }} {{ [1,2,3][2:0:-1] }} {{ [1,2,3][-1:-10:-1] }}",
      "[2, 3] [1, 2] [1, 3] [] [1, 2, 3] [3, 2] [3, 2, 1]" },
    { "{% set d = {'z': 1, 'a': 2} %}{% for k in d %}{{ k }}{% endfor %} {{ d|length }} {{ d.z }}",
      "za 2 1" },

    /* sqlm-specific: the '-' of {%- strips newlines too; lstrip_blocks after a tag */
    { "a\n  {%- if true %}b{% endif %}\n", "ab" },
    { "", "" },
    { "x\n", "x" },
    { "{{ '}}' }}", "}}" },
};

static void test_features(void) {
    for (size_t i = 0; i < ARRAY_LEN(features); i++) {
        char *got = render(features[i].tmpl, conv, 4, true, "<s>", "</s>");
        if (!got || strcmp(got, features[i].want))
            fprintf(stderr, "  feature %zu: %s\n", i, got ? "wrong text" : sqlm_errmsg());
        CHECK_STR(features[i].want, got);
        free(got);
    }
    /* A failed render leaves the buffer as it was. */
    buf b;
    sqlm_buf_init(&b);
    sqlm_buf_puts(&b, "keep");
    chat_vars v = { .msgs = conv, .n_msgs = 4 };
    const char *t = "{{ 'partial output' }}{{ nope.x }}";
    CHECK_EQ(SQLM_ERROR, sqlm_jinja_render(t, strlen(t), &v, NULL, &b));
    CHECK_STR("keep", b.p);
    CHECK_EQ(4, b.len);
    t = "{{ 'more' }}";
    CHECK_EQ(SQLM_OK, sqlm_jinja_render(t, strlen(t), &v, NULL, &b));
    CHECK_STR("keepmore", b.p);
    sqlm_buf_free(&b);
    /* Embedded NUL bytes: kept in text, rejected inside a tag. */
    char nul[] = "a\0b{{ 1 }}";
    v.msgs = NULL;
    v.n_msgs = 0;
    sqlm_buf_init(&b);
    CHECK_EQ(SQLM_OK, sqlm_jinja_render(nul, sizeof nul - 1, &v, NULL, &b));
    CHECK(b.len == 4 && !memcmp(b.p, "a\0b1", 4));
    sqlm_buf_free(&b);
    char nul2[] = "{{ 1 \0 }}";
    expect_error_len(__LINE__, nul2, sizeof nul2 - 1, SQLM_FORMAT, "unexpected character 0x00");
    /* A none content prints as None and tests as none. */
    static const chat_msg null_content[] = { { "user", NULL } };
    CHECK_RENDER("None", "{{ messages[0].content ~ '' }}", null_content, 1, false, NULL, NULL);
    CHECK_RENDER("True", "{{ messages[0].content is none }}", null_content, 1, false, NULL, NULL);
}

/* ------------------------------------------------------------- errors and limits */

static void test_errors(void) {
    /* Positions: line and column (bytes, 1-based) of the offending token. */
    EXPECT_ERROR("a\nb\n{{ 1 + * 2 }}", SQLM_FORMAT, "template: line 3 col 8: expected an expression, got '*'");
    EXPECT_ERROR("\n\n{{ 'a' | foo }}", SQLM_FORMAT, "template: line 3 col 10: unknown filter 'foo'");
    EXPECT_ERROR("{{ 1 is frob }}", SQLM_FORMAT, "line 1 col 9: unknown test 'frob'");
    EXPECT_ERROR("{% frob %}", SQLM_FORMAT, "line 1 col 4: unknown tag 'frob'");
    EXPECT_ERROR("{% include 'x' %}", SQLM_UNSUPPORTED, "'include' tags are not supported");
    EXPECT_ERROR("x\n  {% endfor %}", SQLM_FORMAT, "line 2 col 6: unexpected 'endfor'");
    EXPECT_ERROR("{% break %}", SQLM_FORMAT, "'break' outside a for loop");
    EXPECT_ERROR("{% if x %}{% else %}{% elif y %}{% endif %}", SQLM_FORMAT, "unexpected 'elif'");
    EXPECT_ERROR("{% for in x %}{% endfor %}", SQLM_FORMAT, "line 1 col 11: expected 'in', got 'x'");
    EXPECT_ERROR("{% for %}{% endfor %}", SQLM_FORMAT, "line 1 col 8: expected a name, got '%}'");
    EXPECT_ERROR("{% for a b in x %}{% endfor %}", SQLM_FORMAT, "expected 'in', got 'b'");
    EXPECT_ERROR("{% set = 1 %}", SQLM_FORMAT, "expected a name, got '='");
    EXPECT_ERROR("{% set x 1 %}", SQLM_FORMAT, "expected '=', got '1'");
    EXPECT_ERROR("{{ x[1 }}", SQLM_FORMAT, "unterminated tag");
    EXPECT_ERROR("{{ f(a=) }}", SQLM_FORMAT, "expected an expression, got ')'");
    EXPECT_ERROR("{{ 1 2 }}", SQLM_FORMAT, "expected '}}', got '2'");
    EXPECT_ERROR("{{ 1.5 }}", SQLM_FORMAT, "floating point numbers are not supported");
    EXPECT_ERROR("{{ 99999999999999999999 }}", SQLM_FORMAT, "integer literal too large");
    EXPECT_ERROR("{{ '\\x4 }}' }}", SQLM_FORMAT, "bad \\x escape");
    EXPECT_ERROR("{{ a ; b }}", SQLM_FORMAT, "unexpected character ';'");
    /* Unterminated constructs. */
    EXPECT_ERROR("{{ x", SQLM_FORMAT, "line 1 col 1: unterminated tag: missing '}}'");
    EXPECT_ERROR("ok\n{% if x", SQLM_FORMAT, "line 2 col 1: unterminated tag: missing '%}'");
    EXPECT_ERROR("{# note", SQLM_FORMAT, "unterminated comment");
    EXPECT_ERROR("{{ 'abc }}", SQLM_FORMAT, "line 1 col 4: unterminated string literal");
    EXPECT_ERROR("\n {% if true %}yes", SQLM_FORMAT, "line 2 col 5: 'if' is never closed: expected '{% endif %}'");
    EXPECT_ERROR("{% for m in messages %}{% if 1 %}{% endfor %}", SQLM_FORMAT, "unexpected 'endfor'");
    EXPECT_ERROR("{% macro m() %}", SQLM_FORMAT, "expected '{% endmacro %}'");
    EXPECT_ERROR("{% set x %}abc", SQLM_FORMAT, "expected '{% endset %}'");
    /* Runtime errors. */
    CHECK_RENDER("[]", "[{{ nope }}]", conv, 4, true, NULL, NULL);     /* undefined prints as '' */
    EXPECT_ERROR("{{ nope.x }}", SQLM_ERROR, "line 1 col 8: 'nope' is undefined");
    EXPECT_ERROR("{{ nope + 1 }}", SQLM_ERROR, "'nope' is undefined");
    EXPECT_ERROR("{{ nope() }}", SQLM_ERROR, "'nope' is undefined");
    EXPECT_ERROR("{{ messages[9].role }}", SQLM_ERROR, "undefined value");
    EXPECT_ERROR("{{ 1 + 'a' }}", SQLM_ERROR, "unsupported operand types for +: int and str");
    EXPECT_ERROR("{{ 1 // 0 }}", SQLM_ERROR, "division by zero");
    EXPECT_ERROR("{{ 9223372036854775807 + 1 }}", SQLM_ERROR, "integer overflow");
    EXPECT_ERROR("{{ 1 / 2 }}", SQLM_UNSUPPORTED, "use '//'");
    EXPECT_ERROR("{{ 'a' < 1 }}", SQLM_ERROR, "cannot order str and int");
    EXPECT_ERROR("{% for x in 5 %}{% endfor %}", SQLM_ERROR, "int is not iterable");
    EXPECT_ERROR("{% set a, b = [1] %}", SQLM_ERROR, "cannot unpack");
    EXPECT_ERROR("{% set x = 1 %}{% set x.y = 2 %}", SQLM_ERROR, "not a namespace");
    EXPECT_ERROR("{{ 'a'.nomethod() }}", SQLM_ERROR, "str has no method 'nomethod'");
    EXPECT_ERROR("{{ 'a'|join(1, 2, 3) }}", SQLM_ERROR, "too many arguments to join");
    EXPECT_ERROR("{{ 'a'|tojson(bogus=1) }}", SQLM_ERROR, "unexpected keyword argument 'bogus'");
    EXPECT_ERROR("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", SQLM_ERROR, "takes 1 arguments, got 2");
    EXPECT_ERROR("{% macro m(a) %}{% endmacro %}{{ m(b=2) }}", SQLM_ERROR, "has no argument 'b'");
    EXPECT_ERROR("{{ raise_exception('Conversation roles must alternate') }}", SQLM_ERROR,
                 "line 1 col 19: raise_exception: Conversation roles must alternate");
    EXPECT_ERROR("{{ namespace() | tojson }}", SQLM_ERROR, "not JSON serializable");
}

static void test_limits(void) {
    /* 10000 nested blocks, brackets and unary operators: clean errors at depth 64. */
    char *t = repeat3("", "{% if true %}", 10000, "x", "{% endif %}", 10000);
    EXPECT_ERROR(t, SQLM_RANGE, "nesting deeper than 64");
    free(t);
    t = repeat3("{{ ", "(", 10000, "1", ") ", 10000);
    strcat(t, "}}");
    EXPECT_ERROR(t, SQLM_RANGE, "nesting deeper than 64");
    free(t);
    t = repeat3("{{ ", "[", 100000, "", "] ", 100000);
    strcat(t, "}}");
    EXPECT_ERROR(t, SQLM_RANGE, "nesting deeper than 64");
    free(t);
    t = repeat3("{{ ", "not ", 10000, "x", " }}", 1);
    EXPECT_ERROR(t, SQLM_RANGE, "nesting deeper than 64");
    free(t);
    t = repeat3("{{ ", "- ", 10000, "1", " }}", 1);
    EXPECT_ERROR(t, SQLM_RANGE, "nesting deeper than 64");
    free(t);
    t = repeat3("{{ ", "x.", 100000, "y", " }}", 1);     /* a long flat chain parses, then fails at run time */
    EXPECT_ERROR(t, SQLM_RANGE, "nested deeper than 1000");
    free(t);
    t = repeat3("{{ 0", " + 1", 100000, "", " }}", 1);
    EXPECT_ERROR(t, SQLM_RANGE, "nested deeper than 1000");
    free(t);
    /* Loops that would run for ages or build huge values. */
    EXPECT_ERROR("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                 SQLM_RANGE, "template: ");      /* steps or memory, whichever comes first */
    EXPECT_ERROR("{% set r = range(1000) %}{% for i in r %}{% for j in r %}{% for k in r %}"
                 "{% endfor %}{% endfor %}{% endfor %}", SQLM_RANGE, "template ran more than 4000000 steps");
    EXPECT_ERROR("{% for i in range(100000000000) %}{% endfor %}", SQLM_RANGE, "over the step limit");
    EXPECT_ERROR("{% for i in range(-9223372036854775807, 9223372036854775807) %}{% endfor %}", SQLM_RANGE,
                 "over the step limit");
    /* A loop over a list it appends to walks the items it started with. */
    CHECK_RENDER("None", "{% set l = [0] %}{% for x in l %}{{ l.append(x) }}{% endfor %}", conv, 4, true, NULL, NULL);
    EXPECT_ERROR("{% set l = [0] %}{% for i in range(200) %}{% set l = l + l %}{% endfor %}", SQLM_RANGE, "memory limit");
    EXPECT_ERROR("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 SQLM_RANGE, "memory limit");
    EXPECT_ERROR("{{ 'x' * 9223372036854775807 }}", SQLM_RANGE, "repetition too large");
    EXPECT_ERROR("{{ [1] * 9223372036854775807 }}", SQLM_RANGE, "repetition too large");
    EXPECT_ERROR("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", SQLM_RANGE, "output longer than");
    EXPECT_ERROR("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", SQLM_RANGE, "macro calls nested deeper than 64");
    EXPECT_ERROR("{% set x = [] %}{{ x.append(x) }}{{ x|tojson }}", SQLM_RANGE, "nested deeper");
    EXPECT_ERROR("{% set x = [] %}{{ x.append(x) }}{{ x }}", SQLM_RANGE, "nested deeper");
    EXPECT_ERROR("{% set x = [] %}{{ x.append(x) }}{{ x == [x] }}", SQLM_RANGE, "nested deeper");
    /* A template over the size limit is refused before parsing. */
    size_t big = ((size_t)1 << 20) + 1;
    t = malloc(big + 1);
    memset(t, 'a', big);
    t[big] = 0;
    EXPECT_ERROR(t, SQLM_RANGE, "byte limit");
    free(t);
    /* Caller limits. */
    jinja_limits lim = { .max_output = 10 };
    chat_vars v = { 0 };
    const char *s = "{{ 'x' * 11 }}";
    char *got = render_vars(s, strlen(s), &v, &lim);
    CHECK(!got && last_rc == SQLM_RANGE && strstr(sqlm_errmsg(), "output longer than 10 bytes"));
    free(got);
    s = "{{ 'x' * 10 }}";
    got = render_vars(s, strlen(s), &v, &lim);
    CHECK_STR("xxxxxxxxxx", got);
    free(got);
    lim = (jinja_limits){ .max_depth = 3 };
    s = "{{ ((((1)))) }}";
    got = render_vars(s, strlen(s), &v, &lim);
    CHECK(!got && last_rc == SQLM_RANGE && strstr(sqlm_errmsg(), "nesting deeper than 3"));
    free(got);
    lim = (jinja_limits){ .max_steps = 1000 };
    s = "{% for i in range(900) %}{{ i }}{% endfor %}";
    got = render_vars(s, strlen(s), &v, &lim);
    CHECK(!got && last_rc == SQLM_RANGE && strstr(sqlm_errmsg(), "1000 steps"));
    free(got);
}

/* ------------------------------------------------------------- fuzz corpus */

static void test_corpus(void) {
    if (!FIXTURE(CORPUS_DIR)) return;
    DIR *d = opendir(CORPUS_DIR);
    CHECK(d != NULL);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) {
            test_fail++;
            fprintf(stderr, "%s:%d: FAIL: corpus replay: cannot open %s\n", __FILE__, __LINE__, path);
            continue;
        }
        uint8_t data[1 << 16];
        size_t len = fread(data, 1, sizeof data, f);
        fclose(f);
        LLVMFuzzerTestOneInput(data, len);     /* must return: no crash, no hang */
        n++;
    }
    closedir(d);
    fprintf(stderr, "corpus replay: %d files\n", n);
    CHECK(n > 0);
}

int main(void) {
    test_llama3();
    test_qwen3();
    test_builtins();
    test_guess();
    test_features();
    test_errors();
    test_limits();
    test_corpus();
    return TEST_DONE();
}
