"""When a scheduled job runs, as a site writes it: ``every 15m``, ``cron 30 2 * * *`` or ``off``.

One short string per job keeps the configuration readable and fits an environment variable;
the cron form is the five fields every administrator knows (minute hour day month weekday).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"every\s+(\d+)\s*([smhd])", re.IGNORECASE)


@dataclass(frozen=True)
class Schedule:
    """``kind`` is "off", "interval" (every ``seconds``) or "cron" (the five ``cron`` fields)."""

    kind: str
    seconds: int = 0
    cron: str = ""

    def __str__(self) -> str:
        if self.kind == "interval":
            for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
                if self.seconds % size == 0:
                    return f"every {self.seconds // size}{unit}"
        if self.kind == "cron":
            return f"cron {self.cron}"
        return "off"


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule; raises ValueError saying what is accepted."""
    value = " ".join(text.split())
    if value.lower() in ("off", "never", ""):
        return Schedule("off")
    every = _EVERY.fullmatch(value)
    if every:
        seconds = int(every.group(1)) * _UNITS[every.group(2).lower()]
        if seconds < 1:
            raise ValueError("an interval must be at least 1 second")
        return Schedule("interval", seconds=seconds)
    if value.lower().startswith("cron "):
        fields = value[5:].split()
        if len(fields) != 5:
            raise ValueError(
                f"a cron schedule has 5 fields (minute hour day month weekday), got {len(fields)}"
            )
        return Schedule("cron", cron=" ".join(fields))
    raise ValueError(f'must be "every N[s|m|h|d]", "cron M H DOM MON DOW" or "off", got {text!r}')
