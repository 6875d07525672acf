"""The Selector interface: picks parents and context programs from the population."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from evoforge.program import Program


@dataclass(frozen=True)
class Selection:
    """What a selector picked for one proposal."""

    parent: Program
    others: tuple[Program, ...] = ()  # extra parents (crossover partners)
    context: tuple[Program, ...] = ()  # programs shown to the LLM as inspiration
    island: int = 0  # island the child will belong to
    # the selector's branch that picked the parent (True: explored, False: exploited; None:
    # not told); stored with the child (MutationInfo.explored) so credit survives resume
    explored: bool | None = None


@dataclass
class Selector(ABC):
    """Population index, kept in memory and rebuilt from Storage on resume by replaying
    ``add`` in commit order. ``add`` is called for every terminal program, in commit order;
    selectors ignore programs that are not ``ok``. ``minimize`` flips the score direction.
    """

    minimize: bool = False
    _initial: Program | None = field(default=None, init=False, repr=False)

    def fitness(self, program: Program) -> float:
        assert program.score is not None
        return -program.score if self.minimize else program.score

    def features(self, program: Program) -> dict[str, float]:
        """Feature values this selector indexes the program by (stored with the program)."""
        return {}

    def run_meta(self) -> tuple[str, Any] | None:
        """``(key, JSON value)`` of selector state the run keeps in its metadata (for
        ``evoforge status``), when it changed since the last call; None otherwise (the
        default: nothing to keep). The run asks after every ``add`` and after a rebuild."""
        return None

    @abstractmethod
    def add(self, program: Program) -> None:
        """Index a terminal program (ignore it unless ``status`` is ok)."""

    @abstractmethod
    def select(self, rng: random.Random) -> Selection:
        """Pick a parent (and partners and context). Must be fast: O(1) or O(log n) in the
        population size. Raises EvoforgeError if the population is empty."""

    @abstractmethod
    def best(self) -> Program | None:
        """The best ok program so far."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of ok programs indexed."""

    def __bool__(self) -> bool:
        """A selector is always true, even while empty: ``selector or default`` (as in
        ``evolve(selector=...)``) must not swap a caller's new, empty selector for the
        config's (``__len__`` alone would make an empty one false)."""
        return True
