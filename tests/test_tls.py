"""MLLP over TLS, both ways, with real handshakes: the listener, mutual TLS, the RIS side.

Certificates come from a throw-away CA made by trustme for each test session. Peers are the
broker's own `mwlbroker send` (as a RIS integration engineer would test), a raw socket speaking
plain MLLP to a TLS port, and a TLS MLLP server playing the RIS for status messages.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mwlbroker.mllp.framing import FrameDecoder, frame
from tests.support.hl7_messages import hl7, segment_fields
from tests.support.polling import wait_until
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES
from tests.support.workflow import order, perform

SAMPLE = str(SAMPLES / "02_orm_o01_nw_v231.hl7")


def _send(database_url: str, port: int, *flags: str) -> tuple[int, str, str]:
    done = run_cli(
        "send", "--host", "127.0.0.1", "--port", str(port), "-q", *flags, SAMPLE,
        env=cli_env(database_url),
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_tls_listener_accepts_tls_and_closes_plain_mllp(broker_factory, database_url, pki):
    broker = broker_factory(hl7__tls_cert=pki["server.pem"], hl7__tls_key=pki["server.key"])
    port = broker.hl7.port

    code, out, err = _send(database_url, port, "--tls", "--ca", pki["ca.pem"])
    assert code == 0, err
    assert ": AA " in out

    # A sender speaking plain MLLP to the TLS port gets no ACK, only a closed connection.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(frame(Path(SAMPLE).read_bytes()))
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := plain.recv(4096):
                received += chunk
        assert b"MSA" not in received

    # A client that does not trust the broker's certificate refuses to go on.
    code, _, err = _send(database_url, port, "--tls", "--ca", pki["stranger-ca.pem"])
    assert code == 1 and "TLS with 127.0.0.1" in err and "CERTIFICATE_VERIFY_FAILED" in err

    code, out, _ = _send(database_url, port, "--tls", "--ca", pki["ca.pem"])
    assert code == 0 and ": AA " in out  # still serving, the resend answered again


def test_mutual_tls_refuses_senders_without_a_certificate_of_the_site_ca(
    broker_factory, database_url, pki
):
    broker = broker_factory(
        hl7__tls_cert=pki["server.pem"], hl7__tls_key=pki["server.key"], hl7__tls_ca=pki["ca.pem"]
    )
    port = broker.hl7.port
    trust = ("--tls", "--ca", pki["ca.pem"])

    code, _, err = _send(database_url, port, *trust)
    assert code == 1, "a sender without a client certificate was let in"
    code, _, err = _send(
        database_url, port, *trust, "--cert", pki["stranger.pem"], "--key", pki["stranger.key"]
    )
    assert code == 1, "a client certificate of another CA was accepted"

    code, out, err = _send(
        database_url, port, *trust, "--cert", pki["client.pem"], "--key", pki["client.key"]
    )
    assert code == 0, err
    assert ": AA " in out


class TLSRIS:
    """A RIS receiving status messages over MLLP with TLS, answering each with AA."""

    def __init__(self, cert: str, key: str) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.received: list[bytes] = []
        self.failed_handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.socket.accept()
            except OSError:
                return
            try:
                connection = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                self.failed_handshakes += 1
                raw.close()
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: ssl.SSLSocket) -> None:
        decoder = FrameDecoder()
        with connection:
            while data := connection.recv(65536):
                for received in decoder.feed(data):
                    self.received.append(received.payload)
                    control_id = segment_fields(received.payload, "MSH")[10]
                    connection.sendall(
                        frame(
                            hl7(
                                "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER||20261127150000||ACK|"
                                f"R{control_id}|P|2.3.1",
                                f"MSA|AA|{control_id}",
                            )
                        )
                    )

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def tls_ris(pki) -> Iterator[TLSRIS]:
    ris = TLSRIS(pki["server.pem"], pki["server.key"])
    yield ris
    ris.close()


def test_status_messages_reach_a_ris_over_tls(broker_factory, tls_ris, pki):
    destination = {
        "name": "RIS",
        "host": "127.0.0.1",
        "port": tls_ris.port,
        "tls": True,
        "tls_ca": pki["ca.pem"],
    }
    broker = broker_factory(outbound__destinations=[destination])
    perform(broker, order(broker, "TLS1"), "COMPLETED")
    wait_until(lambda: len(tls_ris.received) >= 2, timeout=15)
    assert [segment_fields(m, "ORC")[5] for m in tls_ris.received] == ["IP", "CM"]
    assert tls_ris.failed_handshakes == 0


def test_a_ris_whose_certificate_is_not_trusted_gets_nothing(broker_factory, tls_ris, pki):
    destination = {
        "name": "RIS",
        "host": "127.0.0.1",
        "port": tls_ris.port,
        "tls": True,
        "tls_ca": pki["stranger-ca.pem"],
    }
    broker = broker_factory(
        outbound__destinations=[destination],
        outbound__retry_seconds=0.05,
        outbound__retry_max_seconds=0.2,
    )
    perform(broker, order(broker, "TLS2"), "COMPLETED")
    wait_until(lambda: tls_ris.failed_handshakes >= 2, timeout=15)
    assert tls_ris.received == []


def test_a_certificate_file_that_cannot_be_used_stops_start_up(database_url, tmp_path, pki):
    cases = [
        (str(tmp_path / "missing.pem"), pki["server.key"], "missing.pem: no such file"),
        (pki["server.pem"], pki["client.key"], "cannot load"),  # a key of another certificate
    ]
    for cert, key, said in cases:
        env = cli_env(
            database_url,
            MWLBROKER_HL7_PORT="0",
            MWLBROKER_DICOM_PORT="0",
            MWLBROKER_WEB_PORT="0",
            MWLBROKER_HL7_TLS_CERT=cert,
            MWLBROKER_HL7_TLS_KEY=key,
        )
        done = run_cli("serve", env=env, cwd=tmp_path, timeout=60)
        assert done.returncode == 2
        assert "hl7.tls_cert/hl7.tls_key" in done.stderr and said in done.stderr
