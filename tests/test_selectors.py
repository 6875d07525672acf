"""Selectors: islands + MAP-Elites + migration, and the two baselines.

Issue 11 (second half of the file): isolated, bounded islands; outlier-robust bins; newest wins
ties; exploration that adapts to the rate of improvement; outstanding children; determinism."""

from __future__ import annotations

import random

import pytest

from evoforge.config import FeatureConfig, SelectorConfig
from evoforge.errors import ConfigError, EvoforgeError
from evoforge.program import MutationInfo, Program, Status
from evoforge.selectors.base import Selection
from evoforge.selectors.baseline import GreedySelector, RandomSamplingSelector
from evoforge.selectors.islands import IslandSelector


def prog(pid: int, score: float | None, *, island: int = 0, length: int = 100,
         status: Status = Status.OK, metrics: dict[str, float] | None = None,
         parent: int | None = None, explored: bool | None = None) -> Program:
    return Program(id=pid, code="x" * length, island=island, status=status, score=score,
                   metrics=metrics or {}, parent_ids=() if parent is None else (parent,),
                   mutation=MutationInfo(explored=explored))


def brute_cells(sel: IslandSelector, island: int, name: str, bins: int) -> dict[tuple[int], int]:
    """Cells recomputed from scratch: bin every member under the final range, keep the best
    (first added wins ties)."""
    rng = sel.feature_range(island, name)
    assert rng is not None
    lo, hi = rng
    out: dict[tuple[int], Program] = {}
    for p in sel.island_members(island):
        v = sel.features(p)[name]
        b = min(max(int((v - lo) / (hi - lo) * bins), 0), bins - 1)
        cur = out.get((b,))
        if cur is None or sel.fitness(p) > sel.fitness(cur):
            out[(b,)] = p
    return {c: p.id for c, p in out.items()}


def cell_ids(sel: IslandSelector, island: int) -> dict[tuple[int, ...], int]:
    return {c: p.id for c, p in sel.cells(island).items()}


def state(sel: IslandSelector) -> tuple:
    return (
        len(sel), sel.migrations, [p.id for p in sel.archive()],
        [[p.id for p in sel.island_members(i)] for i in range(sel.num_islands)],
        [[p.id for p in sel.island_top(i)] for i in range(sel.num_islands)],
        [sorted(cell_ids(sel, i).items()) for i in range(sel.num_islands)],
        [sel.feature_range(i, f.name) for i in range(sel.num_islands)
         for f in sel.feature_configs],
    )


def population(n: int, seed: int = 1) -> list[Program]:
    r = random.Random(seed)
    out = [prog(0, 0.0)]
    for i in range(1, n):
        status = Status.FAILED if i % 7 == 0 else Status.OK
        out.append(prog(i, r.uniform(-5, 5) if status == Status.OK else None,
                        island=r.randrange(4), length=r.randrange(50, 5000), status=status))
    return out


# ---------------------------------------------------------------- islands: basics


def test_empty_population_select_raises_and_non_ok_ignored() -> None:
    sel = IslandSelector()
    with pytest.raises(EvoforgeError, match="initial program must be evaluated"):
        sel.select(random.Random(0))
    sel.add(prog(0, None, status=Status.FAILED))
    sel.add(prog(1, None, status=Status.OK))  # ok without a score: not indexable
    assert len(sel) == 0 and sel.best() is None
    with pytest.raises(EvoforgeError):
        sel.select(random.Random(0))


def test_initial_program_seeds_every_island_and_len_counts_distinct() -> None:
    sel = IslandSelector(num_islands=3)
    init = prog(0, 1.0)
    sel.add(init)
    sel.add(init)  # a duplicate add is ignored
    assert len(sel) == 1
    for i in range(3):
        assert sel.island_members(i) == (init,)
        assert sel.island_members(i)[0] is init
    s = sel.select(random.Random(0))
    assert s.parent is init and s.context == () and s.others == ()


def test_program_goes_to_its_island_modulo() -> None:
    sel = IslandSelector(num_islands=3, migration_interval=1000)
    sel.add(prog(0, 0.0))
    sel.add(prog(1, 1.0, island=4))  # 4 % 3 == 1
    assert [p.id for p in sel.island_members(1)] == [0, 1]
    assert [p.id for p in sel.island_members(0)] == [0]
    assert [p.id for p in sel.island_members(2)] == [0]


def test_features_builtins_and_metrics() -> None:
    sel = IslandSelector(features=["code_length", "line_count", "score", "depth", "missing"])
    p = Program(id=0, code="a\nb\nc", status=Status.OK, score=2.5,
                metrics={"depth": 7.0, "bad": float("nan")})
    assert sel.features(p) == {"code_length": 5.0, "line_count": 3.0, "score": 2.5,
                               "depth": 7.0, "missing": 0.0}


def test_from_config_mirrors_selector_config() -> None:
    cfg = SelectorConfig(num_islands=2, migration_interval=7, migration_rate=0.3,
                         exploration_ratio=0.1, exploitation_ratio=0.6, archive_size=9,
                         num_context=5, crossover_rate=0.4,
                         features=[{"name": "score", "bins": 4, "min": 0, "max": 1}])
    sel = IslandSelector.from_config(cfg, minimize=True)
    assert (sel.num_islands, sel.migration_interval, sel.migration_rate,
            sel.exploration_ratio, sel.exploitation_ratio, sel.archive_size, sel.num_context,
            sel.crossover_rate, sel.minimize) == (2, 7, 0.3, 0.1, 0.6, 9, 5, 0.4, True)
    assert [(f.name, f.bins, f.min, f.max) for f in sel.feature_configs] == [("score", 4, 0, 1)]
    default = IslandSelector()
    assert [(f.name, f.bins) for f in default.feature_configs] == [("code_length", 10)]
    assert default.num_islands == SelectorConfig().num_islands == 4


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="exploration_ratio"):
        IslandSelector(exploration_ratio=0.7, exploitation_ratio=0.7)
    with pytest.raises(ConfigError, match="num_islands"):
        IslandSelector(num_islands=0)


# ---------------------------------------------------------------- migration


def test_migration_happens_after_interval_and_only_then() -> None:
    sel = IslandSelector(num_islands=2, migration_interval=10, migration_rate=0.3)
    programs = [prog(0, 0.0)] + [prog(i, float(i), island=0) for i in range(1, 10)]
    for p in programs[:9]:
        sel.add(p)
        assert [q.id for q in sel.island_members(1)] == [0], "no migration before interval"
    assert sel.migrations == 0
    sel.add(programs[9])  # 10th ok program
    assert sel.migrations == 1
    # island 0 has 10 members -> round(0.3 * 10) = 3 migrants: its three best, same objects
    got = sel.island_members(1)[1:]
    assert [p.id for p in got] == [9, 8, 7]
    for p in got:
        assert p is programs[p.id]
    # the migrant is now a parent/context candidate on island 1
    assert sel.island_top(1)[0].id == 9


def test_failed_programs_do_not_count_towards_migration() -> None:
    sel = IslandSelector(num_islands=2, migration_interval=3)
    sel.add(prog(0, 0.0))
    sel.add(prog(1, 1.0))
    for i in range(2, 10):
        sel.add(prog(i, None, status=Status.FAILED))
    assert sel.migrations == 0
    sel.add(prog(10, 2.0))
    assert sel.migrations == 1


