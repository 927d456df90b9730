"""Auto-labeling: one label and a confidence for every pool sample, from the teacher.

Three signals, combined:

* **few-shot**: the user's example images. The pool is clustered in the teacher's
  embedding space many times (several cluster counts, several seeds, FAISS k-means);
  a cluster takes the class of the examples that fall into it, and a cluster no
  example reaches is "other". The fraction of clusterings that agree on a sample is
  its few-shot vote. Clustering the whole pool is what lets five examples label
  thousands of images: on 5-class Fashion-MNIST with "other" (bench/teacher.py),
  nearest-example-mean labeling reaches 0.53, clustering votes 0.69.
  Optionally a named class must win its vote over "other" by a margin (``vote_prior``).
* **zero-shot**: the teacher's scores for the class descriptions; it decides the
  classes that have no examples and tilts the vote for the others.
* **self-training**: a linear head fitted on the confident labels over the teacher
  embeddings re-labels every sample (0.69 -> 0.79 in the same benchmark; 0.81 on the
  demo's 60,000 images).
* **label spreading**: once a person has answered, each sample's label distribution is pulled
  toward its nearest pool neighbours' in the teacher's space (Zhou et al. 2004, on the FAISS
  k-NN graph), the answers held fixed: what a linear head cannot follow, a neighbourhood can.

Samples whose final confidence is below ``min_confidence`` are kept out of training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowledge.errors import NanofactoryError
from knowledge.spreading import NeighbourGraph, neighbour_graph, spread_labels

log = logging.getLogger(__name__)

ENRICHMENT = 2.0  # a named cluster holds at least twice the share of its class's examples its size would give
ZERO_SHOT_CLAIM = 0.8  # a cluster within 80 % of a class's best cluster score is that class's too


class LabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_confidence: float = Field(0.6, ge=0, le=1, description="below this a sample is not used for training")
    cluster_multiples: list[int] | None = Field(
        None, description="cluster counts, in multiples of #labels; None: scaled with the examples per class "
        "(cluster_multiples_for)")
    # bench/labeler.py on the demo's pool, mean label accuracy over 6 draws of 5 examples per class:
    # 0.738 with 2 seeds, 0.766 with 8 (1 shot 0.683 -> 0.710, 20 shots 0.815 -> 0.819); 2-3 s per labeling
    restarts: int = Field(8, ge=1, description="k-means seeds per cluster count: more seeds, a smoother vote")
    # 0.2 labels better on average (bench/labeler.py, demo's pool, 6 draws of 1 / 5 / 20 examples: accuracy
    # 0.792 / 0.797 / 0.848 against 0.747 / 0.789 / 0.842) but trained worse students: make demo int8 81.6 %
    # against 84.1 % at 0.3; bench/labels_needed.py seed 0, 5 shots / active 200 (uncertain-only queue): 0.816 /
    # 0.852 against 0.843 / 0.872 at 0.3. Students decide.
    zero_shot_weight: float = Field(0.3, ge=0, le=1, description="exponent of the zero-shot term for classes with examples")
    # For pools that are mostly "other" and whose zero-shot scores are tiny (the demo's: the tilt above then acts
    # mostly as a noisy prior toward "other"): 1.5 with zero_shot_weight 0, self_training_threshold 0.5 and
    # balanced_head False labels the demo's pool better (6 draws of 1 / 5 / 20 examples: 0.797 / 0.807 / 0.853
    # against 0.747 / 0.789 / 0.842), its 5-shot students a little, not those with answers (README). Not the
    # default: a constant prior hands parts of a pool mostly of named classes to "other"
    # (tests/test_labeling.py, test_a_pool_mostly_of_named_classes_keeps_them).
    vote_prior: float | None = Field(
        None, ge=0, description="with 'other': a named class must beat 'other' by this many nats of log vote "
        "(log(vote + 0.001)), the zero-shot tilting only by its evidence relative to the pool; None: the "
        "zero-shot tilt alone weighs 'other' against the votes")
    self_training: bool = True
    self_training_threshold: float = Field(0.8, ge=0, le=1, description="label probability needed to train the head")
    # From one example per class the votes are less sure: 0.9 here lifted the demo pool's labels on 12 draws of 12
    # (bench/labeler.py --shots 1: 0.7362 -> 0.7645), where at 5 shots it gave draws 0 and 1 up to 1.6 points less.
    # bench/labels_needed.py --shots 1, seeds 0 / 1 / 2: int8 students +1.37 / -0.31 / +0.62 points (README).
    # 2 examples per class were not measured: 3 is the cut between the 1 and the 5 measured; nor were answers on
    # top of 1 or 2 examples, so once a person has answered self_training_threshold applies.
    few_shot_threshold: float | None = Field(
        0.9, ge=0, le=1, description="the head's threshold before anyone has answered, where the examples number "
        "fewer than 3 per named class; None: self_training_threshold however few")
    # 2 fits the head again on its own output. A scratch script on the demo's pool (12 draws of 5 examples): label
    # accuracy 0.8090 -> 0.8139, every named class's recall up (shirt 0.23 -> 0.30), "other" 0.93 -> 0.90; 1 shot
    # 0.739 -> 0.753, 20 shots 0.848 -> 0.847. bench/labels_needed.py (README): the 5-shot students' mean F1 up on
    # three seeds of three, but fitted twice after 200 answers too the students lost up to 2.1 points. Twice before
    # answers only (the default): 5-shot students 0.922x / 0.864x / 0.907x of the fully-labeled one (once: 0.931x /
    # 0.860x / 0.895x), mean F1 +1.6 / +3.5 / +6.6 points; after 50 / 200 / 500 answers within a student's seed.
    self_training_rounds: int = Field(2, ge=1, le=5, description="how many times the self-training head is fitted "
                                      "before anyone has answered, each time on the labels of the one before")
    answered_self_training_rounds: int = Field(
        1, ge=1, le=5, description="how many times the self-training head is fitted once a person has answered")
    balanced_head: bool = Field(True, description="weigh the self-training head's classes equally")
    # bench/labels_needed.py, seeds 0 / 1 / 2 (README, "Asking a person only what matters"): with 0 (each class
    # weighed by its share) the head and the spreading after it gave a class the answers show to be a minority
    # (the demo's shirts, 10 %, among "other", 60 %) ever less: 83 shirt labels of 6,000 on seed 2 after 200 answers
    answer_balance: float = Field(
        0.5, ge=0, le=1, description="once a person has answered, the self-training head weighs each class by "
        "(1 / its share) ** this: 0 as the labels come, 1 all classes equal, 0.5 between (square-root balancing)")
    pca_dims: int = Field(128, ge=8, description="embedding dimensions kept for clustering and the head")
    calibrate: bool = Field(True, description="temperature-scale the label confidence on the labeled examples")
    dedup_threshold: float | None = Field(
        0.985, gt=0, le=1, description="cosine similarity at which two pool images count as near-duplicates "
        "(one per group trains); None keeps them all")
    balance: float | None = Field(
        None, ge=1, description="cap every class at this many times the smallest class's count; None: no cap")
    max_samples: int | None = Field(
        None, ge=10, description="train on at most this many pool images, chosen for diversity (k-center)")
    hard_negatives: int = Field(
        200, ge=0, description="per named class, the 'other' images nearest to it, kept first when 'other' is capped")
    spread_neighbours: int = Field(
        10, ge=0, description="once a person has answered, label spreading over each image's nearest pool "
        "neighbours in the teacher's space (0: off)")
    # Without answers spreading only smooths the head's own guesses: on the demo it took the student's shirt recall
    # from 11.2 % to 6.7 % for +0.7 point of accuracy (README, "Asking a person only what matters")
    spread_without_answers: bool = Field(False, description="spread the labels before anyone has answered too")
    spread_alpha: float = Field(
        0.9, ge=0, lt=1, description="how far a label follows its neighbours' rather than its own (label spreading)")
    # tried against spreading's shirt loss; bench/labels_needed.py seeds 0 and 1 with it (and spreading without
    # answers) on: the labels after 200 answers 0.8952 / 0.8898 against 0.9066 / 0.9043 without it (README)
    spread_keep_counts: bool = Field(
        False, description="after spreading, each class keeps as many images as the head gave it (match_counts)")

    def head_threshold(self, examples_per_class: float, answered: bool) -> float:
        """The label probability an image needs to train the self-training head."""
        few = self.few_shot_threshold is not None and examples_per_class < 3 and not answered
        return self.few_shot_threshold if few else self.self_training_threshold

    def head_rounds(self, answered: bool) -> int:
        """How many times the self-training head is fitted, before or after a person has answered."""
        return self.answered_self_training_rounds if answered else self.self_training_rounds

    def spreads(self, answered: bool) -> bool:
        """Whether labels are spread over the k-NN graph: once a person has answered, or always when asked to."""
        return bool(self.spread_neighbours) and (answered or self.spread_without_answers)


@dataclass
class LabelResult:
    probs: np.ndarray  # (N, K) label distribution; K = classes (+ other, last)
    few_shot: np.ndarray  # (N, K) clustering votes
    zero_shot: np.ndarray  # (N, K) zero-shot distribution
    projection: Projection  # maps teacher embeddings into the space labels were made in
    example_probs: np.ndarray | None = None  # (E, K) the self-training head on the examples (None: no head)

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Projection:
    """Center on the pool mean, weigh the feature groups, project on the pool's top principal
    axes, L2-normalize.

    Centering matters: ImageNet features of out-of-domain images share a large common
    component that swamps cosine similarity (SimpleShot, Wang et al. 2019). A teacher whose
    embedding joins several layers' features (``Teacher.embedding_groups``) gets each group
    scaled to the same total variance over the pool, so no layer's width or scale decides the
    axes. The same projection maps later queries into the run's vector index.
    """

    mean: np.ndarray  # (1, D)
    basis: np.ndarray  # (D, d)
    scale: np.ndarray | None = None  # (D,) per-feature weights; None: all 1

    @classmethod
    def fit(cls, pool: np.ndarray, dims: int, seed: int, groups: tuple[int, ...] | None = None) -> Projection:
        pool = np.asarray(pool, np.float32)
        return cls.from_sample(pool.mean(0, keepdims=True), pool[sample_rows(len(pool), seed)], dims, groups)

    @classmethod
    def from_sample(cls, mean: np.ndarray, sample: np.ndarray, dims: int,
                    groups: tuple[int, ...] | None = None) -> Projection:
        """From the pool mean and a sample of rows (``sample_rows``): the pool itself need not be in memory."""
        sample = np.asarray(sample, np.float32)
        return cls.from_chunks(mean, lambda: (sample[i : i + SAMPLE_CHUNK] for i in range(0, len(sample), SAMPLE_CHUNK)),
                               dims, groups)

    @classmethod
    def from_chunks(cls, mean: np.ndarray, chunks, dims: int, groups: tuple[int, ...] | None = None) -> Projection:
        """``from_sample`` with the sample read a block at a time (``chunks()`` yields its rows in blocks).
        Memory: one block and the D x D covariance."""
        mean = np.asarray(mean, np.float32)
        width = mean.shape[1]
        # principal axes from the D x D covariance: 0.5 s for 20k x 1280, where an SVD of the samples takes minutes
        covariance = np.zeros((width, width))
        for block in chunks():
            block = np.asarray(block, np.float32) - mean
            covariance += block.T @ block
        scale = None
        if groups is not None and len(groups) > 1:
            if sum(groups) != width:
                raise ValueError(f"feature groups {groups} do not add up to the embedding width {width}")
            bounds = np.cumsum((0, *groups))
            variance = np.diag(covariance)  # a group's total variance: its part of the diagonal
            scale = np.concatenate([np.full(b - a, 1 / max(float(np.sqrt(variance[a:b].sum())), 1e-12))
                                    for a, b in pairwise(bounds)])
            covariance *= np.outer(scale, scale)  # the covariance of the scaled features
            scale = scale.astype(np.float32)
        _, vectors = np.linalg.eigh(covariance)
        return cls(mean=mean, basis=np.ascontiguousarray(vectors[:, ::-1][:, : min(dims, width)], dtype=np.float32),
                   scale=scale)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32) - self.mean
        if self.scale is not None:
            x = x * self.scale
        return _normalize(x @ self.basis).astype(np.float32)

    def save(self, path) -> None:
        from knowledge.io import write_npz_atomic

        extra = {} if self.scale is None else {"scale": self.scale}
        write_npz_atomic(path, mean=self.mean, basis=self.basis, **extra)

    @classmethod
    def load(cls, path) -> Projection:
        with np.load(path) as z:
            return cls(mean=z["mean"], basis=z["basis"], scale=z["scale"] if "scale" in z.files else None)


PROJECTION_SAMPLE = 20000  # rows the principal axes are estimated from
SAMPLE_CHUNK = 4096  # rows of the sample in memory at a time


def sample_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(n, min(n, PROJECTION_SAMPLE), replace=False)


ZERO_SHOT_KNOWN = 0.01  # below this median score on its own examples, the teacher hardly knows a class by name


def zero_shot_on_examples(scores: np.ndarray, labels: np.ndarray) -> dict | None:
    """How the class descriptions score the user's examples: the examples of named classes whose own
    class scores strictly highest, against chance, and the median score of the right class.

    Tells a user whether the teacher knows their classes by name (a CLIP teacher on photos) or the
    labels rest on the examples alone (ImageNet concepts on 28-px clothes: median below 0.0001).
    None when no example is of a named class.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, int)
    named = scores.shape[1]
    rows = labels < named
    if not named or not rows.any():
        return None
    s, y = scores[rows], labels[rows]
    own = s[np.arange(len(y)), y]
    rest = np.where(np.eye(named, dtype=bool)[y], 0.0, s)  # scores are >= 0: a zero score is never "right"
    return {"right": int((own > rest.max(1)).sum()), "of": len(y), "chance": round(len(y) / named, 2),
            "median_score": float(np.median(own))}


