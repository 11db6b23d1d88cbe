"""Times in answers → segments: a table of answer sentences as the models write them.

Sentences follow Qwen-Audio's documented outputs ("'阿里' 从第1.53秒开始出现,至第1.87秒
结束") and the ways Qwen2-Audio / Qwen-Omni phrase times in English and Chinese, plus
sentences whose numbers are not positions and must yield nothing.
"""

from __future__ import annotations

import pytest

from qaudio_magic._format import seconds as format_time
from qaudio_magic.segments import Segment, find_segments

P = None  # a point in time: the segment has no end

# (answer text, clip duration in seconds, expected (start, end) pairs)
CASES: list[tuple[str, float | None, list[tuple[float, float | None]]]] = [
    # --- Chinese, as the DashScope documentation shows it
    ('"阿里" 从第1.53秒开始出现,至第1.87秒结束。', 5.0, [(1.53, 1.87)]),
    ("'苹果'这个词从第1.5秒开始出现,到第1.85秒结束。", 6.0, [(1.5, 1.85)]),
    ("说话人在第1.53秒说出了“钢铁厂”。", 5.0, [(1.53, P)]),
    ("狗叫声出现在1.53秒至1.87秒之间。", 5.0, [(1.53, 1.87)]),
    ("敲门声大约在2秒到3.5秒。", 10.0, [(2.0, 3.5)]),
    ("在1.5秒和4秒之间,背景里有鸟叫。", 6.0, [(1.5, 4.0)]),
    ("“apple”出现在1.5秒,“orange”出现在4.0秒。", 6.0, [(1.5, P), (4.0, P)]),
    ("音乐在1分20秒处变得激烈。", 120.0, [(80.0, P)]),
    ("前3秒是静音。", 6.0, [(0.0, 3.0)]),
    ("最后2秒只有背景噪声。", 6.0, [(4.0, 6.0)]),
    ("从0.5秒开始有人说话,一直到2.8秒。", 6.0, [(0.5, 2.8)]),
    ("第12秒左右能听到汽车喇叭声。", 30.0, [(12.0, P)]),
    ("该词出现于第4.0秒,结束于第4.43秒。", 6.0, [(4.0, 4.43)]),
    # --- English
    ("The word 'apple' occurs at 1.53s.", 5.0, [(1.53, P)]),
    ("The speaker says 'hello' at 1.53 seconds.", 5.0, [(1.53, P)]),
    ("'Orange' is spoken from 4.0 to 4.43 seconds.", 6.0, [(4.0, 4.43)]),
    ("Between 0:45 and 1:10 the speaker sounds angry.", 120.0, [(45.0, 70.0)]),
    ("The beep is at 00:01.53.", 5.0, [(1.53, P)]),
    ("At 1:20 a door slams.", 100.0, [(80.0, P)]),
    ("The dog barks at around 12 s.", 30.0, [(12.0, P)]),
    ("It starts at 1.5 s and ends at 1.85 s.", 6.0, [(1.5, 1.85)]),
    ("Speech: 0.5s-1.2s, then silence.", 6.0, [(0.5, 1.2)]),
    ("[00:01.50 - 00:01.85] apple [00:04.00 - 00:04.43] orange", 6.0, [(1.5, 1.85), (4.0, 4.43)]),
    ("Two words: one at 1.5 s and one at 4 s.", 6.0, [(1.5, P), (4.0, P)]),
    ("A car horn sounds at the 12-second mark.", 30.0, [(12.0, P)]),
    ("The tone lasts from 1500 to 1870 ms.", 5.0, [(1.5, 1.87)]),
    ("In the first 10 seconds there is only music.", 30.0, [(0.0, 10.0)]),
    ("In the last 2 seconds the music fades.", 6.0, [(4.0, 6.0)]),
    ("The singer enters at 1 min 20 s.", 120.0, [(80.0, P)]),
    ("From about 2 to about 3.5 seconds a bell rings.", 10.0, [(2.0, 3.5)]),
    ("The bark (at 12 s) is repeated at 1:02.", 90.0, [(12.0, P), (62.0, P)]),
    ("The laugh at 3 s and the laugh at 3 seconds are the same.", 10.0, [(3.0, P)]),
    ("The chime at 1:02:03 marks the hour.", 4000.0, [(3723.0, P)]),
    ("The final word runs from 4 s to 6.5 s.", 6.0, [(4.0, 6.0)]),  # end cut to the clip
    # --- numbers that are not positions: nothing
    ("The ratio of speech to silence is about 1:2.", 30.0, []),
    ("I would rate the recording quality 3.5 stars out of 5.", 30.0, []),
    ("This sounds like Qwen2.5 output; the toolkit is version 1.2.3.", 30.0, []),
    ("The audio is 10 seconds long.", 30.0, []),
    ("这段音频时长为6秒。", 6.0, []),
    ("A rapid hammering repeats every 0.5 to 0.6 seconds.", 30.0, []),
    ("The speaker pauses for 2 seconds before answering.", 30.0, []),
    ("It was recorded at 10:30 am in a café.", 30.0, []),
    ("下午3:30录制的。", 30.0, []),
    ("It sounds like a 1990s pop song.", 30.0, []),
    ("There are 2 speakers and 3 distinct sounds.", 30.0, []),
    ("每隔2秒响一次铃声。", 10.0, []),
    ("声音持续了0.4秒。", 10.0, []),
    ("A 10-second clip of rain.", 30.0, []),
    ("Then there is a 1.5-2 second pause.", 30.0, []),
    ("Two seconds later, about six seconds in, a dog barks.", 30.0, []),
    ("Emulated answer. This message has 1 audio clip (5.11 s); question: when?", 5.11, []),
    ("The clip is 16:9 video with a 1:20 ratio soundtrack.", 300.0, []),
    ("The recording took 3 minutes.", 300.0, []),
    # --- beyond the clip: dropped, not shown as links
    ("The dog barks at 45 s.", 30.0, []),
    ("Something happens at 0:45 and again at 0:10.", 30.0, [(10.0, P)]),
    ("The whole clip is heard from 0 to 30 seconds.", 30.0, [(0.0, 30.0)]),
]


