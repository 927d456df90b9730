"""The quantized IR as a self-contained C99 library: model.h/model.c, the kernels, a host
test harness and a Makefile (host build, and Cortex-M4/M7/M0+ objects with their sizes).

``nf_invoke(const int8_t *input, int8_t *output)`` copies the input into a static arena at
its planned offset, runs one kernel call per op with every parameter a literal, and copies
the output out. Weights are ``const`` (flash); the arena is the only RAM the model uses and
its size is the memory plan's, to the byte.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from compilers.ir import Graph, Op
from compilers.planner import MemoryPlan

KERNEL_FILES = ("nf_kernels.h", "nf_avx2.h", "nf_dsp.h", "nf_kernels.c")
SOFTMAX_FILES = ("nf_softmax.h", "nf_softmax.c")
IO_FILES = ("nf_io.h", "nf_io.c")  # camera frames to inputs, outputs to labels: models whose inputs are images


def folded_bias(graph: Graph, op: Op) -> np.ndarray:
    """int32 bias of a fully connected layer with the input offset folded in: bias - zp_in * sum(w)
    per output channel. (Convolutions subtract the offset at run time: it lets them skip padding.)"""
    zp = graph.tensors[op.inputs[0]].quant.zero_point
    w = op.qweight.astype(np.int64)
    folded = op.qbias.astype(np.int64) - zp * w.reshape(w.shape[0], -1).sum(axis=1)
    if np.abs(folded).max(initial=0) >= 2**31:
        raise ValueError(f"bias of {op.name} overflows int32 after folding the input offset")
    return folded.astype(np.int32)


def conv_weights(qweight: np.ndarray) -> np.ndarray:
    """OHWI int8 weights in nf_conv_s8's layout: HWIO with the taps (ky, kx, ic) in groups of 4,
    [taps / 4][out_c][4], zero weights padding the taps to a multiple of 4. For one group of taps
    the output channels are contiguous (the vector loop runs over them, no horizontal sums) and
    each channel's 4 taps fill one 32-bit lane, the operand of x86 VNNI's 4-way dot product."""
    out_c = qweight.shape[0]
    taps = qweight.reshape(out_c, -1).T  # [taps][out_c]
    padded = np.zeros((-(-len(taps) // 4) * 4, out_c), np.int8)
    padded[: len(taps)] = taps
    return padded.reshape(-1, 4, out_c).transpose(0, 2, 1)


DSP_TAPS_MAX = 256  # nf_dsp.h's default: a larger window takes the portable loops
DSP_TAPS_LINE = f"#define NF_DSP_TAPS {DSP_TAPS_MAX}\n"


def dsp_window_taps(graph: Graph) -> int:
    """The window the DSP convolution gathers for this model, in int16 taps (twice that in bytes of
    stack): its largest convolution window on a number of input channels that is not a multiple of
    4, in whole groups of 4, among those the DSP path takes (at most DSP_TAPS_MAX); 4 when none."""
    taps = [-(-int(np.prod(op.weight.shape[1:])) // 4) * 4 for op in graph.ops
            if op.kind == "conv" and op.weight.shape[3] % 4]
    return max([t for t in taps if t <= DSP_TAPS_MAX] + [4])


def _array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i : i + 24]) for i in range(0, len(flat), 24)]
    body = ",\n  ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n  {body}\n}};\n"


def c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8; quotes, backslashes and non-printable bytes escaped)."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        out.append(f"\\{ch}" if ch in '"\\' else ch if 32 <= b < 127 and ch != "?" else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


class _Emitter:
    def __init__(self, graph: Graph, plan: MemoryPlan, name: str):
        self.graph, self.plan, self.name = graph, plan, name
        self.consts: list[str] = []
        self.calls: list[str] = []

    def ptr(self, tensor: str) -> str:
        return f"(nf_arena + {self.plan.offsets[tensor]})"

    def conv_params(self, i: int, op: Op) -> str:
        g = self.graph
        _, ih, iw, ic = g.shape(op.inputs[0])
        _, oh, ow, oc = g.shape(op.output)
        lo, hi = op.extra["act_range"]
        zin = g.tensors[op.inputs[0]].quant.zero_point
        zout = g.tensors[op.output].quant.zero_point if op.kind in ("conv", "dwconv") else 0
        self.consts.append(
            f"static const nf_conv_params op{i}_p = {{{ih}, {iw}, {ic}, {oh}, {ow}, {oc}, {op.kernel[0]}, "
            f"{op.kernel[1]}, {op.stride[0]}, {op.stride[1]}, {op.pads[0]}, {op.pads[1]}, {op.depth_multiplier}, "
            f"{zin}, {zout}, {lo}, {hi}}};\n")
        return f"&op{i}_p"

    def op(self, i: int, op: Op) -> None:
        g = self.graph
        x, y = self.ptr(op.inputs[0]), self.ptr(op.output)
        lo, hi = op.extra["act_range"]
        comment = f"  /* {op.kind} {op.name}: {list(g.shape(op.inputs[0]))} -> {list(g.shape(op.output))} */\n"
        if op.is_weighted:
            if (op.extra["multiplier"] < 0).any():  # nf_requant8 relies on it (TFLite's are in [2^30, 2^31))
                raise ValueError(f"{op.name} has a negative requantization multiplier")
            if (op.extra["shift"] > 31).any():  # nf_requant_fast shifts by at most 31 (TFLite by at most 30)
                raise ValueError(f"{op.name} scales its sums up by 2^31 or more: its output scale is broken; "
                                 "calibrate the model again")
            weights = conv_weights(op.qweight) if op.kind == "conv" else op.qweight
            bias = folded_bias(g, op) if op.kind == "fc" else op.qbias
            self.consts.append(_array("int8_t", f"op{i}_w", weights))
            self.consts.append(_array("int32_t", f"op{i}_b", bias))
            self.consts.append(_array("int32_t", f"op{i}_m", op.extra["multiplier"]))
            self.consts.append(_array("int32_t", f"op{i}_s", op.extra["shift"]))
            args = f"op{i}_w, op{i}_b, op{i}_m, op{i}_s"
            if op.kind == "fc":
                k, n = op.qweight.shape[1], op.qweight.shape[0]
                zout = g.tensors[op.output].quant.zero_point
                call = f"nf_fc_s8({k}, {n}, {x}, {args}, {zout}, {lo}, {hi}, {y});"
            else:
                fn = "nf_conv_s8" if op.kind == "conv" else "nf_dwconv_s8"
                call = f"{fn}({self.conv_params(i, op)}, {x}, {args}, {y});"
        elif op.kind == "add":
            qa, qb, qo = (g.tensors[n].quant for n in (*op.inputs, op.output))
            (ma, sa), (mb, sb) = op.extra["input_multipliers"]
            mo, so = op.extra["output_multiplier"]
            n = g.tensors[op.output].size
            self.consts.append(
                f"static const nf_add_params op{i}_p = {{{qa.zero_point}, {ma}, {sa}, {qb.zero_point}, {mb}, {sb}, "
                f"{op.extra['left_shift']}, {mo}, {so}, {qo.zero_point}, {lo}, {hi}}};\n")
            call = f"nf_add_s8(&op{i}_p, {n}, {x}, {self.ptr(op.inputs[1])}, {y});"
        elif op.kind in ("avgpool", "maxpool"):
            call = f"nf_{op.kind}_s8({self.conv_params(i, op)}, {x}, {y});"
        elif op.kind == "reshape":
            if self.plan.offsets[op.inputs[0]] == self.plan.offsets[op.output]:
                call = "/* in place: same bytes, new shape */"
            else:
                call = f"nf_copy_s8({g.tensors[op.output].size}, {x}, {y});"
        elif op.kind == "concat":
            out_shape = g.shape(op.output)
            outer = int(np.prod(out_shape[: op.axis]))
            out_inner = int(np.prod(out_shape[op.axis :]))
            start, parts = 0, []
            for name in op.inputs:
                in_inner = int(np.prod(g.shape(name)[op.axis :]))
                parts.append(f"nf_concat_slice_s8({outer}, {in_inner}, {out_inner}, {start}, {self.ptr(name)}, {y});")
                start += in_inner
            call = "\n  ".join(parts)
        elif op.kind == "softmax":
            from compilers.softmax import softmax_params

            mult, shift, diff_min = softmax_params(g.tensors[op.inputs[0]].quant.scale)
            rows, depth = 1, g.shape(op.output)[-1]
            call = f"nf_softmax_s8({x}, {y}, {rows}, {depth}, {mult}, {shift}, {diff_min});"
        else:  # pragma: no cover
            raise ValueError(op.kind)
        self.calls.append(f"{comment}  NF_LAYER_BEGIN({i});\n  {call}\n  NF_LAYER_END({i});\n")

    def header(self) -> str:
        g = self.graph
        qi, qo = g.tensors[g.input].quant, g.tensors[g.output].quant
        shape = g.input_shape
        dims = (f"#define NF_INPUT_H {shape[1]}\n#define NF_INPUT_W {shape[2]}\n#define NF_INPUT_C {shape[3]}\n"
                if len(shape) == 4 else "")
        guard = "NF_MODEL_H"
        return (
            f"/* {self.name}: int8 model generated by Nanofactory. Do not edit. */\n"
            f"#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n"
            f"#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
            f"#define NF_INPUT_SIZE {g.tensors[g.input].size}\n"
            f"#define NF_OUTPUT_SIZE {g.tensors[g.output].size}\n{dims}"
            f"#define NF_LAYERS {len(g.ops)} /* the calls in nf_invoke (model.c's NF_LAYER_BEGIN / NF_LAYER_END) */\n"
            f"/* tensor arena: all activations, planned at compile time */\n"
            f"#define NF_ARENA_SIZE {self.plan.arena_bytes}\n"
            f"/* real = scale * (q - zero_point) */\n"
            f"#define NF_INPUT_SCALE {float(np.float32(qi.scale))!r}f\n#define NF_INPUT_ZERO_POINT {qi.zero_point}\n"
            f"#define NF_OUTPUT_SCALE {float(np.float32(qo.scale))!r}f\n#define NF_OUTPUT_ZERO_POINT {qo.zero_point}\n\n"
            f"/* Runs the model on NF_INPUT_SIZE int8 values (NHWC) and writes NF_OUTPUT_SIZE int8 values. */\n"
            f"void nf_invoke(const int8_t *input, int8_t *output);\n"
            + (SELFTEST_HEADER if g.sample_input is not None else "")
            + (self.image_header() if g.image else "")
            + "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n"
        )

    def image_header(self) -> str:
        image = self.graph.image
        names = ", ".join(image.labels).replace("*/", "* /")  # inside a C comment
        return (
            f"\n/* The inputs are images: nf_io.h turns camera frames into inputs as training prepared them. */\n"
            f"/* int8 input of each uint8 pixel value: (p - {image.pixel_offset:g}) / {image.pixel_divisor:g}, quantized */\n"
            f"extern const int8_t nf_pixel_lut[256];\n"
            f"/* what each output means: {names} */\n"
            f"extern const char *const nf_labels[NF_OUTPUT_SIZE];\n"
        )

    def selftest_source(self) -> str:
        """nf_selftest.c: one calibration input and the output the numpy int8 reference computed for it."""
        from compilers.reference import run_int8

        g = self.graph
        expected = run_int8(g, g.sample_input[None]).reshape(-1)
        return (
            f"/* {self.name}: the library's self-test, generated by Nanofactory. */\n"
            f'#include "model.h"\n\n'
            f"/* a calibration input, and the output the compiler's int8 reference computed for it */\n"
            + _array("int8_t", "nf_sample_input", g.sample_input).replace("static const int8_t nf_sample_input[",
                                                                         "const int8_t nf_sample_input[")
            + _array("int8_t", "nf_sample_output", expected).replace("static const int8_t nf_sample_output[",
                                                                    "const int8_t nf_sample_output[")
            + SELFTEST_BODY
        )

    def image_source(self) -> str:
        image = self.graph.image
        lut = image.pixel_lut(self.graph.tensors[self.graph.input].quant)
        names = ", ".join(c_string(label) for label in image.labels)
        return (f"\n/* {self.name}: the model's pixel table and class names */\n"
                + _array("int8_t", "nf_pixel_lut", lut).replace("static const", "const")
                + f"const char *const nf_labels[NF_OUTPUT_SIZE] = {{{names}}};\n")

    def source(self) -> str:
        g = self.graph
        for i, op in enumerate(g.ops):
            self.op(i, op)
        includes = '#include "model.h"\n#include "nf_kernels.h"\n'
        if any(op.kind == "softmax" for op in g.ops):
            includes += '#include "nf_softmax.h"\n'
        words = (self.plan.arena_bytes + 3) // 4
        return (
            f"/* {self.name}: int8 model generated by Nanofactory from {Path(g.source).name or 'ONNX'}. */\n"
            f"{includes}\n"
            f"/* Per-layer timing: define NF_LAYER_BEGIN(i) and NF_LAYER_END(i) when compiling this file (on a\n"
            f" * Cortex-M, say, to read DWT->CYCCNT) to time layer i of NF_LAYERS, in the order of compile.json's\n"
            f" * \"layers\"; without them they do nothing. */\n"
            f"#ifndef NF_LAYER_BEGIN\n#define NF_LAYER_BEGIN(i) ((void)0)\n#endif\n"
            f"#ifndef NF_LAYER_END\n#define NF_LAYER_END(i) ((void)0)\n#endif\n\n"
            f"/* {self.plan.arena_bytes} bytes, word-aligned */\n"
            f"static int32_t nf_arena_words[{words}];\n#define nf_arena ((int8_t *)nf_arena_words)\n\n"
            + "".join(self.consts)
            + "\nvoid nf_invoke(const int8_t *input, int8_t *output) {\n"
            f"  nf_copy_s8(NF_INPUT_SIZE, input, {self.ptr(g.input)});\n"
            + "".join(self.calls)
            + f"  nf_copy_s8(NF_OUTPUT_SIZE, {self.ptr(g.output)}, output);\n}}\n"
        )


SELFTEST_HEADER = """
#define NF_SELFTEST 1
/* A sample input and the output the compiler's reference computed for it (nf_selftest.c). */
extern const int8_t nf_sample_input[NF_INPUT_SIZE];
extern const int8_t nf_sample_output[NF_OUTPUT_SIZE];
/* Runs the sample on this build; returns how many output values differ from the reference (0: bit-exact). */
int nf_selftest(void);
"""

SELFTEST_BODY = """
int nf_selftest(void) {
  int8_t output[NF_OUTPUT_SIZE];
  int wrong = 0;
  nf_invoke(nf_sample_input, output);
  for (int i = 0; i < NF_OUTPUT_SIZE; ++i) wrong += output[i] != nf_sample_output[i];
  return wrong;
}
"""

HARNESS = r"""/* Host test harness: int8 inputs from a file, int8 outputs to a file, time per inference.
 * usage: nf_test INPUTS.bin OUTPUTS.bin [REPEAT]
 * Each input runs REPEAT times; the time printed is the median over inputs of the mean of those
 * runs, in CPU time of this thread: on a busy machine, time spent preempted is not counted. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model.h"

static int nf_compare(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  static int8_t input[NF_INPUT_SIZE], output[NF_OUTPUT_SIZE];
  if (argc < 3) {
    fprintf(stderr, "usage: %s INPUTS.bin OUTPUTS.bin [REPEAT]\n", argv[0]);
    return 2;
  }
  FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
  if (!in || !out) {
    fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
    return 1;
  }
#ifdef NF_SELFTEST
  if (nf_selftest()) {
    fprintf(stderr, "nf_selftest: the sample's output differs from the compiler's reference\n");
    return 3;
  }
#endif
  const long repeat = argc > 3 ? atol(argv[3]) : 1;
  long count = 0, capacity = 0;
  double *us = NULL; /* per input: microseconds per inference */
  while (fread(input, 1, NF_INPUT_SIZE, in) == NF_INPUT_SIZE) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (long r = 0; r < repeat; ++r) nf_invoke(input, output);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    if (count == capacity) {
      capacity = capacity ? 2 * capacity : 256;
      double *grown = realloc(us, (size_t)capacity * sizeof *us);
      if (!grown) return 1;
      us = grown;
    }
    us[count] = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + 1e-3 * (double)(t1.tv_nsec - t0.tv_nsec)) / (double)repeat;
    if (fwrite(output, 1, NF_OUTPUT_SIZE, out) != NF_OUTPUT_SIZE) return 1;
    ++count;
  }
  fclose(in);
  fclose(out);
  if (count) qsort(us, (size_t)count, sizeof *us, nf_compare);
  printf("%ld inferences, %.2f us each\n", count, count ? us[count / 2] : 0.0);
  free(us);
  return 0;
}
"""

FRAMES = r"""/* Camera frames through the model on the host: what the device will compute, frame for frame.
 * usage: nf_frames WIDTH HEIGHT gray|rgb|rgb565 FRAMES.bin INPUTS.bin
 * FRAMES.bin holds raw frames of WIDTH x HEIGHT pixels (1 byte per pixel for gray, R, G, B for rgb,
 * 2 bytes high byte first for rgb565),
 * one after another; INPUTS.bin gets each frame's NF_INPUT_SIZE int8 model input (nf_image_to_input),
 * and each frame's class is printed (nf_invoke, nf_argmax, nf_labels). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_io.h"

int main(int argc, char **argv) {
  static nf_image_t image;
  static int8_t input[NF_INPUT_SIZE], output[NF_OUTPUT_SIZE];
  const int32_t format = argc != 6 ? 0 : !strcmp(argv[3], "gray") ? NF_GRAY8 : !strcmp(argv[3], "rgb") ? NF_RGB888
                       : !strcmp(argv[3], "rgb565") ? NF_RGB565 : 0;
  if (!format) {
    fprintf(stderr, "usage: %s WIDTH HEIGHT gray|rgb|rgb565 FRAMES.bin INPUTS.bin\n(an nf_image_t takes %u bytes)\n",
            argv[0], (unsigned)sizeof image);
    return 2;
  }
  const int32_t width = atoi(argv[1]), height = atoi(argv[2]);
  if (nf_image_init(&image, width, height, format)) {
    fprintf(stderr, "cannot take %d x %d frames: the shorter side may be at most %d (NF_IMAGE_MAX_SIDE)\n",
            (int)width, (int)height, NF_IMAGE_MAX_SIDE);
    return 1;
  }
  const size_t bytes = (size_t)width * (size_t)height * (size_t)format;
  uint8_t *frame = malloc(bytes);
  FILE *in = fopen(argv[4], "rb"), *out = fopen(argv[5], "wb");
  if (!frame || !in || !out) {
    fprintf(stderr, "cannot open %s or %s\n", argv[4], argv[5]);
    return 1;
  }
  for (long n = 0; fread(frame, 1, bytes, in) == bytes; ++n) {
    nf_image_to_input(&image, frame, input);
    if (fwrite(input, 1, NF_INPUT_SIZE, out) != NF_INPUT_SIZE) return 1;
    nf_invoke(input, output);
    printf("%ld %s\n", n, nf_labels[nf_argmax(output)]);
  }
  fclose(in);
  fclose(out);
  free(frame);
  return 0;
}
"""

MAKEFILE = """# Nanofactory int8 library: `make` builds the host test harness, `make m4` / `make m7` / `make m0plus`
# build Cortex-M objects with arm-none-eabi-gcc and print their sizes (text = flash, bss = RAM).
# Host CFLAGS: -march=native lets the kernels use the host's SIMD (nf_avx2.h on x86); never on ARM.
CC ?= gcc
CFLAGS ?= -std=c99 -O3 -march=native -Wall -Wextra -Werror
ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
ARM_CFLAGS = -std=c99 -O2 -Wall -Wextra -Werror -mthumb -ffunction-sections -fdata-sections
# SRCS: the model; EXTRAS: optional parts (self-test, camera frames), which a linker drops when unused
SRCS = {srcs}
EXTRAS = {extras}

nf_test: main.c $(SRCS) $(EXTRAS) model.h nf_kernels.h nf_avx2.h nf_dsp.h
\t$(CC) $(CFLAGS) -o $@ main.c $(SRCS) $(EXTRAS)

m4:
\tmkdir -p build-m4
\tcd build-m4 && $(ARM_CC) $(ARM_CFLAGS) -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16 -I.. $(addprefix ../,$(SRCS) $(EXTRAS)) -c
\t$(ARM_SIZE) -t $(addprefix build-m4/,$(SRCS:.c=.o))
\t$(if $(EXTRAS),$(ARM_SIZE) $(addprefix build-m4/,$(EXTRAS:.c=.o)))

m7:
\tmkdir -p build-m7
\tcd build-m7 && $(ARM_CC) $(ARM_CFLAGS) -mcpu=cortex-m7 -mfloat-abi=hard -mfpu=fpv5-d16 -I.. $(addprefix ../,$(SRCS) $(EXTRAS)) -c
\t$(ARM_SIZE) -t $(addprefix build-m7/,$(SRCS:.c=.o))
\t$(if $(EXTRAS),$(ARM_SIZE) $(addprefix build-m7/,$(EXTRAS:.c=.o)))

m0plus:
\tmkdir -p build-m0plus
\tcd build-m0plus && $(ARM_CC) $(ARM_CFLAGS) -mcpu=cortex-m0plus -mfloat-abi=soft -I.. $(addprefix ../,$(SRCS) $(EXTRAS)) -c
\t$(ARM_SIZE) -t $(addprefix build-m0plus/,$(SRCS:.c=.o))
\t$(if $(EXTRAS),$(ARM_SIZE) $(addprefix build-m0plus/,$(EXTRAS:.c=.o)))

clean:
\trm -rf nf_test nf_frames build-m4 build-m7 build-m0plus

.PHONY: m4 m7 m0plus clean
"""
CMAKE = """# Nanofactory int8 library {name}: for CMake projects (Pico SDK, STM32 CMake, Zephyr apps:
# add_subdirectory(this folder), then target_link_libraries(app nanofactory_model)), and an ESP-IDF
# component when idf.py builds it (copy this folder into the project's components/; the folder's
# name is the component's, for REQUIRES).
set(NF_SOURCES {sources})
if(ESP_PLATFORM)
  idf_component_register(SRCS ${{NF_SOURCES}} INCLUDE_DIRS ".")
else()
  cmake_minimum_required(VERSION 3.13)
  project(nanofactory_model C)
  add_library(nanofactory_model STATIC ${{NF_SOURCES}})
  target_include_directories(nanofactory_model PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}})
  set_target_properties(nanofactory_model PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON)
endif()
"""

FRAMES_MAKE = """
# camera frames through the model on the host (frames.c): `make nf_frames`
nf_frames: frames.c $(SRCS) $(EXTRAS) model.h nf_io.h nf_kernels.h nf_avx2.h nf_dsp.h
\t$(CC) $(CFLAGS) -o $@ frames.c $(SRCS) $(EXTRAS)
"""


def emit_c(graph: Graph, plan: MemoryPlan, out_dir: Path, name: str = "model") -> Path:
    """Write the C library for a quantized graph into ``out_dir`` (created; files replaced)."""
    from knowledge.io import write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emitter = _Emitter(graph, plan, name)
    files = {"model.h": emitter.header(), "model.c": emitter.source(), "main.c": HARNESS}
    extras = []  # optional parts: built and sized apart from the model
    if graph.sample_input is not None:
        files["nf_selftest.c"] = emitter.selftest_source()
        extras.append("nf_selftest.c")
    kernels = list(KERNEL_FILES)
    if any(op.kind == "softmax" for op in graph.ops):
        kernels += list(SOFTMAX_FILES)
    if graph.image is not None:
        kernels += list(IO_FILES)
        extras.append("nf_io.c")
    for kernel in kernels:
        files[kernel] = resources.files("compilers").joinpath("c", kernel).read_text()
    # the gathered window sized to this model: a 3 x 3 first layer on 1 channel keeps 24 B of stack, not 512
    assert DSP_TAPS_LINE in files["nf_dsp.h"], "nf_dsp.h no longer defines NF_DSP_TAPS as the emitter expects"
    files["nf_dsp.h"] = files["nf_dsp.h"].replace(
        DSP_TAPS_LINE, f"#define NF_DSP_TAPS {dsp_window_taps(graph)} /* this model's largest gathered window */\n")
    if graph.image is not None:  # the model's own tables join nf_io.c: the image support in one object
        files["nf_io.c"] += emitter.image_source()
    srcs = " ".join(["model.c"] + [k for k in kernels if k.endswith(".c") and k not in extras])
    files["Makefile"] = MAKEFILE.format(srcs=srcs, extras=" ".join(extras))
    files["CMakeLists.txt"] = CMAKE.format(name=name, sources=" ".join([*srcs.split(), *extras]))
    if graph.image is not None:
        files["frames.c"] = FRAMES
        files["Makefile"] += FRAMES_MAKE
    for filename, text in files.items():
        write_text_atomic(out_dir / filename, text)
    return out_dir
