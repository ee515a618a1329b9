"""Text for matching and for answering: folding names, and fitting text into a character set.

PS3.4 C.2.2.2.1 lets an SCP match Person Names insensitive to case and accents; :func:`fold`
is that comparison key. Old modalities read only one single-byte character set (PS3.3
C.12.1.1.2); :func:`transliterate` turns what that set cannot hold into its closest plain
letters instead of bytes the modality would show as garbage.
"""

from __future__ import annotations

import unicodedata

# (0008,0005) Specific Character Set defined terms a response may be answered in, with the
# Python codec of each. Single-byte sets only (no ISO 2022 code extensions): these are what
# old modalities read. "ISO_IR 6" is the default repertoire (ASCII); a response in it carries
# no Specific Character Set at all.
RESPONSE_CHARSETS: dict[str, str] = {
    "ISO_IR 192": "utf-8",  # Unicode in UTF-8
    "ISO_IR 6": "ascii",  # default repertoire
    "ISO_IR 100": "latin_1",  # Latin alphabet No. 1 (Western Europe)
    "ISO_IR 101": "iso8859_2",  # Latin alphabet No. 2 (Central Europe)
    "ISO_IR 109": "iso8859_3",  # Latin alphabet No. 3
    "ISO_IR 110": "iso8859_4",  # Latin alphabet No. 4
    "ISO_IR 144": "iso8859_5",  # Cyrillic
    "ISO_IR 127": "iso8859_6",  # Arabic
    "ISO_IR 126": "iso8859_7",  # Greek
    "ISO_IR 138": "iso8859_8",  # Hebrew
    "ISO_IR 148": "iso8859_9",  # Latin alphabet No. 5 (Turkish)
    "ISO_IR 166": "tis_620",  # Thai
}
DEFAULT_REPERTOIRE = "ISO_IR 6"

# Letters that Unicode does not decompose into a base letter and a mark, with the plain
# letters people write instead (case kept, for answers).
_PLAIN_LETTERS = {
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Ð": "D",
    "ð": "d",
    "Ħ": "H",
    "ħ": "h",
    "\u0131": "i",
    "Ŀ": "L",
    "ŀ": "l",
    "Ŧ": "T",
    "ŧ": "t",
    "Ŋ": "N",
    "ŋ": "n",
    "Ø": "O",
    "ø": "o",
    "Æ": "AE",
    "æ": "ae",
    "Œ": "OE",
    "œ": "oe",
    "Þ": "TH",
    "þ": "th",
    "ß": "ss",
    "ẞ": "SS",
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "-",
}
_PLAIN = str.maketrans(_PLAIN_LETTERS)
_PLAIN_FOLDED = str.maketrans(
    {k: v.casefold() for k, v in _PLAIN_LETTERS.items() if k == k.casefold()}
)
REPLACEMENT = "?"


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold(text: str) -> str:
    """The case- and accent-insensitive comparison key of ``text`` ("Müller" -> "muller")."""
    if text.isascii():
        return text.casefold()
    return _strip_marks(text).casefold().translate(_PLAIN_FOLDED)


def transliterate(text: str, codec: str) -> str:
    """``text`` with each character ``codec`` cannot encode replaced by its plain letters.

    Accents the set lacks are dropped ("Dvořák" -> "Dvorák" in Latin-1), letters without a
    decomposition use a small table ("Łódź" -> "Lódz"), and what has no Latin reading at all
    becomes "?".
    """
    try:
        text.encode(codec)
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        out.append(ch if _fits(ch, codec) else _plain(ch, codec))
    return "".join(out)


def _fits(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _plain(ch: str, codec: str) -> str:
    for candidate in (_strip_marks(ch), ch.translate(_PLAIN), _strip_marks(ch).translate(_PLAIN)):
        if candidate and candidate != ch and _fits(candidate, codec):
            return candidate
    return REPLACEMENT
