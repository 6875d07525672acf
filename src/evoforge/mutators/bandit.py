"""BanditMutator: picks, per proposal, one arm (an LLM model with an edit mode, the model-free
mutator, ...) by Thompson sampling on how often each arm's children beat their parent per unit
of cost, and learns from every committed result.

Each arm keeps discounted counts of successes (a child that scored better than its parent) and
failures (worse, equal, failed, invalid) and its mean cost per pull (USD where prices are known,
else one unit per LLM call; a model-free pull costs ``free_cost`` units). A proposal goes to the
arm maximising ``theta / cost``, ``theta ~ Beta(1 + successes, 1 + failures)``. The counts are
rebuilt on resume from the stored programs (each records its arm in ``mutation.arm``); arms no
longer configured are dropped and new ones start from the prior, so a change of models is safe.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from evoforge.errors import ConfigError
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import Program, Status

if TYPE_CHECKING:
    from evoforge.config import Config

__all__ = ["ArmStats", "BanditMutator", "arms_from_config"]


@dataclass
class ArmStats:
    successes: float = 0.0  # discounted
    failures: float = 0.0
    pulls: int = 0  # undiscounted, for the record
    cost: float = 0.0  # total cost units spent

    def mean_cost(self, prior: float) -> float:
        return (self.cost + prior) / (self.pulls + 1)  # the prior counts as one pull


class BanditMutator(Mutator):
    """Chooses among ``arms`` (name -> mutator) per proposal; see the module docstring.
    ``minimize``: a lower score is the better one. ``discount`` in (0, 1] forgets old results
    (the best operator early is often not the best late)."""

    name = "bandit"

    def __init__(self, arms: Mapping[str, Mutator], *, minimize: bool = False,
                 discount: float = 0.99, free_cost: float = 0.1) -> None:
        if not arms:
            raise ConfigError("the bandit needs at least one arm")
        if not 0 < discount <= 1:
            raise ConfigError(f"mutator.bandit_discount must be in (0, 1], got {discount}")
        self.arms = dict(arms)
        self.uses_llm = any(m.uses_llm for m in self.arms.values())
        self.minimize = minimize
        self.discount = float(discount)
        self.free_cost = float(free_cost)
        self.stats = {a: ArmStats() for a in self.arms}
        self._scores: dict[int, float | None] = {}  # program id -> score (None: not ok)

    # ------------------------------------------------------------------ choosing
    def _unit_cost(self, arm: str, usd: float, llm: bool) -> float:
        if usd > 0:
            return usd
        return 1.0 if llm else self.free_cost

    def choose(self, rng: random.Random) -> str:
        """The arm for the next proposal (deterministic given ``rng``)."""
        priced = [s for s in self.stats.values() if s.pulls and s.cost > 0]
        prior = (sum(s.cost for s in priced) / sum(s.pulls for s in priced)) if priced else 1.0
        best, pick = -math.inf, next(iter(self.arms))
        for arm in self.arms:  # in the configured order: the rng draws the same sequence
            s = self.stats[arm]
            theta = rng.betavariate(1.0 + s.successes, 1.0 + s.failures)
            value = theta / max(s.mean_cost(prior), 1e-9)
            if value > best:
                best, pick = value, arm
        return pick

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        arm = self.choose(random.Random(request.rng.random()))
        out = await self.arms[arm].mutate(request)
        return replace(out, info=replace(out.info, arm=arm))

    # ------------------------------------------------------------------ learning
    def observe(self, program: Program) -> None:
        self._scores[program.id] = program.score if program.status is Status.OK else None
        arm = program.mutation.arm
        for m in self.arms.values():
            m.observe(program)
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
        s.cost += self._unit_cost(arm, program.mutation.cost,
                                  program.mutation.mutator == "llm")
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
        """(arm, pulls, success rate (discounted), mean cost units) for status and logs."""
        out = []
        for arm, s in self.stats.items():
            n = s.successes + s.failures
            out.append((arm, s.pulls, s.successes / n if n else 0.0,
                        s.cost / s.pulls if s.pulls else 0.0))
        return out

    async def aclose(self) -> None:
        errors = []
        for m in self.arms.values():
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
