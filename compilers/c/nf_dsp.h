/* Arm DSP-extension versions of the kernels' hot loops (Cortex-M4, M7, M33, M55 and every core with
 * the SIMD32 instructions); included by nf_kernels.c when the compiler targets such a core
 * (__ARM_FEATURE_DSP) and speaks GNU inline assembly (GCC, Clang, Arm Compiler 6). Define
 * NF_NO_DSP to build the portable loops instead.
 *
 * The CMSIS-NN way of multiplying int8: one 32-bit load brings 4 bytes, SXTB16 sign-extends bytes
 * 0 and 2 (and, rotated by 8, bytes 1 and 3) into two int16 halves, SXTAB16 does the same while
 * adding the input offset -zp to each half (x - zp lies in [-255, 255]: exact in int16), and SMLAD
 * adds both halves' products to an int32 sum. So a group of 4 taps of nf_conv_s8's weights is one
 * load and two SMLADs per channel. Same integers as the portable loops: the products are summed in
 * another order, and int32 sums do not depend on the order.
 *
 * Convolutions whose input and output channels are multiples of 4 take two output pixels at a time
 * where their windows match (most of a layer), so each weight word loaded serves both.
 *
 * Stack: convolutions whose input channels are a multiple of 4 read the input in place; others
 * (a first layer on 1 or 3 channels) gather each window into NF_DSP_TAPS int16 on the stack first,
 * and a larger window takes the portable loops.
 */
#ifndef NF_DSP_H
#define NF_DSP_H

/* int16 window values gathered per pixel when in_c % 4 != 0: 512 B of stack at most; the C emitter
 * sets it to the model's largest gathered window (3 x 3 on 1 channel: 12, so 24 B) */
#ifndef NF_DSP_TAPS
#define NF_DSP_TAPS 256
#endif

