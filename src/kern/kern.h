/*
 * kern.h - the vector kernels (SIMD where the CPU has it) that the engines'
 * native functions call: products over every weight type with llama.cpp's
 * rounding, attention of one head, RMSNorm, RoPE and SwiGLU.
 */
#ifndef SQLM_KERN_H
#define SQLM_KERN_H

#include "../model/model.h"

/* ------------------------------------------------------------ kern/vec.c */

float sqlm_vec_dot_f32(const float *a, const float *b, size_t n);
int sqlm_vec_act_type(int wdtype);   /* activation type a weight type multiplies */
void sqlm_vec_matvec(int wdtype, const void *w, size_t rows, size_t n, const void *x, float *out);
/* rows x n values of w (type wdtype) times m activations of sqlm_vec_act_type(wdtype),
 * ldx bytes apart: out[p * ldo + r] = dot(row r, x + p * ldx), each rounded
 * exactly as sqlm_vec_matvec rounds it.  next (next_len bytes, or NULL) is
 * prefetched on the way: the tile that comes after. */
void sqlm_vec_matmul(int wdtype, const void *w, size_t rows, size_t n, const void *x, size_t ldx, size_t m,
                float *out, size_t ldo, const void *next, size_t next_len);
/*
 * Batched products (prefill) on panels of VEC_PANEL rows repacked so that one
 * SIMD lane follows one row, when sqlm_vec_panel_supported(wdtype) (Q8_0 and
 * Q4_0 on AVX512-VNNI and on AVX2 CPUs):
 *   sqlm_vec_panel_act  m Q8_0 activations of nb blocks (ldx bytes apart) into
 *                  xu[m][nb][32] (quants, + 128 for VNNI) and dx[m][nb] (scales)
 *   sqlm_vec_panel_put  one weight row of nb blocks into slot 0..VEC_PANEL-1 of a
 *                  panel of sqlm_vec_panel_bytes(nb) bytes, 64-byte aligned
 *   sqlm_vec_panel_seal clear the slots from n on and finish the panel
 *   sqlm_vec_panel_mul  out[p * VEC_PANEL + r] = row r . position p for m
 *                  positions, nbx blocks apart in xu/dx; bit for bit what
 *                  sqlm_vec_matvec gives
 */
#define VEC_PANEL 16
bool sqlm_vec_panel_supported(int wdtype);
size_t sqlm_vec_panel_bytes(size_t nb);
void sqlm_vec_panel_act(const void *x, size_t ldx, size_t m, size_t nb, uint8_t *xu, float *dx);
void sqlm_vec_panel_put(void *panel, size_t nb, int slot, int wdtype, const void *row);
void sqlm_vec_panel_seal(void *panel, size_t nb, int n);
void sqlm_vec_panel_mul(const void *panel, size_t nb, const uint8_t *xu, const float *dx, size_t nbx, size_t m,
                   float *out);
void sqlm_vec_quant_q8_0(const float *x, block_q8_0 *q, size_t n);
/* n values of x as activation type at (sqlm_vec_act_type(): F32, Q8_0,
 * Q8_1, Q8_K or BF16), rounded as ggml's CPU backend rounds them for the
 * product; n a multiple of at's block.  sqlm_vec_act_bytes: their size. */
void sqlm_vec_quant(int at, const float *x, void *out, size_t n);
size_t sqlm_vec_act_bytes(int at, size_t n);
/* One row of the types beyond Q8_0/Q4_0 by the portable code (unpacked
 * blocks, lane sums in plain C where AVX2 is missing): what the SIMD
 * kernels of sqlm_vec_matvec give, bit for bit (tests compare them). */
float sqlm_vec_dot_portable(int wdtype, const void *w, const void *x, size_t n);
/* The same row by the fastest kernel the build has (kern/quant.c). */
float sqlm_vec_dot_other(int wdtype, const void *w, const void *x, size_t n);
/* Q8_0/Q4_0 weights held as int8 values wq and float block scales ws times a
 * Q8_0 activation: as sqlm_vec_matvec's Q8_0 dot, bit for bit; or its nb block
 * products, unsummed. */
float sqlm_vec_dot_q8s(const int8_t *wq, const float *ws, const block_q8_0 *x, size_t nb);
void sqlm_vec_q8s_products(const int8_t *wq, const float *ws, const block_q8_0 *x, size_t nb, double *out);
/* Attention of one head of one query over nk keys (rows[i] + k_off: the key
 * head, rows[i] + v_off: the value head); s is scratch for nk floats. */
void sqlm_vec_attend_head(const float *q, const float *const *rows, size_t nk, size_t k_off, size_t v_off, size_t hd,
                     float *s, float *out);
void sqlm_vec_rmsnorm(float *out, const float *x, const float *g, size_t n, float eps);
void sqlm_vec_rope(float *v, const float *cs, int n_q, int n_kv, int hd, bool interleaved, float q_scale);
void sqlm_vec_swiglu(float *out, const float *gu, size_t n);
/* cos/sin pairs for position pos: cs[2i] = cos, cs[2i+1] = sin, i < hd/2. */
void sqlm_rope_table_row(const model_config *c, int pos, float *cs);

#endif /* SQLM_KERN_H */
