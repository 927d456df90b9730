/* Nanofactory model I/O: see nf_io.h. */
#include "nf_io.h"

#define NF_PREC 22 /* fixed-point bits of a filter weight: 8-bit pixels, two bits of headroom */

#if NF_INPUT_W != NF_INPUT_H
#error "nf_io expects a square model input"
#endif

/* The triangle (bilinear) filter. */
static double nf_tri(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

int nf_image_init(nf_image_t *image, int32_t width, int32_t height, int32_t format) {
  if (width < 1 || height < 1 || format < NF_GRAY8 || format > NF_RGB888) return -1;
  const int32_t side = width < height ? width : height;
  if (side > NF_IMAGE_MAX_SIDE) return -1;
  image->width = width;
  image->height = height;
  image->format = format;
  image->left = (width - side) / 2;
  image->top = (height - side) / 2;
  /* The crop is square and so is the model's input: one set of weights serves columns and rows.
   * A crop of the model's size gets weights 1 and 0: each output takes its pixel, as Pillow copies it. */
  const double scale = (double)side / NF_INPUT_W;
  const double reach = scale < 1.0 ? 1.0 : scale; /* the filter widens to average when shrinking */
  const double inverse = 1.0 / reach;
  for (int o = 0; o < NF_INPUT_W; ++o) {
    int32_t *w = image->weight[o];
    for (int t = 0; t < NF_IMAGE_TAPS; ++t) w[t] = 0;
    const double center = (o + 0.5) * scale;
    int lo = (int)(center - reach + 0.5), hi = (int)(center + reach + 0.5);
    if (lo < 0) lo = 0;
    if (hi > side) hi = side;
    if (hi - lo > NF_IMAGE_TAPS) return -1; /* not reached: the taps cover NF_IMAGE_MAX_SIDE */
    double total = 0.0;
    for (int i = lo; i < hi; ++i) total += nf_tri(((double)i - center + 0.5) * inverse);
    for (int i = lo; i < hi; ++i) {
      double k = nf_tri(((double)i - center + 0.5) * inverse);
      if (total != 0.0) k /= total;
      w[i - lo] = (int32_t)(0.5 + k * (double)(1 << NF_PREC));
    }
    image->first[o] = (int16_t)lo;
    image->count[o] = (int16_t)(hi - lo);
  }
  return 0;
}

static uint8_t nf_clip8(int32_t sum) {
  sum >>= NF_PREC; /* the sums are never negative: every weight is */
  return (uint8_t)(sum > 255 ? 255 : sum);
}

/* A pixel's 8-bit R, G, B in the model's channels: Pillow's luma ("L") for one channel. */
static void nf_store(uint8_t *dst, uint32_t r, uint32_t g, uint32_t b) {
#if NF_INPUT_C == 1
  dst[0] = (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
#else
  dst[0] = (uint8_t)r, dst[1] = (uint8_t)g, dst[2] = (uint8_t)b;
#endif
}

/* Pixels [x0, x1) of a frame row into line[(x - x0) * NF_INPUT_C ...], in the model's channels. */
static void nf_line(const uint8_t *row, int32_t x0, int32_t x1, int32_t format, uint8_t *line) {
  if (format == NF_GRAY8) {
    for (int32_t x = x0; x < x1; ++x, line += NF_INPUT_C)
      for (int c = 0; c < NF_INPUT_C; ++c) line[c] = row[x];
  } else if (format == NF_RGB565) {
    for (int32_t x = x0; x < x1; ++x, line += NF_INPUT_C) {
      const uint32_t v = (uint32_t)row[2 * x] << 8 | row[2 * x + 1];
      const uint32_t r = v >> 11, g = (v >> 5) & 63u, b = v & 31u;
      nf_store(line, r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2);
    }
  } else {
    for (int32_t x = x0; x < x1; ++x, line += NF_INPUT_C) nf_store(line, row[3 * x], row[3 * x + 1], row[3 * x + 2]);
  }
}

void nf_image_to_input(const nf_image_t *image, const uint8_t *frame, int8_t *input) {
  enum { NF_ROW = NF_INPUT_W * NF_INPUT_C };
  const int32_t stride = image->width * image->format;
  const int32_t x_lo = image->first[0], x_hi = image->first[NF_INPUT_W - 1] + image->count[NF_INPUT_W - 1];
  uint8_t line[NF_IMAGE_MAX_SIDE * NF_INPUT_C]; /* the crop columns the filter reads, in the model's channels */
  uint8_t ring[NF_IMAGE_TAPS][NF_ROW]; /* crop rows resized horizontally, the last NF_IMAGE_TAPS of them */
  int32_t next = 0;                    /* the first crop row not yet resized */
  for (int oy = 0; oy < NF_INPUT_H; ++oy) {
    const int32_t first = image->first[oy], count = image->count[oy]; /* first never decreases */
    if (next < first) next = first;
    /* each crop row the output row spans, once: resized horizontally and rounded to 8 bits, as
     * Pillow's first pass stores it (the next output row reuses the rows they share) */
    for (; next < first + count; ++next) {
      uint8_t *h = ring[next % NF_IMAGE_TAPS];
      nf_line(frame + (int32_t)(image->top + next) * stride, image->left + x_lo, image->left + x_hi, image->format, line);
      for (int ox = 0; ox < NF_INPUT_W; ++ox) {
        const int32_t *wx = image->weight[ox];
        const uint8_t *px = line + (image->first[ox] - x_lo) * NF_INPUT_C;
        for (int c = 0; c < NF_INPUT_C; ++c) {
          int32_t sum = 1 << (NF_PREC - 1);
          for (int i = 0; i < image->count[ox]; ++i) sum += (int32_t)px[i * NF_INPUT_C + c] * wx[i];
          h[ox * NF_INPUT_C + c] = nf_clip8(sum);
        }
      }
    }
    /* then vertically: the spanned rows weighted into the output row */
    const int32_t *wy = image->weight[oy];
    const uint8_t *rows[NF_IMAGE_TAPS];
    for (int j = 0; j < count; ++j) rows[j] = ring[(first + j) % NF_IMAGE_TAPS];
    for (int i = 0; i < NF_ROW; ++i) {
      int32_t sum = 1 << (NF_PREC - 1);
      for (int j = 0; j < count; ++j) sum += (int32_t)rows[j][i] * wy[j];
      input[oy * NF_ROW + i] = nf_pixel_lut[nf_clip8(sum)];
    }
  }
}

void nf_pixels_to_input(const uint8_t *pixels, int8_t *input) {
  for (int i = 0; i < NF_INPUT_SIZE; ++i) input[i] = nf_pixel_lut[pixels[i]];
}

int nf_argmax(const int8_t *output) {
  int best = 0;
  for (int i = 1; i < NF_OUTPUT_SIZE; ++i)
    if (output[i] > output[best]) best = i;
  return best;
}
