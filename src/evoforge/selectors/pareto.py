"""Pareto selection over several evaluator metrics: NSGA-II ranking per island, a global front.

Turned on by ``objective.metrics`` (registry name ``pareto``). Each ok program is a point in
objective space (maximised metrics negated, so every objective is minimised inside).

**Ranking** (pymoo): non-dominated sorting (``NonDominatedSorting``) and NSGA-II crowding
distance (``calc_crowding_distance``, via ``get_crowding_function("cd")``). With
``objective.constraints`` a program's *violation* is the summed distance of its metrics outside
their bounds; feasible programs are sorted into fronts as usual and every infeasible one ranks
below all of them, infeasible ones among themselves by violation (equal violation, equal rank).

**Islands** as in :mod:`evoforge.selectors.islands`: a child joins its parent's island, the
initial program joins every island, an island holds at most ``island_size`` members (over it,
the worst by rank and then crowding leaves, the oldest among equals), and every
``migration_interval`` ok programs each island sends its best ``migration_rate`` share (rank 0,
most isolated first) to the next island in a ring.

**Parent choice**: a uniformly random island, then a binary tournament on (rank, larger
crowding distance) between two random members of the island's first front (with probability
``exploitation_ratio``, ``selector.exploitation_ratio``) or else of the whole island. Crossover
partners and prompt context come from the island's first front (then the run's front), never
the parent.

**Two stages** (EAGAN): with ``objective.schedule: {first: M, switch_after: N}`` the first N
programs rank by metric M alone (feasible first, then violation), after that by the front.

**Hypervolume**: the run's front (every feasible non-dominated program seen; an equal point
does not join twice) and its hypervolume (pymoo's ``HV``) after every change, as
``(programs so far, hypervolume)``. The reference point is ``objective.reference_point`` or,
by default, fixed at the first feasible program: its value in each objective moved 10% of its
magnitude (at least 0.1) towards worse. A fixed point keeps the curve comparable over time; the
default measures the region that improves on the initial program, so a trade-off worse than the
initial in some objective adds nothing until a reference point is configured. Front and curve
are published through :meth:`ParetoSelector.run_meta` into the run's metadata (key ``pareto``),
where ``evoforge status`` and ``evoforge best --pareto`` read them.

``add`` uses no randomness: replaying the committed programs rebuilds islands, front and
hypervolume curve exactly (resume).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoforge.errors import ConfigError, EvoforgeError
from evoforge.program import Program, Status
from evoforge.selectors.base import Selection, Selector

log = logging.getLogger("evoforge")

META_KEY = "pareto"
INSTALL_HINT = "pip install 'evoforge[pareto]'"
_REF_MARGIN = 0.1  # default reference point: this share of |value| (at least 0.1) worse


@dataclass(frozen=True)
class Objective:
    name: str
    minimize: bool = False


@dataclass(frozen=True)
class Constraint:
    name: str
    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> float:
        v = 0.0
        if self.max is not None and value > self.max:
            v += value - self.max
        if self.min is not None and value < self.min:
            v += self.min - value
        return v


def _worse(v: float) -> float:
    """The default reference coordinate for a (minimised) value: 10% of its magnitude (at
    least 0.1) worse, kept finite for values near the largest double."""
    r = v + max(abs(v) * _REF_MARGIN, _REF_MARGIN)
    return r if math.isfinite(r) else math.nextafter(v, math.inf)


def _pymoo() -> Any:
    try:
        import numpy as np
        from pymoo.indicators.hv import HV
        from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    except ImportError as e:
        raise ConfigError(f"multi-objective search (objective.metrics) needs pymoo: "
                          f"{INSTALL_HINT}") from e
    return np, NonDominatedSorting, get_crowding_function, HV


def check_installed() -> None:
    """Raise ConfigError with the install hint when pymoo is missing."""
    _pymoo()


# ---------------------------------------------------------------------------- pure ranking


def pareto_ranks(points: Sequence[Sequence[float]],
                 violations: Sequence[float] | None = None) -> list[int]:
    """Rank of each point (all objectives minimised): 0 for the non-dominated feasible points,
    1 for those dominated only by rank 0, ...; infeasible points (violation > 0) rank below
    every feasible one, ordered by violation (equal violation, equal rank)."""
    np, NDS, _, _ = _pymoo()
    n = len(points)
    if n == 0:
        return []
    viol = list(violations) if violations is not None else [0.0] * n
    ranks = [0] * n
    feas = [i for i in range(n) if viol[i] <= 0]
    worst = -1
    if feas:
        _, r = NDS().do(np.asarray([points[i] for i in feas], dtype=float), return_rank=True)
        for i, rk in zip(feas, r, strict=True):
            ranks[i] = int(rk)
        worst = max(int(x) for x in r)
    infeas = sorted((viol[i], i) for i in range(n) if viol[i] > 0)
    prev: float | None = None
    for v, i in infeas:
        if v != prev:
            worst += 1
            prev = v
        ranks[i] = worst
    return ranks


def crowding_distances(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point within one front (pymoo's ``cd``: boundary
    points infinite, each objective's gaps normalised by its range, averaged over objectives;
    two or fewer points: all infinite)."""
    np, _, crowding, _ = _pymoo()
    if not points:
        return []
    d = crowding("cd").do(np.asarray(points, dtype=float))
    return [float(x) for x in d]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The hypervolume (all objectives minimised) that ``points`` dominate up to ``reference``
    (pymoo's ``HV``); points not strictly better than the reference in every objective add
    nothing."""
    np, _, _, HV = _pymoo()
    ref = np.asarray(reference, dtype=float)
    inside = [p for p in points if all(a < b for a, b in zip(p, reference, strict=True))]
    if not inside:
        return 0.0
    return float(HV(ref_point=ref)(np.asarray(inside, dtype=float)))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every (minimised) objective and better in one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------- the selector


class _Isle:
    __slots__ = ("members", "order", "dirty")

    def __init__(self) -> None:
        self.members: dict[int, None] = {}  # ids in the order they joined (oldest first)
        self.order: dict[int, tuple[int, float]] = {}  # id -> (rank, crowding), when clean
        self.dirty = True


class ParetoSelector(Selector):
    """Per-island NSGA-II ranking with ring migration, a run-wide front and its hypervolume.

    Registry name ``pareto``; ``objective.metrics`` selects it. See the module docstring."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(
        self,
        objectives: Sequence[Objective | tuple[str, str]],
        *,
        constraints: Sequence[Constraint] = (),
        first: str | None = None,
        switch_after: int | None = None,
        reference_point: Sequence[float] | None = None,
        num_islands: int = 4,
        island_size: int = 64,
        migration_interval: int = 40,
        migration_rate: float = 0.1,
        num_context: int = 3,
        crossover_rate: float = 0.1,
        exploitation_ratio: float = 0.5,
        minimize: bool = False,
    ) -> None:
        check_installed()
        self.minimize = minimize
        self._initial = None
        objs = [o if isinstance(o, Objective) else Objective(o[0], o[1] == "minimize")
                for o in objectives]
        if len(objs) < 2:
            raise ConfigError("the Pareto selector needs at least two objectives "
                              "(objective.metrics)")
        self.objectives = tuple(objs)
        self.constraints = tuple(constraints)
        names = [o.name for o in objs]
        if first is not None and first not in names:
            raise ConfigError(f"objective.schedule.first {first!r} is not one of "
                              f"objective.metrics ({', '.join(names)})")
        self.first = first
        self.switch_after = switch_after if first is not None else None
        if reference_point is not None and len(reference_point) != len(objs):
            raise ConfigError(f"objective.reference_point needs {len(objs)} values")
        self._ref: tuple[float, ...] | None = (
            None if reference_point is None else tuple(
                -float(r) if not o.minimize else float(r)
                for o, r in zip(objs, reference_point, strict=True)))
        self._ref_given = reference_point is not None
        if num_islands < 1 or island_size < 2 or migration_interval < 1:
            raise ConfigError("selector: num_islands >= 1, island_size >= 2 and "
                              "migration_interval >= 1 are needed")
        self.num_islands = num_islands
        self.island_size = island_size
        self.migration_interval = migration_interval
        self.migration_rate = migration_rate
        self.num_context = num_context
        self.crossover_rate = crossover_rate
        self.exploitation_ratio = exploitation_ratio
        self._isles = [_Isle() for _ in range(num_islands)]
        self._programs: dict[int, Program] = {}  # on an island or on the front
        self._vec: dict[int, tuple[float, ...]] = {}
        self._viol: dict[int, float] = {}
        self._seen: set[int] = set()
        self._clock = 0  # terminal programs added (the schedule and the curve count these)
        self._count = 0  # ok programs indexed
        self._front: list[int] = []  # the run's feasible non-dominated programs, in join order
        self._hv: list[tuple[int, float]] = []  # (programs so far, hypervolume) on change
        self._stage = 1 if self.switch_after is not None and self.switch_after > 0 else 2
        self._switched_at: int | None = None
        self._warned: set[str] = set()
        self._changed = True
        self._migrations = 0

    @classmethod
    def from_config(cls, cfg: Any) -> ParetoSelector:
        """Build from a whole :class:`evoforge.config.Config` (objective and selector)."""
        obj, sel = cfg.objective, cfg.selector
        switch = None
        if obj.schedule is not None:
            switch = obj.schedule.switch_after
            if switch is None:
                if cfg.max_programs is None:
                    raise ConfigError("objective.schedule.switch_share is a share of "
                                      "max_programs, which is not set; give switch_after "
                                      "(a number of programs) instead")
                switch = round(obj.schedule.switch_share * cfg.max_programs)
        ref = None
        if obj.reference_point is not None:
            ref = [obj.reference_point[m.name] for m in obj.metrics]
        return cls([Objective(m.name, m.direction == "minimize") for m in obj.metrics],
                   constraints=[Constraint(c.name, c.min, c.max) for c in obj.constraints],
                   first=obj.schedule.first if obj.schedule else None, switch_after=switch,
                   reference_point=ref, num_islands=sel.num_islands,
                   island_size=sel.island_size, migration_interval=sel.migration_interval,
                   migration_rate=sel.migration_rate, num_context=sel.num_context,
                   crossover_rate=sel.crossover_rate,
                   exploitation_ratio=sel.exploitation_ratio, minimize=cfg.minimize)

    def __repr__(self) -> str:
        return (f"ParetoSelector(objectives={[o.name for o in self.objectives]}, "
                f"programs={self._count}, front={len(self._front)})")

    # ------------------------------------------------------------------ indexing
    def _point(self, program: Program) -> tuple[tuple[float, ...], float] | None:
        """(minimised objective vector, violation), or None when a metric is missing."""
        m = program.metrics
        wanted = [o.name for o in self.objectives] + [c.name for c in self.constraints]
        missing = [n for n in wanted if n not in m]
        if missing:
            reported = ", ".join(sorted(m)) or "none"
            if self._initial is None:
                raise ConfigError(
                    f"objective.metrics/constraints name {', '.join(map(repr, missing))}, but "
                    f"the evaluator's first result (program #{program.id}) reports only: "
                    f"{reported}. Fix the names in objective.metrics (e.g. --set "
                    f"'objective.metrics=[...]' on resume), or return these metrics from "
                    f"evaluate()")
            key = ",".join(missing)
            if key not in self._warned:
                self._warned.add(key)
                log.warning("program #%d does not report %s (objective.metrics); programs "
                            "without every objective metric are left out of the Pareto "
                            "search", program.id, ", ".join(missing))
            return None
        vec = tuple(float(m[o.name]) * (1.0 if o.minimize else -1.0) for o in self.objectives)
        viol = math.fsum(c.violation(float(m[c.name])) for c in self.constraints)
        return vec, viol

    def add(self, program: Program) -> None:
        if not program.status.terminal or program.id in self._seen:
            return
        self._seen.add(program.id)
        self._clock += 1
        if self._stage == 1 and self.switch_after is not None \
                and self._clock >= self.switch_after:
            self._stage = 2
            self._switched_at = self._clock
            self._changed = True
            for isl in self._isles:
                isl.dirty = True
        if program.status is not Status.OK:
            return
        point = self._point(program)
        if point is None:
            return
        vec, viol = point
        self._count += 1
        self._vec[program.id] = vec
        self._viol[program.id] = viol
        self._programs[program.id] = program
        self._update_front(program.id)  # before joining: a join may evict the newcomer
        if self._initial is None:
            self._initial = program
            for isl in self._isles:
                self._join(isl, program.id)
        else:
            self._join(self._isles[program.island % self.num_islands], program.id)
        if self._count % self.migration_interval == 0:
            self._migrate()
        self._forget(program.id)

    def _update_front(self, pid: int) -> None:
        if self._viol[pid] > 0:
            return
        vec = self._vec[pid]
        front = self._front
        if any(self._vec[q] == vec or dominates(self._vec[q], vec) for q in front):
            return
        kept = [q for q in front if not dominates(vec, self._vec[q])]
        gone = [q for q in front if q not in set(kept)]
        self._front = kept + [pid]
        for q in gone:
            self._forget(q)
        if self._ref is None:
            self._ref = tuple(_worse(v) for v in vec)
        self._changed = True
        hv = hypervolume([self._vec[q] for q in self._front], self._ref)
        if not math.isfinite(hv):  # extreme metric values: keep the curve as it was
            if "hv" not in self._warned:
                self._warned.add("hv")
                log.warning("the front's hypervolume overflows (metric values too large for "
                            "reference point %s); set objective.reference_point closer to "
                            "the values", self.reference_point())
            return
        if not self._hv or hv != self._hv[-1][1]:
            self._hv.append((self._clock, hv))

    def _forget(self, pid: int) -> None:
        """Drop a program no island holds and the front does not hold."""
        if any(pid in isl.members for isl in self._isles) or pid in self._front:
            return
        if self._initial is not None and pid == self._initial.id:
            return
        self._programs.pop(pid, None)
        self._vec.pop(pid, None)
        self._viol.pop(pid, None)

    def _join(self, isl: _Isle, pid: int) -> None:
        isl.members[pid] = None
        isl.dirty = True
        while len(isl.members) > self.island_size:
            order = self._ranking(isl)
            age = {q: i for i, q in enumerate(isl.members)}  # among equals the oldest leaves
            victim = max(age, key=lambda q: (order[q][0], -order[q][1], -age[q]))
            del isl.members[victim]
            isl.dirty = True
            self._forget(victim)

    def _ranking(self, isl: _Isle) -> dict[int, tuple[int, float]]:
        """Each member's (rank, crowding distance) under the current stage."""
        if not isl.dirty:
            return isl.order
        ids = list(isl.members)
        order: dict[int, tuple[int, float]] = {}
        if self._stage == 1:
            k = [o.name for o in self.objectives].index(self.first)  # type: ignore[arg-type]
            keys = sorted({(self._viol[q], self._vec[q][k]) for q in ids})
            pos = {key: r for r, key in enumerate(keys)}
            for q in ids:
                order[q] = (pos[(self._viol[q], self._vec[q][k])], 0.0)
        else:
            ranks = pareto_ranks([self._vec[q] for q in ids], [self._viol[q] for q in ids])
            by_rank: dict[int, list[int]] = {}
            for q, r in zip(ids, ranks, strict=True):
                by_rank.setdefault(r, []).append(q)
            for r, qs in by_rank.items():
                if self._viol[qs[0]] > 0:  # infeasible: no spread to keep
                    dist = [0.0] * len(qs)
                else:
                    dist = crowding_distances([self._vec[q] for q in qs])
                for q, d in zip(qs, dist, strict=True):
                    order[q] = (r, d)
        isl.order, isl.dirty = order, False
        return order

    def _best_of(self, isl: _Isle) -> list[int]:
        """Members best first: rank, then larger crowding distance, then newer."""
        order = self._ranking(isl)
        age = {q: i for i, q in enumerate(isl.members)}
        return sorted(age, key=lambda q: (order[q][0], -order[q][1], -age[q]))

    def _migrate(self) -> None:
        """Ring migration as in the island selector: each island's best (a snapshot) joins
        the next island."""
        self._migrations += 1
        n = self.num_islands
        if n == 1:
            return
        outgoing = []
        for isl in self._isles:
            k = max(1, round(self.migration_rate * len(isl.members)))
            outgoing.append(self._best_of(isl)[:k])
        for i, migrants in enumerate(outgoing):
            dest = self._isles[(i + 1) % n]
            for q in migrants:
                if q not in dest.members and q in self._programs:
                    self._join(dest, q)

    # ------------------------------------------------------------------ sampling
    def select(self, rng: random.Random) -> Selection:
        if not self._count:
            raise EvoforgeError(
                "cannot select a parent: the population is empty. The initial program must be "
                "evaluated first (status ok, with every objective metric) and added first.")
        island = rng.randrange(self.num_islands)
        isl = self._isles[island]
        order = self._ranking(isl)
        ids = list(isl.members)
        if rng.random() < self.exploitation_ratio:  # exploit: a tournament on the first front
            ids = [q for q in ids if order[q][0] == 0] or ids
        a, b = ids[rng.randrange(len(ids))], ids[rng.randrange(len(ids))]
        ka, kb = (order[a][0], -order[a][1]), (order[b][0], -order[b][1])
        parent_id = a if ka < kb or (ka == kb and rng.random() < 0.5) else b
        parent = self._programs[parent_id]
        pool = [q for q in ids if order[q][0] == 0 and q != parent_id]
        pool += [q for q in self._front if q != parent_id and q not in isl.members]
        want = min(self.num_context, len(pool))
        context = tuple(self._programs[q] for q in rng.sample(pool, want)) if want else ()
        others: tuple[Program, ...] = ()
        if pool and rng.random() < self.crossover_rate:
            others = (self._programs[pool[rng.randrange(len(pool))]],)
        return Selection(parent=parent, others=others, context=context, island=island)

    # ------------------------------------------------------------------ queries
    def best(self) -> Program | None:
        """The feasible program best in the first objective (the schedule's, else the first
        of objective.metrics); None before any."""
        k = 0 if self.first is None else [o.name for o in self.objectives].index(self.first)
        if not self._front:
            return self._initial
        return self._programs[min(self._front, key=lambda q: self._vec[q][k])]

    def __len__(self) -> int:
        return self._count

    @property
    def stage(self) -> int:
        """1 while the schedule optimises its first objective alone, else 2 (the front)."""
        return self._stage

    @property
    def migrations(self) -> int:
        return self._migrations

    def front(self) -> tuple[Program, ...]:
        """The run's feasible non-dominated programs (in the order they joined)."""
        return tuple(self._programs[q] for q in self._front)

    def hypervolume_history(self) -> list[tuple[int, float]]:
        """``(programs so far, hypervolume of the front)`` at every change."""
        return list(self._hv)

    def island_members(self, island: int) -> tuple[Program, ...]:
        return tuple(self._programs[q] for q in self._isles[island].members)

    def island_ranking(self, island: int) -> dict[int, tuple[int, float]]:
        """Program id -> (rank, crowding distance) on that island."""
        return dict(self._ranking(self._isles[island]))

    def reference_point(self) -> list[float] | None:
        """The hypervolume reference point in the metrics' own signs (None before it is set)."""
        if self._ref is None:
            return None
        return [r if o.minimize else -r for o, r in zip(self.objectives, self._ref, strict=True)]

    def run_meta(self) -> tuple[str, Any] | None:
        if not self._changed:
            return None
        self._changed = False
        return META_KEY, {
            "objectives": [{"name": o.name,
                            "direction": "minimize" if o.minimize else "maximize"}
                           for o in self.objectives],
            "constraints": [{"name": c.name, "min": c.min, "max": c.max}
                            for c in self.constraints],
            "reference_point": self.reference_point(),
            "reference_from": "config" if self._ref_given else "initial program",
            "front": list(self._front),
            "hypervolume": [[n, hv] for n, hv in self._hv],
            "stage": self._stage,
            "schedule": None if self.first is None else {
                "first": self.first, "switch_after": self.switch_after,
                "switched_at": self._switched_at},
        }
