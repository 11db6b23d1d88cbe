"""Scores against labels: WER/CER for transcripts, accuracy/F1 for typed fields.

Edit distances come from **jiwer** (its ``process_words`` / ``process_characters``, on
rapidfuzz's Levenshtein), never from code of our own. What is ours is the text
normalisation applied to reference and hypothesis alike before jiwer aligns them:

1. Unicode NFKC: full-width letters, digits and punctuation become half-width
   (``ＡＢＣ１２３`` → ``ABC123``, the ideographic space → a space);
2. case folded (``Straße`` → ``strasse``);
3. punctuation (Unicode category P*) removed: apostrophes join their word
   (``don't`` → ``dont``), every other mark becomes a space — except ``.``, ``,`` and ``:``
   between two digits, so ``3.5``, ``1,000`` and ``10:30`` stay as written;
4. runs of whitespace collapsed, ends stripped.

Numbers are **not** rewritten (``20`` and ``twenty`` differ), nor are symbols (``%``, ``$``).

Units: ``"wer"`` counts words, except for Chinese, Japanese and Cantonese (``zh``, ``ja``,
``yue``, or a reference that is mostly CJK characters when no language is given), which
are scored by character: their text has no spaces between words. ``"cer"`` always counts
characters; spaces count as characters, except in CJK text where they are removed.

Corpus figures are edit-weighted — total edits over total reference units — not the
mean of per-clip ratios, so a 3-word clip does not weigh as much as a 300-word one.

Typed fields: ``"accuracy"`` is the share of labelled clips whose answer equals the
label (labels are read through the field's own type, so ``"Male"`` matches ``male``
and ``"yes"`` matches ``True``); ``"f1"`` is macro-F1 over the classes seen in labels or
answers. A failed clip counts as wrong. Each field gets a confusion table (pandas
``crosstab``). F1 from a confusion table is a few lines of arithmetic; scikit-learn
would be a large dependency for it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

    from .schema import Schema

__all__ = [
    "CJK_LANGUAGES",
    "TEXT_METRICS",
    "TYPED_METRICS",
    "Score",
    "align_labels",
    "is_cjk",
    "label_keys",
    "normalize",
    "score_fields",
    "score_texts",
]

TEXT_METRICS = ("wer", "cer")
TYPED_METRICS = ("accuracy", "f1")
CJK_LANGUAGES = frozenset({"zh", "ja", "yue", "cmn", "wuu", "nan"})
Unit = Literal["word", "char"]

_APOSTROPHES = "'’ʼ‘`"
_KEEP_BETWEEN_DIGITS = re.compile(r"(?<=\d)[.,:](?=\d)")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_HOLD = "\ue000"  # a private-use mark standing in for kept separators while punctuation goes


# ---------------------------------------------------------------------- normalisation
def normalize(text: str | None, *, cjk: bool = False) -> str:
    """``text`` as it is scored (see the module docstring); CJK text loses its spaces."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    kept: list[str] = []

    def hold(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return _HOLD

    text = _KEEP_BETWEEN_DIGITS.sub(hold, text)
    out = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        out.append(" " if unicodedata.category(ch).startswith("P") else ch)
    text = "".join(out)
    for mark in kept:
        text = text.replace(_HOLD, mark, 1)
    if cjk:
        return "".join(text.split())
    return " ".join(text.split())


def is_cjk(text: str | None, language: str | None = None) -> bool:
    """Whether ``text`` is scored by character: its language is zh/ja/yue, or (no language
    given) at least half of its letters are Han, kana or half-width kana."""
    if language:
        return language.lower().replace("_", "-").split("-")[0] in CJK_LANGUAGES
    letters = [ch for ch in text or "" if ch.isalpha()]
    return bool(letters) and 2 * sum(1 for ch in letters if _CJK.match(ch)) >= len(letters)


# ---------------------------------------------------------------------- labels by source
def source_key(source: Any) -> str:
    """How a source is named when matched with labels: its path or URL as a string."""
    return str(source)


def align_labels(sources: Sequence[Any], labels: Any) -> list[Any]:
    """The label of each source (None where none), from a mapping, Series or DataFrame
    keyed by source. A key matches a source's full path or URL, else its file name (or
    its stem) when that is unique among the sources."""
    table = _as_mapping(labels)
    names: dict[str, list[int]] = {}
    keys = [source_key(s) for s in sources]
    for i, key in enumerate(keys):
        path = PurePath(key.split("?")[0])
        for alias in {path.name, path.stem}:
            names.setdefault(alias, []).append(i)
    found: list[Any] = [None] * len(keys)
    exact = {k: i for i, k in enumerate(keys)}
    for label_key, value in table.items():
        text = str(label_key)
        if text in exact:
            found[exact[text]] = value
            continue
        hits = names.get(text) or names.get(PurePath(text).name) or []
        if len(hits) == 1 and found[hits[0]] is None:
            found[hits[0]] = value
    return found


def label_keys(labels: Any) -> list[Any]:
    """The keys ``labels`` are indexed by (mapping keys, Series or DataFrame index)."""
    return list(_as_mapping(labels))


def _as_mapping(labels: Any) -> Mapping[Any, Any]:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with the test extra
        pd = None  # type: ignore[assignment]
    if pd is not None and isinstance(labels, pd.DataFrame):
        return {k: row.to_dict() for k, row in labels.iterrows()}
    if pd is not None and isinstance(labels, pd.Series):
        return labels.to_dict()
    if isinstance(labels, Mapping):
        return labels
    raise TypeError(
        "labels are a mapping, pandas Series or DataFrame keyed by source, "
        f"not {type(labels).__name__}"
    )


# ---------------------------------------------------------------------- results
@dataclass
class Score:
    """A score: the corpus figure, one row per clip, and per field for typed answers."""

    metric: str
    value: float  # corpus-level (edit-weighted) or mean over fields
    per_clip: pd.DataFrame
    by_field: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    scored: int = 0  # clips with a label
    model: str | None = None

    def to_pandas(self) -> pd.DataFrame:
        """One row per clip."""
        return self.per_clip

    def summary(self) -> dict[str, Any]:
        """The figures as one row: metric, value, scored clips, and each field's."""
        row: dict[str, Any] = {"metric": self.metric, self.metric: self.value, "clips": self.scored}
        if self.metric in TEXT_METRICS and len(self.per_clip):
            row["edits"] = int(self.per_clip["edits"].sum())
            row["reference_units"] = int(self.per_clip["reference_units"].sum())
        for name, value in self.by_field.items():
            row[f"{name}_{self.metric}"] = value
        return row

    def __repr__(self) -> str:
        fields = "".join(f", {k}={v:.3f}" for k, v in self.by_field.items())
        who = f" {self.model}" if self.model else ""
        return f"Score({self.metric}{who}={_fmt(self.value)} over {self.scored} clips{fields})"

    def _repr_html_(self) -> str:
        import html

        head = html.escape(repr(self))
        parts = [f"<p><b>{head}</b></p>", self.per_clip.to_html(escape=True, max_rows=50)]
        for name, table in self.confusion.items():
            parts.append(f"<p>confusion: {html.escape(name)} (rows: label, columns: answer)</p>")
            parts.append(table.to_html(escape=True))
        return "".join(parts)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


# ---------------------------------------------------------------------- text metrics
def score_texts(
    sources: Sequence[Any],
    hypotheses: Sequence[str | None],
    labels: Any,
    *,
    metric: str = "wer",
    language: str | Mapping[Any, str] | None = None,
) -> Score:
    """WER or CER of each answer against its reference; the corpus figure edit-weighted.

    A clip without a reference is skipped; a failed clip (hypothesis None) is scored as
    an empty answer (every reference unit deleted).
    """
    import jiwer
    import pandas as pd

    if metric not in TEXT_METRICS:
        raise ValueError(f"metric must be one of {', '.join(TEXT_METRICS)} for text answers")
    references = align_labels(sources, labels)
    languages = (
        align_labels(sources, language)
        if isinstance(language, Mapping)
        else [language] * len(sources)
    )
    rows = []
    for source, hyp, ref, lang in zip(sources, hypotheses, references, languages, strict=True):
        if ref is None or (isinstance(ref, float) and math.isnan(ref)):
            continue
        ref = str(ref)
        cjk = is_cjk(ref, lang)
        unit: Unit = "char" if (metric == "cer" or cjk) else "word"
        ref_n, hyp_n = normalize(ref, cjk=cjk), normalize(hyp, cjk=cjk)
        out: Any = (
            jiwer.process_words(ref_n, hyp_n)
            if unit == "word"
            else jiwer.process_characters(ref_n, hyp_n)
        )
        units = out.hits + out.substitutions + out.deletions
        edits = out.substitutions + out.deletions + out.insertions
        rows.append(
            {
                "source": source_key(source),
                "unit": unit,
                metric: edits / units if units else math.nan,
                "edits": edits,
                "reference_units": units,
                "substitutions": out.substitutions,
                "deletions": out.deletions,
                "insertions": out.insertions,
                "reference": ref_n,
                "hypothesis": hyp_n,
                "failed": hyp is None,
            }
        )
    columns = [
        "source",
        "unit",
        metric,
        "edits",
        "reference_units",
        "substitutions",
        "deletions",
        "insertions",
        "reference",
        "hypothesis",
        "failed",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    total_units = int(frame["reference_units"].sum()) if rows else 0
    value = int(frame["edits"].sum()) / total_units if total_units else math.nan
    return Score(metric, value, frame, scored=len(rows))


# ---------------------------------------------------------------------- typed metrics
MISSING = "(no answer)"


def score_fields(
    sources: Sequence[Any],
    answers: Sequence[Mapping[str, Any] | None],
    labels: Any,
    *,
    metric: str = "accuracy",
    schema: Schema | None = None,
    fields: Iterable[str] | None = None,
) -> Score:
    """Accuracy or macro-F1 of each typed field against label columns, with confusion tables.

    ``labels``: a DataFrame indexed by source with one column per field, or a mapping
    source → {field: label}. Fields scored: ``fields``, else every field the labels and
    the schema (or the answers) have in common.
    """
    import pandas as pd

    if metric not in TYPED_METRICS:
        raise ValueError(f"metric must be one of {', '.join(TYPED_METRICS)} for typed answers")
    truth = align_labels(sources, labels)
    known = (
        list(schema.field_names)
        if schema is not None
        else sorted({k for a in answers if a for k in a})
    )
    labelled = {k for t in truth if isinstance(t, Mapping) for k in t}
    names = list(fields) if fields is not None else [n for n in known if n in labelled]
    if not names:
        raise ValueError("no label column matches a field of the answers")
    coerce = _coercers(schema, names)
    per_clip: list[dict[str, Any]] = []
    pairs: dict[str, list[tuple[Any, Any]]] = {n: [] for n in names}
    for source, answer, label in zip(sources, answers, truth, strict=True):
        if not isinstance(label, Mapping):
            continue
        row: dict[str, Any] = {"source": source_key(source), "failed": answer is None}
        for name in names:
            want = label.get(name)
            if _is_missing(want):
                continue
            want = coerce[name](want)
            got = MISSING if answer is None else _comparable(answer.get(name))
            pairs[name].append((want, got))
            row[f"{name}_label"] = want
            row[f"{name}_answer"] = got
            row[f"{name}_correct"] = _equal(want, got)
        per_clip.append(row)
    by_field: dict[str, float] = {}
    confusion: dict[str, pd.DataFrame] = {}
    for name, found in pairs.items():
        if not found:
            continue
        wants = [_label_text(w) for w, _ in found]
        gots = [_label_text(g) for _, g in found]
        confusion[name] = pd.crosstab(
            pd.Series(wants, name="label"), pd.Series(gots, name="answer")
        )
        if metric == "accuracy":
            by_field[name] = sum(_equal(w, g) for w, g in found) / len(found)
        else:
            by_field[name] = _macro_f1(wants, gots)
    value = sum(by_field.values()) / len(by_field) if by_field else math.nan
    frame = pd.DataFrame(per_clip)
    return Score(metric, value, frame, by_field, confusion, scored=len(per_clip))


def _macro_f1(wants: Sequence[str], gots: Sequence[str]) -> float:
    """Macro-F1 over the classes in labels or answers ("no answer" is not a class)."""
    classes = sorted(set(wants) | (set(gots) - {MISSING}))
    scores = []
    for c in classes:
        tp = sum(1 for w, g in zip(wants, gots, strict=True) if w == c and g == c)
        fp = sum(1 for w, g in zip(wants, gots, strict=True) if w != c and g == c)
        fn = sum(1 for w, g in zip(wants, gots, strict=True) if w == c and g != c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores) if scores else math.nan


def _coercers(schema: Schema | None, names: Sequence[str]) -> dict[str, Any]:
    """Per field, a function reading a label through the field's type (pydantic)."""
    from pydantic import TypeAdapter, ValidationError

    out: dict[str, Any] = {}
    model_fields = schema.model.model_fields if schema is not None else {}
    for name in names:
        info = model_fields.get(name)
        if info is None:
            out[name] = _comparable
            continue
        annotation: Any = info.rebuild_annotation()  # the type with its validators
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)

        def read(value: Any, adapter: TypeAdapter[Any] = adapter) -> Any:
            try:
                return _comparable(adapter.validate_python(value))
            except ValidationError:
                return _comparable(value)

        out[name] = read
    return out


def _comparable(value: Any) -> Any:
    import enum

    if isinstance(value, enum.Enum):
        value = value.value
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    return value


def _equal(want: Any, got: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return want.strip().casefold() == got.strip().casefold()
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    return bool(want == got)


def _label_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip().casefold() if value != MISSING else value
    return str(value)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, (list, dict)) else False
    except (TypeError, ValueError, ImportError):
        return False
