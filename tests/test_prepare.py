"""What reaches the service: originals or 16 kHz re-encodes, 30 s cuts, windows, URLs, dry runs.

Every check is made at the emulator, over real HTTP: it decodes what it received.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np
import pytest
from IPython.utils.capture import capture_output

from qaudio_magic import AudioClip, _codec, _prepare, ask_audio, sources
from qaudio_magic.emulator import Emulator, ReceivedAudio
from qaudio_magic.errors import AudioTooLargeError
from qaudio_magic.models import DASHSCOPE_ACCEPTS
from qaudio_magic.session import Session

from .test_codec import DTX, manifest, pyav_seconds


def sent(emu: Emulator) -> list[ReceivedAudio]:
    """Audio of the last model call's newest user message, as the emulator decoded it."""
    request = emu.generation_requests()[-1]
    messages = request.json["input"]["messages"]
    n = sum("audio" in item for item in messages[-1]["content"])
    return request.audio[len(request.audio) - n :]


def beep_hz(pcm: np.ndarray, at: float, rate: int = 16_000) -> float:
    """Dominant frequency of the 0.25 s beep that starts ``at`` seconds into ``pcm``."""
    seg = pcm[round(at * rate) : round((at + 0.25) * rate)]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    return float(np.argmax(spectrum) * rate / len(seg))


@pytest.mark.parametrize("upload", ["auto", "never"])
def test_every_format_reaches_the_emulator(
    session: Session, emu: Emulator, media_sets: Path, upload: str
) -> None:
    media = media_sets
    session.configure(upload=upload)
    rows = manifest(media)
    for path in sorted((media / "formats").iterdir()):
        rel = f"formats/{path.name}"
        ask_audio(path, "What is said?", display=False, new=True)
        (item,) = sent(emu)
        assert item.kind == ("oss" if upload == "auto" else "data"), rel
        expected = 5.12 if rel == DTX else pyav_seconds(rows[rel])
        assert abs(item.duration - expected) <= 0.1, (rel, item.duration)
        info = AudioClip.from_source(path).info
        if (info.container, info.codec) in DASHSCOPE_ACCEPTS:  # sent as it is
            assert item.sha256 == hashlib.sha256(path.read_bytes()).hexdigest(), rel
        else:  # decoded and re-encoded: 16 kHz mono 16-bit WAV
            assert (item.codec, item.sample_rate, item.channels) == ("pcm_s16le", 16_000, 1), rel
    # 18, not 19: en_mp3_named_as.wav holds the very bytes of en_mp3_64k.mp3 (same sha256)
    assert len(emu.upload_requests()) == (18 if upload == "auto" else 0)


def test_long_clip_sends_30_s_and_says_so(ip, emu: Emulator, media: Path) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(media / "long/long_95s_markers.wav"), "Q")
    note = (
        "long_95s_markers.wav is 95.0 s long: only 30 s (0–30 s) is sent, 65.0 s dropped. "
        "Use --start/--end (or clip[a:b]) to choose the part."
    )
    assert note in answer.notes
    shown = cap.outputs[-1].data
    assert f"note: {note}" in shown["text/plain"] and "65.0 s dropped" in shown["text/html"]
    assert "long_95s_markers.wav [0–30 s] · 30.0 s" in cap.outputs[0].data["text/plain"]  # player
    (item,) = sent(emu)
    assert item.duration == pytest.approx(30.0, abs=0.01)
    pcm = _codec.decode(item.data)
    assert [round(beep_hz(pcm, t)) for t in (0, 10, 20)] == [500, 600, 700]


@pytest.mark.parametrize("window", ["--start 60 --end 90", "--start 1:00 --end 1:30"])
def test_start_end_send_that_part(ip, emu: Emulator, media: Path, window: str) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic(
            "qaudio", f"{media / 'long/long_95s_markers.wav'} {window}", "Which marker?"
        )
    (item,) = sent(emu)
    assert item.duration == pytest.approx(30.0, abs=0.01)
    pcm = _codec.decode(item.data)
    assert [round(beep_hz(pcm, t)) for t in (0, 10, 20)] == [1100, 1200, 1300]
    assert answer.notes == ()  # nothing was cut beyond the window asked for
    assert "long_95s_markers.wav [1:00–1:30] · 30.0 s" in cap.outputs[0].data["text/plain"]


