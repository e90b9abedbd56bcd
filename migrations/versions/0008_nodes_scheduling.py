"""registered nodes: agent bookkeeping, GPU allocations, removal, and the plane's SSH CA

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plane", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ssh_ca_key", sa.Text(), nullable=True))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint("uq_nodes_org_id_name", type_="unique")
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("node_home", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("install_mode", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("python", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("last_report_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("report_interval_seconds", sa.Float(), nullable=True))
    op.create_index(
        "uq_nodes_org_id_name_live",
        "nodes",
        ["org_id", "name"],
        unique=True,
        sqlite_where=sa.text("removed_at IS NULL"),
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_table(
        "gpu_allocations",
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("gpu_index", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("gpu_uuid", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_gpu_allocations_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_gpu_allocations_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_id", "gpu_index", name=op.f("pk_gpu_allocations")),
    )
    op.create_index("ix_gpu_allocations_instance_id", "gpu_allocations", ["instance_id"])


def downgrade() -> None:
    op.drop_index("ix_gpu_allocations_instance_id", table_name="gpu_allocations")
    op.drop_table("gpu_allocations")
    op.drop_index("uq_nodes_org_id_name_live", table_name="nodes")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("report_interval_seconds")
        batch_op.drop_column("last_report_seq")
        batch_op.drop_column("python")
        batch_op.drop_column("install_mode")
        batch_op.drop_column("node_home")
        batch_op.drop_column("removed_at")
        batch_op.create_unique_constraint("uq_nodes_org_id_name", ["org_id", "name"])
    with op.batch_alter_table("plane", schema=None) as batch_op:
        batch_op.drop_column("ssh_ca_key")
