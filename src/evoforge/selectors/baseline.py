"""Baseline selectors: random sampling from the initial program, and greedy hill climbing.

They exist so that a search strategy can be compared against the plain alternatives
(the "is evolution doing anything?" check).
"""

from __future__ import annotations

import bisect
import random
from typing import ClassVar

from evoforge.config import SelectorConfig
from evoforge.errors import ConfigError, EvoforgeError
from evoforge.program import Program, Status
from evoforge.selectors.base import Selection, Selector

_EMPTY = ("cannot select a parent: the population is empty. The initial program must be "
          "evaluated first (status ok with a score) and added with add() before select().")


class RandomSamplingSelector(Selector):
    """Every proposal mutates the initial program (the first ok program added): independent
    samples, best of N. No context, no partners, island 0.

    Registry names ``random_sampling`` and ``best_of_n``.
    """

    registry_aliases: ClassVar[tuple[str, ...]] = ("best_of_n",)
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, *, minimize: bool = False) -> None:
        self.minimize = minimize
        self._initial = None
        self._ids: set[int] = set()
        self._best: Program | None = None

    @classmethod
    def from_config(cls, cfg: SelectorConfig, *, minimize: bool = False
                    ) -> RandomSamplingSelector:
        return cls(minimize=minimize)

    def __repr__(self) -> str:
        return f"RandomSamplingSelector(minimize={self.minimize}, programs={len(self._ids)})"

    def add(self, program: Program) -> None:
        if program.status != Status.OK or program.score is None or program.id in self._ids:
            return
        self._ids.add(program.id)
        if self._initial is None:
            self._initial = program
        if self._best is None or self.fitness(program) > self.fitness(self._best):
            self._best = program

    def select(self, rng: random.Random) -> Selection:
        if self._initial is None:
            raise EvoforgeError(_EMPTY)
        return Selection(parent=self._initial, island=0)

    def best(self) -> Program | None:
        return self._best

    def __len__(self) -> int:
        return len(self._ids)


class GreedySelector(Selector):
    """Hill climbing: the parent is always the current best; context is the next best few.

    Registry name ``greedy``. Ties in fitness go to the program added last (the newest), so a
    plateau is crossed by drift, as in the islands.
    """

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, *, minimize: bool = False, num_context: int = 3) -> None:
        if num_context < 0:
            raise ConfigError(f"GreedySelector: num_context must be >= 0 (got {num_context}); "
                              "fix selector.num_context in the config.")
        self.minimize = minimize
        self._initial = None
        self.num_context = num_context
        self._programs: dict[int, Program] = {}
        # (-fitness, -add order, id), best first: of equals, the newest
        self._top: list[tuple[float, int, int]] = []

    @classmethod
    def from_config(cls, cfg: SelectorConfig, *, minimize: bool = False) -> GreedySelector:
        return cls(minimize=minimize, num_context=cfg.num_context)

    def __repr__(self) -> str:
        return (f"GreedySelector(minimize={self.minimize}, num_context={self.num_context}, "
                f"programs={len(self._programs)})")

    def add(self, program: Program) -> None:
        if program.status != Status.OK or program.score is None or program.id in self._programs:
            return
        key = (-self.fitness(program), -len(self._programs), program.id)
        self._programs[program.id] = program
        if self._initial is None:
            self._initial = program
        cap = self.num_context + 1
        if len(self._top) >= cap and key >= self._top[-1]:
            return
        bisect.insort(self._top, key)
        if len(self._top) > cap:
            self._top.pop()

    def select(self, rng: random.Random) -> Selection:
        if not self._top:
            raise EvoforgeError(_EMPTY)
        ranked = [self._programs[k[2]] for k in self._top]
        return Selection(parent=ranked[0], context=tuple(ranked[1:]), island=0)

    def best(self) -> Program | None:
        return self._programs[self._top[0][2]] if self._top else None

    def __len__(self) -> int:
        return len(self._programs)
