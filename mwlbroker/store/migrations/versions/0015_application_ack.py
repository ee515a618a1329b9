"""Messages: what became of the application acknowledgment (enhanced mode).

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-06 21:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("application_ack", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("application_ack")
