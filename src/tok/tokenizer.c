/*
 * tokenizer.c - text <-> token ids over a struct vocab, matching the reference
 * implementations id for id:
 *   VOCAB_SPM  SentencePiece-style: "▁" for spaces and a dummy prefix, then
 *              merges by score (SentencePiece / llama.cpp / llama2.c) or by
 *              rank (HF tokenizer.json BPE), unknown characters to <0xXX>
 *              byte pieces or <unk>.
 *   VOCAB_BPE  byte-level BPE (GPT-2 byte-to-unicode) after the split pattern
 *              of the family (v->pre), merges by rank.
 * Both match added/special tokens in the text first.  Merging uses a linked
 * list of symbols and a binary heap, O(n log n) per word.
 *
 * Not here: reading files (tok_json.c, spm_model.c, llama2c_tok.c), unigram
 * models, dropout, truncation/padding, chat templates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

enum { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_SMOLLM };

typedef struct mslot {         /* merge pair -> (rank, result) */
    uint64_t key;              /* left id << 32 | right id; 0 = empty (see mkey) */
    int32_t rank;
    int32_t out;
} mslot;

typedef struct tnode {         /* special-token trie node */
    int32_t child, sib;        /* first child, next sibling (-1: none) */
    int32_t id;                /* token ending here or -1 */
    uint8_t c;
} tnode;

struct tokenizer {
    const vocab *v;
    int32_t *pmap;             /* [pmask+1] piece -> id hash, -1 empty */
    uint32_t pmask;
    mslot *mmap;               /* [mmask+1] merges by rank, NULL if none */
    uint32_t mmask;
    int32_t byte_id[256];      /* SPM: <0xXX> piece; BPE: piece of the byte's char */
    int16_t cp_byte[324];      /* BPE decode: code point -> byte, -1 if none */
    int pre;                   /* PRE_* */
    bool ignore_merges;        /* v->ignore_merges, implied by the llama3 pattern */
    bool ws_split;             /* SPM by score: no piece has a space after a
                                  non-space, so text splits before such spaces */
    tnode *trie;               /* special tokens matched in text; [0] is the root */
    int32_t n_trie, cap_trie;
    uint8_t first[32];         /* bitmap of the first bytes of special tokens */
};

/* ---------------------------------------------------------------- hashing */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001B3ull);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        h = (h ^ x) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, p, n);
    h = (h ^ x) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    return x;
}

/* Id of the piece p[0..n), or -1.  The lowest id wins for duplicates. */
static int32_t piece_find(const tokenizer *t, const char *p, size_t n) {
    const vocab *v = t->v;
    for (uint32_t i = (uint32_t)hash_bytes(p, n) & t->pmask;; i = (i + 1) & t->pmask) {
        int32_t id = t->pmap[i];
        if (id < 0) return -1;
        if (v->tok_len[id] == n && memcmp(v->tok[id], p, n) == 0) return id;
    }
}

/* The key of pair (a, b); +1 keeps 0 free as the empty marker. */
static uint64_t mkey(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static const mslot *merge_find(const tokenizer *t, int32_t a, int32_t b) {
    uint64_t k = mkey(a, b);
    for (uint32_t i = (uint32_t)hash_u64(k) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->mmap[i].key == k) return &t->mmap[i];
        if (t->mmap[i].key == 0) return NULL;
    }
}

/* ------------------------------------------------------------ sqlm_tok_init */

/* Can an SPM merge produce token id?  (SentencePiece never yields control,
 * unknown or byte pieces by merging.) */
static bool spm_mergeable(const vocab *v, int32_t id) {
    int a = v->attr[id];
    return a == TOK_NORMAL || a == TOK_USER || a == TOK_UNUSED;
}


/* GPT-2's byte-to-unicode map: printable Latin-1 bytes map to themselves,
 * the other 68 bytes to U+0100.. in byte order. */
static uint32_t byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int k = 0; k < b; k++)
        if (!((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF)))
            n++;
    return 256 + (uint32_t)n;
}

static int trie_node(tokenizer *t, uint8_t c) {
    if (t->n_trie == t->cap_trie) {
        int32_t cap = t->cap_trie ? t->cap_trie * 2 : 256;
        tnode *p = realloc(t->trie, (size_t)cap * sizeof *p);
        if (!p) return -1;
        t->trie = p;
        t->cap_trie = cap;
    }
    t->trie[t->n_trie] = (tnode){-1, -1, -1, c};
    return t->n_trie++;
}

