"""SIGKILL a controller mid-evaluation N times; count the kills after which any process of an
evaluation outlived it by more than a second (found by a cgroup the controller was started in).

    .venv/bin/python benchmarks/controller_kill.py [N]      # as root (needs cgroup v2)

Each round starts a controller evaluating the built-in circle_packing_26 program in two slots
(warm pool on), kills it with SIGKILL at a random moment between 0.3 and 1.5 s, and waits up to
1 s for its cgroup to empty. Reported: rounds with survivors, of N.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from proc_tools import Cgroup  # noqa: E402

CONTROLLER = """
import asyncio
from pathlib import Path
from evoforge.executors.local import LocalExecutor
from evoforge.problem import builtin_problems

prob = builtin_problems()["circle_packing_26"]
code = (prob / "initial_program.py").read_text()

async def main():
    ex = LocalExecutor(prob, workers=2, timeout=30)
    while True:
        await asyncio.gather(ex.evaluate(code), ex.evaluate(code))

asyncio.run(main())
"""


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rng = random.Random(0)
    bad = 0
    for i in range(rounds):
        group = Cgroup(f"kill{i}")
        try:
            proc = subprocess.Popen(group.enter_argv([sys.executable, "-c", CONTROLLER]),
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 1.5))
            os.kill(proc.pid, 9)
            proc.wait()
            if not group.wait_empty(1.0):
                bad += 1
                print(f"round {i}: survivors {group.pids()}", flush=True)
        finally:
            group.close()
    print(f"rounds with processes alive 1 s after the controller's SIGKILL: {bad} of {rounds}")


if __name__ == "__main__":
    main()
