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



def cgroup2_root() -> str | None:
    """Where a cgroup v2 hierarchy this process may create groups in is mounted, or None."""
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    for fields in mounts:
        if len(fields) > 2 and fields[2] == "cgroup2" and os.access(fields[1], os.W_OK):
            return fields[1]
    return None


class Cgroup:
    """A fresh cgroup v2 group: a marker every descendant of a process put in it carries,
    whatever it does with its name, session, environment or namespaces (only the kernel can
    move it out; an unprivileged candidate cannot). ``pids()`` are the survivors."""

    def __init__(self, tag: str) -> None:
        root = cgroup2_root()
        if root is None:
            raise RuntimeError("no writable cgroup v2 hierarchy (needs root)")
        self.path = os.path.join(root, f"evoforge-test-{tag}-{os.getpid()}")
        os.mkdir(self.path)

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped so the started process joins this group before it runs."""
        procs = os.path.join(self.path, "cgroup.procs")
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def pids(self) -> list[int]:
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def wait_empty(self, timeout: float) -> bool:
        """True once no process is left in the group, within ``timeout`` seconds (waits on
        the kernel's ``cgroup.events`` notification, with a deadline)."""
        import time

        deadline = time.monotonic() + timeout
        events = os.path.join(self.path, "cgroup.events")
        with open(events) as f:
            while True:
                f.seek(0)
                if "populated 0" in f.read():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([], [], [f], min(left, 0.05))  # POLLPRI on change

    def close(self) -> None:
        """Kill whatever is left and remove the group."""
        import time

        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
        self.wait_empty(10)
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
