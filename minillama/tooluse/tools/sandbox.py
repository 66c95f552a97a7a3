"""The code interpreter: run model-written Python in a separate, limited, isolated process (paper §4.3.5).

Llama 3.1 hands `<|python_tag|>` code to a Python interpreter and reads back what it printed. That code is written by
a model, so it may loop forever, eat memory, fork, flood the output, read secrets, touch files, reach the network or
other processes. `Sandbox.run(code)` contains each of those and reports what happened in plain words. This module
uses the standard library only (importing it loads no torch and no model).

Levels, strongest first (`detect_isolation()` says which ones work here; `Sandbox.isolation` is the one used):

- "bwrap" (bubblewrap) and "namespaces" (util-linux `unshare`: unprivileged with `--user --map-root-user` on most
  Linux laptops, or as root) build the same view from one mount plan (`mount_plan`): an empty root with read-only
  `/usr`, `/bin`, `/lib*`, `/etc` (password hashes and private keys masked) and the Python installation; a private
  `/tmp`, `/dev` and `/proc`; the working folder is a size-limited tmpfs (the disk quota). Own PID, network (an empty
  loopback: no host TCP or abstract Unix sockets), IPC, UTS and cgroup namespaces. Nothing else of the host is
  visible: no home folders, no `/run` (no host Unix sockets), no `/sys` (no cgroup to move to). The code runs as uid
  65534 without capabilities and with `no_new_privs`: a real unprivileged uid when the host is root, else the
  user's own uid seen through a nested user namespace. The host's working folder is never mounted: a supervisor
  inside the sandbox copies it in (from a file descriptor) before each run and back out afterwards, regular files
  and folders only, without following links, once every process of the run is dead (its own PID namespace).
- "limits" and "guards" (no OS isolation: macOS, Windows, Linux without bubblewrap or user namespaces) leave files,
  the network and other processes of the user unprotected: they are refused unless the caller opts in with
  `allow_weak_isolation=True` (`minillama chat --allow-unsafe-sandbox`). "limits" still kills every descendant
  after each call (a subreaper sweep on Linux, the process group elsewhere) and checks the folder's size afterwards.

At every level: resource limits (RLIMIT_AS memory, RLIMIT_CPU, RLIMIT_FSIZE, no core dumps; the process count by a
`pids` cgroup when the host can make one, else RLIMIT_NPROC), a wall-clock limit, an environment with nothing of the
parent's, `python -I`, the code passed on stdin (no file the code could swap), output capped, and Python guards
(audit hooks, PEP 578) that refuse writes outside the folder, sockets and too many processes with clear messages.
Like the "reliability guard" of OpenAI's human-eval, the guards are *not* a security boundary.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from minillama.tooluse.format import format_tool_result  # standard library only, like this module

__all__ = ["Sandbox", "SandboxRefused", "SandboxResult", "detect_isolation", "mount_plan", "run_code"]

LEVELS = ("none", "guards", "limits", "namespaces", "bwrap")  # weakest -> strongest
STRONG = ("namespaces", "bwrap")
SANDBOX_UID = 65534  # "nobody": the uid the code runs as inside the namespaces
UNPROTECTED = "your files, the network or your other processes"


class SandboxRefused(RuntimeError):
    """The sandbox would not contain model-written code here (and the caller did not opt in)."""


# --------------------------------------------------------------------------------------------------------------
# The view of the file system inside the sandbox: one plan, built by bubblewrap or by the supervisor
# --------------------------------------------------------------------------------------------------------------
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_MASKED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/.pwd.lock")
_MASKED_DIRS = (
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers.d",
    "/etc/NetworkManager/system-connections",
    "/etc/wireguard",
    "/etc/docker",
    "/etc/libvirt",
    "/etc/polkit-1",
    "/etc/cups",
)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


_PYTHON_PATHS: dict[str, list[str]] = {}


def _python_paths(python: str) -> list[str]:
    """The folders the interpreter `python` reads (prefixes, its `sys.path`, where its executable lives): bound
    read-only into the sandbox. Found by asking that interpreter once."""
    if python in _PYTHON_PATHS:
        return _PYTHON_PATHS[python]
    probe = (
        "import json, os, sys\nprint(json.dumps([sys.prefix, sys.exec_prefix, sys.base_prefix, "
        "sys.base_exec_prefix, os.path.dirname(os.path.realpath(sys.executable))] + sys.path))"
    )
    found = [os.path.dirname(os.path.abspath(python)), os.path.dirname(os.path.realpath(python))]
    try:
        out = subprocess.run(
            [python, "-I", "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin"},
        )
        found += json.loads(out.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    home = os.path.realpath(os.path.expanduser("~"))
    keep = set()
    for p in found:
        if not isinstance(p, str) or not p.startswith("/"):
            continue
        p = os.path.abspath(p)
        while p != "/" and not os.path.isdir(p):  # python311.zip -> its folder
            p = os.path.dirname(p)
        real = os.path.realpath(p)
        if p == "/" or _inside(home, real) or any(_inside(real, d) or _inside(p, d) for d in _SYSTEM_DIRS):
            continue  # the system folders are bound anyway; never a whole home folder or the root
        keep.add(p)
    paths = sorted(keep)
    paths = [p for p in paths if not any(q != p and _inside(p, q) for q in paths)]  # outermost only
    _PYTHON_PATHS[python] = paths
    return paths


def mount_plan(workdir: str, python: str, disk_bytes: int, tmp_bytes: int) -> list[list]:
    """What the sandbox sees, as a list of steps [kind, destination, *arguments], in order:
    "ro-bind" (source), "symlink" (target), "mask-file", "mask-dir", "tmpfs" (size, mode), "dev", "proc",
    "remount-ro". `_bwrap_args` turns it into bubblewrap options; the supervisor performs it with mount(2)."""
    plan: list[list] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            plan.append(["symlink", d, os.readlink(d)])  # merged /usr: /bin -> usr/bin
        elif os.path.isdir(d):
            plan.append(["ro-bind", d, d])
    plan += [["mask-file", f] for f in _MASKED_FILES if os.path.isfile(f) and not os.path.islink(f)]
    plan += [["mask-dir", d] for d in _MASKED_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    plan.append(["tmpfs", "/tmp", int(tmp_bytes), 0o1777])
    plan += [["ro-bind", p, p] for p in _python_paths(python) if not _inside(p, workdir)]
    plan.append(["tmpfs", workdir, int(disk_bytes), 0o700])
    plan += [["dev", "/dev"], ["proc", "/proc"], ["remount-ro", "/"]]
    return plan


def _bwrap_args(plan: list[list]) -> list[str]:
    args: list[str] = []
    made: set[str] = set()  # folders that exist in the sandbox: made, or inside a read-only bind
    bound: list[str] = []
    for kind, dest, *rest in plan:
        parents = [str(p) for p in reversed(PurePosixPath(dest).parents) if str(p) != "/"]
        for parent in parents:  # bubblewrap would make missing parents 0700: closed to the sandbox's uid
            if parent not in made and not any(_inside(parent, b) for b in bound):
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        if kind in ("ro-bind", "symlink", "mask-dir"):
            bound.append(dest)
        made.add(dest)
        if kind == "ro-bind":
            args += ["--ro-bind", rest[0], dest]
        elif kind == "symlink":
            args += ["--symlink", rest[0], dest]
        elif kind == "mask-file":
            args += ["--ro-bind", "/dev/null", dest]
        elif kind == "mask-dir":
            args += ["--size", "4096", "--perms", "0755", "--tmpfs", dest, "--remount-ro", dest]
        elif kind == "tmpfs":
            args += ["--size", str(rest[0]), "--perms", f"{rest[1]:04o}", "--tmpfs", dest]
        elif kind == "dev":
            args += ["--dev", dest]
        elif kind == "proc":
            args += ["--proc", dest]
        elif kind == "remount-ro":
            args += ["--remount-ro", dest]
        else:
            raise ValueError(f"unknown mount step {kind!r}")
    return args


# --------------------------------------------------------------------------------------------------------------
# The supervisor: the first program inside the sandbox. It builds the view ("namespaces"), copies the working folder
# in, runs the model's code as an unprivileged child, kills every process left, copies the folder back out.
# --------------------------------------------------------------------------------------------------------------
_SUPERVISOR = r'''
import ctypes, ctypes.util, json, os, signal, stat, subprocess, sys, time
cfg = json.loads(sys.argv[1])
source = sys.stdin.buffer.read()
_null = os.open("/dev/null", os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
status = {"returncode": None, "timed_out": False, "skipped": [], "error": None}
try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl = libc.prctl
except (OSError, AttributeError):
    libc = prctl = None

def _prctl(*args):
    if prctl is not None:
        prctl(*[ctypes.c_ulong(a) for a in args])

def fail(message):
    status["error"] = message
    print("sandbox setup failed: " + message, file=sys.stderr, flush=True)
    finish()

def finish():
    try:
        os.write(cfg["status_fd"], json.dumps(status).encode())
        os.close(cfg["status_fd"])
    except OSError:
        pass
    sys.stdout.flush()
    os._exit(0)

def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 16384, 1 << 18

def mount(src, dst, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    _check(libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {src} on {dst}")

class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]

def read_only(path):
    """Read-only, nosuid, nodev, with every mount below it: mount_setattr(2), else a remount keeping locked flags."""
    attr = MountAttr(0x1 | 0x2 | 0x4, 0, 0, 0)
    if libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), path.encode(), ctypes.c_uint(0x8000),
                    ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))) == 0:
        return
    keep = 0
    flags = os.statvfs(path).f_flag
    for st_flag, ms_flag in ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, 1024), (2048, 2048),
                             (4096, 1 << 21)):
        if flags & st_flag:
            keep |= ms_flag
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)

def build_view(plan, root):
    """Perform the mount plan in a new root (a tmpfs) and pivot into it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for kind, dest, *rest in plan:
        target = root + dest if dest != "/" else root
        if kind in ("ro-bind", "tmpfs", "mask-dir", "dev", "proc"):
            os.makedirs(target, exist_ok=True)
        if kind == "ro-bind":
            mount(rest[0], target, None, MS_BIND | MS_REC)
            read_only(target)
        elif kind == "symlink":
            os.symlink(rest[0], target)
        elif kind == "mask-file":
            mount("/dev/null", target, None, MS_BIND)
            read_only(target)
        elif kind == "mask-dir":
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,nr_inodes=16,mode=0755")
        elif kind == "tmpfs":
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV,
                  f"size={rest[0]},nr_inodes={max(1024, rest[0] // 4096)},mode={rest[1]:o}")
        elif kind == "dev":
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
            for name in ("null", "zero", "full", "random", "urandom", "tty"):
                if os.path.exists("/dev/" + name):
                    open(f"{target}/{name}", "w").close()
                    mount("/dev/" + name, f"{target}/{name}", None, MS_BIND)
            for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
                os.symlink(link, f"{target}/{name}")
            os.mkdir(f"{target}/shm")
            mount("tmpfs", f"{target}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=16m,nr_inodes=256,mode=1777")
            mount(None, target, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
        elif kind == "proc":
            mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "remount-ro":
            mount(None, target, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    number = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217,
              "i686": 217, "armv7l": 218}.get(os.uname().machine)
    if number is not None and libc.syscall(ctypes.c_long(number), b".", b".") == 0:
        _check(libc.umount2(b".", 2), "umount old root")  # MNT_DETACH
    else:
        mount(root, "/", None, MS_MOVE)
        os.chroot(".")
    os.chdir("/")

# -- copying the working folder: regular files and folders only, never through a link --------------------------
D_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

def copy_file(src_dir, dst_dir, name, st, owner):
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src_dir)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_dir)
        try:
            while True:
                chunk = os.read(src, 1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view):]
            os.fchmod(dst, (st.st_mode & 0o777) | 0o600)
            if owner is not None:
                os.fchown(dst, owner, owner)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)

