"""Redis restarted empty, flushed, and hung (``kill -STOP``) while a campaign dials."""

from __future__ import annotations

import time

from tests.faults.conftest import Run
from tests.support.stack import wait_for


def _gate_is(run: Run, status: str) -> bool:
    assert run.stack.stack is not None
    try:
        g = run.stack.stack.control.gate.read(run.cid)
    except Exception:
        return False  # Redis still coming back
    return g is not None and g.status == status


def test_redis_restarted_empty_and_flushed_keeps_a_paused_campaign_paused_and_loses_nothing(
    fresh, private_redis
):
    run = Run.start(fresh(redis_url=private_redis.url), contacts=300)

    # 1. restarted with its data gone while dialing: dialing starts again once rebuilt
    private_redis.restart()
    run.faults += 1
    run.recovered(time.time())

    # 2. paused, then restarted empty, then FLUSHALL: the rebuilt gate says paused
    paused = run.act("pause")
    assert paused["gate"]["drained"] is True
    for fault in (private_redis.restart, run.stack.redis.flushall):
        fault()
        run.faults += 1
        wait_for(lambda: _gate_is(run, "paused"), 30, "the reconciler to rebuild the gate")
    assert run.stack.campaign(run.cid)["status"] == "paused"
    resumed = time.time()
    run.act("resume")
    run.recovered(resumed)

    # 3. FLUSHALL while dialing
    run.stack.redis.flushall()
    run.faults += 1
    run.recovered(time.time())
    run.finish("redis restarted empty and FLUSHALL, while dialing and while paused")


def test_redis_hung_longer_than_the_client_timeout_fails_closed_then_dialing_resumes(
    fresh, private_redis
):
    run = Run.start(fresh(redis_url=private_redis.url), contacts=300)
    timeout = run.stack.settings.redis_timeout
    with private_redis.hung():
        run.faults += 1
        hung = time.time()
        assert run.ready()["redis"] is False
        time.sleep(max(0.0, hung + 4 * timeout - time.time()))  # the fault lasts 4 timeouts
        # a claim answered before the hang may still place its call; after one client
        # timeout every claim has failed closed
        blind = run.calls_after(hung + timeout)
    assert blind == [], f"{len(blind)} calls while Redis was hung"
    run.recovered(time.time())
    run.wait_ready()
    run.finish("redis hung (kill -STOP) for 4 client timeouts")
