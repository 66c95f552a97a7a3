"""The code-interpreter sandbox contains hostile code and says what happened (short limits keep each test fast)."""

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from minillama.tooluse.tools import sandbox as sandbox_mod
from minillama.tooluse.tools.sandbox import Sandbox, detect_isolation, run_code

INFO = detect_isolation()
LEVEL = INFO["level"]
OS_ISOLATED = LEVEL in ("bwrap", "namespaces")
STRONG = [lvl for lvl, key in (("bwrap", "bwrap"), ("namespaces", "unshare")) if INFO.get(key)]  # forced below
ALL_LEVELS = STRONG + (["limits"] if os.name == "posix" else [])  # "limits" only with the explicit opt-in
WEAK = {} if OS_ISOLATED else {"allow_weak_isolation": True}  # the generic tests opt in where nothing stronger works
needs_posix = pytest.mark.skipif(os.name != "posix", reason="resource limits need POSIX")


def leftover_processes(workdir: Path) -> list[int]:
    """Host processes still running code from this sandbox's directory (there must be none)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(workdir) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_runs_code_and_formats_the_result():
    r = run_code("print(6 * 7)", **WEAK, timeout_s=5)
    assert r.ok and r.stdout == "42\n" and r.returncode == 0
    assert r.as_tool_message() == "completed\n[stdout]42\n[/stdout]"
    bad = run_code("1/0", **WEAK, timeout_s=5)
    assert bad.status == "failed" and "ZeroDivisionError" in bad.stderr
    assert bad.as_tool_message().startswith("failed\n[stderr]Traceback")


def test_reports_isolation_level():
    assert LEVEL in sandbox_mod.LEVELS
    with Sandbox(**WEAK, timeout_s=5) as sb:
        assert sb.isolation == LEVEL and sb.run("pass").isolation == LEVEL


def test_infinite_loop_hits_wall_clock():
    start = time.monotonic()
    with Sandbox(**WEAK, timeout_s=1, cpu_s=30) as sb:
        r = sb.run("while True:\n    pass")
        assert r.timed_out and r.status == "failed" and "wall-clock limit of 1 s" in r.message
        assert time.monotonic() - start < 10
        assert leftover_processes(sb.workdir) == []


@needs_posix
def test_cpu_limit():
    r = run_code("while True:\n    pass", **WEAK, timeout_s=20, cpu_s=1)
    assert not r.timed_out and "CPU time limit of 1 s" in r.message


@needs_posix
def test_memory_bomb():
    bomb = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))"
    r = run_code(bomb, **WEAK, timeout_s=10, memory_mb=200)
    assert r.status == "failed" and "memory limit of 200 MB" in r.message
    assert run_code("print(len(bytearray(10 * 2**20)))", **WEAK, timeout_s=10, memory_mb=200).stdout == "10485760\n"


@needs_posix
def test_fork_bomb_is_contained():
    start = time.monotonic()
    with Sandbox(**WEAK, timeout_s=2, max_processes=8) as sb:
        r = sb.run("import os\nwhile True:\n    os.fork()")
        assert r.status == "failed"
        # the guard's fork counter and the pids cgroup (whichever stops it first) both name the limit
        assert "process limit of 8" in r.message or "wall-clock" in r.message, r.message
        time.sleep(0.2)
        assert leftover_processes(sb.workdir) == []
    assert time.monotonic() - start < 15
    assert run_code("print('host still forks')", **WEAK, timeout_s=5).ok


@pytest.fixture
def outside_target():
    """A writable host path outside /tmp (bubblewrap replaces /tmp by a private tmpfs, so a path there would merely
    be missing in the sandbox): the repository when it is not under /tmp (CI may clone there), else the home."""
    here = Path(__file__).resolve().parent
    folder = next(
        (
            p
            for p in (here, Path.home(), Path.cwd())
            if not str(p).startswith(tempfile.gettempdir()) and os.access(p, os.W_OK)
        ),
        None,
    )
    if folder is None:
        pytest.skip("no writable folder outside /tmp for this user")
    target = folder / f".sandbox-probe-{os.getpid()}.txt"
    yield target
    target.unlink(missing_ok=True)


def test_write_outside_directory_is_refused(outside_target):
    target = outside_target
    with Sandbox(**WEAK, timeout_s=5) as sb:
        r = sb.run(f"open({str(target)!r}, 'w').write('pwned')\n")
        assert r.status == "failed" and "Refused by the sandbox" in r.message
        assert not target.exists()
        ok = sb.run("open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())")
        assert ok.stdout == "fine\n" and (sb.workdir / "inside.txt").read_text() == "fine"
        assert "inside.txt" in ok.files


@pytest.mark.skipif(not OS_ISOLATED, reason="a read-only view of the file system needs OS isolation")
def test_file_system_is_read_only_even_without_guards(outside_target):
    """System folders are visible read-only; the rest of the host (the repository, homes, /run) is not there."""
    r = run_code("open('/usr/llama-was-here', 'w').write('pwned')\n", **WEAK, timeout_s=5, guards=False)
    assert "read-only" in r.message and not Path("/usr/llama-was-here").exists()
    r = run_code(f"open({str(outside_target)!r}, 'w').write('pwned')\n", **WEAK, timeout_s=5, guards=False)
    # Absent from the view, or read-only when a folder on the way holds the Python install (/root/.pyenv here)
    refused = ("No such file or directory" in r.stderr) or ("Read-only file system" in r.stderr)
    assert r.status == "failed" and refused and not outside_target.exists(), r.stderr


def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("MINILLAMA_TEST_SECRET", "hunter2")
    code = (
        "import os\nprint(sorted(os.environ))\nprint(os.environ.get('MINILLAMA_TEST_SECRET'))\n"
        f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
        "except Exception as e:\n    print('blocked', type(e).__name__)\n"
    )
    r = run_code(code, **WEAK, timeout_s=5)
    assert r.ok and "hunter2" not in r.stdout and "blocked" in r.stdout
    assert "MINILLAMA_TEST_SECRET" not in r.stdout


@pytest.mark.parametrize(
    "guards",
    [
        True,
        pytest.param(
            False,
            marks=pytest.mark.skipif(
                not OS_ISOLATED, reason="without guards only a network namespace stops the connection"
            ),
        ),
    ],
)
def test_network_connection_is_refused(guards):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # a connection attempt would wait in the backlog until we accept below
    port = server.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
    r = run_code(code, **WEAK, timeout_s=5, guards=guards)
    server.settimeout(0.2)
    try:
        conn, _ = server.accept()
        conn.close()
        reached = True
    except OSError:
        reached = False
    server.close()
    assert r.status == "failed" and "connected" not in r.stdout
    assert not reached, "the host's server saw a connection from the sandbox"
    if guards:
        assert "network access is disabled" in r.message
    else:  # its own network namespace: an empty loopback, or no route at all
        assert "Connection refused" in r.stderr or "no network" in r.message


def test_output_flood_is_truncated():
    start = time.monotonic()
    r = run_code("while True:\n    print('x' * 1000)", **WEAK, timeout_s=5, max_output=500)
    assert r.truncated and "truncated" in r.message
    assert len(r.stdout) < 700 and "output truncated" in r.stdout
    assert time.monotonic() - start < 10


def test_reason_is_found_past_the_truncated_output():
    """A long traceback is cut to max_output, but the message still names its last line (the actual error)."""
    r = run_code("import sys\nsys.stderr.write('noise ' * 500)\nraise MemoryError", **WEAK, timeout_s=5, max_output=200)
    assert r.truncated and "MemoryError" not in r.stderr
    assert r.message.startswith("Failed: the memory limit") and r.message.endswith("per stream.")


def test_interpreter_in_an_environment_under_tmp(tmp_path):
    """A virtual environment made under /tmp (pytest's tmp_path is there) stays usable under bwrap's empty /tmp."""
    env_bin = tmp_path / "env" / "bin"
    env_bin.mkdir(parents=True)
    (env_bin / "python").symlink_to(os.path.realpath(sys.executable))
    r = run_code("print(6 * 7)", **WEAK, timeout_s=5, python=str(env_bin / "python"))
    assert r.ok and r.stdout == "42\n", r.as_tool_message()


def test_private_working_directory_and_files():
    with Sandbox(**WEAK, timeout_s=5, files={"data.csv": "a,b\n1,2\n"}) as one, Sandbox(**WEAK, timeout_s=5) as two:
        assert one.workdir != two.workdir and oct(one.workdir.stat().st_mode)[-3:] == "700"
        assert one.run("print(open('data.csv').read().split()[1])").stdout == "1,2\n"
        assert two.run("import os\nprint(os.path.exists('data.csv'))").stdout == "False\n"
        workdir = one.workdir
    assert not workdir.exists()


NO_ISOLATION = {
    **INFO,
    "level": "limits",
    "bwrap": False,
    "unshare": False,
    "rlimits": True,
    "why": {"bwrap": "bwrap is not installed", "namespaces": "unshare: user namespaces are disabled"},
}


def test_refuses_when_isolation_is_too_weak(monkeypatch):
    """Without bubblewrap and user namespaces (simulated), model-written code is refused unless the caller opts in,
    and the one-line message says what would be unprotected and how to opt in."""
    monkeypatch.setattr(sandbox_mod, "_DETECTED", NO_ISOLATION)
    with pytest.raises(sandbox_mod.SandboxRefused) as refused:
        Sandbox(timeout_s=1)
    text = str(refused.value)
    assert "\n" not in text and "allow_weak_isolation=True" in text and "--allow-unsafe-sandbox" in text
    assert all(word in text for word in ("files", "network", "processes", "bubblewrap", "user namespaces"))
    with pytest.raises(sandbox_mod.SandboxRefused, match="weaker than the required"):
        Sandbox(require="namespaces", allow_weak_isolation=True)
    with pytest.raises(sandbox_mod.SandboxRefused):
        run_code("print(1)")
    with pytest.warns(RuntimeWarning, match="no OS-level protection"):
        Sandbox(timeout_s=1, allow_weak_isolation=True).close()
    with pytest.raises(ValueError, match="memory_mb"):
        Sandbox(memory_mb=1)


@pytest.mark.skipif(not STRONG, reason="needs a strong level to be forced down from")
def test_forcing_a_weak_level_needs_the_opt_in_too():
    with pytest.raises(sandbox_mod.SandboxRefused, match="Refusing to run model-written code"):
        Sandbox(isolation="limits")


# --------------------------------------------------------------------------------------------------------------
# Attacks from issue 13, run at every level this machine has: "bwrap" when installed, "namespaces" forced, and
# "limits" only with the explicit opt-in. Most payloads use `guards=False` (or a subprocess) because the Python
# guards are not a boundary: what must stop them is the operating system.
# --------------------------------------------------------------------------------------------------------------
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the attacks use Linux /proc and namespaces")


def sandbox_at(level: str, **kw) -> Sandbox:
    kw.setdefault("timeout_s", 5)
    if level == "limits":
        kw["allow_weak_isolation"] = True
        with pytest.warns(RuntimeWarning):
            return Sandbox(isolation=level, **kw)
    return Sandbox(isolation=level, **kw)


def processes_with(token: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if token in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def host_file(outside_target):
    outside_target.write_text("host data")
    return outside_target


@linux_only
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_planted_symlinks_do_not_redirect_host_writes(level, host_file):
    """Code swaps main.py (and a data file, and a folder) for symlinks to a host file: the host's next writes go
    into the sandbox's own folder or are refused, never through the link."""
    with sandbox_at(level, guards=False) as sb:
        plant = (
            "import os\n"
            "for name in ('main.py', 'data.csv'):\n"
            "    if os.path.lexists(name):\n"
            "        os.remove(name)\n"
            f"    os.symlink({str(host_file)!r}, name)\n"
            f"os.symlink({str(host_file.parent)!r}, 'sub')\n"
        )
        assert sb.run(plant).ok
        assert sb.run("print('second run')").stdout == "second run\n"
        sb.add_file("data.csv", "written by the host")
        try:
            sb.add_file("sub/x.txt", "through a linked folder")
        except ValueError:
            pass
        assert host_file.read_text() == "host data"
        assert not (host_file.parent / "x.txt").exists()
        assert sb.run("print(open('data.csv').read())").stdout == "written by the host\n"


@linux_only
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_planted_fifo_does_not_hang_the_host(level):
    import threading

    with sandbox_at(level, guards=False, timeout_s=2) as sb:
        assert sb.run(
            "import os\nfor n in ('main.py', 'data.csv'):\n    if os.path.lexists(n):\n"
            "        os.remove(n)\n    os.mkfifo(n)\n"
        ).ok
        done = {}

        def second():
            done["run"] = sb.run("print('not stuck')")
            sb.add_file("data.csv", "fine")
            done["added"] = True

        worker = threading.Thread(target=second, daemon=True)
        start = time.monotonic()
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "the host hung on a FIFO the code planted"
        assert time.monotonic() - start < 2 + 10
        assert done["run"].stdout == "not stuck\n" and done["added"]


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_host_secrets_are_not_readable(level, host_file):
    host_file.chmod(0o600)
    code = (
        "import subprocess\n"
        f"for path in ('/etc/shadow', {str(host_file)!r}, {str(Path.home() / '.bashrc')!r}):\n"
        "    r = subprocess.run(['cat', path], capture_output=True, text=True)\n"
        "    print(path, repr(r.stdout[:200]), r.stderr.strip()[-80:])\n"
    )
    with sandbox_at(level, guards=False) as sb:
        r = sb.run(code)
    assert r.ok, r.as_tool_message()
    assert "host data" not in r.stdout and "root:" not in r.stdout, r.stdout
    if Path.home().joinpath(".bashrc").is_file():
        assert Path.home().joinpath(".bashrc").read_text()[:40] not in r.stdout


@linux_only
@pytest.mark.parametrize("level", STRONG)
@pytest.mark.parametrize("how", ["subprocess", "ctypes", "subclasses"])
def test_writes_outside_are_blocked_by_the_os(level, how, outside_target, tmp_path):
    targets = [str(outside_target), str(tmp_path / "pwned.txt")]
    payload = {
        "subprocess": "import subprocess\nfor t in {t}:\n    subprocess.run(['sh', '-c', f'echo pwned > {{t}}'])\n",
        "ctypes": (
            "import ctypes, os\nlibc = ctypes.CDLL(None)\nfor t in {t}:\n"
            "    fd = libc.open(t.encode(), os.O_WRONLY | os.O_CREAT, 0o644)\n"
            "    print(t, fd)\n    fd >= 0 and libc.write(fd, b'pwned', 5)\n"
        ),
        "subclasses": (
            "io = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'FileIO'][0]\n"
            "for t in {t}:\n    try:\n        io(t, 'w').write(b'pwned')\n"
            "    except OSError as e:\n        print(t, e)\n"
        ),
    }[how].format(t=targets)
    with sandbox_at(level) as sb:  # guards on: they must not be what stops these
        sb.run(payload)
    assert not outside_target.exists() and not (tmp_path / "pwned.txt").exists()


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_host_unix_sockets_are_unreachable(level, tmp_path):
    servers, names = [], [str(tmp_path / "host.sock"), "\0minillama-test-" + uuid_hex()]
    for name in names:
        s = socket.socket(socket.AF_UNIX)
        s.bind(name)
        s.listen(4)
        s.settimeout(0.3)
        servers.append(s)
    code = (
        "import socket\nfor name in " + repr(names) + ":\n    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n        s.connect(name)\n        print('connected', repr(name))\n"
        "    except OSError as e:\n        print('refused', e)\n"
    )
    with sandbox_at(level, guards=False) as sb:
        r = sb.run(code)
    reached = []
    for s in servers:
        try:
            s.accept()[0].close()
            reached.append(True)
        except OSError:
            pass
        s.close()
    assert "connected" not in r.stdout and not reached, r.stdout


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:12]


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_code_runs_unprivileged_and_cannot_leave_its_cgroup(level):
    code = (
        "import os, glob\nprint('uid', os.getuid(), os.geteuid())\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])\n"
        "for p in glob.glob('/sys/fs/cgroup/**/cgroup.procs', recursive=True) + "
        "['/sys/fs/cgroup/pids/cgroup.procs', '/sys/fs/cgroup/unified/cgroup.procs']:\n"
        "    try:\n        open(p, 'w').write(str(os.getpid()))\n        print('moved', p)\n"
        "    except OSError:\n        pass\n"
        "try:\n    os.setuid(0)\n    print('setuid worked')\nexcept OSError:\n    print('no setuid')\n"
    )
    with sandbox_at(level, guards=False) as sb:
        r = sb.run(code)
    assert r.ok, r.as_tool_message()
    lines = r.stdout.splitlines()
    assert lines[0] != "uid 0 0" and lines[1] == "0000000000000000", r.stdout
    assert "moved" not in r.stdout and "no setuid" in r.stdout


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_host_processes_are_out_of_reach(level, monkeypatch):
    import subprocess as sp

    monkeypatch.setenv("MINILLAMA_TEST_SECRET", "hunter2")
    victim = sp.Popen(["sleep", "60"])
    try:
        code = (
            "import subprocess\n"
            f"subprocess.run(['kill', '-9', '{victim.pid}', '{os.getpid()}'])\n"
            f"r = subprocess.run(['cat', '/proc/{os.getpid()}/environ'], capture_output=True)\n"
            "print(r.stdout)\n"
        )
        with sandbox_at(level, guards=False) as sb:
            r = sb.run(code)
        time.sleep(0.2)
        assert victim.poll() is None, "the sandboxed code killed a host process"
        assert "hunter2" not in r.stdout
    finally:
        victim.kill()
        victim.wait()


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_no_network_even_through_a_subprocess(level):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.3)
    port = server.getsockname()[1]
    code = (
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import socket; "
        f'socket.create_connection(("127.0.0.1", {port}), timeout=2); print("connected")\'])\n'
    )
    with sandbox_at(level) as sb:
        r = sb.run(code)
    try:
        server.accept()[0].close()
        reached = True
    except OSError:
        reached = False
    server.close()
    assert not reached and "connected" not in r.stdout


