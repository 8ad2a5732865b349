"""retry policy: per-campaign max attempts and backoff; contacts wait in retry_wait

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as t:
        t.add_column(sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("retry_backoff_s", sa.Float(), nullable=False, server_default="60"))
    with op.batch_alter_table("contacts") as t:
        t.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as t:
        t.drop_column("retry_at")
    with op.batch_alter_table("campaigns") as t:
        t.drop_column("retry_backoff_s")
        t.drop_column("max_attempts")
