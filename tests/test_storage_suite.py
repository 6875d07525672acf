"""The shared Storage suite: every backend must pass every test parametrized on ``storage_factory``.

To add a backend, write a class like ``SQLiteBackend`` (open / set_schema_version) and add it
to ``BACKENDS``. Tests at the end of the file are SQLite-specific (files, URLs, raw tampering).
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evoforge.errors import EvoforgeError, StorageError
from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.storages import SQLiteStorage, Storage, open_storage, resolve_storage_url
from evoforge.storages import sqlite as sqlite_module


class SQLiteBackend:
    """One run database in a temp dir; ``open`` may be called many times (reopen, readers)."""

    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        self.path = run_dir / "evoforge.db"

    def open(self, *, readonly: bool = False) -> Storage:
        return SQLiteStorage(self.path, readonly=readonly)

    def set_schema_version(self, version: int) -> None:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.commit()
        finally:
            conn.close()


BACKENDS: dict[str, Callable[[Path], SQLiteBackend]] = {"sqlite": SQLiteBackend}


@pytest.fixture(params=sorted(BACKENDS))
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> SQLiteBackend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(storage_factory: SQLiteBackend):
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


def test_round_trip_every_field(storage_factory: SQLiteBackend) -> None:
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


def test_meta_round_trip(storage_factory: SQLiteBackend) -> None:
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


def test_reopen_persists_everything(storage_factory: SQLiteBackend) -> None:
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


def test_readonly_sees_committed_data_while_writer_is_open(storage_factory: SQLiteBackend) -> None:
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


def test_newer_schema_version_is_refused(storage_factory: SQLiteBackend) -> None:
    with storage_factory.open() as s:
        s.add_program(pending(0))
    storage_factory.set_schema_version(sqlite_module.SCHEMA_VERSION + 1)
    for readonly in (False, True):
        with pytest.raises(StorageError, match="newer evoforge.*upgrade evoforge"):
            storage_factory.open(readonly=readonly)


def test_closed_storage_raises_storage_error(storage_factory: SQLiteBackend) -> None:
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


# ------------------------------------------------------------------------------ SQLite-specific


def test_sqlite_garbage_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "evoforge.db"
    garbage = b"this is not a database, just some text\n" * 200
    path.write_bytes(garbage)
    for readonly in (False, True):
        with pytest.raises(StorageError, match=r"evoforge\.db is not a usable SQLite database"):
            SQLiteStorage(path, readonly=readonly)
    assert path.read_bytes() == garbage


def test_sqlite_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not an evoforge run database"):
        SQLiteStorage(path)
    with pytest.raises(StorageError, match="not an evoforge run database"):
        SQLiteStorage(path, readonly=True)


def test_sqlite_readonly_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "evoforge.db"
    with pytest.raises(StorageError, match="no run database at .*is it a run directory"):
        SQLiteStorage(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_sqlite_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a directory"):
        SQLiteStorage(tmp_path)
    with pytest.raises(StorageError, match="does not exist"):
        SQLiteStorage(tmp_path / "missing" / "evoforge.db")


def test_sqlite_pragmas_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "evoforge.db"
    with SQLiteStorage(path) as s:
        assert isinstance(s, SQLiteStorage)
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        cols = {r[1] for r in conn.execute("PRAGMA table_info(programs)")}
        assert {"done_seq", "prompt_tokens", "completion_tokens", "cost", "mutation"} <= cols


def test_sqlite_programs_streams_in_pages(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "_PAGE", 3)
    with SQLiteStorage(tmp_path / "e.db") as s:
        for i in range(11):
            s.add_program(pending(i))
        order = [5, 0, 9, 1, 2, 10, 7]
        for seq, i in enumerate(order):
            s.record_result(finish(s.get(i), seq, Status.OK if i % 2 else Status.FAILED))
        it = s.programs()
        assert next(it).id == 5  # a generator, not a list
        assert [p.id for p in it] == order[1:] + [3, 4, 6, 8]
        assert [p.id for p in s.programs(status=Status.FAILED)] == [0, 2, 10]
        assert [p.id for p in s.programs(status=Status.PENDING)] == [3, 4, 6, 8]
        # writes between pages do not break the iteration
        seen = []
        for p in s.programs(status=Status.PENDING):
            seen.append(p.id)
            s.record_result(finish(p, 100 + p.id))
        assert seen == [3, 4, 6, 8]
        assert s.check() == []


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for st in statements:
            conn.execute(st)
        conn.commit()
    finally:
        conn.close()


def test_sqlite_check_reports_tampering(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    with SQLiteStorage(path) as s:
        for i in range(6):
            s.add_program(pending(i))
        for i in range(4):
            s.record_result(finish(s.get(i), i))
        s.set_meta("m", 1)
    _tamper(
        path,
        "UPDATE programs SET done_seq = 50 WHERE id = 4",  # pending with a done_seq
        "UPDATE programs SET done_seq = NULL WHERE id = 1",  # terminal without done_seq
        "UPDATE programs SET score = NULL WHERE id = 2",  # ok without score
        "UPDATE programs SET metrics = '{broken' WHERE id = 3",
        "UPDATE programs SET features = '{\"x\": NaN}' WHERE id = 0",  # not strict JSON
        "UPDATE programs SET status = 'weird' WHERE id = 5",
        "UPDATE meta SET value = 'nope' WHERE key = 'm'",
    )
    with SQLiteStorage(path, readonly=True) as s:
        problems = s.check()
        joined = "\n".join(problems)
        assert "program 4: pending but has done_seq 50" in joined
        assert "program 1: status 'ok' but no done_seq" in joined
        assert "program 2: status 'ok' but score is NULL" in joined
        assert "program 3: unparseable JSON in metrics" in joined
        assert "program 0: unparseable JSON in features" in joined
        assert "program 5: unknown status 'weird'" in joined
        assert "meta 'm': unparseable JSON" in joined
        assert len(problems) == 7, problems
        with pytest.raises(StorageError, match="program 3 .* corrupt"):
            s.get(3)


# ------------------------------------------------------------------------------ URLs


def test_resolve_storage_url(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert resolve_storage_url(None, run) == f"sqlite:///{run}/evoforge.db"
    assert resolve_storage_url("sqlite:///db/x.db", run) == f"sqlite:///{run}/db/x.db"
    assert resolve_storage_url("sqlite:////abs/x.db", run) == "sqlite:////abs/x.db"
    rel = resolve_storage_url(None, Path("relative/run"))
    assert rel.startswith("sqlite:////") and rel.endswith("/relative/run/evoforge.db")
    with pytest.raises(StorageError, match=r"PostgreSQL support is not available yet.*sqlite:///"):
        resolve_storage_url("postgresql://user@host/db", run)
    with pytest.raises(StorageError, match=r"unsupported storage URL scheme 'mysql'.*sqlite:///"):
        resolve_storage_url("mysql://host/db", run)
    with pytest.raises(StorageError, match="sqlite:///"):
        resolve_storage_url("/just/a/path.db", run)
    for bad in ("sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro", "sqlite://x.db"):
        with pytest.raises(StorageError, match="sqlite:///"):
            resolve_storage_url(bad, run)


def test_open_storage(tmp_path: Path) -> None:
    url = resolve_storage_url(None, tmp_path)
    with open_storage(url) as s:
        assert isinstance(s, SQLiteStorage)
        s.add_program(pending(0))
    with open_storage(url, readonly=True) as r:
        assert r.get(0) == pending(0)
        with pytest.raises(StorageError, match="read-only"):
            r.set_meta("a", 1)
    with pytest.raises(StorageError, match="PostgreSQL"):
        open_storage("postgresql://localhost/evo")
