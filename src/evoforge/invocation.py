"""How the user invoked evoforge, so that every command a message suggests works as printed."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

__all__ = ["command", "name_the_command"]


def command() -> str:
    """``evoforge`` when that is what the shell finds; else the path the user ran (e.g.
    ``.venv/bin/evoforge`` after ``make demo``, whose venv is not on PATH), or
    ``PYTHON -m evoforge``. Library use (another script) gets ``evoforge``."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "evoforge":
        found = shutil.which("evoforge")
        if found and os.path.realpath(found) == os.path.realpath(argv0):
            return "evoforge"
        return shlex.quote(_short(argv0))  # a shell word: the path may hold a space
    if os.path.basename(argv0) in ("__main__.py", "cli.py") and "evoforge" in argv0:
        return f"{shlex.quote(_short(sys.executable))} -m evoforge"
    return "evoforge"


def name_the_command(text: str) -> str:
    """``text`` (a message) with every command it suggests in backticks (`` `evoforge ...` ``)
    naming the evoforge the user ran, as :func:`command` spells it."""
    ev = command()
    return text if ev == "evoforge" else text.replace("`evoforge ", f"`{ev} ")


def _short(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    if rel.startswith(".."):
        return os.path.abspath(path)
    return rel if os.sep in rel else os.path.join(".", rel)
