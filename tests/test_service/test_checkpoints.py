"""StoreRetry: the store is called again, with backoff, until it answers."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from service.checkpoints import StoreRetry
from service.store import StoreUnavailable


class FlakyStore:
    """Refuses `failures` calls, then answers "saved"."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def save(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("database unavailable during save_batch")
        return "saved"


async def test_store_retry_store_down_twice_retries_until_saved() -> None:
    retry = StoreRetry(max_delay=0.01)
    store = FlakyStore(failures=2)

    with capture_logs() as logs:
        result = await retry("batch.store_failed", store.save, lambda: True)

    assert result == "saved"
    assert store.calls == 3
    assert not retry.failing
    attempts = [log["attempt"] for log in logs if log["event"] == "batch.store_failed"]
    assert attempts == [1, 2]


async def test_store_retry_failing_while_store_down() -> None:
    retry = StoreRetry(max_delay=0.01)
    store = FlakyStore(failures=1)
    seen: list[bool] = []

    def wanted() -> bool:
        seen.append(retry.failing)
        return True

    await retry("batch.store_failed", store.save, wanted)

    assert seen == [False, True]


async def test_store_retry_no_longer_wanted_returns_none() -> None:
    retry = StoreRetry(max_delay=0.01)
    store = FlakyStore(failures=100)
    answers = iter([True, True, False])

    result = await retry("batch.store_failed", store.save, lambda: next(answers))

    assert result is None
    assert store.calls == 2
    assert not retry.failing


async def test_store_retry_other_error_propagates() -> None:
    retry = StoreRetry(max_delay=0.01)

    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retry("batch.store_failed", broken, lambda: True)


@pytest.mark.parametrize("failures", [1, 2, 5, 30, 1000])
def test_store_retry_delay_doubles_within_cap(failures: int) -> None:
    retry = StoreRetry(max_delay=4.0)

    delay = retry.delay(failures)

    ceiling = min(4.0, 0.5 * 2 ** min(failures - 1, 10))
    assert ceiling / 2 <= delay <= ceiling
