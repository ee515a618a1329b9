"""DCMTK's worklist SCP for comparison: the same items as worklist files, served by ``wlmscpfs``.

``wlmscpfs`` serves the ``*.wl`` files of the folder named after the called AE title, and
reads every one of them for each query. Started on a free loopback port with its defaults
(a process forked per association), except that incomplete files are not rejected (our items
leave out some type 2 attributes it checks for) and the files' character set is returned.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

AE_TITLE = "WLMSCPFS"


def write_worklist_file(folder: Path, name: str, item: dict[str, Any]) -> None:
    """Write one item (DICOM JSON) as ``folder/AE_TITLE/name.wl``, explicit VR little endian."""
    dataset = Dataset.from_json(item)
    dcmwrite(folder / AE_TITLE / f"{name}.wl", dataset, implicit_vr=False, little_endian=True)


def prepare_folder(folder: Path) -> Path:
    """An empty worklist folder for AE_TITLE, with the lock file wlmscpfs expects."""
    ae_folder = folder / AE_TITLE
    ae_folder.mkdir(parents=True, exist_ok=True)
    (ae_folder / "lockfile").touch()
    return folder


def available() -> str | None:
    """Why wlmscpfs cannot be run here, or ``None`` when it can."""
    if shutil.which("wlmscpfs") is None:
        return "DCMTK's wlmscpfs is not installed (apt-get install dcmtk)"
    return None


def version() -> str:
    """DCMTK's version as wlmscpfs reports it, e.g. ``3.6.7``."""
    try:
        done = subprocess.run(
            ["wlmscpfs", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return "unknown"
    for word in done.stdout.split():
        if word.startswith("v") and word[1:2].isdigit():
            return word[1:]
    return "unknown"


class Wlmscpfs:
    """A running ``wlmscpfs`` serving a folder; :meth:`stop` ends it."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
        self.host = host
        self.port = _free_port(host)
        self.log = folder / "wlmscpfs.log"  # a file, not a pipe: a full pipe would stall it
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["wlmscpfs", "-dfp", str(folder), "-dfr", "-csk", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_listening(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self, timeout: float) -> None:
        # wlmscpfs says nothing when it is ready, so try connecting until it accepts.
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                error = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"wlmscpfs exited with {self.process.returncode}: {error}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"wlmscpfs did not listen on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Wlmscpfs:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
