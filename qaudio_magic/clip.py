"""AudioClip: one piece of audio, where it came from, what it holds, and which window of it.

A clip is an immutable value. Local audio (paths, bytes, widgets, arrays) is probed by
decoding on first use; remote audio (http(s) and ``oss://`` URLs) is passed through to the
service untouched and never downloaded into the kernel unless a backend needs bytes.
``clip[80:110]`` gives a new clip limited to that window (seconds, relative to the clip).

Sources understood by :meth:`AudioClip.from_source` (each becomes one clip; whether a
list is several clips or a batch is decided in :mod:`qaudio_magic.sources`):

* a path (``str`` or ``os.PathLike``), ``file://``, ``http(s)://``, ``oss://`` or ``data:`` URL
* ``bytes`` of an encoded file (the format is sniffed; :meth:`AudioClip.from_bytes` takes a hint)
* ``(array, rate)``: samples as floats in [-1, 1] or integers, shape ``(n,)``,
  ``(channels, n)`` or ``(n, channels)`` — what ``librosa.load`` and ``soundfile.read`` return
* ``IPython.display.Audio``, ``ipywidgets.Audio`` (bytes or URL), an ``AudioClip``, or
  anything with ``_as_audio_clip_()`` (the recorder)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import numbers
import os
import stat
import sys
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload, runtime_checkable

from ._format import a_kind, span
from .errors import AudioDecodeError, AudioTooLargeError, InputError, QAudioError, SourceError

if TYPE_CHECKING:  # numpy and PyAV load on the first decode, not at `%load_ext`
    from . import _codec
    from ._codec import AudioInfo

__all__ = [
    "AudioClip",
    "AudioSourceLike",
    "is_audio_object",
    "is_sample_pair",
    "one_look",
    "parse_time",
]

MAX_SOURCE_BYTES = 1 << 30  # 1 GiB: refuse absurd files from their size, before reading them


_T = TypeVar("_T")


_UNSET: Any = object()  # a fact not measured yet
_FACTS_KEPT = ("info", "sha256", "path")  # what a derived clip may share with its origin


class _fact(Generic[_T]):
    """A property computed once per clip and kept in a slot of its own (``_<name>``).

    Not ``functools.cached_property``: up to Python 3.11 that holds one lock per *class*
    while it computes, so a batch's workers, each hashing or probing a different clip,
    would wait for one another. Two threads racing on the same clip just compute the same
    value twice.
    """

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.slot = "_" + func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _fact[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object, owner: type | None = None) -> _T | _fact[_T]:
        if instance is None:
            return self
        value: _T = getattr(instance, self.slot)
        if value is _UNSET:
            value = self.func(instance)
            object.__setattr__(instance, self.slot, value)
        return value


@runtime_checkable
class AudioSourceLike(Protocol):
    """Anything that can turn itself into a clip (recorders, players, ...)."""

    def _as_audio_clip_(self) -> AudioClip: ...


@dataclass(frozen=True, eq=False, repr=False, slots=True)  # slots: a batch keeps one per row
class AudioClip:
    """Immutable audio value: origin, decoded facts (lazy), optional time window.

    Build one with :meth:`from_source` (paths, URLs, bytes, widgets ...) rather than
    the constructor.
    """

    name: str
    kind: str  # "path" | "url" | "oss" | "bytes" | "widget" | "array" | "recording"
    location: str | None = None  # file path or URL, when there is one
    payload: bytes | None = field(default=None, compare=False)  # encoded bytes held in memory
    start: float = 0.0
    end: float | None = None  # None: to the end of the source
    mime_hint: str | None = None
    format_hint: str | None = None  # FFmpeg demuxer name tried before sniffing (from_bytes)
    # facts measured once (see _fact): the decoded info, the digest, the file's Path
    _info: Any = field(default=_UNSET, init=False, repr=False, compare=False)
    _sha256: Any = field(default=_UNSET, init=False, repr=False, compare=False)
    _path: Any = field(default=_UNSET, init=False, repr=False, compare=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_source(cls, source: object, *, name: str | None = None) -> AudioClip:
        """One source (path, URL, bytes, ``(samples, rate)``, widget, clip, recorder ...) as
        a clip; see the module docstring for what each type means."""
        if isinstance(source, (list, tuple)) and not is_sample_pair(source):
            if len(source) != 1:
                raise InputError(f"expected one audio source, got {len(source)}")
            source = source[0]
        clip = _one(source)
        return clip._derive(name=name) if name else clip

    @classmethod
    def from_bytes(
        cls, data: bytes, *, format: str | None = None, name: str | None = None
    ) -> AudioClip:
        """A clip from an encoded file held in memory.

        ``format`` is an FFmpeg demuxer name (``"mp3"``, ``"wav"``, ``"aac"``, ``"amr"``,
        ``"ogg"`` ...), tried first; without it, or when it does not fit, the format is
        sniffed from the bytes.
        """
        payload = bytes(data)
        if not payload:
            raise AudioDecodeError(f"{name or 'bytes'}: the source is empty (0 bytes)")
        label = name or f"bytes ({len(payload) // 1024} KB{f', {format}' if format else ''})"
        return cls(name=label, kind="bytes", payload=payload, format_hint=format or None)

    @classmethod
    def from_array(cls, array: Any, rate: float, *, name: str | None = None) -> AudioClip:
        """A clip from samples: floats in [-1, 1] or integers, mono or multi-channel.

        Shape ``(n,)``, ``(channels, n)`` or ``(n, channels)`` (the short axis is taken as
        channels), at any rate. Anything ``numpy.asarray`` takes works, CPU tensors included.
        The samples are stored as 16-bit WAV at their own rate; floats louder than full
        scale are scaled down rather than clipped.
        """
        from . import _codec

        pcm = _as_pcm(array, name or "array")
        hz = _as_rate(rate, name or "array")
        payload = _codec.wav_bytes(pcm, hz)
        channels, n = pcm.shape
        label = name or f"array ({n / hz:.1f} s, {hz / 1000:g} kHz, {channels} ch)"
        return cls(name=label, kind="array", payload=payload, mime_hint="audio/wav")

    # ----------------------------------------------------------------- facts
    @property
    def is_remote(self) -> bool:
        """True for URLs the service fetches itself (no bytes in the kernel)."""
        return self.kind in ("url", "oss")

    @_fact
    def path(self) -> Path | None:
        """The file, for path clips (made once: a batch asks for it a few times per item)."""
        return Path(self.location) if self.kind == "path" and self.location else None

    def source(self) -> _codec.Source:
        """What the decoder reads: the file's path, or the encoded bytes held in memory."""
        if self.path is not None:
            return self.path
        if self.payload is not None:
            return self.payload
        raise InputError(f"{self.name}: a remote clip has no local bytes")

    @_fact
    def info(self) -> AudioInfo | None:
        """Decoded facts of the whole source (None for remote URLs, which are not fetched)."""
        if self.is_remote:
            return None
        from . import _codec

        path = self.path

        def measure() -> AudioInfo:
            source = self.source()
            if path is not None:  # a WAV just read whole: its header is in memory already
                recent = _recent_bytes(path)
                if recent is not None and recent[:4] == b"RIFF":
                    source = recent
            return _codec.probe(source, name=self.name, fmt=self.format_hint)

        return _file_fact(path, "info", measure)

    def decode(self, start: float = 0.0, end: float | None = None) -> Any:
        """Mono float32 samples at 16 kHz for ``[start, end)`` seconds of the source."""
        from . import _codec

        return _codec.decode(
            self.source(), start=start, end=end, name=self.name, fmt=self.format_hint
        )

    @_fact
    def sha256(self) -> str:
        """Identity of the clip's source: sha256 of its bytes (of the URL text for URLs)."""
        if self.is_remote:
            return hashlib.sha256((self.location or "").encode()).hexdigest()
        if self.path is not None:
            path = self.path

            def digest() -> str:
                key = _file_key(path)  # the look _file_fact just took
                size = key[1] if key is not None else None
                # os.open/os.read, not open(): no buffer object, no isatty() system call;
                # O_NONBLOCK: a path that became a FIFO since it was checked cannot hang
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
                try:
                    if isinstance(size, int) and size <= _SMALL_FILE:
                        data = os.read(fd, size + 1)  # a regular file: short only at its end
                        if len(data) <= size:  # read once: probing and sending need it next
                            _remember_bytes(path, data)
                            return hashlib.sha256(data).hexdigest()
                        sha = hashlib.sha256(data)  # it grew meanwhile: read on
                    else:
                        sha = hashlib.sha256()
                    while block := os.read(fd, 1 << 20):
                        sha.update(block)
                finally:
                    os.close(fd)
                return sha.hexdigest()

            return _file_fact(path, "sha256", digest)
        return hashlib.sha256(self.payload or b"").hexdigest()

    def read_bytes(self) -> bytes:
        """The source's encoded bytes (reads the file for path clips)."""
        if self.path is not None:
            return _recent_bytes(self.path) or self.path.read_bytes()
        if self.payload is not None:
            return self.payload
        raise InputError(f"{self.name}: a remote clip has no local bytes")

    @property
    def source_duration(self) -> float | None:
        return self.info.duration if self.info else None

    @property
    def window(self) -> tuple[float, float | None]:
        return (self.start, self.end)

    @property
    def is_windowed(self) -> bool:
        return self.start > 0 or self.end is not None

    @property
    def duration(self) -> float | None:
        """Seconds of audio this clip stands for (its window, clamped to the source)."""
        total = self.source_duration
        if total is None:
            return None if self.end is None else self.end - self.start
        end = total if self.end is None else min(self.end, total)
        return max(end - self.start, 0.0)

    # ----------------------------------------------------------------- windows
    def __getitem__(self, key: slice) -> AudioClip:
        """``clip[80:110]``: the window from 80 s to 110 s of this clip."""
        if not isinstance(key, slice) or key.step is not None:
            raise TypeError("index a clip with a time slice in seconds, e.g. clip[80:110]")
        return self.window_of(key.start, key.stop)

    def window_of(self, start: float | str | None, end: float | str | None) -> AudioClip:
        """A new clip for ``[start, end)`` seconds (numbers or ``m:ss``), relative to this one."""
        lo = parse_time(start) if start is not None else 0.0
        hi = parse_time(end) if end is not None else None
        if lo < 0 or (hi is not None and hi <= lo):
            raise InputError(f"{self.name}: empty or negative window {lo:g}–{hi}")
        abs_lo = self.start + lo
        abs_hi = None if hi is None else self.start + hi
        if self.end is not None:
            abs_hi = self.end if abs_hi is None else min(abs_hi, self.end)
        total = self.source_duration
        if total is not None and abs_lo >= total:
            raise InputError(
                f"{self.name}: window starts at {abs_lo:g} s but the clip is only {total:.1f} s"
            )
        return self._derive(start=abs_lo, end=abs_hi)

    def detached(self) -> AudioClip:
        """The same clip without the encoded bytes it holds in memory (name, kind, window,
        hash and decoded facts kept): what a big batch keeps of each item."""
        if self.payload is None:
            return self
        self.sha256  # noqa: B018 - measured while the bytes are here
        try:
            self.info  # noqa: B018
        except QAudioError:  # undecodable: nothing to keep
            object.__setattr__(self, "_info", None)
        return self._derive(payload=None)

    def _derive(self, **changes: Any) -> AudioClip:
        """A changed copy that keeps the facts already measured (no second probe or hash)."""
        new = replace(self, **changes)
        for fact in _FACTS_KEPT:
            if fact == "path" and "location" in changes:
                continue
            value = getattr(self, "_" + fact)
            if value is not _UNSET:
                object.__setattr__(new, "_" + fact, value)
        return new

    def with_window(self, start: float, end: float | None) -> AudioClip:
        """This clip limited to ``[start, end)`` absolute seconds of its source, sharing the
        facts already measured (no second probe or hash of the source)."""
        return self._derive(start=start, end=end)

    # ----------------------------------------------------------------- display
    def label(self) -> str:
        """Name plus window and duration, for players, footers and history."""
        text = self.name
        if self.is_windowed:
            text += f" [{span(self.start, self.end)}]"
        dur = self.duration if not self.is_remote else None
        if dur is not None:
            text += f" · {dur:.1f} s"
        return text

    def __repr__(self) -> str:
        info = f", {self._info.describe()}" if self._info not in (_UNSET, None) else ""
        window = f", window={self.start:g}–{self.end}" if self.is_windowed else ""
        return f"AudioClip({self.name!r}, kind={self.kind!r}{window}{info})"

    def _as_audio_clip_(self) -> AudioClip:
        return self

    def describe(self, *, paths: bool = False) -> dict[str, Any]:
        """JSON-able facts (no audio bytes): for history export and output metadata.

        A local file's path (which names the user's folders) is left out unless ``paths``;
        a URL is kept, it is the only name remote audio has.
        """
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "sha256": self.sha256}
        if self.kind in ("url", "oss") or (paths and self.kind == "path"):
            out["location"] = self.location
        if self.is_windowed:
            out["window"] = [self.start, self.end]
        if not self.is_remote:
            out["duration"] = round(self.duration or 0.0, 3)
        return out


