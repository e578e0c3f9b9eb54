"""Destinations file: parsing, secrets from the environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.third_parties import MAX_POLICY_BYTES
from service.forwarders.destinations import (
    DestinationsError,
    Filter,
    SnsDestination,
    WebhookDestination,
    load_destinations,
    parse_destinations,
)

EXAMPLE = """
destinations:
  - name: oncall
    type: webhook
    url: https://hooks.example.com/trailwarden
    secret_env: ONCALL_SECRET
    filter: {min_severity: high}
  - name: slack
    type: webhook
    url: https://hooks.slack.com/services/T000/B000/XXXX
    format: slack
    filter: {third_parties: [acme-analytics]}
  - name: security-topic
    type: sns
    topic_arn: arn:aws:sns:eu-west-1:111122223333:trailwarden.fifo
    filter: {detectors: [high-risk-action]}
    retry: {max_attempts: 3}
"""


def test_load_destinations_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "destinations.yaml"
    path.write_text(EXAMPLE)

    oncall, slack, topic = load_destinations(path, {"ONCALL_SECRET": "s3cret"})

    assert isinstance(oncall, WebhookDestination)
    assert oncall.secret is not None
    assert oncall.secret.get_secret_value() == "s3cret"
    assert oncall.origin == "https://hooks.example.com"
    assert isinstance(slack, WebhookDestination)
    assert slack.format == "slack"
    assert slack.secret is None
    assert isinstance(topic, SnsDestination)
    assert topic.fifo
    assert topic.topic_region == "eu-west-1"
    assert topic.retry.max_attempts == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"destinations": [{"name": "a", "type": "webhook", "url": "ftp://x"}]},
            "destinations[0].url: must be an http:// or https:// URL (got 'ftp://x')",
        ),
        (
            {"destinations": [{"name": "a", "type": "pager"}]},
            "destinations[0]: Input tag 'pager' found using 'type'",
        ),
        (
            {"destinations": [{"name": "A b", "type": "sns", "topic_arn": "x"}]},
            "destinations[0].name: must be 1-63 lowercase",
        ),
        (
            {"destinations": [{"name": "t", "type": "sns", "topic_arn": "nope"}]},
            "destinations[0].topic_arn: must be an SNS topic ARN",
        ),
        (
            {
                "destinations": [
                    {
                        "name": "t",
                        "type": "sns",
                        "topic_arn": "arn:aws:sns:us-east-1:111122223333:t",
                        "filter": {"min_severity": "urgent"},
                    }
                ]
            },
            "destinations[0].filter.min_severity: Input should be",
        ),
        (
            {"destinations": [{"name": "a", "type": "webhook", "url": "http://x/"}]},
            "secret_env is required for format json",
        ),
        ({"destination": []}, "destination: unknown field"),
    ],
)
def test_parse_destinations_invalid_names_field_and_value(
    data: object, message: str
) -> None:
    with pytest.raises(DestinationsError) as caught:
        parse_destinations(data, "d.yaml", {})

    assert str(caught.value).startswith("d.yaml: ")
    assert message in str(caught.value)


def test_parse_destinations_missing_secret_variable_names_it() -> None:
    data = {
        "destinations": [
            {"name": "a", "type": "webhook", "url": "http://x/", "secret_env": "NOPE"}
        ]
    }

    with pytest.raises(DestinationsError, match="'NOPE' is not set"):
        parse_destinations(data, "d.yaml", {})


def test_parse_destinations_duplicate_names_rejected() -> None:
    sns = {"type": "sns", "topic_arn": "arn:aws:sns:us-east-1:111122223333:t"}
    data = {"destinations": [{"name": "t", **sns}, {"name": "t", **sns}]}

    with pytest.raises(DestinationsError, match="duplicate destination name 't'"):
        parse_destinations(data, "d.yaml", {})


def test_load_destinations_secret_value_never_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(
        "destinations:\n  - {name: a, type: webhook, url: 'x', secret: hunter2}\n"
    )

    with pytest.raises(DestinationsError) as caught:
        load_destinations(path, {})

    assert "hunter2" not in str(caught.value)


def test_filter_matches_severity_detector_third_party(make_alert) -> None:
    alert = make_alert(severity="medium", third_party=None)

    assert Filter().matches(alert)
    assert Filter(min_severity="medium").matches(alert)
    assert not Filter(min_severity="high").matches(alert)
    assert Filter(detectors=("mfa-missing",)).matches(alert)
    assert not Filter(detectors=("high-risk-action",)).matches(alert)
    assert not Filter(third_parties=("acme-analytics",)).matches(alert)


def test_load_destinations_huge_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "destinations.yaml"
    path.write_bytes(b"#" * (MAX_POLICY_BYTES + 10))

    with pytest.raises(DestinationsError, match="larger than"):
        load_destinations(path)
