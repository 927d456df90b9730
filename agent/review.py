"""Active learning: which pool images a person should label, storing their answers, retraining.

Half the queue ranks the pool by how unsure the teacher is (the margin between its two best
labels) and picks a diverse batch among the most uncertain (k-center over the run's vector
index), so a person's labels are not spent on near-copies of one confusing image. The other
half are spot checks: pool images drawn at random. Uncertain images alone teach the labeler
a biased picture of the pool (mostly boundaries, few of a class it confidently gets wrong);
on the demo's pool a queue of uncertain images only reached label accuracy 0.852 after 200
answers and 0.879 after 500, half spot checks 0.861 and 0.888, with more of the hard class
(shirt recall 0.21 -> 0.25 and 0.29 -> 0.39; bench/labeler.py --active, 5 draws of examples,
oracle answers). They also estimate the labels' accuracy where no hidden labels exist
(``spot_check_estimate``). The queue alternates the two, so a person who stops early has given
both. Answers go to ``data/human_labels.json`` (atomic, one write per answer, so quitting loses
nothing); the label stage of a later run treats them as examples and as fixed labels.

``nanofactory review RUN`` asks in the terminal; the web app's review tab uses the same
queue and file. ``--oracle`` answers from the pool's hidden labels, standing in for the
person in benchmarks.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np

from knowledge.io import write_json_atomic

HUMAN_LABELS = Path("data") / "human_labels.json"
NONE_LABEL = "none of these"  # an answer that keeps the image out of training (open-set rejection)
SPOT_CHECK_SHARE = 0.5  # of the review queue, pool images drawn at random (see the module's docstring)
UNCERTAIN, SPOT_CHECK = "uncertain", "spot check"
_lock = threading.Lock()


@dataclass
class ReviewItem:
    index: int  # row in the pool (labels.npz order)
    uid: str
    guesses: list[tuple[str, float]]  # the teacher's top three, best first
    used_for_training: bool
    reason: str = UNCERTAIN  # why it is asked: UNCERTAIN or SPOT_CHECK (drawn at random)


def load_human_labels(run_dir: Path) -> dict[str, dict]:
    path = Path(run_dir) / HUMAN_LABELS
    return json.loads(path.read_text())["labels"] if path.is_file() else {}


def save_human_label(run_dir: Path, item: ReviewItem, label: str, source: str = "person") -> int:
    """Add one label to data/human_labels.json (atomic); the number of labels stored."""
    with _lock:
        labels = load_human_labels(run_dir)
        labels[item.uid] = {"label": label, "teacher_guess": item.guesses[0][0],
                            "teacher_confidence": round(item.guesses[0][1], 4), "source": source,
                            "picked": item.reason,
                            "labeled_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json_atomic(Path(run_dir) / HUMAN_LABELS, {
            "note": "labels from the review queue; `nanofactory review RUN --retrain` trains a new run on them",
            "labels": labels})
    return len(labels)


def spot_check_estimate(labels: dict[str, dict]) -> dict | None:
    """How often the auto-label was right on the spot checks (pool images drawn at random, then
    labeled by a person): an unbiased estimate of the labels' accuracy where no hidden labels
    exist, with its 95 % Wilson interval. Each answer is compared with the label of the run it
    was asked in; "none of these" counts as wrong. None without spot checks."""
    checks = [e for e in labels.values() if e.get("picked") == SPOT_CHECK]
    if not checks:
        return None
    n = len(checks)
    k = sum(e["label"] == e["teacher_guess"] for e in checks)
    z, p = 1.96, k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"agreed": k, "of": n, "accuracy": p, "interval_95": [max(0.0, center - half), min(1.0, center + half)]}


def spot_check_line(labels: dict[str, dict]) -> str | None:
    """One sentence on the estimate, for the terminal and the web page."""
    est = spot_check_estimate(labels)
    if est is None:
        return None
    lo, hi = est["interval_95"]
    return (f"auto-labels right on {est['agreed']} of {est['of']} spot checks: about {100 * est['accuracy']:.0f} % "
            f"(95 % interval {100 * lo:.0f}-{100 * hi:.0f} %)")


WEAK_RECALL = 0.8  # a class whose spot checks the auto-labels find less often than this is named to the person
MIN_CLASS_CHECKS = 5  # spot checks of a class before its share found says anything


def spot_check_classes(labels: dict[str, dict]) -> dict[str, dict]:
    """Per class, from the spot checks: ``checked``, the images a person put in it; ``labeled``, those
    the auto-labels put in it; ``agreed``, both. ``agreed / checked`` estimates the labels' recall of
    the class and ``agreed / labeled`` their precision, where no hidden labels exist: the overall
    estimate can look fine while one class is mostly missed (on the demo, shirts labeled "other")."""
    rows: dict[str, dict] = {}
    for e in labels.values():
        if e.get("picked") != SPOT_CHECK:
            continue
        for name, key in ((e["label"], "checked"), (e["teacher_guess"], "labeled")):
            if name != NONE_LABEL:
                rows.setdefault(name, {"checked": 0, "labeled": 0, "agreed": 0})[key] += 1
        if e["label"] == e["teacher_guess"] and e["label"] != NONE_LABEL:
            rows[e["label"]]["agreed"] += 1
    return dict(sorted(rows.items()))


def weakest_class_line(labels: dict[str, dict]) -> str | None:
    """One sentence naming the class the spot checks say the auto-labels miss most, with what to do;
    None while no class has ``MIN_CLASS_CHECKS`` spot checks or every class is found often enough."""
    rows = {c: r for c, r in spot_check_classes(labels).items() if r["checked"] >= MIN_CLASS_CHECKS}
    if not rows:
        return None
    name, r = min(rows.items(), key=lambda kv: kv[1]["agreed"] / kv[1]["checked"])
    if r["agreed"] / r["checked"] >= WEAK_RECALL:
        return None
    return (f"the auto-labels miss {name!r} most: they found {r['agreed']} of the {r['checked']} spot-checked "
            f"images a person called {name!r}; add example images of {name!r}, or keep reviewing and retrain")


def run_spec(run_dir: Path):
    """The run's DesignSpec, from its design.json."""
    from agent.spec import DesignSpec

    design = json.loads((Path(run_dir) / "design.json").read_text())
    return DesignSpec.from_dict(design["spec"], source=f"{run_dir}/design.json")


