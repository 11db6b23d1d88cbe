"""The model registry: which route serves each name, and what the docs say it accepts.

The model name alone selects the route, so a notebook switches service by changing
``-m`` only:

    qwen-audio-*, qwen2-audio-instruct, ...     DashScope native API ("dashscope")
    qwen3.5-omni-*, qwen3.8-omni-*, qwen3-omni-*, DashScope compatible mode, same key
    qwen-omni-turbo*, the captioner             ("dashscope-compatible")
    qwen3-asr-flash*                            DashScope native API (recognition context
                                                and ``asr_options`` are documented there)
    openai:MODEL                                any OpenAI-compatible server, e.g. vLLM
    local:PATH_OR_HUB_ID                        transformers in this kernel ("local")

Every figure carries the source key of ``shared/protocol/CURRENT-MODELS.md`` (§11; the
Qwen-Audio figures are from REFERENCE.md §7.1, key DOC-AUDIO) in a comment. Figures no
primary source confirms are marked UNVERIFIED in the comment *and* named in the spec's
``unverified`` set, so the ``%qaudio models`` table and the code that relies on them can
say so; where such a figure decides behaviour, the safe choice is taken (e.g. always
stream, one clip per message) and the comment says which.

Prices (with source and date; ``None`` = unknown) and rate limits (RPM/TPM) are data for
cost estimates and pacing; nothing here enforces them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from .backends.base import Limits

__all__ = [
    "ASR_EMOTIONS",
    "CHECKED",
    "DEFAULT_MODEL",
    "LOCAL_PREFIX",
    "MODELS",
    "OPENAI_PREFIX",
    "ROUTES",
    "ModelSpec",
    "Price",
    "RateLimit",
    "lookup",
    "model_row",
    "served_name",
]

DEFAULT_MODEL = "qwen-audio-turbo-latest"
OPENAI_PREFIX = "openai:"
LOCAL_PREFIX = "local:"
CHECKED = "2026-11-29"  # when CURRENT-MODELS.md was checked against its sources

ROUTES = {
    "dashscope": "DashScope native API",
    "dashscope-compatible": "DashScope compatible mode (OpenAI-style)",
    "openai": "OpenAI-compatible server (vLLM, ...)",
    "local": "transformers in this kernel",
    # Documented routes this package does not speak (the spec's note says what to use):
    "dashscope-async": "DashScope async task (submit, then poll; not supported here)",
    "dashscope-workspace": "DashScope native on workspace hosts, no SDK (not supported here)",
    "websocket": "DashScope WebSocket / Realtime API (not supported here)",
}
SUPPORTED_ROUTES = frozenset({"dashscope", "dashscope-compatible", "openai", "local"})

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
# Compatible mode names the container in ``input_audio.format``: keep to plain ones
# (Omni: "AMR, WAV, 3GP, 3GPP, AAC, MP3, etc." OMNI-35; captioner the same, CAPT).
COMPATIBLE_ACCEPTS = frozenset(
    {("wav", "pcm_s16le"), ("mp3", "mp3"), ("aac", "aac"), ("amr", "amr_nb")}
)
# OpenAI's own input_audio takes wav and mp3; vLLM decodes both with soundfile/librosa.
OPENAI_ACCEPTS = frozenset({("wav", "pcm_s16le"), ("mp3", "mp3")})

MB = 1_000_000
GB = 1_000_000_000
BASE64_MAX = 10 * MB  # every model: the base64 *string* must be < 10 MB (OMNI-35, CAPT, QC-ASR)

# Regions (CURRENT-MODELS §11.2.1 ids; see regions.py).
BJ, SG, US, HK, FRA, TYO = (
    "cn-beijing",
    "ap-southeast-1",
    "us-east-1",
    "cn-hongkong",
    "eu-central-1",
    "ap-northeast-1",
)

# Emotions qwen3-asr-flash annotates (ASR-GUIDE@2025-11-13); the examples return
# "neutral", so treat the value as a free string (§11.9.3).
ASR_EMOTIONS = ("surprise", "calm", "happy", "sad", "disgust", "anger", "fear", "neutral")


# ---------------------------------------------------------------------- prices, rates
@dataclass(frozen=True)
class Price:
    """What one region charges, per 1 M tokens (``*_in``/``*_out``) or per audio second.

    ``None`` means unknown (not that it is free). ``verified`` is False when only
    third-party pages state it (UNVERIFIED). :meth:`estimate` returns None when a part
    that the request uses has no known price.
    """

    region: str
    currency: str  # "USD" or "CNY"
    text_in: float | None = None
    audio_in: float | None = None
    text_out: float | None = None
    audio_out: float | None = None
    cached_in: float | None = None
    per_second: float | None = None  # per second of input audio (speech recognition)
    free_quota: str = ""
    source: str = ""
    checked: str = CHECKED
    verified: bool = False

    def estimate(
        self,
        *,
        text_in: int = 0,
        audio_in: int = 0,
        text_out: int = 0,
        audio_out: int = 0,
        seconds: float = 0.0,
    ) -> float | None:
        """The cost in :attr:`currency` of these token counts (and audio seconds)."""
        total = 0.0
        for count, rate in (
            (text_in, self.text_in),
            (audio_in, self.audio_in),
            (text_out, self.text_out),
            (audio_out, self.audio_out),
        ):
            if count:
                if rate is None:
                    return None
                total += count * rate / 1e6
        if seconds:
            if self.per_second is None:
                return None
            total += math.ceil(seconds) * self.per_second  # "< 1 s counts as 1 s"
        return total


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens per minute, per Alibaba Cloud account and per model (RATE).

    All RAM users, workspaces and keys of an account share it; each model (snapshots
    included) has its own; the service may enforce RPS = RPM/60 and TPS = TPM/60.
    """

    rpm: int | None
    tpm: int | None
    regions: tuple[str, ...] = ()
    source: str = "RATE"


