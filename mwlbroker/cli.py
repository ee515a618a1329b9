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
    from mwlbroker.store.tables import MessageRow


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $MWLBROKER_CONFIG, else built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mwlbroker",
        description="Modality Worklist broker and HL7 v2 integration engine.",
    )
    parser.add_argument("--version", action="version", version=f"mwlbroker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the broker (MLLP listener and the rest)")
    _add_config_flag(serve)

    send = commands.add_parser("send", help="send HL7 files over MLLP and print each ACK")
    _add_config_flag(send)
    send.add_argument(
        "files", nargs="+", metavar="FILE", help="HL7 file(s), one or more messages each"
    )
    send.add_argument("--host", help="broker address (default: hl7.host)")
    send.add_argument("--port", type=int, help="broker MLLP port (default: hl7.port)")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.add_argument("--quiet", "-q", action="store_true", help="print one line per message")

    config = commands.add_parser("config", help="configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_commands.add_parser(
        "show", help="print the effective configuration, secrets masked"
    )
    _add_config_flag(show)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the schema to this version")
    _add_config_flag(upgrade)
    current = db_commands.add_parser("current", help="print the schema revision")
    _add_config_flag(current)

    maps = commands.add_parser("mappings", help="the HL7 to worklist mapping files")
    map_commands = maps.add_subparsers(dest="mappings_command", metavar="ACTION", required=True)
    check = map_commands.add_parser("check", help="validate every mapping file")
    _add_config_flag(check)
    check.add_argument("--dir", help="mapping folder (default: mappings.dir)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    trial = map_commands.add_parser(
        "test", help="print the worklist items a message would produce, touching nothing"
    )
    _add_config_flag(trial)
    trial.add_argument("message", metavar="MESSAGE.hl7")
    trial.add_argument("--dir", help="mapping folder (default: mappings.dir)")
    trial.add_argument("--json", action="store_true", help="the items as DICOM JSON")

    msgs = commands.add_parser("messages", help="the message store")
    msg_commands = msgs.add_subparsers(dest="messages_command", metavar="ACTION", required=True)
    listing = msg_commands.add_parser("list", help="newest messages first")
    _add_config_flag(listing)
    listing.add_argument("--status", choices=["processed", "failed", "rejected"])
    listing.add_argument("--control-id", help="only messages with this MSH-10")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show_msg = msg_commands.add_parser("show", help="one message: header, status, error, segments")
    _add_config_flag(show_msg)
    show_msg.add_argument("id", type=int)
    show_msg.add_argument("--json", action="store_true", help="machine-readable output")
    reprocess = msg_commands.add_parser(
        "reprocess", help="apply a failed or rejected message again"
    )
    _add_config_flag(reprocess)
    reprocess.add_argument("id", type=int)
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
    from mwlbroker.hl7v2.sender import MLLPClient, SendError, split_file

    host = args.host or config["hl7.host"]
    port = args.port or config["hl7.port"]
    batches: list[tuple[str, list[bytes]]] = []
    for name in args.files:
        try:
            batches.append((name, split_file(Path(name).read_bytes())))
        except OSError as error:
            print(f"mwlbroker: {name}: {error.strerror}", file=sys.stderr)
            return 2
    failures = 0
    try:
        with MLLPClient(host, port, timeout=args.timeout) as client:
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

    db = open_database(config)
    try:
        if args.db_command == "upgrade":
            before, after = migrate.upgrade(db)
            if before == after:
                print(f"database {db.describe()} is up to date at revision {after}")
            else:
                print(f"database {db.describe()} upgraded from {before or 'nothing'} to {after}")
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


def _messages(args: argparse.Namespace, config: Config) -> int:
    from mwlbroker.app import StartupError, build_ingest, open_database, prepare_database
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
                print(json.dumps([_summary(row) for row in rows], indent=2))
            else:
                print(
                    f"{'ID':>7}  {'RECEIVED (UTC)':19}  {'TYPE':8} {'CONTROL ID':20} "
                    f"{'SENDER':20} {'STATUS':9} ACK  ERROR"
                )
                for row in rows:
                    summary = _summary(row)
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
            summary = _summary(found)
            text = _decode(found)
            summary["segments"] = [
                s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s
            ]
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


def _decode(row: MessageRow) -> str:
    from mwlbroker.mapping.reader import decode

    raw = row.raw
    try:
        return decode(raw)[0]
    except Exception:
        return raw.decode("latin-1")


def _summary(r: MessageRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "received_at": r.received_at.isoformat(),
        "peer": r.peer,
        "sender": "/".join(p for p in (r.sending_application, r.sending_facility) if p),
        "type": f"{r.message_type}^{r.trigger_event}" if r.trigger_event else r.message_type,
        "control_id": r.control_id,
        "version": r.version,
        "charset": r.charset,
        "size": r.size,
        "truncated": r.truncated,
        "status": r.status,
        "ack_code": r.ack_code,
        "error": r.error,
        "error_location": r.error_location,
        "attempts": r.attempts,
        "duplicates": r.duplicate_count,
    }


if __name__ == "__main__":
    sys.exit(main())
