"""The HTTP API over a real SQLite store: filters, pages, auth, errors, probes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fixtures_postgres import BASE_TIME, FindingFactory

from service.api import create_app
from service.dead_letters import DeadLetter
from service.store import AlertStore, open_store

TOKEN = "s3cret-token"

ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def api_store(tmp_path: Path) -> AsyncIterator[AlertStore]:
    store = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def make_client(api_store: AlertStore) -> AsyncIterator[ClientFactory]:
    """Clients for apps over `api_store`, built with create_app's keyword options."""
    clients: list[httpx.AsyncClient] = []

    def make(**options: Any) -> httpx.AsyncClient:
        app: FastAPI = create_app(api_store, **options)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://trailwarden"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return make_client()


@pytest.fixture
async def three_alerts(api_store: AlertStore, make_finding: FindingFactory) -> None:
    """Alerts a (12:00-12:30, twice), b (14:00), c (16:00), created in that order."""
    await api_store.save_findings(
        [
            make_finding(0, title="a", dedup_key="a"),
            make_finding(30, title="a", dedup_key="a"),
            make_finding(120, title="b", dedup_key="b", severity="low"),
            make_finding(
                240,
                title="c",
                dedup_key="c",
                detector="outside-business-hours",
                third_party=None,
                account_id="444455556666",
            ),
        ]
    )


def titles(response: httpx.Response) -> list[str]:
    return [item["title"] for item in response.json()["items"]]


@pytest.mark.usefixtures("three_alerts")
async def test_list_alerts_no_filters_returns_newest_first(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/alerts")

    assert response.status_code == 200
    body = response.json()
    assert titles(response) == ["c", "b", "a"]
    assert body["next_cursor"] is None
    assert body["items"][2]["count"] == 2
    assert body["items"][2]["first_seen"] == "2024-05-01T12:00:00Z"
    assert body["items"][0]["third_party"] is None


@pytest.mark.usefixtures("three_alerts")
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"detector": "outside-business-hours"}, ["c"]),
        ({"severity": "low"}, ["b"]),
        ({"third_party": "acme-analytics"}, ["b", "a"]),
        ({"account_id": "444455556666"}, ["c"]),
        ({"status": "open"}, ["c", "b", "a"]),
        ({"status": "resolved"}, []),
        ({"since": "2024-05-01T12:30:00Z"}, ["c", "b", "a"]),
        ({"since": "2024-05-01T12:31:00Z"}, ["c", "b"]),
        ({"until": "2024-05-01T14:00:00Z"}, ["a"]),
        ({"since": "2024-05-01T15:00:00+02:00"}, ["c", "b"]),
        ({"since": "2024-05-01T13:00:00", "until": "2024-05-01T15:00:00"}, ["b"]),
        ({"severity": "high", "third_party": "acme-analytics"}, ["a"]),
        ({"unknown_parameter": "ignored"}, ["c", "b", "a"]),
    ],
)
async def test_list_alerts_filters_select_matching(
    client: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    response = await client.get("/alerts", params=params)

    assert response.status_code == 200
    assert titles(response) == expected


async def test_list_alerts_pages_stay_stable_while_alerts_arrive(
    client: httpx.AsyncClient, api_store: AlertStore, make_finding: FindingFactory
) -> None:
    await api_store.save_findings(
        [make_finding(n, dedup_key=str(n), title=str(n)) for n in range(5)]
    )

    first = await client.get("/alerts", params={"limit": 2})
    await api_store.save_findings(
        [make_finding(n, dedup_key=str(n), title=str(n)) for n in (100, 101)]
    )
    cursor = first.json()["next_cursor"]
    second = await client.get("/alerts", params={"limit": 2, "cursor": cursor})
    cursor = second.json()["next_cursor"]
    third = await client.get("/alerts", params={"limit": 2, "cursor": cursor})
    fresh = await client.get("/alerts", params={"limit": 2})

    assert titles(first) + titles(second) + titles(third) == ["4", "3", "2", "1", "0"]
    assert third.json()["next_cursor"] is None
    assert titles(fresh) == ["101", "100"]


async def test_list_alerts_default_limit_is_bounded(
    client: httpx.AsyncClient, api_store: AlertStore, make_finding: FindingFactory
) -> None:
    await api_store.save_findings(
        [make_finding(n, dedup_key=str(n)) for n in range(51)]
    )

    response = await client.get("/alerts")

    assert len(response.json()["items"]) == 50
    assert response.json()["next_cursor"] is not None


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"limit": "0"}, ["limit", "0"]),
        ({"limit": "10000"}, ["limit", "10000"]),
        ({"limit": "abc"}, ["limit", "abc"]),
        ({"limit": "-1"}, ["limit"]),
        ({"severity": "urgent"}, ["severity", "urgent"]),
        ({"status": "closed"}, ["status", "closed"]),
        ({"since": "yesterday"}, ["since", "yesterday"]),
        ({"until": "2024-13-45T99:00:00Z"}, ["until"]),
        ({"since": "9999-12-31T23:59:59-05:00"}, ["since"]),
        ({"until": "0001-01-01T00:00:00+05:00"}, ["until"]),
        ({"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"}, ["since"]),
        ({"cursor": "!!garbage!!"}, ["invalid cursor"]),
        ({"cursor": "c2VxOmFiYw"}, ["invalid cursor"]),
        ({"cursor": "AAAA"}, ["invalid cursor"]),
        ({"cursor": "x" * 500}, ["cursor"]),
        ({"detector": ""}, ["detector"]),
        ({"detector": "d" * 1000}, ["detector"]),
    ],
)
async def test_list_alerts_bad_parameter_returns_400_naming_it(
    client: httpx.AsyncClient, params: dict[str, str], names: list[str]
) -> None:
    response = await client.get("/alerts", params=params)

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert all(name in detail for name in names)


