"""Turning what an evaluation's worker left behind (exit status, the result pipe's bytes, its
output) into an EvalResult. No processes, no I/O but one logged notice per executor; the process
pool is in ``local.py``.

The evaluator's metrics, with OpenEvolve's semantics:

- finite numbers are metrics; any other value (an ``"error"`` text, a bool, None, a list, a
  dict; a nan or inf that is not needed for the score) is feedback: an artifact of that name
  (``metrics.<name>`` if an artifact already has it), shown to the LLM and by ``show``. An
  ``"artifacts"`` dict among the metrics is merged into the artifacts;
- the score is the ``score_metric`` (which must be a finite number, never a bool); without it,
  the average of the numeric metrics (bools are not numbers), as OpenEvolve's
  ``get_fitness_score`` does, said once per executor in the log. No numeric metric at all is a
  failure;
- a failure dict, ``{"combined_score": 0, "error": "..."}``: an ``"error"`` text with a score of
  0 (or no score) is ``failed`` with the evaluator's message first in the reason (OpenEvolve
  would store a score of 0: under ``direction: minimize`` that would be a best, and a broken
  program would become a parent). With any other score the result is ok and the message is
  feedback (partial credit).
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
from dataclasses import dataclass, field
from typing import Any

from evoforge.executors._worker import REASON_CHARS, _cap  # one capping rule, worker and parent
from evoforge.program import EvalResult, Status

__all__ = ["Limits", "WorkerOutcome", "interpret", "split_fingerprint"]

MAX_RESULT_BYTES = 16 * 1024 * 1024
log = logging.getLogger("evoforge")


@dataclass(frozen=True)
class Limits:
    """What the interpretation needs to know of the executor's settings."""

    timeout: float
    memory_mb: int | None
    score_metric: str
    artifact_chars: int
    #: notices already logged for the executor holding these limits (each is said once)
    noticed: set[str] = field(default_factory=set, compare=False, repr=False)


@dataclass(frozen=True)
class WorkerOutcome:
    """What came back from one evaluation's processes."""

    returncode: int | None  # the main worker's status (negative: killed by that signal)
    timed_out: bool  # the wall-clock deadline passed and the tree was killed
    result: bytes  # what the worker wrote on its result pipe (capped)
    result_dropped: int  # bytes beyond the cap
    outputs: dict[str, str]  # captured stdout/stderr (and the evaluator's, hardened form)
    candidate_status: int | None = None  # the hardened form's candidate process status
    closed: bool = False  # the executor was closed while it ran


def interpret(outcome: WorkerOutcome, limits: Limits, eval_time: float) -> EvalResult:
    """The EvalResult for ``outcome``: a status with a reason, metrics, score, artifacts.
    A fingerprint the worker sent ahead of its reply becomes the ``fingerprint`` artifact
    (replacing any the evaluator returned under that name)."""
    fingerprint, result = split_fingerprint(outcome.result)
    status, reason, metrics, score, artifacts = _interpret(
        limits, returncode=outcome.returncode, timed_out=outcome.timed_out,
        result=result, result_dropped=outcome.result_dropped, outputs=outcome.outputs,
        candidate_status=outcome.candidate_status, closed=outcome.closed)
    if fingerprint is not None:
        artifacts["fingerprint"] = fingerprint
    return EvalResult(status=status, reason=reason, metrics=metrics, score=score,
                      artifacts=artifacts, eval_time=eval_time)


FINGERPRINT_FRAME = b"#fp "
_FINGERPRINT_LINE = re.compile(rb"#fp (sha256:[0-9a-f]{64})")


def split_fingerprint(raw: bytes) -> tuple[str | None, bytes]:
    """``raw`` (what came on the result pipe) as the fingerprint line the worker wrote ahead
    of its reply (``"sha256:<hex>"``, or None: no line, or a malformed one) and the reply."""
    if not raw.startswith(FINGERPRINT_FRAME):
        return None, raw
    line, _, rest = raw.partition(b"\n")
    m = _FINGERPRINT_LINE.fullmatch(line)
    return (m.group(1).decode() if m else None), rest


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in the worker's result")


