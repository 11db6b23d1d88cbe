"""What a source is: one clip, several clips of one turn, or a batch — decided here only.

``ask_audio``, the magic and the batch engine all ask this module, so a list means the
same thing everywhere:

* one source (a path, URL, bytes, ``(samples, rate)``, a widget, a clip, a recorder) is
  one clip (:meth:`AudioClip.from_source` says what each type means);
* a tuple of sources is several clips in one turn;
* a list, a pandas Series, a dict, any other iterable, a glob pattern that is not an
  existing file, or a directory is a batch: one question per item (an item that is itself
  a tuple or list is several clips in that item's turn).

URL sources stay URLs (the service fetches them). The rules for touching them from the
kernel live here too: a HEAD check (:func:`check_url`) that fails a 404 before anything is
sent, and a capped download (:func:`fetch`) when bytes are needed. Each has one deadline
for all of it (redirects included) that holds however slowly the server answers: 5 s for
the check, 10 minutes for a download. Both follow at most
:data:`MAX_REDIRECTS` redirects, to http(s) URLs only: a redirect to ``file:``, ``ftp:``,
``data:`` or any other scheme is refused (the kernel must never be steered into reading a
local file). Redirects to other hosts are followed — these requests carry no API key,
cookie or credential of any kind, only the URL itself.
"""

from __future__ import annotations

import glob
import os
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clip import AudioClip, is_audio_object, is_sample_pair
from .errors import AudioTooLargeError, SourceError, TransportError

if TYPE_CHECKING:  # httpx loads with the first URL, not at `%load_ext`
    import httpx

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_FETCH_BYTES",
    "MAX_REDIRECTS",
    "URL_CHECK_TIMEOUT",
    "Unresolved",
    "batch_target",
    "check_url",
    "expand_sources",
    "fetch",
    "is_dask_collection",
    "is_lazy",
    "is_many",
    "iter_items",
    "names_a_source",
    "resolve_sources",
    "source_name",
]

AUDIO_SUFFIXES = frozenset(
    [
        ".wav",
        ".mp3",
        ".m4a",
        ".aac",
        ".amr",
        ".3gp",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".webm",
        ".mp4",
        ".wma",
        ".aif",
        ".aiff",
        ".gsm",
    ]
)
MAX_FETCH_BYTES = 200_000_000  # cap on downloading a URL source into the kernel
MAX_REDIRECTS = 5
URL_CHECK_TIMEOUT = 5.0  # the whole check, redirects included
FETCH_TIMEOUT = 600.0  # a whole download (200 MB at ~3 Mbit/s)


# ---------------------------------------------------------------------- which sources
def _is_series(value: object) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "index")


def _is_url(text: str) -> bool:
    return text.lower().startswith("data:") or "://" in text[:16]


def is_many(sources: object) -> bool:
    """Whether ``sources`` stands for many questions (a batch) rather than one."""
    if sources is None or isinstance(sources, tuple):
        return False
    if isinstance(sources, (str, os.PathLike)):
        text = os.fspath(sources)
        if not isinstance(text, str) or _is_url(text):
            return False  # URLs may hold '?' and '*' and are never patterns
        path = Path(text).expanduser()
        if path.is_dir():
            return True
        return not path.exists() and glob.has_magic(text)
    if isinstance(sources, (list, Mapping)) or _is_series(sources):
        return True
    if is_audio_object(sources):
        return False
    return isinstance(sources, Iterable)


def resolve_sources(sources: object) -> list[AudioClip]:
    """The clips of one turn: none, one source, or a tuple/list/iterable of sources.

    Fails on the first bad source (a batch resolves item by item instead, so that one
    bad item is one failed row).
    """
    if sources is None:
        return []
    if isinstance(sources, Unresolved):
        raise sources.error
    if isinstance(sources, (list, tuple)) and not is_sample_pair(sources):
        return [AudioClip.from_source(s) for s in sources]
    if (
        isinstance(sources, Iterable)
        and not isinstance(sources, (str, os.PathLike))
        and not is_audio_object(sources)
    ):
        return [AudioClip.from_source(s) for s in sources]
    return [AudioClip.from_source(sources)]


