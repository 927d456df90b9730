"""The build's stages, in order. Each reads its inputs from the run folder, calls the
library (knowledge/, tools/, compilers/), writes artifacts atomically and returns a
small JSON-able result that becomes ``stages/<name>.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from agent.data import Examples, hidden_truth, load_examples, load_pool, load_test
from agent.pipeline import Run
from agent.stage_compile import stage_compile
from agent.stage_generate import (
    add_synthetic_metrics,
    synthesize,
    synthetic_ablation,
    synthetic_samples,
    train_with_synthetic,
)
from agent.stage_label import stage_label
from agent.stage_search import stage_search
from knowledge.io import (
    atomic_path,
    write_json_atomic,
    write_npy_chunks,
    write_npz_atomic,
)
from knowledge.labeling import zero_shot_on_examples

log = logging.getLogger(__name__)



@dataclass
class StageContext:
    """Shared, lazily loaded inputs; nothing here is expensive until a stage asks for it."""

    run: Run
    show_bars: bool = True
    teacher_images_per_second: float | None = None  # set only when the teacher ran (not a cache hit)
    _cache: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.run.dir

    @cached_property
    def pool(self):
        return load_pool(self.run.spec)

    @cached_property
    def examples(self) -> Examples:
        return load_examples(self.run.spec)

    @cached_property
    def test(self):
        return load_test(self.run.spec)

    @cached_property
    def device(self):
        from knowledge.devices import get_device

        return get_device(self.run.spec.device)

    @cached_property
    def teacher(self):
        from knowledge.teachers import create_teacher

        return create_teacher(self.run.plan.step("teacher").teacher)

    @property
    def student(self):
        """The student to train: the search's choice when the plan searched, else the plan's fixed one."""
        from agent.stage_search import searched_student

        return searched_student(self.run) or self.run.plan.step("train").student

    @property
    def input(self):
        return self.run.plan.step("data").input

    def embeddings_file(self) -> Path:
        """The pool's teacher embeddings: a float16 .npy in the cache, computed (streamed) on first use."""
        from knowledge.cache import cached_embeddings

        if "emb" not in self._cache:
            self._cache["emb"] = cached_embeddings(self.teacher.cache_key, self.pool.content_hash, self._embed_pool)
        return self._cache["emb"]

    def embedding_chunks(self, chunk: int = 8192):
        """(start, float32 rows) over the pool's embeddings; one chunk in memory at a time."""
        from knowledge.io import iter_npy_rows

        for start, rows in iter_npy_rows(self.embeddings_file(), chunk):
            yield start, rows.astype(np.float32)

    def class_scores(self, prompts: list[str]) -> np.ndarray:
        """(N, len(prompts)) teacher scores of every pool image, computed chunk by chunk."""
        return np.concatenate([self.teacher.class_scores(rows, prompts) for _, rows in self.embedding_chunks()])

    def _embed_pool(self):
        import time

        from tqdm.auto import tqdm

        pool, teacher = self.pool, self.teacher
        started = time.perf_counter()
        chunk = 2048
        with tqdm(total=len(pool), desc="teacher", unit="img", disable=not self.show_bars, leave=False) as bar:
            for start in range(0, len(pool), chunk):
                idx = range(start, min(start + chunk, len(pool)))
                images = pool.pixels[start:idx.stop] if pool.pixels is not None else pool.load(idx, teacher.image_size, 3)
                yield teacher.embed(images)
                bar.update(len(idx))
        self.teacher_images_per_second = round(len(pool) / max(time.perf_counter() - started, 1e-9), 1)


# ---- stages ------------------------------------------------------------------------------


def stage_data(ctx: StageContext) -> dict:
    spec, pool, inp = ctx.run.spec, ctx.pool, ctx.input
    write_npy_chunks(ctx.dir / "data" / "pool_inputs.npy", pool.iter_batches(inp.size, inp.channels, 4096), np.uint8)
    examples = ctx.examples
    counts = examples.counts(spec.label_names)
    empty = [c.name for c in spec.classes if counts[c.name] == 0]
    if empty:
        log.info("no examples for %s: zero-shot from the description only", ", ".join(empty))
    test = ctx.test
    return {
        "pool_source": pool.source,
        "pool_size": len(pool),
        "pool_content_hash": pool.content_hash,
        "skipped_images": len(pool.skipped),
        "skipped": pool.skipped[:50],
        "examples_per_class": counts,
        "test_size": 0 if test is None else len(test[1]),
        "input": [inp.size, inp.size, inp.channels],
    }


