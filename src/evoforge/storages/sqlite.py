"""SQLite storage: the default durable record of a run.

One file per run (``RUN_DIR/evoforge.db``), WAL journal, ``synchronous=FULL``: once a write method
returns, the change survives a SIGKILL or a power cut. Every write is one transaction. Readers in
other processes (``evoforge status`` on a live run) open the file read-only and never block the
writer.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evoforge.errors import StorageError
from evoforge.program import MutationInfo, Program, Status
from evoforge.storages.base import Storage

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 10_000
_PAGE = 256

_SCHEMA_V1 = (
    """
    CREATE TABLE programs (
        id INTEGER PRIMARY KEY,
        done_seq INTEGER UNIQUE,
        status TEXT NOT NULL,
        code TEXT NOT NULL,
        parent_ids TEXT NOT NULL,
        island INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        reason TEXT NOT NULL,
        score REAL,
        metrics TEXT NOT NULL,
        features TEXT NOT NULL,
        artifacts TEXT NOT NULL,
        mutation TEXT NOT NULL,
        created_at REAL NOT NULL,
        evaluated_at REAL,
        eval_time REAL NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX programs_status ON programs(status)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# LLM exchanges (prompt, reply) by program: apart from `programs`, so populations load light
_EXCHANGES = ("CREATE TABLE IF NOT EXISTS exchanges "
              "(program_id INTEGER PRIMARY KEY, data TEXT NOT NULL)")

_COLUMNS = (
    "id, done_seq, status, code, parent_ids, island, generation, reason, score, metrics, "
    "features, artifacts, mutation, created_at, evaluated_at, eval_time"
)
_JSON_COLUMNS = ("parent_ids", "metrics", "features", "artifacts", "mutation")
_STATUS_VALUES = tuple(s.value for s in Status)
_TERMINAL_VALUES = tuple(s.value for s in Status if s.terminal)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise StorageError(
            f"cannot store {what}: {e}; values must be JSON-serialisable with finite numbers "
            "(a NaN or infinity here is a bug in the code that produced it)"
        ) from e


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one, not one per value


def _loads(text: str) -> Any:
    return _DECODER.decode(text)


def _finite(value: float | None, what: str) -> None:
    if value is not None and not math.isfinite(value):
        raise StorageError(f"cannot store {what}={value!r}: numbers must be finite")


class SQLiteStorage(Storage):
    """A run's programs and metadata in one SQLite file.

    ``readonly=True`` opens an existing database without ever writing to it (safe while another
    process writes); it never creates the file. Thread-safe (one lock around the connection), but
    the design has a single writer: the run's controller.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise StorageError(
                f"{self.path} is a directory, not a database file; "
                f"pass the database file (e.g. {self.path / 'evoforge.db'})"
            )
        if readonly:
            if not self.path.is_file():
                raise StorageError(f"no run database at {self.path}; is it a run directory?")
            uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
            connect_args: dict[str, Any] = {"database": uri, "uri": True}
        else:
            if not self.path.parent.is_dir():
                raise StorageError(
                    f"cannot create {self.path}: directory {self.path.parent} does not exist; "
                    "create it or choose another storage URL"
                )
            connect_args = {"database": str(self.path)}
        try:
            conn = self._connect(connect_args)
        except sqlite3.Error as e:
            raise StorageError(f"cannot open run database {self.path}: {e}") from e
        if readonly and not self._readable(conn):
            # A WAL database in a directory this user cannot write, closed cleanly (no -wal,
            # no -shm): SQLite cannot make the shared-memory file a WAL reader needs. With no
            # -wal file no writer is active, so reading it as immutable is exact.
            conn.close()
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists():
                raise StorageError(
                    f"cannot read {self.path}: a run is writing it and this user cannot create "
                    f"its shared-memory file in {self.path.parent}; inspect it as the run's "
                    "owner, or after the run stops"
                )
            connect_args["database"] += "&immutable=1"
            conn = self._connect(connect_args)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not readonly:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                if str(mode).lower() != "wal":
                    raise StorageError(
                        f"cannot switch {self.path} to WAL journal mode (got {mode!r}); "
                        "put the run directory on a local filesystem"
                    )
            conn.execute("PRAGMA synchronous = FULL")
            self._init_schema(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StorageError(
                f"{self.path} is not a usable SQLite database ({e}); "
                "point evoforge at a run directory's evoforge.db or at a new path"
            ) from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _connect(connect_args: dict[str, Any]) -> sqlite3.Connection:
        return sqlite3.connect(
            **connect_args,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # guarded by self._lock
            timeout=_BUSY_TIMEOUT_MS / 1000,
        )

    @staticmethod
    def _readable(conn: sqlite3.Connection) -> bool:
        try:
            conn.execute("PRAGMA user_version").fetchone()
            return True
        except sqlite3.DatabaseError as e:  # other errors are reported by the normal path
            return "readonly" not in str(e) and "unable to open" not in str(e)

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        if self.readonly:
            version = self._check_version(conn)
            if version == 0:
                raise StorageError(
                    f"{self.path} is not an evoforge run database (no evoforge schema); "
                    "is it a run directory?"
                )
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_version(conn)
            if version == 0:
                tables = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                if tables:
                    raise StorageError(
                        f"{self.path} is a SQLite database but not an evoforge run database "
                        f"(it has tables {', '.join(sorted(tables))}); choose another path"
                    )
                for statement in _SCHEMA_V1:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(_EXCHANGES)  # added within version 1: older databases get it here
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_version(self, conn: sqlite3.Connection) -> int:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} was written by a newer evoforge (schema version {version}; this "
                f"evoforge understands up to {SCHEMA_VERSION}); upgrade evoforge "
                "(pip install -U evoforge) to open it"
            )
        return int(version)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"storage {self.path} is closed; open it again")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction; committed on normal exit, rolled back on any error."""
        if self.readonly:
            raise StorageError(
                f"cannot {what}: {self.path} was opened read-only (readonly=True)"
            )
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # pragma: no cover - the original error matters
                        pass
                if isinstance(e, sqlite3.Error):
                    raise StorageError(f"cannot {what} in {self.path}: {e}") from e
                raise

    @contextmanager
    def _read(self, what: str, *, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                if snapshot:
                    conn.execute("BEGIN")
                yield conn
                if snapshot:
                    conn.execute("COMMIT")
            except BaseException as e:
                if snapshot and conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # pragma: no cover
                        pass
                if isinstance(e, sqlite3.Error):
                    raise StorageError(f"cannot {what} from {self.path}: {e}") from e
                raise

    def _row_to_program(self, row: tuple[Any, ...]) -> Program:
        (pid, done_seq, status, code, parent_ids, island, generation, reason, score, metrics,
         features, artifacts, mutation, created_at, evaluated_at, eval_time) = row
        try:
            return Program(
                id=pid,
                code=code,
                parent_ids=tuple(_loads(parent_ids)),
                island=island,
                generation=generation,
                status=Status(status),
                reason=reason,
                score=score,
                metrics=_loads(metrics),
                features=_loads(features),
                artifacts=_loads(artifacts),
                mutation=MutationInfo.from_dict(_loads(mutation)),
                created_at=created_at,
                evaluated_at=evaluated_at,
                eval_time=eval_time,
                done_seq=done_seq,
            )
        except (ValueError, TypeError) as e:
            raise StorageError(
                f"program {pid} in {self.path} is corrupt ({e}); "
                "the database was modified outside evoforge"
            ) from e

    @staticmethod
    def _validate(p: Program) -> None:
        if not isinstance(p.id, int) or p.id < 0:
            raise StorageError(f"program id must be a non-negative int, got {p.id!r}")
        status = Status(p.status)
        if status.terminal:
            if p.done_seq is None:
                raise StorageError(
                    f"program {p.id} has terminal status {status.value!r} but no done_seq; "
                    "set done_seq (stats()['next_done_seq']) when recording a result"
                )
            if not isinstance(p.done_seq, int) or p.done_seq < 0:
                raise StorageError(
                    f"program {p.id}: done_seq must be a non-negative int, got {p.done_seq!r}"
                )
        elif p.done_seq is not None:
            raise StorageError(f"program {p.id} is pending but has done_seq={p.done_seq}")
        if status is Status.OK and p.score is None:
            raise StorageError(f"program {p.id} has status 'ok' but no score")
        _finite(p.score, f"program {p.id} score")
        _finite(p.created_at, f"program {p.id} created_at")
        _finite(p.evaluated_at, f"program {p.id} evaluated_at")
        _finite(p.eval_time, f"program {p.id} eval_time")

    # ------------------------------------------------------------------ Storage API

    def add_program(self, program: Program) -> None:
        self._validate(program)
        m = program.mutation
        row = (
            program.id,
            program.done_seq,
            Status(program.status).value,
            program.code,
            _dumps(list(program.parent_ids), f"program {program.id} parent_ids"),
            program.island,
            program.generation,
            program.reason,
            program.score,
            _dumps(program.metrics, f"program {program.id} metrics"),
            _dumps(program.features, f"program {program.id} features"),
            _dumps(program.artifacts, f"program {program.id} artifacts"),
            _dumps(m.to_dict(), f"program {program.id} mutation"),
            program.created_at,
            program.evaluated_at,
            program.eval_time,
            m.prompt_tokens,
            m.completion_tokens,
            m.cost,
        )
        with self._write(f"add program {program.id}") as conn:
            if conn.execute("SELECT 1 FROM programs WHERE id = ?", (program.id,)).fetchone():
                raise StorageError(
                    f"program {program.id} already exists in {self.path}; ids are never reused "
                    "(take the next one from stats()['next_id'])"
                )
            self._check_done_seq_free(conn, program)
            conn.execute(
                f"INSERT INTO programs ({_COLUMNS}, prompt_tokens, completion_tokens, cost) "
                f"VALUES ({', '.join('?' * 19)})",
                row,
            )

    def _check_done_seq_free(self, conn: sqlite3.Connection, program: Program) -> None:
        if program.done_seq is None:
            return
        other = conn.execute(
            "SELECT id FROM programs WHERE done_seq = ?", (program.done_seq,)
        ).fetchone()
        if other:
            raise StorageError(
                f"done_seq {program.done_seq} is already used by program {other[0]}; "
                "take the next one from stats()['next_done_seq']"
            )

    def record_result(self, program: Program) -> None:
        """Store the result fields (status, reason, score, metrics, features, artifacts,
        evaluated_at, eval_time, done_seq) of a pending program. Code, parents and mutation
        provenance were fixed by ``add_program`` and are not rewritten."""
        if not Status(program.status).terminal:
            raise StorageError(
                f"cannot record a result for program {program.id}: status is still 'pending'"
            )
        self._validate(program)
        row = (
            Status(program.status).value,
            program.reason,
            program.score,
            _dumps(program.metrics, f"program {program.id} metrics"),
            _dumps(program.features, f"program {program.id} features"),
            _dumps(program.artifacts, f"program {program.id} artifacts"),
            program.evaluated_at,
            program.eval_time,
            program.done_seq,
            program.id,
        )
        with self._write(f"record the result of program {program.id}") as conn:
            found = conn.execute(
                "SELECT status FROM programs WHERE id = ?", (program.id,)
            ).fetchone()
            if found is None:
                raise StorageError(
                    f"cannot record a result for program {program.id}: no such program in "
                    f"{self.path}; add_program() it first"
                )
            if found[0] != Status.PENDING.value:
                raise StorageError(
                    f"program {program.id} already has a result ({found[0]!r}); "
                    "a result is recorded once, never twice"
                )
            self._check_done_seq_free(conn, program)
            conn.execute(
                "UPDATE programs SET status = ?, reason = ?, score = ?, metrics = ?, "
                "features = ?, artifacts = ?, evaluated_at = ?, eval_time = ?, done_seq = ? "
                "WHERE id = ?",
                row,
            )

    def get(self, program_id: int) -> Program:
        with self._read(f"read program {program_id}") as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM programs WHERE id = ?", (program_id,)
            ).fetchone()
        if row is None:
            raise StorageError(
                f"no program with id {program_id} in this run; "
                "`evoforge status RUN_DIR` lists them"
            )
        return self._row_to_program(row)

    def programs(self, *, status: Status | None = None) -> Iterator[Program]:
        """Terminal programs by ``done_seq``, then pending ones by id.

        Streamed in pages (keyset pagination), so memory stays flat for any run size and no
        cursor is held open between items. Not a snapshot: a program recorded while the
        iteration is under way may be missed.
        """
        where = "" if status is None else " AND status = ?"
        extra: tuple[Any, ...] = () if status is None else (Status(status).value,)
        if status is None or Status(status).terminal:
            yield from self._paged("done_seq > ?", "done_seq", 1, where, extra)
        if status is None or not Status(status).terminal:
            yield from self._paged("done_seq IS NULL AND id > ?", "id", 0, where, extra)

    def _paged(self, cond: str, key: str, key_index: int, where: str,
               extra: tuple[Any, ...]) -> Iterator[Program]:
        """Keyset pagination ordered by ``key``; no cursor stays open between pages."""
        last = -1
        while True:
            with self._read("list programs") as conn:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM programs WHERE {cond}{where} ORDER BY {key} LIMIT ?",
                    (last, *extra, _PAGE),
                ).fetchall()
            for row in rows:
                yield self._row_to_program(row)
            if len(rows) < _PAGE:
                return
            last = rows[-1][key_index]

    def stats(self) -> dict[str, Any]:
        with self._read("compute stats", snapshot=True) as conn:
            counts = {s.value: 0 for s in Status}
            for st, n in conn.execute("SELECT status, COUNT(*) FROM programs GROUP BY status"):
                counts[st] = n
            max_id, max_seq, prompt, completion, cost = conn.execute(
                "SELECT MAX(id), MAX(done_seq), TOTAL(prompt_tokens), "
                "TOTAL(completion_tokens), TOTAL(cost) FROM programs"
            ).fetchone()
        pending = counts.get(Status.PENDING.value, 0)
        return {
            "counts": counts,
            "done": sum(n for st, n in counts.items() if st != Status.PENDING.value),
            "pending": pending,
            "next_id": 0 if max_id is None else max_id + 1,
            "next_done_seq": 0 if max_seq is None else max_seq + 1,
            "prompt_tokens": int(prompt),
            "completion_tokens": int(completion),
            "cost": float(cost),
        }

    def add_exchange(self, program_id: int, exchange: dict[str, Any]) -> None:
        text = _dumps(exchange, f"program {program_id} exchange")
        with self._write(f"store the exchange of program {program_id}") as conn:
            conn.execute("INSERT OR REPLACE INTO exchanges (program_id, data) VALUES (?, ?)",
                         (int(program_id), text))

    def exchange(self, program_id: int) -> dict[str, Any] | None:
        try:
            with self._read(f"read the exchange of program {program_id}") as conn:
                row = conn.execute("SELECT data FROM exchanges WHERE program_id = ?",
                                   (int(program_id),)).fetchone()
        except StorageError:
            if self.readonly:  # a database from before exchanges were kept, opened read-only
                return None
            raise
        if row is None:
            return None
        try:
            value = _loads(row[0])
        except ValueError as e:
            raise StorageError(f"the exchange of program {program_id} in {self.path} is not "
                               f"valid JSON: {e}") from e
        return value if isinstance(value, dict) else None

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._read(f"read meta {key!r}") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return _loads(row[0])
        except ValueError as e:
            raise StorageError(f"meta {key!r} in {self.path} is not valid JSON: {e}") from e

    def set_meta(self, key: str, value: Any) -> None:
        text = _dumps(value, f"meta {key!r}")
        with self._write(f"set meta {key!r}") as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

    def check(self) -> list[str]:
        problems: list[str] = []
        with self._read("check integrity") as conn:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                problems.extend(f"integrity_check: {line}" for line in result)
            marks = ",".join("?" * len(_STATUS_VALUES))
            for (pid, st) in conn.execute(
                f"SELECT id, status FROM programs WHERE status NOT IN ({marks}) ORDER BY id",
                _STATUS_VALUES,
            ):
                problems.append(f"program {pid}: unknown status {st!r}")
            for (pid, seq) in conn.execute(
                "SELECT id, done_seq FROM programs WHERE status = 'pending' "
                "AND done_seq IS NOT NULL ORDER BY id"
            ):
                problems.append(f"program {pid}: pending but has done_seq {seq}")
            marks = ",".join("?" * len(_TERMINAL_VALUES))
            for (pid, st) in conn.execute(
                f"SELECT id, status FROM programs WHERE status IN ({marks}) "
                "AND done_seq IS NULL ORDER BY id",
                _TERMINAL_VALUES,
            ):
                problems.append(f"program {pid}: status {st!r} but no done_seq")
            for (pid,) in conn.execute(
                "SELECT id FROM programs WHERE status = 'ok' AND score IS NULL ORDER BY id"
            ):
                problems.append(f"program {pid}: status 'ok' but score is NULL")
            for (key, value) in conn.execute("SELECT key, value FROM meta ORDER BY key"):
                try:
                    _loads(value)
                except (ValueError, TypeError) as e:
                    problems.append(f"meta {key!r}: unparseable JSON ({e})")
        # JSON columns: paged, so a large run does not sit in memory.
        cols = ", ".join(_JSON_COLUMNS)
        last = -1
        while True:
            with self._read("check integrity") as conn:
                rows = conn.execute(
                    f"SELECT id, {cols} FROM programs WHERE id > ? ORDER BY id LIMIT ?",
                    (last, _PAGE),
                ).fetchall()
            for pid, *values in rows:
                for col, value in zip(_JSON_COLUMNS, values, strict=True):
                    try:
                        _loads(value)
                    except (ValueError, TypeError) as e:
                        problems.append(f"program {pid}: unparseable JSON in {col} ({e})")
            if len(rows) < _PAGE:
                break
            last = rows[-1][0]
        return problems

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    def __repr__(self) -> str:
        mode = ", readonly=True" if self.readonly else ""
        return f"SQLiteStorage({str(self.path)!r}{mode})"
