"""The web app without a browser: its API through gradio_client, sessions, uploads, review, downloads."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agent import app_views
from agent.app_uploads import check_folder, extract_images, save_uploads
from agent.runs import RunStore
from agent.web import WebApp, WebConfig
from knowledge.errors import NanofactoryError
from knowledge.pools import image_files

FIRST_REPLY_S = 2.0  # the target: the first chat reply within 2 s of sending


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, shapes_data):
    import app

    runs = tmp_path_factory.mktemp("web-runs")
    web = WebApp(WebConfig(runs_dir=runs, workspace=shapes_data["pool"].parent, epochs=1))
    demo, url = app.launch(web, port=free_port(), block=False)
    yield web, url
    demo.close()


def client(url: str, **kw):
    from gradio_client import Client

    return Client(url, verbose=False, **kw)


def chat_text(messages: list[dict]) -> str:
    """Every message's text, whether gradio sent it as a string or as content parts."""
    out = []
    for m in messages:
        content = m["content"]
        parts = content if isinstance(content, list) else [content]
        out += [p.get("text", "") if isinstance(p, dict) else str(p) for p in parts]
    return "\n".join(out)


# ---- a finished-looking run folder, for the views ------------------------------------------------


def fake_run(store: RunStore, pool: Path, run_id: str = "20260101-000000-circle") -> Path:
    """design.json, labels, manifest and a C library folder: what the views read, no training."""
    from agent.parse import spec_from_request
    from agent.spec import DataSpec, PoolSource

    spec = spec_from_request("tells apart circles, squares and everything else on an nRF52840",
                             DataSpec(pool=[PoolSource(kind="folder", path=pool)]))
    folder = store.root / run_id
    (folder / "data").mkdir(parents=True)
    (folder / "stages").mkdir()
    (folder / "design.json").write_text(json.dumps({"run_id": run_id, "spec": json.loads(spec.to_json()), "plan": {},
                                                    "decisions": {"planner": "offline"}}))
    uids = [str(p.relative_to(pool)) for p in image_files(pool)[:10]]
    confidence = np.linspace(0.4, 0.98, len(uids))[::-1]  # the last sample is the least sure
    probs = np.stack([[c, (1 - c) * 0.6, (1 - c) * 0.4] for c in confidence]).astype(np.float32)
    split = np.where(confidence < 0.5, "excluded", "train")
    np.savez(folder / "data" / "labels.npz", probs=probs, split=split)
    np.save(folder / "data" / "pool_inputs.npy", np.zeros((len(uids), 16, 16, 3), np.uint8))
    rows = [{"uid": u, "source": "pool", "label": "circle", "confidence": float(c),
             "split": "train" if c >= 0.5 else "low-confidence"} for u, c in zip(uids, confidence)]
    (folder / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "stages" / "data.json").write_text('{"seconds": 0.5}')
    (folder / "compiled" / "c").mkdir(parents=True)
    (folder / "compiled" / "c" / "model.c").write_text("int nf_model;\n")
    (folder / "compiled" / "c" / "model.h").write_text("#define NF_ARENA_SIZE 1024\n")
    (folder / "compiled" / "labels.txt").write_text("circle\nsquare\nother\n")
    (folder / "compiled" / "arduino" / "Nanofactory_x" / "src").mkdir(parents=True)
    (folder / "compiled" / "arduino" / "Nanofactory_x" / "library.properties").write_text("name=Nanofactory_x\n")
    (folder / "model_int8.onnx").write_bytes(b"onnx")
    store.record(run_id, "done", spec.device, spec.request)
    return folder


