"""Settings: declared once, documented, loaded in order, and refused clearly when wrong."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from types import ModuleType

import pytest

from mwlbroker.config import SETTINGS, ConfigError, load_config
from tests.support.samples import ROOT

REFERENCE_HOOK = ROOT / "docs" / "hooks" / "settings_reference.py"


def _reference_hook() -> ModuleType:
    """The MkDocs hook that writes the configuration reference of the documentation site."""
    spec = importlib.util.spec_from_file_location("settings_reference", REFERENCE_HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_documented_in_the_reference_and_the_example():
    hook = _reference_hook()
    reference = hook.settings_reference()
    example = (ROOT / "deploy" / "mwlbroker.example.toml").read_text()
    assert len(SETTINGS) > 50, "the settings' declarations were not found"
    for setting in SETTINGS:
        assert setting.help, setting.key
        assert f">{setting.key}</code>" in reference, f"{setting.key} missing from the reference"
        assert f">{setting.env_var}</code>" in reference, f"{setting.env_var} missing"
        assert f"{setting.name} =" in example or f"[[{setting.key}]]" in example, setting.key


def test_the_site_builds_the_reference_into_the_configuration_page():
    hook = _reference_hook()
    assert hook.MARKER in (ROOT / "docs" / "configuration.md").read_text()
    assert "docs/hooks/settings_reference.py" in (ROOT / "mkdocs.yml").read_text()
    page = hook.on_page_markdown(f"# Configuration\n\n{hook.MARKER}\n", None, None, None)
    assert hook.MARKER not in page
    for section in {setting.section for setting in SETTINGS}:
        assert f"### `[{section}]`" in page, section


def test_a_setting_without_help_fails_the_reference():
    @dataclass
    class Undocumented:
        section: str = "hl7"
        name: str = "port"
        key: str = "hl7.port"
        env_var: str = "MWLBROKER_HL7_PORT"
        default: int = 2575
        help: str = ""
        secret: bool = False

    with pytest.raises(ValueError, match=r"hl7\.port has no help"):
        _reference_hook().render_settings([Undocumented()])


def test_the_example_configuration_loads():
    config = load_config(ROOT / "deploy" / "mwlbroker.example.toml", environ={})
    assert config["hl7.facility"] == "RADIOLOGY"
    assert config["outbound.destinations"][0] == {
        "name": "RIS",
        "host": "ris.example.org",
        "port": 2575,
        "version": "2.3.1",
        "receiving_application": "RIS",
        "receiving_facility": "HOSPITAL",
        "charset": "UNICODE UTF-8",
        "tls": False,
        "tls_ca": "",
        "tls_cert": "",
        "tls_key": "",
    }


def test_defaults_file_then_environment(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text('[hl7]\nport = 2600\nidle_timeout = 5\n[dicom]\nae_title = "FILEAE"\n')
    config = load_config(path, environ={"MWLBROKER_HL7_PORT": "2700"})
    assert config["hl7.port"] == 2700 and config.sources["hl7.port"] == "MWLBROKER_HL7_PORT"
    assert config["hl7.idle_timeout"] == 5.0 and config.sources["hl7.idle_timeout"] == str(path)
    assert config["dicom.ae_title"] == "FILEAE"
    assert config["web.port"] == 8080 and "web.port" not in config.sources


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"MWLBROKER_HL7_PORT": "abc"}, "hl7.port"),
        ({"MWLBROKER_HL7_PORT": "70000"}, "hl7.port"),
        ({"MWLBROKER_DICOM_AE_TITLE": "A" * 17}, "dicom.ae_title"),
        ({"MWLBROKER_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"MWLBROKER_LOG_LEVEL": "loud"}, "log.level"),
        ({"MWLBROKER_HL7_IDLE_TIMEOUT": "-1"}, "hl7.idle_timeout"),
        ({"MWLBROKER_OUTBOUND_DESTINATIONS": "RIS=nohostport"}, "outbound.destinations"),
        ({"MWLBROKER_OUTBOUND_DESTINATIONS": "RIS=ris:2575/2.6"}, "outbound.destinations"),
        ({"MWLBROKER_PROGRESS_COMPLETE_ON": "never"}, "progress.complete_on"),
        ({"MWLBROKER_HL7_PROT": "2575"}, "MWLBROKER_HL7_PROT"),
    ],
)
def test_bad_values_name_the_key(environ, key):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    assert str(caught.value).startswith(key)
    assert "\n" not in str(caught.value)


def test_bad_toml_names_file_and_key(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text("[hl7]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"^hl7\.prot: unknown setting"):
        load_config(path, environ={})
    path.write_text("[hl7\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_display_masks_the_database_password():
    config = load_config(environ={"MWLBROKER_DATABASE_URL": "postgresql://u:s3cret@db/x"})
    shown = dict((key, value) for key, value, _ in config.display())
    assert "s3cret" not in shown["database.url"] and "u:***@db" in shown["database.url"]


def test_outbound_destinations_in_short_and_json_form():
    short = load_config(
        environ={"MWLBROKER_OUTBOUND_DESTINATIONS": "RIS=ris:2575,PACS-RIS=10.0.0.9:6661/2.5.1"}
    )
    first, second = short["outbound.destinations"]
    assert (first["name"], first["version"], first["charset"]) == ("RIS", "2.3.1", "UNICODE UTF-8")
    assert (second["host"], second["port"], second["version"]) == ("10.0.0.9", 6661, "2.5.1")
    full = load_config(
        environ={
            "MWLBROKER_OUTBOUND_DESTINATIONS": '[{"name": "RIS", "host": "ris", "port": 2575, '
            '"version": "2.5.1", "receiving_application": "RIS", "charset": "8859/1"}]'
        }
    )
    [destination] = full["outbound.destinations"]
    assert destination["receiving_application"] == "RIS" and destination["charset"] == "8859/1"


def test_display_masks_the_web_secret_key():
    config = load_config(environ={"MWLBROKER_WEB_SECRET_KEY": "s3cr3t-value"})
    shown = {key: value for key, value, _ in config.display()}
    assert shown["web.secret_key"] == '"***"'
    assert {key: value for key, value, _ in load_config(environ={}).display()}[
        "web.secret_key"
    ] == '""'
