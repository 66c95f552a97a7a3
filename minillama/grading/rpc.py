"""The trusted side of the grader's RPC: exercise functions run in an untrusted worker process, never in pytest's.

`ImplProxy(chapter, spec, ...)` is what the `impl` fixture returns: `impl.f(*args, **kwargs)` sends the call to a worker
(`minillama.grading.worker`) and returns the decoded result, so learner code never runs in the process that compares
results and records grades.

Trusted -> worker (arguments): pickle (the worker is the untrusted party). Callables that are not `torch.nn.Module`s
(functions, lambdas, closures, objects with `__call__`) become callbacks: the worker calls them back through the
channel and they run here. Large dicts/lists/sets given as top-level arguments are sent once per worker and then
referred to (tests must not mutate such an argument between calls).

Worker -> trusted (results, callback arguments, the final state of mutated arguments): `decode`, never pickle. Only
exact None/bool/int/float/complex/str/bytes/list/tuple/dict/set/frozenset (and Counter/OrderedDict), dense
`torch.Tensor`s rebuilt from raw bytes (exact type, no subclasses), numeric `numpy` arrays and scalars, and exceptions
as (type name, message), raised here as the matching builtin type. Anything else is a decoding error.

Each call waits with a deadline (the test's timeout, the grader's total budget); on expiry the worker and everything
it started are killed and the test fails with a one-line reason. A worker that dies fails the running test with its
exit code, and the next call starts a fresh one; an exercise file that cannot be imported fails every test at once.
Output the worker prints goes to a file that is read, re-printed (truncated) and emptied after each call; more than
`MAX_OUTPUT_BYTES` fails the test. Each calling thread gets its own worker (ch08 runs ranks on threads).
"""

from __future__ import annotations

import builtins
import collections
import copyreg
import ctypes
import errno
import io
import json
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

MAX_OUTPUT_BYTES = 1_000_000  # a call that prints more than this fails its test
MAX_FRAME_BYTES = 1 << 30  # a worker's message larger than this is refused
REPRINT_BYTES = 20_000  # how much of a call's output is re-printed into the test's captured output
BIG_CONTAINER = 5_000  # top-level dict/list/set arguments at least this long are sent once per worker
MEMORY_LIMIT_GB = float(os.environ.get("MINILLAMA_GRADER_MEMORY_GB", "6"))
SPAWN_TIMEOUT_S = 120.0  # starting a worker (python + torch) does not count against a test's timeout
MAX_DEPTH = 200

# ---------------------------------------------------------------------- Linux process controls
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


def prctl(option: int, value: int) -> bool:
    """prctl(2) on Linux; False elsewhere or on failure."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def harden_trusted_process(subreaper: bool = False) -> None:
    """Same-uid processes (the learner's code) can then neither ptrace this one nor open its /proc/PID/{fd,mem,environ};
    with `subreaper`, orphaned descendants re-parent to it, so they can be found and killed."""
    prctl(PR_SET_DUMPABLE, 0)
    if subreaper:
        prctl(PR_SET_CHILD_SUBREAPER, 1)


def _parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    try:
        names = os.listdir("/proc")
    except OSError:
        return children
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[ppid].append(int(name))
    return children


def descendants(roots: list[int], exclude: set[int] = frozenset()) -> list[int]:
    """Every live descendant of `roots` (not the roots), skipping the subtrees of `exclude`."""
    children = _parent_map()
    out, todo, seen = [], list(roots), set(roots)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in seen and c not in exclude:
                seen.add(c)
                out.append(c)
                todo.append(c)
    return out


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def kill_tree(roots: list[int], include_roots: bool = True, exclude: set[int] = frozenset(), rounds: int = 50) -> None:
    """SIGKILL the roots and all their descendants, again until none is left (a process may fork while we look)."""
    killed_roots = False
    for _ in range(rounds):
        pids = descendants(roots, exclude)
        if include_roots and not killed_roots:
            pids = list(roots) + pids
            killed_roots = True
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            _reap(pid)
        time.sleep(0.01)


# ---------------------------------------------------------------------- framing
def write_frame(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """Write an 8-byte length and the payload; with a deadline the fd must be non-blocking."""
    data = memoryview(struct.pack("<Q", len(payload)) + payload)
    while data:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            _, writable, _ = select.select([], [fd], [], left)
            if not writable:
                continue
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise EOFError from None  # the worker is gone
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not readable:
                continue
        try:
            chunk = os.read(fd, min(n - got, 1 << 20))
        except BlockingIOError:
            continue
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            raise EOFError from e
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, limit: int = MAX_FRAME_BYTES) -> bytes:
    (n,) = struct.unpack("<Q", _read_exact(fd, 8, deadline))
    if n > limit:
        raise DecodeError(f"sent a message of {n / 1e6:.0f} MB (limit {limit / 1e6:.0f} MB)")
    return _read_exact(fd, n, deadline)


# ---------------------------------------------------------------------- the safe codec (worker -> trusted)
class DecodeError(ValueError):
    """A worker's message that is not plain data."""


TORCH_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "complex64",
    "complex128",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)


