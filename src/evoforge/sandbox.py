"""Sandbox: where a candidate's process tree runs. The seam between an Executor and the OS.

An Executor builds the argv, the working directory (a private scratch dir), the environment and
the pipes; a ``Sandbox`` only decides *how* the process is started and how its whole tree is
killed. ``ProcessSandbox`` is today's default; a bubblewrap sandbox (no network, read-only
filesystem, PID namespace) will implement the same two methods.

What ``ProcessSandbox`` protects today:

- **secrets**: the environment is exactly what the executor passes (see :func:`minimal_env`:
  an allow-list such as PATH/LANG plus HOME=TMPDIR=scratch), so API keys in the parent's
  environment are not inherited;
- **runaway processes**: the candidate runs in its own session / process group, and
  ``kill_tree`` SIGKILLs the whole group (grandchildren included) on timeout and after every
  evaluation; the worker also sets rlimits (address space, CPU time, no core files);
- **stdin / result forgery via stdout**: stdin is /dev/null and the result travels on a
  dedicated pipe, so printing a fake result to stdout changes nothing.

What it does NOT protect yet (use the bubblewrap sandbox, or run untrusted code in a VM):

- the network is reachable;
- the filesystem is the user's: a candidate can read and write anything the user can
  (scratch is private by convention only);
- a process that calls ``setsid()`` / double-forks into a new session escapes ``kill_tree``;
- the candidate runs inside the evaluator's process, so it can tamper with the evaluator or
  write to the result pipe (it can find the fd in /proc/self/fd); only the "hardened" evaluator
  form of the design (candidate called through the sandbox) prevents score forgery.
"""

from __future__ import annotations

import asyncio
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ProcessSandbox", "Sandbox", "minimal_env"]


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


class Sandbox(ABC):
    """Starts a process (tree) for one evaluation and can kill that whole tree."""

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
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in ``cwd`` with exactly ``env`` (nothing inherited), stdin from
        /dev/null, ``stdout``/``stderr`` going to the given file descriptors and ``pass_fds``
        kept open (same numbers) in the child. Raise ``OSError`` if it cannot start."""

    @abstractmethod
    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        """Kill ``proc`` and everything it started. Idempotent; never raises."""


class ProcessSandbox(Sandbox):
    """A plain child process in a new session; ``kill_tree`` SIGKILLs its process group.

    See the module docstring for what this does and does not protect against.
    """

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        pass_fds: Sequence[int],
        stdout: int,
        stderr: int,
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            close_fds=True,
            start_new_session=True,
        )

    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        # The child is a session and group leader (start_new_session), so its pid is the pgid.
        # Linux does not reuse a pid while a group with that id still has members, so this
        # cannot hit an unrelated group; ESRCH just means everything is already gone.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