# --------------------------------------------------------------------- helpers
# Facts of files measured in this process, keyed by (path, size, mtime, inode): asking again
# about the same file (another window, another cell, a batch) neither re-reads nor re-hashes
# it, and an edited file is measured afresh.
_FACTS: OrderedDict[tuple[object, ...], dict[str, Any]] = OrderedDict()
_FACTS_ITEMS = 512
_facts_lock = threading.Lock()


# The bytes of small files read lately (hashing reads them whole), so that probing and
# sending a clip of a batch read the file once, not three times; bounded in bytes.
_SMALL_FILE = 1 << 20
_RECENT: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
_RECENT_BUDGET = 16_000_000
_recent_size = 0
_recent_lock = threading.Lock()


# Inside one_look(), a file is looked at (stat) once: preparing a clip asks for its digest,
# its facts and its bytes, each checking the file has not changed, and every stat is a
# system call that lets go of the GIL, which a batch's 64 threads then pass around.
_looked = threading.local()  # .keys: {path: key} while one_look() is active, else absent


@contextmanager
def one_look() -> Iterator[None]:
    """In this block (this thread), each file's identity is read once: what changes after
    that is seen by the next block, as a file edited between two questions is."""
    outer = getattr(_looked, "keys", None)
    if outer is None:
        _looked.keys = {}
    try:
        yield
    finally:
        if outer is None:
            _looked.keys = None


