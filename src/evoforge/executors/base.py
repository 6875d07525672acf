"""The Executor interface: where evaluations run (local processes now, Ray later)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from evoforge.program import EvalResult


class Executor(ABC):
    """Evaluates child code. Only the code and the problem path travel to a worker."""

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many evaluations may run at once."""

    @abstractmethod
    async def evaluate(self, code: str, *, program_id: int = 0) -> EvalResult:
        """Evaluate one candidate; never raises for anything the candidate or evaluator does:
        every outcome is an EvalResult with a status and reason. Concurrency above ``slots``
        waits for a free slot."""

    async def aclose(self) -> None:
        """Kill everything still running (process trees included)."""
        return None
