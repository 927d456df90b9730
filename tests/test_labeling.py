"""Auto-labeling (knowledge.labeling) on synthetic, well-separated Gaussian blobs in 64-d.

Blobs stand in for teacher embeddings: each blob is one kind of image. A blob with
examples is a named class; a blob with neither examples nor zero-shot support is "other".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge.labeling import (
    LabelConfig,
    Projection,
    auto_label,
    weigh_votes,
    zero_shot_distribution,
    zero_shot_on_examples,
)

DIM = 64
PER_BLOB = 60
SHOTS = 5
CONFIG = LabelConfig(pca_dims=16, cluster_multiples=[2, 3, 4])


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One BLAS / OpenMP thread for numpy and FAISS: on a shared 2-core machine, spinning worker
    threads make a 360-point k-means ~100x slower (2.5 s against 0.02 s)."""
    import faiss  # noqa: F401  (loaded first: threadpoolctl limits only libraries already loaded)
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def make_blobs(num_blobs: int, seed: int, per_blob: int = PER_BLOB,
               noise: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """(centers, pool embeddings, blob of each pool row, rng for drawing examples)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_blobs, DIM))
    centers *= 3.0 / np.linalg.norm(centers, axis=1, keepdims=True)
    pool = np.concatenate([c + noise * rng.normal(size=(per_blob, DIM)) for c in centers]).astype(np.float32)
    return centers, pool, np.repeat(np.arange(num_blobs), per_blob), rng


def examples(centers: np.ndarray, blobs: list[int], rng, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """SHOTS fresh draws (not pool rows) from each of ``blobs``; labels are positions in ``blobs``."""
    emb = np.concatenate([centers[b] + noise * rng.normal(size=(SHOTS, DIM)) for b in blobs]).astype(np.float32)
    return emb, np.repeat(np.arange(len(blobs)), SHOTS)


def uninformative_zero_shot(n: int, classes: int, other: bool) -> np.ndarray:
    """Equal scores for every class (and equal mass left for "other"): zero-shot decides nothing."""
    return np.full((n, classes), 1.0 / (classes + int(other)), np.float32)


@pytest.fixture(scope="module")
def open_set():
    """6 blobs; blobs 0-2 are named classes with 5 examples each, blobs 3-5 are "other"."""
    centers, pool, blob, rng = make_blobs(6, seed=0)
    ex, ex_labels = examples(centers, [0, 1, 2], rng)
    truth = np.where(blob < 3, blob, 3)
    return pool, ex, ex_labels, truth


def test_few_shot_with_other(open_set):
    pool, ex, ex_labels, truth = open_set
    result = auto_label(pool, uninformative_zero_shot(len(pool), 3, True), ex, ex_labels, True, CONFIG, seed=0)
    assert result.probs.shape == (len(pool), 4)
    assert result.few_shot.shape == result.zero_shot.shape == (len(pool), 4)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-5)
    accuracy = (result.labels == truth).mean()
    assert accuracy >= 0.9, accuracy
    # every kind of sample is found, "other" included
    for label in range(4):
        assert (result.labels[truth == label] == label).mean() >= 0.9, label
    assert ((result.confidence >= 0) & (result.confidence <= 1)).all()


def test_few_shot_with_other_without_self_training(open_set):
    pool, ex, ex_labels, truth = open_set
    config = CONFIG.model_copy(update={"self_training": False})
    result = auto_label(pool, uninformative_zero_shot(len(pool), 3, True), ex, ex_labels, True, config, seed=0)
    assert (result.labels == truth).mean() >= 0.9
    # without the head, the label is the (tilted) vote: a uniform zero-shot leaves the vote's argmax
    np.testing.assert_array_equal(result.labels, result.few_shot.argmax(1))


def test_self_training_rounds_fit_the_head_again_on_its_own_labels(open_set):
    """Before anyone has answered the head is fitted twice (`self_training_rounds`), the second time on
    the first head's labels; once a person has answered, once (`answered_self_training_rounds`)."""
    from knowledge.labeling import label_projected, self_train

    pool, ex, ex_labels, truth = open_set
    zero_shot = uninformative_zero_shot(len(pool), 3, True)
    assert CONFIG.head_rounds(answered=False) == 2 and CONFIG.head_rounds(answered=True) == 1
    once_config = CONFIG.model_copy(update={"self_training_rounds": 1})
    once = auto_label(pool, zero_shot, ex, ex_labels, True, once_config, seed=0)
    twice = auto_label(pool, zero_shot, ex, ex_labels, True, CONFIG, seed=0)
    assert not np.allclose(once.probs, twice.probs) and twice.example_probs is not None
    emb, projected_ex = once.projection.apply(pool), once.projection.apply(ex)
    again, _ = self_train(emb, once.probs, CONFIG.self_training_threshold, 0, projected_ex, ex_labels)
    np.testing.assert_allclose(twice.probs, again, atol=1e-5)
    assert (twice.labels == truth).mean() >= 0.9
    # with answers the default fits the head once: the same labels as a config asking for one round
    rows = np.array([0, 70, 150])
    answered = [label_projected(emb, once.projection, projected_ex, zero_shot, ex_labels, True, config, seed=0,
                                anchor_rows=rows, anchor_labels=truth[rows]).probs for config in (CONFIG, once_config)]
    np.testing.assert_array_equal(*answered)


def test_from_one_or_two_examples_a_class_the_head_trains_only_on_surer_labels(open_set):
    """Fewer than 3 examples per named class and no answers yet: the head's threshold is
    `few_shot_threshold` (0.9), not `self_training_threshold` (0.8)."""
    pool, ex, ex_labels, truth = open_set
    zero_shot = uninformative_zero_shot(len(pool), 3, True)
    assert CONFIG.head_threshold(1, False) == 0.9 and CONFIG.head_threshold(2.5, False) == 0.9
    assert CONFIG.head_threshold(3, False) == 0.8 and CONFIG.head_threshold(1, answered=True) == 0.8
    strict = CONFIG.model_copy(update={"self_training_threshold": 0.9, "few_shot_threshold": None})
    label = lambda config, keep: auto_label(pool, zero_shot, ex[keep], ex_labels[keep], True, config, seed=0).probs
    one = np.flatnonzero(np.r_[True, np.diff(ex_labels) != 0])  # the first example of each class
    np.testing.assert_array_equal(label(CONFIG, one), label(strict, one))
    assert not np.array_equal(label(CONFIG, one), label(CONFIG.model_copy(update={"few_shot_threshold": None}), one))
    every = np.arange(len(ex_labels))  # 5 a class: the usual threshold
    np.testing.assert_array_equal(label(CONFIG, every), label(CONFIG.model_copy(update={"few_shot_threshold": None}), every))


def test_closed_set_every_blob_has_examples():
    centers, pool, blob, rng = make_blobs(6, seed=1)
    ex, ex_labels = examples(centers, list(range(6)), rng)
    result = auto_label(pool, uninformative_zero_shot(len(pool), 6, False), ex, ex_labels, False, CONFIG, seed=0)
    assert result.probs.shape == (len(pool), 6)
    assert (result.labels == blob).mean() >= 0.9
    assert ((result.confidence >= 0) & (result.confidence <= 1 + 1e-6)).all()


def test_closed_set_blob_without_examples_joins_a_named_class():
    """With other=False no sample may be left unlabeled, even from a blob nobody gave examples for."""
    centers, pool, blob, rng = make_blobs(4, seed=2)
    ex, ex_labels = examples(centers, [0, 1, 2], rng)
    result = auto_label(pool, uninformative_zero_shot(len(pool), 3, False), ex, ex_labels, False, CONFIG, seed=0)
    assert result.probs.shape == (len(pool), 3)
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    seen = blob < 3
    assert (result.labels[seen] == blob[seen]).mean() >= 0.9


def test_zero_shot_only_class_gets_labeled():
    """Classes 0 and 1 have examples; class 2 has none, but zero-shot points at blob 2; blob 3 is other."""
    centers, pool, blob, rng = make_blobs(4, seed=3)
    ex, ex_labels = examples(centers, [0, 1], rng)
    scores = np.full((len(pool), 3), 0.1, np.float32)  # 0.7 unclaimed -> "other" leads by default
    scores[blob == 2] = [0.05, 0.05, 0.8]
    scores += rng.uniform(0, 0.02, scores.shape).astype(np.float32)  # not perfectly flat
    result = auto_label(pool, scores, ex, ex_labels, True, CONFIG, seed=0)
    truth = blob.copy()  # blob 3 -> label 3 = "other" (last column of 3 named + other)
    assert result.probs.shape == (len(pool), 4)
    assert (result.labels[blob == 2] == 2).mean() >= 0.9
    assert (result.labels[blob == 3] == 3).mean() >= 0.9
    assert (result.labels == truth).mean() >= 0.9


def test_same_seed_same_probs(open_set):
    pool, ex, ex_labels, _ = open_set
    zs = uninformative_zero_shot(len(pool), 3, True)
    a = auto_label(pool, zs, ex, ex_labels, True, CONFIG, seed=7)
    b = auto_label(pool, zs, ex, ex_labels, True, CONFIG, seed=7)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.few_shot, b.few_shot)


