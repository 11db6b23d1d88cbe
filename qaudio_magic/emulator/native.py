"""The native endpoint: ``POST /api/v1/services/aigc/multimodal-generation/generation``.

Validates the body as the service does (documented error shapes), decodes every audio
item, and answers as JSON or, with ``X-DashScope-SSE: enable``, as DashScope SSE frames
(incremental or cumulative, ``finish_reason`` ``"null"`` until the last frame).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

from .._secret import Secret
from . import current
from ._reply import ItemError, audio_tokens, compose, decode_item, estimate_tokens, split_tokens
from .faults import Fault
from .server import Frame, RecordedRequest, Reply
from .typed import typed_reply

__all__ = ["GENERATION", "NativeRoute"]

GENERATION = "/api/v1/services/aigc/multimodal-generation/generation"
MAX_TOKENS = 2048


def error(status: int, code: str, message: str, request_id: str | None = None) -> Reply:
    return Reply(
        status, {"code": code, "message": message, "request_id": request_id or str(uuid.uuid4())}
    )


class NativeRoute:
    """Handler for the native generation endpoint."""

    def __init__(
        self,
        check_key: Callable[[str | None], bool],
        oss_lookup: Callable[[str], bytes | None],
        reply_override: Callable[[RecordedRequest], str | None],
    ) -> None:
        self._check_key = check_key
        self._oss_lookup = oss_lookup
        self._override = reply_override

    def __call__(self, request: RecordedRequest, fault: Fault) -> Reply:
        rid = str(uuid.uuid4())
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else None
        if not self._check_key(key):
            return error(401, "InvalidApiKey", "Invalid API-key provided.", rid)
        import json

        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            return error(400, "InvalidParameter", "The request body is not valid JSON.", rid)
        request.json = body
        if not isinstance(body, dict):
            return error(400, "InvalidParameter", "The request body must be a JSON object.", rid)
        model = body.get("model")
        if not model:
            return error(
                400,
                "BadRequest.EmptyModel",
                'Required parameter "model" missing from request.',
                rid,
            )
        if "audio" not in str(model) and "qwen" not in str(model):
            return error(404, "ModelNotFound", "Model not exist.", rid)
        messages = (body.get("input") or {}).get("messages")
        if not messages or not isinstance(messages, list):
            return error(
                400,
                "BadRequest.EmptyInput",
                'Required parameter "input" missing from request.',
                rid,
            )
        params = body.get("parameters") or {}
        rules = current.rules_for(str(model))
        streaming = request.headers.get("x-dashscope-sse", "").lower() == "enable"
        if rules is not None:
            if "dashscope" not in rules.spec.routes:  # OMNI-35: compatible mode only
                return error(  # the service's text for this is UNVERIFIED
                    400,
                    "InvalidParameter",
                    f"The model {model} is only available through the OpenAI compatible API.",
                    rid,
                )
            try:
                return self._answer_current(request, body, rules, streaming, rid)
            except current.Refusal as exc:
                return error(exc.status, "InvalidParameter", exc.message, rid)
        max_tokens = params.get("max_tokens")
        if max_tokens is not None and not (
            isinstance(max_tokens, int) and 1 <= max_tokens <= MAX_TOKENS
        ):
            return error(
                400,
                "InvalidParameter",
                f"<400> InternalError.Algo.InvalidParameter: Range of max_tokens should be [1, {MAX_TOKENS}]",
                rid,
            )

        oss_ok = request.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        if last_user < 0:
            return error(400, "InvalidParameter", "The last message must be from the user.", rid)
        now: list[Any] = []  # this turn's clips
        all_audio = []
        texts: list[str] = []
        for i, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, list):
                return error(
                    400, "InvalidParameter", "Message content must be a list of items.", rid
                )
            for item in content:
                if not isinstance(item, dict) or len(item) != 1:
                    return error(
                        400, "InvalidParameter", "Each content item must have exactly one key.", rid
                    )
                if "audio" in item:
                    try:
                        received = decode_item(
                            str(item["audio"]), oss_lookup=self._oss_lookup, oss_allowed=oss_ok
                        )
                    except ItemError as exc:
                        return error(exc.status, exc.code, exc.message, rid)
                    request.audio.append(received)
                    all_audio.append(received)
                    if i == last_user:
                        now.append(received)
                elif "text" in item:
                    texts.append(str(item["text"]))
        question = (
            " ".join(str(item["text"]) for item in messages[last_user]["content"] if "text" in item)
            or None
        )
        earlier = sum(1 for m in messages[:last_user] if m.get("role") == "user")
        text = (
            self._override(request)
            or typed_reply(body, messages, str(model), all_audio)
            or compose(str(model), now, question, earlier, len(all_audio))
        )
        usage = {
            "audio_tokens": audio_tokens(all_audio),
            "input_tokens": estimate_tokens(" ".join(texts)),
        }
        if max_tokens:
            pieces = split_tokens(text)[:max_tokens]
            finish = "length" if len(split_tokens(text)) > max_tokens else "stop"
        else:
            pieces, finish = split_tokens(text), "stop"
        if not streaming:
            return Reply(200, _payload("".join(pieces), finish, usage, len(pieces), rid))
        incremental = bool(params.get("incremental_output", False))
        return Reply(200, frames=_frames(pieces, finish, usage, rid, incremental))

    def _answer_current(
        self,
        request: RecordedRequest,
        body: dict[str, Any],
        rules: current.Rules,
        streaming: bool,
        rid: str,
    ) -> Reply:
        """Qwen3-ASR and the captioner on the native route (ASR-API, QC-ASR, CAPT)."""
        model = str(body["model"])
        params = body.get("parameters") or {}
        messages = body["input"]["messages"]
        plan = current.check_request(body, rules, native=True, stream=streaming)
        context = current.check_messages(messages, rules, plan)
        oss_ok = request.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
        for message in messages:
            for item in message.get("content") or []:
                if isinstance(item, dict) and "audio" in item:
                    try:
                        received = decode_item(
                            str(item["audio"]),
                            oss_lookup=self._oss_lookup,
                            oss_allowed=oss_ok,
                            max_bytes=rules.spec.limits.max_audio_bytes,
                        )
                    except ItemError as exc:
                        return error(exc.status, exc.code, exc.message, rid)
                    request.audio.append(received)
        if not request.audio:
            raise current.Refusal(400, "InvalidParameter", "The request holds no audio.")
        current.check_audio(request.audio, request.audio, rules)
        clip = request.audio[0]
        annotations = None
        if rules.spec.transcribes:
            text = self._override(request) or current.transcript(model, clip, plan, context)
            _, annotations = current.asr_annotations(plan)
        else:
            text = self._override(request) or current.caption(model, clip)
        pieces = split_tokens(text)
        seconds = max(1, round(clip.duration or 0.0))
        usage: dict[str, Any] = (
            {
                "input_tokens_details": {"text_tokens": 0},
                "output_tokens_details": {"text_tokens": len(pieces)},
                "seconds": seconds,
            }
            if rules.spec.transcribes
            else {
                "audio_tokens": current.audio_tokens(rules, request.audio),
                "input_tokens": 0,
            }
        )
        if not streaming:
            payload = _payload("".join(pieces), "stop", usage, len(pieces), rid)
            if annotations is not None:
                payload["output"]["choices"][0]["message"]["annotations"] = annotations
            return Reply(200, payload)
        incremental = bool(params.get("incremental_output", False))
        return Reply(
            200, frames=_frames(pieces, "stop", usage, rid, incremental, annotations=annotations)
        )


def _payload(
    text: str, finish: str, usage: dict[str, Any], out_tokens: int, rid: str
) -> dict[str, Any]:
    return {
        "output": {
            "choices": [
                {
                    "finish_reason": finish,
                    "message": {"role": "assistant", "content": [{"text": text}]},
                }
            ]
        },
        "usage": {**usage, "output_tokens": out_tokens},
        "request_id": rid,
    }


def _frames(
    pieces: list[str],
    finish: str,
    usage: dict[str, Any],
    rid: str,
    incremental: bool,
    *,
    annotations: list[dict[str, str]] | None = None,
) -> Iterator[Frame]:
    sofar = ""
    for n, piece in enumerate(pieces, 1):
        sofar += piece
        last = n == len(pieces)
        payload = _payload(
            piece if incremental else sofar, finish if last else "null", usage, n, rid
        )
        if last and annotations is not None:  # UNVERIFIED where a stream carries them
            payload["output"]["choices"][0]["message"]["annotations"] = annotations
        yield Frame(payload)


def key_checker(required: Secret | None) -> Callable[[str | None], bool]:
    """Any non-empty key passes unless the emulator was given one; 'invalid…' keys fail."""

    def check(key: str | None) -> bool:
        if not key or key.lower().startswith("invalid"):
            return False
        return required is None or key == required.reveal()

    return check
