"""PostgreSQL storage: runs in a shared database that many readers on many machines can see.

URL: ``postgresql://USER@HOST:PORT/DB#run=NAME`` (``postgres://`` works too). Several runs live
in one database: every row carries its run's name (the ``#run=NAME`` fragment) in a ``run``
column that leads every primary key and index, in four tables prefixed ``evoforge_`` (runs,
programs, meta, exchanges). One set of tables rather than a schema per run: listing the runs of a
database is one query, a run is created by inserting one row (no DDL per run, no privilege to
create schemas needed), and the tables sit beside the user's own without touching them.

Same contract as SQLite (``evoforge.storages.base``): every write is one committed transaction,
ids and ``done_seq`` are unique per run, ``programs()`` is streamed in pages (keyset pagination,
no cursor held between pages), ``stats()`` is computed in SQL. Program fields are stored as
``json`` (exact text: key order, and ``1e308`` stays a float; ``jsonb`` would turn it into an
integer), metadata and LLM exchanges as ``jsonb``.

Reconnects: when the connection drops (server restart, network), every operation is retried on
a new connection for up to ``reconnect_timeout`` seconds. A commit may have succeeded just before
the connection dropped: a retried ``add_program``/``record_result`` that finds its row already
stored in the identical state counts as done, never as a duplicate. After the window a
StorageError stops the run; ``evoforge resume`` continues it once the server is back.

Passwords: take them from ``PGPASSWORD`` or ``~/.pgpass`` (libpq's conventions). A password in a
URL is used to connect but never shown; a run's ``storage.url`` may not hold one (it is stored
in the run's config).

Needs psycopg 3 and psycopg_pool: ``pip install 'evoforge[postgres]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from evoforge.errors import StorageError
from evoforge.program import MutationInfo, Program, Status
from evoforge.storages.base import Storage
from evoforge.storages.sqlite import _dumps, _finite  # one validation for every backend

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

SCHEMA_VERSION = 1
DEFAULT_RECONNECT_TIMEOUT = 30.0
_PAGE = 1000
_CONNECT_TIMEOUT = 10
_LOCK_WAIT = 3.0  # seconds a new writer waits for a killed one's session to end
_SCHEMES = ("postgresql://", "postgres://")
_SECRET_KEYS = ("password", "sslpassword")  # libpq parameters that hold a secret
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_INSTALL = "PostgreSQL storage needs psycopg: pip install 'evoforge[postgres]'"
T = TypeVar("T")
log = logging.getLogger("evoforge")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS evoforge_runs (
        name TEXT PRIMARY KEY,
        schema_version INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS evoforge_programs (
        run TEXT NOT NULL REFERENCES evoforge_runs(name) ON DELETE CASCADE,
        id BIGINT NOT NULL,
        done_seq BIGINT,
        status TEXT NOT NULL,
        code TEXT NOT NULL,
        parent_ids JSON NOT NULL,
        island INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        reason TEXT NOT NULL,
        score DOUBLE PRECISION,
        metrics JSON NOT NULL,
        features JSON NOT NULL,
        artifacts JSON NOT NULL,
        mutation JSON NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        evaluated_at DOUBLE PRECISION,
        eval_time DOUBLE PRECISION NOT NULL,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        cost DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (run, id),
        UNIQUE (run, done_seq)
    )""",
    # programs(status=...) in commit order, and the pending ones by id
    "CREATE INDEX IF NOT EXISTS evoforge_programs_status "
    "ON evoforge_programs (run, status, done_seq)",
    "CREATE INDEX IF NOT EXISTS evoforge_programs_pending "
    "ON evoforge_programs (run, id) WHERE done_seq IS NULL",
    """CREATE TABLE IF NOT EXISTS evoforge_meta (
        run TEXT NOT NULL REFERENCES evoforge_runs(name) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value JSONB NOT NULL,
        PRIMARY KEY (run, key)
    )""",
    """CREATE TABLE IF NOT EXISTS evoforge_exchanges (
        run TEXT NOT NULL REFERENCES evoforge_runs(name) ON DELETE CASCADE,
        program_id BIGINT NOT NULL,
        data JSONB NOT NULL,
        PRIMARY KEY (run, program_id)
    )""",
)
_SCHEMA_LOCK = 0x65766F66  # pg_advisory_xact_lock key: concurrent first opens create tables once

