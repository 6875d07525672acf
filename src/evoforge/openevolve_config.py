"""Translate an OpenEvolve (0.4.x) config into evoforge's schema, warning once for each key evoforge
has no equivalent for.

A mapping is in OpenEvolve's format when it holds a key only OpenEvolve has (:func:`openevolve_keys`:
``max_iterations``, ``database``, ``evaluator``, ``llm.api_base``, ``llm.primary_model``,
``prompt.num_top_programs`` ...). Such a mapping is translated key by key (:data:`RULES` lists
every OpenEvolve key and what becomes of it):

- a key with an evoforge equivalent is mapped (``database.num_islands`` -> ``selector.num_islands``);
- a key without one is reported once, in a warning that says what evoforge does instead, unless
  its value is null, off, or OpenEvolve's own default where that default changes nothing worth
  saying (``log_level: INFO``, ``evolution_trace.enabled: false`` ...): those are accepted quietly;
- a key in evoforge's own schema is kept as written, and wins over an OpenEvolve key mapping to
  the same place (``max_programs`` beside ``max_iterations``: the latter is warned about);
- any other key is warned about (with a did-you-mean, or where OpenEvolve reads a key of that
  name: ``parallel_evaluations`` at the top belongs under ``evaluator``) and dropped, as OpenEvolve
  itself ignores unknown keys; inside evoforge's own sections (``selector``, ``evaluation`` ...)
  evoforge's strict validation still reports it.

A mapping in evoforge's format is returned unchanged. A literal ``llm.api_key`` is never copied
anywhere (a run directory stores its effective config): ``${VAR}`` becomes ``llm.api_key_env: VAR``;
a literal key is warned about (export it instead). docs/migrating-from-openevolve.md has the table.
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import BaseModel

from evoforge.config import Config, Layer, LLMConfig, ModelConfig, PromptConfig, read_yaml

__all__ = ["RULES", "Rule", "Translation", "is_openevolve", "openevolve_keys", "read_config_file",
           "translate"]

log = logging.getLogger("evoforge")

# ---------------------------------------------------------------- what evoforge does instead
CHECKPOINT = ("ignored; evoforge commits every result as it arrives, so `evoforge resume RUN_DIR` "
              "continues from any point")
LOGGING = ("ignored; evoforge prints warnings to stderr and keeps the whole run in RUN_DIR "
           "(evoforge.db, config.yaml, best_program.*; see `evoforge status RUN_DIR`)")
LANGUAGE = ("ignored; evoforge takes the language, and the file name candidates are written as, "
            "from the initial program's suffix")
ONE_MODE = ("ignored; evoforge's LLM mutator makes every child the same way "
            "(mutator.edit_mode: diff or rewrite)")
CODE_LENGTH = ("ignored; evoforge does not reject long programs: check the length in the "
               "evaluator, or bin it as a MAP-Elites feature (selector.features: [code_length])")
BLOCKS = "accepted; evoforge never changes code outside the EVOLVE-BLOCK markers"
DIFF_FORMAT = ("ignored; evoforge's diff format is fixed (<<<<<<< SEARCH / ======= / "
               ">>>>>>> REPLACE)")
PATIENCE = ("ignored; evoforge has no patience stop: budget a run with max_programs, max_time, "
            "max_cost or target_score (from Python, evolve(..., stop=StopWhen(...)))")
WORKER_PROCS = ("ignored; evoforge starts a fresh process for every candidate (the hardened "
                "evaluator's own process is replaced every 200 evaluations)")
TRACE = ("ignored; evoforge records every program with its parents, metrics, feedback and "
         "mutation in RUN_DIR/evoforge.db (`evoforge show RUN_DIR ID`)")
HIERARCHICAL = "ignored; evoforge has no hierarchical (tiered) evolution"
API_KEY = ("a literal API key is not used, and not written anywhere (evoforge stores the "
           "effective config in every run directory, and the problem directory is visible to "
           "evaluations): remove it from the file and export it instead, "
           "`export OPENAI_API_KEY=...` (evoforge reads the variable named by llm.api_key_env, "
           "default OPENAI_API_KEY), or write `api_key: ${OPENAI_API_KEY}`")
PER_MODEL = "evoforge uses one {target} for all models; using the first model's, {value!r}"
TEMPERATURE_NULL = ("null (the provider's default) has no evoforge equivalent; evoforge sends "
                    "llm.temperature (default 0.7)")
SEND_SEED = ("ignored; evoforge sends no seed to the API (the run's `seed` drives evoforge's own "
             "random choices)")
REASONING = ("ignored; evoforge sends no reasoning_effort: choose a model (or a server default) "
             "with the effort you want")
PROVIDER = ("ignored; evoforge talks to OpenAI-compatible endpoints only (llm.base_url), with no "
            "CLI providers, custom clients or manual mode")
BUDGET = ("ignored; evoforge budgets the whole run: max_cost (USD), priced with input_price and "
          "output_price on each of llm.models")
LLM_NAME = "ignored; list the models under llm.models"
PRIMARY_WEIGHT = "ignored; no model of that rank (llm.primary_model / llm.secondary_model) is set"
ZERO_WEIGHT = "a model with weight 0 is never drawn; left out"
LLM_FEEDBACK = "ignored; evoforge scores programs with the evaluator only (no LLM feedback)"
TEMPLATES = ("ignored; OpenEvolve's prompt templates do not apply: evoforge's are system.j2 and "
             "user.j2 in prompt.template_dir (a directory holding neither is not used)")
SYSTEM_SHADOWED = "ignored; prompt.system_message is set and wins, as in OpenEvolve"
ISLAND_MESSAGES = ("ignored; evoforge uses one system message for every island "
                   "(prompt.system_message)")
CHANGES = ("ignored; evoforge shows programs as code in prompts "
           "(prompt.include_code_of_context)")
STOCHASTIC = ("ignored; evoforge's prompts have no random phrasing: reword them with system.j2/"
              "user.j2 in prompt.template_dir")
META = ("ignored (OpenEvolve does not implement meta-prompting either); evoforge's own is "
        "prompt.evolve.enabled: true (README, \"Evolving the prompts\")")
LABELS = ("ignored; evoforge's prompt has no length labels or diff summaries: reword it with "
          "system.j2/user.j2 in prompt.template_dir")
FEEDBACK_FILTER = ("accepted; evoforge shows evaluator feedback to the LLM as captured, each text "
                   "capped at prompt.feedback_chars")
STORAGE = ("ignored; evoforge stores the run in RUN_DIR/evoforge.db (choose RUN_DIR with --out, "
           "or a database with storage.url)")
PROMPT_LOG = "accepted; evoforge stores each child's mutation record (model, tokens, cost), not its prompt"
POPULATION = ("ignored; evoforge keeps every program (islands are not capped; the elite archive "
              "is selector.archive_size)")
ELITE = ("ignored; evoforge picks parents by selector.exploration_ratio and exploitation_ratio, "
         "and shows the LLM selector.num_context other programs (the best, and other cells' "
         "elites)")
DIVERSITY = ("ignored; evoforge has no edit-distance diversity feature (its MAP-Elites "
             "features are code_length, line_count, score or an evaluator metric)")
DIVERSITY_DIM = ("'diversity' has no evoforge feature and is dropped (evoforge's MAP-Elites "
                 "features are code_length, line_count, score or an evaluator metric; if no "
                 "dimension is left, evoforge's default, [code_length], is used)")
BINS_UNUSED = "a dimension not in database.feature_dimensions; ignored"
SEED_SHADOWED = "ignored; evoforge has one seed, and the top-level random_seed wins"
ARTIFACT_STORE = ("ignored; evoforge keeps each program's feedback in RUN_DIR/evoforge.db, each "
                  "text capped at evaluation.artifact_chars")
NOVELTY = ("ignored; evoforge has no embedding novelty filter (diversity comes from islands and "
           "MAP-Elites cells)")
EVAL_RETRIES = ("ignored; evoforge evaluates a program once, and a failure is its result "
                "(evaluation.reverify re-runs a would-be best)")
CPU = ("ignored; evoforge bounds an evaluation's wall time (evaluation.timeout) and memory "
       "(evaluation.memory_mb), not its CPU share")
DISTRIBUTED = "ignored; evoforge evaluates on this machine (evaluation.workers slots)"
EVAL_ARGS = ("ignored; evoforge calls evaluate(program_path) with no extra arguments: read "
             "settings from a file in the problem directory")
OVERRIDDEN = "ignored; {target} is also set in this file, and evoforge's own key wins"
UNKNOWN = "not an OpenEvolve 0.4 key evoforge knows; ignored"

OE_DIFF_PATTERN = r"<<<<<<< SEARCH\n(.*?)=======\n(.*?)>>>>>>> REPLACE"
OE_TEMPLATE_NAMES = ("system_message", "evaluator_system_message")  # OpenEvolve's defaults
OE_THRESHOLDS = [0.5, 0.75, 0.9]
_ENV_REF = re.compile(r"^\$\{([^}]+)\}$")


@dataclass(frozen=True)
class Rule:
    """What becomes of one OpenEvolve key: the evoforge keys it maps to (``targets``), or the
    warning ``note`` (what evoforge does instead) unless its value is one of ``quiet``."""

    targets: tuple[str, ...] = ()
    note: str = ""
    quiet: tuple[Any, ...] = (None,)


def _m(*targets: str, note: str = "", quiet: tuple[Any, ...] = (None,)) -> Rule:
    return Rule(targets, note, quiet)


def _w(note: str, *quiet: Any) -> Rule:
    return Rule((), note, (None, *quiet))


ALWAYS = object()  # a quiet value matching anything: the key is accepted as is

# Every key of OpenEvolve 0.4's Config (openevolve/config.py) and configs/default_config.yaml.
# ``llm.models[].x``: the key x of an entry of llm.models (and llm.evaluator_models).
RULES: dict[str, Rule] = {
    # top level
    "max_iterations": _m("max_programs"),
    "checkpoint_interval": Rule((), CHECKPOINT, ()),
    "log_level": _w(LOGGING, "INFO", "WARNING", "info", "warning"),
    "log_dir": _w(LOGGING),
    "random_seed": _m("seed"),
    "language": _w(LANGUAGE, "python"),
    "file_suffix": _w(LANGUAGE, ".py"),
    "diff_based_evolution": _m("mutator.edit_mode"),
    "allow_full_rewrites": _w(ONE_MODE, False),
    "max_code_length": _w(CODE_LENGTH, 10000),
    "enforce_evolve_blocks": _w(BLOCKS, ALWAYS),
    "diff_pattern": _w(DIFF_FORMAT, OE_DIFF_PATTERN),
    "early_stopping_patience": _w(PATIENCE),
    "convergence_threshold": _w(PATIENCE, 0.001),  # quiet too without a patience
    "early_stopping_metric": _w(PATIENCE, "combined_score"),
    "max_tasks_per_child": _w(WORKER_PROCS),
    "hierarchical": _w(HIERARCHICAL),  # quiet unless hierarchical.enabled (a whole section)
    # llm
    "llm.api_base": _m("llm.base_url"),
    "llm.api_key": _m("llm.api_key_env", note=API_KEY),
    "llm.models": _m("llm.models"),
    "llm.evaluator_models": _w(LLM_FEEDBACK, ALWAYS),  # warned with evaluator.use_llm_feedback
    "llm.primary_model": _m("llm.models"),
    "llm.primary_model_weight": _m("llm.models", note=PRIMARY_WEIGHT),
    "llm.secondary_model": _m("llm.models"),
    "llm.secondary_model_weight": _m("llm.models", note=PRIMARY_WEIGHT),
    "llm.temperature": _m("llm.temperature", note=TEMPERATURE_NULL),
    "llm.top_p": _m("llm.top_p"),
    "llm.max_tokens": _m("llm.max_tokens"),
    "llm.timeout": _m("llm.request_timeout", "llm.proposal_deadline"),
    "llm.retries": _m("llm.retries"),
    "llm.retry_delay": _m("llm.backoff_base", "llm.backoff_max"),
    "llm.system_message": _m("prompt.system_message", note=SYSTEM_SHADOWED),
    "llm.name": _w(LLM_NAME),
    "llm.weight": _w(LLM_NAME, 1.0),
    "llm.random_seed": _w(SEND_SEED),
    "llm.reasoning_effort": _w(REASONING),
    "llm.provider": _w(PROVIDER, "openai"),
    "llm.init_client": _w(PROVIDER),
    "llm.manual_mode": _w(PROVIDER, False),
    "llm._manual_queue_dir": _w(PROVIDER),
    "llm.max_ai_credits": _w(PROVIDER),
    "llm.allow_all_tools": _w(PROVIDER, False),
    "llm.max_budget_usd": _w(BUDGET),
    # an entry of llm.models: name and weight map; the rest is shared by all models in evoforge
    "llm.models[].name": _m("llm.models"),
    "llm.models[].weight": _m("llm.models", note=ZERO_WEIGHT),
    "llm.models[].api_base": _m("llm.base_url", note=PER_MODEL),
    "llm.models[].api_key": _m("llm.api_key_env", note=API_KEY),  # or PER_MODEL (${VAR}s)
    "llm.models[].temperature": _m("llm.temperature", note=PER_MODEL),
    "llm.models[].top_p": _m("llm.top_p", note=PER_MODEL),
    "llm.models[].max_tokens": _m("llm.max_tokens", note=PER_MODEL),
    "llm.models[].timeout": _m("llm.request_timeout", "llm.proposal_deadline", note=PER_MODEL),
    "llm.models[].retries": _m("llm.retries", note=PER_MODEL),
    "llm.models[].retry_delay": _m("llm.backoff_base", "llm.backoff_max", note=PER_MODEL),
    "llm.models[].system_message": _m("prompt.system_message", note=PER_MODEL),
    "llm.models[].random_seed": _w(SEND_SEED),
    "llm.models[].reasoning_effort": _w(REASONING),
    "llm.models[].provider": _w(PROVIDER, "openai"),
    "llm.models[].init_client": _w(PROVIDER),
    "llm.models[].manual_mode": _w(PROVIDER, False),
    "llm.models[]._manual_queue_dir": _w(PROVIDER),
    "llm.models[].max_ai_credits": _w(PROVIDER),
    "llm.models[].allow_all_tools": _w(PROVIDER, False),
    "llm.models[].max_budget_usd": _w(BUDGET),
    # prompt
    "prompt.template_dir": _m("prompt.template_dir", note=TEMPLATES),
    "prompt.system_message": _m("prompt.system_message"),
    "prompt.evaluator_system_message": _w(LLM_FEEDBACK, ALWAYS),  # with use_llm_feedback
    "prompt.island_system_messages": _w(ISLAND_MESSAGES, []),
    "prompt.programs_as_changes_description": _w(CHANGES, False),
    "prompt.system_message_changes_description": _w(CHANGES),
    "prompt.initial_changes_description": _w(CHANGES, ""),
    "prompt.num_top_programs": _m("selector.num_context"),
    "prompt.num_diverse_programs": _m("selector.num_context"),
    "prompt.use_template_stochasticity": _w(STOCHASTIC, False),  # quiet without variations
    "prompt.template_variations": _w(STOCHASTIC, {}),
    "prompt.use_meta_prompting": _w(META, False),
    "prompt.meta_prompt_weight": _w(META, 0.1),  # quiet too without use_meta_prompting
    "prompt.include_artifacts": _m("prompt.feedback_chars"),
    "prompt.max_artifact_bytes": _m("prompt.feedback_chars"),
    "prompt.artifact_security_filter": _w(FEEDBACK_FILTER, ALWAYS),
    "prompt.suggest_simplification_after_chars": _w(LABELS, 500),
    "prompt.include_changes_under_chars": _w(LABELS, 100),
    "prompt.concise_implementation_max_lines": _w(LABELS, 10),
    "prompt.comprehensive_implementation_min_lines": _w(LABELS, 50),
    "prompt.diff_summary_max_line_len": _w(LABELS, 100),
    "prompt.diff_summary_max_lines": _w(LABELS, 30),
    "prompt.code_length_threshold": _w(LABELS),
    # database
    "database.db_path": _w(STORAGE),
    "database.in_memory": _w(STORAGE, ALWAYS),
    "database.log_prompts": _w(PROMPT_LOG, ALWAYS),
    "database.population_size": _w(POPULATION, 1000),
    "database.archive_size": _m("selector.archive_size"),
    "database.num_islands": _m("selector.num_islands"),
    "database.programs_per_island": _w(POPULATION),
    "database.elite_selection_ratio": _w(ELITE, 0.1),
    "database.exploration_ratio": _m("selector.exploration_ratio"),
    "database.exploitation_ratio": _m("selector.exploitation_ratio"),
    "database.diversity_metric": _w(DIVERSITY, "edit_distance"),
    "database.feature_dimensions": _m("selector.features", note=DIVERSITY_DIM),
    "database.feature_bins": _m("selector.features", note=BINS_UNUSED),
    "database.diversity_reference_size": _w(DIVERSITY, 20),
    "database.migration_interval": _m("selector.migration_interval"),
    "database.migration_rate": _m("selector.migration_rate"),
    "database.random_seed": _m("seed", note=SEED_SHADOWED),
    "database.artifacts_base_path": _w(ARTIFACT_STORE),
    "database.artifact_size_threshold": _w(ARTIFACT_STORE, 32 * 1024),
    "database.cleanup_old_artifacts": _w(ARTIFACT_STORE, True),
    "database.artifact_retention_days": _w(ARTIFACT_STORE, 30),
    "database.max_snapshot_artifacts": _w(ARTIFACT_STORE, 100),
    "database.novelty_llm": _w(NOVELTY),
    "database.embedding_model": _w(NOVELTY),
    "database.embedding_api_base": _w(NOVELTY),
    "database.similarity_threshold": _w(NOVELTY, 0.99),  # quiet too without an embedding model
    "database.novelty": _w(NOVELTY, {}),  # a section in some OpenEvolve versions
    # evaluator
    "evaluator.timeout": _m("evaluation.timeout"),
    "evaluator.max_retries": _w(EVAL_RETRIES, 0, 3),
    "evaluator.memory_limit_mb": _m("evaluation.memory_mb"),
    "evaluator.cpu_limit": _w(CPU),
    "evaluator.cascade_evaluation": _m("evaluation.cascade_thresholds"),
    "evaluator.cascade_thresholds": _m("evaluation.cascade_thresholds"),
    "evaluator.parallel_evaluations": _m("evaluation.workers"),
    "evaluator.distributed": _w(DISTRIBUTED, False),
    "evaluator.use_llm_feedback": _w(LLM_FEEDBACK, False),
    "evaluator.llm_feedback_weight": _w(LLM_FEEDBACK, 0.1),  # quiet too without LLM feedback
    "evaluator.enable_artifacts": _m("prompt.feedback_chars"),
    "evaluator.max_artifact_storage": _w(ARTIFACT_STORE, 100 * 1024 * 1024),
    "evaluator.evaluator_args": _w(EVAL_ARGS, {}),
    # evolution_trace: quiet unless enabled
    **{f"evolution_trace.{k}": _w(TRACE, ALWAYS) for k in (
        "enabled", "format", "include_code", "include_prompts", "output_path", "buffer_size",
        "compress")},
}

# sections only OpenEvolve has (an unknown key there is warned about, not an error)
OE_SECTIONS = ("database", "evaluator", "evolution_trace")
_EF_TOP = set(Config.model_fields)
_EF_LLM = set(LLMConfig.model_fields)
_EF_PROMPT = set(PromptConfig.model_fields)
_EF_MODEL = set(ModelConfig.model_fields)


def _keys_under(prefix: str) -> set[str]:
    return {k[len(prefix):] for k in RULES if k.startswith(prefix) and "." not in k[len(prefix):]}


_OE_TOP = {k for k in RULES if "." not in k} | set(OE_SECTIONS)
_OE_LLM = _keys_under("llm.")
_OE_MODEL = _keys_under("llm.models[].")
_OE_PROMPT = _keys_under("prompt.")


def _hint(key: str, prefix: str, known: set[str]) -> str:
    """Did-you-mean for an unknown key at ``prefix``: an OpenEvolve key of that name elsewhere
    in the file's layout (``parallel_evaluations`` -> ``evaluator.parallel_evaluations``, and
    what evoforge makes of it), else the closest key known at ``prefix``."""
    elsewhere = sorted((k for k in RULES if k.rsplit(".", 1)[-1] == key and k != prefix + key),
                       key=lambda k: ("[]" in k, len(k), k))  # the usual place first
    if elsewhere:
        rule = RULES[elsewhere[0]]
        target = f", which is {' and '.join(rule.targets)} in evoforge" if rule.targets else ""
        return f" (OpenEvolve reads it as {elsewhere[0]!r}{target}: move it there)"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def openevolve_keys(data: Mapping[str, Any]) -> list[str]:
    """The keys of ``data`` that only OpenEvolve has (dotted; empty for an evoforge config)."""
    found = [k for k in data if k in _OE_TOP]
    llm, prompt = data.get("llm"), data.get("prompt")
    if isinstance(llm, Mapping):
        found += [f"llm.{k}" for k in llm if k in _OE_LLM - _EF_LLM]
        models = llm.get("models")
        for entry in models if isinstance(models, list) else ():
            if isinstance(entry, Mapping):
                found += [f"llm.models[].{k}" for k in entry if k in _OE_MODEL - _EF_MODEL]
    if isinstance(prompt, Mapping):
        found += [f"prompt.{k}" for k in prompt if k in _OE_PROMPT - _EF_PROMPT]
    return list(dict.fromkeys(found))


def is_openevolve(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is (partly) in OpenEvolve's format."""
    return bool(openevolve_keys(data))


