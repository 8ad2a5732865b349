"""Settings, read from ``DIALGATE_*`` environment variables (pydantic-settings).

Build one :class:`Settings` in ``main()`` and pass it down; tests build their own.

Secrets never show: the tokens and the control key are :class:`~pydantic.SecretStr`
(``**********`` in a repr or a log; :meth:`Settings.secret` gives the value to the code
that uses it), a refused value is not echoed in the validation error, and the URLs, which may
carry passwords, are printed only through :func:`mask_url`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import MAX_BATCH

MASK = "***"
URLS = ("database_url", "redis_url", "amqp_url", "url")
SecretName = Literal[
    "admin_token", "token", "control_key", "sip_password", "twilio_auth_token", "redis_password"
]
# scheme://user:password@rest; the last "@" ends the credentials (a password may hold one).
_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@(?P<rest>.*)$")
_PASSWORD_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pass|pwd)=)[^&;#]*")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``postgresql://user:***@host/db``), also
    a ``password=`` query parameter; the user name, host and path stay, to say which service
    is meant. A URL without credentials comes back unchanged."""
    m = _CREDENTIALS.match(url)
    if m is not None and ":" in m["userinfo"]:
        user = m["userinfo"].split(":", 1)[0]
        url = f"{m['scheme']}{user}:{MASK}@{m['rest']}"
    return _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", url)


def sim_weights(spec: str) -> dict[str, float]:
    """``answered=0.7,busy=0.1`` as weights by disposition (the simulated provider's mix)."""
    names = ("answered", "busy", "no_answer", "declined", "failed", "machine")
    weights: dict[str, float] = {}
    for entry in (e.strip() for e in spec.split(",")):
        name, _, weight = entry.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if name.strip() not in names or value < 0:
            raise ValueError(
                f"{entry!r}: give disposition=weight pairs separated by commas, dispositions "
                f"among {', '.join(names)}, weights ≥ 0"
            )
        weights[name.strip()] = value
    if not sum(weights.values()) > 0:
        raise ValueError("the weights must not all be 0")
    return weights


