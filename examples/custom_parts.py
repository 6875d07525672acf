"""A whole evolution in-process with your own parts: a mutator and an executor that are plain
functions (no LLM, no sandbox), passed to ``evoforge.evolve``.

    .venv/bin/python examples/custom_parts.py
"""

import re
import tempfile
from pathlib import Path

import evoforge
from evoforge.testing import FunctionExecutor, FunctionMutator

PROGRAM = "# EVOLVE-BLOCK-START\nX = 0.0\n# EVOLVE-BLOCK-END\n"


def mutate(request):
    """Nudge the parent's number (``request.rng`` is seeded per proposal: runs repeat)."""
    x = float(re.search(r"X = (\S+)", request.parent.code).group(1))
    return PROGRAM.replace("0.0", f"{x + request.rng.gauss(0.0, 0.5):.6f}")


def evaluate(code):
    """The score: higher is better, best at X = 3."""
    namespace = {}
    exec(code, namespace)
    return -((namespace["X"] - 3.0) ** 2)


with tempfile.TemporaryDirectory() as tmp:
    problem = Path(tmp) / "problem"
    problem.mkdir()
    (problem / "initial_program.py").write_text(PROGRAM)
    (problem / "evaluator.py").write_text("def evaluate(path):\n    raise NotImplementedError\n")
    outcome = evoforge.evolve(
        problem,
        run_dir=Path(tmp) / "run",
        config=evoforge.build_config({"max_programs": 300, "seed": 1}),
        mutator=FunctionMutator(mutate),
        executor=FunctionExecutor(evaluate),
    )
    best = outcome.best
    print(f"stopped: {outcome.message}")
    print(f"best score {best.score:.6f} (program #{best.id}): {best.code.splitlines()[1]}")
