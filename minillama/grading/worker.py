"""`python -m minillama.grading.worker PPID MEMORY_GB`: the untrusted side of the grader's RPC (see `rpc`).

The worker runs the exercise functions and nothing else: no pytest, no results channel, no path to the learner's
file (the trusted side sends its source). It dies with its parent (PR_SET_PDEATHSIG), has an address-space limit, a
file-size limit and no core dumps. For a learner's file (or the stubs) the chapter's answer key is blocked first:
`minillama.grading.reference`, `minillama.grading.mutants` and the package modules (or functions) the exercise
re-implements raise "exercises must not call the reference implementation (...)". Objects the tests pass by value (a
`Transformer`, `ModelArgs`) still unpickle, because unpickling looks classes up in the real modules.

Protocol: stdin/stdout are the channel (printing goes to stderr, a file the trusted side reads after each call).
Messages from the trusted side are pickles; replies are `rpc.pack_message` frames (JSON tree + raw blobs).
"""

from __future__ import annotations

import collections
import ctypes
import importlib
import io
import os
import pickle
import signal
import sys
import threading
import traceback
import types

import numpy as np
import torch

import minillama
from minillama.grading.impl import load_impl
from minillama.grading.rpc import (
    PR_SET_PDEATHSIG,
    exception_from,
    mutable_handles,
    pack_message,
    prctl,
    read_frame,
    write_frame,
)


def _limit_self(ppid: int, memory_gb: float) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != ppid:  # the parent died before the line above
        os._exit(1)
    try:
        import resource  # POSIX only: absent on Windows, where the limits are skipped

        if memory_gb > 0:
            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**20, 64 * 2**20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
    except (ImportError, ValueError, OSError):
        pass
    _drop_capabilities()


def _drop_capabilities() -> None:
    """As root (a container's autograder), give up every capability: without CAP_SYS_PTRACE a uid-0 worker cannot
    open the trusted processes' /proc/PID/{fd,mem} either (they are non-dumpable). No new privileges on exec."""

    prctl(38, 1)  # PR_SET_NO_NEW_PRIVS
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in range(64):
            libc.prctl(24, ctypes.c_ulong(cap), 0, 0, 0)  # PR_CAPBSET_DROP

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [
                ("effective", ctypes.c_uint32),
                ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32),
            ]

        header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, all zero
        if libc.capset(ctypes.byref(header), data) != 0:
            os._exit(70)  # refuse to run learner code as a privileged root
    except (OSError, AttributeError):
        os._exit(70)


# ---------------------------------------------------------------------- blocking the answer key
_REAL_MODULES: dict[str, object] = {}
_ORIGINALS: dict[tuple[str, str], object] = {}


def _refusal(name: str) -> ImportError:
    return ImportError(f"exercises must not call the reference implementation ({name})")


def _poison(name: str):
    def refused(*args, **kwargs):
        raise _refusal(name)

    refused.__name__ = refused.__qualname__ = name.rsplit(".", 1)[-1]
    return refused


def _blocked_module(name: str):
    class Blocked(types.ModuleType):
        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            raise _refusal(name)

    return Blocked(name, f"blocked: {name} is the answer key")


class _Blocker:
    """A meta-path finder that refuses the answer key's modules not imported yet."""

    def __init__(self, prefixes):
        self.prefixes = tuple(prefixes)

    def find_spec(self, fullname, path=None, target=None):
        for p in self.prefixes:
            if fullname == p or fullname.startswith(p + "."):
                raise _refusal(p)


def block_answer_key(answer_key) -> None:
    modules = ["minillama.grading.reference", "minillama.grading.mutants"]
    for entry in answer_key:
        if ":" in entry:
            mod_name, attr = entry.split(":", 1)
            try:
                mod = importlib.import_module(mod_name)
                orig = getattr(mod, attr)
            except (ImportError, AttributeError):
                continue
            _ORIGINALS[(mod_name, attr)] = orig
            poison = _poison(f"{mod_name}.{attr}")
            setattr(mod, attr, poison)
            parents = [mod_name.rsplit(".", i)[0] for i in range(1, mod_name.count(".") + 1)]
            for package in [sys.modules[p] for p in parents if p in sys.modules]:  # re-exports: minillama.model
                for k, v in list(vars(package).items()):
                    if v is orig:
                        setattr(package, k, poison)
        else:
            modules.append(entry)
    for entry in modules:
        for name in [n for n in list(sys.modules) if n == entry or n.startswith(entry + ".")]:
            _REAL_MODULES[name] = sys.modules[name]
            sys.modules[name] = _blocked_module(entry)
        parent, _, child = entry.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            try:
                setattr(sys.modules[parent], child, _blocked_module(entry))
            except (AttributeError, TypeError):
                pass
        for k, v in list(vars(minillama).items()):
            if str(getattr(v, "__module__", "")) == entry or str(getattr(v, "__module__", "")).startswith(entry + "."):
                setattr(minillama, k, _poison(f"{entry}.{k}"))
    sys.meta_path.insert(0, _Blocker(modules))


