"""Nanofactory's web page: a chat with the agent beside the build it runs.

    python app.py [--port 7860] [--share] [--auth USER:PASS]     same as `nanofactory chat`

Thin on purpose: the sessions, the agent turns and everything shown of a run come from
``agent.web`` and ``agent.app_views``; this file lays out the page and wires its events.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: it must not call out

import gradio as gr

from agent import app_views
from agent.review import SPOT_CHECK, load_human_labels
from agent.web import WebApp, WebSession
from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)
PLOT_BUTTONS = ["download", "fullscreen"]  # not "share": it only errs off Hugging Face Spaces
LABEL_SLOTS = 12  # review buttons: one per class (and "other"); hidden when a run has fewer
REQUESTS = [
    "a pet-door camera that tells apart cats, dogs and everything else on an nRF52840",
    "sort shirts, bags and everything else on an ESP32-S3 with 256 KB RAM",
    "tells apart circles, squares, triangles and everything else",
]
CSS = """
#nf-head h1{font-size:22px;margin:0}#nf-head p{margin:2px 0 0;color:var(--body-text-color-subdued)}
.nf-progress{border:1px solid var(--border-color-primary);border-radius:8px;padding:10px 14px;background:var(--block-background-fill)}
.nf-head{display:flex;justify-content:space-between;font-size:14px}.nf-head span{color:var(--body-text-color-subdued)}
.nf-bar{height:6px;background:var(--border-color-primary);border-radius:3px;margin:6px 0 8px;overflow:hidden}
.nf-bar div{height:100%;background:var(--color-accent);transition:width .4s}
.nf-progress table{width:100%;border-collapse:collapse;font-size:13px;border:none!important;margin:0}
.nf-progress tr,.nf-progress td{padding:2px 6px!important;border:none!important;background:none!important}
.nf-progress td.icon{width:18px;text-align:center}.nf-progress td.stage{font-weight:600;width:80px}
.nf-progress td.secs{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.nf-progress td.note{color:var(--body-text-color-subdued)}
.nf-progress tr.waiting{opacity:.45}.nf-progress tr.done td.icon{color:#2e8b57}.nf-progress tr.failed{color:#c0392b}
.nf-progress tr.running td.icon{color:var(--color-accent);animation:nfpulse 1s infinite}
@keyframes nfpulse{50%{opacity:.2}}.nf-message{color:#c0392b;margin:6px 0 0}.nf-muted{color:var(--body-text-color-subdued)}
iframe.nf-report{width:100%;height:900px;border:1px solid var(--border-color-primary);border-radius:8px;background:#fff}
"""
TRY_NOTE = ("Drop photos here to see what the open run's model answers on each, as the board would "
            "(its C library, the same integers as TFLite Micro).")
IDLE = ("<div class='nf-progress'><div class='nf-head'><b>No build yet</b><span>stages appear here</span></div>"
        "<p class='nf-muted'>Describe the model in the chat; add your images under <b>Data &amp; device</b>.</p></div>")


class Page:
    """The page's event handlers for one WebApp; each finds the tab's session by its gradio session hash."""

    def __init__(self, web: WebApp):
        self.web = web
        self.views: list = []  # the components _views fills, in order (set by build_ui)

    def session(self, request: gr.Request) -> WebSession:
        return self.web.session(request.session_hash)

    def review(self, session: WebSession, item, status: str = "") -> list:
        folder = session.run_dir()
        names = app_views.label_names(folder) if folder and (folder / "design.json").is_file() else []
        choices = names + ([] if "other" in names else ["other"]) if names else []
        buttons = [gr.update(value=choices[i], visible=True) if i < len(choices) and item else gr.update(visible=False)
                   for i in range(LABEL_SLOTS)]
        retrain = gr.update(visible=has_answers(folder))
        if item is None:
            info = ("The queue is empty: every sample offered was answered or skipped; open the run again for more."
                    if session.review == [] and
                    folder and (folder / "data" / "labels.npz").is_file() else
                    "No samples to review yet: the queue fills once the **label** stage has run.")
            return [None, info, *buttons, gr.update(visible=False), status, retrain, None]
        guesses = ", ".join(f"{n} {p:.2f}" for n, p in item.guesses)
        used = "trained on with the teacher's label" if item.used_for_training else "left out of training (unsure)"
        why = "  \nspot check: drawn at random, to measure the labels" if item.reason == SPOT_CHECK else ""
        info = (f"**{item.uid}**{why}  \nteacher's guesses: {guesses}  \n{used}  \n"
                f"{len(session.review)} in the queue: which class is it?")
        return [app_views.review_image(folder, item), info, *buttons, gr.update(visible=True), status, retrain, item.uid]

    def run_views(self, session: WebSession, fresh_review: bool = True) -> list:
        """Values for self.views: everything the panels show of the session's current run. ``fresh_review``
        False (a stage finished while the panels show the run) keeps the review queue and its status line."""
        folder = session.run_dir()
        if folder is None or not (folder / "design.json").is_file():
            return [[], *self.review(session, None), None, None, None, [], None, app_views.NO_REPORT, None, TRY_NOTE]
        files = app_views.downloads(folder, self.web.files_dir(session.id) / folder.name)
        review = self.review(session, session.start_review()) if fresh_review else \
            self.review(session, session.current_review(), gr.skip())
        return [app_views.samples(folder), *review,
                app_views.training_curve(folder), app_views.confusion_matrix(folder), app_views.layer_profile(folder),
                app_views.metrics_rows(folder), [str(p) for p in files] or None, app_views.report_iframe(folder),
                None, TRY_NOTE]

    def runs_table(self) -> tuple:
        rows = self.web.past_runs()
        return rows, gr.update(choices=[r[0] for r in rows])

    def send(self, text: str, device: str | None, epochs: float | None, request: gr.Request):
        session = self.session(request)
        was_busy = session.busy
        started = session.send(text, device=device or None, epochs=round(epochs) if epochs else None)
        if not started and was_busy:  # the stream of the running turn goes on showing the chat, this reply included
            snap = session.snapshot()
            yield [gr.skip(), snap.messages, *[gr.skip()] * (len(self.views) + 4)]  # the text stays, to send later
            return
        box = ""
        for values in self.following_turn(session):
            yield [box, *values]
            box = gr.skip()  # cleared once: what the person types during the build stays

    def following_turn(self, session: WebSession):
        """The chat, the progress, the panels, the past runs and the tabs while a turn or a retrain runs; the
        Results tab is shown when it built a run that finished."""
        built = False
        for snap, views in self.following(session):
            built = built or (snap.busy and snap.run_id is not None)
            end = not snap.busy
            yield [snap.messages, progress(snap), *views, *(self.runs_table() if end else (gr.skip(), gr.skip())),
                   gr.Tabs(selected="results") if end and built and snap.status == "done" else gr.skip()]

    def following(self, session: WebSession, shown: tuple | None = None):
        """(snapshot, panel values) while the session's turn runs; the panels render again when a stage
        finishes (the review queue kept), else they are left as they are."""
        for snap in session.follow():
            views = [gr.skip()] * len(self.views)
            if snap.run_id and snap.view_key != shown:
                try:
                    views, shown = self.run_views(session, fresh_review=False), snap.view_key
                except Exception:  # a panel that cannot render must not stop the chat and the progress
                    log.exception("rendering run %s", snap.run_id)
            yield snap, views

    def upload(self, kind: str):
        def handler(files, class_name, request: gr.Request) -> str:
            session = self.session(request)
            paths = [f if isinstance(f, str) else f.name for f in (files or [])]
            try:
                note = session.add_upload(kind, paths, class_name if kind != "images" else None)
            except NanofactoryError as e:
                note = f"⚠ {e}"
            return f"{note}\n\n{session.data_summary()}"
        return handler

    def folders(self, images: str, examples: str, test: str, request: gr.Request) -> str:
        session = self.session(request)
        notes = []
        for kind, path in (("images", images), ("examples", examples), ("test", test)):
            if path and path.strip():
                try:
                    notes.append(session.use_folder(kind, path))
                except NanofactoryError as e:
                    notes.append(f"⚠ {e}")
        return "\n".join(f"- {n}" for n in notes) + f"\n\n{session.data_summary()}"

    def label(self, label: str | None, shown: str | None, request: gr.Request) -> list:
        session = self.session(request)
        status = session.label(label, shown)
        return self.review(session, session.review[0] if session.review else None, status)

    def skip(self, shown: str | None, request: gr.Request) -> list:
        return self.label(None, shown, request)

    def open(self, run_id: str | None, request: gr.Request):
        """Show a run from the index; one still running is followed stage by stage until it ends."""
        session = self.session(request)
        if not run_id:
            yield [gr.skip()] * (len(self.views) + 1)
            return
        if session.building and run_id != session.building:
            gr.Warning(f"The panels follow your build {session.building} until it ends; open {run_id} then, "
                       "or in another tab.")
            yield [gr.skip()] * (len(self.views) + 1)
            return
        try:
            session.open_run(run_id)
        except NanofactoryError as e:
            yield [f"<p class='nf-message'>{e}</p>"] + [gr.skip()] * len(self.views)
            return
        shown = None
        for snap in session.watch(run_id):
            views = [gr.skip()] * len(self.views)
            if snap.view_key != shown:
                views = self.run_views(session, fresh_review=shown is None)
                shown = snap.view_key
            yield [progress(snap), *views]

    def retrain(self, request: gr.Request):
        """A new run trained on this tab's review answers, followed like a build (the chat says why when it cannot)."""
        session = self.session(request)
        if not session.retrain():
            yield [session.snapshot().messages, *[gr.skip()] * (len(self.views) + 4)]
            return
        yield from self.following_turn(session)

    def try_images(self, files, request: gr.Request) -> tuple:
        """The open run's model on the uploaded images, as the board would answer: a caption per image."""
        from agent.predict import predict

        folder = self.session(request).run_dir()
        paths = [f if isinstance(f, str) else f.name for f in (files or [])]
        if not paths:
            return None, TRY_NOTE
        if folder is None:
            return None, "Open a run first (build one, or pick one under **Past runs**)."
        try:
            p = predict(folder, [Path(f) for f in paths])
        except NanofactoryError as e:
            return None, f"⚠ {e}"
        captions = [f"{label} {100 * row.max():.0f} %" for label, row in zip(p.labels, p.probs)]
        skipped = f" Skipped {len(p.skipped)} unreadable file{'s' if len(p.skipped) != 1 else ''}." if p.skipped else ""
        return (list(zip(p.images, captions)),
                f"{len(p.images)} image{'s' if len(p.images) != 1 else ''} through {p.engine}, of run "
                f"{folder.name}, each prepared as training prepared its images.{skipped}")

    def stop(self, request: gr.Request) -> None:
        """Stop this tab's build (the chat, followed by the running stream, says when it has stopped)."""
        if not self.session(request).stop():
            gr.Info("No build of yours is running.")

    def ask_remove(self, run_id: str | None) -> list:
        """Remove asks first, naming the run and its size; nothing is deleted until Delete is pressed."""
        hide = [gr.update(visible=False), gr.skip(), None]
        if not run_id:
            gr.Warning("Pick a run in the table first, then press Remove.")
            return hide
        store = self.web.store()
        try:
            size = store.disk_bytes(run_id)
        except NanofactoryError as e:
            gr.Warning(str(e))
            return hide
        if store.builder(run_id) is not None:
            gr.Warning(f"Run {run_id} is being built; stop it first (Stop, in the tab that started it), then remove it.")
            return hide
        return [gr.update(visible=True), f"Delete run **{run_id}** and its folder ({disk_size(size)})? This cannot be "
                "undone.", run_id]

    def remove(self, run_id: str | None, request: gr.Request) -> list:
        """Delete the run asked about, folder and index entry; the table, and empty panels where they showed it."""
        session = self.session(request)
        done = [gr.update(visible=False), None]
        if not run_id:
            return [*done, *[gr.skip()] * (len(self.views) + 3)]
        shown = session.viewing == run_id
        try:
            freed = self.web.remove_run(run_id)
        except NanofactoryError as e:
            gr.Warning(str(e))
            return [*done, *[gr.skip()] * (len(self.views) + 3)]
        gr.Info(f"Removed run {run_id}: {disk_size(freed)} freed.")
        rows, pick = self.runs_table()
        views = self.run_views(session) if shown else [gr.skip()] * len(self.views)
        return [*done, rows, pick, IDLE if shown else gr.skip(), *views]

    def pick(self, evt: gr.SelectData) -> str:
        return evt.row_value[0]

    def load(self, token: str | None, request: gr.Request):
        """A tab opens: a reload (or the tab opened again) comes back to its browser's session, with its
        chat, data, run and a build still running, followed to the end; a new one starts empty and is
        offered any build running elsewhere."""
        session, token = self.web.attach(request.session_hash, token)
        rows = self.web.past_runs()
        running = [r[0] for r in rows if r[1] == "running"]
        snap = session.snapshot()
        box = progress(snap) if snap.run_id or not running else (
            f"<div class='nf-progress'><div class='nf-head'><b>Run {running[0]} is building</b><span>"
            f"{len(running)} running</span></div><p class='nf-muted'>Press <b>Open</b> under <b>Past runs</b> to "
            "follow it.</p></div>")
        pick = gr.update(choices=[r[0] for r in rows], value=snap.run_id or (running[0] if running else None))
        views = self.run_views(session) if snap.run_id else [gr.skip()] * len(self.views)
        yield [session.data_summary(), rows, pick, box, snap.messages, token, *views]
        if not session.busy:
            return
        for snap, views in self.following(session, snap.view_key):  # the turn (a build) begun before the reload
            table = self.runs_table() if not snap.busy else (gr.skip(), gr.skip())
            yield [gr.skip(), *table, progress(snap), snap.messages, gr.skip(), *views]

    def unload(self, request: gr.Request) -> None:
        self.web.drop(request.session_hash)


def disk_size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{max(1, n // 1024)} KB"


def has_answers(folder) -> bool:
    """Whether the Retrain button shows: once the run has an answer (or an answers file it cannot read, which
    pressing it then names)."""
    try:
        return bool(folder and load_human_labels(folder))
    except NanofactoryError:
        return True


def progress(snap) -> str:
    if not snap.run_id:
        return IDLE
    title = f"Run {snap.run_id}" + (f" — {snap.status}" if snap.status and not snap.busy else "")
    return app_views.progress_html(snap.stages, title, snap.message if snap.status in ("failed", "crashed") else None,
                                   snap.elapsed)


def build_ui(web: WebApp) -> gr.Blocks:
    """The page: chat on the left; progress, data, samples and review, plots, results and past runs on the right."""
    from knowledge.devices import list_devices

    page = Page(web)
    with gr.Blocks(title="Nanofactory", analytics_enabled=False, fill_width=True) as demo:
        gr.HTML(f"<div id='nf-head'><h1>Nanofactory</h1><p>Describe a tiny image classifier, give it your images, "
                f"and get an int8 model and a C library for your microcontroller. Planner: "
                f"<b>{web.config.llm.model if web.config.llm else 'offline (no LLM configured)'}</b> · runs in "
                f"<code>{web.config.runs_dir}</code></p></div>")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=420):
                chat = gr.Chatbot(label="Agent", height=600, elem_id="nf-chat", buttons=["copy"], feedback_options=None,
                                  placeholder="**Say what to build**: what it tells apart, on which device, any "
                                              "memory or latency budget. The agent asks for anything missing.")
                with gr.Row():
                    box = gr.Textbox(show_label=False, scale=8, elem_id="nf-input", autofocus=True, max_lines=4,
                                     placeholder="e.g. a pet-door camera that tells apart cats, dogs and everything else")
                    send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="nf-send")
                    stop = gr.Button("Stop", variant="stop", scale=1, min_width=60, elem_id="nf-stop")
                gr.Examples(REQUESTS, inputs=box, label="Example requests")
            with gr.Column(scale=4, min_width=400):
                progress_box = gr.HTML(IDLE, elem_id="nf-progress")
                with gr.Tabs(selected="data") as tabs:
                    with gr.Tab("Data & device", id="data"):
                        device = gr.Dropdown([d.name for d in list_devices()], value=None, label="Target device",
                                             info="added to a request that names none")
                        pool = gr.File(label="Unlabeled images (files or a zip)", file_count="multiple",
                                       file_types=["image", ".zip"], elem_id="nf-pool")
                        with gr.Row():
                            examples = gr.File(label="A few examples per class", file_count="multiple",
                                               file_types=["image", ".zip"], elem_id="nf-examples")
                            test = gr.File(label="Labeled test set (optional)", file_count="multiple",
                                           file_types=["image", ".zip"], elem_id="nf-test")
                        class_name = gr.Textbox(label="Class of the example or test files",
                                                placeholder="e.g. cat; leave empty for a zip with one folder per class")
                        with gr.Accordion("Folders on this machine instead", open=False):
                            images_dir = gr.Textbox(label="Unlabeled images folder")
                            examples_dir = gr.Textbox(label="Examples folder (one subfolder per class)")
                            test_dir = gr.Textbox(label="Test folder (one subfolder per class)")
                            use = gr.Button("Use these folders", size="sm")
                        epochs = gr.Number(web.config.epochs or 8, label="Training epochs", precision=0, minimum=1,
                                           maximum=500, elem_id="nf-epochs")
                        data_md = gr.Markdown(elem_id="nf-data")
                    with gr.Tab("Samples & review", id="review"):
                        gallery = gr.Gallery(label="Auto-labeled samples (label, teacher confidence)", columns=5,
                                             height=320, object_fit="contain", elem_id="nf-gallery")
                        gr.Markdown("**Review queue**: the samples the teacher was least sure of. One click per label.")
                        with gr.Row():
                            review_img = gr.Image(show_label=False, height=230, interactive=False, buttons=[],
                                                  elem_id="nf-review-image")
                            review_info = gr.Markdown(elem_id="nf-review-info")
                        with gr.Row():
                            buttons = [gr.Button(visible=False, size="sm", elem_classes="nf-label") for _ in range(LABEL_SLOTS)]
                            skip = gr.Button("skip", size="sm", variant="secondary", visible=False)
                        review_status = gr.Markdown(elem_id="nf-review-status")
                        retrain = gr.Button("Retrain on my answers", size="sm", variant="primary", elem_id="nf-retrain",
                                            visible=False)
                    with gr.Tab("Plots", id="plots"):
                        gr.Markdown("**Training curve**: loss and validation accuracy per epoch")
                        curve = gr.Image(show_label=False, interactive=False, height=260, elem_id="nf-curve",
                                         buttons=PLOT_BUTTONS)
                        gr.Markdown("**Confusion matrix**: int8 student on the test set")
                        confusion = gr.Image(show_label=False, interactive=False, height=340, elem_id="nf-confusion",
                                         buttons=PLOT_BUTTONS)
                        gr.Markdown("**Per layer**: time on the device, weights (flash) and activations (SRAM)")
                        profile = gr.Image(show_label=False, interactive=False, elem_id="nf-profile",
                                         buttons=PLOT_BUTTONS)
                    with gr.Tab("Results", id="results"):
                        metrics = gr.Dataframe(headers=["metric", "value"], interactive=False, wrap=True,
                                               elem_id="nf-metrics")
                        files = gr.File(label="Downloads: int8 ONNX, .tflite, C library and Arduino library (zips), class names, "
                                              "every image's label (CSV), report",
                                        file_count="multiple", interactive=False, elem_id="nf-downloads")
                        try_files = gr.File(label="Try it: your images through the model", file_count="multiple",
                                            file_types=["image"], elem_id="nf-try")
                        try_note = gr.Markdown(TRY_NOTE, elem_id="nf-try-note")
                        try_gallery = gr.Gallery(show_label=False, columns=5, height=260, object_fit="contain", fit_columns=False,
                                                 elem_id="nf-try-gallery")
                    with gr.Tab("Report", id="report"):
                        report = gr.HTML(app_views.NO_REPORT, elem_id="nf-report")
                    with gr.Tab("Past runs", id="runs"):
                        runs_table = gr.Dataframe(headers=["run", "status", "device", "int8 acc", "KB flash / SRAM",
                                                           "request"], interactive=False, wrap=True, max_height=420,
                                                  column_widths=["24%", "9%", "12%", "9%", "12%", "34%"], elem_id="nf-runs")
                        gr.Markdown("Click a row, then **Open** to show that run's samples, plots, results and "
                                    "report, or **Remove** to delete the run and its folder.")
                        with gr.Row():
                            run_pick = gr.Dropdown(label="Run", choices=[], scale=4, elem_id="nf-run-pick")
                            open_run = gr.Button("Open", scale=1)
                            refresh = gr.Button("Refresh", scale=1, variant="secondary")
                            remove_run = gr.Button("Remove", scale=1, variant="secondary", elem_id="nf-remove")
                        with gr.Row(visible=False, elem_id="nf-remove-ask") as remove_ask:
                            remove_question = gr.Markdown()
                            remove_yes = gr.Button("Delete", variant="stop", scale=0, min_width=80, elem_id="nf-remove-yes")
                            remove_no = gr.Button("Keep", scale=0, min_width=80, elem_id="nf-remove-no")

        shown = gr.State(None)  # the sample on screen: a click answers for it, not for whatever the queue holds now
        review = [review_img, review_info, *buttons, skip, review_status, retrain, shown]
        page.views = [gallery, *review, curve, confusion, profile, metrics, files, report, try_gallery, try_note]
        gr.on([send.click, box.submit], page.send, [box, device, epochs],
              [box, chat, progress_box, *page.views, runs_table, run_pick, tabs], api_name="send",
              concurrency_limit=None, show_progress="hidden", trigger_mode="multiple")  # a send mid-build gets its answer
        stop.click(page.stop, None, None, api_name="stop", show_progress="hidden")
        retrain.click(page.retrain, None, [chat, progress_box, *page.views, runs_table, run_pick, tabs], api_name="retrain",
                      concurrency_limit=None, show_progress="hidden")
        pool.upload(page.upload("images"), [pool, class_name], data_md, api_name="upload_pool")
        examples.upload(page.upload("examples"), [examples, class_name], data_md, api_name="upload_examples")
        test.upload(page.upload("test"), [test, class_name], data_md, api_name="upload_test")
        use.click(page.folders, [images_dir, examples_dir, test_dir], data_md, api_name="use_folders")
        try_files.upload(page.try_images, try_files, [try_gallery, try_note], api_name="try_images")
        for b in buttons:
            b.click(page.label, [b, shown], review, api_name=False, show_progress="hidden")
        skip.click(page.skip, shown, review, api_name=False, show_progress="hidden")
        open_run.click(page.open, run_pick, [progress_box, *page.views], api_name="open_run", show_progress="hidden")
        runs_table.select(page.pick, None, run_pick, api_name=False, show_progress="hidden")
        refresh.click(page.runs_table, None, [runs_table, run_pick], api_name="runs")
        removing = gr.State(None)  # the run the question names: a pick changed since does not move the deletion
        remove_run.click(page.ask_remove, run_pick, [remove_ask, remove_question, removing], api_name="ask_remove")
        remove_yes.click(page.remove, removing, [remove_ask, removing, runs_table, run_pick, progress_box, *page.views],
                         api_name="remove_run", show_progress="hidden")
        remove_no.click(lambda: (gr.update(visible=False), None), None, [remove_ask, removing], api_name=False)
        # a reload finds its session again, after a server restart too (the key is kept in the runs folder)
        token = gr.BrowserState(None, storage_key="nanofactory-session", secret=web.browser_secret())
        demo.load(page.load, token, [data_md, runs_table, run_pick, progress_box, chat, token, *page.views],
                  api_name=False, show_progress="hidden")
        demo.unload(page.unload)
    return demo


def launch(web: WebApp, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           auth: tuple[str, str] | None = None, open_browser: bool = False, block: bool = True) -> tuple[gr.Blocks, str]:
    """Serve the page; the local URL. ``block=False`` returns at once (tests, notebooks)."""
    web.warm_up()
    demo = build_ui(web)
    theme = gr.themes.Default(primary_hue="indigo", font=["system-ui", "-apple-system", "Segoe UI", "sans-serif"],
                              font_mono=["ui-monospace", "SFMono-Regular", "monospace"])
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, auth=auth, inbrowser=open_browser,
                            prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False, mcp_server=False,
                            enable_monitoring=False, theme=theme, css=CSS)
    print(f"Nanofactory web app: {url}" + (f" (public: {demo.share_url})" if share and demo.share_url else ""),
          flush=True)
    if block:
        demo.block_thread()
    return demo, url


if __name__ == "__main__":
    from agent.cli import main

    sys.exit(main(["chat", *sys.argv[1:]]))
