/* AVX2 versions of the kernels' hot loops; included by nf_kernels.c only when the compiler
 * targets AVX2 (host builds with -mavx2 or -march=native), never on microcontrollers. With
 * AVX512-VNNI as well (-march=native on recent x86), convolutions use its 4-way byte dot product.
 *
 * Same integers as the portable loops: int8 products summed in int32 in another order (vector
 * adds wrap, so the int32 sum is the same in any order), and nf_requant8 is nf_requant lane by
 * lane. Output channels go in blocks of 8 (one register of int32 sums); the last out_c % 8 are
 * left to the portable loops. Stack use is host-sized (tens of KB), the limits below.
 */
#ifndef NF_AVX2_H
#define NF_AVX2_H

#include <immintrin.h>

#define NF_AVX2_TAPS 2304 /* window values per pixel gathered on the stack (3 x 3 x 256); more: portable */
#define NF_AVX2_CHANNELS 1024 /* output channels whose corrected biases fit the stack; more: portable */
#define NF_DW_TAPS 25 /* depthwise kernels up to 5 x 5; larger: portable */

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
/* vpdpbusd: 4 unsigned x signed byte products summed into each int32 lane, so the window goes
 * in as x + 128 (unsigned) and the bias takes back (zp + 128) * sum(w) */
#define NF_VNNI 1
#define NF_AVX2_PIXELS 8 /* output pixels per block: each weight vector loaded serves 8 pixels */
typedef uint8_t nf_tap;
#else
/* pmaddwd: 2 int16 products summed into each int32 lane, so the window goes in as x - zp */
#define NF_AVX2_PIXELS 4 /* fewer registers: 4 pixels x 2 sums of 4 channels */
typedef int16_t nf_tap;
#endif

/* acc + the pairwise sums of a * b over int16 lanes (pmaddwd): one instruction with AVX512-VNNI */
static inline __m256i nf_madd(__m256i acc, __m256i a, __m256i b) {
#if defined(NF_VNNI)
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* 16 (or 8, then 8 zeros) int8 values widened to int16. x - zp lies in [-255, 255], so
 * pmaddwd's pairwise sums of (x - zp) * w stay far inside int32: exact. */
static inline __m256i nf_load16(const int8_t *p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256i nf_load8(const int8_t *p) { return _mm256_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)p)); }
static inline __m256i nf_load32x8(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* The requantization of 8 lanes (TFLite's multiplier and shift, per channel or for all),
 * prepared once per block of channels */
typedef struct {
  __m256i mult, mult_odd, left, right, half;
  int any_left; /* left shifts are rare (multipliers > 1): skipped when no lane has one */
} nf_requant8_params;

static inline nf_requant8_params nf_requant8_prepare(__m256i mult, __m256i shift) {
  const __m256i zero = _mm256_setzero_si256();
  nf_requant8_params q;
  q.mult = mult;
  q.mult_odd = _mm256_srli_epi64(mult, 32);
  q.left = _mm256_max_epi32(shift, zero);
  q.right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
  q.half = _mm256_srli_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), q.right), 1); /* 0 when right is 0 */
  q.any_left = !_mm256_testz_si256(q.left, q.left);
  return q;
}

static inline nf_requant8_params nf_requant8_channels(const int32_t *mult, const int32_t *shift) {
  return nf_requant8_prepare(nf_load32x8(mult), nf_load32x8(shift));
}

/* nf_requant on 8 lanes.
 * SaturatingRoundingDoublingHighMul: gemmlowp's nudged, truncating (ab + nudge) / 2^31 equals the
 * floor (ab + 2^30) >> 31 for every ab (both round halves up), and the multiplier is positive
 * (the emitter checks), so the saturating case cannot occur. The 64-bit products are formed on
 * even and odd lanes separately; bits 31..62 of each sum are the result.
 * RoundingDivideByPOT rounds to nearest, ties away from zero: sign(x) * ((|x| + half) >> right),
 * with |x| + half computed unsigned (no overflow, INT32_MIN included). */