static int trie_add(tokenizer *t, const char *p, size_t n, int32_t id) {
    if (n == 0) return SQLM_OK;
    int32_t node = 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t c = (uint8_t)p[k];
        int32_t ch = t->trie[node].child;
        while (ch >= 0 && t->trie[ch].c != c) ch = t->trie[ch].sib;
        if (ch < 0) {
            if ((ch = trie_node(t, c)) < 0) return SQLM_NOMEM;
            t->trie[ch].sib = t->trie[node].child;
            t->trie[node].child = ch;
        }
        node = ch;
    }
    if (t->trie[node].id < 0) t->trie[node].id = id;
    t->first[(uint8_t)p[0] >> 3] |= (uint8_t)(1u << ((uint8_t)p[0] & 7));
    return SQLM_OK;
}

/* Is token id matched as a whole in input text? */
static bool matched_in_text(const vocab *v, int32_t id) {
    int a = v->attr[id];
    if (a == TOK_USER) return true;
    return v->special_in_text && (a == TOK_CONTROL || a == TOK_UNKNOWN);
}

/* Append the SPM normal form of p[0..n) ("▁" for spaces) to b. */
static void spm_escape(const vocab *v, const char *p, size_t n, buf *b) {
    if (!v->escape_spaces) { sqlm_buf_append(b, p, n); return; }
    size_t a = 0;
    for (size_t k = 0; k < n; k++) {
        if (p[k] != ' ') continue;
        sqlm_buf_append(b, p + a, k - a);
        sqlm_buf_puts(b, "\xE2\x96\x81");
        a = k + 1;
    }
    sqlm_buf_append(b, p + a, n - a);
}

static int build_specials(tokenizer *t) {
    const vocab *v = t->v;
    if (trie_node(t, 0) < 0) return SQLM_NOMEM;
    buf b;
    sqlm_buf_init(&b);
    for (int32_t id = 0; id < v->n; id++) {
        if (!matched_in_text(v, id) || v->tok_len[id] == 0) continue;
        const char *p = v->tok[id];
        size_t n = v->tok_len[id];
        if (v->type == VOCAB_SPM && v->special_normalized) {
            sqlm_buf_reset(&b);
            if (v->add_space_prefix) sqlm_buf_puts(&b, v->escape_spaces ? "\xE2\x96\x81" : " ");
            spm_escape(v, p, n, &b);
            if (b.rc) break;
            p = b.p;
            n = b.len;
        }
        if (trie_add(t, p, n, id)) { b.rc = SQLM_NOMEM; break; }
    }
    int rc = b.rc;
    sqlm_buf_free(&b);
    return rc;
}

static int build_merges(tokenizer *t) {
    const vocab *v = t->v;
    uint32_t size = 16;   /* open addressing at most 3/4 full */
    while (size / 4 * 3 < (uint32_t)v->n_merges) size *= 2;
    t->mmap = calloc(size, sizeof *t->mmap);
    if (!t->mmap) return sqlm_error(SQLM_NOMEM, "tokenizer: out of memory for %d merges",
                                    v->n_merges);
    t->mmask = size - 1;
    buf cat;
    sqlm_buf_init(&cat);
    for (int32_t r = 0; r < v->n_merges; r++) {
        const char *m = v->merges[r];
        if (!m) continue;
        size_t n = strlen(m);
        /* "left right": the split is the first space with both halves in the vocab */
        for (size_t k = 0; k < n; k++) {
            if (m[k] != ' ') continue;
            int32_t a = piece_find(t, m, k), b = piece_find(t, m + k + 1, n - k - 1);
            if (a < 0 || b < 0) continue;
            sqlm_buf_reset(&cat);
            sqlm_buf_append(&cat, m, k);
            sqlm_buf_append(&cat, m + k + 1, n - k - 1);
            if (cat.rc) { sqlm_buf_free(&cat); return sqlm_error(SQLM_NOMEM, "tokenizer: out of memory"); }
            int32_t out = piece_find(t, cat.p, cat.len);
            if (out < 0) break;
            uint64_t key = mkey(a, b);
            uint32_t i = (uint32_t)hash_u64(key) & t->mmask;
            while (t->mmap[i].key != 0 && t->mmap[i].key != key) i = (i + 1) & t->mmask;
            if (t->mmap[i].key == 0) t->mmap[i] = (mslot){key, r, out};
            break;
        }
    }
    sqlm_buf_free(&cat);
    return SQLM_OK;
}

