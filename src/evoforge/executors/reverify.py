"""Re-verification: an Executor wrapper that re-evaluates a would-be new best in fresh
processes and fails it unless it reproduces its score.

A deterministic evaluator must reproduce a score within ``evaluation.reverify_tolerance``. A
noisy one (timings, sampling, random tests) cannot, so when a re-evaluation differs by more, the
noise is measured once per session: the reference program (the problem's initial program, which
the candidate cannot change) is evaluated ``evaluation.noise_samples`` times and the standard
deviation *s* of its scores is the noise level. A re-evaluation then agrees when it differs from
the first score by at most ``t * sqrt(2) * s`` plus the tolerance, *t* being Student's t
quantile for a two-sided 99.9% prediction interval with ``noise_samples - 1`` degrees of freedom
(the difference of two noisy scores has a standard deviation of ``sqrt(2)`` times theirs, and *s*
is only an estimate). An agreeing best is stored with the mean of its evaluations (score and
metrics): its first score was selected for being high, and the mean halves that luck, so a later
program must beat what the best does on average, not its luckiest draw. A score that moves by
more (an evaluator a candidate has subverted into returning arbitrary numbers) is still stored
``failed: not reproducible``, with the noise level used in the reason. A deterministic
evaluator never triggers the measurement: it costs nothing and behaves as without it. The
measurement is not stored; a resumed session measures again when it first needs it.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from evoforge.executors.base import Executor
from evoforge.program import EvalResult, Program, Status

__all__ = ["Noise", "Reverifying", "rejected_bests"]

# Student's t quantile 0.9995 (two-sided 99.9%) by degrees of freedom; beyond, an expansion
_T999 = {1: 636.62, 2: 31.599, 3: 12.924, 4: 8.610, 5: 6.869, 6: 5.959, 7: 5.408, 8: 5.041,
         9: 4.781, 10: 4.587, 11: 4.437, 12: 4.318, 13: 4.221, 14: 4.140, 15: 4.073}


def t999(dof: int) -> float:
    """Student's t quantile for a two-sided 99.9% interval with ``dof`` degrees of freedom."""
    if dof in _T999:
        return _T999[dof]
    z = 3.2905  # the normal quantile; Cornish-Fisher terms for the t distribution's tails
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


@dataclass(frozen=True)
class Noise:
    """The evaluator's noise, measured on the reference program: the standard deviation of
    ``samples`` scores (0: it scored the same every time), or ``unknown`` saying why not."""

    sd: float = 0.0
    samples: int = 0
    unknown: str = ""

    @property
    def band(self) -> float:
        """How far two scores of one program may differ by noise alone."""
        if self.unknown or self.samples < 2:
            return 0.0
        return t999(self.samples - 1) * math.sqrt(2) * self.sd

    def describe(self) -> str:
        if self.unknown:
            return f"noise unknown: {self.unknown}"
        if self.sd == 0:
            return f"the initial program scores the same every time: noise 0 in {self.samples} " \
                   "evaluations"
        return f"noise sd {self.sd:.3g} measured on the initial program in {self.samples} " \
               "evaluations"


