"""The shared Storage suite (``evoforge.testing.storage_suite``) for every backend evoforge ships,
and SQLite-specific tests.

To add a backend, write a class like ``SQLiteBackend`` (open / set_schema_version) and add it
to ``BACKENDS``. Tests at the end of the file are SQLite-specific (files, URLs, raw tampering).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from evoforge.errors import StorageError
from evoforge.program import Status
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


from evoforge.testing.storage_suite import *  # noqa: E402, F403 - the shared suite runs here
from evoforge.testing.storage_suite import finish, pending  # noqa: E402 - used below

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
    assert resolve_storage_url("postgresql://user@host/db", run) == "postgresql://user@host/db"
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
    with pytest.raises(StorageError, match="names no run: add #run=NAME"):
        open_storage("postgresql://localhost/evo")