def stage_teacher(ctx: StageContext) -> dict:
    spec, teacher = ctx.run.spec, ctx.teacher
    prompts = [c.prompt for c in spec.classes]
    zero_shot = ctx.class_scores(prompts)  # embeds the pool first unless the cache has it
    dim = int(np.load(ctx.embeddings_file(), mmap_mode="r").shape[1])
    ex = ctx.examples
    ex_emb = teacher.embed(ex.pool.load(range(len(ex.pool)), teacher.image_size, 3)) if ex.pool else \
        np.zeros((0, dim), np.float32)
    write_npz_atomic(ctx.dir / "data" / "teacher.npz", zero_shot=zero_shot.astype(np.float32), example_embeddings=ex_emb,
              example_labels=ex.labels)
    concepts = {c.name: teacher.concepts(c.prompt) for c in spec.classes} if hasattr(teacher, "concepts") else {}
    write_json_atomic(ctx.dir / "data" / "concepts.json", concepts)
    rate = ctx.teacher_images_per_second
    on_examples = zero_shot_on_examples(teacher.class_scores(ex_emb, prompts), ex.labels) if len(ex_emb) else None
    return {"teacher": teacher.cache_key, "embedding_dim": dim, "images_per_second": rate,
            "embeddings_from_cache": rate is None, "zero_shot_on_examples": on_examples}


def confusion(truth: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (truth, pred), 1)
    return m


def _training_data(ctx: StageContext):
    inputs = np.load(ctx.dir / "data" / "pool_inputs.npy")
    with np.load(ctx.dir / "data" / "labels.npz") as z:
        probs, split = z["probs"], z["split"]
    train, val = np.where(split == "train")[0], np.where(split == "val")[0]
    x, y, soft = inputs[train], probs[train].argmax(1), probs[train]
    ex = ctx.examples
    if ex.pool is not None:  # the user's own examples train with their given labels
        inp = ctx.input
        ex_x = ex.pool.load(range(len(ex.pool)), inp.size, inp.channels)
        x = np.concatenate([x, ex_x])
        y = np.concatenate([y, ex.labels])
        soft = np.concatenate([soft, np.eye(probs.shape[1], dtype=np.float32)[ex.labels]])
    return inputs, x, y, soft, val, probs[val].argmax(1)


def feature_targets(ctx: StageContext) -> np.ndarray:
    """The teacher's (projected) embedding of every row ``_training_data`` returns: pool rows, then examples."""
    from knowledge.labeling import Projection

    with np.load(ctx.dir / "data" / "labels.npz") as z:
        split = z["split"]
    pool = np.load(ctx.dir / "index" / "pool_vectors.npy")[split == "train"].astype(np.float32)
    with np.load(ctx.dir / "data" / "teacher.npz") as z:
        ex = z["example_embeddings"]
    if not len(ex):
        return pool
    return np.concatenate([pool, Projection.load(ctx.dir / "index" / "projection.npz").apply(ex.reshape(len(ex), -1))])


def _save_student(path: Path, model, config) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save({"config": config.model_dump(), "state_dict": model.state_dict()}, tmp)


def load_student(path: Path):
    import torch

    from tools.spaces import build_model, config_from_dict

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = config_from_dict(ckpt["config"])
    model = build_model(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), config


def stage_train(ctx: StageContext) -> dict:
    from tools.train import train_student, true_label_config

    step, spec = ctx.run.plan.step("train"), ctx.run.spec
    generated = synthesize(ctx)
    inputs, x, y, soft, val, val_y = _training_data(ctx)
    student = ctx.student
    feats = feature_targets(ctx) if step.train.feature_weight > 0 else None
    result = train_student(student, x, y, soft, inputs[val], val_y, step.train, seed=spec.seed,
                           desc="student (KD)", progress=ctx.show_bars, feature_targets=feats)
    out = {"student": student.name, "history": result.history, "oracle_history": None,
           "generate_seconds": generated.get("seconds", 0.0) if generated.get("fresh") else 0.0}
    if step.clean_labels:  # a second round without the labels the first round's student contradicts
        from agent.stage_label import clean_labels

        keep, out["label_cleaning"] = clean_labels(ctx, result.model, x, y)
        out["label_cleaning"]["val_accuracy_round1"] = result.history[-1]["val_accuracy"]
        x, y, soft = x[keep], y[keep], soft[keep]
        feats = None if feats is None else feats[keep]
        result = train_student(student, x, y, soft, inputs[val], val_y, step.train, seed=spec.seed,
                               desc="student (KD, cleaned labels)", progress=ctx.show_bars, feature_targets=feats)
        out["history"] = result.history
    if generated.get("kept"):
        result, out["synthetic"] = train_with_synthetic(ctx, result, x, y, soft, inputs[val], val_y)
        out["history"] = result.history
    _save_student(ctx.dir / "student.pt", result.model, student)
    pool = ctx.pool
    truth = hidden_truth(pool, spec) if step.oracle else None
    if truth is not None and (truth >= 0).all():  # the reference: same student, same pool, the true labels
        train_idx = np.setdiff1d(np.arange(len(pool)), val)
        oracle = train_student(student, inputs[train_idx], truth[train_idx], None, inputs[val], truth[val],
                               true_label_config(step.train), seed=spec.seed,
                               desc="oracle (true labels)", progress=ctx.show_bars)
        _save_student(ctx.dir / "oracle" / "oracle.pt", oracle.model, student)
        out["oracle_history"] = oracle.history
    return out


