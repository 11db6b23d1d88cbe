"""What the user sees: the answer view in a notebook and a terminal, and one label for a
window on every surface (answer header, player, dry run, batch table, history)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

from qaudio_magic import AudioClip, Player, ask_audio
from qaudio_magic.emulator import Emulator
from qaudio_magic.session import Session
from qaudio_magic.view import AnswerView

LONG = "long/long_95s_markers_32k.mp3"  # ships with the notebooks


def test_a_window_reads_the_same_everywhere(ip, emu: Emulator, audio: Path) -> None:
    source = audio / LONG
    label = "long_95s_markers_32k.mp3 [1:00–1:30]"
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"{source} --start 1:00 --end 1:30", "What?")
    player_text = cap.outputs[0].data["text/plain"]
    answer_text = cap.outputs[-1].data["text/plain"]
    assert f"▶ {label} · 30.0 s" in player_text
    assert answer_text.startswith(f"[{label} · 30.0 s] What?")
    assert answer.clips[0].label().startswith(label)
    plan = ip.run_cell_magic("qaudio", f"{source} --start 60 --end 90 --new --dry-run", "What?")
    assert str(plan).splitlines()[2].split()[:2] == ["long_95s_markers_32k.mp3", "1:00–1:30"]
    assert Player(AudioClip.from_source(source)[60:90]).label.startswith(label)
    batch = ip.run_cell_magic("qaudio", f"{source} --start 60 --end 90 --batch", "Q")
    row = batch._repr_mimebundle_()[0]["text/plain"].splitlines()[3]
    assert label in row
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "history")
    assert label in cap.outputs[0].data["text/plain"]


def test_the_terminal_gets_text_as_it_arrives(session: Session, emu: Emulator, audio: Path):
    with capture_output() as cap:
        view = AnswerView([], question="Q", notes=["a note"], mode="plain")
        view.start()
        view.add("Hello ")
        view.add("world")
        view.finish("model · 1.0 s", {})
    assert cap.stdout == "💬 follow-up\nnote: a note\nHello world\n-- model · 1.0 s\n"


def test_a_notebook_gets_the_player_first_then_one_answer_updated_in_place(
    ip, emu: Emulator, audio: Path
) -> None:
    emu.reply_with("The word is at 1.5 s.")
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(audio / "words_at_1.5s_and_4.0s.wav"), "Where?")
    widget = "application/vnd.jupyter.widget-view+json"
    assert widget in cap.outputs[0].data  # the player
    answers = [o for o in cap.outputs if "text/html" in o.data and widget not in o.data]
    assert answers[0].metadata["qaudio"]["status"] == "streaming"
    final = answers[-1]
    assert final.metadata["qaudio"]["status"] == "complete"
    assert "⏱ times: 1.5 s" in final.data["text/plain"]
    assert [s.label() for s in answer.segments] == ["1.5 s"]
    # the player's own plain-text fallback lists the times too, once the answer is complete
    assert "⏱ times: 1.5 s" in cap.outputs[-2].data["text/plain"] or any(
        "⏱ times: 1.5 s" in o.data.get("text/plain", "") and widget in o.data for o in cap.outputs
    )


@pytest.mark.parametrize("seconds", [0.5, 59.994, 75.0, 3690.0])
def test_one_time_format(seconds: float) -> None:
    from qaudio_magic._format import seconds as label

    text = label(seconds)
    assert re.fullmatch(r"\d+(\.\d+)? s|\d+:\d\d(:\d\d)?(\.\d+)?", text), text


def test_a_url_clips_footer_says_its_length_is_unknown(
    ip, emu: Emulator, audio: Path, file_server
) -> None:
    """Issue 14 (10): the service fetches a URL itself, so its length is not known here;
    the footer said 'audio 0.0 s ≈ 750 tok'."""
    base, root = file_server
    (root / "clip.wav").write_bytes((audio / "speech_en.wav").read_bytes())
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"{base}/clip.wav", "What is said?")
    assert "audio 1 URL clip of unknown length ≤ 750 tok" in answer.footer()
    assert "0.0 s" not in answer.footer()
    assert "audio 1 URL clip of unknown length" in cap.outputs[-1].data["text/plain"]
    follow = ask_audio(audio / "tone_440hz_3s.wav", "And this one?", display=False)
    assert "audio 3.0 s + 1 URL clip of unknown length ≤ 825 tok" in follow.footer()


def test_the_footer_wraps_between_its_parts_never_inside_a_request_id(
    ip, emu: Emulator, audio: Path
) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    html = cap.outputs[-1].data["text/html"]
    assert answer.request_id
    assert f'<span style="white-space:nowrap">request {answer.request_id}</span>' in html


def test_a_notebook_shows_the_answer_once_and_keeps_it_in_underscore(
    ip, emu: Emulator, audio: Path
) -> None:
    """Issue 14 (6): the display hook adds no second copy of an answer shown live, and
    `_` / `Out[n]` still hold the Answer; displayed in a later cell, it shows again."""
    with capture_output() as cap:
        ip.run_cell(f"%%qaudio {audio / 'speech_en.wav'}\nWhat is said?", store_history=True)
    answer = ip.user_ns["_"]
    assert answer.text.startswith("Emulated answer")
    assert ip.user_ns["Out"][ip.execution_count - 1] is answer
    answers = [o for o in cap.outputs if "qaudio" in o.metadata]
    assert answers[-1].metadata["qaudio"]["status"] == "complete"
    assert sum(o.metadata["qaudio"].get("status") == "complete" for o in answers) == 1
    with capture_output() as cap:
        ip.run_cell("_", store_history=True)  # asked for again: shown again
    assert len(cap.outputs) == 1 and cap.outputs[0].data["text/plain"].endswith(
        f"request {answer.request_id}"
    )
