"""Compile CUDA kernel source for the CPU and run it under the device's rules (see cuda_on_cpu.h).

A ``Program`` is one kernel file's source. Its ``extern "C" __global__`` signatures are parsed
from the text, launch wrappers are generated for them, and the whole is compiled by g++ either
as a shared library run in this process (``Program.run``) or as a standalone driver run in a
child process (``Program.run_driver``), which is how ThreadSanitizer and AddressSanitizer builds
run: loading an instrumented library into an uninstrumented Python is not reliable.

Launches are checked against CUDA's rules first (``check_launch``): grid and block extents, shared
memory, the number of arguments, numpy scalars of exactly the parameter's C type, C-contiguous
arrays of the pointee's dtype. Builds are cached by a hash of everything that goes into them.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNTIME_FILES = ("cuda_on_cpu.h", "launch_abi.h", "driver.cpp")
MAX_THREADS = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
SHARED_LIMIT = 48 * 1024
TSAN_EXIT = 66  # the exit status the ThreadSanitizer runs ask for when it reported anything

# C types of kernel parameters and the numpy dtype of exactly the same size and kind (LP64, as
# CUDA on 64-bit Linux). Plain char is left out: its signedness differs between platforms.
C_TYPES = {
    "bool": np.bool_, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "short int": np.int16, "signed short": np.int16,
    "unsigned short": np.uint16, "unsigned short int": np.uint16,
    "int": np.int32, "signed": np.int32, "signed int": np.int32,
    "unsigned": np.uint32, "unsigned int": np.uint32,
    "long": np.int64, "long int": np.int64, "unsigned long": np.uint64,
    "long long": np.int64, "long long int": np.int64,
    "unsigned long long": np.uint64, "unsigned long long int": np.uint64,
    "int8_t": np.int8, "uint8_t": np.uint8, "int16_t": np.int16, "uint16_t": np.uint16,
    "int32_t": np.int32, "uint32_t": np.uint32, "int64_t": np.int64, "uint64_t": np.uint64,
    "size_t": np.uint64, "ptrdiff_t": np.int64, "float": np.float32, "double": np.float64,
}


class EmulationError(RuntimeError):
    """Kernel source the emulation cannot take, or a build or driver run that failed."""


class LaunchRuleError(RuntimeError):
    """A launch that CUDA (or CuPy's argument passing) would refuse or get wrong."""


# ---------------------------------------------------------------------------------------------
# Reading kernel source


def code_only(source: str) -> str:
    """``source`` with comments blanked out (same length, newlines kept): searches then find only
    code. String and character literals are kept as they are."""
    out, i, n = list(source), 0, len(source)
    while i < n:
        two = source[i:i + 2]
        if two == "//":
            j = source.find("\n", i)
            j = n if j < 0 else j
        elif two == "/*":
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif source[i] in "\"'":
            quote, j = source[i], i + 1
            while j < n and source[j] != quote:
                j += 2 if source[j] == "\\" else 1
            i = j + 1
            continue
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


@dataclass(frozen=True)
class Param:
    name: str
    ctype: str          # the declared type, qualifiers and all, e.g. "const float* __restrict__"
    base: str           # the C type without qualifiers and pointer, e.g. "float"
    pointer: bool
    dtype: np.dtype     # of the scalar, or of the pointee


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    start: int          # offset of the signature in the source
    end: int            # offset just past the kernel's closing brace


_SIGNATURE = re.compile(r'extern\s*"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
                        r'(\w+)\s*\(([^)]*)\)\s*\{')
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}


def _param(text: str, kernel: str) -> Param:
    m = re.fullmatch(r"\s*(.*?)\s*\b(\w+)\s*", text, re.S)
    if not m or not m.group(1):
        raise EmulationError(f"{kernel}: cannot read the parameter {text.strip()!r}")
    ctype, name = " ".join(m.group(1).split()), m.group(2)
    stars = ctype.count("*")
    words = [w for w in ctype.replace("*", " ").split() if w not in _QUALIFIERS]
    base = " ".join(words)
    if stars > 1 or base not in C_TYPES or "&" in ctype:
        raise EmulationError(f"{kernel}: parameter {ctype} {name} is not a scalar of a known C type "
                             f"or a pointer to one; known: {sorted(C_TYPES)}")
    return Param(name, ctype, base, stars == 1, np.dtype(C_TYPES[base]))