def stage_quantize(ctx: StageContext) -> dict:
    import torch

    from agent.stage_compile import calibration_inputs
    from compilers.onnx_export import export_onnx, run_onnx
    from tools.cost import estimate_cost
    from tools.quantize import quantize_int8

    step = ctx.run.plan.step("quantize")
    calib = calibration_inputs(ctx, step.quantize.calibration_samples)
    out = {}
    for name, folder, ckpt in (("student", ctx.dir, ctx.dir / "student.pt"),
                               ("oracle", ctx.dir / "oracle", ctx.dir / "oracle" / "oracle.pt")):
        if not ckpt.is_file():
            continue
        model, config = load_student(ckpt)
        shape = (config.in_channels, config.input_size, config.input_size)
        fp32 = export_onnx(model, shape, folder / "model.onnx")
        gate = None
        if name == "student":
            model, gate = _ptq_gate(ctx, model, fp32, calib, step.qat)
            if gate["decision"] == "qat":
                fp32 = export_onnx(model, shape, folder / "model.onnx")
        with torch.inference_mode():
            reference = model(torch.from_numpy(calib[:256])).numpy()
        diff = float(np.abs(run_onnx(fp32, calib[:256]) - reference).max())
        quantize_int8(fp32, folder / "model_int8.onnx", calib, step.quantize)
        out[name] = {"onnx_max_abs_diff": diff, **({"ptq_gate": gate} if gate else {})}
    out["cost"] = estimate_cost(ctx.student, ctx.device).as_dict()
    return out


def _ptq_gate(ctx: StageContext, model, fp32_path: Path, calib: np.ndarray, config):
    """int8 (the compiler's bit-exact build) vs fp32 top-1 on validation; QAT when int8 loses too much."""
    import tempfile

    from compilers.onnx_export import run_onnx
    from tools.qat import int8_accuracy, qat_finetune
    from tools.train import to_input

    inputs, x, y, soft, val, val_y = _training_data(ctx)
    xv = to_input(inputs[val]).numpy()
    fp32_acc = float((run_onnx(fp32_path, xv).argmax(1) == val_y).mean())
    with tempfile.TemporaryDirectory() as tmp:
        ptq_acc = int8_accuracy(fp32_path, calib, xv, val_y, Path(tmp) / "ptq")
        gate = {"fp32_val_accuracy": fp32_acc, "ptq_int8_val_accuracy": ptq_acc, "max_drop": config.max_drop,
                "decision": "ptq"}
        if fp32_acc - ptq_acc <= config.max_drop:
            return model, gate
        import copy

        tuned = qat_finetune(copy.deepcopy(model), x, y, soft, config, ctx.run.plan.step("train").train, seed=ctx.run.spec.seed,
                             progress=ctx.show_bars)
        from compilers.onnx_export import export_onnx

        student = ctx.student
        qat_path = export_onnx(tuned, (student.in_channels, student.input_size, student.input_size),
                               Path(tmp) / "qat.onnx")
        gate["qat_fp32_val_accuracy"] = float((run_onnx(qat_path, xv).argmax(1) == val_y).mean())
        gate["qat_int8_val_accuracy"] = int8_accuracy(qat_path, calib, xv, val_y, Path(tmp) / "qat")
    if gate["qat_int8_val_accuracy"] > ptq_acc:
        gate["decision"] = "qat"
        return tuned, gate
    gate["decision"] = "ptq (QAT did not help)"
    return model, gate


