"""Commit latency of PostgreSQL storage against SQLite, measured in the same run.

    .venv/bin/python benchmarks/storage_commit.py                 # 2,000 results per backend
    .venv/bin/python benchmarks/storage_commit.py --n 500 --scale 100000
    .venv/bin/python benchmarks/storage_commit.py --url postgresql://USER@HOST:PORT/DB

Both backends durable: SQLite in WAL mode with ``synchronous=FULL`` (evoforge's setting), and a
throwaway PostgreSQL server (``evoforge.testing.postgres.LocalPostgres``, default settings:
``fsync=on``, ``synchronous_commit=on``) on loopback, or the server ``--url`` names. What is timed
is ``record_result`` (one transaction each, what the controller does once per evaluated child),
in alternating blocks so that both backends see the same machine load. Prints the median and p95
per commit and the ratio PostgreSQL / SQLite.

``--scale N`` also stores N more programs in each backend (through ``add_program``, one
transaction each, with ``synchronous`` off: the fill is not what is measured) and times, on a
fresh connection, what a resume and ``evoforge status`` do at that size: ``stats()``, streaming
every program (``programs()``), the pending ones, and a ``get`` by id (best of 20).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.storages import SQLiteStorage, Storage
from evoforge.storages.postgres import PostgresStorage

CODE = "# EVOLVE-BLOCK-START\ndef f(x):\n    return x * {i} + 1.5\n# EVOLVE-BLOCK-END\n"


def program(i: int) -> Program:
    return Program(id=i, code=CODE.format(i=i) + " " * (i % 300), parent_ids=(max(i - 1, 0),),
                   island=i % 4, generation=i % 40, created_at=time.time(),
                   mutation=MutationInfo(mutator="bench", prompt_tokens=900, completion_tokens=300,
                                         cost=0.001))


def result(p: Program, seq: int) -> Program:
    score = (p.id * 7919 % 1000) / 10.0
    done = p.with_result(EvalResult(Status.OK, metrics={"combined_score": score, "n": 26},
                                    score=score, artifacts={"stderr": "ok\n"}),
                         done_seq=seq, evaluated_at=time.time())
    return dataclasses.replace(done, features={"complexity": 0.5})


def commit_latencies(stores: dict[str, Storage], n: int, block: int) -> dict[str, list[float]]:
    for s in stores.values():
        for i in range(n):
            s.add_program(program(i))
    times: dict[str, list[float]] = {name: [] for name in stores}
    for start in range(0, n, block):
        for name, s in stores.items():
            for i in range(start, min(start + block, n)):
                p = program(i)
                t0 = time.perf_counter()
                s.record_result(result(p, i))
                times[name].append(time.perf_counter() - t0)
    return times


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fill(s: Storage, base: int, n: int) -> None:
    for k in range(n):
        p = program(base + k)
        s.add_program(result(p, base + k) if k % 50 else p)  # 2% left pending


def scale(stores: dict[str, Storage], relaxed: dict[str, Callable[[], Storage]],
          base: int, n: int) -> None:
    """Fill each backend with ``n`` programs (durability relaxed: the fill is not what is
    measured), then time the reads a resume and ``evoforge status`` make."""
    print(f"\nat {n + base:,} stored programs:")
    print(f"  {'backend':10s} {'stats()':>9s} {'programs()':>11s} {'pending':>9s} {'get':>8s}")
    for name in stores:
        stores[name].close()
        with relaxed[name]() as s:
            fill(s, base, n)
        with relaxed[name]() as s:  # a fresh connection, as a resume has
            st = timed(s.stats)
            scan = timed(lambda s=s: sum(1 for _ in s.programs()))  # type: ignore[misc]
            pend = timed(lambda s=s: list(s.programs(status=Status.PENDING)))  # type: ignore[misc]
            get = min(timed(lambda s=s, i=i: s.get(base + i)) for i in range(0, n, n // 20))  # type: ignore[misc]
            print(f"  {name:10s} {st * 1e3:7.1f}ms {scan:10.2f}s {pend * 1e3:7.1f}ms "
                  f"{get * 1e3:6.2f}ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="results committed per backend")
    ap.add_argument("--block", type=int, default=100, help="results per alternating block")
    ap.add_argument("--url", help="an existing PostgreSQL database (default: a throwaway "
                    "server on loopback)")
    ap.add_argument("--scale", type=int, default=0, help="also time reads at this many programs")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server it started
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = a.url
        if url is None:
            from evoforge.testing.postgres import LocalPostgres

            server = LocalPostgres()
            url = server.start()
        try:
            pg_url = f"{url.split('#')[0]}#run=bench-{time.time_ns()}"
            db = Path(tmp) / "evoforge.db"
            stores: dict[str, Storage] = {"sqlite": SQLiteStorage(db),
                                          "postgresql": PostgresStorage(pg_url)}

            def relaxed_sqlite() -> Storage:
                s = SQLiteStorage(db)
                assert s._conn is not None
                s._conn.execute("PRAGMA synchronous = OFF")
                return s

            def relaxed_pg() -> Storage:
                sep = "&" if "?" in pg_url.split("#")[0] else "?"
                base, run = pg_url.split("#")
                return PostgresStorage(f"{base}{sep}options=-csynchronous_commit%3Doff#{run}")

            try:
                times = commit_latencies(stores, a.n, a.block)
                print(f"record_result, {a.n} commits per backend, alternating blocks of "
                      f"{a.block}:")
                med = {}
                for name, ts in times.items():
                    ts.sort()
                    med[name] = statistics.median(ts)
                    p95 = ts[int(0.95 * (len(ts) - 1))]
                    print(f"  {name:10s} median {med[name] * 1e3:6.3f} ms   p95 {p95 * 1e3:6.3f} ms"
                          f"   {1 / statistics.fmean(ts):7.0f} commits/s")
                print(f"commit latency ratio postgresql / sqlite (median): "
                      f"{med['postgresql'] / med['sqlite']:.2f}")
                if a.scale:
                    scale(stores, {"sqlite": relaxed_sqlite, "postgresql": relaxed_pg}, a.n,
                          a.scale)
            finally:
                for s in stores.values():
                    s.close()
        finally:
            if server is not None:
                server.close()


if __name__ == "__main__":
    main()
