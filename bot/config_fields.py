"""How one setting is declared and read: :func:`setting` on a field of ``Settings`` and the parsers it takes.

A declaration carries everything about a setting: its environment name, its default as written in
``.env`` (the field's default is that text parsed, so the two cannot drift apart), how the text is
read and checked, and the help text that ``.env.example`` and the README table are generated from
(bot/config_docs.py). A wrong value raises :class:`ConfigError` with one line naming the variable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from bot.errors import ConfigError

T = TypeVar("T")
U = TypeVar("U")

Parser = Callable[[str, str], T]
"""``parse(name, text) -> value``: ``text`` is the stripped value, or the declared default when empty."""


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    """As written in ``.env`` (``""`` = unset)."""
    parse: Parser[Any]
    help: str
    """One paragraph for ``.env.example`` and the README table (Markdown code spans allowed)."""
    unset: str = ""
    """What leaving it empty means, when that is not obvious (README: ``— (no cap)``)."""
    section: str = ""
    """Starts a new section of ``.env.example`` at this setting."""

    def read(self, text: str) -> Any:
        return self.parse(self.env, text.strip() or self.default)


def setting(
    env: str, default: str, parse: Parser[T], help: str, *, unset: str = "", section: str = "", repr: bool = True
) -> T:
    """A ``Settings`` field read from ``env``; its default is ``parse(default)``."""
    declared = Setting(env, default, parse, " ".join(help.split()), unset, section)
    result: T = field(default=declared.read(""), repr=repr, metadata={"setting": declared})
    return result


def declared(cls: type) -> Iterator[tuple[Field[Any], Setting]]:
    """The fields of dataclass ``cls`` read from the environment, in declaration order."""
    for f in fields(cls):
        if isinstance(s := f.metadata.get("setting"), Setting):
            yield f, s


# --- parsers -------------------------------------------------------------------------------------


def text(name: str, value: str) -> str:
    return value


def lower(name: str, value: str) -> str:
    return value.lower()


def secret(name: str, value: str) -> Secret:
    return Secret(value)


def path(name: str, value: str) -> Path:
    return Path(value)


def optional(parse: Parser[T]) -> Parser[T | None]:
    """Empty = ``None``; anything else as ``parse`` reads it."""

    def read(name: str, value: str) -> T | None:
        return parse(name, value) if value else None

    return read


def url(*, schemes: tuple[str, ...] = ("http", "https")) -> Parser[str]:
    """An absolute URL with one of ``schemes``, trailing slashes trimmed (empty stays empty)."""

    def read(name: str, value: str) -> str:
        value = value.rstrip("/")
        if not value:
            return ""
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ConfigError(
                f"{name} must be a {' or '.join(schemes)} URL like {schemes[0]}://host/..., got {value!r}"
            )
        return value

    return read


def whole(minimum: int = 0) -> Parser[int]:
    def read(name: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number (>= {minimum}), got {value!r}") from None
        if number < minimum:
            raise ConfigError(f"{name} must be a whole number >= {minimum}, got {number}")
        return number

    return read


def port(name: str, value: str) -> int:
    number = whole(1)(name, value)
    if number > 65535:
        raise ConfigError(f"{name} must be a port number between 1 and 65535, got {number}")
    return number


def seconds(minimum: int = 0) -> Parser[float]:
    """Whole seconds, held as a float."""
    return then(whole(minimum), float)


def megabytes(name: str, value: str) -> int:
    """Whole MB (>= 1), held in bytes."""
    return whole(1)(name, value) * 1024 * 1024


def positive_seconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds (> 0), got {value!r}") from None
    if not (0 < number < math.inf):
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
    return number


def flag(name: str, value: str) -> bool:
    value = value.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1/0 (or true/false), got {value!r}")


def choice(*allowed: str, case: Callable[[str], str] = str.lower) -> Parser[str]:
    def read(name: str, value: str) -> str:
        value = case(value)
        if value not in allowed:
            raise ConfigError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
        return value

    return read


def names(name: str, value: str) -> tuple[str, ...]:
    """``a, b,a``: the comma-separated names, each once, in order."""
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def then(parse: Parser[T], convert: Callable[[T], U]) -> Parser[U]:
    def read(name: str, value: str) -> U:
        return convert(parse(name, value))

    return read


def check(parse: Parser[T], ok: Callable[[T], bool], message: str) -> Parser[T]:
    """``parse``, then refuse a value ``ok`` rejects with ``message`` (``{name}``, ``{value!r}`` filled in)."""

    def read(name: str, value: str) -> T:
        result = parse(name, value)
        if not ok(result):
            raise ConfigError(message.format(name=name, value=result))
        return result

    return read
