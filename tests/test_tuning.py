"""Constant tuning (issue 11): the numeric literals of a good program, improved by Optuna's
CMA-ES or TPE over whole evaluations through the run's executor; trials stored with their
lineage and edit_kind "tune"; deterministic per seed; wraps any mutator."""

from __future__ import annotations

import ast
import importlib.util
import math
import random
from pathlib import Path

import pytest
from conftest import stub_problem

from evoforge import api
from evoforge.config import build_config
from evoforge.errors import ConfigError
from evoforge.mutators import tuning
from evoforge.mutators.base import MutationOutcome, MutationRequest
from evoforge.mutators.model_free import ModelFreeMutator
from evoforge.mutators.tuning import TuningMutator, find_literals, render
from evoforge.problem import Problem
from evoforge.program import MutationInfo, Program, Status
from evoforge.registry import make_mutator
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor, FunctionMutator

PROGRAM = '''"""Two constants to tune: the evaluator wants A = 3 and B = -1."""

# EVOLVE-BLOCK-START
A = 2.6  # stays: a comment the tuning must not lose
B = -0.85
# EVOLVE-BLOCK-END


def value():
    return A, B
'''


def _ab(code: str) -> tuple[float, float]:
    ns: dict = {}
    exec(compile(code, "candidate", "exec"), ns)
    a, b = ns["value"]()
    return float(a), float(b)


def objective(code: str) -> float:
    a, b = _ab(code)
    return -((a - 3) ** 2) - (b + 1) ** 2


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    return stub_problem(tmp_path, PROGRAM)


def _evolve(problem: Problem, run_dir: Path, mutator, fn=objective, *, n: int = 150,
            seed: int = 0, selector: str = "greedy", **extra) -> list[Program]:
    cfg = build_config(problem.config, {"max_programs": n, "seed": seed,
                                        "selector": {"name": selector},
                                        "evaluation": {"workers": 1, "reverify": 0},
                                        "llm": {"concurrency": 1}, **extra})
    outcome = api.evolve(problem, run_dir=run_dir, config=cfg, mutator=mutator,
                         executor=FunctionExecutor(fn))
    assert outcome.ok, outcome.message
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return list(s.programs())


def _best(programs: list[Program]) -> Program:
    return max((p for p in programs if p.status is Status.OK), key=lambda p: p.score or -1e9)


# --------------------------------------------------------------------------- literals

SITES = '''import random
N = 26
# EVOLVE-BLOCK-START
def build(xs):
    """Docstring 1.5 is text, not a number."""
    random.seed(42)
    pts = [(0.1, 0.9), (0.5, -0.25), (0.75, 0.0)]  # a table: one scale for all
    step = 0.01
    iters = 100
    total = 0.0
    for i in range(26):
        if i < 10:
            total += xs[3] * step ** 2 + 1
    return pts, total * 2.5e-3 - 7, iters
# EVOLVE-BLOCK-END
'''


def test_literals_are_the_constants_not_counts_indices_or_seeds() -> None:
    lits = find_literals(SITES)
    texts = [SITES[lit.start:lit.end] for lit in lits]
    # floats (the table's 0.0 too, with the table's scale; not a lone 0.0, which has none),
    # ints only where they look like parameters: not 26 in range(), 10 in a comparison, 3 as
    # an index, 2 as an exponent, 42 as a seed, 1 as an identity, or N outside the block
    assert texts == ["0.1", "0.9", "0.5", "-0.25", "0.75", "0.0", "0.01", "100", "2.5e-3",
                     "7"], texts
    table = [lit for lit in lits if lit.line == 7]
    assert len({lit.scale for lit in table}) == 1
    assert table[0].scale == pytest.approx((0.1 + 0.9 + 0.5 + 0.25 + 0.75) / 5)
    assert next(lit for lit in lits if SITES[lit.start:lit.end] == "0.01").scale == 0.01
    assert [lit.line for lit in lits if lit.is_int] == [9, 14]
    lo, hi = lits[7].bounds(0.2)  # iters = 100: an int range, ints stay ints
    assert (lo, hi) == (80, 120)


def test_render_changes_only_the_literals_and_keeps_comments() -> None:
    lits = find_literals(PROGRAM)
    assert [lit.value for lit in lits] == [2.6, -0.85]
    child = render(PROGRAM, lits, [-0.5, 0.25])  # a sign flip both ways
    assert "A = (-0.5)  # stays: a comment the tuning must not lose" in child
    assert "B = 0.25\n" in child
    assert _ab(child) == (-0.5, 0.25)
    assert child.replace("(-0.5)", "2.6").replace("0.25", "-0.85") == PROGRAM
    # a negative value in an operand position stays the value of the literal
    code = "# EVOLVE-BLOCK-START\nx = 10 - 0.5 * 2.0 ** -1.5\n# EVOLVE-BLOCK-END\n"
    lits = find_literals(code)
    out = render(code, lits, [-3.0 if lit.value == 0.5 else lit.value for lit in lits])
    ns: dict = {}
    exec(out, ns)
    assert ns["x"] == pytest.approx(10 - (-3.0) * 2.0 ** -1.5)
    ast.parse(out)


