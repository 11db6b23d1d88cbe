"""Typed questions in the emulator: a JSON answer when the request asks for one.

A request asks for JSON when (checked in this order):

* ``response_format`` is ``{"type": "json_schema", "json_schema": {"schema": {...}}}`` —
  OpenAI's guided decoding, which vLLM enforces; the schema given is answered;
* a user message's text holds a JSON Schema (a JSON object with ``properties``), as
  qaudio_magic writes it for DashScope models, which take the schema in the prompt
  (protocol reference §11.7); the newest such message wins, so a repair request in the
  same conversation is answered against the schema of the question it repairs;
* ``response_format`` is ``{"type": "json_object"}`` with no schema anywhere: an object
  ``{"answer": "Emulated answer …"}``.

DashScope's compatible mode refuses ``json_object`` when no message contains the word
"json" (the documented 400, §11.7/§11.12): :func:`json_mode_refusal`.

The answer is deterministic valid JSON: each value is picked by a hash of the model, the
sha256 of the request's audio and the field's path, within the schema's ``enum``,
``minimum``/``maximum`` and length bounds. So one clip gets the same answer from one
model every time, and different models disagree the way real ones would — which gives a
model grid and its scores something to show. Free-text string fields say that they are
emulated (``"emulated emotion"``); typed fields (choices, numbers, booleans) cannot, and
the emulator says so in every non-JSON answer and in its docs instead.

The scripted replies (``Emulator.reply_with``, header ``X-Emulator-Reply``) still come
first, so a test can make the model answer malformed JSON once and watch the repair.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from .server import ReceivedAudio

__all__ = ["json_mode_refusal", "requested_schema", "typed_reply", "user_texts"]

JSON_WORD_REFUSAL = (
    "'messages' must contain the word 'json' in some form, to use 'response_format' "
    "of type 'json_object'."
)
_DECODE = json.JSONDecoder().raw_decode
_MAX_DEPTH = 6  # bounds, so no schema can make the emulator build a huge answer
_MAX_ITEMS = 20
_MAX_TEXT = 1_000


def user_texts(messages: Any) -> list[str]:
    """The text of every user message, newest first (native and OpenAI-style content)."""
    texts: list[str] = []
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        texts.append(_text_of(message.get("content")))
    return texts


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and ("text" in part) and part.get("type", "text") == "text"
        )
    return ""


def requested_schema(body: dict[str, Any], messages: Any) -> dict[str, Any] | None:
    """The JSON Schema the request asks its answer to follow, ``{}`` for plain JSON mode,
    or None when it asks for prose."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):  # native: parameters.response_format
        fmt = (body.get("parameters") or {}).get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return schema
    for text in user_texts(messages):
        found = _schema_in(text)
        if found is not None:
            return found
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {}
    return None


def _schema_in(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = _DECODE(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("properties"), dict):
            return value
        start = text.find("{", start + 1)
    return None


def json_mode_refusal(body: dict[str, Any], messages: Any) -> str | None:
    """DashScope's 400 message for ``json_object`` without the word "json", else None."""
    fmt = body.get("response_format")
    if not (isinstance(fmt, dict) and fmt.get("type") == "json_object"):
        return None
    words = " ".join(_all_texts(messages)).lower()
    return None if "json" in words else JSON_WORD_REFUSAL


def _all_texts(messages: Any) -> Iterable[str]:
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            yield _text_of(message.get("content"))


def typed_reply(
    body: dict[str, Any], messages: Any, model: str, audio: Sequence[ReceivedAudio]
) -> str | None:
    """The JSON answer text when the request asks for JSON, else None."""
    schema = requested_schema(body, messages)
    if schema is None:
        return None
    seed = model + "|" + ",".join(sorted({a.sha256 for a in audio}))  # history or not
    if not schema:
        clips = f"{len(audio)} audio clip{'s' if len(audio) != 1 else ''}"
        return json.dumps({"answer": f"Emulated answer from {model} (not a real model): {clips}."})
    value = _value(schema, schema, seed, "", 0)
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------- values
def _pick(seed: str, path: str, n: int) -> int:
    digest = hashlib.sha256(f"{seed}|{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(n, 1)


def _value(node: Any, root: dict[str, Any], seed: str, path: str, depth: int) -> Any:
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in node:
        return _value(_resolve(str(node["$ref"]), root), root, seed, path, depth + 1)
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][_pick(seed, path, len(node["enum"]))]
    for key in ("anyOf", "oneOf"):
        options = [o for o in node.get(key) or [] if isinstance(o, dict)]
        if options:
            typed = [o for o in options if o.get("type") != "null"] or options
            return _value(typed[0], root, seed, path, depth + 1)
    if isinstance(node.get("allOf"), list) and node["allOf"]:
        return _value(node["allOf"][0], root, seed, path, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and isinstance(node.get("properties"), dict)):
        props = node.get("properties") or {}
        return {
            key: _value(sub, root, seed, f"{path}/{key}", depth + 1) for key, sub in props.items()
        }
    if kind == "array":
        low = min(int(node.get("minItems", 1)), _MAX_ITEMS)
        high = min(int(node.get("maxItems", max(low, 2))), _MAX_ITEMS)
        count = low + _pick(seed, path + "#n", high - low + 1)
        return [
            _value(node.get("items") or {}, root, seed, f"{path}/{i}", depth + 1)
            for i in range(count)
        ]
    if kind == "boolean":
        return _pick(seed, path, 2) == 1
    if kind in ("integer", "number"):
        return _number(node, seed, path, integer=kind == "integer")
    if kind == "null":
        return None
    return _string(node, path)


def _number(node: dict[str, Any], seed: str, path: str, *, integer: bool) -> int | float:
    low = node.get("minimum", node.get("exclusiveMinimum", 0))
    high = node.get("maximum", node.get("exclusiveMaximum", max(low, 0) + 100))
    if "exclusiveMinimum" in node and "minimum" not in node:
        low = low + (1 if integer else 0.01)
    if "exclusiveMaximum" in node and "maximum" not in node:
        high = high - (1 if integer else 0.01)
    if integer:
        lo, hi = int(-(-low // 1)), int(high // 1)
        return lo + _pick(seed, path, hi - lo + 1) if hi >= lo else lo
    steps = 1000
    return round(low + (high - low) * _pick(seed, path, steps + 1) / steps, 3)


def _string(node: dict[str, Any], path: str) -> str:
    name = path.rsplit("/", 1)[-1] or "answer"
    text = f"emulated {name}"
    low, high = min(int(node.get("minLength", 0)), _MAX_TEXT), node.get("maxLength")
    if len(text) < low:
        text = text + "." * (low - len(text))
    if isinstance(high, int):
        text = text[:high]
    return text


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#/"):
        return {}
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}
