"""Storage backends and the one resolver for storage URLs.

URLs follow the SQLAlchemy convention: ``sqlite:///relative/path.db`` (three slashes, relative to
the run directory) and ``sqlite:////absolute/path.db`` (four slashes);
``postgresql://USER@HOST:PORT/DB#run=NAME`` (or ``postgres://``) for a run in a PostgreSQL
database (``evoforge.storages.postgres``; psycopg is imported only when one is opened).
"""

from __future__ import annotations

from pathlib import Path

from evoforge.errors import StorageError
from evoforge.storages.base import Storage
from evoforge.storages.postgres import (
    DEFAULT_RECONNECT_TIMEOUT,
    PostgresURL,
    is_postgres_url,
    redact,
    run_exists,
)
from evoforge.storages.sqlite import SQLiteStorage

__all__ = ["SQLiteStorage", "Storage", "is_postgres_url", "open_storage", "redact",
           "resolve_storage_url", "sqlite_path", "storage_exists"]

DEFAULT_DB_NAME = "evoforge.db"
_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://", "postgresql+")
_SUPPORTED = ("sqlite:///PATH (relative to the run directory), sqlite:////ABSOLUTE/PATH or "
              "postgresql://USER@HOST:PORT/DB#run=NAME")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///PATH`` storage URL (as written: maybe relative)."""
    if not url.startswith(_SQLITE):
        raise StorageError(f"malformed SQLite storage URL {url!r}; use {_SUPPORTED}")
    path = url[len(_SQLITE):]
    if not path or path == ":memory:" or path.startswith("file:") or "?" in path:
        raise StorageError(
            f"unsupported SQLite storage URL {url!r}: a run needs a database file on disk "
            f"(no in-memory databases, URI forms or query parameters); use {_SUPPORTED}"
        )
    return path


def _check_scheme(url: str) -> None:
    if not url.startswith("sqlite:") and not url.startswith(_POSTGRES):
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise StorageError(
            f"unsupported storage URL scheme {scheme!r} in {redact(url)!r}; supported: {_SUPPORTED}"
        )


def resolve_storage_url(url: str | None, run_dir: Path) -> str:
    """The absolute storage URL a run uses.

    ``None`` means ``sqlite:///RUN_DIR/evoforge.db``; relative SQLite paths resolve against
    ``run_dir`` (not the working directory), so a run directory can be moved or resumed from
    anywhere. A PostgreSQL URL comes back normalised (``postgresql://``), its ``#run=NAME`` kept
    (a new run without one gets a name from ``api.start_run``).
    """
    run_dir = Path(run_dir).expanduser().absolute()
    if url is None or not url.strip():
        return f"{_SQLITE}{run_dir / DEFAULT_DB_NAME}"
    url = url.strip()
    _check_scheme(url)
    if is_postgres_url(url):
        target = PostgresURL.parse(url)
        return target.conninfo + (f"#run={target.run}" if target.run else "")
    path = Path(sqlite_path(url)).expanduser()
    if not path.is_absolute():
        path = run_dir / path
    return f"{_SQLITE}{path}"


def open_storage(url: str, *, readonly: bool = False,
                 reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT) -> Storage:
    """Open the storage a URL names (resolve it with ``resolve_storage_url`` first; a relative
    SQLite path here is taken relative to the working directory). ``reconnect_timeout``: how
    long a PostgreSQL storage retries after a lost connection."""
    url = url.strip()
    _check_scheme(url)
    if is_postgres_url(url):
        from evoforge.storages.postgres import PostgresStorage

        return PostgresStorage(url, readonly=readonly, reconnect_timeout=reconnect_timeout)
    return SQLiteStorage(Path(sqlite_path(url)).expanduser(), readonly=readonly)


def storage_exists(url: str) -> bool:
    """Whether the (resolved) storage URL names a run that is already stored: its SQLite file
    exists, or the PostgreSQL database holds its ``#run=NAME``."""
    url = url.strip()
    _check_scheme(url)
    if is_postgres_url(url):
        return run_exists(url)
    return Path(sqlite_path(url)).expanduser().exists()