def test_other_languages_tune_decimal_floats_outside_comments_only() -> None:
    code = ("int n = 26;\n// EVOLVE-BLOCK-START\n// weight 0.5 in a comment\n"
            "double w = 0.75 * x + 1e-3;\nint k = 4;\n// EVOLVE-BLOCK-END\n")
    lits = find_literals(code, "c")
    assert [code[lit.start:lit.end] for lit in lits] == ["0.75", "1e-3"]
    assert all(lit.bounds(5.0)[0] >= 0 for lit in lits)  # the sign is unknown: stays >= 0


# --------------------------------------------------------------------------- search


def test_tuning_reaches_a_known_optimum_that_model_free_edits_do_not(problem, tmp_path) -> None:
    """150 evaluations each, three seeds: CMA-ES over (A, B) gets within 1e-4 of the optimum
    every time, and far closer than plain model-free edits at the same budget."""
    tuned, plain = [], []
    for seed in range(3):
        progs = _evolve(problem, tmp_path / f"t{seed}", TuningMutator(ModelFreeMutator(),
                        share=1.0), seed=seed)
        tuned.append(-_best(progs).score)
        progs = _evolve(problem, tmp_path / f"m{seed}", ModelFreeMutator(), seed=seed)
        plain.append(-_best(progs).score)
    assert max(tuned) < 1e-4, (tuned, plain)
    assert sorted(tuned)[1] * 10 < sorted(plain)[1], (tuned, plain)


def test_an_optimum_beyond_the_first_range_is_reached_session_by_session(problem,
                                                                        tmp_path) -> None:
    """A = 1.0 and B = -0.5, the optimum at (3, -1): outside the first session's range (+-20%,
    searched 4x as far). A session whose best sits at the edge ends, the next is centred there
    and wider: within 1e-4 in 300 evaluations."""
    d = tmp_path / "far"
    d.mkdir()
    (d / "initial_program.py").write_text(PROGRAM.replace("A = 2.6", "A = 1.0").replace(
        "B = -0.85", "B = -0.5"))
    (d / "evaluator.py").write_text((problem.path / "evaluator.py").read_text())
    far = Problem.load(d)
    for seed in range(2):
        m = TuningMutator(ModelFreeMutator(), share=1.0)
        progs = _evolve(far, tmp_path / f"r{seed}", m, n=300, seed=seed)
        assert -_best(progs).score < 1e-4
        assert m.sessions >= 2
        widths = {float(p.mutation.note.split("width ")[1].split(")")[0]) for p in progs
                  if p.mutation.edit_kind == "tune"}
        assert max(widths) > 0.2  # widened at the edge


def test_trials_are_children_with_lineage_edit_kind_and_a_note(problem, tmp_path) -> None:
    progs = _evolve(problem, tmp_path / "r", TuningMutator(ModelFreeMutator(), share=1.0),
                    n=60, selector="islands")
    by_id = {p.id: p for p in progs}
    trials = [p for p in progs if p.mutation.edit_kind == "tune"]
    assert len(trials) > 30
    for t in trials:
        assert t.mutation.mutator == "tune"
        parent = by_id[t.parent_ids[0]]
        assert len(t.parent_ids) == 1 and t.generation == parent.generation + 1
        # the child is its parent with literal values changed, nothing else
        pl, cl = find_literals(parent.code), find_literals(t.code)
        assert len(pl) == len(cl) == 2
        values = [lit.value for lit in cl]
        assert render(parent.code, pl, values) == render(t.code, cl, values)
        note = t.mutation.note
        assert note.startswith("tune: session ") and "literals changed: line 4 " in note
        base = int(note.split(" of #")[1].split(":")[0].split(" ")[0])
        assert base in by_id and by_id[base].status is Status.OK
    assert max(t.score or -1e9 for t in trials) > objective(PROGRAM) / 10


def test_same_seed_same_programs_with_one_evaluation_slot(problem, tmp_path) -> None:
    def run(name: str, seed: int) -> list[tuple]:
        progs = _evolve(problem, tmp_path / name, TuningMutator(ModelFreeMutator(), share=0.7),
                        n=50, seed=seed, selector="islands")
        return [(p.id, p.code, p.status, p.score, p.parent_ids, p.mutation.note) for p in progs]

    first = run("a", 5)
    assert first == run("b", 5)
    assert first != run("c", 6)
    assert any(note.startswith("tune:") for *_, note in first)