static inline __m256i nf_requant8(const nf_requant8_params *q, __m256i x) {
  const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
  if (q->any_left) x = _mm256_sllv_epi32(x, q->left);
  const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, q->mult), nudge), 31);
  const __m256i odd = _mm256_slli_epi64(
      _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), q->mult_odd), nudge), 1);
  const __m256i high = _mm256_blend_epi32(even, odd, 0xAA);
  const __m256i rounded = _mm256_srlv_epi32(_mm256_add_epi32(_mm256_abs_epi32(high), q->half), q->right);
  return _mm256_sign_epi32(rounded, high);
}

/* + output zero point, clamp to the activation range, and the 8 int8 results; in int16, whose
 * saturation changes nothing: what saturates lies outside [act_min, act_max] anyway */
typedef struct {
  __m256i zero_point, act_min, act_max; /* int16 lanes */
} nf_output8_params;

static inline nf_output8_params nf_output8_prepare(int32_t zero_point, int32_t act_min, int32_t act_max) {
  nf_output8_params q;
  q.zero_point = _mm256_set1_epi16((int16_t)zero_point);
  q.act_min = _mm256_set1_epi16((int16_t)act_min);
  q.act_max = _mm256_set1_epi16((int16_t)act_max);
  return q;
}

static inline void nf_output8_store(const nf_output8_params *q, __m256i v, int8_t *o) {
  __m128i v16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  v16 = _mm_adds_epi16(v16, _mm256_castsi256_si128(q->zero_point));
  v16 = _mm_min_epi16(_mm_max_epi16(v16, _mm256_castsi256_si128(q->act_min)), _mm256_castsi256_si128(q->act_max));
  _mm_storel_epi64((__m128i *)o, _mm_packs_epi16(v16, v16));
}

/* nf_output8_store for two vectors at once, half the instructions: v0's 8 results to o0, v1's to o1 */
static inline void nf_output8x2_store(const nf_output8_params *q, __m256i v0, __m256i v1, int8_t *o0, int8_t *o1) {
  __m256i v = _mm256_packs_epi32(v0, v1); /* v0[0..3] v1[0..3] | v0[4..7] v1[4..7] */
  v = _mm256_min_epi16(_mm256_max_epi16(_mm256_adds_epi16(v, q->zero_point), q->act_min), q->act_max);
  v = _mm256_packs_epi16(v, v); /* 4-byte groups: v0[0..3] v1[0..3] (twice) | v0[4..7] v1[4..7] (twice) */
  const __m128i r = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
  _mm_storel_epi64((__m128i *)o0, r);
  _mm_storel_epi64((__m128i *)o1, _mm_unpackhi_epi64(r, r));
}

/* One window value as nf_tap, the padding value, and 16 values at once */
static inline nf_tap nf_tap_of(const nf_conv_params *p, int8_t x) {
#if defined(NF_VNNI)
  (void)p;
  return (nf_tap)(x + 128);
#else
  return (nf_tap)(x - p->in_zero_point);
#endif
}

static inline nf_tap nf_tap_padding(const nf_conv_params *p) {
#if defined(NF_VNNI)
  return (nf_tap)(p->in_zero_point + 128); /* contributes (zp + 128) * w, as the bias correction assumes */
#else
  (void)p;
  return 0;
#endif
}

static inline void nf_tap_copy16(const nf_conv_params *p, nf_tap *d, const int8_t *x) {
#if defined(NF_VNNI)
  (void)p;
  _mm_storeu_si128((__m128i *)d, _mm_xor_si128(_mm_loadu_si128((const __m128i *)x), _mm_set1_epi8(-128)));
#else
  const __m256i v = _mm256_sub_epi16(nf_load16(x), _mm256_set1_epi16((int16_t)p->in_zero_point));
  _mm256_storeu_si256((__m256i *)d, v);
#endif
}

