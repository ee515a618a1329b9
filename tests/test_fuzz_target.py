"""The atheris fuzz target of the intake (tests/fuzz/fuzz_intake.py), checked on every run.

Its input function runs here on the sample messages, framed and cut into reads, and on a
few broken variants, so the target is known to work whenever someone fuzzes with it. The
coverage-guided run itself needs atheris, which is optional: it runs for a few seconds when
installed (``pip install atheris``), and is skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from mwlbroker.mllp.framing import frame
from tests.fuzz.fuzz_intake import one_input
from tests.support.samples import sample_files

TARGET = Path(__file__).parent / "fuzz" / "fuzz_intake.py"


def _inputs() -> list[bytes]:
    found = []
    for path in sample_files():
        raw = path.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        stream = frame(raw)
        found += [bytes([cut]) + stream for cut in (0, 7, 31)]
        found.append(b"\x03" + frame(raw[: len(raw) // 2]))  # cut in the middle of a field
        found.append(b"\x05" + frame(raw.replace(b"|", b"\\", 3)))  # broken delimiters
    return found


@pytest.mark.parametrize("data", _inputs(), ids=lambda d: f"{len(d)}B")
def test_the_target_accepts_every_sample_and_its_broken_variants(data):
    one_input(data)


def test_a_short_coverage_guided_run():
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (optional: pip install atheris)")
    done = subprocess.run(
        [sys.executable, str(TARGET), "-max_total_time=10", "-rss_limit_mb=2048"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr
