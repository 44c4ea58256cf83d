"""The notifier's retry schedule and the email it composes (no servers)."""

from __future__ import annotations

from config import NotifySettings
from engine.mail import compose
from engine.notify import retry_delay


def test_retries_double_from_the_base_up_to_the_cap_and_jitter_only_shortens() -> None:
    settings = NotifySettings(retry_base_s=5.0, retry_max_s=60.0)
    assert [retry_delay(settings, n, jitter=1.0) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert retry_delay(settings, 3, jitter=0.5) == 10.0


def test_the_email_names_severity_event_rule_and_device_and_carries_the_alert() -> None:
    notice = {
        "event_id": 41,
        "event": "raised",
        "alert_id": 7,
        "rule_id": 2,
        "rule_name": "engine overheating",
        "device_id": "truck-0001",
        "severity": "critical",
        "state": "active",
        "message": "engine overheating: engine_temp > 110 for 30 s (read 115)",
        "started_at": "2026-12-07T12:38:32Z",
        "raised_at": "2026-12-07T12:39:02Z",
        "cleared_at": None,
    }
    message = compose("fleet@example.org", ["ops@example.org", "night@example.org"], notice)
    assert message["Subject"] == "[fleetbridge] critical alert raised: engine overheating on truck-0001"
    assert message["To"] == "ops@example.org, night@example.org"
    body = message.get_content()
    assert "engine_temp > 110 for 30 s (read 115)" in body
    assert "alert #7, change #41" in body
    assert "cleared:" not in body