/* An output pixel's window as nf_tap values in the weights' tap order (row after row), padding
 * taps and the taps after the last (up to a multiple of 4) included. Rows are copied 16 values
 * at a time even when shorter (3 or 9 values in first layers): the excess lands in slots that
 * later rows, or the trailing taps, overwrite, and reads never pass the end of the input tensor. */
static void nf_gather(const nf_conv_params *p, const int8_t *in, const nf_window *win, nf_tap *patch) {
  const int64_t in_size = (int64_t)p->in_h * p->in_w * p->in_c;
  const int32_t row = p->k_w * p->in_c, lead = win->kx0 * p->in_c, run = (win->kx1 - win->kx0) * p->in_c;
  const int32_t taps = p->k_h * row;
  const int64_t first = ((int64_t)win->iy0 * p->in_w + win->ix0) * p->in_c, stride = (int64_t)p->in_w * p->in_c;
  const nf_tap pad = nf_tap_padding(p);
  if (run == row && win->ky0 == 0 && win->ky1 == p->k_h && first + (p->k_h - 1) * stride + row + 16 <= in_size) {
    /* the whole window is inside the input, as for most pixels: rows without bounds checks */
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
      for (int32_t i = 0; i < row; i += 16) nf_tap_copy16(p, patch + ky * row + i, in + first + ky * stride + i);
    }
  } else {
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
      nf_tap *d = patch + ky * row;
      if (ky < win->ky0 || ky >= win->ky1) {
        for (int32_t i = 0; i < row; ++i) d[i] = pad;
        continue;
      }
      const int64_t start = first + ky * stride + lead;
      for (int32_t i = 0; i < lead; ++i) d[i] = pad;
      int32_t i = 0;
      for (; i < run && start + i + 16 <= in_size; i += 16) nf_tap_copy16(p, d + lead + i, in + start + i);
      for (; i < run; ++i) d[lead + i] = nf_tap_of(p, in[start + i]);
      for (i = lead + run; i < row; ++i) d[i] = pad;
    }
  }
  /* the taps up to the next multiple of 4 meet zero weights; 0 keeps them defined */
#if defined(NF_VNNI)
  _mm_storeu_si32(patch + taps, _mm_setzero_si128());
#else
  _mm_storel_epi64((__m128i *)(patch + taps), _mm_setzero_si128());
#endif
}

/* nf_conv_s8's output channels [0, out_c rounded down to 8), for all pixels; returns the channels
 * done (none for windows over NF_AVX2_TAPS values or over NF_AVX2_CHANNELS channels). Blocks of
 * NF_AVX2_PIXELS pixels x 8 channels: each group of 4 taps of the 8 channels is one 32-byte
 * weight vector, loaded once for the block, and each pixel's 4 window values are broadcast
 * against it. (16 channels per block, sharing the broadcasts, measured slower.) */
static int32_t nf_conv_avx2(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                            const int32_t *mult, const int32_t *shift, int8_t *out) {
  const int32_t taps = p->k_h * p->k_w * p->in_c, groups = (taps + 3) / 4, n = p->out_c;
  const int32_t pixels = p->out_h * p->out_w, full = n / 8 * 8;
  const nf_output8_params oq = nf_output8_prepare(p->out_zero_point, p->act_min, p->act_max);
  nf_tap patch[NF_AVX2_PIXELS][NF_AVX2_TAPS + 32]; /* + the excess of nf_gather's last row */
  int32_t start[NF_AVX2_CHANNELS]; /* each channel's sum before the first tap */
  if (taps > NF_AVX2_TAPS || n > NF_AVX2_CHANNELS) return 0;
  for (int32_t c0 = 0; c0 < full; c0 += 8) {
#if defined(NF_VNNI)
    __m256i sum = _mm256_setzero_si256();
    for (int32_t g = 0; g < groups; ++g) {
      sum = _mm256_dpbusd_epi32(sum, _mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)(w + (4 * g * n + 4 * c0))));
    }
    const __m256i zp128 = _mm256_set1_epi32(p->in_zero_point + 128);
    _mm256_storeu_si256((__m256i *)(start + c0), _mm256_sub_epi32(nf_load32x8(bias + c0), _mm256_mullo_epi32(zp128, sum)));
