/* Nanofactory int8 kernels: TFLite Micro's reference arithmetic, bit for bit.
 *
 * NHWC tensors, per-channel weights (conv HWIO, depthwise 1HWO, fully connected OI).
 * Input offsets are folded into the biases at compile time (bias + offset * sum(w)),
 * which is exact because padding taps read the input zero point. No malloc, no libc.
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
void nf_add_s8(int32_t n, const int8_t *a, const int8_t *b, int32_t a_zero_point, int32_t a_mult,
               int32_t a_shift, int32_t b_zero_point, int32_t b_mult, int32_t b_shift, int32_t left_shift,
               int32_t out_mult, int32_t out_shift, int32_t out_zero_point, int32_t act_min, int32_t act_max,
               int8_t *out);
void nf_avgpool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out);
void nf_maxpool_s8(const nf_conv_params *p, const int8_t *in, int8_t *out);
/* concatenation along the innermost `inner` bytes of `outer` rows: copies one input's slice */
void nf_concat_slice_s8(int32_t outer, int32_t in_inner, int32_t out_inner, int32_t out_start, const int8_t *in,
                        int8_t *out);
void nf_copy_s8(int32_t n, const int8_t *in, int8_t *out);

#endif
