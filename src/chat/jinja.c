/*
 * jinja.c - a sandboxed Jinja2 subset for model chat templates
 * (tokenizer_config.json "chat_template" -> prompt text).  Lexer, parser
 * (grammar above it) and a tree walker.  All memory comes from one arena with
 * a byte budget and errors longjmp() back to sqlm_jinja_render(), which frees the
 * arena: nothing leaks.  Output, memory, steps and nesting are bounded.
 * Not here, on purpose: include/extends/import (no file access), floats,
 * autoescape, {% raw %}, {% call %}, recursive loops, Python attribute
 * access, Unicode case mapping and Unicode whitespace (ASCII only).
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define DEF_OUTPUT    ((size_t)1 << 20)
#define DEF_MEMORY    ((size_t)64 << 20)
#define DEF_STEPS     4000000
#define DEF_DEPTH     64
#define EVAL_DEPTH    1000                /* C recursion of the tree walker */
#define MAX_TEMPLATE  ((size_t)1 << 20)
#define CHUNK_SIZE    ((size_t)64 << 10)

typedef struct node node;
typedef struct scope scope;

/* ------------------------------------------------------------- values */

enum vtype { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_DICT, V_NS, V_LOOP, V_MACRO, V_FUNC };

typedef struct value {
    int type;                                  /* enum vtype */
    union {
        int64_t i;                             /* V_BOOL, V_INT, V_FUNC (enum fn) */
        struct { const char *p; size_t n; } s; /* V_STR; V_UNDEF: p = name or NULL */
        struct list *l;
        struct dict *d;                        /* V_DICT, V_NS */
        struct loop *lp;
        struct macro *m;
    };
} value;

typedef struct list { value *v; size_t n, cap; bool tuple; } list;
typedef struct dict { value *k, *v; size_t n, cap; } dict;
typedef struct loop { value *items; size_t n, i; } loop;
typedef struct macro { node *def; scope *closure; } macro;

enum fn { FN_RANGE, FN_NAMESPACE, FN_DICT, FN_RAISE };

typedef struct var { const char *name; value v; struct var *next; } var;
struct scope { var *vars; scope *parent; };

/* ------------------------------------------------------------- tokens, AST */

enum tkind { T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
             T_NAME, T_INT, T_STR, T_OP };

typedef struct token {
    int kind;                /* enum tkind */
    const char *p;           /* text in the template (T_STR: with quotes) */
    size_t n;
    int line, col;
    int64_t i;               /* T_INT */
} token;

enum nkind {
    /* statements */
    N_TEXT, N_PRINT, N_IF, N_FOR, N_SET, N_SET_ATTR, N_SET_BLOCK, N_MACRO,
    N_BREAK, N_CONTINUE, N_BLOCK,
    /* expressions */
    N_LIT, N_NAME, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NEG,
    N_POS, N_NOT, N_AND, N_OR, N_BIN, N_CMP, N_CMPOP, N_COND, N_LIST, N_DICT,
    N_PAIR, N_ARG, N_PARAM,
};

enum op { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
          OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

/*
 * One node shape for everything (chibicc).  Children by kind:
 *   N_IF    a cond, b body, c next elif (an N_IF) or NULL, d else body
 *   N_FOR   c targets (N_NAME list), a iterable, d filter, b body, e else
 *   N_SET   c targets, a value;  N_SET_ATTR name.name2 = a;  N_SET_BLOCK name, b
 *   N_MACRO name, c params (N_PARAM name, a default), b body
 *   N_CALL  a callee, b args (N_ARG name-or-NULL, a value)
 *   N_FILTER/N_TEST  a input, name, b args, op 1 = "is not"
 *   N_SLICE a object, b start, c stop, d step;  N_CMP a first, b N_CMPOP list
 *   N_COND  a if b else c;  N_LIST b items (op 1: a tuple);  N_DICT b N_PAIR list (a key, b value)
 */
struct node {
    int kind;                /* enum nkind */
    int op;                  /* enum op, or a flag */
    int line, col;
    node *a, *b, *c, *d, *e;
    node *next;              /* next statement / item / argument */
    const char *name;        /* NUL-terminated (arena) */
    const char *name2;
    value v;                 /* N_LIT, N_TEXT */
};

/* ------------------------------------------------------------- renderer */

typedef struct jinja {
    jmp_buf jb;              /* error exit (see fail()) */
    int rc;                  /* code of the error being unwound */
    char *chunk;             /* current arena chunk (linked through its first word) */
    size_t chunk_used, chunk_cap;
    size_t mem_used, mem_max;
    const char *src;         /* template */
    size_t src_len;
    const char *lc_p;        /* line/column cursor (monotone) */
    int lc_line, lc_col;
    token *toks;
    size_t n_toks, cap_toks, pos;
    int depth, max_depth;    /* parser nesting */
    int loop_depth;          /* parser: inside a for body */
    int rdepth;              /* walker recursion */
    int mdepth;              /* macro calls in progress */
    int64_t steps, max_steps;
    buf *out;
    size_t out_base, max_output;
    scope *globals;
} jinja;

enum flow { FLOW_NONE, FLOW_BREAK, FLOW_CONTINUE };

static _Noreturn void failv(jinja *J, int rc, int line, int col, const char *fmt, va_list ap) {
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0) sqlm_error(rc, "template: line %d col %d: %s", line, col, msg);
    else sqlm_error(rc, "template: %s", msg);
    J->rc = rc;
    longjmp(J->jb, 1);
}

static _Noreturn __attribute__((format(printf, 3, 4)))
void fail(jinja *J, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(J, rc, 0, 0, fmt, ap);
}

static _Noreturn __attribute__((format(printf, 4, 5)))
void fail_at(jinja *J, int rc, const node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(J, rc, n ? n->line : 0, n ? n->col : 0, fmt, ap);
}

static _Noreturn __attribute__((format(printf, 4, 5)))
void fail_tok(jinja *J, int rc, const token *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(J, rc, t->line, t->col, fmt, ap);
}

/* ------------------------------------------------------------- arena */

/* Chunks are linked through their first 16 bytes; allocations are 16-aligned. */
static void *jalloc(jinja *J, size_t n) {
    if (n > SIZE_MAX / 2) fail(J, SQLM_RANGE, "memory limit of %zu bytes exceeded", J->mem_max);
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (!J->chunk || J->chunk_cap - J->chunk_used < n) {
        size_t cap = MAX(n + 16, CHUNK_SIZE);
        if (cap > J->mem_max - J->mem_used)
            fail(J, SQLM_RANGE, "memory limit of %zu bytes exceeded", J->mem_max);
        char *c = malloc(cap);
        if (!c) fail(J, SQLM_NOMEM, "out of memory");
        *(char **)c = J->chunk;
        J->chunk = c;
        J->chunk_used = 16;
        J->chunk_cap = cap;
        J->mem_used += cap;
    }
    void *p = J->chunk + J->chunk_used;
    J->chunk_used += n;
    return p;
}

static void *jalloc_array(jinja *J, size_t count, size_t size) {
    size_t n;
    if (!size_mul(count, size, &n)) fail(J, SQLM_RANGE, "memory limit of %zu bytes exceeded", J->mem_max);
    return jalloc(J, n);
}

static void arena_free(jinja *J) {
    while (J->chunk) {
        char *next = *(char **)J->chunk;
        free(J->chunk);
        J->chunk = next;
    }
}

