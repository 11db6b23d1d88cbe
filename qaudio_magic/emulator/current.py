"""Today's Qwen audio models as the service documents them (CURRENT-MODELS.md §11).

The emulator's compatible-mode and native routes ask :func:`rules_for` whether a model
is one of these (Qwen3.5-Omni, Qwen3.8-Omni-Flash, Qwen3-Omni-Flash, Qwen-Omni-Turbo,
the captioner, Qwen3-ASR) and, if so, apply its rules here:

* stream-only models refuse non-stream calls; one audio per user message where the docs
  say "text plus one other modality"; Qwen3.5-Omni takes up to 250 inline / 2048 items;
* per-model audio duration limits; the captioner refuses any text and a second turn;
  ASR takes one clip, ``asr_options`` and a system message as recognition context;
* thinking (``enable_thinking``, ``reasoning_effort``; Qwen3.8 thinks by default):
  ``reasoning_content`` deltas stream before the answer; never with audio output;
* spoken answers (``modalities: ["text","audio"]`` + ``audio: {voice, format: "wav"}``):
  ``delta.audio.data`` carries base64 of headerless 16-bit PCM, mono, 24 kHz — a
  synthetic speech-like signal, one syllable-like burst per word;
* ASR answers carry ``annotations: [{"type": "audio_info", "language", "emotion"}]``.

The model limits come from the package's registry (``qaudio_magic.models``), which a test
checks against CURRENT-MODELS.md. Error *texts* the docs do not give are marked
UNVERIFIED below; their HTTP status and code follow the generic table (§11.12).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models import ModelSpec, lookup
from .server import Frame, ReceivedAudio

__all__ = [
    "SPEECH_RATE",
    "Plan",
    "Refusal",
    "Rules",
    "asr_annotations",
    "caption",
    "check_request",
    "chunks",
    "completion_message",
    "heard_seconds",
    "reasoning",
    "rules_for",
    "speech_pcm",
]

SPEECH_RATE = 24_000  # Hz: the spoken answer's PCM (OMNI-35, OMNI-2512 decoders)
MAX_SPEECH_SECONDS = 20.0  # the emulator's spoken answers stop here (keeps bodies small)
_AUDIO_CHUNK = 4_800 * 2  # bytes of PCM per audio delta: 0.2 s
STREAM_ONLY = "This model only support stream mode, please enable the stream parameter."
THINKING_STREAM_ONLY = "parameter.enable_thinking only support stream call"  # QIANWEN-FAQ
_EFFORTS = ("none", "low", "medium", "high", "max", "xhigh")  # 3P LiteLLM; UNVERIFIED


class Refusal(Exception):
    """A request the service refuses: HTTP status, error code, message (OpenAI envelope)."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def _bad(message: str, param: str | None = None) -> Refusal:
    return Refusal(400, "invalid_parameter_error", message, param)


@dataclass(frozen=True)
class Rules:
    """What the service enforces for one model (from its registry spec)."""

    spec: ModelSpec

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def stream_required(self) -> bool:
        # Documented for 3.5, 3-Omni-Flash and turbo by every alibabacloud page (§11.4.1;
        # only QIANWEN-FAQ disagrees for 3.5); for 3.8 it is UNVERIFIED, so the emulator
        # accepts both there and the client always streams.
        return self.spec.stream_only and self.family != "qwen3.8-omni"

    @property
    def one_item_per_message(self) -> bool:
        # 3.8's rule is UNVERIFIED ("presumably" like 3.5): the emulator accepts several.
        return self.spec.clips_per_message == 1 and self.family != "qwen3.8-omni"


def rules_for(model: str) -> Rules | None:
    """The rules of ``model`` if it is one of today's audio models (else None)."""
    spec = lookup(model)
    if spec.route not in ("dashscope-compatible", "dashscope") or spec.family in (
        "qwen-audio",
        "",
    ):
        return None
    return Rules(spec)


@dataclass(frozen=True)
class Plan:
    """What a valid request asked for."""

    thinking: bool = False
    effort: str = "xhigh"
    voice: str | None = None  # set when a spoken answer was asked for
    asr: dict[str, Any] | None = None  # asr_options (ASR models)
    context: str = ""  # ASR: the system message's text


