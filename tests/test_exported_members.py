"""The public surface and the shape of the package: what users import, and that no module
reaches into another's private names or takes part in an import cycle."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import qaudio_magic

PACKAGE = Path(qaudio_magic.__file__).parent

PUBLIC = [
    "APIError",
    "AnswerMismatchError",
    "Answer",
    "Answers",
    "AudioClip",
    "AudioDecodeError",
    "AudioTooLargeError",
    "CacheMissError",
    "ConfigError",
    "Conversation",
    "Failure",
    "Grid",
    "InputError",
    "Interrupted",
    "MissingKeyError",
    "Player",
    "QAudioError",
    "Recorder",
    "SchemaError",
    "Segment",
    "SourceError",
    "TransportError",
    "__version__",
    "ask_audio",
    "compare",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def test_public_names_are_pinned() -> None:
    assert sorted(qaudio_magic.__all__) == sorted(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports_from_the_package(name: str) -> None:
    value = getattr(qaudio_magic, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from qaudio_magic import {name}", namespace)
    assert namespace[name] is value


def test_every_error_is_in_the_tree_and_exported() -> None:
    errors = importlib.import_module("qaudio_magic.errors")
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, qaudio_magic.QAudioError)
        assert name in qaudio_magic.__all__
        assert name in (errors.__doc__ or ""), f"{name} is missing from the drawn tree"


def test_unknown_names_fail_like_a_module() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        qaudio_magic.nope  # noqa: B018


# ---------------------------------------------------------------------- import graph
def _modules() -> dict[str, tuple[Path, list[str]]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = parts
        else:
            package = parts[:-1]
        found[".".join(parts)] = (path, package)
    return found


def _edges() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Every import between the package's modules — at the top, inside functions and under
    TYPE_CHECKING alike — and every import of a private name from a public module."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    private: list[tuple[str, str, str]] = []
    for name, (path, package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + (node.module.split(".") if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("qaudio_magic"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        graph[name].add(sub)
                    elif target in modules:
                        graph[name].add(target)
                        public_module = not target.rsplit(".", 1)[-1].startswith("_")
                        if alias.name.startswith("_") and public_module and target != name:
                            private.append((name, target, alias.name))
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph, _ = _edges()
    assert len(graph) > 40 and graph["qaudio_magic.ask"]  # the walk found the package
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_names() -> None:
    _, private = _edges()
    assert private == []
