"""holds with owners: each reason a campaign is paused is a row of its own; transitions
record the holds they placed or released; a canary resume is watched from the campaign row

Revision ID: 0012
Revises: 0011
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", Id, sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("placed_by", sa.String(200), nullable=False),
        sa.Column("placed_role", sa.String(16), nullable=True),
        sa.Column("placed_version", sa.Integer(), nullable=False),
        sa.Column("placed_at", When, nullable=False),
        sa.Column("release_requested_by", sa.String(200), nullable=True),
        sa.Column("release_requested_key", sa.String(32), nullable=True),
        sa.Column("release_expires_at", When, nullable=True),
        sa.Column("released_by", sa.String(200), nullable=True),
        sa.Column("released_version", sa.Integer(), nullable=True),
        sa.Column("released_at", When, nullable=True),
    )
    op.create_index("ix_holds_campaign_released", "holds", ["campaign_id", "released_at"])
    with op.batch_alter_table("transitions") as t:
        t.add_column(sa.Column("details", sa.JSON(), nullable=True))
    with op.batch_alter_table("campaigns") as t:
        t.add_column(sa.Column("canary", sa.JSON(), nullable=True))
    # A campaign paused before holds existed keeps one hold: its pause's.
    bind = op.get_bind()
    paused = bind.execute(
        sa.text(
            "SELECT c.id, c.version, c.paused_at, c.pause_reason, c.pause_source, t.actor, t.role"
            " FROM campaigns c LEFT JOIN transitions t ON t.campaign_id = c.id"
            " AND t.version = (SELECT MAX(version) FROM transitions WHERE campaign_id = c.id"
            " AND action = 'pause') WHERE c.status = 'paused'"
        )
    ).all()
    for cid, version, at, reason, source, actor, role in paused:
        actor = actor or "unknown"
        kind, rule = "operator", None
        if actor.startswith("monitor:"):
            kind, rule = "monitor", actor.removeprefix("monitor:")
        elif actor.startswith("alertmanager:"):
            kind, rule = "alert", actor.removeprefix("alertmanager:")
        elif source == "system" or role == "monitor":
            kind, rule = "monitor", actor
        bind.execute(
            sa.text(
                "INSERT INTO holds (campaign_id, kind, rule, reason, placed_by, placed_role,"
                " placed_version, placed_at) VALUES (:c, :k, :r, :why, :by, :role, :v, :at)"
            ),
            {
                "c": cid,
                "k": kind,
                "r": rule,
                "why": reason,
                "by": actor,
                "role": role,
                "v": version,
                "at": at or datetime.now(UTC),
            },
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as t:
        t.drop_column("canary")
    with op.batch_alter_table("transitions") as t:
        t.drop_column("details")
    op.drop_index("ix_holds_campaign_released", "holds")
    op.drop_table("holds")
