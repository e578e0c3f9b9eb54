"""Destinations: where new alerts go (webhooks, SNS topics), each with a filter.

Read from the YAML or JSON file named by TRAILWARDEN_DESTINATIONS_FILE; errors
name the field and the value, as the policy file's do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors.detector import SEVERITIES, Severity
from detectors.third_parties import read_yaml_file
from service.alerts import Alert

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOPIC_ARN = re.compile(
    r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?"
)
_TAGS = ("webhook", "sns")


class DestinationsError(ValueError):
    """A destinations file that cannot be read or does not validate."""


class Filter(BaseModel):
    """Which alerts a destination receives; an empty list means "any"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_severity: Severity = "low"
    detectors: tuple[str, ...] = ()
    third_parties: tuple[str, ...] = ()

    def matches(self, alert: Alert) -> bool:
        """True when `alert` passes every part of the filter."""
        if SEVERITIES.index(alert.severity) < SEVERITIES.index(self.min_severity):
            return False
        if self.detectors and alert.detector not in self.detectors:
            return False
        return not self.third_parties or alert.third_party in self.third_parties


class Retry(BaseModel):
    """How often and how patiently a failing delivery is tried again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=10, ge=1, le=1000)
    initial_backoff_seconds: float = Field(default=1.0, gt=0, le=3600)
    max_backoff_seconds: float = Field(default=300.0, gt=0, le=86400)
    max_retry_after_seconds: float = Field(default=900.0, ge=0, le=86400)


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    filter: Filter = Filter()
    retry: Retry = Retry()
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                "must be 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        return name


class WebhookDestination(_Destination):
    """POSTs each alert as JSON (or Slack blocks), signed when a secret is set."""

    type: Literal["webhook"]
    url: str
    format: Literal["json", "slack"] = "json"
    secret_env: str | None = None
    secret: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("secret_env")
    @classmethod
    def _check_secret_env(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_NAME.fullmatch(name):
            raise ValueError("must be an environment variable name")
        return name

    @model_validator(mode="after")
    def _check_secret(self) -> WebhookDestination:
        if self.format == "json" and self.secret_env is None and self.secret is None:
            raise ValueError(
                f"webhook {self.name!r}: secret_env is required for format json "
                "(receivers verify the signature)"
            )
        return self

    @property
    def origin(self) -> str:
        """Scheme and host: what logs show, since webhook paths often hold a token."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


class SnsDestination(_Destination):
    """Publishes each alert to an SNS topic (standard or FIFO)."""

    type: Literal["sns"]
    topic_arn: str
    region: str | None = None
    endpoint_url: str | None = None

    @field_validator("topic_arn")
    @classmethod
    def _check_topic_arn(cls, arn: str) -> str:
        if not _TOPIC_ARN.fullmatch(arn):
            raise ValueError(
                "must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
            )
        return arn

    @property
    def fifo(self) -> bool:
        """FIFO topics need a message group and a deduplication id."""
        return self.topic_arn.endswith(".fifo")

    @property
    def topic_region(self) -> str:
        return self.region or self.topic_arn.split(":")[3]


Destination = Annotated[
    WebhookDestination | SnsDestination, Field(discriminator="type")
]


class DestinationsFile(BaseModel):
    """The whole file: `destinations: [...]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: tuple[Destination, ...] = ()

    @field_validator("destinations")
    @classmethod
    def _check_unique(
        cls, destinations: tuple[WebhookDestination | SnsDestination, ...]
    ) -> tuple[WebhookDestination | SnsDestination, ...]:
        seen: set[str] = set()
        for destination in destinations:
            if destination.name in seen:
                raise ValueError(f"duplicate destination name {destination.name!r}")
            seen.add(destination.name)
        return destinations


def parse_destinations(
    data: object, source: str, environ: Mapping[str, str] | None = None
) -> list[WebhookDestination | SnsDestination]:
    """Validate parsed YAML/JSON; webhook secrets are read from `environ`."""
    if data is None:
        data = {}
    try:
        parsed = DestinationsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise DestinationsError(f"{source}: {problems}") from None

    environ = os.environ if environ is None else environ
    return [
        _with_secret(d, index, source, environ)
        for index, d in enumerate(parsed.destinations)
    ]


def load_destinations(
    path: Path, environ: Mapping[str, str] | None = None
) -> list[WebhookDestination | SnsDestination]:
    """Read and validate a destinations file; raises DestinationsError."""
    try:
        data = read_yaml_file(path, "destinations")
    except ValueError as exc:
        raise DestinationsError(str(exc)) from None
    return parse_destinations(data, str(path), environ)


def _with_secret(
    destination: WebhookDestination | SnsDestination,
    index: int,
    source: str,
    environ: Mapping[str, str],
) -> WebhookDestination | SnsDestination:
    if not isinstance(destination, WebhookDestination) or not destination.secret_env:
        return destination
    value = environ.get(destination.secret_env, "")
    if not value:
        raise DestinationsError(
            f"{source}: destinations[{index}].secret_env: environment variable "
            f"{destination.secret_env!r} is not set or empty"
        )
    return destination.model_copy(update={"secret": SecretStr(value)})


def _describe(error: Mapping[str, Any]) -> str:
    location = _location(tuple(error.get("loc", ())))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    where = f"{location}: " if location else ""
    value = error.get("input")
    if isinstance(value, Mapping | list | tuple) or "secret" in location:
        return f"{where}{message}"
    text = repr(value)
    shown = text if len(text) <= 80 else text[:77] + "..."
    return f"{where}{message} (got {shown})"


def _location(parts: Sequence[object]) -> str:
    text = ""
    previous: object = None
    for part in parts:
        # The discriminated union adds the type tag to the path; readers never wrote it.
        if isinstance(previous, int) and part in _TAGS:
            previous = part
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
        previous = part
    return text
