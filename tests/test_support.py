"""The test helpers' own guards can fail: an empty listing, a state never reached, a state lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.polling import stays_true, wait_until
from tests.support.samples import listed, sample_files


def test_a_listing_that_finds_nothing_fails_naming_the_pattern(tmp_path: Path):
    (tmp_path / "note.txt").write_text("not a message")
    with pytest.raises(AssertionError, match=r"no file matches \*\.hl7 in "):
        listed(tmp_path, "*.hl7")


def test_the_samples_are_found():
    found = sample_files()
    assert found == sorted(found) and all(path.suffix == ".hl7" for path in found)


def test_wait_until_returns_the_value_once_true():
    calls = iter([0, "", "ready"])
    assert wait_until(lambda: next(calls), timeout=5) == "ready"


def test_wait_until_fails_with_what_it_waited_for():
    with pytest.raises(AssertionError, match="the row stored"):
        wait_until(lambda: False, timeout=0.05, what="the row stored")
    with pytest.raises(AssertionError, match=r"1 \+ 1 == 3"):
        wait_until(lambda: 1 + 1 == 3, timeout=0.05)  # without what: the predicate's source


def test_stays_true_fails_as_soon_as_the_state_is_lost():
    values = iter([True, True, False])
    with pytest.raises(AssertionError, match="one message only"):
        stays_true(lambda: next(values), seconds=30, what="one message only", interval=0.01)
    stays_true(lambda: True, seconds=0.05, interval=0.01)
