"""The waveform player's Python side: peaks, traits, selection, audio sent once, fallbacks.

The browser side (chips play their segment, drag selection reaches Python) is driven in
tests/e2e/test_player_browser.py; timings of the 30-minute case live in bench/bench_player.py.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import traitlets
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import AudioClip, ask_audio
from qaudio_magic import player as player_mod
from qaudio_magic._codec import decode, probe
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import InputError
from qaudio_magic.player import BINS, Player, compute_peaks, selected_player
from qaudio_magic.segments import Segment

WIDGET = "application/vnd.jupyter.widget-view+json"
WORDS = "words_at_1.5s_and_4.0s.wav"  # silence, "apple" 1.500–1.851 s, "orange" 4.000–4.426 s
ANSWER = "'apple' 从第1.5秒开始出现,至第1.85秒结束; 'orange' is heard from 4.0 to 4.43 seconds."


def pairs(peaks: bytes) -> np.ndarray:
    return np.frombuffer(peaks, dtype=np.int8).reshape(-1, 2).astype(int)


@pytest.fixture(autouse=True)
def _fresh_players() -> None:
    """Each test starts with no shared audio models and no remembered selection."""
    player_mod._AUDIO.clear()
    player_mod._selected.clear()


# ---------------------------------------------------------------------- peaks
def test_peaks_of_the_timing_clip_show_where_the_words_are(audio: Path) -> None:
    p = Player(audio / WORDS)
    assert p.duration == pytest.approx(6.0)
    peaks = pairs(p.peaks)
    assert len(p.peaks) <= 2 * BINS and len(peaks) == BINS
    amp = np.maximum(-peaks[:, 0], peaks[:, 1])
    at = lambda t: int(t / 6.0 * len(peaks))  # noqa: E731 - bin index of a time
    assert amp[: at(1.45)].max() == 0, "digital silence before 'apple'"
    assert amp[at(1.55) : at(1.8)].max() > 20
    assert amp[at(2.0) : at(3.95)].max() == 0
    assert amp[at(4.05) : at(4.4)].max() > 20
    assert amp.max() == 127  # scaled to the loudest


def test_peaks_stay_bounded_for_30_minutes_of_blocks() -> None:
    """Memory is O(bins): the envelope merges hops instead of growing with the length."""
    rate, block = 16_000, 1152
    env = player_mod._Envelope(rate, BINS)
    rng = np.random.default_rng(0)
    noise = rng.uniform(-0.5, 0.5, 16 * block).astype(np.float32)
    worst = 0
    for i in range(30 * 60 * rate // block):
        chunk = noise[(i % 16) * block : (i % 16 + 1) * block]
        if i == 12_500:  # one loud click, at 15 minutes
            chunk = chunk.copy()
            chunk[0] = 1.0
        env.add(chunk)
        worst = max(worst, env.count + env.npending // env.hop)
    peaks = env.finish()
    assert worst <= 4 * BINS + env._BATCH // (rate // 1000) + 2
    assert len(peaks) == 2 * BINS
    assert env.samples == 30 * 60 * rate // block * block
    click = pairs(peaks)[:, 1].argmax()
    assert abs(click - 12_500 * block / env.samples * BINS) <= 1


def test_compute_peaks_of_a_short_signal_keeps_every_hop() -> None:
    x = np.zeros(16_000, dtype=np.float32)
    x[8000:8016] = -0.5
    peaks, seconds = compute_peaks([x[:5000], x[5000:]], 16_000)
    assert seconds == 1.0
    got = pairs(peaks)
    assert len(got) == 1000  # 1 ms hops, fewer than BINS
    assert got[500].tolist() == [-127, -127] and got[:500].max() == 0 == got[501:].max()


# ---------------------------------------------------------------------- audio bytes
def test_browser_gets_the_file_itself_once_per_clip(audio: Path) -> None:
    p = Player(audio / WORDS)
    assert bytes(p.audio.value) == (audio / WORDS).read_bytes()
    assert p.audio.mime == "audio/wav"
    again = Player(str(audio / WORDS), segments=[(1.5, 1.85)])
    assert again.audio is p.audio, "a second player of the same clip must not re-send audio"


def test_segment_changes_never_resend_audio(audio: Path) -> None:
    p = Player(audio / WORDS)
    sent: list[tuple[Any, Any]] = []
    p.comm.send = lambda data=None, metadata=None, buffers=None: sent.append((data, buffers))
    p.segments = [(1.5, 1.85), Segment(4.0, None, "4 s")]
    p.selection = (1.0, 2.0)
    assert sent, "state changes must reach the front end"
    for data, buffers in sent:
        assert not buffers, "no binary buffers (audio or peaks) on segment/selection changes"
        assert set(data["state"]) <= {"segments", "selection"}


def test_unplayable_or_big_audio_is_reencoded(
    audio: Path, media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gsm = Player(media / "formats" / "en_gsm_ms_8k_mono.wav")
    assert gsm.audio.mime == "audio/wav" and probe(bytes(gsm.audio.value)).codec == "pcm_s16le"
    monkeypatch.setattr(player_mod, "MAX_INLINE_BYTES", 100_000)  # the 192 KB WAV is "too big"
    big = Player(audio / WORDS)
    data = bytes(big.audio.value)
    assert big.audio.mime == "audio/webm" and len(data) < 40_000
    info = probe(data)
    assert info.codec == "opus" and info.duration == pytest.approx(6.0, abs=0.05)


def test_windowed_clip(audio: Path) -> None:
    clip = AudioClip.from_source(audio / WORDS)[1.0:3.0]
    p = Player(clip, text="apple at 0.5 s")
    assert p.duration == pytest.approx(2.0)
    assert p.label.startswith(WORDS) and "[1–3 s]" in p.label
    assert bytes(p.audio.value)[:4] == b"RIFF"
    assert len(decode(bytes(p.audio.value))) == 32_000
    (seg,) = p.segments
    assert seg["start"] == 0.5
    p.selection = [0.4, 1.0]
    sel = p.selection_clip
    assert (sel.start, sel.end) == (1.4, 2.0)


def test_remote_clip_streams_from_its_url() -> None:
    p = Player("https://example.com/talk.mp3")
    assert p.src == "https://example.com/talk.mp3" and p.audio is None and p.peaks == b""
    oss = Player("oss://bucket/talk.mp3")
    assert oss.src == "" and "cannot be played" in oss.note


# ---------------------------------------------------------------------- traits
def test_segments_accept_segments_pairs_and_dicts(audio: Path) -> None:
    p = Player(audio / WORDS)
    p.segments = [Segment(1.5, 1.85, "1.5 s"), (4.0, None), {"start": 5, "end": 5.5}, (7.0, 8.0)]
    assert [(s["start"], s["end"], s["label"]) for s in p.segments] == [
        (1.5, 1.85, "1.5–1.85 s"),
        (4.0, None, "4 s"),
        (5.0, 5.5, "5–5.5 s"),
    ], "times beyond the clip are dropped"
    with pytest.raises(traitlets.TraitError, match="start < end"):
        p.segments = [(2.0, 1.0)]
    with pytest.raises(traitlets.TraitError, match="seconds"):
        p.segments = ["soon"]


def test_text_becomes_segments(audio: Path) -> None:
    p = Player(audio / WORDS, text=ANSWER + " Also at 12 s.")
    assert [(s["start"], s["end"]) for s in p.segments] == [(1.5, 1.85), (4.0, 4.43)]
    assert p.segments[0]["text"] == "1.5秒开始出现,至第1.85秒"


def test_selection_from_the_browser_is_validated(audio: Path) -> None:
    p = Player(audio / WORDS)
    p.set_state({"selection": [2.5, 1.25]})  # what a drag sends: a JSON list
    assert p.selection == (1.25, 2.5)
    p.set_state({"selection": [-1, 99]})
    assert p.selection == (0.0, 6.0)
    p.set_state({"selection": [1.0, 1.001]})
    assert p.selection is None
    with pytest.raises(traitlets.TraitError):
        p.selection = "everything"


def test_selection_clip_and_the_most_recent_selection(audio: Path) -> None:
    words, tone = Player(audio / WORDS), Player(audio / "tone_440hz_3s.wav")
    with pytest.raises(InputError, match="nothing selected"):
        words.selection_clip  # noqa: B018
    with pytest.raises(InputError, match="no player has a selection"):
        selected_player()
    words.selection = (1.4, 2.0)
    clip = words.selection_clip
    assert (clip.start, clip.end) == (1.4, 2.0) and clip.duration == pytest.approx(0.6)
    assert selected_player() is words
    tone.selection = (0.5, 1.5)
    assert selected_player() is tone
    tone.selection = None
    assert selected_player() is words, "clearing falls back to the previous selection"


# ---------------------------------------------------------------------- fallbacks
def test_static_fallback_lists_the_times(audio: Path) -> None:
    p = Player(audio / WORDS, text=ANSWER)
    data, _ = p._repr_mimebundle_()
    assert WIDGET in data
    assert data["text/plain"] == (
        f"▶ {WORDS} · 6.0 s (audio player; run the cell to listen)\n⏱ times: 1.5–1.85 s, 4–4.43 s"
    )
    assert "1.5–1.85 s" in repr(p)


def test_answer_view_player_gets_the_answers_segments(
    ip, emu: Emulator, audio: Path, tmp_path: Path
) -> None:
    shutil.copy(audio / WORDS, tmp_path / WORDS)
    emu.reply_with(ANSWER)
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(tmp_path / WORDS), "Where are the words?")
    assert [s.as_tuple() for s in answer.segments] == [(1.5, 1.85), (4.0, 4.43)]
    assert answer.metadata()["segments"] == [[1.5, 1.85], [4.0, 4.43]]
    players = [o for o in cap.outputs if WIDGET in o.data]
    assert players[0].data["text/plain"].startswith(f"▶ {WORDS}")
    assert "times" not in players[0].data["text/plain"], "no times before the answer is in"
    assert players[-1].update, "the player's output is updated in place, not shown twice"
    assert players[-1].data["text/plain"].endswith("⏱ times: 1.5–1.85 s, 4–4.43 s")
    final = cap.outputs[-1].data
    assert "⏱ times: 1.5–1.85 s, 4–4.43 s" in final["text/plain"]
    assert "◷ times: 1.5–1.85 s, 4–4.43 s" in final["text/html"], "no emoji font needed"
    # the Answer's own display (e.g. `answers[0]` in a later cell) lists them too
    data, _ = answer._repr_mimebundle_()
    assert "⏱ times: 1.5–1.85 s, 4–4.43 s" in data["text/plain"]


def test_asking_again_about_a_clip_sends_no_audio_again(ip, emu: Emulator, audio: Path) -> None:
    from ipywidgets.widgets.widget import _instances

    shown = []
    for question in ("What is said?", "And who says it?"):
        with capture_output() as cap:
            ip.run_cell_magic("qaudio", f"{audio / WORDS} --new", question)
        model_id = next(o for o in cap.outputs if WIDGET in o.data).data[WIDGET]["model_id"]
        shown.append(_instances[model_id])
    first, second = shown
    assert first is not second and isinstance(first, Player)
    assert first.audio is second.audio, "the same audio model: its bytes went to the browser once"
    assert len(player_mod._AUDIO) == 1


def test_follow_up_shows_the_conversation_clip_above_the_answer_like_a_first_answer(
    ip, emu: Emulator, audio: Path
) -> None:
    """One layout (issue 14, item 10): a follow-up's player sits above its answer, as a
    first answer's does, and gets the times once the answer is complete."""
    with capture_output() as first:
        ip.run_cell_magic("qaudio", str(audio / WORDS), "What is said?")
    emu.reply_with("'orange' 从第4.0秒开始出现,至第4.43秒结束。")
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", "", "When is 'orange' said?")
    assert [s.as_tuple() for s in answer.segments] == [(4.0, 4.43)]
    for outputs in (first.outputs, cap.outputs):
        assert WIDGET in outputs[0].data, "the player comes first"
        assert WIDGET not in outputs[-1].data and "text/html" in outputs[-1].data
    players = [o for o in cap.outputs if WIDGET in o.data]
    assert WORDS in players[0].data["text/plain"]
    assert players[-1].update and players[-1].data["text/plain"].endswith("⏱ times: 4–4.43 s")
    assert "⏱ times: 4–4.43 s" in cap.outputs[-1].data["text/plain"]


def test_times_are_relative_to_what_was_sent(ip, emu: Emulator, media: Path) -> None:
    """A 95 s clip: the model hears 0–30 s, so 45 s is not a link; windows keep absolute times."""
    long = media / "long" / "long_95s_markers.wav"
    emu.reply_with("Marker 1 is at 10 s, marker 4 at 45 s.")
    answer = ask_audio(str(long), "Where are the markers?", display=False)
    assert [s.as_tuple() for s in answer.segments] == [(10.0, None)]
    clip = AudioClip.from_source(long)[40:70]
    emu.reply_with("Marker 5 is at 10 s.")
    (seg,) = ask_audio(clip, "And here?", display=False).segments
    assert (seg.start, seg.abs_start) == (10.0, 50.0)


def test_several_clips_give_no_segments(ip, emu: Emulator, audio: Path) -> None:
    emu.reply_with("The first has a word at 1.5 s.")
    answer = ip.run_cell_magic(
        "qaudio", f"{audio / WORDS} {audio / 'tone_440hz_3s.wav'}", "Compare."
    )
    assert answer.segments == ()


def test_terminal_prints_the_times(ip, emu: Emulator, audio: Path, capsys) -> None:
    emu.reply_with(ANSWER)
    ip.run_cell_magic("qaudio", str(audio / WORDS), "Where?")
    out = capsys.readouterr().out
    assert "⏱ times: 1.5–1.85 s, 4–4.43 s" in out


