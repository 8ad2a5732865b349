"""Stopping and restarting the machine's real services, always restored in ``finally``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def _run(*cmd: str, timeout: float = 120) -> None:
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)


@contextmanager
def rabbitmq_app_stopped() -> Iterator[None]:
    """RabbitMQ's application stopped (every connection dropped), then started again."""
    _run("rabbitmqctl", "stop_app")
    try:
        yield
    finally:
        _run("rabbitmqctl", "start_app")
        _run("rabbitmqctl", "await_startup", timeout=120)
