"""Notification channels, a rule's notify list, and the webhook signature a receiver verifies."""

from __future__ import annotations

import msgspec
import pytest

from models.notifications import ChannelSpec, channel_problem, new_secret, verify_signature, webhook_signature
from models.rules import RuleSpec, rule_problem

SECRET = "whsec_0123456789abcdef0123456789abcdef"


def test_signature_verifies_for_the_body_and_time_it_was_made_for() -> None:
    body = b'{"event":"raised","alert_id":7}'
    signature = webhook_signature(SECRET, 1_800_000_000, body)
    assert signature.startswith("v1=")
    assert verify_signature(SECRET, "1800000000", signature, body, now=1_800_000_010) is None


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now", "reason"),
    [
        (
            "whsec_another_secret_entirely_000",
            "1800000000",
            b'{"event":"raised","alert_id":7}',
            1_800_000_000,
            "does not match",
        ),
        (SECRET, "1800000000", b'{"event":"cleared","alert_id":7}', 1_800_000_000, "does not match"),
        (SECRET, "1800000001", b'{"event":"raised","alert_id":7}', 1_800_000_000, "does not match"),
        (SECRET, "1800000000", b'{"event":"raised","alert_id":7}', 1_800_000_301, "a replay"),
        (SECRET, "yesterday", b'{"event":"raised","alert_id":7}', 1_800_000_000, "not a Unix time"),
    ],
    ids=["other-secret", "other-body", "other-timestamp", "replayed-late", "no-timestamp"],
)
def test_signature_refuses_a_forged_altered_or_replayed_request(
    secret: str, timestamp: str, body: bytes, now: int, reason: str
) -> None:
    signature = webhook_signature(SECRET, 1_800_000_000, b'{"event":"raised","alert_id":7}')
    problem = verify_signature(secret, timestamp, signature, body, now=now)
    assert problem is not None
    assert reason in problem


def test_new_secrets_are_long_and_never_repeat() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(s) >= 40 for s in secrets)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"name": "ops", "kind": "webhook"}, "needs url"),
        ({"name": "ops", "kind": "webhook", "url": "ftp://example.org/x"}, "not an http(s) URL"),
        ({"name": "ops", "kind": "webhook", "url": "https://user:pw@example.org/x"}, "must not carry credentials"),
        (
            {"name": "ops", "kind": "webhook", "url": "https://example.org/x", "recipients": ["a@b.io"]},
            "not recipients",
        ),
        ({"name": "ops", "kind": "email"}, "at least one address"),
        ({"name": "ops", "kind": "email", "recipients": ["not an address"]}, "is not an email address"),
        ({"name": "ops", "kind": "email", "recipients": ["a@b.io"], "url": "https://example.org"}, "not url or secret"),
        ({"name": "ops", "kind": "email", "recipients": [f"u{i}@b.io" for i in range(51)]}, "at most 50"),
    ],
)
def test_channel_problems_say_what_is_wrong(document: dict[str, object], reason: str) -> None:
    problem = channel_problem(msgspec.convert(document, ChannelSpec))
    assert problem is not None
    assert reason in problem


def test_good_channels_have_no_problem() -> None:
    webhook = msgspec.convert({"name": "ops", "kind": "webhook", "url": "https://hooks.example.org/fleet"}, ChannelSpec)
    email = msgspec.convert({"name": "night", "kind": "email", "recipients": ["ops@example.org"]}, ChannelSpec)
    assert channel_problem(webhook) is None
    assert channel_problem(email) is None


def test_a_short_webhook_secret_is_refused_by_the_schema() -> None:
    with pytest.raises(msgspec.ValidationError, match="secret"):
        msgspec.convert({"name": "ops", "kind": "webhook", "url": "https://x.org", "secret": "short"}, ChannelSpec)


def test_rule_notify_defaults_to_raised_and_cleared_and_refuses_repeats_and_empty_event_lists() -> None:
    base = {"name": "hot", "metric": "engine_temp", "op": ">", "threshold": 110}
    spec = msgspec.convert(base | {"notify": [{"channel": 3}]}, RuleSpec)
    assert spec.notify[0].events == ["raised", "cleared"]
    assert rule_problem(spec) is None
    twice = msgspec.convert(base | {"notify": [{"channel": 3}, {"channel": 3, "events": ["raised"]}]}, RuleSpec)
    assert rule_problem(twice) == "channel 3 is named twice in notify"
    empty = msgspec.convert(base | {"notify": [{"channel": 3, "events": []}]}, RuleSpec)
    problem = rule_problem(empty)
    assert problem is not None
    assert "at least one event" in problem
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(base | {"notify": [{"channel": 3, "events": ["exploded"]}]}, RuleSpec)
