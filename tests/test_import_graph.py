"""The package import graph, read from the source with ``ast``: dependencies point one way.

Arrows point down: cogs -> discord_ui -> jobs -> providers, storage, media,
catalogue -> domain. Only ``cogs/`` and ``bot/discord_ui/`` (and the Discord wiring in bot/client.py,
bot/discord_app.py) know discord.py.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("bot.media", "bot.catalogue", "bot.jobs", "bot.storage", "bot.providers", "bot.credits", "bot.domain")
"""Packages below the Discord layer."""


def module_name(path: Path) -> str:
    parts = list((path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path(path.name)).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def imports_of(path: Path, *, typing_too: bool = False) -> set[str]:
    """Every module ``path`` imports, wherever in the file (a lazy import inside a function counts too);
    imports for type checking only when ``typing_too``."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree) if typing_too else runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def source_files(*, typing_too: bool = False) -> dict[str, set[str]]:
    return {
        module_name(path): imports_of(path, typing_too=typing_too)
        for folder in ("bot", "cogs")
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def package_of(module: str) -> str | None:
    """``bot.jobs.runner`` -> ``bot.jobs``; a top-level module (``bot.config``) is its own node; None outside."""
    parts = module.split(".")
    if parts[0] == "cogs":
        return "cogs"
    if parts[0] != "bot" or len(parts) == 1:
        return None
    return ".".join(parts[:2])


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in source_files().items():
        source = package_of(module)
        for target in map(package_of, imported):
            if source and target and target != source:
                graph[source].add(target)
    return graph


@pytest.mark.parametrize("package", LOWER)
def test_nothing_below_the_discord_layer_imports_discord(package: str) -> None:
    offenders = sorted(
        f"{module} imports {name}"
        for module, imported in source_files(typing_too=True).items()
        if within(module, package)
        for name in imported
        if within(name, "discord") or within(name, "cogs") or within(name, "bot.discord_ui")
    )
    assert offenders == []


def test_media_never_imports_providers() -> None:
    offenders = sorted(
        f"{module} imports {name}"
        for module, imported in source_files(typing_too=True).items()
        if within(module, "bot.media")
        for name in imported
        if within(name, "bot.providers")
    )
    assert offenders == []


def cycles_in(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every pair of packages that import each other, directly or through others."""

    def reaches(start: str, goal: str) -> bool:
        seen: set[str] = set()
        todo = [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    return {tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)}


def test_no_import_cycle_between_packages() -> None:
    assert cycles_in(package_graph()) == set()


def test_a_cycle_through_a_third_package_is_found() -> None:
    """The checker can fail: media -> providers -> catalogue -> media is a cycle."""
    graph = {"bot.media": {"bot.providers"}, "bot.providers": {"bot.catalogue"}, "bot.catalogue": {"bot.media"}}
    assert ("bot.media", "bot.providers") in cycles_in(graph)


def test_type_only_imports_are_left_out_of_the_runtime_graph(tmp_path: Path) -> None:
    """The checker can fail: a real import is seen, one under ``if TYPE_CHECKING:`` is not."""
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport bot.providers\n"
        "if TYPE_CHECKING:\n    from bot.client import SoraBot\n"
    )
    assert "bot.providers" in imports_of(source)
    assert "bot.client" not in imports_of(source)
    assert "bot.client" in imports_of(source, typing_too=True)