# ---------------------------------------------------------------------- --selection
def test_magic_asks_about_the_selection(ip, emu: Emulator, audio: Path) -> None:
    words = Player(audio / WORDS)
    words.set_state({"selection": [1.25, 2.25]})
    answer = ip.run_cell_magic("qaudio", "--selection", "What is said here?")
    assert "1 audio clip (1.00 s)" in answer.text, "the emulator decoded just the selection"
    (clip,) = answer.clips
    assert (clip.start, clip.end) == (1.25, 2.25)
    again = ask_audio(words.selection_clip, "Again, from Python.", new=True, display=False)
    assert "1 audio clip (1.00 s)" in again.text


def test_selection_errors_are_one_line(ip, emu: Emulator, audio: Path) -> None:
    before = len(emu.generation_requests())
    with pytest.raises(UsageError, match="no player has a selection; drag on a waveform"):
        ip.run_cell_magic("qaudio", "--selection", "What?")
    Player(audio / WORDS).selection = (1, 2)
    with pytest.raises(UsageError, match="give no SOURCE"):
        ip.run_cell_magic("qaudio", f"{audio / WORDS} --selection", "What?")
    assert len(emu.generation_requests()) == before


def test_no_autoplay_and_static_files_ship_with_the_package() -> None:
    js = (player_mod._STATIC / "player.js").read_text()
    assert "autoplay = false" in js and ".play()" in js
    assert "innerHTML" not in js, "model text must never become markup"
    assert not any(line.startswith("import ") for line in js.splitlines()), "self-contained"
    fetched = js.replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not a URL
    assert not any(s in fetched for s in ("http://", "https://", "cdn")), "no CDN: works offline"
    assert (player_mod._STATIC / "player.css").exists()


