"""What a model is asked for, checked against the registry before anything is sent.

Spoken answers (``--speak [VOICE]``, ``speak=``): only models that speak, never while
thinking, with a voice of the model's own family. Thinking: whether this request will
think (Qwen3.8-Omni-Flash by default, Qwen3-Omni-Flash with ``enable_thinking``), so the
view can reserve the "thinking…" block above the answer. The captioner and speech
recognition take no question: it is not sent, and the answer says so. A clip cut to the
model's limit gets a note naming a model that hears it whole. Each refusal is one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._format import num, short
from .backends.base import PreparedAudio
from .errors import InputError
from .models import ModelSpec

__all__ = ["Asked", "longer_audio_note", "shape_request", "thinks"]

LONG_AUDIO_MODEL = "qwen3.5-omni-plus"  # hears up to 3 h per file (OMNI-35)


def thinks(spec: ModelSpec, params: dict[str, Any]) -> bool:
    """Whether a request with ``params`` makes ``spec``'s model think (§11.5)."""
    if spec.thinking == "default":
        return params.get("enable_thinking") is not False and params.get("reasoning_effort") != (
            "none"
        )
    return spec.thinking == "optional" and params.get("enable_thinking") is True


@dataclass(frozen=True)
class Asked:
    """A question as it will be sent: the text, the parameters, and the notes to show."""

    question: str | None
    params: dict[str, Any]
    notes: tuple[str, ...]
    thinking: bool
    voice: str | None  # set when a spoken answer was asked for


def shape_request(
    spec: ModelSpec, question: str | None, params: dict[str, Any], speak: bool | str
) -> Asked:
    """Validate ``speak`` and the question for ``spec`` and shape the parameters."""
    notes: list[str] = [f"{spec.name}: {spec.note}"] if spec.fallback else []
    thinking = thinks(spec, params)
    voice: str | None = None
    params = dict(params)
    if speak:
        voice = _voice(spec, speak, thinking, notes)
        if "modalities" in params or "audio" in params:
            raise InputError("--speak sets modalities and audio itself: drop -p modalities/audio")
        params["modalities"] = ["text", "audio"]
        params["audio"] = {"voice": voice, "format": "wav"}  # "wav": the only documented value
    if question and not spec.takes_text:
        notes.append(
            f"{spec.name} describes the audio and takes no question: "
            f'"{short(question, 60)}" was not sent'
        )
        question = None
    elif question and spec.transcribes:
        notes.append(
            f"{spec.name} transcribes and takes no question: "
            f'"{short(question, 60)}" was not sent (a --system prompt is sent as recognition '
            "context, e.g. names and terms)"
        )
        question = None
    return Asked(question, params, tuple(notes), thinking, voice)


def _voice(spec: ModelSpec, speak: bool | str, thinking: bool, notes: list[str]) -> str:
    if not spec.speaks:
        raise InputError(
            f"{spec.name} answers in text only; for a spoken answer use "
            "-m qwen3.5-omni-plus (or qwen3-omni-flash)"
        )
    if thinking:  # OMNI-35, OMNI-2512: thinking mode forbids audio output
        raise InputError(f"{spec.name} cannot speak while thinking: drop -p enable_thinking")
    voice = spec.default_voice if speak is True else str(speak).strip()
    if not voice:
        raise InputError(f"{spec.name}: no voice given")
    if voice not in spec.voices:
        if spec.voices_complete:
            shown = ", ".join(spec.voices[:12]) + (" …" if len(spec.voices) > 12 else "")
            raise InputError(f"{voice!r} is not a voice of {spec.name} (voices: {shown})")
        notes.append(
            f"voice {voice!r} is not in the documented list of {spec.name} "
            f"({', '.join(spec.voices)}; the full list is UNVERIFIED): sent as given"
        )
    return voice


def longer_audio_note(spec: ModelSpec, prepared: Sequence[PreparedAudio]) -> str | None:
    """For a clip cut to the model's limit: how to have all of it heard."""
    cut = [p for p in prepared if p.cut_seconds]
    limit = spec.limits.max_audio_seconds
    if not cut or limit is None or spec.name.startswith(LONG_AUDIO_MODEL):
        return None
    return (
        f"{spec.name} hears at most {num(limit)} s per clip: --windows {limit:g} asks about "
        f"all of it in parts, or -m {LONG_AUDIO_MODEL} hears up to 3 h whole"
    )
