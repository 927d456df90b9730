"""What a student costs on the target: params, int8 weight bytes, MACs, SRAM, latency.

One function, used for sizing and for the report. SRAM is the compiler's memory plan
of the student's graph (``compilers.planner``): the arena the generated C library
declares, to the byte, known before anything is trained or compiled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from knowledge.devices import Device
from tools.student import StudentConfig


@dataclass(frozen=True)
class Cost:
    params: int
    weight_bytes: int  # int8 weights + int32 biases + per-channel requantization (2 x int32 per channel)
    macs: int
    sram_bytes: int
    latency_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _out(size: int, stride: int) -> int:
    return (size + stride - 1) // stride


def student_graph(config: StudentConfig):
    """The compiler IR the student's ONNX export reads as (shapes and zero weights)."""
    import numpy as np

    from compilers.ir import Graph, Op, Tensor

    tensors = {"input": Tensor("input", (1, config.input_size, config.input_size, config.in_channels))}
    ops: list[Op] = []
    size, cin = config.input_size, config.in_channels

    def add(op: Op, shape: tuple[int, ...]) -> None:
        tensors[op.output] = Tensor(op.output, shape)
        ops.append(op)

    def conv(kind: str, cout: int, k: int, stride: int) -> None:
        nonlocal size, cin
        pad = k // 2
        out = (size + 2 * pad - k) // stride + 1
        weight = np.zeros((cout, k, k, cin) if kind == "conv" else (1, k, k, cout), np.float32)
        add(Op(kind, f"{kind}{len(ops)}", [ops[-1].output if ops else "input"], f"t{len(ops)}", act="relu",
               kernel=(k, k), stride=(stride, stride), pads=(pad, pad, pad, pad), weight=weight,
               bias=np.zeros(cout, np.float32)), (1, out, out, cout))
        size, cin = out, cout

    conv("conv", config.stem_channels, 3, config.stem_stride)
    for block in config.blocks:
        conv("dwconv", cin, 3, block.stride)
        conv("conv", block.out_channels, 1, 1)
    add(Op("avgpool", "pool", [ops[-1].output], "pool", kernel=(size, size)), (1, 1, 1, cin))
    add(Op("reshape", "flatten", ["pool"], "flat"), (1, cin))
    add(Op("fc", "classifier", ["flat"], "logits", weight=np.zeros((config.num_classes, cin), np.float32),
           bias=np.zeros(config.num_classes, np.float32)), (1, config.num_classes))
    return Graph(input="input", output="logits", tensors=tensors, ops=ops)


def estimate_cost(config: StudentConfig, device: Device) -> Cost:
    from compilers.planner import plan_memory

    params = weight_bytes = macs = 0
    size, cin = config.input_size, config.in_channels

    def layer(cout: int, k: int, stride: int, groups: int) -> None:
        nonlocal params, weight_bytes, macs, size, cin
        out = _out(size, stride)
        w = cout * (cin // groups) * k * k
        params += w + 2 * cout  # conv weights + BatchNorm (folded into a bias at export)
        weight_bytes += w + 4 * cout + 8 * cout  # int8 weights, int32 bias, int32 multiplier + shift
        macs += out * out * w
        size, cin = out, cout

    layer(config.stem_channels, 3, config.stem_stride, 1)
    for block in config.blocks:
        layer(cin, 3, block.stride, cin)
        layer(block.out_channels, 1, 1, 1)
    # global average pool, then the classifier
    params += cin * config.num_classes + config.num_classes
    weight_bytes += cin * config.num_classes + 12 * config.num_classes  # per-channel, as the compiler emits
    macs += size * size * cin + cin * config.num_classes
    arena = plan_memory(student_graph(config)).arena_bytes
    return Cost(params=params, weight_bytes=weight_bytes, macs=macs, sram_bytes=arena,
                latency_ms=device.latency_ms(macs))
