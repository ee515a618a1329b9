"""The outbound HL7 queue: status messages for the RIS, written with the change they report.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 15:20:48.730516
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_message",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("order_status", sa.String(length=2), nullable=False),
        sa.Column("control_id", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_outbound_message_order_id_imaging_order"),
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["procedure_step.id"],
            name=op.f("fk_outbound_message_step_id_procedure_step"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_message")),
    )
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbound_message_destination_status",
            ["destination", "status", "id"],
            unique=False,
        )
        batch_op.create_index("ix_outbound_message_order_id", ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbound_message_order_id")
        batch_op.drop_index("ix_outbound_message_destination_status")

    op.drop_table("outbound_message")
