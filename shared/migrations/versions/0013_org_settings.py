"""organisation settings: the contact frequency limit (max_calls_per_number)

Revision ID: 0013
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
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


def downgrade() -> None:
    op.drop_table("org_settings")
