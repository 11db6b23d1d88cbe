"""Many clips, or many windows of one long clip: asked concurrently, kept whatever happens.

``ask_audio(["a.wav", "b.wav", ...], question)`` (or a glob pattern, a directory, a pandas
Series, ``windows=30``) comes here. Each item is its own single-turn conversation, sent
through the same path as a single question (:func:`qaudio_magic.ask._complete`: response
cache, retry policy, usage meter) by a small thread pool sharing the backend's one
connection pool. Threads, not asyncio: a notebook's event loop is already running, and a
blocking call from a cell must not try to start another.

What a batch promises:

* every item ends as an :class:`~qaudio_magic.answer.Answer` or a :class:`Failure`;
  one bad clip never costs the other 399 their answers;
* an account-level error (bad key, quota spent) stops sending at once instead of
  repeating it for every clip;
* Ctrl-C stops within about a second and returns what finished: in-flight connections
  are shut down (closing a socket does not wake a thread blocked reading it; shutting it
  down does), workers are joined, and the backend is discarded so no socket stays open.

Which sources make a batch (``is_many``): a list, a pandas Series, any iterable other than
a tuple, a glob pattern that is not an existing file, a directory. A tuple is several
clips in one turn; so is a tuple or list *inside* a batch (one item, several clips).
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, overload

from ._prepare import PreparedAudio, prepare
from .answer import Answer
from .backends.base import Backend, Limits, Request
from .cache import CacheMode, resolve_mode
from .clip import AudioClip, AudioSourceLike, resolve_sources
from .conversation import Conversation
from .errors import APIError, ConfigError, InputError, Interrupted, QAudioError, SourceError
from .session import Session
from .view import fmt_span, table_bundle
from .windows import WindowReader, check_windows, plan_windows, window_clip

__all__ = ["Answers", "Failure", "Progress", "expand_sources", "is_many", "run_batch"]

AUDIO_SUFFIXES = frozenset(
    [
        ".wav",
        ".mp3",
        ".m4a",
        ".aac",
        ".amr",
        ".3gp",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".webm",
        ".mp4",
        ".wma",
        ".aif",
        ".aiff",
        ".gsm",
    ]
)
MAX_CONCURRENCY = 16  # the backend's connection pool holds 16 connections
_STOP_WITHIN = 1.0  # seconds Ctrl-C may take to stop in-flight requests
# Errors that would repeat for every remaining clip: stop sending instead.
_ACCOUNT_CODES = frozenset(
    {
        "InvalidApiKey",
        "Arrearage",
        "AllocationQuota.FreeTierOnly",
        "Throttling.AllocationQuota",
        "AccessDenied",
        "Model.AccessDenied",
        "ModelNotFound",
    }
)


# ---------------------------------------------------------------------- results
@dataclass(eq=False)
class Failure:
    """An item whose question could not be answered: which clips, why, any partial text."""

    clips: tuple[AudioClip, ...]
    question: str | None
    error: QAudioError
    model: str
    text: str = ""  # partial text that arrived before the failure (never retried into a duplicate)
    attempts: int = 0  # requests sent for this item

    cached = False
    usage = None
    latency = None
    request_id = None

    def __str__(self) -> str:
        return f"⚠ {self.error.one_line()}"

    def __repr__(self) -> str:
        label = ", ".join(c.label() for c in self.clips) or "(no clip)"
        return f"Failure({label!r}, {self.error.one_line()!r})"


Result = Union[Answer, Failure]  # noqa: UP007 - a runtime alias, 3.10 safe
Progress = Callable[[int, int, Result], None]


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
    ) -> None:
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
        bits = [f"{n} {unit}{'s' if n != 1 else ''}", f"{ok} answered"]
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
        sources = {_source_of(r.clips) for r in self._results}
        header: tuple[str, ...] = ("#",)
        if timeline:
            header += ("time",)
        if not timeline or len(sources) > 1:
            header += ("source",)
        header += ("answer", "tokens", "status")
        rows = []
        for i, r in enumerate(self._results):
            row: tuple[str, ...] = (str(self._label(i)),)
            clip = r.clips[0] if r.clips else None
            if timeline:
                row += (fmt_span(clip.start, clip.end) if clip else "",)
            if not timeline or len(sources) > 1:
                row += (", ".join(_name(c, timeline) for c in r.clips),)
            if isinstance(r, Answer):
                tokens = str(r.usage.total_tokens) if r.usage else ""
                status = "cached" if r.cached else f"✓ {r.latency:.1f} s"
                row += (_short(r.text, 120), tokens, status)
            else:
                row += (_short(r.text, 120), "", "⚠ " + _short(r.error.one_line(), 120))
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
            title += f'\nquestion: "{_short(self.question, 200)}"'
        metadata = {
            "status": "interrupted" if self.interrupted else "complete",
            "model": self.model,
            "question": self.question,
            "items": [
                {
                    "clips": [c.describe() for c in r.clips],
                    "request_id": r.request_id,
                    "cached": r.cached,
                    "error": r.error.one_line() if isinstance(r, Failure) else None,
                }
                for r in self._results
            ],
        }
        return table_bundle(title, header, rows, notes=self.notes, metadata=metadata)

    def __repr__(self) -> str:
        return f"Answers({self.summary()})"

    def to_pandas(self) -> Any:
        """One row per item: source, window, answer, model, tokens, latency, error, cached
        (then start, end, question, request_id); a Series' index is kept."""
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
                    "source": "; ".join(c.location or c.name for c in r.clips),
                    "window": fmt_span(clip.start, clip.end) if windowed and clip else None,
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
                }
            )
        frame = pd.DataFrame.from_records(records)
        if self.labels is not None:
            frame.index = pd.Index(self.labels)
        return frame


