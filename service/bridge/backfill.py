"""`trailwarden bridge s3 --backfill`: replay an archive of CloudTrail files.

Lists only the accounts, regions and days asked for (from the key layout),
bridges each file like the SQS loop does, and records finished files in a small
state file after Kafka acknowledged them, so a second run resumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from service.bridge.notifications import LogObject
from service.bridge.producer import RecordProducer
from service.bridge.s3_files import S3Unavailable, parse_key
from service.bridge.transfer import FileOutcome, bridge_file
from service.errors import ServiceError

__all__ = [
    "BackfillListing",
    "BackfillRange",
    "BackfillState",
    "BackfillSummary",
    "list_backfill_keys",
    "run_backfill",
]

_log = structlog.get_logger(__name__)

_ACCOUNT = re.compile(r"\d{12}")
_ORG = re.compile(r"o-[a-z0-9]{10,32}")
_FILE_TIME = re.compile(r"_(\d{8}T\d{4}Z)_")
_LIST_CONCURRENCY = 16
_FILE_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class BackfillRange:
    """What to replay: `s3://bucket/prefix`, days `since`..`until` (inclusive)."""

    bucket: str
    prefix: str
    since: date
    until: date
    accounts: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()

    @classmethod
    def from_url(
        cls,
        url: str,
        since: date,
        until: date,
        accounts: frozenset[str] = frozenset(),
        regions: frozenset[str] = frozenset(),
    ) -> BackfillRange:
        """Parse `s3://bucket/prefix`; raises ValueError naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"backfill source {url!r} is not s3://bucket/prefix")
        if until < since:
            raise ValueError(f"--until {until} is before --since {since}")
        _prefix_levels(parts.path.lstrip("/"))
        return cls(
            parts.netloc, parts.path.lstrip("/"), since, until, accounts, regions
        )

    def fingerprint(self) -> str:
        """A short hash naming this range, for the default state file."""
        text = orjson.dumps(
            [
                self.bucket,
                self.prefix,
                self.since.isoformat(),
                self.until.isoformat(),
                sorted(self.accounts),
                sorted(self.regions),
            ]
        )
        return hashlib.sha256(text).hexdigest()[:12]

    def days(self) -> Iterator[date]:
        day = self.since
        while day <= self.until:
            yield day
            day += timedelta(days=1)


@dataclass(slots=True)
class BackfillState:
    """Finished keys, compacted to their day folder (and its file count) once done."""

    path: Path
    done_folders: dict[str, int] = field(default_factory=dict)
    done_keys: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> BackfillState:
        """Read the state file, or start empty when there is none."""
        if not path.exists():
            return cls(path)
        data = orjson.loads(path.read_bytes())
        return cls(path, dict(data["done_folders"]), set(data["done_keys"]))

    def is_done(self, key: str) -> bool:
        return key in self.done_keys or _folder(key) in self.done_folders

    def mark_done(self, key: str, folder_finished: bool) -> None:
        """Record a key whose records Kafka acknowledged, and save the file."""
        if folder_finished:
            folder = _folder(key)
            rest = {k for k in self.done_keys if _folder(k) == folder}
            self.done_folders[folder] = len(rest | {key})
            self.done_keys -= rest
        else:
            self.done_keys.add(key)
        self._save()

    def _save(self) -> None:
        data = {"done_folders": self.done_folders, "done_keys": sorted(self.done_keys)}
        # Write then rename, so a crash never leaves half a state file.
        partial = self.path.with_name(self.path.name + ".partial")
        options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        partial.write_bytes(orjson.dumps(data, option=options))
        os.replace(partial, self.path)


@dataclass(slots=True)
class BackfillSummary:
    """Files in the range (done before or not), and what became of each this run."""

    listed: int = 0
    already_done: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class BackfillListing:
    """The keys listed in a range, and the files of its finished day folders."""

    keys: list[str]
    folder_files_done: int


async def list_backfill_keys(
    s3: Any, span: BackfillRange, state: BackfillState
) -> BackfillListing:
    """Every log file key in the range, oldest first; finished day folders unlisted.

    Raises ValueError when the prefix stops below the account level, and
    S3Unavailable when listing fails.
    """
    roots = await _account_roots(s3, span)
    folders: list[str] = []
    folder_files_done = 0
    for root in roots:
        trail = f"{root}CloudTrail/"
        for region_folder in await _list(s3, span.bucket, trail, folders=True):
            region = region_folder[len(trail) :].rstrip("/")
            if span.regions and region not in span.regions:
                continue
            for day in span.days():
                folder = f"{region_folder}{day:%Y/%m/%d}/"
                if folder in state.done_folders:
                    folder_files_done += state.done_folders[folder]
                else:
                    folders.append(folder)

    limit = asyncio.Semaphore(_LIST_CONCURRENCY)

    async def list_folder(folder: str) -> list[str]:
        async with limit:
            return await _list(s3, span.bucket, folder, folders=False)

    listed = await asyncio.gather(*(list_folder(folder) for folder in folders))
    keys = [key for found in listed for key in found]
    return BackfillListing(sorted(keys, key=_time_order), folder_files_done)


