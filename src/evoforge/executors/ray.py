"""RayExecutor: evaluations on the nodes of a Ray cluster, each in the same sandbox as locally.

One Ray actor per evaluation slot, placed by Ray where ``executor.num_cpus`` / ``num_gpus`` /
``memory`` / ``resources`` fit (spread over the nodes). Each actor runs a one-slot
:class:`~evoforge.executors.local.LocalExecutor` on its node: bubblewrap (or the process
sandbox), the unprivileged sandbox user, rlimits, the wall-clock kill of the whole process tree,
and the cgroup :class:`~evoforge.sandbox.Lifeline`, which the actor's worker process joins, so
when Ray kills that process (the controller died, the actor was killed) its guardian kills
every sandbox the actor started.

What travels: the problem directory once per run (a gzipped tarball put in Ray's object store,
unpacked once per actor into its own temp dir, without run dirs, ``.git`` and caches), then per
evaluation the child's code and its id out, and a plain dict back (status, metrics, score,
reason, artifacts, time: no pickled objects of a candidate's making). Never the population;
the LLM calls stay in the controller.

Faults: an actor whose worker or node dies mid-evaluation is replaced (when the cluster still
has room for it) and the evaluation is tried again on another slot, ``executor.retries`` times,
then stored as ``crashed`` with the reason. An actor that does not answer within twice the
evaluation timeout plus a minute is killed and the evaluation is ``crashed``. Each result
carries the node that evaluated it in its ``ray_node`` artifact (``evoforge status`` counts them
per node, see :func:`evaluated_on`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoforge.errors import ConfigError, EvoforgeError, ProblemError
from evoforge.executors.base import Executor
from evoforge.executors.local import _OWNER, _snapshot_ignore, _sweep_dead_scratch
from evoforge.problem import evaluator_form
from evoforge.program import EvalResult, Status

if TYPE_CHECKING:
    from evoforge.config import EvaluationConfig, ExecutorConfig

__all__ = ["NODE_ARTIFACT", "RayExecutor", "evaluated_on"]

log = logging.getLogger("evoforge.executor")

#: the artifact naming the node that evaluated a program (``IP/node-id prefix``)
NODE_ARTIFACT = "ray_node"
_INSTALL_HINT = "the Ray executor needs ray: pip install 'evoforge[ray]'"
_STATUSES = {s.value: s for s in Status if s is not Status.PENDING}


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(_INSTALL_HINT) from e
    return ray


def evaluated_on(programs: Iterable[Any]) -> Counter[str]:
    """Programs evaluated per Ray node (cache hits, evaluated nowhere, are not counted)."""
    return Counter(p.artifacts[NODE_ARTIFACT] for p in programs
                   if NODE_ARTIFACT in p.artifacts and "cached" not in p.artifacts)


def pack_problem(problem_dir: Path, hide: Sequence[Path] = ()) -> bytes:
    """``problem_dir`` as a gzipped tarball (one top-level dir ``problem``), without run dirs,
    ``hide``, ``.git`` and caches: what every actor unpacks."""
    ignore = _snapshot_ignore([Path(h).resolve() for h in hide])

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.issym() or info.islnk():  # a link could point anywhere on the node
            return None
        return info

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="evoforge-pack-") as tmp:
        copy = Path(tmp) / "problem"
        try:
            shutil.copytree(problem_dir, copy, ignore=ignore, symlinks=False,
                            ignore_dangling_symlinks=True)
        except (OSError, shutil.Error) as e:
            raise ProblemError(f"cannot pack the problem dir {problem_dir} for the Ray "
                               f"cluster: {e}; make its files readable") from e
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(copy, arcname="problem", filter=keep)
    return buf.getvalue()


class _Slot:
    """The actor body: one evaluation slot on a node, a one-slot LocalExecutor in a temp dir
    of its own holding the unpacked problem. Made a Ray actor by :meth:`RayExecutor.connect`."""

    def __init__(self, tarball: bytes, token: str, local: dict[str, Any]) -> None:
        import ray

        from evoforge.executors.local import LocalExecutor

        self.node_id = ray.get_runtime_context().get_node_id()
        # dirs of actors on this node whose process died (with their job, or their node)
        _sweep_dead_scratch(Path(tempfile.gettempdir()), "evoforge-ray-*")
        self.dir = Path(tempfile.mkdtemp(prefix=f"evoforge-ray-{token}-"))
        os.chmod(self.dir, 0o755)  # the sandbox user reaches its scratch dir under it
        self._lock = os.open(self.dir / _OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # free once this actor's process is gone
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            tar.extractall(self.dir, filter="data")
        (self.dir / "scratch").mkdir(mode=0o755)
        self.executor = LocalExecutor(self.dir / "problem", scratch_root=self.dir / "scratch",
                                      workers=1, **local)

    def ready(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "pid": os.getpid(),
                "sandbox": self.executor.sandbox.name, "dir": str(self.dir)}

    async def evaluate(self, code: str, program_id: int) -> dict[str, Any]:
        r = await self.executor.evaluate(code, program_id=program_id)
        return {"status": r.status.value, "metrics": dict(r.metrics), "score": r.score,
                "reason": r.reason, "artifacts": dict(r.artifacts), "eval_time": r.eval_time}

    async def close(self) -> None:
        await self.executor.aclose()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(eq=False)
class _Actor:
    handle: Any
    node: str = "?"
    node_id: str = ""
    pid: int = 0  # of its Ray worker process
    dir: str = ""  # its temp dir on the node (problem, scratch)


class _RemoteSandbox:
    """What the nodes' actors reported as their sandbox (for the run's integrity record)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _probe(address: str, timeout: float) -> None:
    """Fail fast where ``HOST:PORT`` (or ``ray://HOST:PORT``) takes no TCP connection: Ray
    itself would keep retrying for minutes."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"executor.address {address!r} is not 'auto', 'ray://HOST:PORT' or "
                          "'HOST:PORT'")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 10.0)):
        pass


class RayExecutor(Executor):
    """Runs evaluations on a Ray cluster, one actor per slot, each in the local sandbox."""

    fingerprints = False  # the fingerprint hook is a controller callback: not sent to nodes

    def __init__(
        self,
        problem_dir: Path,
        local: dict[str, Any],
        *,
        address: str = "auto",
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        slots: int | None = None,
        retries: int = 1,
        timeout: float = 60.0,
        connect_timeout: float = 60.0,
        slot_wait: float = 300.0,
        hide: Sequence[Path] = (),
    ) -> None:
        self.problem_dir = Path(problem_dir).resolve()
        evaluator = local.get("evaluator", "evaluator.py")
        if not (self.problem_dir / evaluator).is_file():
            raise ProblemError(f"evaluator not found: {self.problem_dir / evaluator}; create it "
                               "with a function evaluate(program_path) -> dict[str, float]")
        self.form = evaluator_form(self.problem_dir / evaluator)
        self.local = dict(local)
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.memory = memory
        self.resources = dict(resources or {})
        self.retries = retries
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.slot_wait = slot_wait
        self.hide = tuple(hide)
        self.token = os.urandom(4).hex()  # names this executor's dirs on the nodes
        self._want_slots = slots
        self._slots = 0
        self.sandbox = _RemoteSandbox("unknown")
        self._ray: Any = None
        self._owns_ray = False
        self._tarball: Any = None  # ObjectRef
        self._cls: Any = None
        self._idle: asyncio.Queue[_Actor] | None = None
        self._starting: asyncio.Future[None] | None = None
        self._live: set[_Actor] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = False
        self._labels: dict[str, str] = {}
        self.counts: Counter[str] = Counter()  # evaluations answered per node, this session
        self.lost: list[str] = []  # slots lost mid-evaluation (node or worker died), and why

    @classmethod
    def from_config(cls, problem_dir: Path, cfg: ExecutorConfig, ev: EvaluationConfig, *,
                    score_metric: str, program_name: str, evaluator: str = "evaluator.py",
                    minimize: bool = False, hide: Sequence[Path] = ()) -> RayExecutor:
        local = dict(
            evaluator=evaluator, program_name=program_name, timeout=ev.timeout,
            memory_mb=ev.memory_mb, score_metric=score_metric,
            cascade_thresholds=list(ev.cascade_thresholds), minimize=minimize,
            artifact_chars=ev.artifact_chars, env_allow=list(ev.env_allow), python=ev.python,
            sandbox=ev.sandbox, scratch_mb=ev.scratch_mb, max_processes=ev.max_processes,
            max_open_files=ev.max_open_files, warm_pool=ev.warm_pool, preload=list(ev.preload),
            sandbox_user=ev.sandbox_user, sandbox_paths=list(ev.sandbox_paths),
            persistent_evaluator=ev.persistent_evaluator,
        )
        return cls(problem_dir, local, address=cfg.address, num_cpus=cfg.num_cpus,
                   num_gpus=cfg.num_gpus, memory=cfg.memory, resources=cfg.resources,
                   slots=cfg.slots, retries=cfg.retries, timeout=ev.timeout,
                   connect_timeout=cfg.connect_timeout, slot_wait=cfg.slot_wait, hide=hide)

    # -- connecting ----------------------------------------------------------------------------

    def _request(self) -> dict[str, float]:
        """What one slot asks of a node, by Ray resource name."""
        req = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}
        if self.memory:
            req["memory"] = float(self.memory)
        return {k: v for k, v in req.items() if v > 0}

    def _capacity(self) -> tuple[int, list[str]]:
        """How many slots the cluster's live nodes hold at once, and what each node offers."""
        req = self._request()
        total, offers = 0, []
        for node in self._ray.nodes():
            if not node.get("Alive"):
                continue
            have = node.get("Resources", {})
            offers.append(f"{node.get('NodeManagerAddress', '?')}: " + ", ".join(
                f"{k}={v:g}" for k, v in sorted(have.items())
                if not k.startswith("node:") and k not in ("object_store_memory",)))
            if req:
                total += int(min(have.get(k, 0.0) / v for k, v in req.items()))
        return total, offers

    def connect(self) -> RayExecutor:
        """Join the cluster at ``address`` (or use the connection this process already has),
        ship the problem, and start one actor per slot. Raises ConfigError naming the address
        and the fix when the cluster cannot be reached or cannot hold a single slot."""
        if self._cls is not None:
            return self
        ray = self._ray = _ray()
        fix = ("start one (`ray start --head` on the head node, `ray start --address=HEAD:6379` "
               "on the others) or set executor.address to the head's GCS address HOST:PORT, "
               "ray://HOST:10001 for a Ray client, or auto for a cluster started on this machine")
        if not ray.is_initialized():
            # An address that answers but fails to set up (a Ray client server still cleaning
            # up after a killed driver says "Initialization failure from server") is tried
            # again until connect_timeout; an address nothing listens on fails at once (probe).
            deadline = time.monotonic() + self.connect_timeout
            tries = 0
            while True:
                try:
                    if self.address != "auto":
                        _probe(self.address, self.connect_timeout)
                    extra = {} if self.address.startswith("ray://") else {  # not for a client
                        "configure_logging": False, "include_dashboard": False}
                    ray.init(address=self.address, log_to_driver=False, namespace="evoforge",
                             **extra)
                    break
                except ConfigError:
                    raise
                except Exception as e:  # ray raises ConnectionError, RuntimeError, ValueError
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    if time.monotonic() + 1.0 < deadline:
                        first = tries == 0
                        tries += 1
                        (log.warning if first else log.debug)(
                            "the Ray cluster at %s answers but is not ready (%s); trying again "
                            "for up to executor.connect_timeout=%g s", self.address,
                            _first_line(e), self.connect_timeout)
                        time.sleep(1.0)
                        continue
                    why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ConfigError(f"cannot reach the Ray cluster at executor.address="
                                      f"{self.address!r}: {why[:300]}; {fix}") from e
            self._owns_ray = True
        capacity, offers = self._capacity()
        slots = self._want_slots or capacity
        if capacity < 1:
            self.shutdown()
            want = ", ".join(f"{k}={v:g}" for k, v in self._request().items()) or "nothing"
            raise ConfigError(
                f"no node of the Ray cluster at {self.address!r} can run one evaluation asking "
                f"for {want} (nodes offer: {'; '.join(offers) or 'no live nodes'}); lower "
                "executor.num_cpus/num_gpus/memory/resources or add nodes that have them")
        self._slots = slots
        self._tarball = ray.put(pack_problem(self.problem_dir, self.hide))
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                "max_restarts": 0, "max_task_retries": 0,
                                "scheduling_strategy": "SPREAD"}
        if self.memory:
            opts["memory"] = self.memory
        if self.resources:
            opts["resources"] = dict(self.resources)
        self._cls = ray.remote(_Slot).options(**opts)
        return self

    @property
    def slots(self) -> int:
        return self._slots

    async def start(self) -> None:
        """Start the actors and wait until they are ready (those that cannot be placed within
        ``connect_timeout`` join later, if ever; at least one must); the sandbox they report
        is this executor's. Concurrent callers share one start."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self.connect()
        self._idle = asyncio.Queue()
        for _ in range(self._slots):
            self._spawn()
        # all slots up (a slot that cannot be placed joins later, if ever), at least one
        deadline = time.monotonic() + self.connect_timeout
        while self._spawning and time.monotonic() < deadline:
            await asyncio.wait(set(self._spawning), return_when=asyncio.FIRST_COMPLETED,
                               timeout=max(deadline - time.monotonic(), 0.0))
        deadline = time.monotonic() + self.slot_wait
        while self._idle.empty() and self._spawning and time.monotonic() < deadline:
            await asyncio.wait(set(self._spawning), return_when=asyncio.FIRST_COMPLETED,
                               timeout=max(deadline - time.monotonic(), 0.0))
        if self._idle.empty():
            raise ConfigError(f"no evaluation slot came up on the Ray cluster at "
                              f"{self.address!r} within {self.slot_wait:g} s (see the Ray "
                              "logs of its nodes: evoforge must be installed there, in the same "
                              "version, for the same Python)")

    def _spawn(self) -> None:
        task = asyncio.ensure_future(self._bring_up())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _bring_up(self) -> None:
        """One new actor; once ready it joins the idle slots (never, if no node has room)."""
        handle = self._cls.remote(self._tarball, self.token, self.local)
        actor = _Actor(handle)
        try:
            info = await asyncio.wait_for(_await(handle.ready.remote()), self.slot_wait)
        except asyncio.CancelledError:  # closed while it waited for room: never placed
            self._kill(actor)
            raise
        except Exception as e:  # noqa: BLE001 - timed out, or died while starting
            log.warning("a Ray evaluation slot did not come up: %s", _first_line(e))
            self._kill(actor)
            return
        actor.node_id, actor.pid, actor.dir = info["node_id"], info["pid"], info["dir"]
        actor.node = self._label(actor.node_id)
        self.sandbox = _RemoteSandbox(info["sandbox"])
        if self._closed or self._idle is None:
            self._kill(actor)
            return
        self._live.add(actor)
        self._idle.put_nowait(actor)

    def _label(self, node_id: str) -> str:
        """``IP/first 8 hex digits of the node id``: unique even for nodes on one machine."""
        if node_id not in self._labels:
            with contextlib.suppress(Exception):
                for n in self._ray.nodes():
                    self._labels[n["NodeID"]] = f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}"
        return self._labels.get(node_id, f"?/{node_id[:8]}")

    def _kill(self, actor: _Actor) -> None:
        self._live.discard(actor)
        with contextlib.suppress(Exception):
            self._ray.kill(actor.handle, no_restart=True)

    # -- evaluating ----------------------------------------------------------------------------

    async def _take(self) -> _Actor | None:
        if self._idle is None:
            raise EvoforgeError("the Ray executor was not started: call start() (or use it "
                                "through evoforge.evolve) before evaluate()")
        try:
            return await asyncio.wait_for(self._idle.get(), self.slot_wait)
        except TimeoutError:
            return None

    async def evaluate(self, code: str, *, program_id: int = 0) -> EvalResult:
        if self._closed:
            return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
        await self.start()
        ray = self._ray
        lost: list[str] = []
        t0 = time.monotonic()
        while True:
            actor = await self._take()
            if self._closed:
                return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
            if actor is None:
                return EvalResult(Status.CRASHED, eval_time=time.monotonic() - t0, reason=(
                    f"not run: no live Ray evaluation slot for {self.slot_wait:g} s"
                    + (f" (lost: {'; '.join(lost)})" if lost else "")))
            ref = actor.handle.evaluate.remote(code, program_id)
            try:
                out = await asyncio.wait_for(_await(ref), 2 * self.timeout + 60.0)
            except asyncio.CancelledError:  # its evaluation may still run: a fresh slot
                self._kill(actor)
                if not self._closed:
                    self._spawn()
                raise
            except TimeoutError:
                self._kill(actor)
                self._spawn()
                return EvalResult(Status.CRASHED, eval_time=time.monotonic() - t0, reason=(
                    f"no answer from the Ray evaluation slot on node {actor.node} within "
                    f"{2 * self.timeout + 60:g} s (its actor was killed)"))
            except ray.exceptions.RayTaskError as e:  # a bug on our side of the node
                self._idle_again(actor)
                return EvalResult(Status.CRASHED, eval_time=time.monotonic() - t0,
                                  reason=f"the Ray evaluation slot failed: {_first_line(e)}")
            except Exception as e:  # noqa: BLE001 - the actor, its worker or its node died
                if self._closed:
                    return EvalResult(Status.CRASHED, reason="not run: the executor was closed")
                lost.append(f"node {actor.node}: {_first_line(e)}")
                self.lost.append(lost[-1])
                log.warning("Ray evaluation slot on node %s lost: %s", actor.node,
                            _first_line(e))
                self._kill(actor)
                self._spawn()  # where the cluster still has room
                if len(lost) > self.retries:
                    return EvalResult(Status.CRASHED, eval_time=time.monotonic() - t0, reason=(
                        f"the Ray worker or node evaluating it died, {len(lost)} time(s): "
                        + "; ".join(lost)))
                continue
            self._idle_again(actor)
            return self._result(out, actor.node)

    def _idle_again(self, actor: _Actor) -> None:
        if self._closed or self._idle is None:
            self._kill(actor)
        else:
            self._idle.put_nowait(actor)

    def _result(self, out: dict[str, Any], node: str) -> EvalResult:
        """The actor's plain dict as an EvalResult, validated again here."""
        status = _STATUSES.get(str(out.get("status")), Status.CRASHED)
        score = out.get("score")
        if not isinstance(score, int | float) or isinstance(score, bool) or score != score \
                or score in (float("inf"), float("-inf")):
            score = None
        metrics = {str(k): float(v) for k, v in dict(out.get("metrics") or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        artifacts = {str(k): str(v) for k, v in dict(out.get("artifacts") or {}).items()}
        artifacts[NODE_ARTIFACT] = node
        if status is Status.OK and score is None:
            status = Status.FAILED
        self.counts[node] += 1
        return EvalResult(status, metrics=metrics, score=score, reason=str(out.get("reason", "")),
                          artifacts=artifacts, eval_time=float(out.get("eval_time") or 0.0))

    async def aclose(self) -> None:
        """Kill every actor (Ray kills its worker; the worker's lifeline, its sandboxes) and
        disconnect if this executor made the connection. Idempotent."""
        self._closed = True
        for task in list(self._spawning):
            task.cancel()
        if self._spawning:
            await asyncio.gather(*self._spawning, return_exceptions=True)
        actors = list(self._live)
        if self._idle is not None:
            while not self._idle.empty():
                actors.append(self._idle.get_nowait())
        if actors:  # a clean close: sandboxes and temp dirs go first, then the actors
            closing = [_await(a.handle.close.remote()) for a in set(actors)]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10.0)
        for a in set(actors):
            self._kill(a)
        self.shutdown()

    def shutdown(self) -> None:
        if self._owns_ray and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False


async def _await(ref: Any) -> Any:
    """An ObjectRef's value without blocking the loop (a Ray client's refs too)."""
    return await asyncio.wrap_future(ref.future())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]

