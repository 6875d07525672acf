"""The dashboard on multi-objective runs (issue 14): the front page and its JSON API against a
real model-free run of zdt1_front (numbers checked against the stored programs and the run's
``pareto`` metadata), three objectives and a constraint with hostile metric names on SQLite and
PostgreSQL, live updates when the front is rewritten, and runs of one score left as they were.
The front page in a browser: test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import stub_problem
from markupsafe import escape
from test_dashboard import _next_update, append_program, make_run
from test_dashboard import pg as pg  # noqa: F401 - the module's PostgreSQL server fixture

from evoforge import api
from evoforge.config import build_config
from evoforge.dashboard import create_app, open_run
from evoforge.dashboard.server import running
from evoforge.problem import Problem
from evoforge.program import Program, Status
from evoforge.registry import make_selector
from evoforge.run import locate_run
from evoforge.selectors.pareto import META_KEY
from evoforge.storages import open_storage
from evoforge.testing import FunctionExecutor, FunctionMutator

pytest.importorskip("pymoo", reason="multi-objective runs need pymoo: pip install "
                    "'evoforge[pareto]'")

#: metric names an evaluator might report: markup, quotes (which end a quoted SQLite JSON
#: path) and an ampersand
HOSTILE = '<img src=x onerror="document.title=\'PWNED\'">'
QUOTED = 'lat"ency" & <b>ms</b>'
PROGRAM = "# EVOLVE-BLOCK-START\nX = 2\nY = 2\n# EVOLVE-BLOCK-END\n"


def _xy(code: str) -> tuple[int, int]:
    return (int(code.split("X = ")[1].split("\n")[0]), int(code.split("Y = ")[1].split("\n")[0]))


def _step(req: Any) -> str:
    x, y = _xy(req.parent.code)
    x = min(max(x + req.rng.choice([-2, -1, 1, 2]), 0), 10)
    y = min(max(y + req.rng.choice([-1, 1]), 0), 6)
    return PROGRAM.replace("X = 2", f"X = {x}").replace("Y = 2", f"Y = {y}")


def make_pareto_run(where: Path, names: Sequence[str], *, constraint: str = "load",
                    programs: int = 30, storage_url: str | None = None) -> Path:
    """A real run (the pipeline, function-backed mutator and executor) with two or three
    objectives named ``names`` (minimise x, minimise (10 - x)^2 / 10 + y, maximise y: a front
    of trade-offs) and a constraint ``constraint`` (x + y at most 5: some programs
    infeasible)."""
    where.mkdir(parents=True, exist_ok=True)
    problem = stub_problem(where, PROGRAM)
    (problem.path / "problem.yaml").write_text("title: Trade-offs\ndirection: maximize\n")
    objectives = list(zip(names, ("minimize", "minimize", "maximize"), strict=False))

    def evaluate(code: str) -> dict[str, float]:
        x, y = _xy(code)
        values = (float(x), (10 - x) ** 2 / 10 + y, float(y))
        return {**{n: v for n, v in zip(names, values, strict=False)},
                constraint: float(x + y), "combined_score": float(-x)}

    cfg = build_config(problem.config, {
        "max_programs": programs, "evaluation": {"reverify": 0}, "seed": 5,
        "objective": {"metrics": [{"name": n, "direction": d} for n, d in objectives],
                      "constraints": [{"name": constraint, "max": 5}]},
        "selector": {"num_islands": 2},
        **({"storage": {"url": storage_url}} if storage_url else {})})
    api.evolve(problem, run_dir=where / "run", config=cfg, mutator=FunctionMutator(_step),
               executor=FunctionExecutor(evaluate))
    return where / "run"


def stored_run(ref: str | Path) -> tuple[list[Program], dict[str, Any]]:
    with open_storage(locate_run(ref), readonly=True) as s:
        return list(s.programs()), s.get_meta(META_KEY)


@pytest.fixture(scope="module")
def zdt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short model-free run of zdt1_front (its own config: f1 and f2, both minimised). One
    evaluation slot, so the seed fixes the programs: with two, timing decided them and about one
    run in ten ended with a front of one program (a CI failure); this seed's front has five."""
    problem = Problem.load("zdt1_front")
    run_dir = tmp_path_factory.mktemp("zdt") / "run"
    cfg = build_config(problem.config, {"max_programs": 60, "max_time": None, "seed": 4,
                                        "evaluation": {"workers": 1}})
    api.evolve(problem, run_dir=run_dir, config=cfg)
    return run_dir


