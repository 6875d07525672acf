"""Meta-prompt evolution: the LLM's instructions form a small population of variants that is drawn
from per proposal, scored by the improvement their children made, and rewritten by the LLM.

A variant (:class:`~evoforge.prompting.PromptVariant`) is the opening of the system message and
the guidance paragraph (how to work); the templates add the fixed rules (answer format, EVOLVE
markers) around it, so no variant can break an edit. The first variant, ``v0``, is the built-in
text: a run whose draws all fall on it sends byte for byte the prompts of a run without
evolution.

- **Drawing.** :class:`PromptEvolution` wraps the run's mutator; each proposal draws the variant
  maximising ``fitness + exploration * sqrt(ln(1 + W) / (1 + w + outstanding))`` (UCB; ``w`` its
  discounted count of children, ``W`` the population's, ``outstanding`` its draws not yet
  committed; ties broken by the proposal's rng) and hands it to the inner mutator in
  ``MutationRequest.prompt_variant``. A child made by an LLM call records the variant in
  ``mutation.prompt_variant`` and in its stored exchange.
- **Fitness.** From committed results only (``observe``, rebuilt by ``restore``): a child scoring
  better than its parent earns its gain relative to the parent's score, in the objective's
  direction and clipped to [-1, 1]; an ok child that is worse earns its (negative) relative loss;
  a child that failed, timed out, crashed or was invalid earns -1; a proposal the LLM never
  answered (a note starting ``llm:``) earns nothing, as that is not the prompt's doing. The
  fitness is the discounted mean, shrunk towards 0 by one pseudo-child:
  ``sum(d^age * reward) / (1 + sum(d^age))``.
- **Meta calls.** After every ``meta_every`` LLM proposals (and, with ``stagnation``, after that
  many LLM children without a new best for the run), the LLM is asked through the same client to
  rewrite the fittest variant, seeing every living variant with its record. Its tokens and cost
  are added to the proposal's child (so totals, ``max_cost`` and resume count them like any
  other call) and the call is kept in that child's exchange (``exchange["meta"]``). A reply that
  is empty, lacks one of the two parts, is longer than ``max_chars``, holds EVOLVE-BLOCK or
  SEARCH/REPLACE markers or control characters, or repeats a living variant is rejected with the
  reason logged; the run goes on with the variants it has.
- **Death.** A new variant beyond ``population`` retires the least fit living one (variants with
  children first; never the newborn). Retired variants keep their text for the record.
- **Storage.** Through the Storage interface only: each variant's text once at its birth
  (meta key ``prompt_variant:ID``) and the population's state (``prompt_variants``: order,
  living ones, children counts, fitness, meta-call counters) after every change.
"""

from __future__ import annotations

import logging
import math
import random
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from evoforge.errors import ConfigError, EvoforgeError, LLMError, StorageError
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import Program, Status, scrub
from evoforge.prompting import PromptBuilder, PromptVariant, cap_text, format_number

if TYPE_CHECKING:
    from evoforge.config import Config
    from evoforge.llms.base import LLM
    from evoforge.storages.base import Storage

__all__ = ["MetaReplyError", "PromptEvolution", "VariantPopulation", "VariantRecord",
           "describe_variant", "load_variants", "parse_meta_reply", "variant_summary",
           "with_prompt_evolution"]

log = logging.getLogger("evoforge")

STATE_KEY = "prompt_variants"
TEXT_KEY = "prompt_variant:{}"
STATE_VERSION = 1
TASK_CHARS = 4000  # of the task description shown in a meta call
# the opening and closing tag of each part, searched for separately: one lazy pattern from the
# opening to the closing tag took time quadratic in a reply of many unclosed openings
_PART = {name: (re.compile(rf"<{name}>", re.IGNORECASE), re.compile(rf"</{name}>", re.IGNORECASE))
         for name in ("system", "guidance")}
_MARKERS = (("EVOLVE-BLOCK", "an EVOLVE-BLOCK marker"), ("<<<<<<<", "a SEARCH/REPLACE marker"),
            (">>>>>>>", "a SEARCH/REPLACE marker"))


class MetaReplyError(EvoforgeError):
    """A meta call's reply that cannot become a prompt variant; the message says why."""


