"""The web app's sessions: one per browser tab, each with its own agent thread, data and runs.

A message starts a turn of the same LangGraph graph the terminal chat runs (the offline
planner when no LLM is configured) in a background thread; the page follows it through
:meth:`WebSession.follow`, which yields a :class:`Snapshot` whenever the chat or the build's
stages change. Nothing here imports gradio: ``app.py`` renders snapshots, tests drive
sessions directly.

A build started by a session is found in the run index by the planner name the session's
context records in ``design.json`` ("offline (web session 3f9a0c1d)"), so two tabs building
at once each follow their own run.

A session is saved in ``<runs>/web-sessions/`` under the hash of its browser's token after each
turn and data change, so a reload finds it after the server restarted; a build the server was
running when it stopped is marked interrupted.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent import app_views
from agent.context import MAX_TEXT, Context, LLMSettings
from agent.web_chat import BUSY, names_a_device, starts_over, tool_line
from agent.web_data import DATA_KINDS, DataMixin
from agent.web_review import ReviewMixin
from knowledge.errors import NanofactoryError
from knowledge.io import read_json_or_none, write_text_atomic

log = logging.getLogger(__name__)

POLL_S = 0.25
RELOAD_GRACE_S = 1.0  # how long a reloading tab waits for the old tab to let go of its session
KEPT_SESSIONS = 64  # sessions a browser can reload into after its tab went away (their chat, data and build)
SAVED_SESSIONS = 256  # sessions kept on disk for a browser to come back to after the server restarted
_NONE = type(None)
SESSION_FIELDS = {"messages": list, "data": dict, "counts": dict, "epochs": (int, _NONE), "run_ids": list,
                  "viewing": (str, _NONE), "question": (str, _NONE)}  # what is saved, and what it may be


@dataclass
class WebConfig:
    runs_dir: Path
    workspace: Path = field(default_factory=Path.cwd)
    llm: LLMSettings | None = None
    chat_model: object | None = None  # a ready LangChain chat model (tests use a scripted one)
    epochs: int | None = None  # default training epochs; each session may change its own
    max_steps: int = 24
    data: dict[str, str] = field(default_factory=dict)  # folders named on the command line, preselected
    extra_roots: list[Path] = field(default_factory=list)


@dataclass
class SessionContext(Context):
    """The agent's context in one browser session; its planner name marks the runs it creates."""

    session: str = ""

    @property
    def on_page(self) -> bool:
        return True

    @property
    def planner_name(self) -> str:
        return f"{super().planner_name} (web session {self.session})"


@dataclass
class Snapshot:
    version: int  # changes whenever the chat does
    messages: list[dict]
    busy: bool
    run_id: str | None  # the run the panels show: the one building, else the last one opened
    stages: list[app_views.StageRow]
    status: str | None  # the run index's status of that run
    message: str | None  # its failure message, if any
    elapsed: float | None  # seconds in the running stage

    @property
    def view_key(self) -> tuple:
        """Changes when a stage finishes: the moment galleries, plots and downloads have something new."""
        return self.run_id, tuple(r.name for r in self.stages if r.state == "done"), self.status


