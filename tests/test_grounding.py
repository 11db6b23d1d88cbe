"""Grounding on labelled audio: real words placed at known offsets, tones, silence, noise.

The words ship in tests/data/words (one word per file, so its true boundaries are known to
the sample); tests/_labelled.py places them. Segments come from answer sentences through
``find_segments``, as after a real answer; the asking path is covered in test_player.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from qaudio_magic import _vad, grounding
from qaudio_magic.clip import AudioClip
from qaudio_magic.emulator import Emulator
from qaudio_magic.grounding import Grounding, ground, ground_segments, map_for_clip, speech_map
from qaudio_magic.segments import Segment, find_segments
from tests._labelled import RATE, Scene, word


def _clip(tmp_path: Path, scene: Scene, name: str = "scene.wav") -> AudioClip:
    return AudioClip.from_source(scene.wav(tmp_path / name))


def _one(text: str, clip: AudioClip) -> Grounding:
    smap = map_for_clip(clip)
    segs = ground_segments(find_segments(text, duration=clip.duration), smap)
    assert len(segs) == 1, segs
    assert segs[0].grounding is not None
    return segs[0].grounding


@pytest.mark.parametrize("background", ["silence", "white noise at 10 dB SNR"])
@pytest.mark.parametrize("name", ["apple", "orange", "hello"])
def test_a_range_over_a_spoken_word_is_speech_snapped_to_the_word(
    tmp_path: Path, background: str, name: str
) -> None:
    scene = Scene(8.0)
    a, b = scene.say(3.2, name)
    scene.beep(6.5, 0.5)  # something else audible in the clip
    if background != "silence":
        scene.noise(10.0, "white")
    clip = _clip(tmp_path, scene)
    # the model is 50-90 ms off at both ends, as real answers are
    g = _one(f"'{name}' is heard from {a + 0.07:.2f} to {b - 0.09:.2f} seconds.", clip)
    assert g.status == "speech"
    assert g.start == pytest.approx(a, abs=0.1)
    assert g.end == pytest.approx(b, abs=0.1)
    assert g.said_start == pytest.approx(a + 0.07, abs=0.006)
    assert "speech at" in g.describe() and g.describe().startswith("model said")


def test_a_range_in_silence_is_silence_and_keeps_the_models_times(tmp_path: Path) -> None:
    scene = Scene(8.0)
    scene.say(1.0, "apple")
    scene.say(6.0, "orange")
    g = _one("The dog barks between 2.5 and 4.5 seconds.", _clip(tmp_path, scene))
    assert g.status == "silence"
    assert (g.start, g.end) == (2.5, 4.5)
    assert g.describe() == "model said 2.5–4.5 s; nothing audible here"


def test_a_tone_burst_is_sound_not_speech(tmp_path: Path) -> None:
    scene = Scene(6.0)
    a, b = scene.beep(2.0, 0.6, 1000.0)
    scene.say(4.5, "yes")
    g = _one("A beep sounds from 1.9 to 2.5 s.", _clip(tmp_path, scene))
    assert g.status == "sound"
    assert g.start == pytest.approx(a, abs=0.05)
    assert g.end == pytest.approx(b, abs=0.05)


def test_points_go_to_the_region_that_holds_them_or_starts_nearest(tmp_path: Path) -> None:
    scene = Scene(10.0)
    a, b = scene.say(2.0, "hello")
    c, _ = scene.beep(6.0, 0.4)
    smap = map_for_clip(_clip(tmp_path, scene))
    inside = ground(Segment(2.2, None, "2.2 s"), smap)
    before = ground(Segment(1.7, None, "1.7 s"), smap)  # the word starts 0.3 s later
    tone = ground(Segment(5.8, None, "5.8 s"), smap)
    nothing = ground(Segment(8.5, None, "8.5 s"), smap)
    assert inside.status == before.status == "speech"
    for g in (inside, before):
        assert g.start == pytest.approx(a, abs=0.1) and g.end == pytest.approx(b, abs=0.1)
    assert tone.status == "sound" and tone.start == pytest.approx(c, abs=0.05)
    assert (nothing.status, nothing.start, nothing.end) == ("silence", 8.5, None)


def test_a_window_grounds_in_its_own_time_and_in_absolute_time(tmp_path: Path) -> None:
    scene = Scene(40.0)
    a, b = scene.say(33.0, "orange")
    clip = _clip(tmp_path, scene)
    window = clip[30:40]
    g = _one("orange: 3.05 to 3.4 seconds", window)
    assert g.status == "speech"
    assert g.start == pytest.approx(a - 30, abs=0.1) and g.end == pytest.approx(b - 30, abs=0.1)
    seg = ground_segments(
        find_segments("at 3.1 s", duration=10.0, offset=30.0), map_for_clip(window)
    )
    assert seg[0].abs_start == pytest.approx(33.1)
    assert seg[0].grounding is not None and seg[0].grounding.start is not None
    assert seg[0].offset + seg[0].grounding.start == pytest.approx(a, abs=0.1)


def test_windows_of_one_source_reuse_its_analysed_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = Scene(70.0)
    scene.say(10.0, "apple")
    scene.say(45.0, "hello")
    clip = _clip(tmp_path, scene)
    calls: list[int] = []
    real = _vad.speech_probs
    monkeypatch.setattr(_vad, "speech_probs", lambda x: calls.append(len(x)) or real(x))
    whole = map_for_clip(clip)
    assert whole is not None and len(calls) == 3  # three 30 s blocks
    part = map_for_clip(clip[40:55])
    assert len(calls) == 3, "a window of an analysed source runs no detector again"
    assert part is not None and part.speech[0][0] == pytest.approx(5.0, abs=0.1)
    assert whole.speech[-1][0] == pytest.approx(45.0, abs=0.1)


def test_audio_that_cannot_be_read_has_no_status() -> None:
    remote = AudioClip.from_source("https://example.invalid/talk.mp3")
    assert map_for_clip(remote) is None
    g = ground(Segment(1.0, 2.0, "1 to 2 s"), None)
    assert (g.status, g.start, g.end) == (None, None, None)
    assert g.describe() == "model said 1–2 s; the audio could not be checked"


def test_a_range_cut_at_the_clip_end_says_so(tmp_path: Path) -> None:
    scene = Scene(3.0)
    scene.say(0.5, "yes")
    g = _one("The word lasts from 0.2 s until 4.2 s.", _clip(tmp_path, scene))
    assert g.clipped and g.clip_end == pytest.approx(3.0)
    assert g.said_end == 4.2
    assert "model said 0.2–4.2 s; the clip ends at 3 s" in g.describe()


def test_segments_stay_what_existing_callers_expect() -> None:
    seg = Segment(1.5, 1.85, "1.5 to 1.85 s")
    grounded = replace(seg, grounding=Grounding("speech", 1.5, 1.86, 1.5, 1.85))
    assert grounded == seg and grounded.as_tuple() == (1.5, 1.85)
    assert seg.grounding is None and grounded.label() == seg.label()


def test_speech_map_of_an_array_at_another_rate() -> None:
    x = np.concatenate([np.zeros(RATE), word("apple"), np.zeros(RATE)])
    up = np.interp(np.arange(round(len(x) * 3)) / 3, np.arange(len(x)), x).astype(np.float32)
    smap = speech_map(up, rate=48_000)
    assert len(smap.speech) == 1
    assert smap.speech[0][0] == pytest.approx(1.0, abs=0.05)
    assert smap.as_dict()["speech"] == [[smap.speech[0][0], smap.speech[0][1]]]


def test_labelled_corpus_words(audio: Path) -> None:
    """The corpus's timing clip (shipped in notebooks/audio): 'apple' 1.500–1.851 s and
    'orange' 4.000–4.426 s; and its 440 Hz tone."""
    smap = map_for_clip(AudioClip.from_source(audio / "words_at_1.5s_and_4.0s.wav"))
    assert smap is not None and len(smap.speech) == 2
    for (a, b), (ta, tb) in zip(smap.speech, [(1.5, 1.851), (4.0, 4.426)], strict=True):
        assert a == pytest.approx(ta, abs=0.1) and b == pytest.approx(tb, abs=0.1)
    tone = map_for_clip(AudioClip.from_source(audio / "tone_440hz_3s.wav"))
    assert tone is not None and tone.speech == () and tone.sound == ((0.0, 3.0),)


def test_the_block_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grounding, "_MAX_BLOCKS", 2)
    grounding._BLOCKS.clear()
    for i in range(3):
        scene = Scene(2.0)
        scene.beep(0.5, 0.2, 300.0 + 100 * i)
        map_for_clip(_clip(tmp_path, scene, f"s{i}.wav"))
    assert len(grounding._BLOCKS) == 2


# ---------------------------------------------------------------------- after a real answer
def test_an_answer_s_segments_are_grounded_against_what_was_sent(
    session: object, emu: Emulator, tmp_path: Path
) -> None:
    """ask_audio over real HTTP: the answer's times are checked against the clip sent."""
    from qaudio_magic import ask_audio

    scene = Scene(10.0)
    a, b = scene.say(2.0, "apple")
    c, d = scene.beep(6.0, 0.5)
    path = scene.wav(tmp_path / "words.wav")
    emu.reply_with(
        f"'apple' from {a + 0.06:.2f} to {b + 0.08:.2f} seconds; a beep from {c - 0.1:.2f} to "
        f"{d:.2f} s; a dog barks between 8 and 9.5 s."
    )
    answer = ask_audio(path, "What happens where?", display=False)
    word, beep, dog = answer.segments
    assert word.as_tuple() == (round(a + 0.06, 2), round(b + 0.08, 2)), "the model's own times"
    assert word.grounding is not None and word.grounding.status == "speech"
    assert word.grounding.start == pytest.approx(a, abs=0.1)
    assert word.grounding.end == pytest.approx(b, abs=0.1)
    assert beep.grounding is not None and beep.grounding.status == "sound"
    assert dog.grounding is not None and dog.grounding.status == "silence"
    assert answer.metadata()["segments"] == [list(s.as_tuple()) for s in answer.segments]