class Reverifying(Executor):
    """Evaluates through ``inner``; a result for which ``worth(score)`` is true (it would
    become the run's best) is evaluated ``times`` more and must reproduce its score within
    ``tolerance`` (relative, at least absolute) each time, else it is stored ``failed: not
    reproducible``. With ``noise_samples`` >= 2 and a ``reference`` program (the initial
    program's code), a score that moves by more is judged against the measured noise instead
    (see the module docstring) and, within it, stored as the mean of the evaluations. Other
    results pass through unchanged."""

    def __init__(self, inner: Executor, *, times: int, tolerance: float,
                 worth: Callable[[float], bool], noise_samples: int = 0,
                 reference: str | None = None) -> None:
        self.inner = inner
        self.times = int(times)
        self.tolerance = float(tolerance)
        self.worth = worth
        self.noise_samples = int(noise_samples)
        self.reference = reference
        self.noise: Noise | None = None  # measured when first needed
        self._measuring: asyncio.Lock | None = None

    @property
    def slots(self) -> int:
        return self.inner.slots

    def __getattr__(self, name: str) -> Any:  # the inner executor's extras (form, sandbox, ...)
        return getattr(self.inner, name)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _allowed(self, score: float) -> float:
        return self.tolerance * max(1.0, abs(score))

    async def measure_noise(self) -> Noise:
        """The noise level (measured on the first call, then remembered)."""
        if self._measuring is None:
            self._measuring = asyncio.Lock()
        async with self._measuring:
            if self.noise is None:
                self.noise = await self._measure()
            return self.noise

    async def _measure(self) -> Noise:
        if self.noise_samples < 2:
            return Noise(unknown=f"evaluation.noise_samples={self.noise_samples} (at least 2 "
                                 "measure it)")
        if self.reference is None:
            return Noise(unknown="no initial program to measure it on")
        scores: list[float] = []
        for _ in range(self.noise_samples):
            r = await self.inner.evaluate(self.reference, program_id=0)
            if r.status is not Status.OK or r.score is None:
                return Noise(unknown=f"the initial program was {r.status.value} on re-evaluation "
                                     f"({r.reason})")
            scores.append(r.score)
        return Noise(sd=statistics.stdev(scores), samples=len(scores))

    async def evaluate(self, code: str, *, program_id: int = 0, **options: Any) -> EvalResult:
        """``options`` (the inner executor's extras, e.g. a fingerprint hook) go with the first
        evaluation only: the re-evaluations are plain, in fresh processes."""
        result = await self.inner.evaluate(code, program_id=program_id, **options)
        if (self.times == 0 or result.status is not Status.OK or result.score is None
                or not self.worth(result.score)):
            return result
        first = result.score
        runs = [result]
        noise: Noise | None = None  # measured once a score moves by more than the tolerance
        for _ in range(self.times):
            again = await self.inner.evaluate(code, program_id=program_id)
            if again.status is not Status.OK or again.score is None:
                return replace(result, status=Status.FAILED, score=None, reason=(
                    f"not reproducible: scored {first:.10g}, then {again.status.value} on "
                    f"re-evaluation in a fresh process ({again.reason})"))
            runs.append(again)
            moved = abs(again.score - first)
            if moved <= self._allowed(first):
                continue
            if noise is None:
                noise = await self.measure_noise() if self.noise_samples else Noise()
            limit = self._allowed(first) + noise.band
            if not moved <= limit:
                why = f"evaluation.reverify_tolerance={self.tolerance:g}"
                if noise.band > 0:
                    why = (f"more than the noise allows: {limit:.3g} = "
                           f"{t999(noise.samples - 1):.3g} x sqrt(2) x {noise.describe()} + {why}")
                elif noise.unknown or noise.samples:
                    why += f"; {noise.describe()}"
                return replace(result, status=Status.FAILED, score=None, reason=(
                    f"not reproducible: scored {first:.10g}, then {again.score:.10g} on "
                    f"re-evaluation in a fresh process ({why})"))
        scores = ", ".join(f"{r.score:.10g}" for r in runs)
        if noise is None:  # every re-evaluation reproduced the score
            note = f"reproduced {self.times}x in fresh processes: {scores}"
            return replace(result, artifacts={**result.artifacts, "reverify": note})
        mean = _mean([r.score for r in runs if r.score is not None])
        metrics = {k: _mean([r.metrics[k] for r in runs]) for k in result.metrics
                   if all(k in r.metrics for r in runs)}
        note = (f"scored {scores} in fresh processes: within the noise ({noise.describe()}); "
                f"stored their mean {mean:.10g}")
        return replace(result, score=mean, metrics=metrics,
                       artifacts={**result.artifacts, "reverify": note})


def _mean(values: list[float]) -> float:
    return math.fsum(v / len(values) for v in values)  # divided first: no overflow


_STATUS = re.compile(r"^not reproducible: scored \S+, then (failed|timeout|crashed|invalid|"
                     r"pending) on re-evaluation")


def rejected_bests(programs: Iterable[Program]) -> list[tuple[str, int]]:
    """Would-be bests that re-verification failed, counted by kind of reason, most frequent
    first: e.g. ``[("score moved by more than the measured noise", 3), ("timeout on
    re-evaluation", 1)]``. Reads only ``status`` and ``reason`` (runs from before noise-aware
    re-verification included)."""
    kinds: Counter[str] = Counter()
    for p in programs:
        if p.status is not Status.FAILED or not p.reason.startswith("not reproducible:"):
            continue
        m = _STATUS.match(p.reason)
        if m:
            kinds[f"{m.group(1)} on re-evaluation"] += 1
        elif "more than the noise allows" in p.reason:
            kinds["score moved by more than the measured noise"] += 1
        elif "noise unknown" in p.reason:
            kinds["score moved; the noise could not be measured"] += 1
        elif "noise 0 in" in p.reason:
            kinds["score moved; the initial program's score does not (noise 0)"] += 1
        else:
            kinds["score moved by more than evaluation.reverify_tolerance"] += 1
    return sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
