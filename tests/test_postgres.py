"""PostgreSQL storage on a real server (``evoforge.testing.postgres.LocalPostgres``, one per
session, on loopback): the shared storage suite, several runs in one database, URLs, and runs
through the installed CLI (kill -9 and resume, the server restarted mid-run, a live status)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evoforge.errors import StorageError
from evoforge.storages import Storage, open_storage, resolve_storage_url, storage_exists

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL storage needs psycopg "
                              "(pip install 'evoforge[postgres]')")

from evoforge.storages.postgres import PostgresStorage, list_runs  # noqa: E402
from evoforge.testing.postgres import LocalPostgres, PostgresUnavailable, free_port  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    """One throwaway server for the session (fsync off: nothing here outlives it)."""
    try:
        server = LocalPostgres(settings={"fsync": "off", "synchronous_commit": "off",
                                         "full_page_writes": "off"})
    except PostgresUnavailable as e:
        pytest.skip(f"no PostgreSQL server binaries: {e}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fresh_url(pg: LocalPostgres, label: str = "t") -> str:
    return f"{pg.url}#run={label}-{next(_names)}"


class PostgresBackend:
    """One run (its own ``#run=NAME``) in the session's database."""

    name = "postgres"

    def __init__(self, pg: LocalPostgres) -> None:
        self.url = fresh_url(pg, "suite")

    def open(self, *, readonly: bool = False) -> Storage:
        return PostgresStorage(self.url, readonly=readonly)

    def set_schema_version(self, version: int) -> None:
        run = self.url.rsplit("#run=", 1)[1]
        with psycopg.connect(self.url.split("#")[0], autocommit=True) as conn:
            conn.execute("UPDATE evoforge_runs SET schema_version = %s WHERE name = %s",
                         (version, run))


@pytest.fixture
def storage_factory(pg: LocalPostgres) -> PostgresBackend:
    return PostgresBackend(pg)


from evoforge.testing.storage_suite import *  # noqa: E402, F403 - the shared suite runs here
from evoforge.testing.storage_suite import finish, pending  # noqa: E402 - used below

# ------------------------------------------------------------------------------ PostgreSQL-specific


def test_runs_in_one_database_are_kept_apart(pg: LocalPostgres) -> None:
    a_url, b_url = fresh_url(pg, "apart"), fresh_url(pg, "apart")
    with open_storage(a_url) as a, open_storage(b_url) as b:
        for i in range(3):
            a.add_program(pending(i))
        b.add_program(pending(0))
        a.record_result(finish(a.get(1), 0))
        b.record_result(finish(b.get(0), 0, score=9.0))  # same id and done_seq: another run
        a.set_meta("who", "a")
        b.set_meta("who", "b")
        a.add_exchange(0, {"reply": "a"})
        assert [p.id for p in a.programs()] == [1, 0, 2]
        assert [(p.id, p.score) for p in b.programs()] == [(0, 9.0)]
        assert a.stats()["next_id"] == 3 and b.stats()["next_id"] == 1
        assert (a.get_meta("who"), b.get_meta("who")) == ("a", "b")
        assert b.exchange(0) is None and a.exchange(0) == {"reply": "a"}
    names = {r["name"]: r for r in list_runs(pg.url)}
    a_name, b_name = a_url.rsplit("=", 1)[1], b_url.rsplit("=", 1)[1]
    assert names[a_name]["done"] == 1 and names[a_name]["pending"] == 2
    assert names[b_name]["best"] == 9.0


def test_readonly_open_of_a_missing_run_is_a_clear_error(pg: LocalPostgres) -> None:
    url = fresh_url(pg, "missing")
    with pytest.raises(StorageError, match=r"no run 'missing-\d+' in .*evoforge status"):
        PostgresStorage(url, readonly=True)
    assert not storage_exists(url)  # and the failed reader created nothing
    with pytest.raises(StorageError, match="names no run: add #run=NAME"):
        PostgresStorage(pg.url)


def test_readonly_sessions_are_read_only_on_the_server(pg: LocalPostgres) -> None:
    url = fresh_url(pg)
    with open_storage(url) as w:
        w.add_program(pending(0))
    with PostgresStorage(url, readonly=True) as r:
        assert r._pool is not None
        with r._pool.connection() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM evoforge_programs")


def test_urls_resolve_redact_and_refuse(pg: LocalPostgres, tmp_path: Path) -> None:
    run = tmp_path / "run"
    url = "postgres://ann@db.example:5433/evo#run=r1"
    assert resolve_storage_url(url, run) == "postgresql://ann@db.example:5433/evo#run=r1"
    assert resolve_storage_url("postgresql://ann@h/evo", run) == "postgresql://ann@h/evo"
    for bad, why in [("postgresql://h/evo#run=a b", "bad run name"),
                     ("postgresql://h/evo#frag", "#run=NAME"),
                     ("postgresql://h:99999/evo#run=x", "malformed"),
                     ("postgresql://h/#run=x", "names no database")]:
        with pytest.raises(StorageError, match=why):
            resolve_storage_url(bad, run)
    dead = f"postgresql://evoforge:s3cret@127.0.0.1:{free_port()}/evoforge#run=x"
    with pytest.raises(StorageError) as info:
        open_storage(dead)
    text = str(info.value)
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in text and "storage.url" in text
    assert "s3cret" not in text


def test_programs_pages_and_writes_between_pages(pg: LocalPostgres,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from evoforge.program import Status
    from evoforge.storages import postgres as pg_module

    monkeypatch.setattr(pg_module, "_PAGE", 3)
    with open_storage(fresh_url(pg)) as s:
        for i in range(11):
            s.add_program(pending(i))
        order = [5, 0, 9, 1, 2, 10, 7]
        for seq, i in enumerate(order):
            s.record_result(finish(s.get(i), seq, Status.OK if i % 2 else Status.FAILED))
        it = s.programs()
        assert next(it).id == 5
        assert [p.id for p in it] == order[1:] + [3, 4, 6, 8]
        assert [p.id for p in s.programs(status=Status.FAILED)] == [0, 2, 10]
        seen = []
        for p in s.programs(status=Status.PENDING):
            seen.append(p.id)
            s.record_result(finish(p, 100 + p.id))
        assert seen == [3, 4, 6, 8]
        assert s.check() == []


def _sql(url: str, statement: str, *args: Any) -> None:
    with psycopg.connect(url.split("#")[0], autocommit=True) as conn:
        conn.execute(statement, args)


def test_check_reports_tampering(pg: LocalPostgres) -> None:
    url = fresh_url(pg)
    name = url.rsplit("=", 1)[1]
    with open_storage(url) as s:
        for i in range(5):
            s.add_program(pending(i))
        for i in range(3):
            s.record_result(finish(s.get(i), i))
    for statement in ("UPDATE evoforge_programs SET done_seq = 50 WHERE run = %s AND id = 4",
                      "UPDATE evoforge_programs SET done_seq = NULL WHERE run = %s AND id = 1",
                      "UPDATE evoforge_programs SET score = NULL WHERE run = %s AND id = 2",
                      "UPDATE evoforge_programs SET metrics = '[1]' WHERE run = %s AND id = 0",
                      "UPDATE evoforge_programs SET status = 'weird' WHERE run = %s AND id = 3"):
        _sql(url, statement, name)
    with open_storage(url, readonly=True) as s:
        problems = s.check()
    joined = "\n".join(problems)
    assert "program 4: pending but has done_seq 50" in joined
    assert "program 1: status 'ok' but no done_seq" in joined
    assert "program 2: status 'ok' but score is NULL" in joined
    assert "program 0: metrics is a JSON array, not an object" in joined
    assert "program 3: unknown status 'weird'" in joined
    assert len(problems) == 5, problems
