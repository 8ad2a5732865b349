"""``/metrics`` of the control service and of a worker, scraped after real dials, a
concurrency denial, an undrained pause and a gate the reconciler had to repair."""

from __future__ import annotations

from tests.support.stack import wait_for


def test_metrics_count_real_dials_denials_a_pause_and_a_repair(make_stack):
    stack = make_stack(sim_latency_ms=20).start()
    hold = stack.tmp / "hold"
    hold.touch()  # the first granted dial waits just before the provider places it
    # Two dramatiq processes behind one /metrics: their samples are summed.
    worker = stack.start_worker(processes=2, threads=2)
    stack.wait_workers(2)
    # The API process's counters live as long as the process (here: the test run's).
    base = stack.control_metrics()

    def grew(m: dict[str, float], name: str) -> float:
        return m.get(name, 0) - base.get(name, 0)

    cid = stack.make_campaign(contacts=20, max_concurrency=1)

    # The held dial keeps the only slot: the other threads' claims find the gate full.
    wait_for(
        lambda: stack.worker_metrics(worker).get(
            'dialgate_dials_denied_total{reason="concurrency"}'
        ),
        20,
        "a concurrency denial",
    )
    paused = stack.api("POST", f"/campaigns/{cid}/pause?drain_timeout=0.3", json={})
    assert paused["gate"]["drained"] is False  # the held call still holds its lease
    hold.unlink()
    wait_for(lambda: stack.campaign(cid)["inflight"] == 0, 20, "the held call to end")
    calls = len([c for c in stack.calls() if c["campaign_id"] == cid])
    assert calls >= 1

    w = wait_for(
        lambda: (m := stack.worker_metrics(worker))["dialgate_dials_placed_total"] == calls and m,
        10,
        "placed dials to match the call log",
    )
    denied = sum(v for k, v in w.items() if k.startswith("dialgate_dials_denied_total"))
    assert w["dialgate_gate_check_seconds_count"] >= calls + denied
    assert w["dialgate_propagation_seconds_count"] >= 4  # start and pause, to each process
    wait_for(
        lambda: stack.worker_metrics(worker)["dialgate_worker_dials_in_flight"] == 0,
        10,
        "the worker to report nothing in flight",
    )

    c = wait_for(
        lambda: (
            (m := stack.control_metrics())["dialgate_outbox_backlog"] == 0
            and m["dialgate_propagation_lag_seconds"] == 0
            and m
        ),
        20,
        "the outbox to drain and the worker to acknowledge the pause",
    )
    assert grew(c, 'dialgate_transitions_total{action="start"}') == 1
    assert grew(c, 'dialgate_transitions_total{action="pause"}') == 1
    assert grew(c, 'dialgate_transition_seconds_count{action="pause"}') == 1
    assert grew(c, 'dialgate_transition_seconds_sum{action="pause"}') >= 0.3  # its drain
    assert grew(c, 'dialgate_drain_seconds_count{action="pause"}') == 1
    assert grew(c, 'dialgate_undrained_total{action="pause"}') == 1
    assert c['dialgate_campaigns{status="paused"}'] == 1
    assert c["dialgate_live_workers"] == 2
    assert c["dialgate_leases_in_flight"] == 0
    assert c["dialgate_gates_behind_database"] == 0
    assert c["dialgate_outbox_oldest_seconds"] == 0
    assert c["dialgate_outbox_published_total"] >= 2
    assert c["dialgate_emergency_stop"] == 0
    assert c["dialgate_dial_queue_messages"] >= 0
    for service in ("database", "redis", "rabbitmq"):
        assert c[f'dialgate_backend_up{{service="{service}"}}'] == 1

    # Redis loses the gate: the scrape sees it behind, then the reconciler repairs it.
    before = c["dialgate_reconciler_repairs_total"]
    stack.redis.delete(stack.keys.gate(cid))
    wait_for(
        lambda: (
            (m := stack.control_metrics())["dialgate_reconciler_repairs_total"] > before
            and m["dialgate_gates_behind_database"] == 0
        ),
        20,
        "the reconciler to repair the gate",
    )

    stack.api("POST", "/emergency-stop", json={"reason": "metrics test"})
    c = stack.control_metrics()
    assert c["dialgate_emergency_stop"] == 1
    assert grew(c, 'dialgate_drain_seconds_count{action="estop"}') == 1
    stack.api("DELETE", "/emergency-stop", json={})
    assert stack.control_metrics()["dialgate_emergency_stop"] == 0
