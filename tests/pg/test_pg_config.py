"""DATABASE_URL for PostgreSQL: accepted in both spellings, and its password kept out of logs and reprs."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.storage.backend import is_postgres


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_are_accepted_and_their_password_is_a_secret(scheme: str) -> None:
    settings = load_settings({"DATABASE_URL": f"{scheme}://bot:p%40ss-w0rd@db.example:5432/sora"}, dotenv_path=None)
    assert is_postgres(settings.database_url)
    assert {"p@ss-w0rd", "p%40ss-w0rd"} <= set(settings.secrets())  # the log filter redacts both spellings
    assert "p%40ss-w0rd" not in repr(settings) and "p@ss-w0rd" not in repr(settings)


def test_sqlite_urls_have_no_database_secret() -> None:
    settings = load_settings({"DATABASE_URL": "sqlite:///data/x.db"}, dotenv_path=None)
    assert not is_postgres(settings.database_url)
    assert settings.secrets() == ()