def _closing_brace(code: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return i + 1
    raise EmulationError("unbalanced braces in the kernel source")


def parse_kernels(source: str) -> dict[str, Kernel]:
    """The ``extern "C" __global__ void`` kernels of ``source``, by name, with their parameters."""
    code = code_only(source)
    kernels = {}
    for m in _SIGNATURE.finditer(code):
        name, params = m.group(1), m.group(2).strip()
        plist = () if params in ("", "void") else tuple(_param(p, name) for p in params.split(","))
        kernels[name] = Kernel(name, plist, m.start(), _closing_brace(code, m.end() - 1))
    return kernels


_BARRIER = re.compile(r"__syncthreads\s*\(\s*\)")
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?"
                            r"([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;")


def barrier_sites(source: str) -> list[tuple[int, int]]:
    """(start, end) of every ``__syncthreads()`` call in the code (not in comments)."""
    return [m.span() for m in _BARRIER.finditer(code_only(source))]


def without_barrier(source: str, site: tuple[int, int]) -> str:
    """``source`` with the barrier at ``site`` replaced by a no-op (the statement stays valid)."""
    start, end = site
    assert _BARRIER.fullmatch(source[start:end]), f"no __syncthreads() at {site}"
    return source[:start] + "((void)0)" + source[end:]


def cooperative(source: str, kernel: Kernel, kernels: dict[str, Kernel]) -> bool:
    """Whether the threads of the kernel's blocks talk to each other: its body, or a __device__
    function it may call (any code outside the kernels), has barriers or shared memory."""
    code = code_only(source)
    outside = list(code)
    for k in kernels.values():
        outside[k.start:k.end] = " " * (k.end - k.start)
    return any(_BARRIER.search(text) or "__shared__" in text
               for text in (code[kernel.start:kernel.end], "".join(outside)))


def to_cpp(source: str) -> str:
    """Kernel source as the CPU runtime compiles it: each ``extern __shared__ T name[];`` becomes
    a pointer to the running block's dynamic shared memory. Static ``__shared__`` arrays are not
    emulated and are refused rather than silently made per thread."""
    code = code_only(source)
    pieces, last = [], 0
    for m in _EXTERN_SHARED.finditer(code):
        ctype, name = " ".join(m.group(1).split()), m.group(2)
        if code[:m.start()].count("{") == code[:m.start()].count("}"):
            raise EmulationError(f"extern __shared__ {name} at file scope is not emulated; declare it in the kernel.")
        pieces += [source[last:m.start()], f"{ctype}* const {name} = static_cast<{ctype}*>(nsa_emu::dynamic_shared());"]
        last = m.end()
    pieces.append(source[last:])
    rewritten = "".join(pieces)
    if "__shared__" in code_only(rewritten):
        raise EmulationError("static __shared__ arrays are not emulated (only extern __shared__ T name[]).")
    return rewritten