def pack_message(tree, blobs: list[bytes]) -> bytes:
    """A JSON tree plus raw byte blobs in one frame payload: u32 json length, json, u32 count, (u64 length, bytes)*."""
    head = json.dumps(tree, allow_nan=True, separators=(",", ":")).encode()
    parts = [struct.pack("<I", len(head)), head, struct.pack("<I", len(blobs))]
    for b in blobs:
        parts += [struct.pack("<Q", len(b)), b]
    return b"".join(parts)


def unpack_message(payload: bytes) -> tuple[object, list[memoryview]]:
    view = memoryview(payload)
    try:
        (n,) = struct.unpack_from("<I", view, 0)
        tree = json.loads(bytes(view[4 : 4 + n]))
        pos = 4 + n
        (count,) = struct.unpack_from("<I", view, pos)
        pos += 4
        blobs = []
        for _ in range(count):
            (m,) = struct.unpack_from("<Q", view, pos)
            pos += 8
            if pos + m > len(view):
                raise DecodeError("a truncated message")
            blobs.append(view[pos : pos + m])
            pos += m
    except (struct.error, ValueError, RecursionError) as e:
        raise DecodeError(f"a malformed message ({e})") from None
    return tree, blobs


def _torch():
    import torch  # on first use: the top-level grader process (runner.py) never needs torch

    return torch


def _numpy():
    import numpy  # on first use, like torch

    return numpy


def _exact_int(v) -> int:
    if type(v) is not int:
        raise DecodeError("a malformed integer")
    return v


def _shape(v) -> tuple[int, ...]:
    if type(v) is not list or len(v) > 64 or not all(type(d) is int and d >= 0 for d in v):
        raise DecodeError("a malformed shape")
    return tuple(v)


def _decode_tensor(node, blobs):
    torch = _torch()
    _, dtype_name, shape, idx = node
    if dtype_name not in TORCH_DTYPES:
        raise DecodeError(f"a tensor of dtype {dtype_name!r}")
    dtype = getattr(torch, dtype_name)
    shape = _shape(shape)
    blob = blobs[_exact_int(idx)]
    numel = 1
    for d in shape:
        numel *= d
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(blob) != numel * itemsize:
        raise DecodeError("a tensor whose bytes do not match its shape")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    raw = bytearray(blob)
    if dtype == torch.bool:
        return torch.frombuffer(raw, dtype=torch.uint8).ne(0).reshape(shape)
    return torch.frombuffer(raw, dtype=dtype).reshape(shape)


def _numpy_dtype(name):
    np = _numpy()
    if type(name) is not str:
        raise DecodeError("a malformed numpy dtype")
    try:
        dt = np.dtype(name)
    except TypeError:
        raise DecodeError(f"a numpy dtype {name!r}") from None
    if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None or dt.hasobject:
        raise DecodeError(f"a numpy array of dtype {dt}")
    return dt


