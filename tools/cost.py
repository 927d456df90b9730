"""What a student costs on the target: params, int8 weight bytes, MACs, SRAM, stack, latency.

One function, used for sizing and for the report. SRAM is the compiler's memory plan
of the student's graph (``compilers.planner``): the arena the generated C library
declares, to the byte, known before anything is trained or compiled; on the cores verify
emulates, this C library's stack (LIBRARY_STACK) joins it where an SRAM budget is checked. Latency is the
catalog's estimate from MACs (what CMSIS-NN class kernels reach) and, on the cores verify
emulates, the floor this C library's instructions set (LIBRARY_INSTRUCTIONS): a latency
budget is checked against the longer of the two, before anything is trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from knowledge.devices import Device

# Instructions this C library executes per layer on each emulated core, by the kernel path the layer
# takes: a x MACs executed (the taps inside the input, ``executed_macs``) + b x output values + c x
# output pixels + d. Fitted by bench/floor_model.py on 19 networks (DS-CNNs from 12 to 48 px, sampled
# mbnet candidates, the MLPerf Tiny models) measured on QEMU; left out of the fit, a network's total
# came within 6.1 % (M4, M7; the w6 DS-CNN, whose 6 channels take a second, slower pass for the 2
# past a multiple of 4, under; the others within 5.2 %) and 3.0 % (M0+); with every tap counted it
# was within 18 %, most over on small maps and large kernels. Refit when the kernels change.
LIBRARY_INSTRUCTIONS: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "cortex-m4": {"conv": (1.795, 34.3, 114.7, 0), "conv_gathered": (2.655, 32.8, 378.8, 0),
                  "dwconv": (5.590, 30.7, 0, 1927), "fc": (2.500, 46.0, 36.9, 0), "add": (0, 72.4, 16.9, 1989),
                  "pool": (6.499, 23.0, 200.8, 0), "reshape": (0, 0, 3.0, 0)},
    "cortex-m7": {"conv": (1.795, 34.3, 113.2, 0), "conv_gathered": (2.660, 33.0, 372.8, 0),
                  "dwconv": (5.593, 29.8, 0, 1914), "fc": (2.498, 45.5, 37.0, 0), "add": (0, 72.4, 16.9, 1999),
                  "pool": (6.502, 26.1, 182.5, 0), "reshape": (0, 0, 7.1, 0)},
    "cortex-m0plus": {"conv": (6.941, 99.1, 509.2, 0), "conv_gathered": (8.040, 107.4, 637.5, 0),
                      "dwconv": (15.632, 103.7, 414.5, 0), "fc": (6.988, 110.6, 56.0, 0), "add": (0, 235.0, 17.7, 2408),
                      "pool": (8.943, 94.4, 0, 0), "reshape": (0, 0, 1.1, 0)},
}

# The stack one inference takes in this C library on each emulated core: the deepest kernel's frame
# (arm-none-eabi-gcc 12 -O2 -fstack-usage, the flags verify builds with) plus "call": nf_invoke's
# frame and the calls around it. nf_invoke is generated per model and its frame follows how GCC
# keeps the kernels' arguments in registers: 56 or 64 B for DS-CNNs, 64 or 72 B for most residual
# networks, 80 B for one (bench/stack_frames.py --seed 0 and --seed 2: 181 networks sampled from
# both search spaces at 28 to 96 px), so "call" takes the 80. On
# the DSP cores nf_conv_s8 also holds the window it gathers (NF_DSP_TAPS int16, sized to the model by
# the C emitter), so its frame is "window" + 2 bytes per tap where that is more than "conv".
# tests/test_compiler_runtimes.py checks the frames against the compiler and the total against QEMU.
LIBRARY_STACK: dict[str, dict[str, int]] = {
    "cortex-m4": {"call": 96, "conv": 400, "window": 272, "dwconv": 248, "pool": 256, "add": 112,
                  "softmax": 96, "fc": 64, "concat": 16},
    "cortex-m7": {"call": 96, "conv": 400, "window": 272, "dwconv": 248, "pool": 248, "add": 120,
                  "softmax": 96, "fc": 64, "concat": 16},
    "cortex-m0plus": {"call": 124, "conv": 328, "dwconv": 240, "pool": 272, "add": 128, "softmax": 320,
                      "fc": 64, "concat": 20},
}


@dataclass(frozen=True)
class Cost:
    params: int
    weight_bytes: int  # int8 weights + int32 biases + per-channel requantization (2 x int32 per channel)
    macs: int
    sram_bytes: int
    latency_ms: float  # the catalog's estimate from MACs
    floor_ms: float | None = None  # this C library's predicted floor on the device's core; None off the modeled cores
    stack_bytes: int | None = None  # this C library's stack per inference on the device's core; None off the modeled cores

    @property
    def ram_bytes(self) -> int:
        """What an SRAM budget is checked against: the arena, and this C library's stack where modeled."""
        return self.sram_bytes + (self.stack_bytes or 0)

    def ram_text(self) -> str:
        """'15.3 KB SRAM', or with the library's stack: '8.1 KB SRAM (arena 7.7 KB + stack 0.5 KB)'."""
        if not self.stack_bytes:
            return f"{self.sram_bytes / 1024:.1f} KB SRAM"
        return (f"{self.ram_bytes / 1024:.1f} KB SRAM (arena {self.sram_bytes / 1024:.1f} KB + stack "
                f"{self.stack_bytes / 1024:.1f} KB)")

    @property
    def latency_bound_ms(self) -> float:
        """What a latency budget is checked against: the estimate, or the library's floor where longer."""
        return max(self.latency_ms, self.floor_ms or 0.0)

    def latency_text(self) -> str:
        """'13.7 ms', or with the library's floor where it is longer: '1.5 ms (this C library at least 6.4 ms)'."""
        longer = self.floor_ms is not None and self.floor_ms > self.latency_ms
        return f"{self.latency_ms:.1f} ms" + (f" (this C library at least {self.floor_ms:.1f} ms)" if longer else "")

    def as_dict(self) -> dict:
        return asdict(self)


