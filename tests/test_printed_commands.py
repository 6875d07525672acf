"""Every command a run prints works as printed (issue 10, the first hour): after `make demo` the
venv is not on PATH, so a printed `evoforge status ...` must name `.venv/bin/evoforge`."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUAD = REPO / "tests" / "fixtures" / "problems" / "quadratic"


def test_the_inspect_commands_a_run_prints_work_verbatim(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    script = os.path.relpath(venv_bin / "evoforge", REPO)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # the venv is not on PATH
    done = subprocess.run([script, "run", str(QUAD), "--out", str(tmp_path / "run"), "-q",
                           "--max-programs", "3"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("inspect: "))
    commands = [c.strip() for c in line.removeprefix("inspect: ").split("|")]
    assert all(c.startswith(script) for c in commands), commands
    for command in commands[:2]:  # status and show (resume would run again)
        again = subprocess.run(shlex.split(command), cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=120, check=False)
        assert again.returncode == 0, (command, again.stderr[-1000:])
    assert re.search(r"resume \S+", commands[2])


def test_run_dot_names_the_run_after_the_problem_and_keeps_it_outside(tmp_path: Path) -> None:
    """`evoforge run .` from inside the problem (issue 10): the run is `runs/<problem>-<time>`
    beside the problem directory, not `runs/-<time>` inside it."""
    import shutil

    problem = tmp_path / "quad"
    shutil.copytree(QUAD, problem)
    evoforge = str(Path(sys.executable).with_name("evoforge"))
    done = subprocess.run([evoforge, "run", ".", "-q", "--max-programs", "2"], cwd=problem,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = list((tmp_path / "runs").glob("quad-*"))
    assert len(runs) == 1 and (runs[0] / "evoforge.db").is_file()
    assert not (problem / "runs").exists()


def test_an_unreachable_endpoint_offers_a_model_free_resume_that_works(tmp_path: Path) -> None:
    """No LLM answers (nothing listens on the port): the run stops with exit 3, and the
    model-free resume it offers runs as printed and makes children."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = os.path.relpath(Path(sys.executable).with_name("evoforge"), REPO)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OPENAI_API_KEY": "sk-test"}
    out = tmp_path / "run"
    done = subprocess.run(
        [script, "run", str(QUAD), "--out", str(out), "-q", "--max-programs", "4",
         "--api-base", f"http://127.0.0.1:{port}/v1", "--primary-model", "m",
         "--set", "llm.retries=0", "--set", "llm.max_consecutive_failures=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    offer = re.search(r"without an LLM \(evoforge's model-free mutator\): `([^`]*)`", done.stdout)
    assert offer, done.stdout
    assert offer.group(1) == f"{script} resume {out} --set mutator.name=model_free"
    again = subprocess.run(shlex.split(offer.group(1)), cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "programs: 4" in again.stdout, again.stdout
