"""Settings for `trailwarden bridge`: Kafka as for `run`, plus AWS and the bridge.

Read from `TRAILWARDEN_*` variables (the AWS region also from `AWS_REGION`);
flags override them. AWS credentials are never settings: the standard chain
(environment, profile, web identity) supplies them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.settings import LogFormat

Idempotence = Literal["auto", "on", "off"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class BridgeSettings(BaseSettings):
    """Everything `trailwarden bridge s3|eventbridge` needs."""

    model_config = SettingsConfigDict(
        env_prefix="TRAILWARDEN_", frozen=True, extra="ignore"
    )

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic: str = "cloudtrail"
    # "auto" turns idempotence on unless the broker refuses InitProducerId.
    kafka_idempotence: Idempotence = "auto"
    bridge_dead_letter_topic: str | None = None
    bridge_produce_timeout_seconds: float = Field(default=30.0, gt=0)
    aws_endpoint_url: str | None = None
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "aws_region", "TRAILWARDEN_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"
        ),
    )
    bridge_queue_url: str | None = None
    # Also bounds how long SIGTERM waits for a poll in progress.
    bridge_wait_seconds: int = Field(default=10, ge=0, le=20)
    bridge_visibility_timeout_seconds: int = Field(default=120, ge=1, le=43200)
    bridge_max_messages: int = Field(default=10, ge=1, le=10)
    bridge_metrics_port: int = Field(default=9108, ge=0, le=65535)
    bridge_secret: SecretStr | None = None
    bridge_secret_header: str = "X-Trailwarden-Bridge-Secret"
    bridge_http_host: str = "127.0.0.1"
    bridge_http_port: int = Field(default=8081, ge=1, le=65535)
    # EventBridge API destinations give up after about 5 s; answer before that.
    bridge_http_produce_timeout_seconds: float = Field(default=4.0, gt=0)
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0)
    log_level: str = "INFO"
    log_format: LogFormat = "auto"

    @classmethod
    def from_overrides(cls, **overrides: Any) -> BridgeSettings:
        """Build settings from the env, overridden by every value that is not None."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, level: str) -> str:
        if level.upper() not in _LOG_LEVELS:
            raise ValueError(
                f"log level {level!r} is not one of {', '.join(_LOG_LEVELS)}"
            )
        return level.upper()

    @property
    def dead_letter_topic(self) -> str:
        """Where unreadable files go: `<topic>.dead-letters` unless set."""
        return self.bridge_dead_letter_topic or f"{self.kafka_topic}.dead-letters"

    def describe(self) -> dict[str, object]:
        """The effective settings for the start-up log, with the secret masked."""
        described: dict[str, object] = {}
        for name, value in self:
            described[name] = "**********" if isinstance(value, SecretStr) else value
        return described
