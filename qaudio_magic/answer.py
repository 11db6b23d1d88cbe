"""What questions return: an :class:`Answer`, or for a batch :class:`Answers` (an Answer or a
:class:`Failure` per item, in the order of the sources), with the reprs notebooks and
terminals expect and ``.to_pandas()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union, overload

from ._format import plural, short, span, table_bundle
from ._render import bundle, data_lines
from .backends.base import Usage
from .clip import AudioClip
from .errors import ConfigError, QAudioError
from .segments import Segment

if TYPE_CHECKING:
    from .schema import Schema
    from .scoring import Score

__all__ = ["COLUMNS", "Answer", "Answers", "Failure", "Result", "with_typed_columns"]

# The columns of Answers.to_pandas(), in order (an empty batch has them too: Dask's meta)
COLUMNS = (
    "source",
    "window",
    "answer",
    "model",
    "tokens",
    "latency",
    "error",
    "cached",
    "start",
    "end",
    "question",
    "request_id",
    "notes",
)


@dataclass(eq=False, slots=True)  # slots: a big batch keeps one per row
class Answer:
    """The model's answer plus provenance: model, usage, request id, clips and timing."""

    text: str
    model: str
    usage: Usage | None
    request_id: str | None
    clips: tuple[AudioClip, ...]
    latency: float  # seconds from sending to the last text
    question: str | None = None
    conversation: str | None = None
    first_text_latency: float | None = None
    audio_seconds: float = 0.0  # audio in the request, history included (what is billed)
    estimated_audio_tokens: int = 0  # 25/s, minimum 25 per clip, history included
    notes: tuple[str, ...] = ()
    finish_reason: str | None = None
    # Times the answer mentions, relative to the clip they refer to (see segments.py)
    segments: tuple[Segment, ...] = ()
    cached: bool = False  # served from the response cache, not asked again
    # A thinking model's reasoning: shown apart, never part of ``text``, never sent back
    reasoning: str = ""
    audio: AudioClip | None = None  # a spoken answer (24 kHz), held in memory only
    language: str | None = None  # speech recognition: detected (or forced) language
    emotion: str | None = None  # speech recognition: the speaker's emotion, as annotated
    # A typed question's answer (``schema=``): the fields, validated and typed
    data: dict[str, Any] | None = None
    # "conversation default, turn 3 · also sent: a.wav (7.0 s)" for a turn that continues one
    context: str | None = None
    clip_labels: tuple[str, ...] = ()  # what was sent of each clip ("a.wav [0–30 s] · 30.0 s")
    unknown_audio: int = 0  # clips whose length the kernel does not know (URLs)
    pictures: tuple[str, ...] = field(default=(), repr=False)  # static waveforms (saved notebooks)
    _shown_in: int | None = field(default=None, repr=False)  # execution count of the live view

    def __str__(self) -> str:
        return self.text

    # ------------------------------------------------------------------ presentation
    @property
    def clips_line(self) -> str:
        """What was sent, as the live view's header said it."""
        return ", ".join(self.clip_labels or [c.label() for c in self.clips])

    def footer(self) -> str:
        """Model · audio · usage · latency · request id, as one line."""
        bits = [f"{self.model} (cached)" if self.cached else self.model]
        if self.audio_seconds or self.estimated_audio_tokens:
            if not self.unknown_audio:
                audio = f"audio {self.audio_seconds:.1f} s"
            else:  # a URL is fetched by the service: its length is not known here
                urls = plural(self.unknown_audio, "URL clip")
                known = f"{self.audio_seconds:.1f} s + " if self.audio_seconds else ""
                audio = f"audio {known}{urls} of unknown length"
            if self.estimated_audio_tokens:  # 0: billed by the second (speech recognition)
                audio += (" ≤ " if self.unknown_audio else " ≈ ") + (
                    f"{self.estimated_audio_tokens} tok"
                )
            if self.usage and self.usage.audio_tokens is not None:
                audio += f" (service: {self.usage.audio_tokens})"
            bits.append(audio)
        if self.usage and (
            self.usage.input_tokens is not None or self.usage.output_tokens is not None
        ):
            bits.append(
                " · ".join(
                    f"{k} {v}"
                    for k, v in (("in", self.usage.input_tokens), ("out", self.usage.output_tokens))
                    if v is not None
                )
                + " tok"
            )
        if self.language or self.emotion:
            bits.append(
                " · ".join(
                    f"{k} {v}"
                    for k, v in (("language", self.language), ("emotion", self.emotion))
                    if v
                )
            )
        if self.audio is not None and self.audio.duration:
            bits.append(f"spoken {self.audio.duration:.1f} s")
        timing = f"{self.latency:.2f} s"
        if self.first_text_latency is not None:
            timing += f" (first text {self.first_text_latency:.2f} s)"
        bits.append(timing)
        if self.request_id:
            bits.append(f"request {self.request_id}")
        return " · ".join(bits)

    def metadata(self) -> dict[str, Any]:
        """Provenance stored with the output (no audio bytes, no key)."""
        return {
            "status": "complete",
            "model": self.model,
            "request_id": self.request_id,
            "conversation": self.conversation,
            "usage": self.usage.as_dict() if self.usage else None,
            "clips": [c.describe(paths=False) for c in self.clips],
            "segments": [[s.start, s.end] for s in self.segments],
            "cached": self.cached,
            **({"language": self.language} if self.language else {}),
            **({"emotion": self.emotion} if self.emotion else {}),
            **({"reasoning_chars": len(self.reasoning)} if self.reasoning else {}),
            **({"spoken_seconds": round(self.audio.duration or 0.0, 2)} if self.audio else {}),
            **({"data": _jsonable(self.data)} if self.data is not None else {}),
        }

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        data, md = bundle(
            self.text,
            clips_line=self.clips_line,
            question=self.question,
            notes=self.notes,
            footer=self.footer(),
            metadata=self.metadata(),
            segments=[s.label() for s in self.segments],
            reasoning=self.reasoning,
            data=self.data,
            context=self.context,
            pictures=self.pictures,
        )
        data["text/markdown"] = _inert_markdown(self.text)
        return data, md

    def _ipython_display_(self) -> None:
        """Display, unless this very cell already shows the answer live (no double output):
        a notebook then gets no second copy, a terminal's ``Out[n]:`` only the one-line repr.
        ``_`` and ``Out[n]`` hold the answer either way."""
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if shell is not None and self._shown_in == shell.execution_count:
            from .view import display_mode

            if display_mode() == "plain":
                print(repr(self))
            return
        data, md = self._repr_mimebundle_()
        display(data, metadata=md, raw=True)

    def __repr__(self) -> str:
        return (
            f"Answer({self.text[:60]!r}{'…' if len(self.text) > 60 else ''}, model={self.model!r})"
        )


