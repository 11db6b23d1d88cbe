"""Typed questions: one :class:`Schema` from a pydantic model, a JSON Schema or a short dict.

A schema is written in whichever form is at hand::

    class Speaker(pydantic.BaseModel): gender: Literal["male", "female"]; age: int
    {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    {"gender": ["male", "female", "unknown"], "age": int, "emotion": str, "dog_barks": bool}

and becomes one internal form that gives everything a typed question needs:

* :attr:`Schema.json_schema` — what an OpenAI-compatible server's guided decoding takes
  (:meth:`Schema.response_format`, vLLM's ``{"type": "json_schema", ...}``);
* :meth:`Schema.prompt` — the question with the schema spelled out, for models that only
  read instructions (DashScope's omni and audio models: protocol reference §11.7);
* :meth:`Schema.parse` — lenient reading of an answer (code fences, prose around the
  object, ``<think>`` blocks, choices in another case) and validation **by pydantic**, so
  the rules are pydantic's, not hand-written ones;
* :meth:`Schema.repair_message` — the one follow-up asking the model to fix its answer
  (a schema that cannot be used raises :class:`~qaudio_magic.errors.SchemaError`, an
  answer that does not match :class:`~qaudio_magic.errors.AnswerMismatchError`);
* :func:`pandas_dtypes` / :func:`typed_frame` — one column per field with a proper dtype
  (category for choices, ``boolean``, ``Int64``, ``float64``, ``string``), the one place
  that decides columns and dtypes (batches, grids and Dask partitions all call it).

A JSON Schema dict is sent to servers exactly as written and translated to a pydantic
model for validation; the translation covers ``type`` (also lists of types), ``enum``,
``const``, ``anyOf``/``oneOf``, ``$ref`` to ``$defs``/``definitions``, nested objects,
arrays and the numeric/length bounds. Other keywords are sent but not checked here.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import AnswerMismatchError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FieldInfo",
    "Schema",
    "SchemaLike",
    "as_schema",
    "extract_json",
    "pandas_dtypes",
    "typed_frame",
]

SchemaLike = Union[type[BaseModel], Mapping[str, Any], "Schema"]
Kind = Literal["choice", "bool", "int", "float", "str", "other"]


@dataclass(frozen=True)
class FieldInfo:
    """One top-level field: its name, what kind of column it makes, its choices."""

    name: str
    kind: Kind
    choices: tuple[Any, ...] = ()
    required: bool = True
    description: str | None = None


# ---------------------------------------------------------------------- the schema
class Schema:
    """A schema in its one internal form: a pydantic model plus the JSON Schema sent."""

    def __init__(
        self, model: type[BaseModel], json_schema: dict[str, Any], *, name: str | None = None
    ) -> None:
        self.model = model
        self.json_schema = json_schema
        self.name = _wire_name(name or model.__name__)
        self.fields: tuple[FieldInfo, ...] = tuple(
            _field_info(key, info) for key, info in model.model_fields.items()
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def of(cls, spec: SchemaLike, *, name: str | None = None) -> Schema:
        """A schema from a pydantic model, a JSON Schema dict or the short dict form."""
        if isinstance(spec, Schema):
            return spec
        if isinstance(spec, type) and issubclass(spec, BaseModel):
            return cls(spec, spec.model_json_schema(), name=name)
        if isinstance(spec, Mapping):
            if not spec:
                raise SchemaError("the schema has no fields")
            if _is_json_schema(spec):
                return _from_json_schema(dict(spec), name)
            return _from_short_form(spec, name)
        raise SchemaError(
            f"a schema is a pydantic model, a JSON Schema dict or a dict of field types, "
            f"not {type(spec).__name__}"
        )

    # ------------------------------------------------------------------ to the model
    def response_format(self) -> dict[str, Any]:
        """OpenAI's ``response_format`` for guided decoding (vLLM, OpenAI)."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.json_schema, "strict": True},
        }

    def prompt(self, question: str | None) -> str:
        """The question with the schema spelled out (it also holds the word "json", which
        DashScope's ``json_object`` mode requires)."""
        instruction = (
            "Answer with a single JSON object and nothing else (no code fences, no prose), "
            "matching this JSON Schema:\n"
            + json.dumps(self.json_schema, ensure_ascii=False, separators=(",", ":"))
        )
        return (
            f"{question.strip()}\n\n{instruction}" if question and question.strip() else instruction
        )

    def repair_message(self, error: str) -> str:
        """The one follow-up sent after an answer that did not match."""
        return (
            f"Your answer did not match the JSON Schema: {error}. "
            "Answer again with a single JSON object only, matching the schema."
        )

    # ------------------------------------------------------------------ from the model
    def validate(self, value: Any) -> dict[str, Any]:
        """``value`` checked and coerced by pydantic; raises :class:`AnswerMismatchError`."""
        try:
            instance = self.model.model_validate(value)
        except ValidationError as exc:
            raise AnswerMismatchError(describe_errors(exc)) from None
        return instance.model_dump(mode="python")

    def parse(self, text: str) -> dict[str, Any]:
        """The answer ``text`` read leniently and validated; raises :class:`AnswerMismatchError`."""
        try:
            value = extract_json(text)
        except ValueError as exc:
            raise AnswerMismatchError(str(exc), raw=text) from None
        try:
            return self.validate(value)
        except AnswerMismatchError as exc:
            raise AnswerMismatchError(str(exc), raw=text) from None

    # ------------------------------------------------------------------ columns
    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def describe(self) -> str:
        """``gender: male|female|unknown, age: int, ...`` — one line for help and reprs."""
        return ", ".join(
            f"{f.name}: {'|'.join(map(str, f.choices)) if f.kind == 'choice' else f.kind}"
            for f in self.fields
        )

    def __repr__(self) -> str:
        return f"Schema({self.name}: {self.describe()})"


