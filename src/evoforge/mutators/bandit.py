"""BanditMutator: picks, per proposal, one arm (an LLM model with an edit mode, the model-free
mutator, constant tuning) by Thompson sampling on how often each arm's children beat their
parent per unit of cost, and learns from every committed result.

Each arm keeps discounted counts of successes (a child that scored better than its parent) and
failures (worse, equal, failed, invalid) and its mean cost per pull. Cost is in USD where
prices are known, else in LLM calls (one unit per call); a pull that makes no LLM call (the
model-free mutator, a tuning trial) costs what its evaluation is worth: ``free_cost`` LLM calls,
at the mean price of the run's priced calls when there are any. A proposal goes to the arm
maximising ``theta / cost``, ``theta ~ Beta(1 + successes, 1 + failures)``.

Constant tuning (``tuning``, a :class:`~evoforge.mutators.tuning.TuningMutator` without an inner
mutator) is the arm ``tune``: when drawn, it makes a trial of its current session (a child of
the run's best with the literals the optimiser asked for; its parent, the best, is what it must
beat); when it cannot make one now (nothing to tune, or a finished session's last results are
still out), the proposal goes to the next arm in the draw's order. It observes every result,
like the other arms.

The counts are rebuilt on resume from the stored programs (each records its arm in
``mutation.arm``); arms no longer configured are dropped and new ones start from the prior, so a
change of models is safe. The tuning arm relearns the run's best the same way (its sessions, as
always, start afresh: see evoforge.mutators.tuning).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from evoforge.errors import ConfigError, EvoforgeError
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import Program, Status

if TYPE_CHECKING:
    from evoforge.config import Config
    from evoforge.mutators.tuning import TuningMutator

__all__ = ["TUNE_ARM", "ArmStats", "BanditMutator", "arms_from_config"]

TUNE_ARM = "tune"  # the name of the constant-tuning arm (``mutation.arm``)


@dataclass
class ArmStats:
    successes: float = 0.0  # discounted
    failures: float = 0.0
    pulls: int = 0  # undiscounted, for the record
    usd: float = 0.0  # spent on priced LLM calls
    priced: int = 0  # pulls that were priced LLM calls
    calls: int = 0  # pulls that were LLM calls with no price known
    free: int = 0  # pulls that made no LLM call (their evaluation is the cost)

    def mean_cost(self, call: float, free_cost: float) -> float:
        """Mean cost per pull, an LLM call (and the prior, which counts as one pull) valued at
        ``call``, a pull without one at ``free_cost`` calls."""
        total = self.usd + (self.calls + free_cost * self.free + 1) * call
        return total / (self.pulls + 1)


class BanditMutator(Mutator):
    """Chooses among ``arms`` (name -> mutator) per proposal; see the module docstring.
    ``minimize``: a lower score is the better one. ``discount`` in (0, 1] forgets old results
    (the best operator early is often not the best late)."""

    name = "bandit"

    def __init__(self, arms: Mapping[str, Mutator], *, minimize: bool = False,
                 discount: float = 0.99, free_cost: float = 0.1,
                 tuning: TuningMutator | None = None) -> None:
        if not arms:
            raise ConfigError("the bandit needs at least one arm")
        if not 0 < discount <= 1:
            raise ConfigError(f"mutator.bandit_discount must be in (0, 1], got {discount}")
        if TUNE_ARM in arms:
            raise ConfigError(f"the bandit arm name {TUNE_ARM!r} is the tuning arm's")
        self.arms = dict(arms)
        self.tuning = tuning
        self.uses_llm = any(m.uses_llm for m in self.arms.values())
        self.minimize = minimize
        self.discount = float(discount)
        self.free_cost = float(free_cost)
        # the configured arms, then the tuning arm: the rng draws in this order
        self.stats = {a: ArmStats() for a in (*self.arms, *([TUNE_ARM] if tuning else []))}
        self.declined = 0  # draws of the tuning arm that could make no trial (for tests, logs)
        self._scores: dict[int, float | None] = {}  # program id -> score (None: not ok)

    # ------------------------------------------------------------------ choosing
    def call_price(self) -> float:
        """What one LLM call is worth: the mean USD of the priced calls so far, else 1 unit."""
        n = sum(s.priced for s in self.stats.values())
        return sum(s.usd for s in self.stats.values()) / n if n else 1.0

    def rank(self, rng: random.Random) -> list[str]:
        """Every arm, the one for the next proposal first (deterministic given ``rng``)."""
        call = self.call_price()
        values = []
        for arm, s in self.stats.items():  # in a fixed order: the rng draws the same sequence
            theta = rng.betavariate(1.0 + s.successes, 1.0 + s.failures)
            values.append((-theta / max(s.mean_cost(call, self.free_cost), 1e-12), arm))
        return [arm for _, arm in sorted(values, key=lambda v: v[0])]  # stable: ties in order

    def choose(self, rng: random.Random) -> str:
        """The arm for the next proposal (deterministic given ``rng``)."""
        return self.rank(rng)[0]

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        for arm in self.rank(random.Random(request.rng.random())):
            if arm == TUNE_ARM:
                trial = self.tuning.trial(request) if self.tuning is not None else None
                if trial is None:  # no trial can be made now: the next arm in the draw's order
                    self.declined += 1
                    continue
                out = trial
            else:
                out = await self.arms[arm].mutate(request)
            return replace(out, info=replace(out.info, arm=arm))
        raise EvoforgeError("every bandit arm declined this proposal; configure at least one "
                            "arm that always answers (an LLM model or mutator.bandit_model_free)")

    # ------------------------------------------------------------------ learning
    def observe(self, program: Program) -> None:
        self._scores[program.id] = program.score if program.status is Status.OK else None
        arm = program.mutation.arm
        for m in self.arms.values():
            m.observe(program)
        if self.tuning is not None:
            self.tuning.observe(program)
        if arm is None or arm not in self.stats or not program.parent_ids:
            return
        parent = self._scores.get(program.parent_ids[0])
        won = (program.status is Status.OK and program.score is not None and parent is not None
               and (program.score < parent if self.minimize else program.score > parent))
        for s in self.stats.values():  # forget a little of everything, then count this pull
            s.successes *= self.discount
            s.failures *= self.discount
        s = self.stats[arm]
        s.pulls += 1
        usd = program.mutation.cost
        if usd > 0:
            s.usd += usd
            s.priced += 1
        elif program.mutation.mutator == "llm" or program.mutation.attempts:
            s.calls += 1
        else:
            s.free += 1
        if won:
            s.successes += 1.0
        else:
            s.failures += 1.0

    def restore(self, programs: Iterable[Program]) -> None:
        """Rebuild the counts from stored programs in commit order (resume)."""
        for p in programs:
            if p.status is not Status.PENDING:
                self.observe(p)

    def summary(self) -> list[tuple[str, int, float, float]]:
        """(arm, pulls, success rate (discounted), mean cost per pull, in USD where prices are
        known, else LLM calls) for status and logs."""
        out = []
        call = self.call_price()
        for arm, s in self.stats.items():
            n = s.successes + s.failures
            spent = s.usd + (s.calls + self.free_cost * s.free) * call
            out.append((arm, s.pulls, s.successes / n if n else 0.0,
                        spent / s.pulls if s.pulls else 0.0))
        return out

    async def aclose(self) -> None:
        errors = []
        for m in (*self.arms.values(), *([self.tuning] if self.tuning else [])):
            try:
                await m.aclose()
            except Exception as e:  # noqa: BLE001 - close every arm, then report
                errors.append(e)
        if errors:
            raise errors[0]


def arms_from_config(cfg: Config) -> dict[str, Mutator]:
    """One arm per configured LLM model and edit mode (``mutator.bandit_edit_modes``), plus
    the model-free mutator (``mutator.bandit_model_free``)."""
    from evoforge.mutators.llm import LLMMutator
    from evoforge.mutators.model_free import ModelFreeMutator

    arms: dict[str, Mutator] = {}
    per_model = [(m.name, cfg.llm.model_copy(update={"models": [m]})) for m in cfg.llm.models]
    if not per_model and cfg.llm.replay:
        per_model = [("replay", cfg.llm)]  # a recording answers whatever model was asked
    for name, llm_cfg in per_model:
        for mode in cfg.mutator.bandit_edit_modes:
            arms[f"{name}:{mode}"] = LLMMutator.from_config(cfg, llm_config=llm_cfg,
                                                            edit_mode=mode)
    if cfg.mutator.bandit_model_free or not arms:
        arms["model_free"] = ModelFreeMutator(max_edits=cfg.mutator.max_edits)
    return arms
