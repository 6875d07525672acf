"""The first hour works (issue 10): the live progress says what will stop the run, failure
reasons are grouped and shown whole, a finished run says which budget it reached and how to
extend it, a failed start says what to fix, and every printed command works as printed."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from evoforge import api, report
from evoforge.config import build_config
from evoforge.problem import Problem, builtin_problems
from evoforge.program import EvalResult, Status
from evoforge.progress import ProgressDisplay
from evoforge.termsafe import visible

REPO = Path(__file__).resolve().parents[1]
QUAD = REPO / "tests" / "fixtures" / "problems" / "quadratic"
BROKEN = REPO / "tests" / "fixtures" / "problems" / "broken_initial"
EVOFORGE = os.path.relpath(Path(sys.executable).with_name("evoforge"), REPO)  # .venv/bin/evoforge
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # the venv is not on PATH, as after `make demo`

# A problem whose evaluator fails in varied ways, picked by a hash of the child's code (the
# model-free mutator makes the children): names, paths, hex, long messages, hostile text.
VARIED_EVALUATOR = r'''
import hashlib
import importlib.util
import sys


def evaluate(program_path):
    source = open(program_path).read()
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    value = float(mod.run())
    if "a = 1.5\n    b = 2.0\n    c = 0.25" in source:
        return {"combined_score": value}  # the initial program
    h = int(hashlib.sha256(source.encode()).hexdigest(), 16)
    n = h % 10**6
    kind = h % 5
    if kind == 0:
        raise NameError(f"name 'var_{n}' is not defined")
    if kind == 1:
        raise ValueError(f"bad value {value} at 0x{n:x} in /tmp/work_{n}/data.csv")
    if kind == 2:
        words = " ".join(f"word{i}" for i in range(60))
        raise RuntimeError(f"a long explanation number {n}: {words} END")
    if kind == 3:
        raise KeyError(f"key [bold]{n}[/bold] \x1b[31m")
    return {"combined_score": value}
'''
VARIED_INITIAL = '''
# EVOLVE-BLOCK-START
def f():
    a = 1.5
    b = 2.0
    c = 0.25
    return a * b + c
# EVOLVE-BLOCK-END


def run():
    return f()
'''


def _varied_problem(where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "evaluator.py").write_text(VARIED_EVALUATOR)
    (where / "initial_program.py").write_text(VARIED_INITIAL)
    (where / "config.yaml").write_text("evaluation:\n  workers: 2\n  timeout: 30\n")
    return where


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EVOFORGE, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)


def _run_printed(command: str) -> subprocess.CompletedProcess[str]:
    """A command exactly as evoforge printed it, from the repo root."""
    return subprocess.run(shlex.split(command), cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300, check=False)


# ----------------------------------------------------------------------------- report.py


@pytest.mark.parametrize("seconds, shown", [
    (0, "0s"), (45.9, "45s"), (723, "12m 03s"), (3600, "1h 00m"), (7500, "2h 05m"),
    (3 * 86400 + 4 * 3600, "3d 04h"), (-5, "0s")])
def test_duration(seconds: float, shown: str) -> None:
    assert report.duration(seconds) == shown


def test_shorten_cuts_once_at_a_word_boundary_with_an_ellipsis() -> None:
    text = "word0 word1 word2 word3 word4 word5"
    assert report.shorten(text, 100) == text
    cut = report.shorten(text, 17)
    assert cut == "word0 word1…" and len(cut) <= 17
    assert report.shorten("x" * 50, 10) == "x" * 9 + "…"  # one long word: cut inside it
    for width in range(2, len(text)):
        got = report.shorten(text, width)
        assert len(got) <= width and got.endswith("…")
        assert text.startswith(got[:-1])


@pytest.mark.parametrize("reason, shape", [
    ("NameError: name 'var_663350' is not defined", "NameError: name <id> is not defined"),
    ("CandidateError: run() raised NameError: name 'centers' is not defined",
     "CandidateError: run() raised NameError: name <id> is not defined"),
    ("ValueError: bad value 3.2798350000000003 at 0xb5e5b in /tmp/work_745051/data.csv",
     "ValueError: bad value <n> at <hex> in <path>"),
    ("exceeded 20.0 s; process tree killed", "exceeded <n> s; process tree killed"),
    ("the candidate's process ended (exit code -9)",  # an apostrophe is not a quote
     "the candidate's process ended (exit code <n>)"),
    ('File "/usr/lib/python3.11/x.py", line 3', "File <path>, line <n>"),
    ("KeyError: 'key [bold]1[/bold] \x1b[31m'", "KeyError: <str>"),
    ("digest deadbeef1234 vs word2 and x=-1.5e-3", "digest <hex> vs word<n> and x=<n>"),
    ("circles 2 and 11 overlap (distance 0.12 < r2 + r11 = 0.13)",  # numbered names
     "circles <n> and <n> overlap (distance <n> < r<n> + r<n> = <n>)"),
    ("line one\n  line two", "line one line two"),
    ("", "(no reason given)"),
])
def test_pattern_masks_what_varies(reason: str, shape: str) -> None:
    assert report.pattern(reason) == shape


def test_group_reasons_counts_sorts_and_keeps_a_whole_example() -> None:
    long = "RuntimeError: " + " ".join(f"word{i}" for i in range(300))
    failures = [
        ("failed", "ValueError: bad 1", 1),
        ("failed", "NameError: name 'a' is not defined", 2),
        ("failed", "NameError: name 'b' is not defined", 3),
        ("timeout", "exceeded 10 s; process tree killed", 4),
        ("failed", long, 5),
        ("failed", "NameError: name 'c' is not defined", 6),
        ("failed", long.replace("word299", "other"), 7),  # differs only far in: same kind
        ("invalid", "ValueError: bad 1", 8),  # same text, another status: another group
    ]
    groups = report.group_reasons(failures)
    assert [(g.status, g.pattern, g.count) for g in groups[:2]] == [
        ("failed", "NameError: name <id> is not defined", 3),
        ("failed", report.shorten(report.pattern(long), report.GROUP_CHARS), 2)]
    assert groups[0].example == "NameError: name 'a' is not defined" and groups[0].ids == [2, 3, 6]
    assert groups[1].example == long and groups[1].example_id == 5  # whole
    assert [g.count for g in groups] == [3, 2, 1, 1, 1]  # ties keep the order seen
    assert [g.example_id for g in groups[2:]] == [1, 4, 8]


def test_budget_reached_names_the_budget_and_where_the_run_stands() -> None:
    cfg = build_config({"max_programs": 100, "max_time": "3m", "max_cost": 2.0,
                        "target_score": 2.5})
    kw = {"done": 100, "cost": 2.01, "elapsed": 180.4, "best": 2.51}
    assert report.budget_reached("max_programs", cfg, **kw) == \
        "max_programs=100 reached (100 programs)"
    assert report.budget_reached("max_time", cfg, **kw) == \
        "max_time=3m reached (3m 00s this session; 100 programs)"
    assert report.budget_reached("max_cost", cfg, **kw) == \
        "max_cost=$2.00 reached ($2.0100 spent; 100 programs)"
    assert report.budget_reached("target_score", cfg, **kw) == \
        "target_score=2.5 reached (best 2.51)"
    assert report.budget_reached("interrupted", cfg, **kw) is None


@pytest.mark.parametrize("name", sorted(builtin_problems()))
def test_a_builtin_max_time_is_said_at_the_start_of_an_llm_run(name: str) -> None:
    """Issue 10, item 5: a built-in problem's max_time does not silently cap an LLM run."""
    prob = Problem.load(builtin_problems()[name])
    cfg = build_config(prob.config, {"llm": {"models": ["some-model"]}})
    lines = report.budget_lines(cfg, problem_name=name, problem_config=prob.config,
                                uses_llm=True)
    if cfg.max_time is None:
        return
    shown = report._duration_flag(cfg.max_time)
    assert f"max_time={shown} [{name} config.yaml]" in lines[0], lines
    assert any(line.startswith("note:") and "LLM run" in line and "--max-time" in line
               for line in lines), lines
    # a --max-time given on the command line is not the problem's: no note
    given = build_config(prob.config, {"max_time": "2h", "llm": {"models": ["some-model"]}})
    lines = report.budget_lines(given, problem_name=name, problem_config=prob.config,
                                uses_llm=True)
    assert "max_time=2h," in lines[0] and len(lines) == 1, lines


