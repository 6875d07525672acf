"""Dashboard at scale: server time of every page and the largest response, for runs of
1,000 and 100,000 programs generated directly into a run's SQLite storage.

    .venv/bin/python benchmarks/dashboard.py                 # N = 1,000 and 100,000
    .venv/bin/python benchmarks/dashboard.py --n 1000 20000

Per N: the time to open the run (the light index of every committed program: no code, no
text), then every page and JSON endpoint rendered cold (no cached aggregate; the median of
``--repeat`` renders, as other processes share the machine) through a real uvicorn server on
loopback: the server's time (its Server-Timing header: from the request's arrival to the
response's start) and the response's size; then the same again after 500 more programs are
committed (an update under a live page). The reference, measured
in the same run: loading the whole population through ``Storage.programs()``, what a
dashboard without server-side aggregation would do per refresh. Target at 100,000: every page
under 300 ms and every response under 1 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from evoforge.config import build_config
from evoforge.dashboard import RunView, create_app, open_run
from evoforge.dashboard.server import running
from evoforge.storages import SQLiteStorage

STATUSES = ["ok"] * 70 + ["failed"] * 15 + ["invalid"] * 10 + ["timeout"] * 3 + ["crashed"] * 2
ARMS = ["gpt-4o-mini:diff", "gpt-4o:rewrite", "model_free"]
BODY = "".join(f"    r{i} = 0.5 * x[{i}] + math.sin(y * {i}) - c[{i % 7}]\n" for i in range(30))


def _row(pid: int, seq: int, rng: random.Random, t0: float) -> tuple[object, ...]:
    status = "ok" if pid == 0 else rng.choice(STATUSES)
    parent = [] if pid == 0 else [rng.randrange(max(pid - 50, 0), pid)]
    trend = 1.0 + 1.6 * (1 - 1 / (1 + pid / 5000))
    score = round(trend * (0.8 + 0.2 * rng.random()), 6) if status == "ok" else None
    code = (f"# EVOLVE-BLOCK-START\nimport math\n\ndef f(x, y, c):  # {pid}\n{BODY}"
            f"    return {rng.random():.6f}\n# EVOLVE-BLOCK-END\n")[: 600 + rng.randrange(900)]
    arm = rng.choice(ARMS)
    llm = arm != "model_free"
    mutation = {"mutator": "llm" if llm else "model_free", "model": arm.split(":")[0] if llm
                else None, "edit_kind": arm.split(":")[-1], "prompt_tokens": 2000 if llm else 0,
                "completion_tokens": 400 if llm else 0, "cost": 0.0006 if llm else 0.0,
                "latency": 3.0, "attempts": 1, "note": "", "view": None, "staleness": 0,
                "arm": arm}
    metrics = {"combined_score": score} if score is not None else {}
    reason = "" if status == "ok" else f"{status}: ValueError: case {pid % 97} wrong at step {pid}"
    created = t0 + pid * 0.05
    return (pid, seq, status, code, json.dumps(parent), pid % 4, 1 + pid // 1000, reason, score,
            json.dumps(metrics), json.dumps({"code_length": float(len(code))}),
            json.dumps({"stderr": "traceback ..."} if status == "failed" else {}),
            json.dumps(mutation), created, created + 1.0, 1.0,
            mutation["prompt_tokens"], mutation["completion_tokens"], mutation["cost"])


def generate(run_dir: Path, n: int, start: int = 0, seed: int = 0) -> None:
    """A run directory whose storage holds ``n`` programs (ids ``start``...), written in one
    transaction (the config and metadata as evoforge writes them)."""
    rng = random.Random(seed + start)
    db = run_dir / "evoforge.db"
    if start == 0:
        run_dir.mkdir(parents=True)
        cfg = build_config({"selector": {"num_islands": 4},
                            "mutator": {"name": "bandit"}})
        with SQLiteStorage(db) as s:
            s.set_meta("config", cfg.model_dump(mode="json"))
            s.set_meta("problem_path", str(run_dir))
            s.set_meta("problem_files", [str(run_dir / "initial_program.py"), "evaluator.py"])
    t0 = 1_700_000_000.0
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO programs VALUES (" + ",".join("?" * 19) + ")",
                     (_row(pid, pid, rng, t0) for pid in range(start, start + n)))
    conn.executemany("INSERT INTO exchanges VALUES (?, ?)",
                     ((pid, json.dumps({"messages": [{"role": "user", "content": "x" * 4000}],
                                        "reply": "y" * 1500, "model": "m", "attempts": 1}))
                      for pid in range(start, start + n, 10)))
    conn.execute("COMMIT")
    conn.close()


PAGES = ["/", "/runs/0", "/runs/0/grid", "/runs/0/programs", "/runs/0/programs?sort=recent&page=9",
         "/runs/0/programs/{best}", "/runs/0/programs/{deep}", "/compare?a=0&b=0",
         "/runs/0/part/charts", "/api/runs/0/summary", "/api/runs/0/scores",
         "/api/runs/0/timeline", "/api/runs/0/arms", "/api/runs/0/grid",
         "/api/runs/0/programs", "/api/runs/0/programs/{best}",
         "/api/runs/0/programs/{deep}/lineage"]


def measure(url: str, view: RunView, best: int, deep: int, repeat: int
            ) -> list[tuple[str, float, int]]:
    """Per page: the median server time of ``repeat`` cold renders (cached aggregates dropped
    before each), and the response's size."""
    out = []
    with httpx.Client(base_url=url, timeout=120) as c:
        for page in PAGES:
            path = page.format(best=best, deep=deep)
            times = []
            for _ in range(repeat):
                view.forget()
                r = c.get(path)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
                times.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)
            out.append((path, statistics.median(times), len(r.content)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1_000, 100_000])
    ap.add_argument("--repeat", type=int, default=3, help="cold renders per page (median)")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for n in a.n:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            t = time.perf_counter()
            generate(run_dir, n)
            gen = time.perf_counter() - t
            t = time.perf_counter()
            with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
                loaded = sum(1 for _ in s.programs())
            reference = time.perf_counter() - t
            t = time.perf_counter()
            view = open_run(str(run_dir))
            opened = time.perf_counter() - t
            s = view.summary()
            best = s["best_id"]
            deep = n - 1
            print(f"N = {n:,} programs (generated in {gen:.1f} s)")
            print(f"  reference: Storage.programs() loads {loaded:,} programs in "
                  f"{reference * 1000:.0f} ms")
            print(f"  open (light index of every program): {opened * 1000:.0f} ms")
            with running(create_app([view])) as url:
                _report("first render", measure(url, view, best, deep, a.repeat), reference)
                generate(run_dir, 500, start=n)
                _report("after 500 more programs", measure(url, view, best, deep, a.repeat),
                        reference)


def _report(label: str, rows: list[tuple[str, float, int]], reference: float) -> None:
    print(f"  {label}:")
    for path, dt, size in rows:
        print(f"    {path:42s} {dt * 1000:7.1f} ms  {size / 1024:8.1f} KiB")
    slowest = max(rows, key=lambda r: r[1])
    largest = max(rows, key=lambda r: r[2])
    print(f"    slowest: {slowest[0]} {slowest[1] * 1000:.1f} ms "
          f"({slowest[1] / reference:.3f} x the reference); largest: {largest[0]} "
          f"{largest[2] / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
