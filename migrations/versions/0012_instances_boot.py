"""When an instance's current boot began, and until when its first boot may take to become
reachable (its agent's first report or its sshd's answer) before the machine is given back and
the next placement tried

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.add_column(sa.Column("boot_started_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("boot_deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.drop_column("boot_deadline_at")
        table.drop_column("boot_started_at")
