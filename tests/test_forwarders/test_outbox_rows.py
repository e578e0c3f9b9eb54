"""outbox_rows: new alerts only, per matching destination, in order, repeats flagged."""

from __future__ import annotations

from service.alerts import AlertChange
from service.forwarders.destinations import Filter, SnsDestination, WebhookDestination
from service.forwarders.outbox import delivery_id, outbox_rows

HOOK = WebhookDestination(
    name="hook", type="webhook", url="http://127.0.0.1:9/hook", secret="k"
)
TOPIC = SnsDestination(
    name="topic",
    type="sns",
    topic_arn="arn:aws:sns:us-east-1:111122223333:t",
    filter=Filter(min_severity="critical"),
)


def test_outbox_rows_new_alerts_only_in_order(make_alert) -> None:
    changes = [
        AlertChange(make_alert(1), created=True),
        AlertChange(make_alert(0, count=3), created=False),
        AlertChange(make_alert(2), created=True),
    ]

    rows = outbox_rows(changes, [HOOK])

    assert [row["alert_id"] for row in rows] == ["alert-0001", "alert-0002"]
    assert rows[0]["id"] == delivery_id("hook", "alert-0001")
    assert rows[0]["status"] == "pending"
    assert rows[0]["payload"]["repeat"] is False


def test_outbox_rows_filter_skips_destination(make_alert) -> None:
    changes = [
        AlertChange(make_alert(1, severity="critical"), created=True),
        AlertChange(make_alert(2, severity="high"), created=True),
    ]

    rows = outbox_rows(changes, [HOOK, TOPIC])

    assert [(row["destination"], row["alert_id"]) for row in rows] == [
        ("hook", "alert-0001"),
        ("topic", "alert-0001"),
        ("hook", "alert-0002"),
    ]


def test_outbox_rows_update_in_same_batch_sends_latest_as_repeat(make_alert) -> None:
    changes = [
        AlertChange(make_alert(1), created=True),
        AlertChange(make_alert(1, count=2), created=False),
    ]

    (row,) = outbox_rows(changes, [HOOK])

    assert row["payload"]["count"] == 2
    assert row["payload"]["repeat"] is True


def test_outbox_rows_recurrence_of_older_alert_is_repeat(make_alert) -> None:
    changes = [AlertChange(make_alert(5), created=True)]

    (row,) = outbox_rows(changes, [HOOK], previous={"alert-0005": "alert-0001"})

    assert row["payload"]["repeat"] is True
    assert row["payload"]["previous_alert_id"] == "alert-0001"
