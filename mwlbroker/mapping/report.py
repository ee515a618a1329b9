"""What ``mwlbroker mappings check`` and ``mwlbroker mappings test`` show: text and data, no printing.

:func:`check_mappings` loads a folder and lists its profiles (or every error with FILE:LINE);
:func:`explain_message` maps an HL7 file without touching the database and dumps each
worklist item by tag, keyword, VR and value, or gives the DICOM JSON of each item.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.worklist import CLEAR, Attributes, MappedOrder, MappedPatientEvent
from mwlbroker.hl7v2.reader import parse_message
from mwlbroker.mapping.engine import MappingSet, Sender, load_mappings
from mwlbroker.mapping.loader import BUNDLED, MappingLoadError
from mwlbroker.mapping.profile import Profile
from mwlbroker.mapping.transforms import TRANSFORMS
from mwlbroker.mapping.worklist_item import dataset_from_attributes, item_to_json, worklist_items


@dataclass
class Report:
    """The outcome of a command: ``ok`` for the exit code, ``lines`` to show, ``data`` for --json."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def json(self) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False)


# -- mappings check ------------------------------------------------------------------------------


def check_mappings(folder: Path | None = None) -> Report:
    """Load ``folder`` (``None``: the bundled mappings) and describe its profiles or its errors."""
    where = BUNDLED if folder is None else Path(folder)
    try:
        mappings = load_mappings(where)
    except MappingLoadError as error:
        count = len(error.errors)
        lines = [f"mappings in {where}: {count} error{'s' if count != 1 else ''}"]
        lines += [str(problem) for problem in error.errors]
        data = {
            "folder": str(where),
            "ok": False,
            "errors": [
                {"file": e.file, "line": e.line, "message": e.message} for e in error.errors
            ],
        }
        return Report(False, lines, data)
    profiles = sorted(mappings.profiles, key=lambda p: (-p.priority, -p.specificity, p.name))
    lines = [f"mappings in {where}: {len(profiles)} profile{'s' if len(profiles) != 1 else ''}, ok"]
    for profile in profiles:
        lines += _describe_profile(profile)
    lines.append(f"transforms: {', '.join(sorted(TRANSFORMS))}")
    data = {
        "folder": str(where),
        "ok": True,
        "profiles": [
            {
                "name": p.name,
                "file": p.file,
                "description": p.description,
                "extends": p.extends,
                "enabled": p.enabled,
                "priority": p.priority,
                "sending_application": p.sending_application,
                "sending_facility": p.sending_facility,
                "message_types": sorted(p.handled_types),
            }
            for p in profiles
        ],
    }
    return Report(True, lines, data)


def _describe_profile(profile: Profile) -> list[str]:
    extends = f", extends {profile.extends}" if profile.extends else ""
    disabled = "" if profile.enabled else " DISABLED (enabled: false): checked, never used"
    lines = [f"profile {profile.name} ({Path(profile.file).name}{extends}){disabled}"]
    if profile.description:
        lines.append(f"  {profile.description}")
    lines.append(f"  matches {profile.describe_match()}")
    handled = []
    for key, entry in profile.messages.items():
        if entry.is_schedule:
            controls = ", ".join(f"{t} {c}" for t, c in sorted(entry.control.items()))
            triggers = " ".join(name.split("^")[1] for name in entry.handles)
            handled.append(
                f"SIU {triggers} (one item per {entry.repeat}; order control {controls})"
            )
        elif entry.is_order:
            handled.append(f"{key} (one item per {entry.describe_repeat})")
        elif key == "ADT":
            handled.append("ADT " + " ".join(name.split("^")[1] for name in entry.handles))
        else:
            handled.append(key)
    lines.append(f"  maps {', '.join(handled)}")
    return lines


# -- mappings test -------------------------------------------------------------------------------


def explain_message(
    message_file: Path, folder: Path | None = None, *, mappings: MappingSet | None = None
) -> Report:
    """Map every message of an HL7 file (LF, CRLF or CR line ends) and dump what it produces."""
    path = Path(message_file)
    try:
        raw = path.read_bytes()
    except OSError as error:
        return Report(False, [f"{path}: cannot read: {error.strerror}"], {"error": str(error)})
    if mappings is None:
        try:
            mappings = load_mappings(folder)
        except MappingLoadError as error:
            lines = ["the mappings do not load:", *(str(problem) for problem in error.errors)]
            return Report(False, lines, {"error": "mappings do not load"})
    chunks = split_messages(raw)
    if not chunks:
        return Report(False, [f"{path}: no HL7 message (no MSH segment)"], {"error": "empty"})
    report = Report(True, data={"file": path.name, "messages": []})
    for number, chunk in enumerate(chunks, 1):
        if len(chunks) > 1:
            report.lines.append(f"== message {number} of {len(chunks)}")
        lines, data, ok = _explain(chunk, path.name, mappings)
        report.lines += lines
        report.data["messages"].append(data)
        report.ok = report.ok and ok
    if len(chunks) == 1:
        report.data = {"file": path.name, **report.data["messages"][0]}
    return report


def split_messages(raw: bytes) -> list[bytes]:
    """The messages of a file: each starts with an MSH segment at the start of a line."""
    starts = [match.start() for match in re.finditer(rb"(?:^|(?<=[\r\n]))MSH", raw)]
    return [raw[start:end] for start, end in zip(starts, [*starts[1:], len(raw)], strict=True)]