async def run_backfill(
    s3: Any,
    producer: RecordProducer,
    span: BackfillRange,
    state: BackfillState,
    stop: asyncio.Event,
    on_start: Callable[[int], None] = lambda _files: None,
    on_file_done: Callable[[str, FileOutcome], None] = lambda _key, _outcome: None,
) -> BackfillSummary:
    """Bridge every unfinished file of the range; stops early when `stop` is set.

    Raises S3Unavailable or KafkaUnavailable (the state file keeps what was
    finished before).
    """
    listing = await list_backfill_keys(s3, span, state)
    pending = [key for key in listing.keys if not state.is_done(key)]
    summary = BackfillSummary(
        listed=len(listing.keys) + listing.folder_files_done,
        already_done=len(listing.keys) - len(pending) + listing.folder_files_done,
    )
    left_in_folder = Counter(_folder(key) for key in pending)
    _log.info("bridge.backfill_started", files=len(pending), done=summary.already_done)
    on_start(len(pending))

    queue = iter(pending)
    failures: list[ServiceError] = []

    async def worker() -> None:
        for key in queue:
            if stop.is_set() or failures:
                return
            try:
                obj = LogObject(span.bucket, key)
                outcome = await bridge_file(s3, producer, obj, source="backfill")
            except ServiceError as exc:
                failures.append(exc)
                return
            left_in_folder[_folder(key)] -= 1
            state.mark_done(key, folder_finished=left_in_folder[_folder(key)] == 0)
            summary.outcomes[outcome] += 1
            on_file_done(key, outcome)

    # A few files at a time, taken in time order from one shared iterator.
    async with asyncio.TaskGroup() as group:
        for _ in range(_FILE_CONCURRENCY):
            group.create_task(worker())
    if failures:
        raise failures[0]

    summary.interrupted = sum(summary.outcomes.values()) < len(pending)
    _log.info(
        "bridge.backfill_finished",
        interrupted=summary.interrupted,
        **dict(summary.outcomes),
    )
    return summary


async def _account_roots(s3: Any, span: BackfillRange) -> list[str]:
    """The `.../AWSLogs/[o-org/]account/` folders under the prefix, filtered."""
    head, account_id = _prefix_levels(span.prefix)
    if account_id is not None:
        candidates = [f"{head}{account_id}/"]
    else:
        candidates = []
        for child in await _list(s3, span.bucket, head, folders=True):
            name = child[len(head) :].rstrip("/")
            if _ORG.fullmatch(name):
                candidates += await _list(s3, span.bucket, child, folders=True)
            else:
                candidates.append(child)

    def account(root: str) -> str:
        return root.rstrip("/").rsplit("/", 1)[-1]

    return [
        root
        for root in candidates
        if _ACCOUNT.fullmatch(account(root))
        and (not span.accounts or account(root) in span.accounts)
    ]


def _prefix_levels(prefix: str) -> tuple[str, str | None]:
    """Split a prefix into the folder holding accounts and the account, if named.

    Raises ValueError for a prefix that goes below the account level.
    """
    head, found, rest = prefix.partition("AWSLogs/")
    if not found:
        base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        head, rest = base + "AWSLogs/", ""
    else:
        head += found
    parts = [part for part in rest.split("/") if part]

    if parts and _ORG.fullmatch(parts[0]):
        head, parts = f"{head}{parts[0]}/", parts[1:]
    if len(parts) > 1 or (parts and not _ACCOUNT.fullmatch(parts[0])):
        raise ValueError(
            f"backfill prefix {prefix!r} must end at AWSLogs/, an organisation "
            "id or an account id; choose days with --since and --until"
        )
    return head, parts[0] if parts else None


async def _list(s3: Any, bucket: str, prefix: str, *, folders: bool) -> list[str]:
    """Sub-folders (`folders=True`) or keys directly under a prefix."""

    def pages() -> list[str]:
        paginator = s3.get_paginator("list_objects_v2")
        found: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            if folders:
                found += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
            else:
                found += [item["Key"] for item in page.get("Contents", [])]
        return found

    try:
        return await asyncio.to_thread(pages)
    except (ClientError, BotoCoreError) as exc:
        raise S3Unavailable(f"S3 listing s3://{bucket}/{prefix} failed: {exc}") from exc


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"


def _time_order(key: str) -> tuple[date, str, str]:
    # CloudTrail names files <account>_CloudTrail_<region>_<yyyymmddThhmmZ>_<id>.
    layout = parse_key(key)
    match = _FILE_TIME.search(key.rsplit("/", 1)[-1])
    return (layout.day if layout else date.min, match[1] if match else "", key)