def _source_of(clips: Sequence[AudioClip]) -> str:
    return "; ".join(c.location or c.name for c in clips)


def _name(clip: AudioClip, timeline: bool) -> str:
    if timeline or not clip.is_windowed:
        return clip.name
    return f"{clip.name} [{fmt_span(clip.start, clip.end)}]"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- which sources
def _is_series(value: object) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "index")


def is_many(sources: object) -> bool:
    """Whether ``sources`` stands for many questions (a batch) rather than one."""
    if sources is None or isinstance(sources, (tuple, bytes, bytearray, memoryview, AudioClip)):
        return False
    if isinstance(sources, (list, Mapping)) or _is_series(sources):
        return True
    if isinstance(sources, (str, os.PathLike)):
        text = os.fspath(sources)
        if not isinstance(text, str) or text.lower().startswith("data:") or "://" in text[:16]:
            return False  # URLs may hold '?' and '*' and are never patterns
        path = Path(text).expanduser()
        if path.is_dir():
            return True
        return not path.exists() and glob.has_magic(text)
    if isinstance(sources, AudioSourceLike) or hasattr(sources, "value"):
        return False  # recorders, widgets
    if hasattr(sources, "__array__") or hasattr(sources, "dtype"):
        return False  # an array of samples is one clip
    return isinstance(sources, Iterable)


def _expand_one(source: object) -> list[object]:
    """A glob pattern or directory as its files (sorted); anything else as itself."""
    if not isinstance(source, (str, os.PathLike)) or not is_many(source):
        return [source]
    text = os.fspath(source)
    assert isinstance(text, str)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES
        )
        if not files:
            raise SourceError(
                f"{text}: no audio files in this directory "
                f"(looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
            )
        return list(files)
    matches = sorted(
        Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file()
    )
    if not matches:
        raise SourceError(f"{text}: no files match this pattern")
    return list(matches)


def expand_sources(sources: object) -> tuple[list[object], list[Any] | None]:
    """The batch's items (a source, or a tuple of sources for one turn) and their labels.

    Glob patterns and directories expand to their files, also inside a list; a tuple or
    list inside a list stays one item; a pandas Series keeps its index as the labels,
    a dict its keys.
    """
    labels: list[Any] | None = None
    if isinstance(sources, Mapping):  # {label: source}: like a Series
        return [tuple(v) if isinstance(v, list) else v for v in sources.values()], list(sources)
    if _is_series(sources):
        labels = list(sources.index)  # type: ignore[attr-defined]
        values = list(sources.tolist())  # type: ignore[attr-defined]
        return [tuple(v) if isinstance(v, list) else v for v in values], labels
    if isinstance(sources, (str, os.PathLike)) or not is_many(sources):
        return _expand_one(sources), None
    items: list[object] = []
    for source in sources:  # type: ignore[attr-defined]
        if isinstance(source, (tuple, list)):
            items.append(tuple(source))
        else:
            items.extend(_expand_one(source))
    return items, labels


