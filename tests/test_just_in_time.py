"""Just-in-time proposals (``pipeline.just_in_time``): a parent is picked only when its child
will be needed, so it is picked from fresher results; the window alone decides when it is off."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.pipeline import Pipeline
from evoforge.problem import Problem
from evoforge.program import Status
from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import OpenAITestServer
from evoforge.testing.perturb import perturbing

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"


def _children(run_dir: Path) -> list:
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return sorted((p for p in s.programs() if p.id and p.status is not Status.PENDING),
                      key=lambda p: p.id)  # ids are given in proposal order


def _lags(run_dir: Path) -> list[int]:
    """For every child: results committed between its proposal and its own result (what its
    parent choice had not seen)."""
    return [p.done_seq - p.mutation.view for p in _children(run_dir)]


def _ahead(run_dir: Path) -> list[int]:
    """For every child: the children proposed before it whose results were not committed yet
    when it was proposed."""
    kids = _children(run_dir)
    return [sum(1 for q in kids[:k] if q.done_seq >= p.mutation.view)
            for k, p in enumerate(kids)]


@pytest.mark.parametrize("jit", [True, False])
def test_model_free_children_are_made_when_a_slot_frees(tmp_path, jit):
    cfg = build_config(Problem.load(QUAD).config, {
        "max_programs": 30, "seed": 3, "evaluation": {"workers": 2},
        "pipeline": {"just_in_time": jit}})
    outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
    assert outcome.ok and outcome.reason == "max_programs"
    ahead = _ahead(tmp_path / "r")
    assert len(ahead) == 29
    if jit:  # a child is made for a free slot: only the other slot's child is still out
        assert max(ahead) <= 1, ahead
    else:  # the window (2 x workers) runs ahead of the slots
        assert max(ahead) >= 2, ahead


def _slow_problem(tmp_path: Path) -> Path:
    prob = tmp_path / "slow"
    shutil.copytree(QUAD, prob)
    ev = prob / "evaluator.py"
    ev.write_text(ev.read_text().replace(
        "def evaluate(program_path):\n",
        "def evaluate(program_path):\n    import time\n    time.sleep(0.25)\n"))
    return prob


def test_llm_proposals_wait_while_evaluations_are_the_bottleneck(tmp_path, monkeypatch):
    """Replies are fast (each perturbs a literal: no two children alike, so no cache hits) and
    evaluations slow: with the window alone (4 LLM slots + 2 per worker) children queue for
    the one slot and parents are picked several results early; just in time, few wait."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    prob = _slow_problem(tmp_path)
    means = {}
    for jit in (True, False):
        with OpenAITestServer(perturbing(seed=1)) as srv:
            cfg = build_config(Problem.load(prob).config, {
                "max_programs": 16, "seed": 1,
                "mutator": {"name": "llm", "edit_mode": "diff"},
                "llm": {"base_url": srv.base_url, "models": ["test-model"], "concurrency": 4,
                        "api_key_env": "EVOFORGE_TEST_KEY", "hedge": False},
                "evaluation": {"workers": 1, "timeout": 20, "reverify": 0},
                "pipeline": {"just_in_time": jit}})
            outcome = api.evolve(prob, run_dir=tmp_path / f"r{jit}", config=cfg)
        assert outcome.ok and outcome.reason == "max_programs", outcome.message
        lags = _lags(tmp_path / f"r{jit}")[4:]  # after the window has opened
        means[jit] = sum(lags) / len(lags)
    assert means[True] <= 2.5 and means[False] >= means[True] + 1.5, means


def _pipeline(*, jit=True, uses_llm=True, slots=2):
    cfg = build_config({"pipeline": {"just_in_time": jit}, "evaluation": {"workers": slots}})
    run = SimpleNamespace(config=cfg)
    return Pipeline(run, SimpleNamespace(uses_llm=uses_llm), SimpleNamespace(slots=slots))


def _state(p, *, ready=0, llm=0, evaluating=0):
    p.ready.extend(range(ready))
    p.mut_tasks.update({object(): None for _ in range(llm)})
    p.eval_tasks.update({object(): None for _ in range(evaluating)})
    return p


def test_needed_follows_littles_law():
    # nothing measured yet: the window alone decides
    assert _state(_pipeline(), ready=5, llm=4, evaluating=2)._needed()
    # evaluations 10 s, replies 1 s, 2 slots busy: one request in flight is enough
    p = _state(_pipeline(), evaluating=2)
    p.llm_times.append(1.0)
    p.eval_times.append(10.0)
    assert p._needed()
    p.mut_tasks[object()] = None
    assert p._needed()  # 1 < 0 free + 0.2 + 1
    p.mut_tasks[object()] = None
    assert not p._needed()  # 2 requests in flight for slots that take one child per 5 s
    p.eval_tasks.clear()  # both slots free: two children are wanted now
    assert p._needed()
    # replies slow, evaluations fast: many requests in flight are wanted
    q = _state(_pipeline(), llm=20, evaluating=2)
    q.llm_times.append(10.0)
    q.eval_times.append(1.0)
    assert q._needed()  # 20 < 0 + 2 x 10 / 1 + 1
    q.mut_tasks[object()] = None
    assert not q._needed()
    # instant proposals (tuning trials) among slow LLM requests: the mean, not the median,
    # keeps the LLM slots busy (a median of 0 would allow one request at a time)
    t = _state(_pipeline(), llm=4, evaluating=2)
    t.llm_times.extend([0.0] * 10 + [20.0] * 6)
    t.eval_times.append(1.0)
    assert t._needed()  # 4 < 0 + 2 x 7.5 / 1 + 1
    # off: always (the window and the staleness bound still apply)
    r = _state(_pipeline(jit=False), ready=9, evaluating=2)
    r.llm_times.append(1.0)
    r.eval_times.append(10.0)
    assert r._needed()
    # model-free: exactly one child per free slot, no timing involved
    m = _state(_pipeline(uses_llm=False), evaluating=1)
    assert m._needed()
    m.ready.append(99)
    assert not m._needed()