def _expand_one(source: object) -> list[object]:
    """A glob pattern or directory as its files (sorted); anything else as itself."""
    if not isinstance(source, (str, os.PathLike)) or not is_many(source):
        return [source]
    text = os.fspath(source)
    assert isinstance(text, str)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES
        )
        if not files:
            raise SourceError(
                f"{text}: no audio files in this directory "
                f"(looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
            )
        return list(files)
    matches = sorted(
        Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file()
    )
    if not matches:
        raise SourceError(f"{text}: no files match this pattern")
    return list(matches)


def _item(value: object) -> object:
    """A batch item: a list inside a batch is several clips of one turn, like a tuple."""
    return tuple(value) if isinstance(value, list) else value


def expand_sources(sources: object) -> tuple[list[object], list[Any] | None]:
    """The batch's items (a source, or a tuple of sources for one turn) and their labels.

    Glob patterns and directories expand to their files, also inside a list; a tuple or
    list inside a list stays one item; a pandas Series keeps its index as the labels,
    a dict its keys.
    """
    if isinstance(sources, Mapping):  # {label: source}: like a Series
        return [_item(v) for v in sources.values()], list(sources)
    if _is_series(sources):
        labels = list(sources.index)  # type: ignore[attr-defined]
        return [_item(v) for v in sources.tolist()], labels  # type: ignore[attr-defined]
    if isinstance(sources, (str, os.PathLike)) or not is_many(sources):
        return _expand_one(sources), None  # a single pattern matching nothing: no batch
    items: list[object] = []
    for source in sources:  # type: ignore[attr-defined]
        if isinstance(source, (tuple, list)):
            items.append(tuple(source))
        else:
            items.extend(_expand_among(source))
    return items, None


def _expand_among(source: object) -> list[object]:
    """One source among several: a pattern matching nothing is one failed row, not a lost batch."""
    try:
        return _expand_one(source)
    except SourceError as exc:
        return [Unresolved(source, exc)]


class Unresolved:
    """A batch item that names no audio (a pattern that matches nothing, a folder with no
    audio): :func:`resolve_sources` raises its error, so it becomes its own failed row."""

    def __init__(self, source: object, error: SourceError) -> None:
        self.source, self.error = source, error

    def __repr__(self) -> str:
        return f"Unresolved({self.source!r}, {str(self.error)!r})"


def source_name(item: object) -> str:
    """How a batch row names an item that could not become a clip: as the user gave it."""
    if isinstance(item, Unresolved):
        item = item.source
    if isinstance(item, tuple):
        return ", ".join(source_name(i) for i in item)
    if isinstance(item, (str, os.PathLike)):
        return str(os.fspath(item))
    return f"({type(item).__name__})"


def is_dask_collection(sources: object) -> bool:
    """Whether ``sources`` is a Dask Series or Bag (told without importing Dask): the
    answers are then a lazy Dask DataFrame, made on the cluster (:mod:`qaudio_magic._dask`)."""
    module = type(sources).__module__
    return module.split(".")[0] in ("dask", "dask_expr") and hasattr(sources, "__dask_graph__")


def is_lazy(sources: object) -> bool:
    """Whether a batch's sources come one at a time (a generator or other iterator): they
    are then read only as workers are free for them, never all held at once."""
    return isinstance(sources, Iterator) and not isinstance(sources, (str, bytes))


def iter_items(sources: Iterator[object]) -> Iterator[object]:
    """The items of a lazy batch, in order, each made only when it is asked for (glob
    patterns and directories among them expand to their files)."""
    for source in sources:
        if isinstance(source, (tuple, list)):
            yield tuple(source)
        else:
            yield from _expand_among(source)


def batch_target(values: Sequence[object]) -> object:
    """The SOURCE words of one batch cell as one batch: a single list, Series or pattern
    as it is (a Series keeps its index as labels), several flattened into one list."""
    if len(values) == 1:
        return values[0]
    flat: list[object] = []
    for value in values:
        if isinstance(value, (str, os.PathLike)) or not is_many(value):
            flat.append(value)
        else:
            tolist = getattr(value, "tolist", None)
            items: Iterable[object] = tolist() if callable(tolist) else value  # type: ignore[assignment]
            flat.extend(items)
    return flat