# ---------------------------------------------------------------------- encoding results (worker -> trusted)
def encode(obj, refs: dict[int, int], blobs: list[bytes], depth: int = 0, top: bool = False):
    """A JSON tree for `obj` (tensors and arrays as blobs); objects in `refs` by reference; TypeError otherwise."""

    if depth > 150:
        raise TypeError("a value nested too deeply")
    if not top and id(obj) in refs:
        return ["r", refs[id(obj)]]
    d = depth + 1
    if obj is None:
        return ["n"]
    if isinstance(obj, bool):
        return ["b", bool(obj)]
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"a numpy scalar of dtype {obj.dtype}")
        blobs.append(obj.tobytes())
        return ["N", obj.dtype.str, len(blobs) - 1]
    if isinstance(obj, int):
        return ["i", int(obj)]
    if isinstance(obj, float):
        return ["f", float(obj)]
    if isinstance(obj, complex):
        return ["c", obj.real, obj.imag]
    if isinstance(obj, str):
        return ["s", str(obj)]
    if isinstance(obj, (bytes, bytearray)):
        blobs.append(bytes(obj))
        return ["y", len(blobs) - 1]
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            raise TypeError(f"a tensor with layout {t.layout} on {t.device}")
        t = torch.Tensor._make_subclass(torch.Tensor, t) if type(t) is not torch.Tensor else t
        t = t.cpu().resolve_conj().resolve_neg().contiguous()
        name = str(t.dtype).replace("torch.", "")
        blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return ["T", name, list(t.shape), len(blobs) - 1]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc" or obj.dtype.fields is not None:
            raise TypeError(f"a numpy array of dtype {obj.dtype}")
        arr = np.ascontiguousarray(obj)
        blobs.append(arr.view(np.uint8).tobytes() if arr.dtype.kind == "b" else arr.tobytes())
        return ["A", arr.dtype.str, list(arr.shape), len(blobs) - 1]
    if isinstance(obj, list):
        return ["l", [encode(x, refs, blobs, d) for x in obj]]
    if isinstance(obj, tuple):
        return ["t", [encode(x, refs, blobs, d) for x in obj]]
    if isinstance(obj, frozenset):
        return ["F", [encode(x, refs, blobs, d) for x in obj]]
    if isinstance(obj, set):
        return ["S", [encode(x, refs, blobs, d) for x in obj]]
    if isinstance(obj, dict):
        tag = "C" if isinstance(obj, collections.Counter) else "O" if isinstance(obj, collections.OrderedDict) else "d"
        return [tag, [[encode(k, refs, blobs, d), encode(v, refs, blobs, d)] for k, v in obj.items()]]
    t = type(obj)
    raise TypeError(
        f"returned an object of type {t.__module__}.{t.__qualname__}; exercises must return plain "
        "values (numbers, strings, lists, tuples, dicts, sets, tensors, numpy arrays)"
    )


# ---------------------------------------------------------------------- the channel
class Channel:
    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd
        self.lock = threading.RLock()

    def send(self, tree, blobs=()) -> None:
        with self.lock:
            write_frame(self.wfd, pack_message(tree, list(blobs)))

    def recv(self):
        return pickle.loads(read_frame(self.rfd))


class Callback:
    """Stands for a callable of the test's (a function, a scripted model, ch08's all_reduce): calls run there."""

    def __init__(self, worker: Worker, idx: int):
        self._worker, self._idx = worker, idx

    def __call__(self, *args, **kwargs):
        w = self._worker
        with w.channel.lock:
            blobs: list[bytes] = []
            tree = ["cb", self._idx, encode(list(args), {}, blobs), encode(dict(kwargs), {}, blobs)]
            w.channel.send(tree, blobs)
            msg = w.channel.recv()
        if not (isinstance(msg, tuple) and msg and msg[0] == "cbreply"):
            raise RuntimeError("the grader sent an unexpected reply")
        reply = w.unpickle(msg[1])
        if reply[0] == "cbret":
            return reply[1]
        raise exception_from(reply[1], reply[2])


