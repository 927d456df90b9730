"""The data engine's pieces: streamed .npy files, calibration, human labels in the labeler,
the training-set selection, and the review prompt."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.io import iter_npy_rows, read_npy_rows, write_npy_chunks
from knowledge.labeling import (
    LabelConfig,
    Projection,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    label_projected,
)


def test_npy_chunks_round_trip_and_stay_atomic(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 7)).astype(np.float16)
    assert write_npy_chunks(tmp_path / "x.npy", (a[i : i + 300] for i in range(0, 1000, 300)), np.float16) == (1000, 7)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), a)
    np.testing.assert_array_equal(np.concatenate([r for _, r in iter_npy_rows(tmp_path / "x.npy", 128)]), a)
    np.testing.assert_array_equal(read_npy_rows(tmp_path / "x.npy", [900, 3, 3]), a[[900, 3, 3]])

    def broken():
        yield a[:10]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_npy_chunks(tmp_path / "y.npy", broken(), np.float16)
    assert not list(tmp_path.glob("*y.npy*"))  # nothing half-written


def test_temperature_scaling_recovers_an_overconfident_labeler():
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += 1.5
    calibrated = np.exp(1.5 * logits) / np.exp(1.5 * logits).sum(1, keepdims=True)  # the true posterior
    overconfident = apply_temperature(calibrated, 1 / 3)  # three times too sharp
    t = fit_temperature(overconfident, truth)
    assert 2.4 < t < 3.6
    assert expected_calibration_error(apply_temperature(overconfident, t), truth) < \
        0.5 * expected_calibration_error(overconfident, truth)
    assert fit_temperature(overconfident[:5], truth[:5]) == 1.0  # too few labels to fit anything
    assert 2.4 < fit_temperature(overconfident, truth, only_soften=True) < 3.6
    underconfident = apply_temperature(calibrated, 2.0)
    assert fit_temperature(underconfident, truth) < 0.7
    assert fit_temperature(underconfident, truth, only_soften=True) == 1.0  # seeds cannot ask to sharpen


def _blobs(seed=0, per=150, d=16):
    """Four separated clusters; cluster 3 is "other"."""
    rng = np.random.default_rng(seed)
    centers = np.eye(d)[:4] * 4
    x = np.concatenate([c + rng.normal(size=(per, d)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(4), per)
    return x, y


def test_human_labels_steer_the_self_training_head():
    """Class 2 has no examples and an uninformative description, so it claims both example-less
    clusters, "other" (cluster 3) included; a person's "other" answers in cluster 3 take it back."""
    x, _ = _blobs()
    proj = Projection.fit(x, 8, 0)
    emb = proj.apply(x)
    ex_idx = np.array([0, 1, 150, 151])
    ex_labels = np.array([0, 0, 1, 1])
    zero_shot = np.full((len(x), 3), 1 / 3, np.float32)
    cfg = LabelConfig(cluster_multiples=[2, 3], restarts=1)
    plain = label_projected(emb, proj, emb[ex_idx], zero_shot, ex_labels, True, cfg)
    assert (plain.labels[450:] == 2).mean() > 0.9
    anchors = np.arange(460, 490)
    steered = label_projected(emb, proj, emb[ex_idx], zero_shot, ex_labels, True, cfg,
                              anchors=emb[anchors], anchor_labels=np.full(len(anchors), 3))
    # 30 answers against 150 confident auto-labels in the same cluster: the cluster flips
    assert (steered.labels[450:] == 3).mean() > 0.8
    assert (steered.labels[:150] == 0).mean() > 0.9  # the rest stays
    assert steered.example_probs.shape == (len(ex_idx), 4)