# ---------------------------------------------------------------------- the spec
Thinking = Literal["never", "optional", "default"]


@dataclass(frozen=True)
class ModelSpec:
    """One model (or family) as documented: route, limits, abilities, prices, rates.

    ``limits`` holds what audio preparation and the history budget need (per-clip
    duration and size, token rates, context); the rest is what requests are built and
    checked by. ``max_audio_bytes`` in ``limits`` is the per-file limit by URL or upload;
    inline base64 is held to :data:`BASE64_MAX` by the backends.
    """

    name: str
    route: str  # see ROUTES
    limits: Limits
    note: str = ""
    stream_only: bool = False  # send stream: true whatever the user asked (Qwen-Omni)
    family: str = ""
    routes: tuple[str, ...] = ()  # every documented route (the first one is used)
    regions: tuple[str, ...] = ()  # region ids where the docs list the model
    streams: bool = True  # False: asked without streaming (ASR annotations, see below)
    clips_per_message: int | None = None  # None: no documented limit
    clips_per_request: int | None = None
    inline_clips_per_request: int | None = None
    takes_text: bool = True  # False: the captioner takes no prompt at all
    single_turn: bool = False
    system_message: bool = True
    thinking: Thinking = "never"
    thinking_params: tuple[str, ...] = ()  # request parameters that steer thinking
    speaks: bool = False
    voices: tuple[str, ...] = ()
    voices_complete: bool = True  # False: the documented list is partial
    default_voice: str | None = None
    audio_out_tokens_per_second: float | None = None
    transcribes: bool = False  # speech recognition: transcript + language/emotion
    per_second_billing: bool = False
    prices: tuple[Price, ...] = ()
    rate_limit: RateLimit | None = None
    sources: str = ""
    unverified: frozenset[str] = field(default_factory=frozenset)
    fallback: bool = False  # True: an unknown name given its family's spec

    @property
    def supported(self) -> bool:
        """Whether this package can call the model (its route is one it speaks)."""
        return self.route in SUPPORTED_ROUTES

    def price(self, region: str) -> Price | None:
        """The price in ``region`` (a region id), or None when unknown."""
        return next((p for p in self.prices if p.region == region), None)

    def can_speak(self, thinking: bool = False) -> bool:
        """Whether a spoken answer may be asked for (never while thinking, §11.6)."""
        return self.speaks and not thinking

    def voice_known(self, voice: str) -> bool:
        """Whether ``voice`` is on the documented list (case-sensitive, as sent)."""
        return voice in self.voices


def _names(text: str) -> tuple[str, ...]:
    """Names written ``"A|B|C"`` (voice names may hold spaces)."""
    return tuple(text.split("|"))


# ---------------------------------------------------------------------- Qwen-Audio
# REFERENCE §7.1 (DOC-AUDIO): 30 s heard per clip, 25 tokens/s, at least 25 per clip,
# 10 MB per file and per base64 string; free trial only, Beijing only (§1.1).
_QWEN_AUDIO = Limits(accepted=DASHSCOPE_ACCEPTS)  # -latest: 8,192 / 6,144 / 2,048
_QWEN_AUDIO_OLD = Limits(
    context_tokens=8_000,
    max_input_tokens=6_000,
    max_output_tokens=1_500,
    accepted=DASHSCOPE_ACCEPTS,
)
_QWEN_AUDIO_SPEC = dict(
    family="qwen-audio",
    routes=("dashscope",),
    regions=(BJ,),
    sources="DOC-AUDIO (REFERENCE §7.1)",
)

