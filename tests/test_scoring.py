"""Scores against labels: WER/CER agree with jiwer's own figures, the corpus figure is
edit-weighted, the normalisation is the documented one, CJK is scored by character, and
typed fields get accuracy/F1 with a confusion table."""

from __future__ import annotations

import math

import jiwer
import pandas as pd
import pytest

from qaudio_magic.schema import Schema
from qaudio_magic.scoring import normalize, score_fields, score_texts

# Known pairs, already normalised (lower case, no punctuation): ours must equal jiwer's.
PAIRS = [
    ("hello world", "hello duck"),
    ("i like monty python", "i like python"),
    ("the quick brown fox jumps over the lazy dog", "the quick brown fox jumped over a lazy dog"),
    ("one two three", "one two three four five"),
    ("a", "b c d"),
]


@pytest.mark.parametrize(("reference", "hypothesis"), PAIRS)
def test_per_clip_wer_and_cer_equal_jiwer(reference: str, hypothesis: str) -> None:
    wer = score_texts(["clip.wav"], [hypothesis], {"clip.wav": reference}, metric="wer")
    cer = score_texts(["clip.wav"], [hypothesis], {"clip.wav": reference}, metric="cer")
    assert wer.per_clip["wer"][0] == pytest.approx(jiwer.wer(reference, hypothesis))
    assert cer.per_clip["cer"][0] == pytest.approx(jiwer.cer(reference, hypothesis))
    assert wer.value == pytest.approx(jiwer.wer(reference, hypothesis))


def test_corpus_wer_is_edit_weighted_not_a_mean_of_ratios() -> None:
    refs = [r for r, _ in PAIRS]
    hyps = [h for _, h in PAIRS]
    sources = [f"c{i}.wav" for i in range(len(PAIRS))]
    score = score_texts(sources, hyps, dict(zip(sources, refs, strict=True)))
    assert score.value == pytest.approx(jiwer.wer(refs, hyps))  # jiwer's corpus WER
    edits = score.per_clip["edits"].sum()
    words = sum(len(r.split()) for r in refs)
    assert score.value == pytest.approx(edits / words)
    mean_of_ratios = score.per_clip["wer"].mean()
    assert not math.isclose(score.value, mean_of_ratios, rel_tol=1e-3)
    cer = score_texts(sources, hyps, dict(zip(sources, refs, strict=True)), metric="cer")
    assert cer.value == pytest.approx(jiwer.cer(refs, hyps))


def test_normalisation_is_the_documented_one() -> None:
    assert normalize("Hello,  WORLD!  It's") == "hello world its"
    assert normalize("ＡＢＣ　１２３") == "abc 123"  # full width → half width
    assert normalize("3.5 kg, 1,000 people at 10:30.") == "3.5 kg 1,000 people at 10:30"
    assert normalize("twenty 20") == "twenty 20"  # numbers not rewritten
    assert normalize("well-known") == "well known"
    assert normalize("今天天气很好，我们去公园。", cjk=True) == "今天天气很好我们去公园"
    # punctuation, case and width do not count as errors
    score = score_texts(["a"], ["HELLO， ＷＯＲＬＤ"], {"a": "Hello, world."})
    assert score.value == 0 and score.per_clip["unit"][0] == "word"


def test_chinese_japanese_cantonese_are_scored_by_character() -> None:
    refs = {
        "zh.wav": "今天天气很好，我们去公园散步吧。",
        "yue.wav": "今日天氣好好，我哋去公園行下啦。",
        "ja.wav": "おはよう ございます。きょう も いい てんき ですね。",
    }
    hyps = [
        "今天天气很好我们去公园",
        "今日天氣好好我哋去公園行下啦",
        "おはようございます きょうもいいてんきですね",
    ]
    score = score_texts(list(refs), hyps, refs, metric="wer")
    assert list(score.per_clip["unit"]) == ["char", "char", "char"]
    expected = [
        jiwer.cer("今天天气很好我们去公园散步吧", hyps[0]),
        0.0,
        0.0,  # spaces are not characters in CJK text
    ]
    assert list(score.per_clip["wer"]) == pytest.approx(expected)
    # a language given overrides detection
    latin = score_texts(["p.wav"], ["jin tian"], {"p.wav": "jin tian tian qi"}, language="zh")
    assert latin.per_clip["unit"][0] == "char"


def test_labels_match_by_path_or_file_name_and_failed_clips_count() -> None:
    sources = ["/data/a.wav", "/data/b.wav", "/data/c.wav"]
    labels = pd.Series({"a.wav": "one two", "/data/b.wav": "three four", "c": "five six"})
    score = score_texts(sources, ["one two", "three", None], labels)
    assert list(score.per_clip["source"]) == sources
    assert list(score.per_clip["edits"]) == [0, 1, 2]  # a failed clip: all deleted
    assert score.value == pytest.approx(3 / 6)


def test_typed_fields_accuracy_f1_and_confusion() -> None:
    schema = Schema.of({"gender": ["male", "female", "unknown"], "dog_barks": bool})
    sources = ["a.wav", "b.wav", "c.wav", "d.wav"]
    answers = [
        {"gender": "male", "dog_barks": True},
        {"gender": "female", "dog_barks": False},
        {"gender": "male", "dog_barks": False},
        None,  # a failed clip
    ]
    labels = pd.DataFrame(
        {"gender": ["Male", "male", "male", "female"], "dog_barks": ["yes", "no", True, False]},
        index=sources,
    )
    acc = score_fields(sources, answers, labels, schema=schema)
    assert acc.by_field == {"gender": pytest.approx(2 / 4), "dog_barks": pytest.approx(2 / 4)}
    assert acc.value == pytest.approx(0.5)
    gender = acc.confusion["gender"]
    assert gender.loc["male", "male"] == 2 and gender.loc["male", "female"] == 1
    assert gender.loc["female", "(no answer)"] == 1
    f1 = score_fields(sources, answers, labels, schema=schema, metric="f1")
    # gender: male P=1 R=2/3 → 0.8; female P=0 → 0; macro 0.4
    assert f1.by_field["gender"] == pytest.approx(0.4)
    assert f1.per_clip.loc[3, "failed"]
