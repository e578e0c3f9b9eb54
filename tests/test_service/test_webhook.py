"""The webhook protocol: signatures receivers can check, and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.forwarders.webhook import parse_retry_after, sign, verify_signature


def test_verify_signature_signed_body_true() -> None:
    signature = sign("k", "1700000000", b'{"id":"a"}')

    assert signature.startswith("sha256=")
    assert verify_signature("k", "1700000000", b'{"id":"a"}', signature)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body"),
    [
        ("other", "1700000000", b'{"id":"a"}'),
        ("k", "1700000001", b'{"id":"a"}'),
        ("k", "1700000000", b'{"id":"b"}'),
    ],
)
def test_verify_signature_any_part_changed_false(
    secret: str, timestamp: str, body: bytes
) -> None:
    signature = sign("k", "1700000000", b'{"id":"a"}')

    assert not verify_signature(secret, timestamp, body, signature)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Tue, 05 Mar 2024 14:00:30 GMT", 30.0),
        ("Tue, 05 Mar 2024 13:59:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after_forms_seconds(
    header: str | None, expected: float | None
) -> None:
    now = datetime(2024, 3, 5, 14, 0, tzinfo=UTC)

    assert parse_retry_after(header, now) == expected