def names_a_source(token: str, namespace: Mapping[str, object]) -> bool:
    """Whether a magic line's first word is audio: a variable, URL, path or pattern."""
    root = token.split(".")[0].split("[")[0]
    return (
        root in namespace
        or "://" in token
        or token.lower().startswith("data:")
        or any(ch in token for ch in "*?")
        or Path(token).expanduser().exists()
    )


# ---------------------------------------------------------------------- URL rules
def check_url(url: str, max_bytes: int) -> tuple[str, ...]:
    """Fail now on a URL the service could not fetch (404, too large); download nothing.

    A network error here is not fatal: the service may reach hosts the kernel cannot.
    A redirect to another scheme, or too many of them, is.
    """
    import httpx

    from ._net import deadline

    try:
        with (
            deadline(time.monotonic() + URL_CHECK_TIMEOUT),
            _url_client(url, httpx.Timeout(URL_CHECK_TIMEOUT)) as client,
        ):
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
            f"{url}: cannot fetch it (HTTP {response.status_code} {_reason(response)})"
        )
    length = response.headers.get("content-length")
    if length is None:
        return (f"{url}: the server sends no Content-Length, which DashScope may refuse",)
    if length.isdigit() and int(length) > max_bytes:
        raise AudioTooLargeError(
            f"{url}: {int(length) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB "
            "the service fetches (download it and pass a window, e.g. clip[0:30])"
        )
    return ()


def fetch(clip: AudioClip) -> AudioClip:
    """The URL's bytes as a local clip with the same name and window (at most MAX_FETCH_BYTES)."""
    import httpx

    from ._net import deadline
    from .backends._body import decoded_chunks

    url = clip.location or ""
    cap = MAX_FETCH_BYTES
    buf = bytearray()
    try:
        with (
            deadline(time.monotonic() + FETCH_TIMEOUT),
            _url_client(url, httpx.Timeout(60.0, connect=10.0)) as c,
            c.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise SourceError(
                    f"{url}: cannot fetch it (HTTP {response.status_code} {_reason(response)})"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise AudioTooLargeError(_over_cap(url, int(declared), cap))
            for chunk in decoded_chunks(response, url):  # inflated 64 KB at a time
                buf += chunk
                if len(buf) > cap:
                    raise AudioTooLargeError(_over_cap(url, None, cap))
    except httpx.TooManyRedirects:
        raise SourceError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
    except httpx.InvalidURL as exc:
        raise SourceError(f"{url}: redirects to an invalid URL ({exc})") from None
    except httpx.TimeoutException:
        raise SourceError(
            f"{url}: cannot fetch it (not downloaded within {FETCH_TIMEOUT:g} s)"
        ) from None
    except httpx.HTTPError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"{url}: cannot fetch it ({reason[:200]})") from None
    except TransportError as exc:  # a body in an encoding that is not accepted
        raise SourceError(f"{url}: cannot fetch it ({exc})") from None
    if not buf:
        raise SourceError(f"{url}: the server sent an empty file")
    return AudioClip(
        name=clip.name, kind="bytes", payload=bytes(buf), start=clip.start, end=clip.end
    )


def _url_client(url: str, timeout: httpx.Timeout) -> httpx.Client:
    """A client for URL sources: no key or credential, at most MAX_REDIRECTS redirects,
    each vetted before it is followed (http(s) only)."""
    import httpx

    from ._net import interruptible_transport  # httpx loads with the first URL

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

    return httpx.Client(
        transport=interruptible_transport(),
        timeout=timeout,
        headers={"accept-encoding": "identity"},  # audio does not compress
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        event_hooks={"response": [vet]},
    )


def _reason(response: httpx.Response) -> str:
    """The server's reason phrase, kept to a few words (it is the server's text)."""
    return " ".join(response.reason_phrase.split())[:40]


def _over_cap(url: str, size: int | None, cap: int) -> str:
    what = f"{size / 1e6:.1f} MB" if size else "the file"
    return f"{url}: {what} is over the {cap / 1e6:g} MB download cap for URL sources"