def test_next_steps_never_repeat_the_same_stop(tmp_path: Path) -> None:
    cfg = build_config({"max_programs": 30, "max_cost": 1.0, "max_time": 60})
    common = {"ev": "EV", "run_dir": tmp_path / "r", "problem_path": QUAD, "done": 30,
              "cost": 1.0, "uses_llm": False}
    steps = report.next_steps("max_programs", cfg, **common)
    assert steps.resume == f"EV resume {tmp_path / 'r'} --max-programs 60"
    assert "whole run" in steps.advice[0]
    assert report.next_steps("max_cost", cfg, **common).resume.endswith("--max-cost 2.00")
    assert report.next_steps("target_score", cfg, **common).resume.endswith(
        "--set target_score=null")
    failed = report.next_steps("initial_failed", cfg, **common)
    assert failed.resume is None  # a resume keeps the failed initial program
    assert f"EV run {os.path.relpath(QUAD)} --out {tmp_path / 'r'}-2" in failed.advice[0]
    assert report.next_steps("invalid_children", cfg, **common).resume is None
    # a run in the default runs/NAME-TIME directory: a new run picks a new one by itself
    default = report.next_steps("initial_failed", cfg, **{
        **common, "run_dir": Path("runs/quadratic-20250101-120000")})
    assert f"EV run {os.path.relpath(QUAD)}`" in default.advice[0]
    assert "evaluation.timeout" not in failed.advice[0]
    slow = report.next_steps("initial_failed", cfg, **common, initial_status="timeout")
    assert (f"it ran out of time (evaluation.timeout: {cfg.evaluation.timeout:g} s)"
            in slow.advice[0]) and "--set evaluation.timeout=SECONDS" in slow.advice[0]
    again = report.next_steps("initial_failed", cfg, **common,
                              rerun=["p.py", "my eval.py", "--set", "seed=1"])
    assert f"`EV run p.py 'my eval.py' --set seed=1 --out {tmp_path / 'r'}-2`" in again.advice[0]


