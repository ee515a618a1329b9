"""``mwlbroker send``: send HL7 files to a broker over MLLP, printing each ACK."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, add_tls_flags, client_tls, command
from mwlbroker.cli.output import CommandFailed

if TYPE_CHECKING:
    from mwlbroker.config import Config


def register(commands: Commands) -> None:
    """Add ``send FILE...``."""
    send = command(commands, "send", help="send HL7 files over MLLP and print each ACK", run=run)
    send.add_argument(
        "files", nargs="+", metavar="FILE", help="HL7 file(s), one or more messages each"
    )
    send.add_argument("--host", help="broker address (default: hl7.host)")
    send.add_argument("--port", type=int, help="broker MLLP port (default: hl7.port)")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.add_argument("--quiet", "-q", action="store_true", help="print one line per message")
    add_tls_flags(
        send,
        tls="MLLP over TLS",
        ca="CA (PEM) to check the broker's certificate against",
        cert="client certificate (PEM), if the broker asks",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Send every message of every file on one connection; exit 1 unless each was ``AA``."""
    from mwlbroker.mllp.sender import MLLPClient, SendError, split_file

    host = args.host or config["hl7.host"]
    port = args.port or config["hl7.port"]
    tls = client_tls(args)
    batches: list[tuple[str, list[bytes]]] = []
    for name in args.files:
        try:
            batches.append((name, split_file(Path(name).read_bytes())))
        except OSError as error:
            raise CommandFailed(f"{name}: {error.strerror}", exit_code=2) from error
    failures = 0
    try:
        with MLLPClient(host, port, timeout=args.timeout, tls=tls) as client:
            for name, messages in batches:
                for index, message in enumerate(messages, 1):
                    label = name if len(messages) == 1 else f"{name} [{index}/{len(messages)}]"
                    reply = client.send(message)
                    acks = reply.acks  # a batch is answered with an ACK per message in it
                    batch = acks != [reply]
                    if batch and not acks:
                        print(f"{label}: a batch with no messages")
                    for number, ack in enumerate(acks, 1):
                        failures += ack.code != "AA"
                        detail = ack.reason
                        part = f" ({number}/{len(acks)} of the batch)" if batch else ""
                        print(
                            f"{label}{part}: {ack.code or '?'} {ack.field('MSA', 2)}"
                            + (f" - {detail}" if detail else "")
                        )
                    if not args.quiet:
                        for segment in reply.segments:
                            print(f"    {segment}")
    except SendError as error:
        raise CommandFailed(str(error)) from error
    return 1 if failures else 0
