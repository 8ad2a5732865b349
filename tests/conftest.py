"""Test set-up shared by every suite.

Integration tests run against the real PostgreSQL, Redis and RabbitMQ of the machine
(``DIALGATE_TEST_PG_URL``, ``DIALGATE_TEST_REDIS_URL``, ``DIALGATE_TEST_AMQP_URL``).
A missing service skips those tests locally and fails them when ``CI`` is set
(like dramatiq's own ``conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.services import (
        PrivateRabbitMQ,
        PrivateRedis,
        PrivateRedisCluster,
        PrivateSentinel,
    )
    from tests.support.stack import TestStack

PG_URL = os.environ.get("DIALGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DIALGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Set, every stack of the suite (but those with a Redis of their own) runs on that cluster.
REDIS_CLUSTER_NODES = os.environ.get("DIALGATE_TEST_REDIS_CLUSTER_NODES")
AMQP_URL = os.environ.get("DIALGATE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

START = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": 'redis-server --daemonize yes --port 6379 --save ""',
    "rabbitmq": "rabbitmq-server -detached",
}


def _missing() -> list[str]:
    import pika
    import psycopg
    import redis

    missing = []
    try:
        psycopg.connect(PG_URL.replace("+psycopg", ""), connect_timeout=3).close()
    except Exception:
        missing.append("postgres")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except Exception:
        missing.append("redis")
    try:
        params = pika.URLParameters(AMQP_URL)
        params.socket_timeout = 3
        pika.BlockingConnection(params).close()
    except Exception:
        missing.append("rabbitmq")
    return missing


@pytest.fixture(scope="session")
def services() -> None:
    missing = _missing()
    if missing:
        how = "; ".join(f"{m}: `{START[m]}`" for m in missing)
        message = f"services not reachable: {', '.join(missing)} (start them: {how})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def make_stack(services: None, tmp_path: Path) -> Iterator[type[TestStack]]:
    from tests.support.stack import TestStack

    made: list[TestStack] = []

    def factory(db: str = "postgres", **overrides: object) -> TestStack:
        stack = TestStack(tmp_path / f"s{len(made)}", db, **overrides)
        made.append(stack)
        return stack

    (tmp_path / "s0").mkdir()
    for i in range(1, 4):
        (tmp_path / f"s{i}").mkdir()
    yield factory  # type: ignore[misc]
    for stack in made:
        stack.close()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A Redis of this test session's own, which tests may kill, hang or flush."""
    from tests.support.services import PrivateRedis

    server = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedisCluster]:
    """A 3-master Redis Cluster of this test session's own (tests may kill its nodes)."""
    from tests.support.services import PrivateRedisCluster

    cluster = PrivateRedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.kill()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[PrivateSentinel]:
    """A Redis master, its replica and a Sentinel of this test's own (it may fail over)."""
    from tests.support.services import PrivateSentinel

    (tmp_path / "sentinel").mkdir()
    sentinel = PrivateSentinel(tmp_path / "sentinel")
    try:
        yield sentinel.start()
    finally:
        sentinel.kill()


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_engine(request: pytest.FixtureRequest) -> dict[str, str]:
    """Stack settings for one Redis node (the shared one) or for the session's cluster: a
    test that takes this fixture runs on both."""
    if request.param == "redis":
        return {}
    cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
    return {"redis_cluster_nodes": cluster.startup_nodes}


@pytest.fixture(scope="session")
def private_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this test session's own, which tests may kill or blackhole."""
    from tests.support.services import PrivateRabbitMQ

    node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    try:
        yield node
    finally:
        node.kill()
