"""Terminal escape injection: text written by candidates, evaluators and LLMs never drives the
user's terminal. Everything here goes through the installed ``evoforge`` entry point, as a user
would, against real run directories whose stored programs carry hostile text, and checks the
output bytes, through a pipe and through a pseudo-terminal. Plus unit tests of termsafe."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from fcntl import ioctl
from pathlib import Path

import pytest

from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.storages import SQLiteStorage
from evoforge.termsafe import visible

ESC, BEL = "\x1b", "\x07"
# One of each attack. Every piece is a raw control; the marker words make leaks easy to spot.
PAYLOAD = (
    f"{ESC}]52;c;UFdORUQ={BEL}"  # OSC 52: write the clipboard
    f"{ESC}[2J{ESC}[H{ESC}[5A"  # clear the screen, cursor home, cursor up
    f"{ESC}]0;PWNED-TITLE{BEL}"  # window title
    f"{ESC}]8;;http://evil.example/{ESC}\\click{ESC}]8;;{ESC}\\"  # OSC 8 hyperlink, ST-terminated
    "\x9b2J\x9d0;C1-TITLE\x9c"  # C1 CSI and C1 OSC ... C1 ST
    "\x08\x08XX\rOVERWRITE\x7f"  # backspace and carriage-return overwrites, DEL
    "\u202eRLO\u2066LRI\u200bZWSP"  # bidi override and isolate, zero-width space
    " [bold red]MARKUP[/] [link=http://evil.example/]L[/link] :smile:"  # rich markup, emoji code
)
SHOWN = "\\x1b]52;c;UFdORUQ=\\x07"  # how the clipboard write must look once made visible
MARKUP = "[bold red]MARKUP[/]"
# Only \r is left out of the comment copy: Python reads a raw CR in source as a line break.
PROGRAM = f'''"""Hostile fixture: the text of this program carries terminal controls."""
import sys

# {PAYLOAD.replace(chr(13), " ")}
PAYLOAD = {PAYLOAD!r}


# EVOLVE-BLOCK-START
def f():
    a = 1.5
    b = 2.0
    return a * b + 0.25
# EVOLVE-BLOCK-END


def run():
    sys.stderr.write(PAYLOAD + "\\n")
    return f()
'''
EVALUATOR = f'''import importlib.util
import sys

from evoforge.evaluation_result import EvaluationResult

PAYLOAD = {PAYLOAD!r}


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the candidate writes PAYLOAD to stderr
    value = float(mod.run())
    if REFUSE or value != 3.25:
        raise RuntimeError("refused " + PAYLOAD)
    return EvaluationResult(metrics={{"combined_score": -((value - 7.3) ** 2), PAYLOAD: 1.0}},
                            artifacts={{"feedback " + PAYLOAD: PAYLOAD}})
'''
CONFIG = "max_programs: 12\nevaluation:\n  workers: 2\n  timeout: 20\n"
# The attacks do not depend on the sandbox; the process sandbox keeps these tests about the CLI.
SANDBOX = ["--set", "evaluation.sandbox=process"]


def _entry_point() -> str:
    exe = Path(sys.executable).parent / "evoforge"
    found = str(exe) if exe.is_file() else shutil.which("evoforge")
    if found is None:
        pytest.skip("the evoforge entry point is not installed (pip install -e .)")
    return found


EVOFORGE = _entry_point()


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM")}
    return {**env, "COLUMNS": "1000", "LINES": "50", **more}


def _problem(root: Path, name: str, *, refuse: bool) -> Path:
    d = root / name
    d.mkdir()
    (d / "initial_program.py").write_text(PROGRAM)
    (d / "evaluator.py").write_text(f"REFUSE = {refuse}\n" + EVALUATOR)
    (d / "config.yaml").write_text(CONFIG)
    return d


def _pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([EVOFORGE, *args], capture_output=True, stdin=subprocess.DEVNULL,
                          env=_env(), timeout=120)


def _pty(*args: str, deadline: float = 120.0) -> tuple[int, bytes]:
    """Run with stdout and stderr on a pseudo-terminal (1000 columns); return (rc, all output)."""
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 1000, 0, 0))
    proc = subprocess.Popen([EVOFORGE, *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=_env(TERM="xterm-256color"), start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout=max(1.0, end - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, b"".join(chunks)


_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# What rich itself writes to a terminal: colours (SGR) and, for the live display, hide/show the
# cursor and its redraw (CR, erase line, cursor up). Injected text can contain none of these (its
# controls are all made visible), so anything left after removing them is a leak.
_RICH_OWN = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]|\r?\x1b\[2K|\x1b\[1A")


def _leaks(raw: bytes, *, terminal: bool) -> list[str]:
    """Every control or format character in the output (newline and tab aside), as code points.
    On a terminal, the tty's CR-LF and rich's own styling and cursor codes are allowed first."""
    text = raw.decode("utf-8")  # strict: no lone surrogates or broken bytes either
    if terminal:
        text = _RICH_OWN.sub("", text.replace("\r\n", "\n"))
    return [f"U+{ord(c):04X}" for c in text
            if c not in "\n\t" and unicodedata.category(c) in _ESCAPED]


def _inert(raw: bytes, what: str, *, terminal: bool = False) -> str:
    leaks = _leaks(raw, terminal=terminal)
    assert not leaks, f"{what}: raw controls reached the terminal: {sorted(set(leaks))}"
    return raw.decode("utf-8")


# ----------------------------------------------------------------------------- run directories


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A real run of a problem whose candidate writes PAYLOAD to stderr and whose evaluator
    raises with it, puts it in metric names and artifacts; plus programs stored through the
    SQLite storage API as an LLM would have made them (model name, note, edit kind, code)."""
    root = tmp_path_factory.mktemp("hostile")
    prob = _problem(root, "prob", refuse=False)
    run_dir = root / "run"
    r = _pipe("run", str(prob), "--out", str(run_dir), "--max-programs", "12", "--seed", "3",
              *SANDBOX)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    with SQLiteStorage(run_dir / "evoforge.db") as st:
        real_failure = next(p.id for p in st.programs(status=Status.FAILED)
                            if "refused" in p.reason)
        stats = st.stats()
        llm_id, odd_id, seq = stats["next_id"], stats["next_id"] + 1, stats["next_done_seq"]
        code = PROGRAM.replace("0.25", "4.3") + f"# {PAYLOAD}\r\n"  # raw controls, a CRLF
        llm = Program(id=llm_id, code=code, parent_ids=(0,),
                      generation=1, created_at=time.time(),
                      mutation=MutationInfo(mutator="llm", model=PAYLOAD, edit_kind="diff" + PAYLOAD,
                                            prompt_tokens=120, completion_tokens=80, cost=0.002,
                                            note=PAYLOAD))
        st.add_program(llm)
        st.record_result(llm.with_result(
            EvalResult(Status.OK, metrics={"combined_score": 0.0, PAYLOAD: 2.0}, score=0.0,
                       artifacts={PAYLOAD: PAYLOAD}),
            done_seq=seq, evaluated_at=time.time()))
        odd = Program(id=odd_id, code=PAYLOAD, parent_ids=(llm_id,), generation=2,
                      created_at=time.time(), mutation=MutationInfo(mutator=PAYLOAD))
        st.add_program(odd)
        st.record_result(odd.with_result(EvalResult(Status.CRASHED, reason=PAYLOAD),
                                         done_seq=seq + 1, evaluated_at=time.time()))
        integrity = dict(st.get_meta("integrity"))
        st.set_meta("integrity", {**integrity, "summary": "unprotected " + PAYLOAD,
                                  "earlier_sessions": [PAYLOAD]})
    return {"dir": run_dir, "run": r, "failure": real_failure, "llm": llm_id, "odd": odd_id}