def remove(dir_fd, name):
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, D_FLAGS, dir_fd=dir_fd)
        try:
            for child in os.listdir(sub):
                remove(sub, child)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)

def sync(src_dir, dst_dir, rel="", owner=None):
    """Make folder dst_dir hold what src_dir holds (both file descriptors)."""
    entries = {}
    for name in os.listdir(src_dir):
        st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            entries[name] = st
        elif len(status["skipped"]) < 20:
            status["skipped"].append(rel + name)
    for name in os.listdir(dst_dir):
        old = os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
        new = entries.get(name)
        same = new is not None and stat.S_IFMT(old.st_mode) == stat.S_IFMT(new.st_mode) and (
            stat.S_ISDIR(new.st_mode) or (old.st_size, old.st_mtime_ns) == (new.st_size, new.st_mtime_ns))
        if not same:
            remove(dst_dir, name)
    present = set(os.listdir(dst_dir))
    for name, st in entries.items():
        if stat.S_ISDIR(st.st_mode):
            if name not in present:
                os.mkdir(name, 0o700, dir_fd=dst_dir)
            if not os.access(name, os.R_OK | os.X_OK, dir_fd=src_dir):
                os.chmod(name, (st.st_mode & 0o777) | 0o700, dir_fd=src_dir)  # the owner may read its folder
            src, dst = os.open(name, D_FLAGS, dir_fd=src_dir), os.open(name, D_FLAGS, dir_fd=dst_dir)
            try:
                if owner is not None:
                    os.fchown(dst, owner, owner)
                sync(src, dst, rel + name + "/", owner)
            finally:
                os.close(src)
                os.close(dst)
        elif budget[0] < st.st_size:  # sparse files could grow past the quota once copied
            if name in present:
                remove(dst_dir, name)
            if len(status["skipped"]) < 20:
                status["skipped"].append(rel + name + " (over the quota)")
        else:
            budget[0] -= st.st_size
            if name in present:  # unchanged
                continue
            try:
                copy_file(src_dir, dst_dir, name, st, owner)
            except PermissionError:
                os.chmod(name, (st.st_mode & 0o777) | 0o600, dir_fd=src_dir)
                copy_file(src_dir, dst_dir, name, st, owner)

