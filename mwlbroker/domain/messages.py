"""What the broker knows about a received HL7 message, whatever its content."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class AckCode(enum.StrEnum):
    """MSA-1 Acknowledgment Code, original mode (HL7 v2 chapter 2, table 0008)."""

    ACCEPT = "AA"  # committed, effects included
    ERROR = "AE"  # stored, but could not be applied; can be reprocessed
    REJECT = "AR"  # never accepted: unreadable header, unsupported type or version, too large


class CommitCode(enum.StrEnum):
    """MSA-1 of an enhanced-mode accept (commit) acknowledgment (HL7 v2 chapter 2.9.3, table 0008)."""

    ACCEPT = "CA"  # stored durably: the sender need not resend it
    ERROR = "CE"  # not accepted now (e.g. the database is unavailable); the sender may resend
    REJECT = "CR"  # MSH-9, MSH-11 or MSH-12 (or another header value) is never accepted


class AckCondition(enum.StrEnum):
    """MSH-15 / MSH-16 Accept / Application Acknowledgment Type (HL7 table 0155)."""

    ALWAYS = "AL"
    NEVER = "NE"
    ERROR = "ER"  # error / reject conditions only
    SUCCESS = "SU"  # successful completion only

    def wants(self, success: bool) -> bool:
        """Whether the sender wants an acknowledgment for an outcome that is (or is not) a success."""
        return self is AckCondition.ALWAYS or (
            self is not AckCondition.NEVER and (self is AckCondition.SUCCESS) == success
        )


class MessageStatus(enum.StrEnum):
    """Where a stored message stands; each status maps to exactly one ACK code."""

    PROCESSED = "processed"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def ack_code(self) -> AckCode:
        return {
            MessageStatus.PROCESSED: AckCode.ACCEPT,
            MessageStatus.FAILED: AckCode.ERROR,
            MessageStatus.REJECTED: AckCode.REJECT,
        }[self]


class HL7ErrorCode(enum.IntEnum):
    """HL7 table 0357 Message Error Condition Codes, reported in ERR."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        return self.name.replace("_", " ").capitalize()  # as HL7 table 0357 words them


@dataclass(frozen=True)
class MessageWarning:
    """Something the broker changed in a message it accepted (a value cut to fit its VR).

    Kept in the message's record and sent in the AA as an ERR with severity W (v2.5 and later).
    """

    text: str
    location: str | None = None  # e.g. "OBR-16" (ERR-2 / ERR-1)
    error_code: HL7ErrorCode = HL7ErrorCode.DATA_TYPE_ERROR

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "location": self.location, "code": int(self.error_code)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> MessageWarning:
        return cls(
            str(value.get("text", "")),
            value.get("location"),
            HL7ErrorCode(int(value.get("code") or HL7ErrorCode.DATA_TYPE_ERROR)),
        )
