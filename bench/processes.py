"""dialgate as users start it, for the benchmarks: ``dialgate up``, or ``dialgate control``
and ``dialgate worker`` as separate processes; and the CPU each component used (/proc).

Each :class:`Dialgate` has its own namespace and database (a fresh PostgreSQL database, or
an SQLite file, ``dialgate up``'s default), and is stopped (by PID) and dropped on close.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.stack import ROOT, create_database, drop_database, free_port, wait_for

COMPONENTS = (  # (component, what its command line contains), first match wins
    ("workers", " worker"),
    ("workers", "dramatiq"),
    ("control loops", "--role loops"),
    ("control api", "control.cli "),
    ("postgresql", "postgres"),
    ("rabbitmq", "beam.smp"),
    ("redis", "redis-server"),
    ("sipp (far end)", "/usr/bin/sipp"),
    ("bullmq (node)", "node "),
)


def cpu_seconds(own: str | None = None) -> dict[str, float]:
    """CPU time (user + system) used so far by each component's processes, from /proc;
    with ``own``, this process's under that name (a benchmark serving the API itself)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys([c for c, _ in COMPONENTS] + ([own] if own else []), 0.0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if own and int(proc.name) == os.getpid():
            used[own] += seconds
            continue
        for component, mark in COMPONENTS:
            if mark in cmd:
                used[component] += seconds
                break
    return used


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))]


class Dialgate:
    """dialgate in child processes: ``dialgate up --workers N`` (``up=True``, as the README
    tells users), or ``dialgate control`` + ``dialgate worker --processes N``."""

    def __init__(
        self,
        tmp: Path,
        workers: int,
        threads: int,
        env: dict[str, str],
        db: str = "postgres",
        up: bool = False,
    ) -> None:
        self.namespace = "b" + uuid.uuid4().hex[:10]
        self.pg_db: str | None = None
        if db == "postgres":
            self.pg_db = f"dg_{self.namespace}"
            url = create_database(self.pg_db)
        else:
            url = f"sqlite:///{tmp / 'dialgate.db'}"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        token = "dg_bench_" + uuid.uuid4().hex
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DIALGATE_")},
            "DIALGATE_DATABASE_URL": url,
            "DIALGATE_NAMESPACE": self.namespace,
            "DIALGATE_HTTP_PORT": str(port),
            "DIALGATE_URL": self.url,
            "DIALGATE_ADMIN_TOKEN": token,
            "DIALGATE_TOKEN": token,
            "DIALGATE_LOG_LEVEL": "WARNING",
            "DIALGATE_WORKER_METRICS_PORT": "0",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        exe = [sys.executable, "-m", "control.cli"]
        if up:
            cmd = [*exe, "up", "--workers", str(workers), "--threads", str(threads)]
            self._start("up", cmd)
        else:
            subprocess.run([*exe, "migrate"], env=self.env, check=True, capture_output=True)
            self._start("control", [*exe, "control"])
        self.http = httpx.Client(
            base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        wait_for(self._ready, 60, "the control service")
        if not up:
            cmd = [*exe, "worker", "--processes", str(workers), "--threads", str(threads)]
            self._start("workers", cmd)
        wait_for(lambda: len(self.api("GET", "/workers")["workers"]) >= workers, 60, "workers")

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(
                cmd,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        r.raise_for_status()
        return r.json()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "control.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def processes(self) -> dict[int, str]:
        """This stack's processes (their environment names its namespace): pid -> command."""
        found = {}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                env = (p / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if f"DIALGATE_NAMESPACE={self.namespace}" in env:
                found[int(p.name)] = cmd
        return found

    def profile(self, seconds: float) -> list[tuple[subprocess.Popen[bytes], Path]]:
        """py-spy (``pip install py-spy``) records one worker process, the API process and
        the control loops for ``seconds`` (collapsed stacks in ``profile-worker.txt``,
        ``profile-api.txt``, ``profile-loops.txt``)."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            raise SystemExit(f"--profile needs py-spy: {spy.with_name('pip')} install py-spy")
        started = []
        for name, mark in (
            ("worker", "-m worker"),
            ("api", "control.cli control"),
            ("loops", "--role loops"),
        ):
            pids = [
                pid
                for pid, cmd in self.processes().items()
                if mark in cmd and (name == "loops" or "--role loops" not in cmd)
            ]
            if not pids:
                continue
            out = self.tmp / f"profile-{name}.txt"
            cmd = [str(spy), "record", "-p", str(max(pids)), "-d", str(int(seconds)), "-r", "50"]
            cmd += ["-f", "raw", "-o", str(out), "--nonblocking"]
            quiet = subprocess.DEVNULL
            started.append((subprocess.Popen(cmd, stdout=quiet, stderr=quiet), out))
        return started

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        if self.pg_db is not None:
            drop_database(self.pg_db)
