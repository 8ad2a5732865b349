"""Webhooks without a service: the address guard, the event filter, the retry schedule,
the secret and the signature, and two senders' claims on an SQLite file."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook as Signer

from control.campaigns.webhooks import (
    ACTION_EVENTS,
    EVENTS,
    check_url,
    checked_events,
    enqueue,
    matches,
    new_secret,
)
from control.loops.webhooks import Result, WebhookSender, backoff
from shared.db import make_engine, make_sessionmaker
from shared.errors import InvalidInput
from shared.keys import Keys
from shared.migrate import upgrade
from shared.models import Webhook, WebhookDelivery
from shared.settings import Settings
from shared.states import Action


def resolving_to(*addresses: str) -> Any:
    """A getaddrinfo that answers these addresses for any host."""

    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.10", "172.16.5.5", "169.254.169.254", "0.0.0.0"],
)
def test_an_internal_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_url("https://hooks.example.com/in", False, resolving_to(address))
    assert refused.value.field == "url"
    assert "DIALGATE_WEBHOOK_ALLOW_PRIVATE" in refused.value.message


def test_one_internal_address_among_public_ones_is_refused() -> None:
    with pytest.raises(InvalidInput):
        check_url("https://hooks.example.com/", False, resolving_to("93.184.216.34", "10.0.0.1"))


def test_an_ipv4_mapped_loopback_is_refused() -> None:
    with pytest.raises(InvalidInput):
        check_url("http://[::ffff:127.0.0.1]/", False)


def test_a_public_address_is_allowed_and_allow_private_lets_loopback_through() -> None:
    url = "https://hooks.example.com/in"
    assert check_url(url, False, resolving_to("93.184.216.34")) == url
    assert check_url("http://127.0.0.1:9/x", True) == "http://127.0.0.1:9/x"  # real resolver


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/", "only http"),
        ("file:///etc/passwd", "only http"),
        ("https:///nohost", "no host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("http://127.0.0.1:99999/", "not a URL"),
    ],
)
def test_a_url_that_is_not_an_http_one_is_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_url(url, True, resolving_to("93.184.216.34"))


def test_a_host_that_does_not_resolve_is_refused() -> None:
    def fail(*_: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(InvalidInput, match="does not resolve"):
        check_url("https://nowhere.invalid/", False, fail)


def test_events_match_by_name_or_family() -> None:
    assert matches(["emergency_stop.*"], "emergency_stop.stop")
    assert matches(["emergency_stop.*"], "emergency_stop.lift")
    assert not matches(["emergency_stop.*"], "campaign.paused")
    assert matches(["campaign.paused"], "campaign.paused")
    assert not matches(["campaign.paused"], "campaign.resumed")
    assert matches(["campaign.*"], "campaign.hold_placed")


def test_an_unknown_event_is_refused_naming_the_allowed_ones() -> None:
    assert checked_events(["campaign.paused", "campaign.paused"]) == ["campaign.paused"]
    with pytest.raises(InvalidInput) as refused:
        checked_events(["campaign.paused", "campaign.exploded"])
    assert refused.value.field == "events[1]"
    assert all(e in refused.value.message for e in EVENTS)
    assert "emergency_stop.*" in refused.value.message


def test_every_action_but_lift_cap_tells_an_event() -> None:
    told = {a.value for a in Action} - set(ACTION_EVENTS)
    assert told == {"lift_cap"}, told
    assert set(ACTION_EVENTS.values()) <= set(EVENTS)


def test_the_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    middle = [backoff(n, 5, 3600, lambda: 0.5) for n in range(1, 13)]
    assert middle[:5] == [5, 10, 20, 40, 80]
    assert middle[-1] == 3600 and max(middle) == 3600
    assert backoff(1, 5, 3600, lambda: 0.0) == 3.75
    assert backoff(1, 5, 3600, lambda: 1.0) == 6.25
    assert backoff(30, 5, 3600, lambda: 1.0) == 3600  # the cap holds with jitter too


def test_a_new_secret_signs_what_the_library_verifies() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and secret != new_secret()
    at = datetime.now(UTC)
    body = b'{"type":"webhook.test"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Signer(secret).sign("msg_1", at, body),
    }
    assert Signer(secret).verify(body, headers) == {"type": "webhook.test"}


def test_two_senders_never_claim_one_delivery_and_each_lane_goes_in_order(tmp_path: Any) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'w.db'}", webhook_backoff=60)
    engine = make_engine(settings)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        for org, events in (("acme", ["campaign.*"]), ("globex", ["emergency_stop.*"])):
            url, secret = "http://127.0.0.1:9/", new_secret()
            s.add(Webhook(org=org, url=url, events=events, secret=secret, created_by="t"))
    with sessions.begin() as s:
        told = [enqueue(s, "acme", "campaign.paused", {}, cid) for cid in (1, 1, 2)]
        told += [enqueue(s, None, "emergency_stop.stop", {}), enqueue(s, "acme", None, {})]
    assert told == [1, 1, 1, 1, 0]  # a stop of all: the one subscriber, of globex
    keys = Keys(settings.namespace)
    one, two = WebhookSender(settings, sessions, keys), WebhookSender(settings, sessions, keys)
    try:
        heads = one._claim()
        assert [j.id for j in heads] == [1, 3, 4]  # each lane's first; 2 waits behind 1
        assert two._claim() == []  # claimed: never sent by two senders at once
        one._settle(heads[0], Result(204, None))
        one._settle(heads[1], Result(500, "HTTP 500"))
        one._settle(heads[2], Result(None, "ConnectError: refused"))
        assert [j.id for j in two._claim()] == [2]  # 1 delivered; 3 and 4 wait their backoff
        with sessions() as s:
            failed = s.get(WebhookDelivery, 3)
            assert failed is not None and failed.attempts == 1 and failed.last_status == 500
            assert failed.next_attempt_at is not None and failed.delivered_at is None
            acme = s.get(Webhook, 1)
            assert acme is not None and acme.failing_since is not None and acme.enabled
    finally:
        one.close()
        two.close()
        engine.dispose()
