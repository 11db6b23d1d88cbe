"""compare(): the same question to several models, side by side — a model grid.

``compare(sources, question, models=[...], schema=None)`` (``%%qaudio … --compare m1,m2``)
asks each model about each clip, every cell its own single-turn conversation built and
sent exactly like a batch item (:mod:`qaudio_magic.turn`, :mod:`qaudio_magic.structured`:
history budget, response cache, retries, usage meter, the typed repair).

Concurrency is per route, not per grid: models served by one backend (DashScope native,
compatible mode, one ``openai:`` server, ``local:``) share that backend's connection pool
and account limits, so they share one lane of ``concurrency`` workers (at most 16, the
pool's size), while lanes of different routes run side by side. Each model's requests
wait for their slot under its rate limit (``rate_limit``: RPM/TPM from the model registry,
:func:`qaudio_magic.turn.pacing`), exactly as a batch's do. Cells are queued clip by clip across a lane's models,
so every model advances at the same pace and a grid interrupted with Ctrl-C has whole
rows. What a batch promises holds per model: every cell ends as an Answer or a Failure,
an error that would repeat for every clip of a model (bad key, quota) stops that model
only, and Ctrl-C returns what finished within about a second.

The :class:`Grid` shows one row per clip and one column per model (the answer, or the
typed fields), then per model: answered, latency, audio/input/output tokens and the
estimated cost (registry prices, :mod:`qaudio_magic.costs`). ``.to_pandas()`` gives the
long form (one row per clip and model) or the wide form (one row per clip, columns
``(model, quantity)``); ``.score(labels)`` scores every model side by side.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._format import plural, short, table_bundle
from ._render import data_lines
from .answer import Answer, Answers, Failure, Result, with_typed_columns
from .backends.base import Backend, Limits
from .batch import MAX_CONCURRENCY, Meter, Progress
from .cache import CacheMode, resolve_mode
from .clip import AudioClip
from .conversation import Conversation
from .costs import Cost, estimate_cost, total_cost
from .errors import InputError, Interrupted, QAudioError
from .session import Session, get_session
from .sources import expand_sources, resolve_sources
from .turn import answer_for, pacing, plan_turn, send

if TYPE_CHECKING:
    import pandas as pd

    from ._ratelimit import RateLimiter
    from .estimate import BatchPlan
    from .schema import Schema, SchemaLike

__all__ = ["Grid", "GridScore", "compare"]

_STOP_WITHIN = 1.0  # seconds Ctrl-C may take to stop in-flight requests
LANE_MOST = 16  # workers per route: the backend's shared connection pool holds 16


# ---------------------------------------------------------------------- asking
def compare(
    sources: object,
    question: str | None = None,
    *,
    models: Sequence[str],
    schema: SchemaLike | None = None,
    system: str | None = None,
    concurrency: int | None = None,
    cache: str | None = None,
    progress: bool | Progress = True,
    dry_run: bool = False,
    session: Session | None = None,
    **params: Any,
) -> Grid | BatchPlan:
    """Ask ``question`` about each clip of ``sources`` with each of ``models``.

    ``sources``: anything a batch takes (a path, list, glob pattern, directory, pandas
    Series); ``schema`` makes it a typed question (see :func:`ask_audio`). Each route runs
    ``concurrency`` requests at once (default ``%config QAudioMagic.concurrency``), shared
    by its models. ``dry_run=True`` returns what would be sent and its estimated cost per
    model instead. Extra keyword arguments go to every model. Returns a :class:`Grid`.
    """
    sess = session or get_session()
    settings = sess.settings
    names = _model_list(models)
    typed: Schema | None = None
    if schema is not None:
        from .schema import Schema
        from .structured import check_model

        typed = Schema.of(schema)
        for name in names:
            check_model(name)
    question = (question or "").strip() or None
    if dry_run:
        from .estimate import plan_many

        return plan_many(
            sources, question, names, session=sess, schema=typed, params=params, system=system
        )
    workers = int(settings.concurrency if concurrency is None else concurrency)
    if not 1 <= workers <= MAX_CONCURRENCY:
        raise InputError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {workers}")
    items, labels = expand_sources(sources)
    groups = [tuple(resolve_sources(item)) for item in items]  # bad sources fail before sending
    if not groups:
        raise InputError("nothing to ask: the grid has no clips")
    if question is None and any(not g for g in groups):
        raise InputError("nothing to ask: an item has neither audio nor question")

    lanes: dict[int, _Lane] = {}
    limits: dict[str, Limits] = {}
    limiters: dict[str, RateLimiter | None] = {}
    for name in names:  # a missing key or server address fails here, before sending
        backend = sess.backend(name)
        limits[name] = backend.limits(name)
        limiters[name] = pacing(sess, backend, name)  # the model's RPM/TPM, as batches do
        lane = lanes.setdefault(id(backend), _Lane(backend, min(workers, LANE_MOST)))
        lane.models.append(name)
    context = Conversation(
        "compare", system=(system if system is not None else settings.system) or None
    )
    run = _Run(
        session=sess,
        groups=groups,
        question=question,
        limits=limits,
        limiters=limiters,
        conversation=context,
        params=dict(params),
        stream=settings.stream,
        cache_mode=resolve_mode(cache if cache is not None else settings.cache, batch=True),
        schema=typed,
    )
    results, attempts, interrupted, stopped, elapsed = _run(
        run, list(lanes.values()), names, progress
    )
    for lane in lanes.values():
        if interrupted:
            sess.discard_backend(lane.backend)  # no connection of aborted requests stays open
    return Grid(
        groups,
        names,
        results,
        question=question,
        schema=typed,
        labels=labels,
        attempts=attempts,
        elapsed=elapsed,
        interrupted=interrupted,
        stopped=stopped,
        region=settings.region,
    )


def _model_list(models: Sequence[str] | str) -> list[str]:
    if isinstance(models, str):
        models = models.split(",")
    names = [str(m).strip() for m in models if str(m).strip()]
    if not names:
        raise InputError("compare needs at least one model (models=[...] or --compare m1,m2)")
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise InputError(f"a model appears twice in the grid: {', '.join(repeated)}")
    return names


@dataclass
class _Lane:
    """One backend (route) and the models it serves: ``workers`` requests at once."""

    backend: Backend
    workers: int
    models: list[str] = field(default_factory=list)
    running: int = 0
    cells: Iterator[tuple[str, int]] | None = None


@dataclass
class _Run:
    """Everything a worker needs, shared by every cell of one grid."""

    session: Session
    groups: list[tuple[AudioClip, ...]]
    question: str | None
    limits: dict[str, Limits]
    limiters: dict[str, RateLimiter | None]
    conversation: Conversation
    params: dict[str, Any]
    stream: bool
    cache_mode: CacheMode
    schema: Schema | None
    cancel: threading.Event = field(default_factory=threading.Event)


def _cells(lane: _Lane, count: int, stopped: Mapping[str, str]) -> Iterator[tuple[str, int]]:
    for index in range(count):
        for model in lane.models:
            if model not in stopped:
                yield model, index


def _ask_cell(run: _Run, backend: Backend, model: str, index: int) -> tuple[Result, int]:
    """One cell, start to finish, in a worker thread: its result and the requests sent."""
    clips = run.groups[index]
    parts: list[str] = []
    tries = [0]
    notes: tuple[str, ...] = ()

    def count(n: int) -> None:
        tries[0] = n

    try:
        if run.cancel.is_set():
            raise Interrupted("interrupted before it was asked")
        turn = plan_turn(
            run.conversation,
            clips,
            run.question,
            model=model,
            limits=run.limits[model],
            max_history_turns=run.session.settings.max_history_turns,
            params=run.params,
            stream=run.stream,
        )
        notes = turn.notes
        data = None
        if run.schema is None:
            outcome = send(
                run.session,
                backend,
                turn.request,
                run.cache_mode,
                on_text=parts.append,
                cancel=run.cancel,
                on_attempt=count,
                limiter=run.limiters[model],
            )
        else:
            from .structured import send_typed, typed_plan

            turn = typed_plan(turn, run.schema, backend.route)
            outcome, data, repaired = send_typed(
                run.session,
                backend,
                turn,
                run.cache_mode,
                run.schema,
                on_text=parts.append,
                on_repair=lambda _problem: parts.clear(),
                cancel=run.cancel,
                on_attempt=count,
                limiter=run.limiters[model],
            )
            if repaired:
                turn = replace(turn, notes=(*turn.notes, repaired))
        answer = answer_for(turn, outcome, conversation=None)
        answer.data = data
        return answer, outcome.attempts
    except QAudioError as exc:
        error = exc
    except Exception as exc:  # a bug must not cost the other cells their answers
        error = QAudioError(f"unexpected {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    if run.cancel.is_set() and not isinstance(error, Interrupted):
        error = Interrupted("interrupted (Ctrl-C)")
    failure = Failure(clips, run.question, error, model, "".join(parts), tries[0], notes=notes)
    return failure, tries[0]


def _run(
    run: _Run, lanes: list[_Lane], models: list[str], progress: bool | Progress
) -> tuple[dict[str, list[Result]], dict[str, list[int]], bool, dict[str, str], float]:
    """Keep each lane's workers busy until every cell is done, stopped, or Ctrl-C."""
    started = time.perf_counter()
    count = len(run.groups)
    results: dict[str, list[Result | None]] = {m: [None] * count for m in models}
    attempts: dict[str, list[int]] = {m: [0] * count for m in models}
    stopped: dict[str, str] = {}
    label = f"{len(models)} models: " + (run.question or "voice chat")
    meter = Meter(progress, count * len(models), label, "answer")
    pool = cf.ThreadPoolExecutor(
        max_workers=sum(lane.workers for lane in lanes), thread_name_prefix="qaudio-grid"
    )
    inflight: dict[cf.Future[tuple[Result, int]], tuple[_Lane, str, int]] = {}
    finished: queue.SimpleQueue[cf.Future[tuple[Result, int]]] = queue.SimpleQueue()
    for lane in lanes:
        lane.cells = _cells(lane, count, stopped)
    interrupted = False
    try:
        while True:
            for lane in lanes:
                while lane.running < lane.workers and lane.cells is not None:
                    cell = next(lane.cells, None)
                    if cell is None:
                        lane.cells = None
                        break
                    future = pool.submit(_ask_cell, run, lane.backend, *cell)
                    inflight[future] = (lane, *cell)
                    lane.running += 1
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
                lane, model, index = inflight.pop(future)
                lane.running -= 1
                result, attempts[model][index] = future.result()
                results[model][index] = result
                if model not in stopped and isinstance(result, Failure) and result.error.ends_batch:
                    stopped[model] = result.error.one_line()
                meter.update(result)
    except KeyboardInterrupt:
        interrupted = True
        run.cancel.set()
        _stop(lanes, inflight, results, attempts, meter)
    finally:
        run.cancel.set()  # wakes any worker still sleeping before a retry
        pool.shutdown(wait=True, cancel_futures=True)
        meter.close(interrupted)
    final: dict[str, list[Result]] = {}
    for model, row in results.items():
        why = "interrupted (Ctrl-C)" if interrupted else f"not asked: {stopped.get(model)}"
        final[model] = [
            r
            if r is not None
            else Failure(
                run.groups[i],
                run.question,
                Interrupted(why) if interrupted else InputError(why),
                model,
            )
            for i, r in enumerate(row)
        ]
    return final, attempts, interrupted, stopped, time.perf_counter() - started


