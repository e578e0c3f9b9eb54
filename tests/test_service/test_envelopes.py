"""Tests for unwrap: every envelope, built from real records in tests/data."""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service import envelopes
from service.envelopes import MAX_PAYLOAD_BYTES, Unwrapped, unwrap

DATA = Path(__file__).parent.parent / "data" / "envelopes"


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def data_json(name: str) -> Any:
    return json.loads(data(name))


def real_record() -> dict[str, Any]:
    """A real ModifySnapshotAttribute record from a Stratus Red Team detonation."""
    record: dict[str, Any] = data_json("stratus_ec2_share_ebs_snapshot.json")[0]
    return record


def cloudwatch_payload() -> bytes:
    return data("otel_cloudwatch_logs.json")


def reasons(unwrapped: Unwrapped) -> Counter[str]:
    return Counter(failure.reason for failure in unwrapped.failures)


def names(unwrapped: Unwrapped) -> list[str]:
    return [record.event_name for record in unwrapped.records]


# Single records, arrays and S3 log files


def test_unwrap_single_record_decodes() -> None:
    payload = json.dumps(real_record()).encode()

    unwrapped = unwrap(payload)

    assert unwrapped.envelope == "record"
    assert names(unwrapped) == ["ModifySnapshotAttribute"]
    assert unwrapped.failures == []


def test_unwrap_json_array_decodes_every_record() -> None:
    unwrapped = unwrap(data("stratus_console_login_without_mfa.json"))

    assert unwrapped.envelope == "json_array"
    assert names(unwrapped) == ["ConsoleLogin"]


def test_unwrap_records_file_decodes_and_skips_insight() -> None:
    unwrapped = unwrap(data("otel_records_file.json"))

    assert unwrapped.envelope == "records_file"
    assert len(unwrapped.records) == 6
    assert unwrapped.skipped == {"insight": 1}
    assert unwrapped.failures == []


def test_unwrap_gzipped_records_file_decodes() -> None:
    payload = gzip.compress(data("otel_records_file.json"))

    unwrapped = unwrap(payload)

    assert unwrapped.envelope == "records_file"
    assert len(unwrapped.records) == 6


def test_unwrap_real_gzip_file_decodes() -> None:
    unwrapped = unwrap(data("aws_ctpl_compact.json.gz"))

    assert [r.event_name for r in unwrapped.records] == [
        f"eventName{n}" for n in range(1, 7)
    ]


def test_unwrap_concatenated_gzip_members_decode_as_one() -> None:
    raw = data("otel_records_file.json")
    half = len(raw) // 2
    payload = gzip.compress(raw[:half]) + gzip.compress(raw[half:])

    unwrapped = unwrap(payload)

    assert len(unwrapped.records) == 6


def test_unwrap_null_fields_record_fails_alone() -> None:
    """A record whose every field is null fails; its neighbour still decodes."""
    unwrapped = unwrap(data("aws_ctpl_all_fields_null.json"))

    assert names(unwrapped) == ["eventName2"]
    assert reasons(unwrapped) == {"not_cloudtrail": 1}
    assert unwrapped.failures[0].detail.startswith("record 0: ")


def test_unwrap_empty_records_list_is_not_a_failure() -> None:
    unwrapped = unwrap(b'{"Records": []}')

    assert unwrapped.envelope == "records_file"
    assert unwrapped.records == []
    assert unwrapped.failures == []


def test_unwrap_records_not_a_list_is_wrong_shape() -> None:
    unwrapped = unwrap(b'{"Records": {"eventName": "x"}}')

    assert reasons(unwrapped) == {"wrong_shape": 1}


def test_unwrap_byte_order_mark_is_ignored() -> None:
    payload = b"\xef\xbb\xbf" + json.dumps(real_record()).encode()

    unwrapped = unwrap(payload)

    assert names(unwrapped) == ["ModifySnapshotAttribute"]