static char *jstrndup(jinja *J, const char *s, size_t n) {
    char *p = jalloc(J, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A growable string in the arena (old copies stay until the render ends). */
typedef struct sbuf { char *p; size_t n, cap; } sbuf;

static void sb_put(jinja *J, sbuf *b, const void *s, size_t n) {
    if (n == 0) return;
    if (n > b->cap - b->n) {
        size_t need;
        if (!size_add(b->n, n, &need)) fail(J, SQLM_RANGE, "string too long");
        size_t cap = MAX(MAX(need, b->cap * 2), (size_t)32);
        char *p = jalloc(J, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_puts(jinja *J, sbuf *b, const char *s) { sb_put(J, b, s, strlen(s)); }

/* ------------------------------------------------------------- limits */

static void tick(jinja *J, const node *n) {
    if (++J->steps > J->max_steps)
        fail_at(J, SQLM_RANGE, n, "template ran more than %lld steps", (long long)J->max_steps);
}

/* Charge a scan over n bytes: long strings cost steps too. */
static void charge(jinja *J, const node *n, size_t bytes) {
    J->steps += (int64_t)(bytes >> 8);
    tick(J, n);
}

static void enter(jinja *J, const node *n) {
    if (++J->rdepth > EVAL_DEPTH)
        fail_at(J, SQLM_RANGE, n, "expression or value nested deeper than %d", EVAL_DEPTH);
}

static void leave(jinja *J) { J->rdepth--; }

/* Append rendered text to the output. */
static void emit(jinja *J, const node *n, const char *p, size_t len) {
    size_t used = J->out->len - J->out_base;
    if (len > J->max_output - used)
        fail_at(J, SQLM_RANGE, n, "output longer than %zu bytes", J->max_output);
    sqlm_buf_append(J->out, p, len);
    if (J->out->rc) fail(J, SQLM_NOMEM, "out of memory");
}

/* ------------------------------------------------------------- value helpers */

static value mk_int(int64_t i) { value v = { .type = V_INT }; v.i = i; return v; }
static value mk_bool(bool b) { value v = { .type = V_BOOL }; v.i = b; return v; }
static value mk_none(void) { value v = { .type = V_NONE }; return v; }
static value mk_undef(const char *name) { value v = { .type = V_UNDEF }; v.s.p = name; return v; }
static value mk_str(const char *p, size_t n) { value v = { .type = V_STR }; v.s.p = p; v.s.n = n; return v; }
static value mk_cstr(const char *p) { return mk_str(p, strlen(p)); }

static const char *type_name(value v) {
    static const char *const names[] = {
        [V_UNDEF] = "undefined", [V_NONE] = "none", [V_BOOL] = "bool", [V_INT] = "int",
        [V_STR] = "str", [V_LIST] = "list", [V_DICT] = "dict", [V_NS] = "namespace",
        [V_LOOP] = "loop", [V_MACRO] = "macro", [V_FUNC] = "function",
    };
    return names[v.type];
}

static _Noreturn void fail_undef(jinja *J, const node *n, value v) {
    if (v.s.p) fail_at(J, SQLM_ERROR, n, "'%s' is undefined", v.s.p);
    fail_at(J, SQLM_ERROR, n, "undefined value (missing list item or key)");
}

static bool truth(value v) {
    switch (v.type) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: case V_INT: return v.i != 0;
    case V_STR: return v.s.n != 0;
    case V_LIST: return v.l->n != 0;
    case V_DICT: return v.d->n != 0;
    default: return true;
    }
}

static bool is_num(value v) { return v.type == V_INT || v.type == V_BOOL; }

static list *new_list(jinja *J, size_t cap) {
    list *l = jalloc(J, sizeof *l);
    l->n = 0;
    l->cap = cap;
    l->tuple = false;
    l->v = cap ? jalloc_array(J, cap, sizeof(value)) : NULL;
    return l;
}

static value list_value(list *l) { value v = { .type = V_LIST }; v.l = l; return v; }

static void list_push(jinja *J, list *l, value x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        value *nv = jalloc_array(J, cap, sizeof(value));
        if (l->n) memcpy(nv, l->v, l->n * sizeof(value));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

static dict *new_dict(jinja *J) {
    dict *d = jalloc(J, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

static value dict_value(dict *d, int type) { value v = { .type = type }; v.d = d; return v; }

static bool val_eq(jinja *J, const node *n, value a, value b);

static value *dict_find(jinja *J, const node *n, dict *d, value key) {
    for (size_t i = 0; i < d->n; i++)
        if (val_eq(J, n, d->k[i], key)) return &d->v[i];
    return NULL;
}

static value *dict_find_str(dict *d, const char *key) {
    size_t len = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].type == V_STR && d->k[i].s.n == len && !memcmp(d->k[i].s.p, key, len))
            return &d->v[i];
    return NULL;
}

static void dict_set(jinja *J, const node *n, dict *d, value key, value x) {
    value *slot = dict_find(J, n, d, key);
    if (slot) { *slot = x; return; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        value *nk = jalloc_array(J, cap, sizeof(value)), *nv = jalloc_array(J, cap, sizeof(value));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(value));
            memcpy(nv, d->v, d->n * sizeof(value));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = x;
}

/* ------------------------------------------------------------- UTF-8 */

static bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

static size_t utf8_count(const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += !is_cont((unsigned char)p[i]);
    return k;
}

/* Bytes of the character starting at p (1 for a stray continuation byte). */
static size_t utf8_len(const char *p, size_t n) {
    size_t k = 1;
    while (k < n && is_cont((unsigned char)p[k])) k++;
    return k;
}

/* Byte offsets of each character of s plus the end: [n_chars + 1]. */
static void charge(jinja *J, const node *n, size_t bytes);

static size_t *char_offsets(jinja *J, const node *n, value s, size_t *n_chars) {
    charge(J, n, s.s.n);
    size_t k = utf8_count(s.s.p, s.s.n), j = 0;
    size_t *off = jalloc_array(J, k + 1, sizeof *off);
    for (size_t i = 0; i < s.s.n; i++)
        if (!is_cont((unsigned char)s.s.p[i])) off[j++] = i;
    /* A string starting with continuation bytes: they join the first char. */
    if (j && k) off[0] = 0;
    off[k] = s.s.n;
    *n_chars = k;
    return off;
}

static void put_utf8(jinja *J, sbuf *b, uint32_t c) {
    char t[4];
    size_t n;
    if (c < 0x80) { t[0] = (char)c; n = 1; }
    else if (c < 0x800) { t[0] = (char)(0xC0 | c >> 6); t[1] = (char)(0x80 | (c & 63)); n = 2; }
    else if (c < 0x10000) {
        t[0] = (char)(0xE0 | c >> 12); t[1] = (char)(0x80 | (c >> 6 & 63));
        t[2] = (char)(0x80 | (c & 63)); n = 3;
    } else {
        if (c > 0x10FFFF) c = 0xFFFD;
        t[0] = (char)(0xF0 | c >> 18); t[1] = (char)(0x80 | (c >> 12 & 63));
        t[2] = (char)(0x80 | (c >> 6 & 63)); t[3] = (char)(0x80 | (c & 63)); n = 4;
    }
    sb_put(J, b, t, n);
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           (c >= 0x1c && c <= 0x1f);
}

/* ------------------------------------------------------------- conversions */

/* Python repr of a string: single quotes unless it holds ' and no ". */
static void write_repr_str(jinja *J, sbuf *b, value s) {
    char q = memchr(s.s.p, '\'', s.s.n) && !memchr(s.s.p, '"', s.s.n) ? '"' : '\'';
    sb_put(J, b, &q, 1);
    for (size_t i = 0; i < s.s.n; i++) {
        unsigned char c = (unsigned char)s.s.p[i];
        char t[8];
        if (c == (unsigned char)q || c == '\\') { t[0] = '\\'; t[1] = (char)c; sb_put(J, b, t, 2); }
        else if (c == '\n') sb_puts(J, b, "\\n");
        else if (c == '\r') sb_puts(J, b, "\\r");
        else if (c == '\t') sb_puts(J, b, "\\t");
        else if (c < 0x20 || c == 0x7f) { snprintf(t, sizeof t, "\\x%02x", c); sb_puts(J, b, t); }
        else sb_put(J, b, &s.s.p[i], 1);
    }
    sb_put(J, b, &q, 1);
}

/* str(v) as Python prints it; repr: the form used inside lists and dicts. */
static void write_val(jinja *J, const node *n, sbuf *b, value v, bool repr) {
    char t[32];
    enter(J, n);
    switch (v.type) {
    case V_UNDEF: if (repr) sb_puts(J, b, "Undefined"); break;
    case V_NONE: sb_puts(J, b, "None"); break;
    case V_BOOL: sb_puts(J, b, v.i ? "True" : "False"); break;
    case V_INT: snprintf(t, sizeof t, "%lld", (long long)v.i); sb_puts(J, b, t); break;
    case V_STR: if (repr) write_repr_str(J, b, v); else sb_put(J, b, v.s.p, v.s.n); break;
    case V_LIST:
        sb_puts(J, b, v.l->tuple ? "(" : "[");
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) sb_puts(J, b, ", ");
            write_val(J, n, b, v.l->v[i], true);
        }
        sb_puts(J, b, v.l->tuple ? (v.l->n == 1 ? ",)" : ")") : "]");
        break;
    case V_DICT:
        sb_puts(J, b, "{");
        for (size_t i = 0; i < v.d->n; i++) {
            if (i) sb_puts(J, b, ", ");
            write_val(J, n, b, v.d->k[i], true);
            sb_puts(J, b, ": ");
            write_val(J, n, b, v.d->v[i], true);
        }
        sb_puts(J, b, "}");
        break;
    case V_NS: sb_puts(J, b, "<Namespace>"); break;
    case V_LOOP: sb_puts(J, b, "<LoopContext>"); break;
    case V_MACRO: sb_puts(J, b, "<Macro>"); break;
    case V_FUNC: sb_puts(J, b, "<function>"); break;
    }
    leave(J);
}

static value to_str(jinja *J, const node *n, value v) {
    if (v.type == V_STR) return v;
    sbuf b = {0};
    write_val(J, n, &b, v, false);
    return mk_str(b.p ? b.p : "", b.n);
}

static void write_json_str(jinja *J, sbuf *b, const char *p, size_t len) {
    sb_puts(J, b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        const char *esc = NULL;
        char t[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) { snprintf(t, sizeof t, "\\u%04x", c); esc = t; }
        }
        if (!esc) { run++; continue; }
        sb_put(J, b, p + i - run, run);
        run = 0;
        sb_puts(J, b, esc);
    }
    sb_put(J, b, p + len - run, run);
    sb_puts(J, b, "\"");
}

static void json_newline(jinja *J, sbuf *b, int indent, int level) {
    sb_puts(J, b, "\n");
    for (int64_t i = 0; i < (int64_t)indent * level; i++) sb_puts(J, b, " ");
}

/* json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson; indent < 0: none. */
static void write_json(jinja *J, const node *n, sbuf *b, value v, int indent, int level) {
    char t[32];
    enter(J, n);
    tick(J, n);
    switch (v.type) {
    case V_NONE: sb_puts(J, b, "null"); break;
    case V_BOOL: sb_puts(J, b, v.i ? "true" : "false"); break;
    case V_INT: snprintf(t, sizeof t, "%lld", (long long)v.i); sb_puts(J, b, t); break;
    case V_STR: write_json_str(J, b, v.s.p, v.s.n); break;
    case V_LIST:
        if (!v.l->n) { sb_puts(J, b, "[]"); break; }
        sb_puts(J, b, "[");
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) sb_puts(J, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(J, b, indent, level + 1);
            write_json(J, n, b, v.l->v[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(J, b, indent, level);
        sb_puts(J, b, "]");
        break;
    case V_DICT:
        if (!v.d->n) { sb_puts(J, b, "{}"); break; }
        sb_puts(J, b, "{");
        for (size_t i = 0; i < v.d->n; i++) {
            value k = v.d->k[i];
            if (i) sb_puts(J, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(J, b, indent, level + 1);
            if (k.type == V_STR) write_json_str(J, b, k.s.p, k.s.n);
            else if (k.type == V_INT || k.type == V_BOOL || k.type == V_NONE) {
                sb_puts(J, b, "\"");
                write_json(J, n, b, k, indent, level + 1);
                sb_puts(J, b, "\"");
            } else fail_at(J, SQLM_ERROR, n, "tojson: keys must be str, int, bool or none, not %s", type_name(k));
            sb_puts(J, b, ": ");
            write_json(J, n, b, v.d->v[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(J, b, indent, level);
        sb_puts(J, b, "}");
        break;
    default:
        fail_at(J, SQLM_ERROR, n, "tojson: object of type %s is not JSON serializable", type_name(v));
    }
    leave(J);
}

/* Python ==: numbers by value (True == 1), containers element by element. */
static bool val_eq(jinja *J, const node *n, value a, value b) {
    if (is_num(a) && is_num(b)) return a.i == b.i;
    if (a.type != b.type) return false;
    bool r = false;
    enter(J, n);
    switch (a.type) {
    case V_UNDEF: case V_NONE: r = true; break;
    case V_STR:
        charge(J, n, a.s.n);
        r = a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
        break;
    case V_LIST:
        r = a.l->n == b.l->n;
        for (size_t i = 0; r && i < a.l->n; i++) r = val_eq(J, n, a.l->v[i], b.l->v[i]);
        break;
    case V_DICT:
        r = a.d->n == b.d->n;
        for (size_t i = 0; r && i < a.d->n; i++) {
            value *o = dict_find(J, n, b.d, a.d->k[i]);
            r = o && val_eq(J, n, a.d->v[i], *o);
        }
        break;
    case V_NS: r = a.d == b.d; break;
    case V_LOOP: r = a.lp == b.lp; break;
    case V_MACRO: r = a.m == b.m; break;
    case V_FUNC: r = a.i == b.i; break;
    }
    leave(J);
    return r;
}

/* Ordering for < <= > >=: numbers, strings (code point order) and lists. */
static int val_cmp(jinja *J, const node *n, value a, value b) {
    if (is_num(a) && is_num(b)) return (a.i > b.i) - (a.i < b.i);
    if (a.type == V_UNDEF) fail_undef(J, n, a);
    if (b.type == V_UNDEF) fail_undef(J, n, b);
    if (a.type == V_STR && b.type == V_STR) {
        charge(J, n, MIN(a.s.n, b.s.n));
        int c = memcmp(a.s.p, b.s.p, MIN(a.s.n, b.s.n));
        if (c) return c < 0 ? -1 : 1;
        return (a.s.n > b.s.n) - (a.s.n < b.s.n);
    }
    if (a.type == V_LIST && b.type == V_LIST) {
        int c = 0;
        enter(J, n);
        for (size_t i = 0; !c && i < a.l->n && i < b.l->n; i++)
            if (!val_eq(J, n, a.l->v[i], b.l->v[i])) c = val_cmp(J, n, a.l->v[i], b.l->v[i]);
        leave(J);
        if (c) return c;
        return (a.l->n > b.l->n) - (a.l->n < b.l->n);
    }
    fail_at(J, SQLM_ERROR, n, "cannot order %s and %s", type_name(a), type_name(b));
}

/* ------------------------------------------------------------- lexer */

/*
 * The template is text with three kinds of tags:
 *   {{ expr }}   output        {% stmt %}   statement        {# ... #}   comment
 * A '-' just inside a tag ({%- ... -%}) strips all whitespace on that side.
 * As transformers configures Jinja: trim_blocks drops the first newline after
 * a statement or comment tag, lstrip_blocks drops spaces and tabs between the
 * start of a line and a statement or comment tag ('{%+' opts out), and one
 * newline at the very end of the template is dropped.  Inside tags the tokens
 * are names, integers, '...' or "..." strings and operators.
 */

/* Line and column (1-based, bytes) of p, advancing a cursor. */
static void locate(jinja *J, const char *p, int *line, int *col) {
    if (!J->lc_p || p < J->lc_p) { J->lc_p = J->src; J->lc_line = 1; J->lc_col = 1; }
    for (; J->lc_p < p; J->lc_p++) {
        if (*J->lc_p == '\n') { J->lc_line++; J->lc_col = 1; }
        else J->lc_col++;
    }
    *line = J->lc_line;
    *col = J->lc_col;
}

static token *push_tok(jinja *J, int kind, const char *p, size_t n) {
    if (J->n_toks == J->cap_toks) {
        size_t cap = J->cap_toks ? J->cap_toks * 2 : 256;
        token *t = jalloc_array(J, cap, sizeof *t);
        if (J->n_toks) memcpy(t, J->toks, J->n_toks * sizeof *t);
        J->toks = t;
        J->cap_toks = cap;
    }
    token *t = &J->toks[J->n_toks++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->p = p;
    t->n = n;
    locate(J, p, &t->line, &t->col);
    return t;
}

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static _Noreturn void fail_lex(jinja *J, const char *p, const char *fmt, const char *arg) {
    token t = {0};
    locate(J, p, &t.line, &t.col);
    fail_tok(J, SQLM_FORMAT, &t, fmt, arg);
}

/* One token inside a tag at q; returns the position after it. */
static const char *lex_token(jinja *J, const char *q, const char *end) {
    const char *s = q;
    if (is_alpha(*q)) {
        while (q < end && (is_alpha(*q) || is_digit(*q))) q++;
        push_tok(J, T_NAME, s, (size_t)(q - s));
        return q;
    }
    if (is_digit(*q)) {
        int64_t v = 0;
        for (; q < end && (is_digit(*q) || *q == '_'); q++) {
            if (*q == '_') continue;
            if (v > (INT64_MAX - (*q - '0')) / 10) fail_lex(J, s, "integer literal too large%s", "");
            v = v * 10 + (*q - '0');
        }
        if (q + 1 < end && *q == '.' && is_digit(q[1]))
            fail_lex(J, s, "floating point numbers are not supported%s", "");
        push_tok(J, T_INT, s, (size_t)(q - s))->i = v;
        return q;
    }
    if (*q == '\'' || *q == '"') {
        char quote = *q++;
        while (q < end && *q != quote) q += (*q == '\\' && q + 1 < end) ? 2 : 1;
        if (q >= end) fail_lex(J, s, "unterminated string literal%s", "");
        q++;
        push_tok(J, T_STR, s, (size_t)(q - s));
        return q;
    }
    static const char *const ops2[] = { "==", "!=", "<=", ">=", "//", "**" };
    for (size_t i = 0; i < ARRAY_LEN(ops2); i++)
        if (q + 1 < end && q[0] == ops2[i][0] && q[1] == ops2[i][1]) {
            push_tok(J, T_OP, q, 2);
            return q + 2;
        }
    if (strchr("+-*/%~<>=()[]{},.:|", *q) && *q) {
        push_tok(J, T_OP, q, 1);
        return q + 1;
    }
    char c[8];
    if ((unsigned char)*q >= 0x20 && (unsigned char)*q < 0x7f) snprintf(c, sizeof c, "'%c'", *q);
    else snprintf(c, sizeof c, "0x%02x", (unsigned char)*q);
    fail_lex(J, s, "unexpected character %s", c);
}

static void lex(jinja *J) {
    const char *s = J->src, *end = s + J->src_len, *p = s;
    enum { AFTER_NONE, AFTER_STRIP, AFTER_TRIM } after = AFTER_NONE;
    if (end > s && end[-1] == '\n') {      /* keep_trailing_newline=False */
        end--;
        if (end > s && end[-1] == '\r') end--;
    }
    while (p < end) {
        const char *t = p;
        while (t + 1 < end && !(t[0] == '{' && (t[1] == '{' || t[1] == '%' || t[1] == '#'))) t++;
        if (t + 1 >= end) t = end;
        const char *ds = p, *de = t;
        if (after == AFTER_STRIP) {
            while (ds < de && is_ws(*ds)) ds++;
        } else if (after == AFTER_TRIM) {
            if (ds < de && *ds == '\n') ds++;
            else if (de - ds >= 2 && ds[0] == '\r' && ds[1] == '\n') ds += 2;
        }
        char kind = t < end ? t[1] : 0, mod = t + 2 < end ? t[2] : 0;
        if (t < end && mod == '-') {
            while (de > ds && is_ws(de[-1])) de--;
        } else if (t < end && kind != '{' && mod != '+') {
            const char *q = de;
            while (q > ds && (q[-1] == ' ' || q[-1] == '\t')) q--;
            if (q == s || q[-1] == '\n') de = q;
        }
        if (de > ds) push_tok(J, T_DATA, ds, (size_t)(de - ds));
        if (t >= end) break;

        if (kind == '#') {
            const char *c = t + 2;
            while (c + 1 < end && !(c[0] == '#' && c[1] == '}')) c++;
            if (c + 1 >= end) fail_lex(J, t, "unterminated comment%s", "");
            after = c > t + 2 && c[-1] == '-' ? AFTER_STRIP : AFTER_TRIM;
            p = c + 2;
            continue;
        }
        bool block = kind == '%';
        token *open = push_tok(J, block ? T_BLOCK_BEGIN : T_VAR_BEGIN, t, 2);
        const char *q = t + 2;
        if (mod == '-' || (block && mod == '+')) q++;
        int brackets = 0;                /* open ( [ {: a '}}' inside is not the end */
        for (;;) {
            while (q < end && is_ws(*q)) q++;
            if (q >= end)
                fail_tok(J, SQLM_FORMAT, open, "unterminated tag: missing '%s'", block ? "%}" : "}}");
            char close = block ? '%' : '}';
            if (brackets > 0) {
                if (*q == '(' || *q == '[' || *q == '{') brackets++;
                else if (*q == ')' || *q == ']' || *q == '}') brackets--;
                q = lex_token(J, q, end);
                continue;
            }
            if (end - q >= 3 && q[0] == '-' && q[1] == close && q[2] == '}') {
                push_tok(J, block ? T_BLOCK_END : T_VAR_END, q, 3);
                after = AFTER_STRIP;
                q += 3;
                break;
            }
            if (q + 1 < end && q[0] == close && q[1] == '}') {
                push_tok(J, block ? T_BLOCK_END : T_VAR_END, q, 2);
                after = block ? AFTER_TRIM : AFTER_NONE;
                q += 2;
                break;
            }
            if (*q == '(' || *q == '[' || *q == '{') brackets++;
            q = lex_token(J, q, end);
        }
        p = q;
    }
    push_tok(J, T_EOF, end, 0);
}

/* ------------------------------------------------------------- parser */

/*
 * Grammar (Jinja2's precedence; {% and %} stand for the tag tokens):
 *
 *   template  = body EOF
 *   body      = { DATA | "{{" expr "}}" | "{%" stmt "%}" }
 *   stmt      = "if" expr "%}" body { "{%" "elif" expr "%}" body }
 *                    [ "{%" "else" "%}" body ] "{%" "endif"
 *             | "for" NAME {"," NAME} "in" or [ "if" expr ] "%}" body
 *                    [ "{%" "else" "%}" body ] "{%" "endfor"
 *             | "set" NAME {"," NAME} "=" expr | "set" NAME "." NAME "=" expr
 *             | "set" NAME "%}" body "{%" "endset"
 *             | "macro" NAME "(" [ param {"," param} ] ")" "%}" body "{%" "endmacro"
 *             | "break" | "continue"          (inside a for body only)
 *             | "generation" "%}" body "{%" "endgeneration"
 *   param     = NAME [ "=" expr ]
 *   expr      = or [ "if" or [ "else" expr ] ]
 *   or        = and { "or" and }
 *   and       = not { "and" not }
 *   not       = "not" not | compare
 *   compare   = sum { ("=="|"!="|"<"|"<="|">"|">="|"in"|"not" "in") sum }
 *   sum       = concat { ("+"|"-") concat }
 *   concat    = product { "~" product }
 *   product   = power { ("*"|"/"|"//"|"%") power }
 *   power     = unary { "**" unary }
 *   unary     = ("-"|"+") unary-without-filters | postfix { filter | test }
 *   filter    = "|" NAME [ "(" args ")" ]
 *   test      = "is" ["not"] NAME [ "(" args ")" | primary ]
 *   postfix   = primary { "." NAME | "[" subscript "]" | "(" args ")" }
 *   subscript = expr | [expr] ":" [expr] [ ":" [expr] ]
 *   args      = [ arg { "," arg } [","] ];   arg = NAME "=" expr | expr
 *   primary   = NAME | INT | STR {STR} | "(" [ expr {"," expr} [","] ] ")"
 *             | "[" [ expr {"," expr} [","] ] "]" | "{" [ expr ":" expr {"," ...} ] "}"
 *
 * true/false/none (any case of the first letter) are literals.  Nesting of
 * blocks and brackets counts against max_depth.
 */

static token *peek(jinja *J) { return &J->toks[J->pos]; }
static token *peek2(jinja *J) { return J->toks[J->pos].kind == T_EOF ? &J->toks[J->pos] : &J->toks[J->pos + 1]; }

static token *next(jinja *J) {
    token *t = &J->toks[J->pos];
    if (t->kind != T_EOF) J->pos++;
    return t;
}

static bool tok_is(const token *t, int kind, const char *text) {
    return t->kind == kind && t->n == strlen(text) && !memcmp(t->p, text, t->n);
}
static bool is_op(const token *t, const char *op) { return tok_is(t, T_OP, op); }
static bool is_kw(const token *t, const char *w) { return tok_is(t, T_NAME, w); }

static const char *tok_desc(const token *t, char *tmp, size_t cap) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_DATA: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    }
    snprintf(tmp, cap, "'%.*s%s'", (int)MIN(t->n, (size_t)24), t->p, t->n > 24 ? "..." : "");
    return tmp;
}

static _Noreturn void fail_expected(jinja *J, const char *what) {
    char tmp[48];
    token *t = peek(J);
    fail_tok(J, SQLM_FORMAT, t, "expected %s, got %s", what, tok_desc(t, tmp, sizeof tmp));
}

static void expect_op(jinja *J, const char *op) {
    char what[16];
    if (!is_op(peek(J), op)) {
        snprintf(what, sizeof what, "'%s'", op);
        fail_expected(J, what);
    }
    next(J);
}

static void expect_end(jinja *J) {
    if (peek(J)->kind != T_BLOCK_END) fail_expected(J, "'%}'");
    next(J);
}

static const char *expect_name(jinja *J) {
    token *t = peek(J);
    if (t->kind != T_NAME) fail_expected(J, "a name");
    next(J);
    return jstrndup(J, t->p, t->n);
}

static node *new_node(jinja *J, int kind, const token *t) {
    node *n = jalloc(J, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = t->line;
    n->col = t->col;
    return n;
}

static void nest(jinja *J, const token *t) {
    if (++J->depth > J->max_depth)
        fail_tok(J, SQLM_RANGE, t, "nesting deeper than %d", J->max_depth);
}

static void unnest(jinja *J) { J->depth--; }

static const char *const filter_names[] = {
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "int", "items",
    "join", "last", "length", "list", "lower", "map", "reject", "rejectattr", "replace",
    "reverse", "safe", "select", "selectattr", "string", "title", "tojson", "trim", "upper",
};
static const char *const test_names[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false",
    "ge", "gt", "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none",
    "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper",
    "==", "!=", "<", "<=", ">", ">=",
};

static bool in_names(const char *const *names, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return true;
    return false;
}

static node *parse_expr(jinja *J);
static node *parse_or(jinja *J);
static node *parse_unary(jinja *J, bool with_filter);

/* Decode a string literal token (quotes and escapes as Python). */
static value parse_string(jinja *J, const token *t) {
    sbuf b = {0};
    const char *p = t->p + 1, *end = t->p + t->n - 1;
    while (p < end) {
        const char *run = p;
        while (p < end && *p != '\\') p++;
        sb_put(J, &b, run, (size_t)(p - run));
        if (p >= end) break;
        char c = p[1];
        p += 2;
        int hex = 0;
        switch (c) {
        case 'n': sb_puts(J, &b, "\n"); break;
        case 't': sb_puts(J, &b, "\t"); break;
        case 'r': sb_puts(J, &b, "\r"); break;
        case 'b': sb_puts(J, &b, "\b"); break;
        case 'f': sb_puts(J, &b, "\f"); break;
        case 'v': sb_puts(J, &b, "\v"); break;
        case 'a': sb_puts(J, &b, "\a"); break;
        case '0': sb_put(J, &b, "", 1); break;
        case '\\': case '\'': case '"': sb_put(J, &b, &c, 1); break;
        case '\n': break;
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default: sb_puts(J, &b, "\\"); sb_put(J, &b, &c, 1);
        }
        if (hex) {
            uint32_t cp = 0;
            for (int i = 0; i < hex; i++, p++) {
                char h = p < end ? *p : 0;
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) fail_tok(J, SQLM_FORMAT, t, "bad \\%c escape in string", c);
                cp = cp << 4 | (uint32_t)d;
            }
            put_utf8(J, &b, cp);
        }
    }
    return mk_str(b.p ? b.p : "", b.n);
}

/* Arguments of a call, filter or test up to ")" (the "(" is consumed). */
static node *parse_args(jinja *J) {
    node head = {0}, *tail = &head;
    while (!is_op(peek(J), ")")) {
        token *t = peek(J);
        node *arg = new_node(J, N_ARG, t);
        if (t->kind == T_NAME && is_op(peek2(J), "=")) {
            arg->name = jstrndup(J, t->p, t->n);
            next(J);
            next(J);
        }
        arg->a = parse_expr(J);
        tail = tail->next = arg;
        if (!is_op(peek(J), ",")) break;
        next(J);
    }
    expect_op(J, ")");
    return head.next;
}

/* Comma-separated expressions up to the closing bracket. */
static node *parse_items(jinja *J, const char *close, bool *saw_comma) {
    node head = {0}, *tail = &head;
    *saw_comma = false;
    while (!is_op(peek(J), close)) {
        tail = tail->next = parse_expr(J);
        if (!is_op(peek(J), ",")) break;
        *saw_comma = true;
        next(J);
    }
    expect_op(J, close);
    return head.next;
}

static node *parse_primary(jinja *J) {
    token *t = peek(J);
    node *n;
    bool comma;
    if (t->kind == T_NAME) {
        next(J);
        n = new_node(J, N_LIT, t);
        if (is_kw(t, "true") || is_kw(t, "True")) n->v = mk_bool(true);
        else if (is_kw(t, "false") || is_kw(t, "False")) n->v = mk_bool(false);
        else if (is_kw(t, "none") || is_kw(t, "None")) n->v = mk_none();
        else { n->kind = N_NAME; n->name = jstrndup(J, t->p, t->n); }
        return n;
    }
    if (t->kind == T_INT) {
        next(J);
        n = new_node(J, N_LIT, t);
        n->v = mk_int(t->i);
        return n;
    }
    if (t->kind == T_STR) {
        n = new_node(J, N_LIT, t);
        n->v = parse_string(J, next(J));
        while (peek(J)->kind == T_STR) {     /* 'a' 'b' is 'ab' */
            value more = parse_string(J, next(J));
            sbuf b = {0};
            sb_put(J, &b, n->v.s.p, n->v.s.n);
            sb_put(J, &b, more.s.p, more.s.n);
            n->v = mk_str(b.p ? b.p : "", b.n);
        }
        return n;
    }
    if (is_op(t, "(")) {
        next(J);
        nest(J, t);
        if (is_op(peek(J), ")")) {           /* () is an empty tuple */
            next(J);
            n = new_node(J, N_LIST, t);
            n->op = 1;
        } else {
            n = parse_expr(J);
            if (is_op(peek(J), ",")) {
                next(J);
                node *first = n;
                n = new_node(J, N_LIST, t);
                n->op = 1;                  /* a tuple */
                first->next = parse_items(J, ")", &comma);
                n->b = first;
            } else expect_op(J, ")");
        }
        unnest(J);
        return n;
    }
    if (is_op(t, "[")) {
        next(J);
        nest(J, t);
        n = new_node(J, N_LIST, t);
        n->b = parse_items(J, "]", &comma);
        unnest(J);
        return n;
    }
    if (is_op(t, "{")) {
        next(J);
        nest(J, t);
        n = new_node(J, N_DICT, t);
        node head = {0}, *tail = &head;
        while (!is_op(peek(J), "}")) {
            node *pair = new_node(J, N_PAIR, peek(J));
            pair->a = parse_expr(J);
            expect_op(J, ":");
            pair->b = parse_expr(J);
            tail = tail->next = pair;
            if (!is_op(peek(J), ",")) break;
            next(J);
        }
        expect_op(J, "}");
        n->b = head.next;
        unnest(J);
        return n;
    }
    fail_expected(J, "an expression");
}

static node *parse_postfix(jinja *J, node *n) {
    for (;;) {
        token *t = peek(J);
        if (is_op(t, ".")) {
            next(J);
            node *a = new_node(J, N_ATTR, t);
            token *nt = peek(J);
            if (nt->kind == T_INT) {             /* x.0 is x[0] */
                next(J);
                a->kind = N_INDEX;
                a->b = new_node(J, N_LIT, nt);
                a->b->v = mk_int(nt->i);
            } else a->name = expect_name(J);
            a->a = n;
            n = a;
        } else if (is_op(t, "[")) {
            next(J);
            nest(J, t);
            node *x = new_node(J, N_INDEX, t);
            x->a = n;
            if (!is_op(peek(J), ":")) x->b = parse_expr(J);
            if (is_op(peek(J), ":")) {
                next(J);
                x->kind = N_SLICE;
                if (!is_op(peek(J), "]") && !is_op(peek(J), ":")) x->c = parse_expr(J);
                if (is_op(peek(J), ":")) {
                    next(J);
                    if (!is_op(peek(J), "]")) x->d = parse_expr(J);
                }
            }
            expect_op(J, "]");
            unnest(J);
            n = x;
        } else if (is_op(t, "(")) {
            next(J);
            nest(J, t);
            node *c = new_node(J, N_CALL, t);
            c->a = n;
            c->b = parse_args(J);
            unnest(J);
            n = c;
        } else return n;
    }
}

static node *parse_filters(jinja *J, node *n) {
    char tmp[48];
    for (;;) {
        token *t = peek(J);
        if (is_op(t, "|")) {
            next(J);
            node *f = new_node(J, N_FILTER, peek(J));
            f->name = expect_name(J);
            if (!in_names(filter_names, ARRAY_LEN(filter_names), f->name))
                fail_at(J, SQLM_FORMAT, f, "unknown filter '%s'", f->name);
            f->a = n;
            if (is_op(peek(J), "(")) {
                nest(J, next(J));
                f->b = parse_args(J);
                unnest(J);
            }
            n = f;
        } else if (is_kw(t, "is")) {
            next(J);
            node *x = new_node(J, N_TEST, peek(J));
            if (is_kw(peek(J), "not")) { next(J); x->op = 1; }
            token *nt = peek(J);
            if (nt->kind == T_NAME) {
                next(J);
                x->name = jstrndup(J, nt->p, nt->n);
            } else fail_tok(J, SQLM_FORMAT, nt, "expected a test name, got %s", tok_desc(nt, tmp, sizeof tmp));
            x->line = nt->line;
            x->col = nt->col;
            if (!in_names(test_names, ARRAY_LEN(test_names), x->name))
                fail_at(J, SQLM_FORMAT, x, "unknown test '%s'", x->name);
            x->a = n;
            token *at = peek(J);
            if (is_op(at, "(")) {
                nest(J, next(J));
                x->b = parse_args(J);
                unnest(J);
            } else if ((at->kind == T_NAME && !is_kw(at, "else") && !is_kw(at, "or") &&
                        !is_kw(at, "and") && !is_kw(at, "if") && !is_kw(at, "is") &&
                        !is_kw(at, "in") && !is_kw(at, "not")) ||
                       at->kind == T_STR || at->kind == T_INT || is_op(at, "[") || is_op(at, "{")) {
                x->b = new_node(J, N_ARG, at);
                nest(J, at);
                x->b->a = parse_primary(J);
                unnest(J);
            }
            n = x;
        } else return n;
    }
}

static node *parse_unary(jinja *J, bool with_filter) {
    token *t = peek(J);
    node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(J);
        nest(J, t);
        n = new_node(J, is_op(t, "-") ? N_NEG : N_POS, t);
        n->a = parse_unary(J, false);
        unnest(J);
    } else n = parse_postfix(J, parse_primary(J));
    return with_filter ? parse_filters(J, n) : n;
}

static node *binary(jinja *J, int kind, int op, const token *t, node *l, node *r) {
    node *n = new_node(J, kind, t);
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static node *parse_power(jinja *J) {
    node *n = parse_unary(J, true);
    while (is_op(peek(J), "**")) {
        token *t = next(J);
        n = binary(J, N_BIN, OP_POW, t, n, parse_unary(J, true));
    }
    return n;
}

static node *parse_product(jinja *J) {
    node *n = parse_power(J);
    for (;;) {
        token *t = peek(J);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
               : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) return n;
        next(J);
        n = binary(J, N_BIN, op, t, n, parse_power(J));
    }
}

static node *parse_concat(jinja *J) {
    node *n = parse_product(J);
    while (is_op(peek(J), "~")) {
        token *t = next(J);
        n = binary(J, N_BIN, OP_CONCAT, t, n, parse_product(J));
    }
    return n;
}

static node *parse_sum(jinja *J) {
    node *n = parse_concat(J);
    for (;;) {
        token *t = peek(J);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0) return n;
        next(J);
        n = binary(J, N_BIN, op, t, n, parse_concat(J));
    }
}

static node *parse_compare(jinja *J) {
    node *first = parse_sum(J), head = {0}, *tail = &head;
    for (;;) {
        token *t = peek(J);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
               : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE
               : is_kw(t, "in") ? OP_IN : is_kw(t, "not") && is_kw(peek2(J), "in") ? OP_NOTIN : -1;
        if (op < 0) break;
        next(J);
        if (op == OP_NOTIN) next(J);
        tail = tail->next = binary(J, N_CMPOP, op, t, parse_sum(J), NULL);
    }
    if (!head.next) return first;
    node *n = new_node(J, N_CMP, &(token){ .line = head.next->line, .col = head.next->col });
    n->a = first;
    n->b = head.next;
    return n;
}

static node *parse_not(jinja *J) {
    token *t = peek(J);
    if (!is_kw(t, "not")) return parse_compare(J);
    next(J);
    nest(J, t);
    node *n = new_node(J, N_NOT, t);
    n->a = parse_not(J);
    unnest(J);
    return n;
}

static node *parse_and(jinja *J) {
    node *n = parse_not(J);
    while (is_kw(peek(J), "and")) {
        token *t = next(J);
        n = binary(J, N_AND, 0, t, n, parse_not(J));
    }
    return n;
}

static node *parse_or(jinja *J) {
    node *n = parse_and(J);
    while (is_kw(peek(J), "or")) {
        token *t = next(J);
        n = binary(J, N_OR, 0, t, n, parse_and(J));
    }
    return n;
}

static node *parse_expr(jinja *J) {
    token *t = peek(J);
    nest(J, t);
    node *n = parse_or(J);
    if (is_kw(peek(J), "if")) {
        node *c = new_node(J, N_COND, next(J));
        c->a = n;
        c->b = parse_or(J);
        if (is_kw(peek(J), "else")) {
            next(J);
            c->c = parse_expr(J);
        }
        n = c;
    }
    unnest(J);
    return n;
}

/* ------------------------------------------------------------- statements */

static node *parse_body(jinja *J, const char *const *ends, const token *opener, const char **stop);

static node *parse_targets(jinja *J) {
    node head = {0}, *tail = &head;
    do {
        node *n = new_node(J, N_NAME, peek(J));
        n->name = expect_name(J);
        tail = tail->next = n;
    } while (is_op(peek(J), ",") && next(J));
    return head.next;
}

static node *parse_if(jinja *J, const token *kw) {
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    node *first = NULL, *prev = NULL;
    const char *stop = "elif";
    const token *opener = kw;
    while (!strcmp(stop, "elif")) {
        node *n = new_node(J, N_IF, opener);
        n->a = parse_expr(J);
        expect_end(J);
        n->b = parse_body(J, ends, kw, &stop);
        if (prev) prev->c = n;
        else first = n;
        prev = n;
        opener = &J->toks[J->pos - 1];
    }
    if (!strcmp(stop, "else")) {
        static const char *const end_only[] = { "endif", NULL };
        expect_end(J);
        first->d = parse_body(J, end_only, kw, &stop);
    }
    expect_end(J);
    return first;
}

static node *parse_for(jinja *J, const token *kw) {
    static const char *const ends[] = { "else", "endfor", NULL };
    static const char *const end_only[] = { "endfor", NULL };
    const char *stop;
    node *n = new_node(J, N_FOR, kw);
    n->c = parse_targets(J);
    if (!is_kw(peek(J), "in")) fail_expected(J, "'in'");
    next(J);
    n->a = parse_or(J);
    if (is_kw(peek(J), "if")) {
        next(J);
        n->d = parse_expr(J);
    }
    if (is_kw(peek(J), "recursive"))
        fail_tok(J, SQLM_UNSUPPORTED, peek(J), "recursive loops are not supported");
    expect_end(J);
    J->loop_depth++;
    n->b = parse_body(J, ends, kw, &stop);
    J->loop_depth--;
    if (!strcmp(stop, "else")) {
        expect_end(J);
        n->e = parse_body(J, end_only, kw, &stop);
    }
    expect_end(J);
    return n;
}

static node *parse_set(jinja *J, const token *kw) {
    static const char *const ends[] = { "endset", NULL };
    node *n = new_node(J, N_SET, kw);
    token *t = peek(J);
    if (t->kind == T_NAME && is_op(peek2(J), ".")) {
        n->kind = N_SET_ATTR;
        n->name = expect_name(J);
        next(J);
        n->name2 = expect_name(J);
        expect_op(J, "=");
        n->a = parse_expr(J);
    } else {
        n->c = parse_targets(J);
        if (peek(J)->kind == T_BLOCK_END && !n->c->next) {
            const char *stop;
            int saved = J->loop_depth;
            n->kind = N_SET_BLOCK;
            n->name = n->c->name;
            next(J);
            J->loop_depth = 0;
            n->b = parse_body(J, ends, kw, &stop);
            J->loop_depth = saved;
        } else {
            expect_op(J, "=");
            n->a = parse_expr(J);
        }
    }
    expect_end(J);
    return n;
}

static node *parse_macro(jinja *J, const token *kw) {
    static const char *const ends[] = { "endmacro", NULL };
    const char *stop;
    node *n = new_node(J, N_MACRO, kw);
    n->name = expect_name(J);
    expect_op(J, "(");
    node head = {0}, *tail = &head;
    while (!is_op(peek(J), ")")) {
        node *p = new_node(J, N_PARAM, peek(J));
        p->name = expect_name(J);
        if (is_op(peek(J), "=")) {
            next(J);
            p->a = parse_expr(J);
        }
        tail = tail->next = p;
        if (!is_op(peek(J), ",")) break;
        next(J);
    }
    expect_op(J, ")");
    n->c = head.next;
    expect_end(J);
    int saved = J->loop_depth;
    J->loop_depth = 0;
    n->b = parse_body(J, ends, kw, &stop);
    J->loop_depth = saved;
    expect_end(J);
    return n;
}

/* After "{%": one statement, through its closing "%}". */
static node *parse_stmt(jinja *J) {
    static const char *const gen_end[] = { "endgeneration", NULL };
    static const char *const unsupported[] = {
        "raw", "include", "extends", "import", "from", "call", "filter", "block", "with",
        "autoescape", "do", "trans",
    };
    char tmp[48];
    token *kw = peek(J);
    if (kw->kind != T_NAME) fail_expected(J, "a statement name");
    next(J);
    nest(J, kw);
    node *n;
    if (is_kw(kw, "if")) n = parse_if(J, kw);
    else if (is_kw(kw, "for")) n = parse_for(J, kw);
    else if (is_kw(kw, "set")) n = parse_set(J, kw);
    else if (is_kw(kw, "macro")) n = parse_macro(J, kw);
    else if (is_kw(kw, "break") || is_kw(kw, "continue")) {
        if (!J->loop_depth)
            fail_tok(J, SQLM_FORMAT, kw, "'%.*s' outside a for loop", (int)kw->n, kw->p);
        n = new_node(J, is_kw(kw, "break") ? N_BREAK : N_CONTINUE, kw);
        expect_end(J);
    } else if (is_kw(kw, "generation")) {
        const char *stop;
        n = new_node(J, N_BLOCK, kw);
        expect_end(J);
        n->b = parse_body(J, gen_end, kw, &stop);
        expect_end(J);
    } else {
        char *name = jstrndup(J, kw->p, kw->n);
        if (in_names(unsupported, ARRAY_LEN(unsupported), name))
            fail_tok(J, SQLM_UNSUPPORTED, kw, "'%s' tags are not supported", name);
        if (!strncmp(name, "end", 3) || !strcmp(name, "else") || !strcmp(name, "elif"))
            fail_tok(J, SQLM_FORMAT, kw, "unexpected %s", tok_desc(kw, tmp, sizeof tmp));
        fail_tok(J, SQLM_FORMAT, kw, "unknown tag '%s'", name);
    }
    unnest(J);
    return n;
}

/*
 * Statements until a "{%" whose name is in ends (NULL-terminated; NULL for
 * the top level).  The end name is consumed and returned in *stop; the rest
 * of that tag is left to the caller.
 */
static node *parse_body(jinja *J, const char *const *ends, const token *opener, const char **stop) {
    node head = {0}, *tail = &head;
    char tmp[48];
    *stop = NULL;
    for (;;) {
        token *t = peek(J);
        node *n;
        if (t->kind == T_EOF) {
            if (!ends) return head.next;
            const char *want = ends[0];
            for (int i = 0; ends[i]; i++) want = ends[i];
            fail_tok(J, SQLM_FORMAT, opener, "'%.*s' is never closed: expected '{%% %s %%}' before the end of the template",
                     (int)opener->n, opener->p, want);
        }
        next(J);
        if (t->kind == T_DATA) {
            n = new_node(J, N_TEXT, t);
            n->v = mk_str(t->p, t->n);
        } else if (t->kind == T_VAR_BEGIN) {
            n = new_node(J, N_PRINT, t);
            n->a = parse_expr(J);
            if (peek(J)->kind != T_VAR_END) fail_expected(J, "'}}'");
            next(J);
        } else if (t->kind == T_BLOCK_BEGIN) {
            token *kw = peek(J);
            for (int i = 0; ends && ends[i]; i++)
                if (is_kw(kw, ends[i])) {
                    next(J);
                    *stop = ends[i];
                    return head.next;
                }
            n = parse_stmt(J);
        } else fail_tok(J, SQLM_FORMAT, t, "unexpected %s", tok_desc(t, tmp, sizeof tmp));
        tail = tail->next = n;
    }
}

/* ------------------------------------------------------------- scopes, arguments */

static scope *new_scope(jinja *J, scope *parent) {
    scope *sc = jalloc(J, sizeof *sc);
    sc->vars = NULL;
    sc->parent = parent;
    return sc;
}

static void set_var(jinja *J, scope *sc, const char *name, value v) {
    for (var *x = sc->vars; x; x = x->next)
        if (!strcmp(x->name, name)) { x->v = v; return; }
    var *x = jalloc(J, sizeof *x);
    x->name = name;
    x->v = v;
    x->next = sc->vars;
    sc->vars = x;
}

static value lookup(scope *sc, const char *name) {
    static const struct { const char *name; int fn; } builtins[] = {
        { "range", FN_RANGE }, { "namespace", FN_NAMESPACE }, { "dict", FN_DICT },
        { "raise_exception", FN_RAISE },
    };
    for (; sc; sc = sc->parent)
        for (var *x = sc->vars; x; x = x->next)
            if (!strcmp(x->name, name)) return x->v;
    for (size_t i = 0; i < ARRAY_LEN(builtins); i++)
        if (!strcmp(builtins[i].name, name)) {
            value v = { .type = V_FUNC };
            v.i = builtins[i].fn;
            return v;
        }
    return mk_undef(name);
}

/* Evaluated call arguments: positional, then keyword. */
typedef struct args {
    value *pos;
    int npos;
    const char **kwn;
    value *kwv;
    int nkw;
} args;

static value eval(jinja *J, node *n, scope *sc);

static void eval_args(jinja *J, node *list, scope *sc, args *a) {
    int np = 0, nk = 0;
    for (node *x = list; x; x = x->next) x->name ? nk++ : np++;
    a->pos = np ? jalloc_array(J, (size_t)np, sizeof(value)) : NULL;
    a->kwn = nk ? jalloc_array(J, (size_t)nk, sizeof(char *)) : NULL;
    a->kwv = nk ? jalloc_array(J, (size_t)nk, sizeof(value)) : NULL;
    a->npos = a->nkw = 0;
    for (node *x = list; x; x = x->next) {
        value v = eval(J, x->a, sc);
        if (x->name) {
            a->kwn[a->nkw] = x->name;
            a->kwv[a->nkw++] = v;
        } else a->pos[a->npos++] = v;
    }
}

/* Argument i (or keyword kw) or def. */
static value arg(const args *a, int i, const char *kw, value def) {
    if (i >= 0 && i < a->npos) return a->pos[i];
    for (int k = 0; kw && k < a->nkw; k++)
        if (!strcmp(a->kwn[k], kw)) return a->kwv[k];
    return def;
}

/* At most max_pos positional arguments and only keywords listed in kws ("a b"; NULL: any). */
static void arg_check(jinja *J, const node *n, const args *a, int max_pos, const char *kws, const char *what) {
    if (a->npos > max_pos) fail_at(J, SQLM_ERROR, n, "too many arguments to %s", what);
    for (int k = 0; kws && k < a->nkw; k++) {
        size_t len = strlen(a->kwn[k]);
        const char *p = kws;
        bool ok = false;
        while (p && *p && !ok) {
            const char *e = strchr(p, ' ');
            size_t wl = e ? (size_t)(e - p) : strlen(p);
            ok = wl == len && !memcmp(p, a->kwn[k], len);
            p = e ? e + 1 : NULL;
        }
        if (!ok) fail_at(J, SQLM_ERROR, n, "unexpected keyword argument '%s' to %s", a->kwn[k], what);
    }
}

static value need_str(jinja *J, const node *n, value v, const char *what) {
    if (v.type == V_UNDEF) fail_undef(J, n, v);
    if (v.type != V_STR) fail_at(J, SQLM_ERROR, n, "%s needs a string, not %s", what, type_name(v));
    return v;
}

static int64_t need_int(jinja *J, const node *n, value v, const char *what) {
    if (v.type == V_UNDEF) fail_undef(J, n, v);
    if (!is_num(v)) fail_at(J, SQLM_ERROR, n, "%s needs an integer, not %s", what, type_name(v));
    return v.i;
}

/* ------------------------------------------------------------- strings */

static bool is_none(value v) { return v.type == V_NONE || v.type == V_UNDEF; }

/* sides: 1 left, 2 right, 3 both.  chars: none for whitespace, or a set of characters. */
static value str_strip(jinja *J, const node *n, value s, value chars, int sides) {
    const char *p = s.s.p;
    size_t len = s.s.n;
    charge(J, n, len);
    if (is_none(chars)) {
        if (sides & 1) while (len && is_ws(*p)) { p++; len--; }
        if (sides & 2) while (len && is_ws(p[len - 1])) len--;
        return mk_str(p, len);
    }
    chars = need_str(J, n, chars, "strip");
    if (sides & 1)
        while (len) {
            size_t k = utf8_len(p, len);
            if (!memmem(chars.s.p, chars.s.n, p, k)) break;
            p += k;
            len -= k;
        }
    if (sides & 2)
        while (len) {
            size_t k = 1;
            while (k < len && is_cont((unsigned char)p[len - k])) k++;
            if (!memmem(chars.s.p, chars.s.n, p + len - k, k)) break;
            len -= k;
        }
    return mk_str(p, len);
}

static value str_split(jinja *J, const node *n, value s, value sep, int64_t maxsplit) {
    list *l = new_list(J, 0);
    const char *p = s.s.p, *e = p + s.s.n;
    int64_t splits = 0;
    charge(J, n, s.s.n);
    if (is_none(sep)) {
        for (;;) {
            while (p < e && is_ws(*p)) p++;
            if (p == e) break;
            if (maxsplit >= 0 && splits == maxsplit) {
                list_push(J, l, mk_str(p, (size_t)(e - p)));
                break;
            }
            const char *q = p;
            while (q < e && !is_ws(*q)) q++;
            list_push(J, l, mk_str(p, (size_t)(q - p)));
            p = q;
            splits++;
        }
        return list_value(l);
    }
    sep = need_str(J, n, sep, "split");
    if (!sep.s.n) fail_at(J, SQLM_ERROR, n, "split: empty separator");
    for (;;) {
        const char *f = maxsplit >= 0 && splits == maxsplit ? NULL : memmem(p, (size_t)(e - p), sep.s.p, sep.s.n);
        if (!f) {
            list_push(J, l, mk_str(p, (size_t)(e - p)));
            break;
        }
        list_push(J, l, mk_str(p, (size_t)(f - p)));
        p = f + sep.s.n;
        splits++;
    }
    return list_value(l);
}

static value str_replace(jinja *J, const node *n, value s, value old, value rep, int64_t count) {
    sbuf b = {0};
    const char *p = s.s.p, *e = p + s.s.n;
    int64_t done = 0;
    charge(J, n, s.s.n);
    if (!old.s.n) {                       /* '' matches before every character and at the end */
        while (count < 0 || done < count) {
            sb_put(J, &b, rep.s.p, rep.s.n);
            done++;
            if (p == e) break;
            size_t k = utf8_len(p, (size_t)(e - p));
            sb_put(J, &b, p, k);
            p += k;
        }
    } else {
        const char *f;
        while ((count < 0 || done < count) && (f = memmem(p, (size_t)(e - p), old.s.p, old.s.n))) {
            sb_put(J, &b, p, (size_t)(f - p));
            sb_put(J, &b, rep.s.p, rep.s.n);
            p = f + old.s.n;
            done++;
        }
    }
    sb_put(J, &b, p, (size_t)(e - p));
    return mk_str(b.p ? b.p : "", b.n);
}

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE };

static value str_case(jinja *J, const node *n, value s, int mode) {
    char *p = jalloc(J, s.s.n + 1);
    bool prev_letter = false;
    charge(J, n, s.s.n);
    for (size_t i = 0; i < s.s.n; i++) {
        char c = s.s.p[i];
        bool up = mode == CASE_UPPER || (mode == CASE_CAPITALIZE && i == 0) ||
                  (mode == CASE_TITLE && !prev_letter);
        if (up && c >= 'a' && c <= 'z') c = (char)(c - 32);
        else if (!up && c >= 'A' && c <= 'Z') c = (char)(c + 32);
        prev_letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (unsigned char)c >= 0x80;
        p[i] = c;
    }
    return mk_str(p, s.s.n);
}

static bool str_affix(jinja *J, const node *n, value s, value x, bool suffix) {
    if (x.type == V_LIST) {
        for (size_t i = 0; i < x.l->n; i++)
            if (str_affix(J, n, s, x.l->v[i], suffix)) return true;
        return false;
    }
    x = need_str(J, n, x, suffix ? "endswith" : "startswith");
    charge(J, n, x.s.n);
    return x.s.n <= s.s.n && !memcmp(suffix ? s.s.p + s.s.n - x.s.n : s.s.p, x.s.p, x.s.n);
}

/* str(sep).join(items) */
static value join_values(jinja *J, const node *n, value items, value sep, value attr);

/* ------------------------------------------------------------- access */

static value get_attr(jinja *J, const node *n, value obj, const char *name) {
    switch (obj.type) {
    case V_UNDEF: fail_undef(J, n, obj);
    case V_DICT: case V_NS: {
        value *v = dict_find_str(obj.d, name);
        return v ? *v : mk_undef(name);
    }
    case V_LOOP: {
        loop *lp = obj.lp;
        int64_t i = (int64_t)lp->i, len = (int64_t)lp->n;
        if (!strcmp(name, "index")) return mk_int(i + 1);
        if (!strcmp(name, "index0")) return mk_int(i);
        if (!strcmp(name, "revindex")) return mk_int(len - i);
        if (!strcmp(name, "revindex0")) return mk_int(len - i - 1);
        if (!strcmp(name, "first")) return mk_bool(i == 0);
        if (!strcmp(name, "last")) return mk_bool(i == len - 1);
        if (!strcmp(name, "length")) return mk_int(len);
        if (!strcmp(name, "depth")) return mk_int(1);
        if (!strcmp(name, "depth0")) return mk_int(0);
        if (!strcmp(name, "previtem")) return i > 0 ? lp->items[i - 1] : mk_undef(name);
        if (!strcmp(name, "nextitem")) return i + 1 < len ? lp->items[i + 1] : mk_undef(name);
        return mk_undef(name);
    }
    default:
        return mk_undef(name);
    }
}

/* Python's slice index adjustment: the first index and the count. */
static void slice_range(int64_t len, const value *lo, const value *hi, int64_t step,
                        int64_t *start, int64_t *count) {
    int64_t a, b;
    if (step > 0) {
        a = lo ? lo->i : 0;
        b = hi ? hi->i : len;
        if (a < 0) a = MAX(a + len, 0); else if (a > len) a = len;
        if (b < 0) b = MAX(b + len, 0); else if (b > len) b = len;
        *count = b > a ? (b - a - 1) / step + 1 : 0;
    } else {
        uint64_t ustep = (uint64_t)(-(step + 1)) + 1;
        a = lo ? lo->i : len - 1;
        b = hi ? hi->i : -1;
        if (lo) { if (a < 0) a = MAX(a + len, -1); else if (a >= len) a = len - 1; }
        if (hi) { if (b < 0) b = MAX(b + len, -1); else if (b >= len) b = len - 1; }
        *count = b < a ? (int64_t)((uint64_t)(a - b - 1) / ustep + 1) : 0;
    }
    *start = a;
}

static value get_slice(jinja *J, const node *n, value obj, value *lo, value *hi, value *st) {
    int64_t step = st ? need_int(J, n, *st, "slice") : 1, start, count;
    if (lo) need_int(J, n, *lo, "slice");
    if (hi) need_int(J, n, *hi, "slice");
    if (!step) fail_at(J, SQLM_ERROR, n, "slice step cannot be zero");
    if (obj.type == V_UNDEF) fail_undef(J, n, obj);
    if (obj.type == V_LIST) {
        slice_range((int64_t)obj.l->n, lo, hi, step, &start, &count);
        list *l = new_list(J, (size_t)count);
        for (int64_t k = 0; k < count; k++) l->v[k] = obj.l->v[start + k * step];
        l->n = (size_t)count;
        return list_value(l);
    }
    if (obj.type == V_STR) {
        size_t nc, *off = char_offsets(J, n, obj, &nc);
        slice_range((int64_t)nc, lo, hi, step, &start, &count);
        if (step == 1) return mk_str(obj.s.p + off[start], off[start + count] - off[start]);
        sbuf b = {0};
        for (int64_t k = 0; k < count; k++) {
            size_t c = (size_t)(start + k * step);
            sb_put(J, &b, obj.s.p + off[c], off[c + 1] - off[c]);
        }
        return mk_str(b.p ? b.p : "", b.n);
    }
    fail_at(J, SQLM_ERROR, n, "cannot slice %s", type_name(obj));
}

static value get_item(jinja *J, const node *n, value obj, value key) {
    switch (obj.type) {
    case V_UNDEF: fail_undef(J, n, obj);
    case V_LIST: case V_STR:
        if (is_num(key)) {
            int64_t i = key.i, len;
            if (obj.type == V_LIST) {
                len = (int64_t)obj.l->n;
                if (i < 0) i += len;
                return i >= 0 && i < len ? obj.l->v[i] : mk_undef(NULL);
            }
            size_t nc, *off = char_offsets(J, n, obj, &nc);
            len = (int64_t)nc;
            if (i < 0) i += len;
            if (i < 0 || i >= len) return mk_undef(NULL);
            return mk_str(obj.s.p + off[i], off[i + 1] - off[i]);
        }
        break;
    case V_DICT: case V_NS: {
        value *v = dict_find(J, n, obj.d, key);
        if (v) return *v;
        break;
    }
    }
    if (key.type == V_STR) return get_attr(J, n, obj, jstrndup(J, key.s.p, key.s.n));
    return mk_undef(NULL);
}

/* The items a for loop or filter walks: list items, dict keys, characters. */
static void iter_items(jinja *J, const node *n, value v, value **items, size_t *count) {
    switch (v.type) {
    case V_UNDEF: *items = NULL; *count = 0; return;
    case V_LIST: *items = v.l->v; *count = v.l->n; return;
    case V_DICT: *items = v.d->k; *count = v.d->n; return;
    case V_STR: {
        size_t nc, *off = char_offsets(J, n, v, &nc);
        value *it = jalloc_array(J, nc ? nc : 1, sizeof(value));
        for (size_t i = 0; i < nc; i++) it[i] = mk_str(v.s.p + off[i], off[i + 1] - off[i]);
        *items = it;
        *count = nc;
        return;
    }
    default:
        fail_at(J, SQLM_ERROR, n, "%s is not iterable", type_name(v));
    }
}

static value length_of(jinja *J, const node *n, value v) {
    switch (v.type) {
    case V_UNDEF: return mk_int(0);
    case V_STR: charge(J, n, v.s.n); return mk_int((int64_t)utf8_count(v.s.p, v.s.n));
    case V_LIST: return mk_int((int64_t)v.l->n);
    case V_DICT: case V_NS: return mk_int((int64_t)v.d->n);
    default: fail_at(J, SQLM_ERROR, n, "%s has no length", type_name(v));
    }
}

static bool contains(jinja *J, const node *n, value item, value seq) {
    value *items;
    size_t count;
    switch (seq.type) {
    case V_STR:
        item = need_str(J, n, item, "'in' with a string");
        charge(J, n, seq.s.n);
        return memmem(seq.s.p, seq.s.n, item.s.p, item.s.n) != NULL;
    case V_DICT: case V_NS:
        return dict_find(J, n, seq.d, item) != NULL;
    case V_LIST:
        iter_items(J, n, seq, &items, &count);
        for (size_t i = 0; i < count; i++) {
            tick(J, n);
            if (val_eq(J, n, items[i], item)) return true;
        }
        return false;
    case V_UNDEF:
        return false;
    default:
        fail_at(J, SQLM_ERROR, n, "'in' needs a string, list or dict on the right, not %s", type_name(seq));
    }
}

/* ------------------------------------------------------------- tests */

static bool apply_test(jinja *J, const node *n, const char *name, value v, const args *a) {
    value x = arg(a, 0, NULL, mk_undef(NULL));
    arg_check(J, n, a, 1, "", name);
    if (!strcmp(name, "defined")) return v.type != V_UNDEF;
    if (!strcmp(name, "undefined")) return v.type == V_UNDEF;
    if (!strcmp(name, "none")) return v.type == V_NONE;
    if (!strcmp(name, "boolean")) return v.type == V_BOOL;
    if (!strcmp(name, "true")) return v.type == V_BOOL && v.i;
    if (!strcmp(name, "false")) return v.type == V_BOOL && !v.i;
    if (!strcmp(name, "integer")) return v.type == V_INT;
    if (!strcmp(name, "number")) return is_num(v);
    if (!strcmp(name, "string")) return v.type == V_STR;
    if (!strcmp(name, "mapping")) return v.type == V_DICT;
    if (!strcmp(name, "iterable") || !strcmp(name, "sequence"))
        return v.type == V_LIST || v.type == V_DICT || v.type == V_STR;
    if (!strcmp(name, "callable")) return v.type == V_MACRO || v.type == V_FUNC;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.type != V_STR) return false;
        value c = str_case(J, n, v, name[0] == 'l' ? CASE_LOWER : CASE_UPPER);
        return !memcmp(c.s.p, v.s.p, v.s.n);
    }
    if (!strcmp(name, "odd")) return need_int(J, n, v, "odd") % 2 != 0;
    if (!strcmp(name, "even")) return need_int(J, n, v, "even") % 2 == 0;
    if (!strcmp(name, "divisibleby")) {
        int64_t d = need_int(J, n, x, "divisibleby"), i = need_int(J, n, v, "divisibleby");
        if (!d) fail_at(J, SQLM_ERROR, n, "divisibleby 0");
        return d == -1 || i % d == 0;
    }
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) return val_eq(J, n, v, x);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !val_eq(J, n, v, x);
    if (!strcmp(name, "lt") || !strcmp(name, "<")) return val_cmp(J, n, v, x) < 0;
    if (!strcmp(name, "le") || !strcmp(name, "<=")) return val_cmp(J, n, v, x) <= 0;
    if (!strcmp(name, "gt") || !strcmp(name, ">")) return val_cmp(J, n, v, x) > 0;
    if (!strcmp(name, "ge") || !strcmp(name, ">=")) return val_cmp(J, n, v, x) >= 0;
    if (!strcmp(name, "in")) return contains(J, n, v, x);
    if (!strcmp(name, "sameas")) {
        if (v.type != x.type) return false;
        if (v.type == V_STR) return v.s.p == x.s.p && v.s.n == x.s.n;
        return val_eq(J, n, v, x);
    }
    fail_at(J, SQLM_ERROR, n, "unknown test '%s'", name);
}

/* ------------------------------------------------------------- filters */

static value apply_filter(jinja *J, const node *n, const char *name, value v, const args *a);

/* select/reject/selectattr/rejectattr: keep items whose (attribute) passes a test. */
static value filter_select(jinja *J, const node *n, value v, const args *a, bool attr, bool keep) {
    value *items;
    size_t count;
    int k = attr ? 1 : 0;
    const char *attr_name = NULL;
    iter_items(J, n, v, &items, &count);
    if (attr) {
        value an = need_str(J, n, arg(a, 0, NULL, mk_undef(NULL)), "selectattr");
        attr_name = jstrndup(J, an.s.p, an.s.n);
    }
    value tn = arg(a, k, NULL, mk_none());
    const char *test = NULL;
    if (tn.type != V_NONE) {
        tn = need_str(J, n, tn, "select");
        test = jstrndup(J, tn.s.p, tn.s.n);
        if (!in_names(test_names, ARRAY_LEN(test_names), test))
            fail_at(J, SQLM_ERROR, n, "unknown test '%s'", test);
    }
    args rest = { a->npos > k + 1 ? a->pos + k + 1 : NULL, MAX(a->npos - k - 1, 0), NULL, NULL, 0 };
    if (rest.npos > 1) fail_at(J, SQLM_ERROR, n, "too many arguments to select");
    list *l = new_list(J, 0);
    for (size_t i = 0; i < count; i++) {
        tick(J, n);
        value x = attr ? get_attr(J, n, items[i], attr_name) : items[i];
        bool ok = test ? apply_test(J, n, test, x, &rest) : truth(x);
        if (ok == keep) list_push(J, l, items[i]);
    }
    return list_value(l);
}

static value join_values(jinja *J, const node *n, value items, value sep, value attr) {
    value *it;
    size_t count;
    sbuf b = {0};
    const char *an = NULL;
    iter_items(J, n, items, &it, &count);
    if (!is_none(sep)) sep = to_str(J, n, sep);
    if (!is_none(attr)) an = jstrndup(J, need_str(J, n, attr, "join").s.p, attr.s.n);
    for (size_t i = 0; i < count; i++) {
        tick(J, n);
        if (i && !is_none(sep)) sb_put(J, &b, sep.s.p, sep.s.n);
        value s = to_str(J, n, an ? get_attr(J, n, it[i], an) : it[i]);
        sb_put(J, &b, s.s.p, s.s.n);
    }
    return mk_str(b.p ? b.p : "", b.n);
}

static value apply_filter(jinja *J, const node *n, const char *name, value v, const args *a) {
    value none = mk_none();
    if (!strcmp(name, "safe")) { arg_check(J, n, a, 0, "", name); return v; }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        arg_check(J, n, a, 0, "", name);
        return length_of(J, n, v);
    }
    if (!strcmp(name, "string")) { arg_check(J, n, a, 0, "", name); return to_str(J, n, v); }
    if (!strcmp(name, "trim")) {
        arg_check(J, n, a, 1, "chars", name);
        return str_strip(J, n, to_str(J, n, v), arg(a, 0, "chars", none), 3);
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") ||
        !strcmp(name, "title")) {
        arg_check(J, n, a, 0, "", name);
        int mode = name[0] == 'u' ? CASE_UPPER : name[0] == 'l' ? CASE_LOWER
                 : name[0] == 'c' ? CASE_CAPITALIZE : CASE_TITLE;
        return str_case(J, n, to_str(J, n, v), mode);
    }
    if (!strcmp(name, "tojson")) {
        arg_check(J, n, a, 1, "indent ensure_ascii sort_keys separators", name);
        value ind = arg(a, 0, "indent", none);
        int64_t indent = is_none(ind) ? -1 : need_int(J, n, ind, "tojson indent");
        if (indent > 64) indent = 64;
        sbuf b = {0};
        write_json(J, n, &b, v, (int)indent, 0);
        return mk_str(b.p ? b.p : "", b.n);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        value *items;
        size_t count;
        arg_check(J, n, a, 0, "", name);
        iter_items(J, n, v, &items, &count);
        if (!count) return mk_undef(NULL);
        return name[0] == 'f' ? items[0] : items[count - 1];
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        arg_check(J, n, a, 2, "default_value boolean", name);
        value def = arg(a, 0, "default_value", mk_cstr(""));
        bool boolean = truth(arg(a, 1, "boolean", mk_bool(false)));
        return v.type == V_UNDEF || (boolean && !truth(v)) ? def : v;
    }
    if (!strcmp(name, "join")) {
        arg_check(J, n, a, 2, "d attribute", name);
        return join_values(J, n, v, arg(a, 0, "d", mk_cstr("")), arg(a, 1, "attribute", none));
    }
    if (!strcmp(name, "replace")) {
        arg_check(J, n, a, 3, "old new count", name);
        value old = to_str(J, n, arg(a, 0, "old", mk_undef(NULL))), rep = to_str(J, n, arg(a, 1, "new", mk_undef(NULL)));
        value cnt = arg(a, 2, "count", none);
        return str_replace(J, n, to_str(J, n, v), old, rep, is_none(cnt) ? -1 : need_int(J, n, cnt, "replace"));
    }
    if (!strcmp(name, "list") || !strcmp(name, "reverse")) {
        value *items;
        size_t count;
        arg_check(J, n, a, 0, "", name);
        if (name[0] == 'r' && v.type == V_STR) {
            size_t nc, *off = char_offsets(J, n, v, &nc);
            sbuf b = {0};
            for (size_t i = nc; i-- > 0;) sb_put(J, &b, v.s.p + off[i], off[i + 1] - off[i]);
            return mk_str(b.p ? b.p : "", b.n);
        }
        if (v.type == V_UNDEF) fail_undef(J, n, v);
        iter_items(J, n, v, &items, &count);
        list *l = new_list(J, count);
        for (size_t i = 0; i < count; i++) l->v[i] = items[name[0] == 'r' ? count - 1 - i : i];
        l->n = count;
        return list_value(l);
    }
    if (!strcmp(name, "items")) {
        arg_check(J, n, a, 0, "", name);
        if (v.type == V_UNDEF) return list_value(new_list(J, 0));
        if (v.type != V_DICT && v.type != V_NS) fail_at(J, SQLM_ERROR, n, "items needs a dict, not %s", type_name(v));
        list *l = new_list(J, v.d->n);
        for (size_t i = 0; i < v.d->n; i++) {
            list *pair = new_list(J, 2);
            pair->v[0] = v.d->k[i];
            pair->v[1] = v.d->v[i];
            pair->n = 2;
            pair->tuple = true;
            l->v[i] = list_value(pair);
        }
        l->n = v.d->n;
        return list_value(l);
    }
    if (!strcmp(name, "int")) {
        arg_check(J, n, a, 1, "default", name);
        value def = arg(a, 0, "default", mk_int(0));
        if (is_num(v)) return mk_int(v.i);
        if (v.type != V_STR) return def;
        value s = str_strip(J, n, v, none, 3);
        const char *p = s.s.p, *e = p + s.s.n;
        bool neg = p < e && *p == '-';
        if (p < e && (*p == '-' || *p == '+')) p++;
        if (p == e) return def;
        int64_t x = 0;
        for (; p < e; p++) {
            if (!is_digit(*p) || x > (INT64_MAX - 9) / 10) return def;
            x = x * 10 + (*p - '0');
        }
        return mk_int(neg ? -x : x);
    }
    if (!strcmp(name, "abs")) {
        arg_check(J, n, a, 0, "", name);
        int64_t x = need_int(J, n, v, "abs");
        if (x == INT64_MIN) fail_at(J, SQLM_ERROR, n, "integer overflow");
        return mk_int(x < 0 ? -x : x);
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        arg_check(J, n, a, 0, "", name);
        value s = to_str(J, n, v);
        sbuf b = {0};
        charge(J, n, s.s.n);
        for (size_t i = 0; i < s.s.n; i++) {
            char c = s.s.p[i];
            const char *r = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
                          : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
            if (r) sb_puts(J, &b, r);
            else sb_put(J, &b, &c, 1);
        }
        return mk_str(b.p ? b.p : "", b.n);
    }
    if (!strcmp(name, "map")) {
        value *items;
        size_t count;
        iter_items(J, n, v, &items, &count);
        list *l = new_list(J, count);
        value at = arg(a, -1, "attribute", mk_undef(NULL));
        if (at.type != V_UNDEF) {
            arg_check(J, n, a, 0, "attribute default", name);
            const char *an = jstrndup(J, need_str(J, n, at, "map").s.p, at.s.n);
            value def = arg(a, -1, "default", mk_undef(NULL));
            for (size_t i = 0; i < count; i++) {
                tick(J, n);
                value x = get_attr(J, n, items[i], an);
                l->v[i] = x.type == V_UNDEF && def.type != V_UNDEF ? def : x;
            }
        } else {
            value fnv = need_str(J, n, arg(a, 0, NULL, mk_undef(NULL)), "map");
            const char *fn = jstrndup(J, fnv.s.p, fnv.s.n);
            if (!in_names(filter_names, ARRAY_LEN(filter_names), fn) || !strcmp(fn, "map"))
                fail_at(J, SQLM_ERROR, n, "map: unknown filter '%s'", fn);
            args rest = { a->pos + 1, a->npos - 1, a->kwn, a->kwv, a->nkw };
            for (size_t i = 0; i < count; i++) {
                tick(J, n);
                l->v[i] = apply_filter(J, n, fn, items[i], &rest);
            }
        }
        l->n = count;
        return list_value(l);
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject"))
        return filter_select(J, n, v, a, false, name[0] == 's');
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return filter_select(J, n, v, a, true, name[0] == 's');
    fail_at(J, SQLM_ERROR, n, "unknown filter '%s'", name);
}

/* ------------------------------------------------------------- methods, functions */

/* obj.name(args) for the Python methods templates use; false if not a method. */
static bool call_method(jinja *J, const node *n, value obj, const char *name, const args *a, value *out) {
    value none = mk_none();
    if (obj.type == V_STR) {
        if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
            arg_check(J, n, a, 1, "", name);
            int sides = name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3;
            *out = str_strip(J, n, obj, arg(a, 0, NULL, none), sides);
        } else if (!strcmp(name, "split")) {
            arg_check(J, n, a, 2, "sep maxsplit", name);
            value ms = arg(a, 1, "maxsplit", mk_int(-1));
            *out = str_split(J, n, obj, arg(a, 0, "sep", none), need_int(J, n, ms, "split"));
        } else if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            arg_check(J, n, a, 1, "", name);
            *out = mk_bool(str_affix(J, n, obj, arg(a, 0, NULL, mk_undef(NULL)), name[0] == 'e'));
        } else if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") ||
                   !strcmp(name, "capitalize")) {
            arg_check(J, n, a, 0, "", name);
            *out = apply_filter(J, n, name, obj, a);
        } else if (!strcmp(name, "replace")) {
            arg_check(J, n, a, 3, "", name);
            value old = need_str(J, n, arg(a, 0, NULL, mk_undef(NULL)), name);
            value rep = need_str(J, n, arg(a, 1, NULL, mk_undef(NULL)), name);
            value cnt = arg(a, 2, NULL, mk_int(-1));
            *out = str_replace(J, n, obj, old, rep, need_int(J, n, cnt, name));
        } else if (!strcmp(name, "find") || !strcmp(name, "count")) {
            arg_check(J, n, a, 1, "", name);
            value sub = need_str(J, n, arg(a, 0, NULL, mk_undef(NULL)), name);
            charge(J, n, obj.s.n);
            if (name[0] == 'f') {
                const char *f = memmem(obj.s.p, obj.s.n, sub.s.p, sub.s.n);
                *out = mk_int(f ? (int64_t)utf8_count(obj.s.p, (size_t)(f - obj.s.p)) : -1);
            } else if (!sub.s.n) {
                *out = mk_int((int64_t)utf8_count(obj.s.p, obj.s.n) + 1);
            } else {
                int64_t k = 0;
                const char *p = obj.s.p, *e = p + obj.s.n, *f;
                while ((f = memmem(p, (size_t)(e - p), sub.s.p, sub.s.n))) { k++; p = f + sub.s.n; }
                *out = mk_int(k);
            }
        } else if (!strcmp(name, "join")) {
            arg_check(J, n, a, 1, "", name);
            *out = join_values(J, n, arg(a, 0, NULL, mk_undef(NULL)), obj, none);
        } else return false;
        return true;
    }
    if (obj.type == V_DICT) {
        if (!strcmp(name, "items")) {
            arg_check(J, n, a, 0, "", name);
            *out = apply_filter(J, n, "items", obj, a);
        } else if (!strcmp(name, "keys") || !strcmp(name, "values")) {
            arg_check(J, n, a, 0, "", name);
            list *l = new_list(J, obj.d->n);
            memcpy(l->v, name[0] == 'k' ? obj.d->k : obj.d->v, obj.d->n * sizeof(value));
            l->n = obj.d->n;
            *out = list_value(l);
        } else if (!strcmp(name, "get")) {
            arg_check(J, n, a, 2, "", name);
            value *v = dict_find(J, n, obj.d, arg(a, 0, NULL, mk_undef(NULL)));
            *out = v ? *v : arg(a, 1, NULL, none);
        } else return false;
        return true;
    }
    if (obj.type == V_LIST) {
        if (!strcmp(name, "append")) {
            arg_check(J, n, a, 1, "", name);
            if (a->npos != 1) fail_at(J, SQLM_ERROR, n, "append takes one argument");
            list_push(J, obj.l, a->pos[0]);
            *out = none;
        } else if (!strcmp(name, "pop")) {
            arg_check(J, n, a, 1, "", name);
            int64_t i = need_int(J, n, arg(a, 0, NULL, mk_int(-1)), name), len = (int64_t)obj.l->n;
            if (i < 0) i += len;
            if (i < 0 || i >= len) fail_at(J, SQLM_ERROR, n, "pop index out of range");
            *out = obj.l->v[i];
            memmove(obj.l->v + i, obj.l->v + i + 1, (size_t)(len - i - 1) * sizeof(value));
            obj.l->n--;
        } else return false;
        return true;
    }
    if (obj.type == V_LOOP && !strcmp(name, "cycle")) {
        if (!a->npos) fail_at(J, SQLM_ERROR, n, "loop.cycle needs arguments");
        *out = a->pos[obj.lp->i % (size_t)a->npos];
        return true;
    }
    return false;
}

