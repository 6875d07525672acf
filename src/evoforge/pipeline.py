"""The asynchronous controller: a thin loop over ``Run.ask`` / ``Run.tell``.

LLM requests in flight (``llm.concurrency``) and evaluation slots (``evaluation.workers``) are
independent; ``pipeline.max_in_flight`` bounds the proposals outstanding at once, and
``pipeline.staleness`` bounds the results committed between a proposal and its child (no new
proposal is asked while the oldest outstanding one could otherwise exceed it). With
``pipeline.just_in_time`` a proposal is asked only when its child will be needed: not while
the children already made or on their way would keep every evaluation slot busy until a new
LLM reply could arrive (Little's law over the measured LLM and evaluation times), so when the
evaluations are the bottleneck parents are picked from fresher results at no cost in throughput.
When the LLM is the bottleneck, requests are paced (``pipeline.pace``: spread over the median
reply time rather than sent in a burst whenever slots free together), so each pick sees the
results of the replies before it instead of being one of a burst of picks made on the same
information; optionally a free LLM slot also waits for children about to be scored
(``pipeline.results_first``).
The controller is the only writer to Storage. Evaluations are dispatched in proposal order;
with the model-free mutator and one evaluation slot the whole run is deterministic for a given
seed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evoforge.errors import LLMError
from evoforge.executors.base import Executor
from evoforge.invocation import command
from evoforge.mutators.base import MutationOutcome, Mutator
from evoforge.program import EvalResult, Program, Status
from evoforge.run import Proposal, Run

log = logging.getLogger("evoforge")

_TIMES_KEPT = 16  # recent LLM and evaluation durations kept (just in time: their means)
#: pace: a request waits this share of (median reply time / llm.concurrency) after the one before
#: (below 1, so pacing never caps the request rate below llm.concurrency per reply time)
_PACE = 0.9

# Reasons a run stops, and whether that means it did its job.
#: Reasons that are failures; any other (the budget, a user's StopWhen) means the run did its job.
FAILURES = {"interrupted", "llm_failures", "llm_error", "initial_failed", "invalid_children"}
MESSAGES = {
    "max_programs": "reached max_programs",
    "target_score": "reached target_score",
    "max_time": "reached max_time",
    "max_cost": "reached max_cost",
    "interrupted": "interrupted",
    "llm_failures": "too many consecutive LLM failures",
    "llm_error": "the LLM endpoint refused the request",
    "initial_failed": "the initial program did not evaluate ok",
    "invalid_children": "the mutator made no usable child for too long",
}
#: After this many invalid children in a row the loop slows down (backing off up to 0.1 s per
#: proposal) and says why once; after INVALID_STOP in a row the run stops.
INVALID_BACKOFF = 50
INVALID_STOP = 500


@dataclass(frozen=True)
class RunOutcome:
    reason: str
    message: str
    best: Program | None

    @property
    def ok(self) -> bool:
        return self.reason not in FAILURES


class Pipeline:
    def __init__(self, run: Run, mutator: Mutator, executor: Executor,
                 on_event: Callable[[Program], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run = run
        self.clock = clock
        self.mutator = mutator
        self.executor = executor
        self.on_event = on_event or (lambda p: None)
        cfg = run.config
        self.capacity = cfg.in_flight(mutator.uses_llm)
        self.slow_start = cfg.pipeline.slow_start
        self.just_in_time = cfg.pipeline.just_in_time
        self.pace = cfg.pipeline.pace
        self.results_first = cfg.pipeline.results_first
        self.last_send: float | None = None  # when the latest LLM request was sent
        self.wake: float | None = None  # seconds until a held request may go (pace)
        self.started: dict[asyncio.Task[Any], float] = {}  # LLM requests and evaluations
        self.llm_times: deque[float] = deque(maxlen=_TIMES_KEPT)  # their recent durations
        self.eval_times: deque[float] = deque(maxlen=_TIMES_KEPT)
        self.staleness = max(cfg.staleness(mutator.uses_llm), 1)
        self.llm_slots = cfg.llm.concurrency if mutator.uses_llm else self.capacity
        self.ready: deque[Program] = deque()
        self.mut_tasks: dict[asyncio.Task[Any], Proposal] = {}
        self.eval_tasks: dict[asyncio.Task[Any], Program] = {}
        self.invalid_streak = 0  # children in a row that were invalid (no usable edit)
        self.last_invalid = ""
        self._warned_invalid = False

    def in_flight(self) -> int:
        self.run.llm_in_flight = len(self.mut_tasks)  # kept current for the cost limit
        return len(self.mut_tasks) + len(self.ready) + len(self.eval_tasks)

    async def _evaluate_now(self, program: Program) -> Program:
        result = await self.executor.evaluate(program.code, program_id=program.id)
        done = self.run.tell(program, result)
        self._committed(done)
        return done

    async def _start(self, stop: asyncio.Event) -> RunOutcome | None:
        """Make sure the initial program is evaluated; queue resumed pending work. A stop
        (Ctrl-C) during the initial evaluation ends it at once: it stays pending."""
        run = self.run
        pending = run.pending()
        if len(run.selector) == 0:
            initial = next((p for p in pending if p.id == 0), None)
            if initial is None and run.tally.done == 0:
                initial = run.add_initial()
            if initial is not None:
                pending = [p for p in pending if p.id != 0]
                first = asyncio.ensure_future(self._evaluate_now(initial))
                self._early_proposal(initial)
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait([first, stopped], return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not first.done():
                    first.cancel()
                    await asyncio.gather(first, return_exceptions=True)
                    return self._interrupted()
                done = first.result()
            else:
                done = None
            if done is None or done.status is not Status.OK:
                why = (f"{done.status.value}: {done.reason}" if done else "no ok program stored")
                detail = ""
                if done is not None:
                    for key in ("traceback", "stderr"):
                        if done.artifacts.get(key):
                            detail += f"\n--- {key} ---\n{done.artifacts[key]}"  # capped once
                return RunOutcome("initial_failed", f"the initial program did not evaluate ok "
                                  f"({why}); fix the evaluator or the program and start a new run"
                                  f"{detail}", run.best)
        self.ready.extend(pending)
        return None

    def _early_proposal(self, initial: Program) -> None:
        """One LLM proposal for the initial program while it is evaluated, so the first reply
        is not held back by the first evaluation (minutes, for some problems). Only one: the
        population must not fill with children of the initial program; its prompt says the
        score is not known yet. Cancelled (not stored) if the initial program fails."""
        run = self.run
        if (not self.mutator.uses_llm or not run.config.pipeline.early_proposal
                or run.stop_reason(1) is not None or not run.can_afford_call()):
            return
        proposal = run.ask_with(initial)
        mtask = asyncio.create_task(self.mutator.mutate(run.mutation_request(proposal)))
        self.mut_tasks[mtask] = proposal
        self.started[mtask] = self.clock()

    async def execute(self, stop: asyncio.Event) -> RunOutcome:
        try:
            return await self._execute(stop)
        finally:
            for t in [*self.mut_tasks, *self.eval_tasks]:
                t.cancel()
            await asyncio.gather(*self.mut_tasks, *self.eval_tasks, return_exceptions=True)
            await self.executor.aclose()

    async def _execute(self, stop: asyncio.Event) -> RunOutcome:
        run = self.run
        early = await self._start(stop)
        if early is not None:
            return early
        stopping: str | None = None
        fatal: str | None = None  # message of an error the run must stop on (reason llm_error)
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            while True:
                if stop.is_set():
                    return self._interrupted()
                if self.invalid_streak >= INVALID_STOP and stopping is None and fatal is None:
                    fatal = (f"the last {self.invalid_streak} children were all invalid (last: "
                             f"{self.last_invalid}); the mutator cannot make usable edits of "
                             "this program: check its EVOLVE-BLOCK regions, or the LLM's replies "
                             f"(`{command()} show {run.run_dir} ID`)")
                    stopping = "invalid_children"
                    for t in self.mut_tasks:
                        t.cancel()
                    self.ready.clear()
                elif self.invalid_streak >= INVALID_BACKOFF and stopping is None:
                    await self._back_off(stop_task)
                    if stop.is_set():
                        return self._interrupted()
                reason = "llm_error" if fatal else run.stop_reason(self.in_flight())
                if reason is None:
                    await self._fill()
                    reason = run.stop_reason(self.in_flight())
                if reason is not None and reason != "max_programs" and stopping is None:
                    # Soft stop: no new LLM calls or evaluations; running evaluations finish;
                    # queued children stay pending in Storage and are evaluated on resume.
                    stopping = reason
                    for t in self.mut_tasks:
                        t.cancel()
                    self.ready.clear()
                self._dispatch(stopping is not None)
                waiting = [*self.mut_tasks, *self.eval_tasks]
                if not waiting:
                    if stopping is None and fatal is None and run.stop_reason(0) is None:
                        continue  # nothing in flight, more to ask for: every child was invalid
                    final = stopping or run.stop_reason(0) or "max_programs"
                    msg = fatal or MESSAGES.get(final, f"stopped: {final}")
                    if final == "llm_failures":
                        msg += f" (last: {run.tally.last_llm_error}); check llm.base_url and the model"
                    return RunOutcome(final, msg, run.best)
                timeout = None
                if run.stop.timed and stopping is None:  # wake up to ask timed stops
                    left = run.stop.remaining(run)
                    timeout = max(0.01, min(left if left is not None else 1.0, 1.0))
                if self.wake is not None and stopping is None:  # a paced request's turn
                    timeout = min(timeout if timeout is not None else self.wake, self.wake)
                done, _ = await asyncio.wait([*waiting, stop_task], timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                for mt in sorted((t for t in done if t in self.mut_tasks),
                                 key=lambda t: self.mut_tasks[t].id):
                    proposal = self.mut_tasks.pop(mt)
                    if mt.cancelled():
                        self.started.pop(mt, None)
                        continue
                    self._timed(mt, self.llm_times)
                    exc = mt.exception()
                    if isinstance(exc, LLMError):
                        fatal = f"LLM error: {exc}"
                        continue
                    if exc is not None:
                        raise exc
                    self._child(proposal, mt.result())
                for et in sorted((t for t in done if t in self.eval_tasks),
                                 key=lambda t: self.eval_tasks[t].id):
                    program = self.eval_tasks.pop(et)
                    if et.cancelled():
                        self.started.pop(et, None)
                        continue
                    self._timed(et, self.eval_times)
                    self._committed(run.tell(program, et.result()))
        finally:
            stop_task.cancel()

    def _too_stale(self) -> bool:
        """Whether asking a new proposal could let more than ``staleness`` results commit
        before the oldest outstanding one returns: every proposal in flight may add one, so
        no new ask while age(oldest) + (in flight - 1) reaches the bound."""
        if not self.mut_tasks:
            return False
        oldest = min(p.view for p in self.mut_tasks.values())
        age = self.run.tally.done - oldest
        return age + self.in_flight() - 1 >= self.staleness

    def _timed(self, task: asyncio.Task[Any], times: deque[float]) -> None:
        """Keep a finished task's duration among the recent ones of its kind."""
        start = self.started.pop(task, None)
        if start is not None:
            times.append(max(self.clock() - start, 0.0))

    def _needed(self) -> bool:
        """Just in time: whether a new proposal's child would be needed when it arrives, i.e.
        the children waiting for a slot plus the LLM requests in flight are fewer than the
        slots free now plus what the slots will take while a new request runs (``slots x
        LLM time / evaluation time``), plus one to spare against variance. Model-free children
        come at once: exactly the free slots are filled. The times are the means of the last 16
        of each kind (Little's law wants means: with instant tuning trials among slow LLM
        requests a median would starve the LLM slots; a hung request errs toward the window);
        until both are measured, the window alone decides."""
        if not self.just_in_time:
            return True
        free = max(self.executor.slots - len(self.eval_tasks), 0)
        supply = len(self.ready) + len(self.mut_tasks)
        if not self.mutator.uses_llm:
            return supply < free
        if not self.llm_times or not self.eval_times:
            return True
        llm, evaluation = statistics.fmean(self.llm_times), statistics.fmean(self.eval_times)
        soon = self.executor.slots * llm / max(evaluation, 1e-3)
        return supply < free + soon + 1

    def _held(self) -> bool:
        """Whether a new LLM request waits, although a slot is free (LLM runs, once both times
        are measured; medians of the recent ones, so one hung request does not slow the run):

        * results first: the children already made (waiting for a slot or being scored) will
          all be scored within ``results_first`` of a reply time; the loop wakes as each lands.
          A request sent now would pick its parent without them, and waiting costs the slot at
          most that share of a reply time;
        * pace: another request is in flight and the latest was sent less than 0.9 x reply time
          / ``llm.concurrency`` ago (``wake`` says when to look again). Requests freed together
          (the replies of one burst) go one by one, each after the results before it, and keep
          that spacing. With regular reply times the rate is unchanged (a burst waits less than
          one reply time in all, once); when they vary widely, replies that arrive together
          wait their turn (about 5% of the throughput in benchmarks/pipeline_throughput.py
          with ``--jitter`` equal to the latency)."""
        self.wake = None
        if not self.mutator.uses_llm or not self.llm_times or not self.eval_times:
            return False
        llm = statistics.median(self.llm_times)
        queued = len(self.ready) + len(self.eval_tasks)
        if queued and self.results_first > 0:
            rounds = math.ceil(queued / max(self.executor.slots, 1))
            if rounds * statistics.median(self.eval_times) <= self.results_first * llm:
                return True
        if self.pace and self.mut_tasks and self.last_send is not None:
            left = self.last_send + _PACE * llm / max(self.llm_slots, 1) - self.clock()
            if left > 0:
                self.wake = left
                return True
        return False

    def _window(self) -> int:
        """How many proposals may be outstanding now: ``capacity``, or with ``slow_start``
        twice the population (at least 2 + the results of this session) until that reaches
        it, so the first window is not all children of the initial program."""
        if not self.slow_start:
            return self.capacity
        grown = max(2 * len(self.run.selector), 2 + self.run.tally.done_this_session)
        return min(self.capacity, grown)

    async def _fill(self) -> None:
        run = self.run
        self.wake = None
        while (self.in_flight() < self._window() and len(self.mut_tasks) < self.llm_slots
               and not self._too_stale() and self._needed() and not self._held()
               and run.stop_reason(self.in_flight()) is None
               and (not self.mutator.uses_llm or run.can_afford_call())):
            proposal = run.ask()
            request = run.mutation_request(proposal)
            if self.mutator.uses_llm:
                mtask = asyncio.create_task(self.mutator.mutate(request))
                self.mut_tasks[mtask] = proposal
                self.started[mtask] = self.last_send = self.clock()
            else:
                # Model-free mutation is instant: do it inline, which keeps the run deterministic.
                self._child(proposal, await self.mutator.mutate(request))
                await asyncio.sleep(0)  # it never suspends: let Ctrl-C and I/O in
                if self.invalid_streak >= INVALID_BACKOFF:
                    return  # the loop backs off (or stops) before asking again

    def _child(self, proposal: Proposal, outcome: MutationOutcome) -> None:
        program = self.run.record_child(proposal, outcome)
        if program.status is Status.PENDING:
            self.invalid_streak = 0
            self.ready.append(program)
        else:
            if program.status is Status.INVALID:
                self.invalid_streak += 1
                self.last_invalid = program.reason
            self._committed(program)

    def _committed(self, program: Program) -> None:
        """A terminal program was committed: the mutator learns of it, then the caller."""
        self.mutator.observe(program)
        self.on_event(program)

    async def _back_off(self, stop_task: asyncio.Future[Any]) -> None:
        """Nearly every child is invalid: wait (up to 0.1 s, longer the longer it lasts, or
        until a stop) instead of flooding the run with invalid rows; say why once."""
        if not self._warned_invalid:
            self._warned_invalid = True
            log.warning("the last %d children were all invalid (last: %s); slowing down, and "
                        "stopping after %d in a row", self.invalid_streak, self.last_invalid,
                        INVALID_STOP)
        pause = min(0.1, 0.01 * 2 ** ((self.invalid_streak - INVALID_BACKOFF) // 25))
        await asyncio.wait([stop_task], timeout=pause)

    def _interrupted(self) -> RunOutcome:
        return RunOutcome("interrupted", "interrupted; everything finished is committed; "
                          f"continue with `{command()} resume {self.run.run_dir}`", self.run.best)

    def _dispatch(self, stopping: bool) -> None:
        while not stopping and self.ready and len(self.eval_tasks) < self.executor.slots:
            program = self.ready.popleft()
            etask = asyncio.create_task(self._evaluate(program))
            self.eval_tasks[etask] = program
            self.started[etask] = self.clock()

    async def _evaluate(self, program: Program) -> EvalResult:
        return await self.executor.evaluate(program.code, program_id=program.id)
