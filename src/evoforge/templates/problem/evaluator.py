"""Evaluator for the example problem, in the hardened form.

evoforge calls ``evaluate(candidate)`` in a trusted process for every candidate program; the
program itself runs in a separate sandbox, and ``candidate.call("search", timeout=10)`` returns
what its ``search()`` returned, as plain JSON values (lists, numbers, ...: no custom objects, no
NaN). Check everything it returns. Return a dict of finite numbers with ``combined_score`` as the
primary score (higher is better unless the config says ``objective.direction: minimize``), or an
EvaluationResult to also pass text feedback (artifacts) to the next prompt. Raising an exception
marks the candidate ``failed`` with your message as the reason.

(The plain OpenEvolve form, ``evaluate(program_path)`` importing the program into this process,
also works, but then the program can tamper with this evaluator: the run records that.)
"""

from __future__ import annotations

import math

from evoforge.evaluation_result import EvaluationResult


def evaluate(candidate) -> EvaluationResult:
    point = candidate.call("search", timeout=10)
    if (not isinstance(point, list) or len(point) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)):
        raise ValueError(f"search() must return two numbers (x, y), got {str(point)[:80]}")
    x, y = float(point[0]), float(point[1])
    value = 20 + x * x - 10 * math.cos(2 * math.pi * x) + y * y - 10 * math.cos(2 * math.pi * y)
    return EvaluationResult(
        metrics={"combined_score": -value, "distance_to_origin": math.hypot(x, y)},
        artifacts={"feedback": f"point ({x:.4f}, {y:.4f}) has value {value:.4f}; the minimum is 0"},
    )