def zero_shot_distribution(scores: np.ndarray, other: bool) -> np.ndarray:
    """(N, C) class scores -> (N, K) distribution; 'other' takes the mass no class claims."""
    scores = np.clip(scores, 0, None)
    if other:
        rest = np.clip(1.0 - scores.sum(1, keepdims=True), 0, None)
        scores = np.concatenate([scores, rest], 1)
    return scores / np.maximum(scores.sum(1, keepdims=True), 1e-12)


CLUSTER_MULTIPLES = (2, 3, 4, 6, 8, 12)  # cluster counts, in multiples of #labels, from coarse to fine


def cluster_multiples_for(examples_per_class: float) -> list[int]:
    """Cluster counts the examples can cover: the finer ones only with more examples.

    A cluster no example reaches is "other", so with few examples per class fine clusters split a
    class into parts the examples cannot all reach; coarse clusterings cost nothing at many
    examples. The finest count is 6 x #labels at 5 examples per class and grows with
    sqrt(examples / 5), never below 3. Against fixed multiples 3-12 (bench/labels_needed.py, int8
    student): 1 shot 0.633 -> 0.670; 5 and 20 shots moved within a seed's noise. As many clusters
    as labels (multiple 1) helped on Fashion-MNIST but broke simple pools whose coarsest grouping
    is not the classes (colour, background): label accuracy 0.81 against 0.99 on the tests' shapes.
    """
    finest = max(3.0, 6.0 * np.sqrt(max(examples_per_class, 1.0) / 5.0))
    return [m for m in CLUSTER_MULTIPLES if m <= finest]


