"""The pynetdicom internals the DICOM edge relies on are the ones it was checked against.

:mod:`mwlbroker.dicom.association_tuning` lists, in its docstring, every pynetdicom name it
patches, overrides, copies the steps of or reads although pynetdicom does not promise to keep
it. Each is fingerprinted here as the checked version has it: the source of code (a SHA-256
of ``inspect.getsource``) and the parameters of methods that are overridden or called, the
shape of tables and switches. A new pynetdicom that changes any of them fails here, naming
the internal and quoting why the module needs it, instead of somewhere in a worklist query.

And nothing outside that module reaches for those internals, or applies pynetdicom's
process-wide settings at import time.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynetdicom
import pytest
from pynetdicom import _config, dsutils, service_class

from mwlbroker.dicom import association_tuning
from mwlbroker.dicom.association_tuning import CHECKED_AGAINST

ROOT = Path(__file__).resolve().parent.parent
SEAM = Path(association_tuning.__file__).resolve()


@dataclass(frozen=True)
class Code:
    """A function or method as the checked version has it."""

    sha256: str  # of inspect.getsource(...)
    parameters: tuple[str, ...] | None = None  # checked first: overridden or called with these


# Recorded against pynetdicom 3.0.4. When a new version changes one of these, re-read the
# changed code against association_tuning; only when its tuning still holds, record the new
# fingerprint here and the version in CHECKED_AGAINST.
CODE: dict[str, Code] = {
    "pynetdicom.ae.ApplicationEntity._create_socket": Code(
        "f56bca8888e1ce9f3d64f30608db5d89f003b0b1b31106d3178a550871a4030f",
        ("self", "assoc", "address", "tls_args"),
    ),
    "pynetdicom.ae.ApplicationEntity.make_server": Code(
        "6569298ac5cf837c040e6e5bcf3761f69f3792b21b15085f34ebbafcc29b9904",
        # request_handler rides in kwargs, on to server_class
        (
            "self",
            "address",
            "ae_title",
            "contexts",
            "ssl_context",
            "evt_handlers",
            "server_class",
            "kwargs",
        ),
    ),
    "pynetdicom.dimse.DIMSEServiceProvider.send_msg": Code(
        "a839cf2fb46976d9da29cf06fea41c04416b38d14fab612af12e5d869bd5b3f0",
        ("self", "primitive", "context_id"),
    ),
    "pynetdicom.dimse_messages.DIMSEMessage.encode_msg": Code(
        "73000c902c52832dab302ddb3bc274ea93d205a810a197225dd87d4c1212ba57",
        ("self", "context_id", "max_pdu_length"),
    ),
    "pynetdicom.dsutils.encode": Code(
        "0d29ffd5d358c45a6b20436a9a45ec4ea003631dd4323e827c87365624c71cf0",
        ("ds", "is_implicit_vr", "is_little_endian", "deflated"),
    ),
    "pynetdicom.dul.DULServiceProvider.__init__": Code(
        "c82dafa9438ddf70685917cb15d2bfbc814aa0ad5233ffb0ae650faedc7570f0"
    ),
    "pynetdicom.dul.DULServiceProvider._is_transport_event": Code(
        "8725ed03bb8fbdefef249d5d9888c120e6277d7b6aa2c4f537e23027186e1253", ("self",)
    ),
    "pynetdicom.dul.DULServiceProvider._process_recv_primitive": Code(
        "4c0ebbb3e646e35e8e5bbc27ee2f1e6b2c82bbf619232f47639a6cbae092ed39", ("self",)
    ),
    "pynetdicom.dul.DULServiceProvider.run_reactor": Code(
        "e3a10eb3a0931e4854af33b9496e92d9679522aca26b0e04da8967559b9e2803"
    ),
    "pynetdicom.presentation.PresentationContext.__init__": Code(
        "37a8842ac07cd8f364dba03f5f7a59c23a0068341873edd81d367ad0c75596d9"
    ),
    "pynetdicom.service_class.ServiceClass._c_find_scp": Code(
        "da242b908ef4848ceaec8937680dfe9d23705301f6bad99de6dd64786cd9a7ca"
    ),
    "pynetdicom.transport.AssociationServer.__init__": Code(
        "edacb98bdfb7b9744194698d47fa51d4e2d5c9ed02ef5fb5181f381b31118423",
        (
            "self",
            "ae",
            "address",
            "ae_title",
            "contexts",
            "ssl_context",
            "evt_handlers",
            "request_handler",
        ),
    ),
    "pynetdicom.transport.AssociationServer._bind_defaults": Code(
        "4cada43c3a1937240a09fdb33edfe2eeb1924a627b13a4e4471cd26f41fd2bf8"
    ),
    "pynetdicom.transport.AssociationServer.get_request": Code(
        "925a4f3a3042f6e4b944505d06dc19c41e10ff7dec5385c794d62d31fd000300", ("self",)
    ),
    "pynetdicom.transport.AssociationServer.shutdown": Code(
        "e8e2c3a41009886d8544d17ce01118a81bac81b612a1d17f30fc200971f41db9", ("self",)
    ),
    "pynetdicom.transport.AssociationSocket._shutdown_socket": Code(
        "e2b2628faa81a578480fd7963e54c64b5a97f0f7e834411b980b1729d1472306", ("self",)
    ),
    "pynetdicom.transport.RequestHandler._create_association": Code(
        "05c8d12b79863cdbdb901ce37187b7030a0434c5cd89d219ed0bedbda679a61e", ("self",)
    ),
}

# The DIMSE messages the tuned send_msg builds, by primitive (request table, response table).
_REQUESTS = {
    "C_ECHO": "C_ECHO_RQ",
    "C_STORE": "C_STORE_RQ",
    "C_FIND": "C_FIND_RQ",
    "C_MOVE": "C_MOVE_RQ",
    "C_GET": "C_GET_RQ",
    "N_EVENT_REPORT": "N_EVENT_REPORT_RQ",
    "N_GET": "N_GET_RQ",
    "N_SET": "N_SET_RQ",
    "N_ACTION": "N_ACTION_RQ",
    "N_CREATE": "N_CREATE_RQ",
    "N_DELETE": "N_DELETE_RQ",
}
_RESPONSES = {
    **{primitive: message[:-2] + "RSP" for primitive, message in _REQUESTS.items()},
    "C_CANCEL": "C_CANCEL_RQ",
}


def _message_table(expected: dict[str, str]) -> Callable[[Any], str | None]:
    def check(table: Any) -> str | None:
        if not isinstance(table, dict):
            return f"is a {type(table).__name__}, not a dict of primitive to message class"
        found = {primitive.__name__: message.__name__ for primitive, message in table.items()}
        if found != expected:
            return f"maps {found}, not {expected}"
        missing = [
            message.__name__
            for message in table.values()
            if not (hasattr(message, "primitive_to_message") and hasattr(message, "encode_msg"))
        ]
        return (
            f"holds messages without primitive_to_message/encode_msg: {missing}"
            if missing
            else None
        )

    return check


def _of_type(kind: type) -> Callable[[Any], str | None]:
    return lambda value: None if type(value) is kind else f"is a {type(value).__name__}, not {kind}"


def _encode_in_service_class(value: Any) -> str | None:
    # Stock, or wrapped once by tune_process() (a listener started earlier in this process).
    if inspect.unwrap(value) is not dsutils.encode:
        return f"is {value!r}, not pynetdicom.dsutils.encode (imported into service_class)"
    return None


# Names that are not code: what each must be for the module's use of it to hold.
SHAPES: dict[str, Callable[[Any], str | None]] = {
    "pynetdicom._config.LOG_HANDLER_LEVEL": _of_type(str),
    "pynetdicom._config.LOG_REQUEST_IDENTIFIERS": _of_type(bool),
    "pynetdicom._config.LOG_RESPONSE_IDENTIFIERS": _of_type(bool),
    "pynetdicom.dimse._RQ_TO_MESSAGE": _message_table(_REQUESTS),
    "pynetdicom.dimse._RSP_TO_MESSAGE": _message_table(_RESPONSES),
    "pynetdicom.service_class.encode": _encode_in_service_class,
}


def _listed() -> set[str]:
    """The pynetdicom names the seam's docstring says it relies on."""
    return set(re.findall(r"``(pynetdicom\.[\w.]+)``", association_tuning.__doc__ or ""))