static value call_function(jinja *J, const node *n, int fn, const args *a) {
    switch (fn) {
    case FN_RANGE: {
        arg_check(J, n, a, 3, "", "range");
        if (!a->npos) fail_at(J, SQLM_ERROR, n, "range needs an argument");
        int64_t lo = 0, hi, step = 1;
        if (a->npos == 1) hi = need_int(J, n, a->pos[0], "range");
        else {
            lo = need_int(J, n, a->pos[0], "range");
            hi = need_int(J, n, a->pos[1], "range");
            if (a->npos == 3) step = need_int(J, n, a->pos[2], "range");
        }
        if (!step) fail_at(J, SQLM_ERROR, n, "range step cannot be zero");
        /* count in unsigned arithmetic: hi - lo may overflow int64 */
        uint64_t span = step > 0 ? (hi > lo ? (uint64_t)hi - (uint64_t)lo : 0)
                                 : (lo > hi ? (uint64_t)lo - (uint64_t)hi : 0);
        uint64_t ustep = step > 0 ? (uint64_t)step : (uint64_t)(-(step + 1)) + 1;
        uint64_t count = span ? (span - 1) / ustep + 1 : 0;
        if (count > (uint64_t)J->max_steps)
            fail_at(J, SQLM_RANGE, n, "range of %llu items is over the step limit", (unsigned long long)count);
        J->steps += (int64_t)count / 16;
        tick(J, n);
        list *l = new_list(J, (size_t)count);
        for (uint64_t i = 0; i < count; i++)
            l->v[i] = mk_int((int64_t)((uint64_t)lo + i * (uint64_t)step));
        l->n = (size_t)count;
        return list_value(l);
    }
    case FN_NAMESPACE: case FN_DICT: {
        dict *d = new_dict(J);
        arg_check(J, n, a, 1, NULL, fn == FN_DICT ? "dict" : "namespace");
        if (a->npos) {
            value src = a->pos[0];
            if (src.type != V_DICT && src.type != V_NS)
                fail_at(J, SQLM_ERROR, n, "namespace/dict needs a dict, not %s", type_name(src));
            for (size_t i = 0; i < src.d->n; i++) dict_set(J, n, d, src.d->k[i], src.d->v[i]);
        }
        for (int i = 0; i < a->nkw; i++) dict_set(J, n, d, mk_cstr(a->kwn[i]), a->kwv[i]);
        return dict_value(d, fn == FN_DICT ? V_DICT : V_NS);
    }
    case FN_RAISE: {
        value msg = to_str(J, n, arg(a, 0, NULL, mk_cstr("raise_exception()")));
        fail_at(J, SQLM_ERROR, n, "raise_exception: %.*s", (int)MIN(msg.s.n, (size_t)600), msg.s.p);
    }
    }
    fail_at(J, SQLM_ERROR, n, "bad function");
}

