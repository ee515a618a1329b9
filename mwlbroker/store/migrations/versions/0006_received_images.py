"""Received images: studies, series and instances, matched to their orders.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:41:12.551093
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("study_date", sa.String(length=8), nullable=False),
        sa.Column("study_description", sa.String(length=64), nullable=False),
        sa.Column("modalities", sa.String(length=64), nullable=False),
        sa.Column("order_id", _id(), nullable=True),
        sa.Column("matched_by", sa.String(length=16), nullable=False),
        sa.Column("series_count", sa.Integer(), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=False),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("images_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["imaging_order.id"], name=op.f("fk_study_order_id_imaging_order")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_study_study_instance_uid")),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index("ix_study_accession_number", ["accession_number"], unique=False)
        batch_op.create_index(
            "ix_study_images_received_at_last_received_at",
            ["images_received_at", "last_received_at"],
            unique=False,
        )
        batch_op.create_index("ix_study_order_id", ["order_id"], unique=False)

    op.create_table(
        "series",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("study_id", _id(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("series_number", sa.String(length=12), nullable=False),
        sa.Column("series_description", sa.String(length=64), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_series_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("series_instance_uid", name=op.f("uq_series_series_instance_uid")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index("ix_series_study_id", ["study_id"], unique=False)

    op.create_table(
        "instance",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("series_id", _id(), nullable=False),
        sa.Column("study_id", _id(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.String(length=12), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(length=400), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=False),
        sa.Column("received_count", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_instance_series_id_series")
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_instance_study_id_study")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_instance_sop_instance_uid")),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index("ix_instance_series_id", ["series_id"], unique=False)
        batch_op.create_index("ix_instance_study_id", ["study_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_study_id")
        batch_op.drop_index("ix_instance_series_id")

    op.drop_table("instance")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index("ix_series_study_id")

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index("ix_study_order_id")
        batch_op.drop_index("ix_study_images_received_at_last_received_at")
        batch_op.drop_index("ix_study_accession_number")

    op.drop_table("study")