@linux_only
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_daemon_does_not_survive_the_call(level):
    token = "minillama-daemon-" + uuid_hex()
    code = (
        "import os, subprocess, sys, time\n"
        "if os.fork() == 0:\n    os.setsid()\n"
        "    p = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.05)', "
        f"{token!r}], start_new_session=True)\n"
        "    open('daemon.pid', 'w').write(str(p.pid))\n    os._exit(0)\n"
        "time.sleep(0.5)\nprint('parent exits')\n"
    )
    with sandbox_at(level, guards=False) as sb:
        r = sb.run(code)
        assert r.ok and "daemon.pid" in r.files, r.as_tool_message()
        time.sleep(0.3)
        assert processes_with(token) == [], "a daemon outlived the call"
        if level == "limits":  # same PID space as the host: the pid it wrote must be gone
            pid = int((sb.workdir / "daemon.pid").read_text())
            assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes()


@linux_only
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_work_folder_quota(level):
    """Inside the namespaces the folder is a tmpfs of disk_mb: writing past it fails and nothing over it comes back;
    at "limits" (opted in) the quota is only checked after the run, and the message says so."""
    with sandbox_at(level, guards=False, disk_mb=16, file_mb=8) as sb:
        r = sb.run("for i in range(8):\n    open(f'f{i}.bin', 'wb').write(b'x' * 4 * 2**20)\n")
        assert "16 MB" in r.message and "quota" in r.message, r.as_tool_message()
        total = sum(p.stat().st_size for p in sb.workdir.rglob("*") if p.is_file())
        if level == "limits":
            assert "only checked after the run" in r.message
        else:
            assert r.status == "failed" and total <= 16 * 2**20
        assert sb.run("print('still works')").ok