def test_it_wraps_an_llm_style_mutator_and_passes_every_result_on(problem, tmp_path) -> None:
    """An inner mutator that makes LLM-like rewrites (a new program text), runs on the LLM
    path (uses_llm), and learns from observe: it gets the other proposals and every result."""

    class Rewriter(FunctionMutator):
        def __init__(self) -> None:
            super().__init__(self.rewrite, name="llm")
            self.uses_llm = True
            self.asked = 0
            self.observed: list[int] = []

        def rewrite(self, request: MutationRequest) -> MutationOutcome:
            self.asked += 1
            a, b = _ab(request.parent.code)
            code = request.parent.code.replace(f"B = {b!r}", f"B = {b - 0.01!r}", 1)
            return MutationOutcome(code, MutationInfo(mutator="llm", edit_kind="rewrite"))

        def observe(self, program: Program) -> None:
            self.observed.append(program.id)

    inner = Rewriter()
    m = TuningMutator(inner, share=0.5)
    assert m.uses_llm and m.name == "llm"
    progs = _evolve(problem, tmp_path / "r", m, n=60)
    kinds = {p.mutation.edit_kind for p in progs if p.id}
    assert kinds == {"tune", "rewrite"}, kinds
    assert inner.asked == sum(p.mutation.edit_kind == "rewrite" for p in progs)
    assert sorted(inner.observed) == sorted(p.id for p in progs if p.status.terminal)
    assert _best(progs).score > objective(PROGRAM)


def test_failed_trials_get_a_bad_value_and_the_search_goes_on(problem, tmp_path) -> None:
    """Maximise A, but A above 2.7 fails: trials beyond fail, are told a value worse than any
    seen, and the sampler keeps to the feasible side, closing in on the boundary."""

    def fn(code: str) -> float:
        a, b = _ab(code)
        if a > 2.7:
            raise ValueError("infeasible")
        return a - abs(b + 0.85)

    m = TuningMutator(ModelFreeMutator(), share=1.0, spread=0.1)
    progs = _evolve(problem, tmp_path / "r", m, fn, n=120)
    failed = [p for p in progs if p.mutation.edit_kind == "tune" and p.status is Status.FAILED]
    assert failed and all("infeasible" in p.reason for p in failed)
    assert 2.68 < _best(progs).score <= 2.7
    told = [t for t in m.session.study.trials if t.value is not None] if m.session else []
    ok_values = [t.value for t in told if t.value > -1]
    bad = [t.value for t in told if t.value <= -1]
    assert bad and ok_values and max(bad) < min(ok_values)
    assert not m._trials  # every trial's result was matched to it


def test_an_unevaluable_program_is_left_to_the_inner_mutator(problem, tmp_path) -> None:
    inner_calls = []

    def inner(request: MutationRequest) -> str:
        inner_calls.append(request.proposal_id)
        return request.parent.code.replace("A = 2.6", "A = 2.7")

    m = TuningMutator(FunctionMutator(inner), share=1.0)
    req = MutationRequest(parent=Program(0, "# EVOLVE-BLOCK-START\npass\n# EVOLVE-BLOCK-END\n",
                                         status=Status.OK, score=1.0), rng=random.Random(0))
    import asyncio

    out = asyncio.run(m.mutate(req))  # no literal to tune: the inner mutator's child
    assert inner_calls == [0] and out.info.mutator == "function"
    assert m.session is None


def test_tpe_sampler_and_minimize(problem, tmp_path) -> None:
    m = TuningMutator(ModelFreeMutator(), share=1.0, sampler="tpe", minimize=True)
    progs = _evolve(problem, tmp_path / "r", m, lambda c: -objective(c), n=60,
                    objective={"direction": "minimize"})
    best = min(p.score for p in progs if p.status is Status.OK)
    assert best < -objective(PROGRAM) / 4
    assert "(tpe, " in next(p for p in progs if p.mutation.edit_kind == "tune").mutation.note


def test_resume_starts_a_new_session_on_the_runs_best(problem, tmp_path) -> None:
    """Sessions are not persisted: a resumed run starts session 1 again, on the run's best
    (restored from storage), and the wrapped mutator is restored too."""
    first = _evolve(problem, tmp_path / "r", TuningMutator(ModelFreeMutator(), share=1.0), n=40)
    restored: list[int] = []

    class Inner(ModelFreeMutator):
        def restore(self, programs) -> None:
            restored.extend(p.id for p in programs)

    m = TuningMutator(Inner(), share=1.0)
    api.resume(tmp_path / "r", overrides=["max_programs=80"], mutator=m,
               executor=FunctionExecutor(objective))
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = list(s.programs())
    assert len(progs) == 80 and m.sessions >= 1
    assert sorted(restored) == sorted(p.id for p in first if p.status.terminal)
    later = [p for p in progs if p.id >= 40 and p.mutation.edit_kind == "tune"]
    assert later[0].mutation.note.startswith(f"tune: session 1 (cmaes, width 0.2) trial 1 of "
                                             f"#{_best(first).id}")
    assert _best(progs).score >= _best(first).score