def label_names(run_dir: Path) -> list[str]:
    return run_spec(run_dir).label_names


def pool_uids(run_dir: Path, n: int) -> list[str]:
    """uids of the pool's samples in labels.npz order (the manifest lists the pool first, in order)."""
    with open(Path(run_dir) / "data" / "manifest.jsonl") as f:
        return [json.loads(next(f))["uid"] for _ in range(n)]


def queue_order(probs: np.ndarray, vectors: np.ndarray, budget: int, labeled: np.ndarray, seed: int = 0,
                spot_checks: float = SPOT_CHECK_SHARE) -> list[tuple[int, str]]:
    """(pool row, why) for the next ``budget`` questions: the uncertain and diverse
    (``uncertainty_diversity``) alternating with spot checks drawn at random, a ``spot_checks``
    share of the budget; ``labeled`` rows are never asked again."""
    from knowledge.selection import uncertainty_diversity

    spot = int(spot_checks * budget)  # the odd one is uncertain
    uncertain = uncertainty_diversity(probs, vectors, budget - spot, exclude=labeled, seed=seed)
    rest = np.setdiff1d(np.arange(len(probs)), np.concatenate([np.asarray(labeled, np.int64), uncertain]))
    random = np.random.default_rng(seed).permutation(rest)[:spot]
    # alternate, uncertain first: a person who stops early has given both kinds
    return [(int(i), why) for pair in zip_longest(uncertain, random) for i, why in zip(pair, (UNCERTAIN, SPOT_CHECK))
            if i is not None]


def review_queue(run_dir: Path, budget: int, seed: int = 0) -> list[ReviewItem]:
    """The next ``budget`` pool images to ask about (``queue_order``), minus those already labeled."""
    labels_file = Path(run_dir) / "data" / "labels.npz"
    if not labels_file.is_file():
        return []
    with np.load(labels_file) as z:
        probs, split = z["probs"], z["split"]
    names = label_names(run_dir)
    uids = pool_uids(run_dir, len(probs))
    done = load_human_labels(run_dir)
    labeled = np.array([i for i, u in enumerate(uids) if u in done], np.int64)
    vectors_file = Path(run_dir) / "index" / "pool_vectors.npy"
    if vectors_file.is_file():
        order = queue_order(probs, np.load(vectors_file).astype(np.float32), budget, labeled, seed)
    else:  # a run from before the vector file existed: least confident first
        order = [(int(i), UNCERTAIN) for i in np.argsort(probs.max(1), kind="stable") if uids[i] not in done][:budget]
    items = []
    for i, why in order:
        top = np.argsort(-probs[i])[:3]
        items.append(ReviewItem(i, uids[i], [(names[k], float(probs[i, k])) for k in top],
                                str(split[i]) in ("train", "val"), why))
    return items