class WebSession(DataMixin, ReviewMixin):
    """One browser tab: its conversation (a checkpointed LangGraph thread), its data and its runs."""

    def __init__(self, app: WebApp, session_id: str):
        self.app, self.id = app, session_id
        self.token: str | None = None  # the browser's key to this session (attach); it is saved under it
        self.thread = f"web-{session_id}"
        self.data: dict[str, str] = dict(app.config.data)
        self.counts: dict[str, str] = {}  # data key -> what it holds, for the page
        self.roots: list[Path] = list(app.config.extra_roots)
        self.epochs = app.config.epochs
        self.messages: list[dict] = []
        self.version = 0
        self.run_ids: list[str] = []  # runs this session built
        self.viewing: str | None = None  # the run the panels show
        self.building: str | None = None  # the run being built now
        self.question: str | None = None  # the agent's pending question
        self.review: list[app_views.ReviewItem] = []
        self._review_seen: list[int] = []  # pool rows shown in this session's review (skipped ones are not asked again)
        self._review_answers = 0  # answers since the queue was last ranked
        self._review_run: str | None = None  # the run the queue was drawn from
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._tool_slots: dict[str, tuple[int, float]] = {}  # tool call id -> (message index, start time)
        self._build_started: float | None = None
        self._stopping = False  # Stop was pressed: the turn's KeyboardInterrupt is expected
        self._saved: set[tuple[str, str]] = set()  # (kind, uploaded temp file) already copied
        self._frozen: set[str] = set()  # upload folders a run was built from: never added to again

    def save(self) -> None:
        """The session on disk, so that its browser comes back to it after the server restarted (the agent's
        thread is in agent.sqlite already; the runs and uploads are folders)."""
        if self.token is None:
            return
        with self._lock:  # serialized under the lock: the turn's thread edits the chat meanwhile
            text = json.dumps({"id": self.id, "roots": [str(r) for r in self.roots], "frozen": sorted(self._frozen),
                               **{key: getattr(self, key) for key in SESSION_FIELDS}}, indent=1)
        try:
            write_text_atomic(self.app.session_file(self.token), text)
        except OSError as e:  # a full disk must not break the page: the session lives on in memory
            log.warning("could not save web session %s: %s", self.id, e)

    # ---- chat --------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _post(self, message: dict) -> int:
        with self._lock:
            self.messages.append(message)
            self.version += 1
            return len(self.messages) - 1

    def _edit(self, index: int, **changes) -> None:
        with self._lock:
            message = dict(self.messages[index])
            for key, value in changes.items():
                if key == "metadata":
                    message["metadata"] = {**message.get("metadata", {}), **value}
                else:
                    message[key] = value
            self.messages[index] = message
            self.version += 1

    def send(self, text: str, device: str | None = None, epochs: int | None = None) -> bool:
        """Start a turn with the person's message (an answer when the agent asked); False when busy or empty."""
        text = " ".join((text or "").split())
        cut = len(text) > MAX_TEXT
        text = text[:MAX_TEXT]
        if not text:
            return False
        with self._lock:
            if self.busy:
                self._post({"role": "assistant", "content": BUSY.format(what="Send this one")})
                return False
            asking_device = self.question is None or "device" in self.question.lower()
            if device and asking_device and not names_a_device(text):
                text = f"{text} on the {device}"
            if epochs:
                self.epochs = int(epochs)
            self._post({"role": "user", "content": text})
            if cut:
                self._post({"role": "assistant", "content": f"Your message was cut to its first {MAX_TEXT:,} characters; "
                            "say the rest in a second message."})
            resume, self.question = self.question is not None and not starts_over(self.question, text), None
            self._worker = threading.Thread(target=self._turn, args=(text, resume), daemon=True,
                                            name=f"nanofactory-web-{self.id}")
            self._worker.start()
        self.save()
        return True

    def stop(self) -> bool:
        """Stop this tab's build the way Ctrl-C stops one in the terminal: KeyboardInterrupt in the turn's
        thread at its next Python step (a training step, an image chunk), so the run is marked interrupted
        and resumable, its finished stages kept (every stage writes atomically). False when none runs."""
        import ctypes

        with self._lock:
            worker = self._worker
            if worker is None or not worker.is_alive() or self._find_build() is None or self._stopping:
                return False
            self._stopping = True  # before the exception: the turn's handler may run at once
            threads = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident),
                                                                 ctypes.py_object(KeyboardInterrupt))
            if threads != 1:  # the turn ended meanwhile (0); more than one cannot happen for one id, but undo it
                if threads > 1:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), None)
                self._stopping = False
                return False
            self._post({"role": "assistant", "content": f"Stopping {self.building} at its next step …"})
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current turn ends; False on timeout."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.busy

    def _context(self) -> SessionContext:
        cfg = self.app.config
        return SessionContext(workspace=cfg.workspace, runs_dir=cfg.runs_dir, llm=cfg.llm, chat_model=cfg.chat_model,
                              max_steps=cfg.max_steps, epochs=self.epochs, show_bars=False,
                              extra_roots=list(self.roots), session=self.id)

    def _turn(self, text: str, resume: bool) -> None:
        from langgraph.types import Command

        from agent.graph import build_graph, user_turn

        config = {"configurable": {"thread_id": self.thread}}
        data = dict(self.data)
        try:  # the graph too: a model that cannot be reached or an unreadable agent.sqlite is said in the chat
            graph = build_graph(self._context(), self.app.checkpointer())
            if resume:  # an answer; folders added since the question come with it, beside those named in the chat
                named = graph.get_state(config).values.get("data") or {}
                turn = Command(resume=text, update={"data": {**named, **data}}) if data else Command(resume=text)
            else:
                turn = user_turn(text, data or None)
            for update in graph.stream(turn, config, stream_mode="updates"):
                self._render(update)
            snapshot = graph.get_state(config)
            question = next((i.value.get("question") if isinstance(i.value, dict) else str(i.value)
                             for task in snapshot.tasks for i in task.interrupts), None)
            for kind, path in (snapshot.values.get("data") or {}).items():  # a folder named in the chat
                if kind in DATA_KINDS and kind not in self.data and path != "fashion-mnist" \
                        and Path(path).is_dir():
                    self._set_data(kind, Path(path))  # shown under Data & device like one named there
            run_id = snapshot.values.get("run_id")
            if run_id:
                self._add_run(run_id)
            if question:
                self.question = question
                hint = "" if self.data.get("images") or "images" not in question.lower() else \
                    "\n\n*Add your images under **Data & device** (files, a zip, or a folder), then answer here.*"
                self._post({"role": "assistant", "content": question + hint})
        except KeyboardInterrupt:
            if not self._stopping:
                raise
            run_id = self._find_build()
            record = self.app.store().find(run_id) if run_id else None
            status = record.status if record else None
            if status in ("created", "running"):  # stopped between creating the run and its first stage
                self.app.store().record(run_id, "interrupted", message=f"interrupted; resume with --resume {run_id}")
            self._stopped(run_id)
        except Exception as e:
            self._say_error(e, "agent")
        finally:
            self._ended()

    def _say_error(self, e: Exception, who: str) -> None:
        """A background turn's error as a chat line: a NanofactoryError's sentence; a bug said as one rather
        than a page left spinning."""
        if not isinstance(e, NanofactoryError):
            log.error("%s turn failed", who, exc_info=e)
        self._post({"role": "assistant", "content": f"⚠ {e}" if isinstance(e, NanofactoryError) else
                    f"⚠ The {who} stopped on an internal error ({type(e).__name__}: {e}). Finished stages are kept "
                    "in the run folder."})

    def _ended(self) -> None:
        """A turn (or a retrain) ended: its open tool steps closed, the run it built is the one shown."""
        with self._lock:
            for index, started in self._tool_slots.values():
                self._edit(index, metadata={"status": "done", "duration": round(time.time() - started, 1)})
            self._tool_slots.clear()
            self._stopping = False
            if self.building:
                self.viewing = self.building
            self.building, self._build_started = None, None
        self.save()

    def _stopped(self, run_id: str | None) -> None:
        self._post({"role": "assistant", "content": f"Stopped {run_id}: its finished stages are kept, and "
                    f"`nanofactory build --resume {run_id}` finishes it." if run_id else "Stopped."})

    def _render(self, update: dict) -> None:
        """Chat messages from one graph update: tool calls as collapsible steps, the planner's words as replies."""
        for node, values in (update or {}).items():
            if node == "__interrupt__" or not isinstance(values, dict):
                continue
            for message in values.get("messages", []):
                kind = type(message).__name__
                if kind == "AIMessage":
                    for call in message.tool_calls:
                        if call["name"] == "ask_user":
                            continue
                        if call["name"] == "run_build":
                            self._build_started = time.time()
                        note = "building: follow the stages on the right" if call["name"] == "run_build" else "…"
                        index = self._post({"role": "assistant", "content": note,
                                            "metadata": {"title": call["name"], "status": "pending"}})
                        self._tool_slots[call["id"]] = (index, time.time())
                    if message.content:
                        self._post({"role": "assistant", "content": str(message.content)})
                elif kind == "ToolMessage" and message.tool_call_id in self._tool_slots:
                    index, started = self._tool_slots.pop(message.tool_call_id)
                    line = tool_line(message.name, json.loads(message.content))
                    short = line.replace("**", "")
                    self._edit(index, content=line, metadata={
                        "status": "done", "duration": round(time.time() - started, 1),
                        "title": f"{message.name}: {short[:90]}{'…' if len(short) > 90 else ''}"})

    def _add_run(self, run_id: str) -> None:
        with self._lock:
            if run_id not in self.run_ids:
                self.run_ids.append(run_id)
            self.viewing = run_id
            self._frozen.update(self.data.values())

    def _find_build(self) -> str | None:
        """The run this session's build created: newest first in the index, marked with this session."""
        if self.building or self._build_started is None:
            return self.building
        marker = f"(web session {self.id})"
        for record in self.app.store().list():
            if record.created < self._build_started - 5:
                break
            try:
                planner = app_views.design(self.app.config.runs_dir / record.id)["decisions"]["planner"]
            except (OSError, KeyError, json.JSONDecodeError):
                continue
            if planner.endswith(marker):
                self.building = record.id
                self._add_run(record.id)
                break
        return self.building

    # ---- following a turn --------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        busy = self.busy
        run_id = self._find_build() if busy else None
        run_id = run_id or self.viewing
        stages, status, message, elapsed = [], None, None, None
        if run_id:
            run_dir = self.app.config.runs_dir / run_id
            record = self.app.store().find(run_id)
            status, message = (record.status, record.message) if record else (None, None)
            # running: this tab's build, or one the index says runs elsewhere (another tab, a terminal)
            stages = app_views.stage_rows(run_dir, running=(busy and run_id == self.building) or status == "running",
                                          status=status)
            if any(r.state == "running" for r in stages):
                done = [run_dir / "stages" / f"{r.name}.json" for r in stages if r.state == "done"]
                since = max([p.stat().st_mtime for p in done] + [(run_dir / "design.json").stat().st_mtime])
                elapsed = time.time() - since
        with self._lock:
            return Snapshot(self.version, [dict(m) for m in self.messages], busy, run_id, stages, status, message, elapsed)

    def follow(self, poll: float = POLL_S) -> Iterator[Snapshot]:
        """Snapshots while a turn runs: one now, one whenever the chat or a stage changes (and each
        second of a running stage), and a last one after the turn ended."""
        last = None
        while True:
            busy = self.busy
            snap = self.snapshot()
            key = (snap.version, snap.view_key, None if snap.elapsed is None else int(snap.elapsed), busy)
            if key != last:
                yield snap
                last = key
            if not busy:
                return
            time.sleep(poll)

    def watch(self, run_id: str, poll: float = POLL_S) -> Iterator[Snapshot]:
        """Snapshots of a run opened from the index: while it runs (in another tab, after a reload, in a
        terminal), one whenever a stage changes and each second of a running stage; then a last one.
        Ends early when the panels turn to another run."""
        last = None
        while True:
            snap = self.snapshot()
            if snap.run_id != run_id:
                return
            key = (snap.view_key, None if snap.elapsed is None else int(snap.elapsed))
            if key != last:
                yield snap
                last = key
            if snap.status != "running":
                return
            time.sleep(poll)

    # ---- runs --------------------------------------------------------------------------------

    def open_run(self, run_id: str) -> Path:
        """Show a run from the index (this session's or a past one) in the panels."""
        folder = self.app.store().path(run_id)
        with self._lock:
            self.viewing = run_id
        self.save()
        return folder

    def forget(self, run_id: str) -> None:
        """A run was removed: the panels stop showing it."""
        with self._lock:
            self.viewing = None if self.viewing == run_id else self.viewing
            self.run_ids = [r for r in self.run_ids if r != run_id]
        self.save()

    def run_dir(self) -> Path | None:
        run_id = self.building or self.viewing
        return self.app.config.runs_dir / run_id if run_id else None