def test_unwrap_double_encoded_record_decodes() -> None:
    payload = json.dumps(json.dumps(real_record())).encode()

    unwrapped = unwrap(payload)

    assert names(unwrapped) == ["ModifySnapshotAttribute"]


# JSON Lines


def test_unwrap_json_lines_decodes_every_line() -> None:
    unwrapped = unwrap(data("otrf_logstash.jsonl"))

    assert unwrapped.envelope == "json_lines"
    assert names(unwrapped) == ["DescribeInstanceTypes", "DescribeInstances"]


def test_unwrap_json_lines_bad_line_fails_alone() -> None:
    lines = data("otrf_logstash.jsonl").splitlines()
    payload = b"\n".join([lines[0], b'{"eventVersion": "1.05", "userI', lines[1]])

    unwrapped = unwrap(payload)

    assert names(unwrapped) == ["DescribeInstanceTypes", "DescribeInstances"]
    assert reasons(unwrapped) == {"not_json": 1}
    assert unwrapped.failures[0].detail.startswith("line 2: ")


def test_unwrap_json_lines_mixed_envelopes_decode() -> None:
    """Each line may be its own envelope: a record, EventBridge, CloudWatch Logs."""
    record = json.dumps(real_record()).encode()
    eventbridge = data("custodian_eventbridge_create_bucket.json").replace(b"\n", b"")
    cloudwatch = base64.b64encode(gzip.compress(cloudwatch_payload()))
    payload = b"\n".join([record, eventbridge, cloudwatch]) + b"\n"

    unwrapped = unwrap(payload)

    assert unwrapped.envelope == "json_lines"
    assert names(unwrapped) == ["ModifySnapshotAttribute", "CreateBucket", "PutObject"]


def test_unwrap_gzipped_json_lines_decode() -> None:
    payload = gzip.compress(data("otrf_logstash.jsonl"))

    unwrapped = unwrap(payload)

    assert unwrapped.envelope == "json_lines"
    assert len(unwrapped.records) == 2


def test_unwrap_lookup_events_lines_decode() -> None:
    """Real LookupEvents items, one per line, each with a CloudTrailEvent string."""
    unwrapped = unwrap(data("plaso_lookup_events.jsonl"))

    assert names(unwrapped) == ["DescribeInstances", "SharedSnapshotVolumeCreated"]


# EventBridge


def test_unwrap_eventbridge_api_call_decodes_detail() -> None:
    unwrapped = unwrap(data("custodian_eventbridge_create_bucket.json"))

    assert unwrapped.envelope == "eventbridge"
    assert names(unwrapped) == ["CreateBucket"]


@pytest.mark.parametrize(
    "detail_type",
    [
        "AWS API Call via CloudTrail",
        "AWS Console Sign In via CloudTrail",
        "AWS Console Sign-In via CloudTrail",
        "AWS Service Event via CloudTrail",
    ],
)
def test_unwrap_eventbridge_via_cloudtrail_detail_types_decode(
    detail_type: str,
) -> None:
    login = data_json("stratus_console_login_without_mfa.json")[0]
    login.pop("eventVersion")
    event = {"version": "0", "detail-type": detail_type, "source": "aws.signin"}
    payload = json.dumps({**event, "detail": login}).encode()

    unwrapped = unwrap(payload)

    assert names(unwrapped) == ["ConsoleLogin"]


def test_unwrap_eventbridge_other_detail_type_is_not_cloudtrail() -> None:
    event = {
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "detail": {"instance-id": "i-0123456789abcdef0", "state": "running"},
    }

    unwrapped = unwrap(json.dumps(event).encode())

    assert unwrapped.records == []
    assert reasons(unwrapped) == {"not_cloudtrail": 1}


def test_unwrap_eventbridge_redacted_detail_type_with_record_decodes() -> None:
    """StreamAlert's fixtures blank detail-type to "..."; the detail still counts."""
    unwrapped = unwrap(data("streamalert_root_account_usage.json"))

    assert len(unwrapped.records) == 2
    assert unwrapped.failures == []