def test_review_queue_lowest_confidence_first_and_labels_are_stored(tmp_path, shapes_data):
    store = RunStore(tmp_path / "runs")
    folder = fake_run(store, shapes_data["pool"])
    web = WebApp(WebConfig(runs_dir=store.root))
    session = web.session("tab-1")
    session.open_run(folder.name)
    first = session.start_review()
    assert first.index == 9 and first.guesses[0] == ("circle", pytest.approx(0.4))
    assert not first.used_for_training
    assert [i.index for i in session.review] == list(range(9, -1, -1))
    assert app_views.review_image(folder, first).size[0] >= 96  # the original file, upscaled for a person
    note = session.label("square")
    assert "1 human label" in note and "Retrain on my answers" in note
    stored = json.loads((folder / "data" / "human_labels.json").read_text())["labels"]
    assert stored[first.uid]["label"] == "square" and stored[first.uid]["teacher_guess"] == "circle"
    assert not list((folder / "data").glob("*.tmp"))
    assert "Skipped" in session.label(None)
    now = session.review[0].uid
    assert "was answered already" in session.label("circle", first.uid)  # a second click on the image gone
    assert session.review[0].uid == now and "Saved 'circle'" in session.label("circle", now)
    assert first.uid not in [i.uid for i in web.session("tab-2").start_review() or []]  # labeled: out of the queue
    assert app_views.review_queue(folder)[0].uid != first.uid


def test_the_web_review_queue_refills_after_each_round(tmp_path, shapes_data, monkeypatch):
    """A round answered, the next one is picked with its answers (agent.review.relabel) and never repeats one."""
    store = RunStore(tmp_path / "runs")
    folder = fake_run(store, shapes_data["pool"])
    monkeypatch.setattr(app_views, "REVIEW_LIMIT", 4)
    fresh = []
    monkeypatch.setattr(app_views, "relabel", lambda run_dir: fresh.append(run_dir))  # no cached vectors: None
    session = WebApp(WebConfig(runs_dir=store.root)).session("tab-1")
    session.open_run(folder.name)
    session.start_review()
    first = [i.index for i in session.review]
    notes = [session.label(label) for label in ("circle", None, "square", "circle")]
    assert len(first) == 4 and fresh == [folder]
    assert "picked with the 3 answers of this round" in notes[-1]
    second = [i.index for i in session.review]
    assert len(second) == 4 and not set(first) & set(second)  # the skipped one is not asked again either


def test_a_run_building_elsewhere_is_followed_and_a_stage_ending_keeps_the_review(tmp_path, shapes_data):
    """After a reload the build runs on in the index: opening it follows its stages until it ends, and
    a stage finishing mid-review keeps the queue (the skipped sample came back, the status line went)."""
    store = RunStore(tmp_path / "runs")
    folder = fake_run(store, shapes_data["pool"])
    store.record(folder.name, "running")
    session = WebApp(WebConfig(runs_dir=store.root)).session("reloaded-tab")
    session.open_run(folder.name)
    followed = session.watch(folder.name, poll=0.01)
    snap = next(followed)
    assert snap.status == "running" and [r.state for r in snap.stages][:2] == ["done", "running"]  # was "waiting"
    first = session.start_review()
    session.label(None)
    (folder / "stages" / "teacher.json").write_text('{"seconds": 1.0}')
    assert [r.state for r in next(followed).stages][:3] == ["done", "done", "running"]
    assert session.current_review() is not None and session.current_review().uid != first.uid  # still skipped
    store.record(folder.name, "done")
    assert next(followed).status == "done" and next(followed, None) is None  # the run ended: so does the stream
    other = fake_run(store, shapes_data["pool"], "20260101-000001-circle")
    session.open_run(other.name)
    assert session.current_review().uid == first.uid  # another run: a fresh queue


def test_a_message_cut_or_sent_mid_turn_is_said_in_the_chat(tmp_path, monkeypatch):
    import threading

    session = WebApp(WebConfig(runs_dir=tmp_path / "runs")).session("tab")
    release = threading.Event()
    monkeypatch.setattr(session, "_turn", lambda text, resume: release.wait(10))
    assert session.send("cats " * 1000)
    assert "cut to its first 4,000 characters" in session.messages[-1]["content"]
    assert not session.send("and make it smaller")
    assert "Send this one again when it ends" in session.messages[-1]["content"]
    release.set()
    assert session.wait(10)