def _control(text: str) -> str | None:
    """The first control or format character of ``text`` (newline and tab allowed), if any."""
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            return ch
    return None


def parse_meta_reply(text: str, *, max_chars: int,
                     existing: Iterable[PromptVariant] = ()) -> tuple[str, str]:
    """The (system, guidance) a meta call's reply proposes, or :class:`MetaReplyError` saying
    why it is unusable."""
    if not text or not text.strip():
        raise MetaReplyError("the reply is empty")
    parts: list[str] = []
    for name, (opening, closing) in _PART.items():
        start = opening.search(text)
        end = None if start is None else closing.search(text, start.end())
        if start is None or end is None:
            raise MetaReplyError(f"the reply has no <{name}>...</{name}> part")
        part = text[start.end():end.start()].strip()
        if not part:
            raise MetaReplyError(f"the <{name}> part is empty")
        if len(part) > max_chars:
            raise MetaReplyError(f"the <{name}> part is {len(part):,} characters, over "
                                 f"prompt.evolve.max_chars={max_chars:,}")
        for marker, what in _MARKERS:
            if marker in part:
                raise MetaReplyError(f"the <{name}> part contains {what} ({marker!r})")
        if any(line.strip() == "=======" for line in part.splitlines()):
            raise MetaReplyError(f"the <{name}> part contains a SEARCH/REPLACE marker ('=======')")
        bad = _control(part)
        if bad is not None:
            raise MetaReplyError(f"the <{name}> part contains the control character "
                                 f"U+{ord(bad):04X}")
        parts.append(scrub(part))
    system, guidance = parts
    for v in existing:
        if v.system == system and v.guidance == guidance:
            raise MetaReplyError(f"the reply repeats variant {v.id}")
    return system, guidance


# ---------------------------------------------------------------------------- population


@dataclass
class VariantRecord:
    """A variant and what its children did. ``children``, ``better``, ``worse``, ``failed``
    count every child credited; ``reward`` and ``weight`` are the discounted sums."""

    variant: PromptVariant
    parent: str | None = None  # the variant it was rewritten from
    born: int = 0  # LLM proposals made before its birth
    born_program: int | None = None  # the program whose proposal's meta call wrote it
    alive: bool = True
    children: int = 0
    better: int = 0
    worse: int = 0
    failed: int = 0
    reward: float = 0.0
    weight: float = 0.0
    outstanding: int = 0  # drawn, not yet committed (this session; not stored)

    @property
    def id(self) -> str:
        return self.variant.id

    @property
    def fitness(self) -> float:
        return self.reward / (1.0 + self.weight)

    def stats(self) -> dict[str, Any]:
        return {"alive": self.alive, "children": self.children, "better": self.better,
                "worse": self.worse, "failed": self.failed, "reward": self.reward,
                "weight": self.weight, "fitness": self.fitness}

    def text(self) -> dict[str, Any]:
        return {"id": self.id, "parent": self.parent, "system": self.variant.system,
                "guidance": self.variant.guidance, "born": self.born,
                "born_program": self.born_program}


