"""Times in answers → segments: where in the clip an answer says something happens.

Qwen-Audio locates things in free text — "'阿里' 从第1.53秒开始出现,至第1.87秒结束",
"the dog barks at around 12 s", "between 0:45 and 1:10 the speaker sounds angry". This
module turns those mentions into ``(start, end | None)`` pairs, in seconds relative to the
clip the model heard, so a player can play them. It reads numbers only; the words around
them are never echoed into markup.

What counts as a position (the rule, in order):

1. A *time* is a number with a time unit (``1.53s``, ``1.53 seconds``, ``1500 ms``,
   ``第1.53秒``, ``1分20秒``, ``1 min 20 s``, ``the 12-second mark``) or a clock time
   (``1:20``, ``00:01.53``, ``1:02:03``; seconds always two digits).
2. Two times joined by *to / until / through / - / – / ~ / 至 / 到*, by *and* after
   *between* (``在…和…之间``), or by start/end wording (``从第X秒开始…至第Y秒结束``,
   "starts at X and ends at Y") are one range. A bare number counts only as the first
   end of such a range and takes the unit of the second ("from 1.53 to 1.87 seconds").
3. "the first N seconds" / ``前N秒`` is the range 0–N; "the last N seconds" / ``最后N秒``
   is the range that ends the clip (only when its duration is known).
4. A time the sentence marks as a *length* yields nothing: after *for, lasting, lasts,
   every, each, per, within, takes, spans, duration of, length of, the audio is*,
   ``持续, 长达, 时长, 历时, 每隔, 共, 间隔, 用时``; before *long, in length, later,
   apart, of silence/speech/audio*, a noun such as *clip, pause, gap, interval*,
   ``长, 之久, 的音频, 的停顿``; or in parentheses after *clip / audio / recording*.
   So "10 seconds long" and "every 0.5 to 0.6 seconds" are lengths, "at 10 seconds" is a
   position. ``第`` before a number always means a position.
5. Not times at all: bare numbers ("3.5 stars", "version 2.5", "Qwen2.5"), ratios
   ("1:2", "16:9", "a 1:20 ratio"), times of day ("10:30 am", ``下午3:30``), decades
   ("1990s") and spelled-out numbers ("six seconds", ``三秒``).
6. Times at or beyond the clip's duration are dropped; a range's end beyond it is cut to
   the duration; a range that ends before it starts is dropped. When the duration is not
   known (a URL clip), times beyond a day are dropped: no clip the models take is that
   long, and a 400-digit number would otherwise become ``inf``. A segment mentioned twice
   is kept once, in the order of first mention.
7. At most :data:`MAX_SEGMENTS` segments are kept, the first mentioned, from the first
   :data:`MAX_MENTIONS` times mentioned; duplicates are found with a set. An answer is
   untrusted: 30,000 mentions must not take minutes.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._format import seconds, span

if TYPE_CHECKING:
    from ._grounding_result import Grounding

__all__ = ["MAX_SEGMENTS", "Segment", "find_segments"]

MAX_SEGMENTS = 100  # segments kept from one answer
MAX_MENTIONS = 5_000  # time mentions read from one answer (a long real answer has hundreds)
DAY = 86_400.0  # seconds: the longest time believed when the clip's length is unknown


@dataclass(frozen=True)
class Segment:
    """A place in a clip: ``start``–``end`` seconds (``end`` None: a point in time).

    Times are relative to the clip as the model heard it; ``offset`` is where that clip
    starts in its source, so ``abs_start``/``abs_end`` locate the segment in the source
    when the clip was a window (``clip[80:110]``).
    """

    start: float
    end: float | None
    text: str  # the words it came from, as written (plain text, never markup)
    offset: float = 0.0
    # What the audio holds there (grounding.py), filled in after the answer; None before.
    grounding: Grounding | None = field(default=None, compare=False)

    @property
    def is_point(self) -> bool:
        return self.end is None

    @property
    def abs_start(self) -> float:
        return self.offset + self.start

    @property
    def abs_end(self) -> float | None:
        return None if self.end is None else self.offset + self.end

    def as_tuple(self) -> tuple[float, float | None]:
        return (self.start, self.end)

    def label(self) -> str:
        """Short text for chips and plain-text fallbacks: ``1.53–1.87 s``, ``1:20``."""
        return seconds(self.start) if self.end is None else span(self.start, self.end)


# ---------------------------------------------------------------------- tokens
_NUM = r"\d+(?:\.\d+)?"
_SEC = r"(?:秒钟|秒|seconds?|secs?|s)(?![A-Za-z])"
_MSEC = r"(?:毫秒|milliseconds?|ms)(?![A-Za-z])"
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_.:])(?:"
    rf"(?P<mins>\d+)\s*(?:分钟|分|minutes?|mins?|m)\s*(?:and\s+)?(?P<msecs>{_NUM})\s*{_SEC}"
    rf"|(?:(?P<h>\d{{1,2}}):)?(?P<m>\d{{1,2}}):(?P<s>\d{{2}}(?:\.\d+)?)(?![\d:])(?:\s*{_SEC})?"
    rf"|(?P<num>{_NUM})(?:(?P<sp>\s*)(?:(?P<ms>{_MSEC})|(?P<sec>{_SEC})"
    r"|(?P<mark>-\s*seconds?(?=\s+mark)))|(?!\.?\d))"
    r")",
    re.IGNORECASE,
)


@dataclass
class _Token:
    start: int
    end: int
    value: float  # seconds; for a bare number, the number itself
    bare: bool
    scale: float = 1.0  # seconds per unit (ms: 0.001), for a bare range start


def _tokens(text: str) -> Iterator[_Token]:
    for m in _TOKEN.finditer(text):
        before, after = text[max(0, m.start() - 12) : m.start()], text[m.end() : m.end() + 16]
        if m.group("mins") is not None:  # float, not int: int() refuses 4,300+ digits
            yield _Token(
                m.start(), m.end(), float(m.group("mins")) * 60 + float(m.group("msecs")), False
            )
        elif m.group("m") is not None:
            hours, minutes, secs = int(m.group("h") or 0), int(m.group("m")), float(m.group("s"))
            if secs >= 60 or (m.group("h") and minutes >= 60):
                continue
            if _TIME_OF_DAY_AFTER.match(after) or _TIME_OF_DAY_BEFORE.search(before):
                continue
            if _RATIO_AFTER.match(after) or _RATIO_BEFORE.search(before):
                continue
            yield _Token(m.start(), m.end(), hours * 3600 + minutes * 60 + secs, False)
        else:
            value = float(m.group("num"))
            if m.group("ms"):
                yield _Token(m.start(), m.end(), value / 1000, False, 0.001)
            elif m.group("sec") or m.group("mark"):
                decade = (
                    m.group("sec") == "s"
                    and not m.group("sp")
                    and m.group("num").isdigit()
                    and len(m.group("num")) == 4
                )
                if not decade:  # "the 1990s" is not 1990 seconds
                    yield _Token(m.start(), m.end(), value, False)
            else:
                yield _Token(m.start(), m.end(), value, True)


_TIME_OF_DAY_AFTER = re.compile(r"\s*(?:[ap]\.?m\b\.?|o'clock|点)", re.I)
_TIME_OF_DAY_BEFORE = re.compile(r"(?:上午|下午|晚上|早上|凌晨|中午|傍晚)\s*$")
_RATIO_AFTER = re.compile(r"\s*(?:ratio|aspect|odds|scale|比例)", re.I)
_RATIO_BEFORE = re.compile(r"(?:ratio|odds|score|比例|比分)\s*(?:of|is|was|为|是)?\s*$", re.I)

# ---------------------------------------------------------------------- ranges
_FILLER = re.compile(
    r"\b(?:about|around|approximately|approx\.?|roughly|nearly|almost|some|exactly)\b"
    r"|约|大约|大概|将近|接近|差不多|~(?=\s*\d)",
    re.I,
)
_JOIN = re.compile(r"(?:-|–|—|~|～|〜|→|至|到|to|until|till|through|thru)第?", re.I)
_AND = re.compile(r"(?:and|和|与|跟|及)第?", re.I)
_ZH_SPAN = re.compile(
    r"(?:秒钟?)?(?:开始|起)[^。!?;!?;\n]{0,16}?(?:至|到|直到|一直到|持续到|截至|截止到?)第?"
    r"|[,,、]?(?:并|然后)?(?:结束于|止于|结束在|持续到|一直到|直到)第?"
)
_EN_SPAN = re.compile(
    r",?\s*(?:and\s+)?(?:(?:it|then|that)\s+)?"
    r"(?:ends?|ending|ended|stops?|stopping|stopped|finish(?:es|ed|ing)?"
    r"|(?:lasts?|lasting|lasted|continues?|continuing|continued|runs?|running|goes\s+on)\s+until)"
    r"(?:\s+(?:at|by|on|in))?",
    re.I,
)
_BETWEEN_BEFORE = re.compile(r"(?:between|介于|在)\s*(?:第)?\s*$", re.I)
_BETWEEN_AFTER = re.compile(r"\s*(?:秒钟?)?\s*(?:之间|间)")


def _joined(text: str, a: _Token, b: _Token) -> bool:
    """Whether the words between two times make them one range."""
    if b.bare:
        return False
    mid = " ".join(_FILLER.sub(" ", text[a.end : b.start]).split())
    squeezed = mid.replace(" ", "")
    if not mid:
        return False
    if _JOIN.fullmatch(squeezed) or _ZH_SPAN.fullmatch(squeezed) or _EN_SPAN.fullmatch(mid):
        return True
    if _AND.fullmatch(squeezed):
        before = _FILLER.sub(" ", text[max(0, a.start - 24) : a.start])
        english = bool(re.search(r"between\s*$", before, re.I))
        chinese = bool(_BETWEEN_BEFORE.search(before)) and bool(
            _BETWEEN_AFTER.match(text[b.end : b.end + 8])
        )
        return english or chinese
    return False


# ---------------------------------------------------------------------- lengths
_TRAILING_FILLER = re.compile(
    r"(?:\s|about|around|approximately|approx\.|roughly|nearly|almost|just|only|exactly|some"
    r"|over|under|more than|less than|up to|约|大约|大概|将近|接近|差不多|仅|只有|超过|不到|~)*$",
    re.I,
)
_LENGTH_BEFORE = re.compile(
    r"(?:\b(?:for|lasting|lasts|last|lasted|every|each|per|within|takes?|took|taking"
    r"|spans?|spanned|spanning|duration(?:\s+(?:of|is|was))?|length(?:\s+(?:of|is|was))?"
    r"|(?:audio|clip|recording|file|track|song|sample|it)\s+(?:is|was))"
    r"|持续了?|长达|总?时长(?:为|是|约|有)?|长度(?:为|是)?|历时|每隔?|一?共|总共|总长(?:为|是)?"
    r"|间隔了?|停顿了?|用时|耗时|时间为"
    r"|(?:clip|audio|recording|file|track|song|音频|录音)\s*[((])\s*$",
    re.I,
)
_LENGTH_AFTER = re.compile(
    r"\s*(?:-?\s*long\b|in\s+(?:length|duration|total)\b|later\b|apart\b|in\s+a\s+row\b"
    r"|of\s+(?:silence|speech|audio|music|noise|talking|recording|pause|quiet)\b"
    r"|(?:clip|recording|audio|segment|pause|gap|interval|window|delay|break|duration"
    r"|snippet|excerpt|sample)s?\b"
    r"|长|之久|后再|的(?:音频|录音|时长|停顿|沉默|静音|间隔|片段|时间|长度))",
    re.I,
)
_FIRST = re.compile(r"(?:\b(?:the\s+)?(?:first|opening|initial)|最?前)\s*$", re.I)
_LAST = re.compile(r"(?:\bthe\s+(?:last|final|closing)|最后)\s*$", re.I)


# Both patterns above end in ``$``, so ``search`` tries every position of the text before a
# time (~20 µs each on 48 characters). Their matches hold only characters of _WORDS (letters,
# whitespace, and the non-alphanumerics and CJK characters of the patterns): none can start
# before the last character outside it, and searching from there finds the same match.
_WORDS = "".join(
    sorted({c for c in _TRAILING_FILLER.pattern + _LENGTH_BEFORE.pattern if not c.isalnum()})
    + sorted({c for c in _TRAILING_FILLER.pattern + _LENGTH_BEFORE.pattern if ord(c) > 127})
)
_OUTSIDE = re.compile(f"[^a-z\\s{re.escape(_WORDS)}]", re.I)


def _tail(text: str) -> int:
    """Where a match of the ``$``-anchored patterns above may start, at the earliest."""
    m = _OUTSIDE.search(text[::-1])
    return len(text) - m.start() if m else 0


def _context(text: str, start: int, end: int) -> tuple[str, str]:
    before = text[max(0, start - 48) : start]
    m = _TRAILING_FILLER.search(before, _tail(before))  # as .sub("", before), faster
    if m is not None and m.end() > m.start():
        before = before[: m.start()] + before[m.end() :]
    return before, text[end : end + 32]


# ---------------------------------------------------------------------- public
def find_segments(
    text: str, *, duration: float | None = None, offset: float = 0.0
) -> list[Segment]:
    """The time mentions of ``text`` as segments of a clip ``duration`` seconds long
    (at most :data:`MAX_SEGMENTS`, the first mentioned).

    ``offset``: where that clip starts in its source (for ``abs_start``). ``duration``
    None keeps every time up to a day (nothing else to check against).
    """
    found: list[Segment] = []
    seen: set[tuple[float, float | None]] = set()
    tokens = itertools.islice(_tokens(text), MAX_MENTIONS)
    a = next(tokens, None)
    while a is not None and len(found) < MAX_SEGMENTS:
        b = next(tokens, None)
        if b is not None and _joined(text, a, b):
            start = a.value * b.scale if a.bare else a.value
            seg = _checked(text, a.start, b.end, start, b.value, duration, offset)
            a = next(tokens, None)
        elif not a.bare:
            seg = _checked(text, a.start, a.end, a.value, None, duration, offset)
            a = b
        else:
            a = b
            continue
        if seg is not None and seg.as_tuple() not in seen:
            seen.add(seg.as_tuple())
            found.append(seg)
    return found


def _checked(
    text: str,
    lo: int,
    hi: int,
    start: float,
    end: float | None,
    duration: float | None,
    offset: float,
) -> Segment | None:
    """Apply the length rules and the duration bound to one candidate."""
    if not math.isfinite(start) or (end is not None and not math.isfinite(end)):
        return None
    if duration is None and max(start, end or 0.0) > DAY:
        return None
    raw_before = text[max(0, lo - 4) : lo]
    before, after = _context(text, lo, hi)
    if end is None and _FIRST.search(before):
        start, end = 0.0, start
    elif end is None and _LAST.search(before):
        if duration is None or start >= duration:
            return None
        start, end = float(duration) - start, float(duration)
    elif not raw_before.rstrip().endswith("第") and (
        _LENGTH_BEFORE.search(before, _tail(before)) or _LENGTH_AFTER.match(after)
    ):
        return None
    if end is not None and end <= start:
        return None
    if duration is not None:
        if start >= duration:
            return None
        if end is not None:
            end = min(end, duration)
    start, end = round(float(start), 3), None if end is None else round(float(end), 3)
    return Segment(start, end, text[lo:hi], offset)
