"""The dashboard's JSON API and pages on a real run (issue 13): every endpoint against the
database, read-only access, live updates while the run is written, the token and Host
checks, and the security headers. Browser tests: test_dashboard_browser.py."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import stub_problem

from evoforge import api
from evoforge.config import build_config
from evoforge.dashboard import create_app, open_run
from evoforge.dashboard.server import plan_access, running
from evoforge.mutators.base import MutationOutcome
from evoforge.program import MutationInfo, Program, Status
from evoforge.run import locate_run
from evoforge.storages import open_storage
from evoforge.testing import FunctionExecutor, FunctionMutator

PROGRAM = "# EVOLVE-BLOCK-START\nX = 0\n# EVOLVE-BLOCK-END\n"


def _x(code: str) -> int:
    return int(code.split("X = ")[1].split("\n")[0])


def _mutate(request: Any) -> MutationOutcome:
    """X moves by -1, +1 or +2; every 7th proposal makes no child; two bandit arms."""
    x = _x(request.parent.code)
    arm = "fake:diff" if request.proposal_id % 2 else "model_free"
    if request.proposal_id % 7 == 0:
        return MutationOutcome(None, MutationInfo(mutator="llm", model="fake", arm=arm,
                                                  note="no edit in the reply"))
    d = request.rng.choice([-1, 1, 2])
    info = MutationInfo(mutator="llm", model="fake-model", edit_kind="diff", prompt_tokens=100,
                        completion_tokens=50, cost=0.001, latency=0.25, attempts=1, arm=arm)
    exchange = {"messages": [{"role": "system", "content": "You improve programs."},
                             {"role": "user", "content": f"Improve X = {x}"}],
                "reply": f"X = {x + d}", "model": "fake-model", "attempts": 1,
                "outcome": "applied"}
    return MutationOutcome(PROGRAM.replace("X = 0", f"X = {x + d}"), info, exchange=exchange)


def _evaluate(code: str) -> dict[str, float]:
    x = _x(code)
    if x % 5 == 3:
        raise ValueError(f"x={x} is unlucky")
    return {"combined_score": float(x), "size": float(len(code))}


def make_run(where: Path, programs: int = 60, storage_url: str | None = None) -> Path:
    """A real run (the pipeline, a stub problem, function-backed mutator and executor) of
    ``programs`` programs on two islands with a two-feature MAP-Elites grid (in the run dir's
    SQLite file, or at ``storage_url``); half the picks explore, so both islands grow."""
    where.mkdir(parents=True, exist_ok=True)
    problem = stub_problem(where, PROGRAM)
    (problem.path / "problem.yaml").write_text(
        "title: Count up\ndirection: maximize\nbest_known: 30\nbaseline: 0\n")
    cfg = build_config(problem.config, {
        "max_programs": programs, "evaluation": {"reverify": 0},
        "selector": {"num_islands": 2, "min_exploration": 0.5,
                     "features": [{"name": "code_length", "bins": 5}, {"name": "score", "bins": 4}]},
        **({"storage": {"url": storage_url}} if storage_url else {})})
    api.evolve(problem, run_dir=where / "run", config=cfg, mutator=FunctionMutator(_mutate),
               executor=FunctionExecutor(_evaluate))
    return where / "run"


def append_program(run_dir: Path | str, *, code: str = PROGRAM, status: Status = Status.OK,
                   score: float | None = 1.0, reason: str = "",
                   metrics: dict[str, float] | None = None,
                   artifacts: dict[str, str] | None = None,
                   mutation: MutationInfo | None = None,
                   exchange: dict[str, Any] | None = None, parent: int = 0) -> int:
    """Write one more terminal program into a run's storage (a run dir or a PostgreSQL run
    reference), as its controller would."""
    with open_storage(locate_run(run_dir)) as s:
        st = s.stats()
        p = Program(id=st["next_id"], code=code, parent_ids=(parent,), island=0, generation=1,
                    mutation=mutation or MutationInfo(mutator="test"), created_at=time.time())
        s.add_program(p)
        if exchange is not None:
            s.add_exchange(p.id, exchange)
        s.record_result(Program(**{**p.__dict__, "status": status, "score": score,
                                   "reason": reason, "metrics": metrics or {},
                                   "artifacts": artifacts or {}, "done_seq": st["next_done_seq"],
                                   "evaluated_at": time.time()}))
        return p.id


_pg_runs = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    """A throwaway PostgreSQL server on loopback for this module (skipped where Debian's
    PostgreSQL binaries or psycopg are missing)."""
    pytest.importorskip("psycopg", reason="PostgreSQL storage needs psycopg "
                        "(pip install 'evoforge[postgres]')")
    from evoforge.testing.postgres import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres(settings={"fsync": "off", "synchronous_commit": "off",
                                         "full_page_writes": "off"})
    except PostgresUnavailable as e:
        pytest.skip(f"no PostgreSQL server binaries: {e}")
    with server:
        yield server


def new_run(where: Path, backend: str, request: pytest.FixtureRequest, programs: int) -> str:
    """A real run on ``backend``; its reference for the dashboard (a run dir, or for
    PostgreSQL the ``postgresql://...#run=NAME`` URL: no run dir needed)."""
    if backend == "sqlite":
        return str(make_run(where, programs))
    url = f"{request.getfixturevalue('pg').url}#run=dash-{next(_pg_runs)}"
    make_run(where, programs, storage_url=url)
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def run_ref(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return new_run(tmp_path_factory.mktemp("dash"), request.param, request, 60)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("dash-sqlite"))


@pytest.fixture(scope="module")
def stored(run_ref: str) -> list[Program]:
    with open_storage(locate_run(run_ref), readonly=True) as s:
        return list(s.programs())


@pytest.fixture(scope="module")
def server(run_ref: str) -> Iterator[str]:
    app = create_app([open_run(run_ref), open_run(run_ref, name="again")])
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def _get(client: httpx.Client, path: str) -> Any:
    r = client.get(path)
    assert r.status_code == 200, (path, r.text[:500])
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    return r.json() if r.headers["content-type"].startswith("application/json") else r.text


def test_summary_matches_the_database(client: httpx.Client, stored: list[Program]) -> None:
    s = _get(client, "/api/runs/0/summary")
    counts = Counter(p.status.value for p in stored)
    assert s["done"] == len(stored) and s["pending"] == 0
    for st in ("ok", "failed", "invalid", "timeout", "crashed"):
        assert s["counts"][st] == counts.get(st, 0), st
    assert counts["failed"] > 0 and counts["invalid"] > 0  # the run has each kind to show
    oks = [p for p in stored if p.status is Status.OK]
    best = max(oks, key=lambda p: (p.score, -p.done_seq))
    assert (s["best_id"], s["best_score"]) == (best.id, best.score)
    assert s["initial_score"] == 0.0 and s["best_known"] == 30.0
    assert s["prompt_tokens"] == sum(p.mutation.prompt_tokens for p in stored)
    assert s["cost"] == pytest.approx(sum(p.mutation.cost for p in stored))
    assert s["per_minute"] > 0
    runs = _get(client, "/api/runs")
    assert [r["run"] for r in runs] == [0, 1] and runs[1]["name"] == "again"


def test_scores_stand_for_every_program(client: httpx.Client, stored: list[Program]) -> None:
    sc = _get(client, "/api/runs/0/scores")
    shown = sum(p["count"] for p in sc["points"]) + sum(u["count"] for u in sc["unscored"])
    assert shown == len(stored)
    scored = Counter(p.status.value for p in stored if p.score is not None)
    assert Counter({s: sum(p["count"] for p in sc["points"] if p["status"] == s)
                    for s in scored}) == scored
    # best so far: the records, in commit order, each better than the last
    records, best = [], None
    for p in sorted(stored, key=lambda p: p.done_seq):
        if p.status is Status.OK and (best is None or p.score > best):
            best = p.score
            records.append((p.done_seq, p.id, p.score))
    assert [(r["x"], r["id"], r["score"]) for r in sc["best"]] == records
    assert set(sc["islands"]) == {"0", "1"}
    for isl, recs in sc["islands"].items():
        mine = [p for p in stored if p.island == int(isl) and p.status is Status.OK]
        assert recs[-1]["score"] == max(p.score for p in mine)
    assert {r["label"]: r["value"] for r in sc["refs"]} == {"initial": 0.0, "best known": 30.0}


def test_timeline_and_arms(client: httpx.Client, stored: list[Program]) -> None:
    tl = _get(client, "/api/runs/0/timeline")
    assert sum(sum(b["counts"].values()) for b in tl["buckets"]) == len(stored)
    assert tl["buckets"][-1]["total_tokens"] == sum(
        p.mutation.prompt_tokens + p.mutation.completion_tokens for p in stored)
    arms = _get(client, "/api/runs/0/arms")
    pulls = Counter(p.mutation.arm for p in stored if p.mutation.arm)
    assert {a["arm"]: a["pulls"] for a in arms["arms"]} == dict(pulls)
    by_id = {p.id: p for p in stored}
    better = Counter(p.mutation.arm for p in stored if p.mutation.arm and p.status is Status.OK
                     and by_id[p.parent_ids[0]].status is Status.OK
                     and p.score > by_id[p.parent_ids[0]].score)
    assert {a["arm"]: a["better"] for a in arms["arms"]} == {a: better.get(a, 0) for a in pulls}
    assert [sum(b["counts"]) for b in arms["buckets"]] == [a["pulls"] for a in arms["arms"]]


def test_grid_cells_hold_the_islands_ok_programs(client: httpx.Client,
                                                 stored: list[Program]) -> None:
    g = _get(client, "/api/runs/0/grid")
    assert g["features"] == ["code_length", "score"]
    for isl in g["islands"]:
        mine = [p for p in stored if p.island == isl["island"] and p.status is Status.OK]
        assert sum(c["count"] for c in isl["cells"]) == len(mine) == isl["programs"]
        if mine:
            assert max(c["best"] for c in isl["cells"]) == max(p.score for p in mine)
            by_id = {p.id: p for p in mine}
            for c in isl["cells"]:  # each elite is one of the island's programs, its score
                assert by_id[c["id"]].score == c["best"]
                assert all(0 <= k < 5 for k in c["cell"][:1]) and 0 <= c["cell"][1] < 4


def test_program_listing_pages_through_everything(client: httpx.Client,
                                                  stored: list[Program]) -> None:
    seen: list[int] = []
    page, pages = 1, 1
    while page <= pages:
        pg = _get(client, f"/api/runs/0/programs?sort=score&per_page=7&page={page}")
        pages = pg["pages"]
        seen += [it["id"] for it in pg["items"]]
        page += 1
    assert sorted(seen) == sorted(p.id for p in stored) and len(seen) == len(set(seen))
    by_id = {p.id: p for p in stored}
    scores = [by_id[i].score for i in seen if by_id[i].status is Status.OK]
    assert scores == sorted(scores, reverse=True)
    failed = _get(client, "/api/runs/0/programs?status=failed&sort=recent")
    want = [p.id for p in sorted(stored, key=lambda p: -p.done_seq) if p.status is Status.FAILED]
    assert [it["id"] for it in failed["items"]] == want[:50]
    assert all(it["reason"].startswith("ValueError") for it in failed["items"])
    assert client.get("/api/runs/0/programs?status=nonsense").status_code == 400
    assert client.get("/api/runs/0/programs?sort=nonsense").status_code == 400


def test_program_lineage_and_children(client: httpx.Client, stored: list[Program]) -> None:
    by_id = {p.id: p for p in stored}
    deepest = max(stored, key=lambda p: p.generation)
    p = _get(client, f"/api/runs/0/programs/{deepest.id}")
    assert p["code"] == deepest.code and p["parent_ids"] == list(deepest.parent_ids)
    assert p["mutation"]["model"] == deepest.mutation.model
    assert (p["exchange"] is None) == (deepest.mutation.model != "fake-model")
    path = _get(client, f"/api/runs/0/programs/{deepest.id}/lineage")["path"]
    want, cur = [], deepest
    while True:
        want.append(cur.id)
        if not cur.parent_ids:
            break
        cur = by_id[cur.parent_ids[0]]
    assert [n["id"] for n in path] == want and want[-1] == 0
    short = _get(client, f"/api/runs/0/programs/{deepest.id}/lineage?limit=2")
    assert [n["id"] for n in short["path"]] == [deepest.id, 0]
    assert short["truncated"] == len(want) - 2
    kids = _get(client, "/api/runs/0/programs/0/children")
    assert kids["total"] == sum(1 for q in stored if q.parent_ids[:1] == (0,))
    assert all(by_id[k["id"]].parent_ids[0] == 0 for k in kids["items"])
    assert client.get("/api/runs/0/programs/999999").status_code == 404
    assert client.get("/api/runs/7/summary").status_code == 404


def test_program_page_says_how_stale_its_parent_choice_was(client: httpx.Client,
                                                           stored: list[Program]) -> None:
    """As `evoforge show` does: after how many results the parent was picked, by an exploring
    pick or not, and how many results came in before the child's own (the fixture's run
    explores half its picks, so both kinds are there)."""
    children = [p for p in stored if p.parent_ids and p.mutation.view is not None]
    explored = next(p for p in children if p.mutation.explored)
    refined = next(p for p in children if p.mutation.explored is False)
    for p, kind in ((explored, "parent picked by an exploring pick"), (refined, "parent picked")):
        page = _get(client, f"/runs/0/programs/{p.id}")
        cell = page.split('id="parent-choice">', 1)[1].split("</td>", 1)[0]
        assert cell.startswith(f"{kind} after {p.mutation.view} results")
        assert cell.endswith(f", {p.done_seq - p.mutation.view} before its own result")
    initial = _get(client, "/runs/0/programs/0")
    assert 'id="parent-choice"' not in initial


def test_compare(client: httpx.Client) -> None:
    a, b = _get(client, "/api/compare?a=0&b=1")
    assert a["best"] == b["best"] and a["name"] != b["name"]


def test_every_page_renders_with_the_numbers(client: httpx.Client,
                                             stored: list[Program]) -> None:
    best = max((p for p in stored if p.status is Status.OK), key=lambda p: p.score)
    home = _get(client, "/")
    assert 'href="/runs/0"' in home and "Count up" in home
    over = _get(client, "/runs/0")
    assert f'<dd id="done">{len(stored)}</dd>' in over and 'id="score-chart"' in over
    assert f'href="/runs/0/programs/{best.id}"' in over
    grid = _get(client, "/runs/0/grid")
    assert 'id="island-0"' in grid and 'id="island-1"' in grid
    listing = _get(client, "/runs/0/programs")
    assert f"{len(stored)} programs" in listing
    page = _get(client, f"/runs/0/programs/{best.id}")
    assert f"program #{best.id}" in page and 'class="hl"' in page  # highlighted
    assert "Improve X" in page or best.mutation.model != "fake-model"
    assert 'id="compare-chart"' in _get(client, "/compare?a=0&b=1")
    for part in ("summary", "charts", "grid", "programs", f"lineage?id={best.id}",
                 "compare?b=1"):
        assert _get(client, f"/runs/0/part/{part}")
    assert _get(client, "/static/dashboard.js").startswith("// evoforge dashboard")
    assert ".hl" in _get(client, "/assets/code.css")
    assert client.get("/runs/0/part/nothing").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_event_stream_reports_a_committed_result(tmp_path: Path, backend: str,
                                                 request: pytest.FixtureRequest) -> None:
    """While a writer commits, the open event stream reports it, and the API shows it."""
    run = new_run(tmp_path, backend, request, 8)
    with running(create_app([open_run(run)], poll_interval=0.05)) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        before = c.get("/api/runs/0/summary").json()["done"]
        with c.stream("GET", "/runs/0/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            first = _next_update(lines)
            assert first["done"] == before
            append_program(run, score=99.0)
            seen = [_next_update(lines)]  # the proposal (pending), then its result
            while seen[-1]["done"] == before and len(seen) < 3:
                seen.append(_next_update(lines))
            assert seen[-1]["done"] == before + 1 and seen[-1]["best_score"] == 99.0, seen
        s = c.get("/api/runs/0/summary").json()
        assert s["done"] == before + 1 and s["best_score"] == 99.0


def _next_update(lines: Iterator[str]) -> dict[str, Any]:
    for line in lines:
        if line.startswith("data: "):
            return json.loads(line[6:])
    raise AssertionError("the event stream ended")


def _contents(run: Path) -> dict[str, str]:
    """Every file of a run dir but SQLite's shared-memory index and an empty WAL (a reader of
    a WAL database may create those), by content."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()
            if p.is_file() and not p.name.endswith(("-shm", ".lock"))
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def test_the_dashboard_never_writes_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, programs=6)
    files = _contents(run)
    view = open_run(str(run))
    assert view.storage.readonly  # type: ignore[attr-defined]
    with running(create_app([view])) as url, httpx.Client(base_url=url) as c:
        for path in ("/", "/runs/0", "/runs/0/grid", "/runs/0/programs", "/runs/0/programs/1"):
            assert c.get(path).status_code == 200
    assert _contents(run) == files


def test_token_is_required_on_every_request(run_dir: Path) -> None:
    app = create_app([open_run(str(run_dir))], token="s3cret-token")
    with running(app) as url:
        with httpx.Client(base_url=url) as c:
            for path in ("/", "/runs/0", "/api/runs", "/static/dashboard.js", "/runs/0/events",
                         "/assets/code.css"):
                r = c.get(path)
                assert r.status_code == 401, path
                assert "s3cret" not in r.text
            assert c.get("/?token=wrong").status_code == 401
            r = c.get("/runs/0/programs?sort=recent&token=s3cret-token")
            assert r.status_code == 303  # to the same page without the token in its address
            assert r.headers["location"] == "/runs/0/programs?sort=recent"
            assert "evoforge_dashboard" in r.headers["set-cookie"]
            assert "httponly" in r.headers["set-cookie"].lower()
            assert c.get(r.headers["location"]).status_code == 200
            r = c.get(url + "//evil.example/x?token=s3cret-token")
            assert r.headers["location"] == "/evil.example/x"  # never to another site
            assert c.get("/api/runs").status_code == 200  # the cookie carries it on
            assert c.get("/static/dashboard.js").status_code == 200
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer s3cret-token"}) as c:
            assert c.get("/api/runs/0/summary").status_code == 200


def test_without_a_token_only_loopback_host_names_are_answered(client: httpx.Client) -> None:
    assert client.get("/api/runs", headers={"Host": "evil.example:8765"}).status_code == 403
    assert client.get("/api/runs", headers={"Host": "localhost:8765"}).status_code == 200


def test_binding_beyond_loopback_requires_a_token() -> None:
    assert plan_access("127.0.0.1", None) == (None, None)
    assert plan_access("localhost", "t") == ("t", None)
    token, warning = plan_access("0.0.0.0", None)
    assert token and len(token) >= 24 and warning and "0.0.0.0" in warning
    assert plan_access("0.0.0.0", "mine")[0] == "mine"


def test_cli_dashboard_rejects_a_missing_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "evoforge", "dashboard", str(tmp_path / "nope"),
                           "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_cli_beyond_loopback_warns_and_requires_the_printed_token(run_dir: Path) -> None:
    """`evoforge dashboard --host 0.0.0.0`: a warning, a generated token in the printed URL,
    401 without it; the server process (own process group) is stopped by the test."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "evoforge", "dashboard", str(run_dir),
                             "--host", "0.0.0.0", "--port", "0"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # until the URL is printed (or the process ends)
            lines.append(line)
            if "evoforge dashboard: http" in line:
                break
        text = "".join(lines)
        assert "warning:" in text and "0.0.0.0" in text, text
        url = text.split("evoforge dashboard: ", 1)[1].split()[0]
        assert "?token=" in url
        base, token = url.split("?token=")
        with httpx.Client(timeout=30) as c:
            assert c.get(base + "api/runs").status_code == 401
            r = c.get(base + "api/runs", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json()[0]["done"] > 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_missing_fastapi_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                            run_dir: Path) -> None:
    import sys

    from evoforge.errors import EvoforgeError

    view = open_run(str(run_dir))
    try:
        monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi raises ImportError
        with pytest.raises(EvoforgeError, match=r"pip install 'evoforge\[dashboard\]'"):
            create_app([view])
    finally:
        view.close()


def test_a_program_of_several_files_shows_each_file(tmp_path: Path) -> None:
    from evoforge.program_files import pack

    run = make_run(tmp_path, programs=4)
    first = append_program(run, code=pack({"main.py": "X = 1\n", "kernel/sum.c": "int s;\n"}))
    second = append_program(run, code=pack({"main.py": "X = 2\n", "kernel/sum.c": "int s;\n"}),
                            parent=first)
    with running(create_app([open_run(str(run))])) as url, httpx.Client(base_url=url) as c:
        page = c.get(f"/runs/0/programs/{second}").text
    assert '<h3 class="file">kernel/sum.c</h3>' in page and '<h3 class="file">main.py</h3>' in page
    assert f"#{first}/main.py" in page and f"#{first}/kernel/sum.c" not in page  # unchanged
    assert "evoforge-files v1" not in page  # the packing is not shown
