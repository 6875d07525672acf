"""The shared Storage test suite: every backend, evoforge's and yours, must pass it.

Use it from a pytest module of your own::

    from evoforge.testing.storage_suite import *  # noqa: F403 - the tests and the store fixture

    @pytest.fixture
    def storage_factory(tmp_path):
        return MyBackend(tmp_path)  # .open(readonly=False) -> Storage; .set_schema_version(v)

``open`` may be called many times on one backend (reopen, concurrent readers). evoforge's own
``tests/test_storage_suite.py`` runs it for SQLite this way. Needs pytest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from evoforge.errors import EvoforgeError, StorageError
from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.storages.base import Storage


class Backend(Protocol):
    """What the suite needs of a backend under test."""

    def open(self, *, readonly: bool = False) -> Storage: ...

    def set_schema_version(self, version: int) -> None: ...


@pytest.fixture
def store(storage_factory: Backend) -> Iterator[Storage]:
    s = storage_factory.open()
    yield s
    s.close()


def pending(i: int, **kw: object) -> Program:
    return Program(id=i, code=f"def f():\n    return {i}\n", created_at=1000.0 + i, **kw)  # type: ignore[arg-type]


def finish(p: Program, seq: int, status: Status = Status.OK, score: float | None = None,
           **kw: object) -> Program:
    if status is Status.OK and score is None:
        score = float(p.id)
    result = EvalResult(status, metrics={"combined_score": score} if score is not None else {},
                        score=score, reason="" if status is Status.OK else status.value, **kw)  # type: ignore[arg-type]
    return p.with_result(result, done_seq=seq, evaluated_at=2000.0 + seq)


def full_program() -> tuple[Program, Program]:
    """A pending program and its recorded form, every field away from its default."""
    p = Program(
        id=7,
        code='# EVOLVE-BLOCK-START\ndef f(x):\n    return "ünïcødé ✓ \\n"\n# EVOLVE-BLOCK-END\n',
        parent_ids=(3, 1, 5),
        island=2,
        generation=4,
        mutation=MutationInfo(
            mutator="llm", model="qwen/qwen3-coder", edit_kind="diff", prompt_tokens=1234,
            completion_tokens=567, cost=0.1 + 0.2, latency=3.25, attempts=2,
            note="replaced loop with\ncomprehension",
        ),
        created_at=1_712_345_678.123456,
        # status/score/... stay default while pending
    )
    done = dataclasses.replace(
        p,
        status=Status.OK,
        reason="scored with a warning",
        score=-1e-300,
        metrics={"combined_score": -1e-300, "sum_radii": 2.635983, "big": 1e308, "n": 26},
        features={"complexity": 0.75, "diversity": 1 / 3},
        artifacts={"stderr": "line1\nline2 \t é\n", "failing_case": '{"n": 26}'},
        evaluated_at=1_712_345_999.5,
        eval_time=12.125,
        done_seq=0,
    )
    return p, done


# ------------------------------------------------------------------------------ shared suite


def test_round_trip_every_field(storage_factory: Backend) -> None:
    p, done = full_program()
    # Guard: every Program field differs from its default in `done`, so every field is covered.
    for f in dataclasses.fields(Program):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        assert getattr(done, f.name) != default, f"test does not exercise Program.{f.name}"
    with storage_factory.open() as s:
        s.add_program(p)
        assert s.get(7) == p
        s.record_result(done)
        got = s.get(7)
        assert got == done
        assert type(got.parent_ids) is tuple and type(got.status) is Status
        assert [x.id for x in s.programs()] == [7]
    with storage_factory.open() as s:
        assert s.get(7) == done
        assert list(s.programs()) == [done]


def test_terminal_program_can_be_added_directly(store: Storage) -> None:
    p = Program(id=0, code="x = (", status=Status.INVALID, reason="SyntaxError", done_seq=0,
                evaluated_at=5.0)
    store.add_program(p)
    assert store.get(0) == p
    with pytest.raises(StorageError, match="done_seq"):
        store.add_program(Program(id=1, code="y", status=Status.INVALID))
    with pytest.raises(StorageError, match="pending"):
        store.add_program(Program(id=2, code="y", done_seq=1))
    with pytest.raises(StorageError, match="score"):
        store.add_program(Program(id=3, code="y", status=Status.OK, done_seq=1))
    assert [x.id for x in store.programs()] == [0]


def test_programs_order_terminal_by_done_seq_then_pending_by_id(store: Storage) -> None:
    for i in range(7):
        store.add_program(pending(i))
    for seq, i in enumerate([3, 0, 6, 4]):
        store.record_result(finish(store.get(i), seq))
    progs = list(store.programs())
    assert [p.id for p in progs] == [3, 0, 6, 4, 1, 2, 5]
    assert [p.done_seq for p in progs] == [0, 1, 2, 3, None, None, None]


def test_status_filter(store: Storage) -> None:
    for i in range(6):
        store.add_program(pending(i))
    store.record_result(finish(store.get(4), 0, Status.TIMEOUT))
    store.record_result(finish(store.get(1), 1, Status.OK))
    store.record_result(finish(store.get(2), 2, Status.TIMEOUT))
    store.record_result(finish(store.get(0), 3, Status.CRASHED))
    assert [p.id for p in store.programs(status=Status.TIMEOUT)] == [4, 2]
    assert [p.id for p in store.programs(status=Status.OK)] == [1]
    assert [p.id for p in store.programs(status=Status.CRASHED)] == [0]
    assert [p.id for p in store.programs(status=Status.PENDING)] == [3, 5]
    assert list(store.programs(status=Status.FAILED)) == []
    assert all(p.status is Status.TIMEOUT for p in store.programs(status=Status.TIMEOUT))


def test_duplicate_add_is_refused_and_changes_nothing(store: Storage) -> None:
    store.add_program(pending(0))
    with pytest.raises(StorageError, match="already exists"):
        store.add_program(Program(id=0, code="something else"))
    # also when the existing one is terminal, and when the new one is terminal
    store.record_result(finish(store.get(0), 0))
    with pytest.raises(StorageError, match="already exists"):
        store.add_program(Program(id=0, code="z", status=Status.INVALID, done_seq=1))
    assert store.get(0) == finish(pending(0), 0)
    assert store.stats()["counts"]["ok"] == 1
    assert len(list(store.programs())) == 1


def test_double_record_result_is_refused(store: Storage) -> None:
    store.add_program(pending(0))
    first = finish(store.get(0), 0, Status.OK, score=1.5)
    store.record_result(first)
    with pytest.raises(StorageError, match="already has a result"):
        store.record_result(finish(pending(0), 1, Status.OK, score=99.0))
    assert store.get(0) == first
    assert store.stats()["next_done_seq"] == 1


def test_record_result_on_unknown_id_or_pending_status_is_refused(store: Storage) -> None:
    with pytest.raises(StorageError, match="no such program"):
        store.record_result(finish(pending(42), 0))
    store.add_program(pending(1))
    with pytest.raises(StorageError, match="pending"):
        store.record_result(pending(1))
    with pytest.raises(StorageError, match="done_seq"):
        store.record_result(dataclasses.replace(pending(1), status=Status.FAILED))
    assert store.get(1) == pending(1)
    assert store.stats()["done"] == 0


def test_done_seq_is_unique(store: Storage) -> None:
    for i in range(3):
        store.add_program(pending(i))
    store.record_result(finish(store.get(0), 0))
    with pytest.raises(StorageError, match="done_seq 0"):
        store.record_result(finish(store.get(1), 0))
    assert store.get(1).status is Status.PENDING
    with pytest.raises(StorageError, match="done_seq 0"):
        store.add_program(Program(id=9, code="q", status=Status.INVALID, done_seq=0))
    with pytest.raises(StorageError):
        store.get(9)
    store.record_result(finish(store.get(1), 1))
    assert [p.done_seq for p in store.programs()] == [0, 1, None]


def test_get_unknown_id_names_it(store: Storage) -> None:
    with pytest.raises(StorageError, match=r"no program with id 5 in this run.*evoforge status"):
        store.get(5)


def test_stats_aggregates(store: Storage) -> None:
    assert store.stats() == {
        "counts": {s.value: 0 for s in Status}, "done": 0, "pending": 0, "next_id": 0,
        "next_done_seq": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
    }
    statuses = [Status.OK, Status.FAILED, Status.OK, Status.INVALID, Status.TIMEOUT]
    for i in range(8):
        store.add_program(pending(i, mutation=MutationInfo(
            mutator="m", prompt_tokens=100 + i, completion_tokens=10 * i, cost=0.125 * i)))
    for seq, st in enumerate(statuses):
        store.record_result(finish(store.get(seq), seq, st))
    store.add_program(Program(id=11, code="(", status=Status.CRASHED, done_seq=9))
    stats = store.stats()
    assert stats["counts"] == {"pending": 3, "ok": 2, "failed": 1, "invalid": 1, "timeout": 1,
                               "crashed": 1}
    assert stats["done"] == 6 and stats["pending"] == 3
    assert stats["next_id"] == 12 and stats["next_done_seq"] == 10
    assert stats["prompt_tokens"] == sum(100 + i for i in range(8))
    assert stats["completion_tokens"] == sum(10 * i for i in range(8))
    assert math.isclose(stats["cost"], 0.125 * sum(range(8)))
    assert isinstance(stats["prompt_tokens"], int) and isinstance(stats["cost"], float)


def test_meta_round_trip(storage_factory: Backend) -> None:
    value = {"config": {"seed": 3, "llm": ["a", "b"], "x": 0.1, "none": None}, "ü": True}
    with storage_factory.open() as s:
        assert s.get_meta("config") is None
        assert s.get_meta("config", {"d": 1}) == {"d": 1}
        s.set_meta("config", value)
        s.set_meta("started_at", 1.5)
        s.set_meta("started_at", 2.5)  # overwrite
        s.set_meta("note", "text")
        assert s.get_meta("config") == value
        with pytest.raises(StorageError, match="finite"):
            s.set_meta("bad", {"x": float("nan")})
        with pytest.raises(StorageError):
            s.set_meta("bad", {"x": object()})
        assert s.get_meta("bad", "missing") == "missing"
    with storage_factory.open() as s:
        assert s.get_meta("config") == value
        assert s.get_meta("started_at") == 2.5
        assert s.get_meta("note") == "text"


@pytest.mark.parametrize("field,value", [
    ("score", float("inf")),
    ("metrics", {"combined_score": 1.0, "x": float("nan")}),
    ("features", {"f": float("-inf")}),
    ("eval_time", float("nan")),
])
def test_non_finite_numbers_are_refused(store: Storage, field: str, value: Any) -> None:
    store.add_program(pending(0))
    bad = dataclasses.replace(finish(store.get(0), 0), **{field: value})
    with pytest.raises(StorageError, match="finite"):
        store.record_result(bad)
    assert store.get(0) == pending(0)
    with pytest.raises(StorageError, match="finite"):
        store.add_program(pending(1, mutation=MutationInfo(cost=float("nan"))))
    assert store.stats()["next_id"] == 1


def test_check_is_clean_on_a_normal_store(store: Storage) -> None:
    assert store.check() == []
    for i in range(5):
        store.add_program(pending(i))
    for seq, st in enumerate([Status.OK, Status.FAILED, Status.CRASHED]):
        store.record_result(finish(store.get(seq), seq, st))
    store.set_meta("k", [1, 2])
    assert store.check() == []


def test_reopen_persists_everything(storage_factory: Backend) -> None:
    p, done = full_program()
    with storage_factory.open() as s:
        for i in range(5):
            s.add_program(pending(i))
        s.add_program(p)
        s.record_result(done)
        s.record_result(finish(s.get(2), 1, Status.FAILED))
        s.set_meta("seed", 42)
        before = list(s.programs())
        stats = s.stats()
    with storage_factory.open() as s:
        assert list(s.programs()) == before
        assert s.stats() == stats
        assert s.get_meta("seed") == 42
        assert s.check() == []
        # and it keeps working after a reopen
        s.record_result(finish(s.get(0), stats["next_done_seq"]))
        assert s.get(0).done_seq == 2


def test_readonly_sees_committed_data_while_writer_is_open(storage_factory: Backend) -> None:
    with storage_factory.open() as w:
        w.add_program(pending(0))
        w.set_meta("phase", "running")
        with storage_factory.open(readonly=True) as r:
            assert [p.id for p in r.programs()] == [0]
            assert r.get_meta("phase") == "running"
            # new commits by the writer are visible to the open reader
            w.record_result(finish(w.get(0), 0))
            w.add_program(pending(1))
            assert r.get(0) == w.get(0)
            assert r.stats()["next_id"] == 2
            assert r.check() == []
            with pytest.raises(StorageError, match="read-only"):
                r.add_program(pending(2))
            with pytest.raises(StorageError, match="read-only"):
                r.record_result(finish(r.get(1), 1))
            with pytest.raises(StorageError, match="read-only"):
                r.set_meta("phase", "hacked")
        # writer unaffected by the reader
        w.add_program(pending(2))
        assert w.get_meta("phase") == "running"
        assert w.get(1).status is Status.PENDING
    # readonly after the writer closed too
    with storage_factory.open(readonly=True) as r:
        assert [p.id for p in r.programs()] == [0, 1, 2]


def test_newer_schema_version_is_refused(storage_factory: Backend) -> None:
    with storage_factory.open() as s:
        s.add_program(pending(0))
    storage_factory.set_schema_version(999_999)  # any newer schema than this evoforge knows
    for readonly in (False, True):
        with pytest.raises(StorageError, match="newer evoforge.*upgrade evoforge"):
            storage_factory.open(readonly=readonly)


def test_closed_storage_raises_storage_error(storage_factory: Backend) -> None:
    s = storage_factory.open()
    s.add_program(pending(0))
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        s.get(0)
    with pytest.raises(StorageError, match="closed"):
        s.add_program(pending(1))


def test_storage_error_is_an_evoforge_error() -> None:
    assert issubclass(StorageError, EvoforgeError)


__all__ = ["Backend", "finish", "full_program", "pending", "store",
           *sorted(name for name in dict(globals()) if name.startswith("test_"))]


def test_exchanges_are_kept_apart_and_survive_reopen(store: Storage,
                                                     storage_factory: Backend) -> None:
    store.add_program(pending(3))
    exchange = {"messages": [{"role": "user", "content": "improve é ✓"}], "reply": "<<<<<<<",
                "model": "m", "attempts": 2, "outcome": "edit did not apply: x", "tried": []}
    store.add_exchange(3, exchange)
    assert store.exchange(3) == exchange
    assert store.exchange(4) is None  # none stored: no error
    assert store.get(3) == pending(3)  # the program is untouched by it
    store.close()
    again = storage_factory.open(readonly=True)
    try:
        assert again.exchange(3) == exchange
    finally:
        again.close()