# ----------------------------------------------------------------------------- progress


def _run_for_display(tmp_path: Path, **budget: object):
    prob = Problem.load(QUAD)
    cfg = build_config(prob.config, budget)
    return api.start_run(prob, cfg, tmp_path / "run")


def _drawn(display: ProgressDisplay) -> tuple[str, str]:
    """The progress line and the live panel, as text."""
    panel = io.StringIO()
    Console(file=panel, width=120, color_system=None).print(display._render())
    return display._line(), panel.getvalue()


def test_progress_of_a_time_limited_run_shows_the_time_left(tmp_path: Path) -> None:
    run = _run_for_display(tmp_path, max_time="15m", max_programs=50000)
    try:
        run.elapsed = lambda: 177.0  # type: ignore[method-assign]  # 12m 03s left
        display = ProgressDisplay(Console(file=io.StringIO()), live=False)
        display.attach(run)
        display._session_start = time.monotonic() - 177.0
        run.tell(run.add_initial(), EvalResult(status=Status.OK, score=1.0,
                                               metrics={"combined_score": 1.0}))
        line, panel = _drawn(display)
    finally:
        run.storage.close()
    assert "12m 03s left" in line and "/50000" not in line, line
    assert "12m 03s left (max_time 15m 00s)" in panel and "50000" not in panel, panel


