"""What a student costs on the target: params, int8 weight bytes, MACs, SRAM, latency.

One function, used for sizing and for the report. SRAM is an analytic estimate of
the int8 runtime's arena: the widest point of the network, where a layer's input
and output activations are alive together, plus the im2col scratch that CMSIS-NN
style kernels use for the standard convolution. The compiler's memory planner
replaces it with the exact arena once it lands.
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


def estimate_cost(config: StudentConfig, device: Device) -> Cost:
    params = weight_bytes = macs = peak = 0
    size, cin = config.input_size, config.in_channels

    def layer(cout: int, k: int, stride: int, groups: int, scratch: int = 0) -> None:
        nonlocal params, weight_bytes, macs, peak, size, cin
        out = _out(size, stride)
        w = cout * (cin // groups) * k * k
        params += w + 2 * cout  # conv weights + BatchNorm (folded into a bias at export)
        weight_bytes += w + 4 * cout + 8 * cout  # int8 weights, int32 bias, int32 multiplier + shift
        macs += out * out * w
        peak = max(peak, size * size * cin + out * out * cout + scratch)
        size, cin = out, cout

    layer(config.stem_channels, 3, config.stem_stride, 1, scratch=2 * 3 * 3 * config.in_channels * 2)
    for block in config.blocks:
        layer(cin, 3, block.stride, cin)
        layer(block.out_channels, 1, 1, 1)
    # global average pool, then the classifier
    peak = max(peak, size * size * cin + cin)
    params += cin * config.num_classes + config.num_classes
    weight_bytes += cin * config.num_classes + 4 * config.num_classes + 8
    macs += size * size * cin + cin * config.num_classes
    return Cost(params=params, weight_bytes=weight_bytes, macs=macs, sram_bytes=peak,
                latency_ms=device.latency_ms(macs))
