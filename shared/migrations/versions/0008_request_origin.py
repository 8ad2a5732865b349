"""the direct peer beside the client address; admin-token sessions tied to the token

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("transitions", "audit_events"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("peer_ip", sa.String(length=64), nullable=True))
    # Sessions opened before have no tie to the admin token: they are refused, as ended.
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("admin_mac", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("admin_mac")
    for table in ("audit_events", "transitions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("peer_ip")
