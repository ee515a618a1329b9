"""``mwlbroker bench``: measure intake and worklist speed on this machine and database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, add_json_flag
from mwlbroker.cli.output import CommandFailed, print_json

if TYPE_CHECKING:
    from mwlbroker.config import Config


def register(commands: Commands) -> None:
    """Add ``bench`` and its many knobs."""
    bench = commands.add_parser(
        "bench", help="measure intake and worklist speed on this machine and database"
    )
    bench.set_defaults(run=run)
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
    add_json_flag(bench)


def run(args: argparse.Namespace, config: Config) -> int:
    """Run the benchmark the flags describe and print its report."""
    from mwlbroker.bench.report import render
    from mwlbroker.bench.run import FULL_SIZES, BenchOptions, run_bench, stderr_progress

    try:
        sizes = FULL_SIZES if args.full else _sizes(args.sizes)
        target = _address(args.target) if args.target else None
    except ValueError as error:
        raise CommandFailed(str(error), exit_code=2) from error
    if args.messages < 1 or args.connections < 1 or args.queries < 1:
        raise CommandFailed(
            "--messages, --connections and --queries must be 1 or more", exit_code=2
        )
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
    if args.json:
        print_json(result)
    else:
        print(render(result))
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    """``--sizes 1000,10_000``: the worklist sizes, a 0 meaning none."""
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--sizes: {text!r} is not a list of numbers such as 1000,10000") from None
    if any(size < 0 for size in sizes):
        raise ValueError("--sizes: sizes cannot be negative")
    return tuple(size for size in sizes if size > 0)


def _address(text: str) -> tuple[str, int]:
    """``--target HOST:PORT``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--target: {text!r} is not HOST:PORT")
    return host, int(port)
