"""Function-backed collaborators: a whole evolution in-process with plain functions.

``FunctionMutator(fn)``, ``FunctionExecutor(fn)`` and ``FunctionLLM(fn)`` turn a function into a
:class:`~evoforge.mutators.base.Mutator`, an :class:`~evoforge.executors.base.Executor` or an
:class:`~evoforge.llms.base.LLM`, the way httpx's ``MockTransport`` turns one into a transport: to
test your own parts, or to try a search idea without an LLM or a sandbox. Pass the first two to
:func:`evoforge.evolve`; wrap a ``FunctionLLM`` in an ``LLMMutator`` to test prompts and edits.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Any

from evoforge.executors.base import Executor
from evoforge.llms.base import LLM, LLMReply
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import EvalResult, MutationInfo, Status

__all__ = ["FunctionExecutor", "FunctionLLM", "FunctionMutator"]


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    out = fn(*args)
    return await out if inspect.isawaitable(out) else out


class FunctionMutator(Mutator):
    """A mutator from ``fn(request) -> str | None | MutationOutcome`` (sync or async): the
    child's code, None for "no child" (stored invalid), or a full outcome."""

    def __init__(self, fn: Callable[[MutationRequest], Any | Awaitable[Any]], *,
                 name: str = "function") -> None:
        self.fn = fn
        self.name = name

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        out = await _call(self.fn, request)
        if isinstance(out, MutationOutcome):
            return out
        if out is not None and not isinstance(out, str):
            raise TypeError(f"{self.name}: the mutator function returned "
                            f"{type(out).__name__}; return code (str), None or a MutationOutcome")
        note = "" if out is not None else f"{self.name} made no child"
        return MutationOutcome(out, MutationInfo(mutator=self.name, note=note))


class FunctionExecutor(Executor):
    """An executor from ``fn(code) -> EvalResult | dict[str, float] | float`` (sync or async):
    a full result, the metrics (``combined_score`` or the only metric is the score), or the
    score. An exception becomes a ``failed`` result; ``slots`` evaluations run at once."""

    def __init__(self, fn: Callable[[str], Any | Awaitable[Any]], *, slots: int = 1,
                 score_metric: str = "combined_score") -> None:
        self.fn = fn
        self._slots = int(slots)
        self.score_metric = score_metric
        self._sem: asyncio.Semaphore | None = None
        self.form = "custom"

    @property
    def slots(self) -> int:
        return self._slots

    async def evaluate(self, code: str, *, program_id: int = 0) -> EvalResult:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self._slots)
        async with self._sem:
            try:
                out = await _call(self.fn, code)
            except Exception as e:  # noqa: BLE001 - an evaluator's failure is data
                return EvalResult(Status.FAILED, reason=f"{type(e).__name__}: {e}")
        if isinstance(out, EvalResult):
            return out
        if isinstance(out, int | float) and not isinstance(out, bool):
            out = {self.score_metric: float(out)}
        if not isinstance(out, dict) or not out:
            return EvalResult(Status.FAILED, reason=f"the executor function returned "
                              f"{type(out).__name__}; return a score, a dict of metrics or an "
                              "EvalResult")
        metrics = {str(k): float(v) for k, v in out.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        if not all(math.isfinite(v) for v in metrics.values()):
            return EvalResult(Status.FAILED, metrics={}, reason="a metric is not finite")
        score = metrics.get(self.score_metric)
        if score is None and len(metrics) == 1:
            score = next(iter(metrics.values()))
        if score is None:
            return EvalResult(Status.FAILED, metrics=metrics,
                              reason=f"no {self.score_metric!r} metric")
        return EvalResult(Status.OK, metrics=metrics, score=score)


class FunctionLLM(LLM):
    """An LLM from ``fn(messages) -> str | LLMReply`` (sync or async): the reply text, or a full
    reply with tokens and cost. An exception it raises (e.g. an ``LLMError``) propagates as
    the real client's would. ``requests`` keeps every message list it was sent."""

    def __init__(self, fn: Callable[[list[dict[str, str]]], Any | Awaitable[Any]], *,
                 model: str = "function") -> None:
        self.fn = fn
        self.model = model
        self.requests: list[list[dict[str, str]]] = []

    async def chat(self, messages: list[dict[str, str]], *, rng: Any) -> LLMReply:
        self.requests.append(messages)
        out = await _call(self.fn, messages)
        if isinstance(out, LLMReply):
            return out
        if not isinstance(out, str):
            raise TypeError(f"the LLM function returned {type(out).__name__}; return the reply "
                            "text (str) or an LLMReply")
        return LLMReply(text=out, model=self.model)