def check_request(
    body: dict[str, Any],
    rules: Rules,
    *,
    native: bool = False,
    stream: bool,
) -> Plan:
    """Refuse what the service refuses in the parameters; say what was asked for."""
    spec = rules.spec
    params = body.get("parameters") if native else body
    params = params if isinstance(params, dict) else {}
    if not stream and rules.stream_required:
        raise _bad(STREAM_ONLY)
    if (
        not native
        and not stream
        and "stream_options" in body
        and spec.transcribes  # QC-ASR: "stream_options cannot be set" without stream
    ):
        raise _bad("When stream is set to False, the stream_options parameter cannot be set.")
    thinking = _thinking(params, rules)
    if thinking and not stream:
        raise _bad(THINKING_STREAM_ONLY, "enable_thinking")
    effort = str(params.get("reasoning_effort") or "xhigh")
    voice = _voice(params, rules, thinking)
    asr = params.get("asr_options")
    if asr is not None:
        if not spec.transcribes:
            raise _bad("asr_options is only supported by speech recognition models.")
        if not isinstance(asr, dict):
            raise _bad("asr_options must be an object.", "asr_options")
        unknown = set(asr) - {"language", "enable_itn", "enable_lid"}
        if unknown:  # UNVERIFIED text; the documented keys are language and enable_itn
            raise _bad(f"Unknown asr_options field(s): {', '.join(sorted(unknown))}.")
    return Plan(thinking, effort, voice, asr or ({} if spec.transcribes else None))


def _thinking(params: dict[str, Any], rules: Rules) -> bool:
    spec = rules.spec
    asked = params.get("enable_thinking")
    effort = params.get("reasoning_effort")
    if effort is not None:
        if spec.thinking != "default":  # UNVERIFIED text
            raise _bad(f"reasoning_effort is not supported by {spec.name}.", "reasoning_effort")
        if effort not in _EFFORTS:
            raise _bad(
                f"reasoning_effort must be one of {', '.join(_EFFORTS)}.", "reasoning_effort"
            )
    if spec.thinking == "never":
        if asked is True:  # OMNI-35: "not supported" (the error text is UNVERIFIED)
            raise _bad(f"The model {spec.name} does not support enable_thinking.")
        return False
    if spec.thinking == "optional":
        return asked is True
    return asked is not False and effort != "none"


def _voice(params: dict[str, Any], rules: Rules, thinking: bool) -> str | None:
    spec = rules.spec
    modalities = params.get("modalities") or ["text"]
    if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"}:
        raise _bad('modalities must be ["text"] or ["text", "audio"].', "modalities")
    audio = params.get("audio")
    if "audio" not in modalities:
        if audio is not None and thinking:  # OMNI-2512: must not be sent while thinking
            raise _bad("The audio parameter is not supported in thinking mode.", "audio")
        return None
    if not spec.speaks:  # Q38, OMNI-OV, CAPT (text only); UNVERIFIED text
        raise _bad(f"The model {spec.name} does not support audio output.", "modalities")
    if thinking:  # OMNI-35, OMNI-2512: thinking forbids audio output; UNVERIFIED text
        raise _bad("Audio output is not supported in thinking mode.", "modalities")
    if not isinstance(audio, dict) or not audio.get("voice"):
        raise _bad("Audio output needs the audio parameter with a voice.", "audio")
    if audio.get("format", "wav") != "wav":  # "wav" is the only documented value
        raise _bad('audio.format only supports "wav".', "audio.format")
    voice = str(audio["voice"])
    if spec.voices_complete and voice not in spec.voices:  # UNVERIFIED text
        raise _bad(f"The voice {voice!r} is not supported by {spec.name}.", "audio.voice")
    return voice