/* ------------------------------------------------------------- evaluation */

/* s * k or list * k (Python repetition). */
static value repeat(jinja *J, const node *n, value x, int64_t k) {
    if (k < 0) k = 0;
    if (x.type == V_STR) {
        size_t total;
        if (!size_mul(x.s.n, (size_t)k, &total) || total > J->mem_max)
            fail_at(J, SQLM_RANGE, n, "string repetition too large");
        char *p = jalloc(J, total + 1);
        for (int64_t i = 0; i < k && x.s.n; i++) memcpy(p + (size_t)i * x.s.n, x.s.p, x.s.n);
        charge(J, n, total);
        return mk_str(p, total);
    }
    size_t total;
    if (!size_mul(x.l->n, (size_t)k, &total) || total > J->mem_max)
        fail_at(J, SQLM_RANGE, n, "list repetition too large");
    list *l = new_list(J, total);
    for (int64_t i = 0; i < k && x.l->n; i++) memcpy(l->v + (size_t)i * x.l->n, x.l->v, x.l->n * sizeof(value));
    l->n = total;
    charge(J, n, total * 16);
    return list_value(l);
}

static value binop(jinja *J, const node *n, int op, value a, value b) {
    int64_t r;
    if (op == OP_CONCAT) {
        value sa = to_str(J, n, a), sb = to_str(J, n, b);
        sbuf s = {0};
        sb_put(J, &s, sa.s.p, sa.s.n);
        sb_put(J, &s, sb.s.p, sb.s.n);
        return mk_str(s.p ? s.p : "", s.n);
    }
    if (a.type == V_UNDEF) fail_undef(J, n, a);
    if (b.type == V_UNDEF) fail_undef(J, n, b);
    if (is_num(a) && is_num(b)) {
        switch (op) {
        case OP_ADD: case OP_SUB: case OP_MUL: {
            bool over = op == OP_ADD ? __builtin_add_overflow(a.i, b.i, &r)
                      : op == OP_SUB ? __builtin_sub_overflow(a.i, b.i, &r)
                      : __builtin_mul_overflow(a.i, b.i, &r);
            if (over) fail_at(J, SQLM_ERROR, n, "integer overflow");
            return mk_int(r);
        }
        case OP_DIV: fail_at(J, SQLM_UNSUPPORTED, n, "'/' gives a float, which is not supported: use '//'");
        case OP_FLOORDIV: case OP_MOD: {
            if (!b.i) fail_at(J, SQLM_ERROR, n, "division by zero");
            if (a.i == INT64_MIN && b.i == -1) {
                if (op == OP_MOD) return mk_int(0);
                fail_at(J, SQLM_ERROR, n, "integer overflow");
            }
            int64_t q = a.i / b.i, m = a.i % b.i;
            if (m && ((m < 0) != (b.i < 0))) { q--; m += b.i; }
            return mk_int(op == OP_MOD ? m : q);
        }
        case OP_POW: {
            if (b.i < 0) fail_at(J, SQLM_UNSUPPORTED, n, "negative exponents give floats, which are not supported");
            if (a.i == 0 || a.i == 1) return mk_int(b.i == 0 ? 1 : a.i);
            if (a.i == -1) return mk_int(b.i % 2 ? -1 : 1);
            r = 1;
            for (int64_t i = 0; i < b.i; i++)
                if (__builtin_mul_overflow(r, a.i, &r)) fail_at(J, SQLM_ERROR, n, "integer overflow");
            return mk_int(r);
        }
        }
    }
    if (op == OP_ADD && a.type == V_STR && b.type == V_STR) {
        sbuf s = {0};
        sb_put(J, &s, a.s.p, a.s.n);
        sb_put(J, &s, b.s.p, b.s.n);
        return mk_str(s.p ? s.p : "", s.n);
    }
    if (op == OP_ADD && a.type == V_LIST && b.type == V_LIST) {
        size_t total;
        if (!size_add(a.l->n, b.l->n, &total)) fail_at(J, SQLM_RANGE, n, "list too long");
        list *l = new_list(J, total);
        if (a.l->n) memcpy(l->v, a.l->v, a.l->n * sizeof(value));
        if (b.l->n) memcpy(l->v + a.l->n, b.l->v, b.l->n * sizeof(value));
        l->n = total;
        return list_value(l);
    }
    if (op == OP_MUL && (a.type == V_STR || a.type == V_LIST) && is_num(b)) return repeat(J, n, a, b.i);
    if (op == OP_MUL && (b.type == V_STR || b.type == V_LIST) && is_num(a)) return repeat(J, n, b, a.i);
    if (op == OP_MOD && a.type == V_STR)
        fail_at(J, SQLM_UNSUPPORTED, n, "'%%' string formatting is not supported");
    static const char *const names[] = { "+", "-", "*", "/", "//", "%", "**" };
    fail_at(J, SQLM_ERROR, n, "unsupported operand types for %s: %s and %s", names[op], type_name(a), type_name(b));
}

