"""Spreadsheet cells made safe: text a spreadsheet would run as a formula is neutralised.

Pure (no Flask, no SQLAlchemy), so any package may use it. OWASP's advice for CSV
injection: a text cell that starts with `=`, `+`, `-`, `@`, tab, carriage return or NUL
gets a leading single quote, in CSV and XLSX alike. Numbers stay numbers.
"""

from __future__ import annotations

import re
from typing import Final

FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "\0")
_STARTS: Final = frozenset(FORMULA_STARTS)
# A plain number is never run as a formula, so "-5" may stay as it is.
_PLAIN_NUMBER: Final = re.compile(r"[+-]?\d+(?:\.\d+)?")


def neutralise(text: str) -> str:
    """`text`, with a leading apostrophe if a spreadsheet would run it as a formula."""
    if text[:1] in _STARTS and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_cell(value: object) -> str:
    """A CSV cell's text: None is empty, numbers are written as they are, text is neutralised."""
    if value is None:
        return ""
    if type(value) is str:  # the common case first: exports are mostly text
        return neutralise(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return neutralise(str(value))
    return str(value)
