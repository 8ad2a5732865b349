"""calling windows at dial time (contacts.dial_after), the do-not-call list, monitor overrides, provider outcome details

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("dial_after", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("monitor", sa.JSON(), nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))
    op.create_table(
        "dnc",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dnc")),
        sa.UniqueConstraint("org", "phone", name="uq_dnc_org_phone"),
    )


def downgrade() -> None:
    op.drop_table("dnc")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("duration_ms")
        batch.drop_column("error_code")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("monitor")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("dial_after")
