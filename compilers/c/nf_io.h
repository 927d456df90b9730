/* Nanofactory model I/O: camera frames in, class names out.
 *
 * nf_image_to_input turns a camera frame into the model's int8 input exactly as Nanofactory
 * prepared the training images, bit for bit (knowledge/pools.py with Pillow): the frame is made
 * grayscale (ITU-R 601 luma, Pillow's integer formula) or RGB as the model was trained, cropped to
 * the centred square, resized to NF_INPUT_W x NF_INPUT_H with Pillow's antialiased bilinear filter
 * (22-bit fixed-point weights), and each pixel p mapped to int8 through nf_pixel_lut, the
 * normalisation (p - 128) / 128 quantized with the model's input scale and zero point. A model
 * fed frames any other way sees inputs it was not trained on.
 *
 * The weights depend only on the frame's size: nf_image_init computes them once (double
 * arithmetic, no libm), nf_image_to_input then uses integers only. An nf_image_t takes
 * sizeof(nf_image_t) bytes (about 4 KB for a 28 x 28 model and NF_IMAGE_MAX_SIDE 480); a frame's
 * shorter side may be at most NF_IMAGE_MAX_SIDE (define it before including this header to change it).
 * No malloc, no libc.
 */
#ifndef NF_IO_H
#define NF_IO_H

#include <stdint.h>

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NF_IMAGE_MAX_SIDE
#define NF_IMAGE_MAX_SIDE 480
#endif
/* filter taps per output pixel at the largest frame: 2 * ceil(side / output side) + 1 */
#define NF_IMAGE_TAPS (2 * ((NF_IMAGE_MAX_SIDE + NF_INPUT_W - 1) / NF_INPUT_W) + 1)

/* frame formats, by bytes per pixel; rows top to bottom. RGB888: R, G, B. RGB565: 16 bits per pixel,
 * high byte first, as DVP sensors of the OV7670 kind send it by default (swap the bytes of a sensor set
 * to the other order); each channel is widened to 8 bits by repeating its top bits (r5 -> r5 << 3 |
 * r5 >> 2), then prepared as an RGB888 frame. */
enum { NF_GRAY8 = 1, NF_RGB565 = 2, NF_RGB888 = 3 };

typedef struct {
  int32_t width, height, format; /* the frame */
  int32_t left, top;             /* the centred square crop's corner */
  int16_t first[NF_INPUT_W];     /* per output column (and row): first source column (row) of the crop */
  int16_t count[NF_INPUT_W];     /* and how many the filter spans */
  int32_t weight[NF_INPUT_W][NF_IMAGE_TAPS];
} nf_image_t;

/* Prepares conversion of width x height frames of a format; 0, or -1 when the frame's shorter
 * side exceeds NF_IMAGE_MAX_SIDE or the arguments are not a frame. */
int nf_image_init(nf_image_t *image, int32_t width, int32_t height, int32_t format);

/* One frame (width * height * format bytes) -> NF_INPUT_SIZE int8 values for nf_invoke; each crop
 * row is read and resized horizontally once. Stack: one frame row in the model's channels
 * (NF_IMAGE_MAX_SIDE * NF_INPUT_C bytes) and the resized rows an output row spans (NF_IMAGE_TAPS *
 * (NF_INPUT_W * NF_INPUT_C + 4) bytes): 1.7 KB for a 28 x 28 gray model, 4.7 KB for 96 x 96 RGB at
 * the default NF_IMAGE_MAX_SIDE; a smaller NF_IMAGE_MAX_SIDE takes less. */
void nf_image_to_input(const nf_image_t *image, const uint8_t *frame, int8_t *input);

/* Pixels already at the model's size and channels (NF_INPUT_H x NF_INPUT_W x NF_INPUT_C, uint8) -> input. */
void nf_pixels_to_input(const uint8_t *pixels, int8_t *input);

/* The index of the largest output (the first on ties); its name is nf_labels[index]. */
int nf_argmax(const int8_t *output);

#ifdef __cplusplus
}
#endif

#endif