def test_migrants_are_best_and_never_sent_twice() -> None:
    sel = IslandSelector(num_islands=2, migration_interval=5, migration_rate=0.1)
    sel.add(prog(0, 0.0))
    scores = [3.0, 1.0, 7.0, 2.0]
    for i, s in enumerate(scores, start=1):
        sel.add(prog(i, s, island=0))
    assert sel.migrations == 1
    assert [p.id for p in sel.island_members(1)] == [0, 3]  # the best of island 0
    # island 1 sends its best (3) back? it came from 0 -> already there, not sent again
    assert [p.id for p in sel.island_members(0)].count(3) == 1
    for i in range(5, 10):  # worse programs: the top of island 0 is unchanged
        sel.add(prog(i, -1.0, island=0))
    assert sel.migrations == 2
    ids1 = [p.id for p in sel.island_members(1)]
    assert ids1 == [0, 3], "program 3 must not be sent to island 1 twice"
    for i in range(2):
        ids = [p.id for p in sel.island_members(i)]
        assert len(ids) == len(set(ids))


def test_migration_ring_wraps_around() -> None:
    sel = IslandSelector(num_islands=3, migration_interval=4)
    sel.add(prog(0, 0.0))
    sel.add(prog(1, 5.0, island=0))
    sel.add(prog(2, 6.0, island=1))
    sel.add(prog(3, 7.0, island=2))
    assert sel.migrations == 1
    assert [p.id for p in sel.island_members(1)] == [0, 2, 1]
    assert [p.id for p in sel.island_members(2)] == [0, 3, 2]
    assert [p.id for p in sel.island_members(0)] == [0, 1, 3]


# ---------------------------------------------------------------- MAP-Elites


def test_cells_fill_and_each_keeps_its_best() -> None:
    feats = [FeatureConfig(name="code_length", bins=10, min=0, max=1000)]
    sel = IslandSelector(num_islands=1, features=feats, migration_interval=10_000)
    sel.add(prog(0, 0.0, length=50))
    r = random.Random(3)
    for i in range(1, 300):
        sel.add(prog(i, r.uniform(0, 100), length=r.randrange(0, 1500)))
    cells = cell_ids(sel, 0)
    assert len(cells) == 10  # values spread over [0, 1500) clipped into 10 bins
    assert cells == brute_cells(sel, 0, "code_length", 10)
    assert sel.feature_range(0, "code_length") == (0.0, 1000.0)  # fixed range never moves
    # an elite is strictly the best of its cell
    for cell, pid in cells.items():
        members = [p for p in sel.island_members(0)
                   if min(int(sel.features(p)["code_length"] / 100), 9) == cell[0]]
        assert max(members, key=lambda p: p.score or 0).id == pid


