"""agent telemetry: the last report of an instance's agent and its sequence number

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # server defaults: rows that exist before this migration get a value
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("telemetry", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("last_report_seq", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("last_report_seq")
        batch_op.drop_column("telemetry")