static int pre_from_name(const char *name) {
    static const struct { const char *name; int pre; } names[] = {
        {"gpt2", PRE_GPT2}, {"gpt-2", PRE_GPT2}, {"default", PRE_GPT2},
        {"llama3", PRE_LLAMA3}, {"llama-bpe", PRE_LLAMA3},
        {"qwen2", PRE_QWEN2}, {"qwen3", PRE_QWEN2},
        {"smollm", PRE_SMOLLM},
    };
    if (!name) return PRE_GPT2;
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcmp(name, names[i].name) == 0) return names[i].pre;
    return -1;
}

int sqlm_tok_init(tokenizer **out, const vocab *v) {
    *out = NULL;
    if (!v || v->n <= 0 || !v->tok || !v->tok_len || !v->attr)
        return sqlm_error(SQLM_FORMAT, "tokenizer: empty vocabulary");
    if (v->type != VOCAB_SPM && v->type != VOCAB_BPE)
        return sqlm_error(SQLM_UNSUPPORTED, "tokenizer: vocabulary type %d not supported",
                          v->type);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return sqlm_error(SQLM_NOMEM, "tokenizer: out of memory");
    t->v = v;
    int rc = SQLM_NOMEM;
    if (v->type == VOCAB_BPE && (t->pre = pre_from_name(v->pre)) < 0) {
        rc = sqlm_error(SQLM_UNSUPPORTED, "tokenizer: pre-tokenizer \"%s\" not supported",
                        v->pre);
        goto fail;
    }
    /* llama.cpp's GGUF metadata has no ignore_merges: it goes with llama3 */
    t->ignore_merges = v->ignore_merges || (v->type == VOCAB_BPE && t->pre == PRE_LLAMA3);
    uint32_t size = 16;   /* at most 3/4 full */
    while (size / 4 * 3 < (uint32_t)v->n) size *= 2;
    t->pmap = malloc(size * sizeof *t->pmap);
    if (!t->pmap) goto fail;
    memset(t->pmap, 0xFF, size * sizeof *t->pmap);
    t->pmask = size - 1;
    for (int32_t id = 0; id < v->n; id++) {
        if (!v->tok[id]) continue;
        uint32_t i = (uint32_t)hash_bytes(v->tok[id], v->tok_len[id]) & t->pmask;
        bool dup = false;
        for (; t->pmap[i] >= 0; i = (i + 1) & t->pmask) {
            int32_t o = t->pmap[i];
            if (v->tok_len[o] == v->tok_len[id] && memcmp(v->tok[o], v->tok[id], v->tok_len[id]) == 0) {
                dup = true;
                break;
            }
        }
        if (!dup) t->pmap[i] = id;
    }
    char tmp[8];
    for (int b = 0; b < 256; b++) {
        int32_t id;
        if (v->type == VOCAB_SPM) {
            snprintf(tmp, sizeof tmp, "<0x%02X>", b);
            id = piece_find(t, tmp, 6);
            if (id >= 0 && v->attr[id] != TOK_BYTE) id = -1;
        } else {
            id = piece_find(t, tmp, (size_t)sqlm_tok_utf8_put(byte_to_cp(b), tmp));
        }
        t->byte_id[b] = id;
    }
    for (size_t c = 0; c < ARRAY_LEN(t->cp_byte); c++) t->cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) t->cp_byte[byte_to_cp(b)] = (int16_t)b;
    if ((v->type == VOCAB_BPE || v->merges_by_rank) && (rc = build_merges(t))) goto fail;
    if (v->type == VOCAB_SPM && !v->merges_by_rank) {
        const char *sp = v->escape_spaces ? "\xE2\x96\x81" : " ";
        size_t sl = strlen(sp);
        t->ws_split = true;
        for (int32_t id = 0; id < v->n && t->ws_split; id++) {
            if (!spm_mergeable(v, id)) continue;
            const char *p = v->tok[id];
            for (size_t k = sl; k + sl <= v->tok_len[id]; k++)
                if (memcmp(p + k, sp, sl) == 0 && memcmp(p + k - sl, sp, sl) != 0) {
                    t->ws_split = false;
                    break;
                }
        }
    }
    if (build_specials(t)) { rc = SQLM_NOMEM; goto fail; }
    *out = t;
    return SQLM_OK;
fail:
    if (rc == SQLM_NOMEM) sqlm_error(SQLM_NOMEM, "tokenizer: out of memory");
    sqlm_tok_free(t);
    return rc;
}

void sqlm_tok_drop_encoder(tokenizer *t) {
    free(t->pmap);
    free(t->mmap);
    free(t->trie);
    t->pmap = NULL, t->mmap = NULL, t->trie = NULL;
    t->n_trie = t->cap_trie = 0;
}

void sqlm_tok_free(tokenizer *t) {
    if (!t) return;
    sqlm_tok_drop_encoder(t);
    free(t);
}

