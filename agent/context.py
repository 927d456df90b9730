"""Runtime configuration of the agent: which LLM (if any), where it may read and write, its limits.

Set by CLI flags or environment variables:

    NANOFACTORY_LLM_BASE_URL   an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, LM Studio)
    NANOFACTORY_LLM_MODEL      the model name at that endpoint (or an Ollama model with --llm-provider ollama)
    NANOFACTORY_LLM_API_KEY    its key, when it needs one (OPENAI_API_KEY also works)
    NANOFACTORY_LLM_PROVIDER   openai (default when a base URL or model is set) or ollama

With none of them set the agent uses the deterministic offline planner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from knowledge.errors import NanofactoryError

MAX_TEXT = 4000  # characters of free text a tool accepts (requests, answers)


@dataclass(frozen=True)
class LLMSettings:
    provider: Literal["openai", "ollama"]
    model: str
    base_url: str | None = None
    api_key: str | None = None

    @classmethod
    def from_env(cls, provider: str | None = None, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> "LLMSettings | None":
        env = os.environ
        provider = provider or env.get("NANOFACTORY_LLM_PROVIDER")
        model = model or env.get("NANOFACTORY_LLM_MODEL")
        base_url = base_url or env.get("NANOFACTORY_LLM_BASE_URL")
        api_key = api_key or env.get("NANOFACTORY_LLM_API_KEY") or env.get("OPENAI_API_KEY")
        if not (provider or model or base_url):
            return None
        if not model:
            raise NanofactoryError("An LLM endpoint is set but no model: pass --llm-model or set NANOFACTORY_LLM_MODEL.")
        if provider not in (None, "openai", "ollama"):
            raise NanofactoryError(f"Unknown LLM provider {provider!r}; use 'openai' (any compatible server) or 'ollama'.")
        return cls(provider=provider or "openai", model=model, base_url=base_url, api_key=api_key)

    def chat_model(self):
        """The LangChain chat model; constructing it does not contact the server."""
        if self.provider == "ollama":
            from langchain_ollama import ChatOllama

            return ChatOllama(model=self.model, base_url=self.base_url, temperature=0)
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=self.model, base_url=self.base_url, api_key=self.api_key or "none", temperature=0)


@dataclass
class Context:
    """What every node and tool may use; nothing here is mutable conversation state."""

    workspace: Path = field(default_factory=Path.cwd)
    runs_dir: Path = field(default_factory=lambda: Path("runs"))
    llm: LLMSettings | None = None
    chat_model: object | None = None  # a ready LangChain chat model; overrides ``llm`` (tests use a scripted one)
    max_steps: int = 24  # model turns in one conversation turn, then it stops and says so
    max_replans: int = 3  # re-plans after failed checks before an honest refusal
    epochs: int | None = None
    show_bars: bool = False
    extra_roots: list[Path] = field(default_factory=list)  # folders the user named themselves

    @property
    def on_page(self) -> bool:
        """The conversation runs in the web page (its tabs show the review, report and downloads)."""
        return False

    @property
    def planner_name(self) -> str:
        if self.chat_model is not None:
            return f"llm:{type(self.chat_model).__name__}"
        return f"llm:{self.llm.provider}:{self.llm.model}" if self.llm else "offline"

    def allowed_roots(self) -> list[Path]:
        return [self.workspace.resolve(), self.runs_dir.resolve(), *(p.resolve() for p in self.extra_roots)]

    def confine(self, path: str) -> Path:
        """``path`` resolved, if it lies inside the workspace or the runs folder; else a NanofactoryError."""
        if len(path) > 1024:
            raise NanofactoryError("That path is too long.")
        resolved = (self.workspace / Path(path).expanduser()).resolve()
        for root in self.allowed_roots():
            if resolved == root or root in resolved.parents:
                return resolved
        roots = " or ".join(str(r) for r in self.allowed_roots())
        raise NanofactoryError(f"{path} is outside the workspace; use a folder under {roots}.")
