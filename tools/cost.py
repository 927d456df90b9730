"""What a student costs on the target: params, int8 weight bytes, MACs, SRAM, latency.

One function, used for sizing and for the report. SRAM is the compiler's memory plan
of the student's graph (``compilers.planner``): the arena the generated C library
declares, to the byte, known before anything is trained or compiled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from knowledge.devices import Device


@dataclass(frozen=True)
class Cost:
    params: int
    weight_bytes: int  # int8 weights + int32 biases + per-channel requantization (2 x int32 per channel)
    macs: int
    sram_bytes: int
    latency_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


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
    return Cost(params=int(params), weight_bytes=int(sum(graph.weight_bytes(op) for op in graph.ops)), macs=macs,
                sram_bytes=plan_memory(graph).arena_bytes, latency_ms=device.latency_ms(macs))


def estimate_cost(config, device: Device) -> Cost:
    """Cost of any student config (the fixed DS-CNN or a searched network) on ``device``."""
    from tools.spaces import model_graph

    return graph_cost(model_graph(config), device)