class WebApp:
    """The server side of the page: the sessions, one agent checkpointer, the run index."""

    def __init__(self, config: WebConfig):
        self.config = config
        self._sessions: dict[str, WebSession] = {}  # an open tab's gradio session hash -> its session
        self._kept: OrderedDict[str, WebSession] = OrderedDict()  # a browser's token -> the session it reloads into
        self._lock = threading.Lock()
        self._saver = None
        self._files: Path | None = None

    def session(self, session_id: str) -> WebSession:
        if not session_id:
            raise NanofactoryError("This page has no session; reload it.")
        with self._lock:
            if session_id not in self._sessions:
                self._sessions[session_id] = WebSession(self, session_id[:16])
            return self._sessions[session_id]

    def remove_run(self, run_id: str) -> int:
        """Delete a run (``RunStore.remove``: refused while it is built); no session shows it or serves its
        downloads after. The bytes freed."""
        freed = self.store().remove(run_id)
        with self._lock:
            sessions = {*self._sessions.values(), *self._kept.values()}
        for session in sessions:
            session.forget(run_id)
            shutil.rmtree(self.files_dir(session.id) / run_id, ignore_errors=True)
        return freed

    def attach(self, session_id: str, token: str | None) -> tuple[WebSession, str]:
        """A tab that (re)loads: the session its browser's ``token`` names, when no open tab holds it (a
        reload, or the tab closed and opened again), else a new one; and the token to keep for it."""
        with self._lock:
            kept = self._kept.get(token) if token else None
        if kept is None and token and (restored := self._restore(token)) is not None:  # the server restarted
            with self._lock:
                kept = self._kept.setdefault(token, restored)
        deadline = time.time() + RELOAD_GRACE_S
        while kept is not None:
            with self._lock:
                if kept not in self._sessions.values():
                    self._sessions[session_id] = kept
                    self._kept.move_to_end(token)
                    return kept, token
            if time.time() > deadline:
                break  # another tab of this browser holds it
            time.sleep(0.1)  # or a reload whose old tab's unload has not arrived yet
        session = self.session(session_id)
        with self._lock:
            token = next((t for t, s in self._kept.items() if s is session), None) or secrets.token_urlsafe(24)
            self._kept[token] = session
            session.token = token
            while len(self._kept) > KEPT_SESSIONS:
                self._kept.popitem(last=False)
        self._prune_saved()
        return session, token

    def browser_secret(self) -> str:
        """The key the page encrypts its token with in the browser's storage: kept beside the saved sessions,
        so that a token stored before a server restart can still be read after it."""
        path = self.config.runs_dir / "web-sessions" / "secret"
        try:
            secret = path.read_text().strip()
        except OSError:
            secret = ""
        if len(secret) < 32:
            secret = secrets.token_urlsafe(32)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, secret)
            path.chmod(0o600)  # the sessions' files name no token; this key is what could read one
        return secret

    def session_file(self, token: str) -> Path:
        """Where the session a browser's token names is saved (by the token's hash: the file names no token)."""
        return self.config.runs_dir / "web-sessions" / f"{hashlib.sha256(token.encode()).hexdigest()[:32]}.json"

    def _restore(self, token: str) -> WebSession | None:
        """The saved session ``token`` names, or None (none saved, or a file this version cannot read)."""
        state = read_json_or_none(self.session_file(token))
        if not isinstance(state, dict) or not isinstance(state.get("id"), str):
            return None
        if any(key in state and not isinstance(state[key], kind) for key, kind in SESSION_FIELDS.items()):
            return None
        session = WebSession(self, state["id"])
        for key in SESSION_FIELDS:
            setattr(session, key, state.get(key, getattr(session, key)))
        session.roots = [Path(r) for r in state.get("roots") or [] if isinstance(r, str)]
        session._frozen = {f for f in state.get("frozen") or [] if isinstance(f, str)}
        for message in session.messages:  # a step the server stopped in the middle of
            if isinstance(message, dict) and (message.get("metadata") or {}).get("status") == "pending":
                message["metadata"] = {**message["metadata"], "status": "done"}
        session.token = token
        return session

    def _prune_saved(self) -> None:
        """At most SAVED_SESSIONS sessions on disk: the least recently saved go."""
        saved = sorted((self.config.runs_dir / "web-sessions").glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in saved[:-SAVED_SESSIONS]:
            path.unlink(missing_ok=True)

    def session_count(self) -> int:
        return len(self._sessions)

    def drop(self, session_id: str) -> None:
        """A tab closed or reloaded: it no longer holds its session, which its browser can attach to again
        (a build it started finishes either way and stays in the index)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def store(self):
        from agent.runs import RunStore

        return RunStore(self.config.runs_dir)

    def checkpointer(self):
        """One SQLite checkpointer for every session (it locks around each write): a web conversation is a
        thread in <runs>/agent.sqlite like a terminal one, so `nanofactory chat --terminal --thread web-…` resumes it."""
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        with self._lock:
            if self._saver is None:
                self.config.runs_dir.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.config.runs_dir / "agent.sqlite", check_same_thread=False)
                self._saver = SqliteSaver(connection)
            return self._saver

    def files_dir(self, session_id: str) -> Path:
        """Where a session's downloads are staged (the server serves copies, never the runs folder)."""
        with self._lock:
            if self._files is None:
                self._files = Path(tempfile.mkdtemp(prefix="nanofactory-web-"))
                atexit.register(shutil.rmtree, self._files, ignore_errors=True)
        return self._files / session_id[:16]

    def close(self) -> None:
        """The server stops: builds still running in its sessions' threads die with the process, so the index
        marks them interrupted (resumable), not running forever."""
        with self._lock:
            sessions = {id(s): s for s in [*self._sessions.values(), *self._kept.values()]}.values()
        for session in sessions:
            run_id = session.building if session.busy else None
            record = self.store().find(run_id) if run_id else None
            if record is not None and record.status in ("created", "running"):
                self.store().record(run_id, "interrupted", message=f"the web server stopped during it; resume with "
                                    f"--resume {run_id}")

    def warm_up(self) -> None:
        """Import the agent and the stages once at start, so the first reply does not wait for imports."""
        import agent.graph
        import agent.parse
        import agent.stages  # noqa: F401

        self.checkpointer()

    def past_runs(self) -> list[list]:
        rows = []
        for r in self.store().list():
            acc = f"{100 * r.student_int8_accuracy:.1f} %" if r.student_int8_accuracy is not None else "—"
            size = f"{r.weight_bytes / 1024:.1f} / {r.sram_bytes / 1024:.1f}" if r.weight_bytes and r.sram_bytes else "—"
            design = read_json_or_none(self.config.runs_dir / r.id / "design.json")
            parent = ((design or {}).get("decisions") or {}).get("parent") if isinstance(design, dict) else None
            request = (r.request or "")[:80]  # a retrained run has its parent's request: say which it is
            rows.append([r.id, r.status, r.device or "—", acc, size,
                         f"retrained from {parent} on its answers: {request}" if parent else request])
        return rows