@linux_only
@pytest.mark.parametrize("level", ALL_LEVELS)
def test_numpy_imports_at_every_level(level):
    pytest.importorskip("numpy")
    with sandbox_at(level) as sb:
        r = sb.run("import numpy as np\nprint(int(np.arange(10).sum()))")
    assert r.stdout == "45\n", r.as_tool_message()


def test_agent_refuses_without_isolation_unless_opted_in(monkeypatch, capsys):
    from minillama.cli.chat import main
    from minillama.tooluse.toolbox import Toolbox

    monkeypatch.setattr(sandbox_mod, "_DETECTED", NO_ISOLATION)
    with Toolbox(builtin=("code_interpreter",)) as toolbox:
        out = toolbox.execute({"tool_name": "code_interpreter", "arguments": {"code": "print(1)"}})
    assert not out["ok"] and out["error"]["type"] == "sandbox_refused", out
    assert out["content"].startswith("failed\n[stderr]Refusing to run model-written code")
    assert main(["--demo"]) == 0 and "Refusing to run model-written code" in capsys.readouterr().out
    with pytest.warns(RuntimeWarning, match="opted in"):
        assert main(["--demo", "--allow-unsafe-sandbox"]) == 0
    assert "answered after 3 model calls" in capsys.readouterr().out


