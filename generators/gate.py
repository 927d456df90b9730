"""The quality gate: keep a generated sample only if the teacher agrees and it adds something new.

For each candidate of an intended class, in this order:

1. **teacher disagrees**: the teacher's label is another class;
2. **low confidence**: the teacher's probability for the intended class is below ``min_confidence``;
3. **near-duplicate of the pool**: its cosine similarity to some pool sample (FAISS, in the
   teacher's embedding space) reaches ``duplicate_similarity``: it would only repeat real data
   (what a generator that memorised its few training images returns);
4. **near-duplicate of another sample**: the same against the candidates already kept, most
   confident first;
5. **over the cap**: the class's synthetic share would exceed ``max_share`` (never fewer than
   ``min_keep`` when the class has almost no real data).

``TeacherJudge`` is the teacher's opinion for images the pool never contained, reached the
way the pool's own labels were (``knowledge.labeling``'s last step): a class-balanced linear
head on the teacher's embeddings, fitted to the pool's confident labels, which already combine
few-shot clusters, zero-shot and self-training. A class with no pool samples is judged by the
teacher's zero-shot scores alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

REASONS = ("teacher disagrees", "low confidence", "near-duplicate of the pool", "near-duplicate of another sample",
           "over the cap")


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_confidence: float = Field(0.6, ge=0, le=1, description="teacher probability of the intended class needed")
    # cosine similarity in the run's projected teacher space (centred, PCA, L2-normalised). An exact copy is 1.0;
    # on the test shapes (plain shapes, far more alike than photos) distinct images reach 0.92 at the median
    # and 0.975 at most among fresh ones, so 0.98 leaves every distinct image and catches copies (no DDPM sample
    # of bench/synthetic.py reached it)
    duplicate_similarity: float = Field(0.98, gt=0, le=1)
    max_share: float = Field(0.5, gt=0, lt=1, description="largest synthetic fraction of a class's training data")
    min_keep: int = Field(32, ge=0, description="a class with almost no real data may still keep this many")


@dataclass
class GateResult:
    keep: np.ndarray  # (N,) bool
    reasons: list[str | None]  # None for kept samples
    confidence: np.ndarray  # (N,) teacher probability of the intended class
    cap: int

    @property
    def kept(self) -> int:
        return int(self.keep.sum())

    @property
    def rejected(self) -> dict[str, int]:
        counts = Counter(r for r in self.reasons if r is not None)
        return {r: counts[r] for r in REASONS if counts[r]}

    @property
    def over_cap(self) -> int:
        return sum(r == "over the cap" for r in self.reasons)

    @property
    def rejection_rate(self) -> float:
        """Share of the candidates the gate found wanting (teacher, duplicates); the cap is a quota, not a verdict."""
        return (len(self.keep) - self.kept - self.over_cap) / len(self.keep) if len(self.keep) else 0.0


def synthetic_cap(real: int, config: GateConfig) -> int:
    """Most synthetic samples a class with ``real`` real ones may keep: share s of the total, at least min_keep."""
    return max(config.min_keep, int(np.floor(config.max_share / (1 - config.max_share) * real + 1e-9)))


def apply_gate(embeddings: np.ndarray, probs: np.ndarray, target: int, pool_index, real: int,
               config: GateConfig) -> GateResult:
    """Decide for each candidate of class ``target``.

    ``embeddings`` (N, D) are in the pool index's space; ``probs`` (N, K) the teacher's label
    distribution; ``pool_index`` a ``knowledge.index.VectorIndex`` (or None: no pool to compare with).
    """
    import faiss

    n = len(embeddings)
    if n == 0:
        return GateResult(np.zeros(0, bool), [], np.zeros(0, np.float32), synthetic_cap(real, config))
    emb = np.ascontiguousarray(embeddings, np.float32).reshape(n, -1)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    confidence = probs[:, target].astype(np.float32)
    reasons: list[str | None] = [None] * n
    for i in range(n):
        if int(probs[i].argmax()) != target:
            reasons[i] = "teacher disagrees"
        elif confidence[i] < config.min_confidence:
            reasons[i] = "low confidence"
    alive = [i for i in range(n) if reasons[i] is None]
    if alive and pool_index is not None and len(pool_index):
        sims, _ = pool_index.search(emb[alive], 1)
        for i, s in zip(alive, sims[:, 0]):
            if s >= config.duplicate_similarity:
                reasons[i] = "near-duplicate of the pool"
    cap = synthetic_cap(real, config)
    kept_index = faiss.IndexFlatIP(emb.shape[1])
    kept = 0
    for i in sorted((i for i in range(n) if reasons[i] is None), key=lambda i: -confidence[i]):
        if kept_index.ntotal:
            sim, _ = kept_index.search(emb[i:i + 1], 1)
            if sim[0, 0] >= config.duplicate_similarity:
                reasons[i] = "near-duplicate of another sample"
                continue
        if kept >= cap:
            reasons[i] = "over the cap"
            continue
        kept_index.add(emb[i:i + 1])
        kept += 1
    keep = np.array([r is None for r in reasons], bool)
    return GateResult(keep=keep, reasons=reasons, confidence=confidence, cap=cap)


@dataclass
class TeacherJudge:
    """The teacher's label distribution for new images, the way it labeled the pool.

    ``teacher`` embeds uint8 images and scores class descriptions (``knowledge.teachers``);
    ``projection`` is the run's ``knowledge.labeling.Projection`` (None: raw embeddings);
    ``pool_embeddings`` (P, d) are the projected pool and ``pool_labels`` (P,) its confident labels
    (-1: not confident, left out); ``pool_index`` is the FAISS index the gate checks duplicates in.
    """

    teacher: object
    pool_embeddings: np.ndarray
    pool_labels: np.ndarray
    num_labels: int
    prompts: list[str]
    other: bool
    projection: object | None = None
    pool_index: object | None = None
    seed: int = 0
    _head: object | None = field(default=None, repr=False)

    def __call__(self, images: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC images -> (projected embeddings (N, d), label distribution (N, K))."""
        from knowledge.labeling import zero_shot_distribution

        raw = self.teacher.embed(images)
        emb = self.projection.apply(raw) if self.projection is not None else raw.astype(np.float32)
        head = self.head()
        if head is None or target not in head.classes_:
            # nothing in the pool speaks for this class: its description alone decides
            return emb, zero_shot_distribution(self.teacher.class_scores(raw, self.prompts), self.other)
        probs = np.zeros((len(emb), self.num_labels), np.float32)
        probs[:, head.classes_] = head.predict_proba(emb)
        return emb, probs

    def head(self):
        """A class-balanced linear head on the pool's confident labels: knowledge.labeling's self-training
        head, refitted here. Balanced, so a class with ten images is not outvoted by one with a thousand
        (a nearest-neighbour vote was: ten sandals among 1,600 images never won their own neighbourhood)."""
        if self._head is None:
            from sklearn.linear_model import LogisticRegression

            keep = self.pool_labels >= 0
            if len(np.unique(self.pool_labels[keep])) < 2:
                return None
            self._head = LogisticRegression(max_iter=300, class_weight="balanced", random_state=self.seed)
            self._head.fit(self.pool_embeddings[keep], self.pool_labels[keep])
        return self._head
