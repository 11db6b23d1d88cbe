"""OpenAI-style ``chat/completions`` routes: DashScope's compatible mode and a vLLM stand-in.

``POST /compatible-mode/v1/chat/completions`` behaves as DashScope documents for Qwen-Omni
(protocol reference §5.1):

* omni models only stream: ``stream`` false or missing gets the documented 400
  "This model only support stream mode, please enable the stream parameter.";
* ``input_audio.data`` must be an http(s)/oss URL or a full data URL — raw base64 gets
  400 "The provided URL does not appear to be valid."; the ``audio_url`` part is refused;
* assistant messages are text only; a user message holds at most one non-text item
  (all Qwen-Omni models except Qwen3.5-Omni);
* errors are OpenAI-style JSON (``{"error": {...}, "request_id": ...}``); the fault knob
  ``error_after`` still sends DashScope's ``event:error`` frame mid-stream, as the service does.

``POST /v1/chat/completions`` stands in for vLLM serving Qwen2-Audio (§5.2): ``audio_url``
(http or data URL) and ``input_audio`` with raw base64 + ``format``; several clips per
message; ``--limit-mm-per-prompt`` as :attr:`CompatRoute.audio_limit`; vLLM's error JSON.

Both stream ``data: {chunk}`` lines, a final chunk with empty ``choices`` carrying usage
when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

from . import current
from ._reply import HEARD_SECONDS, ItemError, compose, decode_item, estimate_tokens, split_tokens
from .current import Refusal as _Refused
from .faults import Fault
from .server import Frame, ReceivedAudio, RecordedRequest, Reply
from .typed import json_mode_refusal, typed_reply

__all__ = ["COMPATIBLE_CHAT", "OPENAI_CHAT", "CompatRoute"]

COMPATIBLE_CHAT = "/compatible-mode/v1/chat/completions"
OPENAI_CHAT = "/v1/chat/completions"
MAX_TOKENS = 16_384
STREAM_ONLY = "This model only support stream mode, please enable the stream parameter."
_NON_TEXT = ("input_audio", "audio_url", "image_url", "video_url", "video", "image", "audio")


class CompatRoute:
    """Handler for one chat-completions path, in DashScope's or vLLM's dialect."""

    def __init__(
        self,
        dialect: Literal["dashscope", "vllm"],
        check_key: Callable[[str | None], bool],
        oss_lookup: Callable[[str], bytes | None],
        reply_override: Callable[[RecordedRequest], str | None],
        *,
        key_optional: bool = False,
        audio_limit: int = 999,
    ) -> None:
        self.dialect = dialect
        self._check_key = check_key
        self._oss_lookup = oss_lookup
        self._override = reply_override
        self.key_optional = key_optional  # vLLM started without --api-key takes any or none
        self.audio_limit = audio_limit  # vLLM's --limit-mm-per-prompt '{"audio": N}'

    # ------------------------------------------------------------------ entry
    def __call__(self, request: RecordedRequest, fault: Fault) -> Reply:
        rid = str(uuid.uuid4())
        try:
            return self._answer(request, rid)
        except _Refused as exc:
            return self._error(exc, rid)

    def _answer(self, request: RecordedRequest, rid: str) -> Reply:
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else None
        if not (self.key_optional and key is None) and not self._check_key(key):
            raise _Refused(401, "invalid_api_key", "Incorrect API key provided. ")
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise _Refused(
                400, "invalid_parameter_error", "The request body is not valid JSON."
            ) from None
        request.json = body
        if not isinstance(body, dict):
            raise _Refused(400, "invalid_parameter_error", "The request body must be an object.")
        model = str(body.get("model") or "")
        if not model:
            raise _Refused(400, "invalid_parameter_error", "Missing required parameter: model.")
        rules = current.rules_for(model) if self.dialect == "dashscope" else None
        plan = current.Plan()
        if self.dialect == "dashscope":
            if "qwen" not in model:
                raise _Refused(404, "model_not_found", f"The model `{model}` does not exist.")
            if rules is not None:  # today's models: their documented rules (current.py)
                plan = current.check_request(body, rules, stream=bool(body.get("stream")))
            elif "omni" in model and not body.get("stream"):
                raise _Refused(400, "invalid_parameter_error", STREAM_ONLY)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and not (
            isinstance(max_tokens, int) and 1 <= max_tokens <= MAX_TOKENS
        ):
            raise _Refused(
                400, "invalid_parameter_error", f"Range of max_tokens should be [1, {MAX_TOKENS}]"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Refused(400, "invalid_parameter_error", "messages must be a non-empty list.")

        context = current.check_messages(messages, rules, plan) if rules is not None else ""
        one_item = (
            rules.one_item_per_message
            if rules is not None
            else self.dialect == "dashscope" and "omni" in model and "qwen3.5" not in model
        )
        turn_start = max(
            (i + 1 for i, m in enumerate(messages) if m.get("role") == "assistant"), default=0
        )
        texts: list[str] = []
        question: list[str] = []
        now: list[ReceivedAudio] = []  # this turn's clips
        for i, message in enumerate(messages):
            for kind, value in self._items(message, one_item):
                if kind == "text":
                    texts.append(value)
                    if i >= turn_start and message.get("role") == "user":
                        question.append(value)
                    continue
                received = self._decode(kind, value, request.headers, rules)
                request.audio.append(received)
                if i >= turn_start:
                    now.append(received)
        if messages[-1].get("role") != "user":
            raise _Refused(
                400, "invalid_parameter_error", "The last message must be from the user."
            )
        if self.dialect == "vllm" and len(request.audio) > self.audio_limit:
            raise _Refused(
                400,
                "BadRequestError",
                f"At most {self.audio_limit} audio(s) may be provided in one prompt. "
                "Set `--limit-mm-per-prompt` to increase this limit.",
            )

        self._check_response_format(body, messages)
        if rules is not None:
            current.check_audio(now, request.audio, rules)
            return self._answer_current(request, body, rules, plan, context, now, rid)
        earlier = sum(1 for m in messages if m.get("role") == "assistant")
        text = (
            self._override(request)
            or typed_reply(body, messages, model, request.audio)
            or compose(model, now, " ".join(question) or None, earlier, len(request.audio))
        )
        pieces = split_tokens(text)
        finish = "stop"
        if max_tokens and len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"
        usage = self._usage(model, request.audio, " ".join(texts), len(pieces))
        headers = {"X-Request-Id": rid}
        cid = f"chatcmpl-{rid}"
        if not body.get("stream"):
            return Reply(
                200, _completion(cid, model, "".join(pieces), finish, usage), headers=headers
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Reply(
            200,
            frames=_chunks(cid, model, pieces, finish, usage if include_usage else None),
            headers=headers,
            sse_style="openai",
        )

    # ------------------------------------------------------------------ messages
    def _items(self, message: Any, one_item: bool) -> Iterator[tuple[str, Any]]:
        """(kind, value) of each content item; refuses what the service refuses."""
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
        ):
            raise _Refused(400, "invalid_parameter_error", "Each message needs a valid role.")
        role, content = message["role"], message.get("content")
        if isinstance(content, str):
            yield "text", content
            return
        if not isinstance(content, list):
            raise _Refused(400, "invalid_parameter_error", "content must be a string or a list.")
        non_text = [p for p in content if isinstance(p, dict) and p.get("type") != "text"]
        if role != "user" and non_text and self.dialect == "dashscope":
            raise _Refused(
                400,
                "invalid_parameter_error",
                f"The content of {role} messages must be text only.",
            )
        if one_item and len(non_text) > 1:
            raise _Refused(
                400,
                "invalid_parameter_error",
                "A user message can contain text and at most one audio, image or video.",
            )
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                yield "text", str(part.get("text", ""))
            elif kind == "input_audio":
                item = part.get("input_audio") or {}
                yield "input_audio", item
            elif kind == "audio_url" and self.dialect == "vllm":
                yield "audio_url", (part.get("audio_url") or {}).get("url", "")
            elif kind == "audio_url":
                raise _Refused(
                    400,
                    "invalid_parameter_error",
                    "The content type audio_url is not supported; use input_audio.",
                )
            elif kind in _NON_TEXT:
                raise _Refused(400, "invalid_parameter_error", f"This emulator takes no {kind}.")
            else:
                raise _Refused(400, "invalid_parameter_error", f"Unknown content type {kind!r}.")

    def _decode(
        self, kind: str, value: Any, headers: dict[str, str], rules: current.Rules | None = None
    ) -> ReceivedAudio:
        if kind == "audio_url":  # vLLM: http(s) or data URL
            url = str(value)
            if not url.startswith(("data:", "http://", "https://")):
                raise _Refused(400, "BadRequestError", f"Unsupported audio URL: {url[:40]!r}")
        elif self.dialect == "dashscope":  # a URL or a full data URL, never raw base64
            url = str(value.get("data", ""))
            if not url.startswith(("data:", "http://", "https://", "oss://")):
                raise _Refused(
                    400,
                    "invalid_parameter_error",
                    "<400> InternalError.Algo.InvalidParameter: The provided URL does not "
                    "appear to be valid.",
                )
        else:  # vLLM: raw base64 + format, turned into data:audio/{format};base64,{data}
            data = str(value.get("data", ""))
            if data.startswith("data:") or "://" in data[:16]:
                raise _Refused(
                    400,
                    "BadRequestError",
                    "input_audio.data must be raw base64 (vLLM adds the data: prefix itself).",
                )
            url = f"data:audio/{value.get('format') or 'wav'};base64,{data}"
        oss_ok = headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
        try:
            if rules is not None:  # a file by URL may be as large as the model takes
                limit = rules.spec.limits.max_audio_bytes
                return decode_item(
                    url, oss_lookup=self._oss_lookup, oss_allowed=oss_ok, max_bytes=limit
                )
            return decode_item(url, oss_lookup=self._oss_lookup, oss_allowed=oss_ok)
        except ItemError as exc:
            code = "invalid_parameter_error" if self.dialect == "dashscope" else "BadRequestError"
            raise _Refused(exc.status, code, exc.message) from None

    def _check_response_format(self, body: dict[str, Any], messages: list[Any]) -> None:
        """DashScope's JSON mode needs the word "json" in the messages (§11.7)."""
        if self.dialect != "dashscope":
            return
        refusal = json_mode_refusal(body, messages)
        if refusal is not None:
            raise _Refused(400, "invalid_parameter_error", refusal, "response_format")

    # ------------------------------------------------------------------ today's models
    def _answer_current(
        self,
        request: RecordedRequest,
        body: dict[str, Any],
        rules: current.Rules,
        plan: current.Plan,
        context: str,
        now: list[ReceivedAudio],
        rid: str,
    ) -> Reply:
        """The reply of Qwen3.5/3.8/3-Omni, the captioner or Qwen3-ASR (see current.py)."""
        model = str(body["model"])
        messages = body["messages"]
        spec = rules.spec
        annotations = None
        if spec.transcribes:
            text = self._override(request) or current.transcript(model, now[0], plan, context)
            _, annotations = current.asr_annotations(plan)
        elif not spec.takes_text:
            text = self._override(request) or current.caption(model, now[0])
        else:
            question = " ".join(
                part.get("text", "") if isinstance(part, dict) else str(part)
                for part in _contents(messages[-1])
                if isinstance(part, str) or part.get("type") == "text"
            )
            earlier = sum(1 for m in messages if m.get("role") == "assistant")
            text = (
                self._override(request)
                or typed_reply(body, messages, model, request.audio)
                or compose(
                    model,
                    now,
                    question or None,
                    earlier,
                    len(request.audio),
                    current.heard_seconds(rules),
                )
            )
        thought = (
            current.reasoning(model, now, _last_text(messages), plan.effort)
            if plan.thinking
            else ""
        )
        pieces, finish = split_tokens(text), "stop"
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens and len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"
        reasoning_pieces = split_tokens(thought) if thought else []
        pcm = current.speech_pcm("".join(pieces), plan.voice) if plan.voice else b""
        prompt_text = " ".join(
            part.get("text", "") if isinstance(part, dict) else str(part)
            for m in messages
            for part in _contents(m)
            if isinstance(part, str) or part.get("type") == "text"
        )
        usage = current.usage(
            rules, request.audio, estimate_tokens(prompt_text), len(pieces),
            len(reasoning_pieces), pcm,
        )  # fmt: skip
        headers = {"X-Request-Id": rid}
        cid = f"chatcmpl-{rid}"
        if not body.get("stream"):
            reply = _completion(cid, model, "".join(pieces), finish, usage)
            reply["choices"][0]["message"] = current.completion_message(
                "".join(pieces), thought, annotations
            )
            return Reply(200, reply, headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = current.chunks(
            cid,
            model,
            reasoning_pieces,
            pieces,
            finish,
            usage if include_usage else None,
            pcm=pcm,
            annotations=annotations,
        )
        return Reply(200, frames=frames, headers=headers, sse_style="openai")

    # ------------------------------------------------------------------ replies
    def _usage(self, model: str, audio: list[ReceivedAudio], text: str, out: int) -> dict[str, Any]:
        sound, words = _audio_tokens(model, audio), estimate_tokens(text)
        usage: dict[str, Any] = {
            "prompt_tokens": sound + words,
            "completion_tokens": out,
            "total_tokens": sound + words + out,
        }
        if self.dialect == "dashscope":  # DashScope splits the prompt by modality
            usage["prompt_tokens_details"] = {"text_tokens": words, "audio_tokens": sound}
            usage["completion_tokens_details"] = {"text_tokens": out}
        return usage

    def _error(self, exc: _Refused, rid: str) -> Reply:
        if self.dialect == "dashscope":
            body: dict[str, Any] = {
                "error": {
                    "code": exc.code,
                    "param": exc.param,
                    "message": exc.message,
                    "type": "invalid_request_error",
                },
                "id": f"chatcmpl-{rid}",
                "request_id": rid,
            }
        else:  # vLLM's ErrorResponse: the HTTP status sits in "code"
            body = {
                "error": {
                    "message": exc.message,
                    "type": exc.code if exc.code != "invalid_api_key" else "Unauthorized",
                    "param": exc.param,
                    "code": exc.status,
                }
            }
        return Reply(exc.status, body, headers={"X-Request-Id": rid})


def _contents(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else [content] if content else []


def _last_text(messages: list[Any]) -> str | None:
    """The question: the text of the last user message."""
    text = " ".join(
        part.get("text", "") if isinstance(part, dict) else str(part)
        for part in _contents(messages[-1])
        if isinstance(part, str) or part.get("type") == "text"
    )
    return text or None


def _audio_tokens(model: str, audio: list[ReceivedAudio]) -> int:
    """Qwen3-Omni bills 12.5 tokens per second (DOC-OMNI); Qwen2-Audio and Omni-Turbo 25."""
    if "qwen3" in model and "omni" in model:
        rate, least = 12.5, 1
    else:
        rate, least = 25.0, 25
    return sum(
        max(least, round(min(a.duration or HEARD_SECONDS, HEARD_SECONDS) * rate)) for a in audio
    )


def _completion(cid: str, model: str, text: str, finish: str, usage: dict[str, Any]) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


def _chunks(
    cid: str, model: str, pieces: list[str], finish: str, usage: dict[str, Any] | None
) -> Iterator[Frame]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }

    yield Frame(chunk({"role": "assistant", "content": ""}, None))
    for piece in pieces:
        yield Frame(chunk({"content": piece}, None))
    yield Frame(chunk({}, finish))
    if usage is not None:
        yield current.usage_frame(cid, created, model, usage)
    yield Frame("[DONE]")