def _file_key(path: Path) -> tuple[object, ...] | None:
    memo: dict[Path, tuple[object, ...]] | None = getattr(_looked, "keys", None)
    if memo is not None and (known := memo.get(path)) is not None:
        return known
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo is not None:
        memo[path] = key
    return key


def _remember_bytes(path: Path, data: bytes) -> None:
    global _recent_size
    key = _file_key(path)
    if key is None or key[1] != len(data):  # changed while it was read: keep nothing
        return
    with _recent_lock:
        if key in _RECENT:
            return
        _RECENT[key] = data
        _recent_size += len(data)
        while _recent_size > _RECENT_BUDGET and _RECENT:
            _recent_size -= len(_RECENT.popitem(last=False)[1])


def _recent_bytes(path: Path) -> bytes | None:
    """The file's bytes if it was read lately and has not changed since."""
    if not _RECENT:
        return None
    key = _file_key(path)
    with _recent_lock:
        return _RECENT.get(key) if key is not None else None


def _file_fact(path: Path | None, fact: str, measure: Callable[[], Any]) -> Any:
    if path is None:
        return measure()
    key = _file_key(path)
    if key is None:
        return measure()  # let the measurement raise its own, clearer error
    with _facts_lock:
        known = _FACTS.get(key, {})
        if fact in known:
            _FACTS.move_to_end(key)
            return known[fact]
    value = measure()
    with _facts_lock:
        _FACTS.setdefault(key, {})[fact] = value
        while len(_FACTS) > _FACTS_ITEMS:
            _FACTS.popitem(last=False)
    return value


