"""Fixtures that start the real broker on loopback, on SQLite and on PostgreSQL.

PostgreSQL is expected at MWLBROKER_TEST_POSTGRES_URL (default: the ``test`` database on
127.0.0.1:5432 as ``postgres``). Without it the PostgreSQL variants are skipped with the reason,
unless CI=true or MWLBROKER_TEST_REQUIRE_POSTGRES=1, where they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from sqlalchemy import create_engine, text

from mwlbroker.app import Broker
from mwlbroker.config import Config, load_config
from mwlbroker.mllp.framing import FrameDecoder, frame

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_messages"
POSTGRES_URL = os.environ.get(
    "MWLBROKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CI", "").lower() == "true" or os.environ.get(
    "MWLBROKER_TEST_REQUIRE_POSTGRES", ""
) not in ("", "0")


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any driver or network failure means "not available"
        return str(error).splitlines()[0]
    return None


_POSTGRES_STATE: dict[str, str | None] = {}


def postgres_or_skip() -> None:
    if "problem" not in _POSTGRES_STATE:
        _POSTGRES_STATE["problem"] = _postgres_problem()
    problem = _POSTGRES_STATE["problem"]
    if problem is None:
        return
    message = f"PostgreSQL not reachable at {POSTGRES_URL}: {problem}"
    if REQUIRE_POSTGRES:
        pytest.fail(message + " (required here: CI or MWLBROKER_TEST_REQUIRE_POSTGRES)")
    pytest.skip(message)


def require_tools(*tools: str) -> None:
    """Skip without the named DCMTK (or other) programs; in CI, where they must be, fail."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install dcmtk; ./run-tests does)"
    if REQUIRE_POSTGRES:  # CI: the README's test command installs them, so missing is a fault
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'broker.db'}"
        return
    postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def make_config(database_url: str, **overrides: object) -> Config:
    """The default configuration on free loopback ports, with ``section.name`` overrides."""
    values = {
        "database.url": database_url,
        "hl7.port": 0,
        "dicom.port": 0,
        "web.port": 0,
        "web.secret_key": "test-secret-key-not-for-production",
        **{key.replace("__", "."): value for key, value in overrides.items()},
    }
    return load_config(environ={}).with_overrides(values)


@pytest.fixture
def broker_factory(database_url: str) -> Iterator:
    """Start brokers with extra settings (``hl7__idle_timeout=0.5``); all stopped at the end."""
    started: list[Broker] = []

    def start(**overrides: object) -> Broker:
        broker = Broker(make_config(database_url, **overrides))
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A running broker with the default settings on free ports."""
    return broker_factory()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, str]:
    """PEM files of a throw-away CA (trustme): the CA, the broker's certificate, a client
    certificate (a RIS or a modality), and a stranger CA with a certificate of its own."""
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger_ca = trustme.CA(), trustme.CA()
    files: dict[str, str] = {}

    def write(name: str, blob: trustme.Blob) -> None:
        path = folder / name
        blob.write_to_path(str(path))
        files[name] = str(path)

    write("ca.pem", ca.cert_pem)
    server = ca.issue_cert("127.0.0.1", "localhost")
    write("server.pem", server.cert_chain_pems[0])
    write("server.key", server.private_key_pem)
    client = ca.issue_cert("ris.example.org")
    write("client.pem", client.cert_chain_pems[0])
    write("client.key", client.private_key_pem)
    stranger = stranger_ca.issue_cert("ris.example.org", "127.0.0.1")
    write("stranger-ca.pem", stranger_ca.cert_pem)
    write("stranger.pem", stranger.cert_chain_pems[0])
    write("stranger.key", stranger.private_key_pem)
    return files


# -- a plain MLLP peer over a real socket, independent of the broker's own client --------------


class Peer:
    """A raw MLLP client: sends bytes exactly as given and reads framed answers."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    def send_raw(self, data: bytes) -> None:
        self.socket.sendall(data)

    def send(self, message: bytes | str) -> bytes:
        if isinstance(message, str):
            message = message.encode("latin-1")
        self.send_raw(frame(message))
        return self.read_ack()

    def read_ack(self) -> bytes:
        while not self.frames:
            data = self.socket.recv(65536)
            if not data:
                raise ConnectionError("closed by the broker before an ACK")
            self.frames.extend(f.payload for f in self.decoder.feed(data))
        return self.frames.pop(0)

    def closed_by_server(self) -> bool:
        """True when the broker closed the connection (reads end of stream)."""
        try:
            return self.socket.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def ack_fields(ack: bytes) -> dict[str, list[str]]:
    """Segments of an ACK by ID, fields split so that index n is field n (MSH-n for MSH)."""
    segments: dict[str, list[str]] = {}
    for line in ack.decode("latin-1").split("\r"):
        if not line:
            continue
        parts = line.split("|")
        if parts[0] == "MSH":
            parts = ["MSH", "|", *parts[1:]]
        segments[parts[0]] = parts
    return segments


