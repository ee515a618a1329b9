"""The HL7 v2 versions (MSH-12) the broker reads.

Every version from 2.3 to 2.8.2 is read by one reader: HL7 v2 only ever adds fields and
components at the end, and withdraws (never reuses) the positions it retires, so a field path
means the same thing in each of them. What moved between versions is read by the mapping
profiles from both places, the newer first: the order's timing from TQ1 (v2.5 on) before ORC-7
and OBR-27 (TQ, kept for backward compatibility in v2.5 and v2.6, withdrawn in v2.7).
"""

from __future__ import annotations

ACCEPTED_VERSIONS = (
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
)
"""The MSH-12 versions accepted unless ``hl7.accepted_versions`` says otherwise."""


def describe_versions(versions: tuple[str, ...]) -> str:
    """The versions for a person, runs of three or more collapsed: ``2.3 to 2.8.2``.

    A v2.3 ACK holds 80 characters of MSA-3 text: the default list written out would not fit
    beside the version refused, so a run of consecutive known versions is given by its ends.
    """
    order = {version: index for index, version in enumerate(ACCEPTED_VERSIONS)}
    parts: list[list[str]] = []
    for version in versions:
        run = parts[-1] if parts else None
        if run and version in order and run[-1] in order and order[version] == order[run[-1]] + 1:
            run.append(version)
        else:
            parts.append([version])
    return ", ".join(f"{run[0]} to {run[-1]}" if len(run) >= 3 else ", ".join(run) for run in parts)