def _closed_to_others(path: Path) -> Path | None:
    """The outermost folder on `path` that other users cannot enter (e.g. /root, mode 0700), else None."""
    for folder in [*reversed(path.parents), path]:
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux"
    or os.geteuid() != 0
    or not STRONG
    or os.environ.get("MINILLAMA_NOBODY")
    or not shutil.which("setpriv"),
    reason="runs as root: drops to uid 65534 to test a learner's non-root host (needs unshare and setpriv)",
)
def test_attacks_from_a_non_root_host(tmp_path):
    """A learner runs the agent as a normal user: rerun the attack tests from a host process with uid 65534 (in a
    private mount namespace where the Python install is reachable for that uid even when it lives under /root)."""
    import subprocess

    prefix = Path(sys.prefix).resolve()
    repo = Path(__file__).resolve().parent.parent
    if _closed_to_others(repo) is not None:
        pytest.skip(f"the repository is not readable for other users ({_closed_to_others(repo)})")
    closed = _closed_to_others(prefix)
    home = Path("/var/tmp") / f"minillama-nobody-{os.getpid()}"  # a writable folder outside /tmp for that uid
    home.mkdir(exist_ok=True)
    os.chown(home, 65534, 65534)
    setup = "set -e\n"
    if closed is not None:  # cover the closed folder with a tmpfs that holds only the Python install
        aside = tmp_path / "python"
        aside.mkdir()
        setup += (
            f"mount --bind {prefix} {aside}\nmount -t tmpfs -o mode=0755 tmpfs {closed}\n"
            f"mkdir -p {prefix}\nmount --bind {aside} {prefix}\n"
        )
    setup += (
        f"cd {repo}\nexec setpriv --reuid 65534 --regid 65534 --clear-groups env -i PATH=/usr/bin:/bin "
        f"HOME={home} PYTHONPATH={repo} MINILLAMA_NOBODY=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg "
        f"{sys.executable} -m pytest {Path(__file__).resolve()} -q -p no:cacheprovider -x "
        "-k 'planted or secrets or writes_outside or sockets or unprivileged or out_of_reach or daemon "
        "or quota or numpy or fork_bomb or network or sparse'"
    )
    try:
        out = subprocess.run(
            ["unshare", "--mount", "sh", "-c", setup], capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert out.returncode == 0 and " passed" in summary, out.stdout[-3000:] + out.stderr[-2000:]
    assert int(summary.split(" passed")[0].split()[-1]) >= 20, summary  # the attacks ran, not skipped


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_sparse_files_and_the_supervisor_are_out_of_reach(level, tmp_path):
    """Sparse files cannot turn the quota into gigabytes on the host disk, and the supervisor's descriptors (one of
    them is the host's working folder) cannot be reached through /proc."""
    code = (
        "import os\nfor i in range(6):\n    with open(f's{i}.bin', 'wb') as f:\n        f.truncate(7 * 2**20)\n"
        "for pid in os.listdir('/proc'):\n    if pid.isdigit() and int(pid) != os.getpid():\n"
        "        try:\n            fds = os.listdir(f'/proc/{pid}/fd')\n"
        "        except OSError:\n            continue\n"
        "        for fd in fds:\n            try:\n"
        "                open(f'/proc/{pid}/fd/{fd}/pwned.txt', 'w').write('x')\n"
        "                print('wrote through', pid, fd)\n            except OSError:\n                pass\n"
    )
    with sandbox_at(level, guards=False, disk_mb=16, file_mb=8) as sb:
        r = sb.run(code)
        total = sum(p.stat().st_size for p in sb.workdir.rglob("*") if p.is_file())
        assert total <= 16 * 2**20 and "over the quota" in r.message, (total, r.as_tool_message())
        assert "wrote through" not in r.stdout and not (sb.workdir / "pwned.txt").exists(), r.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="probes Linux tools")
