"""The Storage interface: the durable record of a run. Narrow on purpose.

Every backend passes the shared suite in ``tests/test_storage_suite.py``.
The controller is the single writer; every write is one committed transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from evoforge.program import Program, Status


class Storage(ABC):
    """Durable log of every Program plus a small key/value store of run metadata."""

    @abstractmethod
    def add_program(self, program: Program) -> None:
        """Insert a new program (pending, or already terminal). Raises StorageError if the id exists."""

    @abstractmethod
    def record_result(self, program: Program) -> None:
        """Store the terminal state of an existing pending program (same id), in one transaction.

        Raises StorageError if the id is unknown or already terminal (no duplicates, ever).
        """

    @abstractmethod
    def get(self, program_id: int) -> Program:
        """One program by id. Raises StorageError naming the id if it does not exist."""

    @abstractmethod
    def programs(self, *, status: Status | None = None) -> Iterator[Program]:
        """Programs in commit order (``done_seq``), then pending ones by id."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Aggregates without loading programs: ``counts`` (status -> n), ``done`` (terminal
        count), ``next_id``, ``next_done_seq``, ``prompt_tokens``, ``completion_tokens``,
        ``cost``, ``pending``. No best: the direction lives in config)."""

    @abstractmethod
    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value stored under ``key``."""

    @abstractmethod
    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` (one transaction)."""

    def add_exchange(self, program_id: int, exchange: dict[str, Any]) -> None:
        """Keep the LLM exchange that made program ``program_id`` (prompt messages, raw reply,
        model, attempts, what became of the edit): a JSON-serialisable mapping, written after
        the program itself. Kept apart from the program so that loading a population never
        loads prompts; a backend may override this with a table of its own."""
        self.set_meta(f"exchange:{int(program_id)}", exchange)

    def exchange(self, program_id: int) -> dict[str, Any] | None:
        """The exchange stored for ``program_id``, or None (model-free children, older runs)."""
        value = self.get_meta(f"exchange:{int(program_id)}")
        return value if isinstance(value, dict) else None

    @abstractmethod
    def check(self) -> list[str]:
        """Integrity problems found (empty list when clean)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
