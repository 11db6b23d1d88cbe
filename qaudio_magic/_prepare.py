"""Turn an AudioClip into the audio a backend will send, within that backend's limits.

Original bytes go out untouched when the service accepts their format, the clip is not
windowed and nothing must be cut; otherwise the window is decoded, downmixed to 16 kHz
mono and re-encoded as ``Limits.transcode_format``. What was cut to respect the model's
30 s is recorded so the view can say so: never a silent cut.

Why 16-bit WAV for re-encoded audio (measured on 30 s of speech, 16 kHz mono): WAV takes
about 1.5 ms to write and is lossless (960 KB); FLAC is lossless and 5× smaller (180 KB)
but costs about 10 ms and is not on DashScope's documented format list; MP3 (libmp3lame,
48 kb/s) is as small but costs about 118 ms and adds artefacts the model then hears.
Because local audio is uploaded once and referenced by ``oss://`` URL on later turns (see
``backends/_upload``), size matters once per clip, not once per turn, so the fastest
lossless format the service documents wins.

URL sources stay URLs: the service fetches them. The kernel only asks the server whether
the file exists (HEAD), so a 404 fails here, before anything is sent. A URL is
downloaded — up to :data:`MAX_FETCH_BYTES` — only when bytes are needed: a window of it,
or a backend that takes decoded samples.

Both follow at most :data:`MAX_REDIRECTS` redirects, to http(s) URLs only: a redirect to
``file:``, ``ftp:``, ``data:`` or any other scheme is refused (the kernel must never be
steered into reading a local file). Redirects to other hosts are followed — these
requests carry no API key, cookie or credential of any kind, only the URL itself.
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import AudioTooLargeError, SourceError

if TYPE_CHECKING:  # numpy, httpx and PyAV load on first use, not at `%load_ext`
    import httpx
    import numpy as np

    from .backends.base import Limits
    from .clip import AudioClip

__all__ = ["PlannedAudio", "PreparedAudio", "SendPlan", "prepare"]

MAX_FETCH_BYTES = 200_000_000  # cap on downloading a URL source into the kernel
MAX_REDIRECTS = 5
# Encoders pad: a "30 s" MP3 decodes to 30.01-30.05 s. Up to this much over the model's
# limit a clip still counts as within it (the service drops those milliseconds of padding);
# beyond it the clip is cut here and the view says so.
CUT_SLACK = 0.1
URL_CHECK_TIMEOUT = 5.0

_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "amr": "audio/amr",
    "mov": "audio/mp4",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "matroska": "audio/webm",
}
# File extension for what is sent: the service may go by it (an MP3 named .wav is renamed).
_EXT = {"mov": "m4a", "matroska": "webm"}
_MOV_EXTS = ("m4a", "mp4", "3gp", "3gpp", "3g2")


@dataclass(frozen=True, eq=False)
class PreparedAudio:
    """Audio ready for one backend: bytes (or a URL passed through) plus what they hold."""

    clip: AudioClip
    data: bytes | None  # encoded audio to send; None when ``url`` is passed through
    url: str | None
    format: str  # short container name: wav, mp3, aac, amr, mov ...
    start: float  # window sent, in seconds of the source
    seconds: float | None  # duration sent (None: remote, unknown)
    cut_seconds: float = 0.0  # audio beyond the model's limit that was not sent
    transcoded: bool = False
    pcm: np.ndarray | None = None  # 16 kHz mono samples, for backends that want PCM
    notes: tuple[str, ...] = field(default=())  # decoding repairs, truncation, URL caveats

    @property
    def mime(self) -> str:
        return _MIME.get(self.format, "application/octet-stream")

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0

    @property
    def sha256(self) -> str:
        """Identity of the bytes sent (of the URL for pass-through)."""
        if self.data is None:
            return hashlib.sha256((self.url or "").encode()).hexdigest()
        return hashlib.sha256(self.data).hexdigest()

    @property
    def end(self) -> float | None:
        return None if self.seconds is None else self.start + self.seconds

    @property
    def filename(self) -> str:
        """A safe file name for what is sent: the clip's stem, its window, the real extension."""
        stem, _, ext = self.clip.name.rpartition(".")
        if not stem:
            stem, ext = self.clip.name, ""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "audio"
        if self.clip.is_windowed or self.cut_seconds:
            stem += f"_{self.start:g}-{self.start + (self.seconds or 0):g}s"
        if self.format == "mov" and ext.lower() in _MOV_EXTS:
            real = ext.lower()
        else:
            real = _EXT.get(self.format, self.format)
        return f"{stem}.{real}"


_cache: OrderedDict[tuple[object, ...], PreparedAudio] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_ITEMS = 64


