"""Synthetic images for the classes that need them: generate, judge with the teacher, gate, keep.

    generator, info = image_generator(text_to_image, ddpm, train_images, train_labels, names, out_dir)
    result = synthesize_images(generator, needs, judge, GateConfig(), 200, out_dir, views)

The caller (the build's generate step) decides which classes need data; this module makes it.
A generator that cannot run raises ``GeneratorUnavailable``; one that cannot draw one class
(a DDPM never saw it) skips that class with its reason, and the rest go on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generators.base import GenerateRequest, Generator, GeneratorUnavailable, safe_name
from generators.ddpm import META, DDPMConfig, train_ddpm
from generators.gate import GateConfig, apply_gate
from generators.registry import create_generator
from generators.text_to_image import TextToImageConfig

log = logging.getLogger(__name__)


@dataclass
class ClassNeed:
    index: int  # the class's label index
    name: str
    description: str
    negatives: list[str]
    real: int  # real training samples the class already has


@dataclass
class ImageViews:
    """How a generated file becomes arrays: what the teacher judges, and what the student trains on."""

    judge_size: int
    judge_channels: int
    input_size: int
    input_channels: int

    def load(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        from knowledge.pools import ImagePool

        pool = ImagePool(source="synthetic", uids=[str(p) for p in paths], sha1=[""] * len(paths), paths=list(paths))
        idx = range(len(paths))
        return pool.load(idx, self.judge_size, self.judge_channels), pool.load(idx, self.input_size, self.input_channels)


@dataclass
class Synthesis:
    images: np.ndarray  # kept samples, uint8 NHWC at the student's input shape
    labels: np.ndarray  # (M,)
    probs: np.ndarray  # (M, K) the teacher's label distribution: the soft targets for distillation
    candidates: list[dict] = field(default_factory=list)  # every candidate: file, class, decision, provenance
    per_class: dict[str, dict] = field(default_factory=dict)

    @property
    def generated(self) -> int:
        return len(self.candidates)

    @property
    def kept(self) -> int:
        return len(self.labels)

    def summary(self) -> dict:
        """Counts, and the gate's rejection rate: candidates it found wanting (the share cap's quota left out)."""
        over_cap = sum(c.get("over_cap", 0) for c in self.per_class.values())
        rejected = self.generated - self.kept - over_cap
        return {"generated": self.generated, "kept": self.kept, "over_cap": over_cap,
                "rejection_rate": round(rejected / self.generated, 4) if self.generated else None,
                "per_class": self.per_class}


def image_generator(text_to_image: TextToImageConfig | None, ddpm: DDPMConfig, train_images: np.ndarray,
                    train_labels: np.ndarray, class_names: list[str], out_dir: Path, seed: int = 0,
                    progress: bool = False) -> tuple[Generator, dict]:
    """The user's diffusers pipeline when one is configured, else a DDPM trained here (reused when already trained)."""
    if text_to_image is not None:
        generator = create_generator(text_to_image)
        generator.load()
        return generator, {"generator": "diffusers", "model": text_to_image.model}
    if ddpm.model is None:
        folder = Path(out_dir) / "ddpm"
        if (folder / META).is_file():
            log.info("reusing the DDPM trained in %s", folder)
        else:
            train_ddpm(train_images, train_labels, class_names, ddpm, folder, seed=seed, progress=progress)
        ddpm = ddpm.model_copy(update={"model": str(folder)})
    generator = create_generator(ddpm)
    generator.check()
    meta = json.loads((Path(ddpm.model) / META).read_text())
    return generator, {"generator": "ddpm", "model": ddpm.model, "trained_steps": meta["steps"],
                       "train_seconds": meta["seconds"], "final_loss": meta["final_loss"]}


def synthesize_images(generator: Generator, needs: list[ClassNeed], judge, gate: GateConfig, count: int,
                      out_dir: Path, views: ImageViews, num_labels: int, seed: int = 0,
                      progress: bool = False) -> Synthesis:
    """``count`` candidates per needed class; ``judge(images, target) -> (embeddings, probs)`` with the pool's
    FAISS index as ``judge.pool_index`` for the near-duplicate check."""
    shape = (0, views.input_size, views.input_size, views.input_channels)
    images, labels, probs = [np.zeros(shape, np.uint8)], [np.zeros(0, np.int64)], [np.zeros((0, num_labels), np.float32)]
    candidates: list[dict] = []
    per_class: dict[str, dict] = {}
    for need in needs:
        request = GenerateRequest(class_name=need.name, description=need.description, negatives=need.negatives,
                                  count=count, seed=seed)
        try:
            result = generator.generate(request, Path(out_dir) / "candidates" / safe_name(need.name), progress)
        except GeneratorUnavailable as e:
            log.warning("no synthetic %s: %s", need.name, e)
            per_class[need.name] = {"real": need.real, "generated": 0, "kept": 0, "unavailable": str(e)}
            continue
        judged, inputs = views.load(result.paths)
        emb, p = judge(judged, need.index)
        decision = apply_gate(emb, p, need.index, judge.pool_index, need.real, gate)
        for f, reason, conf in zip(result.files, decision.reasons, decision.confidence):
            candidates.append({"file": str(f.path), "label": need.name, "kept": reason is None, "reason": reason,
                               "confidence": round(float(conf), 4), "provenance": f.provenance})
        images.append(inputs[decision.keep])
        labels.append(np.full(decision.kept, need.index, np.int64))
        probs.append(p[decision.keep].astype(np.float32))
        per_class[need.name] = {"real": need.real, "generated": len(result.files), "kept": decision.kept,
                                "cap": decision.cap, "over_cap": decision.over_cap, "rejected": decision.rejected,
                                "rejection_rate": round(decision.rejection_rate, 4), "seconds": result.seconds}
        log.info("synthetic %s: kept %d of %d (%s)", need.name, decision.kept, len(result.files), decision.rejected)
    return Synthesis(np.concatenate(images), np.concatenate(labels), np.concatenate(probs), candidates, per_class)