async def test_list_alerts_nul_in_filter_matches_nothing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/alerts", params={"actor": "x", "detector": "a\x00"})

    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_get_alert_known_id_returns_it(
    client: httpx.AsyncClient, api_store: AlertStore, make_finding: FindingFactory
) -> None:
    [change] = await api_store.save_findings([make_finding(0)])

    response = await client.get(f"/alerts/{change.alert.id}")

    assert response.status_code == 200
    assert response.json() == change.alert.model_dump(mode="json")


async def test_get_alert_unknown_id_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/alerts/no-such-alert")

    assert response.status_code == 404
    assert response.json() == {"detail": "no alert with id 'no-such-alert'"}


async def test_dead_letters_listing_shows_metadata_and_payload(
    client: httpx.AsyncClient, api_store: AlertStore
) -> None:
    received = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    await api_store.save_dead_letters(
        [
            DeadLetter("cloudtrail", 2, 7, "not_json", "byte 0", b"\x00{", received),
            DeadLetter("a.json", None, None, "empty", "empty file", b"", received),
        ]
    )

    response = await client.get("/dead-letters", params={"limit": 1})

    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["source"] == "a.json"
    assert item["partition"] is None

    everything = (await client.get("/dead-letters")).json()["items"]
    assert base64.b64decode(everything[1]["payload_base64"]) == b"\x00{"
    assert everything[1]["offset"] == 7
    assert everything[1]["payload_truncated"] is False


async def test_dead_letters_large_payload_is_cut_in_listing(
    client: httpx.AsyncClient, api_store: AlertStore
) -> None:
    payload = b"y" * 200_000
    await api_store.save_dead_letters(
        [DeadLetter("t", 0, 0, "too_large", "big", payload, datetime.now(UTC))]
    )

    [item] = (await client.get("/dead-letters")).json()["items"]

    assert item["payload_size"] == 200_000
    assert item["payload_truncated"] is True
    assert len(base64.b64decode(item["payload_base64"])) < 200_000


@pytest.mark.parametrize("limit", ["0", "101", "many"])
async def test_dead_letters_bad_limit_returns_400(
    client: httpx.AsyncClient, limit: str
) -> None:
    response = await client.get("/dead-letters", params={"limit": limit})

    assert response.status_code == 400
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/alerts", "/alerts/some-id", "/dead-letters"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic czNjcmV0LXRva2Vu",
        "Bearer wrong",
        b"Bearer \xe9",
    ],
)
async def test_protected_route_without_valid_token_returns_401(
    make_client: ClientFactory, path: str, authorization: str | bytes | None
) -> None:
    client = make_client(api_tokens=[TOKEN, "second-token"])
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get(path, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in response.json()["detail"]


@pytest.mark.usefixtures("three_alerts")
@pytest.mark.parametrize("token", [TOKEN, "second-token"])
async def test_protected_route_with_any_configured_token_succeeds(
    make_client: ClientFactory, token: str
) -> None:
    client = make_client(api_tokens=[TOKEN, "second-token"])

    response = await client.get("/alerts", headers={"Authorization": f"bearer {token}"})

    assert response.status_code == 200
    assert titles(response) == ["c", "b", "a"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probe_routes_with_tokens_need_none(
    make_client: ClientFactory, path: str
) -> None:
    client = make_client(api_tokens=[TOKEN])

    response = await client.get(path)

    assert response.status_code == 200


def test_create_app_empty_token_raises(api_store: AlertStore) -> None:
    with pytest.raises(ValueError, match="empty token"):
        create_app(api_store, api_tokens=[TOKEN, ""])


async def test_healthz_returns_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.json() == {"status": "ok"}


async def test_readyz_ready_with_store_returns_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "reason",
    [
        "consumer is starting or stopping",
        "Kafka broker is unreachable; reconnecting",
    ],
)
async def test_readyz_service_not_ready_returns_503_with_its_reason(
    make_client: ClientFactory, reason: str
) -> None:
    client = make_client(not_ready=lambda: reason)

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": reason}


async def test_readyz_store_closed_returns_503(
    client: httpx.AsyncClient, api_store: AlertStore
) -> None:
    await api_store.close()

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert "alert store" in response.json()["reason"]


async def test_list_alerts_store_closed_returns_503(
    client: httpx.AsyncClient, api_store: AlertStore
) -> None:
    await api_store.close()

    response = await client.get("/alerts")

    assert response.status_code == 503
    assert response.json() == {"detail": "alert store unavailable"}


async def test_metrics_serves_prometheus_text_without_redirect(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# HELP" in response.text


async def test_unknown_route_returns_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_list_alerts_since_equal_until_returns_empty(
    client: httpx.AsyncClient,
) -> None:
    moment = (BASE_TIME + timedelta(hours=1)).isoformat()

    response = await client.get("/alerts", params={"since": moment, "until": moment})

    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_list_alerts_repeated_parameter_returns_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/alerts?severity=high&severity=low&limit=5")

    assert response.status_code == 400
    assert "'severity'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("tokens", "expected"), [((), 200), ((TOKEN,), 404)], ids=["open", "tokens"]
)
async def test_openapi_schema_is_public_only_without_tokens(
    make_client: ClientFactory, tokens: tuple[str, ...], expected: int
) -> None:
    client = make_client(api_tokens=tokens)

    response = await client.get("/openapi.json")

    assert response.status_code == expected


async def test_docs_page_is_not_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")

    assert response.status_code == 404