def test_slice_of_a_clip_and_the_player_holds_that_window(
    session: Session, emu: Emulator, media: Path
) -> None:
    from qaudio_magic.view import AnswerView

    clip = AudioClip.from_source(media / "long/long_95s_markers_32k.mp3")
    ask_audio(clip[80:95], "Q", display=False)
    (item,) = sent(emu)
    assert item.duration == pytest.approx(15.0, abs=0.01)
    assert round(beep_hz(_codec.decode(item.data), 0)) == 1300
    prepared = _prepare.prepare(clip[80:95], session.backend("qwen-audio-turbo-latest").limits(""))
    view = AnswerView([prepared], question="Q", mode="rich")
    with capture_output():
        view.start()
    played = _codec.probe(bytes(view.players[0].audio.value))  # the bytes the browser plays
    assert played.duration == pytest.approx(15.0, abs=0.01)


@pytest.mark.parametrize("upload", ["auto", "never"])
@pytest.mark.parametrize(
    ("rel", "seconds"),
    [
        ("long/big_65s_48k_stereo_12.5MB.wav", 30.0),
        ("long/b64edge_29s_48k_stereo_s24_8.4MB.wav", 29.0),
    ],
)
def test_large_wavs_arrive_within_limits(
    session: Session, emu: Emulator, media: Path, upload: str, rel: str, seconds: float
) -> None:
    session.configure(upload=upload)
    answer = ask_audio(media / rel, "Q", display=False)
    (item,) = sent(emu)
    assert item.size <= 10_000_000 and item.duration == pytest.approx(seconds, abs=0.01)
    assert (item.sample_rate, item.channels) == (16_000, 1)
    (value,) = [
        c["audio"] for c in emu.generation_requests()[-1].json["input"]["messages"][-1]["content"]
        if "audio" in c
    ]  # fmt: skip
    assert len(value) < 10_000_000  # the base64 string too, when inline
    assert value.startswith("oss://" if upload == "auto" else "data:;base64,")
    assert f"audio {seconds:.1f} s" in answer.footer()


