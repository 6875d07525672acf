"""The Mutator interface: turns a parent (+ partners + context) into child code."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evoforge.program import MutationInfo, Program

if TYPE_CHECKING:
    from evoforge.prompting import PromptVariant


@dataclass(frozen=True)
class MutationRequest:
    parent: Program
    rng: random.Random  # derived from the run seed and the proposal id
    others: tuple[Program, ...] = ()  # crossover partners
    context: tuple[Program, ...] = ()  # inspirations for the prompt
    task: str = ""  # task description (problem README)
    language: str = "python"
    proposal_id: int = 0
    # the instructions to give the LLM when the prompts evolve (evoforge.mutators.meta_prompt);
    # None: the templates' built-in text
    prompt_variant: PromptVariant | None = None


@dataclass(frozen=True)
class MutationOutcome:
    """``code`` is None when no child could be made; ``info.note`` then says why."""

    code: str | None
    info: MutationInfo = field(default_factory=MutationInfo)
    # the LLM exchange behind it (prompt messages, raw reply, ...), stored apart from the
    # program (Storage.add_exchange) for `evoforge show --prompt/--reply`; None: none was made
    exchange: dict[str, Any] | None = None
    # the program the child was made from when it is not the request's parent (a tuning trial
    # of the run's best): the child's lineage names it instead of the proposal's selection
    parent: Program | None = None


class Mutator(ABC):
    name: str = "mutator"
    uses_llm: bool = False

    @abstractmethod
    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        """Produce a child. Never raises for a bad reply or failed edit: returns code=None with
        the reason in ``info.note`` (tokens still counted). May raise LLMError only for
        permanent failures the run must stop on (e.g. authentication)."""

    def observe(self, program: Program) -> None:
        """Every terminal program of the run, as it is committed (children of this mutator and
        of others, the initial program, invalid ones; on resume, not the earlier ones). For
        mutators that learn from results (a bandit, a numeric optimiser); default: nothing."""
        return None

    def restore(self, programs: Iterable[Program]) -> None:
        """On resume, before the first proposal: the run's stored terminal programs in commit
        order, for a mutator whose state is learnt from results (override ``observe`` and this
        together). Called only for mutators that override it: the default does nothing."""
        return None

    async def aclose(self) -> None:
        return None