def test_unwrap_eventbridge_insight_is_skipped() -> None:
    insight = data_json("otel_records_file.json")["Records"][3]
    event = {"detail-type": "AWS Insight via CloudTrail", "detail": insight}

    unwrapped = unwrap(json.dumps(event).encode())

    assert unwrapped.records == []
    assert unwrapped.skipped == {"insight": 1}


# CloudWatch Logs


@pytest.mark.parametrize(
    "encode",
    [
        lambda raw: raw,
        gzip.compress,
        lambda raw: base64.b64encode(gzip.compress(raw)),
        lambda raw: base64.encodebytes(gzip.compress(raw)),
        lambda raw: json.dumps(
            {"awslogs": {"data": base64.b64encode(gzip.compress(raw)).decode()}}
        ).encode(),
    ],
    ids=["raw", "gzip", "base64", "base64-wrapped-lines", "lambda"],
)
def test_unwrap_cloudwatch_logs_every_encoding_decodes(encode: Any) -> None:
    payload = encode(cloudwatch_payload())

    unwrapped = unwrap(payload)

    assert unwrapped.envelope == "cloudwatch_logs"
    assert names(unwrapped) == ["PutObject"]


def test_unwrap_cloudwatch_logs_bad_message_fails_alone() -> None:
    subscription = json.loads(cloudwatch_payload())
    good = subscription["logEvents"][0]
    truncated = {**good, "message": good["message"][:60]}
    subscription["logEvents"] = [truncated, good, {"id": "x"}]

    unwrapped = unwrap(json.dumps(subscription).encode())

    assert names(unwrapped) == ["PutObject"]
    assert reasons(unwrapped) == {"not_json": 1, "wrong_shape": 1}
    assert unwrapped.failures[0].detail.startswith("log event 0: ")


def test_unwrap_cloudwatch_control_message_is_skipped() -> None:
    subscription = json.loads(cloudwatch_payload())
    subscription["messageType"] = "CONTROL_MESSAGE"
    subscription["logEvents"] = [{"id": "", "timestamp": 0, "message": "CWL CONTROL"}]

    unwrapped = unwrap(gzip.compress(json.dumps(subscription).encode()))

    assert unwrapped.records == []
    assert unwrapped.skipped == {"control_message": 1}
    assert unwrapped.failures == []


def test_unwrap_lambda_awslogs_bad_base64_fails() -> None:
    payload = b'{"awslogs": {"data": "H4sI*"}}'

    unwrapped = unwrap(payload)

    assert reasons(unwrapped) == {"bad_base64": 1}


# LookupEvents


def test_unwrap_lookup_events_output_decodes() -> None:
    items = [
        json.loads(line) for line in data("plaso_lookup_events.jsonl").splitlines()
    ]
    payload = json.dumps({"Events": items, "NextToken": "abc"}).encode()

    unwrapped = unwrap(payload)

    assert unwrapped.envelope == "lookup_events"
    assert names(unwrapped) == ["DescribeInstances", "SharedSnapshotVolumeCreated"]


def test_unwrap_lookup_events_bad_item_fails_alone() -> None:
    items = [
        json.loads(line) for line in data("plaso_lookup_events.jsonl").splitlines()
    ]
    items[0]["CloudTrailEvent"] = items[0]["CloudTrailEvent"][:40]
    payload = json.dumps({"Events": items}).encode()

    unwrapped = unwrap(payload)

    assert names(unwrapped) == ["SharedSnapshotVolumeCreated"]
    assert reasons(unwrapped) == {"not_json": 1}


def test_unwrap_lookup_events_records_listed_directly_decode() -> None:
    payload = json.dumps({"Events": [real_record()]}).encode()

    unwrapped = unwrap(payload)

    assert names(unwrapped) == ["ModifySnapshotAttribute"]


# Digests and Insights


def test_unwrap_digest_file_is_skipped() -> None:
    unwrapped = unwrap(data("otel_digest.json"))

    assert unwrapped.envelope == "digest"
    assert unwrapped.skipped == {"digest": 1}
    assert unwrapped.records == []
    assert unwrapped.failures == []


