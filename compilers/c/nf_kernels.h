/* Nanofactory int8 kernels: TFLite Micro's reference arithmetic, bit for bit.
 *
 * NHWC tensors, per-channel weights. Convolutions take TFLite's input offset at run time:
 * they sum (x - in_zero_point) * w over the taps inside the input and skip padding taps,
 * as TFLite does, so their biases are the plain int32 biases. Fully connected layers have
 * the offset folded into the bias at compile time (bias - zp * sum(w)).
 *
 * Weight layouts (compilers/c_emitter.py re-lays TFLite's at compile time):
 *   nf_conv_s8    HWIO [k_h][k_w][in_c][out_c] with the taps k = (ky * k_w + kx) * in_c + ic in
 *                 groups of 4: tap k of output channel c is w[(k / 4) * 4 * out_c + 4 * c + k % 4],
 *                 the taps padded with zero weights to a multiple of 4. The vector loop runs over
 *                 output channels, each sum in its own lane (no horizontal sums), and a channel's
 *                 4 taps are one 32-bit lane: what x86 VNNI's vpdpbusd multiplies and adds at once;
 *   nf_dwconv_s8  1HWO [k_h][k_w][out_c], the same for depthwise; nf_fc_s8 OI [out_n][in_n].
 *
 * Portable C99, no malloc, no libc. Host builds for AVX2 (-mavx2, -march=native) take the
 * vector loops in nf_avx2.h, and Arm cores with the DSP extension (Cortex-M4, M7, M33, M55) the
 * SMLAD loops in nf_dsp.h; both produce the same integers, and tests check all three.
 */
#ifndef NF_KERNELS_H
#define NF_KERNELS_H

#include <stdint.h>

typedef struct {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, pad_t, pad_l;
  int32_t depth_multiplier;
  int32_t in_zero_point, out_zero_point, act_min, act_max;
} nf_conv_params;

void nf_conv_s8(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int8_t *out);
void nf_dwconv_s8(const nf_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int8_t *out);
void nf_fc_s8(int32_t in_n, int32_t out_n, const int8_t *in, const int8_t *w, const int32_t *bias,
              const int32_t *mult, const int32_t *shift, int32_t out_zero_point, int32_t act_min,
              int32_t act_max, int8_t *out);
/* an elementwise Add's quantization (TFLite's): each input's offset, multiplier and shift after a common left
 * shift, then the sum's; in a struct, as the convolutions', so a call passes five arguments, not sixteen */
typedef struct {
  int32_t a_zero_point, a_mult, a_shift, b_zero_point, b_mult, b_shift, left_shift;
  int32_t out_mult, out_shift, out_zero_point, act_min, act_max;
} nf_add_params;

void nf_add_s8(const nf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *out);
void nf_avgpool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out);
void nf_maxpool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out);
/* concatenation along the innermost `inner` bytes of `outer` rows: copies one input's slice */
void nf_concat_slice_s8(int32_t outer, int32_t in_inner, int32_t out_inner, int32_t out_start, const int8_t *in,
                        int8_t *out);
void nf_copy_s8(int32_t n, const int8_t *in, int8_t *out);

#endif
