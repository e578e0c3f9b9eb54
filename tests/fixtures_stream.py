"""A CloudTrail stream with third-party sessions, derived from corpus records.

Register with `pytest_plugins = ["fixtures_stream"]`. The records are copies of
`data/detectors/stratus_get_password_data.json` (its AssumeRole) and
`data/integration/stratus_ec2_get_password_data.jsonl` (a session call), with
ids, times, accounts and access keys rewritten so a vendor account assumes a role
in each of three of our accounts and calls with the session it got. Some calls
come before their AssumeRole, some are late (past the grace), some twice.
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

DATA = Path(__file__).parent / "data"
OUR_ACCOUNTS = ("457448411975", "111122223333", "210987654321")
VENDOR_ACCOUNT = "444455556666"
ROLE = "stratus-red-team-ec2-get-password-data-role"
START = datetime(2024, 7, 30, 21, 0, tzinfo=UTC)
_IDS = uuid.UUID("0b6f5f86-8a4e-4f8e-9a55-2f1f3d2c9a11")

POLICY = f"""
organization:
  accounts: {list(OUR_ACCOUNTS)}
third_parties:
  - id: acme-analytics
    name: Acme Analytics
    accounts: ["{VENDOR_ACCOUNT}"]
    networks: ["203.0.113.0/24"]
    allowed_actions: ["sts:AssumeRole", "s3:GetObject"]
detectors:
  high-risk-action: {{severity: high, actions: ["ec2:GetPasswordData"]}}
"""


@dataclass(frozen=True)
class SessionStream:
    """Messages per partition (partition i carries OUR_ACCOUNTS[i]) and a policy."""

    partitions: list[list[bytes]]
    policy_file: Path

    @property
    def total(self) -> int:
        return sum(len(messages) for messages in self.partitions)


def record_templates() -> tuple[dict[str, Any], dict[str, Any]]:
    assume = orjson.loads(
        (DATA / "detectors" / "stratus_get_password_data.json").read_bytes()
    )[0]
    call_line = (
        DATA / "integration" / "stratus_ec2_get_password_data.jsonl"
    ).read_bytes()
    return assume, orjson.loads(call_line.splitlines()[0])


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def assume_role_record(template: dict[str, Any], account: str, key: str, name: str,
                 at: datetime, event_id: str) -> dict[str, Any]:  # fmt: skip
    record = copy.deepcopy(template)
    role_arn = f"arn:aws:iam::{account}:role/{ROLE}"
    record.update(eventID=event_id, eventTime=_time(at), recipientAccountId=account)
    record["requestParameters"].update(roleArn=role_arn, roleSessionName=name)
    record["resources"] = [
        {"ARN": role_arn, "accountId": account, "type": "AWS::IAM::Role"}
    ]
    record["responseElements"]["credentials"]["accessKeyId"] = key
    record["responseElements"]["assumedRoleUser"]["arn"] = (
        f"arn:aws:sts::{account}:assumed-role/{ROLE}/{name}"
    )
    record["userIdentity"] = {
        "type": "AWSAccount",
        "accountId": VENDOR_ACCOUNT,
        "principalId": "AIDAVENDOREXAMPLE",
    }
    return record


def call_record(template: dict[str, Any], account: str, key: str, name: str,
          at: datetime, event_id: str) -> dict[str, Any]:  # fmt: skip
    record = copy.deepcopy(template)
    record.update(eventID=event_id, eventTime=_time(at), recipientAccountId=account)
    record.pop("errorMessage", None)
    identity = record["userIdentity"]
    identity.update(
        accessKeyId=key,
        accountId=account,
        arn=f"arn:aws:sts::{account}:assumed-role/{ROLE}/{name}",
    )
    issuer = identity["sessionContext"]["sessionIssuer"]
    issuer.update(accountId=account, arn=f"arn:aws:iam::{account}:role/{ROLE}")
    return record


def build_stream(sessions: int, calls: int, seed: int) -> list[list[dict[str, Any]]]:
    """Records per account, in the order they are produced."""
    assume, call = record_templates()
    rng = random.Random(seed)
    streams: list[list[dict[str, Any]]] = []
    for index, account in enumerate(OUR_ACCOUNTS):
        records: list[dict[str, Any]] = []
        for session in range(sessions):
            opened = START + timedelta(minutes=12 * session, seconds=index)
            key = f"ASIA{index}{session:03d}TESTKEY0000"[:20]
            name = f"acme-sync-{session % 4}"
            ids = (
                str(uuid.uuid5(_IDS, f"{account}/{session}/{n}")) for n in range(999)
            )
            opening = assume_role_record(assume, account, key, name, opened, next(ids))
            session_calls = [
                call_record(
                    call,
                    account,
                    key,
                    name,
                    opened + timedelta(seconds=30 * (n + 1)),
                    next(ids),
                )
                for n in range(calls)
            ]
            # One call arrives before its AssumeRole, within the grace.
            records += [session_calls[0], opening, *session_calls[1:]]
            if rng.random() < 0.5:
                records.append(copy.deepcopy(rng.choice(session_calls)))  # a duplicate
        # Late records: calls in the first session, delivered hours after it.
        late_ids = (str(uuid.uuid5(_IDS, f"{account}/late/{n}")) for n in range(99))
        first_key = f"ASIA{index}000TESTKEY0000"[:20]
        records += [
            call_record(
                call,
                account,
                first_key,
                "acme-sync-0",
                START + timedelta(seconds=45 * (n + 1)),
                next(late_ids),
            )
            for n in range(calls)
        ]
        streams.append(records)
    return streams


def expiring_sessions(sessions: int, spacing: timedelta) -> list[list[dict[str, Any]]]:
    """Per account, `sessions` AssumeRole + call pairs, one every `spacing`.

    Each session's credentials last 15 minutes (the template's durationSeconds),
    so with a spacing of hours at most a few are live at any event time.
    """
    assume, call = record_templates()
    streams: list[list[dict[str, Any]]] = []
    for index, account in enumerate(OUR_ACCOUNTS):
        records: list[dict[str, Any]] = []
        for session in range(sessions):
            opened = START + spacing * session + timedelta(seconds=index)
            key = f"ASIA{index}{session:06d}LONGKEY"[:20]
            name = f"acme-sync-{session % 4}"
            opening, calling = (
                str(uuid.uuid5(_IDS, f"{account}/long/{session}/{n}")) for n in (0, 1)
            )
            records.append(
                assume_role_record(assume, account, key, name, opened, opening)
            )
            at = opened + timedelta(minutes=1)
            records.append(call_record(call, account, key, name, at, calling))
        streams.append(records)
    return streams


@pytest.fixture
def session_stream(tmp_path: Path) -> SessionStream:
    """About 330 records over three partitions, one per account."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    streams = build_stream(sessions=12, calls=8, seed=11)
    partitions = [[orjson.dumps(record) for record in records] for records in streams]
    return SessionStream(partitions, policy)