def test_unwrap_gzipped_digest_file_is_skipped() -> None:
    unwrapped = unwrap(gzip.compress(data("otel_digest.json")))

    assert unwrapped.skipped == {"digest": 1}


def test_unwrap_insight_record_is_skipped_not_decoded() -> None:
    insight = data_json("otel_records_file.json")["Records"][3]

    unwrapped = unwrap(json.dumps(insight).encode())

    assert unwrapped.records == []
    assert unwrapped.skipped == {"insight": 1}
    assert unwrapped.failures == []


# Wrappers used by other tools' fixtures


def test_unwrap_panther_test_lines_decode_event() -> None:
    """Panther rule tests wrap each record in {"event": ...} beside metadata."""
    unwrapped = unwrap(data("panther_rule_tests.jsonl"))

    assert unwrapped.envelope == "json_lines"
    assert len(unwrapped.records) == 4
    assert reasons(unwrapped) == {"not_cloudtrail": 2}
    assert unwrapped.failures[1].detail.startswith("line 6: ")


def test_unwrap_streamalert_cloudwatch_fixture_decodes_data() -> None:
    unwrapped = unwrap(data("streamalert_cloudwatch_cloudtrail.json"))

    assert names(unwrapped) == ["bar"]


def test_unwrap_cribl_raw_strings_decode() -> None:
    unwrapped = unwrap(data("cribl_samples.json"))

    assert names(unwrapped) == ["PutObject", "GetObject"]


def test_unwrap_single_wrapper_object_is_marked_wrapper() -> None:
    payload = json.dumps({"event": real_record(), "sourcetype": "aws:cloudtrail"})

    unwrapped = unwrap(payload.encode())

    assert unwrapped.envelope == "wrapper"
    assert names(unwrapped) == ["ModifySnapshotAttribute"]


def test_unwrap_wrapper_with_two_envelopes_is_not_cloudtrail() -> None:
    """Ambiguous wrappers are not guessed at."""
    payload = json.dumps({"event": real_record(), "data": real_record()})

    unwrapped = unwrap(payload.encode())

    assert unwrapped.records == []
    assert reasons(unwrapped) == {"not_cloudtrail": 1}


def test_unwrap_wrapper_of_unknown_object_is_not_cloudtrail() -> None:
    payload = b'{"data": {"foo": 1}, "message": "hello"}'

    unwrapped = unwrap(payload)

    assert reasons(unwrapped) == {"not_cloudtrail": 1}


# Bad input


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b" \n\t ", "empty"),
        (b"[]", "empty"),
        (bytes(range(256)) * 4, "not_json"),
        (b"\x00\xff\xfe garbage \n more garbage \n", "not_json"),
        (b"Helloworld", "not_json"),
        (b"H4sIAAAAAAAAA", "bad_base64"),
        (b"H4sIAAAAAAAA////", "bad_gzip"),
        (b"42", "wrong_shape"),
        (b"null", "wrong_shape"),
        (b'"just a string"', "wrong_shape"),
        (b"[1, 2, 3]", "wrong_shape"),
        (b'{"foo": 1}', "not_cloudtrail"),
        (b'{"eventVersion": "1.08"}', "not_cloudtrail"),
    ],
)
def test_unwrap_bad_payload_fails_with_reason(payload: bytes, reason: str) -> None:
    unwrapped = unwrap(payload)

    assert unwrapped.records == []
    assert [failure.reason for failure in unwrapped.failures] == [reason]


