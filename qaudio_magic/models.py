"""Known models: which route serves each name, and its limits.

The model name alone selects the route, so a notebook switches service by changing
``-m`` only. Numbers are from the Model Studio docs (see the protocol reference).
"""

from __future__ import annotations

from dataclasses import dataclass

from .backends.base import Limits

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelSpec", "lookup"]

DEFAULT_MODEL = "qwen-audio-turbo-latest"

# What DashScope's native endpoint takes as-is (docs: AMR, WAV (PCM, GSM_MS), 3GP, AAC, MP3).
DASHSCOPE_ACCEPTS = frozenset(
    {
        ("wav", "pcm_s16le"),
        ("wav", "gsm_ms"),
        ("mp3", "mp3"),
        ("aac", "aac"),
        ("amr", "amr_nb"),
        ("mov", "aac"),
        ("mov", "amr_nb"),
    }
)

_QWEN_AUDIO = Limits(accepted=DASHSCOPE_ACCEPTS)
_QWEN_AUDIO_OLD = Limits(
    context_tokens=8_000,
    max_input_tokens=6_000,
    max_output_tokens=1_500,
    accepted=DASHSCOPE_ACCEPTS,
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    route: str  # "dashscope" | "dashscope-compatible" | "openai" | "local"
    limits: Limits
    note: str = ""


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("qwen-audio-turbo-latest", "dashscope", _QWEN_AUDIO, "default; free trial only"),
        ModelSpec("qwen-audio-turbo-2024-12-04", "dashscope", _QWEN_AUDIO, "snapshot"),
        ModelSpec("qwen-audio-turbo", "dashscope", _QWEN_AUDIO_OLD, "= 2024-08-07"),
        ModelSpec("qwen-audio-turbo-2024-08-07", "dashscope", _QWEN_AUDIO_OLD, "snapshot"),
        ModelSpec("qwen2-audio-instruct", "dashscope", _QWEN_AUDIO_OLD, "open model, hosted"),
        ModelSpec("qwen-audio-chat", "dashscope", _QWEN_AUDIO_OLD, "open model, hosted"),
    )
}


def lookup(name: str) -> ModelSpec:
    """The spec for ``name``; unknown names go to DashScope native with Qwen-Audio limits."""
    spec = MODELS.get(name)
    if spec is not None:
        return spec
    return ModelSpec(name, "dashscope", _QWEN_AUDIO, "unknown model: Qwen-Audio limits assumed")
