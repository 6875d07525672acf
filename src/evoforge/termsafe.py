"""Make untrusted text harmless on a terminal by turning every control character into visible text.

Candidates, evaluators and LLMs write text that the CLI shows (stderr, tracebacks, failure
reasons, metric names, artifacts, program code, notes, model names). Printed raw, that text could
drive the terminal: OSC 52 clipboard writes, screen clears, cursor moves, window titles, OSC 8
hyperlinks, C1 controls (U+009B is a one-character CSI), backspace or carriage-return overwrites,
or bidi overrides that make code read differently from how it runs. :func:`visible` replaces each
such character with its Python escape spelling, so it is seen, never obeyed:
ESC -> ``\\x1b``, U+009B -> ``\\x9b``, DEL -> ``\\x7f``, U+202E -> ``\\u202e``.

What is escaped: Unicode categories Cc (C0 controls, DEL, C1 controls), Cf (format characters:
bidi embeddings, overrides and isolates, zero-width characters, tag characters, BOM, soft
hyphen), Cs (lone surrogates, which would also crash the output encoder), Zl and Zp (U+2028,
U+2029). What is kept: newline and tab, so multi-line code and tracebacks stay readable, and every
printable character. Backslashes are kept as they are, so a literal ``\\x1b`` in the text looks the
same as an escaped ESC; neither acts on the terminal, which is the point.

This module only neutralises terminal controls; rich markup (``[red]``) is a separate matter:
print with ``markup=False``, wrap in ``rich.text.Text``, or ``rich.markup.escape`` it.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["visible"]

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Everything outside printable ASCII, newline and tab is looked at; the category decides.
_SUSPECT = re.compile(r"[^\t\n\x20-\x7e]")


@functools.lru_cache(maxsize=4096)
def _show(ch: str) -> str:
    if unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        return ch
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def visible(text: str) -> str:
    """``text`` with every control and format character spelled out (``\\x1b``, ``\\u202e``);
    newline and tab are kept. Safe to print: the result contains no terminal control."""
    return _SUSPECT.sub(lambda m: _show(m.group()), text)