def layer_kind(op) -> str:
    """The kernel path a layer takes in the C library, as LIBRARY_INSTRUCTIONS tells them apart: a
    convolution on 1 to 3 (or any non-multiple of 4) input channels gathers its window first."""
    if op.kind == "conv":
        return "conv" if op.weight.shape[3] % 4 == 0 else "conv_gathered"
    return "pool" if op.kind in ("avgpool", "maxpool") else op.kind


def _taps_inside(size_in: int, size_out: int, k: int, stride: int, pad_before: int) -> int:
    """Window taps that fall inside the input along one axis, summed over the output positions."""
    total = 0
    for o in range(size_out):
        start = o * stride - pad_before
        total += max(0, min(k, size_in - start) - max(0, -start))
    return total


def executed_macs(graph, op) -> float:
    """The MACs the C kernels execute: a window is clipped to the input (``nf_window_at``), so the
    taps over the padding cost nothing. A 7 x 7 depthwise kernel on a 4 x 4 map reads 16 of its 49
    taps, which counting every tap (``graph.macs``, the usual convention and the catalog's latency
    estimate) puts at three times the work."""
    macs = graph.macs(op)
    if op.kind not in ("conv", "dwconv", "avgpool") or op.kernel == (1, 1) or not macs:
        return float(macs)
    _, in_h, in_w, _ = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.output].shape
    (kh, kw), (sh, sw), (top, left, _, _) = op.kernel, op.stride, op.pads
    inside = _taps_inside(in_h, out_h, kh, sh, top) * _taps_inside(in_w, out_w, kw, sw, left)
    return macs * inside / (out_h * out_w * kh * kw)


def layer_features(graph) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Each op's kind and what its instructions grow with: the MACs executed (``executed_macs``),
    output values (each one requantized and stored), output pixels (each one's window placed), and
    1 (the call)."""
    out = []
    for op in graph.ops:
        shape = graph.tensors[op.output].shape
        pixels = shape[1] * shape[2] if len(shape) == 4 else 1
        features = (executed_macs(graph, op), float(graph.tensors[op.output].size), float(pixels), 1.0)
        out.append((layer_kind(op), features))
    return out


def library_instructions(graph, core: str | None) -> int | None:
    """Instructions one inference of ``graph`` executes in this C library on ``core``
    (LIBRARY_INSTRUCTIONS), or None for a core it does not model."""
    model = LIBRARY_INSTRUCTIONS.get(core or "")
    if model is None:
        return None
    return round(sum(sum(a * f for a, f in zip(model.get(kind, (0, 0, 0, 0)), features))
                     for kind, features in layer_features(graph)))


def library_stack_bytes(graph, core: str | None) -> int | None:
    """The stack one inference of ``graph`` takes in this C library on ``core`` (LIBRARY_STACK), or
    None for a core it does not model."""
    from compilers.c_emitter import dsp_window_taps

    frames = LIBRARY_STACK.get(core or "")
    if frames is None:
        return None
    conv = max(frames["conv"], frames["window"] + 2 * dsp_window_taps(graph)) if "window" in frames else frames["conv"]
    deepest = max(conv if op.kind == "conv" else frames.get(layer_kind(op), 0) for op in graph.ops)
    return frames["call"] + deepest


def graph_cost(graph, device: Device) -> Cost:
    """Cost of a compiler graph: the same numbers the compiled library has."""
    from compilers.planner import plan_memory

    params = 0
    for op in graph.ops:
        if op.kind in ("conv", "dwconv"):
            channels = op.weight.shape[0] if op.kind == "conv" else op.weight.shape[3]
            params += op.weight.size + 2 * channels  # BatchNorm's scale and shift, folded at export
        elif op.kind == "fc":
            params += op.weight.size + op.bias.size
    macs = int(sum(graph.macs(op) for op in graph.ops))
    instructions = library_instructions(graph, device.emulated_core)
    return Cost(params=int(params), weight_bytes=int(sum(graph.weight_bytes(op) for op in graph.ops)), macs=macs,
                sram_bytes=plan_memory(graph).arena_bytes, latency_ms=device.latency_ms(macs),
                floor_ms=device.latency_floor_ms(instructions) if instructions else None,
                stack_bytes=library_stack_bytes(graph, device.emulated_core))


def estimate_cost(config, device: Device) -> Cost:
    """Cost of any student config (the fixed DS-CNN or a searched network) on ``device``."""
    from tools.spaces import model_graph

    return graph_cost(model_graph(config), device)
