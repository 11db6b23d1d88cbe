"""Test helpers: an IPython shell that re-raises, and a session wired to an emulator.

Used by this project's tests and usable in users' own: ``TestingShell`` runs cells like
a notebook would but raises instead of printing tracebacks, so a test sees the error.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from .emulator import Emulator
from .session import Session, set_session
from .settings import Settings

__all__ = ["TestingShell", "emulated_session"]


class TestingShell(InteractiveShell):
    """An InteractiveShell whose ``run_cell`` re-raises the cell's error.

    Its input history lives in memory (tests leave the user's IPython history alone).
    Call :meth:`close` when done with one: IPython keeps every shell alive until the
    interpreter exits and then resets each in turn, a full garbage collection apiece, so
    a test run that leaves hundreds of shells behind keeps working for minutes after its
    last test.
    """

    __test__ = False  # not a test class, whatever pytest makes of the name

    def __init__(self, **kwargs: Any) -> None:
        config = Config()
        config.merge(kwargs.pop("config", None) or Config())
        config.HistoryManager.hist_file = ":memory:"
        super().__init__(config=config, **kwargs)

    def close(self) -> None:
        """Release the shell now rather than at interpreter exit; safe to call twice."""
        atexit.unregister(self.atexit_operations)
        script = self.magics_manager.registry.get("ScriptMagics")
        if script is not None:  # it registers its own exit hook, which holds the shell too
            atexit.unregister(script.kill_bg_processes)
        if self.history_manager is not None:
            self.history_manager.close()
            self.history_manager = None
        self.cleanup()  # gives sys.modules["__main__"] back
        cls = type(self)
        if cls.initialized() and cls.instance() is self:
            cls.clear_instance()

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
