"""Per-layer profile of a compiled model: MACs, weight bytes, activation bytes, and the
estimated cycles on the target (MACs / the device's MAC-per-cycle figure), plus a plot that puts
each layer's measured floor on the emulated core (compilers.verify) beside the estimate.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from compilers.ir import Graph


def profile_layers(graph: Graph) -> list[dict]:
    rows = []
    for op in graph.ops:
        ins = sum(graph.tensors[n].size for n in op.inputs)
        rows.append({
            "name": op.name,
            "kind": op.kind,
            "output_shape": list(graph.shape(op.output)),
            "macs": int(graph.macs(op)),
            "weight_bytes": int(graph.weight_bytes(op)),
            "activation_bytes": int(ins + graph.tensors[op.output].size),
        })
    return rows


def layer_cycles(layers: list[dict], macs_per_cycle: float) -> list[float]:
    return [row["macs"] / macs_per_cycle for row in layers]


def profile_plot_png(layers: list[dict], macs_per_cycle: float, clock_mhz: float, device_name: str,
                     floor_ms: list[float] | None = None) -> str:
    """Base64 PNG: estimated time, weight bytes and activation bytes per layer; with ``floor_ms`` (each
    layer's instructions on the emulated core at the core's best rate) beside the estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{i} {row['kind']}" for i, row in enumerate(layers)]
    ms = np.array(layer_cycles(layers, macs_per_cycle)) / (clock_mhz * 1e3)
    y = np.arange(len(layers))
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.28 * len(layers) + 1.6), sharey=True)
    for ax, values, title in ((axes[0], ms, f"ms on {device_name}"),
                              (axes[1], [r["weight_bytes"] / 1024 for r in layers], "weights (KB, flash)"),
                              (axes[2], [r["activation_bytes"] / 1024 for r in layers], "in + out activations (KB)")):
        if ax is axes[0] and floor_ms is not None:
            ax.barh(y - 0.2, values, height=0.4, color="#4c78a8", label="estimate from MACs")
            ax.barh(y + 0.2, floor_ms, height=0.4, color="#f58518", label="this C library, at least")
            ax.legend(fontsize=7, loc="lower right")
        else:
            ax.barh(y, values, color="#4c78a8")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
