"""Write HL7 v2: escape free text, and fill message shapes that hl7apy built once.

hl7apy knows each version's segments and fields, but building a whole message with it costs
milliseconds. So every writer (ACKs, status messages for the RIS) builds each shape once with
hl7apy, with a placeholder ``QQNAMEQQ`` in each field that varies, caches the ER7 text, and
per message only escapes the values (:func:`escape`) and puts them in (:func:`fill`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mwlbroker.hl7v2.charsets import codec_for

_PLACEHOLDER = re.compile(r"QQ([A-Z0-9]+)QQ")


def fill(template: str, values: Mapping[str, str], *, trailing: str = "|^") -> str:
    """The template with every placeholder replaced by its (already escaped) value.

    Optional fields left empty would leave trailing separators (``trailing``) on a segment:
    HL7 drops them (chapter 2.5.3, "trailing delimiters may be omitted").
    """
    er7 = _PLACEHOLDER.sub(lambda match: values[match[1]], template)
    return "\r".join(line.rstrip(trailing) for line in er7.split("\r"))


def placeholders(segment: Any, *fields: int) -> None:
    """Put in each of ``fields`` of an hl7apy ``segment`` the placeholder named for the field
    (``QQPID3QQ`` in PID-3), which :func:`fill` replaces with ``values["PID3"]``."""
    for number in fields:
        setattr(segment, f"{segment.name.lower()}_{number}", f"QQ{segment.name}{number}QQ")


def escape(text: str) -> str:
    """HL7 escape sequences for free text (chapter 2.7): \\ first, then the delimiters."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", "\\X0D\\")
        .replace("\n", "\\X0A\\")
    )


def encode(text: str, charset: str) -> bytes:
    """The message in the MSH-18 character set ``charset``; what it cannot hold becomes ``?``."""
    return text.encode(codec_for(charset), errors="replace")
