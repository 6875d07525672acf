"""Selectors: islands + MAP-Elites + migration, and the two baselines."""

from __future__ import annotations

import random

import pytest

from evoforge.config import FeatureConfig, SelectorConfig
from evoforge.errors import ConfigError, EvoforgeError
from evoforge.program import Program, Status
from evoforge.selectors.baseline import GreedySelector, RandomSamplingSelector
from evoforge.selectors.islands import IslandSelector


def prog(pid: int, score: float | None, *, island: int = 0, length: int = 100,
         status: Status = Status.OK, metrics: dict[str, float] | None = None) -> Program:
    return Program(id=pid, code="x" * length, island=island, status=status, score=score,
                   metrics=metrics or {})


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
        cells = cell_ids(sel, island)
        assert len(cells) >= 8, f"island {island}: values piled into {len(cells)} cells"
        assert cells == brute_cells(sel, island, "code_length", 10)
        lo, hi = sel.feature_range(island, "code_length")  # type: ignore[misc]
        assert lo <= 100 and hi >= 100_000
        # members are spread, not in the top bin
        counts: dict[tuple[int, ...], int] = {}
        for p in sel.island_members(island):
            v = sel.features(p)["code_length"]
            c = (min(max(int((v - lo) / (hi - lo) * 10), 0), 9),)
            counts[c] = counts.get(c, 0) + 1
        assert max(counts.values()) < 0.3 * len(sel.island_members(island))


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


def _one_cell_population(archive_size: int, exploration_ratio: float,
                         exploitation_ratio: float) -> IslandSelector:
    feats = [FeatureConfig(name="code_length", bins=1)]
    sel = IslandSelector(num_islands=1, archive_size=archive_size, features=feats,
                         crossover_rate=0.0, exploration_ratio=exploration_ratio,
                         exploitation_ratio=exploitation_ratio)
    sel.add(prog(0, 0.0))
    for i in range(1, 101):
        sel.add(prog(i, float(i)))
    return sel


def test_exploitation_one_always_picks_from_archive() -> None:
    sel = IslandSelector(exploitation_ratio=1.0, exploration_ratio=0.0, archive_size=5)
    for p in population(300):
        sel.add(p)
    archive = {p.id for p in sel.archive()}
    ok = sorted((p for p in population(300) if p.status == Status.OK),
                key=lambda p: -(p.score or 0))
    assert archive == {p.id for p in ok[:5]}  # brute force top 5
    rng = random.Random(1)
    parents = {sel.select(rng).parent.id for _ in range(500)}
    assert parents == archive


def test_exploration_ratio_statistics() -> None:
    # one cell, archive of 1: cell elite and archive are both the best (id 100); only
    # exploration picks others, with probability 0.2 * 100/101
    sel = _one_cell_population(1, exploration_ratio=0.2, exploitation_ratio=0.5)
    rng = random.Random(7)
    n = 2000
    not_best = sum(sel.select(rng).parent.id != 100 for _ in range(n))
    assert 0.15 * n < not_best < 0.25 * n


def test_exploitation_ratio_statistics() -> None:
    # archive of 5; exploitation picks one of 5 (4 not the best); cells give the best
    sel = _one_cell_population(5, exploration_ratio=0.0, exploitation_ratio=0.5)
    rng = random.Random(11)
    n = 2000
    parents = [sel.select(rng).parent.id for _ in range(n)]
    assert set(parents) <= {96, 97, 98, 99, 100}
    not_best = sum(p != 100 for p in parents)
    assert 0.33 * n < not_best < 0.47 * n  # expected 0.5 * 4/5 = 0.4


def test_exploration_one_samples_whole_island_uniformly() -> None:
    sel = _one_cell_population(1, exploration_ratio=1.0, exploitation_ratio=0.0)
    rng = random.Random(2)
    parents = [sel.select(rng).parent.id for _ in range(3000)]
    assert len(set(parents)) > 90
    assert sum(p < 50 for p in parents) > 1000  # bad programs are explored too


def test_cells_only_samples_cell_elites() -> None:
    sel = IslandSelector(exploration_ratio=0.0, exploitation_ratio=0.0, num_islands=2)
    for p in population(200):
        sel.add(p)
    rng = random.Random(4)
    for _ in range(300):
        s = sel.select(rng)
        assert s.parent.id in {p.id for p in sel.cells(s.island).values()}


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
        # crossover partner comes from another island's top, never the parent
        assert len(s.others) == 1
        partner = s.others[0]
        assert partner.id != s.parent.id
        assert any(partner in sel.island_top(j) for j in range(4) if j != s.island)
    assert islands_seen == {0, 1, 2, 3}


def test_no_crossover_with_zero_rate_or_one_island() -> None:
    rng = random.Random(0)
    for sel in (IslandSelector(crossover_rate=0.0), IslandSelector(num_islands=1,
                                                                   crossover_rate=1.0)):
        for p in population(100):
            sel.add(p)
        assert all(sel.select(rng).others == () for _ in range(100))


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
