"""Settings for `trailwarden run`: environment variables prefixed `TRAILWARDEN_`.

Validated once at start; secrets are `SecretStr` and never appear in a repr or log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogFormat = Literal["auto", "json", "console"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Everything `trailwarden run` needs; keyword arguments override the env.

    `api_tokens` and `webhook_urls` are read from the environment as
    comma-separated strings, for example `TRAILWARDEN_API_TOKENS=a,b`.
    """

    model_config = SettingsConfigDict(
        env_prefix="TRAILWARDEN_", frozen=True, extra="forbid"
    )

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic: str = "cloudtrail"
    kafka_group_id: str = "trailwarden"
    kafka_max_batch_records: int = Field(default=500, ge=1)
    kafka_session_timeout_seconds: float = Field(default=10.0, ge=1)
    database_url: str = "sqlite:///trailwarden.db"
    policy_file: Path | None = None
    destinations_file: Path | None = None
    api_tokens: Annotated[list[SecretStr], NoDecode] = []
    webhook_urls: Annotated[list[str], NoDecode] = []
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=5, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    dedup_window_seconds: int = Field(default=3600, ge=1)
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0)
    event_grace_seconds: int = Field(default=1800, ge=0)
    store_retry_max_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    log_format: LogFormat = "auto"

    @classmethod
    def from_overrides(cls, **overrides: Any) -> Settings:
        """Build settings from the env, overridden by every value that is not None."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    @field_validator("api_tokens", "webhook_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhook_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"webhook URL {_url_origin(url)!r} is not http(s)")
        return urls

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, level: str) -> str:
        if level.upper() not in _LOG_LEVELS:
            raise ValueError(
                f"log level {level!r} is not one of {', '.join(_LOG_LEVELS)}"
            )
        return level.upper()

    @model_validator(mode="after")
    def _check_exposure(self) -> Settings:
        if not self.api_tokens and not is_loopback(self.http_host):
            raise ValueError(
                f"http_host {self.http_host!r} is not a loopback address and no "
                "API tokens are set: set TRAILWARDEN_API_TOKENS or listen on 127.0.0.1"
            )
        if self.webhook_urls and self.webhook_secret is None:
            raise ValueError(
                "webhook_urls are set but webhook_secret is not: set "
                "TRAILWARDEN_WEBHOOK_SECRET so receivers can verify deliveries"
            )
        return self

    def token_values(self) -> list[str]:
        """The API tokens in clear, for the API's bearer check only."""
        return [token.get_secret_value() for token in self.api_tokens]

    def describe(self) -> dict[str, object]:
        """The effective settings for the start-up log, with secrets masked."""
        described: dict[str, object] = {}
        for name, value in self:
            if name == "database_url":
                value = _mask_url(value)
            elif name == "webhook_urls":
                value = [_url_origin(url) for url in value]
            elif name == "api_tokens":
                value = len(value)
            elif isinstance(value, SecretStr):
                value = "**********"
            elif isinstance(value, Path):
                value = str(value)
            described[name] = value
        return described

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "database_url":
                yield name, _mask_url(value)
            elif name == "webhook_urls":
                yield name, [_url_origin(url) for url in value]
            else:
                yield name, value


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (IPv4 or IPv6)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mask_url(url: str) -> str:
    """Hide the password in a URL such as `postgresql://user:secret@host/db`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _url_origin(url: str) -> str:
    """Scheme and host only: webhook paths often carry a token (Slack, Teams)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/..." if parts.hostname else "<invalid>"