def test_growing_values_spread_over_many_bins_with_exact_elites() -> None:
    sel = IslandSelector(num_islands=2, migration_interval=50)
    sel.add(prog(0, 0.0, length=100))
    r = random.Random(5)
    n = 600
    for i in range(1, n):
        length = 100 + (100_000 - 100) * i // (n - 1)  # 100 -> 100_000
        sel.add(prog(i, r.uniform(0, 10), island=i % 2, length=length))
    for island in range(2):
        members = sel.island_members(island)
        assert len(members) <= sel.island_size
        cells = cell_ids(sel, island)
        assert len(cells) >= 8, f"island {island}: values piled into {len(cells)} cells"
        assert cells == brute_cells(sel, island, "code_length", 10)
        lo, hi = sel.feature_range(island, "code_length")  # type: ignore[misc]
        # the range follows the members (the recent programs), not every value ever seen
        values = sorted(sel.features(p)["code_length"] for p in members)
        assert values[0] <= lo < hi <= values[-1]
        assert lo <= values[len(values) // 4] and hi >= values[3 * len(values) // 4]
        # members are spread, not in the top bin
        counts: dict[tuple[int, ...], int] = {}
        for p in members:
            v = sel.features(p)["code_length"]
            c = (min(max(int((v - lo) / (hi - lo) * 10), 0), 9),)
            counts[c] = counts.get(c, 0) + 1
        assert max(counts.values()) < 0.3 * len(members)


def test_log_scale_spreads_orders_of_magnitude() -> None:
    feats = [FeatureConfig(name="size", bins=6, scale="log")]
    sel = IslandSelector(num_islands=1, features=feats)
    sel.add(prog(0, 0.0, metrics={"size": 1.0}))
    for i in range(1, 60):
        sel.add(prog(i, float(i), metrics={"size": 10.0 ** (i % 7)}))
    assert len(sel.cells(0)) >= 5


def test_shrinking_values_expand_downwards() -> None:
    sel = IslandSelector(num_islands=1)
    sel.add(prog(0, 0.0, length=100_000))
    for i in range(1, 200):
        sel.add(prog(i, float(i % 13), length=max(1, 100_000 - i * 500)))
    assert len(sel.cells(0)) >= 8
    assert cell_ids(sel, 0) == brute_cells(sel, 0, "code_length", 10)


# ---------------------------------------------------------------- sampling


def _one_cell_population(exploration_ratio: float, exploitation_ratio: float,
                         **kw: object) -> IslandSelector:
    """One island, one cell, fixed ratios, no outstanding penalty: 101 programs, id 100 best."""
    feats = [FeatureConfig(name="code_length", bins=1)]
    sel = IslandSelector(num_islands=1, features=feats, crossover_rate=0.0,
                         exploration_ratio=exploration_ratio,
                         exploitation_ratio=exploitation_ratio, adaptive=False,
                         outstanding_penalty=0.0, island_size=200, **kw)  # type: ignore[arg-type]
    sel.add(prog(0, 0.0))
    for i in range(1, 101):
        sel.add(prog(i, float(i)))
    return sel


def test_exploitation_one_always_picks_the_island_best() -> None:
    sel = IslandSelector(exploitation_ratio=1.0, exploration_ratio=0.0, outstanding_penalty=0.0)
    for p in population(300):
        sel.add(p)
    rng = random.Random(1)
    for _ in range(500):
        s = sel.select(rng)
        assert s.parent is sel.island_top(s.island)[0]
    # the global best's island gets the proposal unless the run explores
    assert sel.best() in sel.island_members(sel.best_island)


def test_exploration_ratio_statistics() -> None:
    # fixed ratios, no cell share: only exploration picks others than the best (id 100),
    # with probability 0.2 * 100/101
    sel = _one_cell_population(exploration_ratio=0.2, exploitation_ratio=0.8)
    rng = random.Random(7)
    n = 2000
    not_best = sum(sel.select(rng).parent.id != 100 for _ in range(n))
    assert 0.15 * n < not_best < 0.25 * n


def test_exploration_one_samples_whole_island_uniformly() -> None:
    sel = _one_cell_population(exploration_ratio=1.0, exploitation_ratio=0.0)
    rng = random.Random(2)
    parents = [sel.select(rng).parent.id for _ in range(3000)]
    assert len(set(parents)) > 90
    assert sum(p < 50 for p in parents) > 1000  # bad programs are explored too
    # adaptive or not: a configured exploration of 1 is never capped by max_exploration
    adaptive = _one_cell_population(exploration_ratio=1.0, exploitation_ratio=0.0,
                                    max_exploration=0.3)
    adaptive.adaptive = True
    assert adaptive.exploration(0) == 1.0


def test_cells_only_samples_cell_elites_other_than_the_best() -> None:
    sel = IslandSelector(exploration_ratio=0.0, exploitation_ratio=0.0, num_islands=2)
    for p in population(200):
        sel.add(p)
    rng = random.Random(4)
    for _ in range(300):
        s = sel.select(rng)
        elites = {p.id for p in sel.cells(s.island).values()}
        assert s.parent.id in elites
        assert s.parent is not sel.island_top(s.island)[0]  # exploring is not the best


def test_context_never_contains_parent_and_is_good() -> None:
    sel = IslandSelector(num_context=4, crossover_rate=1.0)
    pop = population(400)
    for p in pop:
        sel.add(p)
    rng = random.Random(9)
    islands_seen = set()
    for _ in range(500):
        s = sel.select(rng)
        islands_seen.add(s.island)
        ids = [c.id for c in s.context]
        assert s.parent.id not in ids
        assert len(ids) == len(set(ids)) == 4
        # most of the context is the island's top
        top = [p.id for p in sel.island_top(s.island) if p.id != s.parent.id]
        assert ids[:2] == top[:2]
        # the crossover partner comes from the island's own top (islands isolate), never the
        # parent
        assert len(s.others) == 1
        partner = s.others[0]
        assert partner.id != s.parent.id
        assert partner in sel.island_top(s.island)[: sel.num_context + 2]
    assert islands_seen == {0, 1, 2, 3}


def test_no_crossover_with_zero_rate_or_a_single_program() -> None:
    rng = random.Random(0)
    sel = IslandSelector(crossover_rate=0.0)
    for p in population(100):
        sel.add(p)
    assert all(sel.select(rng).others == () for _ in range(100))
    lone = IslandSelector(num_islands=1, crossover_rate=1.0)
    lone.add(prog(0, 1.0))
    assert all(lone.select(rng).others == () for _ in range(10))
    one = IslandSelector(num_islands=1, crossover_rate=1.0)
    for p in population(100):
        one.add(p)
    assert all(len(one.select(rng).others) == 1 for _ in range(100))


def test_minimize_flips_best() -> None:
    for minimize, expected in ((False, 2), (True, 1)):
        sel = IslandSelector(minimize=minimize)
        sel.add(prog(0, 5.0))
        sel.add(prog(1, -3.0))
        sel.add(prog(2, 9.0))
        assert sel.best() is not None and sel.best().id == expected  # type: ignore[union-attr]
        g = GreedySelector(minimize=minimize)
        b = RandomSamplingSelector(minimize=minimize)
        for p in (prog(0, 5.0), prog(1, -3.0), prog(2, 9.0)):
            g.add(p)
            b.add(p)
        assert g.best().id == expected  # type: ignore[union-attr]
        assert b.best().id == expected  # type: ignore[union-attr]


def test_same_seed_same_selections() -> None:
    def run() -> list[tuple]:
        sel = IslandSelector(num_islands=3, migration_interval=20, crossover_rate=0.5)
        for p in population(500):
            sel.add(p)
        rng = random.Random(42)
        out = []
        for _ in range(200):
            s = sel.select(rng)
            out.append((s.parent.id, s.island, tuple(c.id for c in s.context),
                        tuple(o.id for o in s.others)))
        return out

    a, b = run(), run()
    assert a == b
    assert len({x[0] for x in a}) > 10


def test_replay_rebuilds_identical_state() -> None:
    pop = population(700, seed=8)
    first = IslandSelector(num_islands=3, migration_interval=25, migration_rate=0.2)
    for p in pop:
        first.add(p)
    replayed = IslandSelector(num_islands=3, migration_interval=25, migration_rate=0.2)
    for p in pop:
        replayed.add(p)
    assert first.migrations > 10
    assert state(first) == state(replayed)
    r1, r2 = random.Random(3), random.Random(3)
    for _ in range(100):
        assert first.select(r1) == replayed.select(r2)


def test_add_uses_no_randomness() -> None:
    sel = IslandSelector()
    before = random.getstate()
    for p in population(200):
        sel.add(p)
    assert random.getstate() == before


# ---------------------------------------------------------------- baselines


def test_random_sampling_always_mutates_initial_program() -> None:
    sel = RandomSamplingSelector()
    with pytest.raises(EvoforgeError, match="initial program"):
        sel.select(random.Random(0))
    sel.add(prog(0, None, status=Status.FAILED))
    init = prog(1, 1.0)
    sel.add(init)
    for i in range(2, 100):
        sel.add(prog(i, float(i), status=Status.OK if i % 5 else Status.TIMEOUT))
    rng = random.Random(0)
    for _ in range(200):
        s = sel.select(rng)
        assert s.parent is init
        assert s.context == () and s.others == () and s.island == 0
    assert sel.best().id == 99  # type: ignore[union-attr]
    assert len(sel) == 1 + len([i for i in range(2, 100) if i % 5])


def test_greedy_picks_best_with_next_best_as_context() -> None:
    sel = GreedySelector(num_context=2)
    with pytest.raises(EvoforgeError):
        sel.select(random.Random(0))
    r = random.Random(5)
    scores = {i: r.uniform(0, 100) for i in range(50)}
    for i, score in scores.items():
        sel.add(prog(i, score))
    ranked = sorted(scores, key=lambda i: -scores[i])
    s = sel.select(random.Random(0))
    assert s.parent.id == ranked[0] == sel.best().id  # type: ignore[union-attr]
    assert [c.id for c in s.context] == ranked[1:3]
    sel.add(prog(50, 1000.0))
    assert sel.select(random.Random(0)).parent.id == 50
    assert len(sel) == 51
    g = GreedySelector.from_config(SelectorConfig(num_context=5))
    assert g.num_context == 5


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_extreme_finite_scores_bin_without_nan(scale: str) -> None:
    """A score feature with extreme but finite scores (issue 9, defect 2: -1.7e308 or 1.3e154
    made binning compute int(NaN), and the stored result made the run unresumable)."""
    extremes = [0.5, -1.7e308, 1.3e154, 1.7e308, -5e-324, 1e-300, -1.3e154, 2.0, 1.79e308]
    for features in (["score"], [FeatureConfig(name="score", min=-1e308, max=1e308)],
                     [FeatureConfig(name="score", bins=7, scale=scale)]):
        sel = IslandSelector(num_islands=2, features=features)
        for i, s in enumerate(extremes):
            sel.add(prog(i, s, island=i % 2))
        rng = random.Random(0)
        for _ in range(50):
            sel.select(rng)
        for island in range(2):
            lo_hi = sel.feature_range(island, "score")
            assert lo_hi is not None and all(abs(x) < float("inf") for x in lo_hi)


# ================================================================ issue 11


def grown(sel: IslandSelector, n: int, seed: int = 0) -> list[Program]:
    """Add an initial program and n children spread over the islands (about 1 in 7 failed)."""
    r = random.Random(seed)
    added = [prog(0, 0.0)]
    sel.add(added[0])
    for i in range(1, n + 1):
        status = Status.FAILED if i % 7 == 0 else Status.OK
        p = prog(i, r.uniform(-5, 5) if status is Status.OK else None,
                 island=r.randrange(sel.num_islands), length=r.randrange(50, 3000),
                 parent=r.randrange(i), status=status)
        sel.add(p)
        added.append(p)
    return added


def full_state(sel: IslandSelector) -> tuple:
    n = sel.num_islands
    return (
        len(sel), sel.migrations, sel.best_island, [p.id for p in sel.archive()],
        [[p.id for p in sel.island_members(i)] for i in range(n)],
        [[p.id for p in sel.island_top(i)] for i in range(n)],
        [sorted((c, p.id) for c, p in sel.cells(i).items()) for i in range(n)],
        [sel.feature_range(i, f.name) for i in range(n) for f in sel.feature_configs],
        [sel.exploration(i) for i in range(n)], sel.exploration(None),
    )


# ---------------------------------------------------------------- islands isolate


def test_parents_partners_and_context_stay_on_the_island() -> None:
    """Without migration, nothing crosses: every parent, partner and context program of a
    proposal for island i was born on island i (or is the initial program)."""
    sel = IslandSelector(migration_interval=10**9, crossover_rate=0.5, num_context=4)
    added = grown(sel, 600)
    born = {p.id: p.island for p in added}
    rng = random.Random(1)
    for _ in range(2000):
        s = sel.select(rng)
        for q in (s.parent, *s.others, *s.context):
            assert q.id == 0 or born[q.id] == s.island, (q.id, born[q.id], s.island)
            assert q in sel.island_members(s.island)
    for i in range(sel.num_islands):
        assert {born[p.id] for p in sel.island_members(i) if p.id} == {i}


def test_exploitation_stays_in_the_island_even_when_another_holds_the_best() -> None:
    sel = IslandSelector(num_islands=2, migration_interval=10**9, exploitation_ratio=1.0,
                         exploration_ratio=0.0, adaptive=False, outstanding_penalty=0.0)
    sel.add(prog(0, 0.0))
    sel.add(prog(1, 100.0, island=0, parent=0))  # the global best, on island 0
    sel.add(prog(2, 5.0, island=1, parent=0))
    rng = random.Random(0)
    picks = {0: set(), 1: set()}
    for _ in range(300):
        s = sel.select(rng)
        picks[s.island].add(s.parent.id)
    assert picks == {0: {1}, 1: {2}}  # each island exploits its own best


def test_migration_is_the_only_way_across() -> None:
    sel = IslandSelector(num_islands=2, migration_interval=7, migration_rate=0.2,
                         exploitation_ratio=1.0, exploration_ratio=0.0, adaptive=False,
                         outstanding_penalty=0.0)
    sel.add(prog(0, 0.0))
    for i in range(1, 5):
        sel.add(prog(i, 10.0 + i, island=0, parent=0))
    sel.add(prog(5, 1.0, island=1, parent=0))
    rng = random.Random(2)

    def parents_on_island_1() -> set[int]:
        out = set()
        for _ in range(300):
            s = sel.select(rng)
            if s.island == 1:
                out.add(s.parent.id)
        return out

    assert parents_on_island_1() == {5}  # island 0's far better programs do not leak over
    assert 4 not in {p.id for p in sel.island_members(1)}
    sel.add(prog(6, 2.0, island=1, parent=5))  # the 7th ok program: migration
    assert sel.migrations == 1
    assert [p.id for p in sel.island_members(1)] == [0, 5, 6, 4]  # island 0's best arrived
    assert [p.id for p in sel.island_members(0)] == [0, 1, 2, 3, 4, 6]
    assert parents_on_island_1() == {4}


# ---------------------------------------------------------------- bounded populations


def test_islands_and_memory_stay_bounded() -> None:
    sel = IslandSelector(island_size=30, archive_size=10)
    added = grown(sel, 3000)
    assert len(sel) == sum(p.status is Status.OK for p in added)
    for i in range(sel.num_islands):
        members = sel.island_members(i)
        assert len(members) <= 30
        # the island's best and its cell elites are members
        assert sel.island_top(i)[0] in members
        assert all(e in members for e in sel.cells(i).values())
    assert len(sel.archive()) == 10
    assert sel.resident <= 4 * 30 + 10  # programs held in memory


def test_oldest_unprotected_member_leaves_first() -> None:
    feats = [FeatureConfig(name="code_length", bins=2, min=0, max=200)]
    sel = IslandSelector(num_islands=1, island_size=5, num_context=0, features=feats)
    sel.add(prog(0, 0.0, length=10))  # cell 0
    sel.add(prog(1, 9.0, length=150, parent=0))  # cell 1 elite, best
    sel.add(prog(2, -1.0, length=20, parent=0))
    sel.add(prog(3, -2.0, length=30, parent=0))
    sel.add(prog(4, -3.0, length=40, parent=0))
    assert [p.id for p in sel.island_members(0)] == [0, 1, 2, 3, 4]
    sel.add(prog(5, -4.0, length=50, parent=0))
    # 0 is the elite of cell 0 and 1 the best: 2 is the oldest unprotected member
    assert [p.id for p in sel.island_members(0)] == [0, 1, 3, 4, 5]
    sel.add(prog(6, 5.0, length=60, parent=0))  # new elite of cell 0: 0 is no longer protected
    assert [p.id for p in sel.island_members(0)] == [1, 3, 4, 5, 6]
    assert {c: p.id for c, p in sel.cells(0).items()} == {(0,): 6, (1,): 1}


def test_every_member_protected_evicts_the_worst_never_the_best() -> None:
    feats = [FeatureConfig(name="code_length", bins=10, min=0, max=100)]
    sel = IslandSelector(num_islands=1, island_size=3, num_context=0, features=feats)
    sel.add(prog(0, 5.0, length=5))
    for i, (score, length) in enumerate([(1.0, 15), (2.0, 25), (0.5, 35)], start=1):
        sel.add(prog(i, score, length=length, parent=0))
    # every member is its cell's elite: the worst (3) leaves, the cells stay exact
    assert [p.id for p in sel.island_members(0)] == [0, 1, 2]
    assert sorted(p.id for p in sel.cells(0).values()) == [0, 1, 2]
    assert sel.best().id == 0  # type: ignore[union-attr]


# ---------------------------------------------------------------- outlier-robust bins


def test_one_huge_program_does_not_collapse_the_grid() -> None:
    """Issue 11: one 60,000-character program left every later program in a single cell."""
    sel = IslandSelector(num_islands=1)
    r = random.Random(3)
    sel.add(prog(0, 0.0, length=500))
    sel.add(prog(1, 1.0, length=60_000, parent=0))
    for i in range(2, 300):
        sel.add(prog(i, r.uniform(0, 1), length=r.randrange(300, 900), parent=0))
    lo, hi = sel.feature_range(0, "code_length")  # type: ignore[misc]
    assert hi < 2000, (lo, hi)  # the outlier does not stretch the range
    normal = [p for p in sel.island_members(0) if len(p.code) < 1000]
    bins = {sel._islands[0].cell_of[p.id] for p in normal}  # noqa: SLF001
    assert len(bins) >= 8, bins
    assert len(sel.cells(0)) >= 8


def test_outlier_in_a_small_island_and_later_outliers() -> None:
    sel = IslandSelector(num_islands=1)
    sel.add(prog(0, 0.0, length=400))
    for i, length in enumerate([420, 60_000, 450, 480, 510, 390, 530, 560, 600], start=1):
        sel.add(prog(i, float(i), length=length, parent=0))
    lo, hi = sel.feature_range(0, "code_length")  # type: ignore[misc]
    assert hi < 1000  # Tukey's fences: the outlier is clipped into the top bin
    for i in range(10, 200):
        length = 100_000 if i % 50 == 0 else 300 + 3 * i
        sel.add(prog(i, float(i % 17), length=length, parent=0))
        assert len(sel.cells(0)) >= min(5, i // 4)


def test_fixed_range_and_log_scale_still_bin() -> None:
    feats = [FeatureConfig(name="code_length", bins=10, min=0, max=1000),
             FeatureConfig(name="size", bins=5, scale="log")]
    sel = IslandSelector(num_islands=1, features=feats)
    sel.add(Program(id=0, code="x", status=Status.OK, score=0.0, metrics={"size": 1.0}))
    for i in range(1, 200):
        sel.add(Program(id=i, code="x" * (i * 7), status=Status.OK, score=float(i % 11),
                        metrics={"size": 10.0 ** (i % 6)}, parent_ids=(0,)))
    assert sel.feature_range(0, "code_length") == (0.0, 1000.0)
    assert len({c[0] for c in sel.cells(0)}) >= 5
    assert len({c[1] for c in sel.cells(0)}) >= 4


# ---------------------------------------------------------------- ties: newest wins


def test_ties_go_to_the_newest_program() -> None:
    sel = IslandSelector(num_islands=1, outstanding_penalty=0.0, exploitation_ratio=1.0,
                         exploration_ratio=0.0)
    sel.add(prog(0, 1.0))
    rng = random.Random(0)
    for i in range(1, 6):
        sel.add(prog(i, 1.0, parent=i - 1))  # a plateau
        assert sel.best().id == i  # type: ignore[union-attr]
        assert sel.island_top(0)[0].id == i
        assert sel.select(rng).parent.id == i  # drift: the newest equal program is mutated
        assert list(sel.cells(0).values())[0].id == i  # one cell: its elite is the newest


def test_greedy_ties_go_to_the_newest_program() -> None:
    g = GreedySelector(num_context=2)
    g.add(prog(0, 1.0))
    for i in range(1, 6):
        g.add(prog(i, 1.0, parent=i - 1))  # a plateau: the newest equal program is the parent
        assert g.best().id == i  # type: ignore[union-attr]
        s = g.select(random.Random(i))
        assert s.parent.id == i and [c.id for c in s.context] == [i - 1, i - 2][: min(i, 2)]
    g.add(prog(6, 0.5))  # worse: neither parent nor ahead of the equals in the context
    assert g.select(random.Random(0)).parent.id == 5
    g.add(prog(7, 2.0))
    assert [p.id for p in (g.best(), *g.select(random.Random(0)).context)] == [7, 5, 4]


# ---------------------------------------------------------------- adaptive exploration


def _parent_is_best_share(sel: IslandSelector, n: int = 2000, seed: int = 5) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(n):
        s = sel.select(rng)
        hits += s.parent is sel.best()
    return hits / n


def test_improvement_streak_exploits_and_stagnation_explores() -> None:
    def fresh() -> IslandSelector:  # the success-rate rule alone (credit: its own test)
        sel = IslandSelector(outstanding_penalty=0.0, island_size=200, stagnation=False)
        sel.add(prog(0, 0.0))
        r = random.Random(1)
        for i in range(1, 80):  # a varied population, no trials yet
            sel.add(prog(i, r.uniform(-10, -1), island=i % 4, length=r.randrange(50, 2000)))
        return sel

    neutral = fresh()
    start = neutral.exploration(0)
    assert start == pytest.approx(1 - neutral.exploitation_ratio)  # the configured ratio

    improving = fresh()
    best = 0.0
    for i in range(100, 130):  # every child on island 2 improves the best
        best += 1.0
        improving.add(prog(i, best, island=2, parent=i - 1 if i > 100 else 0))
    assert improving.best_island == 2
    assert improving.exploration(2) < 0.15
    assert improving.exploration(None) < 0.15
    assert improving.exploration(1) == start  # no trials on island 1: unchanged
    assert _parent_is_best_share(improving) > 0.75  # close to a (1+1) hill climber

    stagnant = fresh()
    for i in range(100, 200):  # children that never beat their island's best
        stagnant.add(prog(i, -20.0, island=i % 4, parent=0))
    for i in range(4):
        assert stagnant.exploration(i) == pytest.approx(stagnant.max_exploration)
    # the run explores half as much: at most 40% of proposals leave the best island
    assert stagnant.exploration(None) == pytest.approx(stagnant.max_exploration / 2)
    assert _parent_is_best_share(stagnant) < 0.3

    # after stagnation one new best is the favoured parent at once
    stagnant.add(prog(250, 0.5, island=1, parent=0))
    assert stagnant.best_island == 1
    assert stagnant.exploration(1) < 0.3 and stagnant.exploration(None) < 0.15
    assert _parent_is_best_share(stagnant, 1000) > 0.6

    # a new streak brings exploitation back
    for i in range(200, 215):
        stagnant.add(prog(i, 1.0 + i, island=3, parent=0))
    assert stagnant.exploration(3) < 0.2 and stagnant.best_island == 3


def test_failed_children_count_as_trials() -> None:
    sel = IslandSelector(num_islands=1, stagnation=False)
    sel.add(prog(0, 1.0))
    before = sel.exploration(0)
    for i in range(1, 30):
        sel.add(prog(i, None, status=Status.FAILED, parent=0))
    assert sel.exploration(0) > before
    assert len(sel) == 1


def test_not_adaptive_keeps_the_ratios_and_uniform_islands() -> None:
    sel = IslandSelector(adaptive=False)
    grown(sel, 300)
    assert all(sel.exploration(i) == 0.5 for i in range(4))
    assert sel.exploration(None) == 1.0
    rng = random.Random(3)
    counts = [0] * 4
    for _ in range(4000):
        counts[sel.select(rng).island] += 1
    assert min(counts) > 850


def test_exploitation_one_never_explores() -> None:
    sel = IslandSelector(exploitation_ratio=1.0, exploration_ratio=0.0, num_islands=1,
                         outstanding_penalty=0.0)
    sel.add(prog(0, 0.0))
    for i in range(1, 100):
        sel.add(prog(i, -1.0, parent=0))  # stagnation
    assert sel.exploration(0) == 0.0
    assert _parent_is_best_share(sel, 300) == 1.0


def test_minimize_adapts_on_lower_scores() -> None:
    sel = IslandSelector(minimize=True, num_islands=1)
    sel.add(prog(0, 100.0))
    for i in range(1, 20):
        sel.add(prog(i, 100.0 - i, parent=i - 1))
    assert sel.best().id == 19  # type: ignore[union-attr]
    assert sel.exploration(0) < 0.15


# ---------------------------------------------------------------- outstanding children


def test_outstanding_children_spread_the_window_and_results_release_them() -> None:
    sel = IslandSelector(num_islands=1, exploitation_ratio=1.0, exploration_ratio=0.0,
                         outstanding_penalty=0.5)
    sel.add(prog(0, 0.0))
    sel.add(prog(1, 3.0, parent=0))
    sel.add(prog(2, 2.0, parent=0))
    rng = random.Random(0)
    picks = [sel.select(rng).parent.id for _ in range(6)]
    # the best until two children are out (0.5 each: a tie keeps the better rank), then the
    # second best gets its turn
    assert picks[:4] == [1, 1, 1, 2]
    assert sel.outstanding(1) >= 3
    n1 = sel.outstanding(1)
    sel.add(prog(10, 1.0, parent=1))  # a result came back: one fewer outstanding
    assert sel.outstanding(1) == n1 - 1
    sel.add(prog(11, 9.0, parent=2))  # a new best: no children out, chosen at once
    assert sel.select(rng).parent.id == 11


def test_a_child_made_from_another_program_releases_the_one_selected() -> None:
    """A tuning trial of the run's best names the best as its parent, not the program the
    selector handed out: its result releases the handed-out program's count."""
    from evoforge.program import MutationInfo

    sel = IslandSelector(num_islands=1, exploitation_ratio=1.0, exploration_ratio=0.0)
    sel.add(prog(0, 0.0))
    sel.add(prog(1, 3.0, parent=0))
    assert sel.select(random.Random(0)).parent.id == 1
    assert (sel.outstanding(0), sel.outstanding(1)) == (0, 1)
    trial = Program(id=2, code="y", status=Status.OK, score=1.0, parent_ids=(0,),
                    mutation=MutationInfo(mutator="tune", selected=1))
    sel.add(trial)
    assert (sel.outstanding(0), sel.outstanding(1)) == (0, 0)


def test_in_a_run_children_of_other_parents_leave_no_count_outstanding(tmp_path) -> None:
    """End to end: a mutator that names another parent (as a tuning trial names the best) for
    every other proposal; once every result is in, nothing is outstanding."""
    import re
    from pathlib import Path

    from evoforge import api
    from evoforge.config import build_config
    from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
    from evoforge.program import MutationInfo
    from evoforge.storages import SQLiteStorage
    from evoforge.testing import FunctionExecutor

    def value(code: str) -> float:
        m = re.search(r"^VALUE = (\S+)$", code, re.M)
        return float(m.group(1)) if m else 0.0

    class OfAnother(Mutator):
        """Every other child is made from an ok program other than the one picked."""
        seen: list[Program]

        def observe(self, program: Program) -> None:
            if program.status is Status.OK:
                self.seen.append(program)

        async def mutate(self, req: MutationRequest) -> MutationOutcome:
            others = [p for p in self.seen if p.id != req.parent.id]
            other = req.proposal_id % 2 == 0 and bool(others)
            base = others[req.rng.randrange(len(others))] if other else req.parent
            code = re.sub(r"\nVALUE = \S+$", "", base.code.rstrip("\n"), flags=re.M)
            step = req.rng.uniform(-1, 1)
            return MutationOutcome(code + f"\nVALUE = {value(base.code) + step!r}\n",
                                   MutationInfo(mutator="tune"), parent=base if other else None)

    sel = IslandSelector(num_islands=1, outstanding_penalty=0.5)
    cfg = build_config({"max_programs": 60, "seed": 1, "selector": {"num_islands": 1},
                        "evaluation": {"workers": 2, "reverify": 0}})
    quad = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
    mutator = OfAnother()
    mutator.seen = []
    assert api.evolve(quad, run_dir=tmp_path / "r", config=cfg, mutator=mutator,
                      executor=FunctionExecutor(value), selector=sel).ok
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = list(s.programs())
    named = [p for p in progs if p.mutation.selected is not None]
    assert named and all(p.mutation.selected != p.parent_ids[0] for p in named)
    assert not [p.id for p in progs if sel.outstanding(p.id)]


def test_initial_window_does_not_all_go_to_the_initial_program() -> None:
    """A window of 8 proposals is filled before any result returns (all from the initial
    program: it is the only one); as results arrive, the initial program's outstanding
    children push the next proposals to the new programs even when they are worse."""
    sel = IslandSelector(num_islands=1, stagnation=False)
    sel.add(prog(0, 10.0))
    rng = random.Random(0)
    window = [sel.select(rng) for _ in range(8)]
    assert all(s.parent.id == 0 for s in window)
    parents = []
    for i in range(1, 9):  # results come back one by one, each followed by a new proposal
        sel.add(prog(i, 10.0 - i, parent=0))
        parents.append(sel.select(rng).parent.id)
    assert parents.count(0) <= 4, parents


def test_outstanding_counts_expire_and_penalty_zero_ignores_them() -> None:
    sel = IslandSelector(num_islands=1)
    sel.add(prog(0, 0.0))
    rng = random.Random(0)
    for _ in range(5):
        sel.select(rng)
    assert sel.outstanding(0) == 5
    for i in range(1, 300):
        sel.add(prog(i, -1.0, parent=7))  # results of other parents only
    assert sel.outstanding(0) == 0
    # penalty 0: still counted (exploration walks use the counts), never a rank down
    off = IslandSelector(num_islands=1, outstanding_penalty=0.0, exploitation_ratio=1.0,
                         exploration_ratio=0.0)
    off.add(prog(0, 0.0))
    off.add(prog(1, -1.0, parent=0))
    assert all(off.select(rng).parent.id == 0 for _ in range(20))
    assert off.outstanding(0) == 20


# ---------------------------------------------------------------- determinism and replay


def test_same_adds_and_selects_give_the_same_choices() -> None:
    def run() -> list[tuple]:
        sel = IslandSelector(num_islands=3, migration_interval=20, crossover_rate=0.5)
        r = random.Random(9)
        rng = random.Random(42)
        sel.add(prog(0, 0.0))
        out = []
        for i in range(1, 400):
            s = sel.select(rng)
            out.append((s.parent.id, s.island, tuple(c.id for c in s.context),
                        tuple(o.id for o in s.others)))
            ok = r.random() > 0.2
            sel.add(prog(i, s.parent.score + r.gauss(0, 1) if ok else None,  # type: ignore[operator]
                         island=s.island, parent=s.parent.id, length=r.randrange(50, 3000),
                         status=Status.OK if ok else Status.FAILED))
        return out

    a, b = run(), run()
    assert a == b
    assert len({x[0] for x in a}) > 50


def test_replay_of_adds_rebuilds_the_population_of_a_live_run() -> None:
    """A live selector (selects interleaved with adds) and one rebuilt by replaying the same
    adds in order (resume) hold the same population, cells, archive and success rates."""
    live = IslandSelector(num_islands=3, migration_interval=25, island_size=40)
    rng = random.Random(4)
    r = random.Random(5)
    committed = [prog(0, 0.0)]
    live.add(committed[0])
    for i in range(1, 900):
        s = live.select(rng)
        ok = r.random() > 0.15
        p = prog(i, s.parent.score + r.gauss(-0.2, 1) if ok else None,  # type: ignore[operator]
                 island=s.island, parent=s.parent.id, length=r.randrange(50, 5000),
                 status=Status.OK if ok else Status.FAILED, explored=s.explored)
        live.add(p)
        committed.append(p)
    replayed = IslandSelector(num_islands=3, migration_interval=25, island_size=40)
    for p in committed:
        replayed.add(p)
    assert live.migrations > 10
    assert full_state(live) == full_state(replayed)
    r1, r2 = random.Random(8), random.Random(8)
    for _ in range(50):
        a, b = live.select(r1), replayed.select(r2)
        assert (a.parent.id, a.island) == (b.parent.id, b.island)


def test_from_config_passes_every_island_setting() -> None:
    """Each SelectorConfig field that IslandSelector takes reaches it (a new setting that
    from_config forgets would silently keep its default)."""
    import inspect

    params = set(inspect.signature(IslandSelector.__init__).parameters) - {"self", "features",
                                                                          "minimize"}
    fields = SelectorConfig.model_fields
    assert params <= set(fields), params - set(fields)
    for name in sorted(params):
        default = getattr(SelectorConfig(), name)
        value = (not default if isinstance(default, bool)
                 else default + 1 if isinstance(default, int)
                 else default / 2 if default else 0.1)
        sel = IslandSelector.from_config(SelectorConfig(**{name: value}))
        assert getattr(sel, name) == value, name


# ---------------------------------------------------------------- config


def test_new_settings_from_config_and_validation() -> None:
    cfg = SelectorConfig(adaptive=False, target_success_rate=0.1, max_exploration=0.6,
                         adaptation_window=7, island_size=33, outstanding_penalty=0.0)
    sel = IslandSelector.from_config(cfg)
    assert (sel.adaptive, sel.target_success_rate, sel.max_exploration, sel.adaptation_window,
            sel.island_size, sel.outstanding_penalty) == (False, 0.1, 0.6, 7, 33, 0.0)
    d = IslandSelector()
    c = SelectorConfig()
    assert (d.adaptive, d.target_success_rate, d.max_exploration, d.adaptation_window,
            d.island_size, d.outstanding_penalty) == (
        c.adaptive, c.target_success_rate, c.max_exploration, c.adaptation_window,
        c.island_size, c.outstanding_penalty)
    for bad in ({"island_size": 1}, {"target_success_rate": 0.0},
                {"target_success_rate": 1.0}, {"outstanding_penalty": -1.0},
                {"max_exploration": 1.5}, {"adaptation_window": 0}):
        with pytest.raises(ConfigError):
            IslandSelector(**bad)  # type: ignore[arg-type]


def test_an_empty_selector_is_still_true() -> None:
    """``evolve(selector=...)`` does ``selector or make_selector(config)``: an empty selector
    must not be swapped for the config's."""
    for sel in (IslandSelector(), GreedySelector(), RandomSamplingSelector()):
        assert len(sel) == 0
        assert sel


def test_warmup_spreads_parents_over_islands_and_their_tops_then_ends() -> None:
    """selector.warmup: for the first results, islands are drawn uniformly and an exploiting
    pick takes any of the island's best ``warmup_width`` (exploration as always); afterwards
    the adaptive rule decides."""
    def build(warmup: int) -> IslandSelector:
        sel = IslandSelector(warmup=warmup, warmup_width=3, outstanding_penalty=0.0,
                             crossover_rate=0.0, credit=False)
        sel.add(prog(0, 0.0))
        for i in range(1, 13):  # improving children, every one a success: exploit hard
            sel.add(prog(i, float(i), island=i % 4, parent=0))
        return sel

    r = random.Random(3)
    warm = build(warmup=100)
    picks = [warm.select(r) for _ in range(2000)]
    islands = {p.island for p in picks}
    assert islands == {0, 1, 2, 3}
    for isl in range(4):
        top3 = {p.id for p in warm.island_top(isl)[:3]}
        chosen = [p.parent.id for p in picks if p.island == isl]
        assert top3 <= set(chosen), (isl, set(chosen), top3)
        shares = sorted(chosen.count(i) / len(chosen) for i in top3)
        assert shares[0] > 0.5 * shares[-1], shares  # uniform over the top, not the best

    cold = build(warmup=0)  # the same population without warmup: the best island's best
    picks = [cold.select(r) for _ in range(2000)]
    best_share = sum(p.parent.id == 12 for p in picks) / len(picks)
    assert best_share > 0.6

    ended = build(warmup=13)  # 13 results added: the warmup is over
    picks = [ended.select(r) for _ in range(2000)]
    assert sum(p.parent.id == 12 for p in picks) / len(picks) > 0.6


def test_credit_moves_exploration_to_the_branch_whose_children_improve() -> None:
    """selector.credit: each child's result is a trial of the branch that picked its parent
    (MutationInfo.explored); a Thompson draw between the branches' success rates decides the
    next pick, so exploration grows where explored picks improve and shrinks where exploited
    ones do; replaying the committed programs rebuilds the same choices."""
    def run(explore_pays: bool) -> tuple[float, IslandSelector, list[Program]]:
        sel = IslandSelector(num_islands=1, outstanding_penalty=0.0, crossover_rate=0.0,
                             credit=True)
        rng, r = random.Random(11), random.Random(12)
        committed = [prog(0, 0.0)]
        sel.add(committed[0])
        best = 0.0
        for i in range(1, 400):
            s = sel.select(rng)
            assert s.explored is not None
            wins = s.explored == explore_pays and r.random() < 0.5
            best += 1.0 if wins else 0.0
            p = prog(i, best if wins else best - 5.0, parent=s.parent.id, explored=s.explored,
                     length=r.randrange(50, 5000))
            sel.add(p)
            committed.append(p)
        picks = [sel.select(rng) for _ in range(2000)]
        return sum(bool(p.explored) for p in picks) / len(picks), sel, committed

    exploring, live, committed = run(explore_pays=True)
    exploiting, _, _ = run(explore_pays=False)
    assert exploring > 0.8, exploring
    assert exploiting < 0.15, exploiting

    replayed = IslandSelector(num_islands=1, outstanding_penalty=0.0, crossover_rate=0.0,
                              credit=True)
    for p in committed:
        replayed.add(p)
    r1, r2 = random.Random(8), random.Random(8)
    for _ in range(50):
        a, b = live.select(r1), replayed.select(r2)
        assert (a.parent.id, a.explored) == (b.parent.id, b.explored)


def test_stagnation_rule_exploits_while_the_best_rises_and_explores_when_it_stalls() -> None:
    """The default rule: while the run's best keeps rising (by more than
    stagnation_threshold of its progress per stagnation_window results) a pick takes the best
    island's best except for min_exploration of picks (none by default); once it stalls,
    stagnant_exploration of picks go to a random member or cell elite of a uniformly drawn
    island (no walk has started here). Failed children
    are results without a rise; rises too small to matter count as a stall; a replay of the
    same programs rebuilds the same choices."""
    sel = IslandSelector(outstanding_penalty=0.0, island_size=200, crossover_rate=0.0)
    assert (sel.stagnation, sel.credit) == (True, False)
    committed = [prog(0, 0.0)]
    r = random.Random(3)
    for i in range(1, 80):  # a varied population on every island
        committed.append(prog(i, r.uniform(-10, -1), island=i % 4, length=r.randrange(50, 2000)))
    best = 0.0
    for i in range(80, 130):  # island 2 keeps improving the best
        best += 1.0
        committed.append(prog(i, best, island=2, parent=i - 1 if i > 80 else 0))
    for p in committed:
        sel.add(p)
    assert not sel.stagnant() and sel.best_island == 2
    assert sel.exploration() == sel.exploration(1) == sel.min_exploration == 0.0
    rng = random.Random(5)
    picks = [sel.select(rng) for _ in range(2000)]
    assert all(s.parent is sel.best() and s.island == 2 and not s.explored for s in picks)
    some = IslandSelector(outstanding_penalty=0.0, island_size=200, crossover_rate=0.0,
                          min_exploration=0.05)
    for p in committed:
        some.add(p)
    picks = [some.select(rng) for _ in range(2000)]
    exploit = [s for s in picks if not s.explored]
    assert all(s.parent is some.best() and s.island == 2 for s in exploit)
    assert 0.02 < 1 - len(exploit) / len(picks) < 0.09

    stall = IslandSelector(outstanding_penalty=0.0, island_size=200, crossover_rate=0.0)
    for p in committed:
        stall.add(p)
    # 40 results: failures, worse children and rises below 0.3% of the progress (50)
    for i in range(130, 170):
        if i % 3 == 0:
            p = prog(i, None, status=Status.FAILED, parent=0)
        elif i % 3 == 1:
            p = prog(i, -20.0, island=i % 4, parent=0)
        else:
            best += 0.005
            p = prog(i, best, island=2, parent=i - 1)
        committed.append(p)
        stall.add(p)
    assert stall.stagnant()
    assert stall.exploration() == pytest.approx(stall.stagnant_exploration)
    picks = [stall.select(rng) for _ in range(4000)]
    explored = [s for s in picks if s.explored]
    assert 0.45 < len(explored) / len(picks) < 0.55
    islands = [sum(s.island == k for s in explored) for k in range(4)]
    assert min(islands) > 0.8 * len(explored) / 4, islands  # a uniformly drawn island
    assert sum(s.parent is not stall.best() for s in explored) > 0.8 * len(explored)

    # one real rise ends the stall at once
    stall.add(prog(300, best + 5.0, island=1, parent=0))
    assert not stall.stagnant() and stall.best_island == 1
    assert stall.exploration() == pytest.approx(stall.min_exploration)

    replayed = IslandSelector(outstanding_penalty=0.0, island_size=200, crossover_rate=0.0)
    for p in [*committed, prog(300, best + 5.0, island=1, parent=0)]:
        replayed.add(p)
    r1, r2 = random.Random(8), random.Random(8)
    for _ in range(50):
        a, b = stall.select(r1), replayed.select(r2)
        assert (a.parent.id, a.island, a.explored) == (b.parent.id, b.island, b.explored)


def test_exploration_walks_go_on_from_the_newest_explored_child_whatever_its_score() -> None:
    """Under the stagnation rule an explored pick continues its island's walk: with
    probability explore_walk it takes the newest ok child an explored pick produced on that
    island (even one far worse than the best), else a random member or cell elite (a new
    walk). Exploited and failed children do not move the tip; replay rebuilds the tips; the
    other rules (and explore_walk 0) never walk."""
    def stalled(**kw: object) -> tuple[IslandSelector, list[Program]]:
        sel = IslandSelector(outstanding_penalty=0.0, island_size=200, crossover_rate=0.0,
                             stagnant_exploration=1.0, **kw)  # type: ignore[arg-type]
        committed = [prog(0, 0.0)]
        r = random.Random(3)
        for i in range(1, 80):  # a varied population on every island, no explored children
            committed.append(prog(i, r.uniform(-10, -1), island=i % 4, parent=0,
                                  length=r.randrange(50, 2000), explored=False))
        # explored children: island 1's newest is 81 (far worse than the best); then an
        # exploited child and a failed explored child on island 1, which move nothing
        committed += [prog(80, -30.0, island=1, parent=5, explored=True),
                      prog(81, -40.0, island=1, parent=80, explored=True),
                      prog(82, -35.0, island=3, parent=7, explored=True),
                      prog(83, -2.0, island=1, parent=0, explored=False),
                      prog(84, None, status=Status.FAILED, island=1, parent=81, explored=True)]
        for p in committed:
            sel.add(p)
        return sel, committed

    def returned(sel: IslandSelector, rng: random.Random, n: int) -> list[Selection]:
        """n picks, each child's (failed) result back before the next pick."""
        out = []
        for _ in range(n):
            s = sel.select(rng)
            sel.add(prog(next(ids), None, status=Status.FAILED, island=s.island,
                         parent=s.parent.id, explored=s.explored))
            out.append(s)
        return out

    ids = iter(range(1000, 100000))
    sel, committed = stalled()
    assert sel.stagnant() and sel.explore_walk == 0.9
    rng = random.Random(5)
    picks = returned(sel, rng, 4000)
    assert all(s.explored for s in picks)
    for island, tip in ((1, 81), (3, 82)):
        on = [s for s in picks if s.island == island]
        share = sum(s.parent.id == tip for s in on) / len(on)
        assert 0.85 < share < 0.95, (island, share)
    for island in (0, 2):  # no walk yet: random members and cell elites only
        on = [s for s in picks if s.island == island]
        assert len({s.parent.id for s in on}) > 10

    replayed, _ = stalled()
    fresh, _ = stalled()
    r1, r2 = random.Random(8), random.Random(8)
    for _ in range(50):
        a, b = fresh.select(r1), replayed.select(r2)
        assert (a.parent.id, a.island, a.explored) == (b.parent.id, b.island, b.explored)

    # a new explored child on island 1 becomes its tip
    sel.add(prog(85, -50.0, island=1, parent=81, explored=True))
    on = [s for s in returned(sel, rng, 2000) if s.island == 1]
    assert sum(s.parent.id == 85 for s in on) > 0.85 * len(on)
    assert sum(s.parent.id == 81 for s in on) < 0.05 * len(on)  # the old tip: a member now

    # a walk does not branch: while its tip has a child in flight, explored picks go to the
    # islands whose walk can step (here 0 and 2, which have none yet, and 3)
    busy = stalled()[0]
    first = busy.select(random.Random(1))
    while not (first.island == 1 and first.parent.id == 81):
        busy.add(prog(next(ids), None, status=Status.FAILED, island=first.island,
                      parent=first.parent.id, explored=first.explored))
        first = busy.select(random.Random(next(ids)))
    assert busy.outstanding(81) == 1
    later = [busy.select(rng) for _ in range(300)]
    assert not any(s.island == 1 for s in later)
    assert sum(s.parent.id == 82 for s in later) == busy.outstanding(82) >= 1

    for kw in ({"explore_walk": 0.0}, {"stagnation": False, "exploitation_ratio": 0.0,
                                       "adaptive": False}):
        other, _ = stalled(**kw)
        on = [s for s in returned(other, rng, 4000) if s.explored and s.island == 1]
        assert on and sum(s.parent.id == 81 for s in on) < 0.2 * len(on), kw


def test_stagnation_rule_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="stagnation_window"):
        IslandSelector(stagnation_window=0)
    with pytest.raises(ConfigError, match="stagnant_exploration"):
        IslandSelector(stagnant_exploration=1.5)
    with pytest.raises(ConfigError, match="explore_walk"):
        IslandSelector(explore_walk=-0.1)
    # exploitation_ratio 1 still turns exploration off, whatever the rule
    sel = IslandSelector(exploitation_ratio=1.0, exploration_ratio=0.0)
    sel.add(prog(0, 0.0))
    for i in range(1, 60):
        sel.add(prog(i, -1.0, island=i % 4, parent=0))
    assert sel.stagnant() and sel.exploration() == 0.0


def test_stalls_that_refinement_ends_halve_the_stalled_exploration() -> None:
    """stall_backoff: a stall that an exploiting pick's child ended halves stagnant_exploration
    for the next stalls (at most stall_backoff times); one an explored pick's child ended
    doubles it back. Replay rebuilds it; stall_backoff 0 keeps it fixed."""
    def run(kinds: str, **kw: object) -> tuple[IslandSelector, list[float]]:
        """Stalls of 40 failed results, each ended by a rise from an exploited ("x") or an
        explored ("e") pick; the exploration in force during each next stall."""
        sel = IslandSelector(outstanding_penalty=0.0, crossover_rate=0.0, **kw)  # type: ignore[arg-type]
        sel.add(prog(0, 0.0))
        i, best, seen = 1, 0.0, []
        for kind in kinds:
            for _ in range(41):
                sel.add(prog(i, None, status=Status.FAILED, parent=0, explored=False))
                i += 1
            assert sel.stagnant()
            seen.append(sel.exploration())
            best += 10.0
            sel.add(prog(i, best, island=1, parent=0, explored=kind == "e"))
            i += 1
            assert not sel.stagnant()
        for _ in range(41):
            sel.add(prog(i, None, status=Status.FAILED, parent=0, explored=False))
            i += 1
        seen.append(sel.exploration())
        return sel, seen

    sel, seen = run("xxxxe")
    assert sel.stall_backoff == 3
    assert seen == [0.5, 0.25, 0.125, 0.0625, 0.0625, 0.125]
    assert run("xe")[1] == [0.5, 0.25, 0.5]
    assert run("exx")[1] == [0.5, 0.5, 0.25, 0.125]  # never above stagnant_exploration
    assert run("xxxx", stall_backoff=0)[1] == [0.5] * 5
    assert run("xxx", stall_backoff=1)[1] == [0.5, 0.25, 0.25, 0.25]
    # while the best rises, min_exploration applies whatever the backoff
    rising = run("xx")[0]
    rising.add(prog(10_000, 1e6, island=1, parent=0, explored=False))
    assert not rising.stagnant() and rising.exploration() == 0.0
    # results without a branch (warm-up picks, programs from before the field) move nothing:
    # two stalls ended by them leave it at 50% (two ended by exploiting picks: 12.5%)
    other, _ = run("")
    for k in range(2):
        for j in range(41):
            other.add(prog(5000 + 100 * k + j, None, status=Status.FAILED, parent=0))
        other.add(prog(5000 + 100 * k + 50, 100.0 * (k + 1), island=1, parent=0))
    for j in range(41):
        other.add(prog(6000 + j, None, status=Status.FAILED, parent=0))
    assert other.stagnant() and other.exploration() == 0.5
    with pytest.raises(ConfigError, match="stall_backoff"):
        IslandSelector(stall_backoff=-1)
