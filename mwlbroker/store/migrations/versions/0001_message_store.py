"""Message store: every received HL7 message, byte for byte, with its status and ACK.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "message",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("sending_application", sa.String(227), nullable=False),
        sa.Column("sending_facility", sa.String(227), nullable=False),
        sa.Column("receiving_application", sa.String(227), nullable=False),
        sa.Column("receiving_facility", sa.String(227), nullable=False),
        sa.Column("message_type", sa.String(3), nullable=False),
        sa.Column("trigger_event", sa.String(3), nullable=False),
        sa.Column("control_id", sa.String(199), nullable=True),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("charset", sa.String(32), nullable=False),
        sa.Column("dedup_key", sa.String(700), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ack_code", sa.String(2), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_location", sa.String(32), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("last_duplicate_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_message"),
        sa.UniqueConstraint("dedup_key", name="uq_message_dedup_key"),
    )
    op.create_index("ix_message_received_at", "message", ["received_at"])
    op.create_index("ix_message_status_received_at", "message", ["status", "received_at"])
    op.create_index("ix_message_control_id", "message", ["control_id"])


def downgrade() -> None:
    op.drop_table("message")
