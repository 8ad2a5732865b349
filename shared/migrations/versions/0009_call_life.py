"""the call's life: lines, calls per second and retries by disposition on campaigns;
ringing, answered, disposition, SIP code, ring and talk time on attempts

Attempts ``done`` (the provider took the call) and ``failed`` (it refused) become
``ended``, with disposition ``answered`` and ``failed``: a call the simulated provider took
was a call that went through. A campaign's backoff becomes ``retry: {"failed": backoff}``
when it retried at all.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as t:
        t.add_column(sa.Column("max_lines", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("max_cps", sa.Float(), nullable=True))
        t.add_column(sa.Column("retry", sa.JSON(), nullable=True))
        t.add_column(
            sa.Column("machine_detection", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    campaigns = sa.table(
        "campaigns",
        sa.column("max_lines", sa.Integer()),
        sa.column("max_concurrency", sa.Integer()),
        sa.column("max_attempts", sa.Integer()),
        sa.column("retry_backoff_s", sa.Float()),
        sa.column("id", sa.Integer()),
        sa.column("retry", sa.JSON()),
    )
    op.execute(campaigns.update().values(max_lines=campaigns.c.max_concurrency))
    conn = op.get_bind()
    for cid, backoff in conn.execute(
        sa.select(campaigns.c.id, campaigns.c.retry_backoff_s).where(campaigns.c.max_attempts > 1)
    ):
        conn.execute(
            campaigns.update().where(campaigns.c.id == cid).values(retry={"failed": backoff})
        )
    with op.batch_alter_table("campaigns") as t:
        t.drop_column("retry_backoff_s")
    with op.batch_alter_table("attempts") as t:
        t.add_column(sa.Column("attempt_no", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("ringing_at", sa.DateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("disposition", sa.String(length=16), nullable=True))
        t.add_column(sa.Column("sip_code", sa.Integer(), nullable=True))
        t.add_column(sa.Column("ring_ms", sa.Integer(), nullable=True))
        t.add_column(sa.Column("talk_ms", sa.Integer(), nullable=True))
        t.drop_column("duration_ms")
    attempts = sa.table(
        "attempts", sa.column("state", sa.String()), sa.column("disposition", sa.String())
    )
    for old, disposition in (("done", "answered"), ("failed", "failed")):
        op.execute(
            attempts.update()
            .where(attempts.c.state == old)
            .values(state="ended", disposition=disposition)
        )


def downgrade() -> None:
    attempts = sa.table(
        "attempts", sa.column("state", sa.String()), sa.column("disposition", sa.String())
    )
    op.execute(
        attempts.update()
        .where(attempts.c.state == "ended")
        .values(state=sa.case((attempts.c.disposition == "answered", "done"), else_="failed"))
    )
    with op.batch_alter_table("attempts") as t:
        t.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))
        for name in ("talk_ms", "ring_ms", "sip_code", "disposition", "answered_at"):
            t.drop_column(name)
        t.drop_column("ringing_at")
        t.drop_column("attempt_no")
    with op.batch_alter_table("campaigns") as t:
        t.add_column(sa.Column("retry_backoff_s", sa.Float(), nullable=False, server_default="60"))
        for name in ("machine_detection", "retry", "max_cps", "max_lines"):
            t.drop_column(name)
