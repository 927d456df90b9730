"""Hardware-aware architecture search: aging evolution on a zero-cost proxy under hard
budgets, then short training of the top candidates, picked by validation accuracy.

The pieces stay apart: the space (``tools.spaces``) samples and mutates genomes, the cost
model (``tools.cost.estimate_cost``: the compiler's exact arena, int8 weight bytes, MACs,
latency from the device catalog) decides what fits, the proxies (``tools.proxies``) score,
and this module only runs the evolution (Real et al. 2019): keep a population, sample a
few, mutate the best of the sample, drop the oldest.
"""

from __future__ import annotations

import csv
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowledge.devices import Device
from knowledge.io import atomic_path
from tools.cost import Cost, estimate_cost
from tools.sizing import DEFAULT_MAX_MACS, DoesNotFit, fits

log = logging.getLogger(__name__)


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: str = "mbnet"
    candidates: int = Field(1000, ge=10, description="architectures scored by the proxy")
    population: int = Field(64, ge=4)
    sample_size: int = Field(16, ge=2)
    # bench/proxies.py (40 mbnet candidates on Fashion-MNIST): Kendall tau params 0.29, MACs 0.19,
    # synflow 0.19, naswot 0.13, grad_norm 0.04, zen -0.11 -- no proxy beat counting parameters, so
    # the search ranks by parameters under the hard budgets and lets short training decide the top-k
    proxies: list[str] = Field(default_factory=lambda: ["params"],
                               description="scored as the sum of z-scores; any of tools.proxies.list_proxies()")
    top_k: int = Field(4, ge=1, description="candidates trained briefly before the pick")
    train_epochs: int = Field(2, ge=1)
    train_samples: int = Field(8000, ge=100)
    max_macs: int = Field(DEFAULT_MAX_MACS, ge=1, description="training time on a CPU grows with MACs")


@dataclass
class Candidate:
    genome: dict
    config: object
    cost: Cost
    scores: dict[str, float]
    fitness: float = 0.0
    val_accuracy: float | None = None

    def row(self) -> dict:
        return {"name": self.config.name, **self.cost.as_dict(), **{f"proxy_{k}": v for k, v in self.scores.items()},
                "fitness": self.fitness, "val_accuracy": self.val_accuracy}


@dataclass
class SearchResult:
    best: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    seconds_scoring: float = 0.0
    seconds_training: float = 0.0
    rejected: int = 0

    def summary(self) -> dict:
        return {"best": self.best.config.name, "best_config": self.best.config.model_dump(),
                "best_cost": self.best.cost.as_dict(), "best_val_accuracy": self.best.val_accuracy,
                "scored": len(self.candidates), "rejected_over_budget": self.rejected,
                "seconds_scoring": round(self.seconds_scoring, 1), "seconds_training": round(self.seconds_training, 1),
                "trained": [{**c.row(), "config": c.config.model_dump()} for c in self.candidates
                            if c.val_accuracy is not None]}


def _fits(cost: Cost, flash: int, sram: int, latency_ms: float | None, max_macs: int) -> bool:
    return cost.macs <= max_macs and fits(cost, flash, sram, latency_ms)


class _Normalizer:
    """Running mean/std per proxy, so proxies of different scales add up."""

    def __init__(self, names: list[str]):
        self.values = {n: [] for n in names}

    def add(self, scores: dict[str, float]) -> None:
        for n, v in scores.items():
            if np.isfinite(v) and v > -1e8:
                self.values[n].append(v)

    def fitness(self, scores: dict[str, float]) -> float:
        total = 0.0
        for n, v in scores.items():
            vals = self.values[n]
            if len(vals) < 2 or not np.isfinite(v) or v <= -1e8:
                total += -3.0 if len(vals) >= 2 else 0.0
                continue
            total += (v - np.mean(vals)) / (np.std(vals) + 1e-9)
        return total


def search(space, device: Device, flash: int, sram: int, latency_ms: float | None, batch, config: SearchConfig,
           seed: int = 0, progress: bool = True) -> SearchResult:
    """Aging evolution over ``space`` on the proxy; every candidate meets the budgets (or DoesNotFit)."""
    import torch
    from tqdm.auto import tqdm

    from tools.proxies import score_all

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is faster than two fighting over them
    rng = np.random.default_rng(seed)
    norm = _Normalizer(config.proxies)
    scored: list[Candidate] = []
    population: deque[Candidate] = deque()
    seen: set[str] = set()
    rejected, smallest = 0, None
    started = time.perf_counter()
    bar = tqdm(total=config.candidates, desc="search (proxy)", unit="arch", disable=not progress, leave=False)
    attempts = 0
    try:
        while len(scored) < config.candidates and attempts < 50 * config.candidates:
            attempts += 1
            if len(population) < config.population:
                genome = space.sample(rng)
            else:
                picks = rng.choice(len(population), config.sample_size, replace=False)
                parent = max((population[i] for i in picks), key=lambda c: norm.fitness(c.scores))
                genome = space.mutate(parent.genome, rng)
            arch = space.decode(genome)
            if arch.name in seen:
                continue
            seen.add(arch.name)
            cost = estimate_cost(arch, device)
            if smallest is None or cost.ram_bytes < smallest.ram_bytes:
                smallest = cost
            if not _fits(cost, flash, sram, latency_ms, config.max_macs):
                rejected += 1
                continue
            candidate = Candidate(genome, arch, cost, score_all(arch, batch, config.proxies, seed=seed))
            norm.add(candidate.scores)
            scored.append(candidate)
            population.append(candidate)
            if len(population) > config.population:
                population.popleft()  # aging: the oldest goes, however good
            bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    if not scored:
        macs_note = (f" ({smallest.macs / 1e6:.2f}M MACs, over the {config.max_macs / 1e6:.2f}M cap: --max-macs)"
                     if smallest.macs > config.max_macs else "")
        raise DoesNotFit(
            f"No architecture in the {config.space} space fits the budget (flash {flash / 1024:.1f} KB, SRAM "
            f"{sram / 1024:.1f} KB{f', latency {latency_ms:g} ms' if latency_ms else ''}) on {device.name}: the "
            f"smallest found needs {smallest.weight_bytes / 1024:.1f} KB flash, {smallest.ram_text()} and "
            f"{smallest.latency_text()}{macs_note}; raise the budget, lower the input size, or pick a "
            f"larger device.",
            smallest, flash, sram, latency_ms)
    for c in scored:
        c.fitness = norm.fitness(c.scores)
    return SearchResult(best=max(scored, key=lambda c: c.fitness), candidates=scored,
                        seconds_scoring=time.perf_counter() - started, rejected=rejected)


