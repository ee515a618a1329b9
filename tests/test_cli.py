"""The ``mwlbroker`` command as a user runs it: real subprocesses against real brokers and databases."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mwlbroker.app import Broker
from mwlbroker.store.migrate import head_revision
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES, sample_files

# Every sample file: numbered so that a shell glob sends them in the order of their story
# (John Doe is registered, ordered, changed, cancelled, updated and merged, then other orders
# and an appointment booked by SIU).
SAMPLE_FILES = sample_files()
GARBAGE = bytes(b for b in range(256) if b not in (0x0B, 0x1C)) * 4  # no MLLP block characters
ACCEPTING_29 = {"MWLBROKER_HL7_ACCEPTED_VERSIONS": "2.3.1,2.5.1,2.9"}


def ack_lines(stdout: str) -> dict[str, str]:
    """MSA-1 per file from the output of ``mwlbroker send`` ("FILE: AA RIS0000001")."""
    codes = {}
    for line in stdout.splitlines():
        if line and not line[0].isspace():
            name, _, rest = line.partition(": ")
            codes[name] = rest.split(" ", 1)[0]
    return codes


def send(
    broker: Broker, *files: Path | str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``mwlbroker send FILE...`` to the broker's MLLP port."""
    return run_cli("send", "--port", str(broker.hl7.port), *map(str, files), env=env)


