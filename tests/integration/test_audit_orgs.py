"""Audit events are filed under the organisation of the campaign they concern, whoever
acts on it: a platform admin of ``default``, the monitor, the feeder, the cap lifter."""

from __future__ import annotations

from typing import Any

import psycopg

from shared.states import Action, Source
from tests.support.stack import TestStack, phones


def _token(stack: TestStack, org: str) -> dict[str, str]:
    body = {"name": f"{org}-admin", "role": "admin", "org": org}
    secret = stack.api("POST", "/tokens", expect=201, json=body)["token"]
    return {"Authorization": f"Bearer {secret}"}


def _events(stack: TestStack, headers: dict[str, str]) -> list[dict[str, Any]]:
    resp = stack.http.get("/api/v1/audit", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["events"])


def test_transitions_by_a_platform_admin_and_the_loops_are_in_the_campaigns_own_audit_trail(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    assert stack.stack is not None
    acme, default = _token(stack, "acme"), _token(stack, "default")  # neither is platform

    def campaign(contacts: int) -> int:
        r = stack.http.post("/api/v1/campaigns", json={"name": "acme"}, headers=acme)
        cid = int(r.json()["id"])
        rows = {"contacts": [{"phone": p} for p in phones(contacts)]}
        stack.http.post(f"/api/v1/campaigns/{cid}/contacts", json=rows, headers=acme)
        assert stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=acme).status_code == 200
        return cid

    capped, finished = campaign(1), campaign(1)
    # The platform admin (organisation default) pauses and resumes with a cap.
    stack.act(capped, "pause", reason="platform says stop")
    stack.act(capped, "resume", max_concurrency=1, for_minutes=5)
    with psycopg.connect(stack.settings.database_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "UPDATE campaigns SET cap_until = now() - interval '1 second' WHERE id = %s",
            (capped,),
        )
        conn.execute("UPDATE contacts SET state = 'done' WHERE campaign_id = %s", (finished,))
    assert stack.stack.cap_lifter.step() == 1  # lift_cap, by the cap lifter
    # The monitor pauses as it does (no caller: a system actor).
    stack.stack.control.transition(
        capped, Action.PAUSE, actor="monitor:failure_ratio", source=Source.SYSTEM, reason="25%"
    )
    stack.stack.feeder.step()  # nothing left to dial in the other: the feeder completes it
    assert stack.campaign(finished)["status"] == "completed"

    ours = {(e["target"], e["kind"]): e for e in _events(stack, acme)}
    for kind in ("pause", "resume", "lift_cap"):
        assert (f"campaign:{capped}", f"campaign.{kind}") in ours, (kind, sorted(ours))
    assert ours[(f"campaign:{finished}", "campaign.complete")]["org"] == "acme"
    pauses = [e for e in _events(stack, acme) if e["kind"] == "campaign.pause"]
    assert [p["details"]["reason"] for p in pauses] == ["25%", "platform says stop"]
    assert {p["actor"] for p in pauses} == {"system", "admin-token"}

    theirs = {e["target"] for e in _events(stack, default)}
    assert not theirs & {f"campaign:{capped}", f"campaign:{finished}"}, theirs
