"""Conversations: what history is sent, what is dropped (with a note), export and import."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

from qaudio_magic import ask_audio
from qaudio_magic.backends.base import Limits, audio_tokens
from qaudio_magic.conversation import Conversation, estimate_text_tokens
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import InputError
from qaudio_magic.models import MODELS
from qaudio_magic.view import AnswerView


def test_audio_tokens_rule() -> None:
    assert audio_tokens(0.2) == 25  # minimum 25
    assert audio_tokens(1.0) == 25
    assert audio_tokens(5.1063) == 128
    assert audio_tokens(95.0) == 750  # only 30 s are heard
    assert estimate_text_tokens("hello world") == 3
    assert estimate_text_tokens("这段音频") == 4


def _user_texts(request) -> list[str]:
    """The text of each user message of a recorded native request."""
    users = [m for m in request.json["input"]["messages"] if m["role"] == "user"]
    return [next((p["text"] for p in u["content"] if "text" in p), "") for u in users]


def _audio_count(request) -> int:
    return sum(1 for m in request.json["input"]["messages"] for p in m["content"] if "audio" in p)


def test_a_25_turn_conversation_about_one_clip_sends_the_clip_every_time(
    session, emu: Emulator, audio: Path
) -> None:
    """Issue 14 (1): with the default max_history_turns = 20, the turn holding the audio
    used to vanish from the 11th turn on (a negative slice), and every follow-up was
    answered without the clip."""
    assert session.settings.max_history_turns == 20
    ask_audio(audio / "speech_en.wav", "Question 1", display=False)
    for i in range(2, 26):
        answer = ask_audio(None, f"Question {i}", display=False)
    requests = emu.generation_requests()
    assert len(requests) == 25
    assert all(_audio_count(r) == 1 for r in requests)  # the clip went out every time
    # the last request: the audio turn, then the 19 newest questions, then the new one
    texts = _user_texts(requests[-1])
    assert texts == ["Question 1", *(f"Question {i}" for i in range(6, 26))]
    assert answer.notes == (
        "4 earlier questions not sent (max_history_turns = 20); "
        "the clip speech_en.wav is still sent",
    )
    # up to the 21st turn nothing had to go
    assert len(_user_texts(requests[20])) == 21 and len(_user_texts(requests[21])) == 21
    assert len(session.conversations.current) == 25  # nothing is forgotten locally


def test_text_turns_go_before_the_audio_with_one_line_naming_them(
    ip, session, emu: Emulator, audio: Path, monkeypatch
) -> None:
    # a tiny input budget: the 5 s clip (128 tokens) and a few short questions
    small = replace(MODELS["qwen-audio-turbo-latest"].limits, max_input_tokens=330)
    monkeypatch.setitem(
        MODELS, "qwen-audio-turbo-latest", replace(MODELS["qwen-audio-turbo-latest"], limits=small)
    )
    # answers of 200 characters (50 tokens): the audio turn costs 128 + 3 + 50, a
    # question turn 3 + 50; with the new question's 6 that leaves room for two questions
    emu.reply_with(*["a" * 200] * 5)
    ask_audio(audio / "speech_en.wav", "Question 1", display=False)
    for i in range(2, 6):
        ask_audio(None, f"Question {i}", display=False)
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", "", "Which turns do you see?")
    request = emu.generation_requests()[-1]
    assert _user_texts(request) == ["Question 1", "Question 4", "Question 5", answer.question]
    assert _audio_count(request) == 1
    line = (
        "2 earlier questions not sent (over the 330-token input budget); "
        "the clip speech_en.wav is still sent"
    )
    assert answer.notes == (line,)
    assert line in cap.outputs[-1].data["text/plain"]  # shown with the answer, once
    assert len(session.conversations.current) == 6


def test_when_the_audio_turns_alone_are_over_budget_the_oldest_goes(
    session, emu: Emulator, audio: Path, monkeypatch
) -> None:
    # room for about two 5 s clips with their text
    small = replace(MODELS["qwen-audio-turbo-latest"].limits, max_input_tokens=330)
    monkeypatch.setitem(
        MODELS, "qwen-audio-turbo-latest", replace(MODELS["qwen-audio-turbo-latest"], limits=small)
    )
    emu.reply_with(*["a" * 200] * 3)  # 50 tokens each: the two clips' turns do not fit
    ask_audio(audio / "speech_zh_cmn.wav", "Question 1", display=False)
    ask_audio(None, "Question 2", display=False)
    ask_audio(audio / "speech_en.wav", "Question 3", display=False)
    with capture_output() as cap:
        answer = ask_audio(None, "Which turns do you see?", display=True)
    texts = _user_texts(emu.generation_requests()[-1])
    assert texts == ["Question 3", "Which turns do you see?"]
    assert answer.notes == (
        "1 earlier question and 1 earlier turn with audio (speech_zh_cmn.wav) not sent "
        "(over the 330-token input budget); the clip speech_en.wav is still sent",
    )
    assert f"note: {answer.notes[0]}" in cap.stdout  # plain (terminal) view


def test_max_history_turns(session, emu: Emulator, audio: Path) -> None:
    session.configure(max_history_turns=1)
    for i in range(3):
        ask_audio(audio / "tone_440hz_3s.wav", f"Q{i}", display=False)
    answer = ask_audio(None, "Q3", display=False)
    assert _user_texts(emu.generation_requests()[-1]) == ["Q2", "Q3"]
    assert answer.notes == (
        "2 earlier turns with audio not sent (max_history_turns = 1); "
        "the clip tone_440hz_3s.wav is still sent",
    )
    session.configure(max_history_turns=0)
    answer = ask_audio(None, "Q4", display=False)
    assert _user_texts(emu.generation_requests()[-1]) == ["Q4"]
    assert answer.notes == (
        "1 earlier question and 3 earlier turns with audio (tone_440hz_3s.wav) not sent "
        "(max_history_turns = 0)",
    )


def test_question_alone_over_budget_is_refused_before_sending(
    session, emu: Emulator, audio: Path, monkeypatch
) -> None:
    tiny = replace(MODELS["qwen-audio-turbo-latest"], limits=Limits(max_input_tokens=50))
    monkeypatch.setitem(MODELS, "qwen-audio-turbo-latest", tiny)
    with pytest.raises(InputError, match="needs about 129 input tokens; the model takes 50"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert emu.requests == []


def test_export_keeps_paths_out_unless_asked(
    ip, session, emu: Emulator, audio: Path, tmp_path: Path
) -> None:
    """Issue 14 (10): exports and output metadata name clips by name and sha256; the
    folders of the user's files appear only with --paths."""
    folder = str(audio.resolve())
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "First")
    assert folder not in json.dumps([o.metadata for o in cap.outputs])
    assert folder not in json.dumps(answer.metadata())
    assert answer.metadata()["clips"][0]["sha256"] == answer.clips[0].sha256
    with capture_output() as cap:
        ip.run_line_magic("qaudio", f"export {tmp_path / 'plain.json'}")
    assert "no local paths" in cap.stdout
    plain = (tmp_path / "plain.json").read_text()
    assert folder not in plain and "speech_en.wav" in plain and answer.clips[0].sha256 in plain
    ip.run_line_magic("qaudio", f"export {tmp_path / 'full.json'} --paths")
    assert folder in (tmp_path / "full.json").read_text()
    with pytest.raises(InputError, match="the export holds no paths"):
        Conversation.from_dict(json.loads(plain))