def test_progress_of_a_program_limited_run_shows_programs_of_the_total(tmp_path: Path) -> None:
    run = _run_for_display(tmp_path, max_programs=30)
    try:
        display = ProgressDisplay(Console(file=io.StringIO()), live=False)
        display.attach(run)
        run.tell(run.add_initial(), EvalResult(status=Status.OK, score=1.0,
                                               metrics={"combined_score": 1.0}))
        line, panel = _drawn(display)
    finally:
        run.storage.close()
    assert "programs 1/30" in line and " left" not in line, line
    assert re.search(r"programs\s+1 / 30", panel), panel


def test_progress_of_a_cost_limited_run_shows_the_spend_against_the_limit(tmp_path: Path) -> None:
    run = _run_for_display(tmp_path, max_cost=5.0)
    try:
        display = ProgressDisplay(Console(file=io.StringIO()), live=False)
        display.attach(run)
        run.tally.cost = 0.42
        line, panel = _drawn(display)
    finally:
        run.storage.close()
    assert "cost=$0.4200/$5.00" in line, line
    assert "$0.4200 of $5.00" in panel, panel


def test_progress_before_an_ok_program_and_after_failures(tmp_path: Path) -> None:
    """No "best - (#None)"; the last failure reason and the last LLM error are shown, whole
    up to the width and then cut once at a word, inert (controls spelled out, markup literal)."""
    run = _run_for_display(tmp_path, max_programs=30)
    try:
        display = ProgressDisplay(Console(file=io.StringIO()), live=False)
        display.attach(run)
        before = _drawn(display)
        reason = "ValueError: \x1b]0;pwned\x07 [bold]loud[/bold] " + " ".join(
            f"word{i}" for i in range(100))
        display.update(run.tell(run.add_initial(), EvalResult(status=Status.FAILED,
                                                               reason=reason)))
        run.tally.last_llm_error = "llm: HTTP 500: overloaded \x1b[2J [red]now[/red]"
        run.tally.consecutive_llm_failures = 3
        line, panel = _drawn(display)
    finally:
        run.storage.close()
    for text in (*before, line, panel):
        assert "#None" not in text and "best -" not in text, text
        assert "\x1b" not in text and "\x07" not in text
    assert "best none yet" in before[0] and "none yet" in before[1]
    shown = visible(reason)
    assert "last failure: #0 failed: " + shown[:60] in line, line
    assert "[bold]loud[/bold]" in panel and "\\x1b]0;pwned\\x07" in panel, panel
    assert re.search(r"word\d+…", line) and "word99" not in line  # cut once, at a word
    assert "last LLM error: llm: HTTP 500: overloaded \\x1b[2J [red]now[/red] (3 in a row)" \
        in line, line
    assert "[red]now[/red]" in panel


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def varied_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("varied")
    prob = _varied_problem(base / "varied")
    out = base / "run"
    # one evaluation slot: a model-free run is then the same for a given seed, so which
    # failure kinds it makes (the test needs several, the long one among them) does not
    # depend on which of two evaluations finished first
    done = _cli("run", str(prob), "--out", str(out), "-q", "--max-programs", "40", "--seed", "1",
                "--workers", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_status_groups_failure_reasons_with_a_whole_example(varied_run: Path) -> None:
    with api.inspect_run(varied_run) as (_cfg, storage):
        failed = [(p.status.value, p.reason, p.id) for p in storage.programs()
                  if p.status not in (Status.OK, Status.PENDING)]
    groups = report.group_reasons(failed)
    assert len(groups) >= 3 and groups[0].count >= 2, groups  # the fixture fails in varied ways
    done = _cli("status", str(varied_run))
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert "\x1b" not in text and "\x07" not in text  # inert
    assert f"failure reasons by pattern ({len(failed)} programs, {len(groups)} patterns" in text
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if re.match(r"\s+\d+  \w+\s+\S", line)]
    got = [re.match(r"\s+(\d+)  (\w+)\s+(.*)$", lines[i]).groups() for i in at]
    assert [(int(n), s, p) for n, s, p in got] == [
        (g.count, g.status, report.shorten(g.pattern, max(80 - 18, 100))) for g in groups]
    for g, i in zip(groups, at, strict=True):  # each pattern, then its first example in full
        assert lines[i + 1].strip() == f"e.g. #{g.example_id}: {visible(g.example)}"
    assert "NameError: name <id> is not defined" in text
    assert any("word59 END" in g.example for g in groups)  # a long reason, shown whole
    show = re.search(r"one of them in full: (.*)$", text, re.M)
    assert show and _run_printed(show.group(1)).returncode == 0


