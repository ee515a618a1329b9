"""Where the repository's files are, and listings of them that refuse to be empty.

A test that loops over every sample message passes as ``0 == 0`` when the glob finds nothing
(a moved folder, a renamed suffix). :func:`listed` fails instead, naming what it looked for.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLES = ROOT / "sample_messages"


def listed(folder: Path, pattern: str) -> list[Path]:
    """The files in ``folder`` matching ``pattern``, sorted; an AssertionError when there are none."""
    found = sorted(folder.glob(pattern))
    assert found, f"no file matches {pattern} in {folder}: a test over them would prove nothing"
    return found


def sample_files() -> list[Path]:
    """Every sample HL7 message (sample_messages/*.hl7), in the order of their story."""
    return listed(SAMPLES, "*.hl7")
