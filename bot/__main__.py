"""``python -m bot`` runs the Discord bot; ``python -m bot generate ...`` makes one video from the terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import load_settings
from bot.errors import ConfigError
from bot.logging_setup import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Short AI videos in Discord.")
    commands = parser.add_subparsers(dest="command")
    from bot import cli

    cli.add_arguments(commands.add_parser("generate", help="make one video without Discord"))
    commands.add_parser("models", help="list the model catalogue and what the configured providers can run")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc.detail}", file=sys.stderr)
        return 2
    setup_logging(
        settings.log_level if args.command is None else "WARNING", fmt=settings.log_format, secrets=settings.secrets()
    )
    if args.command == "generate":
        return asyncio.run(cli.generate(args, settings))
    if args.command == "models":
        try:
            return cli.print_models(settings)
        except ConfigError as exc:
            print(f"configuration error: {exc.detail}", file=sys.stderr)
            return 2
    from bot.discord_app import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