@pytest.fixture(scope="module")
def client(zdt: Path) -> Iterator[httpx.Client]:
    with running(create_app([open_run(str(zdt))])) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        yield c


def _get(client: httpx.Client, path: str) -> Any:
    r = client.get(path)
    assert r.status_code == 200, (path, r.text[:500])
    return r.json() if r.headers["content-type"].startswith("application/json") else r.text


def _oks(programs: list[Program], names: list[str]) -> list[Program]:
    return [p for p in programs if p.status is Status.OK and all(n in p.metrics for n in names)]


def test_front_api_shows_the_stored_front_and_hypervolume(client: httpx.Client,
                                                          zdt: Path) -> None:
    programs, meta = stored_run(zdt)
    by_id = {p.id: p for p in programs}
    front = meta["front"]
    assert len(front) >= 2 and len(meta["hypervolume"]) >= 2  # a front and a curve to show
    par = _get(client, "/api/runs/0/pareto")
    assert par["objectives"] == [{"name": "f1", "direction": "minimize"},
                                 {"name": "f2", "direction": "minimize"}]
    assert par["front_size"] == len(front)
    assert par["history"] == meta["hypervolume"] and par["history_total"] == len(
        meta["hypervolume"])
    assert par["hypervolume"] == meta["hypervolume"][-1][1]
    assert par["reference_point"] == meta["reference_point"] == [1.1, 4.0]
    oks = _oks(programs, ["f1", "f2"])
    assert par["programs"] == {"ok": sum(p.status is Status.OK for p in programs),
                               "plotted": len(oks), "feasible": len(oks), "infeasible": 0,
                               "missing_metrics": 0}
    assert par["done"] == len(programs)

    table = _get(client, "/api/runs/0/pareto/front")
    assert table["total"] == len(front) and table["pages"] == 1
    rows = table["items"]
    assert sorted(r["id"] for r in rows) == sorted(front)
    for r in rows:  # every number as stored
        p = by_id[r["id"]]
        assert r["values"] == [p.metrics["f1"], p.metrics["f2"]]
        assert (r["score"], r["generation"], r["island"]) == (p.score, p.generation, p.island)
    assert [r["values"][0] for r in rows] == sorted(by_id[i].metrics["f1"] for i in front)
    by_f2 = _get(client, "/api/runs/0/pareto/front?sort=1")["items"]
    assert [r["values"][1] for r in by_f2] == sorted(by_id[i].metrics["f2"] for i in front)
    paged = [_get(client, f"/api/runs/0/pareto/front?per_page=1&page={k}")["items"][0]["id"]
             for k in range(1, len(front) + 1)]
    assert paged == [r["id"] for r in rows]
    assert client.get("/api/runs/0/pareto/front?sort=2").status_code == 400

    pts = _get(client, "/api/runs/0/pareto/points")
    assert sum(p["count"] for p in pts["points"]) == len(oks)
    assert all(p["feasible"] for p in pts["points"])
    wx = (pts["x_max"] - pts["x_min"]) / pts["width"]
    wy = (pts["y_max"] - pts["y_min"]) / pts["height"]
    for p in pts["points"]:  # each cell's sample program lies in that cell
        m = by_id[p["id"]].metrics
        assert abs(m["f1"] - p["x"]) <= wx / 2 * 1.0001 and abs(m["f2"] - p["y"]) <= wy / 2 * 1.0001
    want = sorted((by_id[i].metrics["f1"], by_id[i].metrics["f2"], i) for i in front)
    assert [(q["x"], q["y"], q["id"]) for q in pts["front"]] == want
    assert pts["front_total"] == len(front) and pts["step"] is True