_COLUMNS = (
    "id, done_seq, status, code, parent_ids, island, generation, reason, score, metrics, "
    "features, artifacts, mutation, created_at, evaluated_at, eval_time"
)
_JSON_COLUMNS = ("parent_ids", "metrics", "features", "artifacts", "mutation")
_JSON_TYPES = {"parent_ids": "array", "metrics": "object", "features": "object",
               "artifacts": "object", "mutation": "object"}
_RESULT_FIELDS = ("status", "reason", "score", "metrics", "features", "artifacts",
                  "evaluated_at", "eval_time", "done_seq")


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401 - checked here, used by the storage
    except ImportError as e:
        raise StorageError(_INSTALL) from e
    return psycopg


# ---------------------------------------------------------------------------------- URLs


def is_postgres_url(url: str) -> bool:
    return url.strip().startswith((*_SCHEMES, "postgresql+"))


@dataclass(frozen=True)
class PostgresURL:
    """A parsed ``postgresql://USER@HOST:PORT/DB?PARAMS#run=NAME``."""

    parts: SplitResult
    run: str | None

    @classmethod
    def parse(cls, url: str) -> PostgresURL:
        url = url.strip()
        if url.startswith("postgresql+"):  # SQLAlchemy's driver suffix: postgresql+psycopg://
            url = "postgresql://" + url.split("://", 1)[-1]
        if not url.startswith(_SCHEMES):
            raise StorageError(f"not a PostgreSQL URL: {redact(url)!r}; "
                               "use postgresql://USER@HOST:PORT/DB#run=NAME")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            why = str(e)
            rest = url.partition("://")[2]
            if "@" in rest and "@" not in re.split(r"[/?#]", rest, maxsplit=1)[0]:
                why = ("its user:password part holds '/', '?', '#' or '[': percent-encode them, "
                       "e.g. '/' as %2F")  # the parser's message would quote the password
            raise StorageError(f"malformed PostgreSQL URL {redact(url)!r} ({why}); "
                               "use postgresql://USER@HOST:PORT/DB#run=NAME") from None
        run = None
        if parts.fragment:
            key, _, value = parts.fragment.partition("=")
            if key != "run" or not value:
                raise StorageError(f"the fragment of {redact(url)!r} must be #run=NAME "
                                   "(the run's name in the database)")
            run = check_run_name(value)
        if not parts.path.strip("/"):
            raise StorageError(f"{redact(url)!r} names no database; "
                               "use postgresql://USER@HOST:PORT/DB#run=NAME")
        return cls(parts._replace(scheme="postgresql", fragment=""), run)

    @property
    def host(self) -> str:
        query = dict(parse_qsl(self.parts.query))
        return self.parts.hostname or query.get("host") or "localhost"

    @property
    def port(self) -> int:
        query = dict(parse_qsl(self.parts.query))
        return self.parts.port or int(query.get("port", 5432))

    @property
    def database(self) -> str:
        return self.parts.path.lstrip("/")

    @property
    def has_password(self) -> bool:
        query = dict(parse_qsl(self.parts.query))
        return self.parts.password is not None or any(k in query for k in _SECRET_KEYS)

    @property
    def secrets(self) -> list[str]:
        """The URL's passwords as written and percent-decoded, longest first (to hide them
        in error text)."""
        found = {self.parts.password or ""}
        found |= {v for k, v in parse_qsl(self.parts.query, keep_blank_values=True)
                  if k in _SECRET_KEYS}
        found |= {v for q in self.parts.query.split("&") for k, _, v in [q.partition("=")]
                  if k in _SECRET_KEYS}
        found |= {unquote(x) for x in found}
        return sorted((x for x in found if x), key=len, reverse=True)

    @property
    def conninfo(self) -> str:
        """What libpq connects to (the password too, if the URL had one)."""
        return self.parts.geturl()

    def url(self, run: str | None = None) -> str:
        """The URL without its password, with ``#run=NAME`` (this one's, or ``run``)."""
        name = run or self.run
        base = redact(self.parts.geturl())
        return f"{base}#run={name}" if name else base

    @property
    def db_url(self) -> str:
        """The database's URL: no password, no run."""
        return redact(self.parts.geturl())

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def redact(url: str) -> str:
    """``url`` with any password removed (user info, ``password=`` and ``sslpassword=``)."""
    scheme, sep, rest = url.partition("://")
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if sep and "@" in rest and (parts is None or "@" not in parts.netloc):
        # the user info holds '/', '?', '#' or '[' (a password not percent-encoded): hide
        # everything up to the last '@'
        user = re.split(r"[:/?#\[]", rest, maxsplit=1)[0]
        return f"{scheme}://{user}:***@{rest.rpartition('@')[2]}"
    if parts is None:
        return re.sub(r"://[^@]*@", "://***@", url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in _SECRET_KEYS])
    return parts._replace(netloc=netloc, query=query).geturl()


