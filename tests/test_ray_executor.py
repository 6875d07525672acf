"""RayExecutor on a real two-node Ray cluster on loopback (evoforge.testing.ray_cluster).

The nodes are ``ray start --block`` processes in their own process groups and temp dir, started
once for this module and killed (by process group) at its end. Evaluations are seen on both
nodes; the hostile suite's escape, secret, hang, fork bomb and forged-score cases go through
the Ray executor's sandboxes; a node killed mid-evaluation costs a retry, not the result; a
controller killed with SIGKILL leaves nothing running on the cluster and its run resumes to
its budget (stored in SQLite, and in PostgreSQL started by evoforge.testing.postgres; the resume
goes through the head's Ray client address); an unreachable cluster is a clean error from the
installed CLI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proc_tools import procs_with, wait_dead

ray = pytest.importorskip("ray", reason="the Ray executor needs ray: pip install 'evoforge[ray]'")

from evoforge.executors.ray import NODE_ARTIFACT, RayExecutor, evaluated_on  # noqa: E402
from evoforge.program import EvalResult, Status  # noqa: E402
from evoforge.sandbox import cgroup2_mount  # noqa: E402
from evoforge.testing.ray_cluster import LocalRayCluster  # noqa: E402

HOSTILE = Path(__file__).parent / "hostile"
QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
EVOFORGE = [sys.executable, "-m", "evoforge.cli"]
SECRET = "sk-hostile-not-for-candidates"
SLOW_EVALUATOR = """\
import importlib.util, time

def evaluate(program_path):
    time.sleep(SECONDS)
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {"combined_score": float(mod.run())}
"""

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    """Head (2 CPUs, ``node_head``) and worker (2 CPUs, ``node_w1``); this process is a
    driver of it (executors reuse that connection). The nodes carry a secret in their
    environment that no candidate may see."""
    c = LocalRayCluster(env={"EVOFORGE_HOSTILE_SECRET": SECRET})
    try:
        c.add_nodes([("head", 2), ("w1", 2)], wait_alive=False)
        ray.init(address=c.address, log_to_driver=False, configure_logging=False)
        end = time.monotonic() + 60
        while sum(n["Alive"] for n in ray.nodes()) < 2:  # both registered with the GCS
            assert time.monotonic() < end, "the worker node did not join"
            time.sleep(0.1)
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.stop()
        shutil.rmtree(c.root, ignore_errors=True)


def _node_names() -> dict[str, str]:
    """``IP/node-id prefix`` (what results carry) -> the node's name (its ``node_NAME``)."""
    out = {}
    for n in ray.nodes():
        names = [k[5:] for k in n["Resources"] if k.startswith("node_") and ":" not in k]
        if names:
            out[f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}"] = names[0]
    return out


def _slow_problem(root: Path, seconds: float) -> Path:
    d = root / "slow"
    d.mkdir()
    (d / "evaluator.py").write_text(SLOW_EVALUATOR.replace("SECONDS", repr(seconds)))
    (d / "initial_program.py").write_text("def run():\n    return 1.0\n")
    return d


def _executor(problem: Path, cluster: LocalRayCluster, **kw: Any) -> RayExecutor:
    local = {"timeout": kw.pop("timeout", 20.0), "memory_mb": 512}
    local.update(kw.pop("local", {}))
    return RayExecutor(problem, local, address=cluster.address, timeout=local["timeout"],
                       **kw).connect()


def _survivors(token: str, timeout: float = 20.0) -> list[int]:
    """Processes of this executor's sandboxes (their argv holds its actors' dirs) still alive
    after ``timeout``."""
    marker = f"evoforge-ray-{token}-".encode()
    left = procs_with(marker)
    for pid in left:
        wait_dead(pid, timeout)
    return procs_with(marker)


