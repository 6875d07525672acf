"""Evaluation worker: ONE role of ONE evaluation in a fresh interpreter.

Stdlib-only on purpose: it is run by path (``python -I _worker.py <config>``), imports from
evoforge only ``evoforge.candidate`` (stdlib-only) in the hardened roles and, for a program of
several files, ``evoforge.program_files`` (stdlib-only), and is spawned by
``evoforge.executors.local.LocalExecutor`` through a ``Sandbox``. Roles:

- ``plain``: loads the evaluator and calls ``evaluate(program_path)``; the candidate runs inside
  this process (integrity unprotected);
- ``evaluator`` (hardened form): loads the evaluator and calls ``evaluate(candidate)`` with a
  :class:`evoforge.candidate.Candidate` talking to the ``candidate`` role over two pipes;
- ``candidate``: serves those calls (imports the program, runs commands) in its own sandbox;
- ``server`` (hardened form): a trusted evaluator that serves many evaluations, one at a time,
  each against a fresh ``candidate`` process: per job it receives over ``control_fd`` (a UNIX
  socket, SCM_RIGHTS) the job pipe, its own stdout/stderr/result pipes and the two channel
  ends, and afterwards closes them all, cleans its scratch dir and restores its cwd, path and
  environment. The evaluator module is loaded afresh for every job.

Config (``argv[1]``, JSON, known when the process is started, possibly ahead of time for the
warm pool): ``role``, ``start_fd`` (the job arrives there), ``result_fd`` (not for ``candidate``),
``chan_in``/``chan_out`` (hardened roles), ``problem_dir``, ``evaluator``, ``memory_mb``,
``cpu_seconds``, ``file_mb``, ``open_files``, ``max_processes`` (rlimits; int or null),
``score_metric``, ``cascade_thresholds``, ``minimize`` (the objective's direction: a stage
score must be at most its threshold, not at least), ``artifact_chars``, ``extra_path``, ``preload``
(modules imported before the job arrives). Job (read to EOF from ``start_fd``, JSON):
``program`` (the source) and ``program_name``; the worker writes it into its scratch dir (cwd).
A ``program_name`` ending in ``/`` (``"program/"``) names a program of several files: ``program``
is then a packed tree (evoforge.program_files), written as that directory; the plain evaluator
gets the directory's path, the hardened one a ``Candidate`` with ``program_files``.
``fingerprint`` (optional, true): if the evaluator defines ``fingerprint(program_path)`` (plain)
or ``fingerprint(candidate)`` (hardened), call it before the evaluation and write
``#fp sha256:<hex of the sha256 of its canonical JSON>\n`` to the result pipe ahead of the reply
(the controller may then kill the evaluation and reuse an earlier program's result).

Reply (written to the result pipe, never to stdout; ``json.dumps(allow_nan=False)``):
``{"v": 1, "ok": true, "metrics": {...}, "invalid": {name: why}, "artifacts": {...},
"feedback": {name: text}, "error": text}`` (``feedback``: the metrics that are not numbers, as
text; ``error``: the text of an ``"error"`` metric, present only when there is one) or
``{"v": 1, "ok": false, "error_type": ..., "message": ..., "traceback": ..., "where": ...}``.
The parent validates everything again; nothing here is trusted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
import os
import re
import sys
import traceback

TYPE_CHECKING = False  # typing is not imported at run time: it costs ms in every worker
if TYPE_CHECKING:
    from typing import Any

_PROTOCOL = 1
_MAX_ARTIFACTS = 64
_reserve: bytearray | None = bytearray(1 << 20)  # freed on MemoryError so we can still report


def _own_tasks() -> int:
    """Processes + threads of this real uid visible in /proc (RLIMIT_NPROC counts these)."""
    uid = os.getuid()
    count = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return count


def _set_limits(
    memory_mb: int | None,
    cpu_seconds: int | None,
    file_mb: int | None = None,
    open_files: int | None = None,
    max_processes: int | None = None,
) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: no rlimits
        return

    def lower(which: int, soft: int, hard: int) -> None:
        try:
            _, cur_hard = resource.getrlimit(which)
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass

    lower(resource.RLIMIT_CORE, 0, 0)
    if memory_mb is not None:
        limit = int(memory_mb) * 1024 * 1024
        lower(resource.RLIMIT_AS, limit, limit)
    if cpu_seconds is not None:
        # soft limit -> SIGXCPU, hard limit one second later -> SIGKILL
        lower(resource.RLIMIT_CPU, int(cpu_seconds), int(cpu_seconds) + 1)
    if file_mb is not None:
        # Python ignores SIGXFSZ, so a write past the cap fails with EFBIG (an OSError)
        limit = int(file_mb) * 1024 * 1024
        lower(resource.RLIMIT_FSIZE, limit, limit)
    if open_files is not None:
        lower(resource.RLIMIT_NOFILE, int(open_files), int(open_files))
    if max_processes is not None and hasattr(resource, "RLIMIT_NPROC"):
        # The kernel counts every task of this uid (in this user namespace), so the cap is
        # "max_processes more than now". Not enforced for root (uid 0) by the kernel.
        limit = int(max_processes) + (_own_tasks() if os.getuid() != 0 else 0)
        lower(resource.RLIMIT_NPROC, limit, limit)


_WS = re.compile(r"\s")
REASON_CHARS = 4000  # an evaluator's or candidate's message: capped here once, never again


def _cap(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters; else its head and tail, each cut at a
    word boundary where one is near, around a marker counting exactly what was left out. The
    result is never longer than ``limit``, so capping it again changes nothing."""
    if len(text) <= limit:
        return text
    marker = " … [{} chars dropped] … "
    room = limit - len(marker.format(len(text)))
    if room < 20:
        return text[:max(limit, 0)]
    head_end = room // 2
    tail_start = len(text) - (room - head_end)
    slack = max(room // 10, 1)
    spaces = [m.start() for m in _WS.finditer(text, head_end - slack, head_end + 1)]
    if spaces:
        head_end = spaces[-1]
    space = _WS.search(text, tail_start - 1, tail_start + slack)
    if space:
        tail_start = space.end()
    return f"{text[:head_end]}{marker.format(tail_start - head_end)}{text[tail_start:]}"


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    try:
        return str(value)
    except Exception as e:  # a hostile __str__
        return f"<unprintable {type(value).__name__}: {type(e).__name__}>"


def _split_result(value: Any, fn_name: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """A dict of metrics, or an object with ``.metrics`` (and optional ``.artifacts``)."""
    if isinstance(value, dict):
        return value, {}
    metrics = getattr(value, "metrics", None)
    if isinstance(metrics, dict):
        artifacts = getattr(value, "artifacts", None)
        return metrics, artifacts if isinstance(artifacts, dict) else {}
    raise TypeError(
        f"{fn_name}() returned {type(value).__name__}; return a dict of metrics "
        "(e.g. {'combined_score': 0.5}) or an EvaluationResult(metrics, artifacts)"
    )


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's too


def _clean_metrics(
    raw: dict[Any, Any], score_metric: str
) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Split an evaluator's metrics: finite numbers (numpy scalars included) are metrics; a
    non-finite number, a name that is not a string and a score metric that is not a number are
    described in ``bad``; any other value (text such as an ``"error"``, a bool, None, a list, a
    dict) is feedback, returned as is in ``other`` (booleans are never scores)."""
    good: dict[str, float] = {}
    bad: dict[str, str] = {}
    other: dict[str, Any] = {}
    for key, value in raw.items():
        name = key if isinstance(key, str) else _stringify(key)
        if not isinstance(key, str):
            bad[name] = f"has a non-string name ({type(key).__name__})"
        elif not _is_bool(value) and isinstance(value, numbers.Real):
            try:
                num = float(value)
            except (OverflowError, ValueError, TypeError):
                bad[name] = f"is not a usable number ({_cap(repr(value), 80)})"
                continue
            if math.isnan(num):
                bad[name] = "is nan"
            elif math.isinf(num):
                bad[name] = f"is {'inf' if num > 0 else '-inf'}"
            else:
                good[name] = int(value) if isinstance(value, int) else num
        elif name != score_metric:
            other[name] = value
        elif _is_bool(value):
            bad[name] = f"is a bool ({value!r})"
        else:
            bad[name] = f"is a {type(value).__name__} ({_cap(_stringify(value), 80)!r})"
    return good, bad, other


def _score_of(metrics: dict[str, float], score_metric: str) -> float | None:
    """The score metric, else the average of the numeric metrics (OpenEvolve's rule)."""
    if score_metric in metrics:
        return metrics[score_metric]
    if metrics:
        return math.fsum(v / len(metrics) for v in metrics.values())
    return None


def _load_module(name: str, path: str) -> Any:
    """Import the file ``path`` as module ``name`` (registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _fingerprint(module: Any, target: Any, emit: Any) -> None:
    """The evaluator's ``fingerprint(target)`` (if it defines one), hashed and sent to the
    controller ahead of the evaluation as one line, ``#fp sha256:<hex>``, on the result pipe:
    the controller may answer with an earlier program's result by killing this evaluation, or
    let it go on (nothing to wait for here). A fingerprint that raises, is None or is not JSON
    is no fingerprint: the evaluation reports what is wrong, as it would without one; only a
    hardened candidate made unusable by it (a call timed out, its process ended) ends the
    evaluation here, with that outcome."""
    fn = getattr(module, "fingerprint", None)
    if not callable(fn):
        return
    try:
        value = fn(target)
    except Exception:
        if getattr(target, "alive", True) is False:
            raise
        return
    if value is None:
        return
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_jsonable)
    except (TypeError, ValueError, RecursionError):
        return
    import hashlib

    emit(f"#fp sha256:{hashlib.sha256(text.encode()).hexdigest()}\n".encode())


def _run(req: dict[str, Any], target: Any, where: list[str], emit: Any = None) -> dict[str, Any]:
    """Load the evaluator and run its stages on ``target`` (the program's path in the plain
    form, a ``Candidate`` in the hardened form); first its fingerprint, when ``emit`` (the
    controller asked for it) is given."""
    where[0] = f"loading {req['evaluator']}"
    module = _load_module("evaluator", os.path.join(req["problem_dir"], req["evaluator"]))
    if emit is not None:
        where[0] = "fingerprint"
        _fingerprint(module, target, emit)
    score_metric = req["score_metric"]
    thresholds = [float(t) for t in req["cascade_thresholds"]]
    minimize = bool(req.get("minimize", False))

    stages = []
    i = 1
    while callable(getattr(module, f"evaluate_stage{i}", None)):
        stages.append((f"evaluate_stage{i}", getattr(module, f"evaluate_stage{i}")))
        i += 1
    cascade_note = None
    if not stages:
        fn = getattr(module, "evaluate", None)
        if not callable(fn):
            raise AttributeError(
                f"{req['evaluator']} defines neither evaluate(program_path) nor "
                "evaluate_stage1(program_path); define one of them"
            )
        stages = [("evaluate", fn)]

    metrics: dict[str, float] = {}
    invalid: dict[str, str] = {}
    other: dict[str, Any] = {}
    artifacts: dict[Any, Any] = {}
    for n, (name, fn) in enumerate(stages, start=1):
        where[0] = name
        stage_metrics, stage_artifacts = _split_result(fn(target), name)
        good, bad, more = _clean_metrics(stage_metrics, score_metric)
        for k in (*good, *bad, *more):  # a later stage's value replaces an earlier one's
            metrics.pop(k, None)
            invalid.pop(k, None)
            other.pop(k, None)
        metrics.update(good)
        invalid.update(bad)
        other.update(more)
        artifacts.update(stage_artifacts)
        if name == "evaluate":
            break
        if score_metric in invalid or (score_metric not in metrics and invalid):
            cascade_note = f"stopped after stage {n} of {len(stages)}: invalid metrics"
            break
        if n < len(stages) and n - 1 < len(thresholds):
            score = _score_of(good, score_metric)
            if score is None:
                score = _score_of(metrics, score_metric)
            # the threshold is a bar to clear in the objective's direction: under minimize a
            # score above it is the bad one
            if score is not None and (score > thresholds[n - 1] if minimize
                                      else score < thresholds[n - 1]):
                cascade_note = (
                    f"stopped after stage {n} of {len(stages)}: "
                    f"score {score:g} {'>' if minimize else '<'} threshold {thresholds[n - 1]:g}"
                    + (" (objective.direction: minimize)" if minimize else "")
                )
                break
    else:
        if stages[0][0] != "evaluate":
            cascade_note = f"completed all {len(stages)} stages"

    limit = int(req["artifact_chars"])
    inner = other.pop("artifacts", None)  # {"artifacts": {...}} among the metrics: artifacts
    if isinstance(inner, dict):
        for k, v in inner.items():
            artifacts.setdefault(k, v)
    elif inner is not None:
        other["artifacts"] = inner
    out: dict[str, str] = {}
    for k, v in list(artifacts.items())[:_MAX_ARTIFACTS]:
        out[_cap(_stringify(k), 100)] = _cap(_stringify(v), limit)
    if len(artifacts) > _MAX_ARTIFACTS:
        out["artifacts_dropped"] = f"{len(artifacts) - _MAX_ARTIFACTS} more artifacts dropped"
    if cascade_note is not None:
        out["cascade"] = cascade_note
    feedback = {_cap(k, 100): _cap(_stringify(v), limit)
                for k, v in list(other.items())[:_MAX_ARTIFACTS]}
    reply: dict[str, Any] = {"v": _PROTOCOL, "ok": True, "metrics": metrics, "invalid": invalid,
                             "artifacts": out, "feedback": feedback}
    error = other.get("error")
    if isinstance(error, str | BaseException) and _stringify(error).strip():
        reply["error"] = _cap(_stringify(error).strip(), REASON_CHARS)  # a failure dict's
    return reply


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _move_high(fd: int) -> int:
    """A high, close-on-exec copy of ``fd``: grandchildren started with subprocess do not
    inherit it, and writes to fd 3.. miss it. Done before the rlimits (an fd above
    RLIMIT_NOFILE stays usable but cannot be created)."""
    try:
        import fcntl
    except ImportError:
        return fd
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 512)
    except OSError:
        os.set_inheritable(fd, False)
        return fd
    os.close(fd)
    return high


def _error_reply(e: BaseException, where: str, artifact_chars: int) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "v": _PROTOCOL, "ok": False, "error_type": type(e).__name__, "message": "",
        "traceback": "", "where": where,
    }
    try:
        reply["message"] = _cap(_stringify(e), REASON_CHARS)
        tb_obj = e.__traceback__
        while tb_obj is not None and tb_obj.tb_frame.f_code.co_filename == __file__:
            tb_obj = tb_obj.tb_next  # hide the worker's own frames
        tb = "".join(traceback.format_exception(type(e), e, tb_obj or e.__traceback__, limit=-20))
        reply["traceback"] = _cap(tb, artifact_chars)
        candidate_tb = getattr(e, "traceback", "")
        status = {"CandidateTimeout": "timeout", "CandidateCrashed": "crashed"}
        for cls in type(e).__mro__:
            if cls.__name__ in status and cls.__module__ == "evoforge.candidate":
                reply["status"] = status[cls.__name__]
                break
        if isinstance(candidate_tb, str) and candidate_tb:
            reply["candidate_traceback"] = _cap(candidate_tb, artifact_chars)
    except BaseException:  # noqa: BLE001, S110 - out of memory again, or a hostile __str__
        pass
    return reply


# -- the candidate side of the hardened form ------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """json.dumps ``default``: numpy arrays and scalars become lists and numbers."""
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(
        f"returned a {type(obj).__name__}, which is not a JSON value "
        "(use dict, list, str, int, float, bool or None)"
    )


def _run_command(msg: dict[str, Any], scratch: str) -> dict[str, Any]:
    import signal
    import subprocess

    argv = [str(a) for a in msg["argv"]]
    data = msg.get("input")
    limit = int(msg.get("max_output", 1 << 20))
    proc = subprocess.Popen(
        argv, cwd=scratch, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(
            data.encode() if isinstance(data, str) else None, timeout=float(msg["timeout"])
        )
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing it started outlives the command
        except OSError:
            pass
    return {
        "returncode": None if timed_out else proc.returncode,
        "stdout": out[:limit].decode("utf-8", errors="replace"),
        "stderr": err[:limit].decode("utf-8", errors="replace"),
        "timed_out": timed_out,
    }


def _program_path(job: dict[str, Any]) -> str:
    """Where the job's program is (a file, or the directory of a program of several files)."""
    return os.path.join(os.getcwd(), job["program_name"].rstrip("/"))


def _program_files(job: dict[str, Any]) -> dict[str, str] | None:
    """The files of a program of several files (checked again here), else None."""
    if not job["program_name"].endswith("/"):
        return None
    from evoforge.program_files import unpack

    return unpack(job["program"])


def _write_program(job: dict[str, Any]) -> None:
    files = _program_files(job)
    if files is None:
        with open(_program_path(job), "w", encoding="utf-8") as f:
            f.write(job["program"])
    else:
        from evoforge.program_files import write_tree

        write_tree(_program_path(job), files)


def _program_function(name: str, path: str, files: dict[str, str] | None, cache: dict[str, Any]
                      ) -> Any:
    """The candidate's function ``name``: ``"solve"`` in a one-file program (or in the only
    top-level Python file of several), ``"driver:solve"`` / ``"pkg.mod:solve"`` in the module of
    that path inside a program of several files."""
    module_name, _, fn_name = name.rpartition(":")
    if files is None:
        if module_name:
            raise ValueError(f"call({name!r}): this program is one file; name just the function")
        file, module_name = path, "program"
    else:
        if not module_name:
            tops = sorted(p for p in files if p.endswith(".py") and "/" not in p)
            if len(tops) != 1:
                raise ValueError(
                    f"call({name!r}): the program has {len(tops)} top-level Python files "
                    f"({', '.join(tops) or 'none'}); name the module: call('module:{name}')")
            module_name = tops[0][:-3]
        rel = module_name.replace(".", "/") + ".py"
        if rel not in files:
            raise ValueError(f"call({name!r}): the program has no file {rel}")
        file = os.path.join(path, rel)
        if path not in sys.path:
            sys.path.insert(0, path)  # its modules import each other
    module = cache.get(module_name)
    if module is None:
        module = cache[module_name] = _load_module(module_name, file)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AttributeError(f"the program defines no function {name}()")
    return fn


def _serve_candidate(
    job: dict[str, Any], chan_in: int, chan_out: int, preload_error: BaseException | None = None
) -> None:
    """Answer the evaluator's requests until it closes the channel (each with the preload error,
    if importing ``preload`` failed here)."""
    from evoforge.candidate import _Closed, encode_frame, read_frame_bytes, write_bytes

    scratch = os.getcwd()
    program_path = _program_path(job)
    files = _program_files(job)
    modules: dict[str, Any] = {}
    while True:
        try:
            msg = json.loads(read_frame_bytes(chan_in, 1 << 31).decode("utf-8"))
        except (_Closed, OSError):
            return
        reply: dict[str, Any] = {"id": msg.get("id")}
        try:
            if preload_error is not None:
                raise ImportError(
                    f"evaluation.preload failed in the candidate's process: "
                    f"{type(preload_error).__name__}: {preload_error}"
                )
            op = msg.get("op")
            if op == "call":
                fn = _program_function(msg["name"], program_path, files, modules)
                value = fn(*msg.get("args", []), **msg.get("kwargs", {}))
            elif op == "run":
                value = _run_command(msg, scratch)
            elif op == "write":
                with open(os.path.join(scratch, os.path.basename(msg["path"])), "w") as f:
                    f.write(msg["text"])
                value = None
            elif op == "read":
                with open(os.path.join(scratch, os.path.basename(msg["path"])), "rb") as f:
                    value = f.read(int(msg["limit"])).decode("utf-8", errors="replace")
            else:
                raise ValueError(f"unknown request {op!r}")
            reply.update(ok=True, value=value)
        except BaseException as e:  # noqa: BLE001 - the candidate's failures are answers
            if isinstance(e, MemoryError):
                global _reserve
                _reserve = None
            error = _error_reply(e, "candidate", 4000)
            error["id"] = msg.get("id")
            frame = encode_frame(error)
        else:
            try:
                frame = encode_frame(reply, default=_jsonable)
            except (TypeError, ValueError, RecursionError) as e:  # not JSON: no traceback
                error = {"id": msg.get("id"), "ok": False, "error_type": type(e).__name__,
                         "message": _cap(str(e), 500)}
                frame = encode_frame(error)
        try:
            write_bytes(chan_out, frame)
        except OSError:
            return



def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - closed or broken by the candidate
            pass


def _judge(cfg: dict[str, Any], job: dict[str, Any], chan_out: int | None, chan_in: int,
           preload_error: BaseException | None, artifact_chars: int,
           result_fd: int = -1) -> bytes:
    """Run the evaluator on the job's program (a ``Candidate`` on the channel when
    ``chan_out`` is given, else the program file's path) and encode the reply: every outcome,
    the evaluator's exceptions included, becomes data. With ``"fingerprint": true`` in the job
    the evaluator's fingerprint goes to ``result_fd`` first (see :func:`_fingerprint`)."""
    global _reserve
    where = ["preload"]  # _run names the stage it is in
    reply: dict[str, Any]

    def emit(data: bytes) -> None:
        try:
            _write_all(result_fd, data)
        except OSError:
            pass  # the controller is gone or stopped reading: the evaluation goes on
    try:
        if preload_error is not None:
            raise preload_error
        target: Any = _program_path(job)
        if chan_out is not None:
            from evoforge.candidate import Candidate

            target = Candidate(chan_out, chan_in, source=job["program"],
                               program_name=job["program_name"].rstrip("/"),
                               program_files=_program_files(job))
        reply = _run(cfg, target, where,
                     emit if job.get("fingerprint") is True and result_fd >= 0 else None)
    except BaseException as e:  # noqa: BLE001 - everything the evaluator does becomes data
        if isinstance(e, MemoryError):
            _reserve = None
        reply = _error_reply(e, where[0], artifact_chars)
        del e
    try:
        return json.dumps(reply, allow_nan=False).encode()
    except BaseException as e:  # noqa: BLE001
        return json.dumps(
            {"v": _PROTOCOL, "ok": False, "error_type": type(e).__name__,
             "message": "the worker could not encode the evaluator's result", "traceback": "",
             "where": "encoding"}
        ).encode()


# -- the persistent evaluator of the hardened form ------------------------------------------


def _cpu_used() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _serve_jobs(cfg: dict[str, Any], control: int, preload_error: BaseException | None) -> None:
    """Run evaluations until the controller closes ``control``."""
    import resource
    import shutil
    import socket

    global _reserve
    sock = socket.socket(fileno=control)
    scratch = os.getcwd()
    path0, env0 = list(sys.path), dict(os.environ)
    null = os.open(os.devnull, os.O_RDWR)
    artifact_chars = int(cfg.get("artifact_chars", 4000))
    budget = cfg.get("cpu_seconds")
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(sock, 16, 6)
        except OSError:
            return
        if len(fds) != 6:
            return  # the controller closed the socket (or sent garbage): done
        start_r, out_w, err_w, res_w, chan_in, chan_out = fds
        for fd in fds:
            os.set_inheritable(fd, False)
        if budget is not None:  # RLIMIT_CPU counts the whole process: give each job its own
            soft = int(_cpu_used()) + int(budget)
            try:
                resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
            except (ValueError, OSError):
                pass
        _flush_streams()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        job = json.loads(_read_all(start_r))  # written by the controller
        data = _judge(cfg, job, chan_out, chan_in, preload_error, artifact_chars, res_w)
        _flush_streams()
        try:
            _write_all(res_w, data)
        except OSError:
            pass
        for fd in (start_r, res_w, chan_in, chan_out):
            try:
                os.close(fd)
            except OSError:
                pass
        os.dup2(null, 1)  # the job's output pipes reach EOF
        os.dup2(null, 2)
        if _reserve is None:
            os._exit(0)  # it ran out of memory once: a fresh process serves the next job
        try:  # the next job starts from the same state
            os.chdir(scratch)
            for entry in os.listdir(scratch):
                full = os.path.join(scratch, entry)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full, ignore_errors=True)
                else:
                    os.unlink(full)
        except OSError:
            os._exit(0)
        sys.path[:] = path0
        os.environ.clear()
        os.environ.update(env0)
        sys.modules.pop("evaluator", None)


# -- OpenEvolve evaluators without OpenEvolve --------------------------------------------------


class _OpenEvolveStandIn:
    """``from openevolve.evaluation_result import EvaluationResult`` where OpenEvolve is not
    installed: the last finder on ``sys.meta_path`` (a real OpenEvolve is found first), giving
    evoforge's compatible ``EvaluationResult``. Costs nothing unless an evaluator imports it."""

    NAMES = ("openevolve", "openevolve.evaluation_result")

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in cls.NAMES:
            return None
        return importlib.util.spec_from_loader(name, cls,  # type: ignore[arg-type]
                                               is_package=name == "openevolve")

    @staticmethod
    def create_module(spec: Any) -> None:
        return None  # the default module object

    @staticmethod
    def exec_module(module: Any) -> None:
        if module.__name__ == "openevolve.evaluation_result":
            from evoforge.evaluation_result import EvaluationResult

            module.EvaluationResult = EvaluationResult


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    global _reserve
    cfg = json.loads(sys.argv[1])
    role = cfg.get("role", "plain")
    start_fd = _move_high(int(cfg["start_fd"])) if cfg.get("start_fd") is not None else -1
    control = _move_high(int(cfg["control_fd"])) if cfg.get("control_fd") is not None else -1
    fd = _move_high(int(cfg["result_fd"])) if cfg.get("result_fd") is not None else -1
    chan_in = _move_high(int(cfg["chan_in"])) if cfg.get("chan_in") is not None else -1
    chan_out = _move_high(int(cfg["chan_out"])) if cfg.get("chan_out") is not None else -1
    _set_limits(
        cfg.get("memory_mb"),
        cfg.get("cpu_seconds") if role != "server" else None,  # per job, see _serve_jobs
        cfg.get("file_mb"),
        cfg.get("open_files"),
        cfg.get("max_processes"),
    )
    sys.dont_write_bytecode = True
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass

    sys.meta_path.append(_OpenEvolveStandIn)  # type: ignore[arg-type]
    worker_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != worker_dir]
    sys.path.insert(0, cfg["problem_dir"] if role != "candidate" else os.getcwd())
    for p in cfg.get("extra_path", []):
        if p not in sys.path:
            sys.path.append(p)
    artifact_chars = int(cfg.get("artifact_chars", 4000))

    preload_error: BaseException | None = None
    try:  # warm start: the imports happen before the job (and its deadline) arrive
        for name in cfg.get("preload", []):
            importlib.import_module(name)
        if role != "plain":
            import evoforge.candidate  # noqa: F401
    except BaseException as e:  # noqa: BLE001 - reported with the job
        preload_error = e

    if role == "server":
        _serve_jobs(cfg, control, preload_error)
        os._exit(0)

    raw = _read_all(start_fd)  # blocks until the controller hands over a job
    os.close(start_fd)
    if not raw:
        os._exit(0)  # the controller closed the pool without using this process
    job = json.loads(raw)
    if role != "evaluator":
        _write_program(job)

    if role == "candidate":
        _serve_candidate(job, chan_in, chan_out, preload_error)
        _flush_streams()
        os._exit(0)

    data = _judge(cfg, job, chan_out if role == "evaluator" else None, chan_in,
                  preload_error, artifact_chars, fd)
    code = 0
    try:
        _write_all(fd, data)
        os.close(fd)
    except OSError as e:
        sys.stderr.write(f"evoforge worker: cannot write the result: {e}\n")
        code = 3
    _flush_streams()
    os._exit(code)  # skip atexit hooks and non-daemon threads the candidate may have left


if __name__ == "__main__":
    main()
