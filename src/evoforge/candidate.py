"""The hardened evaluator form: the candidate runs in its own sandbox, the evaluator calls it.

A hardened evaluator names its first parameter ``candidate``::

    def evaluate(candidate):
        n = 26
        centers = candidate.call("construct", n, timeout=10)   # plain JSON values back
        ...check them strictly...
        return {"combined_score": total}

and gets a :class:`Candidate`: a handle on the candidate program, which runs in a *separate*
sandboxed process (its own PID namespace, scratch dir and rlimits under bubblewrap). The
evaluator's process never imports or executes candidate code, so the candidate cannot patch the
checker, its clock or its comparisons; the score is the evaluator's return value, sent to the
controller over a pipe the candidate has no access to.

Everything crossing the channel is JSON, decoded here into plain ``dict``/``list``/``str``/
``int``/``float``/``bool``/``None``: no custom ``__eq__``/``__hash__``/``__float__`` survives,
NaN and infinities are rejected unless ``allow_nan=True``, replies above ``max_bytes`` are
refused before they are read, integers are capped at 4300 digits, nesting at Python's recursion
limit. The candidate side turns numpy arrays and scalars into lists and numbers; anything else
that is not JSON is reported as the candidate's error.

Stdlib only: it is imported by the evaluation worker, which must start fast.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time

TYPE_CHECKING = False  # typing is not imported at run time: it costs ms in every worker
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Candidate",
    "CandidateCrashed",
    "CandidateError",
    "CandidateTimeout",
    "RunResult",
]

_HEADER = struct.Struct("!I")
MAX_FRAME = (1 << 32) - 1
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class CandidateError(Exception):
    """The candidate failed a call: it raised, returned a non-JSON or non-finite value, or
    sent a reply that is too large or malformed. ``traceback`` is the candidate's, if any.

    An evaluator may catch it (and score the candidate 0); uncaught, the program is stored
    ``failed`` with this message as its reason.
    """

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class CandidateTimeout(CandidateError):
    """A call did not answer within its ``timeout``. The candidate is unusable afterwards;
    uncaught, the program is stored ``timeout``."""


class CandidateCrashed(CandidateError):
    """The candidate's process ended (crash, ``os._exit``, out of memory, killed) during a call.
    Uncaught, the program is stored ``crashed``."""


class RunResult:
    """What :meth:`Candidate.run` returns: the command's outcome inside the candidate sandbox.
    ``elapsed`` is measured by the evaluator's own clock. (A plain class, not a dataclass: the
    dataclasses import costs milliseconds in every evaluation process.)"""

    __slots__ = ("elapsed", "returncode", "stderr", "stdout", "timed_out")

    def __init__(self, returncode: int | None, stdout: str, stderr: str, timed_out: bool,
                 elapsed: float) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return (f"RunResult(returncode={self.returncode!r}, timed_out={self.timed_out!r}, "
                f"elapsed={self.elapsed:.3f}, stdout={self.stdout[:60]!r}, stderr={self.stderr[:60]!r})")


# -- framing (both sides) ------------------------------------------------------------------


def encode_frame(obj: Any, default: Any = None) -> bytes:
    """One length-prefixed JSON frame (``default`` as in ``json.dumps``)."""
    data = json.dumps(obj, default=default, allow_nan=True, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise ValueError(f"a message of {len(data)} bytes is too large for the channel")
    return _HEADER.pack(len(data)) + data


def write_bytes(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write all of ``data``; on a non-blocking ``fd``, wait for room until ``deadline``
    (``_Late`` after it)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
            continue
        except BlockingIOError:
            pass
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise _Late
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not poller.poll(None if left is None else left * 1000):
            raise _Late


class _Closed(Exception):
    pass


class _Late(Exception):
    pass


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Late
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(left * 1000):
                raise _Late
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise _Closed
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame_bytes(fd: int, max_bytes: int, deadline: float | None = None) -> bytes:
    """Read one frame's payload. Raises ``_Closed`` on EOF, ``_Late`` past ``deadline``,
    ``OverflowError`` if the announced size exceeds ``max_bytes`` (nothing more is read)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > max_bytes:
        raise OverflowError(size)
    return _read_exact(fd, size, deadline)


