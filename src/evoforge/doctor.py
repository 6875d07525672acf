"""``evoforge doctor``: proves, on this machine, each protection candidates get.

:func:`checks` builds a sandbox exactly as evaluations do (``evaluation.sandbox``,
``sandbox_user``, ``sandbox_paths``; the interpreter and evoforge's source readable, the
environment allow-listed, a size-capped tmpfs scratch) and runs a small probe in it that
attacks the host: remount the filesystem read-write (also through the setuid ``mount``) and
write a world-writable host dir, unmount the mounts that hide things (also from a nested user
namespace, and by bind-mounting a dir without its covers), read ``/etc/shadow`` and a root-only
file, connect to UNIX sockets and a loopback listener this process holds open, read and write a
hidden run dir's ``evoforge.db``, signal this process and ``kill(-1)``, fork past
``max_processes`` and allocate past ``memory_mb``. Each attack is judged from inside (what the
probe managed) and, where it leaves a trace, from outside (no file appeared, no listener was
reached, no signal arrived, the database is unchanged). A check FAILs when an attack worked.

A check that fails is *required* when the configuration asks for that protection (the
bubblewrap protections unless ``evaluation.sandbox=process``; the unprivileged uid unless
``evaluation.sandbox_user=root``): :func:`failed` lists those, and ``evoforge doctor`` exits 1
when there are any. Other failures are warnings. :func:`render` formats the result.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoforge.config import EvaluationConfig
from evoforge.executors.local import _interpreter_path, interpreter_paths
from evoforge.sandbox import (
    MISSING_WITHOUT_BUBBLEWRAP,
    BubblewrapSandbox,
    bubblewrap_problem,
    minimal_env,
    resolve_user,
)

__all__ = ["Check", "checks", "failed", "render"]

_WORKER = Path(__file__).resolve().parent / "executors" / "_worker.py"
_PROBE_TIMEOUT = 30.0
_FILE_MB = 1  # the per-file cap the probe tests (evaluations use scratch_mb)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    #: the configuration asks for this protection: a failure makes ``evoforge doctor`` exit 1
    required: bool = field(default=True, compare=False)


#: the checks only a bubblewrap sandbox can pass, in the order they are reported
_SANDBOX_CHECKS = (
    "sandbox user", "capabilities", "network isolation", "PID namespace", "signals",
    "read-only filesystem", "mount covers", "root-only files", "host sockets", "run dir hidden",
)

# Runs inside the sandbox (stdlib only, no evoforge import); argv[1] is a JSON object of what
# to attack (see _Scene.args). Prints one JSON report line, then sends kill(-1, SIGTERM) and
# prints a second line with its result.
_PROBE = r"""
import ctypes, errno, json, mmap, os, socket, subprocess, sys
A = json.loads(sys.argv[1])
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
r = {}


def tried(fn):
    try:
        return "OK " + repr(fn())[:300]
    except BaseException as e:  # noqa: BLE001
        why = [errno.errorcode.get(getattr(e, "errno", None) or 0), getattr(e, "strerror", None)]
        why = ": ".join(w for w in why if w)
        return "denied " + type(e).__name__ + (f" ({why})" if why else "")


def sh(cmd):
    try:
        done = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=10, env=ENV)
    except Exception as e:  # noqa: BLE001
        return {"rc": type(e).__name__, "out": ""}
    return {"rc": done.returncode, "out": done.stdout.decode("utf-8", "replace")[-3000:]}


def write(path):
    with open(path, "a") as f:
        f.write("evoforge doctor was here\n")
    return "written"


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(path)
    s.sendall(b"evoforge doctor")
    s.close()
    return "connected"


libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND, MNT_DETACH = 32, 4096, 2
BIND = "/tmp/evoforge-doctor-bind"


def _sys(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mount(src, target, fstype, flags):
    def enc(s):
        return None if s is None else s.encode()
    _sys(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), None))
    return "mounted"


def umount(target):
    _sys(libc.umount2(target.encode(), MNT_DETACH))
    return "unmounted"


def mount_attacks():
    vis, run = A["visible"], A["run_dir"]
    out = {}
    for where in ("/", "/usr", vis):  # read-write again
        out["remount " + where] = tried(lambda w=where: mount(None, w, None, MS_REMOUNT | MS_BIND))
    for where in ("/tmp", run):  # uncover what a mount hides
        out["unmount " + where] = tried(lambda w=where: umount(w))
    out["bind " + vis] = tried(lambda: mount(vis, BIND, None, MS_BIND))  # without its covers
    if out["bind " + vis].startswith("OK"):
        out["listed the run dir through the bind"] = tried(lambda: os.listdir(BIND + "/run"))
    return out


