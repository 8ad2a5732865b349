"""A node of a Redis Cluster killed, brought back empty, and hung, while a campaign dials.

The cluster is the session's own (3 masters, no replicas, ``tests/support/services.py``);
the node broken is the one serving the campaign's gate. Without replicas the cluster stops
serving every slot once the node is marked failed, so every claim fails closed; when the
node is back its slots are served again, empty, and nothing dials until the reconciler
has rewritten the gates.
"""

from __future__ import annotations

import time

from tests.faults.conftest import Run
from tests.faults.test_redis import _gate_is
from tests.support.stack import wait_for


def test_a_cluster_node_killed_fails_closed_until_it_is_back_and_the_gates_are_rewritten(
    fresh, redis_cluster
):
    run = Run.start(fresh(redis_cluster_nodes=redis_cluster.startup_nodes), contacts=300)
    node = redis_cluster.node_of(run.stack.keys.gate(run.cid))
    timeout = run.stack.settings.redis_timeout
    try:
        # 1. killed while dialing, back empty with the reconciler stopped: still nothing
        node.kill()
        run.faults += 1
        killed = time.time()
        time.sleep(4 * timeout)
        run.stack.stop_loops_process()
        node.start()
        redis_cluster.wait_ok()
        time.sleep(1.0)  # its slots are served again, and hold no gate
        blind = run.calls_after(killed + timeout)
        assert blind == [], f"{len(blind)} calls without the gate's node or its gate"
        rewriting = time.time()
        run.stack.start_loops_process()
        run.recovered(rewriting)

        # 2. paused; the node killed; a resume while it is away; back empty
        paused = run.act("pause")
        assert paused["gate"]["drained"] is True
        answered = time.time()
        node.kill()
        run.faults += 1
        resumed = run.act("resume")  # recorded; the gate cannot be written now
        assert resumed["status"] == "running" and resumed["gate"]["written"] is False, resumed
        time.sleep(4 * timeout)
        assert run.calls_after(answered) == [], "a call while the gate's node was away"
        back = time.time()
        node.start()
        run.recovered(back)
        assert _gate_is(run, "running")

        # 3. hung (kill -STOP) for 4 client timeouts while dialing
        with node.hung():
            run.faults += 1
            hung = time.time()
            time.sleep(4 * timeout)
            blind = run.calls_after(hung + timeout)
        assert blind == [], f"{len(blind)} calls while the gate's node was hung"
        run.recovered(time.time())
    finally:
        if node.proc is None or node.proc.poll() is not None:
            node.start()
        wait_for(lambda: redis_cluster.serves(node), 60, "the cluster node back")
        redis_cluster.wait_ok()
    result = run.finish("redis cluster: the gate's node killed twice (once paused) and hung")
    assert result["doubled"] == result["late"] == result["lost"] == 0