class Worker:
    def __init__(self, channel: Channel):
        self.channel = channel
        self.learner = None  # the learner's module, for learner workers
        self.namespaces: dict = {}
        self.cache: dict[int, object] = {}

    def unpickle(self, data: bytes):
        worker = self

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) in _ORIGINALS:
                    return _ORIGINALS[(module, name)]
                if module in _REAL_MODULES:  # a by-value object of a blocked module (the test's, not the learner's)
                    obj = _REAL_MODULES[module]
                    for part in name.split("."):
                        obj = getattr(obj, part)
                    return obj
                return super().find_class(module, name)

            def persistent_load(self, pid):
                kind, idx = pid
                if kind == "cb":
                    return Callback(worker, idx)
                if kind == "big":
                    return worker.cache[idx]
                raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

        return Unpickler(io.BytesIO(data)).load()

    # ------------------------------------------------------------------ loading
    def load(self, spec: dict) -> None:
        if spec["kind"] == "trusted":
            self.channel.send(["loaded"])
            return
        block_answer_key(spec.get("answer_key", ()))
        module = types.ModuleType(spec["module"])
        module.__file__ = spec["filename"]
        sys.modules[spec["module"]] = module
        try:
            code = compile(spec["source"], spec["filename"], "exec")
            exec(code, module.__dict__)  # noqa: S102 - running the learner's file is this process's job
        except SystemExit as e:
            self._exit(e)
        except BaseException as e:  # noqa: BLE001 - reported to the trusted side, which fails each test with it
            traceback.print_exc()
            self.channel.send(["loaderr", type(e).__name__, str(e)[:4000]])
            return
        self.learner = module
        self.channel.send(["loaded"])

    def namespace(self, ns):
        if self.learner is not None:
            return self.learner
        key = tuple(ns)
        if key not in self.namespaces:
            self.namespaces[key] = load_impl(*key)
        return self.namespaces[key]

    @staticmethod
    def _exit(e: SystemExit):
        sys.stdout.flush()
        sys.stderr.flush()
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        os._exit(code & 0xFF)

    # ------------------------------------------------------------------ one call
    def call(self, ns, name: str, payload: bytes) -> None:
        args, kwargs = self.unpickle(payload)
        handles = mutable_handles(args, kwargs)
        big = {id(v) for v in self.cache.values()}
        snaps = [None if id(h) in big else _snapshot(h) for h in handles]
        try:
            result = getattr(self.namespace(ns), name)(*args, **kwargs)
            outcome = None
        except SystemExit as e:
            self._exit(e)
        except BaseException as e:  # noqa: BLE001
            traceback.print_exc()
            outcome = e
        refs = {id(h): i for i, h in enumerate(handles)}
        blobs: list[bytes] = []
        writes = []
        for i, h in enumerate(handles):
            if snaps[i] is not None and _changed(h, snaps[i]):
                try:
                    writes.append([i, encode(h, refs, blobs, top=True)])
                except TypeError as e:
                    outcome = outcome or TypeError(f"an argument was left holding {e}")
        if outcome is None:
            try:
                self.channel.send(["ret", encode(result, refs, blobs), writes], blobs)
                return
            except TypeError as e:
                outcome = TypeError(f"your function {e}")
                blobs, writes = [], []
        self.channel.send(["exc", type(outcome).__name__, str(outcome)[:4000], writes], blobs)

    def serve(self) -> None:
        while True:
            try:
                msg = self.channel.recv()
            except EOFError:
                os._exit(0)
            kind = msg[0]
            if kind == "load":
                self.load(msg[1])
            elif kind == "cache":
                self.cache[msg[1]] = self.unpickle(msg[2])
            elif kind == "call":
                self.call(msg[1], msg[2], msg[3])
            sys.stdout.flush()
            sys.stderr.flush()


def _snapshot(h):
    if isinstance(h, list):
        return list(h)
    if isinstance(h, dict):
        return list(h.keys()), list(h.values())
    if isinstance(h, set):
        return list(h)
    if isinstance(h, torch.Tensor):
        return h.detach().clone()
    if isinstance(h, np.ndarray):
        return h.copy()
    return None


def _changed(h, snap) -> bool:
    if isinstance(h, list):
        return len(h) != len(snap) or any(a is not b for a, b in zip(h, snap))
    if isinstance(h, dict):
        keys, values = snap
        return (
            len(h) != len(keys)
            or any(a is not b for a, b in zip(h.keys(), keys))
            or any(a is not b for a, b in zip(h.values(), values))
        )
    if isinstance(h, set):
        return len(h) != len(snap) or {id(x) for x in h} != {id(x) for x in snap}
    if isinstance(h, torch.Tensor):
        return h.shape != snap.shape or h.dtype != snap.dtype or not torch.equal(h.detach(), snap)
    if isinstance(h, np.ndarray):
        return h.shape != snap.shape or h.dtype != snap.dtype or not np.array_equal(h, snap)
    return False


def main() -> None:
    ppid, memory_gb = int(sys.argv[1]), float(sys.argv[2])
    _limit_self(ppid, memory_gb)
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # print() goes to the output file the trusted side reads
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)

    torch.set_num_threads(1)
    channel = Channel(rfd, wfd)
    channel.send(["ready"])
    Worker(channel).serve()


if __name__ == "__main__":
    main()