static bool compare(jinja *J, const node *n, int op, value a, value b) {
    switch (op) {
    case OP_EQ: return val_eq(J, n, a, b);
    case OP_NE: return !val_eq(J, n, a, b);
    case OP_LT: return val_cmp(J, n, a, b) < 0;
    case OP_LE: return val_cmp(J, n, a, b) <= 0;
    case OP_GT: return val_cmp(J, n, a, b) > 0;
    case OP_GE: return val_cmp(J, n, a, b) >= 0;
    case OP_IN: return contains(J, n, a, b);
    default: return !contains(J, n, a, b);
    }
}

static int exec_body(jinja *J, node *n, scope *sc);

/* Run body with output captured into a string (macro calls, {% set %} blocks). */
static value capture(jinja *J, node *body, scope *sc) {
    size_t start = J->out->len;
    exec_body(J, body, sc);
    value s = mk_str(jstrndup(J, J->out->p ? J->out->p + start : "", J->out->len - start), J->out->len - start);
    J->out->len = start;
    if (J->out->p) J->out->p[start] = 0;
    return s;
}

static value call_macro(jinja *J, const node *n, macro *m, const args *a) {
    node *def = m->def;
    int n_params = 0;
    if (++J->mdepth > J->max_depth) fail_at(J, SQLM_RANGE, n, "macro calls nested deeper than %d", J->max_depth);
    for (node *p = def->c; p; p = p->next) n_params++;
    if (a->npos > n_params) fail_at(J, SQLM_ERROR, n, "macro '%s' takes %d arguments, got %d", def->name, n_params, a->npos);
    for (int k = 0; k < a->nkw; k++) {
        node *p = def->c;
        while (p && strcmp(p->name, a->kwn[k])) p = p->next;
        if (!p) fail_at(J, SQLM_ERROR, n, "macro '%s' has no argument '%s'", def->name, a->kwn[k]);
    }
    scope *ms = new_scope(J, m->closure);
    int i = 0;
    for (node *p = def->c; p; p = p->next, i++) {
        value v = arg(a, i, p->name, mk_undef(p->name));
        if (v.type == V_UNDEF && p->a) v = eval(J, p->a, ms);
        set_var(J, ms, p->name, v);
    }
    value r = capture(J, def->b, ms);
    J->mdepth--;
    return r;
}

