"""One registry resolving the names used in YAML and on the CLI to strategies.

Every strategy builds from config; an unknown name is an error listing the valid ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from evoforge.config import Config
from evoforge.errors import ConfigError
from evoforge.mutators.base import Mutator
from evoforge.selectors.base import Selector

if TYPE_CHECKING:
    from evoforge.mutators.tuning import TuningMutator

log = logging.getLogger("evoforge")


def _islands(cfg: Config) -> Selector:
    from evoforge.selectors.islands import IslandSelector

    return IslandSelector.from_config(cfg.selector, minimize=cfg.minimize)


def _random_sampling(cfg: Config) -> Selector:
    from evoforge.selectors.baseline import RandomSamplingSelector

    return RandomSamplingSelector.from_config(cfg.selector, minimize=cfg.minimize)


def _greedy(cfg: Config) -> Selector:
    from evoforge.selectors.baseline import GreedySelector

    return GreedySelector.from_config(cfg.selector, minimize=cfg.minimize)


def _pareto(cfg: Config) -> Selector:
    if not cfg.multi_objective:
        raise ConfigError("selector.name 'pareto' needs objective.metrics (two or more), e.g. "
                          "--set 'objective.metrics=[{name: accuracy, direction: maximize}, "
                          "{name: latency_ms, direction: minimize}]'")
    from evoforge.selectors.pareto import ParetoSelector

    return ParetoSelector.from_config(cfg)


SELECTORS: dict[str, Callable[[Config], Selector]] = {
    "islands": _islands,
    "random_sampling": _random_sampling,
    "best_of_n": _random_sampling,
    "greedy": _greedy,
    "pareto": _pareto,
}


def make_selector(cfg: Config) -> Selector:
    """The configured selector; ``objective.metrics`` means ``pareto`` (with the default
    ``selector.name``, ``islands``; any other name with objective.metrics is an error)."""
    name = cfg.selector.name
    if cfg.multi_objective and name not in ("islands", "pareto"):
        raise ConfigError(f"objective.metrics turns on Pareto search, but selector.name is "
                          f"{name!r}, which ranks by one score: remove selector.name (or set "
                          "it to pareto), or remove objective.metrics")
    if cfg.multi_objective:
        name = "pareto"
    try:
        factory = SELECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown selector.name {cfg.selector.name!r}; valid names: "
                          f"{', '.join(SELECTORS)}") from None
    return factory(cfg)


def mutator_kind(cfg: Config) -> str:
    """'llm' or 'model_free' after resolving 'auto'."""
    name = cfg.mutator.name
    if name == "auto":
        return "llm" if cfg.llm.configured else "model_free"
    if name == "bandit":
        return name  # LLM arms for the models configured, the model-free one besides
    if name == "llm" and not cfg.llm.configured:
        raise ConfigError("mutator.name is 'llm' but no model is configured: set llm.models "
                          "(and llm.base_url for a non-OpenAI endpoint), e.g. "
                          "--set llm.models=[gpt-4o-mini]")
    return name


def make_mutator(cfg: Config) -> Mutator:
    """The configured mutator, wrapped by the novelty filter when ``novelty.enabled``, and
    that by constant tuning when ``mutator.tuning`` is on (its trials are not filtered). A
    bandit has constant tuning as an arm instead when ``mutator.bandit_tuning`` is on."""
    inner = _make_mutator(cfg)
    if cfg.novelty.enabled:
        from evoforge.mutators.novelty import NoveltyFilter, OpenAIEmbedder

        embedder = OpenAIEmbedder.from_config(cfg) if cfg.novelty.embedding_model else None
        inner = NoveltyFilter(inner, threshold=cfg.novelty.threshold,
                              window=cfg.novelty.window, retries=cfg.novelty.retries,
                              embedder=embedder)
    if not tuning_enabled(cfg):
        return inner
    return _tuning(cfg, inner)


def _tuning(cfg: Config, inner: Mutator | None) -> TuningMutator:
    from evoforge.mutators.tuning import TuningMutator

    t = cfg.mutator.tuning
    return TuningMutator(inner, share=t.share, sampler=t.sampler,
                         trials_per_session=t.trials_per_session, patience=t.patience,
                         spread=t.spread, max_params=t.max_params, minimize=cfg.minimize)


def tuning_enabled(cfg: Config) -> bool:
    """Whether constant tuning wraps the mutator: ``mutator.tuning.enabled``, where ``auto``
    means on for the model-free mutator (if optuna is installed and the run records a trial's
    true parent, see evoforge.mutators.tuning.TRIAL_LINEAGE), off for the LLM and the bandit.
    Never for a bandit with a tuning arm (:func:`bandit_tuning_enabled`): the arm replaces it."""
    t = cfg.mutator.tuning
    if t.share <= 0 or t.enabled is False or bandit_tuning_enabled(cfg):
        return False
    if t.enabled is True:
        return True
    if mutator_kind(cfg) != "model_free":
        return False
    return _tuning_available(t.sampler, warn=True)


def bandit_tuning_enabled(cfg: Config) -> bool:
    """Whether the bandit (``mutator.name: bandit``) has constant tuning as an arm:
    ``mutator.bandit_tuning``, where ``auto`` means on if optuna (and cmaes for the CMA-ES
    sampler) is installed and the run records a trial's true parent."""
    on = cfg.mutator.bandit_tuning
    if on is False or mutator_kind(cfg) != "bandit":
        return False
    if on is True:
        return True  # the arm's construction says what to install if something is missing
    return _tuning_available(cfg.mutator.tuning.sampler, warn=False)


def _tuning_available(sampler: str, *, warn: bool) -> bool:
    from evoforge.mutators import tuning

    if not tuning.TRIAL_LINEAGE:
        return False
    try:
        tuning.check_installed(sampler)
    except ConfigError as e:
        if warn:
            log.warning("%s", e)
        return False
    return True


def _make_mutator(cfg: Config) -> Mutator:
    kind = mutator_kind(cfg)
    if kind == "bandit":
        from evoforge.mutators.bandit import BanditMutator, arms_from_config

        tuning = _tuning(cfg, None) if bandit_tuning_enabled(cfg) else None
        return BanditMutator(arms_from_config(cfg), minimize=cfg.minimize,
                             discount=cfg.mutator.bandit_discount,
                             tuning=tuning)
    if kind == "model_free":
        from evoforge.mutators.model_free import ModelFreeMutator

        return ModelFreeMutator(max_edits=cfg.mutator.max_edits)
    from evoforge.mutators.llm import LLMMutator

    return LLMMutator.from_config(cfg)
