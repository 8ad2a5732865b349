"""temporary concurrency cap: a resume may cap concurrency until a time

Revision ID: 0006
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("campaigns", "transitions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cap_concurrency", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("cap_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ("campaigns", "transitions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cap_until")
            batch.drop_column("cap_concurrency")
