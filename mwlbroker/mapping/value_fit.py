"""Which over-long values may be shortened to fit their VR, and how to shorten them.

A sender's free text (a physician's name, a description) may be longer than DICOM allows for
the attribute; cutting it costs nothing a modality matches on. The keys a worklist query
matches on and the broker finds orders by (PS3.4 Table K.6-1 and the columns a C-FIND narrows
on) are never cut: a shortened accession number or UID would name another exam. Cutting
respects the VR: a person name per component group, never inside an ISO 2022 escape sequence
and never between a character and the combining marks that follow it.
"""

from __future__ import annotations

import unicodedata

# Keys that identify the patient, the order or the exam, or that a worklist query matches on:
# an over-long value is refused (AE 102), whatever the profile's too_long: says.
STRICT_KEYWORDS = frozenset(
    {
        "PatientID",  # (0010,0020) LO, K.6-1 required matching key
        "IssuerOfPatientID",  # (0010,0021) LO, K.6-1 matching key
        "PatientName",  # (0010,0010) PN, K.6-1 required matching key
        "AccessionNumber",  # (0008,0050) SH, K.6-1 matching key
        "RequestedProcedureID",  # (0040,1001) SH, K.6-1 matching key
        "StudyInstanceUID",  # (0020,000D) UI
        "ScheduledProcedureStepID",  # (0040,0009) SH, K.6-1 matching key
        "ScheduledStationAETitle",  # (0040,0001) AE, K.6-1 required matching key
        "ScheduledStationName",  # (0040,0010) SH, K.6-1 matching key
        "ScheduledPerformingPhysicianName",  # (0040,0006) PN, K.6-1 required matching key
        "Modality",  # (0008,0060) CS, K.6-1 required matching key
        "ScheduledProcedureStepStartDate",  # (0040,0002) DA, K.6-1 required matching key
        "ScheduledProcedureStepStartTime",  # (0040,0003) TM, K.6-1 required matching key
        "PlacerOrderNumberImagingServiceRequest",  # (0040,2016) LO: how orders are found
        "FillerOrderNumberImagingServiceRequest",  # (0040,2017) LO: how orders are found
        "AdmissionID",  # (0038,0010) LO, K.6-1 matching key
    }
)

# Free-text VRs whose over-long values may be cut (PS3.5 Table 6.2-1 maximum lengths, in
# characters; PN per component group). Codes, dates, times, numbers and UIDs are never cut.
MAX_LENGTH = {"PN": 64, "LO": 64, "SH": 16, "ST": 1024, "LT": 10240}

_ESCAPE = "\x1b"  # ISO 2022 escape: ESC and up to three characters that name a character set


def may_truncate(keyword: str, vr: str) -> bool:
    """True when an over-long value of ``keyword`` may be cut to fit ``vr``."""
    return vr in MAX_LENGTH and keyword not in STRICT_KEYWORDS


def truncate(vr: str, value: str, *, multiple: bool = False) -> str:
    """``value`` cut to what ``vr`` allows: each value of a multi-valued attribute on its own,
    each component group (``=``) of a person name on its own."""
    limit = MAX_LENGTH[vr]
    values = value.split("\\") if multiple else [value]
    if vr == "PN":
        # PS3.5 6.2: 64 characters per component group, trailing empty components dropped.
        return "\\".join(
            "=".join(_cut_name(group, limit) for group in name.split("=")) for name in values
        )
    return "\\".join(_cut(part, limit).rstrip(" ") for part in values)


def _cut_name(group: str, limit: int) -> str:
    """A PN component group cut to ``limit``: whole components (family^given^middle^prefix^
    suffix) are kept and a component that does not fit is left out, rather than kept as a
    stump ("Dr" as "D"); only a family name longer than the limit is cut itself."""
    if len(group) <= limit:
        return group
    kept = _cut(group, limit)
    if group[len(kept)] != "^" and "^" in kept:
        kept = kept[: kept.rindex("^")]
    return kept.rstrip("^ ")


def _cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` characters that ends on a whole
    character: not inside an escape sequence, not before a combining mark."""
    if len(text) <= limit:
        return text
    end = limit
    escape = text.rfind(_ESCAPE, max(0, end - 3), end)
    if escape != -1:
        end = escape  # ESC $ ) C and the like are kept whole or not at all
    while end > 0 and unicodedata.combining(text[end]):
        end -= 1  # keep a base character with its accents
    return text[:end]
