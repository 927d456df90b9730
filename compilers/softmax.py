"""TFLite's int8 SOFTMAX, vectorized in numpy, to the bit.

Reproduces ``tflite::reference_ops::Softmax<int8_t, int8_t>``
(``tensorflow/lite/kernels/internal/reference/softmax.h``) with the parameters TFLite
Micro computes in ``CalculateSoftmaxParams`` (``micro/kernels/softmax_common.cc``):
``PreprocessSoftmaxScaling(beta, input_scale, kScaledDiffIntegerBits=5)`` and
``diff_min = -CalculateInputRadius(5, input_left_shift)``. The fixed-point maths is
gemmlowp's (``fixedpoint.h``): ``exp_on_negative_values`` on Q5.26 differences, a Q12.19
accumulator, ``GetReciprocal`` via ``one_over_one_plus_x_for_x_in_0_1`` (Newton-Raphson).

The output quantization is TFLite's fixed one for int8 softmax: scale 1/256, zero point
-128. All arrays below are int64 holding int32 values; ``_wrap32`` reproduces two's
complement wraparound where the C++ code relies on it. The C twin is
``compilers/c/nf_softmax.c`` (``nf_softmax_s8``), fed by :func:`softmax_params`.
"""

from __future__ import annotations

import math

import numpy as np

from compilers.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

SCALED_DIFF_INTEGER_BITS = 5  # Q5.26 input to exp()
ACCUMULATION_INTEGER_BITS = 12  # Q12.19 sum of exps
OUTPUT_SCALE = 1.0 / 256.0
OUTPUT_ZERO_POINT = -128

_srdhm = saturating_rounding_doubling_high_mul
_rdbp = rounding_divide_by_pot


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wraparound of an int64 array."""
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0 (saturating left shift)."""
    threshold = (1 << (31 - exponent)) - 1
    out = np.asarray(x, np.int64) << exponent
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def softmax_params(input_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) exactly as TFLM's CalculateSoftmaxParams (int8).

    ``input_scale`` and ``beta`` are float32 in the model; TFLM casts both to double.
    Uses PreprocessSoftmaxScaling without TFLITE_SINGLE_ROUNDING (the library default).
    """
    real = float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS))
    real = min(real, float((1 << 31) - 1))
    if not real > 1.0:  # QuantizeMultiplierGreaterThanOne's TFLITE_CHECK_GT
        raise ValueError(f"softmax beta*input_scale too small: {beta}*{input_scale}")
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(
        1.0 * ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << left_shift)
    )
    return int(multiplier), int(left_shift), -int(radius)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """Q0.31 exp(a) for a in [-1/4, 0), Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rdbp(x4, 2)
    poly = _rdbp(_wrap32(_srdhm(_wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return _wrap32(constant_term + _srdhm(constant_term, _wrap32(x + poly)))


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """gemmlowp exp_on_negative_values: Q5.26 input (raw int32, <= 0) -> Q0.31 output."""
    a = np.asarray(a, np.int64)
    frac_bits = 31 - SCALED_DIFF_INTEGER_BITS
    one_quarter = 1 << (frac_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _sat_mul_pot(a_mod_quarter_minus_one_quarter, SCALED_DIFF_INTEGER_BITS)  # Rescale<0>
    )
    remainder = _wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _BARREL:  # all apply: kIntegerBits (5) > exponent
        bit = np.int64(1) << (frac_bits + exponent)
        result = np.where((remainder & bit) != 0, _srdhm(result, multiplier), result)
    # kIntegerBits == 5: no clamp below -32
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """Q0.31 1/(1+a) for a in [0, 1): Newton-Raphson, 3 iterations, in Q2.29."""
    total = np.asarray(a, np.int64) + INT32_MAX  # RoundingHalfSum(a, F0::One())
    total = total + np.where(total >= 0, 1, -1)
    half_denominator = np.where(total >= 0, total // 2, -((-total) // 2))  # truncating division
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    x = _wrap32(constant_48_over_17 + _srdhm(half_denominator, constant_neg_32_over_17))
    one_f2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)
        one_minus = _wrap32(one_f2 - half_denominator_times_x)
        x = _wrap32(x + _sat_mul_pot(_srdhm(x, one_minus), 2))  # Rescale<2> of a Q4 product
    return _sat_mul_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x))


def _get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (shifted_scale Q0.31, num_bits_over_unit)."""
    ux = np.asarray(x, np.int64) & 0xFFFFFFFF
    bit_length = np.frexp(ux.astype(np.float64))[1].astype(np.int64)  # exact for < 2**53; 0 -> 0
    headroom_plus_one = 32 - bit_length  # CountLeadingZeros(uint32)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = _wrap32(((ux << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return _one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def softmax_int8(x: np.ndarray, input_scale: float, beta: float = 1.0) -> np.ndarray:
    """TFLite(-Micro) reference int8 softmax over the last axis; output scale 1/256, zp -128.

    ``x``: int8, shape (N, K) or (K,). The input zero point cancels out (only differences
    to the row maximum matter), so only ``input_scale`` is needed.
    """
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"softmax_int8 expects int8 input, got {x.dtype}")
    shape = x.shape
    rows = x.reshape(-1, shape[-1]).astype(np.int64) if x.ndim else x.reshape(1, 1).astype(np.int64)
    multiplier, left_shift, diff_min = softmax_params(input_scale, beta)

    # exp() depends only on the difference to the row max (-255..0): tabulate it, bit-exact.
    diffs = np.arange(-255, 1, dtype=np.int64)
    rescaled = _srdhm(_wrap32(diffs * (np.int64(1) << left_shift)), multiplier)
    exp_table = exp_on_negative_values(rescaled)  # Q0.31, indexed by diff + 255

    diff = rows - rows.max(axis=1, keepdims=True)
    valid = diff >= diff_min
    exp_in_0 = exp_table[diff + 255]
    rescaled_exps = _rdbp(exp_in_0, ACCUMULATION_INTEGER_BITS)  # Rescale<12> from Q0.31
    sum_of_exps = _wrap32(np.where(valid, rescaled_exps, 0).sum(axis=1))

    shifted_scale, num_bits_over_unit = _get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
    prod = _srdhm(shifted_scale[:, None], exp_in_0)
    # The exponent exceeds 31 only when a row's sum of exps is >= 2**28 (>= 512 entries
    # tied near the row max): TFLite's RoundingDivideByPOT asserts there (TFLM and LiteRT
    # abort). We return the exact continuation, 0, i.e. every output of that row is -128.
    unsat = _rdbp(prod, (num_bits_over_unit + 31 - 8)[:, None])
    out = np.clip(_wrap32(unsat - 128), -128, 127)
    out = np.where(valid, out, -128)
    return out.astype(np.int8).reshape(shape)
