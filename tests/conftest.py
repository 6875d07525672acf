"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evoforge.problem import Problem

NOBODY = 65534
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="session")
def unprivileged_python() -> Iterator[str]:
    """An interpreter ``nobody`` can run that imports this evoforge: a venv of the system's
    Python 3 pointing at this checkout's packages (the project's own venv may sit under a
    directory only root can enter). Skips where that cannot be made (not root, no setpriv, no
    system Python of this version)."""
    system_python = "/usr/bin/python3"
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    if not os.path.exists(system_python) or not shutil.which("setpriv"):
        pytest.skip("no system Python 3 or setpriv for the unprivileged user")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = Path(sys.executable).parents[1] / "lib" / version / "site-packages"
    venv = Path("/var/tmp") / f"evoforge-unpriv-venv-{secrets.token_hex(4)}"
    done = subprocess.run([system_python, "-m", "venv", "--without-pip", str(venv)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot create a venv with {system_python}: {done.stderr[-300:]}")
    try:
        got = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True, text=True, check=True).stdout.strip()
        if got != str(tuple(sys.version_info[:2])):
            pytest.skip(f"the system Python is {got}, not this one's version")
        pth = venv / "lib" / version / "site-packages" / "evoforge-tests.pth"
        pth.write_text(f"{site}\n{SRC}\n")
        yield str(venv / "bin" / "python")
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def as_nobody(python: str, *args: str) -> list[str]:
    """argv running ``python -m evoforge ARGS`` as ``nobody`` with no supplementary groups."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            python, "-m", "evoforge", *args]


def stub_problem(tmp_path: Path, program: str) -> Problem:
    """A problem dir holding ``program`` and an evaluator that is never the one used (tests
    that pass their own executor): the run needs a problem, the test decides the scores."""
    d = tmp_path / "problem"
    d.mkdir()
    (d / "initial_program.py").write_text(program)
    (d / "evaluator.py").write_text("def evaluate(p):\n    return {'combined_score': 0.0}\n")
    return Problem.load(d)
