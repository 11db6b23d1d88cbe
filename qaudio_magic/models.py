"""Known models: which route serves each name, and its limits.

The model name alone selects the route, so a notebook switches service by changing
``-m`` only:

    qwen-audio-*, qwen2-audio-instruct, ...   DashScope native API ("dashscope")
    qwen3-omni-flash, qwen-omni-turbo, *omni*  DashScope compatible mode, same key
                                               ("dashscope-compatible"; stream-only)
    openai:MODEL                               any OpenAI-compatible server, e.g. vLLM
                                               serving Qwen2-Audio ("openai")
    local:PATH_OR_HUB_ID                       transformers in this kernel ("local")

Numbers are from the Model Studio docs (see the protocol reference, §7); the omni
context sizes are from the Model Studio model list and are marked where unverified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .backends.base import Limits

__all__ = [
    "DEFAULT_MODEL",
    "LOCAL_PREFIX",
    "MODELS",
    "OPENAI_PREFIX",
    "ROUTES",
    "ModelSpec",
    "lookup",
    "served_name",
]

DEFAULT_MODEL = "qwen-audio-turbo-latest"
OPENAI_PREFIX = "openai:"
LOCAL_PREFIX = "local:"

ROUTES = {
    "dashscope": "DashScope native API",
    "dashscope-compatible": "DashScope compatible mode (OpenAI-style, stream only)",
    "openai": "OpenAI-compatible server (vLLM, ...)",
    "local": "transformers in this kernel",
}

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
# Compatible mode names the container in ``input_audio.format``: keep to plain ones.
COMPATIBLE_ACCEPTS = frozenset(
    {("wav", "pcm_s16le"), ("mp3", "mp3"), ("aac", "aac"), ("amr", "amr_nb")}
)
# OpenAI's own input_audio takes wav and mp3; vLLM decodes both with soundfile/librosa.
OPENAI_ACCEPTS = frozenset({("wav", "pcm_s16le"), ("mp3", "mp3")})

_QWEN_AUDIO = Limits(accepted=DASHSCOPE_ACCEPTS)
_QWEN_AUDIO_OLD = Limits(
    context_tokens=8_000,
    max_input_tokens=6_000,
    max_output_tokens=1_500,
    accepted=DASHSCOPE_ACCEPTS,
)
# Qwen3-Omni-Flash: audio up to 150 s at 12.5 tokens/s (DOC-OMNI). Context sizes from the
# Model Studio model list (UNVERIFIED against a primary source in the protocol reference).
_QWEN3_OMNI = Limits(
    context_tokens=65_536,
    max_input_tokens=49_152,
    max_output_tokens=16_384,
    max_audio_seconds=150.0,
    audio_tokens_per_second=12.5,
    min_audio_tokens=1,
    accepted=COMPATIBLE_ACCEPTS,
)
# Qwen-Omni-Turbo: 25 tokens/s; 3 min per clip (older limit, UNVERIFIED).
_QWEN_OMNI_TURBO = Limits(
    context_tokens=32_768,
    max_input_tokens=30_720,
    max_output_tokens=2_048,
    max_audio_seconds=180.0,
    accepted=COMPATIBLE_ACCEPTS,
)
# Qwen2-Audio-7B-Instruct as vLLM or transformers run it: 8,192 positions, 30 s per clip
# (the Whisper encoder's window), 25 tokens per second, the same as DashScope bills.
_QWEN2_AUDIO_SERVED = Limits(accepted=OPENAI_ACCEPTS)
_QWEN2_AUDIO_LOCAL = Limits(accepted=frozenset(), wants_pcm=True)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    route: str  # "dashscope" | "dashscope-compatible" | "openai" | "local"
    limits: Limits
    note: str = ""
    stream_only: bool = False  # the service rejects non-stream requests (Qwen-Omni)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("qwen-audio-turbo-latest", "dashscope", _QWEN_AUDIO, "default; free trial only"),
        ModelSpec("qwen-audio-turbo-2024-12-04", "dashscope", _QWEN_AUDIO, "snapshot"),
        ModelSpec("qwen-audio-turbo", "dashscope", _QWEN_AUDIO_OLD, "= 2024-08-07"),
        ModelSpec("qwen-audio-turbo-2024-08-07", "dashscope", _QWEN_AUDIO_OLD, "snapshot"),
        ModelSpec("qwen2-audio-instruct", "dashscope", _QWEN_AUDIO_OLD, "open model, hosted"),
        ModelSpec("qwen-audio-chat", "dashscope", _QWEN_AUDIO_OLD, "open model, hosted"),
        ModelSpec(
            "qwen3-omni-flash",
            "dashscope-compatible",
            _QWEN3_OMNI,
            "paid successor of Qwen-Audio; stream only",
            stream_only=True,
        ),
        ModelSpec(
            "qwen-omni-turbo",
            "dashscope-compatible",
            _QWEN_OMNI_TURBO,
            "no longer updated; zh/en; stream only",
            stream_only=True,
        ),
        ModelSpec(
            "qwen-omni-turbo-latest",
            "dashscope-compatible",
            _QWEN_OMNI_TURBO,
            "stream only",
            stream_only=True,
        ),
        ModelSpec(
            OPENAI_PREFIX + "MODEL",
            "openai",
            _QWEN2_AUDIO_SERVED,
            "any OpenAI-compatible server; limits of Qwen2-Audio-7B-Instruct on vLLM",
        ),
        ModelSpec(
            LOCAL_PREFIX + "PATH_OR_HUB_ID",
            "local",
            _QWEN2_AUDIO_LOCAL,
            "Qwen2-Audio in transformers (pip install 'qaudio_magic[local]')",
        ),
    )
}


def lookup(name: str) -> ModelSpec:
    """The spec for ``name``; the prefix or the name's family picks the route.

    Unknown names go to DashScope native with Qwen-Audio limits, except names with
    ``omni`` in them, which only DashScope's compatible mode serves.
    """
    spec = MODELS.get(name)
    if spec is not None:
        return spec
    if name.startswith(OPENAI_PREFIX):
        return replace(MODELS[OPENAI_PREFIX + "MODEL"], name=name)
    if name.startswith(LOCAL_PREFIX):
        return replace(MODELS[LOCAL_PREFIX + "PATH_OR_HUB_ID"], name=name)
    if "omni" in name.lower():
        # a snapshot (qwen3-omni-flash-2025-12-01) has its family's limits
        family = max(
            (s for s in MODELS.values() if s.stream_only and name.startswith(s.name)),
            key=lambda s: len(s.name),
            default=None,
        )
        if family is not None:
            return replace(family, name=name, note="snapshot of " + family.name)
        return ModelSpec(
            name,
            "dashscope-compatible",
            _QWEN3_OMNI,
            "unknown omni model: Qwen3-Omni-Flash limits assumed",
            stream_only=True,
        )
    return ModelSpec(name, "dashscope", _QWEN_AUDIO, "unknown model: Qwen-Audio limits assumed")


def served_name(name: str) -> str:
    """The model name the server knows: ``openai:``/``local:`` prefixes removed."""
    for prefix in (OPENAI_PREFIX, LOCAL_PREFIX):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name