# ---------------------------------------------------------------------- Qwen3.5-Omni
# OMNI-35 unless noted. Compat only (OMNI-35, OMNI-EN@2026-03-31); Beijing + Singapore.
# Audio: ≤ 3 h per file, ≤ 2 GB by URL, base64 string < 10 MB; up to 2048 files by URL /
# 250 by base64 in one request; any mix of text, image, audio, video in one user message.
# 7 input tokens per audio second (12.5 out), < 1 s counts as 1 s. No thinking.
# Context, max input and max output are not published (OMNI-35 "see the console"): the
# figures below are third-party (3P code-index tables; UNVERIFIED, and they conflict:
# 262,144 for both, or plus 983,040 / flash 49,152, flash-2026-03-15 input 196,608).
# 262,144 is taken because 3 h of audio (75,600 tokens) must fit, which 49,152 cannot.
_QWEN35_OMNI = Limits(
    context_tokens=262_144,  # 3P, UNVERIFIED
    max_input_tokens=196_608,  # 3P (flash-2026-03-15), UNVERIFIED
    max_output_tokens=65_536,  # 3P, UNVERIFIED
    max_audio_seconds=3 * 3600.0,  # OMNI-35
    max_audio_bytes=2 * GB,  # by URL, OMNI-35
    audio_tokens_per_second=7.0,  # OMNI-35
    min_audio_tokens=7,  # "< 1 s counts as 1 s", OMNI-35
    accepted=COMPATIBLE_ACCEPTS,
)
# 55 voices; the full list moved to a page not captured: only "Tina" is documented
# (OMNI-35). Whether "Cherry" works on 3.5 is UNVERIFIED. Cloned voices: aliases only.
_QWEN35_VOICES = ("Tina",)
_OMNI_RATE = RateLimit(60, 100_000, (BJ, SG))  # RATE: each omni model and the captioner
_QWEN35 = dict(
    family="qwen3.5-omni",
    routes=("dashscope-compatible",),
    regions=(BJ, SG),  # OMNI-EN@2026-03-31, RATE
    # "Stream must be True" on every alibabacloud page; QIANWEN-FAQ says only function
    # calling needs it (UNVERIFIED which is right): always stream, as the client rule says.
    stream_only=True,
    clips_per_message=None,  # any mix in one message (OMNI-35 §11.3.3)
    clips_per_request=2048,  # by URL, OMNI-35
    inline_clips_per_request=250,  # by base64, OMNI-35
    thinking="never",  # "deep thinking: not supported" (OMNI-35, QIANWEN-FAQ)
    thinking_params=(),
    speaks=True,
    voices=_QWEN35_VOICES,
    voices_complete=False,
    default_voice="Tina",
    audio_out_tokens_per_second=12.5,  # OMNI-35
    rate_limit=_OMNI_RATE,
    sources="OMNI-35, OMNI-EN@2026-03-31, RATE; context/prices 3P",
    unverified=frozenset(
        {
            "context_tokens",
            "max_input_tokens",
            "max_output_tokens",
            "prices",
            "voices",
            "system_message",
            "stream_only",
        }
    ),
)
# Prices: 3P only (UNVERIFIED). CNY per 1 M tokens in Beijing; USD per 1 M internationally.
_P35_PLUS = (
    Price(BJ, "CNY", text_in=7, audio_in=53, text_out=40, audio_out=213, source="3P"),
    Price(SG, "USD", text_in=1.4, audio_in=11, text_out=8.3, audio_out=44, source="3P"),
)
_P35_FLASH = (
    Price(BJ, "CNY", text_in=2.2, audio_in=18, text_out=13.3, audio_out=72, source="3P"),
    Price(SG, "USD", text_in=0.4, audio_in=3, text_out=2.2, audio_out=11.9, source="3P"),
)

# ---------------------------------------------------------------------- Qwen3.8-Omni-Flash
# Q38 unless noted. Compat (Chat Completions) or the Responses API; six regions.
# Context 1 M; max input 991,808 non-thinking / 983,616 thinking (the thinking figure is
# taken: it thinks by default); max output 131,072. Text output only (Q38, OMNI-OV).
# UNVERIFIED: the stream requirement (streaming is safe: always stream), per-file audio
# limits (the 3 h of Qwen3.5-Omni assumed), the audio token rate (12.5, the Qwen3-Omni
# rate, assumed for estimates), several clips in one message (one per message is sent:
# valid for every omni model), the thinking parameters (`reasoning_effort` none/low/
# medium/high/max per 3P LiteLLM; `enable_thinking: false` likely), where reasoning
# arrives (`reasoning_content`, the DashScope convention, THINK).
_QWEN38_OMNI = Limits(
    context_tokens=1_000_000,  # Q38
    max_input_tokens=983_616,  # Q38 (thinking)
    max_output_tokens=131_072,  # Q38
    max_audio_seconds=3 * 3600.0,  # UNVERIFIED (Qwen3.5-Omni's limit assumed)
    max_audio_bytes=2 * GB,  # UNVERIFIED (Qwen3.5-Omni's limit assumed)
    audio_tokens_per_second=12.5,  # UNVERIFIED (Qwen3-Omni's rate assumed)
    min_audio_tokens=13,
    accepted=COMPATIBLE_ACCEPTS,
)
_QWEN38 = dict(
    family="qwen3.8-omni",
    routes=("dashscope-compatible",),
    regions=(BJ, SG, HK, TYO, FRA, US),  # Q38
    stream_only=True,  # UNVERIFIED: streaming is the safe choice
    clips_per_message=1,  # UNVERIFIED: the safe choice (see above)
    thinking="default",  # Q38
    thinking_params=("enable_thinking", "reasoning_effort"),  # UNVERIFIED names (3P)
    speaks=False,  # Q38, OMNI-OV: "for speech output, use qwen3.5-omni-plus"
    # USD per 1 M, international: 0.15 input, 0.016 cached input, 0.47 output (3P LiteLLM,
    # Vercel; UNVERIFIED); a separate audio-input rate is UNVERIFIED, so audio is unknown.
    prices=(Price(SG, "USD", text_in=0.15, cached_in=0.016, text_out=0.47, source="3P"),),
    rate_limit=None,  # not in RATE's copy
    sources="Q38, OMNI-OV, THINK; prices 3P",
    unverified=frozenset(
        {
            "stream_only",
            "max_audio_seconds",
            "max_audio_bytes",
            "audio_tokens_per_second",
            "clips_per_message",
            "thinking_params",
            "prices",
        }
    ),
)

