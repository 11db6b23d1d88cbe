"""Typed questions against the emulator over real HTTP: ``--schema`` / ``schema=``,
``answer.data``, typed DataFrame columns, the route's mechanism, one repair then a failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd
import pydantic
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import Answer, ask_audio
from qaudio_magic.answer import Answers, Failure
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import AnswerMismatchError, SchemaError
from qaudio_magic.session import Session

SPEAKER = {"gender": ["male", "female", "unknown"], "age": int, "emotion": str, "dog_barks": bool}
VLLM = "openai:Qwen/Qwen2-Audio-7B-Instruct"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches cache by default: keep every test's cache in its own temporary dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _texts(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(str(p["text"]) for p in content if isinstance(p, dict) and p.get("text"))


def test_a_dict_schema_gives_typed_dataframe_columns(ip, emu: Emulator, audio: Path) -> None:
    ip.user_ns["Speaker"] = SPEAKER
    answers = ip.run_cell_magic("qaudio", f"{audio}/*.wav --schema Speaker", "Who is speaking?")
    assert isinstance(answers, Answers) and len(answers) == 4 and not answers.failed
    frame = answers.to_pandas()
    assert list(frame.columns[-4:]) == ["gender", "age", "emotion", "dog_barks"]
    assert list(frame["gender"].cat.categories) == ["male", "female", "unknown"]
    assert (frame["age"].dtype, frame["emotion"].dtype, frame["dog_barks"].dtype) == (
        pd.Int64Dtype(),
        pd.StringDtype(),
        pd.BooleanDtype(),
    )
    # the columns hold what the model said, typed: the same as each answer's .data
    for (_, row), answer in zip(frame.iterrows(), answers, strict=True):
        assert isinstance(answer, Answer) and answer.data is not None
        assert {k: row[k] for k in SPEAKER} == answer.data
        assert json.loads(answer.text) == answer.data
    # the table shows the fields, not the raw JSON
    table = answers._repr_mimebundle_()[0]["text/plain"]
    assert "gender: " in table and '{"gender"' not in table


def test_dashscope_gets_the_schema_in_the_prompt_and_no_response_format(
    session: Session, emu: Emulator, audio: Path
) -> None:
    for model in ("qwen-audio-turbo-latest", "qwen3.5-omni-flash"):
        answer = ask_audio(
            audio / "speech_en.wav", "Who speaks?", model=model, schema=SPEAKER, display=False
        )
        assert isinstance(answer, Answer) and answer.data is not None
    native = emu.generation_requests()[-1].json
    compat = emu.chat_requests()[-1].json
    assert "response_format" not in native["parameters"] and "response_format" not in compat
    for body in (native["input"], compat):
        question = _texts(body["messages"][-1])
        assert question.startswith("Who speaks?")
        assert '"enum":["male","female","unknown"]' in question and "JSON" in question


def test_an_openai_model_receives_response_format_json_schema(
    ip, emu: Emulator, audio: Path
) -> None:
    ip.run_line_magic("config", f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'")

    class Speaker(pydantic.BaseModel):
        gender: Literal["male", "female", "unknown"]
        age: int

    ip.user_ns["Speaker"] = Speaker
    answer = ip.run_cell_magic(
        "qaudio", f"{audio / 'speech_en.wav'} -m {VLLM} --schema Speaker", "Who speaks?"
    )
    sent = emu.chat_requests()[-1].json
    assert sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema == Speaker.model_json_schema()
    assert sent["response_format"]["json_schema"]["name"] == "Speaker"
    assert answer.data == Speaker.model_validate(json.loads(answer.text)).model_dump()


def test_a_malformed_answer_is_repaired_once_in_the_same_conversation(
    session: Session, emu: Emulator, audio: Path
) -> None:
    emu.reply_with('Sure! {"gender": "male", "age": "about forty"}')
    answer = ask_audio(audio / "speech_en.wav", "Who speaks?", schema=SPEAKER, display=False)
    assert isinstance(answer, Answer) and answer.data is not None
    first, repair = emu.generation_requests()
    messages = repair.json["input"]["messages"]
    assert messages[:-2] == first.json["input"]["messages"]  # the same conversation...
    assert messages[-2] == {
        "role": "assistant",
        "content": [{"text": 'Sure! {"gender": "male", "age": "about forty"}'}],
    }
    fix = messages[-1]["content"][0]["text"]  # ...then what was wrong, and "JSON only"
    assert fix.startswith("Your answer did not match the JSON Schema: age: Input should be")
    assert "emotion: Field required" in fix and "single JSON object only" in fix
    assert any("one repair asked" in n for n in answer.notes)
    assert answer.usage is not None and answer.usage.output_tokens is not None
    # both requests are counted; the conversation holds the question and the valid answer
    conv = session.conversations.get(None)
    assert len(conv.turns) == 1 and json.loads(conv.turns[0].answer) == answer.data


def test_a_second_mismatch_fails_the_cell_with_the_validation_message(
    ip, session: Session, emu: Emulator, audio: Path
) -> None:
    ip.user_ns["Speaker"] = SPEAKER
    emu.reply_with("I think a man.", '{"gender": "robot", "age": 30, "emotion": "calm"}')
    with capture_output() as cap, pytest.raises(UsageError) as caught:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} --schema Speaker", "Who?")
    message = str(caught.value)
    assert "did not match the schema, even after one repair request" in message
    assert "gender: Input should be 'male', 'female' or 'unknown' (got \"robot\")" in message
    assert "dog_barks: Field required" in message and "\n" not in message
    assert len(emu.generation_requests()) == 2  # one repair, no more
    shown = cap.outputs[-1].data["text/plain"]
    assert "⚠ Incomplete" in shown and "The conversation was not changed" in shown
    assert not session.conversations.get(None).turns


def test_a_mismatch_in_a_batch_is_a_failed_row_not_a_crash(
    session: Session, emu: Emulator, audio: Path
) -> None:
    clips = sorted(audio.glob("*.wav"))
    # the first two requests (one clip's answer and its repair) answer prose; the rest JSON
    emu.reply_with("no idea", "still no idea")
    answers = ask_audio(clips, "Who?", schema=SPEAKER, progress=False, concurrency=1)
    assert isinstance(answers, Answers)
    (failed,) = answers.failed
    assert isinstance(failed, Failure) and isinstance(failed.error, AnswerMismatchError)
    assert failed.text == "still no idea" and failed.attempts == 2
    assert len(answers.answered) == len(clips) - 1
    frame = answers.to_pandas()
    row = frame.iloc[0]
    assert "no JSON object in the answer" in row["error"] and pd.isna(row["gender"])
    assert frame["gender"].notna().sum() == len(clips) - 1


def test_a_single_typed_answer_shows_an_escaped_table_with_the_raw_text_folded(
    ip, emu: Emulator, audio: Path
) -> None:
    ip.user_ns["Speaker"] = SPEAKER
    raw = json.dumps(
        {"gender": "female", "age": 7, "emotion": "<script>alert(1)</script>", "dog_barks": True}
    )
    emu.reply_with(raw)
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} --schema Speaker", "Q")
    assert answer.data["emotion"] == "<script>alert(1)</script>"
    final = cap.outputs[-1].data
    page = final["text/html"]
    assert '<table class="qaudio-data">' in page and "<th style='text-align:left'>age</th>" in page
    assert "<details><summary>raw answer</summary>" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "emotion: <script>alert(1)</script>" in final["text/plain"]  # plain text is inert
    # the answer's own repr (a re-displayed variable) shows the same table
    assert '<table class="qaudio-data">' in answer._repr_mimebundle_()[0]["text/html"]
    assert answer.metadata()["data"]["age"] == 7


def test_json_schema_dicts_work_and_bad_schemas_send_nothing(
    ip, session: Session, emu: Emulator, audio: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {"language": {"enum": ["en", "zh", "none"]}, "words": {"type": "integer"}},
        "required": ["language", "words"],
    }
    answer = ask_audio(audio / "speech_zh_cmn.wav", "Which language?", schema=schema, display=False)
    assert answer.data["language"] in ("en", "zh", "none") and isinstance(answer.data["words"], int)
    emu.clear()
    with pytest.raises(SchemaError, match="field 'age': 'int' is not a field type"):
        ask_audio(audio / "speech_en.wav", "Q", schema={"age": "int"}, display=False)
    with pytest.raises(UsageError, match="--schema Nope: no notebook variable 'Nope'"):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} --schema Nope", "Q")
    ip.user_ns["Broken"] = {"gender": []}
    with pytest.raises(UsageError, match="needs at least one choice"):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} --schema Broken", "Q")
    assert emu.requests == []


def test_typed_answers_score_against_label_columns(
    session: Session, emu: Emulator, audio: Path
) -> None:
    clips = sorted(audio.glob("*.wav"))
    answers = ask_audio(clips, "Who?", schema=SPEAKER, progress=False)
    assert isinstance(answers, Answers)
    said = answers.to_pandas().set_index("source")["gender"]
    # labels by file name: the first two agree with the answers, the others do not
    labels = {}
    for i, clip in enumerate(clips):
        got = said[str(clip)]
        other = next(g for g in SPEAKER["gender"] if g != got)
        labels[clip.name] = {"gender": got if i < 2 else other}
    score = answers.score(pd.DataFrame.from_dict(labels, orient="index"))
    assert score.metric == "accuracy" and score.by_field == {"gender": 0.5}
    assert score.confusion["gender"].to_numpy().sum() == len(clips)


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("qwen3-asr-flash", "it transcribes speech"),
        ("qwen3-omni-30b-a3b-captioner", "it takes no question"),
    ],
)
def test_models_that_take_no_question_refuse_a_schema_before_sending(
    ip, emu: Emulator, audio: Path, model: str, why: str
) -> None:
    ip.user_ns["Speaker"] = SPEAKER
    with pytest.raises(UsageError, match=f"{model} cannot answer a typed question.*{why}"):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {model} --schema Speaker", "Q")
    with pytest.raises(UsageError, match=f"{model} cannot answer a typed question"):
        ip.run_cell_magic(
            "qaudio", f"{audio}/*.wav --compare qwen3.5-omni-flash,{model} --schema Speaker", "Q"
        )
    assert emu.requests == []
