"""The broker under test, in its own process: ``python -m mwlbroker serve`` on free ports.

Its own process, so that its memory is the broker's alone and the load driver's work does not
share its interpreter lock. It is ready when it logs the JSON "ready" line with its ports;
its later log lines are read and dropped, so the pipe never fills.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path


class BrokerFailed(Exception):
    """The broker did not start; the message holds its last log lines."""


class BrokerProcess:
    """A running ``mwlbroker serve``; :meth:`stop` ends it with SIGTERM, as an operator would."""

    host = "127.0.0.1"

    def __init__(
        self, database_url: str, *, mappings: Path | None, cwd: Path, timeout: float = 120.0
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MWLBROKER_")}
        env.update(
            MWLBROKER_DATABASE_URL=database_url,
            MWLBROKER_HL7_PORT="0",
            MWLBROKER_DICOM_PORT="0",
            MWLBROKER_WEB_PORT="0",
            MWLBROKER_LOG_FORMAT="json",
        )
        if mappings is not None:
            env["MWLBROKER_MAPPINGS_DIR"] = str(mappings)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mwlbroker", "serve"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.tail: deque[str] = deque(maxlen=20)
        self.errors: list[str] = []  # log lines at level error, for the report
        self._ready: queue.Queue[dict | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_log, name="broker-log", daemon=True)
        self._reader.start()
        try:
            ready = self._ready.get(timeout=timeout)
        except queue.Empty:
            ready = None
        if ready is None:
            self.stop()
            raise BrokerFailed("mwlbroker serve did not become ready:\n  " + "\n  ".join(self.tail))
        self.hl7_port = int(ready["hl7_port"])
        self.dicom_port = int(ready["dicom_port"])
        self.ae_title = "MWLBROKER"

    def _read_log(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        waiting = True
        for line in stream:
            self.tail.append(line.rstrip())
            if '"level": "error"' in line and len(self.errors) < 20:
                self.errors.append(line.rstrip())
            if waiting and '"ready"' in line:
                with contextlib.suppress(json.JSONDecodeError):
                    record = json.loads(line)
                    if record.get("event") == "ready":
                        self._ready.put(record)
                        waiting = False
        self._ready.put(None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_mb(self) -> dict[str, float]:
        """Resident memory now and at its peak (Linux /proc), in MiB; empty elsewhere."""
        figures = {}
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return {}
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures["rss" if name == "VmRSS" else "peak"] = int(value.split()[0]) / 1024
        return figures

    def cpu_seconds(self) -> float | None:
        """CPU time the broker has used so far, user and system (Linux /proc); None elsewhere."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # after the command name: state is field 3, utime field 14 and stime field 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(10)
        if self.process.stderr is not None:
            with contextlib.suppress(OSError):
                self.process.stderr.close()
        return self.process.returncode

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