def oracle_answers(run_dir: Path, items: list[ReviewItem]) -> list[str]:
    """The hidden label of each item, as a person who knows the truth would answer (benchmarks only)."""
    from agent.data import hidden_truth, load_pool
    from knowledge.errors import NanofactoryError

    spec = run_spec(run_dir)
    truth = hidden_truth(load_pool(spec), spec)
    if truth is None:
        raise NanofactoryError("--oracle needs a pool with hidden labels (Fashion-MNIST); this pool has none. "
                               "Label in the terminal instead.")
    names = spec.label_names
    return [names[truth[it.index]] if truth[it.index] >= 0 else NONE_LABEL for it in items]


def retrain(run_dir: Path, store, show_bars: bool = True, progress=None):
    """A new run with the same spec and plan whose label stage uses the human labels; returns (run, metrics)."""
    from agent.pipeline import create_run, execute, open_run

    parent = open_run(store, Path(run_dir).name)
    design = json.loads((Path(run_dir) / "design.json").read_text())
    n = len(load_human_labels(run_dir))
    decisions = dict(design.get("decisions") or {})
    decisions["parent"] = parent.id
    decisions["changes"] = list(decisions.get("changes") or []) + [f"retrained with {n} human labels from {parent.id}"]
    run = create_run(parent.spec, parent.plan, store, decisions)
    (run.dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(run_dir) / HUMAN_LABELS, run.dir / HUMAN_LABELS)
    return run, execute(run, store, progress, show_bars=show_bars)


# ---- the terminal ------------------------------------------------------------------------------


def ansi_image(image: np.ndarray, width: int = 32) -> str:
    """An image as 24-bit-colour half blocks (two pixel rows per text row): a glance, not a viewer."""
    from PIL import Image

    a = np.asarray(image)
    a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
    im = Image.fromarray(a.astype(np.uint8)).convert("RGB")
    h = max(2, round(im.height * width / im.width) // 2 * 2)
    px = np.asarray(im.resize((width, h), Image.NEAREST if im.width <= width else Image.BILINEAR))
    rows = []
    for y in range(0, h, 2):
        cells = (f"\x1b[38;2;{t[0]};{t[1]};{t[2]}m\x1b[48;2;{b[0]};{b[1]};{b[2]}m▀"
                 for t, b in zip(px[y], px[y + 1]))
        rows.append("".join(cells) + "\x1b[0m")
    return "\n".join(rows)


def parse_answer(text: str, item: ReviewItem, names: list[str]) -> str | None:
    """A class name from '1'/'2'/'3' (the teacher's guesses), a class name or its prefix, or 'n'; None: not understood."""
    text = text.strip().lower()
    if text in ("1", "2", "3") and int(text) <= len(item.guesses):
        return item.guesses[int(text) - 1][0]
    if text in ("n", "none", NONE_LABEL):
        return NONE_LABEL
    if not text:
        return None
    exact = [n for n in names if n.lower() == text]
    matches = exact or [n for n in names if n.lower().startswith(text)]
    return matches[0] if len(matches) == 1 else None


def review_in_terminal(run_dir: Path, items: list[ReviewItem], ask=None, show=print) -> int:
    """Ask about each item; returns how many were labeled. 's' skips, 'q' stops (answers so far are kept)."""
    ask = ask or input
    names = label_names(run_dir)
    inputs = np.load(Path(run_dir) / "data" / "pool_inputs.npy", mmap_mode="r")
    labeled = 0
    for k, item in enumerate(items, 1):
        guesses = "  ".join(f"{j}) {n} {p:.2f}" for j, (n, p) in enumerate(item.guesses, 1))
        why = " (spot check: drawn at random, to keep the labeler honest)" if item.reason == SPOT_CHECK else ""
        show(f"\n[{k}/{len(items)}] {item.uid}{why}\n{ansi_image(inputs[item.index])}\nteacher: {guesses}")
        while True:
            text = ask(f"label ({', '.join(names)}; 1-3, n = none of these, s = skip, q = quit): ")
            if text.strip().lower() in ("q", "quit"):
                return labeled
            if text.strip().lower() in ("s", "skip", ""):
                break
            label = parse_answer(text, item, names)
            if label is None:
                show(f"'{text.strip()}' is not one of: {', '.join(names)}, 1-3, n, s or q.")
                continue
            save_human_label(run_dir, item, label)
            labeled += 1
            break
    return labeled
