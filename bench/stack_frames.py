"""How much stack nf_invoke takes of its own, over networks the search can pick.

    .venv/bin/python bench/stack_frames.py [--samples 50] [--seed 0] [--sizes 28 32 48 64 96]

``tools/cost.py``'s LIBRARY_STACK predicts the stack one inference takes before anything is trained:
the deepest kernel's frame plus "call", nf_invoke's frame and the calls around it. The kernels are
the same for every model; nf_invoke is generated per model, and its frame follows how GCC keeps the
kernels' arguments in registers across the calls. This compiles ``--samples`` networks sampled
from each search space (mbnet and dscnn, seeded random weights, inputs from ``--sizes``) with the
compiler, builds each one's model.c with arm-none-eabi-gcc -fstack-usage and verify's flags for
the Cortex-M4, M7 and M0+, and prints nf_invoke's frame per network and how often each size
occurs: "call" has to cover the most. Needs arm-none-eabi-gcc; about 4 s per network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repository root


def invoke_frame(c_dir: Path, cpu_flags: str, tmp: Path) -> int:
    """nf_invoke's frame in bytes, as GCC reports it for verify's build of ``c_dir``/model.c."""
    subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-O2", "-mthumb", *cpu_flags.split(), "-ffreestanding",
                    "-fstack-usage", "-I", str(c_dir), "-c", str(c_dir / "model.c"), "-o", str(tmp / "model.o")],
                   check=True, cwd=tmp)
    for line in (tmp / "model.su").read_text().splitlines():
        where, size, _ = line.split("\t")
        if where.endswith(":nf_invoke"):
            return int(size)
    raise RuntimeError(f"no nf_invoke in {c_dir / 'model.c'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50, help="networks per search space (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32, 48, 64, 96], help="input sizes to sample")
    args = parser.parse_args()

    import torch

    from compilers.build import compile_onnx
    from compilers.onnx_export import export_onnx
    from compilers.verify import QEMU_CORES
    from tools.cost import LIBRARY_STACK
    from tools.spaces import build_model, create_space

    rng = np.random.default_rng(args.seed)
    frames: dict[str, list[list[int]]] = {}
    skipped = 0
    for space_name in ("mbnet", "dscnn"):
        space = create_space(space_name, in_channels=1, num_classes=5, resolutions=args.sizes)
        for i in range(args.samples):
            config = space.decode(space.sample(rng))
            torch.manual_seed(i)
            model = build_model(config).eval()
            size = config.input_size
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                path = export_onnx(model, (1, size, size), tmp / "model.onnx")
                calibration = np.random.default_rng(i).uniform(-1, 1, (8, 1, size, size)).astype(np.float32)
                try:
                    compiled = compile_onnx(path, calibration, tmp / "out")
                except ValueError as exc:  # a random network the int8 compiler refuses (a bias past int32)
                    print(f"  skipped {config.name}: {exc}")
                    skipped += 1
                    continue
                row = [invoke_frame(compiled.dir / "c", flags, tmp) for _, flags in QEMU_CORES.values()]
            frames.setdefault(space_name, []).append(row)
            print(f"  {config.name:<90} " + " ".join(f"{f:>4}" for f in row), flush=True)

    cores = list(QEMU_CORES)
    print(f"\nnf_invoke's frame (B) over {sum(len(v) for v in frames.values())} networks ({skipped} skipped)")
    print(f"{'space':<8}" + "".join(f"{core:>28}" for core in cores))
    for space_name, rows in frames.items():
        table = np.array(rows)
        cells = [", ".join(f"{size} x{n}" for size, n in sorted(Counter(table[:, j].tolist()).items()))
                 for j in range(len(cores))]
        print(f"{space_name:<8}" + "".join(f"{cell:>28}" for cell in cells))
    most = np.concatenate([np.array(rows) for rows in frames.values()]).max(0)
    calls = ", ".join(f"{core} {LIBRARY_STACK[core]['call']} B" for core in cores)
    print("most: " + ", ".join(f"{core} {m} B" for core, m in zip(cores, most))
          + f"; LIBRARY_STACK's call (the frame and the calls around it): {calls}")


if __name__ == "__main__":
    main()
