"""/metrics over real HTTP, read with Prometheus's own parser after real traffic.

A scraper needs no login, so the test also checks that no patient data leaks into it.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.dicom_peers import ct_image, storescu, write_images
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import RIS, Peer
from tests.support.polling import wait_until
from tests.support.prerequisites import require_tools
from tests.support.workflow import FAST_RETRIES, destination, order, perform


def scrape(port: int) -> tuple[str, dict[tuple[str, tuple], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def test_metrics_count_messages_acks_queues_and_jobs(broker_factory, tmp_path):
    with RIS(listening=False) as ris:  # down: the status messages wait in the queue
        broker = broker_factory(outbound__destinations=[destination(ris)], **FAST_RETRIES)
        _, before = scrape(broker.web.port)
        assert before[("mwlbroker_scheduler_leader", ())] == 1.0
        assert before[("mwlbroker_database_up", ())] == 1.0

        with Peer(broker.hl7.port) as peer:
            assert ack_fields(peer.send(orm("M1")))["MSA"][1] == "AA"
            assert ack_fields(peer.send(orm("M1")))["MSA"][1] == "AA"  # a resend
            failing = orm("M2", control="XX")  # an order control the mapping does not know
            assert ack_fields(peer.send(failing))["MSA"][1] == "AE"
        perform(broker, order(broker, "M3"), "COMPLETED")
        broker.jobs.run("health_check")

        text, after = scrape(broker.web.port)
        processed = (
            "mwlbroker_hl7_messages_total",
            (("outcome", "processed"), ("type", "ORM^O01")),
        )
        assert after[processed] == 2.0  # M1 and M3
        duplicate = (
            "mwlbroker_hl7_messages_total",
            (("outcome", "duplicate"), ("type", "ORM^O01")),
        )
        assert after[duplicate] == 1.0
        failed = ("mwlbroker_hl7_messages_total", (("outcome", "failed"), ("type", "ORM^O01")))
        assert after[failed] == 1.0
        assert after[("mwlbroker_hl7_ack_seconds_count", ())] == 4.0
        pending = ("mwlbroker_outbound_messages", (("destination", "RIS"), ("status", "pending")))
        assert after[pending] == 2.0  # IP and CM, waiting for the RIS
        job = (("job", "health_check"),)
        assert after[("mwlbroker_job_last_run_success", job)] == 1.0
        assert after[("mwlbroker_job_last_run_timestamp_seconds", job)] > 0
        assert "DOE" not in text and "PID1" not in text  # no patient data without a login

        # The DICOM side: the worklist query and the MPPS of perform(), and one image.
        assert after[("mwlbroker_cfind_queries_total", (("status", "0000"),))] == 1.0
        assert after[("mwlbroker_cfind_seconds_count", ())] == 1.0
        create = (("operation", "N-CREATE"), ("status", "0000"))
        assert after[("mwlbroker_mpps_total", create)] == 1.0
        final = (("operation", "N-SET"), ("status", "0000"))
        assert after[("mwlbroker_mpps_total", final)] == 1.0
        require_tools("storescu")
        image = ct_image(study_uid="1.2.826.0.1.3680043.10.1.7", accession="APLM3")
        stored = storescu(broker.dicom.port, *write_images(tmp_path, [image]))
        assert stored.returncode == 0, stored.stderr
        _, after = scrape(broker.web.port)
        assert after[("mwlbroker_cstore_total", (("status", "0000"),))] == 1.0
        wait_until(lambda: scrape(broker.web.port)[1][("mwlbroker_dicom_associations", ())] == 0)

        ris.listen()
        wait_until(lambda: scrape(broker.web.port)[1].get(pending) is None, timeout=20)
