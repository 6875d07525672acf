"""Durability under SIGKILL: a real writer process is killed mid-stream; nothing it acknowledged
may be lost, nothing may be duplicated, and the database must reopen clean and keep working."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.program import Status
from evoforge.storages import SQLiteStorage

HELPER = Path(__file__).parent / "helpers" / "storage_writer.py"


def _spawn(db: Path, count: int, stderr_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    with stderr_path.open("w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, str(HELPER), str(db), str(count)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )


def _read_acks(proc: subprocess.Popen[str], stop_after: int | None,
               stderr_path: Path) -> tuple[set[int], set[int], bool]:
    """Read ``added``/``recorded`` lines until ``stop_after`` records (None: until EOF)."""
    assert proc.stdout is not None
    added: set[int] = set()
    recorded: set[int] = set()
    finished = False
    for line in proc.stdout:
        kind, _, ident = line.strip().partition(" ")
        if kind == "finished":
            finished = True
            continue
        i = int(ident)
        if kind == "added":
            assert i not in added, f"writer added {i} twice"
            added.add(i)
        else:
            assert kind == "recorded", line
            assert i not in recorded, f"writer recorded {i} twice"
            recorded.add(i)
            if stop_after is not None and len(recorded) == stop_after:
                return added, recorded, finished
    if stop_after is not None:
        proc.wait()
        pytest.fail(f"writer exited early (rc={proc.returncode}) after {len(recorded)} "
                    f"records:\n{stderr_path.read_text()}")
    return added, recorded, finished


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kill_after", [5, 37, 120])
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, kill_after: int) -> None:
    db = tmp_path / "evoforge.db"
    stderr_path = tmp_path / "writer.stderr"
    proc = _spawn(db, 1_000_000, stderr_path)  # far more than we let it write
    try:
        added, acked, _ = _read_acks(proc, kill_after, stderr_path)
        # A reader in this process while the writer is live: sees every acknowledged result.
        with SQLiteStorage(db, readonly=True) as live:
            for i in acked:
                assert live.get(i).status.terminal
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

    with SQLiteStorage(db) as s:  # writable reopen: recovers the WAL
        assert s.check() == []
        progs = list(s.programs())
        ids = [p.id for p in progs]
        assert len(ids) == len(set(ids)), "duplicate program ids"
        assert sorted(ids) == list(range(len(ids)))
        terminal = [p for p in progs if p.status.terminal]
        seqs = [p.done_seq for p in terminal]
        assert seqs == list(range(len(terminal))), "done_seq must be 0..n-1 in commit order"
        by_id = {p.id: p for p in progs}
        for i in acked:
            assert i in by_id and by_id[i].status.terminal, f"acknowledged program {i} lost"
        for i in added:
            assert i in by_id, f"acknowledged add of {i} lost"
        # The writer ran on past the last line we read, so more may be there; but only the
        # program it was working on when killed may be pending, and only as the newest one.
        pending = [p for p in progs if p.status is Status.PENDING]
        assert [p.id for p in pending] in ([], [max(ids)])
        assert len(ids) >= len(acked)
        stats = s.stats()
        assert stats["done"] == len(terminal) and stats["next_id"] == max(ids) + 1
        assert stats["cost"] == pytest.approx(0.25 * len(progs))

    # Resume: a new writer finishes the in-flight program and carries on, no duplicates.
    proc = _spawn(db, 3, stderr_path)
    try:
        _, recorded_after, finished = _read_acks(proc, None, stderr_path)
        assert proc.wait(timeout=30) == 0, stderr_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert finished
    assert recorded_after == {p.id for p in pending} | set(range(max(ids) + 1, max(ids) + 4))
    with SQLiteStorage(db, readonly=True) as s:
        assert s.check() == []
        progs = list(s.programs())
        assert [p.id for p in progs if not p.status.terminal] == []
        assert sorted(p.id for p in progs) == list(range(max(ids) + 4))
        assert [p.done_seq for p in progs] == list(range(len(progs)))
