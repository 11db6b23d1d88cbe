"""A live microphone level meter shown while the recorder records (anywidget).

The kernel only says when a take is being recorded (``active``); the browser measures the
level itself from its own microphone stream, so nothing but that flag crosses the wire.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

__all__ = ["LevelMeter"]

_STATIC = Path(__file__).parent / "static"


class LevelMeter(anywidget.AnyWidget):  # type: ignore[misc]
    """Shows the microphone level in dBFS while ``active`` (hidden otherwise)."""

    _esm = _STATIC / "meter.js"
    _css = _STATIC / "meter.css"

    active = traitlets.Bool(False).tag(sync=True)
