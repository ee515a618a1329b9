"""Received instance files on disk, under ``storage.dir``: STUDY-UID/SERIES-UID/SOP-UID.dcm.

A file is written to a temporary name and synced before the database records it, then renamed
into place (atomic on one file system), so a name under the folder always holds a whole file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

_UID = re.compile(r"[0-9.]{1,64}")  # a UID is safe as a file name: digits and dots only


class InstanceFiles:
    """The folder of kept instance files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """Where an instance lives, relative to the folder; ValueError for a UID unfit for it."""
        for uid in (study_uid, series_uid, sop_uid):
            if not _UID.fullmatch(uid) or uid.strip(".") != uid:
                raise ValueError(f"UID {uid!r} cannot name a file")
        return f"{study_uid}/{series_uid}/{sop_uid}.dcm"

    def write_temporary(self, relative: str, data: bytes) -> Path:
        """Write ``data`` next to its final place under a temporary name, synced to disk."""
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".incoming-", dir=final.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        return Path(name)

    def put_in_place(self, temporary: Path, relative: str) -> None:
        """Rename a temporary file to its final name (replacing an earlier copy), durably."""
        final = self.root / relative
        os.replace(temporary, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def discard(self, temporary: Path) -> None:
        with contextlib.suppress(OSError):
            temporary.unlink()

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / relative).unlink()
