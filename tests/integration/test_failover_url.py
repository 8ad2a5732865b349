"""A libpq multi-host database URL (PostgreSQL failover) is accepted and used: the first
host that takes writes serves, a host that refuses connections is skipped."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db import make_engine
from shared.settings import Settings
from tests.conftest import PG_URL


def test_a_multi_host_url_is_accepted_and_its_writable_host_used() -> None:
    pg = make_url(PG_URL)
    url = (
        f"postgresql://{pg.username}@127.0.0.1:1,{pg.host}:{pg.port}/{pg.database}"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    engine = make_engine(Settings(database_url=url))
    try:
        with engine.connect() as conn:
            port, standby = conn.execute(
                text("SELECT inet_server_port(), pg_is_in_recovery()")
            ).one()
    finally:
        engine.dispose()
    assert (port, standby) == (pg.port, False)  # host 127.0.0.1:1 refused: the next one
