/* Nanofactory int8 kernels; see nf_kernels.h. */
#include "nf_kernels.h"

#define NF_INT32_MIN (-2147483647 - 1)
#define NF_INT32_MAX 2147483647

/* gemmlowp's SaturatingRoundingDoublingHighMul. Its nudge (1 << 30, or 1 - (1 << 30) when ab < 0)
 * and division by 2^31 truncating toward zero give floor((ab + 2^30) / 2^31) for every ab: one
 * 64-bit multiply-add and shift (an arithmetic shift, as every target compiler does) */
static inline int32_t nf_srdhm(int32_t a, int32_t b) {
  if (a == NF_INT32_MIN && b == NF_INT32_MIN) return NF_INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp's RoundingDivideByPOT (arithmetic right shift, as every target compiler does) */
static inline int32_t nf_rdbpot(int32_t x, int32_t exponent) {
  int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  int32_t remainder = x & mask;
  int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding), step by step: the kernels use
 * nf_requant_fast below, which a test holds to this */
static inline int32_t nf_requant(int32_t x, int32_t mult, int32_t shift) {
  int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  return nf_rdbpot(nf_srdhm((int32_t)((int64_t)x * ((int64_t)1 << left)), mult), right);
}

/* nf_requant in one 64-bit sum, for the multipliers and shifts the compiler emits (multiplier >= 0,
 * shift in [-31, 31]). With P = (x << left) * mult + 2^30, nf_srdhm gives floor(P / 2^31), which is
 * negative exactly when P is, and nf_rdbpot(s, e) is floor((s + 2^(e-1) - [s < 0]) / 2^e) for e >= 1
 * (gemmlowp rounds halves away from zero). floor(floor(P / a) / b) = floor(P / ab), so both roundings
 * fold into floor((P + (2^(e-1) - [P < 0]) * 2^31) / 2^(31 + e)): the high word shifted by e - 1. */
static inline int32_t nf_requant_fast(int32_t x, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0, right = left - shift;
  const int64_t p = (int64_t)(int32_t)((uint32_t)x << left) * mult + ((int64_t)1 << 30);
  if (right == 0) return (int32_t)(p >> 31);
  const uint32_t v = (1u << (right - 1)) + (uint32_t)(int32_t)(p >> 63); /* 2^(e-1) - [P < 0] */
  return (int32_t)((p + ((int64_t)v << 31)) >> 32) >> (right - 1);
}

static inline int8_t nf_clamp(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* a convolution's int32 sum for one output channel -> its int8 output */
static inline int8_t nf_conv_out(const nf_conv_params *p, int32_t acc, int32_t mult, int32_t shift) {
  return nf_clamp(nf_requant_fast(acc, mult, shift) + p->out_zero_point, p->act_min, p->act_max);
}

/* The taps of output pixel (oy, ox)'s window that fall inside the input: rows [ky0, ky1) and
 * columns [kx0, kx1) of the kernel, whose top-left tap reads input (iy0, ix0). TFLite skips the
 * others (padding), which is why the kernels take the input offset at run time. */
typedef struct {
  int32_t iy0, ix0, ky0, ky1, kx0, kx1;
} nf_window;

static inline nf_window nf_window_at(const nf_conv_params *p, int32_t oy, int32_t ox) {
  nf_window win;
  win.iy0 = oy * p->stride_h - p->pad_t;
  win.ix0 = ox * p->stride_w - p->pad_l;
  win.ky0 = win.iy0 < 0 ? -win.iy0 : 0;
  win.kx0 = win.ix0 < 0 ? -win.ix0 : 0;
  win.ky1 = win.iy0 + p->k_h > p->in_h ? p->in_h - win.iy0 : p->k_h;
  win.kx1 = win.ix0 + p->k_w > p->in_w ? p->in_w - win.ix0 : p->k_w;
  return win;
}

#if defined(__AVX2__)
#include "nf_avx2.h"
#elif defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && !defined(NF_NO_DSP)
#define NF_DSP 1
#include "nf_dsp.h"
#endif

static inline int32_t nf_dot(const int8_t *a, const int8_t *b, int32_t n) {
#if defined(NF_DSP)
  return nf_dot_dsp(a, b, n);
#else
  int32_t acc = 0;
  for (int32_t i = 0; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
  return acc;
#endif
}

/* Portable loops: a block of output channels at a time, their sums in a small array, so each
 * input value is loaded once per block and the inner loops are short multiply-adds. */
#define NF_BLOCK 32 /* M4 portable loops 11 % and M0+ 9 % fewer instructions on the demo student than with 8 */

/* acc[c] += the window row's taps k0 .. k0 + run - 1 (inputs x[0 .. run - 1]) times channel
 * cb + c's weights, for c < nc; f points at tap k0's group of 4, channel cb (nf_conv_s8's layout:
 * within a group, channel c's 4 taps are at f[4 * c] .. f[4 * c + 3]). Called with nc = NF_BLOCK
 * for full blocks, so the channel loops have a fixed length. */
static inline void nf_conv_row(const int8_t *x, int32_t zp, const int8_t *f, int32_t n, int32_t k0, int32_t run,
                               int32_t *acc, const int32_t nc) {
  int32_t i = 0, j = k0 % 4;
  while (i < run) {
    if (j == 0 && i + 4 <= run) { /* a whole group: 4 taps of each channel side by side */
      const int32_t v0 = x[i] - zp, v1 = x[i + 1] - zp, v2 = x[i + 2] - zp, v3 = x[i + 3] - zp;
      for (int32_t c = 0; c < nc; ++c) {
        const int8_t *g = f + 4 * c;
        acc[c] += v0 * (int32_t)g[0] + v1 * (int32_t)g[1] + v2 * (int32_t)g[2] + v3 * (int32_t)g[3];
      }
      i += 4;
      f += 4 * n;
    } else { /* a tap at either end of the row, not group-aligned */
      const int32_t v = x[i] - zp;
      for (int32_t c = 0; c < nc; ++c) acc[c] += v * (int32_t)f[4 * c + j];
      ++i;
      if (++j == 4) j = 0, f += 4 * n;
    }
  }
}

void nf_conv_s8(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int8_t *out) {
  /* weights: HWIO in groups of 4 taps (nf_kernels.h), tap k of channel c at
   * w[(k / 4) * 4 * out_c + 4 * c + k % 4] */
  const int32_t n = p->out_c;
  int32_t c0 = 0; /* the channels before it are done */
#if defined(__AVX2__)
  c0 = nf_conv_avx2(p, in, w, bias, mult, shift, out);
#elif defined(NF_DSP)
  c0 = nf_conv_dsp(p, in, w, bias, mult, shift, out);
#endif
  for (int32_t px = 0; c0 < n && px < p->out_h * p->out_w; ++px) {
    const nf_window win = nf_window_at(p, px / p->out_w, px % p->out_w);
    const int32_t run = (win.kx1 - win.kx0) * p->in_c; /* the taps of a window row inside the input */
    int8_t *o = out + (int64_t)px * n;
    for (int32_t cb = c0; cb < n; cb += NF_BLOCK) {
      const int32_t nc = n - cb < NF_BLOCK ? n - cb : NF_BLOCK;
      int32_t acc[NF_BLOCK];
      for (int32_t c = 0; c < nc; ++c) acc[c] = bias[cb + c];
      for (int32_t ky = win.ky0; ky < win.ky1; ++ky) {
        const int8_t *x = in + ((int64_t)(win.iy0 + ky) * p->in_w + win.ix0 + win.kx0) * p->in_c;
        const int32_t k0 = (ky * p->k_w + win.kx0) * p->in_c;
        const int8_t *f = w + (int64_t)(k0 / 4) * 4 * n + 4 * cb;
        if (nc == NF_BLOCK) {
          nf_conv_row(x, p->in_zero_point, f, n, k0, run, acc, NF_BLOCK);
        } else {
          nf_conv_row(x, p->in_zero_point, f, n, k0, run, acc, nc);
        }
      }
      for (int32_t c = 0; c < nc; ++c) o[cb + c] = nf_conv_out(p, acc[c], mult[cb + c], shift[cb + c]);
    }
  }
}

void nf_dwconv_s8(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int8_t *out) {
  /* 1HWO weights: for one tap, consecutive output channels read consecutive weights and (with
   * depth multiplier 1) consecutive input bytes, so the channel loop is the inner loop */
  enum { NF_DW_BLOCK = 16 };
  const int32_t m = p->depth_multiplier, n = p->out_c, zp = p->in_zero_point;
  int32_t c0 = 0; /* the channels before it are done */
#if defined(__AVX2__)
  if (m == 1) c0 = nf_dwconv_avx2(p, in, w, bias, mult, shift, out);
#elif defined(NF_DSP)
  if (m == 1) c0 = nf_dwconv_dsp(p, in, w, bias, mult, shift, out);
#endif
  for (int32_t oy = 0; c0 < n && oy < p->out_h; ++oy) {
    for (int32_t ox = 0; ox < p->out_w; ++ox) {
      const nf_window win = nf_window_at(p, oy, ox);
      int8_t *o = out + ((int64_t)oy * p->out_w + ox) * n;
      for (int32_t cb = c0; cb < n; cb += NF_DW_BLOCK) {
        const int32_t nc = n - cb < NF_DW_BLOCK ? n - cb : NF_DW_BLOCK;
        int32_t acc[NF_DW_BLOCK];
        for (int32_t c = 0; c < nc; ++c) acc[c] = bias[cb + c];
        for (int32_t ky = win.ky0; ky < win.ky1; ++ky) {
          for (int32_t kx = win.kx0; kx < win.kx1; ++kx) {
            const int8_t *x = in + ((int64_t)(win.iy0 + ky) * p->in_w + win.ix0 + kx) * p->in_c;
            const int8_t *f = w + (int64_t)(ky * p->k_w + kx) * n + cb;
            if (m == 1) {
              for (int32_t c = 0; c < nc; ++c) acc[c] += ((int32_t)x[cb + c] - zp) * (int32_t)f[c];
            } else { /* output channel c reads input channel c / depth_multiplier */
              for (int32_t c = 0; c < nc; ++c) acc[c] += ((int32_t)x[(cb + c) / m] - zp) * (int32_t)f[c];
            }
          }
        }
        for (int32_t c = 0; c < nc; ++c) o[cb + c] = nf_conv_out(p, acc[c], mult[cb + c], shift[cb + c]);
      }
    }
  }
}

void nf_fc_s8(int32_t in_n, int32_t out_n, const int8_t *in, const int8_t *w, const int32_t *bias,
              const int32_t *mult, const int32_t *shift, int32_t out_zero_point, int32_t act_min,
              int32_t act_max, int8_t *out) {
  for (int32_t o = 0; o < out_n; ++o) {
    int32_t acc = bias[o] + nf_dot(in, w + (int64_t)o * in_n, in_n);
    out[o] = nf_clamp(nf_requant_fast(acc, mult[o], shift[o]) + out_zero_point, act_min, act_max);
  }
}

void nf_add_s8(const nf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *out) {
  int32_t i = 0;
#if defined(__AVX2__)
  i = nf_add_avx2(p, n, a, b, out);
#endif
  const nf_add_params q = *p; /* copied once: an int8 store may alias *p, which would reload it per element */
  for (; i < n; ++i) {
    /* out may alias a or b: each element is read before it is written */
    const int32_t x = (int32_t)a[i] - q.a_zero_point, y = (int32_t)b[i] - q.b_zero_point;
    const int32_t sx = nf_rdbpot(nf_srdhm(x * (1 << q.left_shift), q.a_mult), -q.a_shift);
    const int32_t sy = nf_rdbpot(nf_srdhm(y * (1 << q.left_shift), q.b_mult), -q.b_shift);
    const int32_t raw = nf_rdbpot(nf_srdhm(sx + sy, q.out_mult), -q.out_shift) + q.out_zero_point;
    out[i] = nf_clamp(raw, q.act_min, q.act_max);
  }
}

static void nf_pool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out, int is_max) {
  /* channels innermost, NF_POOL_BLOCK at a time: contiguous loads the compiler vectorizes */
  enum { NF_POOL_BLOCK = 32 }; /* 128 B of sums on the stack */
  int32_t acc[NF_POOL_BLOCK];
  for (int32_t oy = 0; oy < p->out_h; ++oy) {
    for (int32_t ox = 0; ox < p->out_w; ++ox) {
      const int32_t iy0 = oy * p->stride_h - p->pad_t, ix0 = ox * p->stride_w - p->pad_l;
      const int32_t y0 = iy0 < 0 ? 0 : iy0, x0 = ix0 < 0 ? 0 : ix0;
      const int32_t y1 = iy0 + p->k_h > p->in_h ? p->in_h : iy0 + p->k_h;
      const int32_t x1 = ix0 + p->k_w > p->in_w ? p->in_w : ix0 + p->k_w;
      const int32_t count = (y1 - y0) * (x1 - x0);
      int8_t *o = out + ((int64_t)oy * p->out_w + ox) * p->out_c;
      for (int32_t c0 = 0; c0 < p->in_c; c0 += NF_POOL_BLOCK) {
        const int32_t nc = p->in_c - c0 < NF_POOL_BLOCK ? p->in_c - c0 : NF_POOL_BLOCK;
        for (int32_t c = 0; c < nc; ++c) acc[c] = is_max ? -128 : 0;
        for (int32_t iy = y0; iy < y1; ++iy) {
          for (int32_t ix = x0; ix < x1; ++ix) {
            const int8_t *x = in + ((int64_t)iy * p->in_w + ix) * p->in_c + c0;
            if (is_max) {
              for (int32_t c = 0; c < nc; ++c) acc[c] = x[c] > acc[c] ? x[c] : acc[c];
            } else {
              for (int32_t c = 0; c < nc; ++c) acc[c] += x[c];
            }
          }
        }
        for (int32_t c = 0; c < nc; ++c) {
          int32_t v = acc[c];
          if (!is_max) v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
          o[c0 + c] = nf_clamp(v, p->act_min, p->act_max);
        }
      }
    }
  }
}

void nf_avgpool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out) { nf_pool_s8(p, in, out, 0); }

void nf_maxpool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out) { nf_pool_s8(p, in, out, 1); }

void nf_concat_slice_s8(int32_t outer, int32_t in_inner, int32_t out_inner, int32_t out_start, const int8_t *in,
                        int8_t *out) {
  for (int32_t r = 0; r < outer; ++r) {
    for (int32_t i = 0; i < in_inner; ++i) out[(int64_t)r * out_inner + out_start + i] = in[(int64_t)r * in_inner + i];
  }
}

void nf_copy_s8(int32_t n, const int8_t *in, int8_t *out) {
  for (int32_t i = 0; i < n; ++i) out[i] = in[i];
}
