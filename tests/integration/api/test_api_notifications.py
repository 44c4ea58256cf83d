"""Notification channels and the outbox over HTTP: validation with reasons, roles, secrets shown once,
rules naming channels, dead letters listed and retried."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from config import Settings
from tests.integration.api.conftest import mint_token
from tests.integration.api.test_api_alerts import HOT, insert_alert

pytestmark = pytest.mark.integration

WEBHOOK = {"name": "ops", "kind": "webhook", "url": "https://hooks.example.org/fleet"}


async def test_channels_are_added_with_a_secret_shown_once_refused_with_reasons_and_named_by_rules(
    http: httpx.AsyncClient,
) -> None:
    made = await http.post("/api/v1/notification-channels", json=WEBHOOK)
    assert made.status_code == 201, made.text
    channel = made.json()
    assert channel["secret"].startswith("whsec_")
    email = await http.post(
        "/api/v1/notification-channels", json={"name": "night", "kind": "email", "recipients": ["ops@example.org"]}
    )
    assert email.status_code == 201, email.text
    assert email.json()["secret"] is None

    listed = (await http.get("/api/v1/notification-channels")).json()["items"]
    assert [c["name"] for c in listed] == ["ops", "night"]
    assert all(c["secret"] is None for c in listed)

    taken = await http.post("/api/v1/notification-channels", json=WEBHOOK)
    assert taken.status_code == 409
    for body, reason in (
        (WEBHOOK | {"name": "x", "url": "gopher://example.org"}, "not an http(s) URL"),
        ({"name": "y", "kind": "email", "recipients": ["nobody"]}, "is not an email address"),
    ):
        refused = await http.post("/api/v1/notification-channels", json=body)
        assert refused.status_code == 400
        assert reason in refused.json()["detail"]

    rule = await http.post(
        "/api/v1/rules",
        json=HOT | {"notify": [{"channel": channel["id"]}, {"channel": email.json()["id"], "events": ["raised"]}]},
    )
    assert rule.status_code == 201, rule.text
    assert rule.json()["notify"] == [
        {"channel": channel["id"], "events": ["raised", "cleared"]},
        {"channel": email.json()["id"], "events": ["raised"]},
    ]
    unknown = await http.post("/api/v1/rules", json=HOT | {"notify": [{"channel": 999}]})
    assert unknown.status_code == 400
    assert "no notification channel 999" in unknown.json()["detail"]
    assert [r["id"] for r in (await http.get("/api/v1/rules")).json()["items"]] == [rule.json()["id"]]

    assert (await http.delete(f"/api/v1/notification-channels/{channel['id']}")).status_code == 204
    assert (await http.get(f"/api/v1/rules/{rule.json()['id']}")).json()["notify"] == [
        {"channel": email.json()["id"], "events": ["raised"]}
    ]
    assert (await http.delete(f"/api/v1/notification-channels/{channel['id']}")).status_code == 404


async def test_dead_notifications_are_listed_with_their_error_and_retried_by_operators_only(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient, api_settings: Settings, database_url: str
) -> None:
    channel = (await http.post("/api/v1/notification-channels", json=WEBHOOK)).json()
    rule = (await http.post("/api/v1/rules", json=HOT)).json()
    alert = await insert_alert(database_url, rule["id"], "truck-1", datetime(2026, 12, 7, 12, tzinfo=UTC))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "INSERT INTO alert_events (alert_id, kind) VALUES (%s, 'raised') RETURNING id", (alert,)
        )
        event = await cur.fetchone()
        assert event is not None
        cur = await conn.execute(
            "INSERT INTO notifications (channel_id, alert_event_id, alert_id, event, payload, state, attempts, last_error)"
            " VALUES (%s, %s, %s, 'raised', '{\"event\": \"raised\"}', 'dead', 8, 'HTTP 503: ') RETURNING id",
            (channel["id"], event[0], alert),
        )
        row = await cur.fetchone()
        assert row is not None
        notification = row[0]

    dead = (await http.get("/api/v1/notifications", params={"state": "dead"})).json()
    assert [(n["id"], n["attempts"], n["last_error"], n["channel_name"]) for n in dead["items"]] == [
        (notification, 8, "HTTP 503: ", "ops")
    ]
    viewer = {"Authorization": f"Bearer {mint_token(api_settings, 'vera', 'viewer')}"}
    assert (await anonymous.get("/api/v1/notifications", headers=viewer)).status_code == 403
    assert (await anonymous.post("/api/v1/notification-channels", json=WEBHOOK, headers=viewer)).status_code == 403
    operator = {"Authorization": f"Bearer {mint_token(api_settings, 'otto', 'operator')}"}
    assert (await anonymous.post("/api/v1/notification-channels", json=WEBHOOK, headers=operator)).status_code == 403

    assert (await anonymous.post(f"/api/v1/notifications/{notification}/retry", headers=operator)).status_code == 204
    again = (await http.get("/api/v1/notifications", params={"state": "pending"})).json()["items"]
    assert [(n["id"], n["attempts"], n["last_error"]) for n in again] == [(notification, 0, None)]
    assert (await http.post(f"/api/v1/notifications/{notification}/retry")).status_code == 409