def as_schema(spec: SchemaLike | None, *, name: str | None = None) -> Schema | None:
    """``Schema.of(spec)``, or None for None."""
    return None if spec is None else Schema.of(spec, name=name)


# ---------------------------------------------------------------------- reading answers
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_THINK = re.compile(r"^\s*<think>.*?</think>", re.S)
_DECODE = json.JSONDecoder().raw_decode
_MOST_TRIES = 20  # fenced blocks and "{" positions tried in one answer


def extract_json(text: str) -> Any:
    """The JSON object in a model's answer: the whole text, a fenced block, or the first
    object amid prose. Raises ValueError naming what was wrong."""
    text = _THINK.sub("", text or "").strip()
    if not text:
        raise ValueError("the answer is empty")
    fenced = (m.group(1).strip() for m in _FENCE.finditer(text))
    candidates = [*itertools.islice(fenced, _MOST_TRIES), text]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):  # a nest too deep is no answer either
            continue
        if isinstance(value, dict):
            return value
    for candidate in candidates:
        start = candidate.find("{")
        for _ in range(_MOST_TRIES):  # bounded: a hostile answer cannot make this quadratic
            if start < 0:
                break
            try:
                value, _end = _DECODE(candidate, start)
            except (ValueError, RecursionError):
                value = None
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise ValueError(f"no JSON object in the answer (it begins {text[:60]!r})")


def describe_errors(exc: ValidationError, most: int = 5) -> str:
    """pydantic's errors as one line: ``age: Input should be a valid integer (got 'old')``."""
    parts = []
    for error in exc.errors()[:most]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "the answer"
        got = error.get("input")
        shown = "" if error.get("type") == "missing" else f" (got {_short(got)})"
        parts.append(f"{where}: {error.get('msg', 'invalid')}{shown}")
    more = exc.error_count() - most
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