# -- the run ------------------------------------------------------------------------------------------------------
workdir = cfg["workdir"]
budget = [cfg["disk_bytes"]]  # bytes that sync() may still copy (apparent sizes)
isolated = cfg["level"] in ("namespaces", "bwrap")
_prctl(4, 0)  # PR_SET_DUMPABLE 0: the code (maybe the same uid) cannot ptrace this process or open its fds
_prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans of the code (daemons) become children of this process
mode = "none"
if isolated and os.geteuid() == 0:
    with open("/proc/self/uid_map") as f:
        mode = "setuid" if f.read().split()[:3] == ["0", "0", "4294967295"] else "userns"
try:
    if cfg["level"] == "namespaces":
        build_view(cfg["plan"], workdir)
    if isolated:
        os.chdir(workdir)
        here = os.open(workdir, D_FLAGS)
        owner = cfg["uid"] if mode == "setuid" else None
        if owner is not None:
            os.fchown(here, owner, owner)
        sync(cfg["host_fd"], here, owner=owner)
        status["skipped"] = []
except OSError as exc:
    if exc.errno == 28:  # ENOSPC
        fail(f"the files in the working folder do not fit its quota of {cfg['disk_bytes'] // 2**20} MB")
    fail(str(exc))

def drop():  # in the child, before exec: an unprivileged uid, no way back to privileges
    uid = cfg["uid"]
    _prctl(4, 1)
    if mode == "setuid":
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif mode == "userns":
        _check(libc.unshare(ctypes.c_int(0x10000000)), "unshare(CLONE_NEWUSER)")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} 0 1"), ("gid_map", f"{uid} 0 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    _prctl(38, 1)  # PR_SET_NO_NEW_PRIVS

