"""EvaluationResult: what an evaluator may return instead of a plain dict.

This module has no dependencies so that evaluators can import it cheaply inside the
evaluation subprocess (``from evoforge.evaluation_result import EvaluationResult``).
It matches OpenEvolve's ``EvaluationResult(metrics, artifacts)``, helpers included, and is what
``from openevolve.evaluation_result import EvaluationResult`` gives an evaluator where OpenEvolve
is not installed (where it is, OpenEvolve's own class is used and accepted alike).

``metrics`` holds numbers; other values (an ``"error"`` text, a bool, a list, an
``"artifacts"`` dict) are kept as feedback, not scored. ``artifacts`` values are text, or
bytes (decoded as UTF-8) or anything else (shown as ``str(value)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvaluationResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, metrics: dict[str, Any]) -> EvaluationResult:
        """A result with these metrics and no artifacts."""
        return cls(metrics=metrics)

    def to_dict(self) -> dict[str, Any]:
        """The metrics (the dict form of a result)."""
        return self.metrics

    def has_artifacts(self) -> bool:
        return bool(self.artifacts)

    def get_artifact_keys(self) -> list[str]:
        return list(self.artifacts)

    def get_artifact_size(self, key: str) -> int:
        """Bytes in artifact ``key`` (UTF-8 for text; 0 if there is none)."""
        if key not in self.artifacts:
            return 0
        value = self.artifacts[key]
        if isinstance(value, bytes | bytearray):
            return len(value)
        return len(str(value).encode("utf-8", errors="replace"))

    def get_total_artifact_size(self) -> int:
        return sum(self.get_artifact_size(key) for key in self.artifacts)
