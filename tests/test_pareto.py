"""Multi-objective search: Pareto ranking and crowding against direct computations, constraints,
the two-stage schedule, a real model-free run on zdt1_front (hypervolume grows), its resume
(front and hypervolume history intact), the CLI (`status`, `best --pareto --write`), config
errors, and scalar runs left as they were."""

from __future__ import annotations

import json
import logging
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import stub_problem

from evoforge.api import evolve, inspect_run, resume
from evoforge.config import build_config
from evoforge.errors import ConfigError
from evoforge.problem import Problem
from evoforge.program import Program, Status
from evoforge.registry import make_selector
from evoforge.selectors.islands import IslandSelector
from evoforge.selectors.pareto import (
    META_KEY,
    Constraint,
    Objective,
    ParetoSelector,
    crowding_distances,
    dominates,
    hypervolume,
    pareto_ranks,
)
from evoforge.testing import FunctionExecutor, FunctionMutator

ZDT = Problem.load("zdt1_front")


def _dom(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=False)) and a != b


def brute_ranks(points: list[tuple[float, ...]]) -> list[int]:
    """Peel non-dominated layers one after another (the definition, O(n^3))."""
    left = set(range(len(points)))
    ranks = [-1] * len(points)
    r = 0
    while left:
        layer = {i for i in left if not any(_dom(points[j], points[i]) for j in left)}
        for i in layer:
            ranks[i] = r
        left -= layer
        r += 1
    return ranks


def direct_crowding(points: list[tuple[float, ...]]) -> list[float]:
    """NSGA-II crowding distance written out: per objective, sort (stably), boundary points
    infinite, interior points the normalised gap between their neighbours; averaged over the
    objectives. An objective with no spread adds nothing. Two or fewer points: infinite."""
    n, m = len(points), len(points[0])
    if n <= 2:
        return [float("inf")] * n
    d = [0.0] * n
    for k in range(m):
        order = sorted(range(n), key=lambda i: points[i][k])
        lo, hi = points[order[0]][k], points[order[-1]][k]
        if hi == lo:
            continue
        d[order[0]] = d[order[-1]] = float("inf")
        for a, b, c in zip(order, order[1:], order[2:], strict=False):
            d[b] += (points[c][k] - points[a][k]) / (hi - lo)
    return [x / m for x in d]


@pytest.mark.parametrize("seed", range(12))
def test_ranks_match_brute_force_with_ties_and_duplicates(seed: int) -> None:
    rng = random.Random(seed)
    m = rng.choice([2, 3])
    n = rng.randint(1, 40)
    grid = rng.choice([3, 5, 1000])  # a coarse grid: many ties and exact duplicates
    points = [tuple(float(rng.randrange(grid)) for _ in range(m)) for _ in range(n)]
    if n > 3:
        points[1] = points[0]  # a duplicate for sure
    assert pareto_ranks(points) == brute_ranks(points)


@pytest.mark.parametrize("seed", range(8))
def test_crowding_matches_direct_computation(seed: int) -> None:
    rng = random.Random(100 + seed)
    m = rng.choice([2, 3])
    pts = [tuple(rng.random() for _ in range(m)) for _ in range(rng.randint(1, 25))]
    if seed % 2:  # ties and duplicates
        pts = [tuple(round(v, 1) for v in p) for p in pts]
    assert crowding_distances(pts) == pytest.approx(direct_crowding(pts))
    # on one front, the extremes of every objective are infinitely far from crowding
    front = [(x / 10, 1 - x / 10) for x in range(11)]
    d = crowding_distances(front)
    assert d[0] == d[-1] == float("inf") and all(v == pytest.approx((0.2 + 0.2) / 2) for v in d[1:-1])


