"""A stand-in for the part of CuPy that ``nsa_fast.blend.cuda`` uses, for machines without a GPU.

A test puts this module into ``sys.modules["cupy"]``. It receives exactly what cuda.py sends,
checks it against CUDA's and CuPy's rules, fails loudly where a GPU would fail or silently compute
garbage, and then runs the received kernel source on CPU threads (tests/emulation/harness.py),
synchronously. The results land in the tensors' own memory, which the DLPack views share (each
launch runs on guarded copies of it, copied back after: a kernel that writes beyond its arrays is
an error instead of a corrupted test process). The tensors are CPU tensors here.

Rules checked at every launch: grid and block extents (at most 1024 threads a block, z at most 64;
grid x below 2^31, y and z at most 65535; no zero extent); dynamic shared memory at most 48 KiB;
as many arguments as the kernel has parameters; scalars are numpy scalars of exactly the
parameter's C type (CuPy passes a Python int as 8 bytes); pointers are arrays from
``from_dlpack`` of the pointee's dtype and C-contiguous; the launch runs inside a
``cuda.Device`` context and inside a ``cuda.Stream.from_external`` context whose stream is
``torch.cuda.current_stream(device)``. As in CuPy, a module is built for the device current at
``compile()``, and a kernel launched on another device is built there on the fly (CuPy keeps one
loaded module per device): that costs a compile and a context on the other GPU, so it is logged in
``lazy_compiles`` for tests to refuse. ``get_function`` loads the module on the current device,
so it must run inside a ``cuda.Device`` context too, and so must ``compile()``.

Every launch is logged in ``launches`` (also when ``execute`` is False, which checks and logs
without running, for launches too large to run on a CPU, and zeroes the arrays the kernel may
write, so that the code after it reads defined values).
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import numpy as np

from . import harness

LaunchRuleError = harness.LaunchRuleError


@dataclass(frozen=True)
class LaunchRecord:
    kernel: str
    grid: tuple
    block: tuple
    shared_mem: int
    device: int
    stream: int
    args: tuple  # numpy views of the pointer arguments, numpy scalars


launches: list[LaunchRecord] = []
modules: list["RawModule"] = []   # every RawModule built, in order
lazy_compiles: list[tuple[str, int]] = []  # (kernel, device) built at launch, not at compile()
execute = True
_programs: dict[str, harness.Program] = {}
_state = threading.local()  # CuPy's current device and stream are per host thread


def reset() -> None:
    """Forget launches and modules (compiled programs stay cached) and run launches again."""
    global execute
    launches.clear()
    modules.clear()
    lazy_compiles.clear()
    execute = True
    _state.devices, _state.streams = [], []


def _devices() -> list[int]:
    if not hasattr(_state, "devices"):
        _state.devices, _state.streams = [], []
    return _state.devices


def _streams() -> list["Stream"]:
    _devices()
    return _state.streams


class ndarray:
    """What ``from_dlpack`` returns: a view of the producer's memory that keeps the producer
    alive. Only these are taken as pointer arguments, as CuPy takes only device arrays."""

    def __init__(self, view: np.ndarray, owner):
        self._view, self._owner = view, owner

    dtype = property(lambda self: self._view.dtype)
    shape = property(lambda self: self._view.shape)
    size = property(lambda self: self._view.size)
    flags = property(lambda self: self._view.flags)


def from_dlpack(obj) -> ndarray:
    # A tensor of the stand-in device (tests/fake_device.py) lends its host data, as a CUDA
    # tensor lends its device memory: the kernel's writes land in the tensor.
    obj = getattr(obj, "elem", obj)
    # CuPy hands its current stream to the producer's __dlpack__, and torch then orders the
    # exchange against it: outside a torch-stream context that is CuPy's legacy default stream,
    # which torch maps to its default stream, so synthesis on a side stream would make training
    # wait for it. A view is taken only where the kernels will run.
    if not _streams():
        raise LaunchRuleError("from_dlpack outside a Stream.from_external context: torch would order the "
                              "exchange against its default stream, not the stream the kernels run on")
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack takes an object with __dlpack__, got {type(obj).__name__}")
    return ndarray(np.from_dlpack(obj), obj)


class _Device:
    """``cupy.cuda.Device(index)`` as a context: makes ``index`` the current device."""

    def __init__(self, device: int = 0):
        if not isinstance(device, (int, np.integer)) or device < 0:
            raise ValueError(f"a device index is a non-negative int, got {device!r}")
        self.id = int(device)

    def __enter__(self):
        _devices().append(self.id)
        return self

    def __exit__(self, *exc):
        _devices().pop()


class Stream:
    """``cupy.cuda.Stream``: only ``from_external`` (the CUDA stream protocol) is offered."""

    def __init__(self, *args, **kwargs):
        raise LaunchRuleError("the stand-in offers only Stream.from_external: kernels must run on "
                              "torch's current stream, not on a stream of CuPy's own")

    @classmethod
    def from_external(cls, stream_object, device_id: int = -1) -> "Stream":
        if not hasattr(stream_object, "__cuda_stream__"):
            raise TypeError(f"Stream.from_external takes an object with __cuda_stream__, got "
                            f"{type(stream_object).__name__}")
        version_ptr = stream_object.__cuda_stream__()
        if not (isinstance(version_ptr, tuple) and len(version_ptr) == 2 and version_ptr[0] == 0
                and isinstance(version_ptr[1], int)):
            raise LaunchRuleError(f"__cuda_stream__() must return (0, stream pointer as int), got {version_ptr!r}")
        self = object.__new__(cls)
        self.ptr = version_ptr[1]
        self.device_id = device_id if device_id >= 0 else (_devices()[-1] if _devices() else 0)
        return self

    def __enter__(self):
        _streams().append(self)
        return self

    def __exit__(self, *exc):
        _streams().pop()


class cuda:
    """The ``cupy.cuda`` namespace, as far as cuda.py reaches into it."""
    Device = _Device
    Stream = Stream


class RawModule:
    """``cupy.RawModule(code=...)``: the source is parsed for its ``extern "C" __global__``
    kernels and compiled for the CPU (cached by the source's hash)."""

    def __init__(self, code: str | None = None, path=None, options=(), **kwargs):
        if code is None or path is not None:
            raise LaunchRuleError("the stand-in builds modules from code=..., the kernel source text")
        self.code, self.options = code, tuple(options)
        key = hashlib.sha256(code.encode()).hexdigest()
        if key not in _programs:
            _programs[key] = harness.Program(code, "kernel.cu")
        self.program = _programs[key]
        self.devices: set[int] = set()  # the devices this module is built for
        modules.append(self)

    def compile(self, log_stream=None) -> None:
        if not _devices():
            raise LaunchRuleError("RawModule.compile() outside a cupy.cuda.Device context: CuPy builds and loads "
                                  "the module on whichever device happens to be current (a context on that GPU)")
        self.program.library()
        self.devices.add(_devices()[-1])

    def get_function(self, name: str) -> "RawKernel":
        if not _devices():
            raise LaunchRuleError(f"get_function({name!r}) outside a cupy.cuda.Device context: CuPy loads the "
                                  "module on whichever device happens to be current (a context on that GPU)")
        if _devices()[-1] not in self.devices:
            self.devices.add(_devices()[-1])  # CuPy builds and loads the module for this device now
            lazy_compiles.append((name, _devices()[-1]))
        if name not in self.program.kernels:
            raise LaunchRuleError(f"CUDA_ERROR_NOT_FOUND: the module has no kernel {name!r}; it has "
                                  f"{sorted(self.program.kernels)}")
        return RawKernel(self.program, name, self)


class RawKernel:
    """A kernel of a RawModule, launched as ``f(grid, block, args, shared_mem=...)``."""

    def __init__(self, program: harness.Program, name: str, module: "RawModule | None" = None):
        self.program, self.name, self.module = program, name, module

    def __call__(self, grid, block, args, *, shared_mem: int = 0, **kwargs):
        if kwargs:
            raise LaunchRuleError(f"{self.name}: launch options the stand-in does not model: {sorted(kwargs)}")
        kernel = self.program.kernels[self.name]
        if not _devices():
            raise LaunchRuleError(f"{self.name} launched outside a cupy.cuda.Device context: it would run "
                                  "on whichever device happens to be current")
        if not _streams():
            raise LaunchRuleError(f"{self.name} launched outside a Stream.from_external context: it would run "
                                  "on CuPy's default stream, unordered with torch's work")
        device, stream = _devices()[-1], _streams()[-1]
        if self.module is not None and device not in self.module.devices:
            self.module.devices.add(device)  # CuPy builds and loads the module for this device now
            lazy_compiles.append((self.name, device))
        import torch

        want = torch.cuda.current_stream(torch.device("cuda", device)).cuda_stream
        if stream.ptr != want or stream.device_id != device:
            raise LaunchRuleError(f"{self.name} launched on stream {stream.ptr:#x} of device {stream.device_id}; "
                                  f"torch's current stream of device {device} is {want:#x}")
        if isinstance(args, tuple):
            for p, a in zip(kernel.params, args):
                if p.pointer and not isinstance(a, ndarray):
                    raise LaunchRuleError(f"{self.name}: argument {p.name} ({p.ctype}) must be an array from "
                                          f"cupy.from_dlpack, got {type(a).__name__}")
                if not p.pointer and isinstance(a, ndarray):
                    raise LaunchRuleError(f"{self.name}: argument {p.name} ({p.ctype}) is a scalar, got an array")
            args = tuple(a._view if isinstance(a, ndarray) else a for a in args)
        launch = harness.Launch(self.name, grid, block, args, shared_mem)
        g, b = self.program.check(launch)
        launches.append(LaunchRecord(self.name, g, b, int(shared_mem), device, stream.ptr, args))
        if execute:
            self.program.run([launch])
        else:  # not run: the arrays it may write are zeroed, so that what follows reads defined values
            for p, a in zip(kernel.params, args):
                if p.pointer and "const" not in p.ctype.split("*")[0]:
                    a[...] = 0
