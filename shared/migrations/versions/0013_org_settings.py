"""organisation settings: the contact frequency limit (max_calls_per_number); attempts
indexed by their start (the calls of a limit's window: its rebuild and the diagnosis)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "org_settings",
        sa.Column("org", sa.String(length=64), nullable=False),
        sa.Column("max_calls_per_number", sa.JSON(), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org", name=op.f("pk_org_settings")),
    )
    with op.batch_alter_table("attempts") as t:
        t.create_index("ix_attempts_started_at", ["started_at"])


def downgrade() -> None:
    with op.batch_alter_table("attempts") as t:
        t.drop_index("ix_attempts_started_at")
    op.drop_table("org_settings")