/* ------------------------------------------------------ merge machinery */

typedef struct idvec { int32_t *p; size_t n, cap; bool oom; } idvec;

static void id_push(idvec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->p, cap * sizeof *p);
        if (!p) { o->oom = true; return; }
        o->p = p;
        o->cap = cap;
    }
    o->p[o->n++] = id;
}

typedef struct sym {
    int32_t prev, next;        /* neighbours, -1 at the ends */
    uint32_t start, len;       /* bytes of the text; len 0 once merged away */
    int32_t id;                /* rank mode: current token */
} sym;

typedef struct cand {          /* a possible merge of sym l with its right neighbour r */
    float score;               /* score mode: higher first */
    int32_t rank;              /* rank mode: lower first */
    int32_t l, r, id;
    uint32_t llen, rlen;       /* lengths when queued: stale if they changed */
} cand;

/* Per-call scratch space, grown as needed and reused across words. */
typedef struct work {
    sym *s;
    size_t ns, cap_s;
    cand *h;
    size_t nh, cap_h;
    bool by_rank;
    bool oom;
    buf tmp;
} work;

static bool cand_better(const work *w, const cand *a, const cand *b) {
    if (w->by_rank) {
        if (a->rank != b->rank) return a->rank < b->rank;
    } else if (a->score != b->score) {
        return a->score > b->score;
    }
    return a->l < b->l;
}

