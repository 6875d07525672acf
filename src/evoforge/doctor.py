"""``evoforge doctor``: what this machine supports for running untrusted candidates.

:func:`checks` probes the interpreter, bubblewrap (installed and working), the isolation it
gives (network, PID namespace, read-only system; tested from inside a real sandbox against a
loopback listener started here) and the rlimits; :func:`render` formats the result.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from evoforge.sandbox import MISSING_WITHOUT_BUBBLEWRAP, BubblewrapSandbox, bubblewrap_problem

__all__ = ["Check", "checks", "render"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


# Runs inside the sandbox; prints one JSON object of what it could do.
_PROBE = r"""
import json, os, socket, sys
port, parent = int(sys.argv[1]), int(sys.argv[2])
facts = {"pid": os.getpid(), "processes": sum(p.isdigit() for p in os.listdir("/proc"))}
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    facts["loopback"] = "connected"
except OSError as e:
    facts["loopback"] = f"{type(e).__name__}: {e.strerror or e}"
try:
    with open(f"/proc/{parent}/cmdline", "rb") as f:
        facts["parent_cmdline"] = f.read().decode("utf-8", "replace")
except OSError:
    facts["parent_cmdline"] = None
try:
    with open(sys.argv[3], "w") as f:
        f.write("x")
    facts["wrote_outside"] = True
except OSError:
    facts["wrote_outside"] = False
print(json.dumps(facts))
"""


def _python_check() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    detail = f"{sys.version.split()[0]} ({sys.executable})"
    return Check("python", ok, detail if ok else f"{detail}; evoforge needs Python 3.11+")


def _bwrap_version(bwrap: str) -> str:
    try:
        out = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    return out.stdout.strip() or "unknown version"


def _isolation_checks() -> list[Check]:
    """Network, PID namespace and read-only system, observed from inside a real sandbox."""
    names = ("network isolation", "PID namespace", "read-only filesystem")
    problem = bubblewrap_problem()
    if problem is not None:
        return [Check(n, False, f"not available without bubblewrap ({problem})") for n in names]
    sandbox = BubblewrapSandbox()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        with tempfile.TemporaryDirectory(prefix="evoforge-doctor-") as tmp:
            scratch = Path(tmp) / "scratch"
            scratch.mkdir()
            outside = Path(tmp) / "outside.txt"
            exe = Path(sys.executable)
            readable = [exe.parent.parent, exe.resolve().parent.parent,
                        Path(sys.prefix), Path(sys.base_prefix), Path(tmp)]
            cmd = sandbox.command(
                [sys.executable, "-I", "-c", _PROBE, str(port), str(os.getpid()), str(outside)],
                cwd=scratch,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                readable=readable,
            )
            try:
                done = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                    check=False,
                )
                facts = json.loads(done.stdout)
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                why = f"the sandbox probe failed: {e}"
                return [Check(n, False, why) for n in names]
            wrote = outside.exists() or bool(facts["wrote_outside"])
        try:
            listener.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
    finally:
        listener.close()

    with open("/proc/self/cmdline", "rb") as f:
        me = f.read().decode("utf-8", "replace")
    net_ok = not reached and facts["loopback"] != "connected"
    pid_ok = facts["parent_cmdline"] != me and facts["processes"] < 10
    return [
        Check(
            "network isolation",
            net_ok,
            f"a connection to a loopback listener outside failed ({facts['loopback']})"
            if net_ok else "a sandboxed process reached a listener on this machine's loopback",
        ),
        Check(
            "PID namespace",
            pid_ok,
            f"the sandbox sees {facts['processes']} process(es), itself as pid {facts['pid']}; "
            "setsid daemons die with the evaluation"
            if pid_ok else "the sandbox can see this process",
        ),
        Check(
            "read-only filesystem",
            not wrote,
            "writing outside the scratch dir fails; scratch is a size-capped tmpfs"
            if not wrote else "a sandboxed process wrote outside its scratch dir",
        ),
    ]


def _rlimit_checks() -> list[Check]:
    try:
        import resource
    except ImportError:
        return [Check("rlimits", False, "the resource module is missing (not POSIX): no limits")]
    wanted = {
        "RLIMIT_AS": "address space (memory_mb)",
        "RLIMIT_CPU": "CPU time (from timeout)",
        "RLIMIT_FSIZE": "file size (scratch_mb per file)",
        "RLIMIT_NOFILE": "open files (max_open_files)",
    }
    have, missing = [], []
    for name, what in wanted.items():
        which = getattr(resource, name, None)
        try:
            if which is None:
                raise ValueError(name)
            resource.getrlimit(which)
            have.append(what)
        except (ValueError, OSError):
            missing.append(what)
    out = [
        Check(
            "rlimits",
            not missing,
            "set per evaluation: " + ", ".join(have)
            + (f"; MISSING: {', '.join(missing)}" if missing else ""),
        )
    ]
    if not hasattr(resource, "RLIMIT_NPROC"):
        out.append(Check("process limit", False, "RLIMIT_NPROC is not available here"))
    elif os.getuid() == 0:
        out.append(
            Check(
                "process limit",
                False,
                "running as root: the kernel does not enforce RLIMIT_NPROC (max_processes) for "
                "uid 0, so a fork bomb is bounded only by the deadline and memory"
                + (" and dies with the PID namespace" if bubblewrap_problem() is None else "")
                + "; run evoforge as an ordinary user to enforce it",
            )
        )
    else:
        out.append(Check("process limit", True, "RLIMIT_NPROC (max_processes) is enforced"))
    return out


def checks() -> list[Check]:
    """Probe this machine. Takes well under a second where bubblewrap works."""
    out = [_python_check()]
    bwrap = shutil.which("bwrap")
    problem = bubblewrap_problem()
    if problem is None and bwrap is not None:
        out.append(Check("bubblewrap", True, f"{_bwrap_version(bwrap)} at {bwrap}, working"))
    else:
        out.append(
            Check(
                "bubblewrap",
                False,
                f"{problem}. Without it candidates run with the process sandbox, without: "
                + "; ".join(MISSING_WITHOUT_BUBBLEWRAP),
            )
        )
    out += _isolation_checks()
    out += _rlimit_checks()
    out.append(_toolchain_check())
    return out


def _toolchain_check() -> Check:
    """Tools the built-in problems run (problem.yaml ``requires``)."""
    from evoforge.problem import builtin_problems, missing_tools, problem_meta

    missing: dict[str, set[str]] = {}
    for name, path in builtin_problems().items():
        for tool, pkg in missing_tools(problem_meta(path)).items():
            missing.setdefault(f"{tool} ({pkg})", set()).add(name)
    if not missing:
        return Check("problem toolchains", True, "every tool the built-in problems run is on PATH")
    detail = "; ".join(f"{t} for {', '.join(sorted(ps))}" for t, ps in sorted(missing.items()))
    pkgs = sorted({t.split("(")[1].rstrip(")") for t in missing})
    return Check("problem toolchains", False, f"missing {detail}: apt-get install {' '.join(pkgs)}")


def render(results: list[Check]) -> str:
    """One line per check (``ok``/``FAIL``, name, detail) and a summary line."""
    width = max((len(c.name) for c in results), default=0)
    lines = [f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in results]
    failed = [c.name for c in results if not c.ok]
    if not failed:
        lines.append("all checks passed: candidates run fully sandboxed on this machine")
    else:
        lines.append(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}")
    return "\n".join(lines)
