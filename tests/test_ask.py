"""ask_audio(): what each kind of `sources` asks, and one turn path for questions and batches.

A single question and a batch item are built and sent by the same code (turn.py), so they
must agree on what they say about the audio: a long clip's "only 30 s is sent" note shows
in the answer, the dry run, the batch table and ``.to_pandas()`` alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qaudio_magic import Answer, Answers, ask_audio
from qaudio_magic.dryrun import SendPlan
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import APIError, InputError
from qaudio_magic.session import Session

from ._synth import tone, write_wav

CUT = "long.wav is 40.0 s long: only 30 s (0–30 s) is sent, 10.0 s dropped."


@pytest.fixture
def long_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "long.wav", tone(440, 40.0))


def test_a_tuple_is_one_turn_a_list_is_a_batch(session: Session, emu: Emulator, audio: Path):
    a, b = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    one = ask_audio((a, b), "Both?", display=False)
    assert isinstance(one, Answer) and [c.name for c in one.clips] == [a.name, b.name]
    assert "2 audio clips" in one.text
    many = ask_audio([a, b], "Each?", display=False)
    assert isinstance(many, Answers) and [len(r.clips) for r in many] == [1, 1]
    together = ask_audio([a, b], "Both, as a list?", batch=False, display=False)
    assert isinstance(together, Answer) and len(together.clips) == 2
    assert len(emu.generation_requests()) == 4


def test_a_long_clip_says_the_same_thing_on_every_surface(
    session: Session, emu: Emulator, long_wav: Path, audio: Path
) -> None:
    plan = ask_audio(long_wav, "What plays?", dry_run=True)
    assert isinstance(plan, SendPlan) and plan.notes[0].startswith(CUT)
    assert emu.requests == []
    single = ask_audio(long_wav, "What plays?", display=False)
    assert single.notes[0].startswith(CUT)
    batch = ask_audio([long_wav, audio / "tone_440hz_3s.wav"], "What plays?", progress=False)
    assert batch[0].notes == single.notes and batch[1].notes == ()
    table = batch._repr_mimebundle_()[0]
    header = table["text/plain"].splitlines()[2].split()
    assert header[-1] == "notes"
    assert CUT[:40] in table["text/plain"] and CUT[:40] in table["text/html"]
    frame = batch.to_pandas()
    assert frame["notes"][0] == "\n".join(single.notes) and frame["notes"].isna()[1]


def test_a_failed_batch_item_keeps_its_notes(
    session: Session, emu: Emulator, long_wav: Path
) -> None:
    emu.add_fault("status=400;code=InvalidParameter;times=1")
    (failed,) = ask_audio([long_wav], "What plays?", progress=False)
    assert isinstance(failed.error, APIError) and failed.notes[0].startswith(CUT)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 5}, "overlap applies to windows: give windows=SECONDS too"),
        ({"schema": {"age": "old"}}, "field 'age': 'old' is not a field type"),
    ],
)
def test_contradictory_requests_are_refused_before_sending(
    session: Session, emu: Emulator, audio: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        ask_audio(audio / "speech_en.wav", "Q", display=False, **kwargs)
    assert emu.requests == []


def test_nothing_to_ask(session: Session, emu: Emulator) -> None:
    with pytest.raises(InputError, match="nothing to ask: give audio, a question, or both"):
        ask_audio(None, "   ", display=False)
    assert emu.requests == []


def test_a_failed_turn_changes_no_conversation(
    session: Session, emu: Emulator, audio: Path
) -> None:
    ask_audio(audio / "speech_en.wav", "First", display=False)
    emu.add_fault("status=500;times=1")
    with pytest.raises(APIError):
        ask_audio(None, "Second", display=False)
    with pytest.raises(APIError, match="InternalError"):
        emu.add_fault("status=500;times=1")
        ask_audio(audio / "tone_440hz_3s.wav", "Fresh", new=True, conversation="x", display=False)
    convs = session.conversations
    assert [t.question for t in convs.current.turns] == ["First"] and "x" not in convs
    follow = ask_audio(None, "Second", display=False)
    assert follow.conversation == "default" and len(convs.current) == 2