static void heap_push(work *w, const cand *c) {
    if (w->nh == w->cap_h) {
        size_t cap = w->cap_h ? w->cap_h * 2 : 64;
        cand *h = realloc(w->h, cap * sizeof *h);
        if (!h) { w->oom = true; return; }
        w->h = h;
        w->cap_h = cap;
    }
    size_t i = w->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_better(w, c, &w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = *c;
}

static cand heap_pop(work *w) {
    cand top = w->h[0], last = w->h[--w->nh];
    size_t i = 0, n = w->nh;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_better(w, &w->h[c + 1], &w->h[c])) c++;
        if (!cand_better(w, &w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (n) w->h[i] = last;
    return top;
}

static void sym_push(work *w, uint32_t start, uint32_t len, int32_t id) {
    if (w->ns == w->cap_s) {
        size_t cap = w->cap_s ? w->cap_s * 2 : 64;
        sym *s = realloc(w->s, cap * sizeof *s);
        if (!s) { w->oom = true; return; }
        w->s = s;
        w->cap_s = cap;
    }
    int32_t i = (int32_t)w->ns++;
    w->s[i] = (sym){i - 1, -1, start, len, id};
    if (i > 0) w->s[i - 1].next = i;
}

/* Queue the merge of symbol l with its right neighbour, if there is one. */
static void try_pair(const tokenizer *t, work *w, const char *text, int32_t l) {
    if (l < 0) return;
    int32_t r = w->s[l].next;
    if (r < 0) return;
    cand c = {0};
    if (w->by_rank) {
        const mslot *m = merge_find(t, w->s[l].id, w->s[r].id);
        if (!m) return;
        c.rank = m->rank;
        c.id = m->out;
    } else {
        int32_t id = piece_find(t, text + w->s[l].start, w->s[l].len + w->s[r].len);
        if (id < 0 || !spm_mergeable(t->v, id)) return;
        c.score = t->v->score[id];
        c.id = id;
    }
    c.l = l;
    c.r = r;
    c.llen = w->s[l].len;
    c.rlen = w->s[r].len;
    heap_push(w, &c);
}

/* Merge the symbols in w->s until no queued pair applies. */
static void merge_all(const tokenizer *t, work *w, const char *text) {
    w->nh = 0;
    for (int32_t i = 0; i + 1 < (int32_t)w->ns; i++) try_pair(t, w, text, i);
    while (w->nh > 0 && !w->oom) {
        cand c = heap_pop(w);
        sym *l = &w->s[c.l], *r = &w->s[c.r];
        if (l->len != c.llen || r->len != c.rlen || l->next != c.r) continue;
        l->len += r->len;
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0) w->s[r->next].prev = c.l;
        r->len = 0;
        try_pair(t, w, text, l->prev);
        try_pair(t, w, text, c.l);
    }
}

/* Byte length of the UTF-8 character starting with c, bounded by the bytes
 * left and cut at the first byte that is not a continuation byte. */
static size_t char_len(const char *s, size_t left) {
    unsigned char c = (unsigned char)s[0];
    size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (n > left) n = left;
    for (size_t k = 1; k < n; k++)
        if (((unsigned char)s[k] & 0xC0) != 0x80) return k;
    return n;
}

/* --------------------------------------------------------------- SPM */

/* Output the tokens of an unknown character: byte pieces if all exist, else
 * <unk> (fused with a preceding <unk> of this fragment when fuse_unk). */
static void spm_unknown(const tokenizer *t, const char *p, size_t n, idvec *o, bool *in_unk) {
    const vocab *v = t->v;
    bool bytes = v->byte_fallback;
    for (size_t k = 0; bytes && k < n; k++) bytes = t->byte_id[(unsigned char)p[k]] >= 0;
    if (bytes) {
        for (size_t k = 0; k < n; k++) id_push(o, t->byte_id[(unsigned char)p[k]]);
        *in_unk = false;
        return;
    }
    if (v->unk < 0) return;   /* nothing to emit: the character is dropped */
    if (!(v->fuse_unk && *in_unk)) id_push(o, v->unk);
    *in_unk = true;
}

/* Tokenize one normalised fragment (spaces already "▁", prefix added). */
static void spm_fragment(const tokenizer *t, work *w, const char *s, size_t n, idvec *o) {
    const vocab *v = t->v;
    bool in_unk = false;
    w->ns = 0;
    w->by_rank = v->merges_by_rank;
    if (!w->by_rank) {
        /* Chunks that no piece can span are merged independently (much
         * faster on long text: the heap stays small and in cache). */
        const char *sp = v->escape_spaces ? "\xE2\x96\x81" : " ";
        size_t sl = strlen(sp);
        for (size_t a = 0; a < n && !w->oom;) {
            size_t b = n;
            if (t->ws_split) {
                for (b = a + 1; b < n; b++)
                    if (b >= sl && b + sl <= n && memcmp(s + b, sp, sl) == 0 &&
                        memcmp(s + b - sl, sp, sl) != 0)
                        break;
            }
            const char *c = s + a;
            w->ns = 0;
            for (size_t k = 0; k < b - a;) {
                size_t cl = char_len(c + k, b - a - k);
                sym_push(w, (uint32_t)k, (uint32_t)cl, -1);
                k += cl;
            }
            if (w->oom) return;
            merge_all(t, w, c);
            for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) {
                const sym *y = &w->s[i];
                int32_t id = piece_find(t, c + y->start, y->len);
                if (id >= 0 && spm_mergeable(v, id)) {
                    id_push(o, id);
                    in_unk = false;
                } else {
                    spm_unknown(t, c + y->start, y->len, o, &in_unk);
                }
            }
            a = b;
        }
        return;
    }
    /* By rank (HF BPE): unknown characters become symbols up front. */
    for (size_t k = 0; k < n;) {
        size_t cl = char_len(s + k, n - k);
        int32_t id = piece_find(t, s + k, cl);
        if (id >= 0) {
            sym_push(w, (uint32_t)k, (uint32_t)cl, id);
            in_unk = false;
        } else {
            bool bytes = v->byte_fallback;
            for (size_t j = 0; bytes && j < cl; j++) bytes = t->byte_id[(unsigned char)s[k + j]] >= 0;
            if (bytes) {
                for (size_t j = 0; j < cl; j++)
                    sym_push(w, (uint32_t)(k + j), 1, t->byte_id[(unsigned char)s[k + j]]);
                in_unk = false;
            } else if (v->unk >= 0) {
                if (v->fuse_unk && in_unk && w->ns > 0) w->s[w->ns - 1].len += (uint32_t)cl;
                else sym_push(w, (uint32_t)k, (uint32_t)cl, v->unk);
                in_unk = true;
            }
        }
        k += cl;
    }
    merge_all(t, w, s);
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) id_push(o, w->s[i].id);
}

/* Longest special token at s[pos..len); returns its length (0: none). */
static size_t special_at(const tokenizer *t, const char *s, size_t len, size_t pos, int32_t *id) {
    uint8_t c0 = (uint8_t)s[pos];
    if (!(t->first[c0 >> 3] & (1u << (c0 & 7)))) return 0;
    size_t best = 0;
    int32_t node = 0;
    for (size_t k = pos; k < len; k++) {
        uint8_t c = (uint8_t)s[k];
        int32_t ch = t->trie[node].child;
        while (ch >= 0 && t->trie[ch].c != c) ch = t->trie[ch].sib;
        if (ch < 0) break;
        node = ch;
        if (t->trie[node].id >= 0) {
            best = k - pos + 1;
            *id = t->trie[node].id;
        }
    }
    return best;
}

