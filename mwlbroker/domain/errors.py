"""Errors that carry the HL7 answer they deserve, so every layer reports failures the same way."""

from __future__ import annotations

from mwlbroker.domain.messages import AckCode, HL7ErrorCode


class MessageError(Exception):
    """A message that cannot be applied; ``ack_code`` says whether the sender may retry it.

    AE means the message was stored and can be reprocessed once the cause is fixed; AR means
    the broker will never accept it as sent.
    """

    ack_code: AckCode = AckCode.ERROR
    error_code: HL7ErrorCode = HL7ErrorCode.APPLICATION_INTERNAL_ERROR

    def __init__(
        self,
        text: str,
        *,
        error_code: HL7ErrorCode | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(text)
        self.text = text
        if error_code is not None:
            self.error_code = error_code
        # e.g. "MSH-9" or "PID-3": where in the message the problem is (ERR-2 / ERR-1)
        self.location = location


class MessageRejected(MessageError):
    """The message is never accepted as sent (answered AR)."""

    ack_code = AckCode.REJECT


class MappingError(MessageError):
    """The message cannot be turned into worklist data by the site's mapping (answered AE).

    Fixing the mapping and reprocessing the stored message is the way out.
    """
