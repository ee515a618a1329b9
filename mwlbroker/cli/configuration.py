"""``mwlbroker config show``: the effective configuration, where each value came from."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, add_group, command

if TYPE_CHECKING:
    from mwlbroker.config import Config


def register(commands: Commands) -> None:
    """Add ``config show``."""
    actions = add_group(commands, "config", help="configuration")
    command(actions, "show", help="print the effective configuration, secrets masked", run=show)


def show(args: argparse.Namespace, config: Config) -> int:
    """Print the settings as TOML, a section at a time, secrets masked, each with its source."""
    current_section = None
    for key, shown, source in config.display():
        section, name = key.split(".", 1)
        if section != current_section:
            print(f"{'' if current_section is None else chr(10)}[{section}]")
            current_section = section
        print(f"{name} = {shown}  # {source}")
    return 0