/* Next special token at or after pos: its start (len if none), length, id. */
static size_t special_next(const tokenizer *t, const char *s, size_t len, size_t pos,
                           size_t *mlen, int32_t *id) {
    *mlen = 0;
    if (t->n_trie <= 1) return len;
    for (size_t k = pos; k < len; k++)
        if ((*mlen = special_at(t, s, len, k, id)) > 0) return k;
    return len;
}

static void spm_encode(const tokenizer *t, work *w, const char *text, size_t len, idvec *o) {
    const vocab *v = t->v;
    const char *prefix = v->escape_spaces ? "\xE2\x96\x81" : " ";
    buf *b = &w->tmp;
    size_t mlen;
    int32_t id;
    if (len == 0) return;
    if (v->special_normalized) {
        /* HF: normalise the whole text, then find the normalised specials. */
        sqlm_buf_reset(b);
        if (v->add_space_prefix) sqlm_buf_puts(b, prefix);
        spm_escape(v, text, len, b);
        if (b->rc) { w->oom = true; return; }
        for (size_t pos = 0; pos < b->len;) {
            size_t at = special_next(t, b->p, b->len, pos, &mlen, &id);
            if (at > pos) spm_fragment(t, w, b->p + pos, at - pos, o);
            if (mlen) id_push(o, id);
            pos = at + mlen;
        }
        return;
    }
    /* llama.cpp: specials on the raw text; the prefix starts the text and
     * follows every special token. */
    bool after_special = true;
    for (size_t pos = 0; pos < len;) {
        size_t at = special_next(t, text, len, pos, &mlen, &id);
        if (at > pos) {
            sqlm_buf_reset(b);
            if (v->add_space_prefix && after_special) sqlm_buf_puts(b, prefix);
            spm_escape(v, text + pos, at - pos, b);
            if (b->rc) { w->oom = true; return; }
            spm_fragment(t, w, b->p, b->len, o);
            after_special = false;
        }
        if (mlen) {
            id_push(o, id);
            after_special = true;
        }
        pos = at + mlen;
    }
}

/* -------------------------------------------------------- pre-tokenizers */

/*
 * The split patterns, written out as code (leftmost alternative wins, each
 * greedy; \s is White_Space, \p{L} letters, \p{N} numbers):
 *   gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2:  the same with \p{N} instead of \p{N}{1,3}
 *   smollm: every \p{N} character alone (Digits, individual_digits), gpt2 on
 *           the text between them
 * Each function returns the end of the pre-token that starts at i < len.
 */
typedef struct uch { uint32_t cp; int cat; size_t n; } uch;

static inline void uch_at(const char *s, size_t len, size_t i, uch *c) {
    unsigned char b = (unsigned char)s[i];
    if (b < 0x80) {
        c->cp = b;
        c->n = 1;
        c->cat = sqlm_tok_ucat(b);
        return;
    }
    size_t p = i;
    c->cp = sqlm_tok_utf8_next(s, len, &p);
    c->n = p - i;
    c->cat = sqlm_tok_ucat(c->cp);
}