def check_run_name(name: str) -> str:
    if not _RUN_NAME.fullmatch(name):
        raise StorageError(f"bad run name {name!r}: use 1-100 letters, digits, '_', '-' or '.', "
                           "starting with a letter or digit")
    return name


def run_name_from(label: str) -> str:
    """A valid run name made from ``label`` (a run directory's name)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-._")[:90]
    return name or "run"


# ---------------------------------------------------------------------------------- storage


class PostgresStorage(Storage):
    """One run (``#run=NAME``) in a PostgreSQL database, through a small connection pool.

    ``readonly=True`` never writes (its sessions are read-only on the server too) and refuses a
    run that does not exist; otherwise the run is created on first open. ``reconnect_timeout``:
    how long an operation keeps retrying after a lost connection before it raises StorageError.
    """

    def __init__(self, url: str, *, readonly: bool = False,
                 reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT) -> None:
        self._psycopg = _psycopg()
        self.target = PostgresURL.parse(url)
        if self.target.run is None:
            raise StorageError(f"{self.target.url()!r} names no run: add #run=NAME "
                               f"(`evoforge status {self.target.url()}` lists the runs there)")
        self.run: str = self.target.run
        self.readonly = readonly
        self.reconnect_timeout = float(reconnect_timeout)
        self._lock = threading.RLock()
        self._pool: ConnectionPool[Any] | None = None
        self._writer: psycopg.Connection[Any] | None = None  # holds the run's writer lock
        conn = connect(self.target, readonly=readonly, writer=not readonly)
        try:
            self._init_schema(conn)
            if not readonly:
                self._take_writer_lock(conn, wait=_LOCK_WAIT)
        except BaseException:
            conn.close()
            raise
        if readonly:
            conn.close()
        else:
            self._writer = conn
        self._pool = self._make_pool()

    # ------------------------------------------------------------------ plumbing

    def _make_pool(self) -> ConnectionPool[Any]:
        from psycopg_pool import ConnectionPool

        pool_log = logging.getLogger("psycopg.pool")
        if pool_log.level == logging.NOTSET:  # one warning of ours per outage, not its stream
            pool_log.setLevel(logging.CRITICAL)
        return ConnectionPool(
            self.target.conninfo, min_size=1, max_size=4, open=True,
            kwargs=_connect_kwargs(self.readonly), timeout=self.reconnect_timeout,
            reconnect_timeout=max(self.reconnect_timeout, 1.0), name=f"evoforge:{self.run}",
            max_idle=600.0)

    def _init_schema(self, conn: psycopg.Connection[Any]) -> None:
        psycopg = self._psycopg
        try:
            if self.readonly:
                with conn.transaction():
                    exists = conn.execute(
                        "SELECT to_regclass('evoforge_runs') IS NOT NULL").fetchone()
                    row = conn.execute(
                        "SELECT schema_version FROM evoforge_runs WHERE name = %s",
                        (self.run,)).fetchone() if exists and exists[0] else None
                if row is None:
                    runs = [r["name"] for r in list_runs_on(conn)] if exists and exists[0] else []
                    listed = (f"runs there: {', '.join(runs[:20])}" if runs
                              else "it holds no evoforge runs")
                    raise StorageError(
                        f"no run {self.run!r} in {self.target.db_url!s} ({listed}); "
                        f"`evoforge status {self.target.db_url}` lists them")
                self._check_version(int(row[0]))
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO evoforge_runs (name, schema_version, created_at) "
                             "VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                             (self.run, SCHEMA_VERSION, time.time()))
                (version,) = conn.execute(
                    "SELECT schema_version FROM evoforge_runs WHERE name = %s",
                    (self.run,)).fetchone() or (0,)
                self._check_version(int(version))
        except psycopg.Error as e:
            raise StorageError(f"cannot open run {self.run!r} in {self.target.db_url}: "
                               f"{_first_line(e, self.target)}") from e

    def _take_writer_lock(self, conn: psycopg.Connection[Any], *, wait: float) -> None:
        """One writer per run, across machines: a session advisory lock on the run's name,
        held by a connection of its own until ``close()`` (or until this process dies: the
        server then ends its session, within about a minute when its machine is gone)."""
        key = f"evoforge-run:{self.run}"
        end = time.monotonic() + wait  # a killed writer's session may take a moment to end
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                               (key,)).fetchone()
            if row and row[0]:
                return
            if time.monotonic() >= end:
                break
            time.sleep(0.1)
        holder = conn.execute(
            "SELECT a.application_name, host(a.client_addr) FROM pg_locks l JOIN "
            "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)",
            (key,)).fetchone()
        who = (f"{holder[0] or 'a client'}" + (f" from {holder[1]}" if holder[1] else "")
               if holder else "another session")
        raise StorageError(
            f"run {self.run!r} in {self.target.db_url} is being written by another evoforge "
            f"process ({who}); one writer per run: wait for it to stop, or stop it, then resume; "
            f"`evoforge status '{self.target.url()}'` works meanwhile")

    def _relock(self) -> None:
        """After a lost connection: make sure this storage still holds the writer lock (the
        server forgets it when the session ends), reconnecting its connection if needed."""
        psycopg = self._psycopg
        conn = self._writer
        if conn is not None:
            try:
                conn.execute("SELECT 1")
                return  # the session survived: the lock with it
            except psycopg.Error:
                conn.close()
        self._writer = None
        conn = psycopg.connect(self.target.conninfo, **_connect_kwargs(False, writer=True))
        try:
            self._take_writer_lock(conn, wait=0.0)
        except BaseException:
            conn.close()
            raise
        self._writer = conn

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"run {self.run!r} in {self.target.db_url} was written by a newer evoforge "
                f"(schema version {version}; this evoforge understands up to {SCHEMA_VERSION}); "
                "upgrade evoforge (pip install -U evoforge) to open it")

    def _retry(self, what: str, op: Callable[[psycopg.Connection[Any], bool], T], *,
               write: bool = False) -> T:
        """Run ``op(conn, retried)`` on a pooled connection, again on a new one after a lost
        connection, until ``reconnect_timeout`` has passed since the first try. The connection
        is in autocommit mode: each statement is its own committed transaction (one round
        trip); an ``op`` that must write more than one statement atomically opens
        ``conn.transaction()`` itself."""
        if write and self.readonly:
            raise StorageError(f"cannot {what}: {self} was opened read-only (readonly=True)")
        psycopg = self._psycopg
        from psycopg_pool import PoolTimeout

        deadline = time.monotonic() + self.reconnect_timeout
        retried, pause = False, 0.05
        # writes one at a time (the writer lock's connection is shared); reads run in parallel
        # on the pool's connections (a dashboard's threads)
        with self._lock if write else contextlib.nullcontext():
            while True:
                pool = self._pool
                if pool is None:
                    raise StorageError(f"storage {self} is closed; open it again")
                try:
                    left = max(deadline - time.monotonic(), 0.1)
                    if write and retried:
                        self._relock()
                    with pool.connection(timeout=left) as conn:
                        result = op(conn, retried)
                    if retried:
                        log.warning("reconnected to PostgreSQL at %s", self.target.where)
                    return result
                except (psycopg.OperationalError, PoolTimeout) as e:
                    if time.monotonic() >= deadline:
                        raise StorageError(
                            f"cannot {what}: lost the connection to PostgreSQL at "
                            f"{self.target.where} and could not get it back within "
                            f"{self.reconnect_timeout:g} s (storage.reconnect_timeout): "
                            f"{_first_line(e, self.target)}; everything committed is kept: "
                            "once the server is back, continue with `evoforge resume RUN_DIR`") from e
                    if not retried:
                        log.warning("lost the connection to PostgreSQL at %s (%s); reconnecting "
                                    "for up to %g s", self.target.where,
                                    _first_line(e, self.target), self.reconnect_timeout)
                    retried = True
                    time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
                    pause = min(pause * 2, 1.0)
                except psycopg.Error as e:
                    raise StorageError(
                        f"cannot {what} in {self}: {_first_line(e, self.target)}") from e

    def _row_to_program(self, row: tuple[Any, ...]) -> Program:
        (pid, done_seq, status, code, parent_ids, island, generation, reason, score, metrics,
         features, artifacts, mutation, created_at, evaluated_at, eval_time) = row
        try:
            return Program(
                id=pid, code=code, parent_ids=tuple(parent_ids), island=island,
                generation=generation, status=Status(status), reason=reason, score=score,
                metrics=metrics, features=features, artifacts=artifacts,
                mutation=MutationInfo.from_dict(mutation), created_at=created_at,
                evaluated_at=evaluated_at, eval_time=eval_time, done_seq=done_seq)
        except (ValueError, TypeError, AttributeError) as e:
            raise StorageError(f"program {pid} of {self} is corrupt ({e}); "
                               "the database was modified outside evoforge") from e

    @staticmethod
    def _validate(p: Program) -> None:
        if not isinstance(p.id, int) or p.id < 0:
            raise StorageError(f"program id must be a non-negative int, got {p.id!r}")
        status = Status(p.status)
        if status.terminal:
            if p.done_seq is None:
                raise StorageError(
                    f"program {p.id} has terminal status {status.value!r} but no done_seq; "
                    "set done_seq (stats()['next_done_seq']) when recording a result")
            if not isinstance(p.done_seq, int) or p.done_seq < 0:
                raise StorageError(
                    f"program {p.id}: done_seq must be a non-negative int, got {p.done_seq!r}")
        elif p.done_seq is not None:
            raise StorageError(f"program {p.id} is pending but has done_seq={p.done_seq}")
        if status is Status.OK and p.score is None:
            raise StorageError(f"program {p.id} has status 'ok' but no score")
        _finite(p.score, f"program {p.id} score")
        _finite(p.created_at, f"program {p.id} created_at")
        _finite(p.evaluated_at, f"program {p.id} evaluated_at")
        _finite(p.eval_time, f"program {p.id} eval_time")
        _finite(p.mutation.cost, f"program {p.id} cost")

    def _done_seq_taken(self, conn: psycopg.Connection[Any], program: Program) -> StorageError:
        other = conn.execute("SELECT id FROM evoforge_programs WHERE run = %s AND done_seq = %s",
                             (self.run, program.done_seq)).fetchone()
        return StorageError(f"done_seq {program.done_seq} is already used by program "
                            f"{other[0] if other else '?'}; take the next one from "
                            "stats()['next_done_seq']")

    # ------------------------------------------------------------------ Storage API

    def add_program(self, program: Program) -> None:
        self._validate(program)
        m = program.mutation
        row = (self.run, program.id, program.done_seq, Status(program.status).value, program.code,
               _dumps(list(program.parent_ids), f"program {program.id} parent_ids"),
               program.island, program.generation, program.reason, program.score,
               _dumps(program.metrics, f"program {program.id} metrics"),
               _dumps(program.features, f"program {program.id} features"),
               _dumps(program.artifacts, f"program {program.id} artifacts"),
               _dumps(m.to_dict(), f"program {program.id} mutation"),
               program.created_at, program.evaluated_at, program.eval_time,
               m.prompt_tokens, m.completion_tokens, m.cost)
        unique = self._psycopg.errors.UniqueViolation

        def op(conn: psycopg.Connection[Any], retried: bool) -> None:
            try:  # one statement: its own transaction, one round trip
                conn.execute(
                    f"INSERT INTO evoforge_programs (run, {_COLUMNS}, prompt_tokens, "
                    "completion_tokens, cost) VALUES (%s, %s, %s, %s, %s, %s::json, %s, %s, %s, "
                    "%s, %s::json, %s::json, %s::json, %s::json, %s, %s, %s, %s, %s, %s)", row)
            except unique as e:
                if e.diag.constraint_name != "evoforge_programs_pkey":
                    raise self._done_seq_taken(conn, program) from None
                if retried and self._stored_as(conn, program):
                    return  # our own commit landed before the connection dropped
                raise StorageError(
                    f"program {program.id} already exists in {self}; ids are never reused "
                    "(take the next one from stats()['next_id'])") from None

        self._retry(f"add program {program.id}", op, write=True)

    def _stored_as(self, conn: psycopg.Connection[Any], program: Program) -> bool:
        """Whether ``program`` is stored exactly as given (a retried write that had landed)."""
        row = conn.execute(f"SELECT {_COLUMNS} FROM evoforge_programs WHERE run = %s AND id = %s",
                           (self.run, program.id)).fetchone()
        return row is not None and self._row_to_program(row) == program

    def record_result(self, program: Program) -> None:
        """Store the result fields (status, reason, score, metrics, features, artifacts,
        evaluated_at, eval_time, done_seq) of a pending program; code, parents and mutation
        provenance were fixed by ``add_program``. One UPDATE of a row that is still pending:
        its own transaction, one round trip."""
        if not Status(program.status).terminal:
            raise StorageError(
                f"cannot record a result for program {program.id}: status is still 'pending'")
        self._validate(program)
        values = (Status(program.status).value, program.reason, program.score,
                  _dumps(program.metrics, f"program {program.id} metrics"),
                  _dumps(program.features, f"program {program.id} features"),
                  _dumps(program.artifacts, f"program {program.id} artifacts"),
                  program.evaluated_at, program.eval_time, program.done_seq)
        unique = self._psycopg.errors.UniqueViolation

        def op(conn: psycopg.Connection[Any], retried: bool) -> None:
            try:
                cur = conn.execute(
                    "UPDATE evoforge_programs SET status = %s, reason = %s, score = %s, "
                    "metrics = %s::json, features = %s::json, artifacts = %s::json, "
                    "evaluated_at = %s, eval_time = %s, done_seq = %s "
                    "WHERE run = %s AND id = %s AND status = 'pending'",
                    (*values, self.run, program.id))
            except unique:
                raise self._done_seq_taken(conn, program) from None
            if cur.rowcount == 1:
                return
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM evoforge_programs WHERE run = %s AND id = %s",
                (self.run, program.id)).fetchone()
            if found is None:
                raise StorageError(
                    f"cannot record a result for program {program.id}: no such program in "
                    f"{self}; add_program() it first")
            if retried and self._same_result(self._row_to_program(found), program):
                return  # our own commit landed before the connection dropped
            raise StorageError(f"program {program.id} already has a result ({found[2]!r}); "
                               "a result is recorded once, never twice")

        self._retry(f"record the result of program {program.id}", op, write=True)

    @staticmethod
    def _same_result(stored: Program, program: Program) -> bool:
        return all(getattr(stored, f) == getattr(program, f) for f in _RESULT_FIELDS)

    def get(self, program_id: int) -> Program:
        def op(conn: psycopg.Connection[Any], retried: bool) -> Any:
            return conn.execute(
                f"SELECT {_COLUMNS} FROM evoforge_programs WHERE run = %s AND id = %s",
                (self.run, int(program_id))).fetchone()

        row = self._retry(f"read program {program_id}", op)
        if row is None:
            raise StorageError(f"no program with id {program_id} in this run; "
                               "`evoforge status RUN_DIR` lists them")
        return self._row_to_program(row)

    def programs(self, *, status: Status | None = None) -> Iterator[Program]:
        """Terminal programs by ``done_seq``, then pending ones by id: pages of ``_PAGE``
        rows (keyset pagination on the indexes), no cursor held between pages."""
        where = "" if status is None else " AND status = %s"
        extra: tuple[Any, ...] = () if status is None else (Status(status).value,)
        if status is None or Status(status).terminal:
            yield from self._paged("done_seq > %s", "done_seq", 1, where, extra)
        if status is None or not Status(status).terminal:
            yield from self._paged("done_seq IS NULL AND id > %s", "id", 0, where, extra)

    def _paged(self, cond: str, key: str, key_index: int, where: str,
               extra: tuple[Any, ...]) -> Iterator[Program]:
        last = -1
        while True:
            def op(conn: psycopg.Connection[Any], retried: bool, after: int = last) -> Any:
                return conn.execute(
                    f"SELECT {_COLUMNS} FROM evoforge_programs WHERE run = %s AND {cond}{where} "
                    f"ORDER BY {key} LIMIT %s", (self.run, after, *extra, _PAGE)).fetchall()

            rows = self._retry("list programs", op)
            for row in rows:
                yield self._row_to_program(row)
            if len(rows) < _PAGE:
                return
            last = rows[-1][key_index]

    def stats(self) -> dict[str, Any]:
        def op(conn: psycopg.Connection[Any], retried: bool) -> Any:
            return conn.execute(
                "SELECT status, COUNT(*), MAX(id), MAX(done_seq), COALESCE(SUM(prompt_tokens), 0),"
                " COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0) "
                "FROM evoforge_programs WHERE run = %s GROUP BY status", (self.run,)).fetchall()

        rows = self._retry("compute stats", op)  # one statement: one snapshot
        counts = {s.value: 0 for s in Status}
        max_id = max_seq = None
        prompt = completion = 0
        cost = 0.0
        for st, n, mid, mseq, p, c, usd in rows:
            counts[st] = int(n)
            max_id = mid if max_id is None or (mid is not None and mid > max_id) else max_id
            max_seq = mseq if max_seq is None or (mseq is not None and mseq > max_seq) else max_seq
            prompt += int(p)
            completion += int(c)
            cost += float(usd)
        pending = counts.get(Status.PENDING.value, 0)
        return {
            "counts": counts,
            "done": sum(n for st, n in counts.items() if st != Status.PENDING.value),
            "pending": pending,
            "next_id": 0 if max_id is None else int(max_id) + 1,
            "next_done_seq": 0 if max_seq is None else int(max_seq) + 1,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": cost,
        }

    def add_exchange(self, program_id: int, exchange: dict[str, Any]) -> None:
        text = _dumps(exchange, f"program {program_id} exchange")

        def op(conn: psycopg.Connection[Any], retried: bool) -> None:
            conn.execute("INSERT INTO evoforge_exchanges (run, program_id, data) "
                         "VALUES (%s, %s, %s::jsonb) ON CONFLICT (run, program_id) "
                         "DO UPDATE SET data = excluded.data", (self.run, int(program_id), text))

        self._retry(f"store the exchange of program {program_id}", op, write=True)

    def exchange(self, program_id: int) -> dict[str, Any] | None:
        def op(conn: psycopg.Connection[Any], retried: bool) -> Any:
            return conn.execute("SELECT data FROM evoforge_exchanges WHERE run = %s "
                                "AND program_id = %s", (self.run, int(program_id))).fetchone()

        row = self._retry(f"read the exchange of program {program_id}", op)
        return row[0] if row is not None and isinstance(row[0], dict) else None

    def get_meta(self, key: str, default: Any = None) -> Any:
        def op(conn: psycopg.Connection[Any], retried: bool) -> Any:
            return conn.execute("SELECT value FROM evoforge_meta WHERE run = %s AND key = %s",
                                (self.run, key)).fetchone()

        row = self._retry(f"read meta {key!r}", op)
        return default if row is None else row[0]

    def set_meta(self, key: str, value: Any) -> None:
        text = _dumps(value, f"meta {key!r}")

        def op(conn: psycopg.Connection[Any], retried: bool) -> None:
            conn.execute("INSERT INTO evoforge_meta (run, key, value) VALUES (%s, %s, %s::jsonb) "
                         "ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
                         (self.run, key, text))

        self._retry(f"set meta {key!r}", op, write=True)

    def check(self) -> list[str]:
        statuses = [s.value for s in Status]
        terminal = [s.value for s in Status if s.terminal]
        types = " OR ".join(f"json_typeof({c}) <> '{t}'" for c, t in _JSON_TYPES.items())

        def op(conn: psycopg.Connection[Any], retried: bool) -> list[str]:
            problems: list[str] = []
            q = "SELECT id, {} FROM evoforge_programs WHERE run = %s AND {} ORDER BY id"
            for pid, st in conn.execute(q.format("status", "NOT (status = ANY(%s))"),
                                        (self.run, statuses)):
                problems.append(f"program {pid}: unknown status {st!r}")
            for pid, seq in conn.execute(q.format("done_seq", "status = 'pending' AND "
                                                  "done_seq IS NOT NULL"), (self.run,)):
                problems.append(f"program {pid}: pending but has done_seq {seq}")
            for pid, st in conn.execute(q.format("status", "status = ANY(%s) AND done_seq IS NULL"),
                                        (self.run, terminal)):
                problems.append(f"program {pid}: status {st!r} but no done_seq")
            for (pid,) in conn.execute("SELECT id FROM evoforge_programs WHERE run = %s AND "
                                       "status = 'ok' AND score IS NULL ORDER BY id", (self.run,)):
                problems.append(f"program {pid}: status 'ok' but score is NULL")
            for (pid, *kinds) in conn.execute(
                    "SELECT id, " + ", ".join(f"json_typeof({c})" for c in _JSON_TYPES)
                    + f" FROM evoforge_programs WHERE run = %s AND ({types}) ORDER BY id",
                    (self.run,)):
                for (col, want), got in zip(_JSON_TYPES.items(), kinds, strict=True):
                    if got != want:
                        problems.append(f"program {pid}: {col} is a JSON {got}, not an {want}")
            return problems

        return self._retry("check integrity", op)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            writer, self._writer = self._writer, None
        if pool is not None:
            pool.close(timeout=5.0)
        if writer is not None:
            writer.close()  # releases the writer lock

    def __repr__(self) -> str:
        mode = ", readonly=True" if self.readonly else ""
        return f"PostgresStorage({self.target.url()!r}{mode})"

    def __str__(self) -> str:
        return self.target.url()


# ---------------------------------------------------------------------------------- helpers


def _connect_kwargs(readonly: bool, *, writer: bool = False) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT,
                              "application_name": _app_name()}
    if readonly:  # the server refuses writes in these sessions, whatever the code does
        kwargs["options"] = "-c default_transaction_read_only=on"
    if writer:  # a dead peer is noticed within about a minute, on both sides
        kwargs.update(keepalives=1, keepalives_idle=30, keepalives_interval=10,
                      keepalives_count=3,
                      options="-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
                              "-c tcp_keepalives_count=3")
    return kwargs


def _app_name() -> str:
    """How this process shows in pg_stat_activity (and in a refused second writer's error)."""
    return f"evoforge {socket.gethostname()} pid {os.getpid()}"[:63]


def _first_line(e: BaseException, target: PostgresURL | None = None) -> str:
    """The first line of a driver error, without ``target``'s password (libpq quotes parts of
    the connection string in some errors, e.g. a bad percent-encoding)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    for secret in (target.secrets if target is not None else ()):
        line = line.replace(secret, "***")
    return line


def connect(target: PostgresURL, *, readonly: bool = True,
            writer: bool = False) -> psycopg.Connection[Any]:
    """One connection, or a StorageError naming the server and the fix."""
    psycopg = _psycopg()
    try:
        return psycopg.connect(target.conninfo,  # type: ignore[no-any-return]
                               **_connect_kwargs(readonly, writer=writer))
    except psycopg.Error as e:
        why = _first_line(e, target)
        url = "the URL (storage.url, or the postgresql:// reference given)"
        hint = f"is the server running and reachable from here? check {url}"
        if "password" in why or "authentication" in why:
            hint = ("give the password in PGPASSWORD or ~/.pgpass (never in the URL of a run), "
                    f"or fix the user in {url}")
        elif "does not exist" in why:
            hint = f"create it (createdb {target.database}) or fix {url}"
        raise StorageError(f"cannot connect to PostgreSQL at {target.where} (database "
                           f"{target.database!r}, {target.db_url}): {why}; {hint}") from e


def list_runs_on(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT r.name, r.created_at, "
        "(SELECT value->'objective'->>'direction' FROM evoforge_meta m "
        " WHERE m.run = r.name AND m.key = 'config'), "
        "(SELECT value #>> '{}' FROM evoforge_meta m WHERE m.run = r.name AND m.key = "
        "'problem_path'), "
        "COUNT(p.id) FILTER (WHERE p.done_seq IS NOT NULL), "
        "COUNT(p.id) FILTER (WHERE p.done_seq IS NULL), "
        "MAX(p.score) FILTER (WHERE p.status = 'ok'), MIN(p.score) FILTER (WHERE p.status = 'ok') "
        "FROM evoforge_runs r LEFT JOIN evoforge_programs p ON p.run = r.name "
        "GROUP BY r.name, r.created_at ORDER BY r.created_at, r.name").fetchall()
    return [{"name": name, "created_at": created, "problem": problem, "done": int(done),
             "pending": int(pending), "best": lo if direction == "minimize" else hi}
            for name, created, direction, problem, done, pending, hi, lo in rows]


def list_runs(url: str) -> list[dict[str, Any]]:
    """The runs stored in the database ``url`` names: name, created_at, problem, done,
    pending, best (by each run's direction)."""
    target = PostgresURL.parse(url)
    with connect(target) as conn:
        try:
            if not conn.execute("SELECT to_regclass('evoforge_runs') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
                return []
            return list_runs_on(conn)
        except _psycopg().Error as e:
            raise StorageError(f"cannot list the runs in {target.db_url}: "
                               f"{_first_line(e, target)}") from e


def run_exists(url: str) -> bool:
    """Whether the run ``url`` names (``#run=NAME``) is stored in its database."""
    target = PostgresURL.parse(url)
    return any(r["name"] == target.run for r in list_runs(url))


def unique_run_url(url: str, label: str) -> str:
    """``url`` with ``#run=NAME``: NAME made from ``label`` (a run directory's name), with a
    ``-2``, ``-3``, ... suffix if the database already holds a run of that name."""
    target = PostgresURL.parse(url)
    base = run_name_from(label)
    taken = {r["name"] for r in list_runs(url)}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return target.url(run=name)
