"""Conversations: what history is sent, what is dropped (with a note), export and import."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from IPython.utils.capture import capture_output

from qaudio_magic import ask_audio
from qaudio_magic.backends.base import Limits, audio_tokens
from qaudio_magic.conversation import Conversation, estimate_text_tokens
from qaudio_magic.emulator import Emulator
from qaudio_magic.models import MODELS


def test_audio_tokens_rule() -> None:
    assert audio_tokens(0.2) == 25  # minimum 25
    assert audio_tokens(1.0) == 25
    assert audio_tokens(5.1063) == 128
    assert audio_tokens(95.0) == 750  # only 30 s are heard
    assert estimate_text_tokens("hello world") == 3
    assert estimate_text_tokens("这段音频") == 4


def test_oldest_turns_dropped_to_fit_budget_with_visible_note(
    session, emu: Emulator, audio: Path, monkeypatch
) -> None:
    # a model with a tiny input budget: about two 5 s clips with their text
    small = replace(MODELS["qwen-audio-turbo-latest"].limits, max_input_tokens=330)
    monkeypatch.setitem(
        MODELS, "qwen-audio-turbo-latest", replace(MODELS["qwen-audio-turbo-latest"], limits=small)
    )
    for i in range(3):
        ask_audio(audio / "speech_en.wav", f"Question {i}", display=False)
    with capture_output() as cap:
        answer = ask_audio(None, "Which turns do you see?", display=True)
    users = [
        m for m in emu.generation_requests()[-1].json["input"]["messages"] if m["role"] == "user"
    ]
    assert [u["content"][-1]["text"] for u in users] == ["Question 2", "Which turns do you see?"]
    assert answer.notes and "2 earlier turns of 'default' not sent" in answer.notes[0]
    assert "note: 2 earlier turns of 'default' not sent" in cap.stdout  # plain (terminal) view
    assert len(session.conversations.current) == 4  # nothing is forgotten locally


def test_max_history_turns(session, emu: Emulator, audio: Path) -> None:
    session.configure(max_history_turns=1)
    for i in range(3):
        ask_audio(audio / "tone_440hz_3s.wav", f"Q{i}", display=False)
    users = [
        m for m in emu.generation_requests()[-1].json["input"]["messages"] if m["role"] == "user"
    ]
    assert len(users) == 2


def test_question_alone_over_budget_is_refused_before_sending(
    session, emu: Emulator, audio: Path, monkeypatch
) -> None:
    import pytest

    from qaudio_magic.errors import InputError

    tiny = replace(MODELS["qwen-audio-turbo-latest"], limits=Limits(max_input_tokens=50))
    monkeypatch.setitem(MODELS, "qwen-audio-turbo-latest", tiny)
    with pytest.raises(InputError, match="needs about 129 input tokens; the model takes 50"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert emu.requests == []


def test_export_and_import_round_trip(session, emu: Emulator, audio: Path) -> None:
    ask_audio(audio / "speech_en.wav", "First", display=False)
    ask_audio(None, "Second", display=False)
    data = json.loads(json.dumps(session.conversations.current.to_dict()))
    assert "base64" not in json.dumps(data)
    restored = Conversation.from_dict(data)
    assert [t.question for t in restored] == ["First", "Second"]
    assert (
        restored.turns[0].clips[0].sha256 == session.conversations.current.turns[0].clips[0].sha256
    )
    session.conversations.add(restored)
    restored.name = "restored"
    session.conversations.add(restored)
    answer = ask_audio(None, "Third", conversation="restored", display=False)
    assert "2 earlier turns and 1 audio clip in all" in answer.text