def test_export_and_import_round_trip(session, emu: Emulator, audio: Path) -> None:
    ask_audio(audio / "speech_en.wav", "First", display=False)
    ask_audio(None, "Second", display=False)
    data = json.loads(json.dumps(session.conversations.current.to_dict(paths=True)))
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


def test_a_new_clip_in_a_conversation_says_what_else_is_sent_and_suggests_new_once(
    ip, emu: Emulator, audio: Path
) -> None:
    """Issue 14 (3): `%%qaudio b.wav` after a question about a.wav sends both clips; the
    header says so (and which turn of which conversation this is), and --new is
    suggested once."""
    speech, tone = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    with capture_output() as cap:
        first = ip.run_cell_magic("qaudio", str(speech), "What is said?")
    assert first.context is None  # the first turn: nothing else is sent
    assert not cap.outputs[-1].data["text/plain"].splitlines()[1].startswith("conversation")
    with capture_output() as cap:
        second = ip.run_cell_magic("qaudio", str(tone), "And now?")
    line = (
        "conversation default, turn 2 · also sent: speech_en.wav (5.1 s) · "
        "add --new (new=True) to ask about the new clip alone"
    )
    assert second.context == line
    shown = cap.outputs[-1].data
    assert shown["text/plain"].splitlines()[1] == line
    assert "also sent: speech_en.wav (5.1 s)" in shown["text/html"]
    assert "2 audio clips in all" in second.text  # the emulator heard both
    with capture_output() as cap:
        third = ip.run_cell_magic("qaudio", "", "Which was longer?")
    assert third.context == (
        "conversation default, turn 3 · also sent: speech_en.wav (5.1 s), tone_440hz_3s.wav (3.0 s)"
    )  # the tip was given once
    fresh = ip.run_cell_magic("qaudio", f"{speech} --new", "Only this one?")
    assert fresh.context is None and "1 audio clip in all" in fresh.text
    # in a terminal the same line is printed under the clip's name
    with capture_output() as cap:
        view = AnswerView([], question="Q", context=third.context, mode="plain")
        view.start()
        view.add("A")
        view.finish("model", {})
    assert cap.stdout.splitlines()[:3] == ["💬 follow-up", third.context, "A"]
