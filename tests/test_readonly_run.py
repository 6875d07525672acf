"""A run directory this user cannot write (issue 9, defect 8): ``status``, ``best`` and ``show``
work read-only; ``resume`` says why not and how to continue, without a traceback. Run as
``nobody`` on a run that root made and owns (mode 0755), through the installed entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import as_nobody

EVOFORGE = str(Path(sys.executable).with_name("evoforge"))


@pytest.fixture
def root_owned_run(tmp_path: Path) -> Iterator[Path]:
    """A real (finished) run in a directory owned by root, mode 0755."""
    import secrets

    problem = tmp_path / "problem"
    problem.mkdir()
    (problem / "initial_program.py").write_text(
        "# EVOLVE-BLOCK-START\ndef f():\n    return 2\n# EVOLVE-BLOCK-END\n")
    (problem / "evaluator.py").write_text(
        "import importlib.util\n\ndef evaluate(path):\n"
        "    spec = importlib.util.spec_from_file_location('p', path)\n"
        "    m = importlib.util.module_from_spec(spec)\n    spec.loader.exec_module(m)\n"
        "    return {'combined_score': float(m.f())}\n")
    run_dir = Path("/var/tmp") / f"evoforge-ro-run-{secrets.token_hex(4)}"
    done = subprocess.run([EVOFORGE, "run", str(problem), "--out", str(run_dir), "-q",
                           "--max-programs", "6"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir.chmod(0o755)
    for f in run_dir.iterdir():
        f.chmod(0o644)
    try:
        yield run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_inspection_works_and_resume_explains(root_owned_run: Path,
                                              unprivileged_python: str) -> None:
    for argv in (["status", str(root_owned_run)], ["best", str(root_owned_run)],
                 ["show", str(root_owned_run), "0"]):
        done = subprocess.run(as_nobody(unprivileged_python, *argv), capture_output=True,
                              text=True, timeout=120, cwd="/var/tmp", check=False)
        assert done.returncode == 0, (argv, done.stderr)
        assert "Traceback" not in done.stderr
    best = subprocess.run(as_nobody(unprivileged_python, "best", str(root_owned_run)),
                          capture_output=True, text=True, timeout=120, cwd="/var/tmp", check=False)
    assert "return 2" in best.stdout or "return" in best.stdout
    resume = subprocess.run(as_nobody(unprivileged_python, "resume", str(root_owned_run)),
                            capture_output=True, text=True, timeout=120, cwd="/var/tmp",
                            check=False)
    assert resume.returncode == 1 and "Traceback" not in resume.stderr
    assert "cannot write to the run directory" in resume.stderr
    assert "cp -r" in resume.stderr
    assert not (root_owned_run / "evoforge.db-shm").exists()  # nothing was written
