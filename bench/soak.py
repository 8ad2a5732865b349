"""Soak: dialing for ``--minutes`` (30) under random pauses, resumes, worker kills and
Redis restarts; memory of every process over time, and the safety audit at the end.

dialgate runs as users start it, ``dialgate up --workers 3 --threads 4`` on PostgreSQL,
with a Redis of its own (so that it can be restarted) and the simulated provider
(``--latency-ms`` per call). Two campaigns of ``--contacts`` numbers dial at all times (a
new one starts when one completes). Meanwhile, at random:

- every 10-40 s a pause of one campaign, checked (drained, no call after the answer for
  the 1-5 s it is held), then its resume;
- every ``--kill-every`` s (~3 min) one worker process SIGKILLed (the supervisor starts
  it again; its attempts end ``unknown``);
- every ``--redis-every`` s (~5 min) Redis killed and started again empty (every claim
  fails closed until the reconciler has rebuilt the gates).

Every 30 s the resident memory of each process of the stack is sampled (/proc). At the
end no new campaign starts, the last ones complete, and each campaign is audited by
``dialgate check-calls`` (no late call, no double dial) and counted (every contact ends
done, failed or unknown: none lost). Prints a JSON report; ``--out`` also writes it.

    .venv/bin/python -m bench.soak                      # 30 minutes
    .venv/bin/python -m bench.soak --minutes 3 --kill-every 40 --redis-every 70   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.processes import Dialgate
from tests.conftest import _missing
from tests.support.services import PrivateRedis
from tests.support.stack import phones, wait_for

SAMPLE_EVERY_S = 30.0
ROLES = (  # (role, what its command line contains), first match wins
    ("worker process", "-m worker.process"),
    ("workers supervisor", "-m worker"),
    ("control loops", "--role loops"),
    ("control api", "--role api"),
    ("dialgate up", "control.cli up"),
)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def role(cmd: str) -> str | None:
    return next((name for name, mark in ROLES if mark in cmd), None)


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.redis = PrivateRedis(tmp / "redis")
        (tmp / "redis").mkdir()
        self.redis.start()
        self.log = tmp / "calls.jsonl"
        env = {
            "DIALGATE_REDIS_URL": self.redis.url,
            "DIALGATE_SIM_LATENCY_MS": str(args.latency_ms),
            "DIALGATE_SIM_CALL_LOG": str(self.log),
            "DIALGATE_WORKER_TTL": "5",
            "DIALGATE_HEARTBEAT_INTERVAL": "1",
            "DIALGATE_LEASE_TTL_MS": "10000",
            # Calls take --latency-ms: a killed worker's calls (unknown fate) hold their
            # lines a minute, not the default hour.
            "DIALGATE_MAX_CALL_SECONDS": "60",
        }
        self.dg = Dialgate(tmp, workers=3, threads=4, env=env, db="postgres", up=True)
        self.campaigns: list[int] = []
        self.running: list[int] = []
        self.memory: dict[int, dict[str, Any]] = {}  # pid -> {role, samples [(min, MB)]}
        self.counts: dict[str, int] = defaultdict(int)
        self.checked_pauses = 0
        self.calls_while_paused = 0
        self.t0 = time.monotonic()

    def minutes(self) -> float:
        return (time.monotonic() - self.t0) / 60

    def calls(self) -> list[dict[str, Any]]:
        text = self.log.read_text() if self.log.exists() else ""
        return [json.loads(x) for x in text.split("\n")[:-1] if x.strip()]

    def new_campaign(self) -> None:
        n = self.args.contacts
        c = self.dg.api("POST", "/campaigns", json={"name": "soak", "max_concurrency": 6})
        cid = int(c["id"])
        offset = len(self.campaigns) * n  # each campaign its own numbers
        numbers = phones(offset + n)[offset:]
        for i in range(0, n, 10_000):
            rows = [{"phone": p} for p in numbers[i : i + 10_000]]
            self.dg.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})
        self.dg.api("POST", f"/campaigns/{cid}/start", json={})
        self.campaigns.append(cid)
        self.running.append(cid)

    def status(self, cid: int) -> str:
        try:
            return str(self.dg.api("GET", f"/campaigns/{cid}")["status"])
        except Exception:
            return "unknown"

    def refill(self, more: bool) -> None:
        for cid in list(self.running):
            if self.status(cid) in ("completed", "cancelled"):
                self.running.remove(cid)
        while more and len(self.running) < 2:
            self.new_campaign()

    def sample(self) -> None:
        at = round(self.minutes(), 2)
        for pid, cmd in self.dg.processes().items():
            name = role(cmd)
            mb = rss_mb(pid)
            if name is None or mb is None:
                continue
            entry = self.memory.setdefault(pid, {"role": name, "samples": []})
            entry["samples"].append((at, round(mb, 1)))

    def pause(self) -> None:
        cid = self.rng.choice(self.running)
        try:
            p = self.dg.api("POST", f"/campaigns/{cid}/pause", json={})
        except Exception as exc:  # Redis or a process coming back: counted, not fatal
            self.counts["pause_refused"] += 1
            print(f"\n  pause of {cid} refused: {exc}")
            return
        answered = time.time()
        self.counts["pauses"] += 1
        if p["gate"]["drained"]:
            time.sleep(self.rng.uniform(1, 5))
            late = [c for c in self.calls() if c["campaign_id"] == cid and c["t"] > answered]
            self.checked_pauses += 1
            self.calls_while_paused += len(late)
        else:  # Redis away: the pause is recorded, the reconciler closes the gate
            self.counts["pauses_undrained"] += 1
            time.sleep(self.rng.uniform(1, 5))
        self.dg.api("POST", f"/campaigns/{cid}/resume", json={})

    def kill_worker(self) -> None:
        workers = [pid for pid, cmd in self.dg.processes().items() if "-m worker.process" in cmd]
        if workers:
            os.kill(self.rng.choice(workers), signal.SIGKILL)
            self.counts["worker_kills"] += 1

    def restart_redis(self) -> None:
        self.redis.restart()
        self.counts["redis_restarts"] += 1

    def run(self) -> dict[str, Any]:
        args = self.args
        end = self.t0 + args.minutes * 60
        self.refill(more=True)
        wait_for(lambda: len(self.calls()) > 20, 120, "the first calls")
        now = time.monotonic()
        due = {
            "pause": now + self.rng.uniform(10, 40),
            "kill": now + args.kill_every,
            "redis": now + args.redis_every,
            "sample": now,
        }
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= due["sample"]:
                self.sample()
                self.refill(more=True)
                due["sample"] = now + SAMPLE_EVERY_S
                print(
                    f"  {self.minutes():5.1f} min: {len(self.calls())} calls, {dict(self.counts)}",
                    flush=True,
                )
            if now >= due["pause"]:
                self.pause()
                due["pause"] = time.monotonic() + self.rng.uniform(10, 40)
            if now >= due["kill"]:
                self.kill_worker()
                due["kill"] = now + args.kill_every * self.rng.uniform(0.7, 1.3)
            if now >= due["redis"]:
                self.restart_redis()
                due["redis"] = now + args.redis_every * self.rng.uniform(0.8, 1.2)
            time.sleep(0.5)
        self.sample()
        print("  finishing: no new campaign; the last ones complete", flush=True)
        wait_for(lambda: (self.refill(more=False), not self.running)[1], 1800, "the campaigns")
        return self.report()

    def report(self) -> dict[str, Any]:
        calls = self.calls()
        audits, lost, counts = [], 0, defaultdict(int)
        for cid in self.campaigns:
            a = self.dg.cli("check-calls", "--call-log", str(self.log), "--campaign", str(cid))
            audits.append({"campaign": cid, "ok": a.returncode == 0, "out": a.stdout[-300:]})
            c = self.dg.api("GET", f"/campaigns/{cid}")["counts"]
            for k in ("done", "failed", "unknown"):
                counts[k] += int(c[k])
            lost += self.args.contacts - (c["done"] + c["failed"] + c["unknown"])
        per_contact: dict[tuple[int, int], int] = defaultdict(int)
        for call in calls:
            per_contact[(call["campaign_id"], call["contact_id"])] += 1
        return {
            "minutes": self.args.minutes,
            "calls": len(calls),
            "campaigns": len(self.campaigns),
            "contacts": len(self.campaigns) * self.args.contacts,
            "attempts": dict(counts),
            "events": dict(self.counts),
            "pauses_checked": self.checked_pauses,
            "late_calls": self.calls_while_paused,
            "double_dials": sum(1 for n in per_contact.values() if n > 1),
            "lost_contacts": lost,
            "audit_ok": all(a["ok"] for a in audits),
            "audits_failed": [a for a in audits if not a["ok"]],
            "memory": memory_summary(self.memory),
        }

    def close(self) -> None:
        try:
            self.dg.close()
        finally:
            self.redis.kill()


def memory_summary(memory: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per process: its role, how long it was sampled, RSS first / after 5 min / last /
    peak (MB), and the growth from the 5-minute mark to the end (a warm process's drift)."""
    rows = []
    for pid, entry in sorted(memory.items()):
        s = entry["samples"]
        warm = next((mb for at, mb in s if at - s[0][0] >= 5), None)
        rows.append(
            {
                "pid": pid,
                "role": entry["role"],
                "minutes": round(s[-1][0] - s[0][0], 1),
                "first_mb": s[0][1],
                "at_5_min_mb": warm,
                "last_mb": s[-1][1],
                "peak_mb": max(mb for _, mb in s),
                "growth_after_5_min_mb": None if warm is None else round(s[-1][1] - warm, 1),
                "samples": s,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--contacts", type=int, default=5000, help="per campaign")
    ap.add_argument("--latency-ms", type=int, default=100, help="simulated call time")
    ap.add_argument("--kill-every", type=float, default=180, help="s between worker kills")
    ap.add_argument("--redis-every", type=float, default=300, help="s between Redis restarts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    args = ap.parse_args()
    missing = _missing()
    if missing:
        raise SystemExit(f"bench.soak: not reachable: {', '.join(missing)} (see README)")
    tmp = Path(tempfile.mkdtemp(prefix="dialgate-soak-"))
    print(f"soak: {args.minutes} min, logs in {tmp}", flush=True)
    soak = Soak(args, tmp)
    try:
        result = soak.run()
    finally:
        soak.close()
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
