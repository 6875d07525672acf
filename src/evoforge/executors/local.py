"""LocalExecutor: each evaluation in a fresh subprocess on this machine, N at a time.

Per evaluation: a private scratch dir holding the candidate, a ``python -I _worker.py <request>``
process started through a :class:`~evoforge.sandbox.Sandbox` (bubblewrap where it works: no
network, read-only system, PID namespace, size-capped tmpfs scratch; see ``evoforge.sandbox``),
a minimal environment, rlimits set by the worker (address space, CPU, file size, open files,
processes), stdout/stderr read concurrently with a head+tail cap,
the result read from a dedicated pipe (one JSON object, validated again here), a wall-clock
deadline enforced from outside by killing the whole process group, and after every outcome
the group killed and the scratch dir removed.

Hardened form (``evaluate(candidate)``): a fresh candidate process per evaluation, and by default
(``persistent_evaluator``) one trusted evaluator process per slot that serves evaluation after
evaluation: per job it gets the job pipe, its own output and result pipes and the channel to the
candidate over a UNIX socket (SCM_RIGHTS), so every evaluation is captured and judged on its own;
after a timeout, crash or out-of-memory a fresh evaluator takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoforge.errors import ConfigError, EditError, ProblemError
from evoforge.executors.base import Executor
from evoforge.executors.results import (
    FINGERPRINT_FRAME,
    MAX_RESULT_BYTES,
    Limits,
    WorkerOutcome,
    interpret,
    split_fingerprint,
)
from evoforge.problem import evaluator_form
from evoforge.program import EvalResult, Status
from evoforge.sandbox import (
    BubblewrapSandbox,
    ProcessSandbox,
    Sandbox,
    make_sandbox,
    minimal_env,
    reap_orphaned_sandboxes,
    sweep_dead_lifelines,
)

if TYPE_CHECKING:
    from evoforge.config import EvaluationConfig

__all__ = ["FingerprintHook", "LocalExecutor"]

#: Called with a fingerprint (``"sha256:<hex>"``) the evaluator computed for the candidate
#: being evaluated: an earlier result to answer with instead (the evaluation is then killed),
#: or None to let it go on. See :mod:`evoforge.executors.cache`.
FingerprintHook = Callable[[str], Awaitable[EvalResult | None]]

log = logging.getLogger("evoforge.executor")

_WORKER = Path(__file__).resolve().with_name("_worker.py")
_SRC_ROOT = str(Path(__file__).resolve().parents[2])  # lets evaluators import evoforge.*
_GRACE = 5.0  # seconds to wait for a SIGKILLed process to be reaped
_swept = False  # orphaned sandboxes of dead controllers are reaped once per process
_warned_root = False  # the process sandbox fell back to root (said once per process)
_swept_dirs: set[str] = set()  # scratch parents already cleaned of dead controllers' dirs
_OWNER = ".owner.lock"  # flock'd by the live executor that owns an evoforge-run-* dir
_PIPE_GRACE = 1.0  # then for its pipes to close (a process that escaped the group holds them)
_CANDIDATE_GRACE = 0.5  # for a hardened candidate to exit after its evaluator did
_SERVER_JOBS = 200  # evaluations a persistent evaluator serves before a fresh one takes over


class _Capture(asyncio.Protocol):
    """Reads a pipe to EOF keeping at most ``head`` + ``tail`` bytes; counts the rest."""

    def __init__(self, head: int, tail: int, done: asyncio.Future[None]) -> None:
        self._head_cap = head
        self._tail_cap = tail
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.done = done
        #: a result pipe's: the worker's fingerprint line (``#fp ...``) as soon as it is
        #: complete, or b"" once the pipe holds anything else or reached EOF
        self.line: asyncio.Future[bytes] | None = None

    def _check_line(self) -> None:
        assert self.line is not None
        head = self.head
        n = min(len(head), len(FINGERPRINT_FRAME))
        if head[:n] != FINGERPRINT_FRAME[:n]:
            self.line.set_result(b"")
        elif (end := head.find(b"\n")) >= 0:
            self.line.set_result(bytes(head[:end]))
        elif len(head) > 200:
            self.line.set_result(b"")

    def data_received(self, data: bytes) -> None:
        room = self._head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
            if self.line is not None and not self.line.done():
                self._check_line()
        if not data:
            return
        if self._tail_cap <= 0:
            self.dropped += len(data)
            return
        if len(data) >= self._tail_cap:
            self.dropped += len(self.tail) + len(data) - self._tail_cap
            self.tail = bytearray(data[-self._tail_cap:])
            return
        self.tail += data
        excess = len(self.tail) - self._tail_cap
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def eof_received(self) -> bool | None:
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.line is not None and not self.line.done():
            self.line.set_result(b"")
        if not self.done.done():
            self.done.set_result(None)

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if self.dropped:
            return f"{head}\n... [{self.dropped} bytes dropped] ...\n{tail}"
        return head + tail


@dataclass(eq=False)
class _Proc:
    """One sandboxed worker process: its pipes, captures and scratch dir."""

    key: int
    role: str
    scratch: Path
    loop: asyncio.AbstractEventLoop
    proc: asyncio.subprocess.Process | None = None
    start_w: int | None = None  # the job goes here; the worker waits for it
    writer_loop: asyncio.AbstractEventLoop | None = None  # while a large job is being written
    caps: list[_Capture] = field(default_factory=list)  # stdout, stderr[, result]
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    files: list[Any] = field(default_factory=list)
    control: socket.socket | None = None  # a server's job socket (SCM_RIGHTS)
    chan_ends: tuple[int, int] | None = None  # a served candidate's peer ends (in, out)
    jobs: int = 0  # evaluations a server has run


@dataclass(eq=False)
class _Unit:
    """What one evaluation needs: the plain worker, or the evaluator and candidate pair."""

    procs: list[_Proc]


def _sweep_dead_scratch(parent: Path, pattern: str = "evoforge-run-*") -> None:
    """Remove ``pattern`` dirs under ``parent`` whose owner died (its ``_OWNER`` flock is
    free): scratch left behind by a controller (or a Ray actor) killed before it could clean
    up."""
    try:
        candidates = list(parent.glob(pattern))
    except OSError:
        return
    for d in candidates:
        try:
            fd = os.open(d / _OWNER, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its executor is alive
        else:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)


def _interpreter_path(python: str) -> str:
    """``evaluation.python`` as an absolute path without ``..`` (workers start in their scratch
    dir, inside a sandbox): relative to this process's cwd, a bare name looked up on PATH; the
    directories are resolved but not the file itself, so a venv's ``bin/python`` link stays the
    venv's."""
    if os.sep not in python:
        found = shutil.which(python)
        if found is None:
            return python  # reported as a missing interpreter when a worker starts
        python = found
    path = Path(python) if os.path.isabs(python) else Path.cwd() / python
    try:
        return str(path.parent.resolve(strict=True) / path.name)
    except OSError:
        return str(path)


