"""A create still in flight at the provider (GCP's insert operation): its handle, polled by the
reconciler's later steps instead of a worker waiting on it

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.add_column(sa.Column("provider_operation", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.drop_column("provider_operation")