def _decode_ndarray(node, blobs):
    np = _numpy()
    _, dtype_name, shape, idx = node
    dt, shape = _numpy_dtype(dtype_name), _shape(shape)
    blob = blobs[_exact_int(idx)]
    numel = 1
    for d in shape:
        numel *= d
    if len(blob) != numel * dt.itemsize:
        raise DecodeError("an array whose bytes do not match its shape")
    arr = np.frombuffer(bytes(blob), dtype=dt).reshape(shape).copy()
    if dt.kind == "b":
        arr = arr.view(np.uint8).astype(bool)
    return arr


def decode(node, blobs, refs: list | None = None, depth: int = 0):
    """Rebuild a plain value from the worker's tree; `refs` resolves ["r", i] to the caller's i-th mutable argument."""
    if depth > MAX_DEPTH:
        raise DecodeError("a value nested too deeply")
    if type(node) is not list or not node or type(node[0]) is not str:
        raise DecodeError("a malformed value")
    tag, d = node[0], depth + 1
    try:
        if tag == "n":
            return None
        if tag == "b":
            if type(node[1]) is not bool:
                raise DecodeError("a malformed bool")
            return node[1]
        if tag == "i":
            return _exact_int(node[1])
        if tag == "f":
            if type(node[1]) not in (int, float):
                raise DecodeError("a malformed float")
            return float(node[1])
        if tag == "c":
            return complex(float(node[1]), float(node[2]))
        if tag == "s":
            if type(node[1]) is not str:
                raise DecodeError("a malformed str")
            return node[1]
        if tag == "y":
            return bytes(blobs[_exact_int(node[1])])
        if tag in ("l", "t", "S", "F"):
            if type(node[1]) is not list:
                raise DecodeError("a malformed sequence")
            items = [decode(x, blobs, refs, d) for x in node[1]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag in ("d", "C", "O"):
            if type(node[1]) is not list:
                raise DecodeError("a malformed dict")
            out = {"d": dict, "C": collections.Counter, "O": collections.OrderedDict}[tag]()
            for pair in node[1]:
                if type(pair) is not list or len(pair) != 2:
                    raise DecodeError("a malformed dict item")
                out[decode(pair[0], blobs, refs, d)] = decode(pair[1], blobs, refs, d)
            return out
        if tag == "T":
            return _decode_tensor(node, blobs)
        if tag == "A":
            return _decode_ndarray(node, blobs)
        if tag == "N":
            dt = _numpy_dtype(node[1])
            blob = blobs[_exact_int(node[2])]
            if len(blob) != dt.itemsize:
                raise DecodeError("a malformed numpy scalar")
            return _numpy().frombuffer(bytes(blob), dtype=dt)[0]
        if tag == "r":
            i = _exact_int(node[1])
            if refs is None or not 0 <= i < len(refs):
                raise DecodeError("a reference to an unknown argument")
            return refs[i]
    except (IndexError, TypeError, ValueError, OverflowError, RecursionError) as e:
        if isinstance(e, DecodeError):
            raise
        raise DecodeError(f"a malformed value ({type(e).__name__}: {e})") from None
    raise DecodeError(f"a value tagged {tag!r}")


def exception_from(name, message) -> Exception:
    """The worker's exception as the matching builtin exception type (RuntimeError for any other type)."""
    name, message = str(name)[:100], str(message)[:4000]
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            return cls(message)
        except Exception:  # noqa: BLE001, S110 - e.g. UnicodeDecodeError needs five arguments
            pass
    return RuntimeError(f"{name}: {message}" if message else name)


# ---------------------------------------------------------------------- arguments (trusted -> worker)
def mutable_handles(args, kwargs) -> list:
    """Mutable objects reachable from the arguments through plain containers, in a fixed order. The worker walks its
    unpickled copy the same way, so the i-th handle names the same object on both sides."""
    torch, np = _torch(), _numpy()
    out, seen = [], set()

    def visit(o, depth):
        if depth > 20 or id(o) in seen:
            return
        if isinstance(o, (list, dict, set, torch.Tensor, np.ndarray)):
            seen.add(id(o))
            out.append(o)
        if isinstance(o, (list, dict, set)) and len(o) >= BIG_CONTAINER:
            return  # sent once per worker and never written back: not walked (a 128K-entry rank table per call)
        if isinstance(o, (list, tuple)):
            for x in o:
                visit(x, depth + 1)
        elif isinstance(o, dict):
            for x in o.values():
                visit(x, depth + 1)

    for a in args:
        visit(a, 0)
    for a in kwargs.values():
        visit(a, 0)
    return out


_BY_REFERENCE = ("torch", "numpy", "math", "operator", "builtins", "einops", "functools", "itertools", "collections")


def _is_callback(obj) -> bool:
    """A callable the worker must call back rather than receive: anything but classes, nn.Modules and functions of
    trusted libraries (which pickle by name)."""
    if isinstance(obj, type) or not callable(obj) or obj is _rebuild_generator:
        return False
    torch = _torch()
    if isinstance(obj, torch.nn.Module):
        return False
    if isinstance(obj, (types.BuiltinFunctionType, types.FunctionType)) and "<" not in obj.__qualname__:
        return str(getattr(obj, "__module__", "")).split(".")[0] not in _BY_REFERENCE
    if isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinMethodType)):
        return True
    return type(obj).__module__.split(".")[0] not in _BY_REFERENCE


