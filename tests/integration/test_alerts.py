"""Alertmanager's webhook: firing alerts pause, resolved ones never resume, bad ones 422."""

from __future__ import annotations

from typing import Any

from tests.support.stack import TestStack


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighFailureRate", "severity": "page", **labels},
        "annotations": {"summary": "31% of calls failing"},
        "startsAt": "2026-11-27T02:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "abc123",
    }


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighFailureRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "dialgate",
        "groupLabels": {"alertname": "HighFailureRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def post(stack: TestStack, body: dict[str, Any], expect: int = 200) -> Any:
    return stack.api("POST", "/alerts/alertmanager", expect=expect, json=body)


def test_a_firing_alert_pauses_its_campaign_and_a_resolved_one_never_resumes_it(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=2, max_concurrency=1)

    res = post(stack, payload(alert(campaign_id=str(cid))))["results"]
    assert [r["action"] for r in res] == ["paused"]
    c = stack.campaign(cid)
    assert c["status"] == "paused" and c["pause_source"] == "system"
    assert c["pause_reason"] == "HighFailureRate: 31% of calls failing"
    assert [(h["kind"], h["rule"]) for h in c["holds"]] == [("alert", "HighFailureRate")]
    last = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert last["actor"] == "alertmanager:HighFailureRate" and last["source"] == "system"

    again = post(stack, payload(alert(campaign_id=str(cid))))["results"][0]
    assert again["action"] == "none" and "paused" in again["detail"]
    done = post(stack, payload(alert("resolved", campaign_id=str(cid)), status="resolved"))
    assert done["results"][0]["action"] == "none"
    assert stack.campaign(cid)["status"] == "paused"
    assert stack.campaign(cid)["version"] == 2  # start, pause: nothing more


def test_a_grouped_payload_acts_on_each_alert_and_reports_each(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    a = stack.make_campaign(contacts=1, max_concurrency=1)
    b = stack.make_campaign(contacts=1, max_concurrency=1)
    res = post(
        stack,
        payload(
            alert(campaign_id=str(a)),
            alert(campaign_id=str(b)),
            alert(campaign_id="999"),
            alert(),  # no label dialgate acts on
        ),
    )["results"]
    assert [r["action"] for r in res] == ["paused", "paused", "none", "none"]
    assert "does not exist" in res[2]["detail"]
    assert {stack.campaign(a)["status"], stack.campaign(b)["status"]} == {"paused"}


def test_an_alert_scoped_to_all_sets_the_emergency_stop(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    res = post(stack, payload(alert(dialgate_scope="all")))["results"]
    assert res[0]["action"] == "emergency_stop"
    stop = stack.api("GET", "/emergency-stop")
    assert stop["active"] is True and stop["by"] == "alertmanager:HighFailureRate"
    assert stop["reason"] == "HighFailureRate: 31% of calls failing"


def test_malformed_payloads_are_refused_naming_the_field_and_change_nothing(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1, max_concurrency=1)
    good = alert(campaign_id=str(cid))
    no_name = alert(campaign_id=str(cid))
    del no_name["labels"]["alertname"]
    cases = [
        ({"status": "firing"}, "alerts: "),
        (payload(), "alerts: "),
        (payload({**good, "status": "burning"}), "alerts.0.status: "),
        (payload(good, no_name), "alerts.1.labels: "),
        (payload(good, alert(campaign_id="twelve")), "alerts.1.labels.campaign_id: "),
        (payload(good, alert(campaign_id="-3")), "alerts.1.labels.campaign_id: "),
    ]
    for body, field in cases:
        err = post(stack, body, expect=422)["error"]
        assert err["message"].startswith(field), (field, err)
    assert stack.campaign(cid)["status"] == "running"
