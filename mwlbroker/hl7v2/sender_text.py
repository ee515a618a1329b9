"""Error text as a sender may read it: no path of the broker's own files.

The intake's errors name the mapping line that decided (``ihe-swf.yaml:57``) so that the
person fixing it finds it; a file's place on the server is none of the sender's business. The
ACK builder passes every MSA-3 / ERR-8 text through :func:`for_sender`, whatever produced it
(a mapping error, a settings path, an operating system error).
"""

from __future__ import annotations

import re

# An absolute POSIX path (/opt/mwlbroker/mappings/ihe-swf.yaml) or a Windows one
# (C:\mwlbroker\mappings\ihe-swf.yaml): at least one folder, then the file's name. Not
# preceded by a word character, so ORC-1/ORC-5 and NW/SC stay as they are.
_PATH = re.compile(
    r"(?<![\w.~/-])(?:/(?:[\w.@+-]+/)+|[A-Za-z]:\\(?:[\w.@+ -]+\\)*)(?P<name>[\w.@+-]+)"
)


def for_sender(text: str) -> str:
    """``text`` with each absolute file path cut to the file's name."""
    return _PATH.sub(lambda match: match["name"], text)


# Faults of the broker itself: the record keeps the detail (an exception's words may hold SQL,
# file names or data), the sender reads only this much.
INTERNAL_FAULT = "internal error while applying the message"
UNREADABLE = "message cannot be read"
_FAULTS = (INTERNAL_FAULT, UNREADABLE)
NOT_STORED = "message not stored"


def error_for_sender(error: str | None, message_id: int | None = None) -> str | None:
    """A stored message's error as its sender reads it: an internal fault without its detail."""
    if error and error.startswith(NOT_STORED):
        return error.split(" (", 1)[0]  # nothing was kept: no message to name, no driver's words
    if error and error.startswith(_FAULTS):
        kept = f" (kept as message {message_id})" if message_id else ""
        return f"{error.split(':', 1)[0]}{kept}: the details are in the broker's log"
    return error
