"""Logging is configured once, here, at start-up."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    # discord.py's gateway chatter is not useful at INFO.
    logging.getLogger("discord").setLevel(max(logging.getLevelName(level), logging.WARNING))
