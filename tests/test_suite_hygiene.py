"""The test suite's own machinery: what a test leaves behind must not outlive it.

IPython registers every shell's ``atexit_operations``, which resets the shell with a full
garbage collection at interpreter exit. The suite used to leave one shell per magic test
behind, and pytest went on at 100% CPU for about two minutes after its summary line.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from qaudio_magic._testing import TestingShell

from .conftest import ROOT

EXIT_WORK = """
import atexit, sys
from IPython.core.interactiveshell import InteractiveShell
from qaudio_magic._testing import TestingShell

resets = []
atexit.register(lambda: print("resets at exit:", len(resets) - before))  # runs last
real = InteractiveShell.reset
InteractiveShell.reset = lambda self, *a, **k: (resets.append(self), real(self, *a, **k))[1]
for _ in range(5):
    shell = TestingShell.instance()
    shell.run_line_magic("load_ext", "qaudio_magic")
    shell.run_cell("x = 1")
    shell.run_line_magic("unload_ext", "qaudio_magic")
    if sys.argv[1] == "close":
        shell.close()
    else:
        TestingShell.clear_instance()  # what the fixture used to do
before = len(resets)
"""


def _resets_at_exit(how: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WORK, how],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_closed_shells_leave_no_work_for_interpreter_exit() -> None:
    assert _resets_at_exit("clear_instance") == "resets at exit: 5"  # the old way, counted
    assert _resets_at_exit("close") == "resets at exit: 0"


def test_a_closed_shell_is_freed_and_gives_main_back(ip: TestingShell) -> None:
    main = sys.modules["__main__"]
    shell = TestingShell()
    shell.run_cell("x = 1")
    assert shell.history_manager is not None
    assert shell.history_manager.hist_file == ":memory:"  # the user's history is left alone
    shell.close()
    shell.close()  # twice is harmless
    assert sys.modules["__main__"] is main
    gone = weakref.ref(shell)
    del shell
    gc.collect()
    assert gone() is None  # nothing (atexit included) holds a closed shell


def test_closing_the_fixture_shell_clears_the_instance(ip: TestingShell) -> None:
    assert TestingShell.initialized() and TestingShell.instance() is ip
    ip.close()
    assert not TestingShell.initialized()