def hl7(*segments: str, charset: str = "latin-1") -> bytes:
    """A message from segment strings, CR-terminated as on the wire."""
    return ("\r".join(segments) + "\r").encode(charset)


def orm(
    control_id: str = "C1",
    *,
    version: str = "2.3.1",
    sender: str = "RIS",
    patient: str = "PID1",
    msg_type: str = "ORM^O01",
    control: str = "NW",
    order_status: str = "SC",
    order: str | None = None,
    extra: str = "",
) -> bytes:
    """A small but complete ORM^O01; the order number defaults to one per control ID."""
    order = order or f"PL{control_id}"
    return hl7(
        f"MSH|^~\\&|{sender}|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||{msg_type}|{control_id}|P|{version}",
        f"PID|1||{patient}^^^HOSPITAL^MR||DOE^JOHN||19700101|M",
        f"ORC|{control}|{order}|F{order}||{order_status}||^^^20261127143000^^R",
        f"OBR|1|{order}|F{order}|CTCHEST^CT chest^L||||||||||||||A{order}|R{order}|S{order}||||CT{extra}",
    )


# -- a broker in its own process, for crash tests and the command line ------------------------


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
    import queue

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


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll until ``predicate()`` is truthy and return it; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# -- a RIS receiving the broker's status messages over a real MLLP socket ----------------------


class RIS:
    """An MLLP receiver acting as the RIS: keeps each message and answers it.

    ``answer(message) -> "AA" | "AE" | "AR" | None`` decides each ACK (None: no answer at all).
    Made on a socket that is bound but not yet listening, a connection to it is refused until
    :meth:`listen` is called: the RIS is down, then up, on the same port.
    """

    def __init__(self, answer=None, *, listening: bool = True) -> None:
        self.answer = answer or (lambda _message: "AA")
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        if listening:
            self.listen()

    def listen(self) -> None:
        self.socket.listen(8)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with self._changed:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, connection: socket.socket) -> None:
        decoder = FrameDecoder()
        with connection:
            while not self._stopping.is_set():
                try:
                    data = connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for received in decoder.feed(data):
                    message = received.payload
                    code = self.answer(message)
                    with self._changed:
                        self.received.append(message)
                        self._changed.notify_all()
                    if code is None:
                        continue
                    control_id = segment_fields(message, "MSH")[10]
                    ack = hl7(
                        "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER||20261127150000||ACK|"
                        f"R{control_id}|P|2.3.1",
                        f"MSA|{code}|{control_id}|" + ("" if code == "AA" else "not now"),
                    )
                    connection.sendall(frame(ack))

    def wait_for(self, count: int, timeout: float = 15.0) -> list[bytes]:
        """The messages received, once there are at least ``count``; fails after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(
                    f"the RIS received {len(self.received)} message(s), not {count}, "
                    f"within {timeout} s"
                )
            return list(self.received)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread on Linux
        self.socket.close()

    def __enter__(self) -> RIS:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def segment_fields(message: bytes, segment: str, occurrence: int = 1) -> list[str]:
    """The fields of a segment, so that index n is field n (MSH-n for MSH); [] if absent."""
    seen = 0
    for line in message.decode("utf-8", errors="replace").split("\r"):
        if line.startswith(segment + "|"):
            seen += 1
            if seen == occurrence:
                parts = line.split("|")
                return ["MSH", "|", *parts[1:]] if segment == "MSH" else parts
    return []
