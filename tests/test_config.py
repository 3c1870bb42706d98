"""Settings: defaults, one-line errors naming the variable, environment over .env, secrets never printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import config_docs
from bot.config import PROVIDERS, Secret, Settings, load_settings
from bot.config_fields import declared
from bot.errors import ConfigError

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the Docker image's HTTP_HOST
KEYS = {
    "SEGMIND_API_KEY": "sg-SECRET-segmind-0123456789",
    "SORA2API_API_KEY": "s2a-SECRET-sora2api-0123456789",
    "RELAY_API_KEY": "sk-SECRET-relay-0123456789",
    "OPENAI_API_KEY": "sk-SECRET-openai-0123456789",
    "DISCORD_TOKEN": "discord-SECRET-token-0123456789",
}


def _setting_names() -> set[str]:
    """Every variable config.py reads (so a stray one in the developer's shell cannot leak in)."""
    return {s.env for _, s in declared(Settings)}


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _setting_names() | set(KEYS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_without_any_key_are_the_demo_provider() -> None:
    settings = load_settings({})
    assert settings.provider == "demo"
    assert settings.daily_credits == 40
    assert settings.max_running_jobs == 4
    assert settings.max_running_jobs_per_user == 1
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.database_path == Path("data/bot.db")
    assert settings.secrets() == ()


@pytest.mark.parametrize(
    ("key", "provider"),
    [
        ("SEGMIND_API_KEY", "segmind"),
        ("SORA2API_API_KEY", "sora2api"),
        ("OPENAI_API_KEY", "openai"),
    ],
)
def test_provider_defaults_to_the_one_whose_key_is_set(key: str, provider: str) -> None:
    settings = load_settings({key: KEYS[key]})
    assert settings.provider == provider


def test_relay_key_picks_relay_when_its_base_url_is_set() -> None:
    settings = load_settings({"RELAY_API_KEY": KEYS["RELAY_API_KEY"], "RELAY_BASE_URL": "https://relay.example.com/"})
    assert settings.provider == "relay"
    assert settings.relay_base_url == "https://relay.example.com"  # trailing slash trimmed
    assert settings.relay_api_key.get() == KEYS["RELAY_API_KEY"]


def test_explicit_provider_wins_over_a_present_key() -> None:
    settings = load_settings({"PROVIDER": "Demo", "OPENAI_API_KEY": KEYS["OPENAI_API_KEY"]})
    assert settings.provider == "demo"


@pytest.mark.parametrize(
    ("env", "variable", "allowed"),
    [
        ({"PROVIDER": "midjourney"}, "PROVIDER", ", ".join(PROVIDERS)),
        ({"DAILY_CREDITS": "abc"}, "DAILY_CREDITS", "whole number"),
        ({"DAILY_CREDITS": "-3"}, "DAILY_CREDITS", ">= 0"),
        ({"MAX_RUNNING_JOBS": "0"}, "MAX_RUNNING_JOBS", ">= 1"),
        ({"SEGMIND_BASE_URL": "api.segmind.com"}, "SEGMIND_BASE_URL", "http or https URL"),
        ({"SEGMIND_BASE_URL": "ftp://api.segmind.com"}, "SEGMIND_BASE_URL", "http or https URL"),
        ({"OPENAI_BASE_URL": "https://api.openai.com"}, "OPENAI_BASE_URL", "end in /v1"),
        ({"OPENAI_BASE_URL": "https://relay.example.com/v1/videos"}, "OPENAI_BASE_URL", "end in /v1"),
        ({"PROVIDER": "openai"}, "OPENAI_API_KEY", "required when PROVIDER=openai"),
        ({"PROVIDER": "segmind-sync"}, "SEGMIND_API_KEY", "required when PROVIDER=segmind-sync"),
        ({"PROVIDER": "sora2api"}, "SORA2API_API_KEY", "required when PROVIDER=sora2api"),
        ({"PROVIDER": "relay", "RELAY_API_KEY": "k" * 12}, "RELAY_BASE_URL", "required when PROVIDER=relay"),
        ({"SYNC_COMMANDS": "maybe"}, "SYNC_COMMANDS", "1/0"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
        ({"DATABASE_URL": "mysql://u:pw@host/db"}, "DATABASE_URL", "sqlite:///"),
        ({"DISCORD_GATEWAY_URL": "https://gateway.example"}, "DISCORD_GATEWAY_URL", "ws or wss URL"),
        ({"POLL_COST_SECONDS": "cheap"}, "POLL_COST_SECONDS", "number of seconds"),
        ({"POLL_COST_SECONDS": "0"}, "POLL_COST_SECONDS", "> 0"),
        ({"POLL_COST_SECONDS": "nan"}, "POLL_COST_SECONDS", "> 0"),
        ({"PLAYGROUND": "1", "HTTP_HOST": ALL_INTERFACES}, "HTTP_HOST", "PLAYGROUND_PUBLIC=1"),
        ({"PLAYGROUND": "1", "HTTP_HOST": "bot.example.com"}, "HTTP_HOST", "HTTP_HOST=127.0.0.1"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable_and_what_is_allowed(
    env: dict[str, str], variable: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(variable), message
    assert allowed in message, message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SORA2API_PATH_PREFIX": "api"}, "SORA2API_PATH_PREFIX must start with '/', got 'api'"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT must be a port number between 1 and 65535, got 70000"),
        (
            {"PROVIDER_ORDER": "fal,bogus"},
            f"PROVIDER_ORDER names unknown providers bogus; known: {', '.join(PROVIDERS)}",
        ),
        ({"LOG_FORMAT": "XML"}, "LOG_FORMAT must be text or json, got 'xml'"),
        ({"JOB_TIMEOUT_SECONDS": "59"}, "JOB_TIMEOUT_SECONDS must be a whole number >= 60, got 59"),
        ({"MAX_RESULT_MB": "0"}, "MAX_RESULT_MB must be a whole number >= 1, got 0"),
        ({"ALLOWED_GUILD_IDS": "-1"}, "ALLOWED_GUILD_IDS must hold positive server ids, got '-1'"),
        ({"DISCORD_GUILD_ID": "x"}, "DISCORD_GUILD_ID must be a whole number (>= 1), got 'x'"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": ","}, "SHARD_IDS must be numbers from 0 to 1 (SHARD_COUNT - 1), got ','"),
        ({"TYPICAL_JOB_SECONDS": "1.5"}, "TYPICAL_JOB_SECONDS must be a whole number (>= 0), got '1.5'"),
    ],
)
def test_error_lines_are_word_for_word_those_operators_know(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert str(caught.value) == message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_the_playground_beside_the_bot_may_listen_on_loopback(host: str) -> None:
    assert load_settings({"PLAYGROUND": "1", "HTTP_HOST": host}).playground


def test_playground_public_serves_it_on_any_address_when_said_explicitly() -> None:
    settings = load_settings({"PLAYGROUND": "1", "PLAYGROUND_PUBLIC": "1", "HTTP_HOST": ALL_INTERFACES})
    assert settings.playground and settings.playground_public
    assert not load_settings({"HTTP_HOST": ALL_INTERFACES}).playground  # the bot's port alone: no playground, no error


def test_a_database_url_error_does_not_echo_credentials() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": "mysql://admin:hunter2-password@db.example/bot"})
    assert "hunter2-password" not in str(caught.value)


def test_real_environment_wins_over_dotenv(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DAILY_CREDITS=99\nMAX_RUNNING_JOBS=9\nPROVIDER=demo\n", encoding="utf-8")
    clean_environ.setenv("DAILY_CREDITS", "7")
    settings = load_settings(dotenv_path=dotenv)
    assert settings.daily_credits == 7  # from the environment
    assert settings.max_running_jobs == 9  # only in .env
    assert settings.provider == "demo"


def test_dotenv_errors_are_reported_like_environment_errors(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DAILY_CREDITS=lots\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^DAILY_CREDITS"):
        load_settings(dotenv_path=dotenv)


def test_missing_dotenv_file_is_fine(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    settings = load_settings(dotenv_path=tmp_path / "absent.env")
    assert settings.provider == "demo"


def test_no_secret_value_appears_in_repr_or_str() -> None:
    env = {
        **KEYS,
        "PROVIDER": "relay",
        "RELAY_BASE_URL": "https://relay.example.com",
    }
    settings = load_settings(env)
    texts = [repr(settings), str(settings), repr(settings.relay_api_key), str(settings.openai_api_key)]
    for text in texts:
        for value in KEYS.values():
            assert value not in text
    assert "Secret('***')" in repr(settings)
    assert set(settings.secrets()) == set(KEYS.values())


def test_secret_behaves_like_a_value_without_printing_itself() -> None:
    secret = Secret("abcd-1234-SECRET")
    assert secret.get() == "abcd-1234-SECRET"
    assert secret == Secret("abcd-1234-SECRET")
    assert secret != Secret("other")
    assert bool(secret) and not Secret("")
    assert "abcd" not in f"{secret} {secret!r} {[secret]}"
    assert repr(Secret("")) == "Secret('')"


def test_settings_defaults_match_load_settings_defaults() -> None:
    # The dataclass defaults (used by tests and the CLI) and the parser's defaults must not drift apart.
    assert Settings() == load_settings({})


def test_operator_limits_are_optional_numbers_and_server_ids() -> None:
    unset = load_settings({}, dotenv_path=None)
    assert (unset.server_daily_credits, unset.global_daily_credits, unset.max_allowance) == (None, None, None)
    assert unset.allowed_guild_ids == frozenset()
    env = {
        "SERVER_DAILY_CREDITS": "200",
        "GLOBAL_DAILY_CREDITS": "0",
        "MAX_ALLOWANCE": "100",
        "ALLOWED_GUILD_IDS": "123, 456",
    }
    settings = load_settings(env, dotenv_path=None)
    assert (settings.server_daily_credits, settings.global_daily_credits, settings.max_allowance) == (200, 0, 100)
    assert settings.allowed_guild_ids == frozenset({123, 456})
    with pytest.raises(ConfigError, match=r"^ALLOWED_GUILD_IDS"):
        load_settings({"ALLOWED_GUILD_IDS": "my-server"}, dotenv_path=None)
    with pytest.raises(ConfigError, match=r"^SERVER_DAILY_CREDITS"):
        load_settings({"SERVER_DAILY_CREDITS": "-5"}, dotenv_path=None)


def test_poll_cost_is_seconds_of_delay_per_status_request() -> None:
    assert load_settings({}).poll_cost_seconds == 0.115
    assert load_settings({"POLL_COST_SECONDS": "0.3"}).poll_cost_seconds == 0.3


def test_env_example_and_readme_table_are_generated_from_the_declarations() -> None:
    """A setting .env.example or the README leaves out is a setting nobody finds; one they list but the
    code ignores, or with another default, is worse. Both are generated: ``python -m bot.config_docs``."""
    assert config_docs.ENV_EXAMPLE.read_text(encoding="utf-8") == config_docs.env_example()
    readme = config_docs.README.read_text(encoding="utf-8")
    assert readme == config_docs.readme(readme), "regenerate the README settings table: python -m bot.config_docs"


def test_every_setting_is_declared_once_with_help_and_a_parsable_default() -> None:
    names = [s.env for _, s in declared(Settings)]
    assert len(names) == len(set(names)), "two fields read the same variable"
    example = re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", config_docs.env_example(), re.MULTILINE)
    assert [name for name, _ in example] == names
    for f, s in declared(Settings):
        assert s.help.strip(), f"{s.env} has no help text"
        assert getattr(Settings(), f.name) == s.read("") or f.name == "provider"  # provider: the demo one
        assert f"| `{s.env}` | " in config_docs.readme_table()


def test_a_declared_default_is_the_value_when_the_variable_is_empty() -> None:
    blank = load_settings({s.env: "  " for _, s in declared(Settings)})
    assert blank == Settings()


def test_comfyui_is_usable_with_its_address_and_workflow_and_refuses_half_a_setup() -> None:
    settings = load_settings({"COMFYUI_URL": "http://127.0.0.1:8188/", "COMFYUI_WORKFLOW": "wf.json"})
    assert settings.providers == ("comfyui",)
    assert settings.comfyui_url == "http://127.0.0.1:8188" and settings.comfyui_workflow == Path("wf.json")
    both = load_settings({"FAL_KEY": "k", "COMFYUI_URL": "http://gpu:8188", "COMFYUI_WORKFLOW": "wf.json"})
    assert both.providers == ("fal", "comfyui")
    token = {"COMFYUI_URL": "http://gpu:8188", "COMFYUI_WORKFLOW": "w.json", "COMFYUI_TOKEN": "tok-SECRET-1234"}
    assert "tok-SECRET-1234" in load_settings(token).secrets()
    for env in ({"COMFYUI_URL": "http://gpu:8188"}, {"COMFYUI_WORKFLOW": "wf.json"}):
        with pytest.raises(ConfigError, match="COMFYUI_URL and COMFYUI_WORKFLOW go together"):
            load_settings(env)
    with pytest.raises(ConfigError, match="COMFYUI_URL is required when PROVIDER=comfyui"):
        load_settings({"PROVIDER": "comfyui"})