def test_review_queue_alternates_uncertain_images_and_spot_checks(tmp_path, shapes_data):
    from agent.review import SPOT_CHECK, UNCERTAIN, review_queue, save_human_label

    folder = fake_run(RunStore(tmp_path / "runs"), shapes_data["pool"])
    (folder / "index").mkdir()
    np.save(folder / "index" / "pool_vectors.npy", np.eye(10, 8, dtype=np.float16))
    items = review_queue(folder, 5)
    assert [i.reason for i in items] == [UNCERTAIN, SPOT_CHECK, UNCERTAIN, SPOT_CHECK, UNCERTAIN]
    uncertain = [i.index for i in items if i.reason == UNCERTAIN]
    assert uncertain[0] == 9  # the least sure first
    assert len({i.index for i in items}) == 5
    assert items == review_queue(folder, 5)  # seeded
    save_human_label(folder, items[1], "square")
    stored = json.loads((folder / "data" / "human_labels.json").read_text())["labels"]
    assert stored[items[1].uid]["picked"] == SPOT_CHECK
    assert items[1].index not in [i.index for i in review_queue(folder, 5)]


def test_downloads_zip_the_c_library(tmp_path, shapes_data):
    folder = fake_run(RunStore(tmp_path / "runs"), shapes_data["pool"])
    files = app_views.downloads(folder, tmp_path / "out")
    assert [p.name for p in files] == [f"{folder.name}-model_int8.onnx", f"{folder.name}-c-library.zip",
                                       f"{folder.name}-arduino.zip", f"{folder.name}-labels.txt",
                                       f"{folder.name}-image-labels.csv"]
    rows = files[4].read_text().splitlines()  # every image the run labeled, a person's answer applied
    assert rows[0] == "image,label,confidence,split,labeled_by,source" and len(rows) == 11
    answered = rows[-1].split(",")[0]  # the least sure, left out of training
    assert rows[-1].endswith(",low-confidence,teacher,pool")
    (folder / "data" / "human_labels.json").write_text(json.dumps({"labels": {answered: {"label": "square"}}}))
    assert app_views.downloads(folder, tmp_path / "out")[4].read_text().splitlines()[-1] == \
        f"{answered},square,1.0000,train,person,pool"
    with zipfile.ZipFile(files[2]) as z:
        assert z.namelist() == ["Nanofactory_x/library.properties"]
    with zipfile.ZipFile(files[1]) as z:
        assert sorted(z.namelist()) == [f"{folder.name}-c/model.c", f"{folder.name}-c/model.h"]
    assert app_views.stage_rows(folder, running=True)[1].state == "running"  # data done, the next one runs


def test_the_results_table_names_the_weakest_class(tmp_path, shapes_data):
    folder = fake_run(RunStore(tmp_path / "runs"), shapes_data["pool"])
    assert app_views.metrics_rows(folder) == []  # not built yet
    per_class = {"circle": {"precision": 0.9, "recall": 0.95, "f1": 0.92, "support": 40},
                 "square": {"precision": 0.5, "recall": 0.25, "f1": 0.33, "support": 40}}
    (folder / "metrics.json").write_text(json.dumps({
        "device": "nRF52840", "evaluated_on": "test", "student_int8_test_accuracy": 0.8,
        "student_fp32_test_accuracy": 0.81, "oracle_int8_test_accuracy": None, "teacher_label_accuracy": None,
        "int8_fp32_top1_agreement": 0.99, "weight_bytes": 9000, "flash_bytes_budget": 1 << 20,
        "sram_estimate_bytes": 8000, "sram_bytes_budget": 1 << 18, "macs": 300_000, "latency_estimate_ms": 4.0,
        "latency_floor_ms": 21.5, "instructions_per_inference": 1_376_000, "per_class": per_class}))
    rows = dict(app_views.metrics_rows(folder))
    assert rows["weakest class (int8)"] == "square: recall 25.0 %, precision 50.0 %"
    assert rows["mean F1 over the outputs"] == "62.5 %"
    assert rows["latency, this C library"] == "at least 21.5 ms (1.38 M instructions on the emulated core)"


