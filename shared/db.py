"""Engine and sessions. PostgreSQL (psycopg 3) in production, SQLite as the embedded default."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import Settings

# libpq's several hosts, ``postgresql://[user@]host1:port1,host2:port2/db?...``, which
# SQLAlchemy's URL does not parse: its form is one ``host=`` query parameter per host.
_HOSTS = re.compile(
    r"^(?P<scheme>postgres(?:ql)?(?:\+\w+)?://)(?P<userinfo>[^@/]*@)?"
    r"(?P<hosts>[^/?@]*,[^/?@]*)(?P<path>/[^?]*)?(?:\?(?P<query>.*))?$"
)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default driver is psycopg2); a
    libpq multi-host URL (failover: ``postgresql://h1:5432,h2:5432/db?target_session_attrs=
    read-write``, the first host that takes writes) becomes SQLAlchemy's ``?host=`` form,
    which psycopg hands to libpq as the same list."""
    m = _HOSTS.match(url)
    if m is not None:
        hosts = "&".join(f"host={h}" for h in m["hosts"].split(","))
        query = f"{hosts}&{m['query']}" if m["query"] else hosts
        url = f"{m['scheme']}{m['userinfo'] or ''}{m['path'] or '/'}?{query}"
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    url = normalise_url(settings.database_url)
    timeout = settings.db_timeout
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": timeout, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" below issue BEGIN IMMEDIATE: a transaction takes
            # the write lock up front (waiting up to busy_timeout) instead of failing
            # with "database is locked" when it upgrades from read to write.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping (a round trip per transaction on the dial path): a connection found dead
    # raises once, SQLAlchemy then invalidates the whole pool and the caller retries.
    return create_engine(
        url,
        pool_recycle=1800,
        pool_size=kwargs.pop("pool_size", 10),
        max_overflow=kwargs.pop("max_overflow", 20),
        pool_timeout=timeout,
        connect_args={
            "connect_timeout": max(1, int(timeout)),
            # A statement never hangs longer than the client is willing to wait.
            "options": f"-c statement_timeout={int(timeout * 1000)}",
        },
        **kwargs,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def database_epoch(engine: Engine) -> str:
    """This database's epoch (see :class:`shared.models.Meta`)."""
    from sqlalchemy import select

    from shared.models import Meta

    with engine.connect() as conn:
        value = conn.execute(select(Meta.value).where(Meta.key == "epoch")).scalar()
    if value is None:
        raise RuntimeError("the database has no epoch: run `dialgate migrate` first")
    return str(value)
