"""Islands with bounded populations, MAP-Elites grids, ring migration and adaptive parent choice.

Parent choice (``select``). By default (``stagnation``) one decision per pick:

* **Exploit** (probability ``1 - u``): the best program of the island that made the current
  global best (a new best is worked on at once), each of its outstanding children counting as
  ranks down (below);
* **Explore** (probability ``u``): a uniformly drawn island among those whose walk can take
  its next step (below; any island if none can), and on it, with probability ``explore_walk``,
  the tip of the island's *exploration walk*: the newest program that an explored pick
  produced there, whatever its score. A walk steps one child at a time: while its tip has a
  child in flight, explored picks go to other islands (with 8 proposals in flight, walks that
  branched lost their gain on the deceptive problem). Otherwise (and while the island has no tip)
  a random member or the elite of a random MAP-Elites cell other than its best's (in the
  proportion ``exploration_ratio`` : ``1 - exploration_ratio - exploitation_ratio``), whose
  child starts a new walk. A walk takes several steps in a row away from the best, each kept
  whether it scored better or worse, which is what crossing a valley takes: single explored
  steps from random members seldom chain (on the discovery benchmark's deceptive problem, at
  the same exploration, walks raised the mean gain at 600 calls from 0.36 to 0.44, or 0.51 with
  walks that never restart; docs/benchmarks.md). A walk lasts ``1 / (1 - explore_walk)``
  explored picks on average (10), so a walk into nowhere is abandoned.

A parent never comes from another island than the child's: migration is the only way across;
crossover partners and context come from the parent's island too.

**The stagnation rule** (``stagnation``, the default). ``u`` is ``min_exploration`` (0: every
pick refines the best) while the run's best keeps rising, and ``stagnant_exploration`` (50%)
once it has risen by at most ``stagnation_threshold`` (0.3%) of its progress over the initial
program in the last ``stagnation_window`` (40) results of any status. Refinement that pays is
therefore never interrupted (on the discovery benchmark's refinement problems it is level with
always taking the best, seed by seed; the success-rate and credit rules below explored 25-40%
of picks there, and even 5% cost measurably), a rise too small to matter counts as a stall, and
a stalled run spends half its picks on exploration walks over every island, which is what a
deceptive problem needs (docs/benchmarks.md). Whether a stall was worth exploring shows in how
it ended: a stall that ended with a new best from an exploiting pick (refinement got past it on
its own) halves the exploration of later stalls, at most ``stall_backoff`` (3) times, and one
that an explored pick ended doubles it back: on a problem where sampling the best keeps finding
its way (rastrigin_6, whose basins are crossed by lucky large steps from the best) exploration
fades (at most down to 6%; there 14% of picks explored instead of 27% at 5 in flight), on one
where only walks get past a stall (the deceptive trap) it stays at 50%. The
window, the backoff and the walks' tips are rebuilt by replaying the committed programs (each
child records whether its pick explored: ``MutationInfo.explored``). ``exploitation_ratio`` 1
(0) still means never (always) explore; ``adaptive=False`` keeps the configured ratios with the
two-step choice below.

With ``stagnation=False`` (or ``credit=True``, or ``adaptive=False``) the choice is in two steps:

1. **Which island.** With probability ``1 - u_run`` the island that made the current global
   best; otherwise a uniformly random island.
2. **Which parent on that island.** With probability ``1 - u_island`` the island's best
   program; otherwise a random island member or cell elite, as above (no walks).

**The adaptive rule** (a smooth success-rate rule in the spirit of Rechenberg's 1/5th rule).
Every child result (any status) is a *trial* of its island and of the run; it is a *success*
if it strictly improves its island's best (for the island) or the global best (for the run).
The success rate is measured over about the last ``adaptation_window`` trials (exponentially
weighted, starting from a prior of two trials at the target rate ``q = target_success_rate``),
and the exploration probability is::

    u_island = min(cap, (1 - exploitation_ratio) * q / rate)
    cap      = max(max_exploration, 1 - exploitation_ratio)

At the target rate the configured ratios hold (they are also the starting point); while
improvements come faster, exploration shrinks, down to ``(1 - exploitation_ratio) * q`` at a
success rate of 1 (the best is the parent 99% of the time by default: a (1+1) hill climber);
as an island stagnates it widens up to the cap. ``u_run`` is half the same rule over the run's
trials (so at most 40% of proposals leave the best island by default). The target is far below
Rechenberg's 1/5 because what adapts here is selection pressure, not a step size, and program
search improves its best rarely: at 0.2 toy runs explored almost always and lost to greedy.
``adaptive=False`` keeps the configured ratios (and uniform islands); ``exploitation_ratio=1``
turns exploration off.

**Credit assignment** (``credit``, off by default). Whether a pick explores is then decided by
which branch has been paying: every child records the branch that picked its parent
(``Selection.explored`` -> ``MutationInfo.explored``), its result is a trial of that branch (a
success if it beats its island's best), and each pick draws from the two branches' Beta
posteriors over their discounted success rates (memory about ``5 * adaptation_window``
trials; Thompson sampling) and explores if the explored branch's draw is higher, and in 5% of
picks regardless. A problem that rewards refinement soon exploits almost always; one where only
non-best parents still lead anywhere (a deceptive problem) shifts to exploring. The island
choice keeps the success-rate rule. The counts come from the committed programs, so a replay
rebuilds them; warm-up picks earn no credit. ``credit=False`` (or ``adaptive=False``, which
keeps the configured ratios) leaves the choice to the rule above.

**Warm-up** (``warmup``, off by default). For the first ``warmup`` results the island is drawn
uniformly and an exploiting pick takes any of the island's best ``warmup_width`` programs: a
broad start that keeps several early lineages alive. It pays on deceptive problems, where a
better optimum is reached only from settings not yet refined towards the nearest peak, and costs
on problems that reward refinement (see docs/benchmarks.md); a budget-independent default
could not win both, so it is a setting.

**Outstanding children** (the proposal window). ``select`` counts the parents it hands out; a
child's result (any status) releases one count of its parent, or of the program handed out for
its proposal when the child names another parent (``mutation.selected``: a tuning trial of the
run's best). When exploiting, each child of a
candidate still outstanding counts as ``outstanding_penalty`` ranks down, so a full window is not
all spent on one program before anything has come back, and a result that arrives is used at
once (a new best has no outstanding children: it is the favoured parent); exploration walks
use the same counts (with ``outstanding_penalty`` 0 they are kept all the same). These counts are
session state: a resumed run starts them at zero (they expire after 256 results anyway).

**Ties** in fitness go to the newest program everywhere (island best, cell elites, archive), so
a search drifts across plateaus instead of re-mutating the oldest equal program.

**Bounded populations.** An island holds at most ``island_size`` members. When a new member
would exceed it, the oldest member leaves that is neither among the island's best
``num_context + 1`` nor a cell elite (aging, as in regularised evolution: the population follows
the search, elites stay); if every member is protected, the worst leaves. The global archive is
the best ``archive_size``. A program that left every island and the archive is forgotten.

**Feature bins robust to outliers.** A feature with ``min`` and ``max`` uses those fixed bins.
Otherwise each island refits the range from its members' values every ``max(1, members // 4)``
joins (sooner when several new values fell outside it): the box-plot whiskers, i.e. the most
extreme values within Tukey's fences (quartiles -+ 1.5 IQR), so one extreme value lands in an
end bin instead of squeezing every other program into one cell. A refit that moves neither end
by half a bin keeps the bins; one that does re-bins the island's members, so cell elites are
always what a recomputation over the members would give.

``add`` uses no randomness and depends only on the programs added (and, for the outstanding
counts, the selections made), so the same seed and the same sequence of ``add``/``select`` give
the same choices, and replaying the committed programs rebuilds the population (islands, cells,
archive, success rates). Sampling is O(1) in the population size (every per-island structure
is bounded).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Sequence

from evoforge.config import FeatureConfig, SelectorConfig
from evoforge.errors import ConfigError, EvoforgeError
from evoforge.program import Program, Status
from evoforge.selectors.base import Selection, Selector

# (negated fitness, negated add sequence, id): ascending order puts the best first, and among
# equal fitness the program added last. Used by every sorted list and every cell elite.
_Key = tuple[float, int, int]
Cell = tuple[int, ...]

#: Feature values are clamped to +-_BIG: any range arithmetic on them (spans, fences, offsets)
#: stays finite, so an extreme but finite score (-1.7e308) cannot make a bin NaN.
_BIG = 2.0**1020  # about 1.1e307, a quarter of the largest double

_PRIOR_TRIALS = 2.0  # the success rate starts as if this many trials had hit the target rate
_EXPLOIT_CANDIDATES = 8  # exploitation looks this far down the island ranking (outstanding)
_OUTSTANDING_HORIZON = 256  # an outstanding count expires after this many results
_OUTSTANDING_CAP = 64  # counted per parent at most
_FENCE = 1.5  # Tukey's fences: quartiles -+ 1.5 IQR
#: the run's exploration (drawing the island uniformly) is this share of the rule's: at most
#: 40% of proposals by default, since every island explores within itself as well (toy runs at
#: 1.0 lost to 0.5 on all four problems, at 200, 600 and 1500 programs)
_RUN_SHARE = 0.5


def _finite(value: float) -> float:
    """Non-finite or non-numeric feature values count as 0.0 (they cannot be binned); finite
    ones are clamped to +-_BIG."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(max(v, -_BIG), _BIG) if math.isfinite(v) else 0.0