try:
    child = subprocess.Popen([cfg["python"], "-I", "-c", cfg["bootstrap"], json.dumps(cfg["child"])],
                             stdin=subprocess.PIPE, cwd=workdir, preexec_fn=drop if os.name == "posix" else None,
                             start_new_session=True)
except (OSError, subprocess.SubprocessError) as exc:
    fail(f"could not start the interpreter: {exc}")
try:
    child.stdin.write(source)
    child.stdin.close()
except OSError:
    pass
try:
    child.wait(timeout=cfg["timeout_s"])
except subprocess.TimeoutExpired:
    status["timed_out"] = True

def sweep():
    """Kill every process the code left: all of this PID namespace, or (no namespace) the subreaper's children."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if isolated:
            try:
                os.kill(-1, signal.SIGKILL)  # everything here except this process (and bubblewrap's init)
                found = True
            except ProcessLookupError:
                found = False
        else:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            me, found = str(os.getpid()), False
            try:
                names = [n for n in os.listdir("/proc") if n.isdigit()]
            except OSError:
                names = []
            for n in names:
                try:
                    with open(f"/proc/{n}/stat", "rb") as f:
                        ppid = f.read().rsplit(b")", 1)[1].split()[1].decode()
                except (OSError, IndexError):
                    continue
                if ppid == me and int(n) != child.pid or int(n) == child.pid and child.returncode is None:
                    found = True
                    try:
                        os.kill(int(n), signal.SIGKILL)
                    except OSError:
                        pass
        if child.returncode is None:
            try:
                child.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        while True:  # reap the orphans that came to this process
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
            if pid == child.pid:  # reaped here: Popen would otherwise report exit status 0
                child.returncode = os.waitstatus_to_exitcode(wait_status)
        if not found and child.returncode is not None:
            return
        time.sleep(0.01)

sweep()
status["returncode"] = child.returncode
if isolated:
    try:
        os.chdir("/")
        here = os.open(workdir, D_FLAGS)
        budget = [cfg["disk_bytes"]]
        sync(here, cfg["host_fd"])
    except (OSError, RecursionError) as exc:
        status["error"] = f"the working folder could not be copied back: {exc}"
elif cfg["disk_bytes"]:
    total = 0
    for folder, dirs, files in os.walk(workdir):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    status["disk_total"] = total
finish()
'''


# --------------------------------------------------------------------------------------------------------------
# The program that runs the model's code: limits, guards, then the code read from stdin
# --------------------------------------------------------------------------------------------------------------
_BOOTSTRAP = r"""
import json, os, sys
cfg = json.loads(sys.argv[1])
_source = sys.stdin.buffer.read()  # the code comes on stdin: there is no file the code could swap for a link
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
try:
    import resource
    def _limit(name, soft, hard=None):
        if hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (soft, soft if hard is None else hard))
            except (ValueError, OSError) as e:  # e.g. macOS refuses some RLIMIT_AS values
                print(f"sandbox warning: could not set {name}: {e}", file=sys.stderr)
    _limit("RLIMIT_AS", cfg["memory_bytes"])
    _limit("RLIMIT_CPU", cfg["cpu_s"], cfg["cpu_s"] + 1)
    _limit("RLIMIT_FSIZE", cfg["file_bytes"])
    _limit("RLIMIT_CORE", 0)
    if cfg["nproc"]:  # no pids cgroup: RLIMIT_NPROC (per uid, per user namespace on Linux >= 5.14)
        _limit("RLIMIT_NPROC", cfg["max_processes"])
except ImportError:
    pass

if cfg["guards"]:
    _root = os.path.realpath(cfg["workdir"])
    _spawned = [0]
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    def _inside(path):
        try:
            path = os.fsdecode(path)
        except TypeError:
            return True  # file descriptors
        real = os.path.realpath(path)
        return real == _root or real.startswith(_root + os.sep) or real in ("/dev/null",)
    def _guard(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, str) and path.startswith("/proc/") and path.endswith("/environ") and \
                    path not in ("/proc/self/environ", f"/proc/{os.getpid()}/environ"):
                raise PermissionError("sandbox: reading another process's environment is not allowed")
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and path is not None and not _inside(path):
                raise PermissionError(f"sandbox: writing outside the working directory is not allowed: {path}")
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
                       "shutil.rmtree", "os.link", "os.symlink"):
            if args and isinstance(args[0], (str, bytes, os.PathLike)) and not _inside(args[0]):
                raise PermissionError(f"sandbox: {event} outside the working directory is not allowed: {args[0]}")
        elif event == "os.rename":
            for p in args[:2]:
                if not _inside(p):
                    raise PermissionError(f"sandbox: renaming outside the working directory is not allowed: {p}")
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo"):
            raise PermissionError("sandbox: network access is disabled")
        elif event in ("os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system", "os.exec",
                       "subprocess.Popen", "pty.spawn"):
            _spawned[0] += 1
            if _spawned[0] > cfg["max_processes"]:
                raise PermissionError(f"sandbox: the process limit of {cfg['max_processes']} was reached")
    sys.addaudithook(_guard)