def test_a_window_s_answer_grounds_in_absolute_time(
    session: object, emu: Emulator, tmp_path: Path
) -> None:
    from qaudio_magic import ask_audio

    scene = Scene(20.0)
    a, b = scene.say(13.0, "orange")
    clip = AudioClip.from_source(scene.wav(tmp_path / "long.wav"))
    emu.reply_with("'orange' from 3.1 to 3.4 s.")
    answer = ask_audio(clip[10:20], "Where is 'orange'?", display=False)
    seg = answer.segments[0]
    assert seg.offset == 10.0 and seg.abs_start == pytest.approx(13.1)
    assert seg.grounding is not None and seg.grounding.status == "speech"
    assert seg.offset + (seg.grounding.start or 0) == pytest.approx(a, abs=0.1)
    assert seg.offset + (seg.grounding.end or 0) == pytest.approx(b, abs=0.1)


def test_a_url_clip_is_not_grounded(
    session: object, emu: Emulator, file_server: tuple[str, Path]
) -> None:
    """The service fetches a URL itself; the kernel never has its audio: status None."""
    from qaudio_magic import ask_audio

    url, folder = file_server
    scene = Scene(3.0)
    scene.say(1.5, "yes")
    scene.wav(folder / "yes.wav")
    emu.reply_with("The word is at 1.5 s.")
    answer = ask_audio(f"{url}/yes.wav", "Where?", display=False)
    assert answer.segments and answer.segments[0].grounding is not None
    assert answer.segments[0].grounding.status is None
    assert answer.segments[0].grounding.describe().endswith("the audio could not be checked")
