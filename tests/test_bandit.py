"""The bandit over arms: it shifts to the arm whose children improve more per unit of cost, its
state is rebuilt on resume from the stored programs, and a change of arms is safe."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.mutators.bandit import BanditMutator
from evoforge.mutators.base import MutationOutcome, MutationRequest
from evoforge.program import MutationInfo
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor, FunctionMutator

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"


def _value(code: str) -> float:
    m = re.search(r"^VALUE = (\S+)$", code, re.M)
    return float(m.group(1)) if m else 0.0


def _arm(step: float, p_good: float, cost: float) -> FunctionMutator:
    """Children whose value moves by +step with probability p_good, else -step."""

    def fn(req: MutationRequest) -> MutationOutcome:
        base = _value(req.parent.code)
        delta = step if req.rng.random() < p_good else -step
        code = re.sub(r"\nVALUE = \S+$", "", req.parent.code.rstrip("\n"), flags=re.M)
        return MutationOutcome(code + f"\nVALUE = {base + delta!r}\n",
                               MutationInfo(mutator="llm", cost=cost, attempts=1))

    return FunctionMutator(fn)


def _cfg(n: int):
    return build_config({"max_programs": n, "seed": 5, "evaluation": {"workers": 1,
                                                                     "reverify": 0},
                         "selector": {"num_islands": 1}})


def _bandit(**over) -> BanditMutator:
    arms = {"good": _arm(1.0, 0.7, 0.01), "bad": _arm(1.0, 0.1, 0.01),
            "pricey": _arm(1.0, 0.7, 0.2)}
    arms.update(over)
    return BanditMutator(arms)


def _pulls(run_dir: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        for p in s.programs():
            if p.mutation.arm:
                out[p.mutation.arm] = out.get(p.mutation.arm, 0) + 1
    return out


def test_the_bandit_shifts_to_the_arm_that_improves_most_per_unit_of_cost(tmp_path):
    bandit = _bandit()
    outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=_cfg(160), mutator=bandit,
                         executor=FunctionExecutor(_value))
    assert outcome.ok, outcome.message
    pulls = _pulls(tmp_path / "r")
    assert pulls["good"] > 3 * pulls["bad"], pulls  # better success rate, same price
    assert pulls["good"] > 3 * pulls["pricey"], pulls  # same success rate, 20x the price
    assert sum(pulls.values()) == 159


def test_bandit_state_is_rebuilt_on_resume_and_survives_a_change_of_arms(tmp_path):
    live = _bandit()
    api.evolve(QUAD, run_dir=tmp_path / "r", config=_cfg(60), mutator=live,
               executor=FunctionExecutor(_value))
    restored = _bandit()
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        restored.restore(s.programs())
    for arm in live.stats:
        a, b = live.stats[arm], restored.stats[arm]
        assert (a.pulls, round(a.successes, 9), round(a.failures, 9), round(a.usd, 9)) == \
            (b.pulls, round(b.successes, 9), round(b.failures, 9), round(b.usd, 9)), arm
    # the models changed: "bad" is gone, "new" is added; resume restores it from storage and
    # the stored pulls of "bad" are ignored
    changed = BanditMutator({"good": _arm(1.0, 0.7, 0.01), "new": _arm(1.0, 0.5, 0.01)})
    before = live.stats["good"].pulls
    outcome = api.resume(tmp_path / "r", flags={"max_programs": 90}, mutator=changed,
                         executor=FunctionExecutor(_value))
    assert outcome.ok, outcome.message
    assert set(changed.stats) == {"good", "new"} and changed.stats["new"].pulls > 0
    assert changed.stats["good"].pulls + changed.stats["new"].pulls == before + 30


def test_same_seed_same_choices():
    import random

    a, b = _bandit(), _bandit()
    assert [a.choose(random.Random(i)) for i in range(50)] == \
        [b.choose(random.Random(i)) for i in range(50)]


GOOD = ("<<<<<<< SEARCH\n    b = 2.0\n=======\n    b = 2.0\n    a = a + 0.5\n>>>>>>> REPLACE\n")
MISSING = "<<<<<<< SEARCH\nno such line\n=======\nx = 1\n>>>>>>> REPLACE\n"


def test_through_the_llm_path_the_bandit_prefers_the_model_that_works(tmp_path, monkeypatch):
    from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, reply

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "k")

    def script(req: ChatRequest):
        return reply(GOOD if req.model == "smart" else MISSING)

    with OpenAITestServer(script) as srv:
        cfg = build_config({
            "max_programs": 50, "seed": 2,
            "llm": {"base_url": srv.base_url, "models": ["dumb", "smart"], "concurrency": 2,
                    # no hedging: on a loaded machine a slow request's twin is a second
                    # request of the same pull
                    "retries": 0, "hedge": False, "api_key_env": "EVOFORGE_TEST_KEY"},
            "mutator": {"name": "bandit", "bandit_edit_modes": ["diff"],
                        "bandit_model_free": False, "bandit_tuning": False},
            "evaluation": {"workers": 2, "reverify": 0}, "selector": {"num_islands": 1}})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
        asked = [r.body["model"] for r in srv.records]
    assert outcome.ok, outcome.message
    pulls = _pulls(tmp_path / "r")
    assert set(pulls) == {"smart:diff", "dumb:diff"}
    assert pulls["smart:diff"] > 3 * pulls["dumb:diff"], pulls
    assert asked.count("smart") == pulls["smart:diff"]  # an arm is its model, on the wire
    shown = subprocess.run([str(Path(sys.executable).with_name("evoforge")), "status",
                            str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "bandit arms" in shown.stdout and "smart:diff" in shown.stdout, shown.stdout


def test_a_free_pull_is_priced_at_free_cost_llm_calls_whatever_the_unit():
    """A pull without an LLM call (model-free, a tuning trial) costs ``free_cost`` LLM calls:
    one unit per call when no price is known, the mean price of a call when there is one."""
    from evoforge.program import Program, Status

    def run(llm_cost: float) -> BanditMutator:
        b = BanditMutator({"llm": _arm(1.0, 0.5, llm_cost), "free": _arm(1.0, 0.5, 0.0)},
                          free_cost=0.1)
        b.observe(Program(id=0, code="", status=Status.OK, score=0.0))
        for i in range(1, 21):
            llm = i % 2 == 0
            b.observe(Program(id=i, code="", status=Status.OK, score=-1.0, parent_ids=(0,),
                              mutation=MutationInfo(mutator="llm" if llm else "model_free",
                                                    cost=llm_cost if llm else 0.0,
                                                    arm="llm" if llm else "free")))
        return b

    for price in (0.0, 0.002):  # unpriced: calls are the unit; priced: USD
        costs = {arm: c for arm, _, _, c in run(price).summary()}
        assert costs["free"] == pytest.approx(0.1 * costs["llm"]), (price, costs)
        assert costs["llm"] == pytest.approx(price or 1.0)


# ---------------------------------------------------------------- constant tuning as an arm

TUNED = '''"""The evaluator wants A = 3 and B = -1: only the literals matter."""

# EVOLVE-BLOCK-START
A = 2.6
B = -0.85
# EVOLVE-BLOCK-END


def value():
    return A, B
'''
# an LLM that never helps: its rewrite sets the literals far from the optimum
USELESS = "```python\n# EVOLVE-BLOCK-START\nA = 100.0\nB = 100.0\n# EVOLVE-BLOCK-END\n```\n"


def _ab(code: str) -> float:
    ns: dict = {}
    exec(compile(code, "candidate", "exec"), ns)
    a, b = ns["value"]()
    return -((a - 3) ** 2) - (b + 1) ** 2


STRUCTURAL = '''"""Only structure scores: each gain() line is a point; SCALE does nothing."""

# EVOLVE-BLOCK-START
SCALE = 2.5


def gain():
    return SCALE
# EVOLVE-BLOCK-END
'''
# an LLM that always helps: one more scoring line per child
HELPFUL = ("<<<<<<< SEARCH\ndef gain():\n=======\ndef gain():\n    pass  # gained\n"
           ">>>>>>> REPLACE\n")


def _gained(code: str) -> float:
    return float(code.count("# gained"))


def _tuning_cfg(srv, models: list[str], mode: str, n: int, **mutator):
    return build_config({
        "max_programs": n, "seed": 3,
        "llm": {"base_url": srv.base_url, "models": models, "concurrency": 1, "retries": 0,
                "api_key_env": "EVOFORGE_TEST_KEY"},
        "mutator": {"name": "bandit", "bandit_edit_modes": [mode], "bandit_model_free": False,
                    "bandit_tuning": True, **mutator},
        "evaluation": {"workers": 1, "reverify": 0}, "selector": {"name": "greedy"}})


def _arms_in_order(run_dir: Path) -> list[str]:
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return [p.mutation.arm for p in s.programs() if p.mutation.arm]


def test_the_bandit_shifts_to_tuning_where_the_literals_decide(tmp_path, monkeypatch):
    from conftest import stub_problem

    from evoforge.registry import make_mutator
    from evoforge.testing.openai_server import OpenAITestServer, reply

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "k")
    problem = stub_problem(tmp_path, TUNED)
    with OpenAITestServer(lambda req: reply(USELESS)) as srv:
        cfg = _tuning_cfg(srv, ["dumb"], "rewrite", 80)
        bandit = make_mutator(cfg)
        assert isinstance(bandit, BanditMutator) and bandit.tuning is not None
        outcome = api.evolve(problem, run_dir=tmp_path / "r", config=cfg, mutator=bandit,
                             executor=FunctionExecutor(_ab))
        calls = srv.request_count
    assert outcome.ok, outcome.message
    arms = _arms_in_order(tmp_path / "r")
    late = arms[len(arms) // 2:]
    assert late.count("tune") > 5 * late.count("dumb:rewrite"), arms
    assert calls == arms.count("dumb:rewrite")  # a tuning trial makes no LLM call
    assert outcome.best is not None and outcome.best.score > -0.05  # initial program: -0.1625
    shown = subprocess.run([str(Path(sys.executable).with_name("evoforge")), "status",
                            str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    row = next(ln for ln in shown.stdout.splitlines() if ln.strip().startswith("tune"))
    assert str(arms.count("tune")) in row, shown.stdout  # the tuning arm with its pulls


def test_the_bandit_shifts_away_from_tuning_where_the_literals_do_not_matter(tmp_path,
                                                                             monkeypatch):
    from conftest import stub_problem

    from evoforge.registry import make_mutator
    from evoforge.testing.openai_server import OpenAITestServer, reply

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "k")
    problem = stub_problem(tmp_path, STRUCTURAL)
    with OpenAITestServer(lambda req: reply(HELPFUL)) as srv:
        cfg = _tuning_cfg(srv, ["smart"], "diff", 80)
        bandit = make_mutator(cfg)
        outcome = api.evolve(problem, run_dir=tmp_path / "r", config=cfg, mutator=bandit,
                             executor=FunctionExecutor(_gained))
    assert outcome.ok, outcome.message
    arms = _arms_in_order(tmp_path / "r")
    early, late = arms[: len(arms) // 2], arms[len(arms) // 2:]
    assert "tune" in early  # tried (cheap), then dropped: its trials never beat their base
    assert late.count("smart:diff") > 3 * late.count("tune"), arms
    assert late.count("tune") < early.count("tune"), arms


def test_tuning_arm_state_survives_resume_and_a_change_of_models(tmp_path, monkeypatch):
    from conftest import stub_problem

    from evoforge.registry import make_mutator
    from evoforge.testing.openai_server import OpenAITestServer, reply

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "k")
    problem = stub_problem(tmp_path, TUNED)
    run_dir = tmp_path / "r"
    with OpenAITestServer(lambda req: reply(USELESS)) as srv:
        first = _tuning_cfg(srv, ["dumb"], "rewrite", 40)
        live = make_mutator(first)
        before = api.evolve(problem, run_dir=run_dir, config=first, mutator=live,
                            executor=FunctionExecutor(_ab))
        assert before.ok and before.best is not None
        # resumed with another model added: "dumb" keeps its counts, "fresh" starts anew
        second = _tuning_cfg(srv, ["dumb", "fresh"], "rewrite", 70)
        resumed = make_mutator(second)
        assert isinstance(live, BanditMutator) and isinstance(resumed, BanditMutator)
        assert api.resume(run_dir, overrides=["max_programs=70",
                                               "llm.models=[dumb, fresh]"],
                          mutator=resumed, executor=FunctionExecutor(_ab)).ok
    arms = _arms_in_order(run_dir)
    assert {a: s.pulls for a, s in resumed.stats.items()} == {
        a: arms.count(a) for a in ("dumb:rewrite", "fresh:rewrite", "tune")}
    assert resumed.stats["dumb:rewrite"].pulls > 0  # learnt before the resume
    assert resumed.stats["fresh:rewrite"].pulls == arms[39:].count("fresh:rewrite")
    # the tuning arm relearnt the run's best: its first session after resume tunes it
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        later = [p for p in s.programs() if p.id >= 40 and p.mutation.arm == "tune"]
    assert later and later[0].mutation.note.startswith("tune: session 1 ")
    assert f"of #{before.best.id}" in later[0].mutation.note
