"""Many clips, or many windows of one long clip: asked concurrently, kept whatever happens.

``ask_audio(["a.wav", "b.wav", ...], question)`` (or a glob pattern, a directory, a pandas
Series, ``windows=30``; :mod:`qaudio_magic.sources` says what makes a batch) comes here.
Each item is its own single-turn conversation, built and sent exactly like a single
question (:mod:`qaudio_magic.turn`: history, notes, response cache, retry policy, usage
meter) by ``concurrency`` worker threads that pull items as they are free. Threads, not
asyncio: a notebook's event loop is already running, and a blocking call from a cell must
not try to start another.

Built for corpora (the client must never be what a fast server waits for):

* per batch, not per request: the backend, its limits, the rate limiter, the cache mode
  and the response cache are looked up once; above :data:`OWN_CONNECTION_ABOVE` workers
  each sends through a keep-alive connection of its own (no worker waits on another's
  pool lock, see ``backends/_http.py``); answers come whole (no per-token events) unless
  ``stream=True`` or the model only streams — nobody watches a batch's tokens;
* a generator of sources is read only as workers are free, and the rows of such a batch
  keep no audio bytes: 100,000 items hold O(concurrency) audio and a small record each;
* every answer is in the response cache before the bar counts it (the main thread
  commits those that arrived together as one transaction), so a batch interrupted by
  Ctrl-C or a crash, run again, asks only what had not finished — the progress bar says
  how many came from the cache;
* requests to a model with a rate limit are paced by its limiter (``rate_limit``).

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

import contextlib
import operator
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._format import short, span
from ._ratelimit import RateLimiter
from .answer import Answer, Answers, Failure, Result
from .backends.base import Backend, Limits, PreparedAudio
from .cache import CacheMode, ResponseCache, resolve_mode
from .clip import AudioClip
from .conversation import Conversation
from .errors import InputError, Interrupted, QAudioError
from .session import Session
from .settings import MAX_CONCURRENCY
from .sources import expand_sources, is_lazy, iter_items, resolve_sources, source_name
from .turn import TurnPlan, answer_for, pacing, plan_turn, send
from .windows import WindowReader, check_windows, plan_windows, window_clip

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["MAX_CONCURRENCY", "Meter", "Progress", "run_batch"]

Progress = Callable[[int, int, Result], None]
OWN_CONNECTION_ABOVE = 8  # more workers than this: a connection each, not the shared pool
_STOP_WITHIN = 1.0  # seconds Ctrl-C may take to stop in-flight requests


# ---------------------------------------------------------------------- jobs
@dataclass
class _Job:
    index: int
    clips: tuple[AudioClip, ...]
    prepared: tuple[PreparedAudio, ...] | None = None  # windows arrive already cut
    error: QAudioError | None = None  # known to fail before sending
    source: object = None  # a lazy batch's item, resolved by the worker that takes it
    name: str = ""  # what the item was, for a row whose clips could not be made


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
    limiter: RateLimiter | None = None
    light: bool = False  # keep no audio bytes in the rows (a lazy batch)
    items: list[tuple[AudioClip, ...]] | None = None  # each item's clips, when known upfront
    cancel: threading.Event = field(default_factory=threading.Event)
    schema: Schema | None = None  # a typed question (structured.py)
    responses: ResponseCache | None = None  # the response cache, made once per batch


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
        if job.source is not None:  # a lazy batch: one bad source is one failed row
            job.clips = tuple(resolve_sources(job.source))
            job.source = None
            if not job.clips and plan.question is None:
                raise InputError("nothing to ask: the item has neither audio nor question")
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
            answer, attempts = _ask_typed(plan, turn, parts, count)
        else:
            outcome = send(
                plan.session,
                plan.backend,
                turn.request,
                plan.cache_mode,
                on_text=parts.append,
                cancel=plan.cancel,
                on_attempt=count,
                limiter=plan.limiter,
                responses=plan.responses,
            )
            answer, attempts = answer_for(turn, outcome, conversation=None), outcome.attempts
        if plan.light:
            answer.clips = tuple(c.detached() for c in answer.clips)
        return answer, attempts
    except QAudioError as exc:
        error = exc
    except Exception as exc:  # a bug must not cost the other clips their answers
        error = QAudioError(f"unexpected {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    if plan.cancel.is_set() and not isinstance(error, Interrupted):
        error = Interrupted("interrupted (Ctrl-C)")
    clips = tuple(c.detached() for c in job.clips) if plan.light else job.clips
    name = job.name or (source_name(job.source) if job.source is not None else "")
    failure = Failure(
        clips, plan.question, error, plan.model, "".join(parts), tries[0], notes=notes, source=name
    )
    return failure, tries[0]


def _ask_typed(
    plan: _Plan, turn: TurnPlan, parts: list[str], count: Callable[[int], None]
) -> tuple[Answer, int]:
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
        limiter=plan.limiter,
        responses=plan.responses,
    )
    if repaired:
        turn = replace(turn, notes=(*turn.notes, repaired))
    answer = answer_for(turn, outcome, conversation=None)
    answer.data = data
    return answer, outcome.attempts


def _resolve(
    items: list[object],
) -> tuple[list[tuple[AudioClip, ...]], dict[int, tuple[QAudioError, str]]]:
    """Each item's clips; an item that cannot be used (no such file, unreadable, a pattern
    that matches nothing) is kept with its error and name, to become its failed row."""
    groups: list[tuple[AudioClip, ...]] = []
    failed: dict[int, tuple[QAudioError, str]] = {}
    for i, item in enumerate(items):
        try:
            groups.append(tuple(resolve_sources(item)))
        except QAudioError as exc:
            groups.append(())
            failed[i] = (exc, source_name(item))
    return groups, failed


@dataclass
class _Windows:
    """One clip's windows, or why it has none (its one failed row)."""

    clip: AudioClip | None
    spans: list[tuple[float, float]]
    error: QAudioError | None = None
    name: str = ""

    @property
    def clips(self) -> tuple[AudioClip, ...]:
        return (self.clip,) if self.clip is not None else ()

    def items(self) -> list[tuple[AudioClip, ...]]:
        assert self.clip is not None
        return [(window_clip(self.clip, lo, hi),) for lo, hi in self.spans]


