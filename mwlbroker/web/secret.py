"""The key that signs session cookies: configured, or generated once and kept in a file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_FILE = Path("var") / "web-secret-key"


def load_or_create_secret(path: Path = DEFAULT_FILE) -> str:
    """The key kept in ``path``; a new random one is written (owner-only) the first time.

    Kept rather than made per start, so that sessions survive a restart of the broker.
    """
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    os.replace(temporary, path)
    return key