def translation_unit(source: str, filename: str) -> str:
    """The C++ file that is compiled: runtime, rewritten source, launchers and the kernel table."""
    kernels = parse_kernels(source)
    if not kernels:
        raise EmulationError(f'{filename}: no extern "C" __global__ void kernels found')
    out = ['#include "cuda_on_cpu.h"', f'#line 1 "{filename}"', to_cpp(source), "", "// generated launchers"]
    for k in kernels.values():
        ns = f"nsa_sig_{k.name}"
        types = [p.ctype.replace("__restrict__", "").strip() for p in k.params]
        aliases = " ".join(f"using P{i} = {t};" for i, t in enumerate(types))
        sizes = ", ".join([f"nsa_emu::arg_bytes<P{i}>()" for i in range(len(types))] + ["-1"])
        unpack = " ".join(f"const P{i} a{i} = *static_cast<const P{i}*>(args[{i}]);" for i in range(len(types)))
        call = ", ".join(f"a{i}" for i in range(len(types)))
        out += [f"namespace {ns} {{ {aliases} static const int arg_bytes[] = {{{sizes}}}; }}",
                f"extern \"C\" int nsa_launch_{k.name}(const unsigned* g, const unsigned* b, "
                "unsigned long long shared, void* const* args)",
                f"{{ using namespace {ns}; {unpack}",
                f"  return nsa_emu::launch(dim3{{g[0], g[1], g[2]}}, dim3{{b[0], b[1], b[2]}}, shared, "
                f"{str(cooperative(source, k, kernels)).lower()}, [=] {{ {k.name}({call}); }}); }}"]
    entries = ", ".join(f'{{"{k.name}", {len(k.params)}, nsa_sig_{k.name}::arg_bytes, nsa_launch_{k.name}}}'
                        for k in kernels.values())
    out += [f"extern \"C\" const nsa_emu::KernelEntry nsa_kernel_table[] = {{{entries}}};",
            f"extern \"C\" const int nsa_kernel_count = {len(kernels)};", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Launch rules


def _dims(value, what: str) -> tuple[int, int, int]:
    if not isinstance(value, tuple) or not 1 <= len(value) <= 3 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise LaunchRuleError(f"{what} must be a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if min(dims) < 1:
        raise LaunchRuleError(f"{what} {value} has an extent below 1; CUDA refuses empty launches")
    return dims


def check_launch(kernel: Kernel, grid, block, shared_mem, args) -> tuple[tuple, tuple]:
    """Refuse what CUDA refuses, and arguments CuPy would pass with the wrong size or type.
    Returns the grid and block as 3-tuples. Pointer arguments are numpy arrays here."""
    g, b = _dims(grid, "grid"), _dims(block, "block")
    if any(x > m for x, m in zip(b, MAX_BLOCK)) or b[0] * b[1] * b[2] > MAX_THREADS:
        raise LaunchRuleError(f"block {block} has {b[0] * b[1] * b[2]} threads; CUDA allows {MAX_THREADS} "
                              f"a block and at most {MAX_BLOCK} along x, y, z")
    if any(x > m for x, m in zip(g, MAX_GRID)):
        raise LaunchRuleError(f"grid {grid} exceeds CUDA's limits: x < 2^31, y and z <= 65535")
    if not isinstance(shared_mem, (int, np.integer)) or not 0 <= shared_mem <= SHARED_LIMIT:
        raise LaunchRuleError(f"{shared_mem!r} bytes of dynamic shared memory; a block may have 0 to "
                              f"{SHARED_LIMIT} without an opt-in")
    if not isinstance(args, tuple) or len(args) != len(kernel.params):
        got = len(args) if isinstance(args, (tuple, list)) else repr(args)
        raise LaunchRuleError(f"{kernel.name} takes {len(kernel.params)} arguments "
                              f"({', '.join(p.ctype + ' ' + p.name for p in kernel.params)}), got {got}")
    for p, a in zip(kernel.params, args):
        where = f"{kernel.name}: argument {p.name} ({p.ctype})"
        if p.pointer:
            if not isinstance(a, np.ndarray):
                raise LaunchRuleError(f"{where} must be an array, got {type(a).__name__}")
            if a.dtype != p.dtype:
                raise LaunchRuleError(f"{where} points to {p.dtype}, got an array of {a.dtype}")
            if not a.flags.c_contiguous:
                raise LaunchRuleError(f"{where}: the array is not C-contiguous; the kernel indexes it as dense")
        elif not isinstance(a, np.generic):
            raise LaunchRuleError(f"{where} must be a numpy scalar of {p.dtype}, got a Python "
                                  f"{type(a).__name__}, which CuPy passes as 8 bytes; cast it with np.{p.dtype}")
        elif a.dtype != p.dtype:
            raise LaunchRuleError(f"{where} must be a numpy scalar of {p.dtype}, got {a.dtype}")
    return g, b


@dataclass(frozen=True)
class Launch:
    """One kernel launch: pointer arguments are numpy arrays (run in place), scalars numpy scalars."""
    kernel: str
    grid: tuple
    block: tuple
    args: tuple
    shared_mem: int = 0


# ---------------------------------------------------------------------------------------------
# Tools and builds


def compiler() -> str | None:
    return shutil.which("g++") or shutil.which("c++")


def cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"nsa_fast_emulation-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@functools.lru_cache(maxsize=None)
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout


FLAGS = ["-std=c++20", "-pthread", "-ffp-contract=off", "-fno-fast-math"]
KINDS = {
    "library": ["-O2", "-fPIC", "-shared", "-DNSA_GUARD_SHARED"],
    "driver": ["-O2"],
    "thread": ["-O1", "-g", "-fsanitize=thread"],
    "address": ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"],
}


def build(source: str, kind: str = "library", filename: str = "kernel.cu") -> Path:
    """Compile ``source`` as a shared library (kind "library") or as a standalone driver, plain
    ("driver") or with a sanitizer ("thread", "address"). Cached by the hash of the generated
    file, the runtime files, the flags and the compiler."""
    cxx = compiler()
    if cxx is None:
        raise EmulationError("no C++ compiler (g++) to build the CPU emulation of the kernels")
    unit = translation_unit(source, filename)
    flags = FLAGS + KINDS[kind]
    h = hashlib.sha256()
    for part in [unit, " ".join(flags), cxx, _compiler_version(cxx)] + [
            (HERE / f).read_text() for f in RUNTIME_FILES]:
        h.update(part.encode() + b"\0")
    out_dir = cache_dir() / h.hexdigest()[:24]
    target = out_dir / ("kernels.so" if kind == "library" else f"driver-{kind}")
    if target.exists():
        return target
    out_dir.mkdir(exist_ok=True)
    (out_dir / "kernels.cpp").write_text(unit)
    cmd = [cxx, *flags, f"-I{HERE}", str(out_dir / "kernels.cpp")]
    if kind != "library":
        cmd.append(str(HERE / "driver.cpp"))
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    done = subprocess.run(cmd + ["-o", str(tmp)], capture_output=True, text=True)
    if done.returncode != 0:
        raise EmulationError(f"g++ could not build the {kind} emulation of {filename}:\n{done.stderr[-4000:]}")
    os.replace(tmp, target)  # atomic: a concurrent run sees either nothing or the whole file
    return target


def prebuild(jobs: list[tuple[str, str, str]]) -> None:
    """Build (source, kind, filename) jobs in parallel, one g++ a core, skipping kinds whose tools
    are missing. Builds are cached, so the tests that need them then start at once; a job that
    fails here fails again, with its message, in the test that needs it."""
    jobs = [j for j in jobs if not missing_tool(j[1])]

    def one(job):
        try:
            build(*job)
        except EmulationError:
            pass

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(one, jobs))


@functools.lru_cache(maxsize=None)
def missing_tool(kind: str = "library") -> str | None:
    """Why ``kind`` builds cannot run on this machine, or None. Sanitizer runtimes (libtsan,
    libasan) are probed by building and running a tiny threaded program."""
    if compiler() is None:
        return "no C++ compiler (g++) to build the CPU emulation of the kernels"
    if kind in ("library", "driver"):
        return None
    # A trivial program, not a kernel file: what is probed is the tool, not the harness.
    with tempfile.TemporaryDirectory(prefix="nsa_emu_probe_") as work:
        src, exe = Path(work, "probe.cpp"), Path(work, "probe")
        src.write_text("#include <thread>\nint x;\n"
                       "int main() { std::thread t([] { x = 1; }); t.join(); return x - 1; }\n")
        done = subprocess.run([compiler(), *FLAGS, *KINDS[kind], str(src), "-o", str(exe)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return (f"g++ cannot build with -fsanitize={kind} here (is lib{kind[0]}san installed?): "
                    f"{done.stderr[-1000:]}")
        try:
            run = _run_sanitized([str(exe)], timeout=60)
        except EmulationError as err:
            return str(err)
    if run.returncode != 0 or run.reported:
        return f"a trivial -fsanitize={kind} program fails here ({run.returncode}):\n{run.stderr[-2000:]}"
    return None


def require(kind: str = "library") -> None:
    """Skip when the tools for ``kind`` are missing, except under CI, whose machines have them."""
    import pytest

    reason = missing_tool(kind)
    if reason:
        assert not os.environ.get("CI"), f"CI machines have g++ and its sanitizers: {reason}"
        pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class DriverRun:
    returncode: int
    stderr: str

    @property
    def reported(self) -> bool:
        """Whether a sanitizer reported anything (a race, an overrun)."""
        return self.returncode == TSAN_EXIT or "ERROR: AddressSanitizer" in self.stderr or \
            "WARNING: ThreadSanitizer" in self.stderr


SANITIZER_ENV = {
    "TSAN_OPTIONS": f"exitcode={TSAN_EXIT} halt_on_error=1 history_size=7",  # one report fails a test
    "ASAN_OPTIONS": "detect_leaks=0 abort_on_error=0",
}


def _regions(arrays: list[np.ndarray]):
    """Merge the arrays' byte ranges where they overlap (views of one tensor): [(start, size)]."""
    regions: list[list[int]] = []
    for start, size in sorted({(a.ctypes.data, a.nbytes) for a in arrays}):
        end = regions[-1][0] + regions[-1][1] if regions else None
        if regions and (start < end or (size == 0 and start <= end)):
            regions[-1][1] = max(end, start + size) - regions[-1][0]
        else:
            regions.append([start, size])
    return [tuple(r) for r in regions]


def _locate(regions, a: np.ndarray) -> tuple[int, int]:
    address = a.ctypes.data
    for i, (start, size) in enumerate(regions):
        if start <= address and address + a.nbytes <= start + size:
            return i, address - start
    raise AssertionError("an array outside every region")


class _Guarded:
    """Copies of a launch's arrays between guard bands of 0xFF bytes (NaN as float, -1 as an
    integer), so that a kernel that strays beyond its arguments cannot corrupt this process:
    a write into a band is reported as an error, and reads from one bring NaN or -1 into the
    result. Arrays that overlap (views of one tensor) share one copy. Each band is 64 KiB plus the
    region's own size, so overruns by up to a whole array are caught."""

    def __init__(self, arrays: list[np.ndarray]):
        self.regions = _regions(arrays)
        self.copies = []
        for start, size in self.regions:
            pad = (65536 + size + 63) // 64 * 64  # keeps the copy as aligned as the array
            buf = np.full(size + 2 * pad, 0xFF, np.uint8)
            ctypes.memmove(buf.ctypes.data + pad, start, size)
            self.copies.append((buf, pad))

    def address(self, a: np.ndarray) -> int:
        i, offset = _locate(self.regions, a)
        buf, pad = self.copies[i]
        return buf.ctypes.data + pad + offset

    def finish(self, kernel: str) -> None:
        """Check the bands, then copy the results back."""
        for (start, size), (buf, pad) in zip(self.regions, self.copies):
            before, after = buf[:pad], buf[pad + size:]
            if (before != 0xFF).any() or (after != 0xFF).any():
                lo = pad - int(np.flatnonzero(before != 0xFF)[0]) if (before != 0xFF).any() else 0
                hi = int(np.flatnonzero(after != 0xFF)[-1]) + 1 if (after != 0xFF).any() else 0
                raise LaunchRuleError(f"{kernel} wrote outside the arrays it was given: up to {lo} bytes before "
                                      f"and {hi} bytes after a {size}-byte argument (CUDA: an illegal address "
                                      "or another tensor's memory)")
        for (start, size), (buf, pad) in zip(self.regions, self.copies):
            ctypes.memmove(start, buf.ctypes.data + pad, size)


class Program:
    """One kernel file's source, compiled on first use."""

    def __init__(self, source: str, filename: str = "kernel.cu"):
        self.source, self.filename = source, filename
        self.kernels = parse_kernels(source)
        if not self.kernels:
            raise EmulationError(f'{filename}: no extern "C" __global__ void kernels found')

    def check(self, launch: Launch) -> tuple[tuple, tuple]:
        if launch.kernel not in self.kernels:
            raise LaunchRuleError(f"{self.filename} has no kernel {launch.kernel!r}; it has {sorted(self.kernels)}")
        return check_launch(self.kernels[launch.kernel], launch.grid, launch.block, launch.shared_mem, launch.args)

    def library(self) -> ctypes.CDLL:
        return _load(build(self.source, "library", self.filename))

    def run(self, launches: list[Launch]) -> None:
        """Run the launches in this process, in order, each on guarded copies of its arrays (see
        ``_Guarded``), and copy the results back into the arrays."""
        lib = self.library()
        for launch in launches:
            g, b = self.check(launch)
            guarded = _Guarded([a for a in launch.args if isinstance(a, np.ndarray)])
            slots = []
            for a in launch.args:
                slot = ctypes.c_uint64(0)  # 8-byte aligned storage for the argument's value
                raw = np.uint64(guarded.address(a)).tobytes() if isinstance(a, np.ndarray) else a.tobytes()
                ctypes.memmove(ctypes.addressof(slot), raw, len(raw))
                slots.append(slot)
            args = (ctypes.c_void_p * max(1, len(slots)))(*(ctypes.addressof(s) for s in slots))
            fn = getattr(lib, f"nsa_launch_{launch.kernel}")
            fn.restype = ctypes.c_int
            status = fn((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b),
                        ctypes.c_ulonglong(int(launch.shared_mem)), args)
            if status == 2:
                raise LaunchRuleError(f"{launch.kernel} wrote beyond its {launch.shared_mem} bytes of dynamic "
                                      "shared memory")
            if status != 0:
                raise LaunchRuleError(f"the runtime refused {launch.kernel} grid {g} block {b}")
            guarded.finish(launch.kernel)

    def run_driver(self, launches: list[Launch], kind: str = "thread", timeout: float = 300,
                   exe: Path | None = None) -> DriverRun:
        """Run the launches in a child process built with ``kind`` ("thread", "address",
        "driver"), then copy the results back into the arrays. A sanitizer's report is in the
        returned run, not an exception: tests decide what it means."""
        for launch in launches:
            self.check(launch)
        exe = exe or build(self.source, kind, self.filename)
        arrays = [a for launch in launches for a in launch.args if isinstance(a, np.ndarray)]
        regions = _regions(arrays)
        lines = [f"regions {len(regions)}", *(str(size) for _, size in regions)]
        for launch in launches:
            g, b = _dims(launch.grid, "grid"), _dims(launch.block, "block")
            lines.append(f"launch {launch.kernel} {' '.join(map(str, g + b))} {int(launch.shared_mem)} "
                         f"{len(launch.args)}")
            for a in launch.args:
                if isinstance(a, np.ndarray):
                    lines.append("ptr %d %d" % _locate(regions, a))
                else:
                    lines.append(f"val {a.nbytes} {a.tobytes().hex()}")
        with tempfile.TemporaryDirectory(prefix="nsa_emu_") as work:
            for i, (start, size) in enumerate(regions):
                Path(work, f"region{i}.bin").write_bytes(ctypes.string_at(start, size))
            Path(work, "script.txt").write_text("\n".join(lines) + "\n")
            run = _run_sanitized([str(exe), work], timeout)
            if run.returncode not in (0, TSAN_EXIT) and not run.reported:
                raise EmulationError(f"the {kind} driver of {self.filename} failed ({run.returncode}):\n"
                                     f"{run.stderr[-4000:]}")
            for i, (start, size) in enumerate(regions):
                out = Path(work, f"region{i}.out")
                if out.exists():
                    ctypes.memmove(start, out.read_bytes(), size)
        return run


@functools.lru_cache(maxsize=None)
def _load(path: Path) -> ctypes.CDLL:
    return ctypes.CDLL(str(path))


# What sanitizer runtimes print when their shadow memory cannot go where they want it, which
# happens on kernels with more address-space randomisation (vm.mmap_rnd_bits > 28) than gcc 12's
# runtimes expect.
_ASLR_TROUBLE = ("unexpected memory mapping", "Shadow memory range interleaves")


def _run_sanitized(cmd: list[str], timeout: float) -> DriverRun:
    """Run a (sanitizer) build; if the sanitizer cannot place its shadow memory, run it again
    with address-space randomisation off (setarch -R)."""
    env = {**os.environ, **SANITIZER_ENV}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if any(t in done.stderr for t in _ASLR_TROUBLE) and shutil.which("setarch"):
            done = subprocess.run(["setarch", os.uname().machine, "-R", *cmd], capture_output=True,
                                  text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        raise EmulationError(f"{cmd[0]} ran past {timeout} s: a barrier that never opens?") from err
    if any(t in done.stderr for t in _ASLR_TROUBLE + ("FATAL: ThreadSanitizer",)):
        raise EmulationError(f"the sanitizer could not start here:\n{done.stderr[-2000:]}")
    return DriverRun(done.returncode, done.stderr)