# ---------------------------------------------------------------------- columns and dtypes
def pandas_dtypes(schema: Schema) -> dict[str, Any]:
    """The pandas dtype of each field's column.

    choices → ``category`` (with the choices as categories, in order), bool → ``boolean``,
    int → ``Int64``, float → ``float64``, str → ``string``, anything else → ``object``.
    Missing values (a failed row) are NA in every one of them.
    """
    import pandas as pd

    dtypes: dict[str, Any] = {}
    for f in schema.fields:
        if f.kind == "choice":
            dtypes[f.name] = pd.CategoricalDtype(list(f.choices))
        else:
            dtypes[f.name] = {
                "bool": "boolean",
                "int": "Int64",
                "float": "float64",
                "str": "string",
            }.get(f.kind, "object")
    return dtypes


def typed_frame(
    schema: Schema, rows: Sequence[Mapping[str, Any] | None], index: Any = None
) -> pd.DataFrame:
    """One typed column per field, one row per entry of ``rows`` (None: a failed row)."""
    import pandas as pd

    dtypes = pandas_dtypes(schema)
    columns: dict[str, pd.Series] = {}
    for name, dtype in dtypes.items():
        values = [_cell((row or {}).get(name)) if row is not None else None for row in rows]
        if isinstance(dtype, pd.CategoricalDtype):
            values = [v if v in dtype.categories else None for v in values]
        columns[name] = pd.Series(values, dtype=dtype if dtype != "object" else object, index=index)
    return pd.DataFrame(columns, index=index)