# ---------------------------------------------------------------------- evidence and timeline
def test_the_player_carries_speech_band_spectrogram_and_grounding(
    session: object, emu: Emulator, audio: Path
) -> None:
    emu.reply_with("'apple' from 1.56 to 1.93 seconds; a dog barks from 2.5 to 3.2 s.")
    answer = ask_audio(audio / WORDS, "Where?", display=False)
    p = Player(audio / WORDS, segments=answer.segments)
    assert [[round(a, 1), round(b, 1)] for a, b in p.speech] == [[1.5, 1.9], [4.0, 4.4]]
    assert p.detail and not p.lazy
    assert p.spectrogram_mime in ("image/webp", "image/png")
    assert 0 < len(p.spectrogram) <= 32 * 1024
    word, dog = p.segments
    assert word["grounding"]["status"] == "speech"
    assert word["grounding"]["text"].startswith("model said 1.56–1.93 s; speech at 1.5")
    assert dog["grounding"]["status"] == "silence"


def test_a_zoomed_view_gets_finer_detail_from_the_kernel(
    audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser's request (a custom comm message) is answered with peaks of just the
    visible span, on the overview's scale, and a spectrogram slice."""
    p = Player(audio / WORDS)
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    monkeypatch.setattr(p, "send", lambda content, buffers=None: sent.append((content, buffers)))
    p._handle_custom_msg({"type": "detail", "id": 7, "start": 1.4, "end": 1.9, "bins": 500}, [])
    ((content, (peaks, image)),) = sent
    assert content["id"] == 7 and content["start"] == 1.4
    assert content["end"] == pytest.approx(1.9)
    detail = pairs(peaks)
    assert len(detail) == 500  # 1 ms a bin: a 50 ms-per-100-px view at 500 px
    amp = np.maximum(-detail[:, 0], detail[:, 1])
    assert amp[:90].max() == 0 and amp[120:400].max() > 20, "silence, then 'apple' at 1.5 s"
    assert amp.max() <= 127 and content["mime"].startswith("image/") and len(image) > 100


def test_a_long_clip_computes_its_evidence_when_a_browser_asks(tmp_path: Path) -> None:
    from tests._synth import write_long_wav

    p = Player(write_long_wav(tmp_path / "long.wav", 150))
    assert p.lazy and p.spectrogram == b"" and p.speech == []
    done = threading.Event()
    p.observe(lambda _change: done.set(), names="lazy")
    p._handle_custom_msg({"type": "evidence"}, [])  # as the browser asks, once shown
    assert done.wait(60), "computed off the main thread, then synced"
    assert not p.lazy and p.spectrogram and p.sound == [[0.0, 150.0]] and p.speech == []


def test_windows_timeline_is_one_player_with_absolute_times(
    session: object, emu: Emulator, audio: Path
) -> None:
    from qaudio_magic.player import timeline

    emu.add_fault("status=400;code=InvalidParameter;times=1")  # the first window fails
    emu.reply_with(
        "The voice says 'marker three' from 0:00.75 to 0:02.",
        "'marker six' starts at 0.75 s.",
        "Marker nine at 0:00.75.",
    )
    answers = ask_audio(
        audio / "long" / "long_95s_markers_32k.mp3", "Q", windows=30, progress=False, concurrency=1
    )
    p = timeline(answers)
    assert p is not None and p.duration == pytest.approx(95.0, abs=0.1)
    assert [(w["label"], w["status"]) for w in p.windows] == [
        ("0:00–0:30", "failed"),
        ("0:30–1:00", "done"),
        ("1:00–1:30", "done"),
        ("1:30–1:35", "done"),
    ]
    assert "InvalidParameter" in p.windows[0]["error"]
    by_window = {s["window"]: s for s in p.segments}
    assert by_window[1]["label"] == "0:30.75–0:32" and by_window[1]["start"] == 30.75
    assert by_window[2]["label"] == "1:00.75"
    g = by_window[1]["grounding"]
    assert g["status"] == "speech" and g["start"] == pytest.approx(30.75, abs=0.15)
    assert p.plain_text().startswith("▶ long_95s_markers_32k.mp3")


def test_an_hour_long_file_zooms_to_50_ms_per_100_px(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1-hour file: the deepest view (half a second on 1000 px) gets its own peaks, decoded
    from just that span, on the whole file's scale."""
    from tests._synth import dominant_hz, write_long_wav

    p = Player(write_long_wav(tmp_path / "hour.wav", 3600))
    assert p.duration == pytest.approx(3600.0) and p.lazy, "the picture waits for a browser"
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    monkeypatch.setattr(p, "send", lambda content, buffers=None: sent.append((content, buffers)))
    p._handle_custom_msg(
        {"type": "detail", "id": 1, "start": 1800.0, "end": 1800.5, "bins": 2000}, []
    )
    ((content, (peaks, _image)),) = sent
    assert (content["start"], content["end"]) == (1800.0, pytest.approx(1800.5))
    detail = pairs(peaks)
    assert len(detail) == 2000 and np.abs(detail).max() == 127  # the tone at full scale
    wave = detail[:, 1].astype(float)  # 4 samples a bin at 16 kHz: the maxima trace the tone
    assert dominant_hz(np.repeat(wave, 4)) == pytest.approx(600.0, abs=10)  # minute 30: 600 Hz