def test_resume_of_a_finished_run_says_which_budget_and_how_to_extend_it(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _cli("run", str(QUAD), "--out", str(out), "-q", "--max-programs", "5")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "stopped: max_programs=5 reached (5 programs)" in first.stderr
    again = _cli("resume", str(out), "-q")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to do: max_programs=5 reached (5 programs)" in again.stderr, again.stderr
    assert "budget: max_programs=5 (whole run; 5 done)" in again.stderr
    advice = re.search(r"to continue: `([^`]*)` \(--max-programs is the whole run's total",
                       again.stdout)
    assert advice, again.stdout
    command = advice.group(1)
    assert command == f"{EVOFORGE} resume {out} --max-programs 10"
    extended = _run_printed(command)  # as printed: the venv is not on PATH
    assert extended.returncode == 0, extended.stderr[-2000:]
    assert "stopped: max_programs=10 reached (10 programs)" in extended.stderr
    with api.inspect_run(out) as (_cfg, storage):
        assert storage.stats()["next_id"] >= 10


def test_resume_of_something_that_is_not_a_run_leaves_nothing_behind(tmp_path: Path) -> None:
    """A mistyped run directory is not created, and a problem directory given by mistake gets
    no lock file: the error comes before anything is written."""
    prob = tmp_path / "prob"
    shutil.copytree(QUAD, prob)
    before = sorted(p.name for p in prob.iterdir())
    for target in (tmp_path / "runs" / "typo", prob):
        done = _cli("resume", str(target), "-q")
        assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
        assert f"{target} is not a run directory" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in prob.iterdir()) == before


def test_a_failed_start_says_what_to_fix_and_never_to_repeat_itself(tmp_path: Path) -> None:
    """The initial program fails, with --out given: no advice to resume (that keeps the failed
    program) or to rerun the same command (the directory holds a run now); the printed
    command, run after the fix, works."""
    prob = tmp_path / "prob"
    shutil.copytree(BROKEN, prob)
    out = tmp_path / "run"
    done = _cli("run", str(prob), "--out", str(out), "-q")
    assert done.returncode == 3, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert f"resume {out}" not in printed, printed
    fix = re.search(r"start a new run: `([^`]*)`", done.stdout)
    assert fix, done.stdout
    assert fix.group(1) == f"{EVOFORGE} run {prob} --out {out}-2"
    again = _cli("resume", str(out), "-q")  # the user tries resume anyway: same advice
    assert again.returncode == 3 and fix.group(0) in again.stdout, again.stdout
    shutil.copy(QUAD / "evaluator.py", prob / "evaluator.py")  # the fix
    fixed = _run_printed(fix.group(1))  # verbatim
    assert fixed.returncode == 0, fixed.stderr[-2000:]


