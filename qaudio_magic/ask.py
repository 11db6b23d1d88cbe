"""ask_audio(): the one orchestrator — resolve, prepare, stream, show, record the turn.

The magic only parses a cell into an ``ask_audio`` call; nothing else talks to backends.
Every check that can fail on the user's input runs before anything is sent, and the turn
is recorded only after the answer completed: a failure leaves the conversation as it was.

Many clips (a list, a glob pattern, a directory, a pandas Series; see
:mod:`qaudio_magic.sources`) or ``windows=`` make a batch, run by :mod:`qaudio_magic.batch`;
both paths build and send each turn through :mod:`qaudio_magic.turn`, which owns the
history budget, the response cache, the retry policy and the usage meter.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .cache import resolve_mode
from .errors import InputError, Interrupted, QAudioError
from .session import Session, get_session
from .sources import is_dask_collection, is_many, resolve_sources
from .turn import answer_for, plan_turn, record, send

if TYPE_CHECKING:  # markdown-it and the view load on the first question, not at `%load_ext`
    from .answer import Answer, Answers
    from .batch import Progress
    from .dryrun import SendPlan
    from .estimate import BatchPlan
    from .schema import Schema, SchemaLike
    from .view import AnswerView

__all__ = ["NEW_TIP", "ask_audio"]

# Said once per session, in the header of the first answer whose new clip joined a
# conversation about another one (Qwen-Audio is built for several clips in one conversation).
NEW_TIP = "add --new (new=True) to ask about the new clip alone"


def ask_audio(
    sources: object = None,
    question: str | None = None,
    *,
    model: str | None = None,
    conversation: str | None = None,
    system: str | None = None,
    stream: bool | None = None,
    display: bool | None = None,
    new: bool = False,
    session: Session | None = None,
    batch: bool | None = None,
    windows: float | None = None,
    overlap: float = 0.0,
    concurrency: int | None = None,
    cache: str | None = None,
    progress: bool | Progress = True,
    dry_run: bool = False,
    speak: bool | str = False,
    schema: SchemaLike | None = None,
    **params: Any,
) -> Answer | Answers | SendPlan | BatchPlan:
    """Ask ``question`` about the audio in ``sources``; continue the conversation if none.

    ``sources``: a path, URL (http(s), ``oss://``, ``data:``), bytes, ``pathlib.Path``,
    ``ipywidgets.Audio`` or AudioClip asks one question and returns an :class:`Answer`;
    a tuple of them is several clips in one turn. None asks a follow-up. An empty
    ``question`` with audio is voice chat: the audio is the message.

    A batch — a list, a glob pattern (``"clips/*.wav"``), a directory, a pandas Series,
    any other iterable, or ``batch=True`` — asks about each item in its own single-turn
    conversation, ``concurrency`` at a time, and returns :class:`Answers` (an item that
    is itself a tuple or list is several clips in that item's turn; ``batch=False``
    sends a list as clips of one turn). ``windows=30`` (with optional ``overlap``
    seconds) asks about each 30 s window of a long clip. ``cache``: ``auto`` (on for
    batches, off for single questions), ``on``, ``off``, ``refresh``, ``replay``.
    ``display=None`` renders when running inside IPython. Extra keyword arguments
    (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``enable_thinking``,
    ``reasoning_effort``, ``language`` ...) go to the model. ``speak=True`` (or a voice
    name) asks a model that speaks for a spoken answer too: ``answer.audio``. A thinking
    model's reasoning is ``answer.reasoning``; speech recognition sets ``answer.language``
    and ``answer.emotion``.

    A batch shows a ``tqdm.auto`` bar (``progress=False``: none; a callable is called as
    ``progress(done, total, result)`` after each item) and runs ``concurrency`` requests
    at once (default ``%config QAudioMagic.concurrency``). Ctrl-C returns what finished.
    A generator of sources is read lazily (for corpora too big to hold).

    A Dask Series or Bag of sources returns a lazy Dask DataFrame with the columns of
    ``Answers.to_pandas()``: each partition is a batch on a Dask worker, ``concurrency``
    requests at a time per worker, sent on ``.compute()`` (``pip install
    'qaudio_magic[dask]'``).

    ``schema`` makes a typed question: a pydantic model, a JSON Schema dict or a short dict
    (``{"gender": ["male", "female"], "age": int, "dog_barks": bool}``). The answer's
    ``.data`` holds the validated fields and ``Answers.to_pandas()`` one typed column per
    field; an answer that does not match gets one repair request, then fails with the
    validation message (see :mod:`qaudio_magic.structured`).
    """
    from .view import AnswerView, display_mode

    sess = session or get_session()
    settings = sess.settings
    if overlap and windows is None:
        raise InputError("overlap applies to windows: give windows=SECONDS too")
    typed: Schema | None = None
    if schema is not None:  # pydantic loads with the first typed question, not at %load_ext
        from .schema import Schema
        from .structured import check_model

        typed = Schema.of(schema)  # a bad schema fails here, before anything is sent
        check_model(model or settings.model)
    if is_dask_collection(sources):  # the whole corpus on a Dask cluster: a lazy DataFrame
        if conversation is not None or new or dry_run or windows is not None:
            raise InputError(
                "Dask sources take a question and model options only (no conversation, "
                "--new, --dry-run or windows)"
            )
        from ._dask import ask_dask

        return ask_dask(
            sources,
            question,
            session=sess,
            concurrency=concurrency,
            params=params,
            model=model,
            system=system,
            stream=stream,
            cache=cache,
            schema=typed,
        )
    if windows is not None or batch or (batch is None and is_many(sources)):
        if dry_run:
            from .estimate import plan_many

            return plan_many(
                sources,
                question,
                [model or settings.model],
                session=sess,
                schema=typed,
                windows=windows,
                overlap=overlap,
                params=params,
            )
        if speak:
            raise InputError("--speak applies to one question, not to a batch")
        from .batch import run_batch

        if display is False and progress is True:
            progress = False

        return run_batch(
            sources,
            question,
            session=sess,
            model=model,
            conversation=conversation,
            system=system,
            stream=stream,
            new=new,
            windows=windows,
            overlap=overlap,
            concurrency=concurrency,
            cache=cache,
            progress=progress,
            params=params,
            schema=typed,
        )
    model = model or settings.model
    stream = settings.stream if stream is None else stream
    question = (question or "").strip() or None
    cache_mode = resolve_mode(cache if cache is not None else settings.cache, batch=False)

    clips = resolve_sources(sources)
    if not clips and question is None:
        raise InputError("nothing to ask: give audio, a question, or both")
    if new:  # registered (and made current) only once its first turn succeeds
        conv = sess.conversations.draft(conversation, system=system or settings.system or None)
    else:
        conv = sess.conversations.get(conversation)
        if system is not None:
            conv.system = system or None
        elif conv.system is None and not conv.turns and settings.system:
            conv.system = settings.system
    backend = sess.backend(model)
    plan = plan_turn(
        conv,
        clips,
        question,
        model=model,
        limits=backend.limits(model),
        max_history_turns=settings.max_history_turns,
        params=params,
        stream=stream,
        speak=speak,
    )  # decode errors surface here, before anything is sent
    if typed is not None:
        from .structured import typed_plan

        plan = typed_plan(plan, typed, backend.route)
    if dry_run:
        return plan.dry_run(backend)

    if plan.mixes_clips and plan.context and "new" not in sess.tips_shown:  # once per session
        sess.tips_shown.add("new")
        plan = replace(plan, context=f"{plan.context} · {NEW_TIP}")

    mode = display_mode() if display is None else ("rich" if display else None)
    if display and mode is None:
        mode = "plain"
    view = None
    if mode:
        view = AnswerView(
            plan.prepared,
            question=question,
            notes=plan.notes,
            mode=mode,
            thinking=plan.thinking,
            context=plan.context,
            reference=plan.reference,
        )
        view.start()

    data: dict[str, Any] | None = None
    try:
        on_text = view.add if view is not None else None
        on_reasoning = view.add_reasoning if view is not None else None
        if typed is None:
            outcome = send(
                sess, backend, plan.request, cache_mode, on_text=on_text, on_reasoning=on_reasoning
            )
        else:
            from .structured import send_typed

            outcome, data, repaired = send_typed(
                sess,
                backend,
                plan,
                cache_mode,
                typed,
                on_text=on_text,
                on_repair=_repair_note(view),
                on_reasoning=on_reasoning,
            )
            if repaired:
                plan = replace(plan, notes=(*plan.notes, repaired))
    except KeyboardInterrupt:
        raise _interrupted(view, "") from None
    except QAudioError as exc:
        if view is not None:
            if view.arrived:  # cut after its text began: keep it, say why
                view.fail(
                    f"⚠ Incomplete: {_sentence(exc.one_line())} The conversation was not changed."
                )
            else:  # nothing arrived: the error's one line is all there is to show
                view.discard()
        raise
    try:  # everything about the turn is done before it is recorded
        answer = answer_for(plan, outcome, conversation=conv.name)
        answer.data = data
        footer, metadata = answer.footer(), answer.metadata()
    except KeyboardInterrupt:
        raise _interrupted(view, " while the answer was being read") from None
    record(plan, outcome)
    if new:
        sess.conversations.adopt(conv)
    if view is not None:
        finish = functools.partial(
            view.finish,
            footer,
            metadata,
            segments=answer.segments,
            reference=plan.reference,
            data=data,
            spoken=answer.audio,
        )
        try:
            finish()
        except KeyboardInterrupt:  # the turn is complete and recorded: show it whole anyway
            finish()
        except Exception as exc:  # recorded already: a display that fails must not lose it
            warnings.warn(
                f"the answer could not be shown in full ({type(exc).__name__}); "
                "it is recorded and returned",
                stacklevel=2,
            )
        answer.pictures = tuple(view.pictures)
        answer._shown_in = _execution_count()
    return answer


def _repair_note(view: AnswerView | None) -> Callable[[str], None] | None:
    """What the view shows when a typed answer is asked again (its repair)."""
    if view is None:
        return None

    def note(problem: str) -> None:
        view.restart(f"the answer did not match the schema ({problem}); asking once more")

    return note


def _interrupted(view: AnswerView | None, when: str) -> Interrupted:
    """Ctrl-C before the turn was recorded: the same report wherever it struck."""
    unchanged = "the conversation was not changed"
    if view is not None and view.arrived:
        if when:  # the whole answer had arrived
            view.fail(f"⏹ Interrupted{when}: it is shown, but {unchanged}.")
        else:
            view.fail(f"⏹ Interrupted: partial answer shown; {unchanged}.")
        kept = "the answer" if when else "the partial answer"
        return Interrupted(f"interrupted{when}: {kept} is kept on screen; {unchanged}")
    if view is not None:
        view.discard()
    return Interrupted(f"interrupted{when or ' before the answer began'}; {unchanged}")


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "。")) else text + "."


def _execution_count() -> int | None:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.execution_count if shell is not None else None
