"""Stop conditions: small objects that say whether a run should stop, and why.

Each :class:`Stop` looks at the live :class:`~evoforge.run.Run` and returns a reason (a short
name such as ``"max_programs"``) or None. :class:`AnyOf` combines several; the run asks its
combined stop in one place (``Run.stop_reason``), and the pipeline reports the first reason
given. The config builds the budget ones (:func:`from_config`); pass your own to
:func:`evoforge.evolve` (``stop=StopWhen(lambda run: ...)``) to add to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evoforge.config import Config
    from evoforge.run import Run

__all__ = ["AnyOf", "LLMFailures", "MaxCost", "MaxPrograms", "MaxTime", "Stop", "StopWhen",
           "TargetScore", "from_config"]


class Stop(ABC):
    """Says whether the run should stop before making another proposal."""

    #: True when this stop only changes with time (the loop then wakes up to ask it)
    timed = False

    @abstractmethod
    def reason(self, run: Run, in_flight: int) -> str | None:
        """A short reason to stop now, or None. ``in_flight``: proposals not yet committed."""


class MaxPrograms(Stop):
    """Stop once committed plus in-flight programs reach ``n``."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def reason(self, run: Run, in_flight: int) -> str | None:
        return "max_programs" if run.tally.done + in_flight >= self.n else None


class MaxTime(Stop):
    """Stop after ``seconds`` of this session's wall time."""

    timed = True

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def remaining(self, run: Run) -> float:
        return self.seconds - run.elapsed()

    def reason(self, run: Run, in_flight: int) -> str | None:
        return "max_time" if self.remaining(run) <= 0 else None


class MaxCost(Stop):
    """Stop once the LLM spend (children evaluated and waiting) reaches ``usd``, or, with no
    call in flight, once the next call would pass it at the mean cost per call so far. (While
    calls are in flight, the pipeline asks no new proposal that the budget could not pay for:
    ``Run.can_afford_call``.)"""

    def __init__(self, usd: float) -> None:
        self.usd = float(usd)

    def reason(self, run: Run, in_flight: int) -> str | None:
        spent = run.tally.cost + run.tally.pending_cost
        if spent >= self.usd:
            return "max_cost"
        mean = run.mean_call_cost()
        if run.llm_in_flight == 0 and mean is not None and spent + mean > self.usd:
            return "max_cost"
        return None


class TargetScore(Stop):
    """Stop once the best score reaches ``target`` (in the run's direction)."""

    def __init__(self, target: float) -> None:
        self.target = float(target)

    def reason(self, run: Run, in_flight: int) -> str | None:
        best = run.best
        if best is None or best.score is None:
            return None
        reached = best.score <= self.target if run.config.minimize else best.score >= self.target
        return "target_score" if reached else None


class LLMFailures(Stop):
    """Stop after ``n`` proposals in a row got no usable LLM reply."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def reason(self, run: Run, in_flight: int) -> str | None:
        return "llm_failures" if run.tally.consecutive_llm_failures >= self.n else None


class StopWhen(Stop):
    """A stop from a function of the run: ``fn(run)`` returns a truthy value to stop (a
    string is used as the reason, anything else gives ``name``). Asked at least once a second."""

    timed = True

    def __init__(self, fn: Callable[[Run], object], name: str = "user_stop") -> None:
        self.fn = fn
        self.name = name

    def reason(self, run: Run, in_flight: int) -> str | None:
        said = self.fn(run)
        if not said:
            return None
        return said if isinstance(said, str) else self.name


class AnyOf(Stop):
    """The first reason any of ``stops`` gives, in their order."""

    def __init__(self, stops: Sequence[Stop]) -> None:
        self.stops = list(stops)
        self.timed = any(s.timed for s in self.stops)

    def reason(self, run: Run, in_flight: int) -> str | None:
        for s in self.stops:
            why = s.reason(run, in_flight)
            if why is not None:
                return why
        return None

    def remaining(self, run: Run) -> float | None:
        """Seconds until the earliest MaxTime among ``stops`` (None without one)."""
        times = [s.remaining(run) for s in self.stops if isinstance(s, MaxTime)]
        return min(times) if times else None


def from_config(config: Config, extra: Stop | Sequence[Stop] | None = None) -> AnyOf:
    """The config's budget (max_programs, target_score, max_time, max_cost, LLM failures),
    plus ``extra`` stops."""
    stops: list[Stop] = []
    if config.max_programs is not None:
        stops.append(MaxPrograms(config.max_programs))
    if config.target_score is not None:
        stops.append(TargetScore(config.target_score))
    if config.max_time is not None:
        stops.append(MaxTime(config.max_time))
    if config.max_cost is not None:
        stops.append(MaxCost(config.max_cost))
    stops.append(LLMFailures(config.llm.max_consecutive_failures))
    if isinstance(extra, Stop):
        stops.append(extra)
    elif extra is not None:
        stops.extend(extra)
    return AnyOf(stops)