# ---------------------------------------------------------------------- Qwen3-Omni-Flash
# OMNI-35, OMNI-2512. Compat only; Beijing + Singapore; stream required. Audio ≤ 20 min
# and ≤ 100 MB by URL, base64 < 10 MB; one file, and text plus *one* other modality per
# user message. (§7.2's "150 s" is the *video* limit, §11.3.3.) 12.5 tokens/s in and out.
# Hybrid thinking, default off (`enable_thinking`); no audio output while thinking.
# Context (OMNI-2512): non-thinking 49,152, thinking 65,536; max input 16,384 (chain of
# thought ≤ 32,768); max output 16,384. The non-thinking context is taken.
_QWEN3_OMNI = Limits(
    context_tokens=49_152,  # OMNI-2512 (non-thinking; 65,536 thinking)
    max_input_tokens=16_384,  # OMNI-2512
    max_output_tokens=16_384,  # OMNI-2512
    max_audio_seconds=20 * 60.0,  # OMNI-35, OMNI-2512
    max_audio_bytes=100 * MB,  # by URL, OMNI-35, OMNI-2512
    audio_tokens_per_second=12.5,  # OMNI-35, OMNI-2512
    min_audio_tokens=13,  # < 1 s counts as 1 s
    accepted=COMPATIBLE_ACCEPTS,
)
# Voices (OMNI-2512's voice table): 49 for 2025-12-01 (= qwen3-omni-flash; the same page's
# heading also lists the alias under the 17, which CURRENT-MODELS §11.6 reads as the
# pre-12-01 alias) and 17 for 2025-09-15.
_QWEN3_VOICES_0915 = _names(
    "Cherry|Ethan|Nofish|Jennifer|Ryan|Katerina|Elias|Jada|Dylan|Sunny|Li|Marcus|Roy|"
    "Peter|Rocky|Kiki|Eric"
)
_QWEN3_VOICES_1201 = _names(
    "Cherry|Serena|Ethan|Chelsie|Momo|Vivian|Moon|Maia|Kai|Nofish|Bella|Jennifer|"
    "Ryan|Katerina|Aiden|Eldric Sage|Mia|Mochi|Bellona|Vincent|Bunny|Neil|Elias|"
    "Arthur|Nini|Ebona|Seren|Pip|Stella|Bodega|Sonrisa|Alek|Dolce|Sohee|Ono Anna|"
    "Lenn|Emilien|Andre|Radio Gol|Jada|Dylan|Li|Marcus|Roy|Peter|Sunny|Eric|Rocky|"
    "Kiki"
)
_QWEN3 = dict(
    family="qwen3-omni-flash",
    routes=("dashscope-compatible",),
    regions=(BJ, SG),
    stream_only=True,  # OMNI-35, OMNI-2512
    clips_per_message=1,  # OMNI-35, OMNI-2512: text + one other modality
    clips_per_request=1,  # "1 file" (OMNI-35); earlier turns may carry audio (§11.3.4)
    thinking="optional",  # default off (OMNI-35, OMNI-2512)
    thinking_params=("enable_thinking",),
    speaks=True,  # non-thinking only
    voices=_QWEN3_VOICES_1201,
    default_voice="Cherry",
    audio_out_tokens_per_second=12.5,
    # Price not captured; free quota: Beijing 1 M tokens per model for 90 days (OMNI-2512).
    prices=(),
    rate_limit=_OMNI_RATE,
    sources="OMNI-35, OMNI-2512, RATE",
    unverified=frozenset({"prices"}),
)

