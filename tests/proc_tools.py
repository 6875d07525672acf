"""Process helpers shared by the executor, hostile-candidate and attack tests.

Survivors are found by a marker the test controls and a candidate cannot shed: a cgroup v2
group (:class:`Cgroup`, :class:`Watch`), never by process names or command lines (a candidate
chooses those, and the process sandbox's workers never carry the scratch path). Only where no
writable cgroup v2 hierarchy exists (not root) does :class:`Watch` fall back to a command-line
marker, and it says so (``Watch.sees_all``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import time
from collections.abc import Iterator
from types import TracebackType


def procs_with(marker: bytes) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``. Weak: only the
    fallback of :class:`Watch` where no cgroup v2 can be made (a process can change or drop
    its command line, and many never carry the marker)."""
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
    from evoforge.sandbox import cgroup2_mount

    return cgroup2_mount()


def own_cgroup() -> str:
    """This process's cgroup v2 path (the ``0::`` line of /proc/self/cgroup), e.g. ``/``."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    raise RuntimeError("this process is in no cgroup v2 hierarchy")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class Cgroup:
    """A fresh cgroup v2 group: a marker every descendant of a process put in it carries,
    whatever it does with its name, session, environment or namespaces (only the kernel can
    move it out; an unprivileged candidate cannot). ``pids()`` are the survivors: the group's
    members and those of any group made below it (a privileged process may move its children
    into groups of its own; below this one, they stay visible and are killed with it)."""

    def __init__(self, tag: str) -> None:
        root = cgroup2_root()
        if root is None:
            raise RuntimeError("no writable cgroup v2 hierarchy (needs root)")
        self.root = root
        self.path = os.path.join(root, f"evoforge-test-{tag}-{os.getpid()}")
        os.mkdir(self.path)

    @contextlib.contextmanager
    def holding_me(self) -> Iterator[None]:
        """Put this process (all its threads) in the group for the block and back in the
        cgroup it came from after it, whatever happens: every process it starts in the block,
        and every descendant of those, is in the group; this process is not, after it."""
        home = os.path.join(self.root, own_cgroup().lstrip("/"), "cgroup.procs")
        _write(os.path.join(self.path, "cgroup.procs"), str(os.getpid()))
        try:
            yield
        finally:
            _write(home, str(os.getpid()))

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped so the started process joins this group before it runs."""
        procs = os.path.join(self.path, "cgroup.procs")
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def _groups(self) -> list[str]:
        """This group and every group below it, deepest first."""
        found = [d for d, _, _ in os.walk(self.path)]
        return sorted(found, key=lambda d: d.count(os.sep), reverse=True)

    def pids(self) -> list[int]:
        found: list[int] = []
        for group in self._groups():
            try:
                with open(os.path.join(group, "cgroup.procs")) as f:
                    found += [int(x) for x in f.read().split()]
            except OSError:  # removed meanwhile (ENOENT, or ENODEV while going)
                pass
        return found

    def wait_empty(self, timeout: float) -> bool:
        """True once no process is left in the group, within ``timeout`` seconds (waits on
        the kernel's ``cgroup.events`` notification, with a deadline)."""
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
        """Kill whatever is left (below it too) and remove the group and those below it."""
        if not os.path.isdir(self.path):
            return
        if os.getpid() in self.pids():  # never kill the test itself: out to the root first
            _write(os.path.join(self.root, "cgroup.procs"), str(os.getpid()))
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")  # the whole subtree
        except OSError:
            pass
        self.wait_empty(10)
        for _ in range(100):
            for group in self._groups():
                with contextlib.suppress(OSError):
                    os.rmdir(group)
            if not os.path.isdir(self.path):
                return
            time.sleep(0.05)


class Survived(AssertionError):
    """Processes of an evaluation outlived it (raised by :meth:`Watch.check`)."""


def cmdline(pid: int) -> str:
    """``pid``'s command line, for messages only (never to find or judge a process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")[:160]
    except OSError:
        return "?"


class Watch:
    """Everything this (test) process starts inside ``with watch:``, and whatever that leaves
    running, by a marker the test controls and a candidate cannot shed.

    With a writable cgroup v2 hierarchy (root): a fresh :class:`Cgroup` that this process
    joins for the block (see :meth:`Cgroup.holding_me`), so every process it starts there -
    workers, bwrap, a candidate's setsid daemons, double forks, whatever user, session, name or
    namespace they take - is in the group; survivors are the group's members after the block
    (this process has left it by then). Without one (not root) the fallback is the old, weak
    check: processes whose command line contains ``marker``; ``sees_all`` is then False, as
    most survivors (every process-sandbox worker, for one) do not carry it.

    Usable around several blocks; :meth:`close` (always call it: ``with`` or ``finally``)
    kills whatever is left and removes the group, so a failing test leaks nothing."""

    def __init__(self, tag: str, marker: bytes) -> None:
        self.marker = marker
        self.group = (
            Cgroup(f"{tag}-{secrets.token_hex(4)}") if cgroup2_root() is not None else None
        )
        self._block: contextlib.AbstractContextManager[None] | None = None

    @property
    def sees_all(self) -> bool:
        """Whether every process of the block is visible (a cgroup), or only those that
        carry ``marker`` on their command line (the fallback)."""
        return self.group is not None

    def __enter__(self) -> Watch:
        if self.group is not None:
            self._block = self.group.holding_me()
            self._block.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        block, self._block = self._block, None
        if block is not None:
            block.__exit__(exc_type, exc, tb)

    def survivors(self, settle: float = 5.0) -> list[int]:
        """What is still alive ``settle`` s after the last block at most (processes being
        killed get that long to die; returns as soon as none is left)."""
        assert self._block is None, "survivors() inside the block would see this process"
        if self.group is None:
            return [pid for pid in procs_with(self.marker) if not wait_dead(pid, settle)]
        if self.group.wait_empty(settle):
            return []
        return [pid for pid in self.group.pids() if pid != os.getpid()]

    def check(self, settle: float = 5.0) -> None:
        """Raise :class:`Survived` naming the survivors, if any."""
        left = self.survivors(settle)
        if left:
            raise Survived(
                f"processes of the evaluation survived it: {[(p, cmdline(p)) for p in left]}"
            )

    def close(self) -> None:
        """Leave the group if still in it, kill every process left, remove the group."""
        self.__exit__(None, None, None)
        if self.group is not None:
            self.group.close()
        else:
            for pid in procs_with(self.marker):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
