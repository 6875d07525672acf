"""Evaluator for circle_packing_26 (hardened form): 26 circles, strict feasibility.

The checks and the scoring are in ``evoforge/problems/_circle_packing.py`` (shared with the other
circle-packing size): zero-tolerance containment in [0, 1]^2 and pairwise non-overlap, finite
numbers of exact type, exactly ``[centers, radii]`` of 26 each; the score is the sum of the radii.
"""

from __future__ import annotations

from typing import Any

from evoforge.evaluation_result import EvaluationResult
from evoforge.problems._circle_packing import CALL_TIMEOUT, evaluate_packing
from evoforge.problems._circle_packing import check_packing as _check_packing

N = 26
BEST_KNOWN = 2.6358627564  # AlphaEvolve (2025)
__all__ = ["BEST_KNOWN", "CALL_TIMEOUT", "N", "check_packing", "evaluate"]


def check_packing(centers: object, radii: object) -> float:
    """Validate a packing of N circles and return the sum of radii (ValueError names the flaw)."""
    return _check_packing(centers, radii, N)


def evaluate(candidate: Any) -> EvaluationResult:
    return evaluate_packing(candidate, N, BEST_KNOWN)