@dataclass(frozen=True)
class Translation:
    """A config file's keys in evoforge's schema (``config``), the warnings its translation gave
    (each naming its OpenEvolve key(s)), and where each translated key came from (``origin``:
    evoforge key -> OpenEvolve key(s))."""

    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    openevolve: bool = False
    source: str | None = None
    origin: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        where = self.source or "config"
        return f"{where} (OpenEvolve format)" if self.openevolve else where

    def layer(self) -> Layer:
        """This file as a config layer: errors name the file and the key as it was written."""
        return Layer(self.config, self.label, self.origin)

    def report(self, logger: logging.Logger = log) -> None:
        """Log that the file was translated, and each warning (once per translation)."""
        if not self.openevolve:
            return
        from evoforge.invocation import command

        where = self.source or "the config"
        show = f"`{command()} config translate {self.source}` shows it" if self.source else ""
        logger.warning("%s is an OpenEvolve config: translated to evoforge's schema%s", where,
                       f" ({show})" if show else "")
        for w in self.warnings:
            logger.warning("%s: %s", where, w)


def read_config_file(path: str | Path) -> Translation:
    """Read a YAML config file, translating it if it is in OpenEvolve's format."""
    path = Path(path)
    return translate(read_yaml(path), base_dir=path.resolve().parent, source=str(path))


