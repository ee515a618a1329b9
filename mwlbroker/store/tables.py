"""The database tables. Every schema change here comes with an Alembic migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class MessageRow(Base):
    """One received HL7 message, kept byte for byte with what became of it."""

    __tablename__ = "message"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    peer: Mapped[str] = mapped_column(String(64), default="")
    sending_application: Mapped[str] = mapped_column(String(227), default="")  # MSH-3
    sending_facility: Mapped[str] = mapped_column(String(227), default="")  # MSH-4
    receiving_application: Mapped[str] = mapped_column(String(227), default="")  # MSH-5
    receiving_facility: Mapped[str] = mapped_column(String(227), default="")  # MSH-6
    message_type: Mapped[str] = mapped_column(String(3), default="")  # MSH-9.1
    trigger_event: Mapped[str] = mapped_column(String(3), default="")  # MSH-9.2
    control_id: Mapped[str | None] = mapped_column(String(199))  # MSH-10
    version: Mapped[str] = mapped_column(String(16), default="")  # MSH-12
    charset: Mapped[str] = mapped_column(String(32), default="")  # MSH-18
    # sender + MSH-10; NULL for messages that cannot be told apart (unreadable MSH, reused ID).
    dedup_key: Mapped[str | None] = mapped_column(String(700), unique=True)
    digest: Mapped[str] = mapped_column(String(64), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16))
    ack_code: Mapped[str] = mapped_column(String(2))
    error: Mapped[str | None] = mapped_column(Text)
    error_location: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    last_duplicate_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_message_received_at", "received_at"),
        Index("ix_message_status_received_at", "status", "received_at"),
        Index("ix_message_control_id", "control_id"),
    )