#else
    _mm256_storeu_si256((__m256i *)(start + c0), nf_load32x8(bias + c0));
#endif
  }
  int32_t oy = 0, ox = 0; /* the next pixel to gather */
  for (int32_t px0 = 0; px0 < pixels; px0 += NF_AVX2_PIXELS) {
    const int32_t np = pixels - px0 < NF_AVX2_PIXELS ? pixels - px0 : NF_AVX2_PIXELS;
    for (int j = 0; j < np; ++j) {
      const nf_window win = nf_window_at(p, oy, ox);
      nf_gather(p, in, &win, patch[j]);
      if (++ox == p->out_w) ox = 0, ++oy;
    }
    /* a last, partial block computes copies of its first pixel and stores only np pixels */
    for (int j = np; j < NF_AVX2_PIXELS; ++j) {
      for (int32_t k = 0; k < 4 * groups; ++k) patch[j][k] = patch[0][k];
    }
    int8_t *o = out + (int64_t)px0 * n;
    for (int32_t c0 = 0; c0 < full; c0 += 8) {
      __m256i acc[NF_AVX2_PIXELS];
#if defined(NF_VNNI)
      for (int j = 0; j < NF_AVX2_PIXELS; ++j) acc[j] = nf_load32x8(start + c0);
      for (int32_t g = 0; g < groups; ++g) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + (4 * g * n + 4 * c0)));
        for (int j = 0; j < NF_AVX2_PIXELS; ++j) {
          acc[j] = _mm256_dpbusd_epi32(acc[j], _mm256_broadcastd_epi32(_mm_loadu_si32(patch[j] + 4 * g)), wv);
        }
      }
#else
      /* int16 weights of 4 channels x 4 taps per vector; each sum lane holds half a channel's
       * taps (two of the four) until the end */
      __m256i half[NF_AVX2_PIXELS][2];
      for (int j = 0; j < NF_AVX2_PIXELS; ++j) half[j][0] = half[j][1] = _mm256_setzero_si256();
      for (int32_t g = 0; g < groups; ++g) {
        const int8_t *wg = w + (4 * g * n + 4 * c0);
        const __m256i w0 = nf_load16(wg), w1 = nf_load16(wg + 16);
        for (int j = 0; j < NF_AVX2_PIXELS; ++j) {
          const __m256i v = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(patch[j] + 4 * g)));
          half[j][0] = nf_madd(half[j][0], v, w0);
          half[j][1] = nf_madd(half[j][1], v, w1);
        }
      }
      for (int j = 0; j < NF_AVX2_PIXELS; ++j) {
        /* hadd: channels 0, 1, 4, 5 | 2, 3, 6, 7; the permute puts them in order */
        const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(half[j][0], half[j][1]), 0xD8);
        acc[j] = _mm256_add_epi32(sums, nf_load32x8(start + c0));
      }
#endif
      const nf_requant8_params q = nf_requant8_channels(mult + c0, shift + c0);
      int j = 0;
      for (; j + 1 < np; j += 2) {
        nf_output8x2_store(&oq, nf_requant8(&q, acc[j]), nf_requant8(&q, acc[j + 1]), o + (int64_t)j * n + c0,
                           o + (int64_t)(j + 1) * n + c0);
      }
      if (j < np) nf_output8_store(&oq, nf_requant8(&q, acc[j]), o + (int64_t)j * n + c0);
    }
  }
  return full;
}

