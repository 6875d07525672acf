"""Re-verification is an Executor wrapper (issue 9): a would-be best is evaluated again and
must reproduce; others pass through with one evaluation."""

from __future__ import annotations

import asyncio
import itertools

from evoforge.executors.reverify import Reverifying
from evoforge.program import Status
from evoforge.testing import FunctionExecutor


def test_a_flaky_best_is_failed_and_a_steady_one_passes() -> None:
    flaky = itertools.cycle([10.0, 1.0])
    calls = {"flaky": 0, "steady": 0}

    def fn(code: str) -> float:
        calls[code] += 1
        return next(flaky) if code == "flaky" else 5.0

    ex = Reverifying(FunctionExecutor(fn), times=2, tolerance=1e-6, worth=lambda s: s > 3)

    async def go():
        return (await ex.evaluate("flaky"), await ex.evaluate("steady"))

    bad, good = asyncio.run(go())
    assert bad.status is Status.FAILED and "not reproducible: scored 10" in bad.reason
    assert good.status is Status.OK and good.score == 5.0
    assert "reproduced 2x" in good.artifacts["reverify"]
    assert calls == {"flaky": 2, "steady": 3}


def test_results_that_would_not_be_best_are_evaluated_once() -> None:
    calls = []
    ex = Reverifying(FunctionExecutor(lambda code: calls.append(code) or 1.0), times=3,
                     tolerance=0.0, worth=lambda s: False)
    r = asyncio.run(ex.evaluate("x"))
    assert r.status is Status.OK and calls == ["x"] and ex.slots == 1