class VariantPopulation:
    """The variants of one run: drawing, crediting, birth and death (no I/O; see the module
    docstring for the rules)."""

    def __init__(self, *, size: int = 6, exploration: float = 0.5, discount: float = 0.99,
                 minimize: bool = False) -> None:
        if size < 2:
            raise ConfigError(f"prompt.evolve.population must be at least 2, got {size}")
        self.size = int(size)
        self.exploration = float(exploration)
        self.discount = float(discount)
        self.minimize = minimize
        self.records: dict[str, VariantRecord] = {}  # in order of birth

    def alive(self) -> list[VariantRecord]:
        return [r for r in self.records.values() if r.alive]

    def next_id(self) -> str:
        return f"v{len(self.records)}"

    def add(self, variant: PromptVariant, *, parent: str | None = None, born: int = 0,
            born_program: int | None = None) -> str | None:
        """Add a living variant; returns the id of the one retired to make room, if any."""
        self.records[variant.id] = VariantRecord(variant, parent=parent, born=born,
                                                 born_program=born_program)
        living = [r for r in self.alive() if r.id != variant.id]
        if len(living) + 1 <= self.size:
            return None
        tried = [r for r in living if r.weight > 0] or living
        worst = min(tried, key=lambda r: (r.fitness, r.weight))  # the least fit, least known
        worst.alive = False
        return worst.id

    def choose(self, rng: random.Random) -> PromptVariant:
        """The variant for the next proposal (UCB on fitness; counts it as outstanding)."""
        living = self.alive()
        total = sum(r.weight + r.outstanding for r in living)
        best, picks = -math.inf, []
        for r in living:
            value = r.fitness + self.exploration * math.sqrt(
                math.log1p(total) / (1.0 + r.weight + r.outstanding))
            if value > best + 1e-12:
                best, picks = value, [r]
            elif abs(value - best) <= 1e-12:
                picks.append(r)
        pick = picks[0] if len(picks) == 1 else rng.choice(picks)
        pick.outstanding += 1
        return pick.variant

    def release(self, variant_id: str) -> None:
        """A draw that will not be credited (no LLM call was made with it, or it was cancelled)."""
        r = self.records.get(variant_id)
        if r is not None and r.outstanding > 0:
            r.outstanding -= 1

    def reward(self, child: Program, parent_score: float | None) -> float | None:
        """What ``child`` earns its variant (None: nothing, the LLM gave no reply)."""
        if child.status is Status.OK and child.score is not None:
            if parent_score is None:
                return 0.0
            gain = parent_score - child.score if self.minimize else child.score - parent_score
            return max(-1.0, min(1.0, gain / max(abs(parent_score), 1e-12)))
        if child.status is Status.INVALID and child.reason.startswith("llm:"):
            return None
        return -1.0

    def credit(self, variant_id: str, reward: float, *, ok: bool) -> bool:
        """Count one committed child of ``variant_id``; False if it is not a known variant."""
        r = self.records.get(variant_id)
        if r is None:
            return False
        for other in self.records.values():  # forget a little of everything, then count it
            other.reward *= self.discount
            other.weight *= self.discount
        r.reward += reward
        r.weight += 1.0
        r.children += 1
        if not ok:
            r.failed += 1
        elif reward > 0:
            r.better += 1
        else:
            r.worse += 1
        return True

    def reset_stats(self) -> None:
        for r in self.records.values():
            r.children = r.better = r.worse = r.failed = 0
            r.reward = r.weight = 0.0

    def best(self, rng: random.Random) -> VariantRecord:
        """The fittest living variant (ties: the better known, then the rng)."""
        living = self.alive()
        top = max((r.fitness, r.weight) for r in living)
        return rng.choice([r for r in living if (r.fitness, r.weight) == top])


# ---------------------------------------------------------------------------- the mutator