def test_human_labels_weigh_the_same_in_a_bigger_pool():
    """The auto-labels together weigh a fixed number of answers, so 30 answers flip their cluster in a
    pool four times as big too (with a fixed weight of 50 per answer, 0.74 of it flipped)."""
    x, _ = _blobs()
    rng = np.random.default_rng(1)
    big = np.concatenate([x] + [x + 0.05 * rng.normal(size=x.shape).astype(np.float32) for _ in range(3)])
    proj = Projection.fit(big, 8, 0)
    emb = proj.apply(big)
    ex_idx = np.array([0, 1, 150, 151])
    zero_shot = np.full((len(big), 3), 1 / 3, np.float32)
    anchors = np.arange(460, 490)
    steered = label_projected(emb, proj, emb[ex_idx], zero_shot, np.array([0, 0, 1, 1]), True,
                              LabelConfig(cluster_multiples=[2, 3], restarts=1),
                              anchors=emb[anchors], anchor_labels=np.full(len(anchors), 3))
    other = np.concatenate([np.arange(450, 600) + 600 * k for k in range(4)])
    assert (steered.labels[other] == 3).mean() > 0.8
    assert (steered.labels[:150] == 0).mean() > 0.9


def test_a_class_with_examples_never_drops_out_of_self_training():
    """The votes leave class 1 no confident row (its cluster split half "other"), so a head fitted on
    confident rows alone never says 1; its examples' nearest pool images keep it in."""
    from knowledge.labeling import self_train

    x, _ = _blobs()
    emb = Projection.fit(x, 8, 0).apply(x)
    probs = np.zeros((len(x), 4), np.float32)
    for c in (0, 2, 3):
        probs[150 * c : 150 * (c + 1), c] = 1.0
    probs[150:300, 1] = probs[150:300, 3] = 0.5
    examples, example_labels = emb[[0, 1, 150, 151]], np.array([0, 0, 1, 1])
    lost, _ = self_train(emb, probs, 0.8, 0, examples)
    assert not (lost.argmax(1) == 1).any()
    kept, on_examples = self_train(emb, probs, 0.8, 0, examples, example_labels)
    assert (kept[150:300].argmax(1) == 1).mean() > 0.9
    assert (kept[:150].argmax(1) == 0).mean() > 0.9 and (kept[450:].argmax(1) == 3).mean() > 0.9
    np.testing.assert_array_equal(on_examples.argmax(1), example_labels)


def test_cluster_counts_grow_with_the_examples():
    from knowledge.labeling import cluster_multiples_for

    assert cluster_multiples_for(5) == [2, 3, 4, 6]
    assert cluster_multiples_for(1) == [2, 3]
    assert cluster_multiples_for(20) == [2, 3, 4, 6, 8, 12]
    assert cluster_multiples_for(0) == cluster_multiples_for(1)


def test_selection_drops_duplicates_and_caps_other_keeping_hard_negatives():
    from agent.stage_label import select_training

    x, y = _blobs(per=100)
    x = np.concatenate([x, x[:5]])  # five exact duplicates of class-0 images
    y = np.concatenate([y, y[:5]])
    v = x / np.linalg.norm(x, axis=1, keepdims=True)
    conf = np.full(len(y), 0.9, np.float32)
    conf[10] = 0.3
    cfg = LabelConfig(dedup_threshold=0.999, balance=1.0, hard_negatives=20)
    split, info = select_training(v, y, conf, cfg, other=True, human=np.array([1]), rejected=np.array([20]), seed=0)
    assert split[10] == "low-confidence" and split[20] == "rejected" and split[1] == "train"
    assert info["duplicates_removed"] == 5 and (split == "duplicate").sum() == 5
    kept = split == "train"
    counts = np.bincount(y[kept], minlength=4)
    assert counts[3] <= counts[:3].min() + 1 and info["capped"] > 0
    assert info["hard_negatives_kept"] > 0


def test_review_answers_parse():
    from agent.review import NONE_LABEL, ReviewItem, ansi_image, parse_answer

    names = ["shirt", "sneaker", "bag", "other"]
    item = ReviewItem(0, "a.png", [("bag", 0.5), ("other", 0.3), ("shirt", 0.2)], True)
    assert parse_answer("1", item, names) == "bag" and parse_answer("3", item, names) == "shirt"
    assert parse_answer("Sneaker", item, names) == "sneaker" and parse_answer("sn", item, names) == "sneaker"
    assert parse_answer("s", item, names) is None  # ambiguous prefix: shirt or sneaker
    assert parse_answer("n", item, names) == NONE_LABEL and parse_answer("zebra", item, names) is None
    art = ansi_image(np.zeros((28, 28, 1), np.uint8), width=28)
    assert art.count("\n") == 13 and "▀" in art