def test_detection_falls_back_and_says_why(monkeypatch):
    """Detection really runs each level: without bubblewrap it picks "namespaces" when that works, and without
    both it ends at "limits", which the sandbox refuses unless opted in."""
    real_which = shutil.which
    monkeypatch.setattr(sandbox_mod, "_DETECTED", None)
    monkeypatch.setattr(sandbox_mod.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    info = detect_isolation()
    assert info["why"]["bwrap"] == "bwrap is not installed"
    assert info["level"] == ("namespaces" if INFO["unshare"] else "limits")
    monkeypatch.setattr(sandbox_mod, "_DETECTED", None)
    monkeypatch.setattr(
        sandbox_mod.shutil, "which", lambda name: None if name in ("bwrap", "unshare") else real_which(name)
    )
    info = detect_isolation()
    assert info["level"] == "limits" and not info["bwrap"] and not info["unshare"]
    with pytest.raises(sandbox_mod.SandboxRefused, match="unshare is not installed"):
        Sandbox(timeout_s=1)
    with pytest.warns(RuntimeWarning):
        assert run_code("print(6 * 7)", timeout_s=5, allow_weak_isolation=True).stdout == "42\n"
    with pytest.warns(RuntimeWarning):
        r = run_code("print(6 * 7)", timeout_s=5, isolation="guards", allow_weak_isolation=True)
    assert r.stdout == "42\n" and r.isolation == "guards"


@linux_only
@pytest.mark.parametrize("level", STRONG)
def test_files_written_before_a_timeout_are_kept(level):
    """The supervisor enforces the wall-clock limit itself, kills the run, then still copies the folder back."""
    with sandbox_at(level, timeout_s=1) as sb:
        r = sb.run("open('partial.txt', 'w').write('saved')\nwhile True:\n    pass")
        assert r.timed_out and "wall-clock limit of 1 s" in r.message
        assert (sb.workdir / "partial.txt").read_text() == "saved" and "partial.txt" in r.files
