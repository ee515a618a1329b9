"""The forward queue: received instances on their way to the PACS.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:02:37.114580
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forward_task",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "instance_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instance.id"], name=op.f("fk_forward_task_instance_id_instance")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forward_task")),
    )
    with op.batch_alter_table("forward_task", schema=None) as batch_op:
        batch_op.create_index("ix_forward_task_instance_id", ["instance_id"], unique=False)
        batch_op.create_index(
            "ix_forward_task_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("forward_task", schema=None) as batch_op:
        batch_op.drop_index("ix_forward_task_status_next_attempt_at")
        batch_op.drop_index("ix_forward_task_instance_id")

    op.drop_table("forward_task")