def _why(name: str) -> str:
    """The docstring's item that names ``name``: why the seam needs it."""
    for item in (association_tuning.__doc__ or "").split("\n- ")[1:]:
        if f"``{name}``" in item:
            return " ".join(item.split())
    return "(not explained in the module docstring)"


def _resolve(name: str) -> Any:
    """The object a dotted name leads to: the longest importable module, then attributes."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            found = getattr(found, part)
        return found
    raise ImportError(name)


def _changed(name: str, what: str) -> str:
    return (
        f"pynetdicom {pynetdicom.__version__}: {name} {what}. "
        f"mwlbroker.dicom.association_tuning relies on it (checked against pynetdicom "
        f"{', '.join(CHECKED_AGAINST)}): {_why(name)} Re-read it against that module; when its "
        "tuning still holds, record the new fingerprint in tests/test_pynetdicom_seam.py."
    )


def test_every_internal_the_seam_lists_is_fingerprinted_and_no_other() -> None:
    listed, recorded = _listed(), set(CODE) | set(SHAPES)
    assert listed, "association_tuning's docstring names no pynetdicom internal"
    assert listed - recorded == set(), "listed in association_tuning but not fingerprinted here"
    assert recorded - listed == set(), (
        "fingerprinted here but no longer listed in association_tuning"
    )
    stated = re.search(
        r"checked against pynetdicom ([\w., ]+?) \(", association_tuning.__doc__ or ""
    )
    assert stated is not None, (
        "association_tuning's docstring does not say what it was checked against"
    )
    assert stated.group(1).split(", ") == list(CHECKED_AGAINST), (
        "association_tuning's docstring and CHECKED_AGAINST name different versions"
    )


def test_the_installed_pynetdicom_is_a_checked_version() -> None:
    assert pynetdicom.__version__ in CHECKED_AGAINST, (
        f"pynetdicom {pynetdicom.__version__} is installed, but association_tuning was checked "
        f"against {', '.join(CHECKED_AGAINST)} only. If every fingerprint in "
        "tests/test_pynetdicom_seam.py still matches, read the release notes for what the "
        "tuning relies on and add the version to CHECKED_AGAINST."
    )


@pytest.mark.parametrize("name", sorted(CODE))
def test_code_relied_on_is_unchanged(name: str) -> None:
    try:
        found = _resolve(name)
    except (ImportError, AttributeError):
        pytest.fail(_changed(name, "no longer exists"))
    recorded = CODE[name]
    if recorded.parameters is not None:
        parameters = tuple(inspect.signature(found).parameters)
        assert parameters == recorded.parameters, _changed(
            name, f"takes {parameters}, not {recorded.parameters}"
        )
    digest = hashlib.sha256(inspect.getsource(found).encode()).hexdigest()
    assert digest == recorded.sha256, _changed(
        name, f"has changed (source sha256 {digest}, recorded {recorded.sha256})"
    )


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_tables_and_switches_relied_on_keep_their_shape(name: str) -> None:
    try:
        found = _resolve(name)
    except (ImportError, AttributeError):
        pytest.fail(_changed(name, "no longer exists"))
    problem = SHAPES[name](found)
    assert problem is None, _changed(name, problem or "")


def _private_leaves() -> set[str]:
    """The underscore names the seam relies on, as attribute names another module might use."""
    names = re.findall(r"``[\w.]*?\b(_[a-z]\w*)``", association_tuning.__doc__ or "")
    return {name for name in names if not name.startswith("__")}


# Modules whose classes the seam subclasses, patches or copies the steps of: only it imports them.
_INTERNAL_MODULES = ("dimse", "dimse_messages", "dul", "service_class", "transport")
_SWITCHES = {name.rsplit(".", 1)[1] for name in SHAPES if name.startswith("pynetdicom._config.")}


def _offences(path: Path, private_leaves: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynetdicom"):
            modules = [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] != "pynetdicom":
                continue
            if any(part.startswith("_") for part in parts[1:]) or (
                len(parts) > 1 and parts[1] in _INTERNAL_MODULES
            ):
                found.append(f"{where} imports {module}")
        if isinstance(node, ast.Attribute) and (
            node.attr in private_leaves or node.attr in ("dul", "dimse")
        ):
            found.append(f"{where} uses .{node.attr}")
        if isinstance(node, ast.Attribute) and node.attr in _SWITCHES:
            found.append(f"{where} uses pynetdicom's process-wide {node.attr}")
    return found


def test_nothing_outside_the_seam_touches_pynetdicom_internals() -> None:
    leaves = _private_leaves()
    assert {"_create_association", "_is_transport_event", "_shutdown_socket"} <= leaves
    # The tests too: a test that patched pynetdicom would test a broker no site runs.
    sources = [*(ROOT / "mwlbroker").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    offences = [
        offence
        for path in sorted(sources)
        if path.resolve() not in (SEAM, Path(__file__).resolve())
        for offence in _offences(path, leaves)
    ]
    assert offences == [], "pynetdicom internals belong in association_tuning:\n" + "\n".join(
        offences
    )


def test_importing_the_broker_leaves_pynetdicom_stock() -> None:
    """The process-wide settings are applied when the listener starts, not on import."""
    probe = (
        "import mwlbroker.app, mwlbroker.cli, mwlbroker.dicom.server\n"
        "from pynetdicom import _config, dsutils, service_class\n"
        "assert _config.LOG_HANDLER_LEVEL == 'standard', _config.LOG_HANDLER_LEVEL\n"
        "assert _config.LOG_REQUEST_IDENTIFIERS and _config.LOG_RESPONSE_IDENTIFIERS\n"
        "assert service_class.encode is dsutils.encode, service_class.encode\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_tuning_the_process_twice_wraps_encode_once() -> None:
    saved = (
        _config.LOG_HANDLER_LEVEL,
        _config.LOG_REQUEST_IDENTIFIERS,
        _config.LOG_RESPONSE_IDENTIFIERS,
        service_class.encode,
    )
    try:
        association_tuning.tune_process()
        once = service_class.encode
        association_tuning.tune_process()
        assert service_class.encode is once
        assert inspect.unwrap(once) is dsutils.encode
        assert _config.LOG_HANDLER_LEVEL == "none"
        assert not (_config.LOG_REQUEST_IDENTIFIERS or _config.LOG_RESPONSE_IDENTIFIERS)
    finally:
        (
            _config.LOG_HANDLER_LEVEL,
            _config.LOG_REQUEST_IDENTIFIERS,
            _config.LOG_RESPONSE_IDENTIFIERS,
            service_class.encode,
        ) = saved
