"""Alembic environment: migrations run against the engine handed in by ``shared.migrate``."""

from __future__ import annotations

from alembic import context

from shared.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand without dialgate
    raise RuntimeError("run migrations with `dialgate migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
