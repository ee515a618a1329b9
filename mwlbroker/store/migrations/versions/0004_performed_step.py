"""Modality Performed Procedure Steps and the scheduled steps they performed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:05:31.402117
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "performed_step",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pps_id", sa.String(length=64), nullable=False),
        sa.Column("station_ae", sa.String(length=16), nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("start_datetime", sa.String(length=14), nullable=True),
        sa.Column("end_datetime", sa.String(length=14), nullable=True),
        sa.Column("scheduled", sa.Boolean(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_performed_step")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_performed_step_sop_instance_uid")),
    )
    with op.batch_alter_table("performed_step", schema=None) as batch_op:
        batch_op.create_index(
            "ix_performed_step_scheduled_created_at", ["scheduled", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_performed_step_study_instance_uid", ["study_instance_uid"], unique=False
        )

    op.create_table(
        "performed_step_link",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "performed_step_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("step_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["performed_step_id"],
            ["performed_step.id"],
            name=op.f("fk_performed_step_link_performed_step_id_performed_step"),
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["procedure_step.id"],
            name=op.f("fk_performed_step_link_step_id_procedure_step"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_performed_step_link")),
        sa.UniqueConstraint(
            "performed_step_id",
            "step_id",
            name="uq_performed_step_link_performed_step_id_step_id",
        ),
    )
    with op.batch_alter_table("performed_step_link", schema=None) as batch_op:
        batch_op.create_index("ix_performed_step_link_step_id", ["step_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("performed_step_link", schema=None) as batch_op:
        batch_op.drop_index("ix_performed_step_link_step_id")

    op.drop_table("performed_step_link")
    with op.batch_alter_table("performed_step", schema=None) as batch_op:
        batch_op.drop_index("ix_performed_step_study_instance_uid")
        batch_op.drop_index("ix_performed_step_scheduled_created_at")

    op.drop_table("performed_step")