/* nf_dwconv_s8 (depth multiplier 1, up to NF_DW_TAPS taps) for channels [0, out_c rounded down
 * to 8); returns the channels done. Channels go in blocks of 16 (the last may be 8), up to
 * NF_DW_BLOCKS blocks at a time for each pixel, so that the pixel's window is worked out once.
 * Two taps per pmaddwd: the inputs of taps t and t + 1 are interleaved (unpacklo/hi_epi16) against
 * weights interleaved the same way beforehand. The input offset is folded into each block's bias
 * (bias - zp * sum(w)), so raw int8 inputs are multiplied and padding taps read zp (adding
 * zp * w - zp * w = 0, as TFLite's skipping them does). unpack works within 128-bit lanes: the
 * two sums hold channels 0-3, 8-11 and 4-7, 12-15, put back in order before requantizing. */
#define NF_DW_BLOCKS 8
static int32_t nf_dwconv_avx2(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                              const int32_t *mult, const int32_t *shift, int8_t *out) {
  const int32_t n = p->out_c, taps = p->k_h * p->k_w, done = n / 8 * 8;
  const nf_output8_params oq = nf_output8_prepare(p->out_zero_point, p->act_min, p->act_max);
  __m256i wpair[NF_DW_BLOCKS][(NF_DW_TAPS + 1) / 2][2], start[NF_DW_BLOCKS][2];
  nf_requant8_params q[NF_DW_BLOCKS][2];
  /* each tap's input offset from the window's top-left (an odd last tap pairs with offset 0 and
   * zero weights), and zp as the input of padding taps, for every channel of a chunk */
  int32_t offset[NF_DW_TAPS + 1], tap_y[NF_DW_TAPS], tap_x[NF_DW_TAPS];
  int8_t padding[16 * NF_DW_BLOCKS];
  const int8_t *src[NF_DW_TAPS + 1];
  if (taps > NF_DW_TAPS) return 0;
  for (int32_t t = 0; t < taps; ++t) {
    tap_y[t] = t / p->k_w, tap_x[t] = t % p->k_w;
    offset[t] = (tap_y[t] * p->in_w + tap_x[t]) * p->in_c;
  }
  offset[taps] = 0;
  for (int i = 0; i < 16 * NF_DW_BLOCKS; ++i) padding[i] = (int8_t)p->in_zero_point;
  for (int32_t chunk = 0; chunk < done; chunk += 16 * NF_DW_BLOCKS) {
    const int32_t blocks = (done - chunk + 15) / 16 < NF_DW_BLOCKS ? (done - chunk + 15) / 16 : NF_DW_BLOCKS;
    for (int32_t b = 0; b < blocks; ++b) {
      const int32_t c0 = chunk + 16 * b;
      const int wide = c0 + 16 <= n; /* else the last 8 channels: the upper lanes compute zeros */
      const int32_t c1 = wide ? c0 + 8 : c0;
      q[b][0] = nf_requant8_channels(mult + c0, shift + c0);
      q[b][1] = nf_requant8_channels(mult + c1, shift + c1);
      __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
      for (int32_t t = 0; t < taps; t += 2) {
        const int8_t *f = w + (int64_t)t * n + c0;
        const __m256i a = wide ? nf_load16(f) : nf_load8(f);
        const __m256i c = t + 1 >= taps ? _mm256_setzero_si256() : wide ? nf_load16(f + n) : nf_load8(f + n);
        wpair[b][t / 2][0] = _mm256_unpacklo_epi16(a, c);
        wpair[b][t / 2][1] = _mm256_unpackhi_epi16(a, c);
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(wpair[b][t / 2][0], _mm256_set1_epi16(1)));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(wpair[b][t / 2][1], _mm256_set1_epi16(1)));
      }
      const __m256i zp = _mm256_set1_epi32(p->in_zero_point);
      const __m256i b0 = nf_load32x8(bias + c0), b1 = nf_load32x8(bias + c1);
      start[b][0] = _mm256_sub_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_mullo_epi32(zp, sum0));
      start[b][1] = _mm256_sub_epi32(_mm256_permute2x128_si256(b0, b1, 0x31), _mm256_mullo_epi32(zp, sum1));
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
      for (int32_t ox = 0; ox < p->out_w; ++ox) {
        const nf_window win = nf_window_at(p, oy, ox);
        const int64_t base = ((int64_t)win.iy0 * p->in_w + win.ix0) * p->in_c + chunk;
        if (win.ky0 == 0 && win.kx0 == 0 && win.ky1 == p->k_h && win.kx1 == p->k_w) {
          for (int32_t t = 0; t <= taps; ++t) src[t] = in + base + offset[t];
        } else {
          for (int32_t t = 0; t < taps; ++t) {
            const int valid = tap_y[t] >= win.ky0 && tap_y[t] < win.ky1 && tap_x[t] >= win.kx0 && tap_x[t] < win.kx1;
            src[t] = valid ? in + base + offset[t] : padding;
          }
          src[taps] = padding;
        }
        int8_t *o = out + ((int64_t)oy * p->out_w + ox) * n + chunk;
        for (int32_t b = 0; b < blocks; ++b) {
          const int32_t cb = 16 * b;
          __m256i lo = start[b][0], hi = start[b][1];
          if (chunk + cb + 16 <= n) {
            for (int32_t t = 0; t < taps; t += 2) {
              const __m256i x0 = nf_load16(src[t] + cb), x1 = nf_load16(src[t + 1] + cb);
              lo = nf_madd(lo, _mm256_unpacklo_epi16(x0, x1), wpair[b][t / 2][0]);
              hi = nf_madd(hi, _mm256_unpackhi_epi16(x0, x1), wpair[b][t / 2][1]);
            }
            nf_output8x2_store(&oq, nf_requant8(&q[b][0], _mm256_permute2x128_si256(lo, hi, 0x20)),
                               nf_requant8(&q[b][1], _mm256_permute2x128_si256(lo, hi, 0x31)), o + cb, o + cb + 8);
          } else {
            for (int32_t t = 0; t < taps; t += 2) {
              const __m256i x0 = nf_load8(src[t] + cb), x1 = nf_load8(src[t + 1] + cb);
              lo = nf_madd(lo, _mm256_unpacklo_epi16(x0, x1), wpair[b][t / 2][0]);
              hi = nf_madd(hi, _mm256_unpackhi_epi16(x0, x1), wpair[b][t / 2][1]);
            }
            nf_output8_store(&oq, nf_requant8(&q[b][0], _mm256_permute2x128_si256(lo, hi, 0x20)), o + cb);
          }
        }
      }
    }
  }
  return done;
}

