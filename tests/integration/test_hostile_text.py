"""Text that breaks things, on PostgreSQL: NUL, ESC, C1 and bidi characters in every
free-text field are refused with a 422 naming the field (nothing changes); contact rows
carrying them are rejected one by one; a CSV field of any length is a rejected line,
not a 500; and what the CLI prints is escaped."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.stack import TestStack, phones

BAD = {"NUL": "\x00", "ESC": "\x1b[31m", "C1": "\x9b", "bidi": "\u202e"}
REFUSED = "must not contain control or format characters (found U+"


def _refused(stack: TestStack, method: str, path: str, body: dict[str, Any], field: str) -> None:
    resp = stack.http.request(method, f"/api/v1{path}", json=body)
    assert resp.status_code == 422, (path, body, resp.status_code, resp.text)
    message = resp.json()["error"]["message"]
    assert message.startswith(f"{field}: {REFUSED}"), (path, message)


def _alert(cid: int, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighFailures", "campaign_id": str(cid), **labels},
        "annotations": annotations,
    }
    return {"status": "firing", "alerts": [alert]}


def test_control_and_format_characters_in_any_free_text_field_are_refused_and_change_nothing(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    tokens_before = len(stack.api("GET", "/tokens")["tokens"])
    for name, bad in BAD.items():
        cases: list[tuple[str, str, dict[str, Any], str]] = [
            ("POST", "/campaigns", {"name": f"promo {bad}"}, "name"),
            ("POST", f"/campaigns/{cid}/pause", {"reason": f"why{bad}"}, "reason"),
            ("POST", f"/campaigns/{cid}/pause", {"reason": "ok", "actor": f"a{bad}"}, "actor"),
            ("POST", f"/campaigns/{cid}/cancel", {"confirm": True, "reason": bad}, "reason"),
            ("POST", "/dnc", {"phones": phones(1), "actor": f"list{bad}"}, "actor"),
            ("POST", "/tokens", {"name": f"bot{bad}", "role": "viewer"}, "name"),
            ("POST", "/emergency-stop", {"reason": f"stop{bad}"}, "reason"),
            ("POST", "/emergency-stop", {"actor": f"me{bad}"}, "actor"),
            (
                "POST",
                "/provider/events",
                {"attempt_id": 1, "event": "ended", "disposition": "failed", "error": f"E{bad}"},
                "error",
            ),
            (
                "POST",
                "/alerts/alertmanager",
                _alert(cid, {"alertname": f"High{bad}"}, {}),
                "alerts.0.labels.alertname",
            ),
            (
                "POST",
                "/alerts/alertmanager",
                _alert(cid, {}, {"summary": f"failing{bad}"}),
                "alerts.0.annotations.summary",
            ),
        ]
        for method, path, body, field in cases:
            _refused(stack, method, path, body, field)
        assert stack.api("GET", "/emergency-stop") == {"active": False}, name
        assert stack.redis.get(stack.keys.estop) is None, name
    c = stack.campaign(cid)
    assert (c["status"], c["version"]) == ("running", 1)  # started, nothing since
    assert len(stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]) == 1
    assert [x["id"] for x in stack.api("GET", "/campaigns")["campaigns"]] == [cid]
    assert stack.api("GET", "/dnc")["phones"] == []
    assert len(stack.api("GET", "/tokens")["tokens"]) == tokens_before
    kinds = {e["kind"] for e in stack.api("GET", "/audit")["events"]}
    assert kinds == {"campaign.created", "contacts.imported", "campaign.start"}


def test_an_alert_annotation_over_several_lines_pauses_with_it_on_one_line(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    payload = _alert(cid, {}, {"summary": "failures\n  over 25%\tin 5 min"})
    res = stack.api("POST", "/alerts/alertmanager", json=payload)
    assert res["results"][0]["action"] == "paused"
    assert stack.campaign(cid)["pause_reason"] == "HighFailures: failures over 25% in 5 min"


def test_contact_rows_with_control_or_format_characters_are_rejected_and_the_others_kept(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=0, start=False)
    p = phones(6)
    rows = [
        {"phone": p[0], "name": "Zoë Ørsted", "attributes": {"tier": "gold", "n": 3}},
        {"phone": p[1], "name": "Bo\x00b"},
        {"phone": p[2], "attributes": {"note": "paid\u202etoday"}},
        {"phone": p[3], "attributes": {"k\x00": 1}},
        {"phone": p[4] + "\u202e"},
        {"phone": p[5], "attributes": {"list": ["ok", "e\x1b[2J"]}},
    ]
    res = stack.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})
    assert res["accepted"] == 1
    errors = {r["index"]: r["error"] for r in res["rejected"]}
    assert errors == {
        1: f"name: {REFUSED}0000 at 2)",
        2: f"attributes.note: {REFUSED}202E at 4)",
        3: f"attributes (a key): {REFUSED}0000 at 1)",
        4: f"phone: {REFUSED}202E at 12)",
        5: f"attributes.list[1]: {REFUSED}001B at 1)",
    }
    assert stack.campaign(cid)["counts"]["pending"] == 1


def test_a_csv_field_of_any_length_is_a_rejected_line_and_the_other_lines_are_kept(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=0, start=False)
    p = phones(5)
    hidden = phones(10)[9]  # a number inside a quoted field: never a contact
    body = (
        "phone,name\n"
        f"{p[0]},Ada\n"
        f"{p[1]},{'x' * 140_000}\n"  # over csv's default field limit (131,072)
        f"{p[2]},Eve\n"
        f'{p[3]},"{"y" * 70_000}\n{hidden},Mallory\n{"y" * 70_000}"\n'
        f"{p[4]},N\x00ul\n"
        f"{phones(7)[6]},Zed\n"
    )
    resp = stack.http.post(
        f"/api/v1/campaigns/{cid}/contacts",
        content=body.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text[:500]
    res = resp.json()
    assert res["accepted"] == 3
    errors = {r["line"]: r["error"] for r in res["rejected"]}
    assert errors == {
        3: "name must be text of at most 200 characters",
        7: "name must be text of at most 200 characters",  # the line its record ends on
        8: f"name: {REFUSED}0000 at 1)",
    }
    with psycopg.connect(stack.settings.database_url.replace("+psycopg", "")) as conn:
        stored = {r[0] for r in conn.execute("SELECT phone FROM contacts")}
    assert stored == {p[0], p[2], phones(7)[6]}


def test_the_cli_prints_stored_escape_sequences_as_escapes_not_terminal_commands(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    stack.act(cid, "pause", reason="checking")
    evil = "evil \x1b]0;owned\x07\x1b[2J\u202edesrever"
    # As if stored before the check existed (or written by something else).
    with psycopg.connect(stack.settings.database_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "UPDATE transitions SET reason = %s, actor = %s WHERE action = 'pause'", (evil, evil)
        )
        conn.execute("UPDATE campaigns SET pause_reason = %s, name = %s", (evil, evil))
    shown = "evil \\x1b]0;owned\\x07\\x1b[2J\\u202edesrever"
    for args in (("history", str(cid)), ("show", str(cid)), ("campaigns",), ("why", str(cid))):
        out = stack.cli(*args)
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout, args
        assert "\u202e" not in out.stdout, args
        assert shown in out.stdout, (args, out.stdout)
