/*
 * util.h - what every layer of libsqlm stands on: errors, growable buffers,
 * memory and time readings, the thread pool and the tensor element types.
 *
 * Errors: internal functions return an SQLM_* code and record a message with
 * sqlm_error() (thread-local, read back with sqlm_errmsg()).  The library
 * never exits or prints: notes go through the log callback of include/sqlm.h.
 */
#ifndef SQLM_UTIL_H
#define SQLM_UTIL_H



#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../include/sqlm.h"


#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- errors */

/* Record a printf-style message for this thread and return rc. */
int sqlm_error(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: " and return rc (adds context). */
int sqlm_error_prefix(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A note for the log callback of sqlm_set_log() (src/api/log.c); dropped when none is set. */
void sqlm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------ util/buf.c */

/* Growable byte/text buffer with a sticky error (sqlite3_str). */
typedef struct buf {
    char *p;       /* NUL-terminated contents (may hold binary bytes) */
    size_t len;    /* bytes used, excluding the NUL */
    size_t cap;    /* bytes allocated */
    int rc;        /* SQLM_OK or the first error (SQLM_NOMEM) */
} buf;

void sqlm_buf_init(buf *b);
void sqlm_buf_free(buf *b);
void sqlm_buf_reset(buf *b);                       /* len = 0, keeps memory */
void sqlm_buf_append(buf *b, const void *p, size_t n);
void sqlm_buf_puts(buf *b, const char *s);
void sqlm_buf_putc(buf *b, char c);
void sqlm_buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sqlm_buf_vappendf(buf *b, const char *fmt, va_list ap);
char *sqlm_buf_detach(buf *b);                     /* caller frees; buf is reset */

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

void *sqlm_xmalloc_checked(size_t n);  /* malloc that records SQLM_NOMEM on failure */
char *sqlm_strdup(const char *s);
double sqlm_now(void);            /* monotonic seconds */

/* ------------------------------------------------------------ util/mem.c */

/* "256M", "1.5G", "512MiB", "1073741824": bytes (K/M/G/T are powers of 1024). */
bool sqlm_parse_size(const char *s, size_t *out);
size_t sqlm_rss(void);            /* resident bytes now (VmRSS) */
size_t sqlm_peak_rss(void);       /* most resident bytes so far (VmHWM) */
void sqlm_heap_trim(void);        /* hand the heap's free pages back to the kernel */
size_t sqlm_cgroup_limit(void);   /* this process's cgroup memory limit, 0 = none */
size_t sqlm_mem_available(void);  /* MemAvailable of /proc/meminfo */
uint64_t sqlm_io_read_bytes(void);/* bytes this process caused to be read from storage */
double sqlm_thread_cpu(void);     /* CPU seconds of the calling thread */
double sqlm_median(double *v, int n); /* median of n > 0 values (sorts v) */
/* ----------------------------------------------------------- util/pool.c */

/*
 * A pool of n threads: the caller and n - 1 workers.  sqlm_pool_run() runs
 * fn(ctx, ith, n) on every one of them (the caller is ith 0) and returns when
 * all are done; jobs must not call SQLite.  A pool of 1 (or NULL) runs fn on
 * the caller alone, and so may any job (fn(ctx, 0, 1)): on a busy machine
 * the pool lets the caller run alone for a while when workers come late.  sqlm_pool_init() may start fewer workers than asked when the
 * system refuses threads; sqlm_pool_size() says how many run.  Free with sqlm_pool_free().
 */
typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);
int sqlm_pool_init(pool **out, int n);
void sqlm_pool_free(pool *p);
int sqlm_pool_size(const pool *p);
void sqlm_pool_run(pool *p, pool_fn fn, void *ctx);

/* ---------------------------------------------------------- util/dtype.c */

/*
 * Tensor element types.  Values equal GGML's type ids, so a GGUF type field
 * maps directly.  Weight types: F32, F16, BF16, the legacy quants Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, IQ4_NL (blocks of 32) and the K-quants Q2_K..Q6_K (super-
 * blocks of 256), each in ggml's block layout.  Q8_1 and Q8_K are activation
 * types only (what ggml multiplies Q4_1/Q5_1 and the K-quants with).
 */
enum dtype {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_Q4_0 = 2,
    DT_Q4_1 = 3,
    DT_Q5_0 = 6,
    DT_Q5_1 = 7,
    DT_Q8_0 = 8,
    DT_Q8_1 = 9,
    DT_Q2_K = 10,
    DT_Q3_K = 11,
    DT_Q4_K = 12,
    DT_Q5_K = 13,
    DT_Q6_K = 14,
    DT_Q8_K = 15,
    DT_IQ4_NL = 20,
    DT_BF16 = 30,
};

#define QK 32                      /* values per Q8_0 / Q4_0 block */
#define QK_K 256                   /* values per K-quant super-block */
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;        /* 34 bytes */
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;   /* 18 bytes */
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } block_q4_1;                 /* 20 */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_0;    /* 22 */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_1; /* 24 */
typedef struct { uint16_t d, s; int8_t qs[QK]; } block_q8_1;     /* 36: s = d * sum(qs) */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } block_q2_K;   /* 84 */
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_K; /* 110 */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;  /* 144 */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K; /* 176 */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K; /* 210 */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;  /* 292 */
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_iq4_nl;  /* 18 */

