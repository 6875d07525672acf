"""Read-only SQL access to one stored run for the dashboard: light rows, never whole programs.

A :class:`Source` answers the few queries the dashboard needs beyond the Storage interface
(terminal programs committed after a ``done_seq``, without their code; a page of programs by
id; the number still pending). :class:`SQLiteSource` opens its own read-only connection to the
run's database file, so it never blocks the run that writes it; :class:`PostgresSource` its own
read-only session on the run's database (its rows only: a database holds several runs).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evoforge.errors import StorageError

#: columns of a light row, in order: the first parent (or None), the bandit's arm (or None),
#: then one value per requested feature (None where missing)
LIGHT_COLUMNS = ("id", "done_seq", "status", "island", "generation", "score", "parent",
                 "created_at", "evaluated_at", "prompt_tokens", "completion_tokens", "cost",
                 "arm", "*features")
#: columns of a listing row
LIST_COLUMNS = ("id", "status", "score", "island", "generation", "reason", "mutator", "model",
                "edit_kind", "cost")


class Source(ABC):
    """The queries the dashboard runs against one run's storage (read-only)."""

    @abstractmethod
    def light_after(self, done_seq: int, limit: int, features: Sequence[str] = ()
                    ) -> list[tuple[Any, ...]]:
        """Terminal programs with ``done_seq`` above the given one, in ``done_seq`` order, as
        :data:`LIGHT_COLUMNS` tuples (at most ``limit``)."""

    @abstractmethod
    def listing(self, ids: list[int]) -> list[tuple[Any, ...]]:
        """:data:`LIST_COLUMNS` tuples of the given programs (reason cut to 300 characters)."""

    @abstractmethod
    def head(self) -> tuple[int, int, int]:
        """``(max done_seq or -1, max id or -1, pending count)``: cheap, to notice changes."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteSource(Source):
    """A read-only connection of its own to a run's SQLite file (WAL: never blocks the writer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False,
                                         isolation_level=None, timeout=10)
            self._conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.Error as e:
            raise StorageError(f"the dashboard cannot open {self.path} read-only: {e}") from e
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StorageError(f"the dashboard cannot read {self.path}: {e}") from e

    def light_after(self, done_seq: int, limit: int, features: Sequence[str] = ()
                    ) -> list[tuple[Any, ...]]:
        feats = "".join(", json_extract(features, ?)" for _ in features)
        paths = tuple("$." + json.dumps(name) for name in features)  # a quoted JSON path key
        return self._rows(
            "SELECT id, done_seq, status, island, generation, score, "
            "json_extract(parent_ids, '$[0]'), created_at, evaluated_at, prompt_tokens, "
            f"completion_tokens, cost, json_extract(mutation, '$.arm'){feats} "
            "FROM programs WHERE done_seq > ? ORDER BY done_seq LIMIT ?",
            (*paths, done_seq, limit))

    def listing(self, ids: list[int]) -> list[tuple[Any, ...]]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._rows(
            "SELECT id, status, score, island, generation, substr(reason, 1, 300), "
            "json_extract(mutation, '$.mutator'), json_extract(mutation, '$.model'), "
            "json_extract(mutation, '$.edit_kind'), cost "
            f"FROM programs WHERE id IN ({marks})", tuple(int(i) for i in ids))

    def head(self) -> tuple[int, int, int]:
        # one aggregate per query: SQLite answers a lone MAX from the index's end
        (seq,), = self._rows("SELECT MAX(done_seq) FROM programs")
        (top,), = self._rows("SELECT MAX(id) FROM programs")
        (pending,), = self._rows("SELECT COUNT(*) FROM programs WHERE status = 'pending'")
        return (-1 if seq is None else int(seq), -1 if top is None else int(top), int(pending))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresSource(Source):
    """A read-only session of its own on the run's PostgreSQL database (one run of several)."""

    def __init__(self, storage: Any) -> None:
        from evoforge.storages.postgres import connect

        self.run: str = storage.run
        self._target = storage.target
        self._connect = connect
        self._conn = connect(self._target, readonly=True)
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                try:
                    return list(self._conn.execute(sql, params).fetchall())
                except psycopg.OperationalError as e:  # a restarted server: reconnect once
                    if attempt == 2:
                        raise StorageError(f"the dashboard lost PostgreSQL: {e}") from e
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    self._conn = self._connect(self._target, readonly=True)
        raise AssertionError("unreachable")

    def light_after(self, done_seq: int, limit: int, features: Sequence[str] = ()
                    ) -> list[tuple[Any, ...]]:
        feats = "".join(", (features->>%s)" for _ in features)
        return self._rows(
            "SELECT id, done_seq, status, island, generation, score, "
            "(parent_ids->>0)::bigint, created_at, evaluated_at, prompt_tokens, "
            f"completion_tokens, cost, mutation->>'arm'{feats} FROM evoforge_programs "
            "WHERE run = %s AND done_seq > %s ORDER BY done_seq LIMIT %s",
            (*features, self.run, done_seq, limit))

    def listing(self, ids: list[int]) -> list[tuple[Any, ...]]:
        if not ids:
            return []
        return self._rows(
            "SELECT id, status, score, island, generation, substr(reason, 1, 300), "
            "mutation->>'mutator', mutation->>'model', mutation->>'edit_kind', cost "
            "FROM evoforge_programs WHERE run = %s AND id = ANY(%s)",
            (self.run, [int(i) for i in ids]))

    def head(self) -> tuple[int, int, int]:
        (seq, top, pending), = self._rows(
            "SELECT (SELECT MAX(done_seq) FROM evoforge_programs WHERE run = %s), "
            "(SELECT MAX(id) FROM evoforge_programs WHERE run = %s), "
            "(SELECT COUNT(*) FROM evoforge_programs WHERE run = %s AND done_seq IS NULL)",
            (self.run, self.run, self.run))
        return (-1 if seq is None else int(seq), -1 if top is None else int(top), int(pending))

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._conn.close()


def source_for(storage: Any) -> Source:
    """The Source reading the same run as ``storage`` (SQLite or PostgreSQL)."""
    from evoforge.storages.sqlite import SQLiteStorage

    if isinstance(storage, SQLiteStorage):
        return SQLiteSource(storage.path)
    from evoforge.storages.postgres import PostgresStorage

    if isinstance(storage, PostgresStorage):
        return PostgresSource(storage)
    raise StorageError(f"the dashboard reads SQLite and PostgreSQL runs; {type(storage).__name__} "
                       "is neither")
