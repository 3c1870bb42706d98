"""Structured logging: one JSON object per line, extra fields kept, secrets scrubbed by construction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.config import load_settings
from bot.logging_setup import make_handler, setup_logging

KEY = "sk-live-0123456789abcdef"
TOKEN = "MTIzNDU2Nzg5.discord.token"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records go through the handler ``python -m bot`` installs (json, our two secrets)."""
    settings = load_settings({"PROVIDER": "relay", "RELAY_BASE_URL": "http://relay", "RELAY_API_KEY": KEY,
                              "DISCORD_TOKEN": TOKEN, "LOG_FORMAT": "json"})  # fmt: skip
    stream = io.StringIO()
    handler = make_handler(settings.log_format, settings.secrets(), stream)
    logger = logging.getLogger("tests.logging.capture")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_timestamp_level_logger_message_and_extras(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("job %s: %s -> %s", 7, "queued", "submitting", extra={"job_id": 7, "state": "submitting"})
    logger.warning('plain line with a "quote" and a\nnewline')
    first, second = lines(stream)
    assert first["message"] == "job 7: queued -> submitting"
    assert first["job_id"] == 7 and first["state"] == "submitting"
    assert first["level"] == "INFO" and first["logger"] == "tests.logging.capture"
    assert str(first["ts"]).endswith("+00:00") and "T" in str(first["ts"])
    assert second["message"] == 'plain line with a "quote" and a\nnewline'
    assert len(stream.getvalue().splitlines()) == 2, "one line per record, newlines escaped"


def test_secrets_never_reach_the_output(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("calling with key %s", KEY)
    logger.info(f"an f-string with the token {TOKEN} in the format itself")  # noqa: G004 - the point of the test
    logger.info("extra fields too", extra={"job_id": 1, "url": f"https://x/?key={KEY}", "blob": {"k": KEY}})
    try:
        raise RuntimeError(f"Authorization: Bearer {KEY}")
    except RuntimeError:
        logger.exception("request failed")
    text = stream.getvalue()
    assert KEY not in text and TOKEN not in text
    records = lines(stream)
    assert records[0]["message"] == "calling with key ***"
    assert "***" in str(records[2]["url"]) and records[2]["job_id"] == 1
    assert "RuntimeError: Authorization: Bearer ***" in str(records[3]["exc_info"])


def test_text_format_is_scrubbed_as_well() -> None:
    stream = io.StringIO()
    handler = make_handler("text", (KEY,), stream)
    logger = logging.getLogger("tests.logging.text")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("key=%s", KEY)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("tests.logging.text: key=***")


def test_setup_logging_installs_the_scrubbing_handler_on_the_root_logger() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", fmt="json", secrets=(KEY,))
        (handler,) = root.handlers
        stream = io.StringIO()
        handler.setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger("bot.some.module").info("key %s", KEY, extra={"job_id": 3})
        (record,) = lines(stream)
        assert record == {**record, "message": "key ***", "job_id": 3, "logger": "bot.some.module"}
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