sys.argv = ["main.py"]
sys.path.insert(0, cfg["workdir"])
import linecache, types
_text = _source.decode("utf-8", errors="replace")
linecache.cache["main.py"] = (len(_text), None, _text.splitlines(True), "main.py")  # tracebacks show the lines
_main = types.ModuleType("__main__")
_main.__file__ = "main.py"
sys.modules["__main__"] = _main
try:
    exec(compile(_source, "main.py", "exec"), _main.__dict__)
except SystemExit:
    raise
except BaseException as exc:  # show the model its own frames only, not this bootstrap's
    import traceback
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "main.py":
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    sys.exit(1)
"""


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SandboxResult:
    """What a run produced. `status` is "completed" (exit code 0) or "failed"; `message` says why in words."""

    status: str
    stdout: str
    stderr: str
    returncode: int | None
    message: str = ""
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0
    isolation: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def as_tool_message(self) -> str:
        """The `ipython` message body: `completed`/`failed`, [stdout]..[/stdout], [stderr]..[/stderr]."""
        stderr = self.stderr
        if self.message and self.message not in stderr:
            stderr = stderr + ("\n" if stderr and not stderr.endswith("\n") else "") + self.message + "\n"
        return format_tool_result(self.status, self.stdout, stderr)


class _Capture(threading.Thread):
    """Drain one pipe, keep the first `keep` characters, stop reading (close) after `hard_cap` bytes."""

    def __init__(self, pipe, keep: int, hard_cap: int):
        super().__init__(daemon=True)
        self.pipe, self.keep, self.hard_cap = pipe, keep, hard_cap
        self.chunks: list[bytes] = []
        self.tail = b""  # the last bytes read: a long traceback's final line (the error) is there
        self.kept = 0
        self.total = 0
        self.capped = False

    def run(self):
        try:
            while True:
                chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(65536)
                if not chunk:
                    break
                self.total += len(chunk)
                self.tail = (self.tail + chunk)[-self.keep * 4 :]
                if self.kept < self.keep * 4:  # bytes: up to 4 per character
                    self.chunks.append(chunk)
                    self.kept += len(chunk)
                if self.total > self.hard_cap:
                    self.capped = True
                    break
        except (OSError, ValueError):
            pass
        finally:
            try:
                self.pipe.close()  # a flooding child now gets EPIPE instead of filling memory
            except OSError:
                pass

    def text(self) -> tuple[str, bool]:
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        cut = len(text) > self.keep or self.capped or self.total > self.kept
        if len(text) > self.keep:
            text = text[: self.keep]
        if cut:
            text += f"\n[... output truncated: kept {len(text)} characters of {self.total} bytes ...]\n"
        return text, cut

    def text_for_diagnosis(self) -> str:
        """The kept start and the last characters read, for recognising why a run failed."""
        return (
            b"".join(self.chunks).decode("utf-8", errors="replace") + "\n" + self.tail.decode("utf-8", errors="replace")
        )


# --------------------------------------------------------------------------------------------------------------
# What this machine offers
# --------------------------------------------------------------------------------------------------------------
def _pids_cgroup_root() -> Path | None:
    """A writable pids-cgroup directory (v1 `pids` hierarchy or the v2 unified one), else None."""
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            probe = root / f"minillama-probe-{uuid.uuid4().hex[:8]}"
            try:
                probe.mkdir()
                ok = (probe / "pids.max").exists()
                probe.rmdir()
                if ok:
                    return root
            except OSError:
                continue
    return None


def _probe(level: str) -> str:
    """Run `print('ok')` at `level`; "" when it works, else why not (one line)."""
    try:
        with Sandbox(isolation=level, timeout_s=20, guards=False, _probing=True) as sandbox:
            result = sandbox.run("print('ok')")
    except (OSError, ValueError, RuntimeError) as exc:
        return str(exc)
    if result.stdout == "ok\n":
        return ""
    return " ".join((result.message + " " + result.stderr).split())[-300:] or f"exit status {result.returncode}"


_DETECTED: dict | None = None


def detect_isolation(refresh: bool = False) -> dict:
    """Which isolation works here: {"system", "bwrap", "unshare" (the "namespaces" level), "pids_cgroup", "rlimits",
    "level" (the strongest), "why" (why a stronger level is not available)}. Each level is tried for real once."""
    global _DETECTED
    if _DETECTED is not None and not refresh:
        return _DETECTED
    system = platform.system()
    info = {"system": system, "bwrap": False, "unshare": False, "pids_cgroup": None, "rlimits": False, "why": {}}
    try:
        import resource  # noqa: F401  (POSIX only)

        info["rlimits"] = True
    except ImportError:
        pass
    _DETECTED = {**info, "level": "limits" if info["rlimits"] else "guards"}  # what _probe's Sandbox may use
    if system == "Linux":
        root = _pids_cgroup_root()
        info["pids_cgroup"] = _DETECTED["pids_cgroup"] = str(root) if root else None
        for level, tool, key in (("bwrap", "bwrap", "bwrap"), ("namespaces", "unshare", "unshare")):
            why = _probe(level) if shutil.which(tool) else f"{tool} is not installed"
            info[key] = not why
            if why:
                info["why"][level] = why
    else:
        info["why"] = {"bwrap": f"no Linux namespaces on {system}", "namespaces": f"no Linux namespaces on {system}"}
    info["level"] = next(
        (lvl for lvl, key in (("bwrap", "bwrap"), ("namespaces", "unshare")) if info[key]),
        "limits" if info["rlimits"] else "guards",
    )
    _DETECTED = info
    return info


def _refusal(level: str, info: dict) -> str:
    why = "; ".join(f"{k}: {v}" for k, v in info.get("why", {}).items()) or f"isolation {level!r} was asked for"
    return (
        f"Refusing to run model-written code: the only isolation here is {level!r} ({why}), which does not "
        f"protect {UNPROTECTED}. Install bubblewrap (apt-get install bubblewrap) or "
        "allow unprivileged user namespaces, or opt in with Sandbox(allow_weak_isolation=True) / "
        "`minillama chat --allow-unsafe-sandbox`."
    )


# --------------------------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------------------------
class Sandbox:
    """Run Python code in a fresh limited process. One working directory per `Sandbox` (files persist between
    runs of the same sandbox, like a notebook's kernel directory; use `with Sandbox() as sb:` to clean up).

    Args:
        timeout_s: wall-clock limit per run (every process of the run is killed after it).
        cpu_s: CPU-seconds limit (RLIMIT_CPU).
        memory_mb: address-space limit (RLIMIT_AS). Python alone needs ~30 MB, numpy ~150 MB, pandas ~400 MB.
        max_output: characters of stdout and of stderr kept; the rest is dropped with a note.
        max_processes: child processes allowed (cgroup pids.max, else RLIMIT_NPROC; guard count).
        file_mb: largest file the code may write (RLIMIT_FSIZE).
        disk_mb: quota of the working folder (a tmpfs of that size inside the namespaces; only checked after the
            run at the weak levels); the private /tmp gets min(64, disk_mb).
        isolation: "auto" (the strongest that works here), or force "bwrap", "namespaces", "limits", "guards".
        allow_weak_isolation: run even at "limits"/"guards", which do not protect files, the network or other
            processes (the default refuses with `SandboxRefused`).
        require: refuse to run (`SandboxRefused`) when the level is weaker than this, e.g. "bwrap".
        guards: install the Python audit-hook guards.
        files: {name: str | bytes | Path} copied into the working directory before the first run.
        python: the interpreter to run the code with (default: this one).
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        cpu_s: int | None = None,
        memory_mb: int = 1024,
        max_output: int = 4000,
        max_processes: int = 16,
        file_mb: int = 64,
        disk_mb: int = 256,
        isolation: str = "auto",
        allow_weak_isolation: bool = False,
        require: str | None = None,
        guards: bool = True,
        files: dict | None = None,
        python: str | None = None,
        _probing: bool = False,
    ):
        if timeout_s <= 0 or memory_mb < 32 or max_output < 100 or max_processes < 1 or disk_mb < 1:
            raise ValueError(
                "Sandbox limits: timeout_s > 0, memory_mb >= 32 (Python needs ~30 MB), "
                "max_output >= 100, max_processes >= 1, disk_mb >= 1"
            )
        info = detect_isolation()
        available = info["level"]
        if isolation == "auto":
            isolation = available
        if isolation not in LEVELS[1:]:
            raise ValueError(f"isolation must be 'auto' or one of {LEVELS[1:]}, got {isolation!r}")
        works = {"bwrap": info["bwrap"], "namespaces": info["unshare"], "limits": info["rlimits"], "guards": True}
        if not _probing and not works[isolation]:
            raise SandboxRefused(
                f"isolation {isolation!r} does not work here "
                f"({info['why'].get(isolation, 'not available')}); best: {available!r}"
            )
        if require is not None and LEVELS.index(isolation) < LEVELS.index(require):
            raise SandboxRefused(
                f"this sandbox would run with isolation {isolation!r}, weaker than the required "
                f"{require!r}; on Linux install bubblewrap (apt-get install bubblewrap)"
            )
        if isolation not in STRONG and not _probing:
            if not allow_weak_isolation:
                raise SandboxRefused(_refusal(isolation, info))
            warnings.warn(
                f"Sandbox isolation is only {isolation!r} on {info['system']} (opted in): resource limits "
                f"and Python guards, no OS-level protection of {UNPROTECTED}. Do not run untrusted code.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.isolation = isolation
        self.pids_cgroup = info["pids_cgroup"] if isolation != "guards" else None
        self.timeout_s, self.cpu_s = float(timeout_s), int(cpu_s or max(1, int(timeout_s) + 1))
        self.memory_mb, self.max_output, self.max_processes = memory_mb, max_output, max_processes
        self.file_mb, self.disk_mb, self.guards = file_mb, disk_mb, guards
        self.python = python or sys.executable
        self.workdir = Path(tempfile.mkdtemp(prefix="minillama-sandbox-")).resolve()
        os.chmod(self.workdir, 0o700)
        for name, data in (files or {}).items():
            self.add_file(name, data)

    # -- files ----------------------------------------------------------------------------------------------
    def add_file(self, name: str, data) -> Path:
        """Copy `data` (str, bytes, or a Path to copy) to `workdir/name`. Whatever the code left at that name (a
        link, a FIFO, a file) is replaced, and no link planted in the folder is followed."""
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", ".") for p in parts):
            raise ValueError(f"file name {name!r} must stay inside the sandbox directory")
        payload = (
            data.read_bytes() if isinstance(data, Path) else data if isinstance(data, bytes) else str(data).encode()
        )
        if os.open not in os.supports_dir_fd:  # Windows: no *at() calls; the weak levels only
            target = self.workdir.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
            return target
        dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        fd = os.open(self.workdir, dir_flags)
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    sub = os.open(part, dir_flags, dir_fd=fd)
                except OSError:
                    raise ValueError(f"cannot add {name!r}: {part!r} in the sandbox folder is not a folder") from None
                os.close(fd)
                fd = sub
            try:
                os.unlink(parts[-1], dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError:
                raise ValueError(f"cannot add {name!r}: a folder of that name is in the way") from None
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
            with os.fdopen(out, "wb") as f:
                f.write(payload)
        finally:
            os.close(fd)
        return self.workdir.joinpath(*parts)

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- running --------------------------------------------------------------------------------------------
    def _plan(self) -> list[list]:
        return mount_plan(str(self.workdir), self.python, self.disk_mb * 2**20, min(64, self.disk_mb) * 2**20)

    def _command(self) -> list[str]:
        python = [self.python, "-I", "-c"]
        if self.isolation == "bwrap":
            if os.geteuid() == 0:  # root: no user namespace (it would map the code to real root); the supervisor
                # keeps the capabilities it needs to copy files and switch the code to uid 65534
                who = ["--unshare-cgroup-try", "--cap-add", "ALL"]
            else:
                who = [
                    "--unshare-user",
                    "--unshare-cgroup-try",
                    "--uid",
                    str(SANDBOX_UID),
                    "--gid",
                    str(SANDBOX_UID),
                    "--cap-drop",
                    "ALL",
                ]
            return [
                "bwrap",
                "--die-with-parent",
                "--new-session",
                "--unshare-ipc",
                "--unshare-pid",
                "--unshare-net",
                "--unshare-uts",
                "--hostname",
                "sandbox",
                *who,
                *_bwrap_args(self._plan()),
                "--chdir",
                str(self.workdir),
                *python,
            ]
        if self.isolation == "namespaces":
            user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
            return [
                "unshare",
                *user,
                "--mount",
                "--pid",
                "--net",
                "--ipc",
                "--uts",
                "--cgroup",
                "--fork",
                "--kill-child",
                *python,
            ]
        return python

    def _env(self) -> dict:
        wd = str(self.workdir)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": wd,
            "TMPDIR": wd,
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": wd,
        }

    def _make_cgroup(self) -> Path | None:
        if not self.pids_cgroup:
            return None
        group = Path(self.pids_cgroup) / f"minillama-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
            # the wrapper (bwrap and its init, or unshare), the supervisor and the interpreter count too
            (group / "pids.max").write_text(str(self.max_processes + 5))
            return group
        except OSError:
            return None

    @staticmethod
    def _kill_cgroup(group: Path | None):
        if group is None:
            return
        for _ in range(50):
            try:
                pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        try:
            group.rmdir()
        except OSError:
            pass

    def run(self, code: str) -> SandboxResult:
        """Run `code` (given to the child on stdin) under the limits. Never raises on bad code."""
        if not isinstance(code, str):
            raise ValueError(f"code must be a string of Python source, got {type(code).__name__}")
        group = self._make_cgroup()
        child = {
            "workdir": str(self.workdir),
            "memory_bytes": self.memory_mb * 2**20,
            "cpu_s": self.cpu_s,
            "file_bytes": self.file_mb * 2**20,
            "max_processes": self.max_processes,
            "guards": self.guards,
            "nproc": group is None and os.name == "posix" and (self.isolation in STRONG or os.getuid() != 0),
        }
        supervised = self.isolation != "guards" and os.name == "posix"
        status_r = host_fd = None
        pass_fds: tuple = ()
        if supervised:
            status_r, status_w = os.pipe()
            pass_fds = (status_w,)
            config = {
                "level": self.isolation,
                "workdir": str(self.workdir),
                "timeout_s": self.timeout_s,
                "python": self.python,
                "bootstrap": _BOOTSTRAP,
                "child": child,
                "status_fd": status_w,
                "uid": SANDBOX_UID,
                "disk_bytes": self.disk_mb * 2**20,
                "host_fd": None,
                "plan": None,
            }
            if self.isolation in STRONG:
                host_fd = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                config["host_fd"] = host_fd
                pass_fds = (status_w, host_fd)
                if self.isolation == "namespaces":
                    config["plan"] = self._plan()
            command = [*self._command(), _SUPERVISOR, json.dumps(config)]
        else:
            command = [*self._command(), _BOOTSTRAP, json.dumps(child)]

        def enter_cgroup():  # runs in the child between fork and exec
            if group is not None:
                with open(group / "cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))

        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                cwd=self.workdir if self.isolation not in STRONG else "/",
                env=self._env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=os.name == "posix",
                preexec_fn=enter_cgroup if group else None,
                pass_fds=pass_fds,
            )
        finally:
            for fd in pass_fds:
                os.close(fd)
        status_bytes: list[bytes] = []

        def feed():  # the code goes in on stdin; the status comes back on its own pipe
            try:
                proc.stdin.write(code.encode("utf-8", errors="surrogatepass"))
                proc.stdin.close()
            except (OSError, ValueError):
                pass

        def read_status():
            with os.fdopen(status_r, "rb") as f:
                status_bytes.append(f.read(1 << 16))

        helpers = [threading.Thread(target=feed, daemon=True)]
        if status_r is not None:
            helpers.append(threading.Thread(target=read_status, daemon=True))
        out = _Capture(proc.stdout, self.max_output, 64 * self.max_output + 2**20)
        err = _Capture(proc.stderr, self.max_output, 64 * self.max_output + 2**20)
        for t in (*helpers, out, err):
            t.start()
        timed_out = False
        # the supervisor enforces timeout_s itself and then copies the folder back; this is the hard stop
        hard = self.timeout_s + (10 + self.disk_mb / 50 if supervised else 0)
        try:
            proc.wait(timeout=hard)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                if hasattr(os, "killpg"):
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: stray children too
                else:
                    proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            self._kill_cgroup(group)
            proc.wait()
        for t in (*helpers, out, err):
            t.join(timeout=2)
        seconds = time.monotonic() - start
        status = {}
        if status_bytes and status_bytes[0]:
            try:
                status = json.loads(status_bytes[0])
            except ValueError:
                status = {}
        stdout, cut_out = out.text()
        stderr, cut_err = err.text()
        returncode = status.get("returncode", proc.returncode) if supervised else proc.returncode
        if supervised and not status:
            returncode = proc.returncode if proc.returncode else None
        timed_out = timed_out or bool(status.get("timed_out"))
        message = self._explain(returncode, timed_out, err.text_for_diagnosis(), seconds, status)
        if cut_out or cut_err:
            message = (message.rstrip(".") + ". " if message else "") + (
                f"Output was truncated to {self.max_output} characters per stream."
            )
        if status.get("skipped"):
            message = (message.rstrip(".") + ". " if message else "") + (
                "Not kept in the working folder (not a regular file or folder): " + ", ".join(status["skipped"])
            )
        ok = returncode == 0 and not timed_out and not status.get("error") and (not supervised or bool(status))
        files = sorted(entry.name for entry in os.scandir(self.workdir))  # names only: no link is followed
        return SandboxResult(
            "completed" if ok else "failed",
            stdout,
            stderr,
            None if timed_out else returncode,
            message.strip(),
            timed_out,
            cut_out or cut_err,
            seconds,
            self.isolation,
            files,
        )

    def _explain(
        self, returncode: int | None, timed_out: bool, stderr: str, seconds: float, status: dict | None = None
    ) -> str:
        status = status or {}
        if status.get("error"):
            return f"The sandbox failed: {status['error']}."
        if timed_out:
            return f"Killed: the wall-clock limit of {self.timeout_s:g} s was reached."
        sig = -returncode if returncode is not None and returncode < 0 else None
        if sig == signal.SIGXCPU or sig == signal.SIGKILL and seconds >= self.cpu_s:
            return f"Killed: the CPU time limit of {self.cpu_s} s was reached."
        if sig == getattr(signal, "SIGXFSZ", 25):
            return f"Killed: a file grew past the {self.file_mb} MB limit."
        if "MemoryError" in stderr or returncode == -signal.SIGSEGV and "memory" in stderr.lower():
            return f"Failed: the memory limit of {self.memory_mb} MB was reached (MemoryError)."
        if "No space left on device" in stderr:
            return (
                f"Failed: the working folder's quota of {self.disk_mb} MB is full (No space left on device; "
                f"/tmp holds {min(64, self.disk_mb)} MB)."
            )
        if status.get("disk_total", 0) > self.disk_mb * 2**20:
            return (
                f"The working folder holds {status['disk_total'] / 2**20:.0f} MB, over its quota of "
                f"{self.disk_mb} MB (at isolation {self.isolation!r} the quota is only checked after the run)."
            )
        if "sandbox setup failed: " in stderr:
            line = [ln for ln in stderr.splitlines() if "sandbox setup failed: " in ln][-1]
            return "The sandbox could not start: " + line.split("sandbox setup failed: ", 1)[1]
        if "sandbox: " in stderr:
            line = [ln for ln in stderr.splitlines() if "sandbox: " in ln][-1]
            return "Refused by the sandbox: " + line.split("sandbox: ", 1)[1]
        if "Read-only file system" in stderr:
            return "Refused by the sandbox: the file system outside the working directory is read-only."
        if "Network is unreachable" in stderr or "Temporary failure in name resolution" in stderr:
            return "Refused by the sandbox: there is no network."
        if "BlockingIOError" in stderr and "fork" in stderr or "Resource temporarily unavailable" in stderr:
            return f"Failed: the process limit of {self.max_processes} was reached."
        if sig is not None:
            return f"Killed by signal {signal.Signals(sig).name}."
        if returncode is None and not timed_out:
            return "The sandbox could not start (no report from its supervisor)."
        return ""


def run_code(code: str, **limits) -> SandboxResult:
    """One run in a throwaway sandbox: `run_code("print(1+1)", timeout_s=2).stdout == "2\\n"`."""
    with Sandbox(**limits) as sandbox:
        return sandbox.run(code)
