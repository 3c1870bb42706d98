"""The numbered migrations shipped with the package, for either backend's migrate()."""

from __future__ import annotations

from importlib import resources


def shipped_migrations(package: str) -> list[tuple[int, str, str]]:
    """(number, name, sql) for every ``NNNN_name.sql`` in ``package``, in order."""
    found = []
    for entry in resources.files(package).iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)
