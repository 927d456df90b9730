"""``nanofactory chat``: the agent in a terminal, persisted in SQLite so a killed chat resumes.

Each conversation is a LangGraph thread checkpointed in ``<runs>/agent.sqlite``. In a
terminal the agent's questions are asked at the prompt; in scripted use (stdin not a
terminal) the first question is printed and the command exits 2.
"""

from __future__ import annotations

import sqlite3
import sys
import time

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

    from agent.graph import build_graph, next_turn

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
        next_input = next_turn(graph, config, request, data)
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
                    next_input = next_turn(graph, config, text, data)  # a folder named in the chat stays
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