def test_the_new_run_it_suggests_keeps_the_files_config_and_overrides_given(
        tmp_path: Path) -> None:
    """OpenEvolve's form (an initial program and an evaluator not named evaluator.py), an
    OpenEvolve config and a --set: the suggested new run names them all, so run verbatim after
    the fix it uses the same evaluator file and settings (a command built from the problem
    directory alone found no evaluator.py, or dropped the config)."""
    prog, ev, cfg = tmp_path / "prog.py", tmp_path / "eval_it.py", tmp_path / "oe.yaml"
    shutil.copy(BROKEN / "initial_program.py", prog)
    shutil.copy(BROKEN / "evaluator.py", ev)
    cfg.write_text("max_iterations: 3\nevaluator:\n  parallel_evaluations: 1\n")
    out = tmp_path / "run"
    done = _cli("run", str(prog), str(ev), "--config", str(cfg), "--set", "seed=7",
                "--out", str(out), "-q")
    assert done.returncode == 3, done.stderr[-2000:]
    fix = re.search(r"start a new run: `([^`]*)`", done.stdout)
    assert fix, done.stdout
    assert fix.group(1) == (f"{EVOFORGE} run {prog} {ev} --config {cfg} --set seed=7 "
                            f"--out {out}-2")
    again = _cli("resume", str(out), "-q")  # the run stored them: a resume suggests the same
    assert again.returncode == 3, again.stderr[-2000:]
    assert f"start a new run: `{fix.group(1)}`" in again.stdout, again.stdout
    # ... from another directory too (the files are stored as absolute paths)
    elsewhere = subprocess.run([str(REPO / EVOFORGE), "resume", str(out), "-q"], cwd=tmp_path,
                               env=ENV, capture_output=True, text=True, timeout=300, check=False)
    moved = re.search(r"start a new run: `([^`]*)`", elsewhere.stdout)
    assert moved, elsewhere.stdout
    assert moved.group(1).split()[1:] == ["run", "prog.py", "eval_it.py", "--config", "oe.yaml",
                                          "--set", "seed=7", "--out", "run-2"]
    shutil.copy(QUAD / "evaluator.py", ev)  # the fix
    fixed = _run_printed(fix.group(1))  # verbatim
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    with api.inspect_run(Path(f"{out}-2")) as (stored, storage):
        assert stored.seed == 7 and stored.max_programs == 4 and stored.evaluation.workers == 1
        assert storage.stats()["next_id"] == 4


def test_commands_in_error_messages_name_the_evoforge_that_was_run(tmp_path: Path) -> None:
    """The venv is not on PATH: an error that suggests a command names .venv/bin/evoforge."""
    out = tmp_path / "run"
    assert _cli("run", str(QUAD), "--out", str(out), "-q", "--max-programs", "2").returncode == 0
    missing = _cli("show", str(out), "999")
    assert missing.returncode == 1, missing.stderr
    hint = re.search(r"`([^`]*status[^`]*)`", missing.stderr.replace("\n", " "))
    assert hint and hint.group(1).startswith(f"{EVOFORGE} status"), missing.stderr
    # an initial program given without its evaluator: the pair to give, as it can be run
    prog = tmp_path / "p" / "initial_program.py"
    prog.parent.mkdir()
    shutil.copy(QUAD / "initial_program.py", prog)
    shutil.copy(QUAD / "evaluator.py", prog.parent / "evaluator.py")
    alone = subprocess.run([EVOFORGE, "run", str(prog), "-q"], cwd=REPO,
                           env={**ENV, "COLUMNS": "400"},  # no line wrapped inside a path
                           capture_output=True, text=True, timeout=300, check=False)
    assert alone.returncode == 2
    assert f"`{EVOFORGE} run {prog} {prog.parent / 'evaluator.py'}`" in alone.stderr, alone.stderr


def test_suggestions_after_a_failed_start_cover_the_odd_cases(tmp_path: Path) -> None:
    """A program not named initial_program.* beside an evaluator.py, resumed: both files (the
    evaluator's directory alone has no initial_program.*); a storage.url given with --set is
    not repeated (a new run needs a database of its own; a URL may hold a password); an
    evaluator.py given alone points at its directory."""
    prob = tmp_path / "p"
    prob.mkdir()
    shutil.copy(BROKEN / "initial_program.py", prob / "foo.py")
    shutil.copy(BROKEN / "evaluator.py", prob / "evaluator.py")
    out, db = tmp_path / "run", tmp_path / "store.db"
    done = _cli("run", str(prob / "foo.py"), str(prob / "evaluator.py"), "--out", str(out),
                "-q", "--set", f"storage.url=sqlite:///{db}")
    assert done.returncode == 3, done.stderr[-2000:]
    want = f"start a new run: `{EVOFORGE} run {prob / 'foo.py'} {prob / 'evaluator.py'} --out"
    assert want in done.stdout and "storage.url" not in done.stdout, done.stdout
    again = _cli("resume", str(out), "-q")
    assert again.returncode == 3 and want in again.stdout, again.stdout
    alone = subprocess.run([EVOFORGE, "run", str(prob / "evaluator.py"), "-q"], cwd=REPO,
                           env={**ENV, "COLUMNS": "400"}, capture_output=True, text=True,
                           timeout=300, check=False)
    assert alone.returncode == 2 and f"(`{EVOFORGE} run {prob}`)" in alone.stderr, alone.stderr
    ref = _cli("resume", "postgresql://u:secret@127.0.0.1:1/db#run=x")
    assert ref.returncode == 1 and "resume takes the run directory" in ref.stderr
    assert "secret" not in ref.stderr