def test_evaluations_run_on_both_nodes_within_the_requested_resources(
        cluster: LocalRayCluster, tmp_path: Path) -> None:
    problem = _slow_problem(tmp_path, 0.5)
    code = "def run():\n    return 2.0\n"
    ex = _executor(problem, cluster)
    assert ex.slots == 4  # 2 + 2 CPUs, one each

    async def go() -> list[EvalResult]:
        try:
            return list(await asyncio.gather(*(ex.evaluate(code, program_id=i)
                                                for i in range(8))))
        finally:
            await ex.aclose()

    results = asyncio.run(go())
    assert [r.status for r in results] == [Status.OK] * 8, [r.reason for r in results]
    assert all(r.score == 2.0 for r in results)
    names = _node_names()
    per_node = {names[n]: c for n, c in ex.counts.items()}
    assert set(per_node) == {"head", "w1"} and sum(per_node.values()) == 8, per_node
    assert evaluated_on(results) == ex.counts  # what the run stores, and status counts
    assert ex.sandbox.name in ("bubblewrap", "process")
    assert _survivors(ex.token) == []

    # a custom resource only w1 has: every evaluation lands there, and slots follow it
    pinned = _executor(problem, cluster, resources={"node_w1": 400})
    assert pinned.slots == 2  # w1 has 1000 node_w1 and 2 CPUs: the CPUs bind

    async def pinned_go() -> list[EvalResult]:
        try:
            return list(await asyncio.gather(*(pinned.evaluate(code) for _ in range(4))))
        finally:
            await pinned.aclose()

    assert {names[r.artifacts[NODE_ARTIFACT]] for r in asyncio.run(pinned_go())} == {"w1"}


def test_a_request_no_node_can_hold_is_a_clear_error(cluster: LocalRayCluster,
                                                     tmp_path: Path) -> None:
    from evoforge.errors import ConfigError

    with pytest.raises(ConfigError, match="no node of the Ray cluster .* asking for CPU=1, GPU=1"):
        _executor(_slow_problem(tmp_path, 0), cluster, num_gpus=1)


HOSTILE_CASES = [  # (candidate, form, statuses, reason or "", score when ok)
    ("env_secret", "plain", {Status.OK}, "", 0.25),
    ("env_secret", "hardened", {Status.OK}, "", 0.25),
    ("write_outside", "plain", {Status.FAILED}, "PermissionError", None),
    ("sleep_forever", "hardened", {Status.TIMEOUT}, "exceeded 2.0 s", None),
    ("fork_bomb", "plain", {Status.TIMEOUT, Status.FAILED, Status.CRASHED}, "", None),
    ("fake_result", "plain", {Status.OK}, "", 0.25),
    ("fake_result", "hardened", {Status.OK}, "", 0.25),
    ("patch_checker", "hardened", {Status.FAILED}, "wrong answer", None),
]


@pytest.mark.parametrize("form", ["plain", "hardened"])
def test_hostile_candidates_through_the_ray_executor(cluster: LocalRayCluster, tmp_path: Path,
                                                     form: str) -> None:
    """The sandbox on the nodes holds as it does locally: no secret from the node's
    environment, nothing written outside, a hang killed at the deadline with its process tree,
    a fork bomb contained, a forged result ignored; after each, nothing of it is left and the
    slot still evaluates a benign candidate correctly."""
    problem = tmp_path / "problem"
    problem.mkdir()
    shutil.copy(HOSTILE / ("hardened_evaluator.py" if form == "hardened" else "evaluator.py"),
                problem / "evaluator.py")
    before = (problem / "evaluator.py").read_bytes()
    outside = tmp_path / "outside.txt"
    benign = ("def solve(xs):\n    return sorted(xs)\n" if form == "hardened"
              else "def run():\n    return {'combined_score': 0.5}\n")
    ex = _executor(problem, cluster, timeout=2.0,
                   local={"scratch_mb": 8, "max_processes": 32, "max_open_files": 64},
                   slots=1)
    assert ex.form == form
    cases = [c for c in HOSTILE_CASES if c[1] == form]

    async def go() -> list[tuple[EvalResult, EvalResult, list[int]]]:
        out = []
        try:
            for name, *_ in cases:
                code = ((HOSTILE / f"{name}.py").read_text()
                        .replace("__PROBLEM_DIR__", str(problem))
                        .replace("__OUTSIDE__", str(outside)))
                if form == "hardened" and "def solve(" not in code:
                    code += ("\n_ran = []\n\ndef solve(xs):\n    if not _ran:\n"
                             "        _ran.append(run())\n    return sorted(xs)\n")
                hostile = await ex.evaluate(code)
                # the evaluation's own processes are gone (the warm pool's next one is not)
                after = await ex.evaluate(benign)
                out.append((hostile, after, []))
        finally:
            await ex.aclose()
        return out

    for (name, _, statuses, reason, score), (r, after, _) in zip(
            cases, asyncio.run(go()), strict=True):
        assert r.status in statuses, (name, r.status, r.reason)
        if reason:
            assert reason in r.reason, (name, r.reason)
        if r.status is Status.OK:
            assert r.score == score, (name, r.score)
        assert r.score is None or r.score < 1e6, f"{name}: a hack was credited"
        assert after.status is Status.OK, (name, after.reason)
        assert after.score == (0.25 if form == "hardened" else 0.5)
    assert _survivors(ex.token) == [], "sandbox processes outlived the executor"
    assert (problem / "evaluator.py").read_bytes() == before and not outside.exists()


