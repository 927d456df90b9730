"""The label stage: a label and a calibrated confidence for every pool image, then the data
engine's choice of what trains.

1. The teacher labels the pool (knowledge.labeling) from the user's examples, the class
   descriptions and any labels a person gave in review (``data/human_labels.json``): those
   steer the self-training head and keep their label. Once a person has answered, the labels
   are spread over the pool's k-NN graph (from the vector index; saved as
   ``index/pool_graph.npz`` for the review queue's re-labeling).
2. Confidence is temperature-scaled on the examples the self-training head did not fit (softened only).
3. Selection on the vector index (knowledge.selection): one image per near-duplicate group,
   optional class balance and a diversity budget, with the hard negatives of "other" kept
   first when "other" is cut.

Every pool image gets a split: train, val, low-confidence, duplicate, capped or rejected (a
person said "none of these"); ``data/manifest.jsonl`` records it with the label's source.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from agent.data import hidden_truth
from agent.review import (
    NONE_LABEL,
    load_human_labels,
    spot_check_classes,
    spot_check_estimate,
)
from knowledge.errors import NanofactoryError
from knowledge.io import atomic_path, read_npy_rows, write_npz_atomic, write_text_atomic

log = logging.getLogger(__name__)

VAL_FRACTION = 0.1  # of the confidently labeled pool, for model selection and the training curve
PROVENANCE = "auto-label: teacher few-shot clusters + zero-shot + self-training"
HUMAN_PROVENANCE = "human label (review queue)"


def human_label_indices(uids: list[str], names: list[str], given: dict[str, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, labels) of the pool images (``uids``, in pool order) a person labeled (``given``:
    ``load_human_labels``), and the indices they called "none of these"."""
    if not given:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    where = {uid: i for i, uid in enumerate(uids)}
    idx, labels, rejected = [], [], []
    for uid, entry in given.items():
        i = where.get(uid)
        if i is None:
            log.warning("human label for %s ignored: not in this pool", uid)
            continue
        if entry["label"] == NONE_LABEL:
            rejected.append(i)
        elif entry["label"] in names:
            idx.append(i)
            labels.append(names.index(entry["label"]))
        else:
            log.warning("human label %r for %s ignored: not one of %s", entry["label"], uid, ", ".join(names))
    return np.asarray(idx, np.int64), np.asarray(labels, np.int64), np.asarray(rejected, np.int64)


def project_pool(ctx, dims: int, seed: int):
    """The labeling projection (pool mean, principal axes from a sample) and every pool image projected,
    reading the teacher embeddings from disk in chunks: memory is the projected pool, not the raw one."""
    from knowledge.labeling import SAMPLE_CHUNK, Projection, sample_rows

    total, n = None, 0
    for _, rows in ctx.embedding_chunks():
        part = rows.astype(np.float64).sum(0)
        total = part if total is None else total + part
        n += len(rows)
    picked, file = np.sort(sample_rows(n, seed)), ctx.embeddings_file()
    projection = Projection.from_chunks(
        (total / n)[None].astype(np.float32),
        lambda: (read_npy_rows(file, picked[i : i + SAMPLE_CHUNK]) for i in range(0, len(picked), SAMPLE_CHUNK)),
        dims, ctx.teacher.embedding_groups)
    projected = np.concatenate([projection.apply(rows) for _, rows in ctx.embedding_chunks()])
    return projection, projected


