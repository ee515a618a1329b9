"""The broker in its own process: ``mwlbroker serve`` and the other commands, as a user runs them.

Used by the crash tests (a process can be killed) and the command-line tests. ``serve`` is
ready when it logs its "ready" line with the bound ports: the tests wait for that line, never
for a guessed time.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServeProcess:
    """A ``mwlbroker serve`` child process and the JSON log lines it has written so far."""

    process: subprocess.Popen
    hl7_port: int
    log: list[dict] = field(default_factory=list)
    reader: threading.Thread | None = None
    dicom_port: int = 0
    web_port: int = 0

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.close()

    def terminate(self) -> int:
        self.process.terminate()
        code = self.process.wait(30)
        self.close()
        return code

    def close(self) -> None:
        """Wait for the log reader to reach end of file, then close the pipe."""
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stderr is not None and not self.process.stderr.closed:
            self.process.stderr.close()


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    """This environment without MWLBROKER_* settings of its own, on ``database_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWLBROKER_")}
    env.update({"MWLBROKER_DATABASE_URL": database_url, **extra})
    return env


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mwlbroker ARGS`` as a user would, and capture what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "mwlbroker", *args],
        env=env,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_serve(
    database_url: str, cwd: Path, hl7_port: int = 0, timeout: float = 60.0, **extra: str
) -> ServeProcess:
    """Run ``mwlbroker serve`` and wait for its "ready" log line (no sleeping)."""
    env = cli_env(
        database_url,
        MWLBROKER_HL7_PORT=str(hl7_port),
        MWLBROKER_DICOM_PORT="0",
        MWLBROKER_WEB_PORT="0",
        MWLBROKER_LOG_FORMAT="json",
        **extra,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mwlbroker", "serve"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict] = []
    ready: queue.Queue[dict | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"message": line.rstrip()}
            lines.append(record)
            if record.get("event") == "ready":
                ready.put(record)
        ready.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    served = ServeProcess(process, 0, lines, reader)
    try:
        record = ready.get(timeout=timeout)
    except queue.Empty:
        record = None
    if record is None:
        served.kill()
        raise RuntimeError(f"mwlbroker serve did not become ready: {lines[-5:]}")
    served.hl7_port = int(record["hl7_port"])
    served.dicom_port = int(record["dicom_port"])
    served.web_port = int(record["web_port"])
    return served