def pick_by_training(result: SearchResult, images: np.ndarray, labels: np.ndarray, soft: np.ndarray | None,
                     val_images: np.ndarray, val_labels: np.ndarray, config: SearchConfig, train_config,
                     seed: int = 0, progress: bool = True, extra: list[Candidate] | None = None) -> SearchResult:
    """Train the top-k by proxy (and ``extra`` candidates, e.g. a baseline) briefly on (a sample of) the
    training data, all the same way; the best validation accuracy wins."""
    from tools.train import train_student

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    take = rng.choice(len(images), min(len(images), config.train_samples), replace=False)
    short = train_config.model_copy(update={"epochs": config.train_epochs})
    top = sorted(result.candidates, key=lambda c: -c.fitness)[: config.top_k] + list(extra or [])
    for i, c in enumerate(top):
        trained = train_student(c.config, images[take], labels[take], None if soft is None else soft[take],
                                val_images, val_labels, short, seed=seed, desc=f"search: train {i + 1}/{len(top)}",
                                progress=progress)
        c.val_accuracy = trained.history[-1]["val_accuracy"]
    result.best = max(top, key=lambda c: c.val_accuracy)
    result.seconds_training = time.perf_counter() - started
    return result


def write_candidates(result: SearchResult, path: Path) -> None:
    rows = [c.row() for c in result.candidates]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def pareto_front(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper-left envelope of (cost, score) points: for each cost, the best score at that cost or
    less. Returns the front's points in order of cost (each one better than every cheaper one)."""
    order = np.lexsort((-ys, xs))
    best, front = -np.inf, []
    for i in order:
        if ys[i] > best:
            best = ys[i]
            front.append(i)
    return xs[front], ys[front]


def pareto_png(result: SearchResult, device: Device, fixed: Candidate | None = None) -> str:
    """Base64 PNG: proxy fitness of every scored candidate and its Pareto front, and the validation
    accuracy of those trained (with the ``fixed`` student beside them), against SRAM, flash and latency."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result.candidates
    fit = np.array([x.fitness for x in c])
    trained = [x for x in c if x.val_accuracy is not None]
    axes_of = (("SRAM (KB, planned arena + this C library's stack where modeled)", lambda x: x.cost.ram_bytes / 1024),
               ("flash (KB, int8 weights)", lambda x: x.cost.weight_bytes / 1024),
               (f"latency on {device.name} (ms; this C library's floor where longer)", lambda x: x.cost.latency_bound_ms))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.0))
    handles = []
    for ax, (label, cost_of) in zip(axes, axes_of):
        xs = np.array([cost_of(x) for x in c])
        scored = ax.scatter(xs, fit, s=6, alpha=0.4, color="#9ecae1", label="scored (proxy fitness)")
        fx, fy = pareto_front(xs, fit)
        (front,) = ax.step(fx, fy, where="post", color="#3182bd", linewidth=1.2, label="Pareto front (proxy)")
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("proxy fitness", fontsize=8)
        ax.tick_params(labelsize=7)
        handles = [scored, front]
        if trained or (fixed is not None and fixed.val_accuracy is not None):
            ax2 = ax.twinx()
            if trained:
                handles.append(ax2.scatter([cost_of(x) for x in trained], [x.val_accuracy for x in trained], s=30,
                                           color="#e6550d", marker="D", label="trained briefly (val acc)"))
            if fixed is not None and fixed.val_accuracy is not None:
                handles.append(ax2.scatter([cost_of(fixed)], [fixed.val_accuracy], s=40, color="k", marker="s",
                                           label="fixed student (val acc)"))
            if result.best.val_accuracy is not None:
                handles.append(ax2.scatter([cost_of(result.best)], [result.best.val_accuracy], s=140,
                                           facecolors="none", edgecolors="k", label="chosen"))
            ax2.set_ylabel("validation accuracy (short training)", fontsize=8)
            ax2.tick_params(labelsize=7)
    fig.legend(handles=handles, fontsize=7, loc="upper center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
