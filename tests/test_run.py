"""End-to-end runs on a tiny problem with the model-free mutator: budget, determinism, failures,
SIGKILL + resume, Ctrl-C. Real subprocesses, real SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.problem import Problem
from evoforge.program import Status
from evoforge.sandbox import bubblewrap_problem
from evoforge.storages import SQLiteStorage

FIXTURES = Path(__file__).parent / "fixtures" / "problems"
QUAD = FIXTURES / "quadratic"
EVOFORGE = [sys.executable, "-m", "evoforge.cli"]


def _cfg(**over):
    base = Problem.load(QUAD).config
    return build_config(base, over)


def _programs(run_dir: Path):
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return list(s.programs()), s.check(), s.stats()


def test_run_reaches_budget_and_improves(tmp_path):
    outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=_cfg(max_programs=40))
    assert outcome.ok and outcome.reason == "max_programs"
    programs, problems, stats = _programs(tmp_path / "r")
    assert problems == []
    assert stats["done"] == 40 and stats["pending"] == 0
    assert len({p.id for p in programs}) == 40
    assert [p.done_seq for p in programs] == list(range(40))
    initial = next(p for p in programs if p.id == 0)
    assert outcome.best is not None and outcome.best.score > initial.score
    # the best program is written beside the database, and it is the best's code
    assert (tmp_path / "r" / "best_program.py").read_text() == outcome.best.code
    # every child records its parent and provenance
    for p in programs:
        if p.id:
            assert p.parent_ids and p.mutation.mutator in ("model_free", "tune")


def _sequence(run_dir: Path):
    programs, _, _ = _programs(run_dir)
    return [(p.id, p.parent_ids, p.code, p.status, p.score) for p in programs]


def test_same_seed_one_slot_is_deterministic(tmp_path):
    cfg = _cfg(max_programs=25, seed=7, evaluation={"workers": 1})
    api.evolve(QUAD, run_dir=tmp_path / "a", config=cfg)
    api.evolve(QUAD, run_dir=tmp_path / "b", config=cfg)
    api.evolve(QUAD, run_dir=tmp_path / "c", config=_cfg(max_programs=25, seed=8,
                                                           evaluation={"workers": 1}))
    a, b, c = (_sequence(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c


def test_initial_program_failure_stops_with_reason(tmp_path):
    prob = Problem.load(FIXTURES / "broken_initial")
    outcome = api.evolve(prob, run_dir=tmp_path / "r", config=build_config({"max_programs": 5}))
    assert not outcome.ok and outcome.reason == "initial_failed"
    assert "this evaluator always fails" in outcome.message


def test_cli_run_exit_codes_and_messages(tmp_path):
    bad = subprocess.run([*EVOFORGE, "run", str(QUAD), "--out", str(tmp_path / "x"),
                          "--set", "evaluation.wokers=2"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "did you mean 'workers'" in bad.stderr
    failed = subprocess.run([*EVOFORGE, "run", str(FIXTURES / "broken_initial"), "--out",
                             str(tmp_path / "y"), "-q"], capture_output=True, text=True)
    assert failed.returncode == 3, failed.stderr
    assert "always fails" in failed.stderr
    missing = subprocess.run([*EVOFORGE, "run", str(tmp_path / "nope")], capture_output=True,
                             text=True)
    assert missing.returncode == 1 and "evoforge init" in missing.stderr


def _wait_for(run_dir: Path, proc: subprocess.Popen, at_least: int, deadline: float = 60.0):
    """Wait until the live run has committed `at_least` programs (polls the database)."""
    end = time.monotonic() + deadline
    db = run_dir / "evoforge.db"
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited early"
        if db.exists():
            try:
                with SQLiteStorage(db, readonly=True) as s:
                    if s.stats()["done"] >= at_least:
                        return
            except Exception:
                pass
        time.sleep(0.02)
    raise AssertionError(f"run did not reach {at_least} programs in {deadline}s")


@pytest.mark.parametrize("kill_after", [3, 17, 41])
def test_sigkill_then_resume_loses_nothing_and_reaches_budget(tmp_path, kill_after):
    run_dir = tmp_path / "r"
    budget = 60
    proc = subprocess.Popen([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                             "--max-programs", str(budget), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run_dir, proc, kill_after)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    before, problems, stats = _programs(run_dir)
    assert problems == []
    committed = {p.id: p for p in before if p.status is not Status.PENDING}
    pending = {p.id for p in before if p.status is Status.PENDING}
    assert len(committed) >= kill_after
    res = subprocess.run([*EVOFORGE, "resume", str(run_dir), "-q"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    after, problems, stats = _programs(run_dir)
    assert problems == []
    assert stats["done"] == budget and stats["pending"] == 0
    by_id = {p.id: p for p in after}
    assert len(by_id) == len(after) == budget
    for pid, p in committed.items():  # nothing committed is lost or changed
        assert by_id[pid] == p
    for pid in pending:  # in-flight work was evaluated, under its own id
        assert by_id[pid].status is not Status.PENDING
    assert sorted(p.done_seq for p in after) == list(range(budget))


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                             "--max-programs", "500"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run_dir, proc, 10)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "evoforge resume" in err + out
    before, problems, stats = _programs(run_dir)
    assert problems == [] and stats["done"] >= 10
    res = subprocess.run([*EVOFORGE, "resume", str(run_dir), "-q", "--max-programs",
                          str(stats["done"] + 5)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    _, _, stats2 = _programs(run_dir)
    assert stats2["done"] == stats["done"] + 5 and stats2["pending"] == 0


def test_inspection_commands(tmp_path):
    run_dir = tmp_path / "r"
    api.evolve(QUAD, run_dir=run_dir, config=_cfg(max_programs=12))
    st = subprocess.run([*EVOFORGE, "status", str(run_dir)], capture_output=True, text=True)
    assert st.returncode == 0 and "ok=" in st.stdout and "top" in st.stdout
    out_file = tmp_path / "best.py"
    b = subprocess.run([*EVOFORGE, "best", str(run_dir), "--write", str(out_file)],
                       capture_output=True, text=True)
    assert b.returncode == 0 and "EVOLVE-BLOCK-START" in out_file.read_text()
    sh = subprocess.run([*EVOFORGE, "show", str(run_dir), "3"], capture_output=True, text=True)
    assert sh.returncode == 0 and "lineage: #3" in sh.stdout and "diff against parent" in sh.stdout
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        third = s.get(3)
    assert third.mutation.view is not None and third.done_seq is not None
    assert (f"after {third.mutation.view} results" in sh.stdout
            and f"{third.done_seq - third.mutation.view} before its own result" in sh.stdout)
    none = subprocess.run([*EVOFORGE, "show", str(run_dir), "999"], capture_output=True, text=True)
    assert none.returncode == 1 and "no program with id 999" in none.stderr
    again = subprocess.run([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir)],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "evoforge resume" in again.stderr


def test_init_scaffold_runs(tmp_path):
    target = tmp_path / "newprob"
    r = subprocess.run([*EVOFORGE, "init", str(target)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    outcome = api.evolve(target, run_dir=tmp_path / "run", config=build_config(
        Problem.load(target).config, {"max_programs": 15}))
    assert outcome.ok and outcome.best is not None
    assert "feedback" in outcome.best.artifacts
    # the scaffold is in the hardened form: the run and best.json record protected scores
    # (under bubblewrap), and `status` says so
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["integrity"]["form"] == "hardened"
    st = subprocess.run([*EVOFORGE, "status", str(tmp_path / "run")], capture_output=True, text=True)
    assert st.returncode == 0 and "score integrity: " in st.stdout
    if bubblewrap_problem() is None:
        assert best["integrity"]["protected"] is True and "protected: hardened" in st.stdout


def test_plain_form_runs_are_recorded_unprotected(tmp_path):
    run_dir = tmp_path / "r"
    api.evolve(QUAD, run_dir=run_dir, config=_cfg(max_programs=3))
    best = json.loads((run_dir / "best.json").read_text())
    assert best["integrity"]["form"] == "plain" and best["integrity"]["protected"] is False
    st = subprocess.run([*EVOFORGE, "status", str(run_dir)], capture_output=True, text=True)
    assert "score integrity: UNPROTECTED: plain evaluator form" in st.stdout


def test_env_secrets_do_not_reach_evaluator(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-should-not-leak")
    prob = tmp_path / "envprob"
    prob.mkdir()
    (prob / "initial_program.py").write_text("# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n")
    (prob / "evaluator.py").write_text(
        "import os\ndef evaluate(p):\n"
        "    return {'combined_score': float('OPENAI_API_KEY' in os.environ)}\n")
    outcome = api.evolve(prob, run_dir=tmp_path / "r", config=build_config({"max_programs": 1}))
    assert outcome.best is not None and outcome.best.score == 0.0
    assert os.environ["OPENAI_API_KEY"].startswith("sk-")


def test_a_run_directory_has_one_writer(tmp_path):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                             "--max-programs", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run_dir, proc, 2)
        second = subprocess.run([*EVOFORGE, "resume", str(run_dir), "-q"], capture_output=True,
                                text=True)
        assert second.returncode == 1
        assert f"in use by another evoforge process (pid {proc.pid})" in second.stderr
        # read-only inspection still works on a live run
        st = subprocess.run([*EVOFORGE, "status", str(run_dir)], capture_output=True, text=True)
        assert st.returncode == 0, st.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()


def test_target_score_stops_the_run(tmp_path):
    # greedy climbing on f() toward 7.3; the initial program scores -16.4
    outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=_cfg(
        max_programs=5000, target_score=-4.0, selector={"name": "greedy"}))
    assert outcome.ok and outcome.reason == "target_score"
    assert outcome.best is not None and outcome.best.score >= -4.0
    _, _, stats = _programs(tmp_path / "r")
    assert stats["done"] < 5000


def _flaky_problem(tmp_path: Path) -> Path:
    prob = tmp_path / "flaky"
    prob.mkdir()
    (prob / "initial_program.py").write_text("# EVOLVE-BLOCK-START\nx = 1.5\n# EVOLVE-BLOCK-END\n")
    (prob / "evaluator.py").write_text(
        "import random\n"
        "def evaluate(p):\n"
        "    # a score that is not a function of the program: it cannot be reproduced;\n"
        "    # any changed child outscores the initial program\n"
        "    changed = 'x = 1.5' not in open(p).read()\n"
        "    return {'combined_score': random.random() + changed}\n")
    return prob


def test_new_bests_that_do_not_reproduce_are_flagged_and_kept_out(tmp_path):
    prob = _flaky_problem(tmp_path)
    outcome = api.evolve(prob, run_dir=tmp_path / "r", config=build_config(
        {"max_programs": 30, "selector": {"name": "greedy"},
         "evaluation": {"noise_samples": 0}}))  # the strict rule (the noise is the score here)
    assert outcome.ok
    programs, problems, _ = _programs(tmp_path / "r")
    assert problems == []
    flagged = [p for p in programs if p.reason.startswith("not reproducible")]
    assert flagged and all(p.status is Status.FAILED and p.score is None for p in flagged)
    # nothing that failed to reproduce became the best: the best is the (unverified) initial
    # program or a child whose score was reproduced
    best = outcome.best
    assert best is not None and (best.id == 0 or "reverify" in best.artifacts)
    shown = subprocess.run([str(Path(sys.executable).with_name("evoforge")), "status",
                            str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert (f"would-be bests rejected as not reproducible: {len(flagged)} (" in shown.stdout
            and "reverify_tolerance" in shown.stdout), shown.stdout


def test_reproduced_bests_carry_the_verification_and_reverify_can_be_off(tmp_path):
    outcome = api.evolve(QUAD, run_dir=tmp_path / "a", config=_cfg(max_programs=20))
    assert outcome.best is not None and outcome.best.id != 0
    assert outcome.best.artifacts["reverify"].startswith("reproduced 1x")
    off = api.evolve(_flaky_problem(tmp_path), run_dir=tmp_path / "b", config=build_config(
        {"max_programs": 30, "selector": {"name": "greedy"}, "evaluation": {"reverify": 0}}))
    programs, _, _ = _programs(tmp_path / "b")
    assert not any(p.reason.startswith("not reproducible") for p in programs)
    assert off.best is not None and off.best.id != 0


def test_inspection_reads_only_the_run_not_its_problem(tmp_path):
    """status/best/show keep working after the problem directory is edited or broken."""
    import shutil

    prob = tmp_path / "prob"
    shutil.copytree(QUAD, prob)
    api.evolve(prob, run_dir=tmp_path / "r", config=_cfg(max_programs=5))
    (prob / "evaluator.py").write_text("def evaluate(:\n")  # the user breaks it while editing
    for args in (["status"], ["best"], ["show", None]):
        cmd = [*EVOFORGE, args[0], str(tmp_path / "r"), *(["1"] if len(args) > 1 else [])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stderr)
    # resume does need the problem, and says what is wrong with it
    r = subprocess.run([*EVOFORGE, "resume", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 1 and "evaluator.py: syntax error" in r.stderr


@pytest.mark.skipif(bubblewrap_problem() is not None, reason="needs bubblewrap for the first session")
def test_a_resume_that_changes_integrity_keeps_the_earlier_record(tmp_path):
    target = tmp_path / "hardened"
    assert subprocess.run([*EVOFORGE, "init", str(target)], capture_output=True).returncode == 0
    run_dir = tmp_path / "r"
    api.evolve(target, run_dir=run_dir, config=build_config(Problem.load(target).config,
                                                            {"max_programs": 3}))
    assert json.loads((run_dir / "best.json").read_text())["integrity"]["protected"] is True
    api.resume(run_dir, overrides=["evaluation.sandbox=process"], flags={"max_programs": 5})
    now = json.loads((run_dir / "best.json").read_text())["integrity"]
    assert now["sandbox"] == "process" and now["protected"] is False
    assert any(e.startswith("protected: hardened") for e in now["earlier_sessions"])
    st = subprocess.run([*EVOFORGE, "status", str(run_dir)], capture_output=True, text=True)
    assert st.returncode == 0 and "score integrity: partial" in st.stdout
    assert "earlier session(s) of this run: protected" in st.stdout


def test_custom_storage_url_run_can_be_inspected_and_resumed(tmp_path):
    """storage.url outside the run dir (issue 9, defect 9): status and resume find it through
    the run dir's config.yaml; a second run into the same dir or database is refused."""
    run_dir = tmp_path / "run"
    url = "sqlite:///../elsewhere.db"  # relative to the run dir
    first = subprocess.run([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                            "--max-programs", "5", "--set", f"storage.url={url}"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "elsewhere.db").is_file() and not (run_dir / "evoforge.db").exists()
    status = subprocess.run([*EVOFORGE, "status", str(run_dir)], capture_output=True, text=True)
    assert status.returncode == 0 and "5 programs" in status.stdout, status.stderr
    again = subprocess.run([*EVOFORGE, "resume", str(run_dir), "-q", "--max-programs", "9"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    with SQLiteStorage(tmp_path / "elsewhere.db", readonly=True) as s:
        assert len(list(s.programs())) == 9
    twice = subprocess.run([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q"],
                           capture_output=True, text=True)
    assert twice.returncode == 1 and "already holds a run" in twice.stderr
    shared = subprocess.run([*EVOFORGE, "run", str(QUAD), "--out", str(tmp_path / "run2"), "-q",
                             "--set", f"storage.url=sqlite:///{tmp_path / 'elsewhere.db'}"],
                            capture_output=True, text=True)
    assert shared.returncode == 1 and "names an existing database" in shared.stderr


def test_the_mutator_observes_every_committed_program_in_commit_order(tmp_path):
    from evoforge.testing import FunctionExecutor, FunctionMutator

    seen: list[tuple[int, str]] = []

    class Watching(FunctionMutator):
        def observe(self, program):
            seen.append((program.done_seq, program.status.value))

    def child(req):
        return None if req.proposal_id % 3 == 0 else req.parent.code + f"\n# {req.proposal_id}\n"

    outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=_cfg(max_programs=12),
                         mutator=Watching(child),
                         executor=FunctionExecutor(lambda code: float(len(code))))
    assert outcome.ok, outcome.message
    programs, _, _ = _programs(tmp_path / "r")
    assert [s for s, _ in seen] == sorted(p.done_seq for p in programs)  # all, in commit order
    assert {st for _, st in seen} == {"ok", "invalid"}
