"""CUDA-kernel versions of the iterative solvers and the disk median, launched through CuPy.

Tensors stay where they are: torch hands them to CuPy through DLPack (zero copy) and every kernel
runs on torch's current stream of the tensor's device, so the launches are ordered with torch's
own work and nothing waits for the host. Kernels are compiled once per device from
``kernels/*.cu``. Every launch is checked against CUDA's limits first (threads a block, grid
extents, shared memory) and scalars are cast to the C types of the kernel's signature. The CPU
twins are ``nsa_fast.blend.solvers`` and ``nsa_fast.median``; the parity tests hold them equal,
on a GPU and, through a stand-in CuPy that runs the kernel source on CPU threads, in CI.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ..errors import NsaError
from .kernels import kernel_source
from .solvers import Interior, as_interior, jacobi_iterations, sor_iterations

MAX_THREADS = 1024         # threads a block, every GPU since Fermi
MAX_GRID_YZ = 65535        # grid extent along y and z
MAX_GRID_X = 2**31 - 1
SHARED_LIMIT = 48 * 1024   # dynamic shared memory a block may use without an opt-in, Pascal on
BLOCK_THREADS = 256        # threads of the solver kernels: one block a plane
MEDIAN_BLOCK = (16, 16)


class KernelLaunchError(NsaError, RuntimeError):
    """A launch that CUDA would refuse, or arguments the kernel does not take."""


def cupy():
    """The CuPy module, or an error that names the package to install."""
    try:
        import cupy as cp
    except ImportError as err:
        raise NsaError("the CUDA kernels need CuPy: pip install 'nsa_fast[gpu]' (cupy-cuda12x, which "
                       "still supports Pascal), or cupy-cuda13x on a CUDA 13 machine (Turing and newer).") from err
    return cp


_MODULES: dict[tuple[int, str], object] = {}


def _module(filename: str, device: torch.device):
    """The compiled module of one .cu file on one device, built on first use (CuPy's NVRTC
    compiles for that device's architecture)."""
    key = (device.index or 0, filename)
    if key not in _MODULES:
        cp = cupy()
        with cp.cuda.Device(key[0]):
            mod = cp.RawModule(code=kernel_source(filename))
            mod.compile()
        _MODULES[key] = mod
    return _MODULES[key]


class _TorchStream:
    """torch's stream seen through the CUDA stream protocol, which CuPy's ``Stream.from_external``
    takes (also for torch releases whose streams do not implement it themselves)."""

    def __init__(self, stream):
        self.stream = stream

    def __cuda_stream__(self):
        return 0, self.stream.cuda_stream


@contextmanager
def _on_torch_stream(device: torch.device):
    """CuPy launches inside run on ``device`` and on torch's current stream there. Each process
    should make its own GPU current first (``torch.cuda.set_device``, as the trainer does for every
    rank): leaving CuPy's device context sets the previous device again, which would otherwise
    initialise GPU 0 in every rank."""
    cp = cupy()
    with cp.cuda.Device(device.index or 0):
        with cp.cuda.Stream.from_external(_TorchStream(torch.cuda.current_stream(device))):
            yield


def _as_cupy(t: torch.Tensor, dtype: torch.dtype, name: str):
    """A zero-copy CuPy view of a contiguous tensor of the dtype the kernel's pointer expects."""
    if t.dtype != dtype or not t.is_contiguous():
        raise KernelLaunchError(f"{name}: the kernel takes a contiguous {dtype} array, got "
                                f"{t.dtype}{'' if t.is_contiguous() else ' (not contiguous)'}.")
    return cupy().from_dlpack(t.detach())


def check_launch(grid, block, shared_mem: int = 0) -> None:
    """Refuse what CUDA would refuse: empty or oversized grids and blocks, too much shared memory."""
    grid, block = tuple(int(g) for g in grid), tuple(int(b) for b in block)
    if not (1 <= len(grid) <= 3 and 1 <= len(block) <= 3) or min(grid + block) < 1:
        raise KernelLaunchError(f"grid {grid} and block {block} must have 1 to 3 positive extents.")
    threads = int(np.prod(block))
    if threads > MAX_THREADS or (len(block) == 3 and block[2] > 64):
        raise KernelLaunchError(f"block {block} has {threads} threads; CUDA allows {MAX_THREADS} (z at most 64).")
    if grid[0] > MAX_GRID_X or any(g > MAX_GRID_YZ for g in grid[1:]):
        raise KernelLaunchError(f"grid {grid} exceeds CUDA's limits (x < 2^31, y and z <= {MAX_GRID_YZ}).")
    if not 0 <= shared_mem <= SHARED_LIMIT:
        raise KernelLaunchError(f"{shared_mem} bytes of dynamic shared memory; at most {SHARED_LIMIT} "
                                "without an opt-in.")


def _launch(fn, grid, block, args, shared_mem: int = 0) -> None:
    check_launch(grid, block, shared_mem)
    fn(tuple(int(g) for g in grid), tuple(int(b) for b in block), args, shared_mem=shared_mem)


def _check_cuda(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if not t.is_cuda:
            raise NsaError(f"the CUDA kernels take CUDA tensors, got one on {t.device}; "
                           "use the torch solvers of nsa_fast.blend.solvers on the CPU.")


def _check_problem(rhs: torch.Tensor, guess: torch.Tensor, n: Interior) -> None:
    if rhs.ndim != 4 or guess.shape != rhs.shape:
        raise KernelLaunchError(f"rhs and guess must be (B, C, R, K) of one shape, got {tuple(rhs.shape)} "
                                f"and {tuple(guess.shape)}.")
    B, _, R, K = rhs.shape
    if n.host.shape != (B, 2):
        raise KernelLaunchError(f"sizes must be ({B}, 2), got {n.host.shape}.")
    if B and ((n.host < 0).any() or (n.host[:, 0] > R).any() or (n.host[:, 1] > K).any()):
        raise KernelLaunchError(f"sizes {n.host.min(0).tolist()}..{n.host.max(0).tolist()} lie outside "
                                f"the {R}x{K} planes of the tensor; the kernels would read beyond it.")


def _in_shared(plane_buffers: int, R: int, K: int) -> tuple[int, int]:
    """(in_shared flag, dynamic shared bytes) of a block kernel that keeps ``plane_buffers``
    R x K float32 planes: in shared memory when they fit, else in global memory."""
    size = plane_buffers * R * K * 4
    return (1, size) if size <= SHARED_LIMIT else (0, 0)


def jacobi_solve_cuda(rhs, guess, sizes, iterations: int | None = None):
    """CUDA twin of ``solvers.jacobi_solve``: the same sweeps, two buffers, all of them in one
    launch (one block per plane)."""
    _check_cuda(rhs, guess)
    n = as_interior(sizes, rhs.device)
    _check_problem(rhs, guess, n)
    it = jacobi_iterations(n.host) if iterations is None else iterations
    B, C, R, K = rhs.shape
    u = (guess * n.mask(R, K)).contiguous()
    if u.numel() == 0 or it <= 0:  # no planes (C == 0 included) or no sweeps: nothing to launch
        return u
    flag, shared = _in_shared(2, R, K)
    scratch = u if flag else torch.empty_like(u)  # a second global plane when two do not fit in shared memory
    rhs_c = rhs.contiguous()
    mod = _module("poisson_iter.cu", rhs.device)
    with _on_torch_stream(rhs.device):  # the views too: DLPack orders them against CuPy's current stream
        args = (_as_cupy(u, torch.float32, "u"), _as_cupy(scratch, torch.float32, "scratch"),
                _as_cupy(rhs_c, torch.float32, "rhs"), _as_cupy(n.dev, torch.int32, "sizes"))
        f = mod.get_function("jacobi_block")  # CuPy loads the module on the current device
        _launch(f, (B * C,), (BLOCK_THREADS,),
                args + (np.int32(C), np.int32(R), np.int32(K), np.int32(it), np.int32(flag)), shared_mem=shared)
    return u


def sor_solve_cuda(rhs, guess, sizes, iterations: int | None = None):
    """CUDA twin of ``solvers.sor_solve``: all iterations in one launch (one block per plane),
    the plane in shared memory when it fits."""
    _check_cuda(rhs, guess)
    n = as_interior(sizes, rhs.device)
    _check_problem(rhs, guess, n)
    it = sor_iterations(n.host) if iterations is None else iterations
    B, C, R, K = rhs.shape
    u = (guess * n.mask(R, K)).contiguous()
    if u.numel() == 0 or it <= 0:  # no planes (C == 0 included) or no sweeps: nothing to launch
        return u
    flag, shared = _in_shared(1, R, K)
    rhs_c = rhs.contiguous()
    mod = _module("poisson_iter.cu", rhs.device)
    with _on_torch_stream(rhs.device):  # the views too: DLPack orders them against CuPy's current stream
        args = (_as_cupy(u, torch.float32, "u"), _as_cupy(rhs_c, torch.float32, "rhs"),
                _as_cupy(n.dev, torch.int32, "sizes"), _as_cupy(n.omega, torch.float32, "omega"))
        f = mod.get_function("sor_block")  # CuPy loads the module on the current device
        _launch(f, (B * C,), (BLOCK_THREADS,),
                args + (np.int32(C), np.int32(R), np.int32(K), np.int32(it), np.int32(flag)), shared_mem=shared)
    return u


def disk_median_cuda(x: torch.Tensor) -> torch.Tensor:
    """Radius-5 disk median with 'nearest' edges of (P, H, W) int16 maps holding 0..1023."""
    _check_cuda(x)
    if x.ndim != 3:
        raise KernelLaunchError(f"expected (P, H, W) maps, got {tuple(x.shape)}.")
    P, H, W = x.shape
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel() == 0:
        return out
    mod = _module("median_disk.cu", x.device)
    bx, by = MEDIAN_BLOCK
    with _on_torch_stream(x.device):
        f = mod.get_function("median_disk")  # CuPy loads the module on the current device
        for p0 in range(0, P, MAX_GRID_YZ):
            p1 = min(p0 + MAX_GRID_YZ, P)
            grid = ((W + bx - 1) // bx, (H + by - 1) // by, p1 - p0)
            _launch(f, grid, (bx, by, 1), (_as_cupy(x[p0:p1], torch.int16, "x"),
                                            _as_cupy(out[p0:p1], torch.int16, "out"), np.int32(H), np.int32(W)))
    return out


CUDA_SOLVERS = {"jacobi": jacobi_solve_cuda, "sor": sor_solve_cuda}