def test_constraint_violators_rank_below_every_feasible_point() -> None:
    rng = random.Random(5)
    pts = [(rng.random(), rng.random()) for _ in range(30)]
    viol = [0.0] * 20 + [0.5, 0.1, 0.1, 2.0, 0.3, 0.5, 0.1, 1.0, 0.2, 0.3]
    pts[20] = (-10.0, -10.0)  # infeasible, yet dominating every feasible point
    ranks = pareto_ranks(pts, viol)
    feas = brute_ranks(pts[:20])
    assert ranks[:20] == feas
    assert min(ranks[20:]) > max(feas)
    # among the infeasible: by violation, equal violation equal rank
    order = sorted(range(20, 30), key=lambda i: viol[i])
    for a, b in zip(order, order[1:], strict=False):
        assert (ranks[a] < ranks[b]) == (viol[a] < viol[b]) and (
            ranks[a] == ranks[b]) == (viol[a] == viol[b])


def _prog(pid: int, island: int = 0, **metrics: float) -> Program:
    return Program(id=pid, code=f"# {pid}\n", island=island, parent_ids=() if pid == 0 else (0,),
                   status=Status.OK, score=0.0, metrics=metrics, done_seq=pid)


def test_selector_constraints_front_and_hypervolume() -> None:
    sel = ParetoSelector([Objective("acc"), Objective("ms", minimize=True)],
                         constraints=[Constraint("err", max=0.01)], num_islands=1,
                         reference_point=[0.0, 100.0])
    sel.add(_prog(0, acc=0.5, ms=50, err=0.0))
    sel.add(_prog(1, acc=0.9, ms=10, err=0.5))  # dominates everything, but infeasible
    sel.add(_prog(2, acc=0.6, ms=60, err=0.0))
    sel.add(_prog(3, acc=0.4, ms=40, err=0.0))
    sel.add(_prog(4, acc=0.3, ms=70, err=0.0))  # dominated by #0
    sel.add(_prog(5, acc=0.95, ms=5, err=0.02))  # infeasible, less violation than #1
    order = sel.island_ranking(0)
    feasible = [0, 2, 3, 4]
    assert max(order[i][0] for i in feasible) < min(order[1][0], order[5][0])
    assert order[5][0] < order[1][0]
    assert {0, 2, 3} == {p.id for p in sel.front()} and order[4][0] == 1
    hv = sel.hypervolume_history()
    # (acc, ms) maximise/minimise from (0, 100): the union of the three feasible boxes
    assert hv[-1][1] == pytest.approx(0.5 * 50 + 0.1 * 40 + 0.4 * 10 - 0.0)
    assert hypervolume([(-0.5, 50.0)], (0.0, 100.0)) == pytest.approx(25.0)
    key, meta = sel.run_meta()  # type: ignore[misc]
    assert key == META_KEY and sorted(meta["front"]) == [0, 2, 3]
    assert meta["reference_point"] == [0.0, 100.0] and sel.run_meta() is None  # unchanged


def test_default_reference_point_is_fixed_at_the_first_program() -> None:
    sel = ParetoSelector([Objective("a"), Objective("b", minimize=True)], num_islands=1)
    sel.add(_prog(0, a=2.0, b=0.05))
    assert sel.reference_point() == pytest.approx([1.8, 0.15])
    sel.add(_prog(1, a=3.0, b=0.01))
    assert sel.reference_point() == pytest.approx([1.8, 0.15])  # never moves
    assert sel.hypervolume_history()[-1][1] == pytest.approx(1.2 * 0.14)


def test_extreme_metric_values_keep_the_run_storable(caplog) -> None:
    sel = ParetoSelector([Objective("a"), Objective("b")], num_islands=1)
    with caplog.at_level(logging.WARNING, logger="evoforge"):
        sel.add(_prog(0, a=-1.7e308, b=-1.7e308))  # both maximised: minimised as +1.7e308
        sel.add(_prog(1, a=1.7e308, b=1.7e308))
    ref = sel.reference_point()
    assert ref is not None and all(math.isfinite(r) for r in ref)
    _, meta = sel.run_meta()  # type: ignore[misc]
    json.dumps(meta, allow_nan=False)  # what set_meta stores
    assert sorted(meta["front"]) == [1]
    assert all(math.isfinite(v) for _, v in meta["hypervolume"])
    assert any("overflows" in r.message for r in caplog.records)
    with pytest.raises(ConfigError, match="finite"):
        build_config({"objective": {"metrics": ["a", "b"],
                                    "reference_point": {"a": float("inf"), "b": 0}}})


