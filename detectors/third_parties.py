"""The third-party registry: the policy file that says who our vendors are.

A YAML policy names our organization's accounts, each third party (accounts, roles,
external ID hash, MFA, networks, hours, access window, allowed actions) and the
detector settings. Every model is frozen and rejects unknown keys, so typos fail.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from detectors.detector import Severity

DETECTOR_IDS: tuple[str, ...] = (
    "unregistered-external-account",
    "external-id-mismatch",
    "mfa-missing",
    "source-network-not-allowed",
    "outside-business-hours",
    "outside-access-window",
    "high-risk-action",
    "action-not-allowed",
)
DEFAULT_SEVERITIES: Mapping[str, Severity] = {
    "unregistered-external-account": "high",
    "external-id-mismatch": "high",
    "mfa-missing": "medium",
    "source-network-not-allowed": "high",
    "outside-business-hours": "low",
    "outside-access-window": "high",
    "high-risk-action": "high",
    "action-not-allowed": "medium",
}
DEFAULT_HIGH_RISK_ACTIONS: tuple[str, ...] = (
    "iam:CreateUser",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AttachUserPolicy",
    "iam:AttachRolePolicy",
    "iam:PutUserPolicy",
    "iam:PutRolePolicy",
    "iam:CreatePolicyVersion",
    "iam:UpdateAssumeRolePolicy",
    "iam:DeleteRole",
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:PutBucketAcl",
    "s3:DeleteBucketPolicy",
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
    "cloudtrail:UpdateTrail",
    "cloudtrail:PutEventSelectors",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "ec2:ModifySnapshotAttribute",
    "ec2:ModifyImageAttribute",
    "rds:ModifyDBSnapshotAttribute",
    "organizations:LeaveOrganization",
    "guardduty:DeleteDetector",
)
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_ACCOUNT = re.compile(r"\d{12}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_ACTION = re.compile(r"\*|[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+")
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_SECRET_KEYS = ("external_id", "externalid")


class PolicyError(Exception):
    """A policy file that cannot be read or does not validate."""


def _account(value: object) -> str:
    if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
        raise ValueError("must be a 12-digit AWS account id, quoted in YAML")
    return value


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.fullmatch(value):
        raise ValueError(
            "must be an IAM role ARN like arn:aws:iam::<account>:role/Name"
        )
    return value


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError("must be 64 hex characters (the SHA-256 of the external ID)")
    return value.lower()


def _action(value: str) -> str:
    if not _ACTION.fullmatch(value):
        raise ValueError("must be an IAM action like s3:GetObject, s3:List* or *")
    return value


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError("must be a lowercase slug: a-z, 0-9, '.', '_', '-'")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone like Europe/Paris") from None
    return value


def _clock_time(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('must be a quoted "HH:MM" time')
    match = _HHMM.fullmatch(value)
    if match is None:
        raise ValueError('must be a "HH:MM" time from 00:00 to 23:59')
    return time(int(match[1]), int(match[2]))


def _network(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an IPv4 or IPv6 CIDR as a string")
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 CIDR with no host bits set") from None


AccountId = Annotated[str, BeforeValidator(_account)]
RoleArn = Annotated[str, AfterValidator(_role_arn)]
ActionPattern = Annotated[str, AfterValidator(_action)]
Network = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)
]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BusinessHours(_Model):
    """When a third party works: days and a start/end time in its time zone.

    An `end` before `start` is an overnight window that ends the next day.
    """

    timezone: Annotated[str, AfterValidator(_timezone)]
    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: ClockTime
    end: ClockTime

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ThirdParty(_Model):
    """One registered vendor and the limits its access must stay within."""

    id: Annotated[str, AfterValidator(_slug)]
    name: str | None = None
    accounts: tuple[AccountId, ...] = ()
    roles: tuple[RoleArn, ...] = ()
    external_id_sha256: Annotated[str, AfterValidator(_sha256)] | None = None
    require_mfa: bool = False
    networks: tuple[Network, ...] = ()
    hours: BusinessHours | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    allowed_actions: tuple[ActionPattern, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> ThirdParty:
        if not self.accounts and not self.roles:
            raise ValueError("needs at least one of accounts or roles")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_from >= self.valid_until
        ):
            raise ValueError("valid_from must be before valid_until")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.id


class DetectorSettings(_Model):
    """Whether a detector runs, and the severity of its findings."""

    enabled: bool = True
    severity: Severity | None = None


class HighRiskActionSettings(DetectorSettings):
    """Settings of high-risk-action: which IAM actions count as high risk."""

    actions: tuple[ActionPattern, ...] = DEFAULT_HIGH_RISK_ACTIONS


def _settings_field(default: type[DetectorSettings], alias: str) -> Any:
    return Field(default_factory=default, alias=alias)


class DetectorsConfig(_Model):
    """Per-detector settings, keyed by detector id in the policy file."""

    unregistered_external_account: DetectorSettings = _settings_field(
        DetectorSettings, "unregistered-external-account"
    )
    external_id_mismatch: DetectorSettings = _settings_field(
        DetectorSettings, "external-id-mismatch"
    )
    mfa_missing: DetectorSettings = _settings_field(DetectorSettings, "mfa-missing")
    source_network_not_allowed: DetectorSettings = _settings_field(
        DetectorSettings, "source-network-not-allowed"
    )
    outside_business_hours: DetectorSettings = _settings_field(
        DetectorSettings, "outside-business-hours"
    )
    outside_access_window: DetectorSettings = _settings_field(
        DetectorSettings, "outside-access-window"
    )
    high_risk_action: HighRiskActionSettings = _settings_field(
        HighRiskActionSettings, "high-risk-action"
    )
    action_not_allowed: DetectorSettings = _settings_field(
        DetectorSettings, "action-not-allowed"
    )

    def get(self, detector_id: str) -> DetectorSettings:
        """The settings of one detector, by its id."""
        settings: DetectorSettings = getattr(self, detector_id.replace("-", "_"))
        return settings

    def severity(self, detector_id: str) -> Severity:
        """The configured severity of a detector, else its default."""
        return self.get(detector_id).severity or DEFAULT_SEVERITIES[detector_id]


class Organization(_Model):
    """Our own accounts; any other account is external."""

    accounts: tuple[AccountId, ...] = ()


class Policy(_Model):
    """The whole policy file: organization, third parties, detector settings."""

    organization: Organization = Field(default_factory=Organization)
    third_parties: tuple[ThirdParty, ...] = ()
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)

    @model_validator(mode="after")
    def _check(self) -> Policy:
        ours = set(self.organization.accounts)
        ids: set[str] = set()
        owners: dict[str, str] = {}
        for index, party in enumerate(self.third_parties):
            where = f"third_parties[{index}]"
            if party.id in ids:
                raise ValueError(f"{where}.id: {party.id!r} is used twice")
            ids.add(party.id)
            for account in party.accounts:
                if account in ours:
                    raise ValueError(
                        f"{where}.accounts: {account!r} is an organization account"
                    )
            for claim in (*party.accounts, *party.roles):
                owner = owners.setdefault(claim, party.id)
                if owner != party.id:
                    raise ValueError(f"{where}: {claim!r} already belongs to {owner}")
        return self


def empty_policy() -> Policy:
    """A policy with no organization accounts and no third parties."""
    return Policy()


def parse_policy(data: object, source: str = "<policy>") -> Policy:
    """Validate already-decoded policy data.

    Raises PolicyError naming the field path and the bad value; values under an
    external ID key are never repeated in the message.
    """
    if data is None:
        return empty_policy()
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: the policy must be a mapping at the top level")
    unknown = _unknown_detectors(data.get("detectors"))
    if unknown:
        raise PolicyError(
            f"{source}: detectors.{unknown}: unknown detector id; expected one of "
            + ", ".join(DETECTOR_IDS)
        )

    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise PolicyError(f"{source}: {problems}") from None


# A registry of thousands of third parties is a few hundred KiB of YAML.
MAX_POLICY_BYTES = 4 * 1024 * 1024


def load_policy(path: Path) -> Policy:
    """Read and validate a YAML policy file; raises PolicyError."""
    try:
        data = read_yaml_file(path, "policy")
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    return parse_policy(data, str(path))


def read_yaml_file(path: Path, kind: str) -> object:
    """The parsed content of a YAML (or JSON) config file of at most 4 MiB.

    Raises ValueError naming the file and what is wrong with it.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_POLICY_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the {kind} file: {exc}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise ValueError(f"{path}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML{where}") from None


def _unknown_detectors(section: object) -> str | None:
    if not isinstance(section, Mapping):
        return None
    for key in section:
        if key not in DETECTOR_IDS:
            return str(key)
    return None


def _describe(error: Mapping[str, Any]) -> str:
    location = tuple(error.get("loc", ()))
    path = _path(location)
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    where = f"{path}: " if path else ""
    value = error.get("input")
    if _is_secret(location) or isinstance(value, Mapping | list):
        return f"{where}{message}"
    return f"{where}{message} (got {_short(value)})"


def _path(location: tuple[object, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _is_secret(location: tuple[object, ...]) -> bool:
    return any(
        isinstance(part, str) and any(key in part.lower() for key in _SECRET_KEYS)
        for part in location
    )


def _short(value: object) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
