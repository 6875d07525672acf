"""Sandbox: where a candidate's process tree runs. The seam between an Executor and the OS.

An Executor builds the argv, the working directory (a private scratch dir), the environment and
the pipes; a ``Sandbox`` only decides *how* the process is started and how its whole tree is
killed. Pick one with :func:`make_sandbox` (``evaluation.sandbox`` in the config).

Always, whichever sandbox (set by the executor and its worker, not here): rlimits (address
space, CPU time, file size, open files, processes, no core files), a wall-clock deadline
enforced from outside, stdin from /dev/null, output captured with a cap, an allow-listed
environment (see :func:`minimal_env`), the result on a private pipe instead of stdout.

:class:`BubblewrapSandbox` (the default where ``bwrap`` works) adds:

- **no network**: a new, empty network namespace (not even loopback to the host);
- **read-only system**: ``/`` is bound read-only; ``/tmp`` is a fresh tmpfs; ``/root`` and
  ``/home`` are hidden behind empty tmpfs (only the interpreter and problem dir stay visible,
  read-only), so dotfiles with credentials cannot be read; the scratch dir is a size-capped
  tmpfs (``scratch_mb``) that is the only writable place and vanishes with the sandbox;
- **own PID namespace**: the candidate sees only its own processes; ``kill(-1)`` hits only them;
  killing the namespace's init kills every process of the evaluation, ``setsid`` daemons and
  double forks included; ``--die-with-parent`` kills it if the controller dies;
- a new session (no terminal injection), its own IPC and UTS namespaces.

:class:`ProcessSandbox` (fallback) is a plain child process in a new session whose process group
(and cgroup, where evoforge can make one) is SIGKILLed; as root it runs as the sandbox user with no
capabilities. It does NOT protect: the network is reachable; the filesystem is visible (a
candidate can read and write anything its user can); without a cgroup a process that calls
``setsid()`` escapes ``kill_tree``; the scratch size is capped per file only.

Neither protects score integrity for evaluators in the plain form (the candidate runs inside the
evaluator's process and can tamper with it). As root, ``RLIMIT_NPROC`` is not enforced by the
kernel, so a fork bomb is bounded only by the deadline and memory (and, with bubblewrap, dies
with the PID namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from evoforge.errors import ConfigError

__all__ = [
    "BubblewrapSandbox",
    "ProcessSandbox",
    "Sandbox",
    "bubblewrap_problem",
    "make_sandbox",
    "minimal_env",
    "Lifeline",
    "cgroup2_mount",
    "reap_orphaned_sandboxes",
    "resolve_user",
    "sweep_dead_lifelines",
]

log = logging.getLogger("evoforge.sandbox")

MISSING_WITHOUT_BUBBLEWRAP = (
    "network isolation (candidates can open connections)",
    "filesystem isolation (candidates can read and write anything this user can, "
    "credentials in dotfiles included)",
    "PID namespace (a setsid/double-fork daemon escapes the process-tree kill)",
    "a total cap on scratch size (only each file is capped)",
)


def minimal_env(
    allow: Sequence[str], scratch: Path, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a candidate gets: only the ``allow``-listed variables that are set,
    plus HOME=TMPDIR=scratch and Python switches that keep the scratch dir clean."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in allow if name in source}
    env.update(
        HOME=str(scratch),
        TMPDIR=str(scratch),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


_GUARD = r"""
echo $$ > "$2/cgroup.procs" 2>/dev/null  # out of the group it watches (and of its parents)
read _ignored
n=0
while [ -d "$1" ] && [ "$n" -lt 200 ]; do
  echo 1 > "$1/cgroup.kill" 2>/dev/null
  for d in "$1"/s*; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  rmdir "$1" 2>/dev/null || sleep 0.05
  n=$((n + 1))
done
"""
_ENTER = 'echo $$ > "$0" 2>/dev/null; exec "$@"'  # no group is no reason not to run


@functools.lru_cache(maxsize=1)
def cgroup2_mount() -> str | None:
    """Where a cgroup v2 hierarchy this process may make groups in is mounted, or None
    (read once: asked at every sandbox start)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2" and os.access(fields[1], os.W_OK):
                    return fields[1]
    except OSError:
        pass
    return None


