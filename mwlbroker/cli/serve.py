"""``mwlbroker serve``: run the broker until it is stopped."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, command
from mwlbroker.cli.output import print_failure

if TYPE_CHECKING:
    from mwlbroker.config import Config


def register(commands: Commands) -> None:
    """Add ``serve``."""
    command(commands, "serve", help="run the broker (MLLP listener and the rest)", run=serve)


def serve(args: argparse.Namespace, config: Config) -> int:
    """Start the listeners, the web page and the scheduler, and run until stopped."""
    from mwlbroker.app import Broker, StartupError
    from mwlbroker.logs import configure_logging

    configure_logging(config["log.level"], config["log.format"])
    broker = Broker(config)
    try:
        broker.run()
    except StartupError as error:
        print_failure(str(error))
        broker.stop()
        return error.exit_code
    return 0