# ---------------------------------------------------------------------- Qwen-Omni-Turbo
# OMNI-2512, OMNI-35: legacy, "no longer updated"; compat; stream required; 1 file ≤ 3 min,
# ≤ 10 MB; 25 tokens/s in and out; zh/en speech; no system message with audio output;
# 32,768 / 30,720 / 2,048.
_QWEN_OMNI_TURBO = Limits(
    context_tokens=32_768,
    max_input_tokens=30_720,
    max_output_tokens=2_048,
    max_audio_seconds=180.0,
    max_audio_bytes=10 * MB,
    audio_tokens_per_second=25.0,
    min_audio_tokens=25,
    accepted=COMPATIBLE_ACCEPTS,
)
_TURBO = dict(
    family="qwen-omni-turbo",
    routes=("dashscope-compatible",),
    regions=(BJ, SG),
    stream_only=True,
    clips_per_message=1,
    clips_per_request=1,
    speaks=True,
    voices=("Cherry", "Serena", "Ethan", "Chelsie"),  # OMNI-2512
    default_voice="Cherry",
    audio_out_tokens_per_second=25.0,
    rate_limit=_OMNI_RATE,
    sources="OMNI-35, OMNI-2512, RATE",
)

# ---------------------------------------------------------------------- the captioner
# CAPT: audio only, no text prompt, single turn; one file ≤ 40 min, URL ≤ 1 GB, base64
# < 10 MB; compat (non-stream works) and native; 12.5 tokens/s; 65,536 / 32,768 / 32,768.
_CAPTIONER = Limits(
    context_tokens=65_536,
    max_input_tokens=32_768,
    max_output_tokens=32_768,
    max_audio_seconds=40 * 60.0,
    max_audio_bytes=1 * GB,
    audio_tokens_per_second=12.5,
    min_audio_tokens=13,
    accepted=COMPATIBLE_ACCEPTS,
)
_CAPT = dict(
    family="qwen3-omni-captioner",
    routes=("dashscope-compatible", "dashscope"),
    regions=(BJ, SG),
    clips_per_message=1,
    clips_per_request=1,
    takes_text=False,
    single_turn=True,
    system_message=False,  # the message holds exactly one audio part and nothing else
    # CAPT (2026-01-25): per 1 k tokens, Beijing 0.0158 CNY in / 0.0127 out; Singapore
    # 0.027962 / 0.022458 "as written" (no currency on the copy read; CNY assumed: the
    # page is the zh one). Free quota: Beijing 1 M tokens, 90 days; Singapore none.
    prices=(
        Price(
            BJ,
            "CNY",
            text_in=15.8,
            audio_in=15.8,
            text_out=12.7,
            source="CAPT",
            checked="2026-01-25",
            verified=True,
            free_quota="1 M tokens, 90 days",
        ),
        Price(
            SG,
            "CNY",
            text_in=27.962,
            audio_in=27.962,
            text_out=22.458,
            source="CAPT",
            checked="2026-01-25",
            verified=False,
        ),
    ),
    rate_limit=_OMNI_RATE,
    sources="CAPT, RATE",
)

# ---------------------------------------------------------------------- Qwen3-ASR
# ASR-API, ASR-GUIDE, QC-ASR: compat and native; Singapore, Beijing (and the US model,
# native only); ≤ 5 min, base64 ≤ 10 MB, one file; transcript + annotations (language,
# emotion); `asr_options{language, enable_itn}`; a system message is recognition context
# (documented for native; compat UNVERIFIED, so native is used); billed per second;
# stream optional (default false). Whether a streamed chunk carries the annotations is
# UNVERIFIED, so it is asked without streaming. Context window UNVERIFIED.
_ASR = Limits(
    context_tokens=1_000_000,  # UNVERIFIED: not published; audio is billed by the second
    max_input_tokens=1_000_000,  # UNVERIFIED
    max_output_tokens=8_192,  # UNVERIFIED
    max_audio_seconds=5 * 60.0,  # ASR-GUIDE, QC-ASR
    max_audio_bytes=10 * MB,  # base64 ≤ 10 MB (the max URL size is UNVERIFIED)
    audio_tokens_per_second=0.0,  # billed per second (`usage.seconds`), not in tokens
    min_audio_tokens=0,
    accepted=DASHSCOPE_ACCEPTS,
)
_ASR_PRICES = (  # ASR-GUIDE@2025-11-13
    Price(
        SG,
        "USD",
        per_second=0.000035,
        source="ASR-GUIDE@2025-11-13",
        checked="2025-11-13",
        verified=True,
        free_quota="36,000 s, 90 days",
    ),
    Price(
        BJ,
        "USD",
        per_second=0.000032,
        source="ASR-GUIDE@2025-11-13",
        checked="2025-11-13",
        verified=True,
    ),
)
_QWEN3_ASR = dict(
    family="qwen3-asr",
    routes=("dashscope", "dashscope-compatible"),
    regions=(SG, BJ),
    streams=False,  # see above
    clips_per_message=1,
    clips_per_request=1,
    transcribes=True,
    per_second_billing=True,
    prices=_ASR_PRICES,
    rate_limit=None,  # not in RATE's copy
    sources="ASR-API, ASR-GUIDE, QC-ASR, SDK-src",
    unverified=frozenset(
        {"context_tokens", "max_input_tokens", "max_output_tokens", "max_audio_bytes"}
    ),
)

# Models documented on routes this package does not speak: listed so that `-m` explains.
_NO_LIMITS = Limits(max_audio_seconds=None, audio_tokens_per_second=0.0, min_audio_tokens=0)


