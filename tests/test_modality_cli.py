"""The modality emulator as a site runs it before go-live: `mwlbroker modality ...` subprocesses
against a running broker, with a RIS listening for the status messages.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mwlbroker.app import Broker
from mwlbroker.store import images, worklist
from mwlbroker.store.tables import StepRow
from tests.support.hl7_messages import ack_fields, orm, segment_fields
from tests.support.mllp_peers import Peer
from tests.support.prerequisites import require_tools
from tests.support.processes import cli_env, run_cli, start_serve
from tests.support.samples import SAMPLES, sample_files


def emulate(broker: Broker, database_url: str, state: Path, *args: str):
    return run_cli(
        "modality",
        *args,
        "--port",
        str(broker.dicom.port),
        "--aet",
        "CT1",
        "--state",
        str(state),
        env=cli_env(database_url),
    )


def step_of(broker: Broker, accession: str) -> StepRow:
    with broker.db.reading() as session:
        return worklist.search_steps(session, accession_number=accession)[0]


def test_the_whole_loop_with_the_emulator(broker_factory, ris, database_url, tmp_path):
    broker = broker_factory(
        progress__complete_on="both",
        progress__images_quiet_seconds=3600,
        outbound__destinations=[{"name": "RIS", "host": "127.0.0.1", "port": ris.port}],
    )
    with Peer(broker.hl7.port) as peer:
        for control_id in ("C1", "C2"):
            assert ack_fields(peer.send(orm(control_id)))["MSA"][1] == "AA"
    state = tmp_path / "modality"

    listed = emulate(broker, database_url, state, "worklist", "--modality", "CT", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(item["accession_number"] for item in json.loads(listed.stdout)) == [
        "APLC1",
        "APLC2",
    ]

    started = emulate(broker, database_url, state, "start", "APLC1")
    assert started.returncode == 0, started.stderr
    assert "IN PROGRESS: success (0000)" in started.stdout
    assert step_of(broker, "APLC1").status == "STARTED"
    again = emulate(broker, database_url, state, "start", "APLC1")
    assert again.returncode == 1 and "refused (0111)" in again.stdout

    remaining = emulate(broker, database_url, state, "worklist", "--json")
    assert [item["accession_number"] for item in json.loads(remaining.stdout)] == ["APLC2"]

    stored = emulate(broker, database_url, state, "store", "APLC1", "--images", "3")
    assert stored.returncode == 0, stored.stderr
    assert "3 of 3 image(s) stored" in stored.stdout
    completed = emulate(broker, database_url, state, "complete", "APLC1", "--images", "3")
    assert completed.returncode == 0, completed.stderr
    assert "COMPLETED: success (0000)" in completed.stdout

    step = step_of(broker, "APLC1")
    assert step.status == "COMPLETED"
    with broker.db.reading() as session:
        study = images.find_study(session, step.study_instance_uid)
    assert study is not None and (study.instance_count, study.order_id) == (3, step.order_id)
    messages = ris.wait_for(2)
    assert [segment_fields(m, "ORC")[5] for m in messages] == ["IP", "CM"]
    assert all(segment_fields(m, "ORC")[2] == "PLC1" for m in messages)

    # The second order: started, then discontinued.
    assert emulate(broker, database_url, state, "start", "APLC2").returncode == 0
    stopped = emulate(broker, database_url, state, "discontinue", "APLC2")
    assert stopped.returncode == 0, stopped.stderr
    assert step_of(broker, "APLC2").status == "DISCONTINUED"
    assert [segment_fields(m, "ORC")[5] for m in ris.wait_for(4)[2:]] == ["IP", "DC"]
    final = emulate(broker, database_url, state, "complete", "APLC2")
    assert final.returncode == 1 and "refused (0110)" in final.stdout
    assert "may no longer be updated" in final.stdout


def test_emulator_errors_are_one_clear_line(broker, database_url, tmp_path):
    unknown = emulate(broker, database_url, tmp_path, "start", "NO-SUCH-ACCESSION")
    assert unknown.returncode == 1
    assert "no worklist item with accession 'NO-SUCH-ACCESSION'" in unknown.stderr
    nobody = run_cli(
        "modality", "worklist", "--port", "1", "--state", str(tmp_path), env=cli_env(database_url)
    )
    assert nobody.returncode == 1 and "no association" in nobody.stderr


def test_the_readme_loop_through_serve_with_dcmtk(database_url, tmp_path, ris):
    """The quick tour's whole loop: samples, findscu, emulator MPPS, dump2dcm + storescu."""
    require_tools("findscu", "storescu", "dump2dcm")
    served = start_serve(
        database_url, cwd=tmp_path, MWLBROKER_OUTBOUND_DESTINATIONS=f"RIS=127.0.0.1:{ris.port}"
    )
    try:
        env = cli_env(database_url)
        samples = [str(path) for path in sample_files()]
        sent = run_cli("send", "-q", "--port", str(served.hl7_port), *samples, env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        port = str(served.dicom_port)

        def ct_worklist(aet: str) -> str:
            keys = [
                "PatientName",
                "AccessionNumber",
                "ScheduledProcedureStepSequence[0].Modality=CT",
            ]
            found = subprocess.run(
                [
                    "findscu",
                    "-W",
                    *("-aet", aet, "-aec", "MWLBROKER", "127.0.0.1", port),
                    *(arg for key in keys for arg in ("-k", key)),
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert found.returncode == 0, found.stderr
            return found.stdout + found.stderr

        assert "ACC20261128001" in ct_worklist("CT1")
        modality = ["modality", "--port", port, "--aet", "CT1", "--state", str(tmp_path / "m")]
        started = run_cli(modality[0], "start", "ACC20261128001", *modality[1:], env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        listed = ct_worklist("CT2")
        assert "ACC20261128001" not in listed and "APT778123-1" in listed

        image = tmp_path / "ct.dcm"
        made = subprocess.run(
            ["dump2dcm", "--write-xfer-little", str(SAMPLES / "ct_image.dump"), str(image)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert made.returncode == 0, made.stderr
        stored = subprocess.run(
            ["storescu", "-aet", "CT1", "-aec", "MWLBROKER", "127.0.0.1", port, str(image)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert stored.returncode == 0, stored.stderr
        done = run_cli(modality[0], "complete", "ACC20261128001", *modality[1:], env=env)
        assert done.returncode == 0, done.stdout + done.stderr

        studies = json.loads(run_cli("studies", "list", "--json", env=env).stdout)
        assert [(s["accession_number"], s["instances"], s["matched_by"]) for s in studies] == [
            ("ACC20261128001", 1, "study uid")
        ]
        messages = ris.wait_for(2)
        assert [segment_fields(m, "ORC")[5] for m in messages] == ["IP", "CM"]
        assert segment_fields(messages[0], "PID")[5] == "MÜLLER^JÖRG"
    finally:
        assert served.terminate() == 0