const char *sqlm_dtype_name(int dt);             /* "F32", ..., NULL if unknown */
int sqlm_dtype_from_name(const char *name);      /* -1 if unknown */
bool sqlm_dtype_valid(int dt);                   /* a weight type sqlm reads and multiplies */
/* The weight types sqlm supports, as "F32, F16, ..." (for messages). */
const char *sqlm_dtype_supported(void);
size_t sqlm_dtype_block(int dt);                 /* values per block: 1, 32 or 256 */
size_t sqlm_dtype_block_bytes(int dt);           /* bytes per block */
/* Bytes of a row of n values; 0 (and false) if n is not a multiple of the block. */
bool sqlm_dtype_row_bytes(int dt, size_t n, size_t *out);
float sqlm_fp16_to_f32(uint16_t h);
uint16_t sqlm_f32_to_fp16(float f);
float sqlm_bf16_to_f32(uint16_t h);
uint16_t sqlm_f32_to_bf16(float f);
/* Dequantize/convert n values of type dt at src into dst: every weight type,
 * with the float operations of ggml's dequantize_row_* (bit for bit). */
void sqlm_dtype_to_f32(int dt, const void *src, float *dst, size_t n);
/* Quantize n f32 values (n a multiple of dt's block) into dst of type dt:
 * F32, F16, BF16, Q8_0, Q4_0 (as ggml), Q4_K and Q6_K (plain rounding) only. */
void sqlm_dtype_from_f32(int dt, const float *src, void *dst, size_t n);
bool sqlm_dtype_can_quantize(int dt);            /* sqlm_dtype_from_f32 writes dt */
/* The integer values (as floats) and block scales of n values of Q8_0, Q4_0,
 * Q5_0 or IQ4_NL: value j is q[j] * d[j / 32]; q has n floats, d n / 32. */
void sqlm_dtype_to_blocks(int dt, const void *src, float *q, float *d, size_t n);
/* Multiply every value of nb blocks of type dt by s, by scaling the blocks'
 * fp16 scales (and mins) in place.  sqlm_dtype_scale_exact() says whether
 * that is exact for src (s a power of two, no scale leaving fp16's normal
 * range); false for types without block scales. */
bool sqlm_dtype_scale_exact(int dt, const void *src, size_t nb, float s);
void sqlm_dtype_scale(int dt, void *blocks, size_t nb, float s);
/* One block of a quantized weight type as integers (dtype.c says how they
 * make its values): q[block], sc/mn[16] (K-quants), d and dmin. */
void sqlm_dtype_unpack(int dt, const void *blk, int8_t *q, int16_t *sc, int16_t *mn, float *d, float *dmin);
extern const int8_t sqlm_iq4nl_values[16];

#endif /* SQLM_UTIL_H */
