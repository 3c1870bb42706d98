"""Logging is configured once, here, at start-up.

``LOG_FORMAT=json`` writes one JSON object per line (``ts``, ``level``, ``logger``, ``message``, plus
any ``extra=`` fields such as ``job_id``). Either format passes every record through
:class:`RedactSecrets` on the handler, so a secret from the settings cannot reach the output even
when a library or a traceback carries it (redaction by construction, not by care at each call).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from bot.errors import redact

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replace every secret value in a record's final message, traceback and extra fields by ``***``.

    Installed on handlers (a logger's filters do not see records propagated from child loggers).
    The message is formatted here and ``args`` dropped, so no later step can re-insert a secret.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: keep the raw parts, still scrubbed
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message, self._secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_ATTRS or value is None or isinstance(value, bool | int | float):
                continue
            # Extras are meant to be scalars; anything else is flattened to text so it can be scrubbed.
            setattr(record, key, redact(value if isinstance(value, str) else repr(value), self._secrets))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_handler(fmt: str = "text", secrets: Iterable[str] = (), stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (default stderr) in ``fmt`` (text|json) that scrubs ``secrets``."""
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(RedactSecrets(secrets))
    return handler


def setup_logging(level: str = "INFO", *, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    logging.basicConfig(level=level, handlers=[make_handler(fmt, secrets)], force=True)
    # discord.py's gateway chatter is not useful at INFO.
    logging.getLogger("discord").setLevel(max(logging.getLevelName(level), logging.WARNING))