def _spec(name: str, route: str, limits: Limits, note: str, **kw: object) -> ModelSpec:
    return ModelSpec(name, route, limits, note, **kw)  # type: ignore[arg-type]


_Q35_SNAP_NOTE = "snapshot; custom (cloned) voices only on the alias (OMNI-35)"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # Qwen-Audio: DashScope native, free trial only
        _spec(
            "qwen-audio-turbo-latest",
            "dashscope",
            _QWEN_AUDIO,
            "default; free trial only",
            **_QWEN_AUDIO_SPEC,
        ),
        _spec(
            "qwen-audio-turbo-2024-12-04", "dashscope", _QWEN_AUDIO, "snapshot", **_QWEN_AUDIO_SPEC
        ),
        _spec("qwen-audio-turbo", "dashscope", _QWEN_AUDIO_OLD, "= 2024-08-07", **_QWEN_AUDIO_SPEC),
        _spec(
            "qwen-audio-turbo-2024-08-07",
            "dashscope",
            _QWEN_AUDIO_OLD,
            "snapshot",
            **_QWEN_AUDIO_SPEC,
        ),
        _spec(
            "qwen2-audio-instruct",
            "dashscope",
            _QWEN_AUDIO_OLD,
            "open model, hosted",
            **_QWEN_AUDIO_SPEC,
        ),
        _spec(
            "qwen-audio-chat",
            "dashscope",
            _QWEN_AUDIO_OLD,
            "open model, hosted",
            **_QWEN_AUDIO_SPEC,
        ),
        # Qwen3.5-Omni: the flagship
        _spec(
            "qwen3.5-omni-plus",
            "dashscope-compatible",
            _QWEN35_OMNI,
            "flagship: 3 h of audio, several clips per message, speaks",
            prices=_P35_PLUS,
            **_QWEN35,
        ),
        _spec(
            "qwen3.5-omni-plus-2026-03-15",
            "dashscope-compatible",
            _QWEN35_OMNI,
            _Q35_SNAP_NOTE,
            prices=_P35_PLUS,
            **_QWEN35,
        ),
        _spec(
            "qwen3.5-omni-flash",
            "dashscope-compatible",
            _QWEN35_OMNI,
            "cheaper 3.5: 3 h of audio, several clips per message, speaks",
            prices=_P35_FLASH,
            **_QWEN35,
        ),
        _spec(
            "qwen3.5-omni-flash-2026-03-15",
            "dashscope-compatible",
            _QWEN35_OMNI,
            _Q35_SNAP_NOTE,
            prices=_P35_FLASH,
            **_QWEN35,
        ),
        # Qwen3.8-Omni-Flash: thinks by default, text only
        _spec(
            "qwen3.8-omni-flash",
            "dashscope-compatible",
            _QWEN38_OMNI,
            "thinks by default (reasoning shown apart); text only; 1 M context",
            **_QWEN38,
        ),
        # Qwen3-Omni-Flash
        _spec(
            "qwen3-omni-flash",
            "dashscope-compatible",
            _QWEN3_OMNI,
            "= 2025-12-01; 20 min of audio, one clip per message; thinking optional",
            **_QWEN3,
        ),
        _spec(
            "qwen3-omni-flash-2025-12-01", "dashscope-compatible", _QWEN3_OMNI, "snapshot", **_QWEN3
        ),
        _spec(
            "qwen3-omni-flash-2025-09-15",
            "dashscope-compatible",
            _QWEN3_OMNI,
            "snapshot; 17 voices",
            **{**_QWEN3, "voices": _QWEN3_VOICES_0915},
        ),
        # Qwen-Omni-Turbo (legacy)
        _spec(
            "qwen-omni-turbo",
            "dashscope-compatible",
            _QWEN_OMNI_TURBO,
            "legacy, no longer updated; zh/en speech",
            **_TURBO,
        ),
        _spec(
            "qwen-omni-turbo-latest", "dashscope-compatible", _QWEN_OMNI_TURBO, "legacy", **_TURBO
        ),
        # the captioner
        _spec(
            "qwen3-omni-30b-a3b-captioner",
            "dashscope-compatible",
            _CAPTIONER,
            "describes any audio; takes no question, single turn",
            **_CAPT,
        ),
        # Qwen3-ASR
        _spec(
            "qwen3-asr-flash",
            "dashscope",
            _ASR,
            "= 2025-09-08; transcript + language + emotion; ≤ 5 min",
            **_QWEN3_ASR,
        ),
        _spec("qwen3-asr-flash-2026-02-10", "dashscope", _ASR, "snapshot", **_QWEN3_ASR),
        _spec(
            "qwen3-asr-flash-us",
            "dashscope",
            _ASR,
            "US region; native only (no compatible mode in the US)",
            **{**_QWEN3_ASR, "routes": ("dashscope",), "regions": (US,), "prices": ()},
        ),
        # documented, but on routes this package does not speak
        _spec(
            "qwen3-asr-flash-filetrans",
            "dashscope-async",
            _NO_LIMITS,
            "async task, URL in, ≤ 12 h, timestamps; not supported here: use "
            "qwen3-asr-flash (≤ 5 min) with --windows, or qwen3.5-omni-plus",
            family="qwen3-asr",
            routes=("dashscope-async",),
            regions=(SG, BJ),
            transcribes=True,
            per_second_billing=True,
            sources="FILETRANS, QC-ASR, SDK-src",
        ),
        _spec(
            "qwen-audio-3.0-asr-flash",
            "dashscope-workspace",
            _NO_LIMITS,
            "workspace hosts only, no SDK; its audio part shape is UNVERIFIED: not "
            "supported here (use qwen3-asr-flash)",
            family="qwen-audio-3-asr",
            routes=("dashscope-workspace",),
            regions=(SG, BJ),
            transcribes=True,
            per_second_billing=True,
            sources="QA3",
            unverified=frozenset({"request shape"}),
        ),
        _spec(
            "qwen-audio-3.1-asr-flash",
            "dashscope-workspace",
            _NO_LIMITS,
            "workspace hosts only, no SDK; its audio part shape is UNVERIFIED: not "
            "supported here (use qwen3-asr-flash)",
            family="qwen-audio-3-asr",
            routes=("dashscope-workspace",),
            regions=(SG, BJ),
            transcribes=True,
            per_second_billing=True,
            sources="QA3",
            unverified=frozenset({"request shape"}),
        ),
        _spec(
            "qwen-audio-3.0-asr-flash-filetrans",
            "dashscope-async",
            _NO_LIMITS,
            "async task; not supported here",
            family="qwen-audio-3-asr",
            routes=("dashscope-async",),
            regions=(SG, BJ),
            transcribes=True,
            per_second_billing=True,
            sources="QA3",
            prices=(
                Price(BJ, "USD", per_second=0.000032, source="QA3 card", verified=True),
                Price(SG, "USD", per_second=0.000035, source="QA3 card", verified=True),
            ),
            rate_limit=RateLimit(600, None, (SG, BJ), source="QA3 card"),
        ),
        _spec(
            "qwen-audio-3.1-asr-flash-message",
            "websocket",
            _NO_LIMITS,
            "Realtime API (WebSocket) only; not supported here",
            family="qwen-audio-3-asr",
            routes=("websocket",),
            regions=(SG, BJ),
            transcribes=True,
            sources="QA3 (context 8,192; max in 7,168; max out 1,024)",
        ),
        _spec(
            "qwen3-asr-flash-realtime",
            "websocket",
            _NO_LIMITS,
            "live recognition over WebSocket; not supported here",
            family="qwen3-asr",
            routes=("websocket",),
            transcribes=True,
            sources="ASR-GUIDE@2026-03",
            unverified=frozenset({"endpoint", "events"}),
        ),
        _spec(
            "qwen3.5-omni-plus-realtime",
            "websocket",
            _NO_LIMITS,
            "Realtime API (WebSocket, ≤ 120 min a session); not supported here",
            family="qwen3.5-omni",
            routes=("websocket",),
            regions=(BJ, SG),
            sources="OMNI-RT",
        ),
        # other servers
        _spec(
            OPENAI_PREFIX + "MODEL",
            "openai",
            Limits(accepted=OPENAI_ACCEPTS),
            "any OpenAI-compatible server; limits of Qwen2-Audio-7B-Instruct on vLLM",
            routes=("openai",),
            sources="VLLM (REFERENCE §5.2)",
        ),
        _spec(
            LOCAL_PREFIX + "PATH_OR_HUB_ID",
            "local",
            Limits(accepted=frozenset(), wants_pcm=True),
            "Qwen2-Audio in transformers (pip install 'qaudio_magic[local]')",
            routes=("local",),
            sources="HF-run (REFERENCE §6)",
        ),
    )
}