# -- the evaluator's handle ------------------------------------------------------------------


class Candidate:
    """The evaluator's handle on a candidate program running in another sandboxed process.

    ``source`` is the program's text (a trusted copy, e.g. to reject forbidden constructs);
    ``program_name`` its file name, which is also its path relative to the candidate's working
    directory (for :meth:`run`, e.g. ``["gcc", candidate.program_name]``). ``last_elapsed`` is
    the wall time of the last call, measured in the evaluator's process.

    ``program_files`` (a trusted copy, relative path -> text) holds every file of the program:
    for a program of several files (an ``initial_program/`` directory) ``program_name`` is the
    directory they are in (``"program"``: ``["gcc", "program/kernel.c"]``), ``source`` their
    packed text, and :meth:`call` takes ``"module:function"`` (``"driver:solve"``) or, with one
    top-level Python file, the bare function name; for one file it is ``{program_name: source}``.
    """

    def __init__(
        self,
        request_fd: int,
        reply_fd: int,
        *,
        source: str,
        program_name: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        program_files: dict[str, str] | None = None,
    ) -> None:
        self._req = request_fd
        self._rep = reply_fd
        os.set_blocking(request_fd, False)  # a candidate that stops reading cannot block a call
        self.source = source
        self.program_name = program_name
        self.program_files = (dict(program_files) if program_files is not None
                              else {program_name: source})
        self.max_bytes = int(max_bytes)
        self.last_elapsed = 0.0
        self.calls = 0
        self._dead: str | None = None
        self._seq = 0

    # public API ------------------------------------------------------------------------

    def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        allow_nan: bool = False,
        max_bytes: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call the candidate's top-level function ``name(*args, **kwargs)`` and return its
        result as plain JSON values. Arguments must be JSON-serialisable (tuples become lists).
        In a program of several files, ``name`` may be ``"module:function"`` (``"driver:solve"``
        calls ``solve`` of ``driver.py``; ``"pkg.mod:f"`` of ``pkg/mod.py``).

        ``timeout`` (seconds, evaluator's clock): raise :class:`CandidateTimeout` if no answer
        by then; ``None`` waits until the evaluation's own deadline. ``allow_nan``: accept NaN
        and infinities in the result. ``max_bytes``: the largest reply accepted.
        """
        module, _, fn = name.rpartition(":") if isinstance(name, str) else ("", "", "")
        if not fn.isidentifier() or module and not all(
                part.isidentifier() for part in module.split(".")):
            raise ValueError(f"call() needs a function name (or 'module:function' in a program "
                             f"of several files), got {name!r}")
        return self._request(
            {"op": "call", "name": name, "args": list(args), "kwargs": kwargs},
            what=f"{name}()",
            timeout=timeout,
            allow_nan=allow_nan,
            max_bytes=max_bytes,
        )

    def run(
        self,
        argv: list[str],
        *,
        input: str | None = None,  # noqa: A002 - mirrors subprocess.run
        timeout: float = 60.0,
        max_output: int = 1 << 20,
    ) -> RunResult:
        """Run a command inside the candidate's sandbox (cwd = its scratch dir, where the
        program file is), e.g. a compiler and then the compiled candidate. Output is decoded
        as UTF-8 (invalid bytes replaced) and capped at ``max_output`` characters per stream.
        A command past ``timeout`` is killed with its process group (``timed_out`` is True).
        """
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"run() needs a non-empty list of strings, got {argv!r}")
        t0 = time.monotonic()
        raw = self._request(
            {"op": "run", "argv": list(argv), "input": input, "timeout": float(timeout),
             "max_output": int(max_output)},
            what=f"run {argv[0]!r}",
            timeout=float(timeout) + 5.0,
            allow_nan=False,
            max_bytes=None,
        )
        elapsed = time.monotonic() - t0
        if not isinstance(raw, dict):
            raise CandidateError(f"run {argv[0]!r}: malformed reply from the candidate side")
        code = raw.get("returncode")
        return RunResult(
            returncode=code if isinstance(code, int) and not isinstance(code, bool) else None,
            stdout=str(raw.get("stdout", ""))[:max_output],
            stderr=str(raw.get("stderr", ""))[:max_output],
            timed_out=raw.get("timed_out") is True,
            elapsed=elapsed,
        )

    def write_file(self, name: str, text: str, *, timeout: float = 30.0) -> None:
        """Create (or replace) the file ``name`` in the candidate's scratch dir, e.g. a test
        bench. ``name`` is a plain file name."""
        self._request({"op": "write", "path": _plain_name(name), "text": str(text)},
                      what=f"write {name!r}", timeout=timeout, allow_nan=False, max_bytes=None)

    def read_file(self, name: str, *, max_bytes: int = 1 << 20, timeout: float = 30.0) -> str:
        """Read up to ``max_bytes`` bytes of the file ``name`` from the candidate's scratch dir,
        decoded as UTF-8 (invalid bytes replaced, line endings kept). It was written by the
        candidate or a command it ran: treat it as the candidate's answer, never as trusted."""
        value = self._request({"op": "read", "path": _plain_name(name), "limit": int(max_bytes)},
                              what=f"read {name!r}", timeout=timeout, allow_nan=False,
                              max_bytes=max_bytes * 6 + 1024)  # JSON escapes: \uXXXX per byte
        if not isinstance(value, str):
            raise CandidateError(f"read {name!r}: malformed reply from the candidate side")
        return value

    @property
    def alive(self) -> bool:
        """False once a call timed out, the reply stream broke, or the process ended."""
        return self._dead is None

    # plumbing --------------------------------------------------------------------------

    def _request(
        self,
        message: dict[str, Any],
        *,
        what: str,
        timeout: float | None,
        allow_nan: bool,
        max_bytes: int | None,
    ) -> Any:
        if self._dead is not None:
            raise CandidateCrashed(f"{what}: the candidate is unusable ({self._dead})")
        self._seq += 1
        self.calls += 1
        message["id"] = self._seq
        cap = self.max_bytes if max_bytes is None else int(max_bytes)
        t0 = time.monotonic()
        deadline = None if timeout is None else t0 + float(timeout)
        try:
            frame = encode_frame(message)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what}: the arguments are not JSON-serialisable: {e}") from None
        try:
            write_bytes(self._req, frame, deadline)
            while True:
                data = read_frame_bytes(self._rep, cap, deadline)
                reply = json.loads(data.decode("utf-8"))  # the envelope; the value is checked below
                if isinstance(reply, dict) and reply.get("id") == self._seq:
                    break  # earlier frames (stale or pre-written) are skipped
        except _Late:
            self._dead = f"{what} timed out"
            raise CandidateTimeout(f"{what} did not return within {timeout:g} s") from None
        except (_Closed, BrokenPipeError):
            self._dead = "its process ended"
            raise CandidateCrashed(f"{what}: the candidate's process ended during the call") from None
        except OverflowError as e:
            self._dead = "it sent an oversized reply"
            raise CandidateError(
                f"{what} returned {e.args[0]} bytes, more than max_bytes={cap}"
            ) from None
        except (ValueError, RecursionError) as e:
            self._dead = "it sent a malformed reply"
            raise CandidateError(f"{what}: malformed reply from the candidate ({e})") from None
        finally:
            self.last_elapsed = time.monotonic() - t0
        if reply.get("ok") is not True:
            etype = str(reply.get("error_type", "Error"))[:100]
            msg = str(reply.get("message", ""))[:2000]
            tb = str(reply.get("traceback", ""))[-8000:]
            text = f"{etype}: {msg}" if msg else etype
            if etype == "MemoryError":
                self._dead = "it ran out of memory"
                raise CandidateCrashed(f"{what}: the candidate ran out of memory", tb)
            raise CandidateError(f"{what} raised {text}", tb)
        value = reply.get("value")
        if not allow_nan:
            _check_finite(value, what)
        return value


def _check_finite(value: Any, what: str) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                raise CandidateError(
                    f"{what} returned a non-finite number ({v}); only finite numbers are accepted"
                )
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())


def _plain_name(name: str) -> str:
    if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (
        ".", ".."
    ):
        raise ValueError(f"expected a plain file name, got {name!r}")
    return name
