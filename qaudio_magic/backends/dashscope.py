"""DashScope's native multimodal-generation endpoint, spoken as the official SDK speaks it.

Body keys ``model``, ``parameters``, ``input.messages`` with one-key content items;
streaming is the ``X-DashScope-SSE: enable`` header with ``incremental_output: true``
(never a ``stream`` key in the body). Compare ``shared/protocol/captures``.

Local audio travels as a temporary upload (``oss://``, sent once and reused by later
turns) where the endpoint has one — Beijing, or a loopback emulator — and ``upload`` is
``"auto"`` or ``"always"``; otherwise inline as ``data:;base64,`` (then at most 7 MB raw,
as the docs advise, so prepared audio is held to that).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from .._net import deadline as within
from .._net import each_within
from .._prepare import PreparedAudio
from .._secret import Secret, scrub
from ..errors import APIError, AudioTooLargeError, ConfigError, MissingKeyError, TransportError
from ..models import lookup
from ._body import MAX_ANSWER_CHARS, read_body, too_large
from ._deltas import annotation_of
from ._hints import ASR_OPTIONS, add_model_hint
from ._http import (
    AFTER_ANSWER,
    BearerAuth,
    HTTPBackend,
    Timeouts,
    clean_id,
    error_from_payload,
    question_deadline,
    scrubbed,
    too_late,
    transport_error,
)
from ._inline import base64_text, dumps
from ._sse import looks_like_sse, parse_events, response_events
from ._upload import UPLOAD_MODES, TemporaryUploads, upload_available
from .base import (
    Annotation,
    AudioPart,
    Completion,
    Event,
    Limits,
    Message,
    Request,
    TextDelta,
    Usage,
)

__all__ = ["BEIJING", "SINGAPORE", "DashScopeBackend"]

BEIJING = "https://dashscope.aliyuncs.com/api/v1"
SINGAPORE = "https://dashscope-intl.aliyuncs.com/api/v1"
GENERATION_PATH = "/services/aigc/multimodal-generation/generation"
INLINE_MAX_BYTES = 7_000_000  # docs: base64 under 7 MB raw; the string itself must stay < 10 MB
SERVICE = "DashScope"
_DECODE = json.JSONDecoder().raw_decode


class DashScopeBackend(HTTPBackend):
    """Qwen-Audio over DashScope's native API."""

    route = "dashscope"

    def __init__(
        self,
        base_url: str,
        key: Callable[[], Secret | None],
        *,
        timeouts: Timeouts | None = None,
        headers: dict[str, str] | None = None,
        upload: str = "auto",
    ) -> None:
        super().__init__(base_url, timeouts=timeouts, headers=headers)
        self._key = key
        if upload not in UPLOAD_MODES:
            raise ConfigError(f"upload must be one of {', '.join(UPLOAD_MODES)}, not {upload!r}")
        self.upload = upload
        self.uploads = TemporaryUploads(
            self._client, self.base_url, headers=lambda: dict(self._headers)
        )

    # ------------------------------------------------------------------ API
    def limits(self, model: str) -> Limits:
        limits = lookup(model).limits
        if not self.uploading:  # inline only: keep base64 within the documented budget
            return dataclasses.replace(
                limits,
                max_audio_bytes=min(limits.max_audio_bytes, INLINE_MAX_BYTES),
                max_url_bytes=limits.max_url_bytes or limits.max_audio_bytes,
            )
        return limits

    @property
    def uploading(self) -> bool:
        """Whether local audio goes as a temporary upload (else inline base64)."""
        if self.upload == "never":
            return False
        if self.upload == "always" and not upload_available(self.base_url):
            raise ConfigError(
                f"upload='always' but {self.host} has no temporary file store "
                "(it exists in the Beijing region only)",
                hint="use %config QAudioMagic.upload = 'auto' (inline base64 where uploads are unavailable)",
            )
        return upload_available(self.base_url)

    def plan(self, request: Request) -> tuple[list[tuple[PreparedAudio, str, int]], int]:
        """How each clip would travel and the body size, without sending anything.

        Returns ``[(audio, route, wire_bytes)]`` (route ``inline``, ``upload``,
        ``uploaded`` or ``url``) and the request body's size in bytes.
        """
        key = self._key()
        routes: list[tuple[PreparedAudio, str, int]] = []
        values: dict[PreparedAudio, str] = {}
        for message in request.messages:
            for audio in message.audio:
                if audio.url is not None:
                    routes.append((audio, "url", len(audio.url)))
                    continue
                if self.uploading:
                    values[audio], how, size = self.uploads.planned(audio, request.model, key)
                    routes.append((audio, how, size))
                else:
                    values[audio] = "data:;base64," + "A" * (4 * -(-audio.size // 3))
                    routes.append((audio, "inline", len(values[audio])))
        body = self.build_body(request, values)
        size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        return routes, size

    def stream(self, request: Request) -> Iterator[Event]:
        key = self._key()
        if key is None:
            raise MissingKeyError(
                "no DashScope API key",
                hint="set DASHSCOPE_API_KEY, run %qaudio key, or %qaudio emulator to try offline",
            )
        spec = lookup(request.model)
        if not spec.streams:  # Qwen3-ASR: annotations in a stream are UNVERIFIED (models.py)
            request = dataclasses.replace(request, stream=False)
        try:
            yield from self._send(request, key)
        except APIError as exc:  # uploads included: a key of another region fails there first
            add_model_hint(exc, spec, self.host)
            raise

    def _send(self, request: Request, key: Secret) -> Iterator[Event]:
        at = question_deadline(self.timeouts.total)  # uploads included
        try:
            with within(at):
                values = self._upload_audio(request, key, at)
            body = self.build_body(request, values)
            headers = self.build_headers(request, body)
            url = self.base_url + GENERATION_PATH
            content = dumps(body)
            auth = BearerAuth(key)
            if request.stream:
                yield from scrubbed(self._stream(url, content, headers, auth, request, at))
            else:
                yield from scrubbed(self._call(url, content, headers, auth, at))
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.host, deadline=at, total=self.timeouts.total) from None

    # ------------------------------------------------------------------ wire
    def _upload_audio(self, request: Request, key: Secret, at: float) -> dict[PreparedAudio, str]:
        """``oss://`` URLs for the request's local audio (uploaded once, then reused),
        all by the question's deadline ``at``."""
        if not self.uploading:
            return {}
        values: dict[PreparedAudio, str] = {}
        for message in request.messages:
            for audio in message.audio:
                if audio.url is None and audio.data is not None and audio not in values:
                    values[audio] = self.uploads.url_for(
                        audio, request.model, key, at=at, total=self.timeouts.total
                    )
        return values

    def build_body(
        self, request: Request, audio_values: dict[PreparedAudio, str] | None = None
    ) -> dict[str, Any]:
        """The JSON body, keys in the SDK's order: model, parameters, input.

        ``audio_values`` maps clips to how they travel (``oss://`` URLs); clips not in
        it go as their URL or inline base64.
        """
        params = dict(request.params)
        if request.stream:
            params.setdefault("incremental_output", True)
        values = audio_values or {}
        spec = lookup(request.model)
        messages = request.messages
        if spec.transcribes:  # Qwen3-ASR (ASR-API, QC-ASR): one turn, context, asr_options
            options = dict(params.pop("asr_options", None) or {})
            options.update({k: params.pop(k) for k in ASR_OPTIONS if k in params})
            if options:
                params["asr_options"] = options
            last = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
            messages = tuple(
                m if m.role == "system" else _audio_only(m)
                for i, m in enumerate(messages)
                if m.role == "system" or i == last
            )
        return {
            "model": request.model,
            "parameters": params,
            "input": {"messages": [self._message(m, values) for m in messages]},
        }

    def build_headers(self, request: Request, body: dict[str, Any]) -> dict[str, str]:
        """Headers as the SDK sends them; ``Authorization`` is added by :class:`BearerAuth`."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "text/event-stream" if request.stream else "application/json; charset=utf-8",
        }
        if request.stream:
            headers["X-DashScope-SSE"] = "enable"
            headers["X-Accel-Buffering"] = "no"
        if any(
            item.get("audio", "").startswith("oss://")
            for message in body["input"]["messages"]
            for item in message["content"]
        ):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        headers.update(self._headers)
        return headers

    def _message(self, message: Message, values: dict[PreparedAudio, str]) -> dict[str, Any]:
        content: list[dict[str, str]] = []
        for part in message.parts:
            if isinstance(part, AudioPart):
                value = values.get(part.audio) or self._audio_value(part.audio)
                content.append({"audio": value})
            elif part.text:
                content.append({"text": part.text})
        return {"role": message.role, "content": content}

    def _audio_value(self, audio: PreparedAudio) -> str:
        """How one clip travels: URL as given, else inline base64 (``data:;base64,``)."""
        if audio.url is not None:
            return audio.url
        assert audio.data is not None
        if len(audio.data) > INLINE_MAX_BYTES:
            raise AudioTooLargeError(
                f"{audio.clip.name}: {len(audio.data) / 1e6:.1f} MB is too large to send inline "
                f"(limit {INLINE_MAX_BYTES / 1e6:.0f} MB)",
                hint="temporary uploads carry up to 10 MB: %config QAudioMagic.upload = 'auto'",
            )
        return base64_text(audio.data, "data:;base64,")  # made once per clip, not per turn

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
                raise self.error_of(response, at=at, service=SERVICE)
            with within(at):
                text = scrub(read_body(response, self.host).decode("utf-8", "replace"))
        if looks_like_sse(text):  # a server that streamed anyway: take the frames
            events = parse_events(text)
            payloads = [self._frame_payload(ev.event, ev.status, ev.data) for ev in events]
            answer = "".join(_text_of(p) for p in payloads)
            last = payloads[-1] if payloads else {}
        else:
            last = _load(text, self.host)
            answer = _text_of(last)
        if len(answer) > MAX_ANSWER_CHARS:
            raise too_large(self.host, "an answer", MAX_ANSWER_CHARS, unit="characters")
        if answer:
            yield TextDelta(answer)
        note = _annotation(last)
        if note is not None:
            yield note
        yield Completion(_usage(last), _rid(last), _finish(last))

    def _stream(
        self,
        url: str,
        content: bytes,
        headers: dict[str, str],
        auth: httpx.Auth,
        request: Request,
        at: float,
    ) -> Iterator[Event]:
        incremental = bool(request.params.get("incremental_output", True))
        with self.send("POST", url, at=at, content=content, headers=headers, auth=auth) as response:
            if response.status_code != 200:
                raise self.error_of(response, at=at, service=SERVICE)
            sofar = ""
            shown = 0
            last: dict[str, Any] = {}
            finish = None
            events = each_within(response_events(response, self.host), at)
            try:
                for event in events:
                    if time.monotonic() > at:
                        raise too_late(self.host, self.timeouts.total, _rid(last))
                    payload = self._frame_payload(event.event, event.status, event.data)
                    last = payload
                    text = _text_of(payload)
                    if not incremental and text.startswith(sofar):
                        text = text[len(sofar) :]
                    if text:
                        shown += len(text)
                        if shown > MAX_ANSWER_CHARS:
                            raise too_large(
                                self.host, "an answer", MAX_ANSWER_CHARS, unit="characters"
                            )
                        if not incremental:
                            sofar += text
                        yield TextDelta(text)
                    finish = _finish(payload)
                    if finish and finish != "null":
                        break
            except httpx.HTTPError as exc:
                raise transport_error(
                    exc,
                    self.host,
                    request_id=_rid(last),
                    deadline=at,
                    total=self.timeouts.total,
                ) from None
            if not finish or finish == "null":
                rid = _rid(last)
                raise TransportError(
                    f"{self.host} ended the stream before the answer was complete"
                    + (f" (request id {rid})" if rid else "")
                )
            _drain(events, at)
            note = _annotation(last)
            if note is not None:
                yield note
            yield Completion(_usage(last), _rid(last), finish)

    def _frame_payload(self, event: str | None, status: int | None, data: str) -> dict[str, Any]:
        payload = _load(data, self.host)
        if (
            event == "error"
            or (status is not None and status != 200)
            or ("code" in payload and "output" not in payload)
        ):
            raise error_from_payload(status or 400, payload, fallback=data, service=SERVICE)
        return payload


def _drain(events: Iterator[object], at: float) -> None:
    """Read what follows a complete answer (the end of the body, so the connection can be
    reused) for at most AFTER_ANSWER seconds; then drop the connection: a server that
    goes on sending keep-alives or empty events does not hold the answer back."""
    try:
        with within(min(at, time.monotonic() + AFTER_ANSWER)):
            for _ in events:
                pass
    except (httpx.HTTPError, TransportError):
        pass


def _rid(payload: dict[str, Any]) -> str | None:
    return clean_id(payload.get("request_id"))


def _audio_only(message: Message) -> Message:
    """The message without its text: speech recognition takes context as a system message."""
    return Message(message.role, tuple(p for p in message.parts if isinstance(p, AudioPart)))


def _load(text: str, host: str) -> dict[str, Any]:
    try:
        try:  # one frame per token: skip json.loads' checks on the usual clean frame
            value, end = _DECODE(text)
        except ValueError:
            end = -1
        if end != len(text):  # whitespace around it, trailing data, or not JSON at all
            value = json.loads(text)
    except ValueError:
        raise TransportError(
            f"{host} sent a malformed answer (not JSON): {scrub(text)[:80]!r}"
        ) from None
    if not isinstance(value, dict):
        raise TransportError(f"{host} sent a malformed answer (not a JSON object)")
    return value


def _choice(payload: dict[str, Any]) -> dict[str, Any]:
    output = payload.get("output")
    choices = output.get("choices") if isinstance(output, dict) else None
    return choices[0] if choices and isinstance(choices[0], dict) else {}


def _text_of(payload: dict[str, Any]) -> str:
    content = (_choice(payload).get("message") or {}).get("content")
    if isinstance(content, list):
        if len(content) == 1 and isinstance(content[0], dict):  # the usual frame
            text = content[0].get("text", "")
            return text if isinstance(text, str) else str(text)
        return "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    if isinstance(content, str):
        return content
    return str((payload.get("output") or {}).get("text") or "")


def _annotation(payload: dict[str, Any]) -> Annotation | None:
    """Qwen3-ASR's ``message.annotations`` (language, emotion), from the last frame."""
    message = _choice(payload).get("message")
    return annotation_of(message) if isinstance(message, dict) else None


def _finish(payload: dict[str, Any]) -> str | None:
    reason = _choice(payload).get("finish_reason") or (payload.get("output") or {}).get(
        "finish_reason"
    )
    return str(reason) if reason is not None else None


def _usage(payload: dict[str, Any]) -> Usage:
    usage = payload.get("usage") or {}
    return Usage(
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        audio_tokens=usage.get("audio_tokens"),
    )
