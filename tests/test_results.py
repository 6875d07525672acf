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
    (_ok({"a": 1.0, "b": 2.0}), Status.FAILED, "no 'combined_score' metric"),
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
