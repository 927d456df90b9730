"""The build's compile stage: the student's ONNX to ``compiled/`` (model.tflite, the C library,
compile.json), verified against the numpy reference, TFLite Micro and LiteRT, with the exact
arena, the Cortex-M sizes and the int8 C library's accuracy on the run's test set.
"""

from __future__ import annotations

import numpy as np

from knowledge.io import write_json_atomic


def calibration_inputs(ctx, samples: int) -> np.ndarray:
    """Float NCHW inputs drawn (seeded) from the auto-labeled training split."""
    from tools.train import to_input

    inputs = np.load(ctx.dir / "data" / "pool_inputs.npy", mmap_mode="r")
    with np.load(ctx.dir / "data" / "labels.npz") as z:
        train = np.where(z["split"] == "train")[0]
    rng = np.random.default_rng(ctx.run.spec.seed)
    pick = np.sort(rng.choice(train, min(len(train), samples), replace=False))
    return to_input(inputs[pick]).numpy()


def evaluation_inputs(ctx) -> tuple[np.ndarray, np.ndarray]:
    """The evaluate stage's inputs and labels: the labeled test set, else the auto-labeled validation split."""
    from tools.train import to_input

    inp = ctx.input
    if ctx.test is not None:
        pool, truth = ctx.test
        return to_input(pool.load(np.arange(len(pool)), inp.size, inp.channels)).numpy(), truth
    inputs = np.load(ctx.dir / "data" / "pool_inputs.npy")
    with np.load(ctx.dir / "data" / "labels.npz") as z:
        val = np.where(z["split"] == "val")[0]
        truth = z["probs"][val].argmax(1)
    return to_input(inputs[val]).numpy(), truth


def image_input(ctx):
    """How the run's student takes images: its labels and pixel normalisation (the C library's nf_io)."""
    from compilers.ir import ImageInput
    from tools.train import PIXEL_DIVISOR, PIXEL_OFFSET

    return ImageInput(labels=list(ctx.run.spec.label_names), pixel_offset=PIXEL_OFFSET, pixel_divisor=PIXEL_DIVISOR)


def stage_compile(ctx) -> dict:
    from agent.plan import CompileStep
    from compilers.build import compile_onnx
    from compilers.verify import verify

    step = next((s for s in ctx.run.plan.steps if s.kind == "compile"), CompileStep())
    folder = ctx.dir / "compiled"
    calib = calibration_inputs(ctx, step.compile.calibration_samples)
    compiled = compile_onnx(ctx.dir / "model.onnx", calib, folder, name=ctx.run.id, config=step.compile,
                            image=image_input(ctx))
    x, truth = evaluation_inputs(ctx)
    figures = verify(compiled, x, labels=truth, fp32_onnx=ctx.dir / "model.onnx",
                     int8_onnx=ctx.dir / "model_int8.onnx", runtime_samples=step.verify_samples,
                     tflm=step.verify, litert=step.verify, arm=step.verify)
    write_json_atomic(folder / "verify.json", figures)
    summary = compiled.summary
    return {"dir": str(folder), "arena_bytes": summary["arena_bytes"], "weight_bytes": summary["weight_bytes"],
            "macs": summary["macs"], "layers": summary["layers"], "verify": figures}
