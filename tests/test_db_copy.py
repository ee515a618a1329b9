"""`mwlbroker db copy`: a site moves from the embedded SQLite file to another database.

The source is filled the way a site fills it (the sample messages over MLLP, an exam reported
by MPPS), copied with the command line, and the target is then served by a broker that must
answer the worklist as the old one did and go on numbering where it stopped.
"""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from mwlbroker.app import Broker
from mwlbroker.store.db import Database
from mwlbroker.store.tables import PatientRow, metadata
from tests.support.dicom_peers import Modality, in_progress
from tests.support.hl7_messages import ack_fields, hl7, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.samples import sample_files
from tests.support.settings import make_config


def _counts(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            return {
                table.name: connection.execute(select(func.count()).select_from(table)).scalar()
                for table in metadata.sorted_tables
            }
    finally:
        db.dispose()


def _accessions(port: int) -> list[str]:
    modality = Modality(port)
    try:
        return sorted(str(item.AccessionNumber) for item in modality.worklist())
    finally:
        modality.close()


@pytest.fixture
def site(tmp_path) -> tuple[str, list[str]]:
    """A SQLite database after a morning's work; returns its URL and the worklist it serves."""
    url = f"sqlite:///{tmp_path / 'site.db'}"
    broker = Broker(make_config(url))
    broker.start()
    try:
        # The patient the A40 samples merge away exists first, so the merged row (lower id)
        # points to its survivor (higher id): the copy must write that link after both.
        prior = hl7(
            "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261129090000||ADT^A04|PRIOR1|P|2.3.1",
            "EVN|A04|20261129090000",
            "PID|1||PID999999^^^HOSPITAL^MR||DOE^JON||19650412|M",
        )
        with Peer(broker.hl7.port) as peer:
            assert ack_fields(peer.send(prior))["MSA"][1] == "AA"
            for path in sample_files():
                assert ack_fields(peer.send(path.read_bytes()))["MSA"][1] == "AA", path.name
        modality = Modality(broker.dicom.port)
        try:
            item = modality.worklist()[0]
            assert modality.create(in_progress(item), generate_uid())[0].Status == 0x0000
        finally:
            modality.close()
        served = _accessions(broker.dicom.port)
    finally:
        broker.stop()
    return url, served


def test_copy_moves_every_row_and_the_target_goes_on_where_the_source_stopped(
    site, database_url, tmp_path
):
    source, served = site
    copied = run_cli("db", "copy", "--to", database_url, env=cli_env(source), cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert "copied" in copied.stdout

    before = _counts(source)
    assert before["message"] >= 11 and before["performed_step"] == 1
    assert _counts(database_url) == before
    db = Database(database_url)
    try:
        with db.reading() as session:  # the merge of the A40 samples survived the copy
            merged = session.scalars(
                select(PatientRow).where(PatientRow.merged_into_id.is_not(None))
            ).all()
            assert merged
    finally:
        db.dispose()

    broker = Broker(make_config(database_url))
    broker.start()
    try:
        assert _accessions(broker.dicom.port) == served
        with Peer(broker.hl7.port) as peer:
            assert ack_fields(peer.send(orm("AFTER")))["MSA"][1] == "AA"
    finally:
        broker.stop()
    assert _counts(database_url)["message"] == before["message"] + 1

    again = run_cli("db", "copy", "--to", database_url, env=cli_env(source), cwd=tmp_path)
    assert again.returncode == 1
    assert "nothing copied" in again.stderr and "already holds rows" in again.stderr


def test_copy_refuses_a_bad_target_url(site, tmp_path):
    source, _ = site
    done = run_cli("db", "copy", "--to", "mysql://db/x", env=cli_env(source), cwd=tmp_path)
    assert done.returncode == 2 and "--to" in done.stderr