def test_the_fixture_really_is_hostile(hostile_run):
    """The stored run holds the raw controls (else the tests below would prove nothing)."""
    with SQLiteStorage(Path(hostile_run["dir"]) / "evoforge.db", readonly=True) as st:
        initial, failure = st.get(0), st.get(hostile_run["failure"])
    assert PAYLOAD.replace("\r", " ") in initial.code and PAYLOAD in initial.artifacts["stderr"]
    assert PAYLOAD in initial.metrics and any(ESC in k for k in initial.artifacts)  # key capped
    assert PAYLOAD in failure.reason and PAYLOAD in failure.artifacts["traceback"]


def _commands(h: dict[str, object]) -> list[list[str]]:
    d = str(h["dir"])
    return [["status", d], ["show", d, "0"], ["show", d, str(h["failure"])],
            ["show", d, str(h["llm"])], ["show", d, str(h["odd"])]]


@pytest.mark.parametrize("which", range(5), ids=["status", "show-initial", "show-failed",
                                                  "show-llm", "show-crashed"])
def test_inspection_through_a_pipe_is_inert_and_literal(hostile_run, which):
    args = _commands(hostile_run)[which]
    r = _pipe(*args)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    shown = _inert(r.stdout, f"{args[0]} stdout")
    _inert(r.stderr, f"{args[0]} stderr")
    assert SHOWN in shown  # the hostile text is shown, made visible, not dropped
    assert MARKUP in shown and ":smile:" in shown  # rich markup and emoji codes stay literal
    assert "\\u202e" in shown or args[0] == "status"


