"""The README's model table is the catalogue's, and every setting it documents exists."""

from __future__ import annotations

from pathlib import Path

from bot.catalogue import load_catalogue
from bot.catalogue.catalogue import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_model_table_matches_the_catalogue() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- models:start")
    block = text[text.index("\n", start) + 1 : text.index("<!-- models:end -->")].strip()
    assert block == markdown_table(load_catalogue()), "regenerate the README table from bot/catalogue/models.toml"
