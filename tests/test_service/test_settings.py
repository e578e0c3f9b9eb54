"""Settings: environment, overrides, validation and secret masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, is_loopback


def test_settings_no_env_defaults() -> None:
    settings = Settings()

    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.kafka_topic == "cloudtrail"
    assert settings.kafka_group_id == "trailwarden"
    assert settings.database_url == "sqlite:///trailwarden.db"
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.api_tokens == []
    assert settings.webhook_urls == []


def test_settings_env_comma_lists_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAILWARDEN_API_TOKENS", "alpha, beta,")
    monkeypatch.setenv("TRAILWARDEN_WEBHOOK_URLS", "http://a.test/x,https://b.test/y")
    monkeypatch.setenv("TRAILWARDEN_WEBHOOK_SECRET", "s3cret")

    settings = Settings()

    assert settings.token_values() == ["alpha", "beta"]
    assert settings.webhook_urls == ["http://a.test/x", "https://b.test/y"]


def test_settings_env_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAILWARDEN_KAFKA_TOPIC", "trail")
    monkeypatch.setenv("TRAILWARDEN_HTTP_PORT", "9000")
    monkeypatch.setenv("TRAILWARDEN_POLICY_FILE", "/etc/tw/policy.yaml")

    settings = Settings()

    assert settings.kafka_topic == "trail"
    assert settings.http_port == 9000
    assert settings.policy_file == Path("/etc/tw/policy.yaml")


def test_settings_overrides_beat_env_and_none_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAILWARDEN_KAFKA_TOPIC", "from-env")
    monkeypatch.setenv("TRAILWARDEN_KAFKA_GROUP_ID", "env-group")

    settings = Settings.from_overrides(kafka_topic="from-flag", kafka_group_id=None)

    assert settings.kafka_topic == "from-flag"
    assert settings.kafka_group_id == "env-group"


def test_settings_tokens_as_string_kwarg_split() -> None:
    settings = Settings(api_tokens="one,two", http_host="0.0.0.0")

    assert settings.token_values() == ["one", "two"]


def test_settings_assignment_frozen() -> None:
    settings = Settings()

    with pytest.raises(ValidationError):
        settings.kafka_topic = "other"  # type: ignore[misc]


def test_settings_public_host_without_tokens_refused() -> None:
    with pytest.raises(ValidationError, match="not a loopback address"):
        Settings(http_host="0.0.0.0")


def test_settings_public_host_with_tokens_accepted() -> None:
    settings = Settings(http_host="0.0.0.0", api_tokens=["t"])

    assert settings.http_host == "0.0.0.0"


def test_settings_webhook_without_secret_refused() -> None:
    with pytest.raises(ValidationError, match="webhook_secret"):
        Settings(webhook_urls=["https://hooks.test/x"])


def test_settings_webhook_not_http_refused() -> None:
    with pytest.raises(ValidationError, match="is not http"):
        Settings(webhook_urls=["ftp://hooks.test/x"], webhook_secret="s")


@pytest.mark.parametrize("level", ["verbose", ""])
def test_settings_bad_log_level_refused(level: str) -> None:
    with pytest.raises(ValidationError, match="log level"):
        Settings(log_level=level)


def test_settings_unknown_field_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_topik"):
        Settings(kafka_topik="x")  # type: ignore[call-arg]


def test_settings_repr_secrets_masked() -> None:
    settings = Settings(
        api_tokens=["tok-123"],
        webhook_urls=["https://hooks.test/services/T0/B0/hooktoken"],
        webhook_secret="whsec-456",
        database_url="postgresql://tw:dbpass@db.test/tw",
    )

    text = repr(settings) + str(settings)

    for secret in ("tok-123", "hooktoken", "whsec-456", "dbpass"):
        assert secret not in text
    assert "postgresql://tw:***@db.test/tw" in text


def test_settings_describe_secrets_masked() -> None:
    settings = Settings(
        api_tokens=["tok-123", "tok-789"],
        webhook_urls=["https://hooks.test/services/hooktoken"],
        webhook_secret="whsec-456",
        database_url="postgresql://tw:dbpass@db.test/tw",
    )

    described = settings.describe()

    assert described["api_tokens"] == 2
    assert described["webhook_secret"] == "**********"
    assert described["webhook_urls"] == ["https://hooks.test/..."]
    assert described["database_url"] == "postgresql://tw:***@db.test/tw"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.test", False),
    ],
)
def test_is_loopback_host_classified(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