def _transform(v: float, log: bool) -> float:
    return math.log1p(max(v, 0.0)) if log else v


def _quantile(vals: list[float], p: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    pos = p * (len(vals) - 1)
    i = int(pos)
    if i + 1 >= len(vals):
        return vals[-1]
    return vals[i] + (vals[i + 1] - vals[i]) * (pos - i)


class _Axis:
    """Binning of one feature on one island: a fixed or fitted range split into ``bins``."""

    __slots__ = ("bins", "lo", "hi", "fixed_lo", "fixed_hi")

    def __init__(self, cfg: FeatureConfig) -> None:
        self.bins = cfg.bins
        self.fixed_lo = cfg.min is not None
        self.fixed_hi = cfg.max is not None
        log = cfg.scale == "log"
        self.lo: float | None = _transform(cfg.min, log) if cfg.min is not None else None
        self.hi: float | None = _transform(cfg.max, log) if cfg.max is not None else None
        if self.lo is not None and self.hi is not None and not self.hi > self.lo:
            # e.g. a log scale with min and max both <= 0: give the range a unit width
            self.hi = self.lo + 1.0

    @property
    def fixed(self) -> bool:
        return self.fixed_lo and self.fixed_hi

    def refit(self, vals: list[float]) -> bool:
        """Fit the free ends of the range to sorted member values: the box-plot whiskers (the
        most extreme values within Tukey's fences, quartiles -+ 1.5 IQR). True if the range
        changed (by more than half a bin at either end)."""
        q1, q3 = _quantile(vals, 0.25), _quantile(vals, 0.75)
        iqr = q3 - q1
        # the whiskers of a box plot: the most extreme values within the fences
        lo = vals[bisect.bisect_left(vals, q1 - _FENCE * iqr)]
        hi = vals[bisect.bisect_right(vals, q3 + _FENCE * iqr) - 1]
        if not hi > lo:  # most values equal: the observed extremes, else a unit-ish width
            lo, hi = vals[0], vals[-1]
        if self.fixed_lo:
            assert self.lo is not None
            lo = self.lo
        if self.fixed_hi:
            assert self.hi is not None
            hi = self.hi
        if not hi > lo:
            w = max(abs(lo), abs(hi), 1.0)
            if self.fixed_lo:
                hi = lo + w
            elif self.fixed_hi:
                lo = hi - w
            else:
                lo, hi = lo - w / 2, hi + w / 2
        if self.lo is not None and self.hi is not None:
            # hysteresis: a move of less than half a bin at both ends keeps the bins (no re-bin)
            tol = (self.hi - self.lo) / (2 * self.bins)
            if abs(lo - self.lo) <= tol and abs(hi - self.hi) <= tol:
                return False
        self.lo, self.hi = lo, hi
        return True

    def bin(self, v: float) -> int:
        assert self.lo is not None and self.hi is not None
        width = self.hi - self.lo
        frac = (v - self.lo) / width if width > 0 else 0.0
        if not math.isfinite(frac):  # cannot happen for clamped values; never a NaN bin
            frac = 0.0
        return min(max(int(frac * self.bins), 0), self.bins - 1)


class _Island:
    __slots__ = ("members", "pool", "pos", "ranked", "cells", "cell_list", "cell_pos",
                 "cell_of", "axes", "since_refit", "outside", "succ", "trials", "tip")

    def __init__(self, features: list[FeatureConfig]) -> None:
        self.members: dict[int, Program] = {}  # in the order they joined (oldest first)
        self.pool: list[int] = []  # member ids, any order (random member: O(1))
        self.pos: dict[int, int] = {}  # member id -> index in pool
        self.ranked: list[_Key] = []  # every member, best first (bounded by island_size)
        self.cells: dict[Cell, Program] = {}  # MAP-Elites grid: cell -> elite
        self.cell_list: list[Cell] = []  # occupied cells (random cell: O(1))
        self.cell_pos: dict[Cell, int] = {}
        self.cell_of: dict[int, Cell] = {}  # member id -> its cell
        self.axes = [_Axis(f) for f in features]
        self.since_refit = 0  # joins since the feature ranges were last fitted
        self.outside = 0  # ... of which fell outside a fitted range (clipped into an end bin)
        self.succ = 0.0  # exponentially weighted successes and trials (the adaptive rule)
        self.trials = 0.0
        self.tip: int | None = None  # the newest ok child of an explored pick (a walk's tip)


class IslandSelector(Selector):
    """Islands + per-island MAP-Elites + adaptive exploitation + ring migration.

    Registry name ``islands``. Every argument has a default; see ``SelectorConfig`` and the
    module docstring for the rule. ``features`` (the constructor argument) is kept as
    ``feature_configs`` because ``features(program)`` is the Selector method returning a
    program's feature values.
    """

    __eq__ = object.__eq__  # identity, not the base dataclass's field comparison
    __hash__ = object.__hash__

    def __init__(
        self,
        *,
        minimize: bool = False,
        num_islands: int = 4,
        migration_interval: int = 40,
        migration_rate: float = 0.1,
        exploration_ratio: float = 0.2,
        exploitation_ratio: float = 0.5,
        archive_size: int = 20,
        num_context: int = 3,
        crossover_rate: float = 0.1,
        features: Sequence[FeatureConfig | str] | None = None,
        adaptive: bool = True,
        target_success_rate: float = 0.02,
        max_exploration: float = 0.8,
        adaptation_window: int = 20,
        island_size: int = 64,
        outstanding_penalty: float = 0.25,
        warmup: int = 0,
        warmup_width: int = 8,
        credit: bool = False,
        stagnation: bool = True,
        stagnation_window: int = 40,
        stagnation_threshold: float = 0.003,
        min_exploration: float = 0.0,
        stagnant_exploration: float = 0.5,
        explore_walk: float = 0.9,
        stall_backoff: int = 3,
    ) -> None:
        self.credit = credit
        self.stagnation = stagnation and not credit
        self.stagnation_window = stagnation_window
        self.stagnation_threshold = stagnation_threshold
        self.min_exploration = min_exploration
        self.stagnant_exploration = stagnant_exploration
        self.explore_walk = explore_walk
        self.stall_backoff = stall_backoff
        self._backoff = 0  # halvings of stagnant_exploration now (stalls refinement ended)
        # the global best after each result (the stagnation rule looks one window back)
        self._best_hist: deque[float] = deque(maxlen=max(1, stagnation_window) + 1)
        # credit: discounted successes / trials of children of exploited [0] and explored [1]
        # picks (from MutationInfo.explored, so replaying committed programs rebuilds them)
        self._arm_succ = [0.0, 0.0]
        self._arm_trials = [0.0, 0.0]
        self.warmup = warmup
        self.warmup_width = warmup_width
        self.minimize = minimize
        self._initial = None
        self.num_islands = num_islands
        self.migration_interval = migration_interval
        self.migration_rate = migration_rate
        self.exploration_ratio = exploration_ratio
        self.exploitation_ratio = exploitation_ratio
        self.archive_size = archive_size
        self.num_context = num_context
        self.crossover_rate = crossover_rate
        self.adaptive = adaptive
        self.target_success_rate = target_success_rate
        self.max_exploration = max_exploration
        self.adaptation_window = adaptation_window
        self.island_size = island_size
        self.outstanding_penalty = outstanding_penalty
        if features is None:
            features = [FeatureConfig(name="code_length", bins=10)]
        self.feature_configs: list[FeatureConfig] = [
            FeatureConfig(name=f) if isinstance(f, str) else f for f in features]
        problems = []
        if num_islands < 1:
            problems.append(f"num_islands must be at least 1 (got {num_islands})")
        if migration_interval < 1:
            problems.append(f"migration_interval must be at least 1 (got {migration_interval})")
        if archive_size < 1:
            problems.append(f"archive_size must be at least 1 (got {archive_size})")
        if num_context < 0:
            problems.append(f"num_context must be >= 0 (got {num_context})")
        if island_size < 2:
            problems.append(f"island_size must be at least 2 (got {island_size})")
        if adaptation_window < 1:
            problems.append(f"adaptation_window must be at least 1 (got {adaptation_window})")
        if stagnation_window < 1:
            problems.append(f"stagnation_window must be at least 1 (got {stagnation_window})")
        if stall_backoff < 0:
            problems.append(f"stall_backoff must be >= 0 (got {stall_backoff})")
        if not (stagnation_threshold >= 0.0 and math.isfinite(stagnation_threshold)):
            problems.append(f"stagnation_threshold must be >= 0 (got {stagnation_threshold})")
        if not 0.0 < target_success_rate < 1.0:
            problems.append("target_success_rate must be between 0 and 1, exclusive (got "
                            f"{target_success_rate})")
        if not (outstanding_penalty >= 0.0 and math.isfinite(outstanding_penalty)):
            problems.append(f"outstanding_penalty must be >= 0 (got {outstanding_penalty})")
        for name in ("migration_rate", "exploration_ratio", "exploitation_ratio",
                     "crossover_rate", "max_exploration", "min_exploration",
                     "stagnant_exploration", "explore_walk"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name} must be between 0 and 1 (got {v})")
        if exploration_ratio + exploitation_ratio > 1 + 1e-9:
            problems.append("exploration_ratio + exploitation_ratio must be at most 1 (got "
                            f"{exploration_ratio} + {exploitation_ratio})")
        names = [f.name for f in self.feature_configs]
        if len(set(names)) != len(names):
            problems.append(f"feature names must be distinct (got {names})")
        if problems:
            raise ConfigError("invalid IslandSelector settings: " + "; ".join(problems)
                              + ". Fix the selector section of the config.")
        self._base = max(0.0, 1.0 - exploitation_ratio)  # exploration at the target rate
        # share of exploration picks that take a random member (the rest: a cell elite)
        self._member_share = exploration_ratio / self._base if self._base > 0 else 0.0
        self._cap = max(max_exploration, self._base)  # never below the configured ratio
        self._decay = 1.0 - 1.0 / adaptation_window
        self._n_protect = num_context + 1
        self._top_cap = max(self.archive_size, self.num_context + 1)
        self._log = [f.scale == "log" for f in self.feature_configs]
        # indexed programs (members of an island or the archive); forgotten when they leave all
        self._programs: dict[int, Program] = {}
        self._keys: dict[int, _Key] = {}  # id -> sort key (ties: the later added wins)
        self._fvals: dict[int, tuple[float, ...]] = {}  # id -> transformed feature values
        self._refs: dict[int, int] = {}  # id -> islands holding it + 1 if in the archive
        self._seen: set[int] = set()  # every id added (any status): add is idempotent
        self._count = 0  # distinct ok programs added (len)
        self._archive: list[_Key] = []
        self._islands = [_Island(self.feature_configs) for _ in range(self.num_islands)]
        self._migrations = 0
        self._best_island = 0  # the island that made the current global best
        self._g_succ = 0.0  # run-wide weighted successes and trials
        self._g_trials = 0.0
        self._clock = 0  # results added (any status): the outstanding counts' time
        self._out: dict[int, deque[int]] = {}  # parent id -> clock of each outstanding pick

    @classmethod
    def from_config(cls, cfg: SelectorConfig, *, minimize: bool = False) -> IslandSelector:
        return cls(
            minimize=minimize,
            num_islands=cfg.num_islands,
            migration_interval=cfg.migration_interval,
            migration_rate=cfg.migration_rate,
            exploration_ratio=cfg.exploration_ratio,
            exploitation_ratio=cfg.exploitation_ratio,
            archive_size=cfg.archive_size,
            num_context=cfg.num_context,
            crossover_rate=cfg.crossover_rate,
            features=[f.model_copy() for f in cfg.features],
            adaptive=cfg.adaptive,
            target_success_rate=cfg.target_success_rate,
            max_exploration=cfg.max_exploration,
            adaptation_window=cfg.adaptation_window,
            island_size=cfg.island_size,
            outstanding_penalty=cfg.outstanding_penalty,
            warmup=cfg.warmup,
            warmup_width=cfg.warmup_width,
            credit=cfg.credit,
            stagnation=cfg.stagnation,
            stagnation_window=cfg.stagnation_window,
            stagnation_threshold=cfg.stagnation_threshold,
            min_exploration=cfg.min_exploration,
            stagnant_exploration=cfg.stagnant_exploration,
            explore_walk=cfg.explore_walk,
            stall_backoff=cfg.stall_backoff,
        )

    # ------------------------------------------------------------------ features
    def __repr__(self) -> str:
        return (f"IslandSelector(minimize={self.minimize}, num_islands={self.num_islands}, "
                f"programs={self._count}, migrations={self._migrations})")

    def features(self, program: Program) -> dict[str, float]:
        """Raw feature values: ``code_length``, ``line_count``, ``score`` or a metric (0.0 if
        missing or not finite)."""
        out: dict[str, float] = {}
        for f in self.feature_configs:
            if f.name == "code_length":
                v: float = float(len(program.code))
            elif f.name == "line_count":
                v = float(len(program.code.splitlines()))
            elif f.name == "score":
                v = program.score if program.score is not None else 0.0
            else:
                v = program.metrics.get(f.name, 0.0)
            out[f.name] = _finite(v)
        return out

    # ------------------------------------------------------------------ indexing
    def _key(self, program: Program) -> _Key:
        return self._keys[program.id]

    def _ref(self, pid: int) -> None:
        self._refs[pid] = self._refs.get(pid, 0) + 1

    def _unref(self, pid: int) -> None:
        n = self._refs[pid] - 1
        if n:
            self._refs[pid] = n
            return
        del self._refs[pid], self._programs[pid], self._keys[pid], self._fvals[pid]

    def add(self, program: Program) -> None:
        if not program.status.terminal or program.id in self._seen:
            return  # pending, or already added (idempotent)
        self._seen.add(program.id)
        self._clock += 1
        picked = (program.mutation.selected if program.mutation.selected is not None
                  else program.parent_ids[0] if program.parent_ids else None)
        if picked is not None:
            self._release(picked)
        ok = program.status is Status.OK and program.score is not None
        if self.credit and program.mutation.explored is not None and self._initial is not None:
            self._credit(program, ok)
        if program.parent_ids and self._initial is not None:
            self._trial(program, ok)
        if not ok:
            if self._archive:
                self._best_hist.append(-self._archive[0][0])
            return
        self._count += 1
        self._keys[program.id] = (-self.fitness(program), -self._count, program.id)
        self._programs[program.id] = program
        raw = self.features(program)
        self._fvals[program.id] = tuple(
            _transform(raw[f.name], log)
            for f, log in zip(self.feature_configs, self._log, strict=True)
        )
        key = self._key(program)
        if not self._archive or key < self._archive[0]:
            self._best_island = program.island % self.num_islands if self._initial else 0
        self._insert_archive(key)
        if self._initial is None:
            self._initial = program
            for isl in self._islands:
                self._join(isl, program)
        else:
            isl = self._islands[program.island % self.num_islands]
            self._join(isl, program)
            if program.mutation.explored and program.id in isl.members:
                isl.tip = program.id
        stalled = self.stall_backoff > 0 and program.mutation.explored is not None and self.stagnant()
        self._best_hist.append(-self._archive[0][0])
        if stalled and not self.stagnant():  # this child ended a stall: which branch did?
            step = -1 if program.mutation.explored else 1
            self._backoff = min(max(self._backoff + step, 0), self.stall_backoff)
        if self._count % self.migration_interval == 0:
            self._migrate()

    def stagnant(self) -> bool:
        """Whether the run's best rose by less than ``stagnation_threshold`` of its progress
        over the initial program in the last ``stagnation_window`` results (False until that
        many results have come in)."""
        h = self._best_hist
        if len(h) < h.maxlen or self._initial is None:  # type: ignore[operator]
            return False
        progress = h[-1] - self.fitness(self._initial)
        return h[-1] - h[0] <= self.stagnation_threshold * max(progress, 0.0)

    def _credit(self, child: Program, ok: bool) -> None:
        """Credit assignment: a child's result is a trial of the branch (explore or exploit)
        that picked its parent; a success if it beats its island's best."""
        explored = bool(child.mutation.explored)
        isl = self._islands[child.island % self.num_islands]
        win = ok and self.fitness(child) > -isl.ranked[0][0]
        d = 1.0 - 1.0 / (5 * self.adaptation_window)
        for arm in (0, 1):
            self._arm_succ[arm] *= d
            self._arm_trials[arm] *= d
        self._arm_succ[explored] += 1.0 if win else 0.0
        self._arm_trials[explored] += 1.0

    def _explores(self, island: int, rng: random.Random) -> bool:
        """Whether this pick explores: the adaptive rule, or with ``credit`` a Thompson draw
        between the two branches' success rates (at least 5% of picks explore)."""
        if self.stagnation and self.adaptive:
            return rng.random() < self.exploration()
        if not self.credit or not self.adaptive or self._base <= 0.0:
            return rng.random() < self.exploration(island)
        if self._base >= 1.0 or rng.random() < 0.05:  # exploitation_ratio 0: always explore
            return True
        s, t = self._arm_succ, self._arm_trials
        draw = [rng.betavariate(s[a] + 1.0, t[a] - s[a] + 1.0) for a in (0, 1)]
        return draw[1] > draw[0]

    def _trial(self, child: Program, ok: bool) -> None:
        """A child's result: one trial of its island and of the run (see the module doc)."""
        isl = self._islands[child.island % self.num_islands]
        d = self._decay
        fit = self.fitness(child) if ok else -math.inf
        isl.succ = d * isl.succ + (1.0 if fit > -isl.ranked[0][0] else 0.0)
        isl.trials = d * isl.trials + 1.0
        self._g_succ = d * self._g_succ + (1.0 if fit > -self._archive[0][0] else 0.0)
        self._g_trials = d * self._g_trials + 1.0

    def _insert_archive(self, key: _Key) -> None:
        top = self._archive
        if len(top) >= self.archive_size and key >= top[-1]:
            return
        bisect.insort(top, key)
        self._ref(key[2])
        if len(top) > self.archive_size:
            self._unref(top.pop()[2])

    def _join(self, isl: _Island, program: Program) -> None:
        pid = program.id
        isl.members[pid] = program
        isl.pos[pid] = len(isl.pool)
        isl.pool.append(pid)
        bisect.insort(isl.ranked, self._key(program))
        self._ref(pid)
        isl.since_refit += 1
        m = len(isl.members)
        for axis, v in zip(isl.axes, self._fvals[pid], strict=True):
            if not axis.fixed and (axis.lo is None or not axis.lo <= v <= axis.hi):  # type: ignore[operator]
                isl.outside += 1
                break
        if ((isl.since_refit >= max(1, m // 4) or isl.outside >= max(2, m // 16))
                and self._refit(isl)):
            self._rebin(isl)
        else:
            self._place(isl, program)
        while len(isl.members) > self.island_size:
            self._evict(isl)

    def _refit(self, isl: _Island) -> bool:
        isl.since_refit = isl.outside = 0
        changed = False
        for k, axis in enumerate(isl.axes):
            if not axis.fixed:
                vals = sorted(self._fvals[pid][k] for pid in isl.members)
                changed = axis.refit(vals) or changed
        return changed

    def _cell(self, isl: _Island, pid: int) -> Cell:
        return tuple(a.bin(v) for a, v in zip(isl.axes, self._fvals[pid], strict=True))

    def _place(self, isl: _Island, program: Program) -> None:
        cell = self._cell(isl, program.id)
        isl.cell_of[program.id] = cell
        elite = isl.cells.get(cell)
        if elite is None:
            isl.cells[cell] = program
            isl.cell_pos[cell] = len(isl.cell_list)
            isl.cell_list.append(cell)
        elif self._keys[program.id] < self._keys[elite.id]:
            isl.cells[cell] = program

    def _rebin(self, isl: _Island) -> None:
        """Recompute every member's cell and every cell's elite under the island's new range."""
        isl.cells = {}
        isl.cell_list = []
        isl.cell_pos = {}
        isl.cell_of = {}
        for p in isl.members.values():
            self._place(isl, p)

    def _evict(self, isl: _Island) -> None:
        """The oldest member that is neither among the island's best nor a cell elite leaves;
        if every member is protected, the worst does (never the best)."""
        protect = {k[2] for k in isl.ranked[: self._n_protect]}
        victim = None
        for pid in isl.members:  # oldest first
            if pid not in protect and isl.cells[isl.cell_of[pid]].id != pid:
                victim = pid
                break
        if victim is None:
            victim = isl.ranked[-1][2]
        self._leave(isl, victim)

    def _leave(self, isl: _Island, pid: int) -> None:
        program = isl.members.pop(pid)
        if isl.tip == pid:  # the walk's tip left: the next explored pick starts a new walk
            isl.tip = None
        i = isl.pos.pop(pid)
        last = isl.pool.pop()
        if last != pid:
            isl.pool[i] = last
            isl.pos[last] = i
        key = self._key(program)
        j = bisect.bisect_left(isl.ranked, key)
        del isl.ranked[j]
        cell = isl.cell_of.pop(pid)
        if isl.cells[cell].id == pid:  # an elite left: the next best of its cell, if any
            rest = [self._keys[q] for q in isl.members if isl.cell_of[q] == cell]
            if rest:
                isl.cells[cell] = self._programs[min(rest)[2]]
            else:
                del isl.cells[cell]
                k = isl.cell_pos.pop(cell)
                moved = isl.cell_list.pop()
                if moved != cell:
                    isl.cell_list[k] = moved
                    isl.cell_pos[moved] = k
        self._unref(pid)

    def _migrate(self) -> None:
        """Ring migration: island i sends its top programs to island (i+1) % n as members.

        Migrants are chosen from a snapshot taken before any island receives, so a program
        moves at most one hop per migration; a program already on the target is not sent again.
        """
        self._migrations += 1
        n = self.num_islands
        if n == 1:
            return
        outgoing: list[list[Program]] = []
        for isl in self._islands:
            k = min(self.archive_size, max(1, round(self.migration_rate * len(isl.members))))
            outgoing.append([self._programs[key[2]] for key in isl.ranked[:k]])
        for i, migrants in enumerate(outgoing):
            dest = self._islands[(i + 1) % n]
            for p in migrants:
                if p.id not in dest.members and p.id in self._programs:
                    self._join(dest, p)

    # ------------------------------------------------------------------ outstanding children
    def _release(self, parent_id: int) -> None:
        q = self._out.get(parent_id)
        if q:
            q.popleft()
            if not q:
                del self._out[parent_id]
        if self._clock % _OUTSTANDING_HORIZON == 0 and self._out:
            for pid in list(self._out):
                self.outstanding(pid)

    def outstanding(self, program_id: int) -> int:
        """Children of this program handed out by ``select`` whose results have not been added
        yet (expired after 256 results; at most 64 counted)."""
        q = self._out.get(program_id)
        if not q:
            return 0
        oldest = self._clock - _OUTSTANDING_HORIZON
        while q and q[0] < oldest:
            q.popleft()
        if not q:
            del self._out[program_id]
            return 0
        return len(q)

    # ------------------------------------------------------------------ sampling
    def _level(self, succ: float, trials: float) -> float:
        """Exploration probability for a weighted success count over weighted trials."""
        if self._base <= 0.0 or not self.adaptive:
            return self._base
        q = self.target_success_rate
        rate = (succ + q * _PRIOR_TRIALS) / (trials + _PRIOR_TRIALS)
        return min(self._cap, self._base * q / rate)

    def exploration(self, island: int | None = None) -> float:
        """The current exploration probability of an island (``1 -`` the probability that its
        best is the parent) or, with no island, of the run (the probability that the island
        is drawn uniformly instead of being the island of the global best). Under the
        stagnation rule both are the probability that a pick explores (an island's exploration
        walk, or a random member or cell elite) instead of taking the best island's best."""
        if self.stagnation and self.adaptive:
            if self._base <= 0.0 or self._base >= 1.0:  # exploitation_ratio 1 or 0
                return 1.0 - self.exploitation_ratio
            if not self.stagnant():
                return self.min_exploration
            return self.stagnant_exploration / 2 ** self._backoff
        if island is None:
            if self.num_islands == 1:
                return 0.0
            if not self.adaptive:
                return 1.0
            return _RUN_SHARE * self._level(self._g_succ, self._g_trials)
        isl = self._islands[island]
        return self._level(isl.succ, isl.trials)

    def select(self, rng: random.Random) -> Selection:
        if not self._count:
            raise EvoforgeError(
                "cannot select a parent: the population is empty. The initial program must be "
                "evaluated first (status ok with a score) and added with add() before select().")
        n = self.num_islands
        warm = self._clock < self.warmup
        if self.stagnation and self.adaptive and not warm:
            # one decision: exploit the best island's best, or explore anywhere
            explored = self._explores(self._best_island, rng)
            if explored:  # an island whose walk can take its next step (none in flight)
                free = [k for k, isl in enumerate(self._islands) if not self._walk_busy(isl)]
                island = free[rng.randrange(len(free))] if free else rng.randrange(n)
            else:
                island = self._best_island
        else:
            if n == 1:
                island = 0
            elif warm or rng.random() < self.exploration(None):
                island = rng.randrange(n)
            else:
                island = self._best_island
            explored = self._explores(island, rng)
        isl = self._islands[island]
        if (explored and self.stagnation and self.adaptive and isl.tip is not None
                and not self._walk_busy(isl) and rng.random() < self.explore_walk):
            parent = isl.members[isl.tip]  # the island's exploration walk goes on from its tip
        elif explored:
            cells = isl.cell_list
            if rng.random() < self._member_share or len(cells) < 2:
                parent = isl.members[isl.pool[rng.randrange(len(isl.pool))]]
            else:  # the elite of a random cell other than the island best's (not exploring)
                i = rng.randrange(len(cells) - 1)
                if i >= isl.cell_pos[isl.cell_of[isl.ranked[0][2]]]:
                    i += 1
                parent = isl.cells[cells[i]]
        elif warm:
            ranked = isl.ranked[: self.warmup_width]
            parent = self._programs[ranked[rng.randrange(len(ranked))][2]]
        else:
            parent = self._exploit(isl)
        context = self._context(isl, parent, rng)
        others: tuple[Program, ...] = ()
        if rng.random() < self.crossover_rate:
            seen = {parent.id, *(c.id for c in context)}
            pool = [k[2] for k in isl.ranked[: self.num_context + 2] if k[2] not in seen]
            if not pool:
                pool = [k[2] for k in isl.ranked[: self.num_context + 2] if k[2] != parent.id]
            if pool:
                others = (self._programs[pool[rng.randrange(len(pool))]],)
        q = self._out.get(parent.id)  # outstanding children (the penalty; walks in flight)
        if q is None:
            q = self._out[parent.id] = deque(maxlen=_OUTSTANDING_CAP)
        q.append(self._clock)
        return Selection(parent=parent, others=others, context=context, island=island,
                         explored=None if warm else explored)  # warm-up picks earn no credit

    def _walk_busy(self, isl: _Island) -> bool:
        """Whether the island's walk has a step in flight (another explored pick there would
        branch it)."""
        return isl.tip is not None and self.outstanding(isl.tip) > 0

    def _exploit(self, isl: _Island) -> Program:
        """The island's best, each outstanding child counting ``outstanding_penalty`` ranks
        down (ties: the better ranked)."""
        ranked = isl.ranked
        c = self.outstanding_penalty
        best_pid, best_eff = ranked[0][2], math.inf
        for rank, key in enumerate(ranked[:_EXPLOIT_CANDIDATES]):
            if rank >= best_eff:
                break
            eff = rank + c * self.outstanding(key[2]) if c > 0 else rank
            if eff < best_eff:
                best_pid, best_eff = key[2], eff
        return self._programs[best_pid]

    def _context(self, isl: _Island, parent: Program, rng: random.Random) -> tuple[Program, ...]:
        """Up to num_context programs, never the parent: the island's best first, then (for
        diversity, about a third of the slots) elites of other cells, then more of the best."""
        want = self.num_context
        if want == 0:
            return ()
        chosen: list[Program] = []
        seen = {parent.id}
        n_diverse = want // 3 if want >= 3 else 0
        top_ids = [k[2] for k in isl.ranked[: want + 1] if k[2] != parent.id]
        for pid in top_ids[: want - n_diverse]:
            chosen.append(self._programs[pid])
            seen.add(pid)
        if len(isl.cell_list) > 1:
            parent_cell = isl.cell_of.get(parent.id)
            for _ in range(2 * (want - len(chosen)) + 2):
                if len(chosen) >= want:
                    break
                cell = isl.cell_list[rng.randrange(len(isl.cell_list))]
                elite = isl.cells[cell]
                if cell != parent_cell and elite.id not in seen:
                    chosen.append(elite)
                    seen.add(elite.id)
        for pid in top_ids:
            if len(chosen) >= want:
                break
            if pid not in seen:
                chosen.append(self._programs[pid])
                seen.add(pid)
        return tuple(chosen)

    # ------------------------------------------------------------------ queries
    def best(self) -> Program | None:
        return self._programs[self._archive[0][2]] if self._archive else None

    def __len__(self) -> int:
        return self._count

    @property
    def migrations(self) -> int:
        """How many migration rounds have happened."""
        return self._migrations

    @property
    def best_island(self) -> int:
        """The island that made the current global best (the initial program: 0)."""
        return self._best_island

    @property
    def resident(self) -> int:
        """Programs held in memory: members of an island or of the archive (bounded by
        ``num_islands * island_size + archive_size``)."""
        return len(self._programs)

    def archive(self) -> tuple[Program, ...]:
        """The global elite archive, best first."""
        return tuple(self._programs[k[2]] for k in self._archive)

    def island_members(self, island: int) -> tuple[Program, ...]:
        """Members of an island in the order they joined (seeded initial program and migrants
        included; at most ``island_size``)."""
        return tuple(self._islands[island].members.values())

    def island_top(self, island: int) -> tuple[Program, ...]:
        """An island's best programs, best first (at most max(archive_size, num_context + 1))."""
        return tuple(self._programs[k[2]] for k in self._islands[island].ranked[: self._top_cap])

    def cells(self, island: int) -> dict[Cell, Program]:
        """The island's MAP-Elites grid: cell (one bin index per feature) -> elite."""
        return dict(self._islands[island].cells)

    def feature_range(self, island: int, name: str) -> tuple[float, float] | None:
        """The island's current (transformed) range for a feature, None before any value."""
        names = [f.name for f in self.feature_configs]
        if name not in names:
            raise EvoforgeError(f"unknown feature {name!r}; this selector's features: {names}")
        idx = names.index(name)
        axis = self._islands[island].axes[idx]
        if axis.lo is None or axis.hi is None:
            return None
        return (axis.lo, axis.hi)
