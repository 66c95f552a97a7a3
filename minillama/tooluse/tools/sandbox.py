"""The code interpreter: run model-written Python in a separate, limited, isolated process (paper §4.3.5).

Llama 3.1 hands `<|python_tag|>` code to a Python interpreter and reads back what it printed. That code is written by
a model, so it may loop forever, eat memory, fork, flood the output, read secrets, touch files or reach the network.
`Sandbox.run(code)` contains each of those and reports what happened in plain words.

Layers, strongest first (`detect_isolation()` says which ones this machine has; `Sandbox.isolation` is the level
actually used; below "namespaces" it warns, and `require=` refuses to run):

1. **Operating system isolation** (Linux):
   - `bwrap` (bubblewrap, `apt-get install bubblewrap`): no network (own empty loopback), the whole file system
     read-only except the private working directory and a private /tmp, own PID space (nothing of the host is
     visible in /proc), every child killed with the sandbox;
   - else `unshare` (util-linux, as root): no network and an own PID space, but a writable file system;
   - a `pids` cgroup (cgroup v1 or v2, when writable) caps the number of processes: the fork-bomb limit that also
     holds for root, which ignores RLIMIT_NPROC.
2. **Resource limits** (POSIX `resource`): address space (RLIMIT_AS: the memory limit), CPU seconds (RLIMIT_CPU),
   file size (RLIMIT_FSIZE), no core dumps, RLIMIT_NPROC when not root; plus a wall-clock limit enforced by the
   parent, which kills the whole process group (and the cgroup).
3. **Hygiene**: a fresh private temporary working directory (files can be copied in), an environment with nothing
   of the parent's (no tokens, keys or paths leak), `python -I` (no user site, no PYTHON* variables), stdin closed,
   output capped with a note.
4. **Python guards** (audit hooks, PEP 578): refuse writes outside the working directory, sockets, and more than a
   few child processes. Like the "reliability guard" of OpenAI's human-eval, this is *not* a security boundary
   (code can get around it); it gives clear messages and is the only file/network protection on macOS/Windows.
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
from pathlib import Path

__all__ = ["Sandbox", "SandboxResult", "detect_isolation", "run_code"]

LEVELS = ("none", "guards", "limits", "namespaces", "bwrap")  # weakest -> strongest


# --------------------------------------------------------------------------------------------------------------
# What this machine offers
# --------------------------------------------------------------------------------------------------------------
def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


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


def _tmp_paths_of(python: str) -> list[str]:
    """Folders below /tmp that the interpreter `python` needs: its environment (`.../bin/python` -> `...`, for the
    path as given and with links resolved) and, for this interpreter, `sys.prefix`. Empty for the usual system or
    home-directory installs."""
    tmp = Path("/tmp")  # the folder the bwrap command replaces with an empty tmpfs
    candidates = {Path(os.path.abspath(python)).parent.parent, Path(os.path.realpath(python)).parent.parent}
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        candidates.add(Path(os.path.abspath(sys.prefix)))
    return sorted(str(p) for p in candidates if p.is_dir() and tmp in p.parents)


_DETECTED: dict | None = None


def detect_isolation(refresh: bool = False) -> dict:
    """Which isolation layers work here: {"system", "bwrap", "unshare", "pids_cgroup", "rlimits", "level"}."""
    global _DETECTED
    if _DETECTED is not None and not refresh:
        return _DETECTED
    system = platform.system()
    info = {"system": system, "bwrap": False, "unshare": False, "pids_cgroup": None, "rlimits": False}
    try:
        import resource  # noqa: F401  (POSIX only)

        info["rlimits"] = True
    except ImportError:
        pass
    if system == "Linux":
        if shutil.which("bwrap"):
            info["bwrap"] = _works(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                                    "--dev", "/dev", "--proc", "/proc", "true"])
        if shutil.which("unshare"):
            info["unshare"] = _works(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        root = _pids_cgroup_root()
        info["pids_cgroup"] = str(root) if root else None
    if info["bwrap"]:
        info["level"] = "bwrap"
    elif info["unshare"]:
        info["level"] = "namespaces"
    elif info["rlimits"]:
        info["level"] = "limits"
    else:
        info["level"] = "guards"
    _DETECTED = info
    return info


# --------------------------------------------------------------------------------------------------------------
# The program that runs inside the child before the model's code: limits, guards, then main.py
# --------------------------------------------------------------------------------------------------------------
_BOOTSTRAP = r'''
import json, os, sys
cfg = json.loads(sys.argv[1])
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
    if os.getuid() != 0:
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
import runpy
try:
    runpy.run_path("main.py", run_name="__main__")
except SystemExit:
    raise
except BaseException as exc:  # show the model its own frames only, not this bootstrap's
    import traceback
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "main.py":
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    sys.exit(1)
'''


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
        from minillama.tooluse.format import format_tool_result

        stderr = self.stderr
        if self.message and self.message not in stderr:
            stderr = (stderr + ("\n" if stderr and not stderr.endswith("\n") else "") + self.message + "\n")
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
                self.tail = (self.tail + chunk)[-self.keep * 4:]
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
        return b"".join(self.chunks).decode("utf-8", errors="replace") + "\n" + self.tail.decode(
            "utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------------------------
class Sandbox:
    """Run Python code in a fresh limited process. One working directory per `Sandbox` (files persist between
    runs of the same sandbox, like a notebook's kernel directory; use `with Sandbox() as sb:` to clean up).

    Args:
        timeout_s: wall-clock limit per run (the whole process group is killed after it).
        cpu_s: CPU-seconds limit (RLIMIT_CPU).
        memory_mb: address-space limit (RLIMIT_AS). Python alone needs ~30 MB, numpy ~150 MB, pandas ~400 MB.
        max_output: characters of stdout and of stderr kept; the rest is dropped with a note.
        max_processes: child processes allowed (cgroup pids.max, RLIMIT_NPROC, guard count).
        file_mb: largest file the code may write (RLIMIT_FSIZE).
        isolation: "auto" (strongest available), or force "bwrap", "namespaces", "limits", "guards".
        require: refuse to run (RuntimeError) when the available level is weaker than this, e.g. "namespaces".
        guards: install the Python audit-hook guards (layer 4).
        files: {name: str | bytes | Path} copied into the working directory before the first run.
    """

    def __init__(self, timeout_s: float = 10.0, cpu_s: int | None = None, memory_mb: int = 1024,
                 max_output: int = 4000, max_processes: int = 16, file_mb: int = 64, isolation: str = "auto",
                 require: str | None = None, guards: bool = True, files: dict | None = None,
                 python: str | None = None):
        if timeout_s <= 0 or memory_mb < 32 or max_output < 100 or max_processes < 1:
            raise ValueError("Sandbox limits: timeout_s > 0, memory_mb >= 32 (Python needs ~30 MB), "
                             "max_output >= 100, max_processes >= 1")
        info = detect_isolation()
        available = info["level"]
        if isolation == "auto":
            isolation = available
        if isolation not in LEVELS[1:]:
            raise ValueError(f"isolation must be 'auto' or one of {LEVELS[1:]}, got {isolation!r}")
        if LEVELS.index(isolation) > LEVELS.index(available):
            raise RuntimeError(f"isolation {isolation!r} is not available here (best: {available!r}; "
                               f"detected {info}); install bubblewrap or choose a weaker level")
        if require is not None and LEVELS.index(isolation) < LEVELS.index(require):
            raise RuntimeError(f"this sandbox would run with isolation {isolation!r}, weaker than the required "
                               f"{require!r}; on Linux install bubblewrap (apt-get install bubblewrap)")
        if LEVELS.index(isolation) < LEVELS.index("namespaces"):
            warnings.warn(f"Sandbox isolation is only {isolation!r} on {info['system']}: resource limits and Python "
                          "guards, but no OS-level network or file-system isolation. Do not run untrusted code.",
                          RuntimeWarning, stacklevel=2)
        self.isolation = isolation
        self.pids_cgroup = info["pids_cgroup"] if isolation != "guards" else None
        self.timeout_s, self.cpu_s = float(timeout_s), int(cpu_s or max(1, int(timeout_s) + 1))
        self.memory_mb, self.max_output, self.max_processes = memory_mb, max_output, max_processes
        self.file_mb, self.guards = file_mb, guards
        self.python = python or sys.executable
        self.workdir = Path(tempfile.mkdtemp(prefix="minillama-sandbox-")).resolve()
        os.chmod(self.workdir, 0o700)
        for name, data in (files or {}).items():
            self.add_file(name, data)

    # -- files ----------------------------------------------------------------------------------------------
    def add_file(self, name: str, data) -> Path:
        """Copy `data` (str, bytes, or a Path to copy) to `workdir/name`."""
        target = (self.workdir / name).resolve()
        if self.workdir not in target.parents:
            raise ValueError(f"file name {name!r} must stay inside the sandbox directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        elif isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(str(data))
        return target

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- running --------------------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        python = [self.python, "-I", "-c", _BOOTSTRAP]
        wd = str(self.workdir)
        if self.isolation == "bwrap":
            # `--tmpfs /tmp` hides the host's /tmp; an interpreter that lives there (a virtual environment made
            # under /tmp) is bound back read-only, else bwrap cannot find it.
            keep = [a for p in _tmp_paths_of(self.python) for a in ("--ro-bind", p, p)]
            return ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
                    "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *keep, "--bind", wd, wd, "--chdir", wd,
                    *python]
        if self.isolation == "namespaces":
            # A shell between unshare and Python turns "killed by signal N" into exit status 128 + N: unshare
            # (util-linux 2.38) fails with "sigprocmask unblock failed" when it tries to pass a signal death on.
            return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                    "/bin/sh", "-c", '"$@"; exit $?', "sh", *python]
        return python

    def _env(self) -> dict:
        wd = str(self.workdir)
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": wd, "TMPDIR": wd, "LANG": "C.UTF-8",
                "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": wd}

    def _make_cgroup(self) -> Path | None:
        if not self.pids_cgroup:
            return None
        group = Path(self.pids_cgroup) / f"minillama-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
            # the wrapper (bwrap, or unshare and its shell) and the Python interpreter count too
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
        """Write `code` to main.py in the working directory and run it under the limits. Never raises on bad code."""
        if not isinstance(code, str):
            raise ValueError(f"code must be a string of Python source, got {type(code).__name__}")
        (self.workdir / "main.py").write_text(code)
        config = {"workdir": str(self.workdir), "memory_bytes": self.memory_mb * 2**20, "cpu_s": self.cpu_s,
                  "file_bytes": self.file_mb * 2**20, "max_processes": self.max_processes, "guards": self.guards}
        group = self._make_cgroup()

        def enter_cgroup():  # runs in the child between fork and exec
            if group is not None:
                with open(group / "cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))

        start = time.monotonic()
        proc = subprocess.Popen([*self._command(), json.dumps(config)], cwd=self.workdir, env=self._env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=os.name == "posix", preexec_fn=enter_cgroup if group else None)
        out = _Capture(proc.stdout, self.max_output, 64 * self.max_output + 2**20)
        err = _Capture(proc.stderr, self.max_output, 64 * self.max_output + 2**20)
        out.start(), err.start()
        timed_out = False
        try:
            proc.wait(timeout=self.timeout_s)
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
        out.join(timeout=2)
        err.join(timeout=2)
        seconds = time.monotonic() - start
        stdout, cut_out = out.text()
        stderr, cut_err = err.text()
        code_ = proc.returncode
        message = self._explain(code_, timed_out, err.text_for_diagnosis(), seconds)
        if cut_out or cut_err:
            message = (message.rstrip(".") + ". " if message else "") + (
                f"Output was truncated to {self.max_output} characters per stream.")
        status = "completed" if code_ == 0 and not timed_out else "failed"
        files = sorted(p.name for p in self.workdir.iterdir() if p.name != "main.py")
        return SandboxResult(status, stdout, stderr, None if timed_out else code_, message.strip(), timed_out,
                             cut_out or cut_err, seconds, self.isolation, files)

    def _explain(self, returncode: int | None, timed_out: bool, stderr: str, seconds: float) -> str:
        if timed_out:
            return f"Killed: the wall-clock limit of {self.timeout_s:g} s was reached."
        sig = None  # bwrap and unshare report a child killed by signal N as exit status 128 + N
        if returncode is not None and returncode < 0:
            sig = -returncode
        elif returncode is not None and returncode > 128 and self.isolation in ("bwrap", "namespaces"):
            sig = returncode - 128
        if sig == signal.SIGXCPU or sig == signal.SIGKILL and seconds >= self.cpu_s:
            return f"Killed: the CPU time limit of {self.cpu_s} s was reached."
        if sig == getattr(signal, "SIGXFSZ", 25):
            return f"Killed: a file grew past the {self.file_mb} MB limit."
        if "MemoryError" in stderr or returncode == -signal.SIGSEGV and "memory" in stderr.lower():
            return f"Failed: the memory limit of {self.memory_mb} MB was reached (MemoryError)."
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
        return ""


def run_code(code: str, **limits) -> SandboxResult:
    """One run in a throwaway sandbox: `run_code("print(1+1)", timeout_s=2).stdout == "2\\n"`."""
    with Sandbox(**limits) as sandbox:
        return sandbox.run(code)