/* nf_add_s8 on 8 elements at a time: the same three requantizations; returns the elements done */
static int32_t nf_add_avx2(const nf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *out) {
  const nf_requant8_params qa = nf_requant8_prepare(_mm256_set1_epi32(p->a_mult), _mm256_set1_epi32(p->a_shift));
  const nf_requant8_params qb = nf_requant8_prepare(_mm256_set1_epi32(p->b_mult), _mm256_set1_epi32(p->b_shift));
  const nf_requant8_params qo = nf_requant8_prepare(_mm256_set1_epi32(p->out_mult), _mm256_set1_epi32(p->out_shift));
  const nf_output8_params oq = nf_output8_prepare(p->out_zero_point, p->act_min, p->act_max);
  const __m256i za = _mm256_set1_epi32(p->a_zero_point), zb = _mm256_set1_epi32(p->b_zero_point);
  const __m128i ls = _mm_cvtsi32_si128(p->left_shift);
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    /* out may alias a or b: both are loaded before the store */
    const __m256i x = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(a + i))), za);
    const __m256i y = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + i))), zb);
    const __m256i sx = nf_requant8(&qa, _mm256_sll_epi32(x, ls)), sy = nf_requant8(&qb, _mm256_sll_epi32(y, ls));
    nf_output8_store(&oq, nf_requant8(&qo, _mm256_add_epi32(sx, sy)), out + i);
  }
  return i;
}

#endif
