"""Schemas in their three forms become one: the same fields, columns and dtypes; answers
are read leniently and validated by pydantic, with a one-line message when they fail."""

from __future__ import annotations

import enum
from typing import Literal

import pandas as pd
import pydantic
import pytest

from qaudio_magic.errors import AnswerMismatchError, SchemaError
from qaudio_magic.schema import Schema, pandas_dtypes, typed_frame

SHORT = {"gender": ["male", "female", "unknown"], "age": int, "emotion": str, "dog_barks": bool}


class Speaker(pydantic.BaseModel):
    gender: Literal["male", "female", "unknown"]
    age: int
    emotion: str
    dog_barks: bool


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "gender": {"enum": ["male", "female", "unknown"]},
        "age": {"type": "integer"},
        "emotion": {"type": "string"},
        "dog_barks": {"type": "boolean"},
    },
    "required": ["gender", "age", "emotion", "dog_barks"],
}


@pytest.mark.parametrize("spec", [SHORT, Speaker, JSON_SCHEMA], ids=["short", "pydantic", "json"])
def test_three_forms_give_the_same_columns(spec: object) -> None:
    schema = Schema.of(spec)  # type: ignore[arg-type]
    assert schema.field_names == ("gender", "age", "emotion", "dog_barks")
    dtypes = pandas_dtypes(schema)
    assert list(dtypes["gender"].categories) == ["male", "female", "unknown"]
    assert [dtypes[k] for k in ("age", "emotion", "dog_barks")] == ["Int64", "string", "boolean"]
    wire = schema.response_format()["json_schema"]["schema"]
    assert wire["properties"]["gender"]["enum"] == ["male", "female", "unknown"]
    text = '{"gender": "female", "age": 41, "emotion": "calm", "dog_barks": false}'
    assert schema.parse(text) == {
        "gender": "female",
        "age": 41,
        "emotion": "calm",
        "dog_barks": False,
    }


def test_answers_are_read_leniently() -> None:
    schema = Schema.of(SHORT)
    want = {"gender": "male", "age": 34, "emotion": "happy", "dog_barks": True}
    for text in (
        '```json\n{"gender": "male", "age": 34, "emotion": "happy", "dog_barks": true}\n```',
        'Here you go: {"gender": "Male ", "age": "34", "emotion": "happy", "dog_barks": "yes"} '
        "Let me know if you need more.",
        '<think>a man</think>{"gender": "MALE", "age": 34.0, "emotion": "happy", '
        '"dog_barks": 1, "extra": "ignored"}',
    ):
        assert schema.parse(text) == want


def test_a_mismatch_names_each_field_and_what_came() -> None:
    schema = Schema.of(SHORT)
    with pytest.raises(AnswerMismatchError) as caught:
        schema.parse('{"gender": "robot", "age": "old", "emotion": "ok"}')
    message = str(caught.value)
    assert "gender: Input should be 'male', 'female' or 'unknown' (got \"robot\")" in message
    assert "age: Input should be a valid integer" in message
    assert "dog_barks: Field required" in message
    assert "\n" not in message
    with pytest.raises(AnswerMismatchError, match="no JSON object in the answer"):
        schema.parse("A man, about thirty, happy.")
    assert "did not match the JSON Schema: gender" in schema.repair_message(message)


def test_json_schema_constructs_are_checked() -> None:
    schema = Schema.of(
        {
            "type": "object",
            "title": "Clip info",
            "$defs": {"Who": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "properties": {
                "speakers": {"type": "integer", "minimum": 1, "maximum": 4},
                "who": {"$ref": "#/$defs/Who"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "score": {"type": ["number", "null"]},
            },
            "required": ["speakers"],
        }
    )
    assert schema.name == "Clip_info"
    assert schema.parse('{"speakers": 2, "who": {"name": "Ann"}}')["who"] == {"name": "Ann"}
    with pytest.raises(
        AnswerMismatchError, match="speakers: Input should be less than or equal to 4"
    ):
        schema.parse('{"speakers": 7}')
    with pytest.raises(AnswerMismatchError, match="tags: List should have at most 2 items"):
        schema.parse('{"speakers": 1, "tags": ["a", "b", "c"]}')
    assert pandas_dtypes(schema)["score"] == "float64"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"age": "int"}, "field 'age': 'int' is not a field type"),
        ({"gender": []}, "needs at least one choice"),
        ({"type": "object", "properties": {"x": {"type": "datetime"}}}, "unknown JSON Schema type"),
        ({"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}, "names nothing"),
        ({}, "the schema has no fields"),
        ("gender", "not str"),
    ],
)
def test_bad_schemas_are_one_line_errors(spec: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        Schema.of(spec)  # type: ignore[arg-type]


def test_typed_frame_keeps_failed_rows_as_missing() -> None:
    class Mood(enum.Enum):
        calm = "calm"
        angry = "angry"

    schema = Schema.of({"mood": Mood, "loud": float, "count": int | None})
    rows = [schema.validate({"mood": "calm", "loud": 0.5, "count": 3}), None]
    frame = typed_frame(schema, rows, index=pd.Index(["a.wav", "b.wav"]))
    assert frame.loc["a.wav", "mood"] == "calm" and frame["mood"].dtype == "category"
    assert frame["loud"].dtype == "float64" and frame["count"].dtype == "Int64"
    assert frame.loc["b.wav"].isna().all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    ['{"a":' * 200_000, "[" * 100_000, "{" * 500_000, "```json\n" * 10_000 + "{"],
    ids=["deep-unclosed", "deep-array", "braces", "fences"],
)
def test_hostile_answers_are_a_mismatch_not_a_hang_or_crash(text: str) -> None:
    """Reading an answer tries a bounded number of places; nesting too deep is no answer."""
    with pytest.raises(AnswerMismatchError, match="no JSON object in the answer"):
        Schema.of({"a": int}).parse(text)
