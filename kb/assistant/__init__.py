"""The assistant: retrieve -> extract or generate -> verify citations -> answer or abstain.

``build_assistant(live, settings)`` makes the process's assistant: the extractive generator always, an
OpenAI-compatible generator when ``settings.llm_base_url`` is set. See ``kb.assistant.core``.
"""

from __future__ import annotations

from kb.assistant.core import Assistant, Prepared, load_thresholds
from kb.assistant.engineer import CaseAssist, case_assist
from kb.assistant.llm import ChatClient, LLMConfig, LLMError
from kb.assistant.types import Answer, Citation, Sentence, Source, Suggestion
from kb.config import Settings
from kb.live import LiveIndex

__all__ = [
    "Answer",
    "Assistant",
    "CaseAssist",
    "ChatClient",
    "Citation",
    "LLMConfig",
    "LLMError",
    "Prepared",
    "Sentence",
    "Source",
    "Suggestion",
    "build_assistant",
    "case_assist",
    "load_thresholds",
]


def build_assistant(live: LiveIndex, settings: Settings) -> Assistant:
    """The assistant ``settings`` describe (thresholds from ``data/assistant.json``)."""
    llm = None
    if settings.llm_base_url:
        llm = ChatClient(
            LLMConfig(
                settings.llm_base_url,
                settings.llm_model,
                api_key=settings.llm_api_key,
                timeout_s=settings.llm_timeout_s,
                max_tokens=settings.llm_max_tokens,
                max_retries=settings.llm_max_retries,
            )
        )
    return Assistant(
        live,
        thresholds=load_thresholds(settings.data_dir / "assistant.json"),
        llm=llm,
        base_url=settings.public_url,
    )
