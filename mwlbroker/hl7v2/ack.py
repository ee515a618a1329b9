"""Original-mode acknowledgments (HL7 v2 chapter 2): MSH answering the sender, MSA, ERR.

Built with hl7apy, which knows each version's segment layout and escapes free text.
"""

from __future__ import annotations

import itertools
import os
import re
from datetime import datetime

from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.core import Message

from mwlbroker.domain.messages import AckCode, HL7ErrorCode

_FALLBACK_VERSION = "2.5.1"
_counter = itertools.count(1)
_prefix = f"{os.getpid() % 100000:05d}"


def _next_control_id() -> str:
    # Unique per process and run; MSH-10 is at most 20 characters in v2.3.1.
    return f"A{_prefix}{datetime.now():%H%M%S}{next(_counter) % 100000:05d}"[:20]


def _location(text: str | None) -> tuple[str, str, str]:
    """("PID", "1", "3") from "PID-3"; empty parts when unknown."""
    match = re.match(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?", text or "")
    if not match:
        return "", "", ""
    return match[1], match[2] or "1", match[3] or ""


def build_ack(
    msh: list[str],
    code: AckCode,
    *,
    text: str | None = None,
    error_code: int | None = None,
    location: str | None = None,
    application: str = "MWLBROKER",
    facility: str = "",
    codec: str = "latin-1",
) -> bytes:
    """The ACK for a message whose MSH fields are ``msh`` (MSH-n at index n; may be empty).

    MSA-2 always echoes MSH-10, MSH-5/6 answer MSH-3/4, and AE/AR carry an ERR segment.
    """

    def received(index: int) -> str:
        return msh[index] if index < len(msh) else ""

    sender_version = received(12).split("^")[0]
    version = sender_version if sender_version in SUPPORTED_LIBRARIES else _FALLBACK_VERSION
    trigger = received(9).split("^")[1] if received(9).count("^") >= 1 else ""
    modern = version >= "2.4" and version not in {"2.1", "2.2"}

    ack = Message("ACK", version=version)
    header = ack.msh
    header.msh_3 = application
    if facility:
        header.msh_4 = facility
    if received(3):
        header.msh_5 = received(3)
    if received(4):
        header.msh_6 = received(4)
    header.msh_9 = "^".join(
        ["ACK", trigger, "ACK"] if modern and trigger else ["ACK", trigger]
    ).rstrip("^")
    header.msh_10 = _next_control_id()
    header.msh_11 = received(11).split("^")[0] or "P"
    header.msh_12 = sender_version or version
    charset = received(18).split("~")[0]
    if charset:
        header.msh_18 = charset

    ack.msa.msa_1 = code.value
    ack.msa.msa_2 = received(10)
    if text:
        ack.msa.msa_3 = text[:80]  # MSA-3 Text Message, ST 80: read by most RIS consoles
    if code != AckCode.ACCEPT:
        condition = HL7ErrorCode(error_code or HL7ErrorCode.APPLICATION_INTERNAL_ERROR)
        segment, sequence, field = _location(location)
        err = ack.add_segment("ERR")
        if version >= "2.5":
            if segment:
                err.err_2 = "^".join(filter(None, [segment, sequence, field]))
            err.err_3 = f"{condition.value}^{condition.text}^HL70357"
            err.err_4 = "E"
            if text:
                err.err_8 = text
        else:
            # ERR-1 Error Code and Location: segment ^ sequence ^ field ^ code&text&table
            err.err_1 = f"{segment}^{sequence}^{field}^{condition.value}&{condition.text}&HL70357"
    return ack.to_er7().encode(codec, errors="replace")