def test_a_killed_ray_worker_takes_its_sandboxes_with_it(cluster: LocalRayCluster,
                                                         tmp_path: Path) -> None:
    """SIGKILL of an actor's worker process mid-evaluation (as Ray does to the actors of a
    dead driver): the cgroup lifeline the worker joined kills its sandboxes at once, and the
    evaluation is tried again on a fresh actor."""
    ex = _executor(_slow_problem(tmp_path, 2.0), cluster, slots=1, retries=1)

    async def go() -> tuple[EvalResult, list[int], str]:
        try:
            await ex.start()
            (victim,) = ex._live
            task = asyncio.ensure_future(ex.evaluate("def run():\n    return 4.0\n"))
            marker = victim.dir.encode()
            while len(procs_with(marker)) < 2:  # the evaluation's sandbox is up (event)
                await asyncio.sleep(0.02)
            with open(f"/proc/{victim.pid}/cgroup") as f:  # the worker is in its lifeline
                rel = next(ln[3:].strip() for ln in f if ln.startswith("0::"))
            assert f"/evoforge-{victim.pid}-" in rel
            sandboxes = procs_with(marker)
            os.kill(victim.pid, signal.SIGKILL)
            return await task, sandboxes, rel
        finally:
            await ex.aclose()

    result, sandboxes, rel = asyncio.run(go())
    assert result.status is Status.OK and result.score == 4.0, result.reason
    assert len(ex.lost) == 1
    assert [p for p in sandboxes if not wait_dead(p, 10)] == [], "sandboxes outlived the worker"
    # its guardian (not a child of the worker: Ray kills those) emptied and removed the group
    group = os.path.join(cgroup2_mount() or "/nonexistent", rel.lstrip("/"))
    end = time.monotonic() + 10
    while os.path.isdir(group) and time.monotonic() < end:
        time.sleep(0.05)
    assert not os.path.isdir(group), f"the lifeline {group} outlived its worker"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback (evoforge.testing.postgres)."""
    pytest.importorskip("psycopg", reason="PostgreSQL storage needs psycopg: "
                        "pip install 'evoforge[postgres]'")
    from evoforge.testing.postgres import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres(settings={"fsync": "off", "synchronous_commit": "off"})
    except PostgresUnavailable as e:
        pytest.skip(f"no PostgreSQL server binaries: {e}")
    with server:
        yield server.url


def _stored(run_dir: Path) -> tuple[list[Any], dict[str, Any]]:
    """The run's programs and stats, from whatever storage its config names."""
    from evoforge.api import inspect_run

    with inspect_run(run_dir) as (_, storage):
        return list(storage.programs()), storage.stats()


