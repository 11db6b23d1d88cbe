"""Many clips, or many windows of one long clip: asked concurrently, kept whatever happens.

``ask_audio(["a.wav", "b.wav", ...], question)`` (or a glob pattern, a directory, a pandas
Series, ``windows=30``; :mod:`qaudio_magic.sources` says what makes a batch) comes here.
Each item is its own single-turn conversation, built and sent exactly like a single
question (:mod:`qaudio_magic.turn`: history, notes, response cache, retry policy, usage
meter) by a small thread pool sharing the backend's one connection pool. Threads, not
asyncio: a notebook's event loop is already running, and a blocking call from a cell must
not try to start another.

What a batch promises:

* every item ends as an :class:`~qaudio_magic.answer.Answer` or a
  :class:`~qaudio_magic.answer.Failure`; one bad clip never costs the other 399 their answers;
* an error that would repeat for every item (bad key, quota spent:
  :attr:`~qaudio_magic.errors.QAudioError.ends_batch`) stops sending at once;
* Ctrl-C stops within about a second and returns what finished: in-flight connections
  are shut down (closing a socket does not wake a thread blocked reading it; shutting it
  down does), workers are joined, and the backend is discarded so no socket stays open.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._format import short, span
from .answer import Answers, Failure, Result
from .backends.base import Backend, Limits, PreparedAudio
from .cache import CacheMode, resolve_mode
from .clip import AudioClip
from .conversation import Conversation
from .errors import InputError, Interrupted, QAudioError
from .session import Session
from .sources import expand_sources, resolve_sources
from .turn import TurnPlan, answer_for, plan_turn, send
from .windows import WindowReader, check_windows, plan_windows, window_clip

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["MAX_CONCURRENCY", "Meter", "Progress", "run_batch"]

Progress = Callable[[int, int, Result], None]
MAX_CONCURRENCY = 16  # the backend's connection pool holds 16 connections
_STOP_WITHIN = 1.0  # seconds Ctrl-C may take to stop in-flight requests


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
    schema: Schema | None = None  # a typed question (structured.py)


def _ask(plan: _Plan, job: _Job) -> tuple[Result, int]:
    """One item, start to finish, in a worker thread: its result and the requests sent."""
    parts: list[str] = []
    tries = [0]
    notes: tuple[str, ...] = ()

    def count(n: int) -> None:
        tries[0] = n

    try:
        if job.error is not None:
            raise job.error
        if plan.cancel.is_set():
            raise Interrupted("interrupted before it was asked")
        turn = plan_turn(
            plan.conversation,
            job.clips,
            plan.question,
            model=plan.model,
            limits=plan.limits,
            max_history_turns=plan.session.settings.max_history_turns,
            params=plan.params,
            stream=plan.stream,
            prepared=job.prepared,
        )
        notes = turn.notes
        if plan.schema is not None:
            return _ask_typed(plan, turn, parts, count)
        outcome = send(
            plan.session,
            plan.backend,
            turn.request,
            plan.cache_mode,
            on_text=parts.append,
            cancel=plan.cancel,
            on_attempt=count,
        )
        return answer_for(turn, outcome, conversation=None), outcome.attempts
    except QAudioError as exc:
        error = exc
    except Exception as exc:  # a bug must not cost the other clips their answers
        error = QAudioError(f"unexpected {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    if plan.cancel.is_set() and not isinstance(error, Interrupted):
        error = Interrupted("interrupted (Ctrl-C)")
    failure = Failure(
        job.clips, plan.question, error, plan.model, "".join(parts), tries[0], notes=notes
    )
    return failure, tries[0]


def _ask_typed(
    plan: _Plan, turn: TurnPlan, parts: list[str], count: Callable[[int], None]
) -> tuple[Result, int]:
    """A typed item: the schema into the request, one repair at most, the data on the answer."""
    from .structured import send_typed, typed_plan

    assert plan.schema is not None
    turn = typed_plan(turn, plan.schema, plan.backend.route)
    outcome, data, repaired = send_typed(
        plan.session,
        plan.backend,
        turn,
        plan.cache_mode,
        plan.schema,
        on_text=parts.append,
        on_repair=lambda _problem: parts.clear(),  # a failure keeps the last answer's text
        cancel=plan.cancel,
        on_attempt=count,
    )
    if repaired:
        turn = replace(turn, notes=(*turn.notes, repaired))
    answer = answer_for(turn, outcome, conversation=None)
    answer.data = data
    return answer, outcome.attempts


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
            why = error or InputError(f"{clip.name}: no audio left at {span(lo, hi)}")
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
    schema: Schema | None = None,
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
        schema=schema,
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
        schema=schema,
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
    meter = Meter(progress, len(items), plan.question, unit)
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
                if stopped is None and isinstance(result, Failure) and result.error.ends_batch:
                    stopped = result.error.one_line()
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


def _stop(
    plan: _Plan,
    inflight: dict[cf.Future[tuple[Result, int]], _Job],
    results: list[Result | None],
    attempts: list[int],
    meter: Meter,
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


class Meter:
    """Progress: a tqdm.auto bar, or the caller's ``progress(done, total, result)``."""

    def __init__(self, progress: bool | Progress, total: int, question: str | None, unit: str):
        self.total = total
        self.done = 0
        self.failed = 0
        self.cached = 0
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            desc = short(question, 30) if question else "voice chat"
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
