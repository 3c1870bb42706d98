"""``.env.example`` and the README settings table, generated from the declarations in bot/config.py.

``python -m bot.config_docs`` rewrites both; tests/test_config.py fails when either disagrees.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from bot.config import Settings
from bot.config_fields import declared

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
README_START = "<!-- settings:start (generated from bot/config.py by python -m bot.config_docs) -->"
README_END = "<!-- settings:end -->"

_HEADER = """\
# sora-discord-bot settings. Copy to .env and fill in what you need; real environment variables win
# over this file. Every value shown is the default. A wrong value stops start-up with one line
# naming the variable.
# Generated from bot/config.py by `python -m bot.config_docs`: change the declaration there, not this file."""


def env_example() -> str:
    lines = [_HEADER]  # sections start with a blank line
    for _, s in declared(Settings):
        if s.section:
            lines += ["", f"# --- {s.section} ".ljust(99, "-")]
        lines += textwrap.wrap(s.help, width=100, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
        lines.append(f"{s.env}={s.default}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for _, s in declared(Settings):
        default = f"`{s.default}`" if s.default else "—"
        if s.unset:
            default += f" ({s.unset})"
        rows.append(f"| `{s.env}` | {default} | {s.help.replace('|', '&#124;')} |")
    return "\n".join(rows)


def readme(text: str) -> str:
    """``text`` (the README) with its settings table replaced by the generated one."""
    start = text.index(README_START)
    end = text.index(README_END)
    return f"{text[:start]}{README_START}\n{readme_table()}\n{text[end:]}"


def main() -> None:
    ENV_EXAMPLE.write_text(env_example(), encoding="utf-8")
    README.write_text(readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    sys.stdout.write(f"wrote {ENV_EXAMPLE.name} and the settings table of {README.name}\n")


if __name__ == "__main__":
    main()
