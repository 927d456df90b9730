/* Nanofactory int8 softmax: TFLite (Micro)'s reference int8 softmax, bit for bit.
 *
 * Softmax over the innermost `depth` values of each of `rows` rows. Input: int8, any
 * scale / zero point (the zero point cancels). Output: int8 with scale 1/256, zero
 * point -128. The three parameters come from compilers/softmax.py softmax_params()
 * (TFLM CalculateSoftmaxParams). `out` must not alias `in`. No malloc, no libc.
 */
#ifndef NF_SOFTMAX_H
#define NF_SOFTMAX_H

#include <stdint.h>

void nf_softmax_s8(const int8_t *in, int8_t *out, int rows, int depth, int32_t input_multiplier,
                   int32_t input_left_shift, int32_t diff_min);

#endif
