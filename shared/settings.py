"""Settings, read from ``DIALGATE_*`` environment variables (pydantic-settings).

Build one :class:`Settings` in ``main()`` and pass it down; tests build their own.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import MAX_BATCH


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIALGATE_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///dialgate.db",
        description="SQLAlchemy URL of the database, the source of truth.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis for gates.")
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
    admin_token: str | None = Field(
        default=None,
        min_length=24,
        description="Accepted as a platform admin of the default organisation (automation, "
        "first start). Keep it secret; `dialgate up` makes one when unset.",
    )
    token: str | None = Field(default=None, description="The CLI's API token.")
    session_hours: float = Field(default=12.0, gt=0, description="Web sign-in lifetime.")
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set it behind HTTPS)."
    )
    auth_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Failed token checks per client address or credential a minute, then 429 "
        "(a valid token is never refused).",
    )
    control_key: str | None = Field(
        default=None,
        min_length=16,
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
        default=4,
        ge=1,
        le=MAX_BATCH,
        description="Attempts per dial message, at most half the queue factor (so every "
        "worker thread of a campaign has a message).",
    )
    feeder_requeue_after: float = Field(
        default=60.0, gt=0, description="Re-enqueue an attempt queued this long (lost message)."
    )
    relay_interval: float = Field(default=0.05, gt=0)
    reconcile_interval: float = Field(default=5.0, gt=0)
    cap_lift_interval: float = Field(
        default=1.0, gt=0, description="How often temporary concurrency caps are checked."
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
    monitor_failure_ratio: float = Field(default=0.25, gt=0, le=1)
    monitor_failure_window: int = Field(default=200, ge=1, description="Last N outcomes.")
    monitor_failure_min_samples: int = Field(default=50, ge=1)
    monitor_consecutive_errors: int = Field(default=10, ge=1)
    monitor_outcome_bound: float = Field(
        default=60.0, gt=0, description="Seconds an attempt may go without an outcome."
    )

    # Simulated telephony provider.
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
