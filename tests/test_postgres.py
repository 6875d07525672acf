"""PostgreSQL storage on a real server (``evoforge.testing.postgres.LocalPostgres``, one per
session, on loopback): the shared storage suite, several runs in one database, URLs, and runs
through the installed CLI (kill -9 and resume, the server restarted mid-run, a live status)."""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from evoforge.errors import StorageError
from evoforge.storages import Storage, open_storage, resolve_storage_url, storage_exists

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL storage needs psycopg "
                              "(pip install 'evoforge[postgres]')")

from evoforge.storages.postgres import PostgresStorage, list_runs, redact, unique_run_url  # noqa: E402
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
    with server:
        yield server


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
    assert redact("postgresql://ann:pw@h:1/evo?sslmode=require&password=pw2#run=x") == \
        "postgresql://ann@h:1/evo?sslmode=require#run=x"
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


def test_a_write_whose_commit_landed_before_the_connection_dropped_counts_once(
        pg: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops right after COMMIT: the retry finds its own row and is done."""
    import contextlib

    from evoforge.program import Status

    s = PostgresStorage(fresh_url(pg))
    assert s._pool is not None
    real = s._pool.connection
    drops = {"left": 0}

    @contextlib.contextmanager
    def flaky(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with real(*args, **kwargs) as conn:
            yield conn
        if drops["left"]:
            drops["left"] -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(s._pool, "connection", flaky)
    with s:
        drops["left"] = 1
        s.add_program(pending(0))
        assert drops["left"] == 0  # the drop happened, after the commit
        drops["left"] = 1
        done = finish(s.get(0), 0)
        s.record_result(done)
        assert s.get(0) == done and s.stats()["done"] == 1
        # a second call is still refused: only a retry of the same write is forgiven
        with pytest.raises(StorageError, match="already has a result"):
            s.record_result(done)
        with pytest.raises(StorageError, match="already exists"):
            s.add_program(pending(0))
        # a retry that finds a different result stored is refused too
        s.add_program(pending(1))
        s.record_result(finish(s.get(1), 1, Status.FAILED))
        drops["left"] = 1
        with pytest.raises(StorageError, match="already has a result"):
            s.record_result(finish(pending(1), 2))
        assert [p.id for p in s.programs()] == [0, 1]


# ------------------------------------------------------------------------------ runs through the CLI

FIXTURES = Path(__file__).parent / "fixtures" / "problems"
QUAD = FIXTURES / "quadratic"
EVOFORGE = [str(Path(sys.executable).with_name("evoforge"))]  # the installed entry point


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVOFORGE, *args], capture_output=True, text=True, timeout=timeout)


def _recorded_url(run_dir: Path) -> str | None:
    try:
        return str(yaml.safe_load((run_dir / "config.yaml").read_text())["storage"]["url"])
    except (OSError, TypeError, KeyError):
        return None


def _stats(url: str) -> dict[str, Any] | None:
    try:
        with PostgresStorage(url, readonly=True) as s:
            return s.stats()
    except StorageError:
        return None  # not created yet


def _wait_done(run_dir: Path, proc: subprocess.Popen[str], at_least: int,
               deadline: float = 90.0) -> str:
    """Wait until the live run has committed ``at_least`` programs; returns its URL."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited early"
        url = _recorded_url(run_dir)
        stats = _stats(url) if url else None
        if url and stats and stats["done"] >= at_least:
            return url
        time.sleep(0.05)
    raise AssertionError(f"the run did not commit {at_least} programs in {deadline} s")


def _committed(url: str) -> tuple[dict[int, Any], set[int], list[str]]:
    from evoforge.program import Status

    with PostgresStorage(url, readonly=True) as s:
        progs = list(s.programs())
        problems = s.check()
    return ({p.id: p for p in progs if p.status is not Status.PENDING},
            {p.id for p in progs if p.status is Status.PENDING}, problems)


def _assert_complete(url: str, budget: int, before: dict[int, Any]) -> None:
    done, pending_ids, problems = _committed(url)
    assert problems == [] and not pending_ids
    assert len(done) == budget
    assert sorted(p.done_seq for p in done.values()) == list(range(budget))  # no duplicates
    for pid, p in before.items():  # nothing committed lost or changed
        assert done[pid] == p


def test_cli_run_then_status_best_show_from_the_url(pg: LocalPostgres, tmp_path: Path) -> None:
    run_dir = tmp_path / "quad-pg"
    r = _cli("run", str(QUAD), "--out", str(run_dir), "-q", "--max-programs", "6",
             "--set", f"storage.url={pg.url}")
    assert r.returncode == 0, r.stderr
    url = _recorded_url(run_dir)
    assert url is not None and url.startswith(pg.url + "#run=quad-pg")  # named after the dir
    assert not (run_dir / "evoforge.db").exists()
    assert f"status '{url}'" in r.stdout  # how to inspect it from any machine
    elsewhere = tmp_path / "elsewhere"  # no run directory needed
    elsewhere.mkdir()
    st = subprocess.run([*EVOFORGE, "status", url], capture_output=True, text=True, cwd=elsewhere)
    assert st.returncode == 0, st.stderr
    assert f"{url}: 6 programs" in st.stdout and "top " in st.stdout
    best = _cli("best", url, "--write", str(tmp_path / "best.py"))
    assert best.returncode == 0, best.stderr
    assert (tmp_path / "best.py").read_text() == (run_dir / "best_program.py").read_text()
    show = _cli("show", url, "0")
    assert show.returncode == 0 and "program #0" in show.stdout
    with_pw = url.replace("evoforge@", "evoforge:hunter2@")  # a reader may give one: not shown
    shown = _cli("status", with_pw)
    assert shown.returncode == 0 and f"{url}: 6 programs" in shown.stdout
    assert "hunter2" not in shown.stdout + shown.stderr
    listing = _cli("status", pg.url)
    assert listing.returncode == 0 and url.rsplit("=", 1)[1] in listing.stdout
    # a second run into the same directory name gets a name of its own
    assert unique_run_url(pg.url, "quad-pg") == f"{url}-2"
    # resume through the run directory's pointer
    more = _cli("resume", str(run_dir), "-q", "--max-programs", "8")
    assert more.returncode == 0, more.stderr
    assert _stats(url) is not None and _stats(url)["done"] == 8  # type: ignore[index]
    # a password in a run's URL is refused and never echoed
    pw = _cli("run", str(QUAD), "--out", str(tmp_path / "pw"), "--set",
              f"storage.url=postgresql://evoforge:hunter2@127.0.0.1:{pg.port}/evoforge")
    assert pw.returncode == 1 and "PGPASSWORD" in pw.stderr and "hunter2" not in pw.stderr


def test_live_status_then_sigkill_and_resume(pg: LocalPostgres, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                             "--max-programs", "100000", "--workers", "2",
                             "--set", f"storage.url={pg.url}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = _wait_done(run_dir, proc, 6)
        live = _cli("status", url)  # while the controller writes
        assert live.returncode == 0, live.stderr
        shown = int(live.stdout.split(": ", 1)[1].split(" programs", 1)[0])
        assert shown >= 6 and proc.poll() is None
        _wait_done(run_dir, proc, shown + 3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    before, pending_ids, problems = _committed(url)
    assert problems == [] and len(before) >= 9
    budget = len(before) + len(pending_ids) + 6
    res = _cli("resume", str(run_dir), "-q", "--max-programs", str(budget))
    assert res.returncode == 0, res.stderr
    _assert_complete(url, budget, before)  # pending ones evaluated under their own ids


def _run_in_background(run_dir: Path, url: str, budget: int,
                       *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*EVOFORGE, "run", str(QUAD), "--out", str(run_dir), "-q",
                             "--max-programs", str(budget), "--workers", "2",
                             "--set", f"storage.url={url}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_server_restart_mid_run_reconnects_and_continues(pg: LocalPostgres,
                                                        tmp_path: Path) -> None:
    run_dir = tmp_path / "restarted"
    budget = 24
    proc = _run_in_background(run_dir, pg.url, budget)
    try:
        url = _wait_done(run_dir, proc, 6)
        before, _, _ = _committed(url)
        pg.restart()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "lost the connection to PostgreSQL" in err and "reconnected to PostgreSQL" in err
    _assert_complete(url, budget, before)


def test_server_down_longer_than_the_window_stops_cleanly_then_resumes(
        pg: LocalPostgres, tmp_path: Path) -> None:
    run_dir = tmp_path / "outage"
    budget = 24
    proc = _run_in_background(run_dir, pg.url, budget, "--set", "storage.reconnect_timeout=1")
    try:
        url = _wait_done(run_dir, proc, 6)
        pg.stop()
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            pg.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "could not get it back within 1 s" in err and "evoforge resume" in err
    before, _, problems = _committed(url)
    assert problems == [] and len(before) >= 6
    res = _cli("resume", str(run_dir), "-q")
    assert res.returncode == 0, res.stderr
    _assert_complete(url, budget, before)


def test_one_writer_per_run_across_processes(pg: LocalPostgres,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from evoforge.storages import postgres as pg_module

    monkeypatch.setattr(pg_module, "_LOCK_WAIT", 0.2)  # how long a second writer waits
    url = fresh_url(pg, "writer")
    first = open_storage(url)
    try:
        first.add_program(pending(0))
        with pytest.raises(StorageError, match=r"being written by another evoforge process "
                                               r"\(evoforge .* pid \d+.*one writer per run"):
            open_storage(url)
        with open_storage(url, readonly=True) as reader:  # readers never wait for it
            assert reader.get(0) == pending(0)
    finally:
        first.close()
    with open_storage(url) as second:  # closed: the lock is free again
        second.add_program(pending(1))
        assert second.stats()["next_id"] == 2


def test_a_new_run_never_reuses_a_stored_run_name(pg: LocalPostgres, tmp_path: Path) -> None:
    from conftest import stub_problem

    from evoforge import api
    from evoforge.config import build_config
    from evoforge.errors import ConfigError

    problem = stub_problem(tmp_path, "x = 1\n")
    url = fresh_url(pg, "taken")
    with open_storage(url) as s:
        s.add_program(pending(0))
    cfg = build_config({"storage": {"url": url}})
    with pytest.raises(ConfigError, match="names a run that already exists.*another #run=NAME"):
        api.start_run(problem, cfg, tmp_path / "r1")
    assert not (tmp_path / "r1" / "config.yaml").exists()
    # without a name, the run directory's name, made unique in that database
    name = url.rsplit("=", 1)[1]
    run = api.start_run(problem, build_config({"storage": {"url": pg.url}}), tmp_path / name)
    try:
        assert run.config.storage.url == f"{url}-2"
        assert _recorded_url(tmp_path / name) == f"{url}-2"
        assert run.storage.get_meta("config")["storage"]["url"] == f"{url}-2"
    finally:
        run.storage.close()


def test_command_line_start_and_stop(tmp_path: Path, pg: LocalPostgres) -> None:
    """The interface scripts use (scripts/cluster-demo.sh): the URL is the last stdout line."""
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="evoforge-pg-cli-"))  # reachable by the server user
    cmd = [sys.executable, "-m", "evoforge.testing.postgres"]
    try:
        started = subprocess.run([*cmd, "start", "--dir", str(where)], capture_output=True,
                                 text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        assert url.startswith("postgresql://evoforge@127.0.0.1:") and url.endswith("/evoforge")
        with psycopg.connect(url, connect_timeout=5) as conn:  # it accepts connections now
            assert conn.execute("SELECT 1").fetchone() == (1,)
        again = subprocess.run([*cmd, "start", "--dir", str(where)], capture_output=True,
                               text=True, timeout=60)
        assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == url
    finally:
        stopped = subprocess.run([*cmd, "stop", "--dir", str(where)], capture_output=True,
                                 text=True, timeout=60)
        shutil.rmtree(where, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_resume_of_a_run_missing_from_the_database_creates_nothing(pg: LocalPostgres,
                                                                   tmp_path: Path) -> None:
    from evoforge import api

    url = fresh_url(pg, "gone")
    run_dir = tmp_path / "gone"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"storage": {"url": url}}))
    with pytest.raises(StorageError, match="is not in that database"):
        api.resume(run_dir)
    assert not storage_exists(url)
