"""Re-verification is an Executor wrapper (issue 9): a would-be best is evaluated again and
must reproduce; others pass through with one evaluation. A noisy evaluator's bests are judged
against the noise measured on the initial program (issue 10)."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest
from conftest import stub_problem

from evoforge import api
from evoforge.config import build_config
from evoforge.executors.reverify import Reverifying, rejected_bests
from evoforge.problem import Problem
from evoforge.program import Program, Status
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor, FunctionMutator


def test_a_flaky_best_is_failed_and_a_steady_one_passes() -> None:
    flaky = itertools.cycle([10.0, 1.0])
    calls = {"flaky": 0, "steady": 0}

    def fn(code: str) -> float:
        calls[code] += 1
        return next(flaky) if code == "flaky" else 5.0

    ex = Reverifying(FunctionExecutor(fn), times=2, tolerance=1e-6, worth=lambda s: s > 3)

    async def go():
        return (await ex.evaluate("flaky"), await ex.evaluate("steady"))

    bad, good = asyncio.run(go())
    assert bad.status is Status.FAILED and "not reproducible: scored 10" in bad.reason
    assert good.status is Status.OK and good.score == 5.0
    assert "reproduced 2x" in good.artifacts["reverify"]
    assert calls == {"flaky": 2, "steady": 3}


def test_results_that_would_not_be_best_are_evaluated_once() -> None:
    calls = []
    ex = Reverifying(FunctionExecutor(lambda code: calls.append(code) or 1.0), times=3,
                     tolerance=0.0, worth=lambda s: False)
    r = asyncio.run(ex.evaluate("x"))
    assert r.status is Status.OK and calls == ["x"] and ex.slots == 1


# -- noisy evaluators (issue 10) -----------------------------------------------------------------

PROGRAM = "# EVOLVE-BLOCK-START\nX = 0\n# EVOLVE-BLOCK-END\n"


def _count_up(request):  # X = parent's X + 1: the true score climbs by one per generation
    x = int(request.parent.code.split("X = ")[1].split("\n")[0])
    return PROGRAM.replace("X = 0", f"X = {x + 1}")


def _true_score(code: str) -> float:
    return float(code.split("X = ")[1].split("\n")[0])


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    return stub_problem(tmp_path, PROGRAM)


def _evolve(problem: Problem, run_dir: Path, fn, **evaluation) -> tuple[list[Program], int]:
    """A greedy run of ``max_programs`` 15 scored by ``fn``: its programs and evaluations."""
    calls = []

    def counted(code: str) -> float:
        calls.append(code)
        return fn(code)

    cfg = build_config(problem.config, {"max_programs": 15, "selector": {"name": "greedy"},
                                        "evaluation": {"workers": 1, **evaluation},
                                        "llm": {"concurrency": 1}})
    api.evolve(problem, run_dir=run_dir, config=cfg, mutator=FunctionMutator(_count_up),
               executor=FunctionExecutor(counted))
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return list(s.programs()), len(calls)


def test_a_noisy_evaluator_improves_with_the_default_reverification(tmp_path: Path,
                                                                   problem: Problem) -> None:
    # real Gaussian noise, from a fixed seed: the run is the same every time (an unseeded
    # one could, rarely, reproduce a score within the strict tolerance below)
    rng = random.Random(10)

    def noisy(code: str) -> float:
        return _true_score(code) + rng.gauss(0, 0.01)

    programs, _ = _evolve(problem, tmp_path / "noise-aware", noisy)
    best = max((p for p in programs if p.status is Status.OK), key=lambda p: p.score or 0)
    assert best.score is not None and best.score > 5, [(p.id, p.status, p.reason)
                                                       for p in programs]
    note = best.artifacts["reverify"]
    assert "within the noise (noise sd" in note and "stored their mean" in note
    assert abs(best.score - _true_score(best.code)) < 0.1  # the mean of its evaluations
    # without the noise measurement (as before) no new best ever reproduces
    programs, _ = _evolve(problem, tmp_path / "strict", noisy, noise_samples=0)
    assert [p.id for p in programs if p.status is Status.OK] == [0]
    assert all(p.reason.startswith("not reproducible: scored") for p in programs[1:])
    assert rejected_bests(programs) == [
        ("score moved by more than evaluation.reverify_tolerance", 14)]


def test_the_noise_is_measured_again_after_a_resume(tmp_path: Path, problem: Problem) -> None:
    rng = random.Random(11)  # real noise, a fixed seed: the same run every time
    programs, _ = _evolve(problem, tmp_path / "run",
                          lambda code: _true_score(code) + rng.gauss(0, 0.01))
    before = max(p.score for p in programs if p.score is not None)
    outcome = api.resume(tmp_path / "run", overrides=["max_programs=25"],
                         mutator=FunctionMutator(_count_up),
                         executor=FunctionExecutor(lambda c: _true_score(c) + rng.gauss(0, 0.01)))
    assert outcome.best is not None and outcome.best.score is not None
    assert outcome.best.score > before + 3
    assert "within the noise" in outcome.best.artifacts["reverify"]


def test_a_deterministic_evaluator_is_unchanged(tmp_path: Path, problem: Problem) -> None:
    """Same evaluations, same stored results as without noise measurement: a score that
    reproduces never asks for it."""
    aware, aware_calls = _evolve(problem, tmp_path / "a", _true_score)
    strict, strict_calls = _evolve(problem, tmp_path / "b", _true_score, noise_samples=0)
    evaluated = [p for p in aware if "cached" not in p.artifacts]  # not a duplicate's reuse
    reverified = [p for p in evaluated if "reverify" in p.artifacts]
    assert len(reverified) > 5
    assert aware_calls == strict_calls == len(evaluated) + len(reverified)  # one re-evaluation each
    assert [(p.status, p.score, p.artifacts) for p in aware] == \
        [(p.status, p.score, p.artifacts) for p in strict]
    x = _true_score(reverified[-1].code)
    assert reverified[-1].artifacts["reverify"] == f"reproduced 1x in fresh processes: {x:g}, {x:g}"


def test_a_cheating_score_is_still_rejected_and_says_what_noise_was_allowed() -> None:
    """Scores of the initial program vary by 0.01; a subverted evaluator's score is anywhere
    in [0, 1000]: not noise. An honest noisy improvement is accepted with its mean."""
    rng = random.Random(10)
    calls: list[str] = []

    def fn(code: str) -> float:
        calls.append(code)
        if code == "cheat":
            return rng.uniform(0, 1000)
        return {"initial": 1.0, "honest": 2.0}[code] + rng.gauss(0, 0.01)

    ex = Reverifying(FunctionExecutor(fn), times=1, tolerance=1e-6, worth=lambda s: s > 1.5,
                     noise_samples=3, reference="initial")

    async def go():
        return [await ex.evaluate(c, program_id=i + 1)
                for i, c in enumerate(["cheat"] * 5 + ["honest"])]

    *cheats, honest = asyncio.run(go())
    for r in cheats:
        assert r.status is Status.FAILED and r.score is None
        assert r.reason.startswith("not reproducible: scored "), r.reason
        assert "more than the noise allows" in r.reason and "noise sd 0.0" in r.reason
        assert "measured on the initial program in 3 evaluations" in r.reason
    assert honest.status is Status.OK and honest.score is not None
    assert abs(honest.score - 2.0) < 0.05 and "stored their mean" in honest.artifacts["reverify"]
    assert calls.count("initial") == 3  # measured once, when first needed
    assert ex.noise is not None and 0 < ex.noise.sd < 0.05


def test_noise_that_cannot_be_measured_keeps_the_strict_rule() -> None:
    flaky = itertools.cycle([10.0, 1.0])

    def fn(code: str) -> float:
        if code == "initial":
            raise RuntimeError("initial broke")
        return next(flaky)

    ex = Reverifying(FunctionExecutor(fn), times=1, tolerance=1e-6, worth=lambda s: s > 3,
                     noise_samples=3, reference="initial")
    r = asyncio.run(ex.evaluate("flaky", program_id=1))
    assert r.status is Status.FAILED and "noise unknown: the initial program was failed" in r.reason
    steady = Reverifying(FunctionExecutor(lambda c: 5.0 if c == "initial" else next(flaky)),
                         times=1, tolerance=1e-6, worth=lambda s: s > 3, noise_samples=3,
                         reference="initial")
    r = asyncio.run(steady.evaluate("flaky", program_id=1))
    assert r.status is Status.FAILED and "noise 0 in 3 evaluations" in r.reason


def test_rejected_bests_counts_reasons_by_kind() -> None:
    reasons = [
        "not reproducible: scored 10, then 1 on re-evaluation in a fresh process "
        "(evaluation.reverify_tolerance=1e-06)",
        "not reproducible: scored 10, then timeout on re-evaluation in a fresh process (slow)",
        "not reproducible: scored 900, then 3 on re-evaluation in a fresh process (more than "
        "the noise allows: 0.4 = 31.6 x sqrt(2) x noise sd 0.01 measured on the initial program "
        "in 3 evaluations + evaluation.reverify_tolerance=1e-06)",
        "not reproducible: scored 800, then 2 on re-evaluation in a fresh process (more than "
        "the noise allows: ...)",
        "ValueError: not this one",
    ]
    programs = [Program(id=i, code="", status=Status.FAILED, reason=r)
                for i, r in enumerate(reasons)]
    programs.append(Program(id=9, code="", status=Status.OK, score=1.0))
    assert rejected_bests(programs) == [
        ("score moved by more than the measured noise", 2),
        ("score moved by more than evaluation.reverify_tolerance", 1),
        ("timeout on re-evaluation", 1),
    ]
