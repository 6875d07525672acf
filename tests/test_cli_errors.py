"""Usage errors through the installed ``evoforge`` entry point: a usage message and exit 2, never
a traceback (a typer release that dropped click once turned every one into ModuleNotFoundError)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EVOFORGE = str(Path(sys.executable).with_name("evoforge"))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--bogus"], "No such option"),
        (["nosuchcommand"], "No such command"),
        (["run"], "Missing argument"),
        (["status"], "Missing argument"),
        (["run", "x", "--max-programs", "many"], "Invalid value for '--max-programs'"),
    ],
)
def test_usage_errors_print_usage_and_exit_2(argv: list[str], says: str, tmp_path: Path) -> None:
    done = subprocess.run([EVOFORGE, *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, check=False)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert says in done.stderr
    assert "Usage: evoforge" in done.stderr  # the program's name, not "-" or "__main__.py"


def test_a_framework_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run([EVOFORGE, "status", str(tmp_path / "nothing")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.startswith("error:")