def _cell(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    return value


# ---------------------------------------------------------------------- short form
_SCALARS: dict[Any, Any] = {int: int, float: float, str: str, bool: bool}


def _from_short_form(spec: Mapping[str, Any], name: str | None) -> Schema:
    fields: dict[str, Any] = {}
    for key, value in spec.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise SchemaError(f"field name {key!r}: use a Python identifier")
        fields[key] = (_short_annotation(key, value), ...)
    model = pydantic.create_model(  # type: ignore[call-overload]
        _model_name(name), __config__=ConfigDict(extra="ignore"), **fields
    )
    wire = _strip_titles(model.model_json_schema())
    wire["additionalProperties"] = False
    return Schema(model, wire, name=name or "answer")


def _short_annotation(key: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if not value:
            raise SchemaError(f"field {key!r}: a list of choices needs at least one choice")
        if not all(isinstance(v, (str, int, float, bool)) for v in value):
            raise SchemaError(f"field {key!r}: choices must be strings or numbers")
        return _choices(tuple(value))
    if value in _SCALARS:
        return _SCALARS[value]
    if isinstance(value, type) and issubclass(value, (BaseModel, enum.Enum)):
        return value
    if typing.get_origin(value) is not None or isinstance(value, types.UnionType):
        return value  # Literal[...], list[str], int | None: pydantic reads them
    raise SchemaError(
        f"field {key!r}: {value!r} is not a field type (use int, float, str, bool, "
        "a list of choices, or a typing annotation)"
    )


def _choices(values: tuple[Any, ...]) -> Any:
    """``Literal[values]`` that also takes a string choice in another case or padded."""
    by_fold = {v.casefold(): v for v in values if isinstance(v, str)}

    def fold(value: Any) -> Any:
        if isinstance(value, str) and value not in values:
            return by_fold.get(value.strip().casefold(), value)
        return value

    return Annotated[Literal[values], BeforeValidator(fold)]  # type: ignore[valid-type]


# ---------------------------------------------------------------------- JSON Schema
def _is_json_schema(spec: Mapping[str, Any]) -> bool:
    return isinstance(spec.get("properties"), Mapping) or spec.get("type") == "object"


def _from_json_schema(spec: dict[str, Any], name: str | None) -> Schema:
    if spec.get("type", "object") != "object":
        raise SchemaError("a JSON Schema for an answer must describe an object (type: object)")
    try:
        model = _object_model(spec, spec, _model_name(name or spec.get("title")))
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise SchemaError(f"the JSON Schema cannot be used: {exc}") from None
    if not model.model_fields:
        raise SchemaError("the JSON Schema has no properties")
    return Schema(model, spec, name=name or spec.get("title") or "answer")


def _object_model(node: Mapping[str, Any], root: Mapping[str, Any], name: str) -> type[BaseModel]:
    properties = node.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise SchemaError(f"{name}: properties must be an object")
    required = set(node.get("required") or ())
    fields: dict[str, Any] = {}
    for key, sub in properties.items():
        if not isinstance(sub, Mapping):
            raise SchemaError(f"property {key!r}: its schema must be an object")
        annotation = _annotation(sub, root, f"{name}_{key}")
        description = sub.get("description")
        if key in required:
            fields[key] = (annotation, Field(..., description=description))
        else:
            fields[key] = (annotation | None, Field(None, description=description))
    created: type[BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
        name, __config__=ConfigDict(extra="ignore"), **fields
    )
    return created


_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


def _annotation(node: Mapping[str, Any], root: Mapping[str, Any], name: str) -> Any:
    if "$ref" in node:
        return _annotation(_resolve(str(node["$ref"]), root), root, name)
    if "const" in node:
        return _choices((node["const"],))
    if "enum" in node:
        values = tuple(node["enum"])
        if not values:
            raise SchemaError(f"{name}: enum is empty")
        return _choices(values)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [_annotation(sub, root, f"{name}_{i}") for i, sub in enumerate(node[key])]
            return Union[tuple(options)]  # noqa: UP007 - built at run time
    kind = node.get("type")
    if isinstance(kind, list):
        return Union[tuple(_annotation({**node, "type": k}, root, name) for k in kind)]  # noqa: UP007
    if kind == "object":
        if isinstance(node.get("properties"), Mapping) and node["properties"]:
            return _object_model(node, root, name)
        return dict[str, Any]
    if kind == "array":
        items = node.get("items")
        inner = _annotation(items, root, name + "_item") if isinstance(items, Mapping) else Any
        bounds = _bounds(node, {"minItems": "min_length", "maxItems": "max_length"})
        return Annotated[list[inner], Field(**bounds)] if bounds else list[inner]  # type: ignore[valid-type]
    if kind is None:
        return Any
    if kind not in _JSON_TYPES:
        raise SchemaError(f"{name}: unknown JSON Schema type {kind!r}")
    base = _JSON_TYPES[kind]
    if kind in ("integer", "number"):
        bounds = _bounds(
            node,
            {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"},
        )
    elif kind == "string":
        bounds = _bounds(
            node, {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"}
        )
    else:
        bounds = {}
    return Annotated[base, Field(**bounds)] if bounds else base


def _bounds(node: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {ours: node[theirs] for theirs, ours in names.items() if theirs in node}


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise SchemaError(f"$ref {ref!r}: only references inside the schema (#/...) are followed")
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise SchemaError(f"$ref {ref!r} names nothing in the schema")
        node = node[part]
    if not isinstance(node, Mapping):
        raise SchemaError(f"$ref {ref!r} is not a schema")
    return node


# ---------------------------------------------------------------------- field kinds
def _field_info(name: str, info: Any) -> FieldInfo:
    kind, choices = _kind(info.annotation)
    return FieldInfo(name, kind, choices, required=info.is_required(), description=info.description)


def _kind(annotation: Any) -> tuple[Kind, tuple[Any, ...]]:
    """What column a field's annotation makes (Optional[X] makes X's)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin is Union or isinstance(annotation, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _kind(options[0])
        kinds = {_kind(a) for a in options}
        return kinds.pop() if len(kinds) == 1 else ("other", ())
    if origin is Literal:
        return "choice", tuple(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", tuple(m.value for m in annotation)
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if annotation is str:
        return "str", ()
    return "other", ()


# ---------------------------------------------------------------------- names
def _model_name(name: Any) -> str:
    text = re.sub(r"\W", "_", str(name or "Answer"))
    return text if text and not text[0].isdigit() else "Answer_" + text


def _wire_name(name: str) -> str:
    """OpenAI's json_schema name: letters, digits, ``_`` and ``-``, at most 64."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "answer")[:64]


def _strip_titles(node: Any) -> Any:
    """pydantic's generated ``title`` keys removed: they repeat the field names."""
    if isinstance(node, dict):
        return {
            k: _strip_titles(v)
            for k, v in node.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node
