"""AudioClip: one piece of audio, where it came from, what it holds, and which window of it.

A clip is an immutable value. Local audio (paths, bytes, widgets) is probed by decoding
on first use; remote audio (http(s) and ``oss://`` URLs) is passed through to the service
untouched and never downloaded into the kernel unless a backend needs bytes.
``clip[80:110]`` gives a new clip limited to that window (seconds, relative to the clip).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import AudioTooLargeError, InputError, SourceError

if TYPE_CHECKING:  # numpy and PyAV load on the first decode, not at `%load_ext`
    from . import _codec
    from ._codec import AudioInfo

__all__ = ["AudioClip", "AudioSourceLike", "parse_time", "resolve_sources"]

MAX_SOURCE_BYTES = 1 << 30  # 1 GiB: refuse absurd files from their size, before reading them


@runtime_checkable
class AudioSourceLike(Protocol):
    """Anything that can turn itself into a clip (recorders, players, ...)."""

    def _as_audio_clip_(self) -> AudioClip: ...


@dataclass(frozen=True, eq=False, repr=False)
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

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_source(cls, source: object, *, name: str | None = None) -> AudioClip:
        """Resolve one source (path, URL, bytes, widget, clip, recorder ...) into a clip."""
        clips = resolve_sources(source)
        if len(clips) != 1:
            raise InputError(f"expected one audio source, got {len(clips)}")
        clip = clips[0]
        return replace(clip, name=name) if name else clip

    # ----------------------------------------------------------------- facts
    @property
    def is_remote(self) -> bool:
        """True for URLs the service fetches itself (no bytes in the kernel)."""
        return self.kind in ("url", "oss")

    @property
    def path(self) -> Path | None:
        return Path(self.location) if self.kind == "path" and self.location else None

    def _src(self) -> _codec.Source:
        if self.path is not None:
            return self.path
        if self.payload is not None:
            return self.payload
        raise InputError(f"{self.name}: a remote clip has no local bytes")

    @cached_property
    def info(self) -> AudioInfo | None:
        """Decoded facts of the whole source (None for remote URLs, which are not fetched)."""
        if self.is_remote:
            return None
        from . import _codec

        return _codec.probe(self._src(), name=self.name)

    @cached_property
    def sha256(self) -> str:
        """Identity of the clip's source: sha256 of its bytes (of the URL text for URLs)."""
        if self.is_remote:
            return hashlib.sha256((self.location or "").encode()).hexdigest()
        digest = hashlib.sha256()
        if self.path is not None:
            with open(self.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(self.payload or b"")
        return digest.hexdigest()

    def read_bytes(self) -> bytes:
        """The source's encoded bytes (reads the file for path clips)."""
        if self.path is not None:
            return self.path.read_bytes()
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
        return replace(self, start=abs_lo, end=abs_hi)

    # ----------------------------------------------------------------- display
    def label(self) -> str:
        """Name plus window and duration, for players, footers and history."""
        text = self.name
        if self.is_windowed:
            end = "end" if self.end is None else _fmt_time(self.end)
            text += f" [{_fmt_time(self.start)}–{end}]"
        dur = self.duration if not self.is_remote else None
        if dur is not None:
            text += f" · {dur:.1f} s"
        return text

    def __repr__(self) -> str:
        info = f", {self.info.describe()}" if "info" in self.__dict__ and self.info else ""
        window = f", window={self.start:g}–{self.end}" if self.is_windowed else ""
        return f"AudioClip({self.name!r}, kind={self.kind!r}{window}{info})"

    def _as_audio_clip_(self) -> AudioClip:
        return self

    def describe(self) -> dict[str, Any]:
        """JSON-able facts (no audio bytes): for history export and output metadata."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "sha256": self.sha256}
        if self.kind in ("path", "url", "oss"):
            out["location"] = self.location
        if self.is_windowed:
            out["window"] = [self.start, self.end]
        if not self.is_remote:
            out["duration"] = round(self.duration or 0.0, 3)
        return out


# --------------------------------------------------------------------- helpers
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


def _fmt_time(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:05.2f}".replace(".00", "") if minutes else f"{secs:g}s"


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
    if path.is_dir():
        raise SourceError(f"{shown}: is a directory, not an audio file")
    if st.st_size > MAX_SOURCE_BYTES:
        raise AudioTooLargeError(
            f"{shown}: {st.st_size / 1e9:.1f} GB is over the {MAX_SOURCE_BYTES / 1e9:.1f} GB "
            "limit for one source"
        )
    if not os.access(path, os.R_OK):
        raise SourceError(f"{shown}: cannot read (permission denied)")
    return AudioClip(name=path.name, kind="path", location=str(path.absolute()))


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
        parsed = urllib.parse.urlsplit(stripped)
        return _from_path(Path(urllib.parse.unquote(parsed.netloc + parsed.path)), stripped)
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


def _one(source: object) -> AudioClip:
    if isinstance(source, AudioClip):
        return source
    if isinstance(source, AudioSourceLike):
        return source._as_audio_clip_()
    if isinstance(source, os.PathLike):
        return _from_path(Path(os.fspath(source)), os.fspath(source))
    if isinstance(source, str):
        return _from_string(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        payload = bytes(source)
        if not payload:
            raise SourceError("bytes: the source is empty (0 bytes)")
        return AudioClip(name=f"bytes ({len(payload) // 1024} KB)", kind="bytes", payload=payload)
    if type(source).__name__ == "Audio" and hasattr(source, "format") and hasattr(source, "value"):
        return _from_widget(source)
    raise InputError(
        f"cannot use a {type(source).__name__} as audio "
        "(give a path, URL, bytes, ipywidgets.Audio or AudioClip)"
    )


def resolve_sources(sources: object) -> list[AudioClip]:
    """Turn one source or a list of sources into clips, failing on the first bad one."""
    if sources is None:
        return []
    if isinstance(sources, (list, tuple)) and not _is_scalar_sequence(sources):
        return [_one(s) for s in sources]
    if (
        isinstance(sources, Iterable)
        and not isinstance(sources, (str, bytes, bytearray, memoryview, os.PathLike))
        and not isinstance(sources, (AudioClip, AudioSourceLike))
        and not hasattr(sources, "value")
    ):
        return [_one(s) for s in sources]
    return [_one(sources)]


def _is_scalar_sequence(value: tuple[Any, ...] | list[Any]) -> bool:
    """Hook for sequences that are one source, e.g. ``(array, rate)`` (see issue: arrays)."""
    return False
