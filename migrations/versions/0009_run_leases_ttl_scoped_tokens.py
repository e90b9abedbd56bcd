"""CI runs: instance TTLs and run leases, tokens scoped to runs with limits, and a version of
each node's assignments that agents wait on

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_lease_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("run_lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("created_by_token_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_instances_created_by_token_id", ["created_by_token_id"])
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("max_price_per_hour", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_gpus", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_ttl_seconds", sa.Integer(), nullable=True))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assignments_version", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("assignments_version")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("max_ttl_seconds")
        batch_op.drop_column("max_gpus")
        batch_op.drop_column("max_price_per_hour")
        batch_op.drop_column("scope")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index("ix_instances_created_by_token_id")
        batch_op.drop_column("created_by_token_id")
        batch_op.drop_column("run_lease_until")
        batch_op.drop_column("run_lease_seconds")
