"""an index on campaigns' status: the feeder (every 0.05 s while dialing), the monitor,
the cap lifter and /metrics look campaigns up by status, which read every campaign row
of a large organisation (10,000 idle campaigns: a scan per feeder step)

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as t:
        t.create_index("ix_campaigns_status", ["status"])


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as t:
        t.drop_index("ix_campaigns_status")
