"""Stop conditions are objects (issue 9): the config's budget is built from them, a user's
condition adds to it, and the run reports the first reason given."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import stub_problem

from evoforge import api
from evoforge.config import build_config
from evoforge.problem import Problem
from evoforge.stop import AnyOf, MaxCost, MaxPrograms, MaxTime, StopWhen, TargetScore, from_config
from evoforge.testing import FunctionExecutor, FunctionMutator

PROGRAM = "# EVOLVE-BLOCK-START\nX = 0\n# EVOLVE-BLOCK-END\n"


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    return stub_problem(tmp_path, PROGRAM)


def _count_up(request):  # X = parent's X + 1: the score climbs by one per generation
    x = int(request.parent.code.split("X = ")[1].split("\n")[0])
    return PROGRAM.replace("X = 0", f"X = {x + 1}")


def _score(code: str) -> float:
    return float(code.split("X = ")[1].split("\n")[0])


def test_config_budget_is_built_from_stop_objects() -> None:
    cfg = build_config({"max_programs": 5, "max_time": 60, "max_cost": 2.5,
                        "target_score": 9.0})
    stop = from_config(cfg)
    kinds = [type(s) for s in stop.stops]
    assert kinds[:4] == [MaxPrograms, TargetScore, MaxTime, MaxCost]
    assert stop.timed  # max_time needs the loop to wake up


def test_a_user_condition_adds_to_the_budget_and_names_the_reason(tmp_path: Path,
                                                                   problem: Problem) -> None:
    seen: list[int] = []

    def enough(run) -> str | bool:
        seen.append(run.tally.done)
        return "found_seven" if run.best is not None and run.best.score >= 7 else False

    cfg = build_config(problem.config, {"max_programs": 500, "evaluation": {"reverify": 0},
                                        "selector": {"num_islands": 1,
                                                     "exploitation_ratio": 1.0,
                                                     "exploration_ratio": 0.0}})
    outcome = api.evolve(problem, run_dir=tmp_path / "run", config=cfg,
                         mutator=FunctionMutator(_count_up), executor=FunctionExecutor(_score),
                         stop=StopWhen(enough))
    assert outcome.reason == "found_seven" and outcome.ok, outcome
    assert outcome.best is not None and outcome.best.score >= 7
    assert seen and max(seen) < 500  # asked along the way, stopped long before the budget


def test_the_budget_still_applies_with_a_user_condition(tmp_path: Path, problem: Problem) -> None:
    cfg = build_config(problem.config, {"max_programs": 12})
    outcome = api.evolve(problem, run_dir=tmp_path / "run", config=cfg,
                         mutator=FunctionMutator(_count_up), executor=FunctionExecutor(_score),
                         stop=[StopWhen(lambda run: False)])
    assert outcome.reason == "max_programs"


def test_any_of_reports_the_first_reason_in_order(tmp_path: Path, problem: Problem) -> None:
    cfg = build_config(problem.config, {"max_programs": 3})
    combined = AnyOf([StopWhen(lambda run: "a"), StopWhen(lambda run: "b")])
    outcome = api.evolve(problem, run_dir=tmp_path / "run", config=cfg,
                         mutator=FunctionMutator(_count_up), executor=FunctionExecutor(_score),
                         stop=combined)
    assert outcome.reason == "a"


def test_a_storage_can_be_passed_in_and_resumed_with(tmp_path: Path, problem: Problem) -> None:
    """evolve(storage=...) and resume(storage=...): the run lives in the given storage."""
    from evoforge.errors import ConfigError
    from evoforge.storages import SQLiteStorage

    db = tmp_path / "elsewhere" / "mine.db"
    db.parent.mkdir()
    cfg = build_config(problem.config, {"max_programs": 6})
    parts = {"mutator": FunctionMutator(_count_up), "executor": FunctionExecutor(_score)}
    first = api.evolve(problem, run_dir=tmp_path / "run", config=cfg,
                       storage=SQLiteStorage(db), **parts)
    assert first.reason == "max_programs"
    assert not (tmp_path / "run" / "evoforge.db").exists()
    again = api.resume(tmp_path / "run", overrides=["max_programs=10"],
                       storage=SQLiteStorage(db), mutator=FunctionMutator(_count_up),
                       executor=FunctionExecutor(_score))
    assert again.reason == "max_programs"
    with SQLiteStorage(db, readonly=True) as s:
        assert len(list(s.programs())) == 10
    with pytest.raises(ConfigError, match="already holds programs"):
        api.evolve(problem, run_dir=tmp_path / "run2", config=cfg, storage=SQLiteStorage(db),
                   mutator=FunctionMutator(_count_up), executor=FunctionExecutor(_score))