def in_child(fn):
    # fn(out) in a forked child (a namespace or rlimits of its own); its out dict comes back
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = {}
        try:
            os.close(rfd)
            fn(out)
        except BaseException as e:  # noqa: BLE001
            out["error"] = f"{type(e).__name__}: {e}"
        finally:
            try:
                os.write(wfd, json.dumps(out).encode())
            finally:
                os._exit(0)
    os.close(wfd)
    chunks = []
    while True:
        data = os.read(rfd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(rfd)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b"{}")


def nested(out):
    # a user + mount namespace of our own (as `unshare -Urm`): full capabilities in it
    uid, gid = os.getuid(), os.getgid()
    _sys(libc.unshare(0x10000000 | 0x00020000))  # CLONE_NEWUSER | CLONE_NEWNS
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    out["entered"] = True
    # control: a fresh mount works here, so failures below are the kernel's locks
    out["control"] = tried(lambda: mount("none", "/tmp/evoforge-doctor-ctl", "tmpfs", 0))
    out["attacks"] = mount_attacks()
    out["write"] = {p: tried(lambda p=p: write(p)) for p in A["nested_targets"]}
    out["run_list"] = tried(lambda: sorted(os.listdir(A["run_dir"])))


def limits(out):
    import importlib.util, resource
    spec = importlib.util.spec_from_file_location("evoforge_doctor_worker", A["worker"])
    w = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w)
    L = A["limits"]
    w._set_limits(L["memory_mb"], L["cpu_seconds"], L["file_mb"], L["open_files"],
                  L["max_processes"])
    out["cpu"] = resource.getrlimit(resource.RLIMIT_CPU)
    out["core"] = resource.getrlimit(resource.RLIMIT_CORE)
    if L["max_processes"] is not None:
        rfd, wfd = os.pipe()
        kids = []
        def forks():
            for _ in range(L["max_processes"] + 16):
                pid = os.fork()
                if pid == 0:
                    try:
                        os.close(wfd)
                        os.read(rfd, 1)
                    finally:
                        os._exit(0)
                kids.append(pid)
        out["fork"] = tried(forks)
        out["forked"] = len(kids)
        os.close(wfd)
        for k in kids:
            os.waitpid(k, 0)
        os.close(rfd)
    if L["open_files"] is not None:
        fds = []
        def opens():
            while len(fds) < L["open_files"] + 8:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        out["open"] = tried(opens)
        out["opened"] = len(fds)
        for fd in fds:
            os.close(fd)
    def big():
        with open("evoforge-doctor-big", "wb") as f:
            f.write(b"x" * ((L["file_mb"] + 1) << 20))
    out["file"] = tried(big)
    if L["memory_mb"] is not None:
        out["memory"] = tried(lambda: mmap.mmap(-1, (L["memory_mb"] + 64) << 20).close())


if A["mode"] == "limits":
    print(json.dumps({"limits": in_child(limits)}), flush=True)
    sys.exit(0)

status = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        status[key] = value.strip()
r["uid"] = [os.getuid(), os.geteuid()]
r["gid"] = [os.getgid(), os.getegid()]
r["groups"] = os.getgroups()
r["caps"] = {k: status.get(k) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
r["no_new_privs"] = status.get("NoNewPrivs")

r["tcp"] = tried(lambda: socket.create_connection(("127.0.0.1", A["port"]), timeout=2).close())
r["abstract"] = tried(lambda: connect("\0" + A["abstract"]))
r["interfaces"] = [name for _, name in socket.if_nameindex()]

ctl = A["controller"]
r["pid"] = os.getpid()
r["processes"] = sum(p.isdigit() for p in os.listdir("/proc"))
r["controller_cmdline"] = tried(lambda: read(f"/proc/{ctl}/cmdline"))
r["signal0"] = tried(lambda: os.kill(ctl, 0))

r["scratch"] = tried(lambda: write("evoforge-doctor-scratch"))
marker = "/tmp/evoforge-doctor-marker"
r["marker_written"] = tried(lambda: write(marker))
for d in (BIND, "/tmp/evoforge-doctor-ctl"):
    os.makedirs(d, exist_ok=True)
r["mount"] = mount_attacks()
r["setuid_mount"] = {cmd: sh(cmd)["rc"] for cmd in A["setuid_mount"]}
r["nested"] = in_child(nested)
r["marker"] = os.path.exists(marker)
r["write"] = {p: tried(lambda p=p: write(p)) for p in A["targets"]}
r["read"] = {p: tried(lambda p=p: read(p)) for p in A["secrets"]}
r["connect"] = {p: tried(lambda p=p: connect(p)) for p in A["sockets"]}
run_dir = A["run_dir"]
db = os.path.join(run_dir, "evoforge.db")
r["run_list"] = tried(lambda: sorted(os.listdir(run_dir)))
r["run_read"] = tried(lambda: read(db))
r["run_write"] = tried(lambda: write(db))
r["limits"] = in_child(limits)
print(json.dumps(r), flush=True)
# kill(-1) only where the controller is out of sight: with no PID namespace it would hit the host
if r["controller_cmdline"].startswith("denied"):
    kill = tried(lambda: os.kill(-1, 15))
else:
    kill = "skipped: this process sees the controller"
print(json.dumps({"kill": kill}), flush=True)
"""


def _python_check(exe: str) -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    detail = f"{sys.version.split()[0]} ({sys.executable})"
    if exe != sys.executable:
        detail += f"; evaluations run {exe}"
        if not os.access(exe, os.X_OK):
            return Check("python", False, f"{detail}, which is not an executable file "
                         "(evaluation.python)")
    return Check("python", ok, detail if ok else f"{detail}; evoforge needs Python 3.11+")


def _bwrap_version(bwrap: str) -> str:
    try:
        out = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    return out.stdout.strip() or "unknown version"


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# -- what the probe attacks, set up outside ----------------------------------------------------


@dataclass
class _Scene:
    """Everything the probe attacks, made outside the sandbox and removed afterwards."""

    nonce: str
    base: Path
    scratch: Path
    visible: Path  # shown read-only (like a problem dir); holds ``open`` and ``run``
    hostdir: Path  # world-writable, not shown
    open_dir: Path  # world-writable, shown read-only
    run_dir: Path  # inside ``visible``, hidden the way the executor hides run dirs
    db_text: str
    usr_target: Path
    secret_file: Path
    secret: str
    secret_how: str
    sockets: list[Path]
    listeners: list[socket.socket]
    abstract: str
    abstract_listener: socket.socket
    tcp: socket.socket
    made: list[Path]  # files outside ``base`` to remove

    @property
    def targets(self) -> list[Path]:
        return [self.hostdir / "pwned", self.open_dir / "pwned", self.usr_target]

    def args(self, ev: EvaluationConfig) -> dict[str, Any]:
        return {
            "mode": "attack",
            "port": self.tcp.getsockname()[1],
            "abstract": self.abstract,
            "controller": os.getpid(),
            # the setuid mount(8) as well as the system calls themselves
            "setuid_mount": [
                "mount -o remount,bind,rw /",
                "mount -o remount,bind,rw /usr",
                f"umount -l {shlex.quote(str(self.run_dir))}",
            ],
            "visible": str(self.visible),
            "targets": [str(p) for p in self.targets],
            "nested_targets": [str(self.open_dir / "pwned-nested"), str(self.usr_target)],
            "secrets": ["/etc/shadow", str(self.secret_file)],
            "sockets": [str(p) for p in self.sockets],
            "run_dir": str(self.run_dir),
            "worker": str(_WORKER),
            "limits": _limits(ev),
        }

    def written(self) -> list[Path]:
        """Host files an attack created (seen from outside)."""
        found = [p for p in self.targets if p.exists() or p.is_symlink()]
        found += [p for p in self.open_dir.iterdir()] if self.open_dir.is_dir() else []
        return sorted(set(found))

    def reached(self) -> list[str]:
        """Listeners a sandboxed process connected to (seen from outside)."""
        hit = []
        pairs = [*zip(map(str, self.sockets), self.listeners, strict=True),
                 (f"@{self.abstract} (abstract)", self.abstract_listener),
                 (f"127.0.0.1:{self.tcp.getsockname()[1]}", self.tcp)]
        for name, listener in pairs:
            try:
                listener.accept()[0].close()
                hit.append(name)
            except (BlockingIOError, OSError):
                pass
        return hit


def _listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        os.chmod(path, 0o777)  # only the sandbox's view can protect it, not its permissions
        s.listen(4)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


@contextlib.contextmanager
def _scene() -> Iterator[_Scene]:
    nonce = secrets.token_hex(6)
    root = os.geteuid() == 0
    parent = "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()
    base = Path(tempfile.mkdtemp(prefix=f"evoforge-doctor-{nonce}-", dir=parent))
    closing: list[socket.socket] = []
    made: list[Path] = []
    try:
        os.chmod(base, 0o755)
        scratch = base / "scratch"
        scratch.mkdir()
        visible = base / "problem"
        visible.mkdir()
        os.chmod(visible, 0o755)
        hostdir = base / "hostdir"
        hostdir.mkdir()
        os.chmod(hostdir, 0o777)  # anyone may write here: only the sandbox's view protects it
        open_dir = visible / "open"
        open_dir.mkdir()
        os.chmod(open_dir, 0o777)
        run_dir = visible / "run"
        run_dir.mkdir()
        os.chmod(run_dir, 0o755)
        db_text = f"evoforge doctor run dir {nonce}\n"
        (run_dir / "evoforge.db").write_text(db_text)
        os.chmod(run_dir / "evoforge.db", 0o644)  # readable by anyone: only hiding protects it
        secret = f"evoforge-doctor-secret-{nonce}"
        share = Path("/usr/local/share")
        if root:
            # root-only, in a directory every sandbox shows: only the uid protects it
            where = share if share.is_dir() and os.access(share, os.W_OK) else visible
            secret_file = where / f"evoforge-doctor-{nonce}.secret"
            mode, how = 0o600, f"a root-only file (0600) at {secret_file}"
        else:
            # this user's own file with no permissions: only a capability could read it
            secret_file = visible / f"evoforge-doctor-{nonce}.secret"
            mode, how = 0o000, f"a file of this user with mode 0000 at {secret_file}"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        made.append(secret_file)
        try:
            os.write(fd, secret.encode())
        finally:
            os.close(fd)
        os.chmod(secret_file, mode)
        sockets = [base / "host.sock", Path(tempfile.gettempdir()) / f"evoforge-doctor-{nonce}.sock"]
        if os.access("/run", os.W_OK):
            sockets.append(Path("/run") / f"evoforge-doctor-{nonce}.sock")
        listeners = []
        for path in sockets:
            listeners.append(_listen(path))
            closing.append(listeners[-1])
            made.append(path)
        abstract = f"evoforge-doctor-{nonce}"
        abstract_listener = socket.socket(socket.AF_UNIX)
        closing.append(abstract_listener)
        abstract_listener.bind("\0" + abstract)
        abstract_listener.listen(4)
        abstract_listener.setblocking(False)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        closing.append(tcp)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(4)
        tcp.setblocking(False)
        usr_target = Path("/usr") / f"evoforge-doctor-{nonce}"
        made.append(usr_target)
        yield _Scene(nonce, base, scratch, visible, hostdir, open_dir, run_dir, db_text,
                     usr_target, secret_file, secret, how, sockets, listeners, abstract,
                     abstract_listener, tcp, made)
    finally:
        for s in closing:
            s.close()
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        shutil.rmtree(base, ignore_errors=True)


def _limits(ev: EvaluationConfig) -> dict[str, int | None]:
    """The rlimits an evaluation's worker sets (the per-file cap made small to test it)."""
    return {
        "memory_mb": ev.memory_mb,
        "cpu_seconds": int(ev.timeout) + 2,
        "file_mb": _FILE_MB,
        "open_files": ev.max_open_files,
        "max_processes": ev.max_processes,
    }


@contextlib.contextmanager
def _signals_seen() -> Iterator[list[int]]:
    """Record a SIGTERM (what the probe's ``kill(-1)`` sends) sent to this process meanwhile,
    instead of dying of it. Only in the main thread (elsewhere: nothing is recorded)."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    old = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, old)


def _run(cmd: list[str], *, cwd: str) -> tuple[list[dict[str, Any]], str]:
    """Run the probe as the executor starts a sandbox (own session, PATH only); its report
    lines and the tail of its stderr."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        close_fds=True, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=_PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += b"\n(timed out)"
    lines = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                lines.append(obj)
    err = stderr.decode("utf-8", "replace").strip()
    return lines, (err[-400:] or f"exit status {proc.returncode}")


# -- judging the report ------------------------------------------------------------------------


def _denied(value: object) -> bool:
    return isinstance(value, str) and value.startswith("denied")


def _sandbox_checks(sandbox: BubblewrapSandbox, ev: EvaluationConfig, exe: str,
                    asked_user: bool) -> list[Check]:
    """Attack the host from inside ``sandbox``; one check per protection."""
    with _scene() as scene:
        cmd = sandbox.command(
            [exe, "-I", "-c", _PROBE, json.dumps(scene.args(ev))],
            cwd=scene.scratch,
            env=minimal_env(ev.env_allow, scene.scratch),
            readable=[*interpreter_paths(exe), scene.visible],
            scratch_mb=ev.scratch_mb,
            files={},
            hidden=[scene.run_dir],
        )
        with _signals_seen() as signalled:
            lines, err = _run(cmd, cwd="/")
        seen = _Outside(
            reached=scene.reached(),
            written=scene.written(),
            db_intact=(scene.run_dir / "evoforge.db").read_text() == scene.db_text,
            signalled=signalled,
        )
        try:
            if lines:
                return _judge(sandbox, ev, lines, scene, seen, asked_user)
            why = f"the sandbox probe gave no report: {err}"
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            why = f"the sandbox probe's report is incomplete ({type(e).__name__}: {e}): {err}"
    return [Check(n, False, why) for n in (*_SANDBOX_CHECKS, "rlimits", "process limit")]


@dataclass(frozen=True)
class _Outside:
    """What the attacks left behind, seen from outside the sandbox."""

    reached: list[str]  # listeners that got a connection
    written: list[Path]  # host files that appeared
    db_intact: bool  # the hidden run dir's evoforge.db is unchanged
    signalled: list[int]  # signals this process received


def _judge(sandbox: BubblewrapSandbox, ev: EvaluationConfig, lines: list[dict[str, Any]],
           scene: _Scene, seen_outside: _Outside, asked_user: bool) -> list[Check]:
    """One check per protection, from the probe's report and what was seen outside."""
    root = os.geteuid() == 0
    reached, written = seen_outside.reached, seen_outside.written
    signalled = seen_outside.signalled
    secret, secret_how = scene.secret, scene.secret_how
    sockets = [str(p) for p in scene.sockets]
    run_dir, nonce = scene.run_dir, scene.nonce
    r = lines[0]
    kill = lines[1]["kill"] if len(lines) > 1 else "no report (the probe died)"
    report = json.dumps(lines)
    out: list[Check] = []

    # who candidates run as
    uid, gid, groups = r["uid"][0], r["gid"][0], r["groups"]
    seen = f"inside: uid {uid}, gid {gid}, groups {groups or 'none'}"
    if sandbox.user is not None:
        u, g = sandbox.user
        ok = r["uid"] == [u, u] and r["gid"] == [g, g] and not groups
        detail = (f"candidates run as {_user_name(u)} (uid {u}, gid {g}), no supplementary "
                  f"groups; {seen}")
    elif root:
        ok = False
        detail = f"candidates run as root: they own whatever root owns and can see; {seen}"
    else:
        me = os.getuid()
        ok = r["uid"] == [me, me] and me != 0
        detail = (f"candidates run as {_user_name(me)} (uid {me}), the user running evoforge, "
                  f"in a user namespace; {seen}")
    out.append(Check("sandbox user", ok, detail, required=asked_user))

    # capabilities
    caps = {k: int(v or "0", 16) for k, v in r["caps"].items()}
    caps_ok = not any(caps.values()) and r["no_new_privs"] == "1"
    uid_ok = not (root and 0 in r["uid"])
    caps_text = ", ".join(f"{k} {v:x}" for k, v in caps.items())
    if caps_ok and uid_ok:
        detail = f"none inside ({caps_text}), no_new_privs set, uid {uid}"
    else:
        detail = (f"inside: {caps_text}, no_new_privs {r['no_new_privs']}, uid {uid}"
                  + ("" if caps_ok else ": capability sets not all empty, or no_new_privs unset")
                  + ("" if uid_ok else ": root without capabilities still owns the system's "
                     "files"))
    out.append(Check("capabilities", caps_ok and uid_ok, detail,
                     required=asked_user or not caps_ok))

    # network
    net_ok = _denied(r["tcp"]) and _denied(r["abstract"]) and not any(
        "127.0.0.1" in h or "abstract" in h for h in reached)
    out.append(Check(
        "network isolation", net_ok,
        f"a loopback listener outside and an abstract UNIX socket were unreachable "
        f"({r['tcp'][7:]}; {r['abstract'][7:]}); interfaces inside: "
        f"{', '.join(r['interfaces']) or 'none'}"
        if net_ok else f"a sandboxed process reached a listener outside: tcp {r['tcp']}, "
        f"abstract {r['abstract']}; connections that arrived outside: "
        f"{[h for h in reached if '127.0.0.1' in h or 'abstract' in h] or 'none'}",
    ))

    # PID namespace
    with open("/proc/self/cmdline", "rb") as f:
        me_cmd = f.read().decode("utf-8", "replace")
    sees_me = r["controller_cmdline"] == "OK " + repr(me_cmd)[:300]
    pid_ok = not sees_me and r["processes"] < 10
    out.append(Check(
        "PID namespace", pid_ok,
        f"the sandbox sees {r['processes']} process(es), itself as pid {r['pid']}, not this "
        "one; setsid daemons die with the evaluation"
        if pid_ok else f"the sandbox sees {r['processes']} processes"
        + (", this one included" if sees_me else ""),
    ))

    # signals
    sig0_hit = r["signal0"].startswith("OK") and sees_me
    sig_ok = not signalled and not sig0_hit and not kill.startswith("skipped")
    out.append(Check(
        "signals", sig_ok,
        f"kill({os.getpid()}, 0) from inside: {r['signal0'][7:] or 'no such process'}; "
        f"kill(-1, SIGTERM) reached nothing outside (this process is alive and got no signal)"
        if sig_ok else
        f"kill(-1, SIGTERM) from inside: {kill}; signals received here: "
        f"{[signal.Signals(s).name for s in signalled] or 'none'}; kill(pid, 0): "
        f"{r['signal0']}",
    ))

    # read-only filesystem, and the mounts that cover what must not be seen
    n = r["nested"]
    nested_in = bool(n.get("entered"))
    own = [k for k, v in r["mount"].items() if not _denied(v)]
    setuid = [c for c, rc in r["setuid_mount"].items() if rc == 0]
    nest = [k for k, v in n.get("attacks", {}).items()
            if not _denied(v) and not k.startswith(("bind", "listed"))]
    nest += [k for k, v in n.get("attacks", {}).items()
             if k.startswith("listed") and "evoforge.db" in v]
    nest += [f"listed {run_dir}" for v in [n.get("run_list", "")] if "evoforge.db" in v]
    nest += [f"wrote {p}" for p, v in n.get("write", {}).items() if not _denied(v)]
    if nested_in:
        nested_text = "also from a nested user namespace" + (
            " (where a fresh mount works)" if str(n.get("control")).startswith("OK") else
            " (where even a fresh mount failed)")
    else:
        nested_text = f"nested user namespaces are refused ({n.get('error', 'no report')})"
    wrote_inside = [p for p, v in r["write"].items() if not _denied(v)]
    ro_hits = [h for h in [*own, *setuid, *nest] if "remount" in h or h.startswith("wrote")]
    ro_ok = not (ro_hits or wrote_inside or written) and r["scratch"].startswith("OK")
    out.append(Check(
        "read-only filesystem", ro_ok,
        "remounting /, /usr and a shown dir read-write failed (by system call and by the "
        f"setuid mount), {nested_text}; a world-writable host dir, shown or not, and /usr "
        "stayed unwritten (checked outside); scratch is a size-capped tmpfs"
        if ro_ok else
        f"succeeded: {ro_hits or 'no remount'}; wrote inside: {wrote_inside or 'nothing'}; "
        f"host files that appeared: {[str(p) for p in written] or 'none'}; scratch write: "
        f"{r['scratch']}",
    ))
    cover_hits = [h for h in [*own, *setuid, *nest] if h not in ro_hits]
    cover_ok = not cover_hits and r["marker"]
    out.append(Check(
        "mount covers", cover_ok,
        "unmounting /tmp and the run dir's cover and bind-mounting a shown dir without its "
        f"covers failed, {nested_text}"
        if cover_ok else
        f"succeeded: {cover_hits or 'nothing'}; /tmp still the sandbox's own: {r['marker']}",
    ))

    # root-only files
    leaked = [p for p, v in r["read"].items() if not _denied(v)]
    out.append(Check(
        "root-only files", not leaked and secret not in report,
        f"/etc/shadow and {secret_how} could not be read"
        if not leaked else f"a sandboxed process read {', '.join(leaked)}",
        required=asked_user or "/etc/shadow" in leaked,
    ))

    # host sockets
    connected = [p for p, v in r["connect"].items() if not _denied(v)]
    socket_hits = [h for h in reached if h in sockets]
    out.append(Check(
        "host sockets", not connected and not socket_hits,
        f"world-writable UNIX sockets listening at {', '.join(sockets)} were unreachable "
        "(no connection arrived outside)"
        if not (connected or socket_hits) else
        f"a sandboxed process connected to {sorted(set(connected) | set(socket_hits))}",
    ))

    # run dir
    listed = r["run_list"]
    run_ok = (_denied(listed) or "evoforge.db" not in listed) and _denied(r["run_read"]) \
        and _denied(r["run_write"]) and seen_outside.db_intact \
        and f"run dir {nonce}" not in report
    out.append(Check(
        "run dir hidden", run_ok,
        f"a run dir inside a shown dir, hidden as the executor hides one, showed nothing "
        f"(listing it: {listed[7:] if _denied(listed) else listed[3:]}); its evoforge.db "
        "could be neither read nor written (unchanged outside)"
        if run_ok else
        f"a sandboxed process saw {run_dir}: listing {listed}; reading evoforge.db "
        f"{'worked' if not _denied(r['run_read']) else r['run_read']}; writing it "
        f"{'worked' if not _denied(r['run_write']) else r['run_write']}"
        f"{'' if seen_outside.db_intact else ' (changed outside)'}",
    ))
    out += _limit_checks(r.get("limits") or {}, ev, enforced_for_uid=sandbox.user is not None
                         or not root, asked_user=asked_user)
    return out


def _limit_checks(lim: dict[str, Any], ev: EvaluationConfig, *, enforced_for_uid: bool,
                  asked_user: bool, where: str = "inside the sandbox") -> list[Check]:
    """rlimits and the process limit, as the worker sets them, tested by the probe."""
    if "error" in lim or not lim:
        why = f"the rlimit probe failed: {lim.get('error', 'no report')}"
        return [Check("rlimits", False, why), Check("process limit", False, why)]
    def stopped_by(key: str, code: str) -> bool:  # failed for the limit, not another reason
        return _denied(lim.get(key)) and f"({code}" in str(lim.get(key))

    have, broken = [], []

    def tally(ok: bool, what: str, seen: object) -> None:
        if ok:
            have.append(what)
        else:
            broken.append(f"{what}: {seen}")

    if ev.memory_mb is not None:
        tally(stopped_by("memory", "ENOMEM"), f"address space (memory_mb={ev.memory_mb})",
              lim.get("memory"))
    tally(stopped_by("file", "EFBIG"), "file size (scratch_mb per file)", lim.get("file"))
    if ev.max_open_files is not None:
        tally(stopped_by("open", "EMFILE"), f"open files (max_open_files={ev.max_open_files})",
              lim.get("open"))
    cpu = _limits(ev)["cpu_seconds"]
    tally(lim.get("cpu") == [cpu, (cpu or 0) + 1], "CPU time (from timeout)", lim.get("cpu"))
    tally(lim.get("core") == [0, 0], "no core files", lim.get("core"))
    out = [Check(
        "rlimits", not broken,
        f"enforced {where}: " + ", ".join(have)
        + (f"; NOT PROVED: {'; '.join(broken)}" if broken else ""),
    )]
    if ev.max_processes is None:
        out.append(Check("process limit", False, "evaluation.max_processes is null: no cap on "
                         "processes", required=False))
        return out
    forked = int(lim.get("forked", 0))
    stopped = stopped_by("fork", "EAGAIN") and forked <= ev.max_processes
    out.append(Check(
        "process limit", stopped,
        f"forking stopped after {forked} children (max_processes={ev.max_processes})"
        if stopped else
        f"{forked} forks succeeded past max_processes={ev.max_processes}"
        + ("" if enforced_for_uid else ": the kernel does not enforce RLIMIT_NPROC for root "
           "(uid 0), so a fork bomb is bounded only by the deadline and memory"),
        required=enforced_for_uid or asked_user,
    ))
    return out


def _unsandboxed_limits(ev: EvaluationConfig, exe: str) -> list[Check]:
    """Without bubblewrap: the rlimit probe as a plain child, as the process sandbox runs one."""
    with tempfile.TemporaryDirectory(prefix="evoforge-doctor-") as tmp:
        args = {"mode": "limits", "worker": str(_WORKER), "limits": _limits(ev)}
        try:
            lines, err = _run([exe, "-I", "-c", _PROBE, json.dumps(args)], cwd=tmp)
        except OSError as e:
            lines, err = [], str(e)
    lim = lines[0]["limits"] if lines else {"error": err}
    root = os.geteuid() == 0
    return _limit_checks(lim, ev, enforced_for_uid=not root, asked_user=False,
                         where="in an evaluation's process")


def checks(evaluation: EvaluationConfig | None = None, *,
           sandbox: BubblewrapSandbox | None = None) -> list[Check]:
    """Probe this machine for the configuration ``evaluation`` (default: the defaults), with
    the sandbox evaluations would use (or ``sandbox``). Takes well under a second where
    bubblewrap works. Raises ``ConfigError`` for a bad ``evaluation.sandbox_user``."""
    ev = evaluation if evaluation is not None else EvaluationConfig()
    exe = _interpreter_path(ev.python or sys.executable)
    out = [_python_check(exe)]
    wanted = ev.sandbox != "process"
    root = os.geteuid() == 0
    asked_user = resolve_user(ev.sandbox_user) is not None if root else True
    if not wanted:
        asked_user = False
    bwrap = sandbox.bwrap if sandbox is not None else shutil.which("bwrap")
    problem = None if sandbox is not None else bubblewrap_problem(ev.sandbox_user)
    if problem is None and bwrap is not None:
        note = "" if wanted else "; not used: evaluation.sandbox=process"
        out.append(Check("bubblewrap", True, f"{_bwrap_version(bwrap)} at {bwrap}, working{note}"))
    else:
        out.append(Check(
            "bubblewrap", False,
            f"{problem}. Without it candidates run with the process sandbox, without: "
            + "; ".join(MISSING_WITHOUT_BUBBLEWRAP),
            required=wanted,
        ))
    if wanted and problem is None:
        if sandbox is None:
            sandbox = BubblewrapSandbox(user=ev.sandbox_user, extra_paths=ev.sandbox_paths)
        out += _sandbox_checks(sandbox, ev, exe, asked_user)
    else:
        why = ("not used: evaluation.sandbox=process runs candidates without bubblewrap"
               if not wanted else f"not available without bubblewrap ({problem})")
        out += [Check(n, False, why, required=wanted) for n in _SANDBOX_CHECKS]
        out += _unsandboxed_limits(ev, exe)
    out.append(_toolchain_check())
    return out


def _toolchain_check() -> Check:
    """Tools the built-in problems run (problem.yaml ``requires``); not a protection."""
    from evoforge.problem import builtin_problems, missing_tools, problem_meta

    missing: dict[str, set[str]] = {}
    for name, path in builtin_problems().items():
        for tool, pkg in missing_tools(problem_meta(path)).items():
            missing.setdefault(f"{tool} ({pkg})", set()).add(name)
    if not missing:
        return Check("problem toolchains", True, "every tool the built-in problems run is on PATH")
    detail = "; ".join(f"{t} for {', '.join(sorted(ps))}" for t, ps in sorted(missing.items()))
    pkgs = sorted({t.split("(")[1].rstrip(")") for t in missing})
    return Check("problem toolchains", False,
                 f"missing {detail}: apt-get install {' '.join(pkgs)}", required=False)


def failed(results: list[Check]) -> list[Check]:
    """The checks that failed for a protection the configuration asks for."""
    return [c for c in results if not c.ok and c.required]


def render(results: list[Check]) -> str:
    """One line per check (``ok``, ``FAIL`` for a missing protection the configuration asks
    for, ``warn`` for other failures), name, detail; and a summary line."""
    width = max((len(c.name) for c in results), default=0)
    lines = [f"{'ok  ' if c.ok else 'FAIL' if c.required else 'warn'}  {c.name:<{width}}  "
             f"{c.detail}" for c in results]
    bad = [c.name for c in failed(results)]
    warned = [c.name for c in results if not c.ok and not c.required]
    if bad:
        lines.append(f"{len(bad)} of {len(results)} checks failed: {', '.join(bad)}")
    elif warned:
        lines.append(f"no protection the configuration asks for is missing; "
                     f"{len(warned)} warning(s): {', '.join(warned)}")
    else:
        lines.append("all checks passed: candidates run fully sandboxed on this machine")
    return "\n".join(lines)