def check_messages(messages: list[Any], rules: Rules, plan: Plan) -> str:
    """Refuse message shapes the model does not take; return an ASR context (system text).

    Items are counted per message here; their decoding happens in the route.
    """
    spec = rules.spec
    context: list[str] = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        texts = [
            p
            for p in parts
            if isinstance(p, str) or (isinstance(p, dict) and ("text" in p and "type" not in p))
        ] + [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if not spec.takes_text:  # CAPT: one audio part, no text prompt, single turn
            if role != "user":
                raise _bad(f"The model {spec.name} takes a single user message (no {role}).")
            if any((p if isinstance(p, str) else p.get("text")) for p in texts):
                raise _bad(f"The model {spec.name} does not accept text input, only audio.")
        if spec.transcribes:
            if role == "system":
                context += [p if isinstance(p, str) else str(p.get("text", "")) for p in texts]
            elif role == "assistant":
                raise _bad(f"The model {spec.name} takes a single turn.")
            elif any((p if isinstance(p, str) else p.get("text")) for p in texts):
                raise _bad(
                    f"The model {spec.name} takes audio only in the user message; "
                    "put context in a system message."
                )
        if role == "system" and plan.voice and rules.family == "qwen-omni-turbo":
            # OMNI-2512: no system message when the answer is spoken (UNVERIFIED text)
            raise _bad("System messages are not supported when the output includes audio.")
    return " ".join(c for c in context if c)


def check_audio(
    current: list[ReceivedAudio], everything: list[ReceivedAudio], rules: Rules
) -> None:
    """Counts and durations against the model's limits (texts UNVERIFIED, §11.12)."""
    spec = rules.spec
    single = spec.clips_per_request == 1 and (spec.single_turn or spec.transcribes)
    if single and len(everything) != 1:
        raise _bad(f"The model {spec.name} takes exactly one audio file.")
    if spec.clips_per_request and spec.clips_per_message is None:  # Qwen3.5-Omni
        inline = sum(1 for a in everything if a.kind == "data")
        if spec.inline_clips_per_request and inline > spec.inline_clips_per_request:
            raise _bad(f"At most {spec.inline_clips_per_request} base64 audio items per request.")
        if len(everything) > spec.clips_per_request:
            raise _bad(f"At most {spec.clips_per_request} audio items per request.")
    limit = spec.limits.max_audio_seconds
    for item in everything:
        if limit is not None and item.duration is not None and item.duration > limit + 0.5:
            raise Refusal(
                400,
                "InvalidParameter",
                f"The audio is {item.duration:.0f} s long; {spec.name} takes at most "
                f"{limit:.0f} s per file.",
            )


def heard_seconds(rules: Rules | None) -> float | None:
    """How much of each clip the model hears (None: all of it)."""
    return rules.spec.limits.max_audio_seconds if rules is not None else 30.0


def audio_tokens(rules: Rules, items: list[ReceivedAudio]) -> int:
    """Input audio tokens at the model's rate, < 1 s counting as 1 s (0: billed by time)."""
    lim = rules.spec.limits
    if lim.audio_tokens_per_second == 0:
        return 0
    total = 0
    for item in items:
        seconds = item.duration or 0.0
        if lim.max_audio_seconds is not None:
            seconds = min(seconds, lim.max_audio_seconds)
        total += max(lim.min_audio_tokens, math.ceil(seconds * lim.audio_tokens_per_second))
    return total


# ---------------------------------------------------------------------- what it says
def reasoning(model: str, clips: list[ReceivedAudio], question: str | None, effort: str) -> str:
    """The emulated chain of thought: says it is emulated and what it looked at."""
    sentences = [
        f"Emulated reasoning from {model} (not a real model).",
        f"The message holds {len(clips)} audio clip{'s' if len(clips) != 1 else ''}"
        + (
            " of " + ", ".join(f"{c.duration:.2f} s" for c in clips if c.duration is not None)
            if any(c.duration is not None for c in clips)
            else ""
        )
        + ".",
        f'The question is "{question}".' if question else "There is no question text.",
        "I will answer from what arrived.",
    ]
    keep = {"low": 2, "medium": 3}.get(effort, len(sentences))
    return " ".join(sentences[:keep])


def caption(model: str, clip: ReceivedAudio) -> str:
    """The captioner's emulated description of one clip."""
    what = (
        f"{clip.duration:.2f} s of audio at {clip.sample_rate} Hz, "
        f"{clip.channels} channel{'s' if clip.channels != 1 else ''}"
        if clip.duration is not None
        else clip.error or "audio of unknown length"
    )
    return f"Emulated caption from {model} (not a real model): the recording holds {what}."


def asr_annotations(plan: Plan) -> tuple[str, list[dict[str, str]]]:
    """The detected (or forced) language and the emotion, as ``message.annotations``."""
    options = plan.asr or {}
    language = str(options.get("language") or "en")
    return language, [{"type": "audio_info", "language": language, "emotion": "neutral"}]


def transcript(model: str, clip: ReceivedAudio, plan: Plan, context: str) -> str:
    """The emulated transcript: says it is emulated and what it was given."""
    options = plan.asr or {}
    bits = [f"{clip.duration:.2f} s" if clip.duration is not None else "audio"]
    if options.get("language"):
        bits.append(f"language forced to {options['language']}")
    if options.get("enable_itn"):
        bits.append("ITN on")
    if context:
        bits.append(f'context "{context[:80]}"')
    return f"Emulated transcript from {model} (not a real model) of {', '.join(bits)}."


# ---------------------------------------------------------------------- spoken answers
def speech_pcm(text: str, voice: str) -> bytes:
    """A speech-like 24 kHz mono 16-bit little-endian signal for ``text``: one voiced,
    vowel-like burst per word (a few harmonics of a gliding pitch shaped by two formants),
    short pauses between words and longer ones at punctuation. The voice sets the pitch."""
    rate = SPEECH_RATE
    base = 95.0 + int(hashlib.sha256(voice.encode()).hexdigest()[:4], 16) % 120
    pieces: list[np.ndarray] = []
    total = 0
    for n, word in enumerate(re.findall(r"\S+", text)):
        seconds = min(0.45, max(0.12, 0.055 * len(word)))
        t = np.arange(int(seconds * rate)) / rate
        pitch = base * (1.0 + 0.08 * np.sin(2 * np.pi * t / seconds + n))
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        formant = (700 + 60 * (n % 5), 1200 + 150 * (len(word) % 7))
        voiced = np.zeros_like(t)
        for k in range(1, 12):
            weight = sum(math.exp(-(((k * base) - f) ** 2) / (2 * 160.0**2)) for f in formant)
            voiced += (0.15 + weight) / k * np.sin(k * phase)
        envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)
        pause = 0.22 if word[-1] in ".,;:!?" else 0.06
        burst = np.concatenate([voiced * envelope, np.zeros(int(pause * rate))])
        pieces.append(burst)
        total += len(burst)
        if total >= MAX_SPEECH_SECONDS * rate:
            break
    signal = np.concatenate(pieces) if pieces else np.zeros(int(0.2 * rate))
    signal = signal[: int(MAX_SPEECH_SECONDS * rate)]
    peak = float(np.max(np.abs(signal))) or 1.0
    return (signal / peak * 0.4 * 32767).astype("<i2").tobytes()


