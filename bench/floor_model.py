"""Fits the model of this C library's instructions per layer that sizing and the search use.

    .venv/bin/python bench/floor_model.py [--samples 8] [--seed 0]

Compiles a set of networks with seeded random weights (the DS-CNN student at several widths and
inputs down to 12 px, architectures sampled from the search's mbnet space at 16 to 32 px, the MLPerf
Tiny reference models),
runs each on the emulated Cortex-M4, M7 and M0+ (QEMU, per-layer timing as `nanofactory verify`
does) and fits, per core and per kind of layer, instructions = a x MACs + b x output values + c x
output pixels + d by least squares (non-negative). Prints the coefficients in the form ``tools/cost.py``'s
LIBRARY_INSTRUCTIONS takes, and for every network the measured instructions per inference beside
the model's, fitted on the others (leave one network out): how far the floor the search predicts
can be from the one verify measures. Needs arm-none-eabi-gcc and qemu-system-arm; a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repository root

CORES = ("cortex-m4", "cortex-m7", "cortex-m0plus")


def networks(seed: int) -> list[tuple[str, object, tuple[int, int, int]]]:
    """(name, torch module, input CHW) of every network the fit measures."""
    import torch

    from bench.mlperf_models import MODELS, create_model, randomize_batchnorm
    from tools.spaces import build_model, create_space
    from tools.student import ds_cnn

    out = []
    for width, size, channels in ((4, 16, 1), (8, 12, 3), (6, 28, 1), (8, 28, 1), (16, 28, 1), (32, 28, 1), (12, 32, 3),
                                  (24, 48, 1)):
        config = ds_cnn(width, size, channels, 5)
        out.append((config.name, build_model(config), (channels, size, size)))
    rng = np.random.default_rng(seed)
    for resolutions, count in (([16, 20], 2), ([28, 32], 6)):  # small inputs too: tight budgets get small layers
        space = create_space("mbnet", in_channels=1, num_classes=5, resolutions=resolutions)
        for _ in range(count):
            config = space.decode(space.sample(rng))
            out.append((config.name, build_model(config), (1, config.input_size, config.input_size)))
    for name in MODELS:
        out.append((name, create_model(name, seed), MODELS[name][1]))
    for i, (_, model, _) in enumerate(out):
        torch.manual_seed(seed + i)
        randomize_batchnorm(model, seed + i)
        model.eval()
    return out


def layer_features(graph) -> list[tuple[str, np.ndarray]]:
    """Each op's kind (tools.cost.layer_kind) and its [MACs, output values, output pixels, 1]."""
    from tools.cost import layer_features as features

    return [(kind, np.array(f, np.float64)) for kind, f in features(graph)]


def measure(samples: int, seed: int, workdir: Path) -> list[dict]:
    from compilers.build import compile_onnx, nchw_to_nhwc
    from compilers.onnx_export import export_onnx
    from compilers.verify import emulate_cortex_m

    rows = []
    for name, model, shape in networks(seed):
        folder = workdir / name
        rng = np.random.default_rng(seed)
        calibration = rng.uniform(-1, 1, (32, *shape)).astype(np.float32)
        compiled = compile_onnx(export_onnx(model, shape, folder / "model.onnx"), calibration, folder / "compiled", name)
        graph = compiled.graph
        x = graph.tensors[graph.input].quant.quantize(nchw_to_nhwc(rng.uniform(-1, 1, (samples, *shape)).astype(np.float32)))
        size = graph.tensors[graph.output].size
        layers = {core: emulate_cortex_m(compiled.dir / "c", x, size, core, layers=True).layers for core in CORES}
        rows.append({"name": name, "features": layer_features(graph), "layers": layers})
        print(f"{name}: {len(graph.ops)} layers, " + ", ".join(f"{core} {sum(v) / 1e6:.2f} M" for core, v in layers.items()),
              flush=True)
    return rows


def fit(rows: list[dict], core: str) -> dict[str, list[float]]:
    """Per kind, non-negative least squares of each layer's instructions on its features."""
    from scipy.optimize import nnls

    by_kind: dict[str, tuple[list, list]] = {}
    for row in rows:
        for (kind, f), y in zip(row["features"], row["layers"][core]):
            by_kind.setdefault(kind, ([], []))[0].append(f)
            by_kind[kind][1].append(y)
    out = {}
    for kind, (features, y) in sorted(by_kind.items()):
        a, y = np.array(features), np.array(y)
        scale = np.maximum(a.max(axis=0), 1.0)  # the columns differ by orders of magnitude
        coef, _ = nnls(a / scale, y / max(y.max(), 1.0))
        out[kind] = [round(float(v), 4) for v in coef / scale * max(y.max(), 1.0)]
    return out


def predict(features: list[tuple[str, np.ndarray]], model: dict[str, list[float]]) -> float:
    return float(sum(np.dot(model.get(kind, np.zeros(len(f))), f) for kind, f in features))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8, help="inputs each network is timed on (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.samples, args.seed, Path(tmp))
    print("\nLIBRARY_INSTRUCTIONS = {  # per layer: a x MACs + b x output values + c x output pixels + d")
    for core in CORES:
        print(f"    {core!r}: {fit(rows, core)!r},")
    print("}\n")
    header = f"{'network':<44}" + "".join(f"{core + ' measured':>26}{'fitted on the others':>22}" for core in CORES)
    print(header)
    worst = dict.fromkeys(CORES, 0.0)
    for i, row in enumerate(rows):
        line = f"{row['name'][:43]:<44}"
        for core in CORES:
            measured = float(sum(row["layers"][core]))
            predicted = predict(row["features"], fit(rows[:i] + rows[i + 1:], core))
            worst[core] = max(worst[core], abs(predicted / measured - 1))
            line += f"{measured / 1e6:>24.2f} M{predicted / 1e6:>13.2f} M ({100 * (predicted / measured - 1):+5.1f} %)"
        print(line)
    print("\nlargest error, leave one network out: " + ", ".join(f"{c} {100 * w:.1f} %" for c, w in worst.items()))


if __name__ == "__main__":
    main()
