"""Island model with MAP-Elites grids per island, a global elite archive and ring migration.

Layout of the in-memory index (every structure supports O(1) or O(log n) parent sampling):

* ``_programs``: id -> Program for every distinct ok program (``len(selector)``).
* ``_archive``: the global top ``archive_size`` by fitness, a small sorted list of keys.
* per island: the member list (random member in O(1)), a small sorted top list, the MAP-Elites
  grid (cell -> elite) plus a list of occupied cells (random cell in O(1)), and one value range
  per feature axis.

Feature binning never piles everything into one bin: a feature with ``min``/``max`` uses fixed
bins (values clipped into the end bins); otherwise each island keeps an adaptive range that
grows geometrically (amortised) when a value falls outside it and then re-bins every member of
that island from the stored feature values, so cell elites stay exactly what a recomputation
would give.

``add`` uses no randomness: replaying the same programs in the same order rebuilds the same
index (this is how a resumed run gets its population back).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

from evoforge.config import FeatureConfig, SelectorConfig
from evoforge.errors import ConfigError, EvoforgeError
from evoforge.program import Program, Status
from evoforge.selectors.base import Selection, Selector

# (negated fitness, add sequence, id): ascending order puts the best first, ties go to the
# program added earlier. Used by every sorted top list.
_Key = tuple[float, int, int]
Cell = tuple[int, ...]

_BUILTIN_FEATURES = ("code_length", "line_count", "score")


#: Feature values are clamped to +-_BIG: any range arithmetic on them (spans, 1.5x growth,
#: offsets) stays finite, so an extreme but finite score (-1.7e308) cannot make a bin NaN.
_BIG = 2.0**1020  # about 1.1e307, a quarter of the largest double


def _finite(value: float) -> float:
    """Non-finite or non-numeric feature values count as 0.0 (they cannot be binned); finite
    ones are clamped to +-_BIG."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(max(v, -_BIG), _BIG) if math.isfinite(v) else 0.0


class _Axis:
    """Binning of one feature on one island: a fixed or adaptive range split into ``bins``.

    An adaptive side moves only when a value falls outside the range. The new range is anchored
    at the observed extreme on the other side and leaves half the observed span as headroom on
    the growing side, so the span grows by a factor of at least 1.5 per change: O(log) changes
    (each followed by a re-bin of the island) over any range of values, and at least two
    thirds of the range holds observed values right after a change.
    """

    __slots__ = ("bins", "lo", "hi", "fixed_lo", "fixed_hi", "obs_lo", "obs_hi")

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
        self.obs_lo = math.inf  # observed extremes of this island's members
        self.obs_hi = -math.inf

    def _init_range(self, v: float) -> None:
        w0 = abs(v) if v != 0 else 1.0
        if self.lo is None and self.hi is None:
            self.lo, self.hi = v - w0 / 2, v + w0 / 2
        elif self.hi is None:
            assert self.lo is not None
            self.hi = self.lo + max(2 * (v - self.lo), w0)
        elif self.lo is None:
            self.lo = self.hi - max(2 * (self.hi - v), w0)

    def fit(self, v: float) -> bool:
        """Make the range cover ``v`` where it may move. True if the range changed."""
        changed = False
        if self.lo is None or self.hi is None:
            self._init_range(v)  # first value on this island: nothing binned yet
        elif v > self.hi and not self.fixed_hi:
            base = self.lo if self.fixed_lo else self.obs_lo
            self.lo, self.hi = base, v + 0.5 * (v - base)
            changed = True
        elif v < self.lo and not self.fixed_lo:
            top = self.hi if self.fixed_hi else self.obs_hi
            self.lo, self.hi = v - 0.5 * (top - v), top
            changed = True
        self.obs_lo = min(self.obs_lo, v)
        self.obs_hi = max(self.obs_hi, v)
        return changed

    def bin(self, v: float) -> int:
        assert self.lo is not None and self.hi is not None
        width = self.hi - self.lo
        frac = (v - self.lo) / width if width > 0 else 0.0
        if not math.isfinite(frac):  # cannot happen for clamped values; never a NaN bin
            frac = 0.0
        return min(max(int(frac * self.bins), 0), self.bins - 1)