_MD_SPECIAL = set("\\`*_{}[]()<>#+-.!|~&")


def _jsonable(data: dict[str, Any]) -> Any:
    """``data`` as JSON values (enums by value, anything else as text), for metadata."""
    import json

    return json.loads(json.dumps(data, default=lambda v: getattr(v, "value", str(v))))


def _inert_markdown(text: str) -> str:
    """Markdown that shows ``text`` literally: every syntax character backslash-escaped.

    Frontends pick text/html first; this part exists for Markdown-only consumers and
    must never let model output become live HTML or links.
    """
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


# ---------------------------------------------------------------------- many answers
@dataclass(eq=False)
class Failure:
    """An item whose question could not be answered: which clips, why, any partial text."""

    clips: tuple[AudioClip, ...]
    question: str | None
    error: QAudioError
    model: str
    text: str = ""  # partial text that arrived before the failure (never retried into a duplicate)
    attempts: int = 0  # requests sent for this item
    notes: tuple[str, ...] = ()  # what was known about its audio before it failed
    source: str = ""  # the item as given, when no clip could be made of it (no such file)

    cached = False
    usage = None
    latency = None
    request_id = None

    def __str__(self) -> str:
        return f"⚠ {self.error.one_line()}"

    def __repr__(self) -> str:
        label = ", ".join(c.name for c in self.clips) or self.source or "(no clip)"
        return f"Failure({label!r}, {self.error.one_line()!r})"


Result = Union[Answer, Failure]  # noqa: UP007 - a runtime alias, 3.10 safe


