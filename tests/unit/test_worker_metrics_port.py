"""A worker whose metrics port is taken says which setting to change, and starts nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_whose_metrics_port_is_taken_exits_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DIALGATE_WORKER_METRICS_HOST": "127.0.0.1",
            "DIALGATE_WORKER_METRICS_PORT": str(port),
            "PYTHONPATH": str(ROOT),
        }
        out = subprocess.run(
            [sys.executable, "-m", "worker"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2
    assert "DIALGATE_WORKER_METRICS_PORT" in out.stderr and str(port) in out.stderr