def _transform(v: float, log: bool) -> float:
    return math.log1p(max(v, 0.0)) if log else v


class _Island:
    __slots__ = ("members", "member_ids", "top", "cells", "cell_keys", "cell_of", "axes")

    def __init__(self, features: list[FeatureConfig]) -> None:
        self.members: list[Program] = []  # in the order they joined (random member: O(1))
        self.member_ids: set[int] = set()
        self.top: list[_Key] = []  # best first, capped
        self.cells: dict[Cell, Program] = {}  # MAP-Elites grid: cell -> elite
        self.cell_keys: list[Cell] = []  # occupied cells (random cell: O(1))
        self.cell_of: dict[int, Cell] = {}  # member id -> its cell
        self.axes = [_Axis(f) for f in features]


class IslandSelector(Selector):
    """Islands + per-island MAP-Elites + global elite archive + ring migration.

    Registry name ``islands``. Every argument has a default; see ``SelectorConfig``.
    ``features`` (the constructor argument) is kept as ``feature_configs`` because
    ``features(program)`` is the Selector method returning a program's feature values.
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
    ) -> None:
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
        for name in ("migration_rate", "exploration_ratio", "exploitation_ratio",
                     "crossover_rate"):
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
        self._programs: dict[int, Program] = {}
        self._seq: dict[int, int] = {}  # id -> add order (tie-break of equal fitness)
        self._fvals: dict[int, tuple[float, ...]] = {}  # id -> transformed feature values
        self._log = [f.scale == "log" for f in self.feature_configs]
        self._archive: list[_Key] = []
        self._top_cap = max(self.archive_size, self.num_context + 1)
        self._islands = [_Island(self.feature_configs) for _ in range(self.num_islands)]
        self._migrations = 0

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
        )

    # ------------------------------------------------------------------ features
    def __repr__(self) -> str:
        return (f"IslandSelector(minimize={self.minimize}, num_islands={self.num_islands}, "
                f"programs={len(self._programs)}, migrations={self._migrations})")

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
        return (-self.fitness(program), self._seq[program.id], program.id)

    @staticmethod
    def _insert_top(top: list[_Key], key: _Key, cap: int) -> None:
        if len(top) >= cap and key >= top[-1]:
            return
        bisect.insort(top, key)
        if len(top) > cap:
            top.pop()

    def add(self, program: Program) -> None:
        if program.status != Status.OK or program.score is None:
            return
        if program.id in self._programs:
            return  # already indexed (idempotent)
        self._seq[program.id] = len(self._programs)
        self._programs[program.id] = program
        raw = self.features(program)
        self._fvals[program.id] = tuple(
            _transform(raw[f.name], log)
            for f, log in zip(self.feature_configs, self._log, strict=True)
        )
        key = self._key(program)
        self._insert_top(self._archive, key, self.archive_size)
        if self._initial is None:
            self._initial = program
            for isl in self._islands:
                self._join(isl, program)
        else:
            self._join(self._islands[program.island % self.num_islands], program)
        if len(self._programs) % self.migration_interval == 0:
            self._migrate()

    def _join(self, isl: _Island, program: Program) -> None:
        isl.members.append(program)
        isl.member_ids.add(program.id)
        self._insert_top(isl.top, self._key(program), self._top_cap)
        vals = self._fvals[program.id]
        rebin = False
        for axis, v in zip(isl.axes, vals, strict=True):
            rebin = axis.fit(v) or rebin
        if rebin:
            self._rebin(isl)
        else:
            self._place(isl, program)

    def _cell(self, isl: _Island, program: Program) -> Cell:
        return tuple(a.bin(v) for a, v in zip(isl.axes, self._fvals[program.id], strict=True))

    def _place(self, isl: _Island, program: Program) -> None:
        cell = self._cell(isl, program)
        isl.cell_of[program.id] = cell
        elite = isl.cells.get(cell)
        if elite is None:
            isl.cells[cell] = program
            isl.cell_keys.append(cell)
        elif self.fitness(program) > self.fitness(elite):
            isl.cells[cell] = program

    def _rebin(self, isl: _Island) -> None:
        """Recompute every member's cell and every cell's elite under the island's new range."""
        isl.cells = {}
        isl.cell_keys = []
        isl.cell_of = {}
        for p in isl.members:
            self._place(isl, p)

    def _migrate(self) -> None:
        """Ring migration: island i sends its top programs to island (i+1) % n as members.

        Migrants are chosen from a snapshot taken before any island receives, so a program
        moves at most one hop per migration; a program already on the target is not sent again.
        """
        self._migrations += 1
        n = self.num_islands
        outgoing: list[list[Program]] = []
        for isl in self._islands:
            k = min(self.archive_size, max(1, round(self.migration_rate * len(isl.members))))
            outgoing.append([self._programs[key[2]] for key in isl.top[:k]])
        for i, migrants in enumerate(outgoing):
            dest = self._islands[(i + 1) % n]
            for p in migrants:
                if p.id not in dest.member_ids:
                    self._join(dest, p)

    # ------------------------------------------------------------------ sampling
    def select(self, rng: random.Random) -> Selection:
        if not self._programs:
            raise EvoforgeError(
                "cannot select a parent: the population is empty. The initial program must be "
                "evaluated first (status ok with a score) and added with add() before select().")
        island = rng.randrange(self.num_islands)
        isl = self._islands[island]
        r = rng.random()
        if r < self.exploration_ratio:
            parent = isl.members[rng.randrange(len(isl.members))]
        elif r < self.exploration_ratio + self.exploitation_ratio:
            parent = self._programs[self._archive[rng.randrange(len(self._archive))][2]]
        else:
            parent = isl.cells[isl.cell_keys[rng.randrange(len(isl.cell_keys))]]
        context = self._context(isl, parent, rng)
        others: tuple[Program, ...] = ()
        if self.num_islands > 1 and rng.random() < self.crossover_rate:
            j = (island + 1 + rng.randrange(self.num_islands - 1)) % self.num_islands
            pool = [k[2] for k in self._islands[j].top[: self.num_context + 1]
                    if k[2] != parent.id]
            if pool:
                others = (self._programs[pool[rng.randrange(len(pool))]],)
        return Selection(parent=parent, others=others, context=context, island=island)

    def _context(self, isl: _Island, parent: Program, rng: random.Random) -> tuple[Program, ...]:
        """Up to num_context programs, never the parent: the island's best first, then (for
        diversity, about a third of the slots) elites of other cells, then more of the best."""
        want = self.num_context
        if want == 0:
            return ()
        chosen: list[Program] = []
        seen = {parent.id}
        n_diverse = want // 3 if want >= 3 else 0
        top_ids = [k[2] for k in isl.top if k[2] != parent.id]
        for pid in top_ids[: want - n_diverse]:
            chosen.append(self._programs[pid])
            seen.add(pid)
        if len(isl.cell_keys) > 1:
            parent_cell = isl.cell_of.get(parent.id)
            for _ in range(2 * (want - len(chosen)) + 2):
                if len(chosen) >= want:
                    break
                cell = isl.cell_keys[rng.randrange(len(isl.cell_keys))]
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
        return len(self._programs)

    @property
    def migrations(self) -> int:
        """How many migration rounds have happened."""
        return self._migrations

    def archive(self) -> tuple[Program, ...]:
        """The global elite archive, best first."""
        return tuple(self._programs[k[2]] for k in self._archive)

    def island_members(self, island: int) -> tuple[Program, ...]:
        """Members of an island in the order they joined (seeded initial program and migrants
        included)."""
        return tuple(self._islands[island].members)

    def island_top(self, island: int) -> tuple[Program, ...]:
        """An island's best programs, best first (at most max(archive_size, num_context + 1))."""
        return tuple(self._programs[k[2]] for k in self._islands[island].top)

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