def parse_time(value: float | int | str) -> float:
    """Seconds from ``90``, ``'90'``, ``'1:30'``, ``'1:30.5'`` or ``'0:01:30'``."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().rstrip("s")
    try:
        return float(text)
    except ValueError:
        pass
    parts = text.split(":")
    if 2 <= len(parts) <= 3 and all(p.replace(".", "", 1).isdigit() for p in parts):
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + float(part)
        return seconds
    raise InputError(f"not a time: {value!r} (use seconds, m:ss or h:mm:ss)")


def _url_name(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1]) or url


def _from_data_url(url: str) -> AudioClip:
    header, sep, body = url.partition(",")
    if not sep or ";base64" not in header:
        raise SourceError("data: URL: only base64 data URLs are supported (data:;base64,...)")
    try:
        payload = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise SourceError("data: URL: the base64 payload is corrupt") from None
    mime = header[5:].split(";")[0] or None
    return AudioClip(
        name=f"data URL ({len(payload) // 1024} KB)", kind="bytes", payload=payload, mime_hint=mime
    )


def _from_path(path: Path, shown: str) -> AudioClip:
    path = path.expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{shown}: no such file (looked for {path.absolute()})") from None
    except OSError as exc:
        raise SourceError(f"{shown}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{shown}: is a directory, not an audio file")
    _regular(st.st_mode, shown)
    if st.st_size > MAX_SOURCE_BYTES:
        raise AudioTooLargeError(
            f"{shown}: {st.st_size / 1e9:.1f} GB is over the {MAX_SOURCE_BYTES / 1e9:.1f} GB "
            "limit for one source"
        )
    try:  # really open it: permission bits say nothing when running as root
        # O_NONBLOCK: should the path have become a FIFO since stat, open() must not
        # wait for a writer; fstat then tells what was opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            _regular(os.fstat(fd).st_mode, shown)
            os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SourceError(f"{shown}: cannot read ({(exc.strerror or str(exc)).lower()})") from None
    return AudioClip(name=path.name, kind="path", location=str(path.absolute()))


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _regular(mode: int, shown: str) -> None:
    """Refuse at once what is not a regular file: a FIFO named x.wav would block open()
    for ever, and /dev/zero or /dev/urandom would be read (and hashed) without end."""
    if stat.S_ISREG(mode):
        return
    kind = next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")
    raise SourceError(f"{shown}: is {kind}, not an audio file (only files and URLs are read)")


def _from_string(text: str) -> AudioClip:
    stripped = text.strip()
    lower = stripped.lower()
    if lower.startswith(("http://", "https://")):
        return AudioClip(name=_url_name(stripped), kind="url", location=stripped)
    if lower.startswith("oss://"):
        return AudioClip(name=_url_name(stripped), kind="oss", location=stripped)
    if lower.startswith("data:"):
        return _from_data_url(stripped)
    if lower.startswith("file://"):
        # percent-decoded (not "+" → space: that is form encoding, not URL paths)
        parsed = urllib.parse.urlsplit(stripped)
        if parsed.netloc not in ("", "localhost"):
            raise SourceError(
                f"{stripped}: a file:// URL of another host ({parsed.netloc}); "
                "only local files (file:///path) can be read"
            )
        return _from_path(Path(urllib.parse.unquote(parsed.path)), stripped)
    if "://" in stripped[:16]:
        scheme = stripped.split("://", 1)[0]
        raise SourceError(
            f"{stripped}: unsupported URL scheme {scheme!r} (use http(s), oss or data)"
        )
    return _from_path(Path(stripped), stripped)


def _from_widget(widget: Any) -> AudioClip:
    fmt = getattr(widget, "format", "") or ""
    value = bytes(widget.value or b"")
    if fmt == "url":
        return _from_string(value.decode("utf-8", "replace"))
    if not value:
        raise SourceError("ipywidgets.Audio: the widget holds no audio yet")
    return AudioClip(
        name=f"widget audio ({fmt or 'bytes'})",
        kind="widget",
        payload=value,
        mime_hint=f"audio/{fmt}" if fmt else None,
    )


def _from_ipython_audio(obj: Any) -> AudioClip:
    """``IPython.display.Audio``: its file, its URL, or the bytes it embeds."""
    filename = getattr(obj, "filename", None)
    if filename and Path(filename).is_file():
        return _from_path(Path(filename), str(filename))
    data = getattr(obj, "data", None)
    if isinstance(data, (bytes, bytearray)) and data:
        mime = getattr(obj, "mimetype", None)
        return AudioClip(
            name=f"IPython Audio ({len(data) // 1024} KB)",
            kind="bytes",
            payload=bytes(data),
            mime_hint=mime,
        )
    url = getattr(obj, "url", None)
    if url:
        return _from_string(str(url))
    raise SourceError("IPython.display.Audio: it holds no data, file or URL")


def _is_ipython_audio(obj: object) -> bool:
    cls = type(obj)
    return cls.__name__ == "Audio" and cls.__module__.startswith("IPython.")


def _is_widget_audio(obj: object) -> bool:
    return type(obj).__name__ == "Audio" and hasattr(obj, "format") and hasattr(obj, "value")


def _is_array(obj: object) -> bool:
    return hasattr(obj, "__array__") or type(obj).__name__ in ("ndarray", "Tensor")


def is_audio_object(value: object) -> bool:
    """Whether ``value`` is one piece of audio by its type alone: bytes, a clip, a recorder
    or player, an IPython or ipywidgets ``Audio``, an array, or a ``(samples, rate)`` pair.

    Strings and paths are not decided here: a path may name a directory or a pattern
    (see :func:`qaudio_magic.sources.is_many`).
    """
    return (
        isinstance(value, (bytes, bytearray, memoryview, AudioClip, AudioSourceLike))
        or _is_ipython_audio(value)
        or _is_widget_audio(value)
        or _is_array(value)
        or is_sample_pair(value)
        or hasattr(value, "dtype")
    )


def _as_rate(rate: object, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not float(rate) > 0:
        raise InputError(f"{name}: the sample rate must be a positive number, got {rate!r}")
    hz = float(rate)
    if hz != round(hz) or not 1_000 <= hz <= 768_000:
        raise InputError(f"{name}: {rate!r} Hz is not a usable sample rate")
    return round(hz)


def _as_pcm(array: Any, name: str) -> Any:
    """Float32 samples shaped ``(channels, n)`` in [-1, 1] from any numeric array."""
    import numpy as np

    try:
        data = np.asarray(array)
    except Exception as exc:  # e.g. a tensor on a GPU
        raise InputError(f"{name}: cannot read the samples ({type(exc).__name__}: {exc})") from None
    if data.dtype.kind not in "fiub" or data.size == 0:
        raise InputError(f"{name}: expected non-empty numeric samples, got dtype {data.dtype}")
    if data.ndim == 1:
        data = data[None, :]
    elif data.ndim == 2:
        if data.shape[0] > data.shape[1]:
            data = data.T  # (n, channels), as soundfile returns it
    else:
        raise InputError(f"{name}: samples must be 1-D or 2-D, got shape {data.shape}")
    if data.shape[0] > 32:
        raise InputError(f"{name}: {data.shape[0]} channels? give shape (channels, n) or (n,)")
    if data.dtype.kind == "b":
        data = data.astype(np.float32)
    elif data.dtype.kind == "u":
        half = float(1 << (8 * data.dtype.itemsize - 1))
        data = (data.astype(np.float64) - half) / half
    elif data.dtype.kind == "i":
        data = data.astype(np.float64) / float(1 << (8 * data.dtype.itemsize - 1))
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise InputError(f"{name}: the samples contain NaN or infinite values")
    peak = float(np.abs(data).max())
    if peak > 1.0:
        data = data / peak
    return data


def _from_pair(pair: Any) -> AudioClip:
    return AudioClip.from_array(pair[0], pair[1])


def _one(source: object) -> AudioClip:
    # Paths and strings first: a runtime-checkable Protocol's isinstance costs ~15 µs, and
    # a batch of 100,000 paths asks this 100,000 times.
    if isinstance(source, str):
        return _from_string(source)
    if isinstance(source, os.PathLike) and not isinstance(source, AudioClip):
        return _from_path(Path(os.fspath(source)), os.fspath(source))
    if isinstance(source, AudioClip):
        return source
    if isinstance(source, AudioSourceLike):
        return source._as_audio_clip_()
    if is_sample_pair(source):
        return _from_pair(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        payload = bytes(source)
        if not payload:
            raise AudioDecodeError("bytes: the source is empty (0 bytes)")
        # interned: 100,000 clips of a batch share a handful of these names
        name = sys.intern(f"bytes ({len(payload) // 1024} KB)")
        return AudioClip(name=name, kind="bytes", payload=payload)
    if _is_ipython_audio(source):
        return _from_ipython_audio(source)
    if _is_widget_audio(source):
        return _from_widget(source)
    if _is_array(source):
        raise InputError(
            f"{type(source).__name__} samples need their sample rate: "
            "pass (array, rate) or AudioClip.from_array(array, rate)"
        )
    kind = a_kind(source)
    if isinstance(source, (int, float, complex)):  # `%%qaudio 44100`: say what it got
        kind = f"{source!r} ({kind})"
    raise InputError(
        f"cannot use {kind} as audio "
        "(give a path, URL, bytes, (array, rate), IPython or ipywidgets Audio, or AudioClip)"
    )


def is_sample_pair(value: object) -> bool:
    """True for a sequence that is one source: ``(samples, rate)``.

    Samples are an array (anything with ``__array__``/``shape``) or a flat list of numbers;
    the rate is a number. ``("a.wav", "b.wav")`` stays two sources.
    """
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return False
    samples, rate = value
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        return False
    if hasattr(samples, "__array__") or hasattr(samples, "shape"):
        return True
    return (
        isinstance(samples, (list, tuple))
        and len(samples) > 0
        and all(isinstance(x, numbers.Real) for x in samples[:64])
    )
