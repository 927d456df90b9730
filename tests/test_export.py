"""`nanofactory export`: a run's labeled images as DIR/<split>/<class>/ and labels.csv."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.runs import RunStore
from knowledge.pools import image_files
from tests.conftest import write_shapes

LABELS = ("circle", "square", "other")


def labeled_run(store: RunStore, pool: Path, examples: Path, run_id: str = "20260101-000000-circle",
                source=None) -> Path:
    """A run folder as the label stage leaves it: design.json and a manifest (pool rows in pool order, then
    the examples, then a generator's image). ``source``: the spec's pool source (default: the folder ``pool``)."""
    from agent.parse import spec_from_request
    from agent.spec import DataSpec, PoolSource

    spec = spec_from_request("tells apart circles, squares and everything else on an nRF52840",
                             DataSpec(pool=[source or PoolSource(kind="folder", path=pool)]))
    folder = store.root / run_id
    (folder / "synthetic").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "design.json").write_text(json.dumps({"run_id": run_id, "spec": json.loads(spec.to_json()), "plan": {},
                                                    "decisions": {"planner": "offline"}}))
    rows = []
    for i, f in enumerate(image_files(pool)):
        split = "val" if i % 5 == 4 else "low-confidence" if i % 7 == 6 else "train"
        rows.append({"uid": f.relative_to(pool).as_posix(), "source": f"folder:{pool}",
                     "sha1": hashlib.sha1(f.read_bytes()).hexdigest(), "label": LABELS[i % 3],
                     "confidence": 0.9, "split": split, "provenance": "auto-label", "synthetic": False})
    for f in sorted(examples.rglob("*.png"))[:2]:
        rows.append({"uid": str(f), "source": "examples", "label": f.parent.name, "confidence": 1.0, "split": "train",
                     "provenance": "example image given by the user", "synthetic": False})
    made = folder / "synthetic" / "circle" / "0.png"
    made.parent.mkdir()
    made.write_bytes(next(examples.rglob("circle*.png")).read_bytes())
    rows.append({"uid": "synthetic/circle/0.png", "source": "synthetic:ddpm", "label": "circle", "confidence": 0.8,
                 "split": "train", "synthetic": True, "provenance": "generated"})
    (folder / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store.record(run_id, "done", spec.device, spec.request)
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_writes_class_folders_and_labels_then_resumes_with_a_persons_answers(tmp_path, shapes_data, capsys):
    pool = write_shapes(tmp_path / "pool", 6, seed=5)
    store = RunStore(tmp_path / "runs")
    run = labeled_run(store, pool, shapes_data["examples"])
    manifest = [json.loads(line) for line in (run / "data" / "manifest.jsonl").read_text().splitlines()]
    out = tmp_path / "dataset"
    assert main(["export", run.name, str(out), "--runs-dir", str(store.root)]) == 0
    said = capsys.readouterr().out
    rows = read_csv(out / "labels.csv")
    wanted = [r for r in manifest if r["split"] in ("train", "val")]
    assert len(rows) == len(wanted) == sum(1 for f in out.rglob("*.png"))
    assert f"{len(wanted)} images of run {run.name}" in said and "labeled by teacher" in said
    for row in rows:
        path = out / row["file"]
        assert path.parts[-3:-1] == (row["split"], row["label"]) and path.read_bytes() == Path(row["origin"]).read_bytes()
    assert {r["labeled_by"] for r in rows} == {"teacher", "example", "generator"}
    assert any(r["file"].startswith("train/circle/example__") for r in rows)
    assert not list(out.rglob("*.tmp"))

    # a person answers three images: one relabeled, one "none of these", one the labels were unsure of
    pool_rows = [r for r in manifest if r["source"].startswith("folder:")]
    relabel = next(r for r in pool_rows if r["split"] == "train" and r["label"] == "circle")
    reject = next(r for r in pool_rows if r["split"] == "val")
    unsure = next(r for r in pool_rows if r["split"] == "low-confidence")
    (run / "data" / "human_labels.json").write_text(json.dumps({"labels": {
        relabel["uid"]: {"label": "square"}, reject["uid"]: {"label": "none of these"},
        unsure["uid"]: {"label": "circle"}, pool_rows[-1]["uid"]: {"label": "hexagon"}}}))  # not a class: ignored
    assert main(["export", run.name, str(out), "--runs-dir", str(store.root)]) == 0
    said = capsys.readouterr().out
    assert "(wrote 2 now" in said and "removed 2 " in said and "(3 review answers in the run; 1 said 'none of these'" in said
    again = {r["origin"].split(str(pool) + "/")[-1]: r for r in read_csv(out / "labels.csv")}
    assert again[relabel["uid"]]["label"] == "square" and again[relabel["uid"]]["labeled_by"] == "person"
    assert again[unsure["uid"]]["split"] == "train" and reject["uid"] not in again
    assert "hexagon" not in {r["label"] for r in again.values()}
    assert len(again) == len(rows) and sum(1 for f in out.rglob("*.png")) == len(rows)
    assert not (out / "train" / "circle" / relabel["uid"].replace("/", "__")).exists()


def test_export_leaves_out_what_changed_and_refuses_folders_it_would_overwrite(tmp_path, shapes_data, capsys):
    pool = write_shapes(tmp_path / "pool", 6, seed=6)
    store = RunStore(tmp_path / "runs")
    run = labeled_run(store, pool, shapes_data["examples"])
    files = image_files(pool)
    files[0].unlink()  # gone since the build
    files[1].write_bytes(files[2].read_bytes())  # replaced since the build
    out = tmp_path / "dataset"
    assert main(["export", run.name, str(out), "--runs-dir", str(store.root), "--splits", "train", "val",
                 "low-confidence"]) == 1
    err = capsys.readouterr().err
    assert "1 image(s) the run labeled are no longer on disk" in err
    assert "1 pool file(s) changed since the run labeled them" in err
    assert len(read_csv(out / "labels.csv")) == len(files) - 2 + 3  # the pool's rest, 2 examples, 1 generated

    other = labeled_run(store, pool, shapes_data["examples"], run_id="20260101-000001-circle")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.jpg").write_bytes(b"mine")
    for target, says in ((out, "holds an export of run 20260101-000000-circle; pass a new folder"),
                         (foreign, "is not empty and holds no Nanofactory export"),
                         (other / "export", "is inside the run's own folder")):
        assert main(["export", other.name, str(target), "--runs-dir", str(store.root)]) == 1
        assert says in capsys.readouterr().err
    assert (foreign / "keep.jpg").read_bytes() == b"mine"


def test_export_writes_array_pools_as_png(tmp_path, shapes_data, monkeypatch):
    """A pool held as arrays (Fashion-MNIST) has no files to copy: its images are written as PNG."""
    import agent.data
    from agent.export import export_run
    from agent.spec import PoolSource
    from knowledge.pools import ImagePool
    from PIL import Image

    pool = write_shapes(tmp_path / "pool", 4, seed=7)
    store = RunStore(tmp_path / "runs")
    run = labeled_run(store, pool, shapes_data["examples"], source=PoolSource(kind="fashion-mnist", split="train"))
    rows = [json.loads(line) for line in (run / "data" / "manifest.jsonl").read_text().splitlines()]
    uids = [r["uid"] for r in rows if r["source"].startswith("folder:")]
    pixels = np.stack([np.asarray(Image.open(pool / uid).convert("L"))[..., None] for uid in uids])
    sha1 = [hashlib.sha1(p.tobytes()).hexdigest() for p in pixels]
    for r in rows:  # the content hash of an array image is of its pixels
        r["sha1"] = sha1[uids.index(r["uid"])] if r["uid"] in uids else r.get("sha1")
    (run / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    in_memory = ImagePool(source="fashion-mnist:train", uids=uids, sha1=sha1, paths=[None] * len(uids), pixels=pixels)
    monkeypatch.setattr(agent.data, "load_source", lambda source, flag="--images": in_memory)
    result = export_run(run, tmp_path / "dataset", ("train",))
    arrays = [it for it in result.items if it.source == "pool"]
    assert arrays and not result.missing and not result.changed
    for it in arrays:
        assert it.name.startswith("train/") and it.name.endswith(".png") and it.origin in uids
        written = np.asarray(Image.open(tmp_path / "dataset" / it.name))
        assert np.array_equal(written, pixels[uids.index(it.origin)][..., 0])
