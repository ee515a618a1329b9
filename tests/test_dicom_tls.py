"""DICOM over TLS, both ways, with real handshakes: the listener, mutual TLS, the forwarder.

Certificates come from the throw-away CA of the ``pki`` fixture. Peers are pynetdicom SCUs
with an SSL context (as a modality's TLS stack would be), a raw socket that connects and says
nothing, a plain (non-TLS) association request, DCMTK's findscu with ``+tls``, and a pynetdicom
Storage SCP over TLS playing the PACS.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from mwlbroker.app import Broker
from mwlbroker.dicom.association_tuning import ClientAE
from tests.support.dicom_peers import ct_image
from tests.support.pacs import PACS, forwarding
from tests.support.polling import wait_until
from tests.support.prerequisites import require_tools
from tests.support.processes import cli_env, run_cli
from tests.support.workflow import order, store_images


def connection_threads() -> int:
    """Threads serving one accepted connection each (socketserver's ThreadingMixIn names them
    after ``process_request_thread``): one more means the listener has accepted a connection."""
    return sum(t.name.endswith("(process_request_thread)") for t in threading.enumerate())


def tls_listener(pki: dict[str, str], **extra: object) -> dict[str, object]:
    return {"dicom__tls_cert": pki["server.pem"], "dicom__tls_key": pki["server.key"], **extra}


def client_tls(ca: str, cert: str = "", key: str = "") -> tuple[ssl.SSLContext, str]:
    """A modality's TLS: trusts ``ca`` for the broker, presents ``cert`` when it has one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context, "localhost"


def associate(port: int, tls: tuple[ssl.SSLContext, str] | None) -> Association:
    ae = ClientAE(ae_title="CT1")  # pynetdicom's AE, closing its socket when refused
    ae.connection_timeout = ae.acse_timeout = ae.network_timeout = 10  # handshake included
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityWorklistInformationFind)
    return ae.associate("127.0.0.1", port, ae_title="MWLBROKER", tls_args=tls)


def echo(port: int, tls: tuple[ssl.SSLContext, str] | None) -> int | None:
    """The C-ECHO status, or None when no association was established."""
    assoc = associate(port, tls)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def worklist(port: int, tls: tuple[ssl.SSLContext, str], accession: str) -> list[Dataset]:
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    query.AccessionNumber = accession
    step = Dataset()
    step.Modality = ""
    step.ScheduledStationAETitle = ""
    query.ScheduledProcedureStepSequence = [step]
    assoc = associate(port, tls)
    assert assoc.is_established
    try:
        found = []
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None and "Status" in status, "no C-FIND response"
            if status.Status == 0xFF00:
                found.append(identifier)
        assert status.Status == 0x0000
        return found
    finally:
        assoc.release()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "tls_refused"]


def test_echo_and_worklist_over_tls_and_a_plain_association_is_refused(broker_factory, pki, caplog):
    broker: Broker = broker_factory(**tls_listener(pki))
    port = broker.dicom.port
    trusted = client_tls(pki["ca.pem"])
    step = order(broker, "DTLS1")

    assert echo(port, trusted) == 0x0000
    [item] = worklist(port, trusted, step.accession_number)
    assert item.AccessionNumber == step.accession_number
    assert item.PatientID == step.patient_id

    # A modality speaking plain DICOM to the TLS port gets no association, and it is logged.
    assert not associate(port, None).is_established
    assert refusals(caplog), "the refused handshake was not logged"
    # A modality that does not trust the broker's certificate does not go on either.
    assert echo(port, client_tls(pki["stranger-ca.pem"])) is None

    assert echo(port, trusted) == 0x0000  # still serving TLS clients
    assert [i.AccessionNumber for i in worklist(port, trusted, step.accession_number)] == [
        step.accession_number
    ]


def test_a_silent_client_does_not_hold_up_the_others(broker_factory, pki, caplog):
    broker = broker_factory(**tls_listener(pki, dicom__acse_timeout=3.0))
    port = broker.dicom.port
    trusted = client_tls(pki["ca.pem"])
    serving = connection_threads()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as silent:
        wait_until(
            lambda: connection_threads() > serving,
            what="the broker accepting the silent client, then waiting for its ClientHello",
        )
        started = time.monotonic()
        assert echo(port, trusted) == 0x0000
        assert echo(port, trusted) == 0x0000
        assert time.monotonic() - started < 2.5, "the echoes waited for the silent client"
        # The silent one is closed once dicom.acse_timeout has run out.
        assert silent.recv(1024) == b""
        assert time.monotonic() - started < 10
    assert any("timed out" in message for message in refusals(caplog))


def test_mutual_tls_refuses_modalities_without_a_certificate_of_the_site_ca(
    broker_factory, pki, caplog
):
    broker = broker_factory(**tls_listener(pki, dicom__tls_ca=pki["ca.pem"]))
    port = broker.dicom.port

    assert echo(port, client_tls(pki["ca.pem"])) is None, "no client certificate, let in"
    stranger = client_tls(pki["ca.pem"], pki["stranger.pem"], pki["stranger.key"])
    assert echo(port, stranger) is None, "a certificate of another CA was accepted"
    assert len(refusals(caplog)) >= 2

    member = client_tls(pki["ca.pem"], pki["client.pem"], pki["client.key"])
    assert echo(port, member) == 0x0000


