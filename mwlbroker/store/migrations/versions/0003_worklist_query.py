"""Modality Worklist queries: the query log, folded patient names, name-prefix indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:12:05.118204
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copy of mwlbroker.domain.charsets.fold as it was at this revision: a migration must
# give the same result whatever later versions of the code do.
_PLAIN_FOLDED = str.maketrans(
    {
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "\u0131": "i",
        "ŀ": "l",
        "ŧ": "t",
        "ŋ": "n",
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
    }
)


def _fold(text: str) -> str:
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold().translate(_PLAIN_FOLDED)


def upgrade() -> None:
    op.create_table(
        "query_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=False),
        sa.Column("called_ae", sa.String(length=16), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("identifier", sa.JSON(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("returned", sa.Integer(), nullable=False),
        sa.Column("step_ids", sa.JSON(), nullable=False),
        sa.Column("milliseconds", sa.Float(), nullable=False),
        sa.Column("first_response_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_log")),
    )
    with op.batch_alter_table("query_log", schema=None) as batch_op:
        batch_op.create_index("ix_query_log_at", ["at"], unique=False)
        batch_op.create_index("ix_query_log_calling_ae_at", ["calling_ae", "at"], unique=False)

    with op.batch_alter_table("procedure_step", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "patient_name_folded", sa.String(length=324), server_default="", nullable=False
            )
        )

    # Fold the names of the steps already there.
    connection = op.get_bind()
    step = sa.table(
        "procedure_step",
        sa.column("id", sa.Integer()),
        sa.column("patient_name", sa.String()),
        sa.column("patient_name_folded", sa.String()),
    )
    rows = connection.execute(sa.select(step.c.id, step.c.patient_name)).all()
    if rows:
        connection.execute(
            step.update()
            .where(step.c.id == sa.bindparam("pk"))
            .values(patient_name_folded=sa.bindparam("folded")),
            [{"pk": pk, "folded": _fold(name or "")[:324]} for pk, name in rows],
        )

    with op.batch_alter_table("procedure_step", schema=None) as batch_op:
        # PostgreSQL needs pattern operators to use an index for LIKE 'DOE%' whatever the
        # collation; elsewhere the index is as it was.
        if connection.dialect.name == "postgresql":
            batch_op.drop_index("ix_procedure_step_patient_name")
            batch_op.create_index(
                "ix_procedure_step_patient_name",
                ["patient_name"],
                unique=False,
                postgresql_ops={"patient_name": "varchar_pattern_ops"},
            )
        batch_op.create_index(
            "ix_procedure_step_patient_name_folded",
            ["patient_name_folded"],
            unique=False,
            postgresql_ops={"patient_name_folded": "varchar_pattern_ops"},
        )


def downgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("procedure_step", schema=None) as batch_op:
        batch_op.drop_index("ix_procedure_step_patient_name_folded")
        if connection.dialect.name == "postgresql":
            batch_op.drop_index("ix_procedure_step_patient_name")
            batch_op.create_index("ix_procedure_step_patient_name", ["patient_name"], unique=False)
        batch_op.drop_column("patient_name_folded")

    with op.batch_alter_table("query_log", schema=None) as batch_op:
        batch_op.drop_index("ix_query_log_calling_ae_at")
        batch_op.drop_index("ix_query_log_at")

    op.drop_table("query_log")