def test_front_page_shows_the_numbers_and_links(client: httpx.Client, zdt: Path) -> None:
    programs, meta = stored_run(zdt)
    by_id = {p.id: p for p in programs}
    page = _get(client, "/runs/0/front")
    assert 'id="front-chart"' in page and 'id="hv-chart"' in page
    assert "f1 (minimize)" in page and "f2 (minimize)" in page  # the axes
    assert f'<dd id="front-size">{len(meta["front"])} programs</dd>' in page
    assert f'<dd id="hypervolume">{meta["hypervolume"][-1][1]:.6g}</dd>' in page
    table = page.split('id="front"', 1)[1]
    for pid in meta["front"]:
        p = by_id[pid]
        assert f'<a href="/runs/0/programs/{pid}">#{pid}</a>' in table
        assert (f'<td class="num">{p.metrics["f1"]:.6g}</td><td class="num">'
                f'{p.metrics["f2"]:.6g}</td>') in table
        # the scatter's front point links to the program
        assert f'<a href="/runs/0/programs/{pid}" data-id="{pid}"><circle class="front"' in page
    assert 'class="front" d="M' in page  # the step line
    over = _get(client, "/runs/0")
    assert (f'<a href="/runs/0/front">{len(meta["front"])} programs</a>, hypervolume '
            f'{meta["hypervolume"][-1][1]:.6g}') in over
    assert 'href="/runs/0/front">Pareto front</a>' in over
    assert _get(client, "/runs/0/part/front?sort=1&page=1").count("<tr>") == len(
        meta["front"]) + 1
    s = _get(client, "/api/runs/0/summary")
    assert (s["front_size"], s["hypervolume"]) == (len(meta["front"]),
                                                   meta["hypervolume"][-1][1])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile_ref(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("pareto-hostile")
    if request.param == "sqlite":
        return str(make_pareto_run(where, (HOSTILE, QUOTED, "plain"), constraint=QUOTED + "2"))
    url = f"{request.getfixturevalue('pg').url}#run=pareto-hostile"
    make_pareto_run(where, (HOSTILE, QUOTED, "plain"), constraint=QUOTED + "2",
                    storage_url=url)
    return url


def test_hostile_metric_names_three_objectives_and_a_constraint(hostile_ref: str) -> None:
    programs, meta = stored_run(hostile_ref)
    by_id = {p.id: p for p in programs}
    names = [HOSTILE, QUOTED, "plain"]
    with running(create_app([open_run(hostile_ref)])) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        par = _get(c, "/api/runs/0/pareto")
        assert [o["name"] for o in par["objectives"]] == names  # as text, whole
        assert par["constraints"] == [{"name": QUOTED + "2", "min": None, "max": 5.0}]
        oks = _oks(programs, [*names, QUOTED + "2"])
        infeasible = [p for p in oks if p.metrics[QUOTED + "2"] > 5]
        assert infeasible and par["programs"]["infeasible"] == len(infeasible)
        assert par["programs"]["feasible"] == len(oks) - len(infeasible)
        rows = _get(c, "/api/runs/0/pareto/front?per_page=200")["items"]
        assert sorted(r["id"] for r in rows) == sorted(meta["front"]) and len(rows) >= 3
        for r in rows:  # read by name, quotes and all
            assert r["values"] == [by_id[r["id"]].metrics[n] for n in names]
        pts = _get(c, "/api/runs/0/pareto/points")
        assert pts["step"] is False  # three objectives: no step line through a projection
        assert sum(p["count"] for p in pts["points"] if not p["feasible"]) == len(infeasible)
        page = _get(c, "/runs/0/front")
        assert "<img" not in page and "<b>" not in page and "onerror=\"" not in page
        assert str(escape(HOSTILE)) + " (minimize)" in page  # the x axis, as text
        assert str(escape(QUOTED)) + " (minimize)" in page  # the y axis
        assert str(escape("plain")) + " (max)</a></th>" in page  # the table: all three
        assert 'class="front" d="M' not in page
        assert len(re.findall(r'<circle class="front"', page)) == len(meta["front"])
        for part in ("/runs/0", "/runs/0/part/summary", "/runs/0/grid"):
            assert "<img" not in _get(c, part)
        assert str(escape(HOSTILE)) in _get(c, "/runs/0/part/summary")


def test_the_event_stream_reports_a_rewritten_front(tmp_path: Path) -> None:
    """The run writes its front after the result: the stream sends an update for each, and
    the front page then shows the new front."""
    run = make_pareto_run(tmp_path, ("a", "b", "c"), programs=8)
    programs, meta = stored_run(run)
    with running(create_app([open_run(str(run))], poll_interval=0.05)) as url, \
            httpx.Client(base_url=url, timeout=30) as c, \
            c.stream("GET", "/runs/0/events") as events:
        lines = events.iter_lines()
        first = _next_update(lines)
        # x 0, y 5, load 5: better than every stored program in a and c, so on the front
        pid = append_program(run, code=PROGRAM.replace("X = 2", "X = 0").replace("Y = 2", "Y = 5"),
                             metrics={"a": 0.0, "b": 16.0, "c": 5.0, "load": 5.0,
                                      "combined_score": 0.0}, score=0.0)
        update = _next_update(lines)
        while update["done"] == first["done"]:  # the proposal, then its result
            update = _next_update(lines)
        front = _get(c, "/api/runs/0/pareto/front?per_page=200")["items"]
        assert pid not in [r["id"] for r in front]  # the stored front, not yet rewritten
        cfg, storage = api.open_existing(run)
        with storage:  # as the run's controller publishes it
            selector = make_selector(cfg)
            for p in storage.programs():
                selector.add(p)
            key, value = selector.run_meta()  # type: ignore[misc]
            assert pid in value["front"]
            storage.set_meta(key, value)
        again = _next_update(lines)  # the metadata alone changes the version
        assert again["version"] != update["version"] and again["done"] == update["done"]
        rows = _get(c, "/api/runs/0/pareto/front?per_page=200")["items"]
        assert pid in [r["id"] for r in rows]
        assert f'<a href="/runs/0/programs/{pid}" data-id="{pid}">' in _get(
            c, "/runs/0/part/front")
    assert len(programs) == 8 and pid not in meta["front"]


def test_a_run_of_one_score_has_no_front(tmp_path: Path) -> None:
    run = make_run(tmp_path, programs=6)
    with running(create_app([open_run(str(run))])) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        for path in ("/api/runs/0/pareto", "/api/runs/0/pareto/front",
                     "/api/runs/0/pareto/points", "/runs/0/front", "/runs/0/part/front"):
            r = c.get(path)
            assert r.status_code == 404 and "one objective" in r.text, path
        s = _get(c, "/api/runs/0/summary")
        assert not {"objectives", "front_size", "hypervolume"} & set(s)
        over = _get(c, "/runs/0")
        assert "Pareto" not in over and 'href="/runs/0/grid">MAP-Elites grid' in over


@pytest.mark.parametrize("dx", ["minimize", "maximize"])
@pytest.mark.parametrize("dy", ["minimize", "maximize"])
def test_the_step_line_bounds_the_region_the_front_dominates(dx: str, dy: str) -> None:
    """Each corner of the step line is attained: some front point is at least as good as it
    in both objectives (a corner on the wrong side would be better than the front)."""
    import random

    from evoforge.dashboard.charts import pareto_chart

    rng = random.Random(dx + dy)
    xs = sorted(rng.sample(range(100), 8))
    ys = sorted(rng.sample(range(100), 8), reverse=(dx == dy))  # a trade-off in these directions
    front = [{"id": i, "x": float(x), "y": float(y)} for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    m = pareto_chart({"objectives": [{"name": "a", "direction": dx}, {"name": "b", "direction": dy}],
                      "x_min": 0.0, "x_max": 100.0, "y_min": 0.0, "y_max": 100.0, "points": [],
                      "front": front, "step": True}, href=lambda i: f"/p/{i}")
    pts = [(link["cx"], link["cy"]) for link in m["links"]]
    assert [link["href"] for link in m["links"]] == [f"/p/{i}" for i in range(8)]
    (path,) = [p["d"] for p in m["paths"] if p["cls"] == "front"]
    corners, x, y = [], 0.0, 0.0
    for op, val in re.findall(r"([MHV])([-\d.,]+)", path):
        if op == "M":
            x, y = (float(v) for v in val.split(","))
        elif op == "H":
            x = float(val)
        else:
            y = float(val)
        corners.append((x, y))
    assert len(corners) == 1 + 2 * 7 and set(pts) <= set(corners)

    def at_least_as_good(p: tuple[float, float], c: tuple[float, float]) -> bool:
        # screen x grows with the value, screen y shrinks with it
        gx = p[0] <= c[0] if dx == "minimize" else p[0] >= c[0]
        gy = p[1] >= c[1] if dy == "minimize" else p[1] <= c[1]
        return gx and gy

    assert all(any(at_least_as_good(p, c) for p in pts) for c in corners)