def test_zip_uploads_keep_images_inside_the_target(tmp_path):
    archive = tmp_path / "pool.zip"
    data = b"\x89PNG (the suffix decides; the pool loader checks the pixels later)"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("shots/cats/a.png", "shots/dogs/b.PNG", "shots/../../evil.png", "/abs.png", "shots/.hidden.png",
                     "__MACOSX/shots/c.png", "shots/notes.txt"):
            z.writestr(name, data)
    target = tmp_path / "out"
    assert extract_images(archive, target) == 2
    assert sorted(str(p.relative_to(target)) for p in image_files(target)) == ["cats/a.png", "dogs/b.PNG"]
    assert not (tmp_path / "evil.png").exists()
    (tmp_path / "broken.zip").write_text("not a zip")
    with pytest.raises(NanofactoryError, match="not a readable zip"):
        extract_images(tmp_path / "broken.zip", target)
    with pytest.raises(NanofactoryError, match="Name the class"):
        save_uploads([archive], tmp_path / "ex", class_name="../up")
    for name in ("x" * 300, "cat\x00dog"):  # the file system's "name too long" and "embedded null byte" before
        with pytest.raises(NanofactoryError, match="Name the class"):
            save_uploads([archive], tmp_path / "ex", class_name=name)


def test_the_whole_disk_or_home_is_not_taken_for_an_image_folder(tmp_path, monkeypatch):
    """"/" or "~" in a folder box would walk every file on the machine (and let the agent read them): one
    sentence instead, before any walk."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for path, says in (("/", "the whole disk"), ("~", "your home folder"), (str(tmp_path), "your home folder")):
        with pytest.raises(NanofactoryError, match=f"is {says}; name the folder that holds the images"):
            check_folder(path, "images", tmp_path / "workspace")


def test_class_zips_need_class_folders_and_a_failed_upload_leaves_no_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "loose.zip", "w") as z:
        z.writestr("a.png", "picture")
        z.writestr("cat/b.png", "picture")
    target = tmp_path / "uploads" / "session" / "examples"
    with pytest.raises(NanofactoryError, match="a.png in loose.zip sits in no class folder; type the class"):
        save_uploads([tmp_path / "loose.zip"], target, by_class=True)
    assert not (tmp_path / "uploads").exists()  # it left uploads/session/examples behind, empty
    assert save_uploads([tmp_path / "loose.zip"], target, class_name="cat", by_class=True) == 2  # the class typed
    assert save_uploads([tmp_path / "loose.zip"], tmp_path / "pool") == 2  # a pool needs no classes
    with zipfile.ZipFile(tmp_path / "one.zip", "w") as z:  # a zip of the folder "dog": the folder is the class
        z.writestr("dog/c.png", "picture")
    assert save_uploads([tmp_path / "one.zip"], target, by_class=True) == 1 and (target / "dog" / "c.png").is_file()
    (tmp_path / "notes.txt").write_text("no image")
    with pytest.raises(NanofactoryError, match="No images in that upload"):
        save_uploads([tmp_path / "notes.txt"], tmp_path / "u2" / "test", class_name="cat", by_class=True)
    assert not (tmp_path / "u2").exists()


def test_a_second_zip_adds_beside_the_first_and_a_damaged_one_adds_nothing(tmp_path):
    target = tmp_path / "out"
    for i in (1, 2):  # two cameras' cards: the same file names, other pictures
        with zipfile.ZipFile(tmp_path / f"cam{i}.zip", "w") as z:
            for n in range(3):
                z.writestr(f"DCIM/IMG_{n}.png", f"camera {i} picture {n}")
        assert extract_images(tmp_path / f"cam{i}.zip", target) == 3
    assert len(image_files(target)) == 6  # it was 3: the second zip wrote over the first
    with zipfile.ZipFile(tmp_path / "crc.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("ok.png", "fine")
        z.writestr("x.png", "picture bytes")
    raw = bytearray((tmp_path / "crc.zip").read_bytes())
    raw[raw.index(b"picture bytes")] ^= 1  # one flipped bit: a bad CRC-32
    (tmp_path / "crc.zip").write_bytes(bytes(raw))
    with pytest.raises(NanofactoryError, match="x.png in crc.zip is damaged; nothing of the zip was added"):
        extract_images(tmp_path / "crc.zip", target)
    assert len(image_files(target)) == 6  # ok.png was taken back out
    with zipfile.ZipFile(tmp_path / "clash.zip", "w") as z:
        z.writestr("a.png", "file")
        z.writestr("a.png/b.png", "a file inside a 'folder' of the same name")
    with pytest.raises(NanofactoryError, match="cannot be saved here"):
        extract_images(tmp_path / "clash.zip", tmp_path / "clash")


# ---- the API, through gradio_client --------------------------------------------------------------


def test_first_reply_is_a_question_within_two_seconds(server, shapes_data):
    web, url = server
    c = client(url)
    summary = c.predict(str(shapes_data["pool"]), str(shapes_data["examples"]), "", api_name="/use_folders")
    assert "240 images" in summary and "circle 3" in summary
    started = time.perf_counter()
    out = c.predict("tells apart circles, squares, triangles and everything else", None, 1, api_name="/send")
    latency = time.perf_counter() - started
    print(f"first reply over the API: {latency:.2f} s")
    assert latency <= FIRST_REPLY_S
    assert out[0] in ("", {"__type__": "update"})  # the box is cleared once, then left to what the person types
    assert "Which device" in chat_text(out[1])
    assert not web.store().list()  # asking builds nothing


def test_open_a_past_run_and_download_the_c_library(server, shapes_data):
    web, url = server
    folder = fake_run(web.store(), shapes_data["pool"], "20260101-000001-square")
    c = client(url)
    runs, _ = c.predict(api_name="/runs")
    assert folder.name in [row[0] for row in runs["data"]]
    out = c.predict(folder.name, api_name="/open_run")
    downloads = out[-4]  # then the report, and the Try it gallery and note
    zipped = [p for p in downloads if p.endswith("c-library.zip")]
    with zipfile.ZipFile(zipped[0]) as z:
        assert f"{folder.name}-c/model.h" in z.namelist()
    assert "data" in out[0] and "1/" in out[0]  # the progress panel: one stage of the fake run done


def test_four_clients_at_once_see_only_their_own_conversation(server, shapes_data):
    """Four sessions design four different models at once (each refused: 1 KB RAM); no cross-talk, no crash."""
    web, url = server
    devices = ["RP2040", "ESP32-S3", "nRF52840", "STM32F446RE"]
    shapes = ["circles", "squares", "triangles", "circles and squares"]
    results, errors = {}, []

    def talk(i: int) -> None:
        try:
            c = client(url)
            c.predict(str(shapes_data["pool"]), "", "", api_name="/use_folders")
            request = f"tells apart {shapes[i]} and everything else on an {devices[i]} with 1 KB RAM"
            results[i] = chat_text(c.predict(request, None, 1, api_name="/send")[1])
        except Exception as e:  # noqa: BLE001  (any failure, reported below with the thread's index)
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 4
    for i, text in results.items():
        assert f"**{devices[i]}**" in text and "cannot build" in text
        assert not any(f"**{d}**" in text for j, d in enumerate(devices) if j != i), text
        assert text.count("tells apart") == 1
    assert all(r.id.startswith("20260101") for r in web.store().list())  # refused: nothing built, only fakes


def test_auth_keeps_strangers_out(shapes_data, tmp_path):
    from gradio_client.exceptions import AuthenticationError

    import app

    web = WebApp(WebConfig(runs_dir=tmp_path / "runs"))
    demo, url = app.launch(web, port=free_port(), auth=("ada", "lovelace"), block=False)
    try:
        with pytest.raises(AuthenticationError):
            client(url)
        assert "/send" in client(url, auth=("ada", "lovelace")).view_api(return_format="dict", print_info=False)[
            "named_endpoints"]
    finally:
        demo.close()


def test_chat_command_checks_web_flags(capsys):
    from agent.cli import main

    assert main(["chat", "--auth", "nopassword", "--no-browser"]) == 1
    assert "USER:PASS" in capsys.readouterr().err
    assert main(["chat", "--thread", "t1", "--no-browser"]) == 1
    assert "--terminal" in capsys.readouterr().err


def test_images_added_after_the_question_reach_the_agent(tmp_path, shapes_data):
    """Asked for images, the person adds a folder and answers: the resumed turn sees the new data."""
    web = WebApp(WebConfig(runs_dir=tmp_path / "runs", workspace=shapes_data["pool"].parent))
    session = web.session("tab")
    assert session.send("tells apart circles and everything else") and session.wait(30)
    assert "Which images" in session.messages[-1]["content"] and "Data & device" in session.messages[-1]["content"]
    assert str(shapes_data["pool"]) in session.use_folder("images", shapes_data["pool"].name)  # from the workspace
    assert session.send("there they are") and session.wait(30)
    assert session.messages[-1]["content"].startswith("Which device")
    assert session.send("", device="RP2040") is False  # nothing to send
    assert [m["role"] for m in session.messages].count("user") == 2


def test_a_folder_named_in_the_chat_shows_under_data(tmp_path, shapes_data):
    web = WebApp(WebConfig(runs_dir=tmp_path / "runs", workspace=shapes_data["pool"].parent))
    session = web.session("tab")
    assert session.send("tells apart circles and everything else") and session.wait(30)
    assert session.send(shapes_data["pool"].name) and session.wait(30)  # the answer to "Which images"
    assert session.messages[-1]["content"].startswith("Which device")  # no "add your images" hint any more
    assert "Data & device" not in session.messages[-1]["content"]
    assert session.data["images"] == str(shapes_data["pool"]) and session.counts["images"].endswith(" images")


def test_a_new_request_while_the_agent_asks_for_images_starts_over(tmp_path, shapes_data):
    from agent.graph import build_graph

    web = WebApp(WebConfig(runs_dir=tmp_path / "runs", workspace=shapes_data["pool"].parent))
    session = web.session("tab")
    assert session.send("tells apart mugs and everything else") and session.wait(30)
    assert "Which images" in session.messages[-1]["content"]
    session.use_folder("images", str(shapes_data["pool"]))
    assert session.send("tells apart circles, squares and everything else") and session.wait(30)
    assert session.messages[-1]["content"].startswith("Which device")
    state = build_graph(session._context(), web.checkpointer()).get_state({"configurable": {"thread_id": session.thread}})
    assert state.values["request"] == "tells apart circles, squares and everything else"  # not mugs and circles
    from agent.web_chat import starts_over

    assert not starts_over(session.messages[-1]["content"], "an RP2040")  # an answer is still an answer
    assert not starts_over("Which classes should the model tell apart?", "cats, dogs and everything else")
    assert not starts_over("What should it recognize?", "it should recognize cats and dogs")  # an LLM's wording


def test_stop_marks_the_build_interrupted_and_resumable(tmp_path, shapes_data):
    web = WebApp(WebConfig(runs_dir=tmp_path / "runs", workspace=shapes_data["pool"].parent, epochs=1))
    session = web.session("tab")
    session.use_folder("images", str(shapes_data["pool"]))
    session.use_folder("examples", str(shapes_data["examples"]))
    assert not session.stop()  # nothing runs
    assert session.send("tells apart circles, squares, triangles and everything else on an nRF52840")
    deadline = time.time() + 60
    while time.time() < deadline and not (session._find_build() and
                                          (tmp_path / "runs" / session.building / "stages" / "teacher.json").exists()):
        time.sleep(0.05)
    assert session.stop()  # mid-build, past the teacher
    assert any(m["content"].startswith("Stopping") for m in session.messages)
    assert session.wait(60)
    (record,) = web.store().list()
    assert record.status == "interrupted"
    assert f"`nanofactory build --resume {record.id}` finishes it" in session.messages[-1]["content"]
    assert not session.stop() and not session.busy


def test_a_session_comes_back_after_the_server_restarted(tmp_path, shapes_data):
    """The browser's token finds its session in a new server process: the chat, the data and the agent's open
    question, which the next answer resumes. Before, sessions lived in the server's memory only."""
    config = WebConfig(runs_dir=tmp_path / "runs", workspace=shapes_data["pool"].parent)
    web = WebApp(config)
    session, token = web.attach("tab", None)
    assert session.send("tells apart circles and everything else") and session.wait(30)
    session.use_folder("images", shapes_data["pool"].name)
    assert session.question and "Which images" in session.messages[-1]["content"]
    session.messages[0]["metadata"] = {"title": "make_spec", "status": "pending"}  # a step cut by the restart
    session.save()

    restarted = WebApp(config)
    again, same = restarted.attach("new-tab", token)
    assert same == token and again is not session and again.id == session.id
    assert [m["content"] for m in again.messages] == [m["content"] for m in session.messages]
    assert again.messages[0]["metadata"]["status"] == "done"  # not a spinner forever
    assert again.data == session.data and again.question == session.question and again.roots == session.roots
    assert again.send("there they are") and again.wait(30)
    assert again.messages[-1]["content"].startswith("Which device")  # the agent's thread went on, with the data
    saved = list((tmp_path / "runs" / "web-sessions").glob("*.json"))
    assert len(saved) == 1 and token not in saved[0].name

    # the page encrypts the token in the browser with this key: a new server must read what the old one stored
    assert restarted.browser_secret() == web.browser_secret() == WebApp(config).browser_secret()
    assert (tmp_path / "runs" / "web-sessions" / "secret").stat().st_mode & 0o777 == 0o600

    saved[0].write_text('{"id": "x", "messages": "not a list"}')  # a file this version cannot read: a new session
    fresh, other = WebApp(config).attach("tab-3", token)
    assert fresh.messages == [] and other != token