# ---------------------------------------------------------------------- jobs
@dataclass
class _Job:
    index: int
    clips: tuple[AudioClip, ...]
    prepared: tuple[PreparedAudio, ...] | None = None  # windows arrive already cut
    error: QAudioError | None = None  # known to fail before sending


@dataclass
class _Plan:
    """Everything a worker needs, shared by all jobs of one batch."""

    session: Session
    backend: Backend
    limits: Limits
    model: str
    question: str | None
    conversation: Conversation
    params: dict[str, Any]
    stream: bool
    cache_mode: CacheMode
    cancel: threading.Event = field(default_factory=threading.Event)


def _ask(plan: _Plan, job: _Job) -> tuple[Result, int]:
    """One item, start to finish, in a worker thread: its result and the requests sent."""
    from .ask import _answer, _check_clip_count, _complete, _cut_note, _messages

    parts: list[str] = []
    tries = [0]

    def count(n: int) -> None:
        tries[0] = n

    try:
        if job.error is not None:
            raise job.error
        if plan.cancel.is_set():
            raise Interrupted("interrupted before it was asked")
        _check_clip_count(len(job.clips), plan.model, plan.limits)
        prepared = job.prepared or tuple(prepare(c, plan.limits) for c in job.clips)
        settings = plan.session.settings
        messages, notes = _messages(
            plan.conversation, prepared, plan.question, plan.limits, settings.max_history_turns
        )
        notes = [*(_cut_note(p, plan.limits) for p in prepared if p.cut_seconds), *notes]
        request = Request(plan.model, tuple(messages), plan.params, plan.stream)
        outcome = _complete(
            plan.session,
            plan.backend,
            request,
            plan.cache_mode,
            on_text=parts.append,
            cancel=plan.cancel,
            on_attempt=count,
        )
        answer = _answer(outcome, request, job.clips, plan.question, None, plan.limits, notes)
        return answer, outcome.attempts
    except QAudioError as exc:
        error = exc
    except Exception as exc:  # a bug must not cost the other clips their answers
        error = QAudioError(f"unexpected {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    if plan.cancel.is_set() and not isinstance(error, Interrupted):
        error = Interrupted("interrupted (Ctrl-C)")
    return Failure(job.clips, plan.question, error, plan.model, "".join(parts), tries[0]), tries[0]


def _window_jobs(
    groups: list[tuple[AudioClip, ...]],
    size: float,
    overlap: float,
    limits: Limits,
) -> tuple[list[tuple[AudioClip, list[tuple[float, float]]]], list[str]]:
    """Plan the windows of each clip (decoding each once to learn its true length)."""
    planned = []
    notes = []
    for group in groups:
        if len(group) != 1:
            raise InputError("windows apply to one clip per item, not to several clips in a turn")
        clip = group[0]
        if clip.is_remote:
            raise InputError(
                f"{clip.name}: windows need the audio in the kernel; a URL is passed to the "
                "service unread (download it first)"
            )
        duration = clip.duration or 0.0  # decodes the whole source once: errors surface here
        plan = plan_windows(duration, size, overlap, start=clip.start)
        covered = (plan[-1][1] - clip.start) if plan else 0.0
        if duration - covered > 1e-6:
            notes.append(
                f"{clip.name}: the last {duration - covered:.2f} s are too short to ask about"
            )
        planned.append((clip, plan))
    return planned, notes


def _iter_window_jobs(
    planned: list[tuple[AudioClip, list[tuple[float, float]]]], limits: Limits
) -> Iterator[_Job]:
    """Window jobs in order, each decoded only when the pool has room for it."""
    index = 0
    for clip, plan in planned:
        done = 0
        error: QAudioError | None = None
        try:
            for prepared in WindowReader(clip, plan, limits):
                yield _Job(index, (prepared.clip,), (prepared,))
                index += 1
                done += 1
        except QAudioError as exc:  # e.g. a corrupt stretch in the middle of the file
            error = exc
        for lo, hi in plan[done:]:  # what could not be cut: failed, not silently skipped
            why = error or InputError(f"{clip.name}: no audio left at {fmt_span(lo, hi)}")
            yield _Job(index, (window_clip(clip, lo, hi),), error=why)
            index += 1


# ---------------------------------------------------------------------- running
def run_batch(
    sources: object,
    question: str | None,
    *,
    session: Session,
    model: str | None = None,
    conversation: str | None = None,
    system: str | None = None,
    stream: bool | None = None,
    new: bool = False,
    windows: float | None = None,
    overlap: float = 0.0,
    concurrency: int | None = None,
    cache: str | None = None,
    progress: bool | Progress = True,
    params: dict[str, Any] | None = None,
) -> Answers:
    """Ask ``question`` about each item of ``sources``; see :func:`ask_audio`."""
    settings = session.settings
    if new:
        raise InputError(
            "a batch asks each clip in its own conversation; --new/new=True does not apply"
        )
    model = model or settings.model
    question = (question or "").strip() or None
    workers = settings.concurrency if concurrency is None else concurrency
    if not 1 <= int(workers) <= MAX_CONCURRENCY:
        raise InputError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {workers}")
    workers = int(workers)
    cache_mode = resolve_mode(cache if cache is not None else settings.cache, batch=True)

    items, labels = expand_sources(sources)
    groups = [tuple(resolve_sources(item)) for item in items]  # bad sources fail before sending
    if not groups:
        raise InputError("nothing to ask: the batch has no clips")
    if question is None and any(not g for g in groups):
        raise InputError("nothing to ask: an item of the batch has neither audio nor question")

    if conversation is not None:  # shared context: its system prompt and history, read-only
        context = session.conversations.get(conversation, create=False)
        if system is not None:
            context = _copy_with_system(context, system or None)
    else:
        context = Conversation(
            "batch", system=(system if system is not None else settings.system) or None
        )

    backend = session.backend(model)
    limits = backend.limits(model)
    notes: list[str] = []
    jobs: Iterator[_Job]
    if windows is not None:
        check_windows(float(windows), float(overlap), limits, model)
        planned, notes = _window_jobs(groups, float(windows), float(overlap), limits)
        items_clips: list[tuple[AudioClip, ...]] = [
            (window_clip(c, lo, hi),) for c, plan in planned for lo, hi in plan
        ]
        jobs = _iter_window_jobs(planned, limits)
        labels = None
        if not items_clips:
            raise InputError("nothing to ask: no window is long enough")
    else:
        items_clips = groups
        jobs = iter(_Job(i, g) for i, g in enumerate(groups))

    plan = _Plan(
        session=session,
        backend=backend,
        limits=limits,
        model=model,
        question=question,
        conversation=context,
        params=dict(params or {}),
        stream=settings.stream if stream is None else stream,
        cache_mode=cache_mode,
    )
    unit = "window" if windows else "clip"
    results, attempts, interrupted, stopped, elapsed = _run(
        plan, jobs, items_clips, workers, progress, unit
    )
    if interrupted:
        session.discard_backend(backend)  # no connection of the aborted requests stays open
    return Answers(
        results,
        question=question,
        model=model,
        elapsed=elapsed,
        windows=float(windows) if windows is not None else None,
        interrupted=interrupted,
        stopped=stopped,
        labels=labels,
        notes=notes,
        attempts=attempts,
    )


def _copy_with_system(conv: Conversation, system: str | None) -> Conversation:
    copy = Conversation(conv.name, system)
    for turn in conv.turns:
        copy.append(turn)
    return copy


def _run(
    plan: _Plan,
    jobs: Iterator[_Job],
    items: list[tuple[AudioClip, ...]],
    workers: int,
    progress: bool | Progress,
    unit: str,
) -> tuple[list[Result], list[int], bool, str | None, float]:
    """Keep ``workers`` jobs in flight until all are done, stopped, or Ctrl-C.

    Jobs are pulled only when a worker is free, so windows are decoded just in time
    and nothing waits in the pool's queue when a batch must stop.
    """
    started = time.perf_counter()
    results: list[Result | None] = [None] * len(items)
    attempts = [0] * len(items)
    meter = _Meter(progress, len(items), plan.question, unit)
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qaudio-batch")
    inflight: dict[cf.Future[tuple[Result, int]], _Job] = {}
    # Finished futures, in the order they finish. cf.wait(inflight, FIRST_COMPLETED) locks,
    # hooks and unhooks every future in flight at each completion: at concurrency 16 that
    # main-thread work held the GIL for over a tenth of the samples py-spy took (~2% wall).
    finished: queue.SimpleQueue[cf.Future[tuple[Result, int]]] = queue.SimpleQueue()
    stopped: str | None = None
    interrupted = False
    try:
        exhausted = False
        while True:
            while not exhausted and stopped is None and len(inflight) < workers:
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    break
                future = pool.submit(_ask, plan, job)
                inflight[future] = job
                future.add_done_callback(finished.put)
            if not inflight:
                break
            try:  # wakes at least every 0.1 s: Ctrl-C is handled between waits
                done = [finished.get(timeout=0.1)]
            except queue.Empty:
                continue
            while not finished.empty():
                done.append(finished.get())
            for future in done:
                job = inflight.pop(future)
                result, attempts[job.index] = future.result()
                results[job.index] = result
                if stopped is None and isinstance(result, Failure):
                    stopped = _account_level(result.error)
                meter.update(result)
    except KeyboardInterrupt:
        interrupted = True
        plan.cancel.set()
        _stop(plan, inflight, results, attempts, meter)
    finally:
        plan.cancel.set()  # wakes any worker still sleeping before a retry
        pool.shutdown(wait=True, cancel_futures=True)
        meter.close(interrupted)
    reason = "interrupted (Ctrl-C)" if interrupted else f"not asked: {stopped}"
    final: list[Result] = []
    for i, r in enumerate(results):
        if r is None:
            error: QAudioError = Interrupted(reason) if interrupted else InputError(reason)
            r = Failure(items[i], plan.question, error, plan.model)
        final.append(r)
    return final, attempts, interrupted, stopped, time.perf_counter() - started


def _account_level(error: QAudioError) -> str | None:
    """The reason to stop sending, when ``error`` would repeat for every clip."""
    if isinstance(error, ConfigError) or (
        isinstance(error, APIError) and error.code in _ACCOUNT_CODES
    ):
        return error.one_line()
    return None


def _stop(
    plan: _Plan,
    inflight: dict[cf.Future[tuple[Result, int]], _Job],
    results: list[Result | None],
    attempts: list[int],
    meter: _Meter,
) -> None:
    """After Ctrl-C: abort in-flight requests, keep what finished meanwhile."""
    deadline = time.monotonic() + _STOP_WITHIN
    while inflight:
        try:
            for future in list(inflight):
                future.cancel()
            _abort_connections(plan.backend)
            done, _ = cf.wait(inflight, timeout=0.05)
            for future in done:
                job = inflight.pop(future)
                if not future.cancelled():
                    result, attempts[job.index] = future.result()
                    results[job.index] = result
                    meter.update(result)
            if time.monotonic() > deadline:
                break
        except KeyboardInterrupt:  # a second Ctrl-C: keep stopping, it takes a moment
            continue


def _abort_connections(backend: Backend) -> None:
    """Break off ``backend``'s requests in flight, waking blocked readers (HTTP backends
    shut their pool's sockets down: ``backends/_http.abort_connections``)."""
    abort = getattr(backend, "abort", None)
    if callable(abort):
        abort()


# ---------------------------------------------------------------------- progress
_BAR: Any = None


def _bar_class() -> Any:
    """tqdm.auto's bar (a widget in notebooks) without tqdm's monitor thread, so a
    finished batch leaves no thread behind."""
    global _BAR
    if _BAR is None:
        from tqdm.auto import tqdm

        class _Bar(tqdm):  # type: ignore[misc, valid-type]
            monitor_interval = 0

        _BAR = _Bar
    return _BAR


class _Meter:
    """Progress: a tqdm.auto bar, or the caller's ``progress(done, total, result)``."""

    def __init__(self, progress: bool | Progress, total: int, question: str | None, unit: str):
        self.total = total
        self.done = 0
        self.failed = 0
        self.cached = 0
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            desc = _short(question, 30) if question else "voice chat"
            self.bar = _bar_class()(total=total, desc=desc, unit=unit, leave=True)

    def update(self, result: Result) -> None:
        self.done += 1
        self.failed += isinstance(result, Failure)
        self.cached += bool(result.cached)
        if self.bar is not None:
            self.bar.set_postfix(cached=self.cached, failed=self.failed, refresh=False)
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total, result)

    def close(self, interrupted: bool) -> None:
        if self.bar is not None:
            if interrupted:
                self.bar.set_description_str("interrupted")
            self.bar.close()
