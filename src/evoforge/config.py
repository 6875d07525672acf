"""Configuration: strict pydantic models, YAML loading, ``--set`` overrides, did-you-mean errors.

Precedence, lowest first: built-in defaults < the problem's ``config.yaml`` < ``--config FILE``
< ``--set key=value`` < dedicated CLI flags (``--max-programs`` ...).
Every key is documented in ``docs/config.md``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evoforge.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_duration(value: Any) -> float | None:
    """``90``, ``"90s"``, ``"5m"``, ``"1.5h"`` -> seconds. None stays None."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '90s', '5m', '2h')")
    unit = m.group(2).lower() if m.group(2) else None
    return float(m.group(1)) * _UNITS[unit]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MetricObjective(_Strict):
    """One objective of a multi-objective run: an evaluator metric and its direction."""

    name: str
    direction: Literal["maximize", "minimize"] = "maximize"


class MetricConstraint(_Strict):
    """A bound on an evaluator metric; a program outside it is infeasible."""

    name: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> MetricConstraint:
        if self.min is None and self.max is None:
            raise ValueError(f"constraint {self.name!r} needs min or max (or both), e.g. "
                             f"{{name: {self.name}, max: 0.01}}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"constraint {self.name!r}: min must not exceed max")
        return self


class ScheduleConfig(_Strict):
    """EAGAN's two stages: optimise ``first`` alone, then the Pareto front."""

    first: str
    switch_after: int | None = Field(None, ge=0)  # programs (the initial one included)
    switch_share: float | None = Field(None, gt=0, lt=1)  # ... or this share of max_programs

    @model_validator(mode="after")
    def _one(self) -> ScheduleConfig:
        if (self.switch_after is None) == (self.switch_share is None):
            raise ValueError("give exactly one of switch_after (programs) or switch_share "
                             "(a share of max_programs), e.g. {first: accuracy, switch_after: 200}")
        return self


class ObjectiveConfig(_Strict):
    direction: Literal["maximize", "minimize"] = "maximize"
    score_metric: str = "combined_score"
    # several objectives: Pareto search (evoforge.selectors.pareto; docs/multi-objective.md)
    metrics: list[MetricObjective] = Field(default_factory=list)
    constraints: list[MetricConstraint] = Field(default_factory=list)
    schedule: ScheduleConfig | None = None
    reference_point: dict[str, float] | None = None  # hypervolume; default: from the initial

    @field_validator("metrics", mode="before")
    @classmethod
    def _names_to_metrics(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @model_validator(mode="after")
    def _pareto(self) -> ObjectiveConfig:
        names = [m.name for m in self.metrics]
        if not self.metrics:
            used = [k for k in ("constraints", "schedule", "reference_point")
                    if getattr(self, k)]
            if used:
                raise ValueError(f"objective.{used[0]} needs objective.metrics (at least two), "
                                 "e.g. metrics: [{name: accuracy, direction: maximize}, "
                                 "{name: latency_ms, direction: minimize}]")
            return self
        if len(names) < 2:
            raise ValueError(f"objective.metrics lists one metric ({names[0]!r}): Pareto search "
                             "needs at least two; for one, set objective.score_metric and "
                             "objective.direction instead")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"objective.metrics names {dup[0]!r} twice")
        if self.schedule is not None and self.schedule.first not in names:
            raise ValueError(f"objective.schedule.first is {self.schedule.first!r}, not one of "
                             f"objective.metrics ({', '.join(names)})")
        if self.reference_point is not None and not all(
                math.isfinite(v) for v in self.reference_point.values()):
            raise ValueError("objective.reference_point values must be finite numbers")
        if self.reference_point is not None and set(self.reference_point) != set(names):
            raise ValueError(f"objective.reference_point must give a value for each of "
                             f"objective.metrics ({', '.join(names)}) and no other; got "
                             f"{', '.join(self.reference_point) or 'none'}")
        return self


class ModelConfig(_Strict):
    name: str
    weight: float = Field(1.0, gt=0)
    input_price: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output_price: float = Field(0.0, ge=0, description="USD per 1M completion tokens")


class LLMConfig(_Strict):
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    models: list[ModelConfig] = Field(default_factory=list)
    concurrency: int = Field(4, ge=1)
    request_timeout: float = Field(120.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_base: float = Field(1.0, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    proposal_deadline: float = Field(600.0, gt=0)
    temperature: float = Field(0.7, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(8192, ge=1)
    max_consecutive_failures: int = Field(20, ge=1)
    adaptive_timeout: bool = True  # cut a request after 4x the observed p95 latency
    timeout_floor: float = Field(15.0, gt=0)  # ... but never before this many seconds
    hedge: bool = True  # a request slower than 1.5x the observed p95 latency gets a twin
    record: str | None = None  # append every exchange to this JSON Lines file (--record)
    replay: str | None = None  # answer from a recording, call no endpoint (--replay)

    @field_validator("models", mode="before")
    @classmethod
    def _names_to_models(cls, v: Any) -> Any:
        # allow ``models: [gpt-4o-mini, o3]`` as a shorthand
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @property
    def configured(self) -> bool:
        return bool(self.models) or bool(self.replay)


class EvaluationConfig(_Strict):
    workers: int = Field(2, ge=1)
    timeout: float = Field(60.0, gt=0)
    memory_mb: int | None = Field(4096, ge=16)
    cascade_thresholds: list[float] = Field(default_factory=list)
    artifact_chars: int = Field(4000, ge=0)
    env_allow: list[str] = Field(default_factory=lambda: ["PATH", "LANG", "LC_ALL", "TZ"])
    python: str | None = None  # interpreter for the evaluator; default: the one running evoforge
    sandbox: Literal["auto", "bubblewrap", "process"] = "auto"
    sandbox_user: str = "auto"  # as root: who candidates run as (auto: evoforge-sandbox/nobody)
    sandbox_paths: list[str] = Field(default_factory=list)  # extra read-only paths (toolchains)
    scratch_mb: int = Field(256, ge=1)
    max_processes: int | None = Field(64, ge=1)
    max_open_files: int = Field(256, ge=16)
    reverify: int = Field(1, ge=0)
    reverify_tolerance: float = Field(1e-6, ge=0)
    noise_samples: int = Field(3, ge=0)  # evaluations of the initial program measuring noise
    warm_pool: bool = True
    persistent_evaluator: bool = True  # hardened form: one evaluator process serves a slot
    preload: list[str] = Field(default_factory=list)
    # reuse the result of code (or an evaluator fingerprint) already evaluated in this run
    cache: Literal["canonical", "exact", "off"] = "canonical"

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_bool(cls, v: Any) -> Any:
        return {True: "canonical", False: "off"}.get(v, v) if isinstance(v, bool) else v


class FeatureConfig(_Strict):
    name: str
    bins: int = Field(10, ge=1)
    min: float | None = None
    max: float | None = None
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _range(self) -> FeatureConfig:
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"feature {self.name!r}: min must be below max")
        return self


class SelectorConfig(_Strict):
    name: str = "islands"
    num_islands: int = Field(4, ge=1)
    migration_interval: int = Field(40, ge=1)
    migration_rate: float = Field(0.1, ge=0, le=1)
    exploration_ratio: float = Field(0.2, ge=0, le=1)
    exploitation_ratio: float = Field(0.5, ge=0, le=1)
    archive_size: int = Field(20, ge=1)
    num_context: int = Field(3, ge=0)
    crossover_rate: float = Field(0.1, ge=0, le=1)
    features: list[FeatureConfig] = Field(default_factory=lambda: [FeatureConfig(name="code_length")])
    # islands: adaptive exploration (see evoforge.selectors.islands)
    adaptive: bool = True
    target_success_rate: float = Field(0.02, gt=0, lt=1)
    max_exploration: float = Field(0.8, ge=0, le=1)
    adaptation_window: int = Field(20, ge=1)
    island_size: int = Field(64, ge=2)
    outstanding_penalty: float = Field(0.25, ge=0)
    warmup: int = Field(0, ge=0)
    warmup_width: int = Field(8, ge=1)
    # islands: how a pick decides to explore (see evoforge.selectors.islands): the stagnation
    # rule (default), credit assignment (`credit: true` replaces it), else the success-rate rule
    credit: bool = False
    stagnation: bool = True
    stagnation_window: int = Field(40, ge=1)
    stagnation_threshold: float = Field(0.003, ge=0)
    min_exploration: float = Field(0.0, ge=0, le=1)
    stagnant_exploration: float = Field(0.5, ge=0, le=1)
    explore_walk: float = Field(0.9, ge=0, le=1)
    stall_backoff: int = Field(3, ge=0)

    @field_validator("features", mode="before")
    @classmethod
    def _names_to_features(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": f} if isinstance(f, str) else f for f in v]
        return v

    @model_validator(mode="after")
    def _ratios(self) -> SelectorConfig:
        if self.exploration_ratio + self.exploitation_ratio > 1 + 1e-9:
            raise ValueError("exploration_ratio + exploitation_ratio must be at most 1")
        return self


EditMode = Literal["diff", "rewrite"]


class TuningConfig(_Strict):
    """Constant tuning (evoforge.mutators.tuning): a share of proposals become trials of a
    black-box optimiser over the numeric literals of the best program's EVOLVE blocks."""

    enabled: bool | Literal["auto"] = False  # auto: model-free only (see docs/config.md)
    share: float = Field(0.8, ge=0, le=1)  # of proposals made tuning trials
    sampler: Literal["cmaes", "tpe"] = "cmaes"
    trials_per_session: int | None = Field(None, ge=1)  # None: 50 CMA-ES generations' worth
    patience: int | None = Field(None, ge=1)  # trials without improving; None: 10 generations'
    spread: float = Field(0.2, gt=0)  # range half-width relative to each literal's scale
    max_params: int = Field(100, ge=1)  # literals tuned at once (a random subset beyond)


class MutatorConfig(_Strict):
    name: Literal["auto", "llm", "model_free", "bandit"] = "auto"
    edit_mode: Literal["diff", "rewrite"] = "diff"
    max_edits: int = Field(3, ge=1)  # model-free: at most this many AST edits per child
    # bandit: arms are every llm.models entry x these edit modes (+ the model-free mutator)
    bandit_edit_modes: list[EditMode] = Field(
        default_factory=lambda: list[EditMode](["diff", "rewrite"]), min_length=1)
    bandit_model_free: bool = True
    bandit_discount: float = Field(0.99, gt=0, le=1)
    # bandit: constant tuning is an arm (its settings from `tuning`; `tuning.share` is unused);
    # auto: when optuna and cmaes are installed
    bandit_tuning: bool | Literal["auto"] = "auto"
    tuning: TuningConfig = Field(default_factory=TuningConfig)


class PromptEvolveConfig(_Strict):
    """Meta-prompt evolution (evoforge.mutators.meta_prompt): the LLM's instructions form a
    small population of variants drawn per proposal, scored by their children's improvement
    over their parents, and rewritten by the LLM now and then."""

    enabled: bool = False
    population: int = Field(6, ge=2)  # variants alive at once; the worst dies when a new is born
    meta_every: int | None = Field(20, ge=1)  # a rewrite after every N LLM proposals; None: never
    stagnation: int | None = Field(None, ge=1)  # ... and after N LLM children with no new best
    exploration: float = Field(0.5, ge=0)  # UCB bonus weight when drawing a variant
    discount: float = Field(0.99, gt=0, le=1)  # older children count less (1: all equally)
    max_chars: int = Field(2000, ge=100)  # a rewritten part longer than this is rejected


class PromptConfig(_Strict):
    template_dir: str | None = None  # directory with system.j2 / user.j2 overriding the built-ins
    system_message: str | None = None  # extra text appended to the system prompt
    feedback_chars: int = Field(2000, ge=0)
    max_chars: int = Field(400_000, ge=1000)  # a longer prompt is shrunk before it is sent
    include_code_of_context: bool = True
    evolve: PromptEvolveConfig = Field(default_factory=PromptEvolveConfig)


class PipelineConfig(_Strict):
    max_in_flight: int | None = Field(
        None, ge=1, description="proposals outstanding at once; "
        "default llm.concurrency + 2 * evaluation.workers (model-free: 2 * workers)")
    staleness: int | None = Field(
        None, ge=1, description="at most this many results are committed between a proposal "
        "(the population it was built from) and its child; default 4 * max_in_flight")
    early_proposal: bool = Field(
        True, description="LLM runs: send one proposal for the initial program while it is "
        "evaluated (its prompt says the score is not known yet), so the first evaluation does "
        "not hold back the first LLM call")
    just_in_time: bool = Field(
        True, description="ask a proposal only when its child will be needed: not while the "
        "children made or on their way keep every evaluation slot busy until a new LLM reply "
        "could arrive (measured LLM and evaluation times), so when evaluations are the "
        "bottleneck parents are picked from fresher results; model-free: one child per free "
        "slot")
    rebase: bool = Field(
        True, description="LLM runs: when the reply to an exploiting pick arrives after a "
        "better descendant of its parent (same island) was committed, apply its edit to that "
        "descendant instead, if the hunks do not conflict (evoforge.rebase)")
    pace: bool = Field(
        True, description="LLM runs: spread LLM requests over the median reply time (a request "
        "waits until 0.9 x reply time / llm.concurrency after the previous one while others are "
        "in flight) instead of sending a burst whenever slots free together, so each pick sees "
        "the results of the replies before it; with regular reply times as many requests per "
        "reply time as without (widely varying ones: about 5% fewer)")
    results_first: float = Field(
        0.0, ge=0, le=1, description="LLM runs: a free LLM slot waits for the children already "
        "made to be scored when they will be within this share of a median LLM reply time "
        "(0, the default: never wait), so the parent it picks has seen their results; the "
        "slot idles up to that share of a reply")
    slow_start: bool = Field(
        True, description="open the proposal window gradually: at most twice the population "
        "(or 2 + the session's results) outstanding until that reaches max_in_flight, so the "
        "first window is not spent on children of the initial program")


class NoveltyConfig(_Strict):
    enabled: bool = False  # re-ask, then reject, children too similar to parent or recent programs
    threshold: float = Field(0.99, gt=0, le=1)  # cosine similarity at or above which: too similar
    window: int = Field(32, ge=0)  # recent ok programs compared against (besides the parent)
    retries: int = Field(1, ge=0)  # asks again this many times before rejecting
    embedding_model: str | None = None  # /v1/embeddings at llm.base_url; else a local measure


class ExecutorConfig(_Strict):
    """Where evaluations run: ``local`` processes, or the nodes of a Ray cluster."""

    name: Literal["local", "ray"] = "local"
    # ray: "auto" (a cluster started by `ray start` on this machine), "ray://HOST:10001"
    # (Ray client), or "HOST:PORT" (the head's GCS address)
    address: str = "auto"
    # ray: what one evaluation asks of a node (Ray's own resource names and units)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    memory: int | None = Field(None, ge=1)  # bytes reserved per evaluation (Ray's `memory`)
    resources: dict[str, float] = Field(default_factory=dict)  # custom resources, e.g. {gpu_a100: 1}
    slots: int | None = Field(None, ge=1)  # default: what the cluster's nodes can hold at once
    retries: int = Field(1, ge=0)  # more tries of an evaluation whose node or worker died
    connect_timeout: float = Field(60.0, gt=0)  # seconds to reach the cluster at start
    # seconds an evaluation may wait for a live slot once nodes died (then: crashed)
    slot_wait: float = Field(300.0, gt=0)

    @field_validator("resources")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: a for k, a in v.items() if not a > 0}
        if bad:
            raise ValueError(f"resource amounts must be positive, got {bad}")
        return v


class StorageConfig(_Strict):
    url: str | None = None  # default: sqlite:///RUN_DIR/evoforge.db
    # PostgreSQL: how long an operation retries after a lost connection before the run stops
    reconnect_timeout: float = Field(30.0, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        from evoforge.errors import StorageError
        from evoforge.storages.postgres import PostgresURL, is_postgres_url

        if v is None or not is_postgres_url(v):
            return v
        try:
            target = PostgresURL.parse(v)
        except StorageError as e:
            raise ValueError(str(e)) from None
        if target.has_password:
            raise ValueError("a run's storage.url must not hold a password (the URL is stored "
                             "in the run's config.yaml): remove it and set PGPASSWORD, or add a "
                             "line to ~/.pgpass (HOST:PORT:DB:USER:PASSWORD, mode 0600)")
        return v


class Config(_Strict):
    seed: int = 0
    max_programs: int | None = Field(100, ge=1)
    max_time: float | None = None
    max_cost: float | None = Field(None, ge=0)
    target_score: float | None = None
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    selector: SelectorConfig = Field(default_factory=SelectorConfig)
    mutator: MutatorConfig = Field(default_factory=MutatorConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    novelty: NoveltyConfig = Field(default_factory=NoveltyConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v)

    @property
    def minimize(self) -> bool:
        return self.objective.direction == "minimize"

    @property
    def multi_objective(self) -> bool:
        """Whether ``objective.metrics`` turns on Pareto search."""
        return bool(self.objective.metrics)

    def staleness(self, uses_llm: bool) -> int:
        """The enforced staleness bound (see PipelineConfig.staleness)."""
        bound = self.pipeline.staleness
        return bound if bound is not None else 4 * self.in_flight(uses_llm)

    def in_flight(self, uses_llm: bool) -> int:
        if self.pipeline.max_in_flight is not None:
            return self.pipeline.max_in_flight
        extra = self.llm.concurrency if uses_llm else 0
        return extra + 2 * self.evaluation.workers


# Keys a user coming from OpenEvolve is likely to write, with our name for them.
_ALIASES = {
    "max_iterations": "max_programs",
    "random_seed": "seed",
    "api_base": "base_url",
    "timeout": "request_timeout",
    "parallel_evaluations": "workers",
    "population_size": "archive_size",
}


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            break
        ann = f.annotation
        inner = getattr(ann, "__args__", None)
        cand = [ann, *(inner or ())]
        nxt = next((c for c in cand if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            break
        model = nxt
    return list(model.model_fields)


@dataclass(frozen=True)
class Layer:
    """One source of config keys, named in errors: a file's path, ``--set KEY=VALUE``, a flag.
    ``origin`` maps a dotted evoforge key to the key as the file wrote it (a translated
    OpenEvolve file: ``selector.num_islands`` came from ``database.num_islands``)."""

    data: dict[str, Any]
    label: str
    origin: Mapping[str, str] = field(default_factory=dict)


def _holds(data: Any, loc: tuple[Any, ...]) -> int:
    """How many leading parts of ``loc`` ``data`` holds."""
    n = 0
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            break
        n += 1
    return n


def _culprits(layers: list[Layer], loc: tuple[Any, ...], every: bool) -> list[str]:
    """Labels of the layers holding the key at ``loc`` (its longest prefix any layer holds):
    all of them (an unknown key, a section-wide check), or the last one (its value is used)."""
    depth = [_holds(layer.data, loc) for layer in layers]
    best = max(depth, default=0)
    if best == 0:
        return []
    holders = [layer for layer, d in zip(layers, depth, strict=True) if d == best]
    out = []
    for layer in holders if every else holders[-1:]:
        dotted = ".".join(str(p) for p in loc[:best] if not isinstance(p, int))
        came = next((v for k, v in layer.origin.items()
                     if k == dotted or dotted.startswith(k + ".")), None)
        out.append(f"{layer.label}, key {came}" if came else layer.label)
    return out


def _describe(err: ValidationError, source: str, layers: list[Layer] | None = None) -> str:
    lines: list[tuple[str, list[str]]] = []
    named: list[str] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        section = not loc or isinstance(_value_at(layers or [], loc), dict)
        where = _culprits(layers or [], loc, every=e["type"] == "extra_forbidden" or section)
        named += [w for w in where if w not in named]
        if e["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = _fields_at(loc[:-1])
            hint = ""
            if key in _ALIASES and _ALIASES[key] in known:
                hint = f" (evoforge calls it {_ALIASES[key]!r})"
            else:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                if close:
                    hint = f" (did you mean {close[0]!r}?)"
            line = f"  - unknown key {dotted!r}{hint}; valid keys here: {', '.join(known)}"
        else:
            got = e.get("input")
            if loc[:2] == ("storage", "url") and isinstance(got, str):  # never show a password
                from evoforge.storages.postgres import redact

                got = redact(got)
            line = f"  - {dotted}: {e['msg']} (got {got!r})"
        lines.append((line, where))
    several = len(named) > 1  # then each line names its own source
    return "\n".join([f"invalid configuration ({'; '.join(named) or source}):",
                      *(line + (f" [in {'; '.join(where)}]" if several and where else "")
                        for line, where in lines),
                      "  See docs/config.md for every key."])


def _value_at(layers: list[Layer], loc: tuple[Any, ...]) -> Any:
    """The value the last layer holding all of ``loc`` gives it (None if none does)."""
    for layer in reversed(layers):
        if _holds(layer.data, loc) == len(loc):
            data: Any = layer.data
            for part in loc:
                data = data[part]
            return data
    return None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(item: str) -> dict[str, Any]:
    """``a.b=c`` -> ``{"a": {"b": c}}`` with ``c`` parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set llm.concurrency=8")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def override_layers(items: list[str] | tuple[str, ...]) -> list[Layer]:
    """``--set`` items as layers, each named after its item."""
    return [Layer(parse_override(item), f"--set {_redacted(item)}") for item in items]


def _redacted(item: str) -> str:
    """A ``--set`` item as it may be shown: a storage URL without its password."""
    if not item.strip().startswith("storage.url="):
        return item
    from evoforge.storages.postgres import redact

    key, _, value = item.partition("=")
    return f"{key}={redact(value)}"


def build_config(*layers: dict[str, Any] | Layer, overrides: list[str] | tuple[str, ...] = (),
                 source: str = "config") -> Config:
    """Merge ``layers`` (lowest precedence first), then the ``--set`` ``overrides``, and
    validate. A plain dict is a layer named ``source``; an error names the layer(s) holding
    each offending key."""
    named = [layer if isinstance(layer, Layer) else Layer(layer, source) for layer in layers]
    named += override_layers(overrides)
    merged: dict[str, Any] = {}
    for layer in named:
        merged = _deep_merge(merged, layer.data)
    try:
        return Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_describe(e, source, named)) from e


def load_config(path: str | Path | None = None, *, base: dict[str, Any] | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults < ``base`` < the file at ``path`` (an OpenEvolve config is translated, its
    warnings logged) < ``overrides``."""
    layers = [Layer(base or {}, "base config")]
    if path is not None:
        from evoforge.openevolve_config import read_config_file

        translation = read_config_file(path)
        translation.report()
        layers.append(translation.layer())
    return build_config(*layers, overrides=overrides, source=str(path) if path else "config")
