"""Original-mode acknowledgments (HL7 v2 chapter 2): MSH answering the sender, MSA, ERR.

hl7apy builds each ACK shape (version, trigger, code) once; values are filled in per message
(:mod:`mwlbroker.hl7v2.writer`).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.core import Message, Segment

from mwlbroker.domain.messages import AckCode, CommitCode, HL7ErrorCode, MessageWarning
from mwlbroker.hl7v2.header import MessageHeader
from mwlbroker.hl7v2.sender_text import for_sender
from mwlbroker.hl7v2.writer import escape, fill, placeholders

_FALLBACK_VERSION = "2.5.1"
# MSA-1 codes that carry no ERR: application accept, and commit accept (enhanced mode).
_ACCEPTED = (AckCode.ACCEPT.value, CommitCode.ACCEPT.value)
_counter = itertools.count(1)
_prefix = f"{os.getpid() % 100000:05d}"


def _next_control_id() -> str:
    # Unique per process and run; MSH-10 is at most 20 characters in v2.3.1.
    return f"A{_prefix}{datetime.now():%H%M%S}{next(_counter) % 100000:05d}"[:20]


def next_control_id() -> str:
    """A new control ID for something the broker sends (an ACK's MSH-10, a response BHS-11)."""
    return _next_control_id()


def _location(text: str | None) -> tuple[str, str, str]:
    """("PID", "1", "3") from "PID-3"; empty parts when unknown."""
    match = re.match(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+))?", text or "")
    if not match:
        return "", "", ""
    return match[1], match[2] or "1", match[3] or ""


def build_ack(
    header: MessageHeader | None,
    code: AckCode | CommitCode,
    *,
    text: str | None = None,
    error_code: int | None = None,
    location: str | None = None,
    application: str = "MWLBROKER",
    facility: str = "",
    codec: str = "latin-1",
    control_id: str | None = None,
    warnings: Sequence[MessageWarning] = (),
) -> bytes:
    """The ACK for a message with ``header`` (``None`` when it had no MSH to read).

    MSA-2 always echoes MSH-10, MSH-5/6 answer MSH-3/4, and AE/AR (CE/CR) carry an ERR
    segment. ``control_id`` is the ACK's own MSH-10 when the caller needs to know it (an
    application acknowledgment sent through the outbound queue); else one is made up. An
    AA with ``warnings`` carries one ERR of severity W each from v2.5 on (ERR-4, table 0516),
    and says the first in MSA-3 up to v2.6. No text names a path of the broker's files.
    """
    text = for_sender(text) if text else text
    if code == AckCode.ACCEPT and warnings and not text:
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        text = f"accepted with a warning{more}: {for_sender(warnings[0].text)}"

    def received(index: int) -> str:
        return header.sent(index) if header is not None else ""

    sender_version = received(12).split("^")[0]
    version = _layout_version(sender_version)
    trigger = received(9).split("^")[1] if received(9).count("^") >= 1 else ""
    condition = HL7ErrorCode(error_code or HL7ErrorCode.APPLICATION_INTERNAL_ERROR)
    segment, sequence, field = _location(location)
    values = {
        # Fields echoed from the sender are already in HL7 encoding: copied as they came.
        "MSH3": escape(application),
        "MSH4": escape(facility),
        "MSH5": received(3),
        "MSH6": received(4),
        "MSH7": datetime.now().strftime("%Y%m%d%H%M%S"),
        "MSH10": control_id or _next_control_id(),
        "MSH11": received(11).split("^")[0] or "P",
        "MSH12": escape(sender_version or version),
        "MSH18": received(18).split("~")[0],
        "MSA2": received(10),
        # MSA-3 Text Message (ST, 80 in v2.3.1): what most RIS consoles show.
        "MSA3": escape((text or "")[:80]),
        "ERR1": f"{segment}^{sequence}^{field}^{condition.value}&{condition.text}&HL70357",
        "ERR2": "^".join(filter(None, [segment, sequence, field])),
        "ERR3CODE": str(condition.value),
        "ERR3TEXT": escape(condition.text),
        "ERR8": escape(text or ""),
    }
    er7 = fill(_template(version, trigger, code.value), values)
    if code == AckCode.ACCEPT and warnings and _version(version) >= (2, 5):
        er7 += "".join(
            "\r" + _warning_segment(version, trigger, warning)
            for warning in warnings[:_MAX_WARNINGS]
        )
    return er7.encode(codec, errors="replace")