def test_accepted_original_over_the_inline_budget_is_reencoded(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    """A 30 s 64 kHz stereo WAV (7.7 MB, accepted format): uploaded as is, or shrunk for inline."""
    rate = 64_000
    t = np.arange(30 * rate) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = tmp_path / "studio.wav"
    path.write_bytes(_codec.wav_bytes(np.stack([pcm, pcm]), rate))
    assert 7_000_000 < path.stat().st_size < 10_000_000
    ask_audio(path, "Q", display=False)
    assert sent(emu)[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    session.configure(upload="never")
    ask_audio(path, "Q", display=False, new=True)
    item = sent(emu)[0]
    assert item.kind == "data" and (item.sample_rate, item.channels) == (16_000, 1)


def test_url_passes_through_and_a_window_of_it_is_fetched(
    session: Session, emu: Emulator, audio: Path, media: Path, file_server
) -> None:
    base, root = file_server
    (root / "speech.wav").write_bytes((audio / "speech_en.wav").read_bytes())
    (root / "long.mp3").write_bytes((media / "long/long_95s_markers_32k.mp3").read_bytes())
    ask_audio(f"{base}/speech.wav", "Q", display=False)
    (item,) = sent(emu)
    assert item.kind == "url" and item.duration == pytest.approx(5.106, abs=0.01)
    value = emu.generation_requests()[-1].json["input"]["messages"][-1]["content"][0]["audio"]
    assert value == f"{base}/speech.wav"  # passed through untouched
    clip = AudioClip.from_source(f"{base}/long.mp3")
    ask_audio(clip[40:50], "Q", display=False)
    (item,) = sent(emu)
    assert item.kind == "oss" and item.duration == pytest.approx(10.0, abs=0.01)
    assert round(beep_hz(_codec.decode(item.data), 0)) == 900


def test_url_download_is_capped(
    session: Session, emu: Emulator, media: Path, file_server, monkeypatch
) -> None:
    base, root = file_server
    (root / "long.mp3").write_bytes((media / "long/long_95s_markers_32k.mp3").read_bytes())
    monkeypatch.setattr(sources, "MAX_FETCH_BYTES", 100_000)
    clip = AudioClip.from_source(f"{base}/long.mp3")
    with pytest.raises(AudioTooLargeError) as err:
        ask_audio(clip[40:50], "Q", display=False)
    assert (
        str(err.value) == f"{base}/long.mp3: 0.4 MB is over the 0.1 MB download cap for URL sources"
    )
    assert emu.requests == []


def test_dry_run_shows_the_plan_and_sends_nothing(ip, emu: Emulator, media: Path) -> None:
    long = media / "long/long_95s_markers.wav"
    with capture_output() as cap:
        plan = ip.run_cell_magic("qaudio", f"{long} --start 60 --end 90 --dry-run", "Q")
    assert cap.outputs == []  # shown as the cell's value, like any result
    assert emu.requests == []
    assert ip.run_line_magic("qaudio", "history") is None
    text = str(plan)
    assert text.startswith("Dry run: nothing sent.")
    row = text.splitlines()[2].split()
    assert row == ["long_95s_markers.wav", "1:00–1:30", "30.0", "750", "961", "KB", *row[6:]]
    assert "temporary upload, then oss://" in text
    assert plan.tokens == 750 and plan.upload_bytes == 960_044 + 1_000
    html = plan._repr_mimebundle_()["text/html"]
    assert "<table>" in html and "temporary upload, then oss://" in html
    # after a real turn, a follow-up's dry run lists the clip as history, already uploaded
    ip.run_cell_magic("qaudio", f"{long} --start 60 --end 90", "Q")
    before = len(emu.requests)
    follow = ip.run_cell_magic("qaudio", "--dry-run", "And then?")
    assert [(i.route, i.history) for i in follow.items] == [("uploaded", True)]
    assert follow.upload_bytes == 0 and follow.wire_bytes < 1_000
    assert len(emu.requests) == before
    emu.clear()
    # with uploads off, the base64 copy is the cost, in the request body itself
    ip.run_line_magic("config", "QAudioMagic.upload = 'never'")
    plan = ip.run_cell_magic("qaudio", f"{long} --start 60 --end 90 --dry-run", "Q")
    assert plan.items[0].route == "inline" and plan.upload_bytes == 0
    assert plan.request_bytes > 4 * 960_044 // 3
    assert emu.requests == []


def test_estimate_next_to_the_service_count(ip, emu: Emulator, media: Path) -> None:
    answer = ip.run_cell_magic("qaudio", str(media / "long/long_95s_markers.wav"), "Q")
    assert "audio 30.0 s ≈ 750 tok (service: 750)" in answer.footer()
    short = ip.run_cell_magic("qaudio", str(media / "speech/speech_en_single_word_yes.wav"), "Q")
    assert "≈ 775 tok (service: 775)" in short.footer()  # 750 + the 0.38 s clip's minimum of 25


def test_prepared_base64_sizes() -> None:
    assert len(base64.b64encode(b"x" * 960_044)) == 4 * -(-960_044 // 3)


def test_arrays_and_ipython_audio_reach_the_emulator(ip, emu: Emulator) -> None:
    import IPython.display

    rate = 48_000
    t = np.arange(2 * rate) / rate
    y = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ip.user_ns.update(
        y=y,
        sr=rate,
        take=(np.stack([y, y]), rate),
        player=IPython.display.Audio(y, rate=rate),
    )
    answer = ip.run_cell_magic("qaudio", "take", "Q")  # a variable holding (samples, rate)
    (item,) = sent(emu)
    assert (item.duration, item.sample_rate, item.channels) == (2.0, rate, 2)  # WAV as is
    answer = ip.run_cell_magic("qaudio", "y sr --start 0.5 --end 1.5", "Q")  # samples, then rate
    (item,) = sent(emu)
    assert item.duration == pytest.approx(1.0, abs=1e-3) and item.sample_rate == 16_000
    assert round(beep_hz(_codec.decode(item.data), 0.2)) == 440
    answer = ip.run_cell_magic("qaudio", "player", "Q")
    assert "1 audio clip (2.00 s)" in answer.text
