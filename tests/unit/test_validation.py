"""Contact and campaign validation: clear errors that name what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from control.api.schemas import CampaignCreate, TransitionIn
from shared.messages import ControlEvent
from shared.phones import normalise_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550100", "+14155550100"),
        (" +33 6 12 34 56 78 ", "+33612345678"),
        ("+44 20 7946 0018", "+442079460018"),
    ],
)
def test_a_valid_number_is_kept_in_e164_form(raw, expected):
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "phone is required"),
        ("", "phone is required"),
        (4155550100, "phone is required"),
        ("4155550100", "must start with +"),
        ("+1415", "not a possible phone number"),
        ("+1 415 555 01000000", "not a possible phone number"),
        ("+hello", "not a phone number"),
        ("+11005550100", "not a valid phone number"),
    ],
)
def test_an_invalid_number_is_rejected_with_the_reason(raw, reason):
    with pytest.raises(ValueError, match=reason):
        normalise_phone(raw)


def test_a_campaign_needs_a_name_a_known_timezone_and_a_sane_window():
    ok = CampaignCreate(
        name=" Spring ",
        max_concurrency=3,
        timezone="Europe/Paris",
        calling_window={"days": ["mon"], "start": "22:00", "end": "06:00"},
    )
    assert ok.name == "Spring" and ok.calling_window is not None
    cases = [
        ({"name": ""}, "name"),
        ({"name": "x", "timezone": "Mars/Olympus"}, "unknown IANA timezone"),
        ({"name": "x", "max_concurrency": 0}, "max_concurrency"),
        ({"name": "x", "calling_window": {"start": "9am"}}, "HH:MM"),
        ({"name": "x", "calling_window": {"start": "09:00", "end": "09:00"}}, "empty"),
        ({"name": "x", "calling_window": {"days": ["monday"]}}, "days"),
        ({"name": "x", "colour": "red"}, "colour"),
    ]
    for body, needle in cases:
        with pytest.raises(ValidationError, match=needle):
            CampaignCreate(**body)


def test_a_transition_body_refuses_unknown_fields_and_sources():
    with pytest.raises(ValidationError, match="confirmed"):
        TransitionIn(confirmed=True)
    with pytest.raises(ValidationError, match="source"):
        TransitionIn(source="root")


def test_a_control_event_that_does_not_parse_is_refused():
    good = {
        "campaign_id": 1,
        "version": 2,
        "action": "pause",
        "status": "paused",
        "at": "2026-01-01T00:00:00+00:00",
    }
    assert ControlEvent.model_validate(good).version == 2
    for bad in (
        {**good, "version": 0},
        {**good, "status": "open"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "campaign_id"},
    ):
        with pytest.raises(ValidationError):
            ControlEvent.model_validate(bad)
