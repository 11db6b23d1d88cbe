"""Recorder: record a take in the notebook (or upload a file) and ask about it.

``%qaudio record mic`` shows one; ``mic`` then always means its latest take, and
``mic.takes`` keeps the earlier ones as AudioClips (kind ``"recording"``).

Recording runs in the browser through ipywebrtc: a ``CameraStream`` asking for audio
only feeds an ``AudioRecorder``, and the finished take lands in the recorder's
``ipywidgets.Audio``, which reaches the kernel as one comm message (a ``memoryview``).
Chromium records WebM/Opus with no duration in its header; the take goes through the
ordinary audio-in pipeline (decoded by PyAV, re-encoded for services that refuse WebM).

Why the kernel drives recording: ipywebrtc's own record button flips ``recording`` in
the browser without telling the kernel, so the kernel could neither show "recording…"
nor stop an over-long take. Our Record/Stop button sets ``recording`` from the kernel
instead, and ipywebrtc's own view is never shown (it also replays every take out loud).

Why a length cap rather than sending bytes in pieces: Jupyter Server silently drops any
browser→kernel message over its ``websocket_max_message_size`` (10 MiB by default), and
ipywebrtc sends a take as one message. Sending it in pieces would mean replacing
ipywebrtc's recorder with our own JavaScript; a take that stays well under the limit
keeps the well-kept library and covers what the models hear (Qwen-Audio processes 30 s).
So takes stop by themselves at ``max_seconds`` (and earlier if the measured bit rate says
the limit is near), and if a take still never arrives the recorder says so and why.
"""

from __future__ import annotations

import html
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.trait_types import CByteMemoryView

from . import _format
from ._meter import LevelMeter
from .clip import AudioClip
from .errors import InputError, QAudioError

__all__ = ["MESSAGE_LIMIT_BYTES", "Recorder"]

MESSAGE_LIMIT_BYTES = 10 * 1024 * 1024  # Jupyter Server's default websocket_max_message_size
_SAFE_SHARE = 0.8  # a take may use at most this share of the message limit
_ASSUMED_BYTES_PER_S = 16_000  # ipywebrtc asks browsers for 128 kbit/s until a take is measured
_UPLOAD_ACCEPT = "audio/*,video/webm,video/mp4,.webm,.weba,.ogg,.opus,.oga,.m4a,.mp4,.3gp,.amr,.aac,.flac,.wav,.mp3"

_NO_ARRIVAL = (
    "no recording arrived from the browser. The microphone may be blocked for this page "
    "(allow it from the address bar and press Record again), this browser may not record "
    "audio/{fmt}, this front end may refuse microphone access (VS Code notebooks do), or the "
    "ipywebrtc front-end extension is missing where Jupyter runs. "
    "Upload an audio file below instead."
)
_LOST = (
    "the browser recorded a take but it never reached the kernel: it is probably over the "
    "server's {limit} MiB message limit (websocket_max_message_size). Record a shorter take "
    "or upload a file under {limit} MB below."
)
_VSCODE = (
    "VS Code notebooks cannot use the microphone (microsoft/vscode#119127): upload an audio "
    "file below, or open this notebook in JupyterLab or Notebook 7 to record."
)


class _TakeAudio(widgets.Audio):
    """The take's player: its value is not echoed back, so a take crosses the socket once."""

    value = CByteMemoryView(help="The take's encoded bytes").tag(sync=True, echo_update=False)


@dataclass
class _Attempt:
    """One press of Record, until its take arrives (or is declared lost)."""

    started: float
    stopped: float | None = None
    limit_hit: bool = False
    blob_seen: bool = False  # the browser finished a recording (ipywebrtc set _data_src)
    arrived: bool = False
    given_up: bool = False  # declared lost after arrival_timeout
    done: threading.Event = field(default_factory=threading.Event)  # set when recording stops


