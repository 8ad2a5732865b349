"""Worker variants for side-by-side benchmarks; never used outside ``bench/``.

``DIALGATE_BENCH_VARIANT`` picks how the dial actor decides whether it may dial:

- ``gate`` (default): dialgate's dial path, unchanged (calling window, do-not-call list,
  gate);
- ``nochecks``: the gate without the calling-window and do-not-call checks;
- ``nogate``: no check at all (the same pipeline with the gate and checks switched off);
- ``naive``: read the campaign's status from the database before each dial (the design
  most job-queue dialers use), no leases, no drain.

Run with ``python -m dramatiq bench.variants --queues <namespace>.dial``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from shared.gate import Claims
from shared.messages import DialArgs
from shared.models import Campaign
from worker.actors import broker, dial, runtime  # noqa: F401  (registers the actor)

VARIANT = os.environ.get("DIALGATE_BENCH_VARIANT", "gate")


def _open(
    campaign_id: int,
    attempt_ids: Sequence[int],
    worker_id: str,
    min_version: int,
    ttl_ms: int,
    probes: Sequence[tuple[str, str]] = (),
    *args: Any,
    **kw: Any,
) -> Claims:
    leases = tuple(f"{a}:{worker_id}:nogate" for a in attempt_ids)
    return Claims("ok", 0, leases, tuple(False for _ in probes))  # no number is listed


def _naive(
    campaign_id: int,
    attempt_ids: Sequence[int],
    worker_id: str,
    min_version: int,
    ttl_ms: int,
    probes: Sequence[tuple[str, str]] = (),
    *args: Any,
    **kw: Any,
) -> Claims:
    with runtime.engine.connect() as conn:
        status = conn.execute(select(Campaign.status).where(Campaign.id == campaign_id)).scalar()
    pipe = runtime.redis.pipeline(transaction=False)
    for key, member in probes:  # the do-not-call lookups, as the gate's claim answers them
        pipe.sismember(key, member)
    members = tuple(bool(x) for x in pipe.execute())
    if status != "running":
        return Claims(str(status), 0, (), members)
    return Claims("ok", 0, tuple(f"{a}:{worker_id}:naive" for a in attempt_ids), members)


def _no_window(args: DialArgs) -> None:
    return None


def _no_dnc(members: tuple[bool, ...] | None) -> None:
    return None


if VARIANT in ("nogate", "nochecks"):
    runtime.checks.calling_window = _no_window  # type: ignore[method-assign]
    runtime.checks.dnc_verdict = _no_dnc  # type: ignore[method-assign]
if VARIANT in ("nogate", "naive"):
    runtime.gate.room = lambda campaign_id, min_version: "ok"  # type: ignore[method-assign]
if VARIANT == "nogate":
    runtime.gate.claim_many = _open  # type: ignore[method-assign]
elif VARIANT == "naive":
    runtime.gate.claim_many = _naive  # type: ignore[method-assign]
