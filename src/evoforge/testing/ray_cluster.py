"""LocalRayCluster: a real multi-node Ray cluster on loopback for tests, benchmarks and demos.

Each node is ``ray start --block`` (the head with ``--head``) run as a subprocess in its own
process group with its own ``--num-cpus`` and a custom resource naming it (``node_NAME``), all
nodes sharing one short temp dir of the cluster's own (Ray's unix sockets allow ~107 chars).
A node is stopped by killing its process group (SIGKILL: that is also how a node "dies" in
fault tests); never ``ray stop``, which stops every Ray on the machine. Readiness is an event:
the line ``ray start`` prints once the node is up, then the node seen alive in the GCS.

Script use: ``python -m evoforge.testing.ray_cluster start --dir DIR --node head:2 --node w1:2``
prints the GCS address as its last line and stays in the foreground until SIGTERM/SIGINT (then
it stops its nodes) or until one of its nodes dies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalRayCluster", "RayNode"]

_READY = ("Ray runtime started", "--block")  # lines `ray start --block` prints once up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


@dataclass(eq=False)
class RayNode:
    name: str
    num_cpus: float
    proc: subprocess.Popen[str]
    log: Path
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def resource(self) -> str:
        return f"node_{self.name}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the node's whole process group (raylet, its workers, the GCS on the head)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        if self.pump is not None:
            self.pump.join(timeout=10)  # EOF once the group is gone
        if self.proc.stdout is not None and (self.pump is None or not self.pump.is_alive()):
            self.proc.stdout.close()


class LocalRayCluster:
    """Nodes on 127.0.0.1 started by :meth:`add_node`; :meth:`stop` kills what it started."""

    def __init__(self, root: Path | None = None, *, object_store_mb: int = 80,
                 system_config: dict[str, object] | None = None,
                 env: dict[str, str] | None = None) -> None:
        # short: Ray's socket paths live under it
        self.root = Path(root) if root is not None else Path(
            tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        # not 127.0.0.1: Ray swaps that for the machine's routable address; any other
        # loopback address it keeps, so every node and connection stays on loopback
        self.ip = "127.0.0.2"
        self.port = _free_port()
        self.address = f"{self.ip}:{self.port}"
        self.client_port = _free_port()
        self.client_address = f"ray://{self.ip}:{self.client_port}"  # the head's Ray client
        self.nodes: list[RayNode] = []
        self.object_store_mb = object_store_mb
        self.env = dict(env or {})  # extra environment of every node (and its workers)
        # node deaths noticed in about a second (Ray's defaults take ~30 s)
        self.system_config = system_config if system_config is not None else {
            "health_check_initial_delay_ms": 1000, "health_check_period_ms": 500,
            "health_check_failure_threshold": 2, "health_check_timeout_ms": 500}

    def add_node(self, name: str, num_cpus: float, *, timeout: float = 90.0,
                 resources: dict[str, float] | None = None) -> RayNode:
        """Start one node (the first is the head) and wait until it is up."""
        return self.add_nodes([(name, num_cpus)], timeout=timeout, resources=resources)[0]

    def add_nodes(self, specs: list[tuple[str, float]], *, timeout: float = 90.0,
                  resources: dict[str, float] | None = None,
                  wait_alive: bool = True) -> list[RayNode]:
        """Start nodes ``(name, cpus)`` all at once (workers retry until the head's GCS is up)
        and wait until every one printed that it is up and (``wait_alive``) the GCS lists
        them (a caller that connects afterwards may rather wait for that itself)."""
        started = [self._launch(name, cpus, resources) for name, cpus in specs]
        for node, up in started:
            if not up.wait(timeout) or node.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"ray node {node.name} did not start:\n"
                                   + "".join(node.lines[-30:]))
        if wait_alive and any(node is not self.nodes[0] for node, _ in started):
            self._wait_alive(sum(n.alive() for n in self.nodes), timeout)
        return [node for node, _ in started]

    def _launch(self, name: str, num_cpus: float,
                resources: dict[str, float] | None) -> tuple[RayNode, threading.Event]:
        head = not self.nodes
        res = {f"node_{name}": 1000.0, **(resources or {})}
        argv = [_ray_cli(), "start", "--block", f"--num-cpus={num_cpus:g}", "--num-gpus=0",
                f"--resources={json.dumps(res)}", f"--node-ip-address={self.ip}",
                "--disable-usage-stats", f"--object-store-memory={self.object_store_mb << 20}",
                f"--dashboard-agent-listen-port={_free_port()}",
                f"--dashboard-agent-grpc-port={_free_port()}",
                f"--metrics-export-port={_free_port()}",
                f"--runtime-env-agent-port={_free_port()}"]
        if head:
            argv += ["--head", f"--port={self.port}", f"--temp-dir={self.root}",
                     "--include-dashboard=false", f"--ray-client-server-port={self.client_port}",
                     f"--system-config={json.dumps(self.system_config)}"]
        else:
            argv += [f"--address={self.address}"]
        log = self.root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_USAGE_STATS_ENABLED="0", **self.env)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, env=env,
                                start_new_session=True)  # its own process group
        node = RayNode(name, num_cpus, proc, log)
        self.nodes.append(node)
        up = threading.Event()

        def pump() -> None:  # keeps the pipe drained for the node's whole life
            assert proc.stdout is not None
            with log.open("w") as f:
                for line in proc.stdout:
                    f.write(line)
                    f.flush()
                    node.lines.append(line)
                    if any(m in line for m in _READY):
                        up.set()
            up.set()

        node.pump = threading.Thread(target=pump, daemon=True)
        node.pump.start()
        return node, up

    def _wait_alive(self, count: int, timeout: float) -> None:
        """Until the GCS lists ``count`` live nodes: asked through this process's connection
        when it has one (a driver of this cluster), else through a short-lived driver."""
        import ray

        if ray.is_initialized():
            end = time.monotonic() + timeout
            while sum(bool(n["Alive"]) for n in ray.nodes()) < count:
                if time.monotonic() > end:
                    raise RuntimeError(f"the cluster at {self.address} did not list {count} "
                                       "live nodes")
                time.sleep(0.1)
            return
        code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False, "
                "configure_logging=False); print(sum(n['Alive'] for n in ray.nodes()))")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = subprocess.run([sys.executable, "-c", code, self.address], text=True,
                                 capture_output=True, timeout=timeout, check=False)
            if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= count:
                return
        raise RuntimeError(f"the cluster at {self.address} did not list {count} live nodes")

    def node(self, name: str) -> RayNode:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        """Kill every node this cluster started (workers first, the head last)."""
        for node in reversed(self.nodes):
            node.kill()

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evoforge.testing.ray_cluster")
    sub = ap.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start nodes; stop them on SIGTERM")
    start.add_argument("--dir", type=Path, default=None, help="the cluster's temp dir (short)")
    start.add_argument("--node", action="append", required=True, metavar="NAME:CPUS",
                       help="a node (the first is the head); repeat for more")
    args = ap.parse_args(argv)
    cluster = LocalRayCluster(args.dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        specs = [(name, float(cpus or 1)) for name, _, cpus in
                 (spec.partition(":") for spec in args.node)]
        cluster.add_nodes(specs)
        print(cluster.address, flush=True)
        while not stop.wait(0.5):
            if not all(n.alive() for n in cluster.nodes):
                break
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
