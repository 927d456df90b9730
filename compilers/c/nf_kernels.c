/* Nanofactory int8 kernels; see nf_kernels.h. */
#include "nf_kernels.h"

#define NF_INT32_MIN (-2147483647 - 1)
#define NF_INT32_MAX 2147483647
#define NF_BLOCK 8 /* output channels per pass: one register of int32 accumulators */

/* gemmlowp's SaturatingRoundingDoublingHighMul; C division truncates toward zero as in C++ */
static inline int32_t nf_srdhm(int32_t a, int32_t b) {
  if (a == NF_INT32_MIN && b == NF_INT32_MIN) return NF_INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp's RoundingDivideByPOT (arithmetic right shift, as every target compiler does) */
static inline int32_t nf_rdbpot(int32_t x, int32_t exponent) {
  int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  int32_t remainder = x & mask;
  int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding) */
static inline int32_t nf_requant(int32_t x, int32_t mult, int32_t shift) {
  int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  return nf_rdbpot(nf_srdhm((int32_t)((int64_t)x * ((int64_t)1 << left)), mult), right);
}

static inline int8_t nf_clamp(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

static inline int32_t nf_dot(const int8_t *a, const int8_t *b, int32_t n) {
  int32_t acc = 0;
  for (int32_t i = 0; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
  return acc;
}

/* One output pixel, output channels [c0, c0 + n) of a standard convolution. Called with the
 * constant n = NF_BLOCK for full blocks, so the channel loop becomes one SIMD register of
 * int32 accumulators; the tail of an odd channel count takes the same code with a smaller n. */
static inline void nf_conv_pixel(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                 const int32_t *mult, const int32_t *shift, int8_t *o, int32_t iy0, int32_t ix0,
                                 int32_t c0, const int32_t n) {
  const int32_t oc_n = p->out_c, ic_n = p->in_c;
  int32_t acc[NF_BLOCK];
  for (int32_t c = 0; c < n; ++c) acc[c] = bias[c0 + c];
  for (int32_t ky = 0; ky < p->k_h; ++ky) {
    const int32_t iy = iy0 + ky;
    for (int32_t kx = 0; kx < p->k_w; ++kx) {
      const int32_t ix = ix0 + kx;
      const int8_t *f = w + ((int64_t)ky * p->k_w + kx) * ic_n * oc_n + c0;
      if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
        const int8_t *x = in + ((int64_t)iy * p->in_w + ix) * ic_n;
        for (int32_t ic = 0; ic < ic_n; ++ic) {
          const int32_t v = x[ic];
          const int8_t *fr = f + (int64_t)ic * oc_n;
          for (int32_t c = 0; c < n; ++c) acc[c] += v * (int32_t)fr[c];
        }
      } else {
        /* padding reads the zero point (the bias holds -zp * sum(w)) */
        const int32_t v = p->in_zero_point;
        for (int32_t ic = 0; ic < ic_n; ++ic) {
          const int8_t *fr = f + (int64_t)ic * oc_n;
          for (int32_t c = 0; c < n; ++c) acc[c] += v * (int32_t)fr[c];
        }
      }
    }
  }
  for (int32_t c = 0; c < n; ++c) {
    o[c0 + c] = nf_clamp(nf_requant(acc[c], mult[c0 + c], shift[c0 + c]) + p->out_zero_point, p->act_min,
                         p->act_max);
  }
}

void nf_conv_s8(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int8_t *out) {
  /* weights are HWIO here (the emitter transposes TFLite's OHWI): the innermost loop runs over
   * output channels with independent accumulators */
  const int32_t full = p->out_c / NF_BLOCK * NF_BLOCK;
  for (int32_t oy = 0; oy < p->out_h; ++oy) {
    for (int32_t ox = 0; ox < p->out_w; ++ox) {
      const int32_t iy0 = oy * p->stride_h - p->pad_t, ix0 = ox * p->stride_w - p->pad_l;
      int8_t *o = out + ((int64_t)oy * p->out_w + ox) * p->out_c;
      for (int32_t c0 = 0; c0 < full; c0 += NF_BLOCK) nf_conv_pixel(p, in, w, bias, mult, shift, o, iy0, ix0, c0, NF_BLOCK);
      if (full < p->out_c) nf_conv_pixel(p, in, w, bias, mult, shift, o, iy0, ix0, full, p->out_c - full);
    }
  }
}

static inline void nf_dwconv_pixel(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                   const int32_t *mult, const int32_t *shift, int8_t *o, int32_t iy0, int32_t ix0,
                                   int32_t c0, const int32_t n) {
  const int32_t m = p->depth_multiplier, oc_n = p->out_c;
  int32_t acc[NF_BLOCK];
  for (int32_t c = 0; c < n; ++c) acc[c] = bias[c0 + c];
  for (int32_t ky = 0; ky < p->k_h; ++ky) {
    const int32_t iy = iy0 + ky;
    for (int32_t kx = 0; kx < p->k_w; ++kx) {
      const int32_t ix = ix0 + kx;
      const int8_t *f = w + ((int64_t)ky * p->k_w + kx) * oc_n + c0;
      if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
        for (int32_t c = 0; c < n; ++c) acc[c] += p->in_zero_point * (int32_t)f[c];
      } else if (m == 1) {
        const int8_t *x = in + ((int64_t)iy * p->in_w + ix) * p->in_c + c0;
        for (int32_t c = 0; c < n; ++c) acc[c] += (int32_t)x[c] * (int32_t)f[c];
      } else {
        /* output channel k reads input channel k / depth_multiplier */
        const int8_t *x = in + ((int64_t)iy * p->in_w + ix) * p->in_c;
        for (int32_t c = 0; c < n; ++c) acc[c] += (int32_t)x[(c0 + c) / m] * (int32_t)f[c];
      }
    }
  }
  for (int32_t c = 0; c < n; ++c) {
    o[c0 + c] = nf_clamp(nf_requant(acc[c], mult[c0 + c], shift[c0 + c]) + p->out_zero_point, p->act_min,
                         p->act_max);
  }
}

void nf_dwconv_s8(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int8_t *out) {
  const int32_t full = p->out_c / NF_BLOCK * NF_BLOCK;
  for (int32_t oy = 0; oy < p->out_h; ++oy) {
    for (int32_t ox = 0; ox < p->out_w; ++ox) {
      const int32_t iy0 = oy * p->stride_h - p->pad_t, ix0 = ox * p->stride_w - p->pad_l;
      int8_t *o = out + ((int64_t)oy * p->out_w + ox) * p->out_c;
      for (int32_t c0 = 0; c0 < full; c0 += NF_BLOCK) nf_dwconv_pixel(p, in, w, bias, mult, shift, o, iy0, ix0, c0, NF_BLOCK);
      if (full < p->out_c) nf_dwconv_pixel(p, in, w, bias, mult, shift, o, iy0, ix0, full, p->out_c - full);
    }
  }
}

void nf_fc_s8(int32_t in_n, int32_t out_n, const int8_t *in, const int8_t *w, const int32_t *bias,
              const int32_t *mult, const int32_t *shift, int32_t out_zero_point, int32_t act_min,
              int32_t act_max, int8_t *out) {
  for (int32_t o = 0; o < out_n; ++o) {
    int32_t acc = bias[o] + nf_dot(in, w + (int64_t)o * in_n, in_n);
    out[o] = nf_clamp(nf_requant(acc, mult[o], shift[o]) + out_zero_point, act_min, act_max);
  }
}

void nf_add_s8(int32_t n, const int8_t *a, const int8_t *b, int32_t a_zero_point, int32_t a_mult,
               int32_t a_shift, int32_t b_zero_point, int32_t b_mult, int32_t b_shift, int32_t left_shift,
               int32_t out_mult, int32_t out_shift, int32_t out_zero_point, int32_t act_min, int32_t act_max,
               int8_t *out) {
  for (int32_t i = 0; i < n; ++i) {
    /* out may alias a or b: each element is read before it is written */
    const int32_t x = (int32_t)a[i] - a_zero_point, y = (int32_t)b[i] - b_zero_point;
    const int32_t sx = nf_rdbpot(nf_srdhm(x * (1 << left_shift), a_mult), -a_shift);
    const int32_t sy = nf_rdbpot(nf_srdhm(y * (1 << left_shift), b_mult), -b_shift);
    const int32_t raw = nf_rdbpot(nf_srdhm(sx + sy, out_mult), -out_shift) + out_zero_point;
    out[i] = nf_clamp(raw, act_min, act_max);
  }
}

static void nf_pool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out, int is_max) {
  for (int32_t oy = 0; oy < p->out_h; ++oy) {
    for (int32_t ox = 0; ox < p->out_w; ++ox) {
      const int32_t iy0 = oy * p->stride_h - p->pad_t, ix0 = ox * p->stride_w - p->pad_l;
      const int32_t y0 = iy0 < 0 ? 0 : iy0, x0 = ix0 < 0 ? 0 : ix0;
      const int32_t y1 = iy0 + p->k_h > p->in_h ? p->in_h : iy0 + p->k_h;
      const int32_t x1 = ix0 + p->k_w > p->in_w ? p->in_w : ix0 + p->k_w;
      const int32_t count = (y1 - y0) * (x1 - x0);
      for (int32_t c = 0; c < p->in_c; ++c) {
        int32_t acc = is_max ? -128 : 0;
        for (int32_t iy = y0; iy < y1; ++iy) {
          for (int32_t ix = x0; ix < x1; ++ix) {
            const int32_t v = in[((int64_t)iy * p->in_w + ix) * p->in_c + c];
            if (is_max) acc = v > acc ? v : acc; else acc += v;
          }
        }
        if (!is_max) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        out[((int64_t)oy * p->out_w + ox) * p->out_c + c] = nf_clamp(acc, p->act_min, p->act_max);
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