def _explain(raw: bytes, name: str, mappings: MappingSet) -> tuple[list[str], dict, bool]:
    try:
        message = parse_message(raw)
    except MessageError as error:
        return [f"{error.ack_code}: {error.text}"], _error_data(error), False
    header = message.header()
    lines = [
        f"message {header.type_name} {header.control_id} from {header.sending_application} / "
        f"{header.sending_facility} (HL7 {header.version}, MSH-18 {header.charset or 'empty'}, "
        f"read as {message.codec})"
    ]
    data: dict[str, Any] = {"message_type": header.type_name, "control_id": header.control_id}
    try:
        sender = Sender.of(message)
        profile = mappings.profile_for(sender.application, sender.facility, sender.type_name)
        lines.append(f"profile {profile.name} ({Path(profile.file).name})")
        data["profile"] = profile.name
        mapped = mappings.map(message)
        if isinstance(mapped, list):
            lines += _orders_lines(mapped, data)
            warnings = mapped[0].warnings if mapped else []  # each order holds the message's
        else:
            lines += _patient_lines(mapped, data)
            warnings = mapped.warnings
        if warnings:
            # What the intake would keep in the message's record and send in the AA.
            for warning in warnings:
                lines.append(f"warning at {warning.location or '?'}: {warning.text}")
            data["warnings"] = [warning.as_json() for warning in warnings]
    except MessageError as error:
        lines.append(f"{error.ack_code}: {error.text}")
        data.update(_error_data(error))
        return lines, data, False
    return lines, data, True


def _error_data(error: MessageError) -> dict[str, Any]:
    return {"ack_code": str(error.ack_code), "error": error.text, "location": error.location}


def _orders_lines(orders: list[MappedOrder], data: dict[str, Any]) -> list[str]:
    """The message's one order as before; several orders each under a heading, in ``orders``."""
    if len(orders) == 1:
        return _order_lines(orders[0], data)
    lines = [f"{len(orders)} orders (one per placer order, applied together or not at all)"]
    data["orders"] = []
    for order in orders:
        assert order.group is not None  # an order of several knows its place
        lines.append(f"== {order.group.name}")
        order_data: dict[str, Any] = {"order": order.group.number, "orc": order.group.orc}
        lines += _order_lines(order, order_data)
        data["orders"].append(order_data)
    return lines


def _order_lines(order: MappedOrder, data: dict[str, Any]) -> list[str]:
    items = worklist_items(order)
    lines = [
        f"order control {order.order_control}, order status {order.order_status or '(empty)'}"
        f" -> step status {order.step_status}",
        f"placer order {order.placer_order_number or '(none)'}, "
        f"filler order {order.filler_order_number or '(none)'}",
    ]
    cleared = _cleared(order.patient.attributes) + _cleared(order.order)
    data.update(
        {
            "order_control": order.order_control,
            "order_status": order.order_status,
            "step_status": str(order.step_status),
            "placer_order_number": order.placer_order_number,
            "filler_order_number": order.filler_order_number,
            "items": [item_to_json(item) for item in items],
            "cleared": [],
        }
    )
    for number, (item, step) in enumerate(zip(items, order.steps, strict=True), 1):
        lines.append(f"worklist item {number} of {len(items)}:")
        lines += dump_dataset(item, indent="  ")
        item_cleared = cleared + _cleared(step.procedure) + _cleared(step.step)
        if item_cleared:
            lines.append(f'  cleared (HL7 ""): {", ".join(item_cleared)}')
        data["cleared"].append(item_cleared)
    return lines


def _patient_lines(event: MappedPatientEvent, data: dict[str, Any]) -> list[str]:
    patient = dataset_from_attributes(event.patient.attributes)
    lines = [f"patient event {event.trigger}"]
    if event.prior_patient_id:
        issuer = f", issuer {event.prior_issuer}" if event.prior_issuer else ""
        lines.append(f"prior patient ID {event.prior_patient_id}{issuer} (merged into this one)")
    lines.append("patient:")
    lines += dump_dataset(patient, indent="  ")
    cleared = _cleared(event.patient.attributes)
    if cleared:
        lines.append(f'  cleared (HL7 ""): {", ".join(cleared)}')
    data.update(
        {
            "trigger": event.trigger,
            "patient": item_to_json(patient),
            "cleared": cleared,
            "prior_patient_id": event.prior_patient_id,
            "prior_issuer": event.prior_issuer,
        }
    )
    if event.linked_patient_id:
        issuer = f", issuer {event.linked_issuer}" if event.linked_issuer else ""
        lines.append(f"linked patient ID {event.linked_patient_id}{issuer} (the second PID)")
        data["linked_patient_id"] = event.linked_patient_id
        data["linked_issuer"] = event.linked_issuer
    if event.visit:
        lines.append("visit (on the orders of the open worklist items):")
        lines += dump_dataset(dataset_from_attributes(event.visit), indent="  ")
        cleared = _cleared(event.visit)
        if cleared:
            lines.append(f'  cleared (HL7 ""): {", ".join(cleared)}')
        data["visit"] = item_to_json(dataset_from_attributes(event.visit))
    return lines


def _cleared(attributes: Attributes) -> list[str]:
    return [keyword for keyword, value in attributes.items() if value is CLEAR]


def dump_dataset(dataset: Dataset, indent: str = "") -> list[str]:
    """One line per element: ``(GGGG,EEEE) Keyword  VR  value``; sequence items indented."""
    lines = []
    for element in dataset:
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        head = f"{indent}{tag} {element.keyword:<40} {element.VR}"
        if element.VR == "SQ":
            value: Sequence = element.value
            lines.append(f"{head}  {len(value)} item{'s' if len(value) != 1 else ''}")
            for number, item in enumerate(value, 1):
                lines.append(f"{indent}  item {number}:")
                lines += dump_dataset(item, indent + "    ")
            continue
        lines.append(f"{head}  {_show(element.value)}")
    return lines


def _show(value: Any) -> str:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(part) for part in value)
    return str(value)