def test_an_initial_program_out_of_time_is_told_about_the_timeout(tmp_path: Path) -> None:
    prob = tmp_path / "prob"
    shutil.copytree(QUAD, prob)
    (prob / "evaluator.py").write_text("import time\n\ndef evaluate(program_path):\n"
                                       "    time.sleep(30)\n    return {'combined_score': 1.0}\n")
    done = _cli("run", str(prob), "--out", str(tmp_path / "run"), "-q",
                "--set", "evaluation.timeout=1")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "it ran out of time (evaluation.timeout: 1 s)" in done.stdout, done.stdout
    assert f"`{EVOFORGE} run {prob} --set evaluation.timeout=1 --out" in done.stdout


def test_readme_commands_name_the_venv_evoforge() -> None:
    """After `make demo` the venv is not on PATH: a README command line starting with a bare
    `evoforge` would not run as printed."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = [line.strip() for b in blocks for line in b.splitlines() if line.strip()]
    assert lines
    bare = [line for line in lines if line.startswith("evoforge ")]
    assert not bare, bare


# ----------------------------------------------------------------------------- stored reasons

LONG_EVALUATOR = '''
def evaluate(program_path):
    raise ValueError("start " + " ".join(f"word{i}" for i in range(WORDS)) + " END")
'''


def _stored_reason(tmp_path: Path, words: int) -> str:
    prob = tmp_path / "prob"
    shutil.copytree(BROKEN, prob)
    (prob / "evaluator.py").write_text(LONG_EVALUATOR.replace("WORDS", str(words)))
    outcome = api.evolve(prob, run_dir=tmp_path / "run",
                         config=build_config({"max_programs": 2}))
    assert outcome.reason == "initial_failed"
    with api.inspect_run(tmp_path / "run") as (_cfg, storage):
        return storage.get(0).reason


def test_a_failure_reason_is_stored_whole(tmp_path: Path) -> None:
    words = 200  # about 1,400 characters: under the worker's cap, over the parent's
    expected = "ValueError: start " + " ".join(f"word{i}" for i in range(words)) + " END"
    assert _stored_reason(tmp_path, words) == expected


def test_a_very_long_failure_reason_is_cut_once_at_words(tmp_path: Path) -> None:
    words = 2000  # about 15,000 characters
    original = "ValueError: start " + " ".join(f"word{i}" for i in range(words)) + " END"
    reason = _stored_reason(tmp_path, words)
    assert check_cut_once_at_words(original, reason)


def check_cut_once_at_words(original: str, reason: str) -> bool:
    """``reason`` is ``original`` cut once: a head and a tail of it, each ending (beginning)
    with a whole word, around one marker that counts exactly what was dropped."""
    marks = list(re.finditer(r"\s*(?:\.\.\.|…)?\s*\[(\d+) chars dropped\]\s*(?:\.\.\.|…)?\s*",
                             reason))
    assert len(marks) == 1, reason
    m = marks[0]
    head, tail = reason[:m.start()], reason[m.end():]
    assert head and tail and original.startswith(head) and original.endswith(tail)
    gap = original[len(head):len(original) - len(tail)]
    assert abs(int(m.group(1)) - len(gap)) <= 2, (m.group(0), len(gap))  # counted once
    tokens = set(original.split())
    assert head.split()[-1] in tokens and tail.split()[0] in tokens, (head[-40:], tail[:40])
    return True
