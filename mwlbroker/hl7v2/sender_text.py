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