def host_ports(spec: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as (host, port) pairs (a Redis Cluster's or Sentinels')."""
    pairs = []
    for entry in (e.strip() for e in spec.split(",")):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"{entry!r} is not host:port; give host:port pairs separated by commas, "
                "e.g. 10.0.0.1:7000,10.0.0.2:7000"
            )
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def _at_least(n: int) -> AfterValidator:
    def check(secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < n:
            raise ValueError(f"should have at least {n} characters")
        return secret

    return AfterValidator(check)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused secret (a too-short token) is never echoed back.
    model_config = SettingsConfigDict(
        env_prefix="DIALGATE_", extra="ignore", hide_input_in_errors=True
    )

    # The URLs may carry passwords: print them only through mask_url().
    database_url: str = Field(
        default="sqlite:///dialgate.db",
        description="SQLAlchemy URL of the database, the source of truth.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis for gates (one node; not used with a cluster or Sentinels).",
    )
    redis_cluster_nodes: str | None = Field(
        default=None,
        description="host:port,host:port,... start-up nodes of a Redis Cluster: when set, "
        "every process uses redis-py's cluster client on them instead of redis_url.",
    )
    redis_sentinels: str | None = Field(
        default=None,
        description="host:port,... of Redis Sentinels: with redis_sentinel_master, every "
        "process asks them for the master (and follows a failover) instead of redis_url.",
    )
    redis_sentinel_master: str | None = Field(
        default=None, description="The master's name the Sentinels monitor."
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="Password of the Redis nodes of a cluster or of a Sentinel master "
        "(redis_url carries its own).",
    )
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/%2F", description="RabbitMQ.")
    namespace: str = Field(
        default="dialgate",
        pattern=r"^[a-z][a-z0-9_-]{0,39}$",
        description="Prefix of every Redis key, exchange and queue.",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    url: str = Field(default="http://127.0.0.1:8000", description="Control API, for the CLI.")
    log_level: str = "INFO"
    log_json: bool | None = Field(default=None, description="JSON logs; default: when not a tty.")

    # Authentication (see docs/security.md).
    admin_token: Annotated[SecretStr, _at_least(24)] | None = Field(
        default=None,
        description="Accepted as a platform admin of the default organisation (automation, "
        "first start). Keep it secret; `dialgate up` makes one when unset.",
    )
    token: SecretStr | None = Field(default=None, description="The CLI's API token.")
    session_hours: float = Field(default=12.0, gt=0, description="Web sign-in lifetime.")
    cookie_secure: bool = Field(
        default=True,
        description="Mark the session cookies Secure: sent over HTTPS only (browsers also "
        "keep them on http://localhost); false only to sign in over plain HTTP elsewhere.",
    )
    auth_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Failed token checks per client address or credential a minute, then 429 "
        "(a valid token is never refused).",
    )
    trusted_proxies: str | None = Field(
        default=None,
        description="Comma-separated addresses or networks (CIDR) of the reverse proxies in "
        "front of the API: only a direct peer in this list may name the client with "
        "X-Forwarded-For; unset, no one may, and the client is the TCP peer.",
    )
    control_key: Annotated[SecretStr, _at_least(16)] | None = Field(
        default=None,
        description="Shared secret: the relay signs control events with it and workers drop "
        "events without a valid signature. Set the same value on control and workers.",
    )
    max_streams_per_caller: int = Field(
        default=4,
        ge=1,
        description="Live event streams (the campaign page's) one token may have open at once "
        "in one API process; one more gets 429.",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Request body limit.")
    max_import_bytes: int = Field(
        default=64 * 1_048_576, ge=1024, description="Body limit of a campaign's contact import."
    )

    # Timeouts of the backing-service clients (seconds).
    redis_timeout: float = Field(default=1.0, gt=0)
    db_timeout: float = Field(default=5.0, gt=0)
    amqp_heartbeat: int = Field(default=10, ge=0)
    amqp_quorum: bool = Field(
        default=False,
        description="Declare the dial queue (with its delay and dead-letter queues) and the "
        "workers' control queues as quorum queues, replicated across the RabbitMQ cluster.",
    )

    # Gate and leases.
    lease_ttl_ms: int = Field(
        default=30_000, ge=100, description="A crashed worker's lease expires."
    )
    drain_timeout: float = Field(default=5.0, ge=0, le=60, description="Pause/cancel drain bound.")

    # Background loops of the control service.
    feeder_interval: float = Field(default=0.2, gt=0)
    feeder_queue_factor: int = Field(
        default=8, ge=1, description="Queued attempts per campaign = factor × max_concurrency."
    )
    dial_batch: int = Field(
        default=25,
        ge=1,
        le=MAX_BATCH,
        description="Attempts per dial message at most; a campaign's messages hold at most "
        "its concurrency (one claim of one message can fill the campaign).",
    )
    feeder_requeue_after: float = Field(
        default=60.0, gt=0, description="Re-enqueue an attempt queued this long (lost message)."
    )
    relay_interval: float = Field(default=0.05, gt=0)
    reconcile_interval: float = Field(default=5.0, gt=0)
    cap_lift_interval: float = Field(
        default=1.0, gt=0, description="How often temporary concurrency caps are checked."
    )

    # Webhooks (docs/webhooks.md).
    webhook_interval: float = Field(
        default=1.0, gt=0, description="How often the webhook sender looks for due deliveries."
    )
    webhook_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds one delivery's request may take."
    )
    webhook_backoff: float = Field(
        default=5.0, gt=0, description="Seconds before a failed delivery's first retry (doubling)."
    )
    webhook_backoff_max: float = Field(
        default=3600.0, gt=0, description="The longest wait between two tries of a delivery."
    )
    webhook_retry_for: float = Field(
        default=86400.0,
        gt=0,
        description="Seconds a delivery is retried from its first attempt; a subscription "
        "whose every attempt failed this long is disabled.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs that resolve to loopback, link-local or private "
        "addresses (tests, a receiver on the same network); off: refused.",
    )

    # Worker.
    worker_processes: int = Field(default=1, ge=1)
    worker_threads: int = Field(default=4, ge=1)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    worker_ttl: float = Field(default=10.0, gt=0, description="No heartbeat this long: not live.")
    worker_metrics_host: str = Field(default="0.0.0.0", description="Worker /metrics address.")
    worker_metrics_port: int = Field(
        default=9191,
        ge=0,
        le=65535,
        description="Port of one `dialgate worker`'s /metrics (all its processes); 0: the OS "
        "picks a free one (logged), for several workers on one host; -1 is not allowed.",
    )

    # Monitor (docs/monitors.md); each threshold is overridable per campaign.
    monitor_interval: float = Field(default=1.0, gt=0)
    approval_minutes: float = Field(
        default=60.0,
        gt=0,
        le=7 * 24 * 60,
        description="How long a compliance hold's asked-for release waits for a second "
        "person's approval.",
    )
    monitor_failure_ratio: float = Field(default=0.25, gt=0, le=1)
    monitor_failure_window: int = Field(default=200, ge=1, description="Last N outcomes.")
    monitor_failure_min_samples: int = Field(default=50, ge=1)
    monitor_consecutive_errors: int = Field(default=10, ge=1)
    monitor_outcome_bound: float = Field(
        default=60.0, gt=0, description="Seconds an attempt may go without an outcome."
    )

    # Telephony (docs/telephony.md).
    provider: Literal["simulated", "sip", "twilio"] = Field(
        default="simulated", description="The back end that places calls."
    )
    max_call_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A call's whole life (ringing and talking) at most; the worker hangs up "
        "at this bound, and a line whose end never arrives expires shortly after it.",
    )
    provider_max_cps: float | None = Field(
        default=None, gt=0, description="Calls started per second on the whole trunk/account."
    )
    sip_target: str = Field(
        default="sip:{phone}@127.0.0.1:5060",
        description="The request URI of each INVITE; {phone} is the number dialed.",
    )
    sip_from: str = Field(default="sip:dialgate@127.0.0.1", description="The From URI.")
    sip_bind: str = Field(
        default="0.0.0.0:0", description="Local UDP address of each worker process (0: any port)."
    )
    sip_ring_timeout: float = Field(
        default=30.0, gt=0, description="Ringing longer than this is cancelled: no_answer."
    )
    sip_username: str | None = Field(default=None, description="Digest user, if the trunk asks.")
    sip_password: SecretStr | None = Field(default=None, description="Digest password.")
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = Field(default=None, description="The caller id (E.164).")
    twilio_callback_url: str | None = Field(
        default=None,
        description="The public URL of the control API's status route for Twilio "
        "(https://<host>/api/v1/provider/twilio/status), exactly as Twilio reaches it: each "
        "call's callback is this URL with ?attempt=<id>, and its signature is checked "
        "against it.",
    )
    twilio_api_url: str = Field(
        default="https://api.twilio.com", description="Twilio's REST API (tests: a local one)."
    )

    # Simulated telephony provider.
    sim_ring_ms: float = Field(default=0.0, ge=0, description="Mean ring time of a call.")
    sim_talk_ms: float = Field(default=0.0, ge=0, description="Mean talk time of an answered call.")
    sim_dispositions: str = Field(
        default="answered=1",
        description="How calls end, as weights, e.g. answered=0.7,busy=0.1,no_answer=0.2.",
    )
    sim_latency_ms: float = Field(default=200.0, ge=0)
    sim_failure_rate: float = Field(default=0.0, ge=0, le=1)
    sim_call_log: str | None = None
    sim_hold_file: str | None = Field(
        default=None,
        description="While this file exists the simulated provider holds each call just "
        "before placing it (to see what a pause does with a dial that passed the gate).",
    )
    sim_fault_file: str | None = Field(
        default=None,
        description="While this file exists the simulated provider fails every call: with "
        "'auth' in it as an authentication error, otherwise as a provider error.",
    )

    @field_validator("sip_target")
    @classmethod
    def _target_has_phone(cls, value: str) -> str:
        if "{phone}" not in value or not value.startswith(("sip:", "sips:")):
            raise ValueError(
                "give a SIP URI template holding {phone}, e.g. sip:{phone}@trunk.example.com"
            )
        return value

    @field_validator("redis_cluster_nodes", "redis_sentinels")
    @classmethod
    def _nodes_parse(cls, value: str | None) -> str | None:
        if value is not None:
            host_ports(value)
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if (self.redis_sentinels is None) != (self.redis_sentinel_master is None):
            raise ValueError(
                "DIALGATE_REDIS_SENTINELS and DIALGATE_REDIS_SENTINEL_MASTER go together: "
                "set both (the Sentinels' host:port list and the master's name) or neither"
            )
        if self.redis_sentinels is not None and self.redis_cluster_nodes is not None:
            raise ValueError(
                "set DIALGATE_REDIS_CLUSTER_NODES or DIALGATE_REDIS_SENTINELS, not both"
            )
        return self

    def redis_where(self) -> str:
        """Which Redis is meant, for a message (passwords masked)."""
        if self.redis_cluster_nodes is not None:
            return f"the Redis Cluster at {self.redis_cluster_nodes}"
        if self.redis_sentinels is not None:
            return (
                f"the Redis master {self.redis_sentinel_master!r} of the Sentinels at "
                f"{self.redis_sentinels}"
            )
        return mask_url(self.redis_url)

    @field_validator("sim_dispositions")
    @classmethod
    def _dispositions_parse(cls, value: str) -> str:
        sim_weights(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str | None) -> str | None:
        for entry in (value or "").split(","):
            if entry.strip():
                try:
                    ip_network(entry.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{entry.strip()!r} is not an IP address or network; give addresses "
                        "or CIDR networks separated by commas, e.g. 10.0.0.0/8,127.0.0.1"
                    ) from None
        return value

    @property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """The networks of ``DIALGATE_TRUSTED_PROXIES`` (empty: no proxy is trusted)."""
        entries = (e.strip() for e in (self.trusted_proxies or "").split(","))
        return tuple(ip_network(e, strict=False) for e in entries if e)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The repr (and so any log of the settings) shows the URLs masked."""
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name in URLS and isinstance(value, str) else value

    def secret(self, name: SecretName) -> str | None:
        """The value of a secret setting (``None`` when unset), for the code that uses it."""
        value: SecretStr | None = getattr(self, name)
        return None if value is None else value.get_secret_value()


def load(prog: str) -> Settings:
    """The settings, or exit 2 with one line per bad ``DIALGATE_*`` variable, naming it and
    what is allowed (what a process prints at start instead of a traceback)."""
    import sys

    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors():
            if not e["loc"]:  # settings that go together (the message names them)
                print(f"{prog}: {e['msg']}", file=sys.stderr)
                continue
            name = "DIALGATE_" + "_".join(str(p) for p in e["loc"]).upper()
            print(f"{prog}: {name}: {e['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
