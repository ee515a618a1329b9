"""The deploy/ files agree with the broker they deploy: settings, ports, the systemd unit.

An administrator copies these files as they are; a renamed setting or a port that no longer
matches would fail only on the day of installation. (No container engine runs here, so the
image and the compose file are checked for what they say, not built.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mwlbroker.config import SETTINGS, load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KNOWN_VARIABLES = {setting.env_var for setting in SETTINGS} | {"MWLBROKER_CONFIG"}


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\bMWLBROKER_[A-Z0-9_]+", text))


@pytest.mark.parametrize(
    "name", ["mwlbroker.example.toml", "mwlbroker.production.toml", "compose/mwlbroker.toml"]
)
def test_each_configuration_file_loads(name):
    config = load_config(DEPLOY / name, environ={})
    assert config["dicom.ae_title"]


def test_every_environment_variable_named_is_a_setting():
    for path in [
        DEPLOY / "Containerfile",
        DEPLOY / "compose" / "compose.yaml",
        DEPLOY / "mwlbroker.service",
    ]:
        named = _variables(path.read_text())
        assert named, f"{path.name} names no MWLBROKER_* variable: the check would prove nothing"
        unknown = named - KNOWN_VARIABLES
        assert not unknown, f"{path.name} names unknown settings: {unknown}"


def test_haproxy_sends_each_port_to_the_nodes_that_listen_on_it():
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    config = load_config(DEPLOY / "compose" / "mwlbroker.toml", environ={})
    ports = {config["hl7.port"], config["dicom.port"], config["web.port"]}
    nodes = {name for name in compose["services"] if name.startswith("node")}
    assert len(nodes) >= 2
    published = {int(p.split(":")[0]) for p in compose["services"]["haproxy"]["ports"]}
    assert published == ports

    haproxy = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    binds = {int(port) for port in re.findall(r"^\s*bind :(\d+)", haproxy, re.MULTILINE)}
    assert binds == ports
    servers = re.findall(r"^\s*server (\w+) (\w+):(\d+)", haproxy, re.MULTILINE)
    for port in ports:
        assert {host for _, host, p in servers if int(p) == port} == nodes
    # Health checks ask the node's readiness on its web port.
    assert haproxy.count("option httpchk GET /readyz") == 3
    assert f"check port {config['web.port']}" in haproxy

    for name in nodes:
        assert compose["services"][name]["image"] == compose["services"]["migrate"]["image"]
    assert compose["services"]["migrate"]["command"] == ["mwlbroker", "db", "upgrade"]
    # Logins must be honoured by every node behind the balancer: one signing key for all.
    assert "MWLBROKER_WEB_SECRET_KEY" in compose["x-node"]["environment"]


def test_the_image_runs_serve_as_an_unprivileged_user_and_checks_readiness():
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^USER mwlbroker$", text, re.MULTILINE)
    assert 'CMD ["mwlbroker", "serve"]' in text
    assert "/readyz" in text and "STOPSIGNAL SIGTERM" in text
    config = load_config(environ={})
    exposed = set(map(int, re.search(r"^EXPOSE (.+)$", text, re.MULTILINE).group(1).split()))
    assert exposed == {config["hl7.port"], config["dicom.port"], config["web.port"]}


def test_the_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (DEPLOY / "mwlbroker.service").read_text()
    assert "ExecStart=/opt/mwlbroker/bin/mwlbroker serve" in unit
    assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
    # Verify against the broker installed here, where the unit expects /opt/mwlbroker.
    script = Path(sys.executable).parent / "mwlbroker"
    local = tmp_path / "mwlbroker.service"
    local.write_text(unit.replace("/opt/mwlbroker/bin/mwlbroker", str(script)))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(local)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if str(local) in line or "mwlbroker.service" in line
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
