"""executors/results.py: what a worker left behind becomes an EvalResult, without processes."""

from __future__ import annotations

import json
import signal

import pytest

from evoforge.executors.results import Limits, WorkerOutcome, interpret
from evoforge.program import Status

LIMITS = Limits(timeout=5.0, memory_mb=256, score_metric="combined_score", artifact_chars=100)


def _ok(metrics: dict, **kw) -> WorkerOutcome:
    reply = json.dumps({"v": 1, "ok": True, "metrics": metrics, "artifacts": {}})
    return WorkerOutcome(returncode=0, timed_out=False, result=reply.encode(), result_dropped=0,
                         outputs={}, **kw)


@pytest.mark.parametrize(("outcome", "status", "reason"), [
    (_ok({"combined_score": 2.0}), Status.OK, ""),
    (_ok({"a": 1.0, "b": 2.0}), Status.OK, ""),  # the average (OpenEvolve's rule)
    (_ok({"combined_score": True}), Status.FAILED, "is a bool"),
    (WorkerOutcome(None, True, b"", 0, {}), Status.TIMEOUT, "exceeded 5.0 s"),
    (WorkerOutcome(-signal.SIGXCPU, False, b"", 0, {}), Status.TIMEOUT, "CPU-time limit of 6 s"),
    (WorkerOutcome(-signal.SIGSEGV, False, b"", 0, {}), Status.CRASHED, "killed by SIGSEGV"),
    (WorkerOutcome(1, False, b"", 0, {"stderr": "MemoryError"}), Status.CRASHED,
     "out of memory (memory_mb=256)"),
    (WorkerOutcome(0, False, b"{not json", 0, {}), Status.FAILED, "not valid JSON"),
    (WorkerOutcome(0, False, b'{"v":1,"ok":true,"metrics":{"x":NaN}}', 0, {}), Status.FAILED,
     "not valid JSON"),
    (WorkerOutcome(0, False, b"{}", 10, {}), Status.FAILED, "exceeded 16777216 bytes"),
    (WorkerOutcome(-9, False, b"", 0, {}, closed=True), Status.CRASHED, "executor was closed"),
])
def test_interpret(outcome: WorkerOutcome, status: Status, reason: str) -> None:
    r = interpret(outcome, LIMITS, eval_time=0.5)
    assert r.status is status and reason in r.reason, (r.status, r.reason)
    assert r.eval_time == 0.5


def test_outputs_become_capped_artifacts() -> None:
    r = interpret(_ok({"combined_score": 1.0}), LIMITS, 0.0)
    assert r.artifacts == {}
    out = WorkerOutcome(1, False, b"", 0, {"stderr": "boom", "stdout": ""})
    assert interpret(out, LIMITS, 0.0).artifacts == {"stderr": "boom"}


def _reply(metrics: dict, **kw) -> WorkerOutcome:
    reply = json.dumps({"v": 1, "ok": True, "metrics": metrics, "invalid": {}, "artifacts": {},
                        **kw})
    return WorkerOutcome(0, False, reply.encode(), 0, {})


@pytest.mark.parametrize(("outcome", "status", "score", "reason"), [
    # a failure dict: the evaluator's message leads
    (_reply({"combined_score": 0}, feedback={"error": "division by zero in step 3"},
            error="division by zero in step 3"), Status.FAILED, None,
     "division by zero in step 3 (the evaluator returned it as 'error' with a score of 0)"),
    (_reply({}, feedback={"error": "no output"}, error="no output"), Status.FAILED, None,
     "no output (the evaluator returned no numeric metric; return e.g. {'combined_score': 0.5})"),
    (_reply({}, invalid={"combined_score": "is a NoneType ('None')"}, feedback={"error": "x"},
            error="x"), Status.FAILED, None, "x (metric 'combined_score' is a NoneType"),
    # partial credit: the message is feedback
    (_reply({"combined_score": 0.4}, feedback={"error": "2 of 5 wrong"}, error="2 of 5 wrong"),
     Status.OK, 0.4, ""),
    # OpenEvolve's average; bools are not numbers
    (_reply({"a": 1, "b": 4}, feedback={"valid": "True"}), Status.OK, 2.5, ""),
    (_reply({"a": 1, "b": 4}, invalid={"c": "is nan"}), Status.FAILED, None,
     "metric 'c' is nan: with no 'combined_score' the score is the average"),
    (_reply({"combined_score": 2}, invalid={"c": "is inf"}), Status.OK, 2.0, ""),
    (_reply({}, feedback={"passed": "True"}), Status.FAILED, None,
     "the evaluator returned no numeric metric (only 'passed')"),
])
def test_openevolve_semantics(outcome: WorkerOutcome, status: Status, score: float | None,
                              reason: str) -> None:
    r = interpret(outcome, LIMITS, 0.0)
    assert (r.status, r.score) == (status, score), r
    assert r.reason.startswith(reason) if reason else r.reason == "", r.reason


def test_feedback_is_stored_beside_the_artifacts() -> None:
    out = _reply({"combined_score": 1}, artifacts={"error": "evaluator's own"},
                 feedback={"error": "metric text", "flag": "False"}, invalid={"r": "is nan"})
    r = interpret(out, LIMITS, 0.0)
    assert r.artifacts == {"error": "evaluator's own", "metrics.error": "metric text",
                           "flag": "False", "r": "metric 'r' is nan; left out of the metrics"}
    assert r.metrics == {"combined_score": 1.0}


def test_the_average_is_announced_once_per_executor(caplog: pytest.LogCaptureFixture) -> None:
    def limits() -> Limits:
        return Limits(timeout=5.0, memory_mb=None, score_metric="combined_score",
                      artifact_chars=9)

    first = limits()
    for _ in range(3):
        interpret(_reply({"x": 1, "y": 3}), first, 0.0)
    interpret(_reply({"x": 1, "y": 3}), limits(), 0.0)  # another executor says it too
    said = [m for m in caplog.messages if "using the average of its numeric metrics (x, y)" in m]
    assert len(said) == 2 and "return 'combined_score'" in said[0]
