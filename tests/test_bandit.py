"""The bandit over arms: it shifts to the arm whose children improve more per unit of cost, its
state is rebuilt on resume from the stored programs, and a change of arms is safe."""

from __future__ import annotations

import re
from pathlib import Path

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
        assert (a.pulls, round(a.successes, 9), round(a.failures, 9), round(a.cost, 9)) == \
            (b.pulls, round(b.successes, 9), round(b.failures, 9), round(b.cost, 9)), arm
    # the models changed: "bad" is gone, "new" is added; stored pulls of "bad" are ignored
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
    import subprocess
    import sys

    from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, reply

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "k")

    def script(req: ChatRequest):
        return reply(GOOD if req.model == "smart" else MISSING)

    with OpenAITestServer(script) as srv:
        cfg = build_config({
            "max_programs": 50, "seed": 2,
            "llm": {"base_url": srv.base_url, "models": ["dumb", "smart"], "concurrency": 2,
                    "retries": 0, "api_key_env": "EVOFORGE_TEST_KEY"},
            "mutator": {"name": "bandit", "bandit_edit_modes": ["diff"],
                        "bandit_model_free": False},
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
