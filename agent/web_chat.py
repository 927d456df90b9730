"""How the web page's chat reads a person's message and shows a tool's result.

Whether a message is an answer to the agent's open question or a new request, whether it names a
device, and the one line each tool's result becomes in the chat (as the terminal chat prints it).
"""

from __future__ import annotations

import json
import re

# what a message or a retrain gets while a turn runs; {what}: what to do again
BUSY = ("I am still working on the last message; the stages on the right show how far along it is. {what} again "
        "when it ends.")


def tool_line(name: str, result: dict) -> str:
    """One line for a tool's result in the chat, like the terminal chat prints."""
    if "error" in result:
        return f"⚠ {result['error']}"
    status = result.get("status")
    if status == "needs_input":
        return "something is missing: the question follows"
    if name == "make_spec":
        spec = result["spec"]
        budgets = ", ".join(f"{k.removesuffix('_bytes')} {v / 1024:.0f} KB" if k.endswith("_bytes") else f"{k} {v}"
                            for k, v in spec["budgets"].items())
        return f"device **{spec['device']}** · labels {', '.join(spec['labels'])}" + (f" · {budgets}" if budgets else "")
    if name == "plan_build" and status == "ok":
        c = result["cost"]
        return (f"student {result['student']}, input {result['input']['size']} px: weights {c['weight_kb']} KB, "
                f"SRAM {c['sram_kb']} KB, {c['macs']:,} MACs, about {c['latency_ms']} ms"
                + (f"; then a search of {result['search']['candidates']:,} architectures" if result.get("search") else ""))
    if status == "does_not_fit":
        return "does not fit: " + "; ".join(result["failed_checks"][0]["shortfalls"])
    if name == "run_build" and status == "done":
        failed = [c["check"] for c in result["checks"] if not c["ok"]]
        return (f"run {result['run_id']}: int8 accuracy {100 * result['metrics']['student_int8_test_accuracy']:.1f} %"
                + (f"; failed checks: {', '.join(failed)}" if failed else "; all checks passed"))
    if name == "run_build" and status == "partial":
        return f"run {result['run_id']}: finished {', '.join(result['finished'])}"
    return json.dumps(result, default=str)[:400]


def names_a_device(text: str) -> bool:
    from agent.parse import find_device_in  # the device alone: a bad budget in the text is the agent's to answer

    return find_device_in(text) is not None


_ASKS_FOR_CLASSES = re.compile(r"class|tell apart|tells apart|recogni|detect|distinguish|label|categor|"
                               r"what (?:should|do|does|will)", re.IGNORECASE)


def starts_over(question: str, text: str) -> bool:
    """A message that names classes while the agent asked for something else (images, a device, retry or
    accept) is a new request: taken as the answer, it was glued onto the old request and mixed the two."""
    from agent.parse import find_classes

    return not _ASKS_FOR_CLASSES.search(question) and bool(find_classes(text)[0])
