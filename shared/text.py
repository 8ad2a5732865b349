"""Free text: one check for every field a caller writes, one escape for every value printed.

A name, a reason, an actor label or a contact's attribute is one line of visible text.
:func:`problem` refuses what is not: control characters (C0, DEL, C1: NUL breaks
PostgreSQL's text, ESC drives a terminal), format characters (bidi overrides, zero-width
characters), lone surrogates and the Unicode line and paragraph separators. :data:`Text`
is that check as a pydantic type (a 422 naming the field); the contact import applies the
same function row by row. :func:`terminal` escapes the same characters for a terminal,
so what was stored before the check (or comes from elsewhere) prints as ``\\x1b``.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

# Control, format, surrogate, line separator, paragraph separator.
UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# What a multi-line text (an alert's annotation) may carry besides one line's characters.
LINE_BREAKS = frozenset("\t\n\r")
MESSAGE = "must not contain control or format characters (found {found} at {at})"


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in UNSAFE


def first_unsafe(value: str, allow: frozenset[str] = frozenset()) -> int | None:
    """The index of the first character :func:`problem` refuses (``None``: none)."""
    if value.isprintable():  # the common case, in C: no character of UNSAFE is printable
        return None
    for i, ch in enumerate(value):
        if ch not in allow and _unsafe(ch):
            return i
    return None


def codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def problem(value: str, allow: frozenset[str] = frozenset()) -> str | None:
    """Why ``value`` is not acceptable free text (``None``: it is), naming the first bad
    character and its index: ``must not contain control or format characters (found
    U+0000 at 3)``."""
    i = first_unsafe(value, allow)
    if i is None:
        return None
    return MESSAGE.format(found=codepoint(value[i]), at=i)


def _checked(value: str, allow: frozenset[str]) -> str:
    i = first_unsafe(value, allow)
    if i is not None:
        raise PydanticCustomError("unsafe_text", MESSAGE, {"found": codepoint(value[i]), "at": i})
    return value


def checked(value: str) -> str:
    """``value`` if it is one line of visible text; a pydantic error otherwise."""
    return _checked(value, frozenset())


def checked_lines(value: str) -> str:
    """Like :func:`checked`, but tabs and line breaks are allowed."""
    return _checked(value, LINE_BREAKS)


Text = Annotated[str, AfterValidator(checked)]

# The longest actor a record keeps (the token's name and a client's label beside it).
ACTOR_MAX = 200
"""One line of visible text (names, reasons, actor labels, labels)."""

Lines = Annotated[str, AfterValidator(checked_lines)]
"""Visible text that may span lines (an alert's annotation, folded to one line when used)."""


def one_line(value: str) -> str:
    """Tabs and line breaks folded into single spaces."""
    return " ".join(value.split())


def problem_in(value: Any, path: str) -> str | None:
    """The first problem of any string (key or value) inside JSON-like data, named by its
    path (``attributes.note: must not contain …``); ``None`` when there is none."""
    if isinstance(value, str):
        found = problem(value)
        return f"{path}: {found}" if found else None
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            found = problem(key)
            if found:
                return f"{path} (a key): {found}"
            inner = problem_in(v, f"{path}.{key}")
            if inner:
                return inner
    elif isinstance(value, list):
        for i, v in enumerate(value):
            inner = problem_in(v, f"{path}[{i}]")
            if inner:
                return inner
    return None


def terminal(value: object) -> str:
    """``value`` as text that is safe to print on a terminal: every control, format,
    surrogate and separator character written as an escape (``\\x1b``, ``\\u202e``,
    ``\\U000e0001``), the rest unchanged."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)


def _escape(ch: str) -> str:
    n = ord(ch)
    if n <= 0xFF:
        return f"\\x{n:02x}"
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"
