"""``python -m bot`` runs the Discord bot (or, with no DISCORD_TOKEN, the local playground);
``python -m bot playground`` the playground explicitly; ``python -m bot generate ...`` one video in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import check_playground_host, load_settings
from bot.errors import ConfigError
from bot.logging_setup import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Short AI videos in Discord.")
    commands = parser.add_subparsers(dest="command")
    from bot import cli

    cli.add_arguments(commands.add_parser("generate", help="make one video without Discord"))
    commands.add_parser("models", help="list the model catalogue and what the configured providers can run")
    commands.add_parser("playground", help="/sora in a local browser page, without Discord")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc.detail}", file=sys.stderr)
        return 2
    setup_logging(
        settings.log_level if args.command in (None, "playground") else "WARNING",
        fmt=settings.log_format,
        secrets=settings.secrets(),
    )
    if args.command in (None, "generate"):
        from bot.providers.registry import check_setup

        try:
            check_setup(settings)
        except ConfigError as exc:
            print(f"configuration error: {exc.detail}", file=sys.stderr)
            return 2
    if args.command == "generate":
        return asyncio.run(cli.generate(args, settings))
    if args.command == "models":
        try:
            return cli.print_models(settings)
        except ConfigError as exc:
            print(f"configuration error: {exc.detail}", file=sys.stderr)
            return 2
    if args.command == "playground" or not settings.discord_token:
        from bot.playground.app import run_playground

        try:
            check_playground_host(settings)
        except ConfigError as exc:
            print(f"configuration error: {exc.detail}", file=sys.stderr)
            return 2

        reason = "open it in a browser; Ctrl+C stops"
        if args.command is None:
            reason = "DISCORD_TOKEN is not set, so /sora runs in this page; README: 'Put it in your Discord server'"
        return run_playground(settings, reason=reason)
    from bot.discord_app import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
