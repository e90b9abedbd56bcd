"""An index that answers the dashboard's live poll (count, newest change and newest report of
an org's instances) from the index alone, not by reading each row and its telemetry

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_instances_org_id_changes",
        "instances",
        ["org_id", "updated_at", "last_heartbeat_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_instances_org_id_changes", table_name="instances")