def test_a_bug_in_a_turn_is_one_line_in_the_chat(tmp_path, monkeypatch):
    import agent.graph

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(agent.graph, "build_graph", broken)
    session = WebApp(WebConfig(runs_dir=tmp_path / "runs")).session("tab")
    assert session.send("tells apart circles and everything else") and session.wait(30)
    assert session.messages[-1]["content"].startswith("⚠ The agent stopped on an internal error (RuntimeError: boom)")
    assert not session.busy and session.send("again")  # the page goes on


def test_a_build_running_when_the_server_stops_is_marked_interrupted(tmp_path):
    """Its thread dies with the server: before, the index said "running" forever and every new tab was
    offered to follow it."""
    web = WebApp(WebConfig(runs_dir=tmp_path / "runs"))
    store = web.store()
    for run_id, status in (("r-building", "running"), ("r-done", "done")):
        store.record(run_id, status)
    gate = threading.Event()
    session = web.session("tab")
    session._worker = threading.Thread(target=gate.wait, daemon=True)
    session._worker.start()
    session.building = "r-building"
    idle = web.session("tab2")
    idle.building = "r-done"  # not busy: nothing of its is touched
    web.close()
    gate.set()
    assert store.find("r-building").status == "interrupted" and "--resume r-building" in store.find("r-building").message
    assert store.find("r-done").status == "done"


