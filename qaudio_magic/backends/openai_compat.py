"""OpenAI-style ``chat/completions``: DashScope's compatible mode and any OpenAI-compatible server.

One backend, two dialects, because the servers disagree on how audio travels:

    dialect     audio held in memory                           audio at a URL
    dashscope   input_audio.data = "data:;base64,…" + format    input_audio.data = the URL
    openai      input_audio.data = raw base64 + format          audio_url.url = the URL

DashScope's compatible mode (Qwen-Omni) rejects raw base64 ("The provided URL does not
appear to be valid") and the ``audio_url`` part; vLLM turns ``input_audio`` into
``data:audio/{format};base64,{data}`` itself, so a data URL there breaks, and OpenAI's own
API takes only ``input_audio``. Hence the split (protocol reference §5).

The models' rules come from the registry (``models.py``, CURRENT-MODELS.md §11) and are
kept here rather than in the conversation:

* stream-only models are always streamed on the wire; ``--no-stream`` then only means
  the answer is shown once it is complete; Qwen3-ASR is asked without streaming;
* assistant turns are text (never their reasoning, never their audio);
* Qwen3-Omni-Flash, Qwen-Omni-Turbo (and, to be safe, Qwen3.8) take text plus one
  non-text item per user message: a turn with several clips goes as consecutive user
  messages, one clip each, the question with the last clip; Qwen3.5-Omni takes them all
  in one message;
* the captioner gets its one clip and nothing else; Qwen3-ASR gets its clip, a system
  message as recognition context, and ``asr_options`` (``-p language=en`` ...);
* on DashScope, local audio goes as a temporary upload (``oss://``) where the endpoint
  has one, so a long file reaches a model that hears it whole; otherwise inline.

Omni models get ``modalities: ["text"]`` unless the caller passes ``modalities``.
Usage comes from the final chunk with empty ``choices`` (``stream_options.include_usage``);
``data: [DONE]`` ends the stream; a DashScope ``event:error`` frame can still arrive
mid-stream and is read with its ``:HTTP_STATUS/NNN``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import httpx

from .._net import deadline as within
from .._net import each_within
from .._prepare import PreparedAudio
from .._secret import Secret, scrub
from ..errors import APIError, AudioTooLargeError, ConfigError, InputError, TransportError
from ..models import ModelSpec, lookup, served_name
from ._body import MAX_ANSWER_CHARS, read_body, too_large
from ._deltas import PCMReader, ThinkSplitter, annotation_of, reasoning_of, whole
from ._hints import ASR_OPTIONS, add_model_hint
from ._http import (
    AFTER_ANSWER,
    BearerAuth,
    HTTPBackend,
    Timeouts,
    clean_id,
    error_from_payload,
    question_deadline,
    request_id_of,
    scrubbed,
    too_late,
    transport_error,
)
from ._inline import base64_text, dumps
from ._sse import SSEEvent, looks_like_sse, parse_events, response_events
from ._upload import UPLOAD_MODES, TemporaryUploads, upload_available
from .base import (
    AudioPart,
    Completion,
    Event,
    Limits,
    Message,
    ReasoningDelta,
    Request,
    TextDelta,
    Usage,
)

__all__ = ["Dialect", "OpenAICompatBackend"]

Dialect = Literal["dashscope", "openai"]

CHAT_PATH = "/chat/completions"
INLINE_MAX_BYTES = 7_000_000  # DashScope: the base64 string must stay under 10 MB
_WAV_BYTES_PER_SECOND = 32_000  # re-encoded audio: 16 kHz mono 16-bit WAV
UPLOAD_MAX_BYTES = 1_000_000_000  # the temporary store's per-file limit
_WIRE_FORMATS = {"wav": "wav", "mp3": "mp3", "aac": "aac", "amr": "amr", "flac": "flac"}
_MM_LIMIT_HINT = (
    "the server allows fewer audios per prompt than this conversation holds: start vLLM with "
    "--limit-mm-per-prompt '{\"audio\": N}', or %qaudio new to drop the history"
)


class OpenAICompatBackend(HTTPBackend):
    """Qwen-Omni over DashScope's compatible mode, or any server speaking OpenAI's chat API."""

    def __init__(
        self,
        base_url: str,
        key: Callable[[], Secret | None],
        *,
        route: str,
        dialect: Dialect,
        service: str,
        key_required: bool = True,
        missing_key: Callable[[], Exception] | None = None,
        key_hint: str | None = None,
        timeouts: Timeouts | None = None,
        headers: dict[str, str] | None = None,
        upload: str = "auto",
    ) -> None:
        super().__init__(base_url, timeouts=timeouts, headers=headers)
        self.route = route
        self.dialect: Dialect = dialect
        self.service = service
        self._key = key
        self._key_required = key_required
        self._missing_key = missing_key
        self._key_hint = key_hint
        if upload not in UPLOAD_MODES:
            raise ConfigError(f"upload must be one of {', '.join(UPLOAD_MODES)}, not {upload!r}")
        self.upload = upload
        native = _native_base(self.base_url)
        self.uploads = TemporaryUploads(self._client, native, headers=lambda: dict(self._headers))

    @property
    def uploading(self) -> bool:
        """Whether local audio may go as a temporary upload (DashScope, where the endpoint
        has the store). With ``upload="auto"`` only clips too large to send inline do:
        compatible mode has no session, so small clips gain nothing from the extra hop."""
        if self.dialect != "dashscope" or self.upload == "never":
            return False
        if self.upload == "always" and not upload_available(self.uploads.base_url):
            raise ConfigError(
                f"upload='always' but {self.host} has no temporary file store",
                hint="use %config QAudioMagic.upload = 'auto' (inline base64 where uploads "
                "are unavailable)",
            )
        return upload_available(self.uploads.base_url)

    # ------------------------------------------------------------------ API
    def limits(self, model: str) -> Limits:
        """The model's limits; on DashScope, local audio travels inline, so a clip is held
        to the inline budget (and cut where its re-encoded 16 kHz WAV would not fit)."""
        limits = lookup(model).limits
        if self.dialect != "dashscope" or limits.max_audio_bytes <= INLINE_MAX_BYTES:
            return limits
        by_url = limits.max_url_bytes or limits.max_audio_bytes  # the service fetches URLs
        if self.uploading:  # the temporary store takes up to 1 GB a file (DOC-TMPURL@2026-10)
            return dataclasses.replace(
                limits,
                max_audio_bytes=min(limits.max_audio_bytes, UPLOAD_MAX_BYTES),
                max_url_bytes=by_url,
            )
        fits = float((INLINE_MAX_BYTES - 4_096) // _WAV_BYTES_PER_SECOND)  # room for a header
        heard = limits.max_audio_seconds
        return dataclasses.replace(
            limits,
            max_audio_bytes=INLINE_MAX_BYTES,
            max_audio_seconds=fits if heard is None else min(heard, fits),
            max_url_bytes=by_url,
        )

    def stream(self, request: Request) -> Iterator[Event]:
        key = self._key()
        if key is None and self._key_required:
            raise (self._missing_key() if self._missing_key else ConfigError("no API key"))
        if not served_name(request.model):
            raise ConfigError(f"{request.model!r} names no model (write openai:MODEL_NAME)")
        spec = lookup(request.model)
        on_wire = (request.stream or spec.stream_only) and (
            spec.streams or self.dialect != "dashscope"
        )
        try:
            yield from self._send(request, key, on_wire)
        except APIError as exc:  # uploads included
            if self.dialect == "dashscope":
                add_model_hint(exc, spec, self.host)
            raise

    def _send(self, request: Request, key: Secret | None, on_wire: bool) -> Iterator[Event]:
        at = question_deadline(self.timeouts.total)  # uploads included
        try:
            with within(at):
                values = self._upload_audio(request, key, at) if key is not None else {}
            body = self.build_body(request, stream=on_wire, audio_values=values)
            headers = self.build_headers(body, stream=on_wire)
            content = dumps(body)
            url = self.base_url + CHAT_PATH
            auth = BearerAuth(key) if key is not None else httpx.Auth()  # Auth(): none
            if not on_wire:
                yield from scrubbed(self._call(url, content, headers, auth, at))
            elif request.stream:
                yield from scrubbed(self._stream(url, content, headers, auth, at))
            else:  # a stream-only model asked for the whole answer: stream, show it once done
                yield from whole(scrubbed(self._stream(url, content, headers, auth, at)))
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.host, deadline=at, total=self.timeouts.total) from None

    def plan(self, request: Request) -> tuple[list[tuple[PreparedAudio, str, int]], int]:
        """How each clip would travel and the body size, without sending anything
        (``--dry-run``): ``[(audio, route, wire_bytes)]``, route ``inline``, ``upload``,
        ``uploaded`` or ``url``."""
        key = self._key()
        routes: list[tuple[PreparedAudio, str, int]] = []
        values: dict[PreparedAudio, str] = {}
        model = served_name(request.model)
        for message in request.messages:
            for audio in message.audio:
                if audio.url is not None or audio.data is None:
                    routes.append((audio, "url", len(audio.url or "")))
                elif self.uploading and (
                    self.upload == "always" or len(audio.data) > INLINE_MAX_BYTES
                ):
                    values[audio], how, size = self.uploads.planned(audio, model, key)
                    routes.append((audio, how, size))
                else:
                    routes.append((audio, "inline", 4 * -(-audio.size // 3) + 14))
        body = self.build_body(request, stream=True, audio_values=values)
        return routes, len(dumps(body))

    def _upload_audio(self, request: Request, key: Secret, at: float) -> dict[PreparedAudio, str]:
        """``oss://`` URLs for the request's local audio (uploaded once, then reused),
        all by the question's deadline ``at``.

        That compatible mode resolves ``oss://`` in ``input_audio.data`` is UNVERIFIED
        (CURRENT-MODELS §11.3.1); the temporary-URL page says any HTTP call resolves it with
        ``X-DashScope-OssResourceResolve: enable``, which is sent. Only clips too large to
        go inline take this path (``upload="auto"``), so everything else stays documented.
        """
        if not self.uploading:
            return {}
        values: dict[PreparedAudio, str] = {}
        for message in request.messages:
            for audio in message.audio:
                if audio.url is not None or audio.data is None or audio in values:
                    continue
                if self.upload == "always" or len(audio.data) > INLINE_MAX_BYTES:
                    values[audio] = self.uploads.url_for(
                        audio, served_name(request.model), key, at=at, total=self.timeouts.total
                    )
        return values

    # ------------------------------------------------------------------ wire
    def build_body(
        self,
        request: Request,
        *,
        stream: bool,
        audio_values: dict[PreparedAudio, str] | None = None,
    ) -> dict[str, Any]:
        """The JSON body: model, messages, stream options, then the caller's parameters.

        ``audio_values`` maps clips to how they travel (``oss://`` URLs); clips not in it
        go as their URL or inline.
        """
        spec = lookup(request.model)
        values = audio_values or {}
        messages = _single_turn(request.messages) if _single(spec) else request.messages
        body: dict[str, Any] = {
            "model": served_name(request.model),
            "messages": [m for message in messages for m in self._messages(message, spec, values)],
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        params = dict(request.params)
        if self.dialect == "dashscope":
            if spec.takes_text and not spec.transcribes:
                body["modalities"] = ["text"]  # omni models; the others' docs send none
            if spec.transcribes:  # -p language=en -p enable_itn=true -> asr_options
                options = dict(params.pop("asr_options", None) or {})
                options.update({k: params.pop(k) for k in ASR_OPTIONS if k in params})
                if options:
                    body["asr_options"] = options
        body.update(params)
        return body

    def build_headers(self, body: dict[str, Any], *, stream: bool) -> dict[str, str]:
        """Request headers; ``Authorization`` is added by :class:`BearerAuth` when a key is set."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if self.dialect == "dashscope" and any(
            str(part.get("input_audio", {}).get("data", "")).startswith("oss://")
            for message in body["messages"]
            if isinstance(message["content"], list)
            for part in message["content"]
        ):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        headers.update(self._headers)
        return headers

    def _messages(
        self, message: Message, spec: ModelSpec, values: dict[PreparedAudio, str]
    ) -> list[dict[str, Any]]:
        if message.role != "user":  # system and assistant turns are text only
            if self.dialect == "dashscope" and not spec.system_message and message.role == "system":
                return []  # the captioner takes one audio part and nothing else (CAPT)
            return [{"role": message.role, "content": message.text}]
        clips = [
            self._audio_part(p.audio, values.get(p.audio))
            for p in message.parts
            if isinstance(p, AudioPart)
        ]
        says = message.text and (
            self.dialect != "dashscope" or (spec.takes_text and not spec.transcribes)
        )
        text = [{"type": "text", "text": message.text}] if says else []
        if not clips:
            return [{"role": "user", "content": message.text}]
        if self.dialect == "dashscope" and spec.clips_per_message == 1:
            # text plus one non-text item per user message (Qwen3-Omni-Flash, turbo, ...)
            return [{"role": "user", "content": [c]} for c in clips[:-1]] + [
                {"role": "user", "content": [clips[-1], *text]}
            ]
        return [{"role": "user", "content": [*clips, *text]}]

    def _audio_part(self, audio: PreparedAudio, uploaded: str | None = None) -> dict[str, Any]:
        fmt = _WIRE_FORMATS.get(audio.format)
        url = uploaded or audio.url
        if url is not None:
            if self.dialect == "dashscope":
                item: dict[str, str] = {"data": url}
                if fmt:
                    item["format"] = fmt
                return {"type": "input_audio", "input_audio": item}
            if url.startswith("oss://"):
                raise InputError(
                    f"{audio.clip.name}: an oss:// URL is readable by DashScope only, "
                    f"not by {self.host}"
                )
            return {"type": "audio_url", "audio_url": {"url": url}}
        if audio.data is None:
            raise InputError(f"{audio.clip.name}: no encoded audio to send")
        if self.dialect == "dashscope" and len(audio.data) > INLINE_MAX_BYTES:
            raise AudioTooLargeError(
                f"{audio.clip.name}: {len(audio.data) / 1e6:.1f} MB is too large to send inline "
                f"(limit {INLINE_MAX_BYTES / 1e6:.0f} MB; give a URL instead)"
            )
        if self.dialect == "dashscope":  # base64 made once per clip, not per turn
            item = {"data": base64_text(audio.data, "data:;base64,")}
            if fmt:
                item["format"] = fmt
            return {"type": "input_audio", "input_audio": item}
        b64 = base64_text(audio.data)
        return {"type": "input_audio", "input_audio": {"data": b64, "format": fmt or "wav"}}

    # ------------------------------------------------------------------ responses
    def _call(
        self,
        url: str,
        content: bytes,
        headers: dict[str, str],
        auth: httpx.Auth,
        at: float,
    ) -> Iterator[Event]:
        with self.send("POST", url, at=at, content=content, headers=headers, auth=auth) as response:
            if response.status_code != 200:
                raise self._error(self.error_of(response, at=at, service=self.service))
            rid = request_id_of(response.headers)
            with within(at):
                text = scrub(read_body(response, self.host).decode("utf-8", "replace"))
        if looks_like_sse(text):  # a server that streamed anyway: read its chunks
            yield from whole(self._chunks(parse_events(text), rid, at))
            return
        payload = self._load(text)
        self._raise_if_error(payload, None)
        choices = payload.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        message = choice.get("message")
        if isinstance(message, dict):
            think = ThinkSplitter(active=self.dialect == "openai")
            cap = _AnswerCap(self.host)
            for out in self._delta_events(message, think, PCMReader()):
                yield cap.check(out)
            yield from think.flush()
        yield Completion(
            _usage(payload.get("usage")),
            rid or clean_id(payload.get("id")),
            _finish(choice.get("finish_reason")),
        )

    def _stream(
        self,
        url: str,
        content: bytes,
        headers: dict[str, str],
        auth: httpx.Auth,
        at: float,
    ) -> Iterator[Event]:
        with self.send("POST", url, at=at, content=content, headers=headers, auth=auth) as response:
            if response.status_code != 200:
                raise self._error(self.error_of(response, at=at, service=self.service))
            rid = request_id_of(response.headers)
            try:  # broken mid-answer: name the answer's request id
                events = each_within(response_events(response, self.host), at)
                yield from self._chunks(events, rid, at)
            except httpx.HTTPError as exc:
                raise transport_error(
                    exc, self.host, request_id=rid, deadline=at, total=self.timeouts.total
                ) from None

    def _chunks(self, events: Iterable[SSEEvent], rid: str | None, at: float) -> Iterator[Event]:
        """Reasoning, text, audio and annotation events from ``chat.completion.chunk``
        events, then one Completion.

        Once the answer is complete (a ``finish_reason``, or ``[DONE]``), what follows
        (usage, ``[DONE]``, the end of the body) is read for at most AFTER_ANSWER seconds
        and only for its usage: a server that goes on sending does not hold the answer back.
        """
        finish: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        think = ThinkSplitter(active=self.dialect == "openai")
        speech = PCMReader()
        cap = _AnswerCap(self.host)
        events = iter(events)
        for event in events:
            if time.monotonic() > at:
                raise too_late(self.host, self.timeouts.total, rid)
            if event.data.strip() == "[DONE]":
                done = True
                break
            payload = self._load(event.data)
            self._raise_if_error(payload, event)
            rid = rid or clean_id(payload.get("id"))
            if isinstance(payload.get("usage"), dict):
                usage = payload["usage"]  # the last chunk (empty choices) carries it
            for choice in payload.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    for out in self._delta_events(delta, think, speech):
                        yield cap.check(out)
                if choice.get("finish_reason"):
                    finish = _finish(choice["finish_reason"])
            if finish is not None:
                break
        if not done and finish is None:
            raise TransportError(
                f"{self.host} ended the stream before the answer was complete"
                + (f" (request id {rid})" if rid else "")
            )
        try:  # usage and [DONE] follow the finish; then the end of the body
            with within(min(at, time.monotonic() + AFTER_ANSWER)):
                for event in events:
                    if done:
                        continue  # nothing may follow [DONE]: read on so the connection is reused
                    if event.data.strip() == "[DONE]":
                        done = True
                        continue
                    payload = self._load(event.data)
                    if isinstance(payload.get("usage"), dict):
                        usage = payload["usage"]
        except (httpx.HTTPError, TransportError):
            pass  # the answer is complete: a tail that breaks or drags on is dropped
        yield from think.flush()
        yield Completion(_usage(usage), rid, finish)

    def _delta_events(
        self, part: dict[str, Any], think: ThinkSplitter, speech: PCMReader
    ) -> Iterator[Event]:
        """Reasoning, text, audio and annotations of one delta (or a whole message)."""
        thought = reasoning_of(part)
        if thought:
            think.off()  # the server separates reasoning: no <think> tags to look for
            yield ReasoningDelta(thought)
        text = _content_text(part.get("content"))
        if text:
            yield from think.feed(text)
        audio = speech.feed(part.get("audio"))
        if audio is not None:
            yield audio
        note = annotation_of(part)
        if note is not None:
            yield note

    # ------------------------------------------------------------------ errors
    def _load(self, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError:
            raise TransportError(
                f"{self.host} sent a malformed answer (not JSON): {scrub(text)[:80]!r}"
            ) from None
        if not isinstance(value, dict):
            raise TransportError(f"{self.host} sent a malformed answer (not a JSON object)")
        return value

    def _raise_if_error(self, payload: dict[str, Any], event: SSEEvent | None) -> None:
        """Error frames: DashScope ``event:error`` + ``:HTTP_STATUS``, or OpenAI/vLLM JSON."""
        status = event.status if event is not None else None
        is_error = (
            (event is not None and event.event == "error")
            or (status is not None and status != 200)
            or isinstance(payload.get("error"), dict)
            or payload.get("object") == "error"
            or ("choices" not in payload and ("code" in payload or "message" in payload))
        )
        if not is_error:
            return
        if status is None:
            source = payload.get("error") if isinstance(payload.get("error"), dict) else payload
            code = source.get("code") if isinstance(source, dict) else None
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            if event is not None and event.event == "error":
                status = 400
        raise self._error(
            error_from_payload(
                status, payload, fallback=event.data if event else "", service=self.service
            )
        )

    def _error(self, error: APIError) -> APIError:
        """Add the hint this route knows (which key, vLLM's audio limit)."""
        if error.hint is None:
            if error.status == 401 and self._key_hint:
                error.hint = self._key_hint
            elif "may be provided in one prompt" in error.api_message:
                error.hint = _MM_LIMIT_HINT
            elif error.status == 404 and self.route == "openai":
                error.hint = f"the model name must be one {self.host} serves (GET /v1/models)"
        return error


def _native_base(compatible: str) -> str:
    """The native API base on the same host (``…/compatible-mode/v1`` → ``…/api/v1``),
    where the temporary store's getPolicy lives."""
    if compatible.endswith("/compatible-mode/v1"):
        return compatible[: -len("/compatible-mode/v1")] + "/api/v1"
    return compatible


def _single(spec: ModelSpec) -> bool:
    """Whether the model answers one turn only (the captioner, speech recognition)."""
    return spec.single_turn or spec.transcribes


def _single_turn(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """System messages and the last user message: no history for single-turn models."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return tuple(m for i, m in enumerate(messages) if m.role == "system" or i == last)


def _finish(reason: object) -> str | None:
    return None if not reason else " ".join(str(reason).split())[:40]


class _AnswerCap:
    """Text and reasoning of one answer, counted: past MAX_ANSWER_CHARS the answer ends in
    a one-line error (spoken audio has its own cap, in ``_deltas.PCMReader``)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.shown = 0

    def check(self, event: Event) -> Event:
        if isinstance(event, (TextDelta, ReasoningDelta)):
            self.shown += len(event.text)
            if self.shown > MAX_ANSWER_CHARS:
                raise too_large(self.host, "an answer", MAX_ANSWER_CHARS, unit="characters")
        return event


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(c.get("text", "")) for c in content if isinstance(c, dict) and "text" in c
        )
    return ""


def _usage(usage: dict[str, Any] | None) -> Usage:
    """OpenAI usage as ours: prompt tokens split into text and audio where reported."""
    if not usage:
        return Usage()
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    audio, text = details.get("audio_tokens"), details.get("text_tokens")
    if not (isinstance(audio, int) and isinstance(prompt, int)):
        return Usage(input_tokens=prompt, output_tokens=usage.get("completion_tokens"))
    return Usage(
        input_tokens=text if isinstance(text, int) else prompt - audio,
        output_tokens=usage.get("completion_tokens"),
        audio_tokens=audio,
    )
