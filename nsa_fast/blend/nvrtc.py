"""Compile the project's CUDA kernels with NVRTC, without a GPU.

Used by the compile checks (every kernel must build for sm_61, the GTX 1080, and sm_90) and by
``python -m nsa_fast.doctor``. It loads NVRTC directly rather than through CuPy, which may pick
whichever NVRTC another package brought along. CUDA 12's NVRTC comes first: it is the last one
that targets Pascal (12.9 compiles for sm_50..sm_121). Where only CUDA 13 is installed (the
``cuda13`` image, or torch's CUDA 13 wheels alone) NVRTC 13 is used; it targets sm_75 and newer,
and compiling for an older architecture raises :class:`UnsupportedArchError`.

``NSA_FAST_NVRTC``, when set, is the only library tried (a path or a soname).
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache

from ..errors import NsaError

# Preference order: the NVRTC that still targets Pascal first.
MAJORS = (12, 13)
INSTALL_12 = "pip install 'nvidia-cuda-nvrtc-cu12<13' (or pip install -e '.[gpu]')"


class KernelCompileError(NsaError, RuntimeError):
    """A kernel did not compile, or no NVRTC could be loaded; the message says which and why."""


class UnsupportedArchError(KernelCompileError):
    """The loaded NVRTC cannot generate code for the requested architecture."""


@dataclass(frozen=True)
class Nvrtc:
    """A loaded NVRTC: the library, where it came from, its version and the real architectures it
    compiles for (``None`` when the library cannot list them, before CUDA 11.2)."""

    lib: ctypes.CDLL
    path: str
    version: tuple[int, int]
    archs: tuple[int, ...] | None

    def arch_names(self) -> list[str]:
        return [f"sm_{a}" for a in self.archs or ()]

    def supports(self, arch: str) -> bool:
        return self.archs is None or arch_number(arch) in self.archs


def arch_number(arch: str) -> int:
    """``"sm_61"`` -> 61, ``"sm_90a"`` -> 90, ``"compute_75"`` -> 75."""
    m = re.fullmatch(r"(?:sm|compute)_(\d+)[a-z]?", arch)
    if not m:
        raise KernelCompileError(f"expected an architecture such as sm_61 or sm_90, got {arch!r}.")
    return int(m.group(1))


def _nvidia_dirs() -> list[str]:
    """Every folder of the ``nvidia`` package the pip wheels install into (it may be a namespace
    package spread over several site-packages, or a regular one that hides the others)."""
    dirs = []
    try:
        import nvidia

        dirs += list(getattr(nvidia, "__path__", []))
    except ImportError:
        pass
    dirs += [os.path.join(p, "nvidia") for p in sys.path if p]
    seen, out = set(), []
    for d in dirs:
        real = os.path.realpath(d)
        if os.path.isdir(real) and real not in seen:
            seen.add(real)
            out.append(d)
    return out


def _candidates() -> list[str]:
    """Libraries to try, in order: for CUDA 12, then 13, the pip wheels' copies (nvidia/cuda_nvrtc/lib
    in CUDA 12 and early CUDA 13 wheels, nvidia/cu13/lib in later ones), then the system's."""
    env = os.environ.get("NSA_FAST_NVRTC")
    if env:
        return [env]
    found = []
    for major in MAJORS:
        for base in _nvidia_dirs():
            found += sorted(glob.glob(os.path.join(base, "*", "lib", f"libnvrtc.so.{major}*")))
        found.append(f"libnvrtc.so.{major}")
    return found


def _supported_archs(lib: ctypes.CDLL) -> tuple[int, ...] | None:
    try:
        count = ctypes.c_int()
        if lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)) != 0:
            return None
        archs = (ctypes.c_int * count.value)()
        if lib.nvrtcGetSupportedArchs(archs) != 0:
            return None
    except AttributeError:  # NVRTC before CUDA 11.2 has no such query
        return None
    return tuple(sorted(archs)) or None


def _preload_builtins(path: str) -> None:
    """NVRTC dlopens libnvrtc-builtins by soname when it compiles, and NVRTC 13 carries no RUNPATH
    to find it beside itself; a copy already loaded from the same folder is the one it then uses."""
    if os.sep in path:
        for builtins in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*"))):
            ctypes.CDLL(builtins)