def _rebuild_generator(state, device: str):
    g = _torch().Generator(device=device)
    g.set_state(state)
    return g


def _reduce_generator(g):
    """A torch.Generator goes by its state (not every torch version pickles generators)."""
    return _rebuild_generator, (g.get_state(), str(g.device))


class _ArgPickler(pickle.Pickler):
    def __init__(self, file, callbacks: list, big: dict[int, object]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.callbacks, self.big = callbacks, big
        self.dispatch_table = copyreg.dispatch_table.copy()
        self.dispatch_table[_torch().Generator] = _reduce_generator

    def persistent_id(self, obj):
        t = type(obj)
        if t in (int, float, str, bytes, bool, type(None), tuple):
            return None
        if id(obj) in self.big:
            return ("big", id(obj))
        if t in (dict, list, set):
            return None
        if _is_callback(obj):
            self.callbacks.append(obj)
            return ("cb", len(self.callbacks) - 1)
        return None


def pickle_args(value, callbacks: list, big: dict[int, object] | None = None) -> bytes:
    buf = io.BytesIO()
    try:
        _ArgPickler(buf, callbacks, big or {}).dump(value)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"the grader cannot send this argument to the worker process: {e}") from None
    return buf.getvalue()


# ---------------------------------------------------------------------- failing a test from here
def fail(message: str):
    """Fail the running test with a one-line reason (not an Exception: `pytest.raises(ValueError)` cannot catch it)."""
    import pytest  # here only: the worker imports this module too, and must not load pytest

    pytest.fail(message, pytrace=False)


# ---------------------------------------------------------------------- deadlines
class _Deadlines:
    test: float | None = None  # monotonic
    budget: float | None = None  # monotonic
    timeout_s: float = 30.0


deadlines = _Deadlines()


def set_test_deadline(timeout_s: float | None) -> None:
    deadlines.timeout_s = timeout_s or deadlines.timeout_s
    deadlines.test = time.monotonic() + timeout_s if timeout_s else None


def set_budget_deadline(wall_deadline: float | None) -> None:
    """The grader's total budget, as a time.time() instant."""
    deadlines.budget = time.monotonic() + (wall_deadline - time.time()) if wall_deadline else None


def _current_deadline() -> tuple[float | None, str]:
    options = [(d, why) for d, why in ((deadlines.test, "test"), (deadlines.budget, "budget")) if d is not None]
    if not options:
        return None, ""
    return min(options)