def stage_evaluate(ctx: StageContext) -> dict:
    from agent.stage_compile import evaluation_inputs
    from compilers.onnx_export import run_onnx

    names = ctx.run.spec.label_names
    x, truth = evaluation_inputs(ctx)
    if ctx.test is not None:
        evaluated_on = f"test: {ctx.test[0].source} ({len(truth)} images, true labels)"
    else:  # no labeled test set: the auto-labeled validation split is all there is
        evaluated_on = f"validation split ({len(truth)} images, auto-labels)"
    fp32 = run_onnx(ctx.dir / "model.onnx", x).argmax(1)
    int8 = run_onnx(ctx.dir / "model_int8.onnx", x).argmax(1)
    out = {
        "evaluated_on": evaluated_on,
        "student_fp32_test_accuracy": float((fp32 == truth).mean()),
        "student_int8_test_accuracy": float((int8 == truth).mean()),
        "int8_fp32_top1_agreement": float((int8 == fp32).mean()),
        "per_class": per_class_metrics(truth, int8, names),
        "oracle_int8_test_accuracy": None,
    }
    mats = {"student": confusion(truth, int8, len(names))}
    oracle = ctx.dir / "oracle" / "model_int8.onnx"
    if oracle.is_file():
        pred = run_onnx(oracle, x).argmax(1)
        out["oracle_int8_test_accuracy"] = float((pred == truth).mean())
        mats["oracle"] = confusion(truth, pred, len(names))
    write_npz_atomic(ctx.dir / "eval" / "test_confusion.npz", **mats)
    out["synthetic"] = synthetic_ablation(ctx, x, truth, evaluated_on)
    return out


def per_class_metrics(truth: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    out = {}
    for i, name in enumerate(names):
        tp = int(((pred == i) & (truth == i)).sum())
        p = tp / max(int((pred == i).sum()), 1)
        r = tp / max(int((truth == i).sum()), 1)
        out[name] = {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12), "support": int((truth == i).sum())}
    return out


def stage_report(ctx: StageContext) -> dict:
    from agent.metrics import assemble_metrics
    from agent.report import write_report

    metrics = assemble_metrics(ctx)
    add_synthetic_metrics(ctx, metrics)
    write_json_atomic(ctx.dir / "metrics.json", metrics)
    write_report(_report_inputs(ctx, metrics), ctx.dir / "report.html")
    return {"report": str(ctx.dir / "report.html")}


def _report_inputs(ctx: StageContext, metrics: dict):
    from agent.report import ReportInputs

    names = ctx.run.spec.label_names
    with np.load(ctx.dir / "data" / "labels.npz") as z:
        probs = z["probs"]
    labels, conf = probs.argmax(1), probs.max(1)
    inputs = np.load(ctx.dir / "data" / "pool_inputs.npy", mmap_mode="r")
    per_class = ctx.run.plan.step("report").samples_per_class
    samples = {}
    for i, name in enumerate(names):
        # a random draw shows the labels as they are, the unsure ones included; most sure first
        idx = np.random.default_rng(ctx.run.spec.seed).permutation(np.where(labels == i)[0])[:per_class]
        pick = idx[np.argsort(-conf[idx])]
        samples[name] = [(np.asarray(inputs[j]), float(conf[j])) for j in pick]
    tests = np.load(ctx.dir / "eval" / "test_confusion.npz")
    teacher = ctx.dir / "eval" / "teacher_confusion.npz"
    concepts = json.loads((ctx.dir / "data" / "concepts.json").read_text())
    return ReportInputs(
        run_id=ctx.run.id,
        spec=ctx.run.spec,
        metrics=metrics,
        label_names=names,
        test_confusion=tests["student"],
        oracle_confusion=tests["oracle"] if "oracle" in tests else None,
        teacher_confusion=np.load(teacher)["confusion"] if teacher.is_file() else None,
        samples=samples,
        confidence=conf,
        min_confidence=ctx.run.plan.step("label").label.min_confidence,
        history=ctx.run.result("train")["history"],
        concepts={k: [tuple(x) for x in v] for k, v in concepts.items()},
        layers=ctx.run.result("compile")["layers"] if ctx.run.is_done("compile") else [],
        pareto_png=(ctx.dir / "search" / "pareto.png.b64").read_text() if (ctx.dir / "search" / "pareto.png.b64").is_file()
        else None,
        device=ctx.device,
        synthetic_samples=synthetic_samples(ctx, per_class),
    )


STAGES = {
    "data": stage_data,
    "teacher": stage_teacher,
    "label": stage_label,
    "search": stage_search,
    "train": stage_train,
    "quantize": stage_quantize,
    "evaluate": stage_evaluate,
    "compile": stage_compile,
    "report": stage_report,
}