class Answers(Sequence[Result]):
    """The results of a batch, in the order of its sources: an Answer or a Failure each.

    ``.to_pandas()`` gives one row per item; in a notebook it shows as a compact table
    (a timeline for windows of a long clip).
    """

    def __init__(
        self,
        results: Sequence[Result],
        *,
        question: str | None,
        model: str,
        elapsed: float,
        windows: float | None = None,
        interrupted: bool = False,
        stopped: str | None = None,
        labels: Sequence[Any] | None = None,
        notes: Sequence[str] = (),
        attempts: Sequence[int] = (),
        schema: Schema | None = None,
    ) -> None:
        self.schema = schema  # a typed question's schema: to_pandas() gets its columns
        self._results = list(results)
        self._attempts = list(attempts)
        self.question = question
        self.model = model
        self.elapsed = elapsed
        self.windows = windows
        self.interrupted = interrupted
        self.stopped = stopped  # why the batch stopped sending early, if it did
        self.labels = list(labels) if labels is not None else None
        self.notes = list(notes)

    # ------------------------------------------------------------------ sequence
    @overload
    def __getitem__(self, index: int) -> Result: ...
    @overload
    def __getitem__(self, index: slice) -> list[Result]: ...
    def __getitem__(self, index: int | slice) -> Result | list[Result]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    @property
    def answered(self) -> list[Answer]:
        return [r for r in self._results if isinstance(r, Answer)]

    @property
    def failed(self) -> list[Failure]:
        return [r for r in self._results if isinstance(r, Failure)]

    @property
    def texts(self) -> list[str]:
        """Each item's answer text ("" for a failure)."""
        return [r.text if isinstance(r, Answer) else "" for r in self._results]

    @property
    def cached(self) -> int:
        return sum(1 for r in self._results if r.cached)

    @property
    def requests(self) -> int:
        """Requests sent to the service, retries included (cached answers send none)."""
        return sum(self._attempts)

    # ------------------------------------------------------------------ tables
    def summary(self) -> str:
        n = len(self._results)
        ok = len(self.answered)
        unit = "window" if self.windows else "clip"
        bits = [plural(n, unit), f"{ok} answered"]
        if self.cached:
            bits[-1] += f" ({self.cached} from cache)"
        if n - ok:
            bits.append(f"{n - ok} failed")
        bits += [f"{self.elapsed:.1f} s", self.model]
        text = " · ".join(bits)
        if self.interrupted:
            text += " · interrupted (Ctrl-C): unfinished items are marked"
        if self.stopped:
            text += f" · stopped early: {self.stopped}"
        return text

    def _rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        timeline = bool(self.windows)
        sources = {_source(r) for r in self._results}
        with_notes = any(r.notes for r in self._results)
        header: tuple[str, ...] = ("#",)
        if timeline:
            header += ("time",)
        if not timeline or len(sources) > 1:
            header += ("source",)
        header += ("answer", "tokens", "status")
        if with_notes:
            header += ("notes",)
        rows = []
        for i, r in enumerate(self._results):
            row: tuple[str, ...] = (str(self._label(i)),)
            clip = r.clips[0] if r.clips else None
            if timeline:
                row += (span(clip.start, clip.end) if clip else "",)
            if not timeline or len(sources) > 1:
                row += (", ".join(_name(c, timeline) for c in r.clips) or _source(r),)
            if isinstance(r, Answer):
                tokens = str(r.usage.total_tokens) if r.usage else ""
                status = "cached" if r.cached else f"✓ {r.latency:.1f} s"
                shown = r.text if r.data is None else " · ".join(data_lines(r.data))
                row += (short(shown, 120), tokens, status)
            else:
                row += (short(r.text, 120), "", "⚠ " + short(r.error.one_line(), 120))
            if with_notes:
                row += (short(" · ".join(r.notes), 160),)
            rows.append(row)
        return header, rows

    def _label(self, i: int) -> Any:
        return self.labels[i] if self.labels is not None else i

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        header, rows = self._rows()
        title = ("Timeline" if self.windows else "Batch") + f" — {self.summary()}"
        if self.question:
            title += f'\nquestion: "{short(self.question, 200)}"'
        metadata = {
            "status": "interrupted" if self.interrupted else "complete",
            "model": self.model,
            "question": self.question,
            "items": [
                {
                    "clips": [_describe(c) for c in r.clips],
                    "request_id": r.request_id,
                    "cached": r.cached,
                    "error": r.error.one_line() if isinstance(r, Failure) else None,
                }
                for r in self._results
            ],
        }
        return table_bundle(title, header, rows, notes=self.notes, metadata=metadata)

    def _ipython_display_(self) -> None:
        """Windows of one file in a notebook: the timeline player (the table is its
        plain-text fallback); anything else: the table."""
        from IPython.display import display

        from .view import display_mode

        player = None
        if self.windows and display_mode() == "rich":
            from .player import timeline

            try:
                player = timeline(self._results)
            except QAudioError:
                player = None
        if player is None:
            data, md = self._repr_mimebundle_()
            display(data, metadata=md, raw=True)
            return
        data, md = self._repr_mimebundle_()
        player.fallback = data.get("text/plain", "")
        display(player)

    def __repr__(self) -> str:
        return f"Answers({self.summary()})"

    def to_pandas(self) -> Any:
        """One row per item: source, window, answer, model, tokens, latency, error, cached
        (then start, end, question, request_id, notes); a Series' index is kept."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("to_pandas() needs pandas: pip install pandas") from None
        records = []
        for r in self._results:
            clip = r.clips[0] if len(r.clips) == 1 else None
            windowed = clip is not None and clip.is_windowed
            records.append(
                {
                    "source": _source(r),
                    "window": span(clip.start, clip.end) if windowed and clip else None,
                    "answer": r.text if isinstance(r, Answer) else None,
                    "model": r.model,
                    "tokens": r.usage.total_tokens if r.usage else None,
                    "latency": r.latency,
                    "error": r.error.one_line() if isinstance(r, Failure) else None,
                    "cached": bool(r.cached),
                    "start": clip.start if windowed and clip else None,
                    "end": clip.end if windowed and clip else None,
                    "question": r.question,
                    "request_id": r.request_id,
                    "notes": "\n".join(r.notes) or None,
                }
            )
        frame = pd.DataFrame.from_records(records, columns=COLUMNS)
        if self.labels is not None:
            frame.index = pd.Index(self.labels)
        if self.schema is not None:
            frame = with_typed_columns(frame, self.schema, [_data_of(r) for r in self._results])
        return frame

    # ------------------------------------------------------------------ scores
    @property
    def sources(self) -> list[str]:
        """Each item's source (its path or URL; several clips joined by ``; ``)."""
        return [_source(r) for r in self._results]

    def score(
        self,
        labels: Any,
        metric: str | None = None,
        *,
        language: str | Mapping[Any, str] | None = None,
    ) -> Score:
        """Scores against ``labels`` (a mapping, Series or DataFrame keyed by source —
        its path, file name or stem — or by this batch's own labels, e.g. a Series index).

        ``metric``: ``"wer"``/``"cer"`` for transcripts (the default for prose answers),
        ``"accuracy"``/``"f1"`` for typed fields against label columns (the default with
        a schema). See :mod:`qaudio_magic.scoring` for the normalisation and units.
        """
        from .scoring import TEXT_METRICS, score_fields, score_texts

        metric = metric or ("accuracy" if self.schema is not None else "wer")
        keys = self._label_keys(labels)
        if metric in TEXT_METRICS:
            hyps = [r.text if isinstance(r, Answer) else None for r in self._results]
            score = score_texts(keys, hyps, labels, metric=metric, language=language)
        else:
            score = score_fields(
                keys, [_data_of(r) for r in self._results], labels, metric=metric,
                schema=self.schema,
            )  # fmt: skip
        score.model = self.model
        return score

    def _label_keys(self, labels: Any) -> list[Any]:
        """Match labels by this batch's own labels when they name its items, else by source."""
        if self.labels is not None:
            from .scoring import label_keys

            if set(map(str, self.labels)) & {str(k) for k in label_keys(labels)}:
                return [str(k) for k in self.labels]
        return self.sources