class Recorder:
    """A recorder widget whose latest take is an audio source.

    ``Recorder("mic")`` builds the widget (display it, or use ``%qaudio record mic``);
    pass it wherever audio is accepted: ``%%qaudio mic``, ``ask_audio(mic, ...)``.
    ``max_seconds`` caps a take (see the module docstring for why); ``format`` is what the
    browser is asked to record (``"webm"``: Chromium and Firefox; ``"ogg"``, ``"mp4"``).
    """

    def __init__(
        self,
        name: str = "mic",
        *,
        max_seconds: float = 300.0,
        format: str = "webm",
        arrival_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._max_seconds = _positive(name, max_seconds)
        self.format = format
        self.arrival_timeout = arrival_timeout
        self._takes: list[AudioClip] = []
        self._lock = threading.RLock()
        self._attempt: _Attempt | None = None
        self._bytes_per_s = float(_ASSUMED_BYTES_PER_S)
        self._problem: str | None = None  # why recording gave no take (or cannot work here)
        self._closed = False
        self._setting_player = False

        self._player = _TakeAudio(format=format, autoplay=False, loop=False, controls=True)
        # never shown: it only receives takes from ipywebrtc; the waveform player below
        # (the same as every other clip's) shows them
        self._player.layout = widgets.Layout(display="none")
        self._take_view = widgets.Box(layout=widgets.Layout(width="100%"))
        self._meter = LevelMeter()  # the microphone's level while a take records
        self._player.observe(self._on_player_value, names="value")
        self._button = widgets.Button(
            description="Record", icon="circle", tooltip="Start recording a take"
        )
        self._button.on_click(self._on_click)
        self._status = widgets.HTML()
        self._upload = widgets.FileUpload(
            accept=_UPLOAD_ACCEPT,
            multiple=False,
            description="Upload audio",
            tooltip=f"A file under {MESSAGE_LIMIT_BYTES >> 20} MB becomes the next take",
        )
        self._upload.observe(self._on_upload, names="value")
        self._stream: Any = None
        self._webrtc: Any = None
        try:
            from ipywebrtc import AudioRecorder, CameraStream
        except ImportError:  # a declared dependency; keep the upload path if it is broken
            self._button.disabled = True
            self._problem = "ipywebrtc is not installed (pip install ipywebrtc); upload a file."
        else:
            self._stream = CameraStream(constraints={"audio": True, "video": False})
            self._webrtc = AudioRecorder(
                stream=self._stream, audio=self._player, format=format, filename=name
            )
            self._webrtc.observe(self._on_blob, names="_data_src")
        self._box = widgets.VBox(
            [
                widgets.HBox([self._button, self._status]),
                self._meter,
                self._player,
                self._take_view,
                widgets.HBox([self._upload, widgets.HTML(_small("or upload a file as a take"))]),
            ]
        )
        if self._problem is None and _in_vscode():
            self._problem = _VSCODE
        self._show_idle()

    @property
    def max_seconds(self) -> float:
        """The longest take; the recorder stops by itself there (see the module docstring)."""
        return self._max_seconds

    @max_seconds.setter
    def max_seconds(self, value: float) -> None:
        self._max_seconds = _positive(self.name, value)
        if self._attempt is None and not self._takes:
            self._show_idle()

    # ------------------------------------------------------------------ as a source
    @property
    def takes(self) -> tuple[AudioClip, ...]:
        """Every take so far, oldest first (``mic.takes[-1]`` is what ``mic`` means)."""
        with self._lock:
            return tuple(self._takes)

    @property
    def latest(self) -> AudioClip | None:
        with self._lock:
            return self._takes[-1] if self._takes else None

    def _as_audio_clip_(self) -> AudioClip:
        with self._lock:
            attempt, clip = self._attempt, self.latest
        if attempt is not None and attempt.stopped is None:
            raise InputError(f"{self.name}: still recording — press Stop first")
        if attempt is not None and not (attempt.arrived or attempt.given_up):
            # the kernel handles the take's message only after this cell: asking again works
            raise InputError(
                f"{self.name}: the take is still on its way from the browser — "
                "run the cell again in a moment"
            )
        if clip is None:
            why = f" ({self._problem})" if self._problem else ""
            raise InputError(
                f"{self.name}: no take yet — press record first, or upload a file{why}"
            )
        return clip

    @property
    def recording(self) -> bool:
        with self._lock:
            return self._attempt is not None and self._attempt.stopped is None

    @property
    def status(self) -> str:
        """The status line as plain text (what the widget shows)."""
        return html.unescape(_strip_tags(self._status.value))

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start a take (what the Record button does)."""
        if self._webrtc is None:
            raise InputError(f"{self.name}: cannot record here — {self._problem}")
        with self._lock:
            if self.recording:
                return
            attempt = self._attempt = _Attempt(started=time.monotonic())
            # empty, so that the new take is a change even if its bytes repeat
            self._show_player(None)
            self._webrtc.recording = True
        self._meter.active = True
        self._button.description, self._button.icon = "Stop", "stop"
        self._button.button_style = "danger"
        self._show_recording(attempt)
        threading.Thread(target=self._watch, args=(attempt,), daemon=True).start()

    def stop(self) -> None:
        """Stop the take; it becomes ``mic`` once the browser has sent it."""
        self._stop(limit_hit=False)

    def add(self, source: object, *, label: str | None = None) -> AudioClip:
        """Make a take from any audio source (path, bytes ...), as the upload control does."""
        given = AudioClip.from_source(source)  # one source: a list of two is refused
        clip = self._add_take(given.read_bytes(), label=label or given.name, mime=given.mime_hint)
        self._show_player(clip)
        return clip

    def close(self) -> None:
        """Close the widgets and release the microphone in the browser."""
        self._closed = True
        self._stop(limit_hit=False)
        with self._lock:
            if self._attempt is not None:  # a take still on its way will not come now
                self._attempt.given_up = True
        boxes = [self._box, *self._box.children]
        parts = [c for box in boxes[1:] for c in getattr(box, "children", ())]
        for w in (self._webrtc, self._stream, *boxes, *parts):  # a box does not close its children
            if w is not None:
                w.close()

    # ------------------------------------------------------------------ display
    @property
    def widget(self) -> Any:
        """The recorder's widget, to place inside other layouts."""
        return self._box

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = dict(self._box._repr_mimebundle_(**kwargs) or {})
        data["text/plain"] = f"{self!r} — a recorder widget; run the cell to record"
        return data

    def __repr__(self) -> str:
        latest = self.latest
        shown = f", latest={latest.label()!r}" if latest is not None else ""
        return f"Recorder({self.name!r}, takes={len(self._takes)}{shown})"

    # ------------------------------------------------------------------ internals
    def _cap(self) -> float:
        """Seconds a take may last: max_seconds, or less if the bit rate nears the limit."""
        by_size = _SAFE_SHARE * MESSAGE_LIMIT_BYTES / self._bytes_per_s
        return min(self._max_seconds, by_size)

    def _on_click(self, _button: Any) -> None:
        try:
            if self.recording:
                self.stop()
            else:
                self.start()
        except QAudioError as exc:
            self._set_status(f"⚠ {exc.one_line()}", error=True)

    def _stop(self, *, limit_hit: bool) -> None:
        with self._lock:
            attempt = self._attempt
            if attempt is None or attempt.stopped is not None:
                return
            attempt.stopped = time.monotonic()
            attempt.limit_hit = limit_hit
            attempt.done.set()
            if self._webrtc is not None:
                self._webrtc.recording = False
        self._meter.active = False
        self._button.description, self._button.icon = "Record", "circle"
        self._button.button_style = ""
        if self._closed:
            return
        seconds = attempt.stopped - attempt.started
        why = f" at the {_format.seconds(self._cap())} limit" if limit_hit else ""
        self._set_status(f"■ Stopped{why} after {seconds:.1f} s — receiving the take…")
        timer = threading.Timer(self.arrival_timeout, self._check_arrival, args=(attempt,))
        timer.daemon = True
        timer.start()

    def _watch(self, attempt: _Attempt) -> None:
        """While recording: tick the clock once a second and stop at the cap."""
        while True:
            left = self._cap() - (time.monotonic() - attempt.started)
            if left <= 0:
                self._stop(limit_hit=True)
                return
            if attempt.done.wait(min(1.0, left)):
                return
            self._show_recording(attempt)

    def _check_arrival(self, attempt: _Attempt) -> None:
        with self._lock:
            if attempt.arrived or attempt is not self._attempt:
                return
            attempt.given_up = True
            limit = MESSAGE_LIMIT_BYTES >> 20
            self._problem = (
                _LOST.format(limit=limit)
                if attempt.blob_seen
                else _NO_ARRIVAL.format(fmt=self.format)
            )
            latest = self._takes[-1] if self._takes else None
        if latest is not None:
            self._show_player(latest)  # the player shows what `mic` still means
            self._problem += f" {self.name} still means take {len(self._takes)}."
        self._set_status(f"⚠ {self._problem}", error=True)

    def _on_blob(self, change: dict[str, Any]) -> None:
        with self._lock:
            if change["new"] and self._attempt is not None:
                self._attempt.blob_seen = True

    def _on_player_value(self, change: dict[str, Any]) -> None:
        if self._setting_player:
            return
        data = bytes(change["new"] or b"")  # a memoryview when the browser set it
        if not data:
            return
        with self._lock:
            attempt = self._attempt
            if attempt is not None:
                attempt.arrived = True
            limit_hit = attempt is not None and attempt.limit_hit
        cap = f" (stopped at the {_format.seconds(self._cap())} limit)" if limit_hit else ""
        clip = self._take_or_report(data, label="recording", mime=f"audio/{self.format}", note=cap)
        if clip is not None and attempt is not None and attempt.stopped is not None:
            # measured bit rate: keeps the next take's cap under the message limit
            self._bytes_per_s = max(self._bytes_per_s, len(data) / max(clip.duration or 1.0, 1.0))

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        item = files[-1]
        data = bytes(item["content"])  # a memoryview from the browser
        name, mime = str(item.get("name") or "upload"), item.get("type") or None
        self._upload.value = ()  # keep the bytes out of widget state (and saved notebooks)
        if not data:
            self._set_status(f"⚠ {name}: the file is empty (0 bytes)", error=True)
            return
        clip = self._take_or_report(data, label=name, mime=mime)
        if clip is not None:
            self._show_player(clip)

    def _show_player(self, clip: AudioClip | None) -> None:
        """Show a take (None: none) in the waveform player. The receiving Audio widget is
        emptied, so a take's bytes live in one model only (saved widget state holds them
        once) and the next take is a change even if its bytes repeat."""
        self._setting_player = True
        try:
            self._player.value, self._player.format = b"", self.format
        finally:
            self._setting_player = False
        self._show_take(clip)

    def _show_take(self, clip: AudioClip | None) -> None:
        """The take in the waveform player every clip gets (None: nothing shown)."""
        from .player import Player

        old = self._take_view.children
        try:
            self._take_view.children = () if clip is None else (Player(clip),)
        except QAudioError as exc:  # decoded once already; say so rather than raise
            self._take_view.children = ()
            self._set_status(f"⚠ {exc.one_line()}", error=True)
        for widget in old:
            widget.close()

    @property
    def take_player(self) -> Any:
        """The waveform player of the take ``mic`` means now (None before the first)."""
        children = self._take_view.children
        return children[0] if children else None

    def _take_or_report(
        self, data: bytes, *, label: str, mime: str | None, note: str = ""
    ) -> AudioClip | None:
        """A take from the browser: a bad one is reported in the widget, not raised."""
        try:
            return self._add_take(data, label=label, mime=mime, note=note)
        except QAudioError as exc:
            with self._lock:
                self._problem = exc.one_line()
            self._set_status(f"⚠ {exc.one_line()}", error=True)
            return None

    def _add_take(self, data: bytes, *, label: str, mime: str | None, note: str = "") -> AudioClip:
        with self._lock:
            n = len(self._takes) + 1
        suffix = "" if label == "recording" else f" ({label})"
        clip = AudioClip(
            name=f"{self.name} take {n}{suffix}", kind="recording", payload=data, mime_hint=mime
        )
        info = clip.info  # decodes (raises if it cannot): a browser's WebM has no duration
        assert info is not None
        with self._lock:
            self._takes.append(clip)
            self._problem = None
        earlier = f"; {n - 1} earlier in {self.name}.takes" if n > 1 else ""
        self._set_status(  # markup of our own; the label is a file name: escaped
            f"✔ Take {n}{html.escape(suffix)}: {html.escape(info.describe() + note)} — "
            f"<code>{html.escape(self.name)}</code> now means this take{html.escape(earlier)}",
            escape=False,
        )
        self._show_player(clip)
        return clip

    def _show_idle(self) -> None:
        if self._problem:
            self._set_status(f"⚠ {self._problem}", error=True)
        else:
            self._set_status(
                f"Press Record, speak, then Stop (at most {_format.seconds(self._cap())} a take)."
            )

    def _show_recording(self, attempt: _Attempt) -> None:
        elapsed = time.monotonic() - attempt.started
        self._set_status(
            f"● Recording… {_format.clock(int(elapsed))} — press Stop (stops by itself at {_format.seconds(self._cap())})"
        )

    def _set_status(self, text: str, *, error: bool = False, escape: bool = True) -> None:
        body = html.escape(text) if escape else text
        color = "color: var(--jp-error-color1, #c00);" if error else ""
        self._status.value = f'<span style="{color}">{body}</span>'


def _in_vscode() -> bool:
    """A VS Code notebook (which refuses getUserMedia): its kernels get ``__vsc_ipynb_file__``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    if shell is not None and "__vsc_ipynb_file__" in shell.user_ns:
        return True
    return "VSCODE_PID" in os.environ and "JPY_SESSION_NAME" not in os.environ


def _positive(name: str, seconds: float) -> float:
    if not seconds > 0:
        raise InputError(f"{name}: max_seconds must be positive, got {seconds}")
    return float(seconds)


def _small(text: str) -> str:
    return f'<span style="font-size: smaller; opacity: 0.8">{html.escape(text)}</span>'


def _strip_tags(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup)