def test_two_stage_schedule_switches_to_the_front() -> None:
    sel = ParetoSelector([Objective("f1", minimize=True), Objective("f2", minimize=True)],
                         first="f2", switch_after=4, num_islands=1)
    sel.add(_prog(0, f1=0.5, f2=0.5))
    sel.add(_prog(1, f1=0.1, f2=0.9))  # non-dominated, but the worst in f2
    sel.add(_prog(2, f1=0.9, f2=0.2))
    assert sel.stage == 1
    r = sel.island_ranking(0)
    assert [r[i][0] for i in (2, 0, 1)] == [0, 1, 2]  # by f2 alone
    picks = {sel.select(random.Random(s)).parent.id for s in range(200)}
    assert 1 in picks and r[1][0] == 2  # a tournament, not a truncation
    sel.add(_prog(3, f1=0.95, f2=0.95))  # the 4th program: the switch
    assert sel.stage == 2
    r = sel.island_ranking(0)
    assert r[0][0] == r[1][0] == r[2][0] == 0 and r[3][0] == 1
    _, meta = sel.run_meta()  # type: ignore[misc]
    assert meta["schedule"] == {"first": "f2", "switch_after": 4, "switched_at": 4}


def test_schedule_share_comes_from_max_programs() -> None:
    cfg = build_config({"max_programs": 50, "objective": {
        "metrics": ["a", {"name": "b", "direction": "minimize"}],
        "schedule": {"first": "b", "switch_share": 0.2}}})
    sel = make_selector(cfg)
    assert isinstance(sel, ParetoSelector) and sel.switch_after == 10 and sel.stage == 1


def test_island_size_is_kept_by_rank_and_crowding() -> None:
    sel = ParetoSelector([Objective("a"), Objective("b")], num_islands=1, island_size=5)
    sel.add(_prog(0, a=0.0, b=0.0))
    for i in range(1, 40):
        sel.add(_prog(i, a=float(i % 7), b=float((i * 3) % 5)))
    members = {p.id for p in sel.island_members(0)}
    assert len(members) == 5
    # the run's front is the non-dominated set of everything added, and it stays on the island
    pts = {i: (-float(i % 7), -float((i * 3) % 5)) for i in range(1, 40)} | {0: (0.0, 0.0)}
    nd = {i for i, p in pts.items() if not any(dominates(q, p) for q in pts.values())}
    assert {p.id for p in sel.front()} == nd and nd <= members
    # evicted: never one ranked better than a member that stayed
    ranks = dict(zip(pts, brute_ranks(list(pts.values())), strict=False))
    assert max(ranks[i] for i in members) <= min(ranks[i] for i in pts if i not in members)


