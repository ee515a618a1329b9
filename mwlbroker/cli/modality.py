"""``mwlbroker modality worklist | start | store | complete | discontinue``: a scanner, emulated,
for go-live checks against this broker or any worklist and MPPS provider."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mwlbroker.cli.arguments import Commands, add_config_flag, add_group, add_tls_flags, client_tls
from mwlbroker.cli.output import CommandFailed, print_json

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from mwlbroker.config import Config
    from mwlbroker.dicom.modality import EmulatorState, ModalityEmulator

ACTIONS = {
    "worklist": "query the worklist as a modality would",
    "start": "N-CREATE an MPPS IN PROGRESS for a worklist item",
    "store": "send generated images for a worklist item (C-STORE)",
    "complete": "N-SET the item's MPPS COMPLETED, listing the generated images",
    "discontinue": "N-SET the item's MPPS DISCONTINUED",
}


def register(commands: Commands) -> None:
    """Add the ``modality`` actions, each with the flags of the association it opens."""
    actions = add_group(
        commands, "modality", help="act as a modality for go-live checks: worklist, MPPS, images"
    )
    for action, description in ACTIONS.items():
        parser = actions.add_parser(action, help=description)
        parser.set_defaults(run=run)
        add_config_flag(parser)
        parser.add_argument("--host", help="SCP address (default: dicom.host, or 127.0.0.1)")
        parser.add_argument("--port", type=int, help="SCP port (default: dicom.port)")
        parser.add_argument("--aec", help="called AE title (default: dicom.ae_title)")
        parser.add_argument("--aet", default="MWLEMU", help="our AE title (default: MWLEMU)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per answer")
        add_tls_flags(
            parser,
            tls="DICOM over TLS",
            ca="CA (PEM) to check the SCP's certificate",
            cert="client certificate (PEM), if asked for",
        )
        parser.add_argument(
            "--state",
            default="var/modality",
            metavar="DIR",
            help="where the emulated modality keeps the items it picked (default: var/modality)",
        )
        if action == "worklist":
            parser.add_argument("--modality", default="", help="e.g. CT")
            parser.add_argument("--station", default="", help="Scheduled Station AE Title")
            parser.add_argument("--date", default="", help="YYYYMMDD, a range, or 'today'")
            parser.add_argument("--accession", default="")
            parser.add_argument("--patient-id", default="")
            parser.add_argument("--json", action="store_true", help="machine-readable output")
            continue
        parser.add_argument("accession", metavar="ACCESSION", help="the worklist item's accession")
        parser.add_argument("--sps-id", default="", help="which step, when the item has several")
        parser.add_argument("--mpps-uid", help="MPPS SOP Instance UID (default: derived)")
        if action in ("store", "complete"):
            parser.add_argument(
                "--images", type=int, default=1, metavar="N", help="how many images (default 1)"
            )


def run(args: argparse.Namespace, config: Config) -> int:
    """Open an association as the emulated modality and do the one action asked."""
    from mwlbroker.dicom import modality as emulator

    host = args.host or config["dicom.host"]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening on every address: talk to it locally
    target = emulator.Target(
        host=host,
        port=args.port or config["dicom.port"],
        called_ae=args.aec or config["dicom.ae_title"],
        calling_ae=args.aet,
        timeout=args.timeout,
        tls=client_tls(args),
    )
    scanner = emulator.ModalityEmulator(target)
    try:
        if args.modality_command == "worklist":
            return _worklist(args, scanner)
        return _perform(args, scanner, emulator.EmulatorState(args.state))
    except emulator.EmulatorError as error:
        raise CommandFailed(str(error)) from error


def _worklist(args: argparse.Namespace, scanner: ModalityEmulator) -> int:
    """``modality worklist``: what a scanner would be offered, with 'today' for today's date."""
    from datetime import date

    from mwlbroker.dicom import modality as emulator

    when = date.today().strftime("%Y%m%d") if args.date == "today" else args.date
    items = scanner.worklist(
        accession=args.accession,
        modality=args.modality,
        station=args.station,
        date=when,
        patient_id=args.patient_id,
    )
    rows = [emulator.summary(item) for item in items]
    if args.json:
        print_json(rows)
        return 0
    print(f"{len(rows)} worklist item(s) for {args.aet}")
    for row in rows:
        print(
            f"  {row['accession_number']:16} {row['patient_id']:12} "
            f"{row['patient_name'][:28]:28} {row['modality']:4} {row['station_ae']:10} "
            f"{row['start']:14} SPS {row['sps_id']:12} {row['procedure']}"
        )
    return 0


def _perform(args: argparse.Namespace, scanner: ModalityEmulator, state: EmulatorState) -> int:
    """``start``, ``store``, ``complete`` or ``discontinue`` one worklist item."""
    from mwlbroker.dicom import modality as emulator

    action = args.modality_command
    item, remembered = _emulated_item(scanner, state, args, fresh=action == "start")
    uid = (
        args.mpps_uid
        or remembered.get("mpps_uid")
        or emulator.mpps_uid_for(args.aet, args.accession, args.sps_id)
    )
    if action == "start":
        state.save(args.accession, item, mpps_uid=uid)
        outcome = scanner.start(item, uid)
        print(f"start {args.accession}: MPPS {uid} IN PROGRESS: {outcome.describe()}")
        return 0 if outcome.ok else 1
    if action == "store":
        images = emulator.images_for(item, args.aet, args.images)
        outcomes = scanner.store(images)
        refused = [o for o in outcomes if not o.ok]
        print(
            f"store {args.accession}: {len(outcomes) - len(refused)} of {len(outcomes)} "
            f"image(s) stored in study {images[0].StudyInstanceUID}"
            + (f"; {refused[0].describe()}" if refused else "")
        )
        return 1 if refused else 0
    status = "COMPLETED" if action == "complete" else "DISCONTINUED"
    images = emulator.images_for(item, args.aet, args.images) if action == "complete" else []
    outcome = scanner.end(uid, status, images)
    print(f"{action} {args.accession}: MPPS {uid} {status}: {outcome.describe()}")
    return 0 if outcome.ok else 1


def _emulated_item(
    scanner: ModalityEmulator, state: EmulatorState, args: argparse.Namespace, *, fresh: bool
) -> tuple[Dataset, dict[str, Any]]:
    """The worklist item an emulator command acts on: asked for afresh to start, else the one
    remembered since (it left the worklist once started), else asked for now."""
    from mwlbroker.dicom import modality as emulator

    remembered = state.load(args.accession)
    if remembered is not None and not fresh:
        return remembered
    items = scanner.worklist(accession=args.accession, sps_id=args.sps_id)
    if not items:
        if remembered is not None:
            return remembered
        raise emulator.EmulatorError(
            f"no worklist item with accession {args.accession!r}"
            + (f" and SPS ID {args.sps_id!r}" if args.sps_id else "")
        )
    if len(items) > 1:
        steps = ", ".join(emulator.summary(item)["sps_id"] for item in items)
        raise emulator.EmulatorError(
            f"accession {args.accession!r} has {len(items)} steps ({steps}); choose with --sps-id"
        )
    return items[0], {}