def prepare(clip: AudioClip, limits: Limits) -> PreparedAudio:
    """Audio for ``clip`` within ``limits``; cached so history turns are not re-encoded."""
    key = (clip.sha256, clip.start, clip.end, clip.format_hint, limits)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit if hit.clip is clip else replace(hit, clip=clip)
    prepared = _prepare(clip, limits)
    with _cache_lock:
        _cache[key] = prepared
        while len(_cache) > _CACHE_ITEMS:
            _cache.popitem(last=False)
    return prepared


def _prepare(clip: AudioClip, limits: Limits) -> PreparedAudio:
    from . import _codec

    if clip.is_remote:
        if clip.kind == "url" and (clip.is_windowed or limits.wants_pcm):
            # bytes are needed: download (capped), then prepare them like a local file
            return replace(_prepare(_fetch(clip), limits), clip=clip)
        notes = _check_url(clip.location or "", limits) if clip.kind == "url" else ()
        fmt = _guess_format(clip.name)
        return PreparedAudio(clip, None, clip.location, fmt, clip.start, None, notes=notes)
    info = clip.info
    assert info is not None
    start = clip.start
    seconds = clip.duration or 0.0
    cut = 0.0
    if limits.max_audio_seconds is not None and seconds > limits.max_audio_seconds + CUT_SLACK:
        cut = seconds - limits.max_audio_seconds
        seconds = limits.max_audio_seconds
    notes = tuple(f"{clip.name}: {note}" for note in info.notes)
    whole = not clip.is_windowed and cut == 0.0
    accepted = (info.container, info.codec) in limits.accepted
    if limits.wants_pcm:
        pcm = clip.decode(start, start + seconds)
        return PreparedAudio(
            clip, None, None, "pcm", start, len(pcm) / _codec.TARGET_RATE, cut, True, pcm, notes
        )
    if whole and accepted:
        data = clip.read_bytes()
        if len(data) <= limits.max_audio_bytes:
            return PreparedAudio(
                clip, data, None, info.container, start, seconds, cut, False, notes=notes
            )
    pcm = clip.decode(start, start + seconds)
    data = _codec.encode(pcm, _codec.TARGET_RATE, limits.transcode_format)
    if len(data) > limits.max_audio_bytes:
        raise AudioTooLargeError(
            f"{clip.name}: {len(data) / 1e6:.1f} MB after re-encoding is over the "
            f"{limits.max_audio_bytes / 1e6:.0f} MB limit (send a shorter window)"
        )
    sent = len(pcm) / _codec.TARGET_RATE
    return PreparedAudio(
        clip, data, None, limits.transcode_format, start, sent, cut, True, notes=notes
    )


