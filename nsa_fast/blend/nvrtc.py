"""Compile the project's CUDA kernels with NVRTC, without a GPU.

Used by the compile checks (every kernel must build for sm_61, the GTX 1080, and sm_90) and by
``python -m nsa_fast.doctor``. It loads the CUDA 12 NVRTC of the ``nvidia-cuda-nvrtc-cu12``
wheel directly: CUDA 13's NVRTC can no longer target Pascal, and CuPy may pick whichever NVRTC
another package brought along.
"""
from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache

from ..errors import NsaError


class KernelCompileError(NsaError, RuntimeError):
    """A kernel did not compile; the message holds NVRTC's log."""


def _candidates() -> list[str]:
    found = []
    env = os.environ.get("NSA_FAST_NVRTC")
    if env:
        found.append(env)
    try:
        import nvidia.cuda_nvrtc as pkg  # the CUDA 12 NVRTC wheel

        for base in pkg.__path__:
            found += sorted(glob.glob(os.path.join(base, "lib", "libnvrtc.so.12*")))
    except ImportError:
        pass
    found += ["libnvrtc.so.12"]  # a system CUDA 12 toolkit
    return found


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The CUDA 12 NVRTC library, or KernelCompileError saying how to install it."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as err:
            errors.append(f"{path}: {err}")
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    raise KernelCompileError(
        "CUDA 12 NVRTC was not found (tried " + "; ".join(errors) + "). Install it with "
        "pip install 'nvidia-cuda-nvrtc-cu12<13' (or pip install -e '.[gpu]'), or point "
        "NSA_FAST_NVRTC at libnvrtc.so.12.")


def version() -> tuple[int, int]:
    lib = library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_cubin(source: str, name: str, arch: str, options: tuple[str, ...] = ()) -> bytes:
    """Compile CUDA C++ source for a real architecture (e.g. ``sm_61``); returns the cubin."""
    lib = library()
    prog = ctypes.c_void_p()

    def check(code: int, what: str) -> None:
        if code != 0:
            raise KernelCompileError(f"{name} ({arch}): {what} failed: {lib.nvrtcGetErrorString(code).decode()}")

    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
          "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", *options]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        code = lib.nvrtcCompileProgram(prog, len(opts), arr)
        if code != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise KernelCompileError(f"{name} does not compile for {arch}:\n{log.value.decode(errors='replace')}")
        size = ctypes.c_size_t()
        check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
        cubin = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