def translate(data: Mapping[str, Any], *, base_dir: Path | None = None,
              source: str | None = None) -> Translation:
    """``data`` in evoforge's schema; unchanged (but copied) unless it is OpenEvolve's format.
    ``base_dir``: what a relative ``prompt.template_dir`` is relative to (the file's
    directory, as in OpenEvolve)."""
    if not is_openevolve(data):
        return Translation(copy.deepcopy(dict(data)), source=source)
    t = _Translator(data, base_dir)
    t.run()
    return Translation(_ordered(t.out, Config), t.warnings(), True, source, t.origin)


def _same(a: Any, b: Any) -> bool:
    if b is ALWAYS:
        return True
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _leaves(data: Any, prefix: str) -> list[str]:
    if isinstance(data, dict) and data:
        return [p for k, v in data.items() for p in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def _ordered(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with keys in the model's field order (unknown keys last), recursively."""
    fields = list(model.model_fields)
    out: dict[str, Any] = {}
    for k in sorted(data, key=lambda k: fields.index(k) if k in fields else len(fields)):
        v = data[k]
        sub = model.model_fields[k].annotation if k in fields else None
        if isinstance(v, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            v = _ordered(v, sub)
        out[k] = v
    return out


def _env_ref(v: Any) -> str | None:
    """``VAR`` of a ``${VAR}`` value (OpenEvolve's environment reference), else None."""
    m = _ENV_REF.match(v) if isinstance(v, str) else None
    return m.group(1) if m else None


def _num(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Translator:
    def __init__(self, data: Mapping[str, Any], base_dir: Path | None) -> None:
        self.data = data
        self.base_dir = base_dir
        self.out: dict[str, Any] = {}
        self.origin: dict[str, str] = {}
        self.explicit: set[str] = set()  # evoforge keys the file sets itself
        self.notes: dict[str, list[str]] = {}  # message -> the keys it is about
        self.noted: set[str] = set()

    # ------------------------------------------------------------ helpers
    def warnings(self) -> list[str]:
        from evoforge.invocation import name_the_command

        # the commands a warning suggests work as printed
        return [f"{', '.join(keys)}: {name_the_command(note)}"
                for note, keys in self.notes.items()]

    def warn(self, key: str, note: str | None = None) -> None:
        if key in self.noted:  # once per key
            return
        self.noted.add(key)
        self.notes.setdefault(note if note is not None else RULES[key].note, []).append(key)

    def check(self, key: str, value: Any) -> None:
        """A key without an equivalent: warned about unless its value is a quiet one."""
        if not any(_same(value, q) for q in RULES[key].quiet):
            self.warn(key)

    def keep(self, dotted: str, value: Any) -> None:
        """An evoforge key the file sets itself: copied as is."""
        self._put(dotted, copy.deepcopy(value))
        self.explicit.update(_leaves(value, dotted + "."))

    def set(self, target: str, value: Any, *keys: str) -> None:
        """``target`` gets ``value``, translated from the OpenEvolve ``keys``."""
        if any(e == target or e.startswith(target + ".") for e in self.explicit):
            for k in keys:
                self.warn(k, OVERRIDDEN.format(target=target))
            return
        self._put(target, value)
        self.origin[target] = ", ".join(keys)

    def _put(self, dotted: str, value: Any) -> None:
        *parents, last = dotted.split(".")
        cur = self.out
        for p in parents:
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                nxt = cur[p] = {}
            cur = nxt
        cur[last] = value

    # ------------------------------------------------------------ the file
    def run(self) -> None:
        data = self.data
        for k, v in data.items():  # evoforge's own keys; any other is ignored, as OpenEvolve does
            if k in _OE_TOP or k in ("llm", "prompt"):
                continue
            if k in _EF_TOP:
                self.keep(k, v)
            else:
                self.warn(str(k), UNKNOWN + _hint(str(k), "", _OE_TOP | _EF_TOP))
        for sec, known, ours in (("llm", _OE_LLM, _EF_LLM), ("prompt", _OE_PROMPT, _EF_PROMPT)):
            section = data.get(sec)
            if isinstance(section, dict):
                for k, v in section.items():
                    if k in known:
                        continue
                    if k in ours:
                        self.keep(f"{sec}.{k}", v)
                    else:
                        self.warn(f"{sec}.{k}", UNKNOWN + _hint(str(k), f"{sec}.", known | ours))
            elif sec in data:
                self.keep(sec, section)
        sections = {s: self.section(s) for s in (*OE_SECTIONS, "llm", "prompt")}
        db, ev, llm, prompt = (sections[s] for s in ("database", "evaluator", "llm", "prompt"))
        self.top(data, db)
        self.llm(llm, feedback=ev.get("use_llm_feedback") is True)
        self.prompt(prompt, llm, ev)
        self.database(db, top_seed=data.get("random_seed"))
        self.evaluator(ev)
        trace = sections["evolution_trace"]
        if trace.get("enabled"):
            for k in trace:
                self.warn(f"evolution_trace.{k}" if f"evolution_trace.{k}" in RULES
                          else "evolution_trace", TRACE)
        else:
            self.unknown("evolution_trace", trace)

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None or isinstance(value, dict):
            return value or {}
        if name in OE_SECTIONS:
            self.warn(name, f"expected a mapping of keys, got {type(value).__name__}; ignored")
        return {}

    def unknown(self, sec: str, section: dict[str, Any]) -> None:
        for k in section:
            if f"{sec}.{k}" not in RULES:
                close = difflib.get_close_matches(str(k), sorted(_keys_under(f"{sec}.")), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.warn(f"{sec}.{k}", UNKNOWN + hint)

    def top(self, data: Mapping[str, Any], db: dict[str, Any]) -> None:
        for k, v in data.items():
            if k not in _OE_TOP or k in OE_SECTIONS:
                continue
            if k == "max_iterations":  # OpenEvolve's iterations are children; evoforge's
                # max_programs counts the initial program too
                self.set("max_programs", v + 1 if isinstance(v, int) and not isinstance(v, bool)
                         else v, k)
            elif k == "random_seed":
                if v is not None:
                    self.set("seed", v, k)
            elif k == "diff_based_evolution":
                mode = {True: "diff", False: "rewrite"}.get(v, v) if isinstance(v, bool) else v
                self.set("mutator.edit_mode", mode, k)
            elif k in ("convergence_threshold", "early_stopping_metric"):
                if data.get("early_stopping_patience") is not None:
                    self.check(k, v)
            elif k == "hierarchical":
                if isinstance(v, dict) and v.get("enabled"):
                    self.warn(k)
            else:
                self.check(k, v)

    # ------------------------------------------------------------ llm
    def llm(self, llm: dict[str, Any], feedback: bool) -> None:
        models: list[Any] = []
        own: list[dict[str, Any]] = []  # per model: its own values of the shared keys
        raw = llm.get("models")
        entries = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        if raw is not None and not isinstance(raw, str | list):
            self.set("llm.models", raw, "llm.models")  # evoforge's validation says what is wrong
        for entry in entries:
            if not isinstance(entry, dict):
                models.append(entry)
                own.append({})
                continue
            model: dict[str, Any] = {}
            mine: dict[str, Any] = {}
            for k, v in entry.items():
                if k in _EF_MODEL or k not in _OE_MODEL:
                    model[k] = v
                elif v is not None:
                    mine[k] = v
            weight = model.get("weight")
            if _num(weight) and weight <= 0:
                self.warn("llm.models[].weight")
                continue
            models.append(model)
            own.append(mine)
        if llm.get("primary_model"):
            models.append({"name": llm["primary_model"],
                           "weight": llm.get("primary_model_weight") or 1.0})
            own.append({})
        elif llm.get("primary_model_weight") is not None:
            self.warn("llm.primary_model_weight")
        second, second_weight = llm.get("secondary_model"), llm.get("secondary_model_weight")
        if second:
            if second_weight is None or not _num(second_weight) or second_weight > 0:
                models.append({"name": second,
                               "weight": 0.2 if second_weight is None else second_weight})
                own.append({})
            else:
                self.warn("llm.secondary_model_weight", ZERO_WEIGHT)
        elif second_weight is not None:
            self.warn("llm.secondary_model_weight")
        if models:
            given = [k for k in ("models", "primary_model", "secondary_model") if llm.get(k)]
            self.set("llm.models", models, *(f"llm.{k}" for k in given))

        shared = {k for mine in own for k in mine}
        for k, v in llm.items():  # the top-level llm keys the models do not override
            if k in _OE_LLM and k not in shared and k not in (
                    "models", "primary_model", "primary_model_weight", "secondary_model",
                    "secondary_model_weight"):
                self.llm_key(k, v, f"llm.{k}", llm, feedback)
        for k in sorted(shared):  # in OpenEvolve a model's own value wins over the shared one
            key = f"llm.models[].{k}"
            top = llm.get(k)
            values = [mine[k] if k in mine else top for mine in own]
            values = [v for v in values if v is not None]
            if not RULES[key].targets:
                for v in values:
                    self.check(key, v)
                continue
            if k == "api_key":  # never repeat a literal key, not even in a warning
                if top is not None and not _env_ref(top):
                    self.warn("llm.api_key", API_KEY)
                if any(k in mine and not _env_ref(mine[k]) for mine in own):
                    self.warn(key, API_KEY)
                values = [v for v in values if _env_ref(v)]
            if not values:
                continue
            if any(not _same(v, values[0]) for v in values):
                target = RULES[key].targets[0]
                self.warn(key, PER_MODEL.format(target=target, value=values[0]))
            self.llm_key(k, values[0], key, llm, feedback)

    def llm_key(self, k: str, v: Any, key: str, llm: dict[str, Any], feedback: bool) -> None:
        if k == "api_base":
            if v is not None:
                self.set("llm.base_url", v, key)
        elif k == "api_key":
            var = _env_ref(v)
            if var:
                self.set("llm.api_key_env", var, key)
            elif v is not None:
                self.warn(key, API_KEY)
        elif k == "temperature":
            if v is None:
                self.warn(key, TEMPERATURE_NULL)
            else:
                self.set("llm.temperature", v, key)
        elif k in ("top_p", "max_tokens", "retries"):
            if v is not None or k == "top_p":
                self.set(f"llm.{k}", v, key)
        elif k == "timeout":
            if v is None:
                return
            self.set("llm.request_timeout", v, key)
            retries, delay = llm.get("retries", 3), llm.get("retry_delay", 5)
            if _num(v) and _num(retries) and _num(delay):
                worst = v * (retries + 1) + delay * retries  # OpenEvolve's longest proposal
                if worst > 600:  # evoforge's default proposal_deadline
                    self.set("llm.proposal_deadline", worst, key)
        elif k == "retry_delay":
            if v is None:
                return
            self.set("llm.backoff_base", v, key)
            if _num(v) and v > 30:  # evoforge's default backoff_max
                self.set("llm.backoff_max", v, key)
        elif k == "system_message":
            if v in (None, *OE_TEMPLATE_NAMES):
                return
            prompt_msg = (self.data.get("prompt") or {}).get("system_message") \
                if isinstance(self.data.get("prompt"), dict) else None
            if prompt_msg not in (None, *OE_TEMPLATE_NAMES):
                if prompt_msg != v:
                    self.warn(key, SYSTEM_SHADOWED)
                return
            self.set("prompt.system_message", v, key)
        elif k == "evaluator_models":
            if feedback:
                self.warn(key, LLM_FEEDBACK)
        else:
            self.check(key, v)

    # ------------------------------------------------------------ prompt
    def prompt(self, prompt: dict[str, Any], llm: dict[str, Any], ev: dict[str, Any]) -> None:
        for k, v in prompt.items():
            key = f"prompt.{k}"
            if k not in _OE_PROMPT:
                continue
            if k == "template_dir":
                if v is None:
                    continue
                where = Path(str(v)).expanduser()
                if not where.is_absolute() and self.base_dir is not None:
                    where = self.base_dir / where
                if (where / "system.j2").is_file() or (where / "user.j2").is_file():
                    self.set("prompt.template_dir", str(where.resolve()), key)
                else:
                    self.warn(key)
            elif k == "system_message":
                if v not in (None, *OE_TEMPLATE_NAMES):
                    self.set("prompt.system_message", v, key)
            elif k == "evaluator_system_message":
                if ev.get("use_llm_feedback") is True:
                    self.warn(key, LLM_FEEDBACK)
            elif k in ("num_top_programs", "num_diverse_programs"):
                continue  # below, together
            elif k == "use_template_stochasticity":
                if v is not False and prompt.get("template_variations"):
                    self.warn(key)
            elif k == "meta_prompt_weight":
                if prompt.get("use_meta_prompting"):
                    self.check(key, v)
            elif k == "include_artifacts":
                if v is False:
                    self.set("prompt.feedback_chars", 0, key)
            elif k == "max_artifact_bytes":
                if v is not None and prompt.get("include_artifacts") is not False \
                        and ev.get("enable_artifacts") is not False:
                    self.set("prompt.feedback_chars", v, key)
            else:
                self.check(key, v)
        given = [k for k in ("num_top_programs", "num_diverse_programs") if k in prompt]
        if given:
            top, diverse = prompt.get("num_top_programs", 3), prompt.get("num_diverse_programs", 2)
            both = top + diverse if _num(top) and _num(diverse) else top if not _num(top) else diverse
            self.set("selector.num_context", both, *(f"prompt.{k}" for k in given))

    # ------------------------------------------------------------ database
    def database(self, db: dict[str, Any], top_seed: Any) -> None:
        direct = {"archive_size", "num_islands", "exploration_ratio", "exploitation_ratio",
                  "migration_interval", "migration_rate"}
        for k, v in db.items():
            key = f"database.{k}"
            if key not in RULES:
                continue
            if k in direct:
                if v is not None:
                    self.set(f"selector.{k}", v, key)
            elif k in ("feature_dimensions", "feature_bins"):
                continue  # below, together
            elif k == "random_seed":
                if v is None:
                    continue
                if top_seed is None:
                    self.set("seed", v, key)
                elif not _same(v, top_seed):
                    self.warn(key)
            elif k == "similarity_threshold":
                if db.get("embedding_model") or db.get("novelty_llm"):
                    self.check(key, v)
            elif k == "novelty":
                if isinstance(v, dict) and any(x not in (None, False, "", [], {})
                                               for x in v.values()):
                    self.warn(key)
            else:
                self.check(key, v)
        self.unknown("database", db)
        if "feature_dimensions" in db or "feature_bins" in db:
            self.features(db)

    def features(self, db: dict[str, Any]) -> None:
        dims = db.get("feature_dimensions")
        dims = ["complexity", "diversity"] if dims is None else dims  # OpenEvolve's default
        bins = db.get("feature_bins")
        bins = 10 if bins is None else bins
        given = [f"database.{k}" for k in ("feature_dimensions", "feature_bins") if k in db]
        if not isinstance(dims, list) or not (isinstance(bins, dict) or _num(bins)):
            self.set("selector.features", dims, *given)  # evoforge's validation reports it
            return
        features = []
        for dim in dims:
            if dim == "diversity":
                self.warn("database.feature_dimensions", DIVERSITY_DIM)
                continue
            name = "code_length" if dim == "complexity" else dim
            n = bins.get(dim, 10) if isinstance(bins, dict) else bins
            features.append({"name": name, "bins": n})
        if isinstance(bins, dict):
            for extra in (d for d in bins if d not in dims):
                self.warn("database.feature_bins", f"{extra!r}: {BINS_UNUSED}")
        if features:
            self.set("selector.features", features, *given)

    # ------------------------------------------------------------ evaluator
    def evaluator(self, ev: dict[str, Any]) -> None:
        for k, v in ev.items():
            key = f"evaluator.{k}"
            if key not in RULES:
                continue
            if k == "timeout":
                if v is not None:
                    self.set("evaluation.timeout", v, key)
            elif k == "parallel_evaluations":
                if v is not None:
                    self.set("evaluation.workers", v, key)
            elif k == "memory_limit_mb":
                if v is not None:  # null: OpenEvolve sets no limit; evoforge keeps its default
                    self.set("evaluation.memory_mb", v, key)
            elif k in ("cascade_evaluation", "cascade_thresholds"):
                continue  # below, together
            elif k == "enable_artifacts":
                if v is False:
                    self.set("prompt.feedback_chars", 0, key)
            elif k == "llm_feedback_weight":
                if ev.get("use_llm_feedback") is True:
                    self.warn(key, LLM_FEEDBACK)
            else:
                self.check(key, v)
        self.unknown("evaluator", ev)
        cascade, thresholds = ev.get("cascade_evaluation"), ev.get("cascade_thresholds")
        keys = [f"evaluator.{k}" for k in ("cascade_evaluation", "cascade_thresholds") if k in ev]
        if cascade is False:  # OpenEvolve then calls evaluate(); thresholds are unused
            self.set("evaluation.cascade_thresholds", [], *keys)
        elif thresholds is not None:
            self.set("evaluation.cascade_thresholds", thresholds, *keys)
        elif cascade is True:
            self.set("evaluation.cascade_thresholds", list(OE_THRESHOLDS), *keys)