def list_json(env: dict[str, str], *args: str) -> list[dict]:
    listed = run_cli("messages", "list", "--json", *args, env=env)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def show_json(env: dict[str, str], message_id: int) -> dict:
    shown = run_cli("messages", "show", str(message_id), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def config_shown(stdout: str) -> dict[str, tuple[str, str]]:
    """``section.name`` -> (value as printed, source) from the output of ``config show``."""
    shown, section = {}, ""
    for line in stdout.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif " = " in line:
            name, _, rest = line.partition(" = ")
            value, _, source = rest.partition("  # ")
            shown[f"{section}.{name}"] = (value, source)
    return shown


def env_without_database(**extra: str) -> dict[str, str]:
    """The caller's environment with no MWLBROKER_* setting but ``extra``."""
    env = cli_env("sqlite://")
    del env["MWLBROKER_DATABASE_URL"]
    return {**env, **extra}


def write_toml(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "mwlbroker.toml"
    path.write_text(content, encoding="utf-8")
    return path


# -- mwlbroker send ---------------------------------------------------------------------------------


def test_send_prints_aa_for_each_sample_file(broker: Broker, database_url: str) -> None:
    # 11: an SIU^S12 appointment from the scheduler; 12: an OMG^O19 general order; 13, 14: an
    # ORM^O01 and an OMI^O23 with two orders each; 15-20: v2.5 to v2.8 orders with TQ1, an OMI
    # without IPC, a v2.8 ADT, a v2.6 SIU with TQ1; 23-26: ADT A06, A02, A12 (the visit moves
    # on) and A24 (a link); 30: an OMI^O23 whose over-long physician names are cut with a
    # warning (still AA); 32, 33, 34: an ORM^O01, an OMI^O23 and an OMG^O19 carrying every IHE
    # Table B-1 attribute
    needed = {"11", "12", "13", "14", "15", "20", "23", "26", "30", "32", "34"}
    assert {path.name[:2] for path in SAMPLE_FILES} >= needed
    sent = send(broker, *SAMPLE_FILES, env=cli_env(database_url))

    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert ack_lines(sent.stdout) == {str(path): "AA" for path in SAMPLE_FILES}


def test_send_garbage_gets_ar_and_the_broker_keeps_accepting(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.hl7"
    garbage.write_bytes(GARBAGE)
    good = SAMPLES / "02_orm_o01_nw_v231.hl7"
    env = cli_env(database_url)

    rejected = send(broker, garbage, env=env)
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    assert ack_lines(rejected.stdout) == {str(garbage): "AR"}

    # The same connection carries on after the garbage, and so does the broker.
    both = send(broker, garbage, good, env=env)
    assert both.returncode == 1
    assert ack_lines(both.stdout) == {str(garbage): "AR", str(good): "AA"}
    accepted = send(broker, SAMPLES / "03_orm_o01_xo_v231.hl7", env=env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert ack_lines(accepted.stdout) == {str(SAMPLES / "03_orm_o01_xo_v231.hl7"): "AA"}


def test_send_a_missing_file_exits_2_and_sends_nothing(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-message.hl7"
    env = cli_env(database_url)

    sent = send(broker, SAMPLES / "02_orm_o01_nw_v231.hl7", missing, env=env)

    assert sent.returncode == 2
    assert str(missing) in sent.stderr
    assert "No such file" in sent.stderr
    assert list_json(env) == []  # the good file before it was not sent either


def test_send_to_a_port_nobody_listens_on_exits_1() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = unused.getsockname()[1]
        sent = run_cli(
            "send", "--port", str(port), str(SAMPLES / "02_orm_o01_nw_v231.hl7"),
            env=env_without_database(),
        )  # fmt: skip

    assert sent.returncode == 1
    assert f"127.0.0.1:{port}" in sent.stderr
    assert sent.stderr.count("\n") == 1


# -- mwlbroker messages -------------------------------------------------------------------------


def test_messages_list_shows_what_the_broker_stored(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.hl7"
    garbage.write_bytes(GARBAGE)
    env = cli_env(database_url)
    send(broker, SAMPLES / "02_orm_o01_nw_v231.hl7", garbage, env=env)

    listed = run_cli("messages", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "CONTROL ID" in lines[0]
    processed = [line for line in lines if "RIS0000002" in line]
    assert len(processed) == 1
    assert "ORM^O01" in processed[0]
    assert "processed" in processed[0]
    assert " AA " in processed[0]
    rejected = [line for line in lines[1:] if "rejected" in line]
    assert len(rejected) == 1
    assert " AR " in rejected[0]

    only_rejected = list_json(env, "--status", "rejected")
    assert [(m["status"], m["ack_code"]) for m in only_rejected] == [("rejected", "AR")]
    assert only_rejected[0]["error"]
    assert only_rejected[0]["size"] == len(GARBAGE)


def test_messages_show_prints_the_segments_and_the_error(broker: Broker, database_url: str) -> None:
    message = orm("V29SHOW", version="2.9", patient="PSHOW")
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(message))["MSA"][1] == "AR"
    env = cli_env(database_url)
    [listed] = list_json(env, "--control-id", "V29SHOW")
    segments = message.decode("latin-1").rstrip("\r").split("\r")

    shown = run_cli("messages", "show", str(listed["id"]), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "rejected" in shown.stdout
    error_lines = [line for line in shown.stdout.splitlines() if line.startswith("error ")]
    assert len(error_lines) == 1
    assert "2.9" in error_lines[0]
    assert "MSH-12" in shown.stdout
    for segment in segments:
        assert segment in shown.stdout.splitlines()

    as_json = show_json(env, listed["id"])
    assert as_json["segments"] == segments
    assert as_json["status"] == "rejected"
    assert as_json["ack_code"] == "AR"
    assert "2.9" in as_json["error"]
    assert as_json["error_location"] == "MSH-12"


def test_messages_show_an_unknown_id_exits_1(broker: Broker, database_url: str) -> None:
    shown = run_cli("messages", "show", "999999", env=cli_env(database_url))

    assert shown.returncode == 1
    assert "999999" in shown.stderr
    assert shown.stdout == ""


def test_messages_reprocess_applies_a_rejected_message_once_the_cause_is_fixed(
    broker: Broker, database_url: str
) -> None:
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("V29FIX", version="2.9", patient="PFIX")))
    assert ack["MSA"][1] == "AR"  # 2.9 is not accepted by default
    env = cli_env(database_url)
    [listed] = list_json(env, "--control-id", "V29FIX")
    message_id = str(listed["id"])

    unchanged = run_cli("messages", "reprocess", message_id, env=env)
    assert unchanged.returncode == 1, unchanged.stdout + unchanged.stderr
    assert show_json(env, listed["id"])["status"] == "rejected"

    fixed = run_cli("messages", "reprocess", message_id, env=cli_env(database_url, **ACCEPTING_29))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "processed" in fixed.stdout
    after = show_json(env, listed["id"])
    assert after["status"] == "processed"
    assert after["ack_code"] == "AA"
    assert after["error"] is None
    assert after["attempts"] == 3
    assert len(list_json(env, "--control-id", "V29FIX")) == 1

    again = run_cli("messages", "reprocess", message_id, env=cli_env(database_url, **ACCEPTING_29))
    assert again.returncode == 1
    assert "already processed" in again.stderr
    assert show_json(env, listed["id"])["attempts"] == 3

    unknown = run_cli("messages", "reprocess", "999999", env=env)
    assert unknown.returncode == 1
    assert "no message with id 999999" in unknown.stderr


def test_messages_reprocess_applies_a_resent_rejected_message_once(
    broker: Broker, database_url: str
) -> None:
    # The RIS got AR and sent the same message again: two stored copies, both rejected.
    with Peer(broker.hl7.port) as peer:
        for _ in range(2):
            assert ack_fields(peer.send(orm("V29TWICE", version="2.9")))["MSA"][1] == "AR"
    env = cli_env(database_url, **ACCEPTING_29)
    copies = list_json(env, "--control-id", "V29TWICE")
    assert len(copies) == 2

    for copy in copies:
        run_cli("messages", "reprocess", str(copy["id"]), env=env)

    statuses = [m["status"] for m in list_json(env, "--control-id", "V29TWICE")]
    assert statuses.count("processed") == 1, statuses


# -- mwlbroker config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secret@db/x",
        "postgresql+psycopg://mwl:secret@db.example.org:5432/x?sslmode=require",
        "postgresql://u@db/x?password=secret",
    ],
)
def test_config_show_masks_the_database_password(url: str) -> None:
    shown = run_cli("config", "show", env=env_without_database(MWLBROKER_DATABASE_URL=url))

    assert shown.returncode == 0, shown.stderr
    # (the setting web.secret_key is named so; its value is masked too)
    assert "secret" not in shown.stdout.replace("secret_key", "") + shown.stderr
    value, source = config_shown(shown.stdout)["database.url"]
    assert "db" in value and "/x" in value  # still says which database
    assert source == "MWLBROKER_DATABASE_URL"


def test_config_show_reads_the_file_and_the_environment_overrides_it(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path,
        '[database]\nurl = "sqlite:///var/site.db"\n\n'
        '[hl7]\nport = 2600\n\n[dicom]\nae_title = "FROMFILE"\n',
    )

    from_file = run_cli("config", "show", "--config", str(config), env=env_without_database())
    assert from_file.returncode == 0, from_file.stderr
    shown = config_shown(from_file.stdout)
    assert shown["hl7.port"] == ("2600", str(config))
    assert shown["dicom.ae_title"] == ('"FROMFILE"', str(config))
    assert shown["database.url"] == ('"sqlite:///var/site.db"', str(config))
    assert shown["web.port"] == ("8080", "default")

    overridden = run_cli(
        "config", "show", "--config", str(config),
        env=env_without_database(MWLBROKER_HL7_PORT="2700"),
    )  # fmt: skip
    assert overridden.returncode == 0, overridden.stderr
    shown = config_shown(overridden.stdout)
    assert shown["hl7.port"] == ("2700", "MWLBROKER_HL7_PORT")
    assert shown["dicom.ae_title"] == ('"FROMFILE"', str(config))


BAD_CONFIGS = [
    pytest.param({"MWLBROKER_HL7_PORT": "abc"}, None, "hl7.port", id="env-port-not-a-number"),
    pytest.param({}, "[hl7]\nport = 70000\n", "hl7.port", id="file-port-out-of-range"),
    pytest.param({}, "[hl7]\nprot = 2575\n", "hl7.prot", id="file-unknown-key"),
    pytest.param({"MWLBROKER_HL7_PROT": "2575"}, None, "MWLBROKER_HL7_PROT", id="env-unknown"),
    pytest.param(
        {}, '[dicom]\nae_title = "A_TITLE_TOO_LONG_X"\n', "dicom.ae_title", id="file-ae-title"
    ),
]


@pytest.mark.parametrize("command", [["config", "show"], ["serve"]], ids=["config-show", "serve"])
@pytest.mark.parametrize(("env", "toml", "key"), BAD_CONFIGS)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    command: list[str], env: dict[str, str], toml: str | None, key: str, tmp_path: Path
) -> None:
    args = [*command] if toml is None else [*command, "--config", str(write_toml(tmp_path, toml))]
    environment = cli_env(f"sqlite:///{tmp_path / 'broker.db'}", **env)

    result = run_cli(*args, env=environment, cwd=tmp_path, timeout=30)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert key in line
    assert not (tmp_path / "broker.db").exists()  # stopped before touching the database


# -- mwlbroker db -------------------------------------------------------------------------------


def test_db_upgrade_then_current_prints_the_head_revision(database_url: str) -> None:
    env = cli_env(database_url)
    head = head_revision()  # the newest migration this version ships ("0001" for the first)

    before = run_cli("db", "current", env=env)
    assert before.returncode == 0, before.stderr
    assert "mwlbroker db upgrade" in before.stdout

    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert head in upgraded.stdout

    current = run_cli("db", "current", env=env)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == head

    again = run_cli("db", "upgrade", env=env)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("revision", "advice"),
    [("0001", "run `mwlbroker db upgrade`"), ("9999", "upgraded by a newer version")],
)
def test_serve_refuses_a_postgresql_schema_at_another_revision(
    database_url: str, tmp_path: Path, revision: str, advice: str
) -> None:
    env = cli_env(database_url)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        engine.dispose()

    served = run_cli(
        "serve", env=cli_env(database_url, MWLBROKER_HL7_PORT="0"), cwd=tmp_path, timeout=30
    )

    assert served.returncode != 0
    assert advice in served.stderr
    assert revision in served.stderr
    assert served.stderr.count("\n") == 1


def test_send_prints_the_reason_unescaped_and_from_err_8_for_v2_8(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    # v2.3.1: the reason is in MSA-3, where "^" travels as \S\; v2.8: MSA-3 is withdrawn and
    # the reason travels in ERR-8. Either way the user reads it as the broker wrote it.
    old = tmp_path / "unknown_trigger_v231.hl7"
    old.write_bytes(orm("O99", msg_type="ORM^O99"))
    new = tmp_path / "change_unknown_v28.hl7"
    new.write_bytes(orm("XO28", version="2.8", control="XO", order="NOSUCH28"))
    env = cli_env(database_url)

    sent = send(broker, old, new, env=env)

    assert sent.returncode == 1
    lines = {line.split(":")[0]: line for line in sent.stdout.splitlines() if line[:1] != " "}
    assert lines[str(old)].startswith(f"{old}: AR O99 - ")
    assert "ORM^O99" in lines[str(old)]  # not ORM\S\O99
    assert lines[str(new)].startswith(f"{new}: A")
    assert " - " in lines[str(new)], lines[str(new)]  # a reason, not an empty line
