"""Patient identity reconciliation: merges with their snapshots, duplicate candidates, dismissals;
studies linked to a step by hand; outbound messages about a patient rather than an order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "patient_merge",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("source_pk", _ID, nullable=False),
        sa.Column("survivor_pk", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("message_id", _ID, nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_pk"], ["patient.id"], name=op.f("fk_patient_merge_source_pk_patient")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_pk"], ["patient.id"], name=op.f("fk_patient_merge_survivor_pk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_merge")),
    )
    with op.batch_alter_table("patient_merge", schema=None) as batch_op:
        batch_op.create_index("ix_patient_merge_source_pk", ["source_pk"], unique=False)
        batch_op.create_index("ix_patient_merge_survivor_pk", ["survivor_pk"], unique=False)

    op.create_table(
        "duplicate_candidate",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("patient_pk", _ID, nullable=False),
        sa.Column("other_pk", _ID, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_pk"], ["patient.id"], name=op.f("fk_duplicate_candidate_patient_pk_patient")
        ),
        sa.ForeignKeyConstraint(
            ["other_pk"], ["patient.id"], name=op.f("fk_duplicate_candidate_other_pk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_candidate")),
        sa.UniqueConstraint(
            "patient_pk", "other_pk", name="uq_duplicate_candidate_patient_pk_other_pk"
        ),
    )
    with op.batch_alter_table("duplicate_candidate", schema=None) as batch_op:
        batch_op.create_index("ix_duplicate_candidate_score", ["score"], unique=False)

    op.create_table(
        "duplicate_dismissal",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("patient_pk", _ID, nullable=False),
        sa.Column("other_pk", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_pk"], ["patient.id"], name=op.f("fk_duplicate_dismissal_patient_pk_patient")
        ),
        sa.ForeignKeyConstraint(
            ["other_pk"], ["patient.id"], name=op.f("fk_duplicate_dismissal_other_pk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_dismissal")),
        sa.UniqueConstraint(
            "patient_pk", "other_pk", name="uq_duplicate_dismissal_patient_pk_other_pk"
        ),
    )

    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_id", _ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_study_step_id_procedure_step"), "procedure_step", ["step_id"], ["id"]
        )

    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=_ID, nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=_ID, nullable=False)
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_constraint("fk_study_step_id_procedure_step", type_="foreignkey")
        batch_op.drop_column("step_id")
    op.drop_table("duplicate_dismissal")
    with op.batch_alter_table("duplicate_candidate", schema=None) as batch_op:
        batch_op.drop_index("ix_duplicate_candidate_score")
    op.drop_table("duplicate_candidate")
    with op.batch_alter_table("patient_merge", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_merge_survivor_pk")
        batch_op.drop_index("ix_patient_merge_source_pk")
    op.drop_table("patient_merge")