def speech_seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / SPEECH_RATE


# ---------------------------------------------------------------------- the reply
def completion_message(
    text: str, reasoning_text: str, annotations: list[dict[str, str]] | None
) -> dict[str, Any]:
    """The non-stream ``choices[0].message``."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning_text:
        message["reasoning_content"] = reasoning_text
    if annotations is not None:
        message["annotations"] = annotations
    return message


def usage_frame(cid: str, created: int, model: str, usage: dict[str, Any]) -> Frame:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, only usage."""
    return Frame(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
    )


def chunks(
    cid: str,
    model: str,
    thought: list[str],
    pieces: list[str],
    finish: str,
    usage: dict[str, Any] | None,
    *,
    pcm: bytes = b"",
    annotations: list[dict[str, str]] | None = None,
) -> Iterator[Frame]:
    """``chat.completion.chunk`` events: reasoning deltas first, then the answer with its
    audio deltas interleaved (a share of the PCM after each text piece), a last audio
    delta with only a ``transcript`` (the docs' samples expect one may come), the finish
    chunk, the usage chunk (empty ``choices``), ``[DONE]``."""
    created = int(time.time())
    audio_id = f"audio_{cid.removeprefix('chatcmpl-')}"

    def chunk(delta: dict[str, Any], reason: str | None = None) -> Frame:
        return Frame(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }
        )

    if thought:
        yield chunk({"role": "assistant", "content": None, "reasoning_content": ""})
        for piece in thought:
            yield chunk({"content": None, "reasoning_content": piece})
    else:
        yield chunk({"role": "assistant", "content": ""})
    cuts = list(range(0, len(pcm), _AUDIO_CHUNK))
    per_piece = -(-len(cuts) // max(len(pieces), 1)) if cuts else 0
    for n, piece in enumerate(pieces):
        yield chunk({"content": piece})
        for start in cuts[n * per_piece : (n + 1) * per_piece]:
            data = base64.b64encode(pcm[start : start + _AUDIO_CHUNK]).decode("ascii")
            yield chunk({"audio": {"data": data, "expires_at": created + 3600, "id": audio_id}})
    if pcm:
        yield chunk({"audio": {"transcript": "".join(pieces), "id": audio_id}})
    final: dict[str, Any] = {"content": ""}
    if annotations is not None:  # UNVERIFIED where a streamed ASR answer puts them
        final["annotations"] = annotations
    yield chunk(final, finish)
    if usage is not None:
        yield usage_frame(cid, created, model, usage)
    yield Frame("[DONE]")


def usage(
    rules: Rules,
    items: list[ReceivedAudio],
    text_tokens: int,
    out_tokens: int,
    reasoning_tokens: int,
    pcm: bytes,
) -> dict[str, Any]:
    """Compatible-mode usage with the documented details (§11.4.2, §11.5)."""
    sound = audio_tokens(rules, items)
    out_audio = (
        math.ceil(speech_seconds(pcm) * (rules.spec.audio_out_tokens_per_second or 12.5))
        if pcm
        else 0
    )
    completion: dict[str, int] = {"text_tokens": out_tokens}
    if reasoning_tokens:
        completion["reasoning_tokens"] = reasoning_tokens
    if out_audio:
        completion["audio_tokens"] = out_audio
    prompt = sound + text_tokens
    produced = out_tokens + reasoning_tokens + out_audio
    return {
        "prompt_tokens": prompt,
        "completion_tokens": produced,
        "total_tokens": prompt + produced,
        "prompt_tokens_details": {"text_tokens": text_tokens, "audio_tokens": sound},
        "completion_tokens_details": completion,
    }