# Families of unknown names, by prefix (longest first). An unknown name gets its family's
# spec and a note saying so; a snapshot of a known name is the same model.
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("qwen3.5-omni-flash", "qwen3.5-omni-flash"),
    ("qwen3.5-omni-", "qwen3.5-omni-plus"),
    ("qwen3.8-omni-", "qwen3.8-omni-flash"),
    ("qwen3-omni-flash", "qwen3-omni-flash"),
    ("qwen3-omni-30b-a3b-captioner", "qwen3-omni-30b-a3b-captioner"),
    ("qwen3-asr-flash-filetrans", "qwen3-asr-flash-filetrans"),
    ("qwen3-asr-", "qwen3-asr-flash"),
    ("qwen-omni-turbo", "qwen-omni-turbo"),
    ("qwen-audio-turbo", "qwen-audio-turbo-latest"),
)


def lookup(name: str) -> ModelSpec:
    """The spec for ``name``; unknown names get their family's, with a note that says so.

    ``openai:``/``local:`` prefixes pick those routes. Names ending ``-realtime`` are
    WebSocket models. Other unknown names with ``omni`` in them go to compatible mode
    with Qwen3-Omni-Flash's limits; anything else to DashScope native with Qwen-Audio's.
    """
    spec = MODELS.get(name)
    if spec is not None:
        return spec
    if name.startswith(OPENAI_PREFIX):
        return _derived(name, MODELS[OPENAI_PREFIX + "MODEL"])
    if name.startswith(LOCAL_PREFIX):
        return _derived(name, MODELS[LOCAL_PREFIX + "PATH_OR_HUB_ID"])
    lowered = name.lower()
    if lowered.endswith("-realtime"):
        return _spec(
            name,
            "websocket",
            _NO_LIMITS,
            "a realtime (WebSocket) model: not supported here",
            routes=("websocket",),
            fallback=True,
        )
    for prefix, family in _FAMILIES:
        if lowered.startswith(prefix):
            note = f"unknown name: limits of its family ({family}) assumed"
            return _derived(name, MODELS[family], note)
    if "omni" in lowered:
        note = "unknown omni model: Qwen3-Omni-Flash limits assumed"
        return _derived(name, MODELS["qwen3-omni-flash"], note)
    return _derived(name, MODELS[DEFAULT_MODEL], "unknown model: Qwen-Audio limits assumed")


