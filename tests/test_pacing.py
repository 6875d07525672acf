"""Paced LLM requests (``pipeline.pace``) and results first (``pipeline.results_first``): when
the LLM is the bottleneck, a free slot does not send its request in a burst with the others nor
before the children already made are scored, so each parent is picked from fresher results."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.pipeline import Pipeline
from evoforge.problem import Problem
from evoforge.program import Status
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor
from evoforge.testing.openai_server import OpenAITestServer
from evoforge.testing.perturb import perturbing

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pipeline(*, pace=True, results_first=0.0, uses_llm=True, slots=2, llm_slots=4):
    cfg = build_config({"pipeline": {"pace": pace, "results_first": results_first},
                        "llm": {"concurrency": llm_slots}, "evaluation": {"workers": slots}})
    clock = Clock()
    p = Pipeline(SimpleNamespace(config=cfg), SimpleNamespace(uses_llm=uses_llm),
                 SimpleNamespace(slots=slots), clock=clock)
    return p, clock


def _times(p, llm, evaluation):
    p.llm_times.extend(llm)
    p.eval_times.extend(evaluation)


def test_results_first_waits_only_for_results_about_to_land():
    p, _ = _pipeline(pace=False, results_first=0.1)
    p.ready.append(1)
    assert not p._held()  # nothing measured yet: no wait
    _times(p, [1.0], [0.05])
    assert p._held()  # one child, scored in 0.05 s, a twentieth of a reply: wait for it
    p.eval_tasks.update({object(): None, object(): None})
    assert p._held()  # 3 children on 2 slots: two rounds, 0.1 s: still within a tenth
    p.ready.extend([2, 3])
    assert not p._held()  # 5 children: 3 rounds (0.15 s) would idle the slot too long
    p.ready.clear()
    p.eval_tasks.clear()
    assert not p._held()  # nothing to wait for
    q, _ = _pipeline(pace=False, results_first=0.0)  # off
    q.ready.append(1)
    _times(q, [1.0], [0.01])
    assert not q._held()
    s, _ = _pipeline(pace=False, results_first=0.1)
    s.ready.append(1)
    _times(s, [1.0], [0.5])  # slow evaluations: the request goes now
    assert not s._held()
    m, _ = _pipeline(uses_llm=False, results_first=0.1)  # model-free children are made at once, never held
    m.ready.append(1)
    _times(m, [0.0], [0.01])
    assert not m._held()


def test_pace_spreads_requests_over_the_reply_time():
    p, clock = _pipeline()
    _times(p, [1.0, 1.2, 60.0], [0.01])  # a hung request does not move the median (1.2 s)
    p.last_send = clock.now
    assert not p._held() and p.wake is None  # nothing else in flight: no one to spread from
    p.mut_tasks[object()] = None
    assert p._held()  # 0.9 x 1.2 / 4 = 0.27 s between requests
    assert p.wake == pytest.approx(0.27)
    clock.now += 0.2
    assert p._held() and p.wake == pytest.approx(0.07)
    clock.now += 0.07
    assert not p._held() and p.wake is None
    off, clock = _pipeline(pace=False)
    _times(off, [1.0], [0.01])
    off.last_send = clock.now
    off.mut_tasks[object()] = None
    assert not off._held()
    # instant proposals (a bandit's model-free arms) among LLM requests: the median is 0, so
    # pacing never slows them down
    mixed, clock = _pipeline()
    _times(mixed, [0.0] * 10 + [20.0] * 6, [0.01])
    mixed.last_send = clock.now
    mixed.mut_tasks[object()] = None
    assert not mixed._held()


def _llm_config(srv: OpenAITestServer, *, programs: int, seed: int, **pipeline):
    """QUAD through the real LLM mutator: 4 requests in flight, no hedging, 2 slots."""
    return build_config(Problem.load(QUAD).config, {
        "max_programs": programs, "seed": seed, "mutator": {"name": "llm", "edit_mode": "diff"},
        "llm": {"base_url": srv.base_url, "models": ["test-model"], "concurrency": 4,
                "api_key_env": "EVOFORGE_TEST_KEY", "hedge": False},
        "evaluation": {"workers": 2, "timeout": 20, "reverify": 0}, "pipeline": pipeline})


def _evaluate(code: str) -> dict[str, float]:
    ns: dict = {}
    exec(code, ns)  # the fixture's own program: a function of two literals
    value = float(ns["run"]())
    return {"combined_score": -((value - 7.3) ** 2)}


def test_paced_llm_run_picks_parents_from_fresher_results(tmp_path, monkeypatch):
    """A real LLM run (perturbing test server, replies 0.2 s, 4 in flight, evaluations
    instant): paced and results first, a parent choice misses fewer results (the mean over
    children of the results committed between its proposal and its own result) than with
    both off, where a slot freed by a reply sends its request before that reply's child is
    scored, and slots freed together send together."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    lags = {}
    for paced in (True, False):
        run_dir = tmp_path / f"r{paced}"
        with OpenAITestServer(perturbing(seed=1), latency=0.2) as srv:
            cfg = _llm_config(srv, programs=40, seed=1, pace=paced,
                              results_first=0.1 if paced else 0.0)
            outcome = api.evolve(QUAD, run_dir=run_dir, config=cfg,
                                 executor=FunctionExecutor(_evaluate, slots=2))
            assert srv.request_count == 39  # one request per child: nothing lost to waiting
        assert outcome.ok and outcome.reason == "max_programs", outcome.message
        with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
            kids = sorted((p for p in s.programs() if p.id and p.status is not Status.PENDING),
                          key=lambda p: p.id)
        assert len(kids) == 39
        lags[paced] = statistics.mean(p.done_seq - p.mutation.view for p in kids[8:])
    assert lags[True] <= lags[False] - 0.5, lags


def test_paced_requests_keep_their_spacing(tmp_path, monkeypatch):
    """Paced (the default), once a reply time is measured no request is sent sooner than
    0.9 x reply time / llm.concurrency after the one before while another is in flight: the
    test server's 0.2 s latency bounds every reply time from below, so no two such requests
    start less than 0.045 s apart (0.035 allowed for the event loop's own scheduling)."""
    from evoforge.mutators.llm import LLMMutator

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    sends: list[tuple[float, int]] = []  # (when, requests already in flight)
    inner = LLMMutator.mutate
    flying = [0]

    async def mutate(self, request):
        sends.append((time.monotonic(), flying[0]))
        flying[0] += 1
        try:
            return await inner(self, request)
        finally:
            flying[0] -= 1

    monkeypatch.setattr(LLMMutator, "mutate", mutate)
    with OpenAITestServer(perturbing(seed=3), latency=0.2) as srv:
        cfg = _llm_config(srv, programs=30, seed=3)
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg,
                             executor=FunctionExecutor(_evaluate, slots=2))
    assert outcome.ok and outcome.reason == "max_programs", outcome.message
    assert len(sends) == 29
    first_reply = 0.2 + sends[0][0]  # no reply time is known before the first reply
    gaps = [b[0] - a[0] for a, b in zip(sends, sends[1:], strict=False)
            if a[0] > first_reply and b[1] > 0]
    assert len(gaps) >= 10 and min(gaps) >= 0.035, gaps