def _window_jobs(
    groups: list[tuple[AudioClip, ...]],
    failed: dict[int, tuple[QAudioError, str]],
    size: float,
    overlap: float,
) -> tuple[list[_Windows], list[str]]:
    """Plan the windows of each clip (decoding each once to learn its true length); a clip
    that cannot be read or decoded is one failed row."""
    planned = []
    notes = []
    for i, group in enumerate(groups):
        if i in failed:
            planned.append(_Windows(None, [], *failed[i]))
            continue
        if len(group) != 1:
            raise InputError("windows apply to one clip per item, not to several clips in a turn")
        clip = group[0]
        if clip.is_remote:
            raise InputError(
                f"{clip.name}: windows need the audio in the kernel; a URL is passed to the "
                "service unread (download it first)"
            )
        try:
            duration = clip.duration or 0.0  # decodes the whole source once
        except QAudioError as exc:
            planned.append(_Windows(clip, [], exc, clip.name))
            continue
        plan = plan_windows(duration, size, overlap, start=clip.start)
        covered = (plan[-1][1] - clip.start) if plan else 0.0
        if duration - covered > 1e-6:
            notes.append(
                f"{clip.name}: the last {duration - covered:.2f} s are too short to ask about"
            )
        planned.append(_Windows(clip, plan))
    return planned, notes