class PromptEvolution(Mutator):
    """Wraps the run's mutator: draws a prompt variant per proposal, learns from committed
    results, and now and then has ``llm`` rewrite the fittest variant (module docstring).

    ``llm``: the client meta calls go through (the inner LLM mutator's own, so a recording or
    replay holds them too; not closed here). ``prompts``: renders the first variant and the meta
    call (``meta_system.j2``, ``meta_user.j2``). ``storage``: where the variants are kept (None:
    only in memory)."""

    def __init__(self, inner: Mutator, llm: LLM, prompts: PromptBuilder,
                 storage: Storage | None = None, *, population: int = 6,
                 meta_every: int | None = 20, stagnation: int | None = None,
                 exploration: float = 0.5, discount: float = 0.99, max_chars: int = 2000,
                 minimize: bool = False) -> None:
        if not 0 < discount <= 1:
            raise ConfigError(f"prompt.evolve.discount must be in (0, 1], got {discount}")
        self.inner = inner
        self.name = inner.name
        self.uses_llm = inner.uses_llm
        self.llm = llm
        self.prompts = prompts
        self.storage = storage
        self.meta_every = meta_every
        self.stagnation = stagnation
        self.max_chars = int(max_chars)
        self.minimize = minimize
        self.population = VariantPopulation(size=population, exploration=exploration,
                                             discount=discount, minimize=minimize)
        self.llm_proposals = 0  # LLM proposals made with a variant (stored)
        self.last_meta_at = 0  # llm_proposals when the last meta call was made
        self.meta_calls = 0
        self.meta_rejected = 0
        self.last_rejection = ""
        self.since_best = 0  # LLM children committed since the run's best last improved
        self._best: float | None = None
        self._scores: dict[int, float | None] = {}  # program id -> score (None: not ok)
        self._meta_busy = False
        if storage is not None:
            self._load(storage)

    # ------------------------------------------------------------------ storage
    def _load(self, storage: Storage) -> None:
        state = storage.get_meta(STATE_KEY)
        if state is None:
            return
        try:
            for rec in load_variants(storage, state):
                self.population.records[rec.id] = rec
            self.llm_proposals = int(state["llm_proposals"])
            self.last_meta_at = int(state["last_meta_at"])
            self.meta_calls = int(state["meta_calls"])
            self.meta_rejected = int(state["meta_rejected"])
            self.last_rejection = str(state.get("last_rejection", ""))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StorageError(f"the run's stored prompt variants (meta key {STATE_KEY!r}) are "
                               f"unreadable ({type(e).__name__}: {e}); resume with --set "
                               "prompt.evolve.enabled=false to go on without them") from e

    def state(self) -> dict[str, Any]:
        """The population's state as stored under ``prompt_variants`` (texts apart)."""
        return {"version": STATE_VERSION, "ids": list(self.population.records),
                "stats": {i: r.stats() for i, r in self.population.records.items()},
                "llm_proposals": self.llm_proposals, "last_meta_at": self.last_meta_at,
                "meta_calls": self.meta_calls, "meta_rejected": self.meta_rejected,
                "last_rejection": self.last_rejection}

    def _save(self, born: VariantRecord | None = None) -> None:
        if self.storage is None:
            return
        if born is not None:  # the text first: the state never names a variant without one
            self.storage.set_meta(TEXT_KEY.format(born.id), born.text())
        self.storage.set_meta(STATE_KEY, self.state())

    # ------------------------------------------------------------------ proposals
    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        pop = self.population
        if not pop.records:  # the run's first proposal: the built-in text is the first variant
            first = self.prompts.default_variant(request, pop.next_id())
            pop.add(first)
            self._save(born=pop.records[first.id])
        rng = random.Random(request.rng.random())
        variant = pop.choose(rng)
        try:
            out = await self.inner.mutate(replace(request, prompt_variant=variant))
        except BaseException:  # cancelled (a stop) or a permanent LLM error: never credited
            pop.release(variant.id)
            raise
        if out.info.mutator != "llm":  # a model-free arm or a tuning trial: no prompt used
            pop.release(variant.id)
            return out
        self.llm_proposals += 1
        info = replace(out.info, prompt_variant=variant.id)
        exchange = None if out.exchange is None else {**out.exchange, "prompt_variant": variant.id}
        if not self._meta_busy and self._meta_due():
            meta, spent = await self._meta_call(request, rng)
            info = replace(info, prompt_tokens=info.prompt_tokens + spent[0],
                           completion_tokens=info.completion_tokens + spent[1],
                           cost=info.cost + spent[2], attempts=info.attempts + spent[3],
                           latency=info.latency + spent[4])
            exchange = {**(exchange or {"prompt_variant": variant.id}), "meta": meta}
        return replace(out, info=info, exchange=exchange)

    def _meta_due(self) -> bool:
        since = self.llm_proposals - self.last_meta_at
        if self.meta_every is not None and since >= self.meta_every:
            return True
        return (self.stagnation is not None and self.since_best >= self.stagnation
                and since >= self.stagnation)

    def meta_messages(self, base: VariantRecord, request: MutationRequest) -> list[dict[str, str]]:
        """The meta call's messages: rewrite ``base``, seeing every living variant."""
        living = sorted(self.population.alive(), key=lambda r: (-r.fitness, -r.weight))
        variables = {
            **self.prompts.variables(request),
            "task": cap_text(request.task.strip(), TASK_CHARS),
            "variants": [{"id": r.id, "system": r.variant.system,
                          "guidance": r.variant.guidance, "children": r.children,
                          "better": r.better, "worse": r.worse, "failed": r.failed,
                          "fitness": format_number(round(r.fitness, 4))} for r in living],
            "base": {"id": base.id, "system": base.variant.system,
                     "guidance": base.variant.guidance},
            "max_chars": self.max_chars,
        }
        return [{"role": "system", "content": self.prompts.render("meta_system.j2", variables)
                 + "\n"},
                {"role": "user", "content": self.prompts.render("meta_user.j2", variables)
                 + "\n"}]

    async def _meta_call(self, request: MutationRequest, rng: random.Random
                         ) -> tuple[dict[str, Any], tuple[int, int, float, int, float]]:
        """One rewrite; returns what is kept of it and what it cost (prompt tokens, completion
        tokens, cost, attempts, latency). Never raises for a bad reply or a failed call."""
        self._meta_busy = True
        pop = self.population
        self.last_meta_at = self.llm_proposals
        self.meta_calls += 1
        base = pop.best(rng)
        record: dict[str, Any] = {"rewrites": base.id, "messages": [], "reply": None,
                                  "model": None, "attempts": 0}
        spent: tuple[int, int, float, int, float] = (0, 0, 0.0, 0, 0.0)
        born: VariantRecord | None = None
        try:
            messages = self.meta_messages(base, request)
            record["messages"] = messages
            try:
                reply = await self.llm.chat(messages, rng=rng)
            except LLMError as e:
                spent = (e.prompt_tokens, e.completion_tokens, e.cost, e.attempts, 0.0)
                raise MetaReplyError(f"llm: {e}") from e
            spent = (reply.prompt_tokens, reply.completion_tokens, reply.cost, reply.attempts,
                     reply.latency)
            record.update(reply=scrub(reply.text), model=reply.model, attempts=reply.attempts)
            system, guidance = parse_meta_reply(
                reply.text, max_chars=self.max_chars,
                existing=[r.variant for r in pop.alive()])
            new = PromptVariant(pop.next_id(), system, guidance)
            retired = pop.add(new, parent=base.id, born=self.llm_proposals,
                              born_program=request.proposal_id)
            born = pop.records[new.id]
            outcome = f"accepted as {new.id} (a rewrite of {base.id})" + (
                f"; {retired} retired" if retired else "")
            log.info("prompt evolution: %s", outcome)
        except EvoforgeError as e:  # an unusable reply, a failed call, a broken meta template
            self.meta_rejected += 1
            self.last_rejection = scrub(str(e))
            outcome = f"rejected: {self.last_rejection}"
            log.warning("prompt evolution: the rewrite of %s was rejected: %s; the run goes on "
                        "with the variants it has", base.id, self.last_rejection)
        finally:
            self._meta_busy = False
        record.update(outcome=outcome, prompt_tokens=spent[0], completion_tokens=spent[1],
                      cost=spent[2])
        self._save(born=born)
        return record, spent

    # ------------------------------------------------------------------ learning
    def observe(self, program: Program) -> None:
        self._learn(program)
        if program.mutation.prompt_variant is not None:
            self._save()
        self.inner.observe(program)

    def _learn(self, program: Program) -> None:
        ok = program.status is Status.OK and program.score is not None
        self._scores[program.id] = program.score if ok else None
        vid = program.mutation.prompt_variant
        improved = ok and (self._best is None or (
            program.score < self._best if self.minimize else program.score > self._best))  # type: ignore[operator]
        if improved:
            self._best = program.score
            self.since_best = 0
        elif vid is not None:
            self.since_best += 1
        if vid is None:
            return
        self.population.release(vid)
        parent = self._scores.get(program.parent_ids[0]) if program.parent_ids else None
        reward = self.population.reward(program, parent)
        if reward is not None:
            self.population.credit(vid, reward, ok=ok)

    def restore(self, programs: Iterable[Program]) -> None:
        """On resume: the fitness is learnt again from the stored programs in commit order (the
        variants' texts come from the storage); ``inner`` relearns too."""
        done = [p for p in programs if p.status is not Status.PENDING]
        self.population.reset_stats()
        self._scores.clear()
        self._best, self.since_best = None, 0
        for p in done:
            self._learn(p)
        for r in self.population.records.values():
            r.outstanding = 0
        if self.population.records:
            self._save()
        self.inner.restore(done)

    async def aclose(self) -> None:
        await self.inner.aclose()  # the LLM client is the inner mutator's


