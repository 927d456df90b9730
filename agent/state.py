"""The agent's conversation state, checkpointed by LangGraph after every node."""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    request: str  # everything the user has said about what to build, joined
    data: dict  # {"images": ..., "examples": ..., "test": ...} paths as given (checked by the tools)
    spec: dict | None  # DesignSpec as JSON once complete
    plan: dict | None  # Plan as JSON once a student fits
    run_id: str | None
    metrics: dict | None  # compact metrics of the finished run
    failed_checks: list[dict]  # the latest failed checks, for re-planning
    decisions: list[str]  # every re-planning decision, in order (also written to the run)
    replans: int
    steps: int  # model turns in the current user turn
    question: str | None  # what the agent asked and is waiting for
    outcome: str | None  # "done" (built) | "replied" | "refused" | "out_of_steps"; None mid-turn