def _stop(
    lanes: list[_Lane],
    inflight: dict[cf.Future[tuple[Result, int]], tuple[_Lane, str, int]],
    results: dict[str, list[Result | None]],
    attempts: dict[str, list[int]],
    meter: Meter,
) -> None:
    """After Ctrl-C: abort in-flight requests, keep what finished meanwhile."""
    deadline = time.monotonic() + _STOP_WITHIN
    while inflight:
        try:
            for future in list(inflight):
                future.cancel()
            for lane in lanes:
                abort = getattr(lane.backend, "abort", None)
                if callable(abort):
                    abort()
            done, _ = cf.wait(inflight, timeout=0.05)
            for future in done:
                _, model, index = inflight.pop(future)
                if not future.cancelled():
                    result, attempts[model][index] = future.result()
                    results[model][index] = result
                    meter.update(result)
            if time.monotonic() > deadline:
                break
        except KeyboardInterrupt:  # a second Ctrl-C: keep stopping, it takes a moment
            continue


# ---------------------------------------------------------------------- the grid
class Grid:
    """A model grid: one row per clip, one column per model; ``grid[model]`` is that
    model's :class:`~qaudio_magic.answer.Answers`."""

    def __init__(
        self,
        groups: Sequence[tuple[AudioClip, ...]],
        models: Sequence[str],
        results: Mapping[str, Sequence[Result]],
        *,
        question: str | None,
        schema: Schema | None = None,
        labels: Sequence[Any] | None = None,
        elapsed: float = 0.0,
        interrupted: bool = False,
        stopped: Mapping[str, str] | None = None,
        region: str | None = None,
        attempts: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.groups = list(groups)
        self.models = list(models)
        self.question = question
        self.schema = schema
        self.labels = list(labels) if labels is not None else None
        self.elapsed = elapsed
        self.interrupted = interrupted
        self.stopped = dict(stopped or {})
        self.region = region
        self._answers = {
            m: Answers(
                results[m],
                question=question,
                model=m,
                elapsed=elapsed,
                interrupted=interrupted,
                stopped=self.stopped.get(m),
                labels=self.labels,
                attempts=(attempts or {}).get(m, ()),
                schema=schema,
            )
            for m in self.models
        }

    # ------------------------------------------------------------------ access
    def __getitem__(self, model: str) -> Answers:
        return self._answers[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def sources(self) -> list[str]:
        return self._answers[self.models[0]].sources

    def cost(self, result: Result) -> Cost:
        """The estimated cost of one answer from the registry's prices (unknown if none)."""
        if not isinstance(result, Answer) or result.usage is None:
            return Cost(None, why="no answer")
        if result.cached:
            return Cost(0.0, verified=True, why="cached")
        usage = result.usage
        return estimate_cost(
            result.model,
            self.region,
            text_in=usage.input_tokens,
            audio_in=usage.audio_tokens,
            text_out=usage.output_tokens,
            seconds=result.audio_seconds,
        )

    # ------------------------------------------------------------------ tables
    def to_pandas(self, form: str = "long") -> pd.DataFrame:
        """``"long"``: one row per clip and model (source, model, answer or typed fields,
        latency, audio/input/output tokens, cost, currency, error, cached, request_id);
        ``"wide"``: one row per clip, columns ``(model, quantity)``.

        ``openai:`` servers report the prompt as one number: their ``input_tokens``
        include the audio and ``audio_tokens`` is empty.
        """
        import pandas as pd

        if form not in ("long", "wide"):
            raise ValueError("form is 'long' or 'wide'")
        frames = {m: self._model_frame(m) for m in self.models}
        if form == "wide":
            wide = pd.concat(
                {m: f.drop(columns=["source", "model"]) for m, f in frames.items()}, axis=1
            )
            wide.insert(0, ("", "source"), frames[self.models[0]]["source"])
            return wide
        return pd.concat(frames.values(), ignore_index=self.labels is None)

    def _model_frame(self, model: str) -> pd.DataFrame:
        import pandas as pd

        results = list(self._answers[model])
        rows = []
        for r in results:
            answer = isinstance(r, Answer)
            usage = r.usage
            cost = self.cost(r)
            rows.append(
                {
                    "source": "; ".join(c.location or c.name for c in r.clips),
                    "model": model,
                    "answer": r.text if answer and self.schema is None else None,
                    "latency": r.latency,
                    "audio_tokens": usage.audio_tokens if usage else None,
                    "input_tokens": usage.input_tokens if usage else None,
                    "output_tokens": usage.output_tokens if usage else None,
                    "cost": cost.amount if answer else None,
                    "currency": cost.currency if answer else None,
                    "error": r.error.one_line() if isinstance(r, Failure) else None,
                    "cached": bool(r.cached),
                    "request_id": r.request_id,
                }
            )
        frame = pd.DataFrame.from_records(rows)
        for column in ("audio_tokens", "input_tokens", "output_tokens"):
            frame[column] = frame[column].astype("Int64")
        frame["latency"] = frame["latency"].astype("float64")
        frame["cost"] = frame["cost"].astype("float64")
        if self.labels is not None:
            frame.index = pd.Index(self.labels)
        if self.schema is not None:
            frame = frame.drop(columns=["answer"])
            data = [r.data if isinstance(r, Answer) else None for r in results]
            frame = with_typed_columns(frame, self.schema, data)
            ordered = ["source", "model", *self.schema.field_names]
            frame = frame[ordered + [c for c in frame.columns if c not in ordered]]
        return frame

    def per_model(self) -> list[dict[str, Any]]:
        """Per model: answered, failed, mean latency, summed tokens, estimated cost."""
        out = []
        for model in self.models:
            answers = self._answers[model]
            done = answers.answered
            latencies = [a.latency for a in done if not a.cached]
            out.append(
                {
                    "model": model,
                    "answered": len(done),
                    "failed": len(answers.failed),
                    "mean_latency": sum(latencies) / len(latencies) if latencies else None,
                    "audio_tokens": _sum(a.usage.audio_tokens for a in done if a.usage),
                    "input_tokens": _sum(a.usage.input_tokens for a in done if a.usage),
                    "output_tokens": _sum(a.usage.output_tokens for a in done if a.usage),
                    "cost": total_cost(self.cost(a) for a in done),
                }
            )
        return out

    def summary(self) -> str:
        n = len(self.groups)
        bits = [
            f"{plural(n, 'clip')} × {plural(len(self.models), 'model')}",
            f"{self.elapsed:.1f} s",
        ]
        failed = sum(len(a.failed) for a in self._answers.values())
        if failed:
            bits.append(f"{failed} failed")
        text = " · ".join(bits)
        if self.interrupted:
            text += " · interrupted (Ctrl-C): unfinished cells are marked"
        for model, why in self.stopped.items():
            text += f" · {model} stopped early: {why}"
        return text

    def _cell_text(self, r: Result) -> str:
        if isinstance(r, Failure):
            return "⚠ " + short(r.error.one_line(), 80)
        if r.data is not None:
            return short(" · ".join(_value_text(v) for v in r.data.values()), 80)
        return short(r.text, 80)

    def _bundle(self) -> tuple[dict[str, str], dict[str, Any]]:
        header = ("#", "source", *self.models)
        rows = []
        for i, clips in enumerate(self.groups):
            label = str(self.labels[i]) if self.labels is not None else str(i)
            row = (label, ", ".join(c.name for c in clips))
            rows.append(row + tuple(self._cell_text(self._answers[m][i]) for m in self.models))
        title = f"Grid — {self.summary()}"
        if self.question:
            title += f'\nquestion: "{short(self.question, 200)}"'
        if self.schema is not None:
            title += f"\nfields: {', '.join(self.schema.field_names)}"
        grid, meta = table_bundle(title, header, rows)
        stats_header = (
            "model",
            "answered",
            "failed",
            "mean latency",
            "audio tok",
            "input tok",
            "output tok",
            "est. cost",
        )
        stats = [
            (
                s["model"],
                str(s["answered"]),
                str(s["failed"]),
                _latency_text(s),
                _int_text(s["audio_tokens"]),
                _int_text(s["input_tokens"]),
                _int_text(s["output_tokens"]),
                str(s["cost"]),
            )
            for s in self.per_model()
        ]
        table, _ = table_bundle("Per model", stats_header, stats)
        meta["qaudio"] = {
            "status": "interrupted" if self.interrupted else "complete",
            "models": self.models,
            "question": self.question,
        }
        data = {
            "text/plain": grid["text/plain"] + "\n\n" + table["text/plain"],
            "text/html": grid["text/html"] + table["text/html"],
        }
        return data, meta

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        return self._bundle()

    def __repr__(self) -> str:
        return f"Grid({self.summary()})"

    # ------------------------------------------------------------------ scores
    def score(
        self,
        labels: Any,
        metric: str | None = None,
        *,
        language: str | Mapping[Any, str] | None = None,
    ) -> GridScore:
        """Every model scored against ``labels`` (see :meth:`Answers.score`), side by side."""
        scores = {m: self._answers[m].score(labels, metric, language=language) for m in self.models}
        return GridScore(scores)


@dataclass
class GridScore:
    """Scores of several models: ``.table`` one row per model; ``scores[model]`` details."""

    scores: dict[str, Any]

    @property
    def metric(self) -> str:
        return next(iter(self.scores.values())).metric if self.scores else ""

    @property
    def table(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame([s.summary() for s in self.scores.values()], index=list(self.scores))
        frame.index.name = "model"
        return frame.drop(columns=["metric"])

    def to_pandas(self) -> pd.DataFrame:
        return self.table

    def __getitem__(self, model: str) -> Any:
        return self.scores[model]

    def __repr__(self) -> str:
        return f"GridScore({self.metric}):\n{self.table.to_string()}"

    def _repr_html_(self) -> str:
        import html

        return f"<b>{html.escape(self.metric)} per model</b>" + self.table.to_html(escape=True)


def _sum(values: Iterator[int | None] | Any) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _latency_text(stats: Mapping[str, Any]) -> str:
    if stats["mean_latency"] is not None:
        return f"{stats['mean_latency']:.2f} s"
    return "cached" if stats["answered"] else ""


def _int_text(value: int | None) -> str:
    return "" if value is None else f"{value}"


def _value_text(value: Any) -> str:
    return data_lines({"": value})[0][2:]
