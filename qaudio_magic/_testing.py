"""Test helpers: an IPython shell that re-raises, and a session wired to an emulator.

Used by this project's tests and usable in users' own: ``TestingShell`` runs cells like
a notebook would but raises instead of printing tracebacks, so a test sees the error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from .emulator import Emulator
from .session import Session, set_session
from .settings import Settings

__all__ = ["TestingShell", "emulated_session"]


class TestingShell(InteractiveShell):
    """An InteractiveShell whose ``run_cell`` re-raises the cell's error."""

    def run_cell(self, *args: Any, **kwargs: Any) -> Any:
        result = super().run_cell(*args, **kwargs)
        result.raise_error()
        return result


@contextmanager
def emulated_session(
    emulator: Emulator, key: str = "sk-test-key-0000", **settings: Any
) -> Iterator[Session]:
    """A fresh process-wide session talking to ``emulator`` with ``key``."""
    session = Session(Settings(base_url=emulator.base_url, **settings))
    session.set_key(key)
    old = set_session(session)
    try:
        yield session
    finally:
        session.close()
        set_session(old)