static value eval_call(jinja *J, node *n, scope *sc) {
    args a;
    value callee, r;
    if (n->a->kind == N_ATTR) {
        value obj = eval(J, n->a->a, sc);
        eval_args(J, n->b, sc, &a);
        if (call_method(J, n, obj, n->a->name, &a, &r)) return r;
        callee = get_attr(J, n->a, obj, n->a->name);
        if (callee.type == V_UNDEF)
            fail_at(J, SQLM_ERROR, n, "%s has no method '%s'", type_name(obj), n->a->name);
    } else {
        callee = eval(J, n->a, sc);
        eval_args(J, n->b, sc, &a);
    }
    if (callee.type == V_MACRO) return call_macro(J, n, callee.m, &a);
    if (callee.type == V_FUNC) return call_function(J, n, (int)callee.i, &a);
    if (callee.type == V_UNDEF) fail_undef(J, n, callee);
    fail_at(J, SQLM_ERROR, n, "%s is not callable", type_name(callee));
}

static value eval(jinja *J, node *n, scope *sc) {
    value r, x;
    args a;
    tick(J, n);
    enter(J, n);
    switch (n->kind) {
    case N_LIT: r = n->v; break;
    case N_NAME: r = lookup(sc, n->name); break;
    case N_ATTR: r = get_attr(J, n, eval(J, n->a, sc), n->name); break;
    case N_INDEX:
        x = eval(J, n->a, sc);
        r = get_item(J, n, x, eval(J, n->b, sc));
        break;
    case N_SLICE: {
        value lo, hi, st;
        x = eval(J, n->a, sc);
        if (n->b) lo = eval(J, n->b, sc);
        if (n->c) hi = eval(J, n->c, sc);
        if (n->d) st = eval(J, n->d, sc);
        r = get_slice(J, n, x, n->b && !is_none(lo) ? &lo : NULL, n->c && !is_none(hi) ? &hi : NULL,
                      n->d && !is_none(st) ? &st : NULL);
        break;
    }
    case N_CALL: r = eval_call(J, n, sc); break;
    case N_FILTER:
        x = eval(J, n->a, sc);
        eval_args(J, n->b, sc, &a);
        r = apply_filter(J, n, n->name, x, &a);
        break;
    case N_TEST:
        x = eval(J, n->a, sc);
        eval_args(J, n->b, sc, &a);
        r = mk_bool(apply_test(J, n, n->name, x, &a) != (n->op == 1));
        break;
    case N_NEG: case N_POS:
        x = eval(J, n->a, sc);
        if (x.type == V_UNDEF) fail_undef(J, n, x);
        if (!is_num(x)) fail_at(J, SQLM_ERROR, n, "bad operand type for unary %c: %s", n->kind == N_NEG ? '-' : '+', type_name(x));
        if (n->kind == N_NEG && x.i == INT64_MIN) fail_at(J, SQLM_ERROR, n, "integer overflow");
        r = mk_int(n->kind == N_NEG ? -x.i : x.i);
        break;
    case N_NOT: r = mk_bool(!truth(eval(J, n->a, sc))); break;
    case N_AND: x = eval(J, n->a, sc); r = truth(x) ? eval(J, n->b, sc) : x; break;
    case N_OR: x = eval(J, n->a, sc); r = truth(x) ? x : eval(J, n->b, sc); break;
    case N_BIN:
        x = eval(J, n->a, sc);
        r = binop(J, n, n->op, x, eval(J, n->b, sc));
        break;
    case N_CMP:
        x = eval(J, n->a, sc);
        r = mk_bool(true);
        for (node *c = n->b; c; c = c->next) {
            value y = eval(J, c->a, sc);
            if (!compare(J, c, c->op, x, y)) { r = mk_bool(false); break; }
            x = y;
        }
        break;
    case N_COND:
        if (truth(eval(J, n->b, sc))) r = eval(J, n->a, sc);
        else r = n->c ? eval(J, n->c, sc) : mk_undef(NULL);
        break;
    case N_LIST: {
        list *l = new_list(J, 0);
        l->tuple = n->op == 1;
        for (node *c = n->b; c; c = c->next) list_push(J, l, eval(J, c, sc));
        r = list_value(l);
        break;
    }
    case N_DICT: {
        dict *d = new_dict(J);
        for (node *c = n->b; c; c = c->next) {
            x = eval(J, c->a, sc);
            dict_set(J, c, d, x, eval(J, c->b, sc));
        }
        r = dict_value(d, V_DICT);
        break;
    }
    default:
        fail_at(J, SQLM_ERROR, n, "internal error: bad expression node %d", n->kind);
    }
    leave(J);
    return r;
}