static inline uint32_t nf_sxtb16(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
  return r;
}
static inline uint32_t nf_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
static inline uint32_t nf_sxtab16(uint32_t a, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(a), "r"(x));
  return r;
}
static inline uint32_t nf_sxtab16_ror8(uint32_t a, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
  return r;
}
/* acc + a.lo * b.lo + a.hi * b.hi */
static inline int32_t nf_smlad(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
/* acc + a.lo * b.lo, acc + a.hi * b.hi */
static inline int32_t nf_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlabb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
static inline int32_t nf_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlatt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
/* 4 bytes at any address: one LDR (the cores with the DSP extension load unaligned words) */
static inline uint32_t nf_load4(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

/* acc[c] += one group of 4 taps, (x0 - zp, x2 - zp) in x02 and (x1 - zp, x3 - zp) in x13, times
 * channel c's 4 weights at f[4 * c], for c < nc (the last out_c % 4 channels) */
static inline void nf_dsp_group(uint32_t x02, uint32_t x13, const int8_t *f, int32_t *acc, int32_t nc) {
  for (int32_t c = 0; c < nc; ++c) {
    const uint32_t g = nf_load4(f + 4 * c);
    acc[c] = nf_smlad(x13, nf_sxtb16_ror8(g), nf_smlad(x02, nf_sxtb16(g), acc[c]));
  }
}

/* the same for 4 channels, their sums in registers */
#define NF_DSP_GROUP4(x02, x13, f, a0, a1, a2, a3)                             \
  do {                                                                        \
    uint32_t g_ = nf_load4(f);                                                \
    a0 = nf_smlad(x13, nf_sxtb16_ror8(g_), nf_smlad(x02, nf_sxtb16(g_), a0)); \
    g_ = nf_load4((f) + 4);                                                   \
    a1 = nf_smlad(x13, nf_sxtb16_ror8(g_), nf_smlad(x02, nf_sxtb16(g_), a1)); \
    g_ = nf_load4((f) + 8);                                                   \
    a2 = nf_smlad(x13, nf_sxtb16_ror8(g_), nf_smlad(x02, nf_sxtb16(g_), a2)); \
    g_ = nf_load4((f) + 12);                                                  \
    a3 = nf_smlad(x13, nf_sxtb16_ror8(g_), nf_smlad(x02, nf_sxtb16(g_), a3)); \
  } while (0)

/* the same for 2 output pixels (inputs in xa.. and xb..) and 2 channels: each weight word serves both */
#define NF_DSP_GROUP2X2(xa02, xa13, xb02, xb13, f, a0, a1, b0, b1)                                     \
  do {                                                                                                \
    uint32_t g_ = nf_load4(f), w02_ = nf_sxtb16(g_), w13_ = nf_sxtb16_ror8(g_);                       \
    a0 = nf_smlad(xa13, w13_, nf_smlad(xa02, w02_, a0));                                              \
    b0 = nf_smlad(xb13, w13_, nf_smlad(xb02, w02_, b0));                                              \
    g_ = nf_load4((f) + 4), w02_ = nf_sxtb16(g_), w13_ = nf_sxtb16_ror8(g_);                          \
    a1 = nf_smlad(xa13, w13_, nf_smlad(xa02, w02_, a1));                                              \
    b1 = nf_smlad(xb13, w13_, nf_smlad(xb02, w02_, b1));                                              \
  } while (0)

/* nf_conv_out with the output's parameters in registers (an int8 store may alias *p) */
static inline int8_t nf_dsp_out(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo, int32_t hi) {
  return nf_clamp(nf_requant_fast(acc, mult, shift) + zp, lo, hi);
}

/* nf_conv_s8 on the DSP extension: returns the output channels done (all of them, or 0 when the
 * window is too large to gather and the portable loops do it all). Input channels a multiple of 4:
 * each window row's taps are whole groups, read in place; otherwise each window is gathered as
 * int16 x - zp, group g's taps in the order (t0, t2, t1, t3) at cols[4 * g], so that two word
 * loads give SMLAD's pairs; taps outside the input stay 0, as if they were zp (TFLite skips them). */
static int32_t nf_conv_dsp(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                           const int32_t *mult, const int32_t *shift, int8_t *out) {
  const int32_t n = p->out_c, in_c = p->in_c, in_w = p->in_w, k_w = p->k_w, direct = in_c % 4 == 0;
  const int32_t groups = (p->k_h * k_w * in_c + 3) / 4, full = n / 4 * 4, pixels = p->out_h * p->out_w;
  const int32_t zp = p->in_zero_point, ozp = p->out_zero_point, lo = p->act_min, hi = p->act_max;
  const uint32_t zp2 = ((uint32_t)(-zp) & 0xFFFFu) * 0x10001u; /* -zp in both halves */
  int16_t cols[NF_DSP_TAPS];
  if (!direct) {
    if (4 * groups > NF_DSP_TAPS) return 0;
    for (int32_t k = 0; k < 4 * groups; ++k) cols[k] = 0; /* the taps that pad the last group stay 0 */
  }
  for (int32_t px = 0; px < pixels; ++px) {
    const nf_window win = nf_window_at(p, px / p->out_w, px % p->out_w);
    const int32_t run = (win.kx1 - win.kx0) * in_c; /* the taps of a window row inside the input */
    const int8_t *x0 = in + ((int64_t)(win.iy0 + win.ky0) * in_w + win.ix0 + win.kx0) * in_c;
    const int32_t g0 = (win.ky0 * k_w + win.kx0) * in_c / 4, rows = win.ky1 - win.ky0;
    int8_t *o = out + (int64_t)px * n;
    if (direct && n % 4 == 0 && px + 1 < pixels) { /* two pixels at once when their windows match */
      const nf_window next = nf_window_at(p, (px + 1) / p->out_w, (px + 1) % p->out_w);
      if (next.ky0 == win.ky0 && next.ky1 == win.ky1 && next.kx0 == win.kx0 && next.kx1 == win.kx1) {
        const int32_t dxy = (int32_t)(in + ((int64_t)(next.iy0 + next.ky0) * in_w + next.ix0 + next.kx0) * in_c - x0);
        for (int32_t cb = 0; cb < n; cb += 4) {
          int32_t a0 = bias[cb], a1 = bias[cb + 1], a2 = bias[cb + 2], a3 = bias[cb + 3];
          int32_t b0 = a0, b1 = a1, b2 = a2, b3 = a3;
          for (int32_t r = 0; r < rows; ++r) {
            const int8_t *x = x0 + (int64_t)r * in_w * in_c, *end = x + run;
            const int8_t *f = w + 4 * cb + (int64_t)(g0 + r * k_w * in_c / 4) * 4 * n;
            for (; x < end; x += 4, f += 4 * n) {
              const uint32_t u = nf_load4(x), v = nf_load4(x + dxy);
              const uint32_t xa02 = nf_sxtab16(zp2, u), xa13 = nf_sxtab16_ror8(zp2, u);
              const uint32_t xb02 = nf_sxtab16(zp2, v), xb13 = nf_sxtab16_ror8(zp2, v);
              NF_DSP_GROUP2X2(xa02, xa13, xb02, xb13, f, a0, a1, b0, b1);
              NF_DSP_GROUP2X2(xa02, xa13, xb02, xb13, f + 8, a2, a3, b2, b3);
            }
          }
          o[cb] = nf_dsp_out(a0, mult[cb], shift[cb], ozp, lo, hi);
          o[cb + 1] = nf_dsp_out(a1, mult[cb + 1], shift[cb + 1], ozp, lo, hi);
          o[cb + 2] = nf_dsp_out(a2, mult[cb + 2], shift[cb + 2], ozp, lo, hi);
          o[cb + 3] = nf_dsp_out(a3, mult[cb + 3], shift[cb + 3], ozp, lo, hi);
          o[n + cb] = nf_dsp_out(b0, mult[cb], shift[cb], ozp, lo, hi);
          o[n + cb + 1] = nf_dsp_out(b1, mult[cb + 1], shift[cb + 1], ozp, lo, hi);
          o[n + cb + 2] = nf_dsp_out(b2, mult[cb + 2], shift[cb + 2], ozp, lo, hi);
          o[n + cb + 3] = nf_dsp_out(b3, mult[cb + 3], shift[cb + 3], ozp, lo, hi);
        }
        ++px;
        continue;
      }
    }
    if (!direct) {
      if (rows < p->k_h || win.kx1 - win.kx0 < k_w) { /* a border pixel: some taps are outside */
        for (int32_t k = 0; k < 4 * groups; ++k) cols[k] = 0; /* (a group's taps are stored permuted) */
      }
      for (int32_t r = 0; r < rows; ++r) {
        const int8_t *x = x0 + (int64_t)r * in_w * in_c;
        for (int32_t i = 0, k = ((win.ky0 + r) * k_w + win.kx0) * in_c; i < run; ++i, ++k) {
          cols[(k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1)] = (int16_t)(x[i] - zp); /* 0 1 2 3 -> 0 2 1 3 */
        }
      }
    }
    for (int32_t cb = 0; cb < n; cb += 4) {
      const int8_t *fb = w + 4 * cb;
      if (cb < full) {
        int32_t a0 = bias[cb], a1 = bias[cb + 1], a2 = bias[cb + 2], a3 = bias[cb + 3];
        if (direct) {
          for (int32_t r = 0; r < rows; ++r) {
            const int8_t *x = x0 + (int64_t)r * in_w * in_c, *end = x + run;
            const int8_t *f = fb + (int64_t)(g0 + r * k_w * in_c / 4) * 4 * n;
            for (; x < end; x += 4, f += 4 * n) {
              const uint32_t v = nf_load4(x);
              const uint32_t x02 = nf_sxtab16(zp2, v), x13 = nf_sxtab16_ror8(zp2, v);
              NF_DSP_GROUP4(x02, x13, f, a0, a1, a2, a3);
            }
          }
        } else {
          const int8_t *f = fb;
          for (const int16_t *c = cols, *end = cols + 4 * groups; c < end; c += 4, f += 4 * n) {
            const uint32_t x02 = nf_load4(c), x13 = nf_load4(c + 2);
            NF_DSP_GROUP4(x02, x13, f, a0, a1, a2, a3);
          }
        }
        o[cb] = nf_dsp_out(a0, mult[cb], shift[cb], ozp, lo, hi);
        o[cb + 1] = nf_dsp_out(a1, mult[cb + 1], shift[cb + 1], ozp, lo, hi);
        o[cb + 2] = nf_dsp_out(a2, mult[cb + 2], shift[cb + 2], ozp, lo, hi);
        o[cb + 3] = nf_dsp_out(a3, mult[cb + 3], shift[cb + 3], ozp, lo, hi);
      } else { /* the last out_c % 4 channels */
        const int32_t nc = n - cb;
        int32_t acc[4];
        for (int32_t c = 0; c < nc; ++c) acc[c] = bias[cb + c];
        if (direct) {
          for (int32_t r = 0; r < rows; ++r) {
            const int8_t *x = x0 + (int64_t)r * in_w * in_c;
            const int8_t *f = fb + (int64_t)(g0 + r * k_w * in_c / 4) * 4 * n;
            for (int32_t i = 0; i < run; i += 4, f += 4 * n) {
              const uint32_t v = nf_load4(x + i);
              nf_dsp_group(nf_sxtab16(zp2, v), nf_sxtab16_ror8(zp2, v), f, acc, nc);
            }
          }
        } else {
          const int8_t *f = fb;
          for (int32_t g = 0; g < groups; ++g, f += 4 * n) nf_dsp_group(nf_load4(cols + 4 * g), nf_load4(cols + 4 * g + 2), f, acc, nc);
        }
        for (int32_t c = 0; c < nc; ++c) o[cb + c] = nf_dsp_out(acc[c], mult[cb + c], shift[cb + c], ozp, lo, hi);
      }
    }
  }
  return n;
}

/* one depthwise tap for 4 channels: their 4 inputs and 4 weights are one load each */
#define NF_DSP_DWTAP(x, f, zp2, a0, a1, a2, a3)                                     \
  do {                                                                            \
    const uint32_t v_ = nf_load4(x), g_ = nf_load4(f);                            \
    const uint32_t x02_ = nf_sxtab16(zp2, v_), x13_ = nf_sxtab16_ror8(zp2, v_);   \
    const uint32_t w02_ = nf_sxtb16(g_), w13_ = nf_sxtb16_ror8(g_);               \
    a0 = nf_smlabb(x02_, w02_, a0);                                               \
    a2 = nf_smlatt(x02_, w02_, a2);                                               \
    a1 = nf_smlabb(x13_, w13_, a1);                                               \
    a3 = nf_smlatt(x13_, w13_, a3);                                               \
  } while (0)

/* nf_dwconv_s8 with depth multiplier 1 on the DSP extension, 4 channels at a time: a tap's 4
 * inputs and 4 weights are one load each, and SMLABB / SMLATT multiply the halves channel by
 * channel. Returns the channels done (out_c rounded down to a multiple of 4). */
static int32_t nf_dwconv_dsp(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, int8_t *out) {
  const int32_t n = p->out_c, done = n / 4 * 4, in_c = p->in_c, in_w = p->in_w, k_w = p->k_w;
  const int32_t ozp = p->out_zero_point, lo = p->act_min, hi = p->act_max;
  const uint32_t zp2 = ((uint32_t)(-p->in_zero_point) & 0xFFFFu) * 0x10001u;
  const int32_t row_x = in_w * in_c, row_f = k_w * n;
  for (int32_t px = 0; px < p->out_h * p->out_w; ++px) {
    const nf_window win = nf_window_at(p, px / p->out_w, px % p->out_w);
    const int8_t *x0 = in + ((int64_t)(win.iy0 + win.ky0) * in_w + win.ix0 + win.kx0) * in_c;
    const int8_t *f0 = w + (int64_t)(win.ky0 * k_w + win.kx0) * n;
    const int32_t rows = win.ky1 - win.ky0, cols = win.kx1 - win.kx0;
    int8_t *o = out + (int64_t)px * n;
    for (int32_t cb = 0; cb < done; cb += 4) {
      int32_t a0 = bias[cb], a1 = bias[cb + 1], a2 = bias[cb + 2], a3 = bias[cb + 3];
      const int8_t *xr = x0 + cb, *fr = f0 + cb;
      for (int32_t r = 0; r < rows; ++r, xr += row_x, fr += row_f) {
        const int8_t *x = xr, *f = fr;
        if (cols == 3) { /* a 3-wide kernel inside the input: most taps of the usual layers */
          NF_DSP_DWTAP(x, f, zp2, a0, a1, a2, a3);
          NF_DSP_DWTAP(x + in_c, f + n, zp2, a0, a1, a2, a3);
          NF_DSP_DWTAP(x + 2 * in_c, f + 2 * n, zp2, a0, a1, a2, a3);
        } else {
          for (int32_t kx = 0; kx < cols; ++kx, x += in_c, f += n) NF_DSP_DWTAP(x, f, zp2, a0, a1, a2, a3);
        }
      }
      o[cb] = nf_dsp_out(a0, mult[cb], shift[cb], ozp, lo, hi);
      o[cb + 1] = nf_dsp_out(a1, mult[cb + 1], shift[cb + 1], ozp, lo, hi);
      o[cb + 2] = nf_dsp_out(a2, mult[cb + 2], shift[cb + 2], ozp, lo, hi);
      o[cb + 3] = nf_dsp_out(a3, mult[cb + 3], shift[cb + 3], ozp, lo, hi);
    }
  }
  return done;
}

/* sum of a[i] * b[i]: 4 pairs per two SMLADs */
static inline int32_t nf_dot_dsp(const int8_t *a, const int8_t *b, int32_t n) {
  int32_t acc = 0, i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t u = nf_load4(a + i), v = nf_load4(b + i);
    acc = nf_smlad(nf_sxtb16_ror8(u), nf_sxtb16_ror8(v), nf_smlad(nf_sxtb16(u), nf_sxtb16(v), acc));
  }
  for (; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
  return acc;
}

#endif
