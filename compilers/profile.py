"""Per-layer profile of a compiled model: MACs, weight bytes, activation bytes, and the
estimated cycles on the target (MACs / the device's MAC-per-cycle figure), plus a plot.
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


def profile_plot_png(layers: list[dict], macs_per_cycle: float, clock_mhz: float, device_name: str) -> str:
    """Base64 PNG: estimated time, weight bytes and activation bytes per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{i} {row['kind']}" for i, row in enumerate(layers)]
    ms = np.array(layer_cycles(layers, macs_per_cycle)) / (clock_mhz * 1e3)
    y = np.arange(len(layers))
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.28 * len(layers) + 1.6), sharey=True)
    for ax, values, title in ((axes[0], ms, f"est. ms on {device_name}"),
                              (axes[1], [r["weight_bytes"] / 1024 for r in layers], "weights (KB, flash)"),
                              (axes[2], [r["activation_bytes"] / 1024 for r in layers], "in + out activations (KB)")):
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