def test_config_errors_name_the_key_and_the_fix() -> None:
    with pytest.raises(ConfigError, match="objective.metrics lists one metric"):
        build_config({"objective": {"metrics": ["a"]}})
    with pytest.raises(ConfigError, match="objective.constraints needs objective.metrics"):
        build_config({"objective": {"constraints": [{"name": "e", "max": 1}]}})
    with pytest.raises(ConfigError, match="needs min or max"):
        build_config({"objective": {"metrics": ["a", "b"], "constraints": [{"name": "e"}]}})
    with pytest.raises(ConfigError, match="schedule.first is 'c'"):
        build_config({"objective": {"metrics": ["a", "b"], "schedule": {
            "first": "c", "switch_after": 5}}})
    with pytest.raises(ConfigError, match="exactly one of switch_after"):
        build_config({"objective": {"metrics": ["a", "b"], "schedule": {"first": "a"}}})
    with pytest.raises(ConfigError, match="reference_point must give a value for each"):
        build_config({"objective": {"metrics": ["a", "b"], "reference_point": {"a": 1}}})
    with pytest.raises(ConfigError, match="unknown key 'objective.metrics.0.dir'"):
        build_config({"objective": {"metrics": [{"name": "a", "dir": "min"}, "b"]}})
    with pytest.raises(ConfigError, match="selector.name is 'greedy'"):
        make_selector(build_config({"objective": {"metrics": ["a", "b"]},
                                    "selector": {"name": "greedy"}}))
    with pytest.raises(ConfigError, match="'pareto' needs objective.metrics"):
        make_selector(build_config({"selector": {"name": "pareto"}}))
    with pytest.raises(ConfigError, match="switch_share is a share of max_programs"):
        make_selector(build_config({"max_programs": None, "objective": {
            "metrics": ["a", "b"], "schedule": {"first": "a", "switch_share": 0.5}}}))


def test_a_metric_the_evaluator_never_reports_stops_at_the_first_result(tmp_path, caplog) -> None:
    prob = stub_problem(tmp_path, "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n")
    cfg = build_config({"max_programs": 5, "evaluation": {"reverify": 0}, "objective": {
        "metrics": ["accuracy", {"name": "latency_ms", "direction": "minimize"}]}})
    ex = FunctionExecutor(lambda code: {"combined_score": 1.0, "accuracy": 0.5, "latncy": 3.0})
    with pytest.raises(ConfigError, match=r"'latency_ms'.*reports only: accuracy, "
                                          r"combined_score, latncy"):
        evolve(prob, run_dir=tmp_path / "r", config=cfg, executor=ex,
               mutator=FunctionMutator(lambda req: req.parent.code + "#\n"))
    # later programs that lack one are left out of the search, with one warning
    sel = ParetoSelector([Objective("a"), Objective("b")], num_islands=1)
    sel.add(_prog(0, a=1.0, b=1.0))
    with caplog.at_level(logging.WARNING, logger="evoforge"):
        sel.add(_prog(1, a=5.0))
        sel.add(_prog(2, a=6.0))
    assert len(sel) == 1 and sum("does not report b" in r.message for r in caplog.records) == 1


# ------------------------------------------------------------------ a real run on zdt1_front


def _meta(run_dir: Path) -> dict:
    with inspect_run(run_dir) as (_cfg, storage):
        return storage.get_meta(META_KEY)


@pytest.fixture(scope="module")
def zdt_run(tmp_path_factory) -> tuple[Path, dict]:
    """A short model-free run of zdt1_front (the problem's own config: Pareto on f1, f2); one
    evaluation slot, so the same seed gives the same programs (no timing in the result)."""
    run_dir = tmp_path_factory.mktemp("zdt") / "run"
    cfg = build_config(ZDT.config, {"max_programs": 90, "max_time": None, "seed": 3,
                                    "evaluation": {"workers": 1}})
    evolve(ZDT, run_dir=run_dir, config=cfg)
    return run_dir, _meta(run_dir)


def test_hypervolume_grows_on_the_example_problem(zdt_run) -> None:
    run_dir, meta = zdt_run
    hv = meta["hypervolume"]
    assert hv[0][0] == 1 and hv[-1][1] > hv[0][1] * 1.05, hv  # 5% more than the initial's
    assert all(b[1] > a[1] and b[0] >= a[0] for a, b in zip(hv, hv[1:], strict=False))
    with inspect_run(run_dir) as (_cfg, storage):
        progs = {p.id: p for p in storage.programs()}
    front = [progs[i] for i in meta["front"]]
    pts = [(p.metrics["f1"], p.metrics["f2"]) for p in front]
    oks = [(p.metrics["f1"], p.metrics["f2"]) for p in progs.values() if p.status is Status.OK]
    # the stored front is exactly the non-dominated set of every ok program (no duplicates)
    assert set(pts) == {p for p in oks if not any(dominates(q, p) for q in oks)}
    assert len(pts) == len(set(pts)) >= 2
    assert hv[-1][1] == pytest.approx(hypervolume(pts, (1.1, 4.0)))


