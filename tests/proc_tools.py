"""Process helpers shared by the executor and hostile-candidate tests."""

from __future__ import annotations

import os
import select


def procs_with(marker: bytes) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` has exited (zombies count as dead). Event-based, with a deadline."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)