@pytest.mark.parametrize("which", range(5), ids=["status", "show-initial", "show-failed",
                                                  "show-llm", "show-crashed"])
def test_inspection_on_a_terminal_is_inert_and_literal(hostile_run, which):
    args = _commands(hostile_run)[which]
    rc, raw = _pty(*args)
    shown = _inert(raw, f"{args[0]} on a terminal", terminal=True)
    assert rc == 0, shown
    plain = _RICH_OWN.sub("", shown)
    assert SHOWN in plain and MARKUP in plain and ":smile:" in plain


def test_status_shows_llm_fields_literally(hostile_run):
    out = _pipe("status", str(hostile_run["dir"])).stdout.decode()
    assert visible(PAYLOAD) in out  # the model name, in the LLM usage table, whole
    assert "score integrity: unprotected " + visible(PAYLOAD) in out
    assert "earlier session(s) of this run: " + visible(PAYLOAD) in out


def test_show_code_and_diff_are_visible_not_obeyed(hostile_run):
    out = _pipe("show", str(hostile_run["dir"]), str(hostile_run["llm"])).stdout.decode()
    assert "-- diff against parent --" in out and "+    return a * b + 4.3" in out
    assert f"note: {visible(PAYLOAD)}" in out
    assert f"({visible(PAYLOAD)})" in out  # the model name on the made-by line
    assert visible(f"# {PAYLOAD}\r") in out  # the code's last line, CR included, shown


def test_best_to_a_terminal_is_inert(hostile_run):
    rc, raw = _pty("best", str(hostile_run["dir"]))
    shown = _inert(raw, "best on a terminal", terminal=True)
    assert rc == 0 and SHOWN in shown and MARKUP in shown


def test_best_to_a_pipe_is_inert_and_to_a_file_is_the_exact_code(hostile_run, tmp_path):
    """A pipe may end on a terminal (`| cat`): it gets the code with control characters shown;
    --write gets it byte for byte (documented in README)."""
    with SQLiteStorage(Path(hostile_run["dir"]) / "evoforge.db", readonly=True) as st:
        code = st.get(hostile_run["llm"]).code
    assert ESC in code and "\r" in code and ":smile:" in code
    r = _pipe("best", str(hostile_run["dir"]))
    assert r.returncode == 0 and r.stdout == visible(code).encode("utf-8")
    _inert(r.stdout, "best stdout")
    _inert(r.stderr, "best stderr")
    target = tmp_path / "best.py"
    w = _pipe("best", str(hostile_run["dir"]), "--write", str(target))
    assert w.returncode == 0 and w.stdout == b""
    _inert(w.stderr, "best --write stderr")
    assert target.read_bytes() == code.encode("utf-8")


# ----------------------------------------------------------------------------- evoforge run