/* Length of a contraction ('s 't 're 've 'm 'll 'd) at s[i] == '\'', or 0. */
static size_t contraction(const char *s, size_t len, size_t i, bool nocase) {
    static const char *const forms[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (size_t f = 0; f < ARRAY_LEN(forms); f++) {
        size_t n = strlen(forms[f]), k;
        if (i + 1 + n > len) continue;
        for (k = 0; k < n; k++) {
            char c = s[i + 1 + k];
            if (nocase && c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if (c != forms[f][k]) break;
        }
        if (k == n) return n + 1;
    }
    return 0;
}

/* End of the run of characters of category cat starting at i (max chars). */
static size_t run_of(const char *s, size_t len, size_t i, int cat, size_t max) {
    uch c;
    for (size_t k = 0; i < len && k < max; k++) {
        uch_at(s, len, i, &c);
        if (c.cat != cat) break;
        i += c.n;
    }
    return i;
}

/* A white-space run at i: \s+(?!\S) keeps its last character back when a
 * non-space follows and the run is longer than one; \s+ takes it all. */
static size_t space_run(const char *s, size_t len, size_t i) {
    uch c;
    size_t last = i, j = i, count = 0;
    while (j < len) {
        uch_at(s, len, j, &c);
        if (c.cat != UCAT_SPACE) break;
        last = j;
        j += c.n;
        count++;
    }
    if (j == len || count < 2) return j;
    return last;
}

static size_t pre_gpt2(const char *s, size_t len, size_t i) {
    uch c, d;
    uch_at(s, len, i, &c);
    if (c.cp == '\'') {
        size_t m = contraction(s, len, i, false);
        if (m) return i + m;
    }
    size_t j = i;
    d = c;
    if (c.cp == ' ' && i + 1 < len) {
        uch_at(s, len, i + 1, &d);
        j = i + 1;
    }
    if (d.cat != UCAT_SPACE) return run_of(s, len, j, d.cat, SIZE_MAX);
    return space_run(s, len, i);
}

static size_t pre_llama3(const char *s, size_t len, size_t i, size_t max_digits) {
    uch c, d;
    uch_at(s, len, i, &c);
    if (c.cp == '\'') {
        size_t m = contraction(s, len, i, true);
        if (m) return i + m;
    }
    if (c.cat == UCAT_LETTER) return run_of(s, len, i, UCAT_LETTER, SIZE_MAX);
    if (c.cat != UCAT_NUMBER && c.cp != '\r' && c.cp != '\n' && i + c.n < len) {
        uch_at(s, len, i + c.n, &d);
        if (d.cat == UCAT_LETTER) return run_of(s, len, i + c.n, UCAT_LETTER, SIZE_MAX);
    }
    if (c.cat == UCAT_NUMBER) return run_of(s, len, i, UCAT_NUMBER, max_digits);
    size_t j = i;
    d = c;
    if (c.cp == ' ' && i + 1 < len) {
        uch_at(s, len, i + 1, &d);
        j = i + 1;
    }
    if (d.cat == UCAT_OTHER) {
        j = run_of(s, len, j, UCAT_OTHER, SIZE_MAX);
        while (j < len && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* c is white space: \s*[\r\n]+ ends after the run's last \r or \n */
    size_t k = i, nl_end = 0;
    while (k < len) {
        uch_at(s, len, k, &d);
        if (d.cat != UCAT_SPACE) break;
        k += d.n;
        if (d.cp == '\r' || d.cp == '\n') nl_end = k;
    }
    if (nl_end) return nl_end;
    return space_run(s, len, i);
}

/*
 * End of the pre-token of pattern pre that starts at i < len.  *seg carries
 * the end of the current digit-free segment for smollm between calls over
 * one text (start it at 0).
 */
static size_t pretok_next(int pre, const char *s, size_t len, size_t i, size_t *seg) {
    switch (pre) {
    case PRE_LLAMA3: return pre_llama3(s, len, i, 3);
    case PRE_QWEN2: return pre_llama3(s, len, i, 1);
    case PRE_SMOLLM: {
        uch c;
        if (i >= *seg) {
            uch_at(s, len, i, &c);
            if (c.cat == UCAT_NUMBER) return i + c.n;
            size_t end = i;
            while (end < len) {
                uch_at(s, len, end, &c);
                if (c.cat == UCAT_NUMBER) break;
                end += c.n;
            }
            *seg = end;
        }
        return pre_gpt2(s, *seg, i);
    }
    default: return pre_gpt2(s, len, i);
    }
}

/* --------------------------------------------------------- byte-level BPE */

static void bpe_word(const tokenizer *t, work *w, const char *p, size_t n, idvec *o) {
    const vocab *v = t->v;
    if (n == 0) return;
    if (t->ignore_merges && n > 1) {
        buf *b = &w->tmp;
        char tmp[4];
        sqlm_buf_reset(b);
        for (size_t k = 0; k < n; k++)
            sqlm_buf_append(b, tmp, (size_t)sqlm_tok_utf8_put(byte_to_cp((unsigned char)p[k]), tmp));
        if (b->rc) { w->oom = true; return; }
        int32_t id = piece_find(t, b->p, b->len);
        if (id >= 0) { id_push(o, id); return; }
    }
    w->ns = 0;
    w->by_rank = true;
    for (size_t k = 0; k < n; k++) {
        int32_t id = t->byte_id[(unsigned char)p[k]];
        if (id < 0) id = v->unk;
        if (id >= 0) sym_push(w, (uint32_t)k, 1, id);
    }
    if (w->ns > 1) merge_all(t, w, p);
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) id_push(o, w->s[i].id);
}

/* Pre-tokenize one fragment of plain (already normalised) text and BPE it. */
static void bpe_fragment(const tokenizer *t, work *w, const char *s, size_t len, idvec *o) {
    size_t seg = 0;
    for (size_t i = 0; i < len && !w->oom;) {
        size_t e = pretok_next(t->pre, s, len, i, &seg);
        bpe_word(t, w, s + i, e - i, o);
        i = e;
    }
}

static void bpe_encode(const tokenizer *t, work *w, const char *text, size_t len, idvec *o) {
    buf norm;
    sqlm_buf_init(&norm);
    size_t mlen;
    int32_t id;
    for (size_t pos = 0; pos < len && !w->oom;) {
        size_t at = special_next(t, text, len, pos, &mlen, &id);
        if (at > pos) {
            if (t->v->nfc) {
                sqlm_buf_reset(&norm);
                sqlm_tok_nfc(text + pos, at - pos, &norm);
                if (norm.rc) { w->oom = true; break; }
                bpe_fragment(t, w, norm.p, norm.len, o);
            } else {
                bpe_fragment(t, w, text + pos, at - pos, o);
            }
        }
        if (mlen) id_push(o, id);
        pos = at + mlen;
    }
    sqlm_buf_free(&norm);
}

/* ---------------------------------------------------------- public API */

int sqlm_tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
               int32_t **ids, int32_t *n_ids) {
    const vocab *v = t->v;
    *ids = NULL;
    *n_ids = 0;
    if (len > (size_t)INT32_MAX / 2)
        return sqlm_error(SQLM_RANGE, "tokenizer: input of %zu bytes is too long", len);
    if (!text && len) return sqlm_error(SQLM_ERROR, "tokenizer: NULL text");
    if (!t->pmap) return sqlm_error(SQLM_ERROR, "tokenizer: encoder released (sqlm_tok_drop_encoder)");
    idvec o = {0};
    work w = {0};
    sqlm_buf_init(&w.tmp);
    if (add_special && v->add_bos && v->bos >= 0) id_push(&o, v->bos);
    if (v->type == VOCAB_BPE) bpe_encode(t, &w, text, len, &o);
    else spm_encode(t, &w, text, len, &o);
    if (add_special && v->add_eos && v->eos >= 0) id_push(&o, v->eos);
    free(w.s);
    free(w.h);
    sqlm_buf_free(&w.tmp);
    if (o.oom || w.oom) {
        free(o.p);
        return sqlm_error(SQLM_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    }
    if (o.n == 0) {
        free(o.p);
        o.p = malloc(sizeof *o.p);   /* a valid (empty) array for the caller */
        if (!o.p) return sqlm_error(SQLM_NOMEM, "tokenizer: out of memory");
    }
    *ids = o.p;
    *n_ids = (int32_t)o.n;
    return SQLM_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int sqlm_tok_decode(const tokenizer *t, int32_t prev, int32_t id, buf *out) {
    const vocab *v = t->v;
    if (id < 0 || id >= v->n)
        return sqlm_error(SQLM_RANGE, "tokenizer: token id %d outside vocabulary of %d", id, v->n);
    const char *p = v->tok[id] ? v->tok[id] : "";
    size_t n = v->tok_len[id];
    int a = v->attr[id];
    size_t start = out->len;
    if (a == TOK_CONTROL || a == TOK_UNKNOWN) {
        sqlm_buf_append(out, p, n);
    } else if (v->type == VOCAB_BPE) {
        if (a == TOK_USER) {
            sqlm_buf_append(out, p, n);
        } else {
            /* Map each character back to its byte; a piece with a character
             * outside the map is emitted as is (as HF's ByteLevel decoder). */
            size_t pos = 0;
            bool raw = false;
            while (pos < n && !raw) {
                uint32_t cp = sqlm_tok_utf8_next(p, n, &pos);
                if (cp >= ARRAY_LEN(t->cp_byte) || t->cp_byte[cp] < 0) raw = true;
                else sqlm_buf_putc(out, (char)t->cp_byte[cp]);
            }
            if (raw) {
                out->len = start;
                if (out->p) out->p[start] = 0;
                sqlm_buf_append(out, p, n);
            }
        }
    } else if (a == TOK_BYTE && n == 6 && hexval(p[3]) >= 0 && hexval(p[4]) >= 0) {
        sqlm_buf_putc(out, (char)(hexval(p[3]) * 16 + hexval(p[4])));
    } else {
        bool drop = v->add_space_prefix && (prev < 0 || prev == v->bos);
        size_t k = 0;
        while (k < n) {
            if (v->escape_spaces && n - k >= 3 && memcmp(p + k, "\xE2\x96\x81", 3) == 0) {
                if (!drop) sqlm_buf_putc(out, ' ');
                k += 3;
            } else if (!v->escape_spaces && p[k] == ' ') {
                if (!drop) sqlm_buf_putc(out, ' ');
                k++;
            } else {
                sqlm_buf_putc(out, p[k]);
                k++;
            }
            drop = false;
        }
    }
    if (out->rc) return sqlm_error(SQLM_NOMEM, "tokenizer: out of memory decoding");
    return SQLM_OK;
}