@pytest.mark.parametrize(("text", "duration", "expected"), CASES)
def test_answer_sentences(
    text: str, duration: float | None, expected: list[tuple[float, float | None]]
) -> None:
    got = [s.as_tuple() for s in find_segments(text, duration=duration)]
    assert got == expected


def test_table_is_large_and_bilingual() -> None:
    assert len(CASES) >= 40
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t, _, _ in CASES) >= 12
    assert sum(1 for _, _, e in CASES if not e) >= 15


def test_without_duration_every_time_is_kept() -> None:
    got = find_segments("The dog barks at 45 s and again at 2:10.")
    assert [s.as_tuple() for s in got] == [(45.0, None), (130.0, None)]


def test_last_seconds_need_a_duration() -> None:
    assert find_segments("In the last 2 seconds the music fades.") == []


def test_windowed_clips_have_absolute_times() -> None:
    """A clip cut from 80 s of its source: relative times stay, absolute ones add 80."""
    (seg,) = find_segments("从第1.53秒开始出现,至第1.87秒结束", duration=30.0, offset=80.0)
    assert (seg.start, seg.end) == (1.53, 1.87)
    assert (seg.abs_start, seg.abs_end) == pytest.approx((81.53, 81.87))
    assert seg.offset == 80.0 and not seg.is_point


def test_segment_keeps_the_words_it_came_from() -> None:
    (seg,) = find_segments("The dog barks at around 12 s.", duration=30.0)
    assert seg.text == "12 s"
    (rng,) = find_segments("'阿里' 从第1.53秒开始出现,至第1.87秒结束", duration=5.0)
    assert rng.text == "1.53秒开始出现,至第1.87秒"


@pytest.mark.parametrize(
    ("seg", "label"),
    [
        (Segment(1.53, 1.87, ""), "1.53–1.87 s"),
        (Segment(4.0, None, ""), "4 s"),
        (Segment(45.0, 70.0, ""), "0:45–1:10"),
        (Segment(80.0, None, ""), "1:20"),
        (Segment(3723.5, None, ""), "1:02:03.5"),
        (Segment(62.25, None, ""), "1:02.25"),
    ],
)
def test_labels_are_built_from_numbers(seg: Segment, label: str) -> None:
    assert seg.label() == label


def test_format_time_rounds_to_hundredths() -> None:
    assert format_time(1.23456) == "1.23 s"
    assert format_time(59.999) == "1:00"
    assert format_time(119.999) == "2:00"


def test_markup_in_answers_is_not_carried_into_labels() -> None:
    text = '<img src=x onerror=alert(1)> at 1.5 s <script>alert("4 s")</script>'
    segs = find_segments(text, duration=6.0)
    assert [s.label() for s in segs] == ["1.5 s", "4 s"]
    assert all("<" not in s.label() for s in segs)


def test_context_search_from_the_tail_matches_the_plain_patterns() -> None:
    """The ``$``-anchored length/filler patterns are searched from the last character no
    length or filler word holds (speed); that must find what a full search finds."""
    import random

    from qaudio_magic import segments as s

    pieces = ["about ", "approx.", "just", "more than", "大约", "~", " ", "\n", "for ", "lasting",
              "duration of", "audio is", "clip (", "音频(", "持续了", "总时长为", "at", "x", "7",
              ",", ")", "ſ", "K", "İ", "ABOUT", "Lasts", "秒", "第", "\u2028", "–"]  # fmt: skip
    rng = random.Random(9)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 7)))
        start = s._tail(text)
        full, fast = s._LENGTH_BEFORE.search(text), s._LENGTH_BEFORE.search(text, start)
        assert (full and full.span()) == (fast and fast.span()), text
        before, _ = s._context(text + "1 s", len(text), len(text) + 3)
        assert before == s._TRAILING_FILLER.sub("", text[-48:]), text
