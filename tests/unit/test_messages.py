"""The message contracts: control events (strict, signed) and dial messages."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.messages import (
    MAX_BATCH,
    ControlEvent,
    DialArgs,
    DialBatch,
    QueuedDial,
    dial_body,
    sign,
    signed_by,
)
from shared.states import Action, Status

EVENT: dict[str, Any] = {
    "campaign_id": 12,
    "version": 4,
    "action": "pause",
    "status": "paused",
    "at": "2026-05-04T12:00:00+00:00",
}


def body(**over: Any) -> bytes:
    return json.dumps({**EVENT, **over}).encode()


def test_a_control_event_parses_into_its_types():
    e = ControlEvent.model_validate_json(body())
    assert e.type == "campaign.transition"
    assert (e.campaign_id, e.version) == (12, 4)
    assert e.action is Action.PAUSE and e.status is Status.PAUSED
    assert e.at == datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def test_a_control_event_survives_its_own_serialisation():
    e = ControlEvent.model_validate_json(body())
    assert ControlEvent.model_validate_json(e.model_dump_json()) == e


@pytest.mark.parametrize(
    "over",
    [
        {"type": "campaign.deleted"},
        {"campaign_id": 0},
        {"campaign_id": -1},
        {"version": 0},
        {"version": 1.5},
        {"version": "four"},
        {"action": "open"},
        {"status": "open"},
        {"action": None},
        {"at": "yesterday"},
        {"gate": "running"},  # an unknown field: nothing may ride along
    ],
    ids=lambda o: json.dumps(o),
)
def test_a_control_event_with_a_wrong_or_unknown_field_is_refused(over: dict[str, Any]):
    with pytest.raises(ValidationError):
        ControlEvent.model_validate_json(body(**over))


@pytest.mark.parametrize("field", list(EVENT))
def test_a_control_event_missing_a_field_is_refused(field: str):
    raw = {k: v for k, v in EVENT.items() if k != field}
    with pytest.raises(ValidationError):
        ControlEvent.model_validate_json(json.dumps(raw))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'"x"', b"null"])
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes):
    with pytest.raises(ValidationError):
        ControlEvent.model_validate_json(raw)


def test_a_parsed_event_cannot_be_changed():
    e = ControlEvent.model_validate_json(body())
    with pytest.raises(ValidationError):
        e.version = 99  # type: ignore[misc]


def test_a_control_event_without_a_timezone_is_refused():
    with pytest.raises(ValidationError):
        ControlEvent.model_validate_json(body(at="2026-05-04T12:00:00"))


# -- signatures -----------------------------------------------------------------------------
KEY = "s3cret"


def test_the_signature_is_the_hmac_sha256_of_the_body():
    b = body()
    assert sign(b, KEY) == hmac.new(KEY.encode(), b, hashlib.sha256).hexdigest()


def test_a_body_signed_with_the_key_is_accepted():
    b = body()
    assert signed_by(b, sign(b, KEY), KEY)


def test_a_changed_body_or_another_key_breaks_the_signature():
    b = body()
    sig = sign(b, KEY)
    assert not signed_by(body(version=5), sig, KEY)
    assert not signed_by(b + b" ", sig, KEY)
    assert not signed_by(b, sig, "other")
    assert not signed_by(b, sign(b, "other"), KEY)


@pytest.mark.parametrize("signature", [None, "", 0, b"abc", ["x"]])
def test_a_missing_or_malformed_signature_is_refused(signature: object):
    assert not signed_by(body(), signature, KEY)


def test_a_signature_as_bytes_is_refused_even_when_its_digits_are_right():
    b = body()
    assert not signed_by(b, sign(b, KEY).encode(), KEY)


# -- dial messages --------------------------------------------------------------------------
def batch(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "campaign_id": 3,
        "epoch": "e1",
        "machine_detection": True,
        "attempts": [
            {"attempt_id": 7, "contact_id": 70},
            {"attempt_id": 8, "contact_id": 80},
        ],
    }
    return {**raw, **over}


def test_a_dial_message_gives_each_attempt_its_campaigns_settings_and_no_number():
    rows = DialBatch.model_validate(batch()).args()
    assert rows == [
        QueuedDial(attempt_id=7, campaign_id=3, contact_id=70, epoch="e1", machine_detection=True),
        QueuedDial(attempt_id=8, campaign_id=3, contact_id=80, epoch="e1", machine_detection=True),
    ]
    assert not any(isinstance(r, DialArgs) for r in rows)


def test_a_started_attempt_dials_the_number_its_start_read():
    queued = DialBatch.model_validate(batch()).args()[1]
    started = queued.dialing("+14155550100")
    assert isinstance(started, DialArgs) and started.phone == "+14155550100"
    assert started.model_dump(exclude={"phone"}) == queued.model_dump()


def test_a_dial_message_built_from_its_attempts_gives_them_back():
    message = DialBatch.model_validate(batch())
    assert DialBatch.of(message.args()) == message
    assert DialBatch.model_validate(message.model_dump()) == message  # the actor's kwargs


@pytest.mark.parametrize(
    "over",
    [
        {"attempts": []},
        {"attempts": [{"attempt_id": 1, "contact_id": 1}] * 101},
        {"epoch": ""},
        {"campaign_id": 0},
        {"max_attempts": 3},
        {"machine_detection": "maybe"},
        {"priority": 1},
        {"phone": "+33612345678"},
        {"attempts": [{"attempt_id": 1, "contact_id": 1, "phone": "+33612345678"}]},
        {"attempts": [{"attempt_id": 1, "contact_id": 1, "x": 1}]},
        {"attempts": [{"attempt_id": 1, "contact_id": 1, "attempt_no": 2}]},
        {"sig": "0" * 65},
    ],
    ids=lambda o: json.dumps(o)[:60],
)
def test_a_dial_message_outside_its_contract_is_refused(over: dict[str, Any]):
    with pytest.raises(ValidationError):
        DialBatch.model_validate(batch(**over))


def test_a_dial_message_holds_at_most_max_batch_attempts():
    target = {"attempt_id": 1, "contact_id": 1}
    assert len(DialBatch.model_validate(batch(attempts=[target] * MAX_BATCH)).attempts) == 100


def received(message: DialBatch) -> dict[str, Any]:
    """The actor's arguments as a worker gets them: through the broker's JSON."""
    return dict(json.loads(json.dumps(message.model_dump())))


def test_a_signed_dial_message_verifies_after_its_trip_through_the_broker():
    kwargs = received(DialBatch.model_validate(batch(campaign_id=2**53 + 1)).signed(KEY))
    assert signed_by(dial_body(kwargs), kwargs["sig"], KEY)
    assert kwargs["sig"] == sign(dial_body(kwargs), KEY)  # the one helper of control events
    assert DialBatch.model_validate(kwargs).sig == kwargs["sig"]


@pytest.mark.parametrize(
    "change",
    [
        {"campaign_id": 4},
        {"epoch": "e2"},
        {"machine_detection": False},
        {"attempts": [{"attempt_id": 9, "contact_id": 70}]},
        {"attempts": [{"attempt_id": 7, "contact_id": 70, "phone": "+1415"}]},
    ],
    ids=lambda o: next(iter(o)),
)
def test_a_changed_dial_message_no_longer_matches_its_signature(change: dict[str, Any]):
    kwargs = received(DialBatch.model_validate(batch()).signed(KEY))
    assert not signed_by(dial_body({**kwargs, **change}), kwargs["sig"], KEY)


def test_without_a_key_a_dial_message_goes_unsigned_and_a_key_finds_no_signature():
    kwargs = received(DialBatch.model_validate(batch()).signed(None))
    assert kwargs["sig"] is None
    assert not signed_by(dial_body(kwargs), kwargs["sig"], KEY)
    assert not signed_by(dial_body(kwargs), sign(dial_body(kwargs), "other"), KEY)