def _own_cgroup() -> str | None:
    """This process's cgroup v2 directory, if it can make groups in it (root, or a delegated
    subtree): groups are nested there, so whoever put this process in a group still sees and
    controls everything it starts."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            rel = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if rel is None:
        return None
    path = os.path.normpath(os.path.join(mount, rel.lstrip("/")))
    return path if os.access(path, os.W_OK) else None


class Lifeline:
    """This process and every sandbox it starts in one cgroup v2 group that a guardian kills
    the moment this process dies, however it dies (``kill -9`` included); for the process
    sandbox also a sub-group per evaluation that :meth:`kill` empties (``setsid`` daemons
    included; bubblewrap's PID namespace does that job for its sandboxes).

    The guardian is a tiny ``sh`` in its own session, outside the group, blocked reading a pipe
    whose only writer is this process: EOF means this process is gone; it then writes
    ``cgroup.kill`` and removes the groups. Needs a writable cgroup v2 hierarchy (root, or a
    delegated subtree); :meth:`create` returns None where there is none."""

    PREFIX = "evoforge-"

    @staticmethod
    def available() -> bool:
        """Whether this process can make groups where it is (root, or a delegated subtree)."""
        return _own_cgroup() is not None

    def __init__(self, path: str, guard_fd: int) -> None:
        self.path = path
        self._guard_fd = guard_fd
        self._seq = 0

    @classmethod
    def create(cls, parent: str | None = None) -> Lifeline | None:
        """A new group in ``parent`` (default: this process's cgroup) and its guardian."""
        parent = parent or _own_cgroup()
        if parent is None:
            return None
        path = os.path.join(parent, f"{cls.PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path)
        except OSError:
            return None
        r, w = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        try:  # the guardian is a grandchild, orphaned at once: not this process's child,
            # so whoever kills this process's children when it dies (Ray does, for a worker)
            # does not kill the guardian first; the short-lived parent is reaped here (its
            # stdin, the pipe, goes to the guardian through fd 3: a background job's own
            # stdin is /dev/null)
            pid = os.posix_spawn(
                "/bin/sh", ["/bin/sh", "-c", 'exec 3<&0; /bin/sh -c "$0" "$@" <&3 3<&- &',
                            _GUARD, "guard", path, cgroup2_mount() or "/nonexistent"],
                {"PATH": "/usr/bin:/bin"},
                file_actions=[(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                              (os.POSIX_SPAWN_DUP2, null, 2)],
                setsid=True,
            )
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        except OSError:
            os.close(w)
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return None
        finally:
            os.close(r)
            os.close(null)
        os.set_inheritable(w, False)
        return cls(path, w)

    def close(self) -> None:
        """End it while this process lives on (its sandboxes already closed): this process
        leaves the group, and the guardian removes it and exits."""
        home = os.path.dirname(self.path)
        with contextlib.suppress(OSError):
            with open(os.path.join(home, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        with contextlib.suppress(OSError):
            os.close(self._guard_fd)
        for key, life in list(_lives.items()):
            if life is self:
                del _lives[key]

    def enter(self, argv: Sequence[str]) -> tuple[list[str], str]:
        """``argv`` wrapped to join a new sub-group before it runs, and that sub-group."""
        self._seq += 1
        sub = os.path.join(self.path, f"s{self._seq}")
        os.mkdir(sub)
        return ["/bin/sh", "-c", _ENTER, os.path.join(sub, "cgroup.procs"), *argv], sub

    @staticmethod
    def kill(sub: str) -> None:
        with contextlib.suppress(OSError):
            with open(os.path.join(sub, "cgroup.kill"), "w") as f:
                f.write("1")

    @staticmethod
    def populated(sub: str) -> bool:
        try:
            with open(os.path.join(sub, "cgroup.events")) as f:
                return "populated 1" in f.read()
        except OSError:
            return False

    @staticmethod
    def remove(sub: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(sub)


_lives: dict[tuple[int, str], Lifeline | None] = {}  # (pid, own cgroup) -> its lifeline


def _home() -> str | None:
    """Where this process's lifelines go: its cgroup, or the parent of the lifeline it is in."""
    own = _own_cgroup()
    if own is not None and os.path.basename(own).startswith(f"{Lifeline.PREFIX}{os.getpid()}-"):
        return os.path.dirname(own)
    return own


def lifeline() -> Lifeline | None:
    """This process's :class:`Lifeline`, made on first use (None where cgroups are not
    writable: then ``--die-with-parent`` and the next start's sweep are what is left).

    This process joins the lifeline's group itself, once, so every process it starts is in the
    group from birth: moving a process between cgroups stalls every fork and exit on the
    machine for an RCU grace period (milliseconds), too much to do at every sandbox start. If
    something moves this process elsewhere (a test harness), a new lifeline is made there."""
    home = _home()
    if home is None:
        return None
    key = (os.getpid(), home)
    life = _lives.get(key)
    if key not in _lives or (life is not None and not os.path.isdir(life.path)):
        life = _lives[key] = Lifeline.create(home)
    if life is not None and _own_cgroup() != life.path:
        try:
            with open(os.path.join(life.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            return None
    return life


def sweep_dead_lifelines() -> list[str]:
    """Kill and remove the groups of evoforge processes that died and whose guardian could not
    finish (it was killed too): the next start cleans up what is left."""
    mount = _home()
    removed: list[str] = []
    if mount is None:
        return removed
    try:
        names = [n for n in os.listdir(mount) if n.startswith(Lifeline.PREFIX)]
    except OSError:
        return removed
    for name in names:
        try:
            pid = int(name[len(Lifeline.PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue  # its owner is alive (a reused pid only delays the sweep)
        path = os.path.join(mount, name)
        Lifeline.kill(path)
        for sub in [os.path.join(path, s) for s in os.listdir(path) if s.startswith("s")]:
            Lifeline.remove(sub)
        Lifeline.remove(path)
        removed.append(path)
    if removed:
        log.warning("killed what was left in %d sandbox group(s) of controllers that died",
                    len(removed))
    return removed


class Sandbox(ABC):
    """Starts a process (tree) for one evaluation and can kill that whole tree."""

    #: short name shown in logs, doctor output and results
    name = "sandbox"
    #: (uid, gid) the candidate runs as, when different from this process's
    user: tuple[int, int] | None = None
    #: whether ``spawn(binds=...)`` shows a host path at another path inside
    remaps = False

    @abstractmethod
    async def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        pass_fds: Sequence[int],
        stdout: int,
        stderr: int,
        readable: Sequence[Path] = (),
        scratch_mb: int | None = None,
        hidden: Sequence[Path] = (),
        binds: Mapping[Path, Path] | None = None,
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in ``cwd`` with exactly ``env`` (nothing inherited), stdin from
        /dev/null, ``stdout``/``stderr`` going to the given file descriptors and ``pass_fds``
        kept open (same numbers) in the child. ``cwd`` is the evaluation's scratch dir: the
        files in it are visible at the same paths inside. ``readable`` lists paths the process
        must be able to read (problem dir, interpreter): a sandbox that hides parts of the
        filesystem keeps these visible, read-only. ``scratch_mb`` caps the scratch dir's total
        size where the sandbox can. ``hidden`` lists directories the process must not see (the
        problem dir, for a candidate), where the sandbox can hide them. ``binds`` maps a path
        inside to the host path shown there read-only, where the sandbox can remap paths
        (check :attr:`remaps`). Raise ``OSError`` if it cannot start."""

    @abstractmethod
    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        """Kill ``proc`` and everything it started. Idempotent; never raises."""

    async def wait_gone(self, proc: asyncio.subprocess.Process, timeout: float) -> bool:
        """After :meth:`kill_tree`: wait up to ``timeout`` s until the tree is gone (as far
        as this sandbox can tell). True if it is."""
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def release(self, proc: asyncio.subprocess.Process) -> None:
        """Forget ``proc`` (free bookkeeping). Call once, after the last :meth:`kill_tree`."""
        sub = self._groups().pop(proc.pid, None)
        if sub is not None:
            Lifeline.remove(sub)

    # -- the cgroup every process tree starts in, where there is one (see Lifeline) -----------

    def _groups(self) -> dict[int, str]:
        groups: dict[int, str] | None = self.__dict__.get("_cgroups")
        if groups is None:
            groups = self.__dict__["_cgroups"] = {}
        return groups

    def _enter(self, argv: Sequence[str]) -> tuple[list[str], str | None]:
        life = lifeline()
        if life is None:
            return list(argv), None
        try:
            return life.enter(argv)
        except OSError:
            return list(argv), None

    def _started(self, proc: asyncio.subprocess.Process | None, sub: str | None) -> None:
        if sub is None:
            return
        if proc is None:
            Lifeline.remove(sub)
        else:
            self._groups()[proc.pid] = sub

    def _kill_cgroup(self, proc: asyncio.subprocess.Process) -> None:
        sub = self._groups().get(proc.pid)
        if sub is not None:
            Lifeline.kill(sub)

    async def _wait_cgroup_empty(self, proc: asyncio.subprocess.Process, timeout: float) -> bool:
        sub = self._groups().get(proc.pid)
        if sub is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = 0.0005  # a killed group empties within a millisecond or two: poll, backing off
        while Lifeline.populated(sub):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
        return True

    def exit_status(self, returncode: int | None) -> int | None:
        """``proc.returncode`` as the evaluated command's status: negative = killed by signal."""
        return returncode


class ProcessSandbox(Sandbox):
    """A plain child process in a new session; ``kill_tree`` SIGKILLs its process group (and
    its cgroup, where evoforge can make one: ``setsid`` daemons included).

    As root it runs the process as ``user`` (see :func:`resolve_user`) through ``setpriv``,
    with no capabilities: the caller must make the scratch dir, the interpreter and what the
    process reads accessible to that user (:class:`~evoforge.executors.local.LocalExecutor`
    does, or falls back to ``user=None`` with a warning). See the module docstring for what
    this does and does not protect against.
    """

    name = "process"

    def __init__(self, *, user: str | int | tuple[int, int] | None = None) -> None:
        self.user = user if isinstance(user, tuple) or user is None else resolve_user(user)
        self.setpriv: str | None = None
        if self.user is not None:
            self.setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
            if self.setpriv is None:
                raise ConfigError(
                    "setpriv (util-linux) is needed to run candidates as an unprivileged user "
                    "when evoforge runs as root: run `apt-get install util-linux`"
                )

    def drop(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run as :attr:`user` with no capabilities (unchanged without a user)."""
        if self.user is None or self.setpriv is None:
            return list(argv)
        uid, gid = self.user
        return [self.setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--", *argv]

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        pass_fds: Sequence[int],
        stdout: int,
        stderr: int,
        readable: Sequence[Path] = (),
        scratch_mb: int | None = None,
        hidden: Sequence[Path] = (),
        binds: Mapping[Path, Path] | None = None,
    ) -> asyncio.subprocess.Process:
        full, sub = self._enter(self.drop(argv))  # joins its group as root, then drops
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                cwd=str(cwd),
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=tuple(pass_fds),
                close_fds=True,
                start_new_session=True,
            )
        finally:
            self._started(proc, sub)
        return proc

    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        self._kill_cgroup(proc)  # where there is a cgroup: setsid daemons too
        _kill_group(proc)

    async def wait_gone(self, proc: asyncio.subprocess.Process, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await super().wait_gone(proc, timeout):
            return False
        return await self._wait_cgroup_empty(proc, max(deadline - loop.time(), 0.0))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The child is a session and group leader (start_new_session), so its pid is the pgid.
    # Linux does not reuse a pid while a group with that id still has members, so this
    # cannot hit an unrelated group; ESRCH just means everything is already gone.
    # The leader is in its group (a session leader cannot leave it), so no proc.kill():
    # that polls the child and can reap it under asyncio's child watcher.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- bubblewrap ---------------------------------------------------------------------------------

#: The system's program and library directories: the only host paths every sandbox sees.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The files and directories of /etc that programs and toolchains read (the dynamic loader's
#: cache, the alternatives behind ``cc``, user and group names, time zone, locale). Nothing else
#: of /etc (no /etc/shadow, SSH host keys, TLS private keys, credentials of services).
ETC_ALLOWED = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group",
    "nsswitch.conf", "localtime", "timezone", "os-release", "debian_version", "mime.types",
    "protocols", "services", "hosts", "host.conf", "locale.alias", "fonts", "gcc",
)
#: Used when evoforge runs as root and ``evaluation.sandbox_user`` is ``auto``: the dedicated
#: user ``scripts/setup.sh`` creates, else ``nobody``.
SANDBOX_USERS = ("evoforge-sandbox", "nobody")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_user(spec: str | int | None = "auto") -> tuple[int, int] | None:
    """The (uid, gid) candidates run as, or None to keep this process's own.

    Only root switches: ``auto`` picks the first of :data:`SANDBOX_USERS` that exists; a user
    name, a uid, or ``uid:gid`` pick one; ``root`` (or ``none``) keeps uid 0, unprotected.
    Not root: candidates run as this user (bubblewrap drops every capability), and anything
    but ``auto`` is an error, since only root can switch users."""
    import pwd

    text = "auto" if spec is None else str(spec).strip()
    if os.geteuid() != 0:
        if text != "auto":
            raise ConfigError(
                f"evaluation.sandbox_user={text!r} needs root (evoforge runs as uid "
                f"{os.geteuid()}); candidates already run as this user: set it to auto"
            )
        return None
    if text.lower() in ("root", "none", "0"):
        return None
    if text == "auto":
        for name in SANDBOX_USERS:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return entry.pw_uid, entry.pw_gid
        raise ConfigError(
            "no unprivileged user to run candidates as (neither of "
            f"{', '.join(SANDBOX_USERS)} exists): run scripts/setup.sh as root, or set "
            "evaluation.sandbox_user to an existing user"
        )
    uid_text, _, gid_text = text.partition(":")
    try:
        if uid_text.isdigit():
            uid = int(uid_text)
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
        else:
            entry = pwd.getpwnam(uid_text)
            uid, gid = entry.pw_uid, entry.pw_gid
        if gid_text:
            gid = int(gid_text)
    except (KeyError, ValueError) as e:
        raise ConfigError(
            f"evaluation.sandbox_user={text!r} is not a user on this machine ({e}); give a "
            "user name, a uid, or uid:gid"
        ) from e
    if uid == 0:
        return None
    return uid, gid


class BubblewrapSandbox(Sandbox):
    """Runs the process tree inside ``bwrap``: no network, an allow-listed read-only view of
    the system, private size-capped scratch, own PID namespace, new session, no capabilities,
    an unprivileged uid, dies with its parent.

    Nothing of the host is visible but what is listed: :data:`SYSTEM_DIRS`, the part of /etc
    in :data:`ETC_ALLOWED`, the paths the caller passes as ``readable`` (interpreter, problem
    dir) and ``extra_paths`` (toolchains outside /usr), all read-only; fresh private /tmp and
    /dev/shm; the scratch dir. /run, /var, /home, /root, the run dir and every host UNIX socket
    are absent.

    As root, bwrap sets the sandbox up in the host's user namespace and ``setpriv`` then
    switches to ``user`` (default: ``nobody`` or the dedicated ``evoforge-sandbox``), clearing
    every capability (bounding set included) with no_new_privs: the candidate cannot remount,
    unmount, read root-only files or signal anything outside. Not root, bwrap runs in a new
    user namespace with no capabilities and nested user namespaces disabled.

    ``kill_tree`` SIGKILLs bwrap's process group and the PID namespace's init (found through
    ``--info-fd``, held as a pidfd so a reused pid is never hit); the kernel then kills every
    process in the namespace, whatever session it is in. ``wait_gone`` waits until that init
    has exited, which happens only once the whole namespace is empty.
    """

    name = "bubblewrap"
    remaps = True

    def __init__(
        self,
        bwrap: str | None = None,
        *,
        user: str | int | tuple[int, int] | None = "auto",
        extra_paths: Sequence[str | Path] = (),
    ) -> None:
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise ConfigError(
                "bubblewrap (bwrap) is not installed: run `apt-get install bubblewrap`, "
                "or set evaluation.sandbox=process to run without it"
            )
        self.bwrap = found
        self.user: tuple[int, int] | None = (
            user if isinstance(user, tuple) else resolve_user(user)
        )
        self.setpriv: str | None = None
        if self.user is not None:
            self.setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
            if self.setpriv is None or not self.setpriv.startswith("/usr/"):
                raise ConfigError(
                    "setpriv (util-linux) is needed to run candidates as an unprivileged user "
                    "when evoforge runs as root: run `apt-get install util-linux`"
                )
        self.extra_paths = tuple(os.path.abspath(p) for p in extra_paths)
        self._inits: dict[int, int] = {}  # bwrap pid -> pidfd of the namespace's init

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        readable: Sequence[Path] = (),
        scratch_mb: int | None = None,
        files: Mapping[str, int] | None = None,
        info_fd: int | None = None,
        hidden: Sequence[Path] = (),
        binds: Mapping[Path, Path] | None = None,
    ) -> list[str]:
        """The full bwrap argv. ``files`` maps a file name in ``cwd`` to an open fd whose
        content bwrap copies into the (tmpfs) scratch dir; ``binds`` maps a path inside to
        the host path shown there read-only (a snapshot of the problem dir)."""
        scratch = os.path.abspath(cwd)
        size = ["--size", str(int(scratch_mb) * 1024 * 1024)] if scratch_mb is not None else []
        cmd = [self.bwrap]
        if self.user is None and os.geteuid() != 0:
            # unprivileged: a user namespace (bwrap drops every capability in it), no nesting
            cmd += ["--unshare-all", "--unshare-user", "--disable-userns"]
        else:
            # root: stay in the host's user namespace (so setpriv can switch to the sandbox
            # user) and keep only what that switch needs; setpriv drops the rest
            cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                    "--unshare-cgroup-try", "--cap-drop", "ALL"]
            if self.user is not None:
                cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                        "--cap-add", "CAP_SETPCAP"]
        cmd += ["--die-with-parent", "--new-session"]
        made: set[str] = {"/"}

        def parents(path: str) -> None:
            # bwrap creates missing parents mode 0700 (unreadable to the sandbox user)
            todo = []
            parent = os.path.dirname(path)
            while parent not in made:
                todo.append(parent)
                made.add(parent)
                parent = os.path.dirname(parent)
            for d in reversed(todo):
                cmd.extend(["--perms", "0755", "--dir", d])

        bound: dict[str, str] = {}  # inside -> host, in mount order

        def show(src: str, dest: str, *, over: bool = False) -> None:
            if not over and any(_under(dest, b) for b in bound):
                return  # already visible through a bound parent
            parents(dest)
            cmd.extend(["--ro-bind", src, dest])
            bound[dest] = src
            made.add(dest)

        def host(path: str) -> str | None:
            """The host path shown at ``path`` inside (through the deepest mount), if any."""
            best = max((b for b in bound if _under(path, b)), key=len, default=None)
            return None if best is None else bound[best] + path[len(best):]

        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                cmd += ["--symlink", os.readlink(d), d]
                made.add(d)
            elif os.path.isdir(d):
                show(d, d)
        for name in ETC_ALLOWED:
            path = os.path.join("/etc", name)
            if os.path.exists(path):
                show(path, path)
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        cmd += ["--perms", "1777", *size, "--tmpfs", "/tmp"]
        cmd += ["--perms", "1777", *size, "--tmpfs", "/dev/shm"]
        made.update(("/proc", "/dev", "/tmp", "/dev/shm"))
        wanted = {os.path.abspath(r) for r in readable} | set(self.extra_paths)
        for path in sorted(wanted, key=len):
            if os.path.exists(path):
                show(path, path)
        for dest, src in sorted(
            ((os.path.abspath(d), os.path.abspath(s)) for d, s in (binds or {}).items()),
            key=lambda ds: len(ds[0]),
        ):  # a remap is shown even inside a bound parent (the snapshot over the problem dir)
            show(src, dest, over=True)
        for h in hidden:  # after the binds, so a bound-in parent does not show it again
            path = os.path.abspath(h)
            seen = host(path)  # None: not shown at all; it still appears, empty
            if seen is not None:
                if os.path.isdir(seen):
                    cmd += ["--tmpfs", path, "--remount-ro", path]
            elif path not in made:
                parents(path)
                cmd += ["--perms", "0555", "--dir", path]
                made.add(path)
        if files is not None:
            parents(scratch)
            cmd += ["--perms", "1777", *size, "--tmpfs", scratch]
            for name, fd in files.items():
                cmd += ["--perms", "0644", "--file", str(fd), os.path.join(scratch, name)]
        else:
            parents(scratch)
            cmd += ["--bind", scratch, scratch]
        cmd += ["--chdir", scratch, "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        if info_fd is not None:
            cmd += ["--info-fd", str(info_fd)]
        cmd.append("--")
        if self.user is not None:
            assert self.setpriv is not None
            uid, gid = self.user
            cmd += [self.setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--"]
        cmd += list(argv)
        return cmd

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        pass_fds: Sequence[int],
        stdout: int,
        stderr: int,
        readable: Sequence[Path] = (),
        scratch_mb: int | None = None,
        hidden: Sequence[Path] = (),
        binds: Mapping[Path, Path] | None = None,
    ) -> asyncio.subprocess.Process:
        # The scratch dir becomes a size-capped tmpfs inside; its (top-level) files are copied
        # in by bwrap. Anything else in it is not visible inside.
        opened: dict[str, int] = {}
        info_r, info_w = os.pipe()
        try:
            for entry in sorted(os.listdir(cwd)):
                full = os.path.join(cwd, entry)
                if os.path.isfile(full) and not os.path.islink(full):
                    opened[entry] = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
            cmd = self.command(
                argv, cwd=cwd, env=env, readable=readable, scratch_mb=scratch_mb,
                files=opened, info_fd=info_w, hidden=hidden, binds=binds,
            )
            lifeline()  # born in the lifeline's group; the PID namespace does the rest
            sub = None
            proc = None
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    cwd="/",
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(*pass_fds, *opened.values(), info_w),
                    close_fds=True,
                    start_new_session=True,
                )
            finally:
                self._started(proc, sub)
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(info_w)
            for fd in opened.values():
                os.close(fd)
        try:
            info = await asyncio.wait_for(_read_all(info_r), 10.0)
        except TimeoutError:
            info = b""
        except BaseException:  # cancelled: the caller never sees proc, so kill it here
            _kill_group(proc)
            raise
        finally:
            os.close(info_r)
        try:
            child = int(json.loads(info)["child-pid"])
            self._inits[proc.pid] = os.pidfd_open(child)
        except (ValueError, KeyError, TypeError, OSError):
            pass  # bwrap failed before starting the namespace: it exits with an error
        return proc

    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        pidfd = self._inits.get(proc.pid)
        if pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        self._kill_cgroup(proc)
        _kill_group(proc)

    async def wait_gone(self, proc: asyncio.subprocess.Process, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pidfd = self._inits.get(proc.pid)
        if pidfd is not None:
            gone: asyncio.Future[None] = loop.create_future()
            loop.add_reader(pidfd, _settle, gone)
            try:
                await asyncio.wait_for(gone, timeout)
            except TimeoutError:
                return False
            finally:
                loop.remove_reader(pidfd)
        # the init's exit means the namespace is empty: every process of the evaluation is gone
        return await super().wait_gone(proc, max(deadline - loop.time(), 0.0))

    def exit_status(self, returncode: int | None) -> int | None:
        # bwrap exits with 128 + N when the command was killed by signal N
        if returncode is not None and 128 < returncode < 128 + 65:
            return -(returncode - 128)
        return returncode

    def release(self, proc: asyncio.subprocess.Process) -> None:
        pidfd = self._inits.pop(proc.pid, None)
        if pidfd is not None:
            os.close(pidfd)
        super().release(proc)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _read_all(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _settle, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def reap_orphaned_sandboxes(marker: str) -> list[int]:
    """SIGKILL bubblewrap sandboxes left behind by a controller that died, and return their pids.

    bwrap 0.8 has a window between creating the sandbox's init and releasing it (after writing
    the uid map) in which the death of the controller leaves that init blocked forever, before
    any candidate code runs and before ``--die-with-parent`` is armed. Such an orphan is a PID
    namespace init (``NSpid`` ends in 1) whose command line contains ``marker`` and whose
    parent is no longer a bwrap process. Live sandboxes (parent = their bwrap) are not touched.
    """
    killed: list[int] = []
    needle = marker.encode()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return killed
    for pid in pids:
        try:
            argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
            if os.path.basename(argv[0]) != b"bwrap" or needle not in b"\0".join(argv):
                continue
            status = _read(f"/proc/{pid}/status").decode("utf-8", "replace")
            fields = dict(
                line.split(":", 1) for line in status.splitlines() if ":" in line
            )
            nspid = fields.get("NSpid", "").split()
            if len(nspid) < 2 or nspid[-1] != "1":
                continue  # not a namespace init: an outer bwrap, owned by a live controller
            ppid = int(fields.get("PPid", "0").strip())
            parent = _read(f"/proc/{ppid}/cmdline").split(b"\0")[0] if ppid > 0 else b""
            if os.path.basename(parent) == b"bwrap":
                continue  # its bwrap is alive: a running evaluation
            pidfd = os.pidfd_open(pid)
        except (OSError, ValueError):
            continue
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
        finally:
            os.close(pidfd)
    if killed:
        log.warning("killed %d sandbox(es) orphaned by a controller that died: %s",
                    len(killed), killed)
    return killed


def _probe_argv(sandbox: BubblewrapSandbox) -> list[str]:
    true = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
    return sandbox.command(
        [true], cwd=Path("/tmp/evoforge-probe"), env={"PATH": "/usr/bin:/bin"},
        scratch_mb=1, files={},
    )


@functools.lru_cache(maxsize=4)
def bubblewrap_problem(user: str | int | None = "auto") -> str | None:
    """None if bubblewrap is installed and works here the way evoforge starts it (as the
    sandbox user when root), probed once per process, else why not and how to fix it."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed; install it with `apt-get install bubblewrap`"
    try:
        sandbox = BubblewrapSandbox(bwrap, user=user)
    except ConfigError as e:
        return str(e)
    try:
        done = subprocess.run(
            _probe_argv(sandbox), stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"{bwrap} cannot be run: {e}"
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", errors="replace").strip()[:300]
        return (
            f"{bwrap} is installed but cannot create namespaces here (exit {done.returncode}: "
            f"{err}); enable unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or run as root"
        )
    return None


_warned = False


def make_sandbox(
    kind: str = "auto", *, user: str | int | None = "auto", extra_paths: Sequence[str] = ()
) -> Sandbox:
    """``"bubblewrap"``, ``"process"``, or ``"auto"``: bubblewrap if it works here, else the
    process sandbox with one loud warning naming the protections that are missing. ``user``
    and ``extra_paths`` are :class:`BubblewrapSandbox`'s."""
    global _warned
    if kind == "process":
        return ProcessSandbox(user=user)
    if kind not in ("auto", "bubblewrap"):
        raise ConfigError(
            f"unknown sandbox {kind!r}; set evaluation.sandbox to one of auto, bubblewrap, process"
        )
    resolve_user(user)  # a bad sandbox_user is a config error, whatever the sandbox
    problem = bubblewrap_problem(user)
    if problem is None:
        return BubblewrapSandbox(user=user, extra_paths=extra_paths)
    if kind == "bubblewrap":
        raise ConfigError(
            f"evaluation.sandbox=bubblewrap but {problem}; or set evaluation.sandbox=process "
            "to run candidates without it"
        )
    if not _warned:
        _warned = True
        log.warning(
            "SANDBOX WEAKENED: %s. Candidates run with the process sandbox, WITHOUT: %s. "
            "Run `evoforge doctor` for details; do not evaluate untrusted code on this machine.",
            problem,
            "; ".join(MISSING_WITHOUT_BUBBLEWRAP),
        )
    return ProcessSandbox(user=user)