/* ------------------------------------------------------------- statements */

/* Bind loop or set targets: one name takes v, several unpack a list. */
static void bind(jinja *J, const node *targets, scope *sc, value v) {
    if (!targets->next) { set_var(J, sc, targets->name, v); return; }
    size_t want = 0;
    for (const node *t = targets; t; t = t->next) want++;
    if (v.type != V_LIST || v.l->n != want)
        fail_at(J, SQLM_ERROR, targets, "cannot unpack %s into %zu names", type_name(v), want);
    size_t i = 0;
    for (const node *t = targets; t; t = t->next) set_var(J, sc, t->name, v.l->v[i++]);
}

static int exec_for(jinja *J, node *n, scope *sc) {
    value *items;
    size_t count;
    value it = eval(J, n->a, sc);
    iter_items(J, n->a, it, &items, &count);
    scope *ls = new_scope(J, sc);
    if (n->d) {                          /* {% for x in xs if cond %}: filter first */
        value *kept = jalloc_array(J, count ? count : 1, sizeof(value));
        size_t k = 0;
        for (size_t i = 0; i < count; i++) {
            tick(J, n);
            bind(J, n->c, ls, items[i]);
            if (truth(eval(J, n->d, ls))) kept[k++] = items[i];
        }
        items = kept;
        count = k;
    }
    loop *lp = jalloc(J, sizeof *lp);
    lp->items = items;
    lp->n = count;
    lp->i = 0;
    value lv = { .type = V_LOOP };
    lv.lp = lp;
    set_var(J, ls, "loop", lv);
    for (size_t i = 0; i < count; i++) {
        tick(J, n);
        lp->i = i;
        bind(J, n->c, ls, items[i]);
        if (exec_body(J, n->b, ls) == FLOW_BREAK) break;
    }
    if (!count && n->e) return exec_body(J, n->e, sc);
    return FLOW_NONE;
}

