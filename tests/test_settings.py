import logging

import pytest

from recgraph.errors import ConfigError
from recgraph.progress import progress_enabled
from recgraph.settings import (
    DEFAULT_DATABASE_URL,
    RedactingFilter,
    Settings,
    config_of,
    database_url,
    load_settings,
    mask_url,
    redact,
    registry_root,
    validated_config,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(f"RECGRAPH_{name.upper()}", raising=False)


def test_defaults_then_variables_then_options(monkeypatch):
    assert load_settings().database_url == DEFAULT_DATABASE_URL == database_url()
    monkeypatch.setenv("RECGRAPH_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("RECGRAPH_REGISTRY", "/env/models")
    monkeypatch.setenv("RECGRAPH_MAX_K", "7")
    settings = load_settings(registry="/option/models", database_url=None)
    assert settings.database_url == "sqlite:///env.db"  # an option nobody gave keeps the variable
    assert settings.registry == "/option/models" and settings.max_k == 7
    assert (
        database_url() == "sqlite:///env.db" and database_url("sqlite:///x.db") == "sqlite:///x.db"
    )
    assert registry_root() == "/env/models" and registry_root("/given") == "/given"


def test_a_bad_value_names_the_variable_or_the_option(monkeypatch):
    monkeypatch.setenv("RECGRAPH_PORT", "eighty")
    with pytest.raises(ConfigError, match="RECGRAPH_PORT"):
        load_settings()
    monkeypatch.delenv("RECGRAPH_PORT")
    with pytest.raises(ConfigError, match="max_k"):
        load_settings(max_k=0)


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True)])
def test_progress_setting(monkeypatch, value, expected):
    monkeypatch.setenv("RECGRAPH_PROGRESS", value)
    assert progress_enabled() is expected
    assert progress_enabled(Settings(progress=not expected)) is (not expected)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg://bob:hunter2@db:5432/rec",
            "postgresql+psycopg://bob:***@db:5432/rec",
        ),
        ("mysql+pymysql://root@127.0.0.1/test", "mysql+pymysql://root@127.0.0.1/test"),
        ("sqlite:///recgraph.db", "sqlite:///recgraph.db"),
        ("https://u:p%40ss@example.test/x?a=1", "https://u:***@example.test/x?a=1"),
        ("https://h.test/send?api_key=abc&chat=5", "https://h.test/send?api_key=***&chat=5"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_settings_know_their_secrets_and_show_a_safe_url():
    settings = Settings(database_url="postgresql://u:pw-1@h/db", api_token="tok-2")
    assert "pw-1" not in settings.safe_database_url and "***" in settings.safe_database_url
    assert sorted(settings.secrets()) == ["pw-1", "tok-2"]
    assert "tok-2" not in repr(settings) and "tok-2" not in str(settings.model_dump())
    assert "pw-1" not in repr(settings) and "pw-1" not in str(settings)


def test_redact_and_the_logging_filter(caplog):
    assert redact("GET /bot123:ABC/getMe", ["123:ABC", None, ""]) == "GET /bot***/getMe"
    logger = logging.getLogger("recgraph.test_settings")
    secret_filter = RedactingFilter(["123:ABC"])
    logger.addFilter(secret_filter)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("HTTP Request: POST %s", "https://api.test/bot123:ABC/getUpdates")
            secret_filter.add("late")
            logger.info("a late secret")
    finally:
        logger.removeFilter(secret_filter)
    assert [r.getMessage() for r in caplog.records] == [
        "HTTP Request: POST https://api.test/bot***/getUpdates",
        "a *** secret",
    ]


def test_config_of_takes_the_object_or_validates_its_fields():
    from pydantic import BaseModel, Field, ValidationError

    class Knobs(BaseModel):
        rate: float = Field(default=1.0, gt=0)

    given = Knobs(rate=2.0)
    assert config_of(Knobs, given) is given
    assert config_of(Knobs, {"rate": 3.0}).rate == 3.0
    assert config_of(Knobs, None) == Knobs()
    with pytest.raises(ValidationError):
        config_of(Knobs, {"rate": 0})


def test_validated_config_layers_overrides_and_names_a_bad_key():
    from pydantic import BaseModel, ConfigDict, Field

    class Knobs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rate: float = Field(default=1.0, gt=0)
        depth: int = 2

    assert validated_config(Knobs, Knobs(rate=2.0), {"depth": 5}) == Knobs(rate=2.0, depth=5)
    assert validated_config(Knobs, None) == Knobs()
    with pytest.raises(
        ConfigError, match=r"invalid parameters: m\.rate: .* \(known: rate, depth\)"
    ):
        validated_config(Knobs, {"rate": 0}, name="m")
    with pytest.raises(ConfigError, match=r"invalid index parameters: nope: "):
        validated_config(Knobs, {}, {"nope": 1}, what="index parameters")
