"""``mwlbroker mappings check | test``: validate the mapping files, and try one message on them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, add_group, command
from mwlbroker.cli.output import CommandFailed

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.mapping.report import Report


def register(commands: Commands) -> None:
    """Add ``mappings check`` and ``mappings test MESSAGE.hl7``."""
    actions = add_group(commands, "mappings", help="the HL7 to worklist mapping files")
    checking = command(actions, "check", help="validate every mapping file", run=check, json=True)
    checking.add_argument("--dir", help="mapping folder (default: mappings.dir)")
    trial = command(
        actions,
        "test",
        help="print the worklist items a message would produce, touching nothing",
        run=test,
    )
    trial.add_argument("message", metavar="MESSAGE.hl7")
    trial.add_argument("--dir", help="mapping folder (default: mappings.dir)")
    trial.add_argument("--json", action="store_true", help="the items as DICOM JSON")


def check(args: argparse.Namespace, config: Config) -> int:
    """Load every mapping file; exit 1 when one is in error."""
    from mwlbroker.mapping.report import check_mappings

    return _show(args, check_mappings(_folder(args, config)))


def test(args: argparse.Namespace, config: Config) -> int:
    """Show what the mappings make of one message, writing nothing anywhere."""
    from mwlbroker.mapping.report import explain_message

    if not Path(args.message).is_file():
        raise CommandFailed(f"{args.message}: no such file", exit_code=2)
    return _show(args, explain_message(Path(args.message), _folder(args, config)))


def _folder(args: argparse.Namespace, config: Config) -> Path | None:
    """``--dir``, else the site's folder, else ``None`` for the mappings that ship with the broker."""
    from mwlbroker.app import mappings_folder

    return Path(args.dir) if args.dir else mappings_folder(config)


def _show(args: argparse.Namespace, report: Report) -> int:
    print(report.json() if args.json else report.text)
    return 0 if report.ok else 1