def test_unwrap_truncated_gzip_is_bad_gzip() -> None:
    compressed = gzip.compress(data("otel_records_file.json"))

    unwrapped = unwrap(compressed[: len(compressed) // 2])

    assert unwrapped.records == []
    assert reasons(unwrapped) == {"bad_gzip": 1}


def test_unwrap_corrupt_gzip_is_bad_gzip() -> None:
    compressed = bytearray(gzip.compress(data("otel_records_file.json")))
    compressed[20:40] = b"\xff" * 20

    unwrapped = unwrap(bytes(compressed))

    assert reasons(unwrapped) == {"bad_gzip": 1}


def test_unwrap_gzip_with_trailing_garbage_is_bad_gzip() -> None:
    payload = gzip.compress(data("otel_digest.json")) + b"junk"

    unwrapped = unwrap(payload)

    assert reasons(unwrapped) == {"bad_gzip": 1}


def test_unwrap_oversized_payload_is_too_large() -> None:
    payload = b" " * (MAX_PAYLOAD_BYTES + 1)

    unwrapped = unwrap(payload)

    assert reasons(unwrapped) == {"too_large": 1}


def test_unwrap_gzip_bomb_is_too_large() -> None:
    bomb = gzip.compress(b"[" + b" " * (MAX_PAYLOAD_BYTES + 10) + b"]")

    unwrapped = unwrap(bomb)

    assert len(bomb) < MAX_PAYLOAD_BYTES // 100
    assert reasons(unwrapped) == {"too_large": 1}


def test_unwrap_many_small_gzip_lines_share_one_budget() -> None:
    """Inflated bytes add up across lines, so a bomb cannot be split into pieces."""
    raw = cloudwatch_payload()
    line = base64.b64encode(gzip.compress(raw))
    payload = b"\n".join([line] * 4)
    limit = 3 * len(raw) + 10

    unwrapped = unwrap(payload, max_bytes=limit)

    assert len(payload) <= limit
    assert len(unwrapped.records) == 3
    assert reasons(unwrapped) == {"too_large": 1}


def test_unwrap_deep_nesting_is_wrong_shape() -> None:
    payload: Any = real_record()
    for _ in range(10):
        payload = json.dumps(payload)

    unwrapped = unwrap(json.dumps(payload).encode())

    assert reasons(unwrapped) == {"wrong_shape": 1}


def test_unwrap_failure_detail_never_holds_the_payload() -> None:
    secret = "AKIAIOSFODNN7EXAMPLE-secret-value"
    payload = json.dumps({"not": "cloudtrail", "key": secret})[:-3].encode()

    unwrapped = unwrap(payload)

    assert unwrapped.failures
    assert all(secret not in failure.detail for failure in unwrapped.failures)


def test_unwrap_many_junk_lines_lists_bounded_failures() -> None:
    """A junk payload of thousands of lines lists a bounded number of failures."""
    good = json.dumps({"eventSource": "s3.amazonaws.com", "eventName": "x"})
    payload = "\n".join([good] + ["{not json"] * 5000 + [good]).encode()

    unwrapped = unwrap(payload)

    assert len(unwrapped.records) == 2
    assert len(unwrapped.failures) == envelopes.MAX_LISTED_FAILURES
    assert unwrapped.unlisted_failures == 5000 - envelopes.MAX_LISTED_FAILURES


def test_unwrap_invalid_utf8_in_a_string_keeps_the_record() -> None:
    """One byte of bad UTF-8 inside a value does not cost the whole document."""
    record = {"eventSource": "s3.amazonaws.com", "eventName": "GetObject"}
    payload = json.dumps({"Records": [record]}).replace("GetObject", "Get\\u00ffObject")
    payload_bytes = payload.encode().replace(b"\\u00ff", b"\xff")

    unwrapped = unwrap(payload_bytes)

    assert unwrapped.failures == []
    assert [r.event_name for r in unwrapped.records] == ["Get\ufffdObject"]


def test_unwrap_file_limit_is_set_by_the_caller() -> None:
    """A payload over the Kafka message limit decodes when a larger limit is given."""
    record = json.dumps({"eventSource": "s3.amazonaws.com", "eventName": "GetObject"})
    payload = "\n".join([record] * 200).encode()

    small = unwrap(payload, max_bytes=1000)
    large = unwrap(payload, max_bytes=len(payload))

    assert [f.reason for f in small.failures] == ["too_large"]
    assert len(large.records) == 200