def _committed(run_dir: Path) -> int:
    try:
        return int(_stored(run_dir)[1]["done"])
    except Exception:  # noqa: BLE001 - not created yet
        return 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_of_the_controller_then_resume(cluster: LocalRayCluster, tmp_path: Path,
                                               backend: str, request: pytest.FixtureRequest,
                                               ) -> None:
    """Ray, with SQLite and with PostgreSQL: the controller is SIGKILLed mid-run; Ray kills
    its actors and their sandboxes; `evoforge resume` loses and duplicates nothing, evaluates
    the pending programs again, once, and reaches the budget."""
    run_dir = tmp_path / "r"
    budget = 14
    ray_args = ["--set", "executor.name=ray", "--set", f"executor.address={cluster.address}"]
    if backend == "postgresql":
        ray_args += ["--set", f"storage.url={request.getfixturevalue('pg_url')}"]
    proc = subprocess.Popen([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                             "--max-programs", str(budget), *ray_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 120
        while _committed(run_dir) < 4:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < end, "the run committed nothing in 120 s"
            time.sleep(0.05)
        running = procs_with(b"evoforge-ray-")  # its sandboxes on the nodes (warm pool too)
        assert running, "no sandbox of the run's actors is running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    # Ray kills the dead driver's actors; their lifelines kill their sandboxes
    assert [p for p in running if not wait_dead(p, 60)] == []

    before, _ = _stored(run_dir)
    committed = {p.id: p for p in before if p.status is not Status.PENDING}
    pending = {p.id for p in before if p.status is Status.PENDING}
    # resumed through the head's Ray client (ray://), the form for a controller outside the
    # cluster's network: the same nodes evaluate
    # (the client server may refuse new clients until the dead one's reconnect grace period
    # ends: the executor tries again within executor.connect_timeout)
    res = subprocess.run([*EVOFORGE, "resume", str(run_dir), "-q", "--set",
                          f"executor.address={cluster.client_address}", "--set",
                          "executor.connect_timeout=90"], capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    after, stats = _stored(run_dir)
    assert (backend == "sqlite") == (run_dir / "evoforge.db").exists()
    assert stats["done"] == budget and stats["pending"] == 0
    by_id = {p.id: p for p in after}
    assert len(by_id) == len(after) == budget
    for pid, p in committed.items():  # nothing committed is lost or changed
        assert by_id[pid] == p
    for pid in pending:  # in-flight work evaluated again, under its own id, once
        assert by_id[pid].status is not Status.PENDING
    assert sorted(p.done_seq for p in after) == list(range(budget))
    nodes = evaluated_on(after)
    assert set(_node_names()[n] for n in nodes) == {"head", "w1"}
    resumed = [p for p in after if p.id not in committed and "cached" not in p.artifacts
               and p.status is not Status.INVALID]  # invalid: never sent to a node
    assert resumed and all(NODE_ARTIFACT in p.artifacts for p in resumed)
    status = subprocess.run([*EVOFORGE, "status", str(run_dir)], capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "evaluated per Ray node: " in status.stdout
    for node, n in nodes.items():
        assert f"{node} {n}" in status.stdout


def test_a_node_killed_mid_evaluation_costs_a_retry_not_the_result(
        cluster: LocalRayCluster, tmp_path: Path) -> None:
    """Kills w1 (the last test here that needs it): its evaluations finish on the head."""
    names = _node_names()
    problem = _slow_problem(tmp_path, 2.0)
    code = "def run():\n    return 3.0\n"
    ex = _executor(problem, cluster, retries=1, slot_wait=30.0)
    assert ex.slots == 4

    async def go() -> list[EvalResult]:
        try:
            await ex.start()
            on_w1 = [a for a in ex._live if names.get(a.node) == "w1"]
            assert len(on_w1) == 2, [a.node for a in ex._live]
            tasks = [asyncio.ensure_future(ex.evaluate(code, program_id=i)) for i in range(4)]
            assert ex._idle is not None
            while not ex._idle.empty():  # every slot has its evaluation (event: queue drained)
                await asyncio.sleep(0.01)
            cluster.node("w1").kill()
            return list(await asyncio.gather(*tasks))
        finally:
            await ex.aclose()

    results = asyncio.run(go())
    assert [r.status for r in results] == [Status.OK] * 4, [r.reason for r in results]
    assert {names[r.artifacts[NODE_ARTIFACT]] for r in results} == {"head"}
    assert len(ex.lost) == 2, ex.lost
    w1 = next(k for k, v in names.items() if v == "w1")
    assert all(w1 in why for why in ex.lost), ex.lost
    assert _survivors(ex.token) == []


def test_unreachable_cluster_is_a_clean_cli_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    address = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    res = subprocess.run([*EVOFORGE, "run", str(QUAD), "--out", str(tmp_path / "r"), "-q",
                          "--set", "executor.name=ray", "--set", f"executor.address={address}"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    assert f"cannot reach the Ray cluster at executor.address='{address}'" in res.stderr
    assert "ray start --head" in res.stderr
    # checked before the run exists: the same command works as printed once a cluster is up
    assert not (tmp_path / "r").exists(), sorted(p.name for p in (tmp_path / "r").iterdir())
