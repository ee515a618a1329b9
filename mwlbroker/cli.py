"""The ``mwlbroker`` command: parses arguments and calls into the application.

Exit codes: 0 success, 1 the command failed (e.g. a message was not accepted, the database is
unavailable), 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwlbroker import __version__
from mwlbroker.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from mwlbroker.store.db import Database


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $MWLBROKER_CONFIG, else built-in defaults)",
    )


def _add_actor_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor", help="who acts, for the audit record (default: cli and the login name)"
    )


def _command(
    group: Any,
    name: str,
    *,
    help: str,
    record: bool = False,
    limit: bool = False,
    json: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand with the flags every command shares: --config, and as asked the record's
    ID, --limit and --json, so that each list, show and action reads the same."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    _add_config_flag(parser)
    if record:
        parser.add_argument("id", type=int)
    if limit:
        parser.add_argument("--limit", type=int, default=50)
    if json:
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mwlbroker",
        description="Modality Worklist broker and HL7 v2 integration engine.",
    )
    parser.add_argument("--version", action="version", version=f"mwlbroker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _command(commands, "serve", help="run the broker (MLLP listener and the rest)")

    send = _command(commands, "send", help="send HL7 files over MLLP and print each ACK")
    send.add_argument(
        "files", nargs="+", metavar="FILE", help="HL7 file(s), one or more messages each"
    )
    send.add_argument("--host", help="broker address (default: hl7.host)")
    send.add_argument("--port", type=int, help="broker MLLP port (default: hl7.port)")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.add_argument("--quiet", "-q", action="store_true", help="print one line per message")
    send.add_argument("--tls", action="store_true", help="MLLP over TLS")
    send.add_argument("--ca", default="", help="CA (PEM) to check the broker's certificate against")
    send.add_argument("--cert", default="", help="client certificate (PEM), if the broker asks")
    send.add_argument("--key", default="", help="private key (PEM) of --cert")

    config = commands.add_parser("config", help="configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    _command(config_commands, "show", help="print the effective configuration, secrets masked")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _command(db_commands, "upgrade", help="migrate the schema to this version")
    _command(db_commands, "current", help="print the schema revision")
    copy = _command(
        db_commands,
        "copy",
        help="copy the whole database into another, empty one (SQLite to PostgreSQL)",
    )
    copy.add_argument("--to", required=True, metavar="URL", help="the target database URL")
    copy.add_argument(
        "--from", dest="source", metavar="URL", help="the source (default: database.url)"
    )

    maps = commands.add_parser("mappings", help="the HL7 to worklist mapping files")
    map_commands = maps.add_subparsers(dest="mappings_command", metavar="ACTION", required=True)
    check = _command(map_commands, "check", help="validate every mapping file", json=True)
    check.add_argument("--dir", help="mapping folder (default: mappings.dir)")
    trial = _command(
        map_commands,
        "test",
        help="print the worklist items a message would produce, touching nothing",
    )
    trial.add_argument("message", metavar="MESSAGE.hl7")
    trial.add_argument("--dir", help="mapping folder (default: mappings.dir)")
    trial.add_argument("--json", action="store_true", help="the items as DICOM JSON")

    msgs = commands.add_parser("messages", help="the message store")
    msg_commands = msgs.add_subparsers(dest="messages_command", metavar="ACTION", required=True)
    listing = _command(msg_commands, "list", help="newest messages first", limit=True, json=True)
    listing.add_argument("--status", choices=["processed", "failed", "rejected"])
    listing.add_argument("--control-id", help="only messages with this MSH-10")
    _command(
        msg_commands,
        "show",
        help="one message: header, status, error, segments",
        record=True,
        json=True,
    )
    _command(
        msg_commands, "reprocess", help="apply a failed or rejected message again", record=True
    )

    users = commands.add_parser("user", help="accounts of the web page and API")
    user_commands = users.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    user_add = _command(user_commands, "add", help="add a user (asks for the password)")
    user_add.add_argument("name", metavar="NAME")
    user_add.add_argument("--role", choices=["admin", "viewer"], required=True)
    user_add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    user_passwd = _command(user_commands, "passwd", help="set a user's password")
    user_passwd.add_argument("name", metavar="NAME")
    user_passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    _command(user_commands, "list", help="list the users and their roles", json=True)
    user_token = _command(
        user_commands, "token", help="create an API token for a user (printed once)"
    )
    user_token.add_argument("name", metavar="NAME")

    out = commands.add_parser("outbound", help="the status messages queued for the RIS")
    out_commands = out.add_subparsers(dest="outbound_command", metavar="ACTION", required=True)
    out_list = _command(
        out_commands, "list", help="newest outbound messages first", limit=True, json=True
    )
    out_list.add_argument("--status", choices=["pending", "sent", "failed"])
    out_list.add_argument("--destination", metavar="NAME", help="only this destination")
    _command(
        out_commands,
        "show",
        help="one outbound message: status, ACK, segments",
        record=True,
        json=True,
    )
    _command(
        out_commands,
        "retry",
        help="send a failed (or waiting) message again, from attempt one",
        record=True,
    )

    mpps = commands.add_parser("mpps", help="performed procedure steps the modalities reported")
    mpps_commands = mpps.add_subparsers(dest="mpps_command", metavar="ACTION", required=True)
    mpps_list = _command(
        mpps_commands, "list", help="newest performed steps first", limit=True, json=True
    )
    mpps_list.add_argument(
        "--unscheduled", action="store_true", help="only those matching no scheduled step"
    )

    studies = commands.add_parser("studies", help="studies received over C-STORE")
    study_commands = studies.add_subparsers(dest="studies_command", metavar="ACTION", required=True)
    study_list = _command(
        study_commands, "list", help="newest studies first", limit=True, json=True
    )
    study_list.add_argument("--unmatched", action="store_true", help="only those matching no order")

    for command_set, noun in ((mpps_commands, "performed step"), (study_commands, "study")):
        link = command_set.add_parser(
            "link", help=f"link an unmatched {noun} to a scheduled step (audited)"
        )
        _add_config_flag(link)
        link.add_argument("id", type=int, metavar="ID", help=f"the {noun}'s id (from list)")
        link.add_argument(
            "steps", type=int, nargs="*", metavar="STEP_ID", help="scheduled step id(s)"
        )
        link.add_argument("--accession", help="link to the step with this Accession Number")
        _add_actor_flag(link)
        link.add_argument("--json", action="store_true", help="machine-readable output")

    pats = commands.add_parser("patients", help="patient identity reconciliation")
    pat_commands = pats.add_subparsers(dest="patients_command", metavar="ACTION", required=True)
    collisions = _command(
        pat_commands,
        "collisions",
        help="Patient IDs whose messages gave conflicting demographics",
        json=True,
    )
    collisions.add_argument("--limit", type=int, default=100)
    duplicates = _command(
        pat_commands,
        "duplicates",
        help="likely duplicates: one person under several Patient IDs",
        json=True,
    )
    duplicates.add_argument(
        "--stored", action="store_true", help="list the last sweep's pairs without sweeping now"
    )
    duplicates.add_argument(
        "--min-score", type=float, default=None, metavar="S", help="0-100 (default 85)"
    )
    duplicates.add_argument("--limit", type=int, default=100)
    dismiss = _command(
        pat_commands, "dismiss", help="remember that two patients are not the same person"
    )
    dismiss.add_argument("first", metavar="PATIENT", help="Patient ID, or ID^^^ISSUER")
    dismiss.add_argument("second", metavar="OTHER", help="Patient ID, or ID^^^ISSUER")
    dismiss.add_argument("--note", default="", help="why, for the audit record")
    _add_actor_flag(dismiss)
    merge = _command(
        pat_commands,
        "merge",
        help="merge a patient into another: orders and steps move to the survivor",
        json=True,
    )
    merge.add_argument("source", metavar="SOURCE_ID", help="merged away: Patient ID or ID^^^ISSUER")
    merge.add_argument("survivor", metavar="SURVIVOR_ID", help="the patient that remains")
    merge.add_argument(
        "--notify-ris", action="store_true", help="queue an ADT^A40 for each outbound destination"
    )
    _add_actor_flag(merge)
    unmerge = _command(
        pat_commands,
        "unmerge",
        help="undo a merge: every order and step back where it was",
        json=True,
    )
    unmerge.add_argument("merge_id", type=int, metavar="MERGE_ID")
    _add_actor_flag(unmerge)
    _command(
        pat_commands,
        "merges",
        help="merges made, newest first, undone or not",
        limit=True,
        json=True,
    )

    fwd = commands.add_parser("forward", help="received instances forwarded to the PACS")
    fwd_commands = fwd.add_subparsers(dest="forward_command", metavar="ACTION", required=True)
    fwd_list = _command(
        fwd_commands, "list", help="newest forward tasks first", limit=True, json=True
    )
    fwd_list.add_argument("--status", choices=["pending", "sent", "failed"])
    _command(fwd_commands, "retry", help="forward a failed instance again", record=True)

    jobs = commands.add_parser("jobs", help="the scheduled jobs: expiry, retention, retries")
    job_commands = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    _command(job_commands, "list", help="each job: schedule, last run, result", json=True)
    jobs_run = _command(job_commands, "run", help="run one job now, in this process", json=True)
    jobs_run.add_argument("name", help="the job's name, as `jobs list` shows it")

    modality = commands.add_parser(
        "modality", help="act as a modality for go-live checks: worklist, MPPS, images"
    )
    modality_commands = modality.add_subparsers(
        dest="modality_command", metavar="ACTION", required=True
    )
    emulated = {
        "worklist": "query the worklist as a modality would",
        "start": "N-CREATE an MPPS IN PROGRESS for a worklist item",
        "store": "send generated images for a worklist item (C-STORE)",
        "complete": "N-SET the item's MPPS COMPLETED, listing the generated images",
        "discontinue": "N-SET the item's MPPS DISCONTINUED",
    }
    for action, description in emulated.items():
        command = modality_commands.add_parser(action, help=description)
        _add_config_flag(command)
        command.add_argument("--host", help="SCP address (default: dicom.host, or 127.0.0.1)")
        command.add_argument("--port", type=int, help="SCP port (default: dicom.port)")
        command.add_argument("--aec", help="called AE title (default: dicom.ae_title)")
        command.add_argument("--aet", default="MWLEMU", help="our AE title (default: MWLEMU)")
        command.add_argument("--timeout", type=float, default=30.0, help="seconds per answer")
        command.add_argument("--tls", action="store_true", help="DICOM over TLS")
        command.add_argument("--ca", default="", help="CA (PEM) to check the SCP's certificate")
        command.add_argument("--cert", default="", help="client certificate (PEM), if asked for")
        command.add_argument("--key", default="", help="private key (PEM) of --cert")
        command.add_argument(
            "--state",
            default="var/modality",
            metavar="DIR",
            help="where the emulated modality keeps the items it picked (default: var/modality)",
        )
        if action == "worklist":
            command.add_argument("--modality", default="", help="e.g. CT")
            command.add_argument("--station", default="", help="Scheduled Station AE Title")
            command.add_argument("--date", default="", help="YYYYMMDD, a range, or 'today'")
            command.add_argument("--accession", default="")
            command.add_argument("--patient-id", default="")
            command.add_argument("--json", action="store_true", help="machine-readable output")
            continue
        command.add_argument("accession", metavar="ACCESSION", help="the worklist item's accession")
        command.add_argument("--sps-id", default="", help="which step, when the item has several")
        command.add_argument("--mpps-uid", help="MPPS SOP Instance UID (default: derived)")
        if action in ("store", "complete"):
            command.add_argument(
                "--images", type=int, default=1, metavar="N", help="how many images (default 1)"
            )

    bench = commands.add_parser(
        "bench", help="measure intake and worklist speed on this machine and database"
    )
    bench.add_argument(
        "--database-url",
        metavar="URL",
        help="database to measure: sqlite:///PATH (new files next to PATH) or postgresql://... "
        "(new schemas in it, dropped after); default: a temporary SQLite file",
    )
    bench.add_argument(
        "--messages", type=int, default=2000, metavar="N", help="messages per intake run"
    )
    bench.add_argument(
        "--connections",
        type=int,
        default=8,
        metavar="K",
        help="concurrent MLLP connections (a run on one connection follows)",
    )
    bench.add_argument(
        "--steady-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="length of the steady-rate run (100 msg/s)",
    )
    bench.add_argument(
        "--sizes",
        default="1000,10000",
        metavar="N,N",
        help="worklist sizes for the C-FIND part (0: none); --full: 1000,10000,100000",
    )
    bench.add_argument(
        "--full", action="store_true", help="C-FIND at 1,000, 10,000 and 100,000 items"
    )
    bench.add_argument(
        "--queries", type=int, default=5, metavar="R", help="timed repetitions of each query"
    )
    bench.add_argument("--no-wlmscpfs", action="store_true", help="do not compare with wlmscpfs")
    bench.add_argument(
        "--wlmscpfs-max",
        type=int,
        default=10000,
        metavar="N",
        help="largest size to time wlmscpfs at (it reads every file per query)",
    )
    bench.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="measure the intake of a broker already running there (MLLP), nothing else",
    )
    bench.add_argument("--keep", action="store_true", help="keep the databases it made")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as error:
        print(f"mwlbroker: configuration error: {error}", file=sys.stderr)
        return 2
    handler = {
        "serve": _serve,
        "send": _send,
        "config": _config,
        "db": _db,
        "messages": _messages,
        "mappings": _mappings,
        "outbound": _outbound,
        "user": _user,
        "forward": _forward,
        "jobs": _jobs,
        "modality": _modality,
        "mpps": _reconciliation,
        "studies": _reconciliation,
        "patients": _patients,
        "bench": _bench,
    }[args.command]
    try:
        return handler(args, config)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``mwlbroker messages list | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# -- commands -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.app import Broker, StartupError
    from mwlbroker.logs import configure_logging

    configure_logging(config["log.level"], config["log.format"])
    broker = Broker(config)
    try:
        broker.run()
    except StartupError as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        broker.stop()
        return error.exit_code
    return 0


def _send(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.mllp.sender import MLLPClient, SendError, split_file
    from mwlbroker.tls import TLSConfigError, client_context

    host = args.host or config["hl7.host"]
    port = args.port or config["hl7.port"]
    tls = None
    if args.tls or args.ca or args.cert:
        try:
            tls = client_context(args.ca, args.cert, args.key, setting="--tls")
        except TLSConfigError as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 2
    batches: list[tuple[str, list[bytes]]] = []
    for name in args.files:
        try:
            batches.append((name, split_file(Path(name).read_bytes())))
        except OSError as error:
            print(f"mwlbroker: {name}: {error.strerror}", file=sys.stderr)
            return 2
    failures = 0
    try:
        with MLLPClient(host, port, timeout=args.timeout, tls=tls) as client:
            for name, messages in batches:
                for index, message in enumerate(messages, 1):
                    label = name if len(messages) == 1 else f"{name} [{index}/{len(messages)}]"
                    reply = client.send(message)
                    failures += reply.code != "AA"
                    detail = reply.field("MSA", 3)
                    print(
                        f"{label}: {reply.code or '?'} {reply.field('MSA', 2)}"
                        + (f" - {detail}" if detail else "")
                    )
                    if not args.quiet:
                        for segment in reply.segments:
                            print(f"    {segment}")
    except SendError as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def _mappings(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.mapping.report import check_mappings, explain_message

    folder = Path(args.dir) if args.dir else None
    if folder is None and config["mappings.dir"]:
        folder = Path(config["mappings.dir"])
    if args.mappings_command == "check":
        report = check_mappings(folder)
    else:
        if not Path(args.message).is_file():
            print(f"mwlbroker: {args.message}: no such file", file=sys.stderr)
            return 2
        report = explain_message(Path(args.message), folder)
    print(report.json() if args.json else report.text)
    return 0 if report.ok else 1


def _config(args: argparse.Namespace, config: Config) -> int:
    current_section = None
    for key, shown, source in config.display():
        section, name = key.split(".", 1)
        if section != current_section:
            print(f"{'' if current_section is None else chr(10)}[{section}]")
            current_section = section
        print(f"{name} = {shown}  # {source}")
    return 0


def _db(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.app import open_database
    from mwlbroker.store import migrate
    from mwlbroker.store.db import DatabaseUnavailable

    if args.db_command == "copy" and args.source:
        config = config.with_overrides({"database.url": args.source})
    db = open_database(config)
    try:
        if args.db_command == "upgrade":
            before, after = migrate.upgrade(db)
            if before == after:
                print(f"database {db.describe()} is up to date at revision {after}")
            else:
                print(f"database {db.describe()} upgraded from {before or 'nothing'} to {after}")
        elif args.db_command == "copy":
            return _db_copy(db, args)
        else:
            print(migrate.current_revision(db) or "none (run `mwlbroker db upgrade`)")
    except DatabaseUnavailable as error:
        print(f"mwlbroker: database unavailable: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"mwlbroker: database {db.describe()}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0


def _db_copy(source: Database, args: argparse.Namespace) -> int:
    """``db copy --to URL``: move a site from one database to another, the broker stopped."""
    from mwlbroker.config import ConfigError
    from mwlbroker.store.copy import CopyRefused, copy_database
    from mwlbroker.store.db import Database

    try:
        target_config = load_config(environ={}).with_overrides({"database.url": args.to})
    except ConfigError as error:
        print(f"mwlbroker: --to: {error}", file=sys.stderr)
        return 2
    target = Database(target_config["database.url"])
    try:
        copied = copy_database(
            source,
            target,
            progress=lambda table, rows: print(f"  {table:24} {rows:>10} rows", flush=True),
        )
    except CopyRefused as error:
        print(f"mwlbroker: nothing copied: {error}", file=sys.stderr)
        return 1
    finally:
        target.dispose()
    print(
        f"copied {sum(copied.values())} rows in {len(copied)} tables from {source.describe()} "
        f"to {target.describe()}"
    )
    return 0


def _messages(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.app import StartupError, build_ingest, open_database, prepare_database
    from mwlbroker.services.views import message_segments, message_summary, message_text
    from mwlbroker.store import messages
    from mwlbroker.store.db import DatabaseUnavailable

    db = open_database(config)
    try:
        prepare_database(db)
        if args.messages_command == "list":
            with db.reading() as session:
                rows = messages.latest(
                    session, status=args.status, control_id=args.control_id, limit=args.limit
                )
            if args.json:
                print(json.dumps([message_summary(row) for row in rows], indent=2))
            else:
                print(
                    f"{'ID':>7}  {'RECEIVED (UTC)':19}  {'TYPE':8} {'CONTROL ID':20} "
                    f"{'SENDER':20} {'STATUS':9} ACK  ERROR"
                )
                for row in rows:
                    summary = message_summary(row)
                    print(
                        f"{row.id:>7}  {summary['received_at'][:19]:19}  {summary['type']:8} "
                        f"{(row.control_id or '-')[:20]:20} {summary['sender'][:20]:20} "
                        f"{row.status:9} {row.ack_code:4} {(row.error or '')[:60]}"
                    )
            return 0
        if args.messages_command == "show":
            with db.reading() as session:
                found = messages.get(session, args.id)
            if found is None:
                print(f"mwlbroker: no message with id {args.id}", file=sys.stderr)
                return 1
            summary = message_summary(found)
            summary["segments"] = message_segments(message_text(found))
            if args.json:
                print(json.dumps(summary, indent=2, ensure_ascii=False))
            else:
                for key, value in summary.items():
                    if key != "segments":
                        print(f"{key:20} {value if value is not None else ''}")
                print()
                for segment in summary["segments"]:
                    print(segment)
            return 0
        service = build_ingest(config, db)
        try:
            result = service.reprocess(args.id)
        except LookupError as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 1
        print(
            f"message {args.id}: {result.status} ({result.ack_code})"
            + (f" - {result.error}" if result.error else "")
        )
        return 0 if result.ack_code == "AA" else 1
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def _read_password(args: argparse.Namespace) -> str:
    """From standard input (scripts), else asked twice at the terminal."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _user(args: argparse.Namespace, config: Config) -> int:
    """``user add | passwd | list | token``: the accounts of the web page and API."""
    from mwlbroker.app import StartupError, open_database, prepare_database
    from mwlbroker.domain.accounts import AccountError, Role
    from mwlbroker.services.accounts import AccountService
    from mwlbroker.store.db import DatabaseUnavailable

    db = open_database(config)
    try:
        prepare_database(db)
        service = AccountService(db)
        actor = f"cli:{getpass_user()}"
        if args.user_command == "list":
            users = service.list_users()
            rows = [
                {
                    "name": u.name,
                    "role": u.role.value,
                    "disabled": u.disabled,
                    "created_at": u.created_at.isoformat(),
                    "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                }
                for u in users
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            print(f"{'NAME':24} {'ROLE':7} LAST LOGIN (UTC)")
            for row in rows:
                print(f"{row['name']:24} {row['role']:7} {str(row['last_login_at'] or '-')[:19]}")
            return 0
        if args.user_command == "token":
            token = service.create_token(args.name, actor=actor)
            print(token)
            print(
                "Keep it now: only its hash is stored. Send it as 'Authorization: Bearer TOKEN'.",
                file=sys.stderr,
            )
            return 0
        try:
            password = _read_password(args)
        except ValueError as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 1
        if args.user_command == "add":
            account = service.add_user(args.name, password, Role(args.role), actor=actor)
            print(f"user {account.name} added ({account.role.value})")
        else:
            account = service.set_password(args.name, password, actor=actor)
            print(f"password of {account.name} changed; its open sessions have ended")
        return 0
    except AccountError as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def getpass_user() -> str:
    """The operating system user running the command, for the audit trail."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container
        return "unknown"


def _bench(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.bench.report import render
    from mwlbroker.bench.run import FULL_SIZES, BenchOptions, run_bench, stderr_progress

    try:
        sizes = FULL_SIZES if args.full else _sizes(args.sizes)
        target = _address(args.target) if args.target else None
    except ValueError as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 2
    if args.messages < 1 or args.connections < 1 or args.queries < 1:
        print(
            "mwlbroker: --messages, --connections and --queries must be 1 or more", file=sys.stderr
        )
        return 2
    options = BenchOptions(
        database_url=args.database_url,
        messages=args.messages,
        connections=args.connections,
        steady_seconds=args.steady_seconds,
        sizes=sizes,
        queries=args.queries,
        wlmscpfs=not args.no_wlmscpfs,
        wlmscpfs_max=args.wlmscpfs_max,
        target=target,
        keep=args.keep,
    )
    result = run_bench(options, progress=stderr_progress)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else render(result))
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--sizes: {text!r} is not a list of numbers such as 1000,10000") from None
    if any(size < 0 for size in sizes):
        raise ValueError("--sizes: sizes cannot be negative")
    return tuple(size for size in sizes if size > 0)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--target: {text!r} is not HOST:PORT")
    return host, int(port)


def _outbound(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.app import StartupError, build_outbound, open_database, prepare_database
    from mwlbroker.services.views import outbound_summary
    from mwlbroker.store import outbound
    from mwlbroker.store.db import DatabaseUnavailable

    db = open_database(config)
    try:
        prepare_database(db)
        if args.outbound_command == "list":
            with db.reading() as session:
                rows = outbound.latest(
                    session, status=args.status, destination=args.destination, limit=args.limit
                )
            summaries = [outbound_summary(row) for row in rows]
            if args.json:
                print(json.dumps(summaries, indent=2))
                return 0
            print(
                f"{'ID':>7}  {'CREATED (UTC)':19}  {'DESTINATION':12} {'TYPE':8} ORC-5 "
                f"{'CONTROL ID':15} {'STATUS':8} {'TRIES':>5}  ERROR"
            )
            for summary in summaries:
                print(
                    f"{summary['id']:>7}  {str(summary['created_at'])[:19]:19}  "
                    f"{str(summary['destination'])[:12]:12} {summary['message_type']:8} "
                    f"{summary['order_status']:5} {summary['control_id']:15} "
                    f"{summary['status']:8} {summary['attempts']:>5}  "
                    f"{str(summary['last_error'] or '')[:60]}"
                )
            return 0
        if args.outbound_command == "show":
            with db.reading() as session:
                row = outbound.get(session, args.id)
            if row is None:
                print(f"mwlbroker: no outbound message with id {args.id}", file=sys.stderr)
                return 1
            summary = outbound_summary(row)
            text = row.payload.decode("utf-8", errors="replace")
            summary["segments"] = [s for s in text.split("\r") if s]
            summary["ack"] = row.ack
            if args.json:
                print(json.dumps(summary, indent=2, ensure_ascii=False))
            else:
                for key, value in summary.items():
                    if key not in ("segments", "ack"):
                        print(f"{key:20} {value if value is not None else ''}")
                print()
                for segment in summary["segments"]:
                    print(segment)
                if row.ack:
                    print()
                    print("answer:")
                    for segment in row.ack.replace("\n", "\r").split("\r"):
                        if segment:
                            print(f"    {segment}")
            return 0
        try:
            row = build_outbound(config, db).retry(args.id)
        except (LookupError, ValueError) as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 1
        print(f"outbound message {row.id} to {row.destination}: pending, due now")
        return 0
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def _modality(args: argparse.Namespace, config: Config) -> int:
    """``modality worklist | start | store | complete | discontinue``: a scanner, emulated."""
    from datetime import date

    from mwlbroker.dicom import modality as emulator
    from mwlbroker.tls import TLSConfigError, client_context

    host = args.host or config["dicom.host"]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening on every address: talk to it locally
    tls = None
    if args.tls or args.ca or args.cert:
        try:
            tls = client_context(args.ca, args.cert, args.key, setting="--tls")
        except TLSConfigError as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 2
    target = emulator.Target(
        host=host,
        port=args.port or config["dicom.port"],
        called_ae=args.aec or config["dicom.ae_title"],
        calling_ae=args.aet,
        timeout=args.timeout,
        tls=tls,
    )
    scanner = emulator.ModalityEmulator(target)
    state = emulator.EmulatorState(args.state)
    action = args.modality_command
    try:
        if action == "worklist":
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
                print(json.dumps(rows, indent=2, ensure_ascii=False))
                return 0
            print(f"{len(rows)} worklist item(s) for {target.calling_ae}")
            for row in rows:
                print(
                    f"  {row['accession_number']:16} {row['patient_id']:12} "
                    f"{row['patient_name'][:28]:28} {row['modality']:4} {row['station_ae']:10} "
                    f"{row['start']:14} SPS {row['sps_id']:12} {row['procedure']}"
                )
            return 0
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
    except emulator.EmulatorError as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1


def _emulated_item(
    scanner: Any, state: Any, args: argparse.Namespace, *, fresh: bool
) -> tuple[Any, dict[str, Any]]:
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


def _forward(args: argparse.Namespace, config: Config) -> int:
    """``forward list | retry ID``: where the instances for the PACS stand."""
    from mwlbroker.app import StartupError, build_forward, open_database, prepare_database
    from mwlbroker.store import forward
    from mwlbroker.store.db import DatabaseUnavailable
    from mwlbroker.store.files import InstanceFiles

    db = open_database(config)
    try:
        prepare_database(db)
        if args.forward_command == "list":
            with db.reading() as session:
                found = forward.latest_with_instances(session, status=args.status, limit=args.limit)
            rows = [
                {
                    "id": task.id,
                    "created_at": task.created_at.isoformat(),
                    "sop_instance_uid": uid,
                    "study_id": study_id,
                    "status": task.status,
                    "attempts": task.attempts,
                    "answer": task.answer,
                    "last_error": task.last_error,
                }
                for task, uid, study_id in found
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            print(f"{'ID':>7}  {'STATUS':8} {'TRIES':>5}  {'SOP INSTANCE UID':64}  ERROR / ANSWER")
            for row in rows:
                print(
                    f"{row['id']:>7}  {row['status']:8} {row['attempts']:>5}  "
                    f"{row['sop_instance_uid']:64}  {row['last_error'] or row['answer'] or ''}"
                )
            return 0
        service = build_forward(config, db, InstanceFiles(config["storage.dir"]))
        try:
            task = service.retry(args.id)
        except (LookupError, ValueError) as error:
            print(f"mwlbroker: {error}", file=sys.stderr)
            return 1
        print(f"forward task {task.id}: pending, due now")
        return 0
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def _jobs(args: argparse.Namespace, config: Config) -> int:
    """``jobs list | run NAME``: the scheduled jobs, their last runs, and running one now."""
    from mwlbroker.app import Broker, StartupError, prepare_database
    from mwlbroker.services import views
    from mwlbroker.store.db import DatabaseUnavailable

    broker = Broker(config)  # builds the jobs exactly as serve does; starts nothing
    runner = broker.jobs
    try:
        prepare_database(broker.db)
        if args.jobs_command == "run":
            try:
                run = runner.run(args.name, trigger="manual")
            except LookupError as error:
                print(f"mwlbroker: {error}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps(views.job_run_summary(run), indent=2, ensure_ascii=False))
            else:
                state = "done" if run.ok else "FAILED"
                print(f"{run.job}: {state} in {run.milliseconds:.0f} ms: {run.result}")
            return 0 if run.ok else 1
        overview = views.jobs_overview(runner)
        if args.json:
            print(json.dumps(overview, indent=2, ensure_ascii=False))
            return 0
        print(f"{'JOB':16} {'SCHEDULE':18} {'LAST RUN':20} {'NODE':24} {'MS':>7}  RESULT")
        for row in overview["jobs"]:
            last_run: dict[str, Any] | None = row["last_run"]
            if last_run is None:
                print(f"{row['name']:16} {row['schedule']:18} {'never':20}")
                continue
            state = {True: "", False: "FAILED: ", None: "running: "}[last_run["ok"]]
            print(
                f"{row['name']:16} {row['schedule']:18} {last_run['started_at'][:19]:20} "
                f"{last_run['node'][:24]:24} {last_run['milliseconds']:>7.0f}  "
                f"{state}{last_run['result']}"
            )
        if overview["lease"] is not None:
            lease = overview["lease"]
            print(f"scheduler lease: {lease['holder']} until {lease['expires_at']}")
        return 0
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        broker.db.dispose()


def _reconciliation(args: argparse.Namespace, config: Config) -> int:
    """``mpps list`` and ``studies list``: what the modalities did, and what matched nothing;
    ``link`` goes to :func:`_link`."""
    from mwlbroker.app import StartupError, open_database, prepare_database
    from mwlbroker.services.views import performed_step_summary, study_summary
    from mwlbroker.store import images, progress
    from mwlbroker.store.db import DatabaseUnavailable

    if getattr(args, f"{args.command}_command") == "link":
        return _link(args, config)
    db = open_database(config)
    try:
        prepare_database(db)
        rows: list[dict[str, object]]
        with db.reading() as session:
            if args.command == "mpps":
                rows = [
                    performed_step_summary(r)
                    for r in progress.list_performed_steps(
                        session, scheduled=False if args.unscheduled else None, limit=args.limit
                    )
                ]
                columns = [
                    "id",
                    "status",
                    "scheduled",
                    "station_ae",
                    "patient_id",
                    "accession_number",
                    "sop_instance_uid",
                ]
            else:
                rows = [
                    study_summary(r)
                    for r in images.list_studies(
                        session, matched=False if args.unmatched else None, limit=args.limit
                    )
                ]
                columns = [
                    "id",
                    "order_id",
                    "patient_id",
                    "accession_number",
                    "modalities",
                    "series",
                    "instances",
                    "study_instance_uid",
                ]
        if args.json:
            print(json.dumps(rows, indent=2, ensure_ascii=False))
            return 0
        print("  ".join(column.upper() for column in columns))
        for row in rows:
            print("  ".join("-" if row[c] is None else str(row[c]) for c in columns))
        return 0
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def _actor(args: argparse.Namespace) -> str:
    import getpass

    if args.actor:
        return str(args.actor)
    try:
        return f"cli {getpass.getuser()}"
    except Exception:  # no login name (a container without a passwd entry)
        return "cli"


def _link(args: argparse.Namespace, config: Config) -> int:
    """``mpps link`` and ``studies link``: an exam without an order, linked to its step."""
    from dataclasses import asdict

    from mwlbroker.app import StartupError, build_reconciliation, open_database, prepare_database
    from mwlbroker.services.reconciliation import ReconciliationRefused
    from mwlbroker.store.db import DatabaseUnavailable

    if bool(args.steps) == bool(args.accession):
        print("mwlbroker: give either STEP_ID(s) or --accession", file=sys.stderr)
        return 2
    db = open_database(config)
    try:
        prepare_database(db)
        service = build_reconciliation(config, db)
        steps = list(args.steps) or service.steps_for_accession(args.accession)
        if not steps:
            print(f"mwlbroker: no scheduled step with accession {args.accession}", file=sys.stderr)
            return 1
        if args.command == "mpps":
            outcome = service.link_mpps(args.id, steps, actor=_actor(args))
        elif len(steps) > 1:
            print(
                f"mwlbroker: accession {args.accession} has {len(steps)} steps "
                f"({', '.join(map(str, steps))}); give the STEP_ID",
                file=sys.stderr,
            )
            return 1
        else:
            outcome = service.link_study(args.id, steps[0], actor=_actor(args))
        if args.json:
            print(json.dumps(asdict(outcome), indent=2))
            return 0
        noun = "performed step" if outcome.kind == "mpps" else "study"
        print(
            f"{noun} {outcome.id} linked to step(s) {', '.join(map(str, outcome.step_ids))}"
            + "".join(f"; step {i}: {b} -> {a}" for i, b, a in outcome.changes)
        )
        return 0
    except (LookupError, ReconciliationRefused) as error:
        print(f"mwlbroker: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def _patients(args: argparse.Namespace, config: Config) -> int:
    """``patients collisions | duplicates | dismiss | merge | unmerge | merges``."""
    from dataclasses import asdict

    from mwlbroker.app import StartupError, build_reconciliation, open_database, prepare_database
    from mwlbroker.domain.identity import DUPLICATE_MIN_SCORE
    from mwlbroker.services.reconciliation import ReconciliationRefused
    from mwlbroker.store.db import DatabaseUnavailable

    action = args.patients_command
    db = open_database(config)
    try:
        prepare_database(db)
        service = build_reconciliation(config, db)
        if action == "collisions":
            found = service.collisions(limit=args.limit)
            if args.json:
                print(json.dumps([asdict(c) for c in found], indent=2, ensure_ascii=False))
                return 0
            print(f"{len(found)} Patient ID(s) with conflicting demographics")
            for collision in found:
                print(f"\n{collision.patient.label}: {'; '.join(collision.conflicts)}")
                for e in collision.evidence:
                    orders = f"  orders {', '.join(e.orders)}" if e.orders else ""
                    print(
                        f"    {e.name or '-':28} {e.birth_date or '-':8} {e.sex or '-':2} "
                        f"{e.source}{orders}"
                    )
            return 0
        if action == "duplicates":
            min_score = DUPLICATE_MIN_SCORE if args.min_score is None else args.min_score
            if not args.stored:
                sweep = service.sweep_duplicates(min_score=min_score)
                if not args.json:
                    print(
                        f"swept {sweep.patients} patient(s) in {sweep.seconds:g} s: "
                        f"{sweep.candidates} candidate pair(s)"
                    )
            pairs = service.duplicates(min_score=min_score, limit=args.limit)
            if args.json:
                print(json.dumps([asdict(c) for c in pairs], indent=2, ensure_ascii=False))
                return 0
            print(
                f"{'SCORE':>5}  {'PATIENT':20} {'NAME':28}  {'OTHER':20} {'NAME':28} BORN     SEX"
            )
            for pair in pairs:
                a, b = pair.first, pair.second
                print(
                    f"{pair.score:5.1f}  {a.label[:20]:20} {a.name[:28]:28}  {b.label[:20]:20} "
                    f"{b.name[:28]:28} {a.birth_date:8} {a.sex or '-'}/{b.sex or '-'}"
                )
            return 0
        if action == "dismiss":
            first, second = service.find_patient(args.first), service.find_patient(args.second)
            service.dismiss(first.pk, second.pk, actor=_actor(args), note=args.note)
            print(f"{first.label} and {second.label}: not the same person (remembered)")
            return 0
        if action == "merge":
            source, survivor = (
                service.find_patient(args.source),
                service.find_patient(args.survivor),
            )
            outcome = service.merge(
                source.pk, survivor.pk, actor=_actor(args), notify_ris=args.notify_ris
            )
        elif action == "unmerge":
            outcome = service.undo_merge(args.merge_id, actor=_actor(args))
        else:
            views = service.merges(limit=args.limit)
            if args.json:
                print(json.dumps([asdict(v) for v in views], indent=2, ensure_ascii=False))
                return 0
            print(f"{'ID':>5}  {'AT (UTC)':19}  {'MERGED AWAY':20} {'SURVIVOR':20} ORIGIN  UNDONE")
            for v in views:
                print(
                    f"{v.id:>5}  {v.at[:19]:19}  {v.prior.label[:20]:20} "
                    f"{v.survivor.label[:20]:20} {v.origin:7} {(v.undone_at or '-')[:19]}"
                )
            return 0
        if args.json:
            print(json.dumps(asdict(outcome), indent=2, ensure_ascii=False))
            return 0
        if action == "merge":
            print(
                f"merge {outcome.merge_id}: {outcome.prior.label} merged into "
                f"{outcome.survivor.label}: {len(outcome.orders)} order(s), "
                f"{len(outcome.steps)} step(s) moved"
                + (f"; ADT^A40 queued ({len(outcome.notified)})" if outcome.notified else "")
            )
        else:
            print(
                f"merge {outcome.merge_id} undone: {len(outcome.orders)} order(s), "
                f"{len(outcome.steps)} step(s) back with {outcome.prior.label}"
            )
            for note in outcome.notes:
                print(f"  note: {note}")
        return 0
    except (LookupError, ReconciliationRefused) as error:
        print(f"mwlbroker: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    except (DatabaseUnavailable, StartupError) as error:
        print(f"mwlbroker: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(main())
