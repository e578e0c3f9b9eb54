"""`bridge s3 --backfill` over an organisation trail in moto, into the real broker."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import ORG_PREFIX, LogFile, event_ids, log_key

from service.bridge.aws import aws_client as bridge_client
from service.bridge.backfill import BackfillRange, BackfillState, run_backfill
from service.bridge.producer import RecordProducer
from service.bridge.settings import BridgeSettings
from service.bridge.transfer import FileOutcome

pytestmark = pytest.mark.integration

DAYS = ["2024-04-30", "2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
PLACES = [
    ("457448411975", "us-east-1"),
    ("123456789012", "eu-west-1"),
    ("123456789012", "us-west-2"),  # region not asked for
    ("111122223333", "us-east-1"),  # account not asked for
]


def _archive(record: dict[str, Any]) -> list[LogFile]:
    """One file per place and day, each holding a copy of `record` with its own id."""
    files = []
    for account, region in PLACES:
        for day in DAYS:
            for name in ("a", "b"):
                copied = copy.deepcopy(record)
                copied["eventID"] = f"{account}-{region}-{day}-{name}"
                copied["recipientAccountId"] = account
                files.append(LogFile(log_key(account, region, day, name), [copied]))
    return files


@pytest.mark.parametrize("prefix", [ORG_PREFIX, "trail logs+archive"])
async def test_backfill_range_produces_files_in_range_and_resumes_after_stop(
    prefix: str,
    bucket: str,
    upload: Callable[[LogFile], None],
    trail_records: dict[str, list[dict[str, Any]]],
    topic_factory: Callable[..., Awaitable[str]],
    bridge_settings: Callable[..., BridgeSettings],
    read_topic: Callable[[str], Awaitable[list[Any]]],
    tmp_path: Path,
) -> None:
    """The first run stops after two files, the second produces only the rest.

    A third run finds everything done, and says how much.
    """
    files = _archive(trail_records["stratus"][0])
    for file in files:
        upload(file)
    span = BackfillRange.from_url(
        f"s3://{bucket}/{prefix}",
        date(2024, 5, 1),
        date(2024, 5, 3),
        accounts=frozenset({"457448411975", "123456789012"}),
        regions=frozenset({"us-east-1", "eu-west-1"}),
    )
    settings = bridge_settings(await topic_factory(3), await topic_factory())
    state_path = tmp_path / "state.json"
    s3 = bridge_client("s3", settings)
    producer = RecordProducer(settings)
    await producer.start()
    stop = asyncio.Event()
    done: list[str] = []

    def stop_after_two(key: str, outcome: FileOutcome) -> None:
        done.append(key)
        if len(done) == 2:
            stop.set()

    try:
        first = await run_backfill(
            s3,
            producer,
            span,
            BackfillState.load(state_path),
            stop,
            on_file_done=stop_after_two,
        )
        second = await run_backfill(
            s3, producer, span, BackfillState.load(state_path), asyncio.Event()
        )
        third = await run_backfill(
            s3, producer, span, BackfillState.load(state_path), asyncio.Event()
        )
    finally:
        await producer.stop()

    expected = [
        f"{account}-{region}-{day}-{name}"
        for account, region in PLACES[:2]
        for day in DAYS[1:4]
        for name in ("a", "b")
    ]
    bridged_first, bridged_second = (
        first.outcomes["bridged"],
        second.outcomes["bridged"],
    )
    assert first.listed == len(expected)
    assert first.interrupted and 2 <= bridged_first < len(expected)
    assert not second.interrupted
    assert bridged_first + bridged_second == len(expected)
    assert (second.listed, second.already_done) == (len(expected), bridged_first)
    assert (third.listed, third.already_done) == (len(expected), len(expected))
    assert not third.outcomes
    assert event_ids(await read_topic(settings.kafka_topic)) == sorted(expected)


def test_backfill_range_prefix_below_account_rejected() -> None:
    with pytest.raises(ValueError, match="must end at AWSLogs/"):
        BackfillRange.from_url(
            "s3://trail/AWSLogs/111122223333/CloudTrail/",
            date(2024, 5, 1),
            date(2024, 5, 1),
        )


@pytest.mark.parametrize(
    ("url", "message"),
    [("https://trail/x", "is not s3://"), ("s3:///x", "is not s3://")],
)
def test_backfill_range_bad_url_rejected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackfillRange.from_url(url, date(2024, 5, 1), date(2024, 5, 1))


def test_backfill_range_until_before_since_rejected() -> None:
    with pytest.raises(ValueError, match="before --since"):
        BackfillRange.from_url("s3://trail", date(2024, 5, 2), date(2024, 5, 1))


def test_backfill_state_compacts_finished_folder(tmp_path: Path) -> None:
    state = BackfillState(tmp_path / "state.json")
    state.mark_done("a/2024/05/01/x.json.gz", folder_finished=False)
    state.mark_done("a/2024/05/01/y.json.gz", folder_finished=True)
    state.mark_done("a/2024/05/02/z.json.gz", folder_finished=False)

    loaded = BackfillState.load(tmp_path / "state.json")

    assert loaded.done_folders == {"a/2024/05/01/": 2}
    assert loaded.done_keys == {"a/2024/05/02/z.json.gz"}
    assert loaded.is_done("a/2024/05/01/new.json.gz")
    assert not loaded.is_done("a/2024/05/02/other.json.gz")