def cluster_votes(
    emb: np.ndarray,
    example_emb: np.ndarray,
    example_labels: np.ndarray,
    zero_shot: np.ndarray,
    num_labels: int,
    other: bool,
    config: LabelConfig,
    seed: int,
) -> np.ndarray:
    """Fraction of clusterings that put each sample in a cluster of each label."""
    import faiss

    n, d = emb.shape
    with_examples = np.unique(example_labels)
    votes = np.zeros((n, num_labels), np.float32)
    rows = np.arange(n)
    named_counts = np.bincount(example_labels[example_labels < num_labels - int(other)], minlength=num_labels)
    per_class = float(np.median(named_counts[named_counts > 0])) if named_counts.any() else 1.0
    for multiple in config.cluster_multiples or cluster_multiples_for(per_class):
        # at least ~20 samples per cluster on average, or small pools shatter into example-less clusters
        k = max(2, min(multiple * num_labels, max(num_labels + 1, n // 20), n))
        for r in range(config.restarts):
            km = faiss.Kmeans(d, k, niter=20, seed=(seed * 1000 + r + 1) % 2**31, spherical=True, verbose=False,
                              min_points_per_centroid=1)  # small pools are fine; no warning per clustering
            km.train(emb)
            _, assign = km.index.search(emb, 1)
            assign = assign[:, 0]
            cluster_label = _label_clusters(km, assign, example_emb, example_labels, zero_shot, k, num_labels, other,
                                            with_examples)
            votes[rows, cluster_label[assign]] += 1
    return votes / votes.sum(1, keepdims=True)


def _label_clusters(km, assign, example_emb, example_labels, zero_shot, k, num_labels, other, with_examples):
    # a cluster takes the label most of its examples carry; "other" examples (a person's review answers) count too
    named = num_labels - int(other)
    counts = np.zeros((k, num_labels), np.float32)
    if len(example_emb):
        _, ex_cluster = km.index.search(example_emb, 1)
        np.add.at(counts, (ex_cluster[:, 0], example_labels), 1)
    # a class without examples claims the clusters it scores highest on, relative to the other clusters:
    # on out-of-domain pools the teacher's absolute scores are tiny, but their ranking still holds
    zs_mean = np.zeros((k, zero_shot.shape[1]), np.float32)
    np.add.at(zs_mean, assign, zero_shot)
    zs_mean /= np.maximum(np.bincount(assign, minlength=k)[:, None], 1)
    for c in range(named):
        if c not in with_examples:
            claims = (zs_mean[:, c] >= ZERO_SHOT_CLAIM * zs_mean[:, c].max()) & (counts.sum(1) == 0)
            counts[claims, c] += 1
    labels = np.where(counts.sum(1) > 0, counts.argmax(1), named if other else -1)
    if other and len(example_emb):
        # a cluster is a named class only if that class's examples are over-represented in it: with many
        # examples, a stray one would otherwise claim a big "other" cluster (20 shots per class on the demo:
        # label accuracy 0.72 without this rule, 0.82 with it; 1 and 5 shots unchanged)
        share = np.bincount(assign, minlength=k) / len(assign)
        per_class = np.bincount(example_labels, minlength=num_labels)
        for c in np.where(labels < named)[0]:
            cls = labels[c]
            if per_class[cls] and counts[c, cls] / per_class[cls] < ENRICHMENT * share[c]:
                labels[c] = named
    if not other:  # every cluster must be some class: nearest labeled centroid
        labeled = np.where(labels >= 0)[0]
        if len(labeled) == 0:
            raise NanofactoryError("No cluster could be tied to any class; add example images per class.")
        for j in np.where(labels < 0)[0]:
            labels[j] = labels[labeled[np.argmax(km.centroids[labeled] @ km.centroids[j])]]
    return labels


VOTE_FLOOR = 1e-3  # the vote a label no clustering gave, for ``vote_prior``
AUTO_LABEL_MASS = 30.0  # once a person has answered, all auto-labels together weigh as much as 30 answers
MIN_CLASS_ROWS = 100  # a class with examples and fewer confident labels than this is seeded from its examples
EXAMPLE_NEIGHBOURS = 20  # pool images nearest each example that seed such a class


def confident_rows(emb: np.ndarray, probs: np.ndarray, threshold: float, examples: np.ndarray | None = None,
                   example_labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the rows confident enough to fit the self-training head on.

    Every class a person gave examples of stays in: when the votes leave it fewer than
    ``MIN_CLASS_ROWS`` confident rows, the pool images nearest its examples (``EXAMPLE_NEIGHBOURS``
    each) join with that class. Without this a class whose examples scatter over clusters the
    others dominate dropped out of the head, and with it out of every label: on the demo's task,
    one draw of 5 examples per class left no confident shirt at all (bench/labels_needed.py --seed 1).
    """
    labels, keep = probs.argmax(1), probs.max(1) >= threshold
    if examples is None or example_labels is None or not len(examples):
        return labels, keep
    short = [c for c in np.unique(example_labels) if (labels[keep] == c).sum() < MIN_CLASS_ROWS]
    if short:
        import faiss

        index = faiss.IndexFlatIP(emb.shape[1])
        index.add(np.ascontiguousarray(emb, dtype=np.float32))
        labels, keep = labels.copy(), keep.copy()
        for c in short:
            _, near = index.search(np.ascontiguousarray(examples[example_labels == c], dtype=np.float32),
                                   min(EXAMPLE_NEIGHBOURS, len(emb)))
            near = np.unique(near[near >= 0])
            labels[near], keep[near] = c, True
        log.info("self-training: classes %s had too few confident labels; seeded from their examples' neighbours",
                 short)
    return labels, keep


def self_train(emb: np.ndarray, probs: np.ndarray, threshold: float, seed: int, examples: np.ndarray | None = None,
               example_labels: np.ndarray | None = None, anchors: np.ndarray | None = None,
               anchor_labels: np.ndarray | None = None, balanced: bool = True, answer_balance: float = 0.0):
    """Fit a linear head on confident labels and on ``anchors`` (a person's labels); its label
    distribution for every sample and for the ``examples``, which it does not fit on (their
    classes stay in the head: ``confident_rows``).

    Without anchors the head is fitted on the confident auto-labels (classes weighed equally when
    ``balanced``). With anchors the person's labels lead: each counts 1 and the confident
    auto-labels together count ``AUTO_LABEL_MASS``, a prior that matters with a handful of answers
    and fades as answers grow; each class's rows are then weighed by (1 / its share of that weight)
    ** ``answer_balance`` (Kang et al. 2020's square-root sampling at 0.5): classes that overlap
    others in the teacher's space otherwise lose their edges to the largest.
    The auto-labels' errors are systematic (whole clusters), so letting them outweigh the answers,
    as a fixed weight per answer did, kept those errors: on the demo with 200 review answers,
    label accuracy 0.79 with 50 per answer against 0.85 this way (bench/labels_needed.py).
    """
    from sklearn.linear_model import LogisticRegression

    labels, keep = confident_rows(emb, probs, threshold, examples, example_labels)
    present = np.unique(labels[keep])
    if len(present) < 2 or keep.sum() < 10 * len(present):
        log.info("self-training skipped: too few confident labels")
        return probs, None
    if anchors is not None and len(anchors):
        # the auto-labels the answers are weighed against: the head's own, which beat the votes it fits
        first, _ = self_train(emb, probs, threshold, seed, examples, example_labels, balanced=balanced)
        if (first.max(1) >= threshold).sum() >= 10 * len(present):
            labels, keep = first.argmax(1), first.max(1) >= threshold
        x, y = np.concatenate([emb[keep], anchors]), np.concatenate([labels[keep], anchor_labels])
        weight = np.concatenate([np.full(int(keep.sum()), AUTO_LABEL_MASS / keep.sum()), np.ones(len(anchors))])
        if answer_balance:
            share = np.bincount(y, weights=weight) / weight.sum()  # every class in y has some
            weight = weight * (np.count_nonzero(share) * share[y]) ** -answer_balance
        head = LogisticRegression(max_iter=500, C=10.0, random_state=seed)
    else:
        x, y, weight = emb[keep], labels[keep], np.ones(int(keep.sum()))
        head = LogisticRegression(max_iter=300, class_weight="balanced" if balanced else None, random_state=seed)
    head.fit(x, y, sample_weight=weight)
    out = np.zeros_like(probs)
    out[:, head.classes_] = head.predict_proba(emb)
    example_out = None
    if examples is not None and len(examples):
        example_out = np.zeros((len(examples), probs.shape[1]), probs.dtype)
        example_out[:, head.classes_] = head.predict_proba(examples)
    return out, example_out


def fit_temperature(probs: np.ndarray, labels: np.ndarray, only_soften: bool = False) -> float:
    """The temperature T that minimises the NLL of ``softmax(log p / T)`` on labeled samples (Guo et al. 2017).

    A one-parameter fit, so a few dozen labels suffice; T > 1 softens over-confident labels.
    With fewer than 10 labeled samples there is nothing to fit and T = 1. ``only_soften``
    keeps T >= 1: for labeled samples easier than the pool, such as the examples the labels
    were seeded from, which can show that labels are over-confident but never that they
    are under-confident (on the demo they asked for T = 0.25, the grid's bound, and the
    calibration error against the hidden labels rose from 13.7 % to 20.6 %).
    """
    if len(labels) < 10:
        return 1.0
    logp = np.log(np.maximum(np.asarray(probs, np.float64), 1e-9))
    best, best_nll = 1.0, np.inf
    for t in np.geomspace(1.0 if only_soften else 0.25, 8.0, 61):
        z = logp / t
        z -= z.max(1, keepdims=True)
        nll = -(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(1))).mean()
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def apply_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    if t == 1.0:
        return probs
    z = np.log(np.maximum(np.asarray(probs, np.float64), 1e-9)) / t
    z = np.exp(z - z.max(1, keepdims=True))
    return (z / z.sum(1, keepdims=True)).astype(np.float32)


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """|confidence - accuracy| averaged over equal-width confidence bins, weighted by bin size."""
    conf, correct = probs.max(1), probs.argmax(1) == truth
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)


def auto_label(
    embeddings: np.ndarray,
    zero_shot_scores: np.ndarray,
    example_embeddings: np.ndarray,
    example_labels: np.ndarray,
    other: bool,
    config: LabelConfig,
    seed: int = 0,
    groups: tuple[int, ...] | None = None,
) -> LabelResult:
    """Label every row of ``embeddings`` (``groups``: the teacher's ``embedding_groups``).

    ``zero_shot_scores`` is (N, C) for the C named classes; ``example_labels`` index the
    K = C (+1 when ``other``) labels: the user's examples name classes, a person's review
    answers may also say "other". The result has K columns. ``example_probs`` is the
    self-training head's view of the examples, which it did not train on: the held-out
    evidence that temperature calibration is fitted on.
    """
    projection = Projection.fit(embeddings, config.pca_dims, seed, groups)
    return label_projected(projection.apply(embeddings), projection,
                           projection.apply(example_embeddings.reshape(-1, embeddings.shape[1])),
                           zero_shot_scores, example_labels, other, config, seed)


def weigh_votes(votes: np.ndarray, zs: np.ndarray, named: int, other: bool, config: LabelConfig) -> np.ndarray:
    """The clustering votes weighed against "other" and tilted by the zero-shot, as a distribution.

    Classes decided by zero-shot alone already used it in clustering. With ``vote_prior`` the
    base rate of "other" is the prior and the zero-shot tilts by its evidence relative to the
    pool only; without it the tilt (votes x zero-shot^weight) is both.
    """
    if not (other and config.vote_prior is not None):
        probs = votes * np.power(np.maximum(zs, 1e-6), config.zero_shot_weight)
        return probs / probs.sum(1, keepdims=True)
    logp = np.log(votes + VOTE_FLOOR)
    logp[:, :named] -= config.vote_prior
    if config.zero_shot_weight:
        logz = np.log(np.maximum(zs, 1e-6))
        logp += config.zero_shot_weight * (logz - logz.mean(0, keepdims=True))
    probs = np.exp(logp - logp.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True)


def label_projected(
    emb: np.ndarray,
    projection: Projection,
    ex: np.ndarray,
    zero_shot_scores: np.ndarray,
    example_labels: np.ndarray,
    other: bool,
    config: LabelConfig,
    seed: int = 0,
    anchors: np.ndarray | None = None,
    anchor_labels: np.ndarray | None = None,
    anchor_rows: np.ndarray | None = None,
    graph: NeighbourGraph | None = None,
) -> LabelResult:
    """``auto_label`` on embeddings already projected (``projection.apply``): what a pipeline that
    streams the pool's embeddings from disk calls. ``anchors`` (projected) with ``anchor_labels``
    are labels a person gave in review: they steer the self-training head (``self_train``); their
    pool rows (``anchor_rows``; ``anchors`` defaults to those rows of ``emb``) keep their label in
    label spreading. ``graph``: the pool's ``neighbour_graph``, made here when spreading is on
    and none is given."""
    if anchors is None and anchor_rows is not None:
        anchors = emb[anchor_rows]
    named = zero_shot_scores.shape[1]
    num_labels = named + int(other)
    zs = zero_shot_distribution(zero_shot_scores, other)
    votes = cluster_votes(emb, ex, np.asarray(example_labels, int), zs, num_labels, other, config, seed)
    probs = weigh_votes(votes, zs, named, other, config)
    answered = anchor_rows is not None and len(anchor_rows) > 0
    example_probs = None
    if config.self_training:
        steered = anchors is not None and len(anchors) > 0  # a person's labels, pool rows or not
        threshold = config.head_threshold(int((np.asarray(example_labels) < named).sum()) / max(named, 1), steered)
        for _ in range(config.head_rounds(steered)):
            probs, seen = self_train(emb, probs, threshold, seed, ex,
                                     np.asarray(example_labels, int), anchors=anchors, anchor_labels=anchor_labels,
                                     balanced=config.balanced_head, answer_balance=config.answer_balance)
            example_probs = seen if seen is not None else example_probs
    if config.spreads(answered):
        graph = graph or neighbour_graph(emb, config.spread_neighbours)
        if graph is not None:
            fixed = None
            if answered:
                probs = probs.copy()
                probs[anchor_rows] = np.eye(num_labels, dtype=probs.dtype)[np.asarray(anchor_labels, int)]
                fixed = np.asarray(anchor_rows, np.int64)
            probs = spread_labels(probs, graph, config.spread_alpha, fixed, keep_counts=config.spread_keep_counts)
    return LabelResult(probs=probs.astype(np.float32), few_shot=votes, zero_shot=zs, projection=projection,
                       example_probs=example_probs)
