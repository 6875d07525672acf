"""Program: the immutable record of one candidate, and the small value types around it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


def scrub(text: str) -> str:
    """``text`` with every lone surrogate (a candidate's or an LLM's ``'\\ud800'``) replaced by
    U+FFFD, so it can be stored as UTF-8 and printed; valid text is returned as is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _clean(x: Any) -> bool:
    return not isinstance(x, str) or x.isascii() or scrub(x) is x


def _scrub_dict(d: dict[Any, Any]) -> dict[Any, Any]:
    if all(_clean(k) and _clean(v) for k, v in d.items()):
        return d  # the common case: nothing to replace, no copy
    return {scrub(k) if isinstance(k, str) else k: scrub(v) if isinstance(v, str) else v
            for k, v in d.items()}


def _scrub_fields(obj: Any, *names: str) -> None:
    """Scrub the text fields ``names`` of a frozen dataclass in place (at construction)."""
    for name in names:
        value = getattr(obj, name)
        clean = scrub(value) if isinstance(value, str) else (
            _scrub_dict(value) if isinstance(value, dict) else value)
        if clean is not value:
            object.__setattr__(obj, name, clean)


class Status(str, Enum):
    """Terminal (and one transient) states of a program. Status is data, never an exception."""

    PENDING = "pending"  # child code exists and is stored, evaluation not yet recorded
    OK = "ok"  # evaluated, finite score
    FAILED = "failed"  # the evaluator raised or returned something unusable
    INVALID = "invalid"  # edit did not apply, syntax error, LLM gave no usable reply
    TIMEOUT = "timeout"  # wall-clock deadline hit; process tree killed
    CRASHED = "crashed"  # killed by a signal, out of memory, exited without a result

    @property
    def terminal(self) -> bool:
        return self is not Status.PENDING


@dataclass(frozen=True)
class MutationInfo:
    """Provenance of a child: which mutator made it and what it cost."""

    mutator: str = ""
    model: str | None = None
    edit_kind: str | None = None  # "diff", "rewrite", "literal", "swap_op", "crossover", ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0  # seconds spent producing the child (LLM round trips included)
    attempts: int = 0  # LLM requests made (retries included)
    note: str = ""  # free text: what the edit did, or why it failed
    view: int | None = None  # results committed when the proposal was made
    staleness: int | None = None  # results committed between the proposal and its child
    arm: str | None = None  # the bandit's arm that made it (mutator.name: bandit)
    prompt_variant: str | None = None  # the prompt variant its LLM call used (prompt.evolve)
    # the parent the selector picked for its proposal, when the child names another (a tuning
    # trial of the run's best, MutationOutcome.parent; a rebased child, evoforge.rebase): the
    # selector's outstanding count is its
    selected: int | None = None
    # the selector's branch that picked the parent (Selection.explored): True explored, False
    # exploited (the islands' credit assignment reads it back; None: not told)
    explored: bool | None = None

    def __post_init__(self) -> None:
        _scrub_fields(self, "mutator", "model", "edit_kind", "note", "arm", "prompt_variant")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MutationInfo:
        if not d:
            return cls()
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation produced. Built by an Executor, consumed by Run.tell()."""

    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    score: float | None = None  # primary score as the evaluator reports it (not sign-flipped)
    reason: str = ""  # why the status is not ok (empty when ok)
    artifacts: dict[str, str] = field(default_factory=dict)  # capped text feedback
    eval_time: float = 0.0  # seconds, wall clock, spawn to result

    def __post_init__(self) -> None:
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError(f"EvalResult.score must be finite, got {self.score!r}")
        _scrub_fields(self, "reason", "metrics", "artifacts")


@dataclass(frozen=True)
class Program:
    """An immutable record of one candidate and everything known about it.

    ``id`` is the proposal sequence number within the run (0 is the initial program).
    ``done_seq`` is the order in which its result was committed (None while pending).
    """

    id: int
    code: str
    parent_ids: tuple[int, ...] = ()
    island: int = 0
    generation: int = 0
    status: Status = Status.PENDING
    reason: str = ""
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    mutation: MutationInfo = field(default_factory=MutationInfo)
    created_at: float = 0.0  # unix time the proposal was stored
    evaluated_at: float | None = None
    eval_time: float = 0.0
    done_seq: int | None = None

    def __post_init__(self) -> None:
        # text from candidates and LLMs: a lone surrogate would make the record unstorable
        # (and a run that stored its proposal unresumable)
        _scrub_fields(self, "code", "reason", "metrics", "features", "artifacts")

    def with_result(self, result: EvalResult, *, done_seq: int, evaluated_at: float,
                    features: dict[str, float] | None = None) -> Program:
        return replace(
            self,
            status=result.status,
            reason=result.reason,
            score=result.score,
            metrics=dict(result.metrics),
            artifacts=dict(result.artifacts),
            features=dict(features or {}),
            eval_time=result.eval_time,
            done_seq=done_seq,
            evaluated_at=evaluated_at,
        )
