"""No evaluation twice: an Executor wrapper that answers a program already evaluated in this
run (the same code, or the same evaluator fingerprint) with that earlier result.

Two keys:

- the **code**, canonicalised (``evaluation.cache: canonical``, the default): Python as its
  syntax tree (``ast.dump``), so formatting, comments, blank lines and quote styles do not
  count (docstrings do: they are values; a ``coding:`` declaration does too); other code
  languages (C, C++, Rust, Verilog, ...) with trailing whitespace and blank lines dropped;
  anything else (text, unknown languages) and Python that does not parse as exact text.
  ``evaluation.cache: exact`` keys on the exact text everywhere, for an evaluator whose result
  depends on the program's formatting (it reads the source as text); ``off`` turns the cache
  off.
- the evaluator's **fingerprint** (in the spirit of unified functional hashing): an evaluator
  may define ``fingerprint(program_path)`` (plain form) or ``fingerprint(candidate)`` (hardened
  form), a cheap call of the program on fixed probe inputs returning a JSON value (None: no
  fingerprint for this program). The worker calls it in the evaluation's own process and
  sandbox, before the evaluation, and sends its SHA-256 to the controller while the evaluation
  goes on; when an earlier program of this run had the same fingerprint, the evaluation is
  killed and that program's result reused. Equal fingerprints are taken to mean equal results:
  the probes must decide the score (e.g. the program's outputs on the evaluation's own inputs,
  or a sample the evaluator accepts as deciding). Nothing waits: without a ``fingerprint()``
  the evaluation runs as before, in the same processes, and its cost is one ``getattr``.

Integrity of fingerprints. Hardened form: the fingerprint is computed by the trusted evaluator
from the candidate's answers over the JSON channel, and travels on the result pipe the
candidate cannot reach, so a candidate cannot claim another program's fingerprint; it can only
answer the probes the way that program does, which is what an equal fingerprint means (make
the probes the inputs the score depends on). Plain form: the candidate runs inside the
evaluator's process, so it can forge its fingerprint exactly as it can forge its score
(unprotected, like everything in that form).

What is reused: results with status ``ok`` or ``failed`` (a verdict on the code), except
``failed: not reproducible`` (re-verification found it non-deterministic). ``timeout`` and
``crashed`` depend on the machine's load and limits: such a program is evaluated again. A
reused result is the earlier one (score, metrics, reason, artifacts) with a ``cached`` artifact
naming where it came from (``same code as #12: ...`` or ``same fingerprint as #12: ...``) and
no evaluation time; ``evoforge status`` counts them ("N evaluations saved by the cache").

Concurrent duplicates: the same code submitted while the first is being evaluated waits for it
and shares its result (if that result is not reusable, one of the waiters evaluates). A program
whose fingerprint matches one still being evaluated keeps running and waits too: whichever ends
first answers.

Re-verification: the cache wraps :class:`~evoforge.executors.reverify.Reverifying` (the
fingerprint hook goes through it to the first evaluation only), so a stored result is one that
already went through re-verification: reused, it is either one that was re-verified as a
would-be best (same code: reproduced) or one that was not a would-be best when it was committed,
and since the best only improves, a reused score is never better than the run's best (a result
shared with a concurrent duplicate is committed with its original at the same time). A result
re-verification rejected is ``not reproducible`` and never reused.

One run, one evaluator: the cache lives in the run. On resume (:func:`with_cache`) it is
rebuilt from the stored programs evaluated under the same problem files (initial program and
evaluator), objective and result-relevant evaluation settings; the run's ``evaluation_cache``
metadata records which (a session that changes any of them starts the cache afresh; helper
files the evaluator imports are not part of the check).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import logging
import re
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from evoforge.errors import EvoforgeError
from evoforge.executors.base import Executor
from evoforge.program import EvalResult, Program, Status

if TYPE_CHECKING:
    from evoforge.config import Config
    from evoforge.problem import Problem
    from evoforge.run import Run

__all__ = ["Caching", "cache_context", "code_key", "reusable", "saved_by_cache", "with_cache"]

log = logging.getLogger("evoforge")

META_KEY = "evaluation_cache"
#: languages whose meaning survives dropping trailing whitespace and blank lines
_CODE_LANGUAGES = frozenset({"c", "cpp", "rust", "verilog", "javascript", "typescript", "go",
                             "java", "julia", "lua", "bash"})
_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
SAME_CODE = "same code as #"
SAME_FINGERPRINT = "same fingerprint as #"
#: evaluation settings that cannot change a result (how many at once, process reuse, what
#: happens to a would-be best afterwards, this cache's own mode)
_NOT_RESULTS = frozenset({"workers", "warm_pool", "persistent_evaluator", "preload", "reverify",
                          "reverify_tolerance", "noise_samples", "cache"})


def code_key(code: str, language: str = "python", mode: str = "canonical") -> str:
    """The cache key of ``code``: a SHA-256 of its canonical form (see the module docstring)."""
    form = "exact"
    text = code
    if mode != "exact" and language == "python":
        try:
            with warnings.catch_warnings():  # invalid escapes and the like: not our business
                warnings.simplefilter("ignore")
                tree = ast.dump(ast.parse(code))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass  # exact text: its result (a syntax error) is as deterministic
        else:
            # a coding declaration is a comment that changes how the file is read
            cookies = [m.group(1) for line in code.split("\n", 2)[:2]
                       if (m := _CODING.match(line))]
            form, text = "ast", "\n".join([*cookies[:1], tree])
    elif mode != "exact" and language in _CODE_LANGUAGES:
        form = "lines"
        text = "\n".join(line.rstrip() for line in code.splitlines() if line.strip())
    digest = hashlib.sha256(f"{language}\0{form}\0".encode())
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def reusable(status: Status, reason: str) -> bool:
    """Whether a result with this status and reason may answer another program: a verdict on
    the code (ok, failed), not on the machine (timeout, crashed) nor a non-reproducible one."""
    return status is Status.OK or (status is Status.FAILED
                                   and not reason.startswith("not reproducible:"))


def _reused(origin: int, result: EvalResult, how: str, what: str) -> EvalResult:
    note = f"{how}{origin}: its result reused, {what}"
    return replace(result, artifacts={**result.artifacts, "cached": note}, eval_time=0.0)


class _Entry:
    """A remembered result: the program it came from, and the result itself while it is held
    in memory (None once it is read back from the run's storage when needed)."""

    __slots__ = ("origin", "result")

    def __init__(self, origin: int, result: EvalResult | None) -> None:
        self.origin = origin
        self.result = result


class Caching(Executor):
    """Evaluates through ``inner`` unless the code (canonicalised for ``language`` by ``mode``,
    see :func:`code_key`) or the evaluator's fingerprint of it was evaluated before; then it
    answers with that result (see the module docstring). ``saved`` counts the answers by key
    (``code``, ``fingerprint``).

    ``load(program_id)``: the stored result of a committed program (None if there is none, or
    it is not reusable). With it, only the last ``keep`` results are held in memory and older
    ones are read back when a duplicate needs them, so a long run's cache costs a key and a
    program id per program; without it, every result is held."""

    def __init__(self, inner: Executor, *, language: str = "python", mode: str = "canonical",
                 load: Callable[[int], EvalResult | None] | None = None,
                 keep: int = 256) -> None:
        self.inner = inner
        self.language = language
        self.mode = mode
        self.load = load
        self.keep = int(keep)
        self.saved: Counter[str] = Counter()
        self._by_code: dict[str, _Entry] = {}
        self._by_fingerprint: dict[str, _Entry] = {}
        self._held: deque[_Entry] = deque()  # entries whose result is in memory, oldest first
        self._code_flights: dict[str, asyncio.Future[None]] = {}  # being evaluated
        self._fingerprint_flights: dict[str, asyncio.Future[None]] = {}

    @property
    def slots(self) -> int:
        return self.inner.slots

    def __getattr__(self, name: str) -> Any:  # the inner executor's extras (form, sandbox, ...)
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def aclose(self) -> None:
        if self.saved:
            log.info("evaluation cache: %d evaluation(s) saved (%d same code, %d same "
                     "fingerprint)", sum(self.saved.values()), self.saved["code"],
                     self.saved["fingerprint"])
        await self.inner.aclose()

    def seed(self, programs: Iterable[Program]) -> int:
        """Remember the results of ``programs`` (stored ones, in commit order); returns how many
        could answer later programs."""
        n = 0
        for p in programs:
            if p.status is Status.PENDING or not reusable(p.status, p.reason):
                continue
            result = EvalResult(status=p.status, metrics=p.metrics, score=p.score,
                                reason=p.reason, artifacts=p.artifacts, eval_time=p.eval_time)
            self._remember(code_key(p.code, self.language, self.mode), p.id, result,
                           stored=True)
            n += 1
        return n

    def _remember(self, key: str, program_id: int, result: EvalResult, *,
                  stored: bool = False) -> None:
        fp = result.artifacts.get("fingerprint", "")
        fp = fp if FINGERPRINT.fullmatch(fp) else ""
        if key in self._by_code and (not fp or fp in self._by_fingerprint):
            return  # nothing new: the first program with this code (and fingerprint) answers
        entry = _Entry(program_id, None if stored and self.load is not None else result)
        self._by_code.setdefault(key, entry)
        if fp:
            self._by_fingerprint.setdefault(fp, entry)
        if entry.result is not None and self.load is not None:
            self._held.append(entry)
            if len(self._held) > self.keep:  # long committed by now: read back when needed
                self._held.popleft().result = None

    def _answer(self, entry: _Entry, how: str, what: str) -> EvalResult | None:
        result = entry.result
        if result is None and self.load is not None:
            result = self.load(entry.origin)
        return None if result is None else _reused(entry.origin, result, how, what)

    async def evaluate(self, code: str, *, program_id: int = 0) -> EvalResult:
        key = code_key(code, self.language, self.mode)
        while True:
            known = self._by_code.get(key)
            reused = self._answer(known, SAME_CODE, "not evaluated again") if known else None
            if reused is not None:
                self.saved["code"] += 1
                return reused
            if known is not None:  # its stored result is gone (or no longer reusable)
                del self._by_code[key]
            first = self._code_flights.get(key)
            if first is None:
                break
            await asyncio.shield(first)  # then: its result, or this one evaluates
        flight = asyncio.get_running_loop().create_future()
        self._code_flights[key] = flight
        owned: list[str] = []  # fingerprints this evaluation is the first to have

        async def on_fingerprint(fp: str) -> EvalResult | None:
            return await self._fingerprint_hit(fp, owned)

        try:
            inner: Any = self.inner
            if getattr(inner, "fingerprints", False):  # it takes a hook (LocalExecutor)
                result = await inner.evaluate(code, program_id=program_id,
                                              fingerprint=on_fingerprint)
            else:
                result = await self.inner.evaluate(code, program_id=program_id)
            if reusable(result.status, result.reason):
                self._remember(key, program_id, result)
            return result
        finally:  # remembered (or not reusable): the duplicates waiting for it look again
            del self._code_flights[key]
            flight.set_result(None)
            for fp in owned:
                self._fingerprint_flights.pop(fp).set_result(None)

    async def _fingerprint_hit(self, fp: str, owned: list[str]) -> EvalResult | None:
        while True:
            known = self._by_fingerprint.get(fp)
            reused = (self._answer(known, SAME_FINGERPRINT, "not evaluated in full")
                      if known else None)
            if reused is not None:
                self.saved["fingerprint"] += 1
                return reused
            if known is not None:
                del self._by_fingerprint[fp]
            first = self._fingerprint_flights.get(fp)
            if first is None:
                self._fingerprint_flights[fp] = asyncio.get_running_loop().create_future()
                owned.append(fp)
                return None
            await asyncio.shield(first)


def saved_by_cache(programs: Iterable[Program]) -> Counter[str]:
    """Stored programs whose result the cache reused, by key (``code``, ``fingerprint``)."""
    saved: Counter[str] = Counter()
    for p in programs:
        note = p.artifacts.get("cached", "")
        if note.startswith(SAME_CODE):
            saved["code"] += 1
        elif note.startswith(SAME_FINGERPRINT):
            saved["fingerprint"] += 1
    return saved


def cache_context(problem: Problem, config: Config) -> str:
    """What a stored result depends on besides the program: the problem's files, the objective
    and the evaluation settings that can change a result."""
    evaluation = {k: v for k, v in config.evaluation.model_dump(mode="json").items()
                  if k not in _NOT_RESULTS}
    data = {"problem": problem.fingerprint(), "objective": config.objective.model_dump(
        mode="json"), "evaluation": evaluation}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def with_cache(executor: Executor, run: Run, config: Config, problem: Problem) -> Executor:
    """``executor`` wrapped in a :class:`Caching` (unless ``evaluation.cache`` is off) that
    knows the run's stored results evaluated in the same context (see :func:`cache_context`).
    Records this session's context in the run either way, so that a later session knows
    which stored results it may reuse."""
    storage = run.storage
    context = cache_context(problem, config)
    meta = storage.get_meta(META_KEY)
    same = (isinstance(meta, dict) and meta.get("context") == context
            and isinstance(meta.get("since"), int))
    if not same:  # results from here on are this context's
        since = storage.stats()["next_done_seq"]
        storage.set_meta(META_KEY, {"context": context, "since": since})
        if since:
            log.info("evaluation cache: the %d stored results were evaluated %s; none is "
                     "reused", since, "before the cache existed" if meta is None else
                     "with another problem, objective or evaluation settings")
    if config.evaluation.cache == "off":
        return executor

    def load(program_id: int) -> EvalResult | None:
        try:
            p = storage.get(program_id)
        except EvoforgeError:  # never stored (a custom caller's id): evaluate instead
            return None
        if not reusable(p.status, p.reason):
            return None
        return EvalResult(status=p.status, metrics=p.metrics, score=p.score, reason=p.reason,
                          artifacts=p.artifacts, eval_time=p.eval_time)

    cache = Caching(executor, language=problem.language, mode=config.evaluation.cache,
                    load=load)
    if same:
        since = meta["since"]  # type: ignore[index]
        cache.seed(p for p in storage.programs()
                   if p.done_seq is not None and p.done_seq >= since)
    return cache