@pytest.fixture(scope="module")
def refusing_problem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The initial program fails: the run stops quoting the evaluator's traceback and the
    candidate's stderr. The directory name (the problem's name) is hostile too."""
    return _problem(tmp_path_factory.mktemp("refusing"), f"evil{ESC}]0;NAME{BEL}[bold]x",
                    refuse=True)


def test_run_output_through_a_pipe_is_inert(refusing_problem, tmp_path):
    r = _pipe("run", str(refusing_problem), "--out", str(tmp_path / "r"), "--max-programs", "3",
              *SANDBOX)
    assert r.returncode == 3, r.stderr.decode(errors="replace")
    _inert(r.stdout, "run stdout")
    err = _inert(r.stderr, "run stderr")
    assert "the initial program did not evaluate ok" in err
    assert "RuntimeError: refused " + SHOWN in err and MARKUP in err  # the stop message
    assert "evolving evil\\x1b]0;NAME\\x07[bold]x into" in err  # the problem's name


def test_run_on_a_terminal_is_inert(refusing_problem, tmp_path):
    rc, raw = _pty("run", str(refusing_problem), "--out", str(tmp_path / "r"), "--max-programs",
                   "3", *SANDBOX)
    shown = _inert(raw, "run on a terminal", terminal=True)
    assert rc == 3, shown
    plain = _RICH_OWN.sub("", shown)
    assert "RuntimeError: refused " + SHOWN in plain and MARKUP in plain


def test_run_progress_and_summary_on_a_terminal_are_inert(tmp_path):
    """A run that works: live display, then the final summary (which names the run directory,
    here a hostile name too), on a terminal."""
    prob = _problem(tmp_path, "prob", refuse=False)
    out = tmp_path / f"run{ESC}]0;OUT{BEL}[bold]x"
    rc, raw = _pty("run", str(prob), "--out", str(out), "--max-programs", "6", *SANDBOX)
    shown = _inert(raw, "run on a terminal", terminal=True)
    assert rc == 0, shown
    plain = _RICH_OWN.sub("", shown)
    assert "by status" in plain and "best score: -16.4025" in plain  # live panel, summary
    # the command is the evoforge that ran (a path when its venv is not on PATH)
    assert re.search(r"inspect: \S*evoforge status " + re.escape(visible(shlex.quote(str(out)))),
                     plain)


# ----------------------------------------------------------------------------- termsafe


@pytest.mark.parametrize("raw, shown", [
    ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),  # OSC 52 clipboard write
    ("\x1b[2J\x1b[1;1H", "\\x1b[2J\\x1b[1;1H"),  # clear screen, move cursor
    ("\x1b]0;title\x1b\\", "\\x1b]0;title\\x1b\\"),  # window title, ST-terminated
    ("\x9b2J\x9d0;t\x9c", "\\x9b2J\\x9d0;t\\x9c"),  # C1 CSI, OSC, ST
    ("ab\x08\x08cd\rxy\x7f\x00", "ab\\x08\\x08cd\\x0dxy\\x7f\\x00"),  # BS, CR, DEL, NUL
    ("\x0b\x0c\x85", "\\x0b\\x0c\\x85"),  # VT, FF, NEL
    ("a\u202eb\u2066c\u2069d\u200fe", "a\\u202eb\\u2066c\\u2069d\\u200fe"),  # bidi controls
    ("\u200b\ufeff\u00ad", "\\u200b\\ufeff\\xad"),  # zero-width space, BOM, soft hyphen
    ("\U000e0041\U000e007f", "\\U000e0041\\U000e007f"),  # tag characters (hidden text)
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),  # line and paragraph separators
    ("x\ud800y\udfffz", "x\\ud800y\\udfffz"),  # lone surrogates
])
def test_visible_spells_out_controls(raw, shown):
    assert visible(raw) == shown
    visible(raw).encode("utf-8")  # strict: printable anywhere


def test_visible_keeps_newline_tab_and_printable_text():
    text = "def f():\n\treturn 'é 日本 😀 ∑ — \\x1b [red]x[/red]'\n"
    assert visible(text) == text
    assert visible("") == ""


def test_visible_leaves_no_control_anywhere_in_unicode():
    everything = "".join(map(chr, range(0x110000)))
    out = visible(everything)
    left = {c for c in out if unicodedata.category(c) in _ESCAPED}
    assert left == {"\n", "\t"}
    assert visible(out) == out  # idempotent: the spelling is itself printable
    out.encode("utf-8")


def test_error_messages_are_inert(tmp_path):
    """An error quoting hostile text (here a run directory name) is shown, not obeyed."""
    r = _pipe("status", str(tmp_path / f"no{ESC}[2J{ESC}]0;T{BEL}[red]such"))
    assert r.returncode == 1
    err = _inert(r.stderr, "error message")
    assert "no\\x1b[2J\\x1b]0;T\\x07[red]such is not a run directory" in err


def test_log_records_are_made_visible():
    import logging

    from evoforge.cli import _VisibleFormatter

    record = logging.LogRecord("evoforge", logging.WARNING, __file__, 1, "LLM said: %s",
                               (PAYLOAD,), None)
    assert _VisibleFormatter("%(message)s").format(record) == "LLM said: " + visible(PAYLOAD)
