"""`evoforge doctor`: every protection proved by an attack from a real sandbox, FAIL where one
works, exit 1 when a protection the configuration asks for is missing.

The CLI cases run the installed entry point (as root, and as ``nobody`` where the machine
allows); the FAIL cases hand the doctor sandboxes that are deliberately weaker than the real
one and check that it notices, from inside and from outside."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evoforge import doctor
from evoforge.cli import app
from evoforge.config import EvaluationConfig
from evoforge.sandbox import BubblewrapSandbox, bubblewrap_problem

ROOT = os.geteuid() == 0
EVOFORGE = str(Path(sys.executable).with_name("evoforge"))
SRC = Path(__file__).resolve().parents[1] / "src"
NOBODY = 65534
BWRAP_PROBLEM = bubblewrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=str(BWRAP_PROBLEM))

#: the lines that prove a protection (everything but python, bubblewrap, toolchains)
PROTECTIONS = (
    "sandbox user", "capabilities", "network isolation", "PID namespace", "signals",
    "read-only filesystem", "mount covers", "root-only files", "host sockets",
    "run dir hidden", "rlimits", "process limit",
)


def _lines(stdout: str) -> dict[str, tuple[str, str]]:
    """``name -> (status, detail)`` from the doctor's report."""
    found: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        status = line[:4].strip()
        if status not in ("ok", "FAIL", "warn"):
            continue
        rest = line[6:]
        for name in (*PROTECTIONS, "python", "bubblewrap", "problem toolchains"):
            if rest.startswith(name + " ") or rest == name:
                found[name] = (status, rest[len(name):].strip())
    return found


def _assert_cleaned_up(report: Mapping[str, tuple[str, str]]) -> None:
    """Nothing the doctor set up outside is left behind."""
    found = re.search(r"evoforge-doctor-([0-9a-f]{12})", report["root-only files"][1])
    assert found, report["root-only files"]
    nonce = found.group(1)
    for parent in ("/var/tmp", "/tmp", "/run", "/usr/local/share", "/usr"):
        if os.path.isdir(parent):
            assert not [n for n in os.listdir(parent) if nonce in n], (parent, nonce)


# -- the real CLI --------------------------------------------------------------------------------


@needs_bwrap
def test_cli_doctor_proves_every_protection() -> None:
    t0 = time.monotonic()
    done = subprocess.run([EVOFORGE, "doctor"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400"}, check=False)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    report = _lines(done.stdout)
    for name in ("python", "bubblewrap", *PROTECTIONS):
        assert report[name][0] == "ok", (name, report.get(name), done.stdout)
    assert "FAIL" not in done.stdout
    user = report["sandbox user"][1]
    if ROOT:
        assert "uid 0" not in user and "root" not in user, user
    else:
        assert f"uid {os.getuid()}" in user
    assert "CapEff 0" in report["capabilities"][1] and "CapBnd 0" in report["capabilities"][1]
    assert "checked outside" in report["read-only filesystem"][1]
    assert "/var/tmp" in report["host sockets"][1]
    _assert_cleaned_up(report)
    assert elapsed < 20, elapsed  # well under 2 s on an idle machine


def test_cli_doctor_exits_1_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "bubblewrap_problem", lambda *a, **k: "bwrap is not installed (test)")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    assert "FAIL  bubblewrap" in result.output and "MISSING" in result.output
    # the configuration can choose to run without it: then those are warnings, not failures
    result = CliRunner().invoke(app, ["doctor", "--set", "evaluation.sandbox=process"])
    assert result.exit_code == 0, result.output
    assert _lines(result.output)["network isolation"][0] == "warn"


# -- in process: what the report says -----------------------------------------------------------


def test_doctor_reports_this_machine() -> None:
    results = doctor.checks()
    names = [c.name for c in results]
    assert names[:2] == ["python", "bubblewrap"]
    for name in PROTECTIONS:
        assert name in names
    by_name = {c.name: c for c in results}
    assert by_name["python"].ok
    assert by_name["bubblewrap"].ok is (BWRAP_PROBLEM is None)
    if BWRAP_PROBLEM is None:
        for name in PROTECTIONS:
            assert by_name[name].ok, by_name[name]
        assert not doctor.failed(results)
    text = doctor.render(results)
    assert text.count("\n") == len(results)
    assert ("FAIL" in text) is bool(doctor.failed(results))


def test_doctor_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "bubblewrap_problem", lambda *a, **k: "bwrap is not installed (test)")
    results = doctor.checks()
    by_name = {c.name: c for c in results}
    assert not by_name["bubblewrap"].ok and "network isolation" in by_name["bubblewrap"].detail
    assert not by_name["network isolation"].ok and "without bubblewrap" in (
        by_name["network isolation"].detail
    )
    assert by_name["bubblewrap"] in doctor.failed(results)
    text = doctor.render(results)
    assert "FAIL  bubblewrap" in text and "checks failed" in text