def _data_of(result: Result) -> dict[str, Any] | None:
    return result.data if isinstance(result, Answer) else None


def with_typed_columns(frame: Any, schema: Schema, rows: Sequence[Mapping[str, Any] | None]) -> Any:
    """``frame`` with one typed column per field of ``schema`` after its own columns; a
    field named like an existing column is called ``data_<name>``."""
    import pandas as pd

    from .schema import typed_frame

    typed = typed_frame(schema, rows, index=frame.index)
    typed.columns = [f"data_{c}" if c in frame.columns else c for c in typed.columns]
    return pd.concat([frame, typed], axis=1)


def _describe(clip: AudioClip) -> dict[str, Any]:
    """A clip's facts for output metadata, without paths; a clip that cannot be read or
    decoded (a failed row) is named only, never measured again."""
    try:
        return clip.describe(paths=False)
    except QAudioError:
        return {"name": clip.name, "kind": clip.kind}


def _source(result: Result) -> str:
    """An item's source: its clips' paths or URLs, or as given when none could be made."""
    return _source_of(result.clips) or (result.source if isinstance(result, Failure) else "")


def _source_of(clips: Sequence[AudioClip]) -> str:
    return "; ".join(c.location or c.name for c in clips)


def _name(clip: AudioClip, timeline: bool) -> str:
    if timeline or not clip.is_windowed:
        return clip.name
    return f"{clip.name} [{span(clip.start, clip.end)}]"
