"""Hide secrets in text meant for logs and screens."""

from __future__ import annotations

import re


def mask_url(url: str) -> str:
    """Hide the password of a URL such as ``postgresql://user:secret@host/db``."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    # libpq also takes the password as a query parameter: ?password=...
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)