def test_process_sandbox_by_choice_only_warns() -> None:
    results = doctor.checks(EvaluationConfig(sandbox="process"))
    by_name = {c.name: c for c in results}
    for name in ("network isolation", "run dir hidden", "sandbox user"):
        assert not by_name[name].ok and not by_name[name].required
        assert "evaluation.sandbox=process" in by_name[name].detail
    assert by_name["rlimits"].ok, by_name["rlimits"]
    assert by_name["process limit"].ok is (not ROOT)
    assert "warn  network isolation" in doctor.render(results)


# -- weaker sandboxes are caught ------------------------------------------------------------------


@needs_bwrap
@pytest.mark.skipif(not ROOT, reason="only root can keep candidates at uid 0")
def test_root_candidates_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # A sandbox without the uid switch (what sandbox_user=root gives): the probe runs as uid 0
    # without capabilities, and reads the doctor's root-only file as its owner.
    results = doctor.checks(sandbox=BubblewrapSandbox(user="root"))
    by_name = {c.name: c for c in results}
    for name in ("sandbox user", "capabilities", "root-only files", "process limit"):
        assert not by_name[name].ok and by_name[name].required, by_name[name]
    assert "read /usr/local/share/evoforge-doctor-" in by_name["root-only files"].detail
    assert "uid 0" in by_name["capabilities"].detail
    for name in ("network isolation", "PID namespace", "signals", "read-only filesystem",
                 "mount covers", "host sockets", "run dir hidden"):
        assert by_name[name].ok, by_name[name]  # bubblewrap's own protections still hold
    assert "FAIL  root-only files" in doctor.render(results)

    # and the CLI exits 1 when evaluations would get such a sandbox
    real = BubblewrapSandbox
    monkeypatch.setattr(doctor, "BubblewrapSandbox", lambda **kw: real(user="root"))
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    assert "FAIL  root-only files" in result.output and "MISSING" in result.output
    _assert_cleaned_up(_lines(result.output))


class _Leaky(BubblewrapSandbox):
    """A bubblewrap sandbox with holes: the host's network, and /var/tmp bound read-write."""

    def command(self, argv: Sequence[str], **kw: Any) -> list[str]:
        cmd = super().command(argv, **kw)
        unshare = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        out: list[str] = []
        for arg in cmd:
            if arg == "--unshare-net":
                continue
            out += unshare if arg == "--unshare-all" else [arg]
        at = out.index("--chdir")  # over everything else: the run dir's cover included
        return [*out[:at], "--bind", "/var/tmp", "/var/tmp", *out[at:]]


@needs_bwrap
def test_leaky_sandbox_fails_seen_from_outside() -> None:
    results = doctor.checks(sandbox=_Leaky(user="auto"))
    by_name = {c.name: c for c in results}
    for name in ("network isolation", "read-only filesystem", "host sockets", "run dir hidden"):
        assert not by_name[name].ok and by_name[name].required, by_name[name]
    assert "127.0.0.1" in by_name["network isolation"].detail  # the listener saw it
    assert "host files that appeared" in by_name["read-only filesystem"].detail
    assert "hostdir/pwned" in by_name["read-only filesystem"].detail
    assert "host.sock" in by_name["host sockets"].detail
    assert "evoforge.db" in by_name["run dir hidden"].detail
    for name in ("sandbox user", "capabilities", "PID namespace", "signals"):
        assert by_name[name].ok, by_name[name]
    assert len(doctor.failed(results)) >= 4


# -- as an unprivileged user ----------------------------------------------------------------------


@needs_bwrap
def test_cli_doctor_as_nobody(unprivileged_python: str) -> None:
    cwd = Path("/var/tmp") / f"evoforge-doctor-cwd-{secrets.token_hex(4)}"
    cwd.mkdir(mode=0o755)
    try:
        os.chown(cwd, NOBODY, NOBODY)
        done = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             unprivileged_python, "-m", "evoforge", "doctor"],
            capture_output=True, text=True, timeout=120, cwd=str(cwd), check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "NO_COLOR": "1", "COLUMNS": "400"},
        )
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    if "bubblewrap" in done.stdout and "FAIL  bubblewrap" in done.stdout:
        pytest.skip(f"bubblewrap does not work for nobody here: {done.stdout[:300]}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _lines(done.stdout)
    for name in ("bubblewrap", *PROTECTIONS):
        assert report[name][0] == "ok", (name, report.get(name), done.stdout)
    # the candidate runs as the same unprivileged user, with no capabilities
    assert f"(uid {NOBODY})" in report["sandbox user"][1]
    assert f"inside: uid {NOBODY}" in report["sandbox user"][1]
    assert "CapEff 0" in report["capabilities"][1] and f"uid {NOBODY}" in report["capabilities"][1]
    assert "mode 0000" in report["root-only files"][1]
    assert "/run/" not in report["host sockets"][1]  # nobody cannot listen there
    _assert_cleaned_up(report)