@pytest.mark.slow
def test_retrain_on_the_answers_from_the_page(tmp_path, shapes_data):
    """Answers given in the review tab train a new run from the page, as `review --retrain` does in a terminal:
    followed like a build, with what the answers changed in the chat. Before, the page sent people to a terminal."""
    web = WebApp(WebConfig(runs_dir=tmp_path / "runs", workspace=shapes_data["pool"].parent, epochs=1))
    session = web.session("tab")
    assert not session.retrain() and session.messages[-1]["content"].startswith("Open a run first")
    session.use_folder("images", str(shapes_data["pool"]))
    session.use_folder("examples", str(shapes_data["examples"]))
    assert session.send("tells apart circles, squares, triangles and everything else on an nRF52840")
    assert session.wait(600) and session.viewing
    parent = session.viewing
    assert not session.retrain() and "no answers for" in session.messages[-1]["content"]
    for _ in range(2):
        item = session.current_review()
        assert "Retrain on my answers" in session.label(item.guesses[0][0], item.uid)
    assert session.retrain()
    child = session.building
    assert child != parent and session.run_ids[-1] == child and session.snapshot().run_id == child
    assert not session.retrain() and "Press Retrain again when it ends" in session.messages[-1]["content"]
    assert session.wait(600) and not session.busy and session.viewing == child
    record = web.store().get(child)
    design = json.loads((tmp_path / "runs" / child / "design.json").read_text())
    assert record.status == "done" and design["decisions"]["parent"] == parent
    assert json.loads((tmp_path / "runs" / child / "stages" / "label.json").read_text())["human_labels"] == 2
    rows = {row[0]: row for row in web.past_runs()}
    assert rows[child][5].startswith(f"retrained from {parent} on its answers: tells apart circles")
    assert rows[parent][5].startswith("tells apart circles")
    reply = session.messages[-1]["content"]
    assert reply.startswith(f"Built run {child}") and "student int8 test accuracy: " in reply and " -> **" in reply

    assert session.retrain()  # again, on the child's answers (copied from its parent), and stopped as a build is
    grandchild = session.building
    while session.busy and not (tmp_path / "runs" / grandchild / "stages" / "teacher.json").exists():
        time.sleep(0.05)
    assert session.stop() and session.wait(120)
    assert web.store().get(grandchild).status == "interrupted"
    assert f"`nanofactory build --resume {grandchild}` finishes it" in session.messages[-1]["content"]