def _oom_reason(limits: Limits) -> str:
    if limits.memory_mb is None:
        return "out of memory"
    return f"out of memory (memory_mb={limits.memory_mb})"

def _interpret(
    limits: Limits,
    *,
    returncode: int | None,
    timed_out: bool,
    result: bytes,
    result_dropped: int,
    outputs: dict[str, str],
    candidate_status: int | None = None,
    closed: bool = False,
) -> tuple[Status, str, dict[str, float], float | None, dict[str, str]]:
    artifacts: dict[str, str] = {}
    extra = {k: v for k, v in outputs.items() if v}

    def done(
        status: Status,
        reason: str,
        metrics: dict[str, float] | None = None,
        score: float | None = None,
    ) -> tuple[Status, str, dict[str, float], float | None, dict[str, str]]:
        for k, v in extra.items():
            artifacts[k if k not in artifacts else f"evoforge_{k}"] = v
        return status, reason, metrics or {}, score, artifacts

    if timed_out:
        return done(Status.TIMEOUT, f"exceeded {limits.timeout} s; process tree killed")

    raw = result
    if raw:
        if result_dropped:
            return done(
                Status.FAILED,
                f"the evaluation result exceeded {MAX_RESULT_BYTES} bytes; "
                "return fewer or smaller metrics and artifacts",
            )
        try:
            reply = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            return done(Status.FAILED, f"the evaluation result was not valid JSON: {e}")
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            return done(Status.FAILED, "the evaluation result had an unexpected shape")
        return _interpret_reply(limits, reply, artifacts, extra, done, candidate_status)

    if closed and returncode is not None and returncode < 0:
        return done(Status.CRASHED, "interrupted: the executor was closed during evaluation")
    if returncode is not None and returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return done(
                Status.TIMEOUT,
                f"exceeded the CPU-time limit of {math.ceil(limits.timeout) + 1} s; "
                "process tree killed",
            )
        return done(Status.CRASHED, f"killed by {_signal_name(sig)}")
    if "MemoryError" in outputs.get("stderr", ""):
        return done(Status.CRASHED, _oom_reason(limits))
    return done(Status.CRASHED, f"exited with code {returncode} without a result")