# name -> (the spec it was derived from, its spec): a batch looks its model up a few times
# per clip, and copying a spec (dataclasses.replace) each time costs several µs
_DERIVED: dict[str, tuple[ModelSpec, ModelSpec]] = {}


def _derived(name: str, base: ModelSpec, note: str | None = None) -> ModelSpec:
    """``base`` under ``name`` (with ``note`` and marked a fallback when given), made once
    per name for as long as ``base`` is the registry's."""
    hit = _DERIVED.get(name)
    if hit is not None and hit[0] is base:
        return hit[1]
    spec = (
        replace(base, name=name)
        if note is None
        else replace(base, name=name, note=note, fallback=True)
    )
    if len(_DERIVED) > 1024:
        _DERIVED.clear()
    _DERIVED[name] = (base, spec)
    return spec


_REGION_NAMES = {
    BJ: "Beijing",
    SG: "Singapore",
    US: "Virginia",
    HK: "Hong Kong",
    FRA: "Frankfurt",
    TYO: "Tokyo",
}


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _size(n: int) -> str:
    return f"{n / GB:g} GB" if n >= GB else f"{n / MB:g} MB"


def model_row(spec: ModelSpec) -> tuple[str, ...]:
    """The ``%qaudio models`` cells of ``spec`` after its name: route, key and regions,
    audio per clip, clips per message, context, max in / out, abilities, note. A figure
    the docs do not confirm is marked † (UNVERIFIED)."""
    lim, unverified = spec.limits, spec.unverified

    def mark(text: str, *fields: str) -> str:
        return text + "†" if any(f in unverified for f in fields) else text

    if spec.route == "openai":
        key = "$OPENAI_API_KEY (optional)"
    elif spec.route == "local":
        key = "none"
    else:
        key = "DashScope: " + (", ".join(_REGION_NAMES[r] for r in spec.regions) or "?")
    if not spec.supported:
        audio = "—"
    else:
        bits = [
            mark(_duration(lim.max_audio_seconds), "max_audio_seconds")
            if lim.max_audio_seconds
            else "",
            "PCM in memory"
            if lim.wants_pcm
            else mark(_size(lim.max_audio_bytes), "max_audio_bytes"),
            "billed per s"
            if spec.per_second_billing
            else mark(f"{lim.audio_tokens_per_second:g} tok/s", "audio_tokens_per_second"),
        ]
        audio = ", ".join(b for b in bits if b)
    if spec.clips_per_message is None:
        clips = (
            "any"
            if not spec.inline_clips_per_request
            else (f"any (≤{spec.inline_clips_per_request} inline)")
        )
    else:
        clips = mark(f"{spec.clips_per_message} per message", "clips_per_message")
    does = [
        mark("streams only", "stream_only") if spec.stream_only else "",
        {"default": "thinks", "optional": "thinks on request", "never": ""}[spec.thinking],
        f"speaks ({len(spec.voices)}{'+' if not spec.voices_complete else ''} voices)"
        if spec.speaks
        else "",
        "transcribes (language, emotion)" if spec.transcribes else "",
        "no question" if not spec.takes_text and not spec.transcribes else "",
    ]
    sized = spec.supported and spec.route != "local"
    return (
        spec.route,
        key,
        audio,
        clips if sized else "—",
        mark(f"{lim.context_tokens:,}", "context_tokens") if sized else "—",
        mark(f"{lim.max_input_tokens:,}", "max_input_tokens")
        + " / "
        + mark(f"{lim.max_output_tokens:,}", "max_output_tokens")
        if sized
        else "—",
        ", ".join(d for d in does if d),
        spec.note,
    )


def served_name(name: str) -> str:
    """The model name the server knows: ``openai:``/``local:`` prefixes removed."""
    for prefix in (OPENAI_PREFIX, LOCAL_PREFIX):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name