def test_spot_checks_name_the_class_the_labels_miss():
    """80 % right overall can hide a class found 2 times in 10: per class and in one sentence."""
    from agent.review import (
        NONE_LABEL,
        SPOT_CHECK,
        spot_check_classes,
        weakest_class_line,
    )

    answers = [("shirt", "other")] * 8 + [("shirt", "shirt")] * 2 + [("other", "other")] * 38 + \
        [("bag", "bag")] * 9 + [("bag", "shirt")] + [(NONE_LABEL, "bag")] + [("other", "shirt")] * 2
    labels = {f"u{i}": {"label": a, "teacher_guess": g, "picked": SPOT_CHECK} for i, (a, g) in enumerate(answers)}
    labels["uncertain"] = {"label": "bag", "teacher_guess": "other", "picked": "uncertain"}  # not a random draw
    rows = spot_check_classes(labels)
    assert rows["shirt"] == {"checked": 10, "labeled": 5, "agreed": 2}
    assert rows["bag"] == {"checked": 10, "labeled": 10, "agreed": 9}  # "none of these" counts against the guess only
    assert rows["other"] == {"checked": 40, "labeled": 46, "agreed": 38} and NONE_LABEL not in rows
    line = weakest_class_line(labels)
    assert "miss 'shirt' most" in line and "2 of the 10" in line and "add example images of 'shirt'" in line
    fine = {k: v for k, v in labels.items() if v["label"] != "shirt"}
    assert weakest_class_line(fine) is None  # every class found 80 % of the time or more
    few = {k: v for k, v in labels.items() if v["label"] != "shirt" or k in ("u0", "u1")}
    assert weakest_class_line(few) is None  # two shirts say nothing yet


def test_the_queue_can_ask_more_where_the_spot_checks_found_the_labels_wrong():
    """Shirts the labels gave to "other" (bench/labeler.py --queue confused): half the uncertain
    questions go to the confused pairs, most to the shirt / other boundary."""
    from agent.review import SPOT_CHECK, confused_pairs, queue_order

    misses = np.array([[0, 0, 6], [0, 0, 2], [2, 0, 0]])  # rows: a person's class; columns: the label's
    assert confused_pairs(misses, 10) == [((0, 2), 8), ((1, 2), 2)]  # 8 of 10 misses either way
    assert confused_pairs(misses, 0) == [] and confused_pairs(np.zeros((3, 3)), 10) == []

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 3000)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    pair = np.sort(np.argsort(-probs, 1)[:, :2], 1)
    on_shirt_other = (pair == (0, 2)).all(1)

    def asked(misses):
        order = queue_order(probs, vectors, 60, np.zeros(0, np.int64), seed=1, misses=misses)
        return np.array([i for i, why in order if why != SPOT_CHECK])

    even, targeted = asked(None), asked(misses)
    assert len(even) == len(targeted) == 30
    assert on_shirt_other[even].sum() <= 15 and on_shirt_other[targeted].sum() >= 12 + 5
    assert np.array_equal(asked(np.zeros((3, 3), np.int64)), even)  # no misses: the even share


def test_spot_checks_estimate_the_label_accuracy():
    from agent.review import SPOT_CHECK, spot_check_estimate, spot_check_line

    labels = {f"u{i}": {"label": "bag" if i < 8 else "shirt", "teacher_guess": "bag", "picked": SPOT_CHECK}
              for i in range(10)}
    labels["uncertain"] = {"label": "shirt", "teacher_guess": "bag", "picked": "uncertain"}  # not a random draw
    labels["older file"] = {"label": "shirt", "teacher_guess": "bag"}  # answers from before spot checks
    est = spot_check_estimate(labels)
    assert (est["agreed"], est["of"], est["accuracy"]) == (8, 10, 0.8)
    assert est["interval_95"] == pytest.approx([0.490, 0.943], abs=1e-3)  # Wilson, 8 of 10
    assert "8 of 10 spot checks: about 80 % (95 % interval 49-94 %)" in spot_check_line(labels)
    assert spot_check_estimate({"u": labels["uncertain"]}) is None and spot_check_line({}) is None
