"""The agent graph: a planner node, a tool node, and a node that asks the user.

    START -> planner -> (tool calls) -> tools -> planner ... -> END
                                          \\-> ask (interrupt, waits for the answer) -> planner

The planner is an LLM with the tools bound when one is configured, else the deterministic
offline planner below: both emit tool calls as AI messages, so the graph, the tools and the
checkpoints are the same either way. Failed checks (does not fit, accuracy floor missed)
come back from the tools as state the planner re-plans on, a bounded number of times.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent.context import Context
from agent.prompts import SYSTEM
from agent.state import AgentState
from agent.tools import call_tool, list_tools
from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)

MIN_INPUT = 16  # below this a camera image says too little; the offline planner refuses instead


# ---- the offline planner ------------------------------------------------------------------------


def _last_tool_result(state: AgentState) -> tuple[str | None, dict | None]:
    messages = state.get("messages", [])
    if messages and isinstance(messages[-1], ToolMessage):
        return messages[-1].name, json.loads(messages[-1].content)
    return None, None


def _folder_named(text: str, ctx: Context, answering: bool) -> tuple[str | None, str | None]:
    """(a folder of images the person named in ``text``, or why the folder they named cannot be used). A word
    with a slash or a tilde is taken for a path; a bare name ("pool") only in an answer to "Which images"."""
    for word in text.split():
        word = word.strip("\"'`.,;:!?()[]<>")
        if word.lower() == "fashion-mnist":
            return "fashion-mnist", None
        if not word or not ("/" in word or word.startswith("~") or answering):
            continue
        try:
            if not (ctx.workspace / Path(word).expanduser()).is_dir():
                continue
            return str(ctx.confine(word)), None
        except NanofactoryError as e:
            return None, str(e)
        except OSError:  # a name the system will not look up (too long): not a folder
            continue
    return None, None


def _call(name: str, args: dict, step: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{step}_{name}"}])


def offline_planner(state: AgentState, ctx: Context) -> AIMessage:
    """Rules instead of an LLM: spec -> plan (shrinking the input when it does not fit) -> build -> reply."""
    step = state.get("steps", 0)
    name, result = _last_tool_result(state)
    data = state.get("data") or {}
    if result and result.get("status") == "needs_input" and not state.get("question"):
        return _call("ask_user", {"question": result["question"]}, step)
    if result and "error" in result:  # the same call would fail the same way (a pool of corrupt images: 23 times)
        return AIMessage(content=f"I could not continue: {result['error']}")
    if not state.get("spec"):
        args = {"request": state.get("request", "")} | {k: v for k, v in data.items() if v}
        messages = state.get("messages", [])
        if "images" not in args and messages and isinstance(messages[-1], HumanMessage):
            # "Which images?" asks for a folder: one named in the request or the answer is that folder
            answering = len(messages) > 1 and isinstance(messages[-2], ToolMessage) and messages[-2].name == "ask_user"
            folder, why = _folder_named(str(messages[-1].content), ctx, answering)
            if why:
                return _call("ask_user", {"question": f"{why} Which images should I learn from?"}, step)
            if folder:
                args["images"] = folder
        return _call("make_spec", args, step)
    if not state.get("plan"):
        if name == "plan_build" and result.get("status") == "does_not_fit":
            check = result["failed_checks"][0]
            size = check["input_size"]
            smaller = max(MIN_INPUT, (size * 3 // 4) // 4 * 4)
            if state.get("replans", 0) < ctx.max_replans and smaller < size:
                reason = f"{'; '.join(check['shortfalls'])}: lowering the input from {size} to {smaller} px"
                return _call("update_spec", {"input_size": smaller, "reason": reason}, step)
            return AIMessage(content=f"I cannot build this within the budget. {check['message']}")
        return _call("plan_build", {}, step)
    if not state.get("metrics"):
        return _call("run_build", {}, step)
    floor = [c for c in state.get("failed_checks", []) if c["check"] == "accuracy_floor"]
    if floor and name == "run_build":  # just built, below the floor: more data is the lever a person holds
        return _call("ask_user", {"question": f"The model misses the accuracy floor ({floor[0]['message']}). "
                                  "Add example images to the examples folder and answer 'retry', "
                                  "or answer 'accept' to keep this model."}, step)
    last = state["messages"][-1]
    if floor and isinstance(last, HumanMessage) and "retry" in str(last.content).lower():
        args = {"request": state.get("request", "")} | {k: v for k, v in data.items() if v}
        return _call("make_spec", args, step)  # a fresh spec re-reads the examples; a new run follows
    return AIMessage(content=summary(state, ctx.on_page))


def summary(state: AgentState, on_page: bool = False) -> str:
    m = state["metrics"]
    lines = [f"Built run {state['run_id']}: int8 accuracy {100 * m['student_int8_test_accuracy']:.1f} % "
             f"({m['evaluated_on']}), weights {m['weight_bytes'] / 1024:.1f} KB, SRAM {m['sram_estimate_bytes'] / 1024:.1f} KB, "
             f"latency about {m['latency_estimate_ms']:.1f} ms"
             + (f" (this C library at least {m['latency_floor_ms']:.1f} ms on the emulated core)"
                if m.get("latency_floor_ms") else "")
             + (f"; with its code and stack the C library takes {m['library_flash_bytes'] / 1024:.1f} KB of flash "
                f"and {m['library_ram_bytes'] / 1024:.1f} KB of RAM" if m.get("library_flash_bytes") else "") + "."]
    weak = m.get("weakest_class")
    if weak:
        lines.append(f"Weakest class: {weak['name']} (recall {100 * weak['recall']:.1f} %, "
                     f"precision {100 * weak['precision']:.1f} %).")
    for decision in state.get("decisions", []):
        lines.append(f"Re-planned: {decision.removeprefix('update_spec: ')}.")
    for check in state.get("failed_checks", []):
        lines.append(f"Check failed: {check['check']}" + (f" ({check['message']})" if check.get("message") else "") + ".")
    if m.get("next"):
        lines.append(m["next"])
    if on_page:
        lines.append(f"The report, the plots and the downloads (int8 ONNX, .tflite, the C and Arduino libraries) are "
                     f"in the tabs on the right; on the server the run is in {Path(m['report']).parent}.")
        return "\n".join(lines)
    lines.append(f"Report: {m['report']}")
    deploy = m.get("deploy") or {}
    if deploy.get("c_library"):
        lines.append(f"C library: {deploy['c_library']}" + (f"; Arduino library (run its Selftest sketch on the "
                     f"board first): {deploy['arduino_library']}" if deploy.get("arduino_library") else ""))
    return "\n".join(lines)


# ---- nodes --------------------------------------------------------------------------------------


def _llm(ctx: Context):
    model = ctx.chat_model if ctx.chat_model is not None else ctx.llm.chat_model()
    return model.bind_tools([t.schema() for t in list_tools()])


def planner_node(state: AgentState, ctx: Context) -> dict:
    steps = state.get("steps", 0)
    if steps >= ctx.max_steps:
        return {"messages": [AIMessage(content=f"I stopped after {steps} steps without finishing; "
                                               "say how to continue, or start again with a simpler request.")],
                "outcome": "out_of_steps"}
    if ctx.chat_model is None and ctx.llm is None:
        message = offline_planner(state, ctx)
    else:
        from knowledge.devices import list_devices

        system = SystemMessage(SYSTEM.format(devices=", ".join(d.name for d in list_devices())))
        message = _llm(ctx).invoke([system] + state["messages"])
    if message.tool_calls:
        outcome = None
    elif "cannot" in message.content:
        outcome = "refused"
    else:  # "done" means a model was built; otherwise the planner only answered
        outcome = "done" if state.get("metrics") else "replied"
    return {"messages": [message], "steps": steps + 1, "outcome": outcome}


def tools_node(state: AgentState, ctx: Context) -> dict:
    message = state["messages"][-1]
    merged: dict[str, Any] = {}
    replies = []
    view = dict(state)
    for call in message.tool_calls:
        outcome = call_tool(call["name"], call.get("args") or {}, view, ctx)
        view.update(outcome.update)
        merged.update(outcome.update)
        replies.append(ToolMessage(content=json.dumps(outcome.result, default=str), name=call["name"],
                                   tool_call_id=call["id"]))
        log.info("tool %s -> %s", call["name"], str(outcome.result)[:200])
    return {**merged, "messages": replies}


def ask_node(state: AgentState, ctx: Context) -> dict:
    answer = interrupt({"question": state["question"]})
    return {"messages": [HumanMessage(content=str(answer))], "question": None,
            "request": "; ".join(filter(None, (state.get("request", ""), str(answer).strip())))}  # "…else; an nRF52840"


def _after_planner(state: AgentState) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


def _after_tools(state: AgentState) -> str:
    return "ask" if state.get("question") else "planner"


def build_graph(ctx: Context, checkpointer=None):
    graph = StateGraph(AgentState)
    graph.add_node("planner", lambda s: planner_node(s, ctx))
    graph.add_node("tools", lambda s: tools_node(s, ctx))
    graph.add_node("ask", lambda s: ask_node(s, ctx))
    graph.add_edge(START, "planner")
    graph.add_conditional_edges("planner", _after_planner, ["tools", END])
    graph.add_conditional_edges("tools", _after_tools, ["ask", "planner"])
    graph.add_edge("ask", "planner")
    return graph.compile(checkpointer=checkpointer)


def next_turn(graph, config: dict, text: str, data: dict | None = None) -> dict:
    """A new request in a thread: the folders named earlier in its chat stay, beside (and under) ``data``."""
    named = graph.get_state(config).values.get("data") or {}
    return user_turn(text, {**named, **(data or {})} or None)


def user_turn(text: str, data: dict | None = None) -> dict:
    """The input for a new user message: a new design (the conversation history stays for an LLM)."""
    turn: dict[str, Any] = {"messages": [HumanMessage(content=text)], "request": text, "steps": 0, "spec": None,
                            "plan": None, "run_id": None, "metrics": None, "failed_checks": [], "decisions": [],
                            "replans": 0, "question": None, "outcome": None}
    if data is not None:
        turn["data"] = data
    return turn