def _timeout_message(why: str) -> str:
    if why == "budget":
        return "stopped: the grader's total time budget ran out"
    return f"took longer than {deadlines.timeout_s:g} s and was stopped"


# ---------------------------------------------------------------------- workers
_spawn_queue: queue.Queue = queue.Queue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawn_loop():
    while True:
        args, kwargs, box, done = _spawn_queue.get()
        try:
            box.append(subprocess.Popen(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001
            box.append(e)
        done.set()


def _popen(*args, **kwargs) -> subprocess.Popen:
    """Start workers from one long-lived thread: a worker's PR_SET_PDEATHSIG fires when the *thread* that forked it
    ends, and ch08's rank threads are short-lived."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_spawn_loop, name="grader-spawner", daemon=True)
            _spawner.start()
    box, done = [], threading.Event()
    _spawn_queue.put((args, kwargs, box, done))
    done.wait()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


class Worker:
    """One worker process: loads one implementation (or, for trusted specs, any reference/mutant) and serves calls."""

    def __init__(self, key: tuple, load: dict, scratch: Path):
        self.key = key
        self.output_path = scratch / f"worker-{os.getpid()}-{id(self)}.out"
        self.output = open(self.output_path, "ab+")  # noqa: SIM115 - lives as long as the worker
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MINILLAMA_GRADE"))}
        env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.proc = _popen(
            [sys.executable, "-m", "minillama.grading.worker", str(os.getpid()), str(MEMORY_LIMIT_GB)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.output,
            close_fds=True,
            start_new_session=True,
            env=env,
            cwd=os.getcwd(),
        )
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)
        self.big_sent: dict[int, tuple[object, int]] = {}
        self.dead = False
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        try:
            self._expect("ready", deadline)
        except (EOFError, TimeoutError, DecodeError) as e:
            self.kill()
            raise RuntimeError(f"the grader could not start a worker process ({type(e).__name__})") from None
        write_frame(self.wfd, pickle.dumps(("load", load)), deadline)

    def _expect(self, tag: str, deadline: float):
        tree, blobs = unpack_message(read_frame(self.rfd, deadline))
        if type(tree) is not list or not tree or tree[0] != tag:
            raise DecodeError(f"expected {tag}")
        return tree, blobs

    def wait_loaded(self, deadline: float | None):
        """None when the implementation loaded, else the exception its import raised (as a builtin type)."""
        tree, _ = unpack_message(read_frame(self.rfd, deadline))
        if type(tree) is list and tree and tree[0] == "loaded":
            return None
        if type(tree) is list and len(tree) >= 3 and tree[0] == "loaderr":
            return exception_from(tree[1], tree[2])
        raise DecodeError("expected loaded")

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the worker and everything it started (its session, and any descendant that left it)."""
        self.dead = True
        if self.proc.poll() is None:  # once reaped, its pid may be reused: no kill_tree on it then
            kill_tree([self.proc.pid])  # finds the descendants (also those that setsid) before killing
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # group members may outlive the leader
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        self.kill()
        try:
            self.output.close()
            self.output_path.unlink()
        except OSError:
            pass

    def exit_code(self) -> int | None:
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    def take_output(self) -> tuple[int, bytes]:
        """(bytes printed since the last call, the first REPRINT_BYTES of them); empties the file."""
        try:
            size = os.fstat(self.output.fileno()).st_size
            self.output.seek(0)
            head = self.output.read(min(size, REPRINT_BYTES))
            os.ftruncate(self.output.fileno(), 0)
            return size, head
        except OSError:
            return 0, b""

    # ------------------------------------------------------------------ one call
    def call(self, ns, name: str, args: tuple, kwargs: dict, deadline: float | None):
        callbacks: list = []
        big = {}
        for a in list(args) + list(kwargs.values()):
            if type(a) in (dict, list, set) and len(a) >= BIG_CONTAINER:
                big[id(a)] = a
        for key, obj in big.items():
            sent = self.big_sent.get(key)
            if sent is None or sent[0] is not obj or sent[1] != len(obj):
                write_frame(self.wfd, pickle.dumps(("cache", key, pickle_args(obj, callbacks))), deadline)
                self.big_sent[key] = (obj, len(obj))
        handles = mutable_handles(args, kwargs)
        write_frame(self.wfd, pickle.dumps(("call", ns, name, pickle_args((args, kwargs), callbacks, big))), deadline)
        while True:
            tree, blobs = unpack_message(read_frame(self.rfd, deadline))
            if type(tree) is not list or not tree:
                raise DecodeError("a malformed message")
            tag = tree[0]
            if tag == "cb":
                self._run_callback(tree, blobs, callbacks, deadline)
                continue
            if tag in ("ret", "exc"):
                self._write_back(tree[-1], blobs, handles)
                if tag == "ret":
                    return decode(tree[1], blobs, handles)
                raise exception_from(tree[1], tree[2])
            raise DecodeError(f"an unknown message {tag!r}")

    def _run_callback(self, tree, blobs, callbacks, deadline):
        _, idx, cb_args, cb_kwargs = tree
        idx = _exact_int(idx)
        if not 0 <= idx < len(callbacks):
            raise DecodeError("a call to an unknown callback")
        a, kw = decode(cb_args, blobs), decode(cb_kwargs, blobs)
        if type(a) is not list or type(kw) is not dict or not all(type(k) is str for k in kw):
            raise DecodeError("malformed callback arguments")
        try:
            reply = ("cbret", callbacks[idx](*a, **kw))
            payload = pickle_args(reply, callbacks)
        except Exception as e:  # noqa: BLE001 - the callback's error goes back to the learner's code
            payload = pickle.dumps(("cberr", type(e).__name__, str(e)[:4000]))
        write_frame(self.wfd, pickle.dumps(("cbreply", payload)), deadline)

    def _write_back(self, states, blobs, handles):
        """Give the caller's arguments the final state the worker's copies have (in-place mutation)."""
        torch, np = _torch(), _numpy()
        if type(states) is not list:
            raise DecodeError("a malformed write-back")
        for item in states:
            if type(item) is not list or len(item) != 2:
                raise DecodeError("a malformed write-back")
            i = _exact_int(item[0])
            if not 0 <= i < len(handles):
                raise DecodeError("a write-back to an unknown argument")
            orig, new = handles[i], decode(item[1], blobs, handles)
            if isinstance(orig, list) and type(new) is list:
                orig[:] = new
            elif isinstance(orig, dict) and type(new) in _DICTS:  # noqa: SIM114
                orig.clear()
                orig.update(new)
            elif isinstance(orig, set) and type(new) is set:
                orig.clear()
                orig.update(new)
            elif isinstance(orig, torch.Tensor) and type(new) is torch.Tensor:
                with torch.no_grad():
                    if orig.shape == new.shape:
                        orig.copy_(new.to(orig.dtype))
                    else:
                        orig.data = new.to(orig.dtype)
            elif isinstance(orig, np.ndarray) and isinstance(new, np.ndarray) and orig.shape == new.shape:
                orig[...] = new
            else:
                raise DecodeError("a write-back of the wrong type")


_DICTS = (dict, collections.Counter, collections.OrderedDict)


class WorkerPool:
    """Idle workers by key; a calling thread checks one out for the length of a call (so threads never share)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: dict[tuple, list[Worker]] = collections.defaultdict(list)
        self.all: list[Worker] = []
        self.broken: dict[tuple, Exception] = {}
        self.scratch = Path(tempfile.mkdtemp(prefix="minillama-workers-"))  # 0700

    def checkout(self, key: tuple, load: dict, deadline: float | None, why: str) -> Worker:
        with self.lock:
            if key in self.broken:
                e = self.broken[key]
                raise type(e)(*e.args)  # a fresh exception per test (no traceback piling up)
            while self.idle[key]:
                w = self.idle[key].pop()
                if w.alive():
                    return w
                w.close()
            self._drop_other_chapters(key)
        w = Worker(key, load, self.scratch)
        with self.lock:
            self.all.append(w)
        try:
            err = w.wait_loaded(deadline)
        except TimeoutError:
            w.close()
            msg = f"your exercise file took longer than {deadlines.timeout_s:g} s to import and was stopped"
            if why == "budget":
                msg = _timeout_message(why)
            else:
                self.broken[key] = _ImportFailure(msg)
            fail(msg)
        except (EOFError, DecodeError):
            code = w.exit_code()
            w.close()
            self.broken[key] = _ImportFailure(f"your exercise file exited while being imported (exit code {code})")
            raise self.broken[key] from None
        if err is not None:
            w.close()
            self.broken[key] = err
            raise err
        return w

    def _drop_other_chapters(self, key: tuple) -> None:
        """Keep idle learner workers of this chapter only (a full grading run visits twelve chapters)."""
        if key[0] != "learner":
            return
        for other in list(self.idle):
            if other[0] == "learner" and other[2] != key[2]:
                for w in self.idle.pop(other):
                    w.close()

    def checkin(self, w: Worker) -> None:
        with self.lock:
            if w.alive():
                self.idle[w.key].append(w)
            else:
                w.close()

    def close(self) -> None:
        with self.lock:
            workers, self.all, self.idle = self.all, [], collections.defaultdict(list)
        for w in workers:
            w.close()
        try:
            os.rmdir(self.scratch)
        except OSError:
            pass


class _ImportFailure(Exception):
    """Raised for every call when the exercise file could not be imported (shown as a one-line reason)."""


pool = WorkerPool()


def call_in_worker(key: tuple, load: dict, ns, name: str, args: tuple, kwargs: dict):
    deadline, why = _current_deadline()
    try:
        w = pool.checkout(key, load, deadline, why)
    except _ImportFailure as e:
        fail(str(e))
    ok = False
    try:
        result = w.call(ns, name, args, kwargs, deadline)
        ok = True
        return result
    except TimeoutError:
        w.kill()
        fail(_timeout_message(why))
    except EOFError:
        code = w.exit_code()
        w.kill()
        fail(f"crashed or exited the worker process (exit code {code})")
    except DecodeError as e:
        w.kill()
        fail(f"the worker process {e}")
    except Exception:
        ok = w.alive()  # an exception raised by the exercise code: the worker is fine
        raise
    finally:
        printed, head = w.take_output()
        if head:
            text = head.decode("utf-8", "replace")
            sys.stdout.write(text if printed <= len(head) else text + f"\n... ({printed:,} bytes printed in all)\n")
        if ok:
            pool.checkin(w)
        else:
            w.close()
        if printed > MAX_OUTPUT_BYTES:
            fail(f"the code printed {printed / 1e6:.1f} MB (limit {MAX_OUTPUT_BYTES / 1e6:.0f} MB)")
    raise AssertionError("unreachable")


class ImplProxy:
    """`impl` for the exercise tests: attribute access gives a function that runs in a worker process."""

    def __init__(self, chapter: str, spec: str, key: tuple, load: dict):
        self._chapter, self._spec, self._key, self._load = chapter, spec, key, load

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def remote(*args, **kwargs):
            return call_in_worker(self._key, self._load, (self._chapter, self._spec), name, args, kwargs)

        remote.__name__ = name
        return remote

    def __repr__(self) -> str:
        return f"<{self._spec} implementation of {self._chapter}, run in a worker process>"


def kill_strays(known: list[int]) -> None:
    """Kill children of this process that are not workers (orphans re-parented here), with their descendants."""
    me = os.getpid()
    strays = [p for p in _parent_map().get(me, []) if p not in known]
    if strays:
        kill_tree(strays)