# --------------------------------------------------------------------------- configuration


def test_config_turns_it_on_and_off() -> None:
    def mutator(**tune):
        return make_mutator(build_config({"mutator": {"name": "model_free", "tuning": tune}}))

    on = mutator(enabled=True, share=0.3, sampler="tpe", spread=0.5)
    assert isinstance(on, TuningMutator) and isinstance(on.inner, ModelFreeMutator)
    assert (on.share, on.sampler, on.spread) == (0.3, "tpe", 0.5)
    assert isinstance(mutator(enabled=False), ModelFreeMutator)
    assert isinstance(mutator(enabled=True, share=0), ModelFreeMutator)
    assert isinstance(mutator(), ModelFreeMutator)  # off by default
    # auto: on for the model-free mutator where a trial can name its parent
    assert isinstance(mutator(enabled="auto"), TuningMutator) is tuning.TRIAL_LINEAGE
    minimize = make_mutator(build_config({"objective": {"direction": "minimize"},
                                          "mutator": {"name": "model_free",
                                                      "tuning": {"enabled": True}}}))
    assert isinstance(minimize, TuningMutator) and minimize.minimize
    with pytest.raises(ConfigError, match="did you mean 'share'"):
        build_config({"mutator": {"tuning": {"shar": 0.5}}})
    with pytest.raises(ConfigError, match="sampler"):
        build_config({"mutator": {"tuning": {"sampler": "grid"}}})


def test_with_a_bandit_tuning_is_an_arm_not_a_wrapper() -> None:
    from evoforge.mutators.bandit import BanditMutator

    def mutator(**over):
        return make_mutator(build_config({"mutator": {"name": "bandit", **over}}))

    arm = mutator(tuning={"sampler": "tpe", "spread": 0.5})  # bandit_tuning: auto
    assert isinstance(arm, BanditMutator) and isinstance(arm.tuning, TuningMutator)
    assert arm.tuning.inner is None and (arm.tuning.sampler, arm.tuning.spread) == ("tpe", 0.5)
    assert "tune" in arm.stats and "tune" not in arm.arms
    assert mutator(bandit_tuning=False).tuning is None
    # the wrapper only where the bandit has no tuning arm
    wrapped = mutator(bandit_tuning=False, tuning={"enabled": True, "share": 0.3})
    assert isinstance(wrapped, TuningMutator) and isinstance(wrapped.inner, BanditMutator)
    both = mutator(bandit_tuning=True, tuning={"enabled": True})
    assert isinstance(both, BanditMutator) and both.tuning is not None
    # model-free runs keep the wrapper: bandit_tuning is the bandit's
    free = make_mutator(build_config({"mutator": {"name": "model_free", "bandit_tuning": True,
                                                  "tuning": {"enabled": True}}}))
    assert isinstance(free, TuningMutator) and isinstance(free.inner, ModelFreeMutator)


def test_standalone_it_makes_only_trials() -> None:
    """Without an inner mutator (a bandit's arm) every proposal is a trial of the best, or,
    when none can be made, no child with the reason."""
    m = TuningMutator(None)
    base = Program(id=0, code=PROGRAM, status=Status.OK, score=objective(PROGRAM))
    m.observe(base)
    req = MutationRequest(parent=base, rng=random.Random(0), proposal_id=1)
    out = m.trial(req)
    assert out is not None and out.info.edit_kind == "tune" and out.parent is base
    nothing = Program(id=0, code="x = 0\n", status=Status.OK, score=0.0)
    empty = TuningMutator(None)
    empty.observe(nothing)
    asked = MutationRequest(parent=nothing, rng=random.Random(0), proposal_id=1)
    assert empty.trial(asked) is None
    import asyncio

    out = asyncio.run(empty.mutate(asked))
    assert out.code is None and "no trial can be made" in out.info.note


def test_a_missing_optuna_says_how_to_install_it(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'optuna>=4,<5'"):
        TuningMutator(ModelFreeMutator())
    with pytest.raises(ConfigError, match=r"pip install 'optuna>=4,<5'"):  # a bandit's arm
        make_mutator(build_config({"mutator": {"name": "bandit", "bandit_tuning": True}}))
    auto = make_mutator(build_config({"mutator": {"name": "bandit"}}))
    assert auto.tuning is None  # type: ignore[attr-defined]  # auto: off without optuna
    TuningMutator(ModelFreeMutator(), share=0)  # off: nothing needed


def test_popsize_and_defaults() -> None:
    assert tuning.popsize(2) == 6 and tuning.popsize(52) == 15
    assert math.isclose(TuningMutator(ModelFreeMutator()).spread, 0.2)