def test_uploads_after_a_build_go_to_a_copy(tmp_path, shapes_data):
    """A run's pool stays as it was built: later uploads land in a copy that the next build uses."""
    web = WebApp(WebConfig(runs_dir=tmp_path / "runs"))
    session = web.session("tab")
    files = [str(p) for p in image_files(shapes_data["pool"])[:3]]
    assert session.add_upload("images", files[:2]) == "Added 2 images to pool."
    first = Path(session.data["images"])
    session._add_run("some-run")  # what a build started from this session records
    session.add_upload("images", files)  # the two already saved are skipped
    second = Path(session.data["images"])
    assert second != first and len(image_files(first)) == 2 and len(image_files(second)) == 3
    with pytest.raises(NanofactoryError, match="Which class"):
        session.add_upload("examples", files[:1])
    session.add_upload("examples", files[:1], "circle")
    assert session.counts["examples"] == "circle 1"
    with pytest.raises(NanofactoryError, match="These files were added already"):  # was "Choose some image files"
        session.add_upload("examples", files[:1], "square")


def test_remove_a_past_run_from_the_page_asks_first(server, shapes_data):
    """Remove names the run and its size and deletes nothing; Delete removes folder and index entry and
    empties the panels that showed it; a run being built is refused at the question."""
    web, url = server
    store = web.store()
    folder = fake_run(store, shapes_data["pool"], "20260101-000002-square")
    building = fake_run(store, shapes_data["pool"], "20260101-000003-square")
    (building / ".building").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    c = client(url)
    c.predict(api_name="/runs")
    c.predict(folder.name, api_name="/open_run")
    question = c.predict(folder.name, api_name="/ask_remove")
    assert question.startswith(f"Delete run **{folder.name}** and its folder (") and "KB)" in question
    assert folder.is_dir() and folder.name in [r.id for r in store.list()]
    table, pick, box, *views = c.predict(api_name="/remove_run")
    assert not folder.exists() and folder.name not in [r.id for r in store.list()]
    assert folder.name not in [row[0] for row in table["data"]] and folder.name not in pick["choices"]
    assert "No build yet" in box and views[-3] == app_views.NO_REPORT  # the panels no longer show it
    assert building.name not in (c.predict(building.name, api_name="/ask_remove") or "")  # refused: not asked
    c.predict(api_name="/remove_run")  # nothing asked about: nothing removed
    assert building.is_dir() and building.name in [r.id for r in store.list()]
    (building / ".building").unlink()
    store.remove(building.name)  # the module's server is shared: leave its runs as they were