def test_resume_keeps_front_and_hypervolume_history(zdt_run, tmp_path) -> None:
    import shutil

    src, before = zdt_run
    run_dir = tmp_path / "copy"
    shutil.copytree(src, run_dir)
    # the replayed selector reproduces exactly what the run stored
    with inspect_run(run_dir) as (cfg, storage):
        sel = make_selector(cfg)
        for p in storage.programs():
            sel.add(p)
    assert sel.run_meta()[1] == before  # type: ignore[index]
    resume(run_dir, flags={"max_programs": 120})
    after = _meta(run_dir)
    assert after["hypervolume"][:len(before["hypervolume"])] == before["hypervolume"]
    assert after["hypervolume"][-1][0] > 90 or after["hypervolume"] == before["hypervolume"]
    with inspect_run(run_dir) as (_cfg, storage):
        progs = {p.id: p for p in storage.programs()}
        assert storage.stats()["done"] == 120
    pts = {i: (progs[i].metrics["f1"], progs[i].metrics["f2"]) for i in progs
           if progs[i].status is Status.OK}
    for i in before["front"]:  # each old front member is still on it or beaten by a new one
        assert i in after["front"] or any(dominates(pts[j], pts[i]) for j in after["front"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evoforge.cli", *args], capture_output=True,
                          text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_cli_status_and_best_pareto_write(zdt_run, tmp_path) -> None:
    run_dir, meta = zdt_run
    r = _cli("status", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert f"Pareto front: {len(meta['front'])} programs" in r.stdout
    assert "f1 (min)" in r.stdout and "hypervolume over time" in r.stdout
    assert f"{meta['hypervolume'][-1][1]:.6g}" in r.stdout
    out = tmp_path / "front"
    r = _cli("best", str(run_dir), "--pareto", "--write", str(out))
    assert r.returncode == 0, r.stderr
    with inspect_run(run_dir) as (_cfg, storage):
        codes = {i: storage.get(i).code for i in meta["front"]}
    written = sorted(out.glob("program_*.py"))
    assert [p.name for p in written] == sorted(f"program_{i}.py" for i in meta["front"])
    for i, code in codes.items():
        assert (out / f"program_{i}.py").read_text() == code
        assert str(i) in r.stdout
    index = json.loads((out / "front.json").read_text())
    assert {p["id"] for p in index["programs"]} == set(meta["front"])


def test_scalar_runs_are_unchanged(tmp_path) -> None:
    prob = stub_problem(tmp_path, "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n")
    cfg = build_config({"max_programs": 6, "evaluation": {"reverify": 0}})
    assert isinstance(make_selector(cfg), IslandSelector)
    n = iter(range(100))
    evolve(prob, run_dir=tmp_path / "r", config=cfg,
           executor=FunctionExecutor(lambda code: float(len(code))),
           mutator=FunctionMutator(lambda req: req.parent.code + f"# {next(n)}\n"))
    assert _meta(tmp_path / "r") is None
    r = _cli("status", str(tmp_path / "r"))
    assert r.returncode == 0 and "Pareto" not in r.stdout and "hypervolume" not in r.stdout
    r = _cli("best", str(tmp_path / "r"), "--pareto")
    assert r.returncode == 1 and "single-objective run" in r.stderr


def test_without_pymoo_the_error_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pymoo.indicators.hv", None)  # import fails
    with pytest.raises(ConfigError, match=r"needs pymoo: pip install 'evoforge\[pareto\]'"):
        make_selector(build_config({"objective": {"metrics": ["a", "b"]}}))
