"""Evaluator for the example problem.

evoforge calls ``evaluate(program_path)`` in a separate process for every candidate. Return a dict of
finite numbers with ``combined_score`` as the primary score (higher is better unless the config says
``objective.direction: minimize``), or an EvaluationResult to also pass text feedback (artifacts) to
the next prompt. Raising an exception marks the candidate ``failed`` with your message as the reason.
"""

from __future__ import annotations

import importlib.util
import math

from evoforge.evaluation_result import EvaluationResult


def evaluate(program_path: str) -> EvaluationResult:
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x, y = module.search()
    x, y = float(x), float(y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"search() returned a non-finite point ({x}, {y})")
    value = 20 + x * x - 10 * math.cos(2 * math.pi * x) + y * y - 10 * math.cos(2 * math.pi * y)
    return EvaluationResult(
        metrics={"combined_score": -value, "distance_to_origin": math.hypot(x, y)},
        artifacts={"feedback": f"point ({x:.4f}, {y:.4f}) has value {value:.4f}; the minimum is 0"},
    )