_P, _INT, _SIZE, _STR = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p
# The C signatures (nvrtc.h): ctypes then refuses a call with missing or mistyped arguments
# instead of passing whatever lies in the registers.
_SIGNATURES = {
    "nvrtcVersion": [ctypes.POINTER(_INT), ctypes.POINTER(_INT)],
    "nvrtcGetErrorString": [_INT],
    "nvrtcCreateProgram": [ctypes.POINTER(_P), _STR, _STR, _INT, ctypes.POINTER(_STR), ctypes.POINTER(_STR)],
    "nvrtcCompileProgram": [_P, _INT, ctypes.POINTER(_STR)],
    "nvrtcGetProgramLogSize": [_P, ctypes.POINTER(_SIZE)],
    "nvrtcGetProgramLog": [_P, _STR],
    "nvrtcGetCUBINSize": [_P, ctypes.POINTER(_SIZE)],
    "nvrtcGetCUBIN": [_P, _STR],
    "nvrtcDestroyProgram": [ctypes.POINTER(_P)],
}


def _declare(lib: ctypes.CDLL) -> None:
    for fn, args in _SIGNATURES.items():
        getattr(lib, fn).argtypes = args
    lib.nvrtcGetErrorString.restype = _STR


@lru_cache(maxsize=None)
def _load(candidates: tuple[str, ...]) -> Nvrtc:
    errors = []
    for path in candidates:
        try:
            _preload_builtins(path)
            lib = ctypes.CDLL(path)
            _declare(lib)
            major, minor = ctypes.c_int(), ctypes.c_int()
            lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        except OSError as err:
            errors.append(f"{path}: {err}")
            continue
        except AttributeError as err:  # a function of _SIGNATURES is missing
            if hasattr(lib, "nvrtcVersion") and hasattr(lib, "nvrtcCreateProgram"):  # NVRTC before CUDA 11.1
                errors.append(f"{path}: an NVRTC too old for cubins ({err}); they need the NVRTC of CUDA 11.1 or later")
            else:
                errors.append(f"{path}: not an NVRTC library ({err})")
            continue
        return Nvrtc(lib, path, (major.value, minor.value), _supported_archs(lib))
    if os.environ.get("NSA_FAST_NVRTC"):
        raise KernelCompileError(
            f"NSA_FAST_NVRTC names an NVRTC library that could not be loaded ({'; '.join(errors)}). "
            "Point it at a libnvrtc.so.12 (CUDA 12, targets Pascal and newer) or libnvrtc.so.13, or "
            "unset it to search the pip wheels and the system.")
    raise KernelCompileError(
        "NVRTC was not found: expected CUDA 12's libnvrtc.so.12 (targets sm_50 and newer, Pascal "
        "included) or CUDA 13's libnvrtc.so.13 (sm_75 and newer); tried " + "; ".join(errors)
        + f". Install it with {INSTALL_12}, or point NSA_FAST_NVRTC at the library.")


def load() -> Nvrtc:
    """The NVRTC to compile with (see the module docstring for the order), loaded once."""
    return _load(tuple(_candidates()))


def library() -> ctypes.CDLL:
    return load().lib


def version() -> tuple[int, int]:
    return load().version


def supported_archs() -> list[str]:
    """The real architectures the loaded NVRTC compiles for, e.g. ``["sm_75", ..., "sm_121"]``
    (empty when this NVRTC cannot list them)."""
    return load().arch_names()


def compile_cubin(source: str, name: str, arch: str, options: tuple[str, ...] = ()) -> bytes:
    """Compile CUDA C++ source for a real architecture (e.g. ``sm_61``); returns the cubin.

    Raises :class:`UnsupportedArchError` when the loaded NVRTC cannot target ``arch`` and
    :class:`KernelCompileError` with NVRTC's log when the source does not compile.
    """
    nv = load()
    lib = nv.lib
    if not nv.supports(arch):
        archs = nv.arch_names()
        raise UnsupportedArchError(
            f"{name}: NVRTC {nv.version[0]}.{nv.version[1]} ({nv.path}) cannot compile for {arch}; it "
            f"targets {archs[0]}..{archs[-1]}. "
            + (f"Architectures before Turing (sm_75) need CUDA 12's NVRTC: {INSTALL_12}, or point NSA_FAST_NVRTC at a "
               "libnvrtc.so.12." if arch_number(arch) < 75 else
               "Use an NVRTC of a CUDA release that knows this architecture, or point NSA_FAST_NVRTC at one."))
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
