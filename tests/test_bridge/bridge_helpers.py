"""Helpers for the bridge tests: CloudTrail log files in the S3 layout.

A plain module (not conftest) so test modules can import it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

DATA = Path(__file__).resolve().parents[1] / "data"
ORG_PREFIX = "trail logs+archive/AWSLogs/o-exampleorgid"
STRATUS_ACCOUNT = "457448411975"


@dataclass(frozen=True)
class LogFile:
    key: str
    records: list[dict[str, Any]]

    def body(self) -> bytes:
        return gzip.compress(json.dumps({"Records": self.records}).encode())


def log_key(account: str, region: str, day: str, name: str, org: bool = True) -> str:
    """A key in the organisation-trail layout, day as YYYY-MM-DD."""
    year, month, dom = day.split("-")
    root = ORG_PREFIX if org else "AWSLogs"
    stamp = f"{year}{month}{dom}T0000Z"
    return (
        f"{root}/{account}/CloudTrail/{region}/{year}/{month}/{dom}/"
        f"{account}_CloudTrail_{region}_{stamp}_{name}.json.gz"
    )


def nested(levels: int) -> Any:
    """A JSON value `levels` lists deep: [[...[1]...]]."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def event_ids(messages: list[ConsumerRecord]) -> list[str]:
    return sorted(json.loads(message.value)["eventID"] for message in messages)
