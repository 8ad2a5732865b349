"""indexes the hot reads walk in order: contacts by (campaign, state, id) for the feeder's
pick (the first pending contacts in id order, without sorting the campaign), attempts by
(campaign, state, disposition) for the campaign's calls by disposition (read from the
index alone)

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as t:
        t.create_index("ix_contacts_campaign_state_id", ["campaign_id", "state", "id"])
        t.drop_index("ix_contacts_campaign_state")
    with op.batch_alter_table("attempts") as t:
        t.create_index(
            "ix_attempts_campaign_state_disposition", ["campaign_id", "state", "disposition"]
        )
        t.drop_index("ix_attempts_campaign_state")


def downgrade() -> None:
    with op.batch_alter_table("attempts") as t:
        t.create_index("ix_attempts_campaign_state", ["campaign_id", "state"])
        t.drop_index("ix_attempts_campaign_state_disposition")
    with op.batch_alter_table("contacts") as t:
        t.create_index("ix_contacts_campaign_state", ["campaign_id", "state"])
        t.drop_index("ix_contacts_campaign_state_id")