def test_findscu_over_tls(broker_factory, pki, tmp_path):
    require_tools("findscu")
    help_text = subprocess.run(["findscu", "--help"], capture_output=True, text=True).stdout
    if "--enable-tls" not in help_text:
        pytest.skip("this DCMTK's findscu was built without TLS (no +tls in findscu --help)")
    broker = broker_factory(**tls_listener(pki, dicom__tls_ca=pki["ca.pem"]))
    step = order(broker, "DTLS2")

    done = subprocess.run(
        [
            "findscu",
            "-W",
            "-aet",
            "CT1",
            "-aec",
            "MWLBROKER",
            "+tls",
            pki["client.key"],
            pki["client.pem"],
            "+cf",
            pki["ca.pem"],
            "-X",
            "-od",
            str(tmp_path),
            "-k",
            "PatientName",
            "-k",
            "PatientID",
            "-k",
            f"AccessionNumber={step.accession_number}",
            "127.0.0.1",
            str(broker.dicom.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [response] = sorted(Path(tmp_path).glob("rsp*.dcm"))
    assert dcmread(response).AccessionNumber == step.accession_number

    # Without a client certificate (anonymous TLS), the same query gets nothing.
    done = subprocess.run(
        [
            "findscu",
            "-W",
            "-aet",
            "CT1",
            "-aec",
            "MWLBROKER",
            "+tla",
            "+cf",
            pki["ca.pem"],
            "-k",
            f"AccessionNumber={step.accession_number}",
            "127.0.0.1",
            str(broker.dicom.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0


def test_instances_are_forwarded_to_a_pacs_over_tls(broker_factory, pki, tmp_path):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.pem"], pki["server.key"])
    pacs = PACS(ssl_context=context).start()
    try:
        broker = broker_factory(
            **forwarding(
                pacs,
                forward__tls=True,
                forward__tls_ca=pki["ca.pem"],
                storage__dir=str(tmp_path / "spool"),
            )
        )
        image = ct_image(study_uid=generate_uid(), patient_name="TLS^WALKIN", patient_id="TLS9")
        store_images(broker, tmp_path, [image])
        [received] = pacs.wait_for(1)
        assert received.SOPInstanceUID == image.SOPInstanceUID
    finally:
        pacs.stop()


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"CERT": "missing.pem", "KEY": "server.key"}, "dicom.tls_cert/dicom.tls_key"),
        ({"CERT": "server.pem", "KEY": "client.key"}, "dicom.tls_cert/dicom.tls_key: cannot load"),
        ({"CERT": "server.pem", "KEY": "server.key", "CA": "missing.pem"}, "dicom.tls_ca: "),
        ({"CA": "ca.pem"}, "dicom.tls_ca needs dicom.tls_cert and dicom.tls_key"),
    ],
)
def test_a_dicom_certificate_that_cannot_be_used_stops_start_up(
    database_url, tmp_path, pki, settings, said
):
    env = cli_env(
        database_url,
        MWLBROKER_HL7_PORT="0",
        MWLBROKER_DICOM_PORT="0",
        MWLBROKER_WEB_PORT="0",
        **{
            f"MWLBROKER_DICOM_TLS_{name}": pki.get(file, str(tmp_path / file))
            for name, file in settings.items()
        },
    )
    done = run_cli("serve", env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr


def test_a_forward_certificate_that_cannot_be_used_stops_start_up(database_url, tmp_path):
    env = cli_env(
        database_url,
        MWLBROKER_HL7_PORT="0",
        MWLBROKER_DICOM_PORT="0",
        MWLBROKER_WEB_PORT="0",
        MWLBROKER_FORWARD_HOST="127.0.0.1",
        MWLBROKER_FORWARD_TLS="true",
        MWLBROKER_FORWARD_TLS_CA=str(tmp_path / "missing-ca.pem"),
    )
    done = run_cli("serve", env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "forward.tls_ca" in done.stderr and "missing-ca.pem" in done.stderr


def test_the_modality_emulator_speaks_tls(broker_factory, database_url, pki, tmp_path):
    broker = broker_factory(**tls_listener(pki, dicom__tls_ca=pki["ca.pem"]))
    step = order(broker, "DTLS3")

    def emulator(*tls: str):
        return run_cli(
            "modality", "worklist", "--port", str(broker.dicom.port), "--aet", "CT1",
            "--accession", step.accession_number, "--state", str(tmp_path), *tls,
            env=cli_env(database_url),
        )  # fmt: skip

    done = emulator(
        "--tls", "--ca", pki["ca.pem"], "--cert", pki["client.pem"], "--key", pki["client.key"]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 worklist item(s)" in done.stdout and step.accession_number in done.stdout
    refused = emulator("--tls", "--ca", pki["ca.pem"])  # no client certificate
    assert refused.returncode == 1 and "no association" in refused.stderr
    plain = emulator()
    assert plain.returncode == 1 and "no association" in plain.stderr
