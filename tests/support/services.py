"""Private Redis and RabbitMQ instances that a test may break (never the shared ones).

Each one runs on free ports with its data under a temporary directory, is started by the
test session and stopped at its end. Faults are signals to processes started here, by
PID: ``kill -9`` then a fresh start (Redis comes back empty, RabbitMQ with its durable
queues), ``kill -STOP``/``-CONT`` (a hung or blackholed server: the TCP port stays open and
nothing answers). The machine has no ``iptables``, and a stopped process is the same
blackhole seen from the clients: no RST, no FIN, only silence.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import redis

from tests.support.stack import free_port, wait_for


class PrivateRedis:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = extra  # more redis-server options (a cluster node's)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--dir", str(self.tmp), *self.extra]
        self.proc = subprocess.Popen(
            cmd,
            stdout=open(self.tmp / "redis.log", "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        wait_for(lambda: _answers(client.ping), 30, f"private Redis on port {self.port}")
        client.close()
        return self

    def kill(self) -> None:
        """``kill -9``: everything Redis held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    @contextmanager
    def hung(self) -> Iterator[None]:
        """``kill -STOP`` for the block, ``kill -CONT`` after (in ``finally``)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)


class PrivateRedisCluster:
    """A Redis Cluster of its own: ``masters`` nodes on free loopback ports, no replicas
    (``redis-cli --cluster create``). A node killed and started again keeps its place and
    its slots (its ``nodes.conf`` stays) and comes back empty."""

    def __init__(self, tmp: Path, masters: int = 3) -> None:
        self.nodes = []
        for i in range(masters):
            (tmp / f"n{i}").mkdir()
            options = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
            options += ("--cluster-port", str(free_port()))  # not port + 10000: may not exist
            self.nodes.append(PrivateRedis(tmp / f"n{i}", *options))

    @property
    def startup_nodes(self) -> str:
        """What ``DIALGATE_REDIS_CLUSTER_NODES`` says."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> PrivateRedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"],
            input=b"yes\n",
            capture_output=True,
            timeout=60,
            check=True,
        )
        self.wait_ok()
        return self

    def state(self, node: PrivateRedis) -> str:
        client = redis.Redis(port=node.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return str(client.cluster("INFO")["cluster_state"])
        finally:
            client.close()

    def serves(self, node: PrivateRedis) -> bool:
        """The node answers and says every slot is served."""
        try:
            return self.state(node) == "ok"
        except redis.RedisError:
            return False

    def wait_ok(self, timeout: float = 60) -> None:
        """Every node says ``cluster_state:ok`` (every slot served)."""
        wait_for(
            lambda: all(self.serves(n) for n in self.nodes),
            timeout,
            "the Redis Cluster to serve every slot",
            every=0.2,
        )

    def node_of(self, key: str) -> PrivateRedis:
        """The node serving ``key``'s slot."""
        client = redis.Redis(port=self.nodes[0].port, socket_timeout=1)
        try:
            slot = int(client.cluster("KEYSLOT", key))
            for start, end, primary, *_ in client.cluster("SLOTS"):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(primary[1]))
        finally:
            client.close()
        raise LookupError(f"no node serves {key!r}")

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


class PrivateSentinel:
    """A Redis master, its replica and one Sentinel watching them (quorum 1, a master
    silent for 1 s is down): a failover promotes the replica within seconds."""

    MASTER = "dialgate"

    def __init__(self, tmp: Path) -> None:
        for name in ("master", "replica", "sentinel"):
            (tmp / name).mkdir()
        self.master = PrivateRedis(tmp / "master")
        self.replica = PrivateRedis(
            tmp / "replica", "--replicaof", "127.0.0.1", str(self.master.port)
        )
        self.tmp = tmp / "sentinel"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def sentinels(self) -> str:
        """What ``DIALGATE_REDIS_SENTINELS`` says."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> PrivateSentinel:
        self.master.start()
        self.replica.start()
        conf = self.tmp / "sentinel.conf"  # Sentinel rewrites it: a fresh one each start
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.tmp}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
            f"sentinel failover-timeout {self.MASTER} 5000\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=open(self.tmp / "sentinel.log", "ab"),  # noqa: SIM115 - closed with it
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.replicated(), 30, "the replica in sync, seen by the Sentinel")
        return self

    def _ask(self, *command: str) -> object:
        client = redis.Redis(port=self.port, socket_timeout=1, decode_responses=True)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def replicated(self) -> bool:
        try:
            replicas = self._ask("SENTINEL", "REPLICAS", self.MASTER)
        except redis.RedisError:
            return False
        return isinstance(replicas, list) and len(replicas) == 1

    def master_port(self) -> int:
        """The port of the master the Sentinel names now."""
        _, port = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)  # type: ignore[misc]
        return int(port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.master.kill()
        self.replica.kill()


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (name, ports, Mnesia, logs, no plugins)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.node = f"dg{os.getpid()}x{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.proc: subprocess.Popen[bytes] | None = None
        (tmp / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (tmp / "enabled_plugins").write_text("")
        (tmp / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(tmp),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
            "RABBITMQ_LOG_BASE": str(tmp / "log"),
            "RABBITMQ_PID_FILE": str(tmp / "beam.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> PrivateRabbitMQ:
        (self.tmp / "beam.pid").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
            env=self.env,
            stdout=open(self.tmp / "rabbitmq.out", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        params = pika.URLParameters(self.url)
        params.socket_timeout = 2
        wait_for(
            lambda: _answers(lambda: pika.BlockingConnection(params).close()),
            120,
            f"private RabbitMQ node {self.node}",
            every=0.3,
        )
        return self

    def beam_pid(self) -> int:
        return int((self.tmp / "beam.pid").read_text().strip())

    def kill(self) -> None:
        """``kill -9`` of the node's Erlang VM (every connection drops at once)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.beam_pid(), signal.SIGKILL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The node killed for the block, started again after (in ``finally``)."""
        self.kill()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def blackholed(self) -> Iterator[None]:
        """``kill -STOP`` of the node: connections stay open and nothing answers."""
        pid = self.beam_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


def _answers(call: Callable[[], object]) -> bool:
    try:
        call()
    except Exception:
        return False
    return True
