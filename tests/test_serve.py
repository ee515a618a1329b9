"""The whole broker as a site runs it: `mwlbroker serve`, the RIS over MLLP, a modality over DICOM."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydicom import dcmread

from tests.support.processes import cli_env, run_cli, start_serve
from tests.support.samples import sample_files


def test_samples_sent_to_serve_come_back_to_findscu(database_url: str, tmp_path: Path) -> None:
    served = start_serve(database_url, cwd=tmp_path)
    try:
        env = cli_env(database_url)
        sent = run_cli(
            "send",
            "-q",
            "--port",
            str(served.hl7_port),
            *map(str, sample_files()),
            env=env,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr

        echo = subprocess.run(
            ["echoscu", "-aet", "MR2", "-aec", "MWLBROKER", "127.0.0.1", str(served.dicom_port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert echo.returncode == 0, echo.stderr

        out = tmp_path / "responses"
        out.mkdir()
        found = subprocess.run(
            [
                "findscu",
                "-W",
                "-aet",
                "MR2",
                "-aec",
                "MWLBROKER",
                "-X",
                "-od",
                str(out),
                "-k",
                "SpecificCharacterSet=ISO_IR 192",
                "-k",
                "PatientName",
                "-k",
                "AccessionNumber",
                "-k",
                "ScheduledProcedureStepSequence[0].Modality=MR",
                "-k",
                "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
                "127.0.0.1",
                str(served.dicom_port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert found.returncode == 0, found.stderr
        items = [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]
        names = sorted(str(item.PatientName) for item in items)
        # The MR orders among the samples: Anna Smith's two OBR, José García's OMI order, and
        # Omar Hassan's OMI without IPC (two OBR) and his SIU appointment.
        assert len(items) == 6, names
        assert names.count("HASSAN^OMAR^^MR") == 3, names
        assert any(name.startswith("García López^José Ángel") for name in names), names
        assert names.count("SMITH^ANNA^M^MRS") == 2, names  # XPN prefix is PN component 4
        assert served.terminate() == 0
    finally:
        if served.process.poll() is None:
            served.kill()
        served.close()
