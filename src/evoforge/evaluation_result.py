"""EvaluationResult: what an evaluator may return instead of a plain dict.

This module has no dependencies so that evaluators can import it cheaply inside the
evaluation subprocess (``from evoforge.evaluation_result import EvaluationResult``).
It matches OpenEvolve's ``EvaluationResult(metrics, artifacts)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvaluationResult:
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
