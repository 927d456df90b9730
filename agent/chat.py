"""``nanofactory chat``: the agent in a terminal, persisted in SQLite so a killed chat resumes.

Each conversation is a LangGraph thread checkpointed in ``<runs>/agent.sqlite``. In a
terminal the agent's questions are asked at the prompt; in scripted use (stdin not a
terminal) the first question is printed and the command exits 2.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from agent.context import Context

QUESTION_EXIT = 2


def _say(text: str) -> None:
    print(text, flush=True)


def _render(update: dict) -> None:
    """Print what a node produced: the planner's words and tool calls, the tools' short results."""
    for node, values in (update or {}).items():
        if node == "__interrupt__" or not isinstance(values, dict):
            continue
        for message in values.get("messages", []):
            kind = type(message).__name__
            if kind == "AIMessage":
                for call in message.tool_calls:
                    _say(f"  · {call['name']}")
                if message.content:
                    _say(f"nanofactory> {message.content}")
            elif kind == "ToolMessage" and ('"error"' in message.content or '"does_not_fit"' in message.content):
                _say(f"    {message.content[:300]}")


def _pending_question(graph, config) -> str | None:
    snapshot = graph.get_state(config)
    for task in snapshot.tasks:
        for item in task.interrupts:
            return item.value.get("question") if isinstance(item.value, dict) else str(item.value)
    return None


def run_chat(ctx: Context, request: str | None, data: dict, thread: str | None) -> int:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.types import Command

    from agent.graph import build_graph, user_turn

    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(ctx.runs_dir / "agent.sqlite", check_same_thread=False)
    graph = build_graph(ctx, SqliteSaver(connection))
    thread = thread or time.strftime("chat-%Y%m%d-%H%M%S")
    config = {"configurable": {"thread_id": thread}}
    interactive = sys.stdin.isatty()
    _say(f"[thread {thread}: resume with `nanofactory chat --thread {thread}`; planner: {ctx.planner_name}]")

    pending = _pending_question(graph, config)
    next_input = None
    if pending and request:
        next_input = Command(resume=request)
    elif request:
        previous = (graph.get_state(config).values or {}).get("request", "")
        next_input = user_turn(request, data or None, previous)
    elif pending:
        _say(f"nanofactory> {pending}")
    try:
        while True:
            if next_input is None:
                if not interactive:
                    return QUESTION_EXIT if pending else 0
                text = input("you> ").strip()
                if text in ("", "exit", "quit"):
                    return 0
                if pending:
                    next_input = Command(resume=text)
                else:
                    previous = (graph.get_state(config).values or {}).get("request", "")
                    next_input = user_turn(text, data or None, previous)
            for update in graph.stream(next_input, config, stream_mode="updates"):
                _render(update)
            next_input = None
            pending = _pending_question(graph, config)
            if pending:
                _say(f"nanofactory> {pending}")
                if not interactive:
                    print(pending, file=sys.stderr)
                    return QUESTION_EXIT
            elif not interactive:
                outcome = graph.get_state(config).values.get("outcome")
                return 0 if outcome in ("done", "replied") else 1
    except (KeyboardInterrupt, EOFError):
        _say(f"\n[saved; continue with `nanofactory chat --thread {thread}`]")
        return 130
    finally:
        connection.close()


def replay(path: Path, runs_dir: Path, show_bars: bool) -> tuple[object, dict]:
    """Run a saved design (design.json, or YAML/JSON with `spec` and `plan`) again, without any LLM."""
    import json

    import yaml

    from agent.pipeline import create_run, execute
    from agent.plan import Plan
    from agent.runs import RunStore
    from agent.spec import DesignSpec
    from knowledge.errors import NanofactoryError

    if not path.is_file():
        raise NanofactoryError(f"Plan file {path} does not exist; pass a run's design.json or a saved plan.")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError):
        raise NanofactoryError(f"Plan file {path} is not valid {path.suffix.lstrip('.').upper()}; fix the syntax.") from None
    if not isinstance(data, dict) or "spec" not in data or "plan" not in data:
        raise NanofactoryError(f"Plan file {path} needs a `spec` and a `plan` (a run's design.json has both).")
    from pydantic import ValidationError

    from agent.spec import describe_validation_error

    spec = DesignSpec.from_dict(data["spec"], source=str(path))
    try:
        plan = Plan.model_validate(data["plan"])
    except ValidationError as e:
        raise NanofactoryError(describe_validation_error(e, f"{path} plan")) from None
    store = RunStore(runs_dir)
    run = create_run(spec, plan, store, {"planner": f"replay of {path}", "changes": []})
    return run, execute(run, store, show_bars=show_bars)
