"""One configuration key, declared as data: where it lives, its default, how to read it, its help."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "MWLBROKER_"


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its default, how to read it, and what it is for."""

    section: str
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_var(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"
