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
        # openevolve-run.py's flags: one evoforge has no use for says what to do instead
        (["run", "x", "--checkpoint", "out/checkpoints/checkpoint_10"], "resume RUN_DIR"),
        (["run", "x", "--log-level", "LOUD"], "use DEBUG, INFO, WARNING"),
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


QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"


def test_an_unforeseen_error_is_one_line_with_the_traceback_in_a_file(tmp_path: Path) -> None:
    """A bug (here: an inspection that raises something evoforge never expects) must not dump
    a traceback on the user: one line, exit 1, the traceback saved where the line says."""
    code = ("import sys\nfrom evoforge import api, cli\n"
            "def boom(*a, **k):\n    raise ZeroDivisionError('deep inside')\n"
            "api.inspect_run = boom\nsys.argv = ['evoforge', 'show', 'somewhere', '1']\n"
            "cli.main()\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "EVOFORGE_DEBUG"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**env, "TMPDIR": str(tmp_path)})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "ZeroDivisionError: deep inside" in done.stderr
    saved = list(tmp_path.glob("evoforge-error-*.txt"))
    assert len(saved) == 1 and "Traceback" in saved[0].read_text()
    assert str(saved[0]) in done.stderr.replace("\n", "")


def test_unwritable_outputs_and_missing_recordings_are_one_line_and_leave_no_run(
        tmp_path: Path) -> None:
    def evoforge(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EVOFORGE, *argv], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120)

    missing = evoforge("run", str(QUAD), "--replay", str(tmp_path / "none.jsonl"), "-q")
    assert missing.returncode == 1 and "no such recording" in missing.stderr
    assert not (tmp_path / "runs").exists()  # failed before any run directory was made
    done = evoforge("run", str(QUAD), "--max-programs", "2", "-q", "--out", "r")
    assert done.returncode == 0, done.stderr
    bad = evoforge("best", "r", "--write", str(tmp_path / "no" / "such" / "dir" / "x.py"))
    assert bad.returncode == 1 and "--write" in bad.stderr and "Traceback" not in bad.stderr


def test_default_run_dirs_started_in_the_same_second_differ(tmp_path: Path, monkeypatch) -> None:
    from evoforge import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.time, "strftime", lambda fmt: "20260101-000000")
    first = cli._default_run_dir(str(QUAD))
    first.mkdir(parents=True)
    second = cli._default_run_dir(str(QUAD))
    assert second != first and second.name == first.name + "-2"


def test_openevolves_log_level_flag_sets_evoforges_log_level(tmp_path: Path) -> None:
    """``--log-level`` as ``openevolve-run.py`` takes it: DEBUG lets evoforge's debug records
    through (here: an LLM request to a port nothing listens on, retried), the default
    (WARNING) does not."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    said = {}
    for level in ("WARNING", "DEBUG"):
        done = subprocess.run(
            [EVOFORGE, "run", str(QUAD), "--out", str(tmp_path / f"run-{len(said)}"), "-q",
             "--max-programs", "3", "--api-base", f"http://127.0.0.1:{port}/v1",
             "--primary-model", "m", "--set", "llm.retries=1", "--set", "llm.backoff_base=0.01",
             "--set", "llm.max_consecutive_failures=1", "--log-level", level],
            capture_output=True, text=True, timeout=300, check=False,
            env={**__import__("os").environ, "OPENAI_API_KEY": "sk-test", "COLUMNS": "300"})
        assert done.returncode == 3, done.stderr[-2000:]
        said[level] = done.stderr
    assert "LLM attempt 1 on" not in said["WARNING"]
    assert "LLM attempt 1 on" in said["DEBUG"], said["DEBUG"][-2000:]


def test_log_records_name_the_evoforge_that_was_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warning that suggests a command (the sandbox's "Run `evoforge doctor`") names the
    executable the user ran, as a shell word, as error messages do."""
    import logging

    from evoforge.cli import _VisibleFormatter

    fmt = _VisibleFormatter("%(message)s")
    for argv0, shown in (("/opt/x/bin/evoforge", "/opt/x/bin/evoforge"),
                         ("/opt/my tools/bin/evoforge", "'/opt/my tools/bin/evoforge'")):
        monkeypatch.setattr(sys, "argv", [argv0])
        rec = logging.LogRecord("evoforge", logging.WARNING, __file__, 1,
                                "Run `evoforge doctor` for details", None, None)
        assert fmt.format(rec) == f"Run `{shown} doctor` for details"
