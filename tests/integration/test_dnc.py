"""The do-not-call list: checked at dial time for every attempt, kept in Redis, fail closed."""

from __future__ import annotations

from shared.dnc import DncSet
from tests.support.stack import TestStack, phones, wait_for


def is_listed(stack: TestStack, dnc: DncSet, phone: str) -> bool | None:
    """The dial path's do-not-call check: its probes answered, then judged."""
    pipe = stack.redis.pipeline(transaction=False)
    for key, member in dnc.probes("default", phone):
        pipe.sismember(key, member)
    return dnc.verdict(tuple(bool(x) for x in pipe.execute()))


def test_a_number_listed_while_its_contact_is_queued_is_never_dialed(make_stack):
    stack: TestStack = make_stack().start()
    cid = stack.make_campaign(contacts=6, max_concurrency=3)  # no worker yet
    wait_for(lambda: stack.campaign(cid)["counts"]["queued"] == 6, 15, "6 queued attempts")
    listed = phones(6)[:2]
    added = stack.api("POST", "/dnc", json={"phones": [*listed, listed[0]], "actor": "ops"})
    assert added == {"added": 2, "already_listed": 0}

    stack.start_worker()
    done = stack.wait_status(cid, "completed", timeout=60)
    assert done["counts"]["blocked_dnc"] == 2 and done["counts"]["done"] == 4
    dialed = {c["phone"] for c in stack.calls()}
    assert dialed == set(phones(6)[2:])
    assert stack.check_calls({cid}).ok  # blocked contacts are accounted for, not lost

    entries = stack.api("GET", "/dnc")["phones"]
    assert [e["phone"] for e in entries] == sorted(listed) and entries[0][
        "actor"
    ] == "admin-token (ops)"
    assert stack.api("DELETE", f"/dnc/{listed[0]}") == {"removed": listed[0]}
    assert stack.api("DELETE", f"/dnc/{listed[0]}", expect=404)["error"]["code"] == "not_found"
    assert [e["phone"] for e in stack.api("GET", "/dnc")["phones"]] == [listed[1]]


def test_bad_numbers_are_refused_naming_the_entry_and_nothing_is_added(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    err = stack.api("POST", "/dnc", expect=422, json={"phones": ["+33612345678", "12"]})["error"]
    assert err["message"].startswith("phones[1]: ")
    assert stack.api("POST", "/dnc", expect=422, json={"phones": []})["error"][
        "message"
    ].startswith("phones")
    assert stack.api("GET", "/dnc")["phones"] == []


def test_a_lost_dnc_set_denies_every_check_until_it_is_rebuilt_from_the_table(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    assert stack.stack is not None
    dnc = stack.stack.control.dnc
    assert dnc.reconcile() == 0  # an empty list is built too (its ready marker)
    stack.api("POST", "/dnc", json={"phones": ["+33612345678"]})
    assert is_listed(stack, dnc.set, "+33612345678") is True
    assert is_listed(stack, dnc.set, "+33612345679") is False

    stack.redis.delete(stack.keys.dnc("default"))  # Redis lost it (restart, flush)
    assert is_listed(stack, dnc.set, "+33612345679") is None  # unknown: the dial is denied
    assert dnc.reconcile() == 1
    assert is_listed(stack, dnc.set, "+33612345678") is True
    assert dnc.reconcile() is None  # in sync: nothing to do
