"""CloudTrailRecord: the typed record every detector receives.

Raw CloudTrail JSON is parsed here once, leniently: fields may be missing, null or
of an unexpected type, and the record still comes out with what could be read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RecordError(ValueError):
    """A JSON object that is not a CloudTrail API call record."""


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """Who made the call, as CloudTrail's `userIdentity` describes it."""

    type: str | None = None
    principal_id: str | None = None
    arn: str | None = None
    account_id: str | None = None
    access_key_id: str | None = None
    user_name: str | None = None
    invoked_by: str | None = None
    session_issuer_arn: str | None = None
    session_issuer_account_id: str | None = None
    mfa_authenticated: bool | None = None


@dataclass(frozen=True, slots=True)
class CloudTrailRecord:
    """One CloudTrail API call, with the fields the detectors use.

    `event_time` is always timezone-aware UTC, or None when the record has no
    readable time. `source_addresses` holds the IP addresses found in
    `sourceIPAddress` (none for a service name or "AWS Internal").
    """

    event_id: str | None
    event_time: datetime | None
    event_source: str
    event_name: str
    aws_region: str | None
    recipient_account_id: str | None
    source_ip: str | None
    source_addresses: tuple[IPAddress, ...]
    user_agent: str | None
    error_code: str | None
    identity: UserIdentity
    request_parameters: Mapping[str, Any]
    response_elements: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def action(self) -> str:
        """The IAM-style action, such as `s3:GetObject`."""
        service = self.event_source.split(".", 1)[0]
        return f"{service}:{self.event_name}"

    @property
    def succeeded(self) -> bool:
        return self.error_code is None

    @property
    def account_id(self) -> str | None:
        """The account the call was made in: the recipient, else the caller's."""
        return self.recipient_account_id or self.identity.account_id


def record_from_dict(data: Mapping[str, Any]) -> CloudTrailRecord:
    """Build a record from one decoded CloudTrail JSON object.

    Raises RecordError when the object lacks `eventSource` or `eventName`, or is an
    Insights event rather than an API call.
    """
    event_source = _text(data.get("eventSource"))
    event_name = _text(data.get("eventName"))
    if event_source is None or event_name is None:
        raise RecordError("record has no eventSource or eventName")
    if data.get("eventCategory") == "Insight" or "insightDetails" in data:
        raise RecordError("Insights event, not an API call")

    source_ip = _text(data.get("sourceIPAddress"))
    # Logstash moves eventTime into @timestamp; use it only when eventTime is absent.
    time_field = "eventTime" if "eventTime" in data else "@timestamp"
    return CloudTrailRecord(
        event_id=_text(data.get("eventID")),
        event_time=parse_event_time(data.get(time_field)),
        event_source=event_source,
        event_name=event_name,
        aws_region=_text(data.get("awsRegion")),
        recipient_account_id=_text(data.get("recipientAccountId")),
        source_ip=source_ip,
        source_addresses=parse_source_addresses(source_ip),
        user_agent=_text(data.get("userAgent")),
        error_code=_text(data.get("errorCode")),
        identity=_identity(data.get("userIdentity")),
        request_parameters=_mapping(data.get("requestParameters")),
        response_elements=_mapping(data.get("responseElements")),
        raw=data,
    )


def parse_event_time(value: object) -> datetime | None:
    """Parse a CloudTrail time in any of the forms seen in the wild, as UTC.

    Accepts `2024-05-01T12:00:00Z`, fractional seconds of any length, a space
    instead of `T`, a missing or numeric offset, and epoch seconds or
    milliseconds. Returns None for anything else.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or len(value) < 10:
        return None

    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _trim_fraction(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None

    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_source_addresses(source_ip: str | None) -> tuple[IPAddress, ...]:
    """The IP addresses in a `sourceIPAddress` value, which may be a list."""
    if not source_ip or source_ip == "AWS Internal" or source_ip.endswith(".com"):
        return ()
    addresses = []
    for part in source_ip.split(","):
        address = _ip(part.strip())
        if address is not None:
            addresses.append(address)
    return tuple(addresses)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    # Anonymised trails write IPv4 octets with leading zeros ("035.249.1.07").
    octets = text.split(".")
    if len(octets) == 4 and all(o.isdigit() and len(o) <= 3 for o in octets):
        try:
            return ipaddress.IPv4Address(".".join(str(int(o)) for o in octets))
        except ValueError:
            return None
    return None


def _trim_fraction(text: str) -> str:
    """Cut fractional seconds to microseconds, which is all datetime holds."""
    dot = text.find(".", 19)
    if dot == -1:
        return text
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[dot + 1 : end][:6].ljust(6, "0")
    return f"{text[:dot]}.{digits}{text[end:]}"


def _identity(value: object) -> UserIdentity:
    if not isinstance(value, Mapping):
        return UserIdentity()
    context = _mapping(value.get("sessionContext"))
    issuer = _mapping(context.get("sessionIssuer"))
    attributes = _mapping(context.get("attributes"))
    return UserIdentity(
        type=_text(value.get("type")),
        principal_id=_text(value.get("principalId")),
        arn=_text(value.get("arn")),
        account_id=_text(value.get("accountId")),
        access_key_id=_text(value.get("accessKeyId")),
        user_name=_text(value.get("userName")),
        invoked_by=_text(value.get("invokedBy")),
        session_issuer_arn=_text(issuer.get("arn")),
        session_issuer_account_id=_text(issuer.get("accountId")),
        mfa_authenticated=_flag(attributes.get("mfaAuthenticated")),
    )


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
