"""The code-interpreter sandbox contains hostile code and says what happened (short limits keep each test fast)."""

import os
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
    r = run_code("print(6 * 7)", timeout_s=5)
    assert r.ok and r.stdout == "42\n" and r.returncode == 0
    assert r.as_tool_message() == "completed\n[stdout]42\n[/stdout]"
    bad = run_code("1/0", timeout_s=5)
    assert bad.status == "failed" and "ZeroDivisionError" in bad.stderr
    assert bad.as_tool_message().startswith("failed\n[stderr]Traceback")


def test_reports_isolation_level():
    assert LEVEL in sandbox_mod.LEVELS
    with Sandbox(timeout_s=5) as sb:
        assert sb.isolation == LEVEL and sb.run("pass").isolation == LEVEL


def test_infinite_loop_hits_wall_clock():
    start = time.monotonic()
    with Sandbox(timeout_s=1, cpu_s=30) as sb:
        r = sb.run("while True:\n    pass")
        assert r.timed_out and r.status == "failed" and "wall-clock limit of 1 s" in r.message
        assert time.monotonic() - start < 10
        assert leftover_processes(sb.workdir) == []


@needs_posix
def test_cpu_limit():
    r = run_code("while True:\n    pass", timeout_s=20, cpu_s=1)
    assert not r.timed_out and "CPU time limit of 1 s" in r.message


@needs_posix
def test_memory_bomb():
    r = run_code("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))", timeout_s=10, memory_mb=200)
    assert r.status == "failed" and "memory limit of 200 MB" in r.message
    assert run_code("print(len(bytearray(10 * 2**20)))", timeout_s=10, memory_mb=200).stdout == "10485760\n"


@needs_posix
def test_fork_bomb_is_contained():
    start = time.monotonic()
    with Sandbox(timeout_s=2, max_processes=8) as sb:
        r = sb.run("import os\nwhile True:\n    os.fork()")
        assert r.status == "failed"
        # the guard's fork counter and the pids cgroup (whichever stops it first) both name the limit
        assert "process limit of 8" in r.message or "wall-clock" in r.message, r.message
        time.sleep(0.2)
        assert leftover_processes(sb.workdir) == []
    assert time.monotonic() - start < 15
    assert run_code("print('host still forks')", timeout_s=5).ok


@pytest.fixture
def outside_target():
    """A writable host path outside /tmp (bubblewrap replaces /tmp by a private tmpfs, so a path there would merely
    be missing in the sandbox): the repository when it is not under /tmp (CI may clone there), else the home."""
    here = Path(__file__).resolve().parent
    folder = next(p for p in (here, Path.home(), Path.cwd()) if not str(p).startswith(tempfile.gettempdir()))
    target = folder / f".sandbox-probe-{os.getpid()}.txt"
    yield target
    target.unlink(missing_ok=True)


def test_write_outside_directory_is_refused(outside_target):
    target = outside_target
    with Sandbox(timeout_s=5) as sb:
        r = sb.run(f"open({str(target)!r}, 'w').write('pwned')\n")
        assert r.status == "failed" and "Refused by the sandbox" in r.message
        assert not target.exists()
        ok = sb.run("open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())")
        assert ok.stdout == "fine\n" and (sb.workdir / "inside.txt").read_text() == "fine"
        assert "inside.txt" in ok.files


@pytest.mark.skipif(LEVEL != "bwrap", reason="read-only root file system needs bubblewrap")
def test_file_system_is_read_only_even_without_guards(outside_target):
    target = outside_target
    r = run_code(f"open({str(target)!r}, 'w').write('pwned')\n", timeout_s=5, guards=False)
    assert "read-only" in r.message and not target.exists()


def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("MINILLAMA_TEST_SECRET", "hunter2")
    code = ("import os\nprint(sorted(os.environ))\nprint(os.environ.get('MINILLAMA_TEST_SECRET'))\n"
            f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
            "except Exception as e:\n    print('blocked', type(e).__name__)\n")
    r = run_code(code, timeout_s=5)
    assert r.ok and "hunter2" not in r.stdout and "blocked" in r.stdout
    assert "MINILLAMA_TEST_SECRET" not in r.stdout


@pytest.mark.parametrize("guards", [True, pytest.param(False, marks=pytest.mark.skipif(
    not OS_ISOLATED, reason="without guards only a network namespace stops the connection"))])
def test_network_connection_is_refused(guards):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # a connection attempt would wait in the backlog until we accept below
    port = server.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
    r = run_code(code, timeout_s=5, guards=guards)
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
    r = run_code("while True:\n    print('x' * 1000)", timeout_s=5, max_output=500)
    assert r.truncated and "truncated" in r.message
    assert len(r.stdout) < 700 and "output truncated" in r.stdout
    assert time.monotonic() - start < 10


def test_reason_is_found_past_the_truncated_output():
    """A long traceback is cut to max_output, but the message still names its last line (the actual error)."""
    r = run_code("import sys\nsys.stderr.write('noise ' * 500)\nraise MemoryError", timeout_s=5, max_output=200)
    assert r.truncated and "MemoryError" not in r.stderr
    assert r.message.startswith("Failed: the memory limit") and r.message.endswith("per stream.")


def test_interpreter_in_an_environment_under_tmp(tmp_path):
    """A virtual environment made under /tmp (pytest's tmp_path is there) stays usable under bwrap's empty /tmp."""
    env_bin = tmp_path / "env" / "bin"
    env_bin.mkdir(parents=True)
    (env_bin / "python").symlink_to(os.path.realpath(sys.executable))
    r = run_code("print(6 * 7)", timeout_s=5, python=str(env_bin / "python"))
    assert r.ok and r.stdout == "42\n", r.as_tool_message()


def test_private_working_directory_and_files():
    with Sandbox(timeout_s=5, files={"data.csv": "a,b\n1,2\n"}) as one, Sandbox(timeout_s=5) as two:
        assert one.workdir != two.workdir and oct(one.workdir.stat().st_mode)[-3:] == "700"
        assert one.run("print(open('data.csv').read().split()[1])").stdout == "1,2\n"
        assert two.run("import os\nprint(os.path.exists('data.csv'))").stdout == "False\n"
        workdir = one.workdir
    assert not workdir.exists()


def test_refuses_when_isolation_is_too_weak(monkeypatch):
    monkeypatch.setattr(sandbox_mod, "_DETECTED", {**INFO, "level": "limits", "bwrap": False, "unshare": False})
    with pytest.raises(RuntimeError, match="weaker than the required"):
        Sandbox(require="namespaces")
    with pytest.warns(RuntimeWarning, match="no OS-level"):
        Sandbox(timeout_s=1).close()
    with pytest.raises(ValueError, match="memory_mb"):
        Sandbox(memory_mb=1)