def load_variants(storage: Storage, state: dict[str, Any] | None = None) -> list[VariantRecord]:
    """The variants stored in ``storage`` with their last stored record (empty: none)."""
    state = storage.get_meta(STATE_KEY) if state is None else state
    if not isinstance(state, dict):
        return []
    out = []
    for vid in state["ids"]:
        text = storage.get_meta(TEXT_KEY.format(vid))
        stats = state["stats"][vid]
        out.append(VariantRecord(
            PromptVariant(str(text["id"]), str(text["system"]), str(text["guidance"])),
            parent=text.get("parent"), born=int(text.get("born", 0)),
            born_program=text.get("born_program"), alive=bool(stats["alive"]),
            children=int(stats["children"]), better=int(stats["better"]),
            worse=int(stats["worse"]), failed=int(stats["failed"]),
            reward=float(stats["reward"]), weight=float(stats["weight"])))
    return out


def _llm_of(mutator: Mutator) -> LLM | None:
    """The LLM client of the first LLM mutator inside ``mutator`` (wrappers, bandit arms)."""
    from evoforge.mutators.llm import LLMMutator

    if isinstance(mutator, LLMMutator):
        return mutator.llm
    inner = getattr(mutator, "inner", None)
    if isinstance(inner, Mutator):
        found = _llm_of(inner)
        if found is not None:
            return found
    arms = getattr(mutator, "arms", None)
    if isinstance(arms, dict):
        for arm in arms.values():
            if isinstance(arm, Mutator) and (found := _llm_of(arm)) is not None:
                return found
    return None


