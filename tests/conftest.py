"""Fixtures that start the real broker on loopback, on SQLite and on PostgreSQL.

Fixtures only: the helpers they and the tests share are in tests/support/, and test modules
import them from there. PostgreSQL is found as tests/support/prerequisites.py describes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from sqlalchemy import create_engine, text

from mwlbroker.app import Broker
from tests.support.mllp_peers import RIS
from tests.support.prerequisites import POSTGRES_URL, postgres_or_skip
from tests.support.settings import make_config


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


@pytest.fixture
def ris() -> Iterator[RIS]:
    """A RIS on a free loopback port that receives the broker's status messages and answers AA."""
    with RIS() as receiver:
        yield receiver