def _interpret_reply(
    limits: Limits,
    reply: dict[str, Any],
    artifacts: dict[str, str],
    extra: dict[str, str],
    done: Any,
    candidate_status: int | None,
) -> tuple[Status, str, dict[str, float], float | None, dict[str, str]]:
    limit = limits.artifact_chars
    raw_artifacts = reply.get("artifacts")
    if isinstance(raw_artifacts, dict):
        for k, v in list(raw_artifacts.items())[:100]:
            artifacts[_cap(str(k), 100)] = _cap(v if isinstance(v, str) else repr(v), limit)

    if not reply["ok"]:
        etype = _cap(str(reply.get("error_type", "Error")), 100)
        message = _cap(str(reply.get("message", "")), REASON_CHARS)
        tb = reply.get("traceback")
        if isinstance(tb, str) and tb:
            extra["traceback"] = _cap(tb, limit)
            if not extra["traceback"]:
                del extra["traceback"]
        if etype == "MemoryError":
            return done(Status.CRASHED, _oom_reason(limits))
        ctb = reply.get("candidate_traceback")
        if isinstance(ctb, str) and ctb:  # the candidate's traceback is what to fix
            if "traceback" in extra:
                extra["evaluator_traceback"] = extra.pop("traceback")
            extra["traceback"] = _cap(ctb, limit)
        if reply.get("status") == "timeout":
            return done(Status.TIMEOUT, message or "a candidate call timed out")
        if reply.get("status") == "crashed" and candidate_status == -signal.SIGXCPU:
            return done(Status.TIMEOUT, f"the candidate exceeded the CPU-time limit of "
                                        f"{math.ceil(limits.timeout) + 1} s; process tree killed")
        if reply.get("status") == "crashed":
            why = message or "the candidate's process ended"
            if "out of memory" in why and limits.memory_mb is not None:
                why += f" (memory_mb={limits.memory_mb})"
            elif candidate_status is not None and candidate_status < 0:
                why += f" (killed by {_signal_name(-candidate_status)})"
            elif "MemoryError" in extra.get("stderr", ""):
                why += f" ({_oom_reason(limits)})"
            elif candidate_status is not None:
                why += f" (exit code {candidate_status})"
            return done(Status.CRASHED, why)
        where = str(reply.get("where", ""))
        reason = f"{etype}: {message}" if message else etype
        if where.startswith("evaluate_stage"):
            reason += f" (in {where})"
        elif where.startswith("loading"):
            reason = f"the evaluator failed to load: {reason}"
        return done(Status.FAILED, reason)

    raw_metrics = reply.get("metrics")
    if not isinstance(raw_metrics, dict):
        return done(Status.FAILED, "the evaluation result had no metrics dict")
    metrics: dict[str, float] = {}
    problems: dict[str, str] = {}  # metric name -> what is wrong with it
    invalid = reply.get("invalid")
    if isinstance(invalid, dict):
        problems.update({_cap(str(k), 100): _cap(str(v), 120) for k, v in invalid.items()})
    for name, value in raw_metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems[name] = f"is a {type(value).__name__}"
            continue
        try:
            num = float(value)
        except OverflowError:
            num = math.inf
        if not math.isfinite(num):
            problems[name] = "is not finite"
            continue
        metrics[name] = num
    feedback = reply.get("feedback")
    if isinstance(feedback, dict):
        for k, v in list(feedback.items())[:100]:
            key = _cap(str(k), 100)
            artifacts[key if key not in artifacts else f"metrics.{key}"] = _cap(str(v), limit)
    error = reply.get("error")
    message = _cap(error.strip(), REASON_CHARS) if isinstance(error, str) and error.strip() else ""

    def fail(why: str, kept: dict[str, float] | None = None) -> Any:
        """Failed; the evaluator's own message (a failure dict's ``"error"``) leads."""
        return done(Status.FAILED, f"{message} ({why})" if message else why, kept)

    sm = limits.score_metric
    if sm in metrics:
        score = metrics[sm]
    elif sm in problems:
        return fail(f"metric {sm!r} {problems[sm]}: evaluators must return finite numbers",
                    metrics)
    elif problems:  # the score would be an average that leaves some metrics out
        name, why = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return fail(f"metric {name!r} {why}{more}: with no {sm!r} the score is the average of "
                    "the numeric metrics, which must all be finite", metrics)
    elif not metrics:
        given = [n for n in (feedback if isinstance(feedback, dict) else {}) if n != "error"]
        only = f" (only {', '.join(repr(n) for n in given[:10])})" if given else ""
        return fail(f"the evaluator returned no numeric metric{only}; return e.g. "
                    f"{{'{sm}': 0.5}}")
    else:
        score = math.fsum(v / len(metrics) for v in metrics.values())
        if "average" not in limits.noticed:
            limits.noticed.add("average")
            names = ", ".join(list(metrics)[:10]) + (", ..." if len(metrics) > 10 else "")
            log.warning("evaluator returns no %r; using the average of its numeric metrics "
                        "(%s), as OpenEvolve does; return %r (or set objective.score_metric) "
                        "to choose", sm, names, sm)
    if message and score == 0:
        return fail("the evaluator returned it as 'error' with a score of 0", metrics)
    for name, why in problems.items():  # not needed for the score: feedback
        artifacts.setdefault(name if name not in artifacts else f"metrics.{name}",
                             f"metric {name!r} {why}; left out of the metrics")
    return done(Status.OK, "", metrics, score)