def _guess_format(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {"m4a": "mov", "mp4": "mov", "3gp": "mov", "webm": "matroska", "opus": "ogg"}.get(
        ext, ext or "wav"
    )


# ------------------------------------------------------------------------ URL sources
def _check_url(url: str, limits: Limits) -> tuple[str, ...]:
    """Fail now on a URL the service could not fetch (404, too large); download nothing.

    A network error here is not fatal: the service may reach hosts the kernel cannot.
    A redirect to another scheme, or too many of them, is.
    """
    import httpx

    try:
        with _url_client(url, httpx.Timeout(URL_CHECK_TIMEOUT)) as client:
            response = client.head(url)
    except httpx.TooManyRedirects:
        raise SourceError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
    except httpx.InvalidURL as exc:
        raise SourceError(f"{url}: redirects to an invalid URL ({exc})") from None
    except httpx.HTTPError:
        return ()
    if response.status_code in (405, 501):  # HEAD not allowed: let the service find out
        return ()
    if response.status_code >= 400:
        raise SourceError(
            f"{url}: cannot fetch it (HTTP {response.status_code} {response.reason_phrase})"
        )
    length = response.headers.get("content-length")
    if length is None:
        return (f"{url}: the server sends no Content-Length, which DashScope may refuse",)
    if length.isdigit() and int(length) > limits.max_audio_bytes:
        raise AudioTooLargeError(
            f"{url}: {int(length) / 1e6:.1f} MB is over the {limits.max_audio_bytes / 1e6:.0f} MB "
            "the service fetches (download it and pass a window, e.g. clip[0:30])"
        )
    return ()


def _fetch(clip: AudioClip) -> AudioClip:
    """The URL's bytes as a local clip with the same name and window (at most MAX_FETCH_BYTES)."""
    import httpx

    from .clip import AudioClip

    url = clip.location or ""
    cap = MAX_FETCH_BYTES
    buf = bytearray()
    try:
        with (
            _url_client(url, httpx.Timeout(60.0, connect=10.0)) as c,
            c.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise SourceError(
                    f"{url}: cannot fetch it (HTTP {response.status_code} {response.reason_phrase})"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise AudioTooLargeError(_over_cap(url, int(declared), cap))
            for chunk in response.iter_bytes():
                buf += chunk
                if len(buf) > cap:
                    raise AudioTooLargeError(_over_cap(url, None, cap))
    except httpx.TooManyRedirects:
        raise SourceError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
    except httpx.InvalidURL as exc:
        raise SourceError(f"{url}: redirects to an invalid URL ({exc})") from None
    except httpx.HTTPError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"{url}: cannot fetch it ({reason})") from None
    if not buf:
        raise SourceError(f"{url}: the server sent an empty file")
    return AudioClip(
        name=clip.name, kind="bytes", payload=bytes(buf), start=clip.start, end=clip.end
    )


def _url_client(url: str, timeout: httpx.Timeout) -> httpx.Client:
    """A client for URL sources: no key or credential, at most MAX_REDIRECTS redirects,
    each vetted before it is followed (http(s) only)."""
    import httpx

    def vet(response: httpx.Response) -> None:
        # runs before httpx builds the next request, so even a Location httpx cannot
        # parse (javascript:, data:) is refused here with what it said
        if not response.has_redirect_location:
            return
        location = response.headers["location"]
        target = urllib.parse.urljoin(str(response.url), location)
        if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
            shown = location if len(location) <= 100 else location[:99] + "…"
            raise SourceError(
                f"{url}: redirects to {shown}, refused: only http(s) redirects are followed"
            )

    from .backends._http import interruptible_transport

    return httpx.Client(
        transport=interruptible_transport(),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        event_hooks={"response": [vet]},
    )


def _over_cap(url: str, size: int | None, cap: int) -> str:
    what = f"{size / 1e6:.1f} MB" if size else "the file"
    return f"{url}: {what} is over the {cap / 1e6:g} MB download cap for URL sources"


# ------------------------------------------------------------------------ dry run
@dataclass(frozen=True)
class PlannedAudio:
    """One clip of a request as it would travel."""

    audio: PreparedAudio
    route: str  # "inline" | "upload" | "uploaded" (oss:// reused) | "url" | "pcm"
    wire_bytes: int  # bytes this clip adds to this turn's traffic
    tokens: int  # estimated audio tokens (25 per second, at least 25)
    history: bool = False  # from an earlier turn of the conversation


_ROUTE_TEXT = {
    "inline": "inline base64",
    "upload": "temporary upload, then oss://",
    "uploaded": "oss:// (uploaded earlier)",
    "url": "URL (the service fetches it)",
    "pcm": "decoded samples (local)",
}


@dataclass(frozen=True)
class SendPlan:
    """What a question would send — shown by ``--dry-run``; nothing was sent."""

    model: str
    conversation: str
    question: str | None
    items: tuple[PlannedAudio, ...]
    request_bytes: int  # the model call's body, inline audio included
    upload_bytes: int  # bytes of temporary uploads before the call
    notes: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return sum(i.audio.seconds or 0.0 for i in self.items)

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)

    @property
    def wire_bytes(self) -> int:
        return self.request_bytes + self.upload_bytes

    def rows(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for item in self.items:
            a = item.audio
            window = "?" if a.seconds is None else f"{_num(a.start)}–{_num(a.start + a.seconds)} s"
            seconds = "?" if a.seconds is None else f"{a.seconds:.1f}"
            how = _ROUTE_TEXT.get(item.route, item.route)
            out.append(
                (
                    a.clip.name + (" (history)" if item.history else ""),
                    window,
                    seconds,
                    f"{item.tokens}",
                    _size(item.wire_bytes),
                    how,
                )
            )
        return out

    def summary(self) -> str:
        n = len(self.items)
        return (
            f"{n} clip{'s' if n != 1 else ''}, {self.seconds:.1f} s of audio ≈ {self.tokens} "
            f"audio tokens; {_size(self.wire_bytes)} on the wire (request "
            f"{_size(self.request_bytes)}, uploads {_size(self.upload_bytes)})"
        )

    _HEADER = ("clip", "window", "seconds", "audio tokens", "bytes on the wire", "how")

    def __str__(self) -> str:
        rows = self.rows()
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(self._HEADER)]
        lines = [
            f"Dry run: nothing sent. Model {self.model}, conversation '{self.conversation}'.",
            "  ".join(h.ljust(w) for h, w in zip(self._HEADER, widths, strict=True)),
            *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows),
            self.summary(),
            *(f"note: {n}" for n in self.notes),
        ]
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return f"SendPlan({self.summary()})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        esc = html.escape
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows()
        )
        notes = "".join(f"<div><i>note: {esc(n)}</i></div>" for n in self.notes)
        page = (
            f"<div><b>Dry run: nothing sent.</b> Model {esc(self.model)}, conversation "
            f"'{esc(self.conversation)}'.<table><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in self._HEADER)
            + f"</tr></thead><tbody>{body}</tbody></table>{esc(self.summary())}{notes}</div>"
        )
        return {"text/plain": str(self), "text/html": page}


def _num(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def _size(n: int) -> str:
    if n < 10_000:
        return f"{n} B"
    if n < 10_000_000:
        return f"{n / 1e3:.0f} KB"
    return f"{n / 1e6:.1f} MB"
