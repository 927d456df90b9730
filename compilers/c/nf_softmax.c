/* Nanofactory int8 softmax: tflite::reference_ops::Softmax<int8_t, int8_t> with gemmlowp's
 * fixed point (exp_on_negative_values, Rescale, GetReciprocal), bit for bit.
 *
 * Written without undefined behaviour: products and sums go through int64, wraparound
 * that the C++ relies on is made explicit (nfsm_wrap32), arithmetic right shifts of
 * negative values are done as ~(~x >> n), and no negative value is left-shifted.
 * The numpy twin is compilers/softmax.py (softmax_int8).
 */
#include "nf_softmax.h"

#define NFSM_INT32_MAX ((int32_t)0x7fffffff)
#define NFSM_INT32_MIN (-NFSM_INT32_MAX - 1)

/* two's-complement wraparound to int32, portably */
static int32_t nfsm_wrap32(int64_t v) {
  uint32_t u = (uint32_t)v; /* modulo 2^32, well defined */
  if (u >= 0x80000000u) return (int32_t)((int64_t)u - (int64_t)0x100000000LL);
  return (int32_t)u;
}

/* floor(x / 2^n), i.e. an arithmetic right shift, for 0 <= n <= 31 */
static int32_t nfsm_asr(int32_t x, int n) { return x >= 0 ? (x >> n) : ~((~x) >> n); }

static int32_t nfsm_srdhm(int32_t a, int32_t b) {
  int64_t ab, nudge;
  if (a == NFSM_INT32_MIN && b == NFSM_INT32_MIN) return NFSM_INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C99 truncates, like C++ */
}

/* gemmlowp RoundingDivideByPOT; exponent >= 32 (TFLite asserts there) gives the exact 0 */
static int32_t nfsm_rdbpot(int32_t x, int exponent) {
  int32_t mask, remainder, threshold;
  if (exponent >= 32) return 0;
  mask = (int32_t)(((int64_t)1 << exponent) - 1);
  remainder = x & mask;
  threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return nfsm_asr(x, exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent>, exponent in 1..30 */
static int32_t nfsm_sat_mul_pot(int32_t x, int exponent) {
  int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return NFSM_INT32_MAX;
  if (x < -threshold) return NFSM_INT32_MIN;
  return (int32_t)((int64_t)x * ((int64_t)1 << exponent));
}

static int32_t nfsm_add(int32_t a, int32_t b) { return nfsm_wrap32((int64_t)a + (int64_t)b); }

/* Q0.31 exp(a) for a in [-1/4, 0): Taylor expansion around -1/8 */
static int32_t nfsm_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883;
  int32_t x = nfsm_add(a, (int32_t)1 << 28);
  int32_t x2 = nfsm_srdhm(x, x);
  int32_t x3 = nfsm_srdhm(x2, x);
  int32_t x4 = nfsm_srdhm(x2, x2);
  int32_t x4_over_4 = nfsm_rdbpot(x4, 2);
  int32_t poly = nfsm_rdbpot(nfsm_add(nfsm_srdhm(nfsm_add(x4_over_4, x3), constant_1_over_3), x2), 1);
  return nfsm_add(constant_term, nfsm_srdhm(constant_term, nfsm_add(x, poly)));
}

/* gemmlowp exp_on_negative_values: Q5.26 input <= 0 -> Q0.31 */
static int32_t nfsm_exp_on_negative_values(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t one_quarter = (int32_t)1 << 24; /* 26 fractional bits */
  int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
  int32_t result = nfsm_exp_quarter(nfsm_sat_mul_pot(a_mod_quarter_minus_one_quarter, 5)); /* Rescale<0> */
  uint32_t remainder = (uint32_t)nfsm_wrap32((int64_t)a_mod_quarter_minus_one_quarter - (int64_t)a);
  int i;
  for (i = 0; i < 7; ++i) { /* barrel shifter, exponents -2..4: bits 24..30 */
    if (remainder & ((uint32_t)1 << (24 + i))) result = nfsm_srdhm(result, multipliers[i]);
  }
  if (a == 0) result = NFSM_INT32_MAX;
  return result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Newton-Raphson in Q2.29 */
static int32_t nfsm_one_over_one_plus_x(int32_t a) {
  int64_t sum = (int64_t)a + NFSM_INT32_MAX; /* RoundingHalfSum(a, One) */
  int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = nfsm_add(1515870810, nfsm_srdhm(half_denominator, -1010580540)); /* 48/17 - 32/17 d */
  int i;
  for (i = 0; i < 3; ++i) {
    int32_t half_denominator_times_x = nfsm_srdhm(half_denominator, x);
    int32_t one_minus = nfsm_wrap32(((int64_t)1 << 29) - (int64_t)half_denominator_times_x);
    x = nfsm_add(x, nfsm_sat_mul_pot(nfsm_srdhm(x, one_minus), 2));
  }
  return nfsm_sat_mul_pot(x, 1);
}

static int nfsm_clz32(uint32_t x) {
  int n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

static int32_t nfsm_scaled_diff(int32_t diff, int32_t input_multiplier, int32_t input_left_shift) {
  /* MultiplyByQuantizedMultiplierGreaterThanOne: diff * 2^shift fits int32 when diff >= diff_min */
  int32_t shifted = nfsm_wrap32((int64_t)diff * ((int64_t)1 << input_left_shift));
  return nfsm_srdhm(shifted, input_multiplier);
}

void nf_softmax_s8(const int8_t *in, int8_t *out, int rows, int depth, int32_t input_multiplier,
                   int32_t input_left_shift, int32_t diff_min) {
  int r, c;
  for (r = 0; r < rows; ++r) {
    const int8_t *row = in + (long)r * depth;
    int8_t *dst = out + (long)r * depth;
    int32_t max_in_row = -128;
    uint32_t sum_of_exps = 0; /* Q12.19, wraps like int32 */
    uint32_t shifted_sum;
    int headroom_plus_one, num_bits_over_unit;
    int32_t shifted_scale;
    for (c = 0; c < depth; ++c) {
      if (row[c] > max_in_row) max_in_row = row[c];
    }
    for (c = 0; c < depth; ++c) {
      int32_t diff = (int32_t)row[c] - max_in_row;
      if (diff >= diff_min) {
        int32_t e = nfsm_exp_on_negative_values(nfsm_scaled_diff(diff, input_multiplier, input_left_shift));
        sum_of_exps += (uint32_t)nfsm_rdbpot(e, 12); /* Rescale<12> */
      }
    }
    /* GetReciprocal(sum_of_exps, 12, &num_bits_over_unit) */
    headroom_plus_one = nfsm_clz32(sum_of_exps);
    num_bits_over_unit = 12 - headroom_plus_one;
    shifted_sum = headroom_plus_one >= 32 ? 0u : (sum_of_exps << headroom_plus_one);
    shifted_scale = nfsm_one_over_one_plus_x(nfsm_wrap32((int64_t)(uint32_t)(shifted_sum - 0x80000000u)));
    for (c = 0; c < depth; ++c) {
      int32_t diff = (int32_t)row[c] - max_in_row;
      if (diff >= diff_min) {
        int32_t e = nfsm_exp_on_negative_values(nfsm_scaled_diff(diff, input_multiplier, input_left_shift));
        int32_t unsat = nfsm_rdbpot(nfsm_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
        int64_t v = (int64_t)unsat - 128;
        dst[c] = (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
      } else {
        dst[c] = -128;
      }
    }
  }
}