static int exec_body(jinja *J, node *n, scope *sc) {
    int flow = FLOW_NONE;
    enter(J, n);
    for (; n && flow == FLOW_NONE; n = n->next) {
        tick(J, n);
        switch (n->kind) {
        case N_TEXT: emit(J, n, n->v.s.p, n->v.s.n); break;
        case N_PRINT: {
            value v = to_str(J, n, eval(J, n->a, sc));
            emit(J, n, v.s.p, v.s.n);
            break;
        }
        case N_IF: {
            node *branch = n->d;
            for (node *c = n; c; c = c->c)
                if (truth(eval(J, c->a, sc))) { branch = c->b; break; }
            flow = exec_body(J, branch, sc);
            break;
        }
        case N_FOR: flow = exec_for(J, n, sc); break;
        case N_SET: bind(J, n->c, sc, eval(J, n->a, sc)); break;
        case N_SET_ATTR: {
            value ns = lookup(sc, n->name);
            if (ns.type != V_NS)
                fail_at(J, SQLM_ERROR, n, "cannot set '%s.%s': '%s' is %s, not a namespace",
                        n->name, n->name2, n->name, type_name(ns));
            dict_set(J, n, ns.d, mk_cstr(n->name2), eval(J, n->a, sc));
            break;
        }
        case N_SET_BLOCK: set_var(J, sc, n->name, capture(J, n->b, sc)); break;
        case N_MACRO: {
            macro *m = jalloc(J, sizeof *m);
            m->def = n;
            m->closure = sc;
            value v = { .type = V_MACRO };
            v.m = m;
            set_var(J, sc, n->name, v);
            break;
        }
        case N_BREAK: flow = FLOW_BREAK; break;
        case N_CONTINUE: flow = FLOW_CONTINUE; break;
        case N_BLOCK: flow = exec_body(J, n->b, sc); break;
        default: fail_at(J, SQLM_ERROR, n, "internal error: bad statement node %d", n->kind);
        }
    }
    leave(J);
    return flow;
}

/* ------------------------------------------------------------- entry */

static value input_str(const char *s) { return s ? mk_cstr(s) : mk_none(); }

static void run(jinja *J, const chat_vars *v) {
    const char *stop;
    lex(J);
    node *body = parse_body(J, NULL, NULL, &stop);
    scope *g = J->globals = new_scope(J, NULL);
    list *msgs = new_list(J, v ? (size_t)MAX(v->n_msgs, 0) : 0);
    for (int i = 0; v && i < v->n_msgs; i++) {
        dict *d = new_dict(J);
        dict_set(J, NULL, d, mk_cstr("role"), input_str(v->msgs[i].role));
        dict_set(J, NULL, d, mk_cstr("content"), input_str(v->msgs[i].content));
        msgs->v[msgs->n++] = dict_value(d, V_DICT);
    }
    set_var(J, g, "messages", list_value(msgs));
    set_var(J, g, "add_generation_prompt", mk_bool(v && v->add_generation_prompt));
    set_var(J, g, "bos_token", mk_cstr(v && v->bos_token ? v->bos_token : ""));
    set_var(J, g, "eos_token", mk_cstr(v && v->eos_token ? v->eos_token : ""));
    for (int i = 0; v && i < v->n_extra; i++) {
        const jinja_var *x = &v->extra[i];
        value val = x->type == JINJA_BOOL ? mk_bool(x->i != 0) : x->type == JINJA_INT ? mk_int(x->i)
                  : x->type == JINJA_STR && x->s ? mk_cstr(x->s) : mk_none();
        set_var(J, g, jstrndup(J, x->name, strlen(x->name)), val);
    }
    exec_body(J, body, g);
}

int sqlm_jinja_render(const char *tmpl, size_t tmpl_len, const chat_vars *v, const jinja_limits *lim, buf *out) {
    size_t input = tmpl_len;
    for (int i = 0; v && i < v->n_msgs; i++) {
        if (v->msgs[i].role) input += strlen(v->msgs[i].role);
        if (v->msgs[i].content) input += strlen(v->msgs[i].content);
    }
    if (!tmpl) return sqlm_error(SQLM_ERROR, "template: no template");
    if (tmpl_len > MAX_TEMPLATE)
        return sqlm_error(SQLM_RANGE, "template: %zu bytes is over the %zu byte limit", tmpl_len, MAX_TEMPLATE);
    if (out->rc) return sqlm_error(out->rc, "template: output buffer is in an error state");
    jinja *J = calloc(1, sizeof *J);
    if (!J) return sqlm_error(SQLM_NOMEM, "template: out of memory");
    size_t scaled_out = input > SIZE_MAX / 4 ? SIZE_MAX / 2 : input * 2;
    size_t scaled_mem = input > SIZE_MAX / 32 ? SIZE_MAX / 2 : input * 16;
    J->max_output = lim && lim->max_output ? lim->max_output : DEF_OUTPUT + scaled_out;
    J->mem_max = lim && lim->max_memory ? lim->max_memory : DEF_MEMORY + scaled_mem;
    J->max_steps = lim && lim->max_steps > 0 ? lim->max_steps : DEF_STEPS;
    J->max_depth = lim && lim->max_depth > 0 ? lim->max_depth : DEF_DEPTH;
    J->src = tmpl;
    J->src_len = tmpl_len;
    J->out = out;
    J->out_base = out->len;
    int rc;
    if (setjmp(J->jb) == 0) {
        run(J, v);
        rc = SQLM_OK;
    } else {
        rc = J->rc;
        out->len = J->out_base;
        if (out->p) out->p[out->len] = 0;
    }
    arena_free(J);
    free(J);
    return rc;
}