def _iter_window_jobs(planned: list[_Windows], limits: Limits) -> Iterator[_Job]:
    """Window jobs in order, each decoded only when the pool has room for it."""
    index = 0
    for p in planned:
        if p.error is not None:
            yield _Job(index, p.clips, error=p.error, name=p.name)
            index += 1
            continue
        assert p.clip is not None
        clip, plan = p.clip, p.spans
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
    model = model or settings.model
    question = (question or "").strip() or None
    workers = settings.concurrency if concurrency is None else concurrency
    if not 1 <= int(workers) <= MAX_CONCURRENCY:
        raise InputError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {workers}")
    workers = int(workers)
    cache_mode = resolve_mode(cache if cache is not None else settings.cache, batch=True)

    lazy = windows is None and is_lazy(sources)
    groups: list[tuple[AudioClip, ...]] = []
    failed: dict[int, tuple[QAudioError, str]] = {}  # items that name no usable audio
    labels: list[Any] | None = None
    if not lazy:
        items, labels = expand_sources(sources)  # no files at all: raises here
        if not items:
            raise InputError("nothing to ask: the batch has no clips")
        groups, failed = _resolve(items)
        if question is None and any(not g for i, g in enumerate(groups) if i not in failed):
            raise InputError("nothing to ask: an item of the batch has neither audio nor question")
    if new:  # after the sources: a pattern that matches nothing says so first
        raise InputError(
            "a batch asks each clip in its own conversation; --new/new=True does not apply"
        )
    if not cache_mode.read:  # no key and no cache to answer from: every item would fail
        session.check_key(model)  # one line, before any progress bar

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
    total: int | None
    items_clips: list[tuple[AudioClip, ...]] | None = None
    if windows is not None:
        check_windows(float(windows), float(overlap), limits, model)
        planned, notes = _window_jobs(groups, failed, float(windows), float(overlap))
        items_clips = [
            clips for p in planned for clips in (p.items() if p.error is None else [p.clips])
        ]
        total = len(items_clips)
        jobs = _iter_window_jobs(planned, limits)
        labels = None
        if not total:
            raise InputError("nothing to ask: no window is long enough")
    elif lazy:
        assert isinstance(sources, Iterator)
        total = operator.length_hint(sources) or None
        jobs = (_Job(i, (), source=item) for i, item in enumerate(iter_items(sources)))
    else:
        items_clips = groups
        total = len(groups)
        jobs = (
            _Job(i, g, error=failed[i][0], name=failed[i][1]) if i in failed else _Job(i, g)
            for i, g in enumerate(groups)
        )

    responses = session.response_cache() if cache_mode.active else None
    plan = _Plan(
        session=session,
        backend=backend,
        limits=limits,
        model=model,
        question=question,
        conversation=context,
        params=dict(params or {}),
        # whole answers unless asked: per-token events cost CPU and nobody watches them
        stream=bool(stream),
        cache_mode=cache_mode,
        limiter=pacing(session, backend, model),
        light=lazy,
        items=items_clips,
        schema=schema,
        responses=responses,
    )
    unit = "window" if windows else "clip"
    gathered = (
        responses.gathered()
        if responses is not None and cache_mode.write
        else contextlib.nullcontext(_nothing)
    )
    with gathered as flush:  # the answers of each collection stored together
        results, attempts, interrupted, stopped, elapsed = _run(
            plan, jobs, total, workers, progress, unit, flush
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


class _Jobs:
    """The batch's jobs, handed out one at a time to whichever worker is free."""

    def __init__(self, jobs: Iterator[_Job]) -> None:
        self._jobs = jobs
        self._lock = threading.Lock()
        self.stop = threading.Event()  # no more jobs: an error that ends the batch, Ctrl-C
        self.taken = 0  # jobs handed out so far
        # jobs handed out and not finished, by index (the audio they hold goes with them)
        self.busy: dict[int, _Job] = {}

    def next(self) -> _Job | None:
        with self._lock:  # windows are decoded here, in order, one at a time
            if self.stop.is_set():
                return None
            job = next(self._jobs, None)
            if job is not None:
                self.taken += 1
                self.busy[job.index] = job
            return job

    def finished(self, job: _Job) -> None:
        with self._lock:
            self.busy.pop(job.index, None)


def _work(plan: _Plan, jobs: _Jobs, done: queue.SimpleQueue[Any], own: bool) -> None:
    """A worker thread: take a job, answer it, hand the result back; until none is left."""
    connection = getattr(plan.backend, "own_connection", None)
    try:
        with connection() if own and connection else contextlib.nullcontext():
            while (job := jobs.next()) is not None:
                result, attempts = _ask(plan, job)
                if isinstance(result, Failure) and result.error.ends_batch:
                    jobs.stop.set()  # before anyone takes another job
                jobs.finished(job)
                done.put((job.index, result, attempts))
    finally:
        done.put(None)  # this worker is finished


def _nothing() -> None:
    pass


def _run(
    plan: _Plan,
    jobs: Iterator[_Job],
    total: int | None,
    workers: int,
    progress: bool | Progress,
    unit: str,
    flush: Callable[[], None],
) -> tuple[list[Result], list[int], bool, str | None, float]:
    """Run the jobs on ``workers`` threads until all are done, stopped, or Ctrl-C.

    Jobs are pulled only when a worker is free, so windows are decoded and lazy sources
    read just in time, and nothing waits in a queue when a batch must stop. ``flush``
    writes the answers gathered for the response cache, before the bar counts them.
    """
    started = time.perf_counter()
    results: dict[int, tuple[Result, int]] = {}
    meter = Meter(progress, total, plan.question, unit)
    source = _Jobs(jobs)
    done: queue.SimpleQueue[tuple[int, Result, int] | None] = queue.SimpleQueue()
    own = workers > OWN_CONNECTION_ABOVE
    threads = [
        threading.Thread(
            target=_work, args=(plan, source, done, own), name=f"qaudio-batch-{i}", daemon=True
        )
        for i in range(workers)
    ]
    stopped: str | None = None
    interrupted = False
    try:
        for thread in threads:
            thread.start()
        running = len(threads)
        while running:
            try:  # wakes at least every 0.1 s: Ctrl-C is handled between waits
                first = done.get(timeout=0.1)
            except queue.Empty:
                continue
            arrived: list[Result] = []
            for item in _drained(done, first):
                if item is None:
                    running -= 1
                    continue
                index, result, attempts = item
                results[index] = (result, attempts)
                arrived.append(result)
                if stopped is None and isinstance(result, Failure) and result.error.ends_batch:
                    stopped = result.error.one_line()
            flush()  # in the cache before the bar counts them
            for result in arrived:
                meter.update(result)
    except KeyboardInterrupt:
        interrupted = True
        source.stop.set()
        plan.cancel.set()
        _stop(plan, threads, done, results, meter)
    finally:
        source.stop.set()
        plan.cancel.set()  # wakes any worker still sleeping before a retry or its slot
        for thread in threads:
            _join(thread)
        meter.close(interrupted)
    reason = "interrupted (Ctrl-C)" if interrupted else f"not asked: {stopped}"
    final: list[Result] = []
    counts: list[int] = []
    count = source.taken if total is None or plan.light else total
    for i in range(count):
        if i in results:
            result, attempts = results[i]
        else:
            error: QAudioError = Interrupted(reason) if interrupted else InputError(reason)
            busy = source.busy.get(i)
            clips = busy.clips if busy is not None else _unknown_clips(plan, i)
            if plan.light:
                clips = tuple(c.detached() for c in clips)
            result, attempts = Failure(clips, plan.question, error, plan.model), 0
        final.append(result)
        counts.append(attempts)
    return final, counts, interrupted, stopped, time.perf_counter() - started


def _drained(done: queue.SimpleQueue[Any], first: Any) -> Iterator[Any]:
    """``first``, then whatever else is already waiting in ``done``."""
    yield first
    while True:
        try:
            yield done.get_nowait()
        except queue.Empty:
            return


def _unknown_clips(plan: _Plan, index: int) -> tuple[AudioClip, ...]:
    """The clips of an item no worker took (a batch stopped early): from the plan."""
    return plan.items[index] if plan.items is not None else ()


def _stop(
    plan: _Plan,
    threads: list[threading.Thread],
    done: queue.SimpleQueue[Any],
    results: dict[int, tuple[Result, int]],
    meter: Meter,
) -> None:
    """After Ctrl-C: abort in-flight requests until the workers give up; keep what
    finished meanwhile."""
    deadline = time.monotonic() + _STOP_WITHIN
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        try:
            _abort_connections(plan.backend)
            for thread in threads:
                _join(thread, 0.05)
        except KeyboardInterrupt:  # a second Ctrl-C: keep stopping, it takes a moment
            continue
    while True:
        try:
            item = done.get_nowait()
        except queue.Empty:
            return
        if item is not None:
            index, result, attempts = item
            results[index] = (result, attempts)
            meter.update(result)


def _join(thread: threading.Thread, timeout: float | None = None) -> None:
    """``thread.join(timeout)`` for a worker whose ``start()`` a Ctrl-C may have cut short:
    never started (nothing to wait for), or running but not yet marked started (``join``
    raises RuntimeError for a moment: wait and try again)."""
    while thread.ident is not None:
        try:
            thread.join(timeout)
            return
        except RuntimeError:
            time.sleep(0.001)


def _abort_connections(backend: Backend) -> None:
    """Break off ``backend``'s requests in flight, waking blocked readers (HTTP backends
    shut their sockets down: ``backends/_http.HTTPBackend.abort``)."""
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
    """Progress: a tqdm.auto bar, or the caller's ``progress(done, total, result)``.

    The bar redraws at most ten times a second (tqdm's ``mininterval``) however fast
    answers come; its text changes only when the cached or failed counts do, and then says
    ``1,204 of 5,000 from cache`` — what a re-run after an interruption did not ask again.
    """

    def __init__(
        self, progress: bool | Progress, total: int | None, question: str | None, unit: str
    ):
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
        if isinstance(result, Failure):
            self.failed += 1
            self._describe()
        elif result.cached:
            self.cached += 1
            self._describe()
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total or 0, result)

    def line(self) -> str:
        """``1,204 of 5,000 from cache, 3 failed`` (empty while neither happened)."""
        bits = []
        if self.cached:
            of = f" of {self.total:,}" if self.total else ""
            bits.append(f"{self.cached:,}{of} from cache")
        if self.failed:
            bits.append(f"{self.failed:,} failed")
        return ", ".join(bits)

    def _describe(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.line(), refresh=False)

    def close(self, interrupted: bool) -> None:
        if self.bar is not None:
            if interrupted:
                self.bar.set_description_str("interrupted")
            self.bar.close()