def with_prompt_evolution(mutator: Mutator, storage: Storage, config: Config) -> Mutator:
    """``mutator`` wrapped by :class:`PromptEvolution` when ``prompt.evolve.enabled`` (and it
    asks an LLM), keeping the variants in ``storage``; else ``mutator`` itself."""
    ev = config.prompt.evolve
    if not ev.enabled or isinstance(mutator, PromptEvolution):
        return mutator
    llm = _llm_of(mutator)
    if llm is None:
        log.warning("prompt.evolve.enabled is set, but the mutator asks no LLM (%s): there are "
                    "no prompts to evolve; configure llm.models", mutator.name)
        return mutator
    prompts = PromptBuilder.from_config(config)
    if not prompts.uses_variant():
        log.warning("prompt.evolve.enabled is set, but the templates in prompt.template_dir do "
                    "not show {{ variant.system }} / {{ variant.guidance }}: the variants change "
                    "nothing the LLM sees (see the built-in system.j2)")
    return PromptEvolution(mutator, llm, prompts, storage, population=ev.population,
                           meta_every=ev.meta_every, stagnation=ev.stagnation,
                           exploration=ev.exploration, discount=ev.discount,
                           max_chars=ev.max_chars, minimize=config.minimize)


def variant_summary(storage: Storage) -> tuple[dict[str, Any], list[VariantRecord]] | None:
    """The stored population state and its variants, for ``evoforge status`` (None: the run
    evolves no prompts)."""
    state = storage.get_meta(STATE_KEY)
    if not isinstance(state, dict):
        return None
    try:
        return state, load_variants(storage, state)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StorageError(f"the run's stored prompt variants (meta key {STATE_KEY!r}) are "
                           f"unreadable ({type(e).__name__}: {e})") from e


def describe_variant(storage: Storage, variant_id: str) -> str:
    """One line on where variant ``variant_id`` came from (for ``evoforge show``)."""
    text = storage.get_meta(TEXT_KEY.format(variant_id))
    if not isinstance(text, dict):
        return f"prompt variant {variant_id}"
    if text.get("parent") is None:
        return f"prompt variant {variant_id} (the built-in instructions)"
    made = text.get("born_program")
    return (f"prompt variant {variant_id} (a rewrite of {text.get('parent')}"
            + (f" by the meta call of program #{made}" if made is not None else "") + ")")
