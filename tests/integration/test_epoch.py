"""A database recreated under the same namespace: old gates and old dial messages are
recognised as foreign, never obeyed."""

from __future__ import annotations

from tests.integration.test_pause_path import assert_each_contact_dialed_once
from tests.support.stack import wait_for


def test_a_recreated_database_dials_again_and_drops_the_old_databases_dial_messages(
    make_stack,
):
    old = make_stack().start()
    cid = old.make_campaign(contacts=5, max_concurrency=5)
    old.act(cid, "pause")
    old.act(cid, "resume")  # the old gate reaches version 3
    wait_for(lambda: old.campaign(cid)["counts"]["queued"] == 5, 10, "5 queued dial messages")
    old.stop_loops_process()  # the old stack goes away, its messages stay in the queue

    new = make_stack(namespace=old.namespace).start()  # same namespace, a fresh database
    new_cid = new.make_campaign(contacts=3, max_concurrency=2)
    assert new_cid == cid
    assert new.redis.hget(new.keys.gate(cid), "version") == "1"
    new.start_worker()
    done = new.wait_status(cid, "completed", timeout=60)
    assert done["counts"]["done"] == 3
    assert_each_contact_dialed_once(new, cid, 3)
    wait_for(
        lambda: (
            (new.tmp / "worker-0.log").read_text().count("dial_message_of_another_database_dropped")
            == 5
        ),
        10,
        "the 5 old messages to be dropped",
    )
