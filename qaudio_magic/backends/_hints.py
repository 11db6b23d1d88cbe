"""One-line hints for the errors of today's Qwen audio models (CURRENT-MODELS §11.12).

The service's texts are documented for a few cases only (stream-only, raw base64,
``enable_thinking`` on a non-stream call, a key of another region); the others (too many
clips, audio over the limit, thinking or speech where unsupported) have no documented
text, so they are recognised by the words such errors use and by their parameter, and
the hint is built from the model's registry entry either way.
"""

from __future__ import annotations

from ..errors import APIError
from ..models import ModelSpec
from ..regions import key_hint

__all__ = ["ASR_OPTIONS", "add_model_hint", "model_hint"]

# Parameters (`-p NAME=VALUE`) that belong in Qwen3-ASR's `asr_options` (QC-ASR, SDK-src).
ASR_OPTIONS = ("language", "enable_itn", "enable_lid")


def _clock(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def model_hint(error: APIError, spec: ModelSpec, host: str) -> str | None:
    """What to do about ``error`` from ``spec``'s model, or None when nothing specific."""
    text = f"{error.code} {error.api_message}".lower()
    name = spec.name
    if error.status == 401 or "invalidapikey" in text or "invalid_api_key" in text:
        return key_hint(host)
    if "only support stream" in text:
        return (
            f"{name} answers only in streaming mode; qaudio streams it on the wire anyway, "
            "so a proxy in between may have dropped stream: true"
        )
    if "does not appear to be valid" in text:
        return (
            "audio must travel as a URL or a data: URL (data:;base64,…), never raw base64; "
            "check a proxy in between"
        )
    if "enable_thinking" in text or "reasoning_effort" in text or "thinking" in text:
        if spec.thinking == "never":
            return f"{name} does not think: remove -p enable_thinking / -p reasoning_effort"
        if "audio" in text:
            return f"{name} cannot speak while thinking: drop --speak or -p enable_thinking"
        if "reasoning_effort" in text and spec.thinking == "optional":
            return f"{name} switches thinking with -p enable_thinking=true (no reasoning_effort)"
        if "reasoning_effort" in text:  # the values are UNVERIFIED (3P LiteLLM)
            return "-p reasoning_effort takes none, low, medium, high or max"
        return f"{name} thinks only when streaming: leave %config QAudioMagic.stream on"
    if "audio output" in text or "voice" in text:
        if not spec.speaks:
            return f"{name} answers in text only; for a spoken answer use qwen3.5-omni-plus"
        shown = ", ".join(spec.voices[:6]) + (" …" if len(spec.voices) > 6 else "")
        return f"voices of {name}: {shown} (see %qaudio models)"
    if "text input" in text or ("single" in text and not spec.takes_text):
        return f"{name} describes audio without a question: send the clip alone (--caption)"
    if "at most one audio" in text or "exactly one audio" in text or "audio items" in text:
        return (
            f"{name} takes one clip per message; qaudio splits a turn's clips, so a "
            "proxy may have merged them — or ask qwen3.5-omni-plus, which takes several"
        )
    limit = spec.limits.max_audio_seconds
    if limit is not None and any(w in text for w in ("too long", "duration", "at most")):
        return (
            f"{name} hears at most {_clock(limit)} per clip: pick a part with --start/--end, "
            "use --windows, or a longer-audio model (qwen3.5-omni-plus: 3 h)"
        )
    return None


def add_model_hint(error: APIError, spec: ModelSpec, host: str) -> None:
    """Put the model's hint on ``error`` (after any hint it already has)."""
    hint = model_hint(error, spec, host)
    if hint and hint not in (error.hint or ""):
        error.hint = f"{error.hint}; {hint}" if error.hint else hint
