"""Patients, orders, procedure steps (the worklist), order history and audit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 13:44:44.948392
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index("ix_audit_entity", ["entity", "entity_id"], unique=False)

    op.create_table(
        "patient",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=False),
        sa.Column("birth_date", sa.String(length=64), nullable=False),
        sa.Column("sex", sa.String(length=64), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column(
            "merged_into_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["patient.id"], name=op.f("fk_patient_merged_into_id_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
        sa.UniqueConstraint("patient_id", "issuer", name="uq_patient_patient_id_issuer"),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index("ix_patient_patient_name", ["patient_name"], unique=False)

    op.create_table(
        "imaging_order",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("placer_order_number", sa.String(length=199), nullable=True),
        sa.Column("filler_order_number", sa.String(length=199), nullable=True),
        sa.Column(
            "patient_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("order_control", sa.String(length=2), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column(
            "created_message_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "updated_message_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_pk"], ["patient.id"], name=op.f("fk_imaging_order_patient_pk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_order")),
    )
    with op.batch_alter_table("imaging_order", schema=None) as batch_op:
        batch_op.create_index(
            "ix_imaging_order_filler_order_number", ["filler_order_number"], unique=False
        )
        batch_op.create_index("ix_imaging_order_patient_pk", ["patient_pk"], unique=False)
        batch_op.create_index(
            "ix_imaging_order_placer_order_number", ["placer_order_number"], unique=False
        )

    op.create_table(
        "procedure_step",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "patient_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("requested_procedure_id", sa.String(length=64), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("sps_id", sa.String(length=64), nullable=True),
        sa.Column("modality", sa.String(length=64), nullable=True),
        sa.Column("station_ae", sa.String(length=64), nullable=True),
        sa.Column("station_name", sa.String(length=64), nullable=True),
        sa.Column("start_datetime", sa.String(length=14), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_procedure_step_order_id_imaging_order"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_pk"], ["patient.id"], name=op.f("fk_procedure_step_patient_pk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_procedure_step")),
    )
    with op.batch_alter_table("procedure_step", schema=None) as batch_op:
        batch_op.create_index(
            "ix_procedure_step_accession_number", ["accession_number"], unique=False
        )
        batch_op.create_index(
            "ix_procedure_step_modality_start", ["modality", "start_datetime"], unique=False
        )
        batch_op.create_index("ix_procedure_step_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_procedure_step_patient_id", ["patient_id"], unique=False)
        batch_op.create_index("ix_procedure_step_patient_name", ["patient_name"], unique=False)
        batch_op.create_index("ix_procedure_step_patient_pk", ["patient_pk"], unique=False)
        batch_op.create_index(
            "ix_procedure_step_station_ae_start", ["station_ae", "start_datetime"], unique=False
        )
        batch_op.create_index(
            "ix_procedure_step_status_start", ["status", "start_datetime"], unique=False
        )
        batch_op.create_index(
            "ix_procedure_step_study_instance_uid", ["study_instance_uid"], unique=False
        )

    op.create_table(
        "order_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("status_before", sa.String(length=16), nullable=True),
        sa.Column("status_after", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["imaging_order.id"], name=op.f("fk_order_event_order_id_imaging_order")
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["procedure_step.id"], name=op.f("fk_order_event_step_id_procedure_step")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_event")),
    )
    with op.batch_alter_table("order_event", schema=None) as batch_op:
        batch_op.create_index("ix_order_event_order_id", ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("order_event", schema=None) as batch_op:
        batch_op.drop_index("ix_order_event_order_id")

    op.drop_table("order_event")
    with op.batch_alter_table("procedure_step", schema=None) as batch_op:
        batch_op.drop_index("ix_procedure_step_study_instance_uid")
        batch_op.drop_index("ix_procedure_step_status_start")
        batch_op.drop_index("ix_procedure_step_station_ae_start")
        batch_op.drop_index("ix_procedure_step_patient_pk")
        batch_op.drop_index("ix_procedure_step_patient_name")
        batch_op.drop_index("ix_procedure_step_patient_id")
        batch_op.drop_index("ix_procedure_step_order_id")
        batch_op.drop_index("ix_procedure_step_modality_start")
        batch_op.drop_index("ix_procedure_step_accession_number")

    op.drop_table("procedure_step")
    with op.batch_alter_table("imaging_order", schema=None) as batch_op:
        batch_op.drop_index("ix_imaging_order_placer_order_number")
        batch_op.drop_index("ix_imaging_order_patient_pk")
        batch_op.drop_index("ix_imaging_order_filler_order_number")

    op.drop_table("imaging_order")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_patient_name")

    op.drop_table("patient")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entity")

    op.drop_table("audit")