_MAX_WARNINGS = 20  # ERR segments in one ACK; the message's record keeps them all


def _warning_segment(version: str, trigger: str, warning: MessageWarning) -> str:
    """One ERR of severity W (ERR-4, HL7 table 0516), laid out as the version's AE ERR is."""
    layout = _template(version, trigger, AckCode.ERROR.value).rsplit("\r", 1)[1]
    layout = layout.replace("^HL70357|E|", "^HL70357|W|", 1)
    segment, sequence, field = _location(warning.location)
    condition = warning.error_code
    values = {
        "ERR2": "^".join(filter(None, [segment, sequence, field])),
        "ERR3CODE": str(condition.value),
        "ERR3TEXT": escape(condition.text),
        "ERR8": escape(for_sender(warning.text)),
    }
    return fill(layout, values)


@lru_cache(maxsize=512)
def _template(version: str, trigger: str, code: str) -> str:
    """The ACK's structure for one version, trigger and code, built by hl7apy once.

    hl7apy knows each version's segments and fields (MSH-9's form, ERR-1 before v2.5 and
    ERR-2..8 after); building a whole message with it costs milliseconds, so the broker builds
    each shape once with placeholders and fills in the values per message.
    """
    # MSH-9.3 Message Structure exists from v2.3.1 on.
    modern = _version(version) >= (2, 3, 1)
    ack = Message("ACK", version=version)
    header = ack.msh
    placeholders(header, 3, 4, 5, 6, 7, 10, 11, 12, 18)
    header.msh_9 = "^".join(
        ["ACK", trigger, "ACK"] if modern and trigger else ["ACK", trigger]
    ).rstrip("^")
    ack.msa.msa_1 = code
    # MSA-3 Text Message was withdrawn in v2.7: from then on the text travels in ERR-8 only.
    placeholders(ack.msa, *((2,) if _version(version) >= (2, 7) else (2, 3)))
    if code not in _ACCEPTED:
        err = ack.add_segment("ERR")
        if _version(version) >= (2, 5):
            placeholders(err, 2, 8)
            err.err_3 = "QQERR3CODEQQ^QQERR3TEXTQQ^HL70357"
            err.err_4 = "E"
        else:
            # ERR-1 Error Code and Location: segment ^ sequence ^ field ^ code&text&table
            placeholders(err, 1)
    er7: str = ack.to_er7()
    if code not in _ACCEPTED and not _has_err_1(version):
        # ERR-1 was withdrawn in v2.7, but a withdrawn field keeps its sequence number and is
        # sent empty: ERR-2 Error Location stays the second field. hl7apy's v2.8 tables leave
        # ERR-1 out altogether, so every field after it would slide one place left (the
        # location read as ERR-1, the code as ERR-2, the required ERR-4 Severity empty).
        er7 = er7.replace("\rERR|", "\rERR||", 1)
    return er7


def _version(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@lru_cache(maxsize=64)
def _layout_version(sender_version: str) -> str:
    """The version whose ACK layout answers ``sender_version`` (MSH-12 still echoes the sender's).

    The sender's own where hl7apy knows it; else the newest it knows that is not newer (2.7.1
    is answered in the 2.7 layout); v2.1 and v2.2 in v2.3's, the oldest with MSH-18; anything
    unreadable in 2.5.1's.
    """
    if sender_version in SUPPORTED_LIBRARIES and _version(sender_version) >= (2, 3):
        return sender_version
    wanted = _version(sender_version)
    if not wanted or sender_version.count(".") + 1 != len(wanted) or wanted[0] != 2:
        return _FALLBACK_VERSION
    known = [v for v in SUPPORTED_LIBRARIES if (2, 3) <= _version(v) <= wanted]
    return max(known, key=_version) if known else "2.3"


@lru_cache(maxsize=32)
def _has_err_1(version: str) -> bool:
    """Whether hl7apy's tables for ``version`` still hold ERR-1's position."""
    return "ERR_1" in Segment("ERR", version=version).structure_by_name
