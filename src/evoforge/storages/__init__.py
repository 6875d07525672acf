"""Storage backends and the one resolver for storage URLs.

URLs follow the SQLAlchemy convention: ``sqlite:///relative/path.db`` (three slashes, relative to
the run directory) and ``sqlite:////absolute/path.db`` (four slashes). ``postgresql://...`` is
reserved for the PostgreSQL backend.
"""

from __future__ import annotations

from pathlib import Path

from evoforge.errors import StorageError
from evoforge.storages.base import Storage
from evoforge.storages.sqlite import SQLiteStorage

__all__ = ["SQLiteStorage", "Storage", "open_storage", "resolve_storage_url", "sqlite_path"]

DEFAULT_DB_NAME = "evoforge.db"
_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://", "postgresql+")
_SUPPORTED = "sqlite:///PATH (relative to the run directory) or sqlite:////ABSOLUTE/PATH"


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
    if url.startswith(_POSTGRES):
        raise StorageError(
            f"PostgreSQL support is not available yet ({url.split('://', 1)[0]}://...); "
            f"use {_SUPPORTED}"
        )
    if not url.startswith("sqlite:"):
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise StorageError(
            f"unsupported storage URL scheme {scheme!r} in {url!r}; supported: {_SUPPORTED} "
            "(postgresql://... is planned)"
        )


def resolve_storage_url(url: str | None, run_dir: Path) -> str:
    """The absolute storage URL a run uses.

    ``None`` means ``sqlite:///RUN_DIR/evoforge.db``; relative SQLite paths resolve against
    ``run_dir`` (not the working directory), so a run directory can be moved or resumed from
    anywhere.
    """
    run_dir = Path(run_dir).expanduser().absolute()
    if url is None or not url.strip():
        return f"{_SQLITE}{run_dir / DEFAULT_DB_NAME}"
    url = url.strip()
    _check_scheme(url)
    path = Path(sqlite_path(url)).expanduser()
    if not path.is_absolute():
        path = run_dir / path
    return f"{_SQLITE}{path}"


def open_storage(url: str, *, readonly: bool = False) -> Storage:
    """Open the storage a URL names (resolve it with ``resolve_storage_url`` first; a relative
    SQLite path here is taken relative to the working directory)."""
    url = url.strip()
    _check_scheme(url)
    return SQLiteStorage(Path(sqlite_path(url)).expanduser(), readonly=readonly)
