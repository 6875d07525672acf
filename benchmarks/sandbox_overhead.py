"""Per-evaluation overhead of the sandbox, cold and warm, next to ``python -c pass``.

Run: ``.venv/bin/python benchmarks/sandbox_overhead.py [--n N] [--sandbox auto|process]``

Evaluates a trivial candidate ``N`` times, one at a time, through the real ``LocalExecutor``
(sandbox, rlimits, pipes, scratch dir, result parsing) and prints the median wall time per
evaluation for:

- ``python -c pass``: starting a bare interpreter, measured in the same run (the reference);
- the plain and the hardened evaluator forms, cold (``warm_pool=false``: the sandboxed
  interpreter(s) start when the evaluation starts) and warm (``warm_pool=true``: the pool
  started them ahead of time; every candidate is still a fresh process);
- an evaluator that imports numpy, cold vs warm with ``preload: [numpy]`` (the import happens
  before the candidate arrives).

Evaluations run one at a time with a ``--gap`` (default 50 ms) between them, a stand-in for the
work a real evaluation does, during which the pool starts the next interpreter; ``--gap 0``
measures back-to-back evaluations, where the refill competes with the next evaluation for the
CPU. Ratios are against ``python -c pass``. Also printed: CPU time per evaluation (user + system
of this process and every process it started and reaped, sandboxes and workers included, over
the measured evaluations, pool refills included; from a cgroup of its own where one can be
made, else from rusage, which misses killed processes), the cost the warm pool does not hide.
No assertions on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evoforge.executors.local import LocalExecutor
from evoforge.sandbox import make_sandbox

PLAIN = """
import importlib.util
{imports}

def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {{"combined_score": float(module.f(2))}}
"""
HARDENED = """
{imports}

def evaluate(candidate):
    return {{"combined_score": float(candidate.call("f", 2))}}
"""
CANDIDATE = "def f(x):\n    return x + 1\n"


_GROUP: str | None = None  # a cgroup v2 group this process runs in, when one can be made


def _enter_group() -> None:
    """Put this process in a fresh cgroup: its cpu.stat counts every process it starts, also
    those killed and never reaped (rusage of children misses them)."""
    global _GROUP
    from evoforge.sandbox import cgroup2_mount

    mount = cgroup2_mount()
    if mount is None:
        return
    try:
        path = os.path.join(mount, f"evoforge-bench-{os.getpid()}")
        os.mkdir(path)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        _GROUP = path
    except OSError:
        _GROUP = None


def _leave_group() -> None:
    if _GROUP is None:
        return
    try:
        from evoforge.sandbox import lifeline
    except ImportError:  # an evoforge from before lifelines (a before/after comparison)
        lifeline = None  # type: ignore[assignment]
    life = lifeline() if lifeline is not None else None
    if life is not None:  # the controller's own group, nested in ours: gone once it is closed
        life.close()
        for _ in range(200):
            if not os.path.isdir(life.path):
                break
            time.sleep(0.01)
    parent = os.path.dirname(os.path.join(os.path.dirname(_GROUP), ""))  # the mount
    with contextlib.suppress(OSError):
        with open(os.path.join(parent, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    for _ in range(200):  # empty once the last killed process is gone
        try:
            os.rmdir(_GROUP)
            return
        except OSError:
            time.sleep(0.01)


def _cpu() -> float:
    if _GROUP is not None:
        with open(os.path.join(_GROUP, "cpu.stat")) as f:
            usage = next(line.split()[1] for line in f if line.startswith("usage_usec"))
        return int(usage) / 1e6
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def python_pass(n: int) -> tuple[float, float]:
    times = []
    c0 = _cpu()
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (_cpu() - c0) / n


def measure(problem: Path, n: int, *, sandbox: str, warm: bool, preload: tuple[str, ...],
            gap: float) -> tuple[float, float]:
    async def go() -> tuple[float, float]:
        ex = LocalExecutor(problem, timeout=60, sandbox=sandbox, warm_pool=warm, preload=preload,
                           workers=1)
        times = []
        c0 = 0.0
        try:
            for i in range(n + 2):  # the first two fill the pool
                if i == 2:
                    c0 = _cpu()
                t0 = time.perf_counter()
                r = await ex.evaluate(CANDIDATE)
                dt = time.perf_counter() - t0
                if r.score != 3.0:
                    raise SystemExit(f"benchmark evaluation failed: {r.status} {r.reason}")
                if i >= 2:
                    times.append(dt)
                    await asyncio.sleep(gap)
            cpu = (_cpu() - c0) / n
        finally:
            await ex.aclose()
        return statistics.median(times), cpu

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=30, help="evaluations per configuration")
    ap.add_argument("--sandbox", default="auto", choices=["auto", "bubblewrap", "process"])
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between evaluations")
    args = ap.parse_args(argv)
    _enter_group()
    try:
        return _main(args)
    finally:
        _leave_group()


def _main(args: argparse.Namespace) -> int:
    base = python_pass(args.n)
    rows: list[tuple[str, tuple[float, float]]] = [("python -c pass", base)]
    with tempfile.TemporaryDirectory() as tmp:
        for form, template in (("plain", PLAIN), ("hardened", HARDENED)):
            for imports, preload, label in (("", (), ""), ("import numpy", ("numpy",), " + numpy")):
                problem = Path(tmp) / f"{form}{len(preload)}"
                problem.mkdir()
                (problem / "evaluator.py").write_text(template.format(imports=imports))
                cold = measure(problem, args.n, sandbox=args.sandbox, warm=False, preload=(),
                               gap=args.gap)
                warm = measure(problem, args.n, sandbox=args.sandbox, warm=True, preload=preload,
                               gap=args.gap)
                pre = " (preload numpy)" if preload else ""
                rows.append((f"{form}{label}, cold", cold))
                rows.append((f"{form}{label}, warm{pre}", warm))

    print(f"sandbox: {make_sandbox(args.sandbox).name}; {args.n} evaluations per row, {args.gap:g} s apart; "
          f"median wall time per evaluation; CPU from {'a cgroup' if _GROUP else 'rusage'}")
    print(f"{'configuration':40s} {'wall ms':>8s} {'x pass':>7s} {'CPU ms':>8s} {'x pass':>7s}")
    for label, (t, cpu) in rows:
        print(f"{label:40s} {t * 1000:8.1f} {t / base[0]:7.2f} {cpu * 1000:8.1f} "
              f"{cpu / base[1]:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