def stage_label(ctx) -> dict:
    from agent.stage_generate import text_to_image_may_fill
    from knowledge.index import VectorIndex
    from knowledge.labeling import (
        apply_temperature,
        expected_calibration_error,
        fit_temperature,
        label_projected,
    )
    from knowledge.spreading import neighbour_graph
    from tools.train import split_validation

    spec, pool = ctx.run.spec, ctx.pool
    cfg = ctx.run.plan.step("label").label
    names = spec.label_names
    with np.load(ctx.dir / "data" / "teacher.npz") as z:
        zero_shot, ex_emb, ex_labels = z["zero_shot"], z["example_embeddings"], z["example_labels"]
    given = load_human_labels(ctx.dir)
    h_idx, h_labels, rejected = human_label_indices(pool.uids, names, given)
    projection, projected = project_pool(ctx, cfg.pca_dims, spec.seed)
    human = projection.apply(read_npy_rows(ctx.embeddings_file(), h_idx).astype(np.float32))
    ex_labels = ex_labels.astype(np.int64)
    index = VectorIndex.build(projected)
    graph = neighbour_graph(projected, cfg.spread_neighbours, index) if cfg.spread_neighbours else None
    result = label_projected(projected, projection, projection.apply(ex_emb.reshape(-1, projection.mean.shape[1])),
                             zero_shot, ex_labels, spec.other, cfg, seed=spec.seed, anchors=human, anchor_labels=h_labels,
                             anchor_rows=h_idx, graph=graph)

    temperature = 1.0
    if cfg.calibrate and result.example_probs is not None:
        # the examples seeded the labels: evidence of over-confidence only (see fit_temperature)
        temperature = fit_temperature(result.example_probs, ex_labels, only_soften=True)
    probs = apply_temperature(result.probs, temperature)
    probs[h_idx] = np.eye(len(names), dtype=np.float32)[h_labels]  # a person's answer is the label
    index.save(ctx.dir / "index" / "pool.faiss")
    if graph is not None:
        graph.save(ctx.dir / "index" / "pool_graph.npz")  # the review queue's re-labeling spreads on it too
    result.projection.save(ctx.dir / "index" / "projection.npz")
    with atomic_path(ctx.dir / "index" / "pool_vectors.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, projected.astype(np.float16))  # the review queue's diversity term reads these

    labels, conf = probs.argmax(1), probs.max(1)
    split, selection = select_training(projected, labels, conf, cfg, spec.other, h_idx, rejected, spec.seed)
    kept = np.where(split == "train")[0]
    eligible = np.setdiff1d(kept, h_idx)  # a person's labels always train
    val = eligible[split_validation(len(eligible), VAL_FRACTION, spec.seed)[1]] if len(eligible) else eligible
    split[val] = "val"
    kept = np.where((split == "train") | (split == "val"))[0]
    counts = {n: int((labels[kept] == i).sum()) for i, n in enumerate(names)}
    starved = [n for n in names[: len(spec.classes)] if counts[n] == 0]
    if starved and not text_to_image_may_fill(ctx):
        raise NanofactoryError(
            f"No pool image was labeled {', '.join(repr(s) for s in starved)} with confidence; add images of it to "
            "the pool or example images (--examples), describe it differently, or let a text-to-image generator "
            f"make some (--generate {starved[0]} --generate-model ID_OR_DIR)."
        )
    write_npz_atomic(ctx.dir / "data" / "labels.npz", probs=probs, split=split.astype("U16"))
    _write_manifest(ctx, labels, conf, split, set(h_idx.tolist()))
    write_text_atomic(ctx.dir / "data" / "low_confidence.txt",
                      "".join(f"{pool.uids[i]}\t{names[labels[i]]}\t{conf[i]:.3f}\n"
                              for i in np.where(split == "low-confidence")[0]))

    out = {"labeled_for_training": len(kept), "low_confidence": int((split == "low-confidence").sum()),
           "label_counts": counts, "teacher_label_accuracy": None, "starved": starved,
           "human_labels": len(h_idx), "human_rejected": len(rejected), "temperature": temperature,
           "spot_checks": spot_check_estimate(given), "spot_check_classes": spot_check_classes(given),
           "confidence_histogram": np.histogram(conf, bins=20, range=(0, 1))[0].tolist(), **selection}
    truth = hidden_truth(pool, spec)
    if truth is not None and (truth >= 0).any():
        from agent.stages import confusion

        has = truth >= 0
        out["teacher_label_accuracy"] = float((labels[has] == truth[has]).mean())
        kept_has = kept[truth[kept] >= 0]
        out["teacher_label_accuracy_kept"] = float((labels[kept_has] == truth[kept_has]).mean()) if len(kept_has) else None
        out["few_shot_only_accuracy"] = float((result.few_shot.argmax(1)[has] == truth[has]).mean())
        out["calibration_error"] = {"before": expected_calibration_error(result.probs[has], truth[has]),
                                    "after": expected_calibration_error(probs[has], truth[has])}
        write_npz_atomic(ctx.dir / "eval" / "teacher_confusion.npz", confusion=confusion(truth[has], labels[has], len(names)))
    return out


def select_training(vectors, labels, conf, cfg, other: bool, human: np.ndarray, rejected: np.ndarray, seed: int):
    """Each pool image's split before validation is drawn, and what the selection removed."""
    from knowledge.selection import (
        k_center_greedy,
        near_duplicates,
    )

    n = len(labels)
    split = np.full(n, "train", dtype=object)
    split[conf < cfg.min_confidence] = "low-confidence"
    info = {"duplicates_removed": 0, "duplicate_groups": 0, "capped": 0, "hard_negatives_kept": 0}
    if cfg.dedup_threshold is not None:
        prefer = conf + 2.0 * np.isin(np.arange(n), human)  # keep the human-labeled copy of a group
        dups = near_duplicates(vectors, cfg.dedup_threshold, prefer=prefer)
        removed = np.setdiff1d(np.arange(n), dups.keep)
        removed = removed[split[removed] == "train"]
        split[removed] = "duplicate"
        info["duplicates_removed"] = len(removed)
        info["duplicate_groups"] = len(np.unique(dups.group[np.setdiff1d(np.arange(n), dups.keep)]))
    split[rejected] = "rejected"
    split[human] = "train"
    cand = np.where(split == "train")[0]
    cand_auto = np.setdiff1d(cand, human)
    keep = cand_auto
    if cfg.balance is not None and len(cand_auto):
        counts = np.bincount(labels[cand_auto], minlength=labels.max() + 1)
        present = counts[counts > 0]
        cap = int(np.ceil(cfg.balance * present.min()))
        keep = _capped(vectors, labels, cand_auto, cap, other, cfg.hard_negatives, seed, info)
    if cfg.max_samples is not None and len(keep) > cfg.max_samples:
        first = k_center_greedy(vectors[keep], cfg.max_samples, seed=seed)
        keep = np.sort(keep[first])
    capped = np.setdiff1d(cand_auto, keep)
    split[capped] = "capped"
    info["capped"] = len(capped)
    return split, info


def _capped(vectors, labels, cand, cap, other, per_class, seed, info):
    """At most ``cap`` per class, diverse; for "other", its hard negatives go in first."""
    from knowledge.selection import balance, hard_negatives, k_center_greedy

    other_label = int(labels.max()) if other else None
    keep = list(cand[balance(labels[cand], cap, vectors=vectors[cand], seed=seed)])
    if other_label is None or per_class == 0:
        return np.sort(np.asarray(keep, np.int64))
    others = cand[labels[cand] == other_label]
    if len(others) <= cap:
        return np.sort(np.asarray(keep, np.int64))
    hard = hard_negatives(vectors[cand], labels[cand], other_label, per_class)
    # hardest first, taking turns between the classes, so a cap below the total keeps each class's hardest
    ranked = [cand[v[r]] for r in range(per_class) for v in hard.values() if r < len(v)]
    hard_idx = np.asarray(list(dict.fromkeys(int(i) for i in ranked))[:cap], np.int64)
    info["hard_negatives_kept"] = len(hard_idx)
    rest = np.setdiff1d(others, hard_idx)
    fill = rest[k_center_greedy(vectors[rest], cap - len(hard_idx), seed=seed)] if cap > len(hard_idx) \
        else np.zeros(0, np.int64)
    named = [i for i in keep if labels[i] != other_label]
    return np.sort(np.concatenate([np.asarray(named, np.int64), hard_idx, fill]).astype(np.int64))


def _write_manifest(ctx, labels, conf, split, human: set[int]) -> None:
    pool, names, ex = ctx.pool, ctx.run.spec.label_names, ctx.examples
    spread = ctx.run.plan.step("label").label.spreads(answered=bool(human))
    provenance = PROVENANCE + (" + label spreading" if spread else "")
    lines = [json.dumps({"uid": pool.uids[i], "source": pool.source, "sha1": pool.sha1[i], "label": names[labels[i]],
                         "confidence": round(float(conf[i]), 4), "split": str(split[i]),
                         "provenance": HUMAN_PROVENANCE if i in human else provenance, "synthetic": False})
             for i in range(len(pool))]
    lines += [json.dumps({"uid": str(p), "source": "examples", "label": names[y], "confidence": 1.0,
                          "split": "train", "provenance": "example image given by the user", "synthetic": False})
              for p, y in zip(ex.paths, ex.labels)]
    write_text_atomic(ctx.dir / "data" / "manifest.jsonl", "\n".join(lines) + "\n")


def clean_labels(ctx, model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """After a first training round: the auto-labels the student confidently contradicts (confident
    learning, cleanlab's ``find_label_issues`` on the student's probabilities), dropped from training.

    Only pool rows of the training split are candidates: the user's examples and a person's
    labels are never dropped. Returns the rows of ``x`` to keep and a summary; every dropped
    sample is logged in ``data/label_issues.jsonl``.
    """
    import torch
    from cleanlab.filter import find_label_issues

    from tools.train import to_input

    with np.load(ctx.dir / "data" / "labels.npz") as z:
        probs, split = z["probs"], z["split"]
    train = np.where(split == "train")[0]  # rows 0..len(train)-1 of x; the examples follow
    human = set(load_human_labels(ctx.dir))
    model.eval()
    with torch.inference_mode():
        pred = np.concatenate([torch.softmax(model(to_input(x[i : min(i + 2048, len(train))])), 1).numpy()
                               for i in range(0, len(train), 2048)]) if len(train) else np.zeros((0, probs.shape[1]))
    # n_jobs=1: cleanlab's default forks a multiprocessing pool, and a fork of a process running torch,
    # faiss and (in the app) server threads can deadlock in the child; a few thousand rows take milliseconds
    issues = find_label_issues(labels=y[: len(train)], pred_probs=pred, filter_by="prune_by_noise_rate", n_jobs=1)
    uids = ctx.pool.uids
    issues &= np.array([uids[i] not in human for i in train], bool)
    keep = np.ones(len(x), bool)
    keep[: len(train)] = ~issues
    names = ctx.run.spec.label_names
    write_text_atomic(ctx.dir / "data" / "label_issues.jsonl", "".join(
        json.dumps({"uid": uids[train[j]], "auto_label": names[y[j]], "student_label": names[int(pred[j].argmax())],
                    "student_confidence": round(float(pred[j].max()), 4), "action": "dropped"}) + "\n"
        for j in np.where(issues)[0]))
    summary = {"flagged": int(issues.sum()), "of": len(train), "method": "cleanlab prune_by_noise_rate"}
    truth = hidden_truth(ctx.pool, ctx.run.spec)
    if truth is not None and issues.any():  # how many of the dropped labels were really wrong (measuring only)
        summary["flagged_really_wrong"] = float((truth[train[issues]] != y[: len(train)][issues]).mean())
    return keep, summary
