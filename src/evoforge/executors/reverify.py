"""Re-verification: an Executor wrapper that re-evaluates a would-be new best in fresh
processes and fails it unless it reproduces its score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from evoforge.executors.base import Executor
from evoforge.program import EvalResult, Status

__all__ = ["Reverifying"]


class Reverifying(Executor):
    """Evaluates through ``inner``; a result for which ``worth(score)`` is true (it would
    become the run's best) is evaluated ``times`` more and must reproduce its score within
    ``tolerance`` (relative, at least absolute) each time, else it is stored ``failed: not
    reproducible``. Other results pass through unchanged."""

    def __init__(self, inner: Executor, *, times: int, tolerance: float,
                 worth: Callable[[float], bool]) -> None:
        self.inner = inner
        self.times = int(times)
        self.tolerance = float(tolerance)
        self.worth = worth

    @property
    def slots(self) -> int:
        return self.inner.slots

    def __getattr__(self, name: str) -> Any:  # the inner executor's extras (form, sandbox, ...)
        return getattr(self.inner, name)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def evaluate(self, code: str, *, program_id: int = 0) -> EvalResult:
        result = await self.inner.evaluate(code, program_id=program_id)
        if (self.times == 0 or result.status is not Status.OK or result.score is None
                or not self.worth(result.score)):
            return result
        seen = [result.score]
        for _ in range(self.times):
            again = await self.inner.evaluate(code, program_id=program_id)
            if again.status is not Status.OK or again.score is None:
                return replace(result, status=Status.FAILED, score=None, reason=(
                    f"not reproducible: scored {result.score:.10g}, then {again.status.value} on "
                    f"re-evaluation in a fresh process ({again.reason})"))
            seen.append(again.score)
            if abs(again.score - result.score) > self.tolerance * max(1.0, abs(result.score)):
                return replace(result, status=Status.FAILED, score=None, reason=(
                    f"not reproducible: scored {result.score:.10g}, then {again.score:.10g} on "
                    f"re-evaluation in a fresh process (evaluation.reverify_tolerance="
                    f"{self.tolerance:g})"))
        note = f"reproduced {self.times}x in fresh processes: " + ", ".join(f"{x:.10g}" for x in seen)
        return replace(result, artifacts={**result.artifacts, "reverify": note})