def interpreter_paths(python: str) -> list[Path]:
    """What a sandbox must show read-only for ``python`` to run evoforge's worker: evoforge's
    source, the interpreter's installation (a venv and the base it links to)."""
    exe = Path(python)
    if not exe.is_absolute():
        found = shutil.which(python)
        exe = Path(found) if found else exe
    paths = [Path(_SRC_ROOT), exe.parent.parent, exe.resolve().parent.parent]
    if exe.resolve() == Path(sys.executable).resolve():
        paths += [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    return paths


def _snapshot_ignore(hide: Sequence[Path]) -> Any:
    """copytree's ``ignore``: run dirs (any dir holding an ``evoforge.db``, and ``hide``),
    ``.git`` and bytecode caches stay out of the sandbox's copy of the problem dir."""
    hidden = {str(h) for h in hide}

    def ignore(directory: str, names: list[str]) -> set[str]:
        out = {n for n in names if n in (".git", "__pycache__", ".lock")}
        for n in names:
            full = os.path.join(directory, n)
            if full in hidden or (os.path.isdir(full) and os.path.exists(
                    os.path.join(full, "evoforge.db"))):
                out.add(n)
        return out

    return ignore


def _world_readable(root: Path) -> None:
    """Directories 0755, files 0644 (0755 if executable): readable by the sandbox user."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            full = os.path.join(dirpath, f)
            if not os.path.islink(full):
                os.chmod(full, 0o755 if os.stat(full).st_mode & 0o111 else 0o644)


class LocalExecutor(Executor):
    """Runs evaluations as local subprocesses, at most ``workers`` at a time.

    ``evaluate`` never raises for anything the candidate or evaluator does; it raises
    :class:`~evoforge.errors.ConfigError` only when the interpreter cannot be started at all.
    """

    #: ``evaluate`` takes ``fingerprint=``, a :data:`FingerprintHook`
    fingerprints = True

    def __init__(
        self,
        problem_dir: Path,
        *,
        evaluator: str = "evaluator.py",
        program_name: str = "program.py",
        workers: int = 2,
        timeout: float = 60.0,
        memory_mb: int | None = 4096,
        score_metric: str = "combined_score",
        cascade_thresholds: Sequence[float] = (),
        minimize: bool = False,
        artifact_chars: int = 4000,
        env_allow: Sequence[str] = ("PATH", "LANG", "LC_ALL", "TZ"),
        python: str | None = None,
        sandbox: Sandbox | str | None = None,
        scratch_root: Path | None = None,
        scratch_mb: int | None = 256,
        max_processes: int | None = 64,
        max_open_files: int | None = 256,
        warm_pool: bool = True,
        preload: Sequence[str] = (),
        sandbox_user: str | int | None = "auto",
        sandbox_paths: Sequence[str] = (),
        hide: Sequence[Path] = (),
        persistent_evaluator: bool = True,
    ) -> None:
        self.problem_dir = Path(problem_dir).resolve()
        evaluator_path = self.problem_dir / evaluator
        if not evaluator_path.is_file():
            raise ProblemError(
                f"evaluator not found: {evaluator_path}; create it with a function "
                "evaluate(program_path) -> dict[str, float]"
            )
        # "NAME/": a program of several files (evoforge.program_files), written as directory NAME
        self.multi_file = program_name.endswith("/")
        plain = program_name.removesuffix("/") if self.multi_file else program_name
        if not plain or Path(plain).name != plain or plain in (".", ".."):
            raise ConfigError(
                f"program_name must be a plain file name such as 'program.py' (or 'program/' for "
                f"a program of several files), got {program_name!r}"
            )
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if not timeout > 0:
            raise ConfigError(f"timeout must be positive (seconds), got {timeout}")
        if memory_mb is not None and memory_mb < 16:
            raise ConfigError(
                f"memory_mb must be at least 16 (or null for no limit), got {memory_mb}"
            )
        if artifact_chars < 0:
            raise ConfigError(f"artifact_chars must be >= 0, got {artifact_chars}")
        if scratch_mb is not None and scratch_mb < 1:
            raise ConfigError(f"scratch_mb must be at least 1 (or null), got {scratch_mb}")
        if max_processes is not None and max_processes < 1:
            raise ConfigError(f"max_processes must be at least 1 (or null), got {max_processes}")
        if max_open_files is not None and max_open_files < 16:
            raise ConfigError(
                f"max_open_files must be at least 16 (or null), got {max_open_files}"
            )
        self.evaluator = evaluator
        self.form = evaluator_form(evaluator_path)
        if self.form == "hardened":
            # imported here once so its bytecode is cached: workers never write bytecode
            import evoforge.candidate  # noqa: F401
        self.warm_pool = bool(warm_pool)
        self.preload = tuple(preload)
        # hardened form: one trusted evaluator process per slot serves evaluation after
        # evaluation (each against a fresh candidate process in a fresh sandbox)
        self.persistent = bool(persistent_evaluator) and self.form == "hardened"
        self.program_name = program_name
        self.workers = int(workers)
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        self.score_metric = score_metric
        self.cascade_thresholds = tuple(float(t) for t in cascade_thresholds)
        self.minimize = bool(minimize)  # objective.direction: which side of a threshold is cut
        self.artifact_chars = int(artifact_chars)
        self.env_allow = tuple(env_allow)
        self.python = _interpreter_path(python or sys.executable)
        self.scratch_root = Path(scratch_root) if scratch_root is not None else None
        self.scratch_mb = scratch_mb
        self.max_processes = max_processes
        self.max_open_files = max_open_files
        self._limits = Limits(timeout=self.timeout, memory_mb=self.memory_mb,
                              score_metric=self.score_metric, artifact_chars=self.artifact_chars)
        # None / "auto": bubblewrap where it works, else the process sandbox with one warning
        if sandbox is None or isinstance(sandbox, str):
            sandbox = make_sandbox(sandbox or "auto", user=sandbox_user, extra_paths=sandbox_paths)
        self.hide = tuple(Path(h).resolve() for h in hide)  # e.g. the run dir: never visible
        self._snapshot: Path | None = None  # the problem dir as the sandbox user reads it
        self._sandbox = sandbox
        self._check_user_can_run(explicit=str(sandbox_user) != "auto")
        global _swept
        if not _swept:
            _swept = True  # once per process: a previous controller may have died mid-spawn
            sweep_dead_lifelines()
            if isinstance(sandbox, BubblewrapSandbox):
                reap_orphaned_sandboxes(str(_WORKER))
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._scratch: set[Path] = set()
        self._root: Path | None = None  # this executor's dir of scratch dirs, flock'd
        self._root_lock: int | None = None
        self._closed = False
        self._seq = 0
        self._pool: deque[_Unit] = deque()  # started workers waiting for a job
        self._views: dict[str, tuple[list[Path], list[Path]]] = {}  # see _view()
        self._spawning: set[asyncio.Task[None]] = set()  # refills of the pool
        self._servers: list[_Proc] = []  # idle persistent evaluators
        self._busy_servers = 0

    @classmethod
    def from_config(
        cls, problem_dir: Path, cfg: EvaluationConfig, *, score_metric: str, program_name: str,
        hide: Sequence[Path] = (), evaluator: str = "evaluator.py", minimize: bool = False,
    ) -> LocalExecutor:
        return cls(
            problem_dir,
            evaluator=evaluator,
            program_name=program_name,
            workers=cfg.workers,
            timeout=cfg.timeout,
            memory_mb=cfg.memory_mb,
            score_metric=score_metric,
            cascade_thresholds=cfg.cascade_thresholds,
            minimize=minimize,
            artifact_chars=cfg.artifact_chars,
            env_allow=cfg.env_allow,
            python=cfg.python,
            sandbox=cfg.sandbox,
            scratch_mb=cfg.scratch_mb,
            max_processes=cfg.max_processes,
            max_open_files=cfg.max_open_files,
            warm_pool=cfg.warm_pool,
            preload=cfg.preload,
            sandbox_user=cfg.sandbox_user,
            sandbox_paths=cfg.sandbox_paths,
            hide=hide,
            persistent_evaluator=cfg.persistent_evaluator,
        )

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox every evaluation runs in."""
        return self._sandbox

    @property
    def slots(self) -> int:
        return self.workers

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem = asyncio.Semaphore(self.workers)
            self._sem_loop = loop
        return self._sem

    async def evaluate(self, code: str, *, program_id: int = 0,
                       fingerprint: FingerprintHook | None = None) -> EvalResult:
        """``fingerprint``: ask the evaluator for the candidate's fingerprint (if it defines
        ``fingerprint()``) ahead of the evaluation, in the same process, and hand it to this
        hook; an earlier result the hook answers with ends the evaluation (killed) and is
        returned instead. Without a hook (or a ``fingerprint()``), nothing changes."""
        if self._closed:
            return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
        if self.multi_file:  # the worker writes the tree: check it here, where errors are data
            from evoforge.program_files import unpack

            try:
                unpack(code)
            except EditError as e:
                return EvalResult(Status.INVALID, reason=f"not a valid program of several "
                                                         f"files: {e}")
        async with self._semaphore():
            if self._closed:
                return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
            if self.persistent:
                return await self._run_served(code, fingerprint)
            return await self._run_one(code, program_id, fingerprint)

    async def aclose(self) -> None:
        """Kill every running process tree and remove every scratch dir. Idempotent."""
        self._closed = True
        loop = asyncio.get_running_loop()
        ours = [t for t in self._spawning if t.get_loop() is loop]
        if ours:  # a refill finishing now sees _closed and disposes of what it started
            await asyncio.gather(*ours, return_exceptions=True)
        while self._pool:
            for p in self._pool.popleft().procs:
                await self._dispose(p)
        while self._servers:
            await self._dispose(self._servers.pop())
        for proc in list(self._running.values()):
            self._sandbox.kill_tree(proc)
        for scratch in list(self._scratch):
            shutil.rmtree(scratch, ignore_errors=True)
            self._scratch.discard(scratch)
        self._drop_root()

    def _drop_root(self) -> None:
        """Once closed and idle: remove this executor's scratch parent and release its lock."""
        if not self._closed or self._running:
            return
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        if self._root_lock is not None:
            os.close(self._root_lock)
            self._root_lock = None

    def _scratch_parent(self) -> Path:
        """This executor's own dir for scratch dirs, created on first use. It holds a flock'd
        owner file, so a later executor can tell it from one whose controller died."""
        if self._root is not None:
            return self._root
        base = self.scratch_root if self.scratch_root is not None else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        if str(base) not in _swept_dirs:
            _swept_dirs.add(str(base))
            _sweep_dead_scratch(base)
        new = Path(tempfile.mkdtemp(prefix="evoforge-new-", dir=base))
        fd = os.open(new / _OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        root = new.with_name("evoforge-run-" + new.name.removeprefix("evoforge-new-"))
        if self._sandbox.user is not None and not self._sandbox.remaps:
            os.chmod(new, 0o711)  # the process sandbox's user reaches its own scratch dir
        new.rename(root)  # visible to sweepers only once locked
        self._root, self._root_lock = root, fd
        return root

    # -- processes: spawned cold, or ahead of time into the warm pool -------------------------

    async def _spawn(self, role: str, chan: tuple[int, int] | None = None) -> _Proc:
        """Start one worker process (``plain``, ``evaluator`` or ``candidate``) in its own
        sandbox and scratch dir. It imports ``preload`` and then waits for its job."""
        loop = asyncio.get_running_loop()
        self._seq += 1
        key = self._seq
        scratch = Path(
            tempfile.mkdtemp(prefix=f"evoforge-{role[0]}{key}-", dir=self._scratch_parent())
        )
        self._scratch.add(scratch)
        if self._sandbox.user is not None and not self._sandbox.remaps:
            os.chown(scratch, *self._sandbox.user)  # the process sandbox's user works there
        child_fds: list[int] = []
        p = _Proc(key=key, role=role, scratch=scratch, loop=loop)
        try:
            control_fd = None
            if role == "server":  # output and results travel per job, over ``control``
                null = os.open(os.devnull, os.O_RDWR)
                child_fds += [null, os.dup(null)]
                p.control, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                control_fd = child_sock.detach()
                child_fds.append(control_fd)
            else:  # stdout, stderr and, but for a candidate, the result
                child_fds += await self._captures(p, result=role != "candidate")
            start_r: int | None = None
            if role != "server":
                start_r, p.start_w = os.pipe()
                child_fds.append(start_r)
            config: dict[str, Any] = {
                "role": role,
                "start_fd": start_r,
                "control_fd": control_fd,
                "result_fd": child_fds[2] if role not in ("candidate", "server") else None,
                "chan_in": chan[0] if chan else None,
                "chan_out": chan[1] if chan else None,
                "problem_dir": str(self._problem_path(role)),
                "evaluator": self.evaluator,
                "memory_mb": self.memory_mb,
                "cpu_seconds": math.ceil(self.timeout) + 1,
                "file_mb": self.scratch_mb,
                "open_files": self.max_open_files,
                "max_processes": self.max_processes,
                "score_metric": self.score_metric,
                "cascade_thresholds": list(self.cascade_thresholds),
                "minimize": self.minimize,
                "artifact_chars": self.artifact_chars,
                "extra_path": [_SRC_ROOT],
                "preload": list(self.preload),
            }
            argv = [self.python, "-I", str(_WORKER), json.dumps(config)]
            passed = [fd for fd in (config["result_fd"], start_r, control_fd, *(chan or ()))
                      if fd is not None]
            try:
                # A sandbox reports a missing interpreter only as an exit status: check first.
                if shutil.which(self.python) is None:
                    raise FileNotFoundError(f"no executable file {self.python!r}")
                p.proc = await self._sandbox.spawn(
                    argv,
                    cwd=scratch,
                    env=minimal_env(self.env_allow, scratch),
                    pass_fds=passed,
                    stdout=child_fds[0],
                    stderr=child_fds[1],
                    readable=self._view(role)[0],
                    scratch_mb=self.scratch_mb,
                    hidden=self._view(role)[1],
                    binds=self._binds(role),
                )
            except OSError as e:
                raise ConfigError(
                    f"cannot start the evaluation interpreter {self.python!r}: {e}; "
                    "set evaluation.python to a working Python 3 interpreter"
                ) from e
            self._running[key] = p.proc
            return p
        except BaseException:
            self._discard(p)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)

    async def _captures(self, p: _Proc, *, result: bool) -> list[int]:
        """Pipes read into ``p.caps`` (stdout and stderr capped at ``artifact_chars``, head and
        tail; the result pipe, if ``result``); returns their write ends, for the worker."""
        loop = asyncio.get_running_loop()
        half = self.artifact_chars // 2
        sizes = [(half, self.artifact_chars - half)] * 2 + [(MAX_RESULT_BYTES, 0)] * result
        ends: list[int] = []
        for i, (head, tail) in enumerate(sizes):
            r, w = os.pipe()
            ends.append(w)
            f = os.fdopen(r, "rb", buffering=0)
            p.files.append(f)
            cap = _Capture(head, tail, loop.create_future())
            if i == 2:  # the result pipe: a fingerprint line may come first
                cap.line = loop.create_future()
            transport, _ = await loop.connect_read_pipe(lambda c=cap: c, f)  # type: ignore[misc]
            p.transports.append(transport)
            p.caps.append(cap)
        return ends

    async def _new_unit(self) -> _Unit:
        if self.form == "plain":
            return _Unit([await self._spawn("plain")])
        if self.persistent:
            return _Unit([await self._new_candidate()])
        to_cand_r, to_cand_w = os.pipe()  # evaluator -> candidate: requests
        to_eval_r, to_eval_w = os.pipe()  # candidate -> evaluator: replies
        procs: list[_Proc] = []
        try:
            procs.append(await self._spawn("evaluator", (to_eval_r, to_cand_w)))
            procs.append(await self._spawn("candidate", (to_cand_r, to_eval_w)))
        except BaseException:
            for p in procs:
                self._discard(p)
            raise
        finally:
            for fd in (to_cand_r, to_cand_w, to_eval_r, to_eval_w):
                os.close(fd)
        return _Unit(procs)

    async def _new_candidate(self) -> _Proc:
        """A candidate process for a persistent evaluator: it holds its ends of the channel;
        the evaluator's ends wait in ``chan_ends`` until the job hands them over."""
        to_cand_r, to_cand_w = os.pipe()  # evaluator -> candidate: requests
        to_eval_r, to_eval_w = os.pipe()  # candidate -> evaluator: replies
        try:
            p = await self._spawn("candidate", (to_cand_r, to_eval_w))
        except BaseException:
            os.close(to_eval_r)
            os.close(to_cand_w)
            raise
        finally:
            os.close(to_cand_r)
            os.close(to_eval_w)
        p.chan_ends = (to_eval_r, to_cand_w)
        return p

    async def _take_server(self) -> _Proc:
        """An idle persistent evaluator of this event loop, or a new one."""
        loop = asyncio.get_running_loop()
        while self._servers:
            server = self._servers.pop()
            if server.loop is loop and server.proc is not None and server.proc.returncode is None:
                self._busy_servers += 1
                return server
            await self._dispose(server)
        server = await self._spawn("server")
        self._busy_servers += 1
        return server

    def _release_server(self, server: _Proc, reuse: bool) -> None:
        self._busy_servers -= 1
        server.jobs += 1
        if reuse and not self._closed and server.jobs < _SERVER_JOBS:
            self._servers.append(server)
        else:
            self._discard(server)

    async def _take_unit(self) -> _Unit:
        loop = asyncio.get_running_loop()
        unit: _Unit | None = None
        while unit is None:
            while self._pool and unit is None:
                pooled = self._pool.popleft()
                if all(p.loop is loop and p.proc is not None and p.proc.returncode is None
                       for p in pooled.procs):
                    unit = pooled
                else:  # from an earlier event loop, or it died while waiting
                    for p in pooled.procs:
                        await self._dispose(p)
            starting = [t for t in self._spawning if t.get_loop() is loop and not t.done()]
            if unit is not None or not starting:
                break
            # a worker already starting is ready sooner than a cold one
            await asyncio.wait(starting, return_when=asyncio.FIRST_COMPLETED)
        if self.warm_pool and not self._closed:
            task = loop.create_task(self._refill())
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)
        return unit if unit is not None else await self._new_unit()

    async def _refill(self) -> None:
        others = len(self._spawning) - 1  # refills already starting (this one is in the set)
        if self._closed or len(self._pool) + others >= self.workers:
            return
        try:
            unit = await self._new_unit()
        except Exception:  # noqa: BLE001 - the next evaluation starts cold and reports it
            return
        if self._closed:
            for p in unit.procs:
                await self._dispose(p)
        else:
            self._pool.append(unit)

    async def _dispose(self, p: _Proc) -> None:
        """:meth:`_discard`, after waiting (briefly) for the tree to be gone, when ``p`` belongs
        to the running event loop (one from an earlier loop can only be killed)."""
        if p.proc is not None and p.loop is asyncio.get_running_loop():
            self._sandbox.kill_tree(p.proc)
            await self._sandbox.wait_gone(p.proc, _GRACE)
        self._discard(p)

    def _discard(self, p: _Proc) -> None:
        """Kill ``p``'s tree (if started) and free everything it holds. Never raises."""
        if p.proc is not None:
            self._sandbox.kill_tree(p.proc)
            self._sandbox.release(p.proc)
        self._running.pop(p.key, None)
        for tr in p.transports:
            with contextlib.suppress(Exception):
                tr.close()
        for f in p.files:
            with contextlib.suppress(Exception):
                f.close()
        p.transports.clear()
        p.files.clear()
        if p.control is not None:
            p.control.close()
            p.control = None
        for fd in p.chan_ends or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        p.chan_ends = None
        self._close_start(p)
        shutil.rmtree(p.scratch, ignore_errors=True)
        self._scratch.discard(p.scratch)

    def _send_job(self, p: _Proc, job: bytes) -> None:
        """Hand the job to a waiting worker without blocking the event loop: what does not fit
        the pipe now is written as the worker reads it; then the pipe is closed (EOF = go)."""
        assert p.start_w is not None
        fd = p.start_w
        os.set_blocking(fd, False)
        rest = memoryview(job)
        try:
            rest = rest[os.write(fd, rest):]
        except BlockingIOError:
            pass
        except OSError:
            rest = rest[:0]  # the worker is gone: its exit status tells why
        if not rest:
            self._close_start(p)
            return
        loop = asyncio.get_running_loop()

        def on_writable() -> None:
            nonlocal rest
            try:
                rest = rest[os.write(fd, rest):]
            except BlockingIOError:
                return
            except OSError:
                rest = rest[:0]
            if not rest:
                self._close_start(p)

        loop.add_writer(fd, on_writable)
        p.writer_loop = loop

    def _close_start(self, p: _Proc) -> None:
        if p.start_w is None:
            return
        if p.writer_loop is not None:
            with contextlib.suppress(Exception):
                p.writer_loop.remove_writer(p.start_w)
            p.writer_loop = None
        with contextlib.suppress(OSError):
            os.close(p.start_w)
        p.start_w = None

    # -- one evaluation ---------------------------------------------------------------------

    def _job(self, code: str, fingerprint: FingerprintHook | None) -> bytes:
        job: dict[str, Any] = {"program": code, "program_name": self.program_name}
        if fingerprint is not None:
            job["fingerprint"] = True
        return json.dumps(job).encode()

    @staticmethod
    async def _await_end(end: Awaitable[Any], result: _Capture,
                         fingerprint: FingerprintHook | None,
                         deadline: float) -> tuple[bool, EvalResult | None]:
        """Wait for ``end`` (the evaluation is over) until ``deadline``: whether it timed out,
        and the result ``fingerprint`` answered with when the worker's fingerprint line (on
        the ``result`` pipe) found one before the end."""
        if fingerprint is None or result.line is None:
            try:
                await asyncio.wait_for(end, max(deadline - time.monotonic(), 0.0))
                return False, None
            except TimeoutError:
                return True, None
        end_task = asyncio.ensure_future(end)
        line: asyncio.Future[bytes] | None = result.line
        ask: asyncio.Future[EvalResult | None] | None = None
        try:
            while True:
                watched = [f for f in (end_task, line, ask) if f is not None]
                done, _ = await asyncio.wait(watched, timeout=max(deadline - time.monotonic(), 0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    return True, None
                if ask is not None and ask in done:
                    reused = ask.result()
                    if reused is not None:
                        return False, reused
                    ask = None
                if end_task in done:
                    return False, None
                if line is not None and line in done:
                    fp, _ = split_fingerprint(line.result() + b"\n")
                    line = None
                    if fp is not None:
                        ask = asyncio.ensure_future(fingerprint(fp))
        finally:
            left_over = [t for t in (end_task, ask) if t is not None and not t.done()]
            for task in left_over:
                task.cancel()
            await asyncio.gather(*left_over, return_exceptions=True)

    async def _run_one(self, code: str, program_id: int,
                       fingerprint: FingerprintHook | None = None) -> EvalResult:
        unit = await self._take_unit()
        if self._closed:  # closed while this evaluation waited for its worker
            for p in unit.procs:
                self._discard(p)
            self._drop_root()
            return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        main, cand = unit.procs[0], (unit.procs[1] if len(unit.procs) > 1 else None)
        try:
            job = self._job(code, fingerprint)
            for p in unit.procs:
                self._send_job(p, job)
            assert main.proc is not None
            timed_out, reused = await self._await_end(main.proc.wait(), main.caps[2],
                                                      fingerprint, deadline)
            if reused is not None:  # an earlier program's result: the rest is not needed
                for p in unit.procs:
                    assert p.proc is not None
                    self._sandbox.kill_tree(p.proc)
                for p in unit.procs:
                    assert p.proc is not None
                    await self._sandbox.wait_gone(p.proc, _GRACE)
                return replace(reused, eval_time=time.monotonic() - t0)
            cand_status = None
            if cand is not None and cand.proc is not None:
                if not timed_out and cand.proc.returncode is None:
                    # it exits by itself once the evaluator closed the channel (or it died
                    # earlier: how is part of the reason); a busy one is killed below
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(cand.proc.wait(), _CANDIDATE_GRACE)
                if cand.proc.returncode is not None:
                    cand_status = self._sandbox.exit_status(cand.proc.returncode)
            for p in unit.procs:
                assert p.proc is not None
                self._sandbox.kill_tree(p.proc)  # stray children and threads never outlive it
            for p in unit.procs:
                assert p.proc is not None
                await self._sandbox.wait_gone(p.proc, _GRACE)
            # Pipes reach EOF once the whole group is dead; a process that escaped the group
            # (setsid) may hold them open, so wait only briefly and then stop reading.
            await asyncio.wait([c.done for p in unit.procs for c in p.caps], timeout=_PIPE_GRACE)

            out_cap, err_cap, res_cap = main.caps
            outputs = {"stdout": out_cap.text(), "stderr": err_cap.text()}
            if cand is not None:  # the candidate's output is what the next prompt needs
                outputs = {
                    "stdout": cand.caps[0].text(),
                    "stderr": cand.caps[1].text(),
                    "evaluator_stdout": outputs["stdout"],
                    "evaluator_stderr": outputs["stderr"],
                }
            return interpret(WorkerOutcome(
                returncode=self._sandbox.exit_status(main.proc.returncode),
                timed_out=timed_out,
                result=bytes(res_cap.head),
                result_dropped=res_cap.dropped,
                outputs=outputs,
                candidate_status=cand_status,
                closed=self._closed,
            ), self._limits, eval_time=time.monotonic() - t0)
        finally:
            for p in unit.procs:
                self._discard(p)
            self._drop_root()

    async def _run_served(self, code: str,
                          fingerprint: FingerprintHook | None = None) -> EvalResult:
        """One hardened evaluation on a persistent evaluator and a fresh candidate process."""
        server = await self._take_server()
        try:
            unit = await self._take_unit()
        except BaseException:
            self._release_server(server, reuse=False)
            raise
        cand = unit.procs[0]
        loop = asyncio.get_running_loop()
        jobp = _Proc(key=0, role="job", scratch=Path("/nonexistent/evoforge-job"), loop=loop)
        reuse = False
        try:
            if self._closed:  # closed while this evaluation waited for its processes
                return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
            t0 = time.monotonic()
            deadline = t0 + self.timeout
            theirs = await self._captures(jobp, result=True)
            start_r, jobp.start_w = os.pipe()
            assert server.control is not None and cand.chan_ends is not None
            try:  # a dead server: the result pipe just reaches EOF without a result
                socket.send_fds(server.control, [b"j"], [start_r, *theirs, *cand.chan_ends])
            except OSError:
                pass
            finally:
                for fd in (start_r, *theirs, *cand.chan_ends):
                    os.close(fd)
                cand.chan_ends = None
            job = self._job(code, fingerprint)
            self._send_job(jobp, job)
            self._send_job(cand, job)
            out_cap, err_cap, res_cap = jobp.caps
            # EOF on the result pipe: the evaluator answered, or its process ended
            timed_out, reused = await self._await_end(asyncio.shield(res_cap.done), res_cap,
                                                      fingerprint, deadline)
            assert cand.proc is not None and server.proc is not None
            if reused is not None:  # an earlier program's result: the rest is not needed
                # the candidate goes; the evaluator, finding it gone at its next call, answers
                # and serves on (one that keeps computing on its own is killed after a grace)
                self._sandbox.kill_tree(cand.proc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(res_cap.done),
                                           min(_PIPE_GRACE, max(deadline - time.monotonic(), 0)))
                answered = res_cap.done.done() and server.proc.returncode is None
                if not answered:
                    self._sandbox.kill_tree(server.proc)
                    await self._sandbox.wait_gone(server.proc, _GRACE)
                await self._sandbox.wait_gone(cand.proc, _GRACE)
                reuse = answered
                return replace(reused, eval_time=time.monotonic() - t0)
            cand_status = None
            if not timed_out and cand.proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cand.proc.wait(), _CANDIDATE_GRACE)
            if cand.proc.returncode is not None:
                cand_status = self._sandbox.exit_status(cand.proc.returncode)
            server_dead = timed_out or not res_cap.head
            self._sandbox.kill_tree(cand.proc)
            if server_dead:
                self._sandbox.kill_tree(server.proc)
            await self._sandbox.wait_gone(cand.proc, _GRACE)
            if server_dead:
                await self._sandbox.wait_gone(server.proc, _GRACE)
            await asyncio.wait([c.done for c in (*jobp.caps, *cand.caps)], timeout=_PIPE_GRACE)
            returncode = None
            if server_dead and server.proc.returncode is not None:
                returncode = self._sandbox.exit_status(server.proc.returncode)
            result = interpret(WorkerOutcome(
                returncode=returncode,
                timed_out=timed_out,
                result=bytes(res_cap.head),
                result_dropped=res_cap.dropped,
                outputs={
                    "stdout": cand.caps[0].text(),
                    "stderr": cand.caps[1].text(),
                    "evaluator_stdout": out_cap.text(),
                    "evaluator_stderr": err_cap.text(),
                },
                candidate_status=cand_status,
                closed=self._closed,
            ), self._limits, eval_time=time.monotonic() - t0)
            reuse = not server_dead and result.status not in (Status.CRASHED, Status.TIMEOUT)
            return result
        finally:
            self._discard(jobp)
            self._discard(cand)
            self._release_server(server, reuse)
            self._drop_root()

    def _problem_snapshot(self) -> Path:
        """The problem dir as a sandbox user reads it: a copy (taken once per executor) that
        this user can read whatever the original's permissions, without run dirs, ``.git`` and
        caches, and that later edits of the original do not change mid-run."""
        if self._snapshot is None:
            snap = self._scratch_parent() / "problem"
            try:
                shutil.copytree(self.problem_dir, snap, ignore=_snapshot_ignore(self.hide),
                                symlinks=False, ignore_dangling_symlinks=True)
                _world_readable(snap)
            except (OSError, shutil.Error) as e:
                raise ProblemError(
                    f"cannot copy the problem dir {self.problem_dir} for the sandbox user: {e}; "
                    "make its files readable, or remove unreadable files from it"
                ) from e
            self._snapshot = snap
        return self._snapshot

    def _binds(self, role: str) -> dict[Path, Path] | None:
        """A sandbox that runs as another user and can remap paths shows the snapshot at the
        problem dir's own path."""
        if role == "candidate" or self._sandbox.user is None or not self._sandbox.remaps:
            return None
        return {self.problem_dir: self._problem_snapshot()}

    def _problem_path(self, role: str) -> Path:
        """Where a worker of ``role`` finds the problem dir: the snapshot for a sandbox that runs
        as another user and cannot remap paths (the process sandbox as root)."""
        if role != "candidate" and self._sandbox.user is not None and not self._sandbox.remaps:
            return self._problem_snapshot()
        return self.problem_dir

    def _check_user_can_run(self, explicit: bool) -> None:
        """The process sandbox as root runs workers as the sandbox user: it must be able to
        start the interpreter and import evoforge's worker side. If it cannot, an explicit
        ``sandbox_user`` is an error naming the fix; ``auto`` runs them as root, loudly."""
        sb = self._sandbox
        if not isinstance(sb, ProcessSandbox) or sb.user is None:
            return
        base = self.scratch_root if self.scratch_root is not None else Path(tempfile.gettempdir())
        # through a shell, as a worker's own children start it: setpriv's exec can succeed
        # where an exec by the sandbox user itself fails (seen with a venv under /root)
        probe = sb.drop(["/bin/sh", "-c", 'exec "$0" "$@"', self.python, "-I", "-c",
                         f"import os, sys; sys.path.insert(0, {_SRC_ROOT!r}); "
                         "import evoforge.candidate; "
                         f"assert os.access({str(base)!r}, os.X_OK), 'cannot enter {base}'"])
        try:
            done = subprocess.run(probe, capture_output=True, timeout=60, cwd="/", check=False,
                                  env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            ok, why = done.returncode == 0, done.stderr.decode("utf-8", "replace").strip()[-300:]
        except (OSError, subprocess.SubprocessError) as e:
            ok, why = False, str(e)
        if ok:
            return
        hint = (f"the sandbox user (uid {sb.user[0]}) cannot run {self.python} with evoforge "
                f"from {_SRC_ROOT} and scratch dirs in {base} ({why}); make them readable and "
                "their directories searchable by that user (e.g. a venv outside /root), or set "
                "evaluation.sandbox_user=root")
        if explicit:
            raise ConfigError(hint)
        global _warned_root
        if not _warned_root:
            _warned_root = True
            log.warning("PROCESS SANDBOX AS ROOT: %s. Candidates run as root: do not evaluate "
                        "untrusted code on this machine.", hint)
        self._sandbox = ProcessSandbox(user=None)

    def _view(self, role: str) -> tuple[list[Path], list[Path]]:
        """What a worker of ``role`` must read (problem dir - not for a candidate -, evoforge's
        source, the interpreter), and what it must not see: a candidate does not see the problem
        dir (the evaluator, reference data) unless that holds the interpreter or the scratch
        dirs. Worked out once per role, not at every sandbox start."""
        if role in self._views:
            return self._views[role]
        paths = interpreter_paths(self.python)
        if role != "candidate":
            paths.insert(0, self.problem_dir)
        hidden: list[Path] = list(self.hide)
        if role == "candidate":
            base = self.scratch_root if self.scratch_root is not None else Path(tempfile.gettempdir())
            if not any(p.resolve().is_relative_to(self.problem_dir) for p in [*paths, base]):
                hidden.append(self.problem_dir)
        self._views[role] = (paths, hidden)
        return paths, hidden
