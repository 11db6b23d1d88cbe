"""bench/run.py collects rows from any bench module and survives the ones that break.

The numbers themselves are the benchmark's business (CI runs ``bench/run.py --quick``);
here: a module's rows reach the table, a missed target reads as missed, and a module that
raises, returns junk or hangs becomes a row saying so without stopping the others.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"bench_{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_rows_reach_the_table_and_misses_say_so(harness: ModuleType, tmp_path: Path) -> None:
    good = _module(
        tmp_path,
        "good",
        """
        def rows(quick):
            return [
                {"row": "fast thing", "ours": "1 ms", "peer": "2 ms", "ratio": "0.5×",
                 "target": "≤ 1 ms", "met": True, "note": f"quick={quick}"},
                {"row": "slow thing", "ours": "9 ms", "target": "≤ 1 ms", "met": False},
            ]
        """,
    )
    rows, _ = harness.run_module(good, True, 60)
    assert [r["row"] for r in rows] == ["fast thing", "slow thing"]
    assert rows[0]["note"] == "quick=True"
    assert rows[1]["peer"] == "" and rows[1]["met"] is False
    text = harness.report(rows, True, 1.0, ["- machine facts"])
    assert "**1 of 2 targets met.** Missed: slow thing." in text
    assert "| slow thing | 9 ms |  |  | ≤ 1 ms | **MISSED** |" in text
    assert "- machine facts" in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "def rows(quick):\n    raise ValueError('emulator route missing')\n",
            "ValueError: emulator route missing",
        ),
        ("def rows(quick):\n    return {'row': 'not a list'}\n", "not a non-empty list"),
        ("import nonexistent_module_xyz\n", "No module named 'nonexistent_module_xyz'"),
        (
            "def rows(quick):\n    return [{'ours': 'no name'}]\n",
            "must be a dict with a 'row' name",
        ),
    ],
)
def test_a_broken_module_becomes_an_error_row(
    harness: ModuleType, tmp_path: Path, body: str, reason: str
) -> None:
    rows, _ = harness.run_module(_module(tmp_path, "broken", body), True, 60)
    assert len(rows) == 1
    assert rows[0]["row"] == "bench_broken: did not run"
    assert reason in rows[0]["note"]
    assert rows[0]["met"] is None and rows[0]["error"]
    assert "Did not run: bench_broken: did not run." in harness.report(rows, True, 1.0, [])


def test_a_hanging_module_is_stopped(harness: ModuleType, tmp_path: Path) -> None:
    path = _module(tmp_path, "hang", "import time\ndef rows(quick):\n    time.sleep(60)\n")
    rows, seconds = harness.run_module(path, True, 2)
    assert rows[0]["note"] == "timed out after 2 s"
    assert seconds < 30


def test_modules_run_in_issue_order(harness: ModuleType) -> None:
    names = [p.stem for p in harness.modules([])]
    known = [n for n in names if n.removeprefix("bench_") in harness.ORDER]
    assert known == sorted(known, key=lambda n: harness.ORDER.index(n.removeprefix("bench_")))
    assert {
        "bench_overhead",
        "bench_ttft",
        "bench_wire",
        "bench_load_ext",
        "bench_notebook",
    } <= set(names)