def test_projection_round_trip(tmp_path: Path):
    _, pool, _, _ = make_blobs(6, seed=4)
    projection = Projection.fit(pool, dims=16, seed=0)
    assert projection.mean.shape == (1, DIM) and projection.basis.shape == (DIM, 16)
    out = projection.apply(pool)
    assert out.shape == (len(pool), 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # principal axes are orthonormal
    np.testing.assert_allclose(projection.basis.T @ projection.basis, np.eye(16), atol=1e-4)
    path = tmp_path / "projection.npz"
    projection.save(path)
    loaded = Projection.load(path)
    # the same numbers up to float rounding: BLAS may sum a 10-row product in another order than a 360-row one
    np.testing.assert_allclose(loaded.apply(pool[:10]), out[:10], atol=1e-6)


def test_projection_is_centered():
    """A shared offset (the common component of out-of-domain features) must not change the result."""
    _, pool, _, _ = make_blobs(3, seed=5)
    shifted = pool + 50.0
    a = Projection.fit(pool, 8, seed=0).apply(pool)
    b = Projection.fit(shifted, 8, seed=0).apply(shifted)
    np.testing.assert_allclose(np.abs(a * b).sum(1), 1.0, atol=1e-3)  # same directions up to axis sign


def test_projection_weighs_feature_groups_equally(tmp_path: Path):
    """A narrow-scaled group that holds the classes must not be drowned by a wide, loud one."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 2000)
    signal = 0.01 * (truth[:, None] * 2.0 - 1) + 0.001 * rng.normal(size=(2000, 4))  # classes, tiny scale
    noise = rng.normal(size=(2000, 60))  # no classes, 100x the scale
    pool = np.concatenate([signal, noise], 1).astype(np.float32)

    def separation(projection):
        top = projection.apply(pool)[:, 0]  # the first principal axis
        return abs(np.corrcoef(top, truth)[0, 1])

    assert separation(Projection.fit(pool, 4, seed=0)) < 0.2  # one group: the noise's axes win
    grouped = Projection.fit(pool, 4, seed=0, groups=(4, 60))
    assert separation(grouped) > 0.9
    grouped.save(tmp_path / "p.npz")
    np.testing.assert_array_equal(Projection.load(tmp_path / "p.npz").apply(pool[:5]), grouped.apply(pool[:5]))
    with pytest.raises(ValueError, match="do not add up"):
        Projection.fit(pool, 4, seed=0, groups=(4, 50))


def test_zero_shot_distribution():
    scores = np.array([[0.2, 0.3], [0.9, 0.6], [-0.1, 0.0]], np.float32)
    with_other = zero_shot_distribution(scores, other=True)
    np.testing.assert_allclose(with_other[0], [0.2, 0.3, 0.5], atol=1e-6)
    np.testing.assert_allclose(with_other[1], [0.6, 0.4, 0.0], atol=1e-6)  # over-claimed: no "other" mass
    np.testing.assert_allclose(with_other[2], [0.0, 0.0, 1.0], atol=1e-6)  # negatives clipped
    closed = zero_shot_distribution(scores[:2], other=False)
    np.testing.assert_allclose(closed, [[0.4, 0.6], [0.6, 0.4]], atol=1e-6)


PRIOR = CONFIG.model_copy(update={"vote_prior": 1.5, "zero_shot_weight": 0.0})


def test_vote_prior_makes_a_named_class_beat_other_by_a_margin():
    # one named class + other; rows: named by 90 %, 70 % and 50 % of the clusterings
    votes = np.array([[0.9, 0.1], [0.7, 0.3], [0.5, 0.5]], np.float32)
    flat = np.full((3, 2), 0.5, np.float32)
    assert weigh_votes(votes, flat, 1, True, PRIOR).argmax(1).tolist() == [0, 1, 1]  # 1.5 nats: ~4.5x the votes
    np.testing.assert_allclose(weigh_votes(votes, flat, 1, True, PRIOR).sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weigh_votes(votes, flat, 1, True, PRIOR)[1, 0], 0.701 / (0.701 + 0.301 * np.exp(1.5)),
                               rtol=1e-5)
    # no prior (the default): the (here untilted) vote's argmax, ties to the first label
    assert weigh_votes(votes, flat, 1, True, CONFIG).argmax(1).tolist() == [0, 0, 0]
    # a closed set has no "other" to weigh against
    assert weigh_votes(votes, flat, 2, False, PRIOR).argmax(1).tolist() == [0, 0, 0]


def test_zero_shot_tilts_only_by_its_evidence_relative_to_the_pool():
    votes = np.array([[0.8, 0.2]] * 4, np.float32)  # just below the prior's margin everywhere
    tilted = PRIOR.model_copy(update={"zero_shot_weight": 1.0})
    # scores that are low for every image (a teacher that knows nothing of the class) move nothing ...
    low = np.array([[1e-4, 1.0]] * 4, np.float32)
    np.testing.assert_allclose(weigh_votes(votes, low, 1, True, tilted), weigh_votes(votes, low, 1, True, PRIOR),
                               atol=1e-6)
    # ... an image the zero-shot singles out is tipped to the class, one it scores below the rest away from it
    informative = np.array([[0.1, 0.9], [0.1, 0.9], [0.9, 0.1], [0.01, 0.99]], np.float32)
    base = weigh_votes(votes, informative, 1, True, PRIOR)[:, 0]
    moved = weigh_votes(votes, informative, 1, True, tilted)[:, 0]
    assert moved[2] > 0.5 > base[2] and moved[3] < base[3]


def test_a_pool_mostly_of_named_classes_keeps_them():
    """5 named blobs of 200 and 1 of "other": the default labeler finds them; a constant vote prior, which labels
    the demo's pool (mostly "other") better, hands parts of named blobs to "other" here."""
    centers, pool, truth, rng = make_blobs(6, seed=0, per_blob=200, noise=0.6)  # blob 5 is "other", the last label
    ex, ex_labels = examples(centers, [0, 1, 2, 3, 4], rng, noise=0.6)
    zero_shot = uninformative_zero_shot(len(pool), 5, True)
    assert (auto_label(pool, zero_shot, ex, ex_labels, True, CONFIG, seed=0).labels == truth).mean() >= 0.95
    # (label spreading off: it repairs most of what the prior breaks here, which is not what this measures)
    prior = PRIOR.model_copy(update={"self_training_threshold": 0.5, "balanced_head": False, "spread_neighbours": 0})
    assert (auto_label(pool, zero_shot, ex, ex_labels, True, prior, seed=0).labels == truth).mean() < 0.9


def test_zero_shot_on_examples():
    labels = np.array([0, 0, 1, 1, 2])  # label 2 is "other": not scored
    known = np.array([[0.8, 0.1], [0.6, 0.3], [0.2, 0.7], [0.5, 0.4], [0.5, 0.5]])
    check = zero_shot_on_examples(known, labels)
    assert check == {"right": 3, "of": 4, "chance": 2.0, "median_score": pytest.approx(0.65)}
    # a teacher that knows none of the classes: all-zero rows are ties, never "right"
    unknown = np.zeros((5, 2))
    assert zero_shot_on_examples(unknown, labels)["right"] == 0
    assert zero_shot_on_examples(known, np.array([2, 2])) is None  # no example of a named class


# ---- label spreading ---------------------------------------------------------------------------


def test_neighbour_graph_leaves_out_each_row_itself_and_weighs_to_one():
    from knowledge.spreading import neighbour_graph

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[1] = emb[0]  # an exact duplicate: its neighbour, not itself
    graph = neighbour_graph(emb, 5)
    assert graph.rows.shape == graph.weights.shape == (50, 5)
    assert not (graph.rows == np.arange(50)[:, None]).any()
    assert graph.rows[0, 0] == 1 and graph.rows[1, 0] == 0
    np.testing.assert_allclose(graph.weights.sum(1), 1.0, atol=1e-6)
    exact = np.argsort(-(emb @ emb.T) + 10 * np.eye(50), axis=1)[:, :5]  # nearest by cosine, self excluded
    assert (np.sort(graph.rows[2:], 1) == np.sort(exact[2:], 1)).mean() > 0.95
    assert neighbour_graph(emb[:3], 10).rows.shape == (3, 2)  # k above the pool: every other row
    assert neighbour_graph(emb[:1], 10) is None


def test_spreading_repairs_stray_labels_and_keeps_a_persons():
    """Two tight clusters; a few rows of cluster 0 carry cluster 1's label. Their neighbours outvote
    them, and a person's answer stays what they said even where every neighbour disagrees."""
    from knowledge.spreading import neighbour_graph, spread_labels

    rng = np.random.default_rng(1)
    centers = np.eye(8, dtype=np.float32)[:2]
    emb = np.concatenate([c + 0.05 * rng.normal(size=(40, 8)) for c in centers]).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    truth = np.repeat([0, 1], 40)
    probs = np.eye(2, dtype=np.float32)[truth] * 0.8 + 0.1
    stray = np.array([3, 7, 11])
    probs[stray] = probs[stray][:, ::-1]
    graph = neighbour_graph(emb, 8)
    spread = spread_labels(probs, graph, 0.9)
    np.testing.assert_allclose(spread.sum(1), 1.0, atol=1e-6)
    assert (spread.argmax(1) == truth).all()
    probs[3] = [1.0, 0.0]  # a person's answer on a stray row: it holds, and the rest stays right
    answered = spread_labels(probs, graph, 0.9, fixed=np.array([3]))
    assert answered[3].tolist() == [1.0, 0.0] and (answered.argmax(1) == truth).all()
    probs[5] = [0.0, 1.0]  # an answer every neighbour contradicts still holds
    assert spread_labels(probs, graph, 0.9, fixed=np.array([3, 5]))[5].tolist() == [0.0, 1.0]


def test_spreading_keeps_each_class_count_and_moves_the_labels_to_the_right_images():
    """A minority class whose labels sit partly on the wrong images: spreading alone would shrink it
    into the majority around it; with the counts kept it keeps its size and its labels move onto
    its own cluster."""
    from knowledge.spreading import match_counts, neighbour_graph, spread_labels

    rng = np.random.default_rng(2)
    centers = np.eye(8, dtype=np.float32)[:2]
    emb = np.concatenate([centers[0] + 0.3 * rng.normal(size=(180, 8)), centers[1] + 0.3 * rng.normal(size=(20, 8))])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    truth = np.repeat([0, 1], [180, 20])
    labels = truth.copy()
    labels[[180, 181, 182, 183]] = 0  # four of the minority labeled majority ...
    labels[[0, 1, 2, 3]] = 1  # ... and four of the majority minority: the count is right, the images are not
    probs = np.eye(2, dtype=np.float32)[labels] * 0.6 + 0.2
    graph = neighbour_graph(emb, 8)
    kept = spread_labels(probs, graph, 0.9, keep_counts=True)
    assert np.bincount(kept.argmax(1), minlength=2)[1] == 20
    assert (kept.argmax(1) == truth).mean() > (labels == truth).mean()
    shrunk = spread_labels(probs, graph, 0.9)
    assert np.bincount(shrunk.argmax(1), minlength=2)[1] <= 20
    # match_counts alone: a prior shift that gives each class its target count of argmaxes
    flat = np.full((10, 2), 0.5, np.float32) + np.linspace(-0.1, 0.1, 10)[:, None] * [1, -1]
    assert np.bincount(match_counts(flat, np.array([3, 7])).argmax(1), minlength=2).tolist() == [3, 7]


def test_labels_spread_once_a_person_has_answered():
    """Without answers spreading would only smooth the head's own guesses: off unless asked for."""
    from knowledge.labeling import Projection, label_projected

    centers, pool, truth, rng = make_blobs(3, seed=4, per_blob=60, noise=0.6)
    ex, ex_labels = examples(centers, [0, 1], rng, noise=0.6)
    projection = Projection.fit(pool, 16, 0)
    emb, ex_p = projection.apply(pool), projection.apply(ex)
    zs = uninformative_zero_shot(len(pool), 2, True)
    label = lambda config, **kw: label_projected(emb, projection, ex_p, zs, ex_labels, True, config, **kw).probs
    off = CONFIG.model_copy(update={"spread_neighbours": 0})
    # the one rule the labeler and the manifest's provenance both read
    assert CONFIG.spreads(answered=True) and not CONFIG.spreads(answered=False) and not off.spreads(answered=True)
    assert CONFIG.model_copy(update={"spread_without_answers": True}).spreads(answered=False)
    np.testing.assert_array_equal(label(CONFIG), label(off))
    assert not np.array_equal(label(CONFIG.model_copy(update={"spread_without_answers": True})), label(off))
    rows = np.array([0, 70, 150])
    answered = label(CONFIG, anchor_rows=rows, anchor_labels=truth[rows])
    assert not np.array_equal(answered, label(off, anchor_rows=rows, anchor_labels=truth[rows]))
    assert (answered[rows].argmax(1) == truth[rows]).all()


def test_answer_balance_keeps_a_minority_class_the_answers_show():
    """A class of 10 % overlapping a class of 90 %: once a person has answered, the head weighed by the
    classes' shares gives the minority fewer images than it has; square-root balancing gives it more
    of its own (recall up), full balancing more still. Without answers the setting changes nothing."""
    from knowledge.labeling import self_train

    rng = np.random.default_rng(5)
    emb = np.concatenate([rng.normal(size=(900, 8)), rng.normal(size=(100, 8)) + np.r_[1.5, np.zeros(7)]])
    emb = emb.astype(np.float32)
    truth = np.repeat([1, 0], [900, 100])
    probs = np.eye(2, dtype=np.float32)[truth] * 0.9 + 0.05
    rows = rng.choice(len(emb), 60, replace=False)
    counts, recalls = [], []
    for balance in (0.0, 0.5, 1.0):
        out, _ = self_train(emb, probs, 0.8, 0, anchors=emb[rows], anchor_labels=truth[rows], answer_balance=balance)
        counts.append(int((out.argmax(1) == 0).sum()))
        recalls.append(float((out.argmax(1)[truth == 0] == 0).mean()))
    assert counts[0] < 100 < counts[1] < counts[2]
    assert recalls[0] < recalls[1] < recalls[2]
    unanswered = [self_train(emb, probs, 0.8, 0, answer_balance=b)[0] for b in (0.0, 1.0)]
    np.testing.assert_array_equal(*unanswered)
