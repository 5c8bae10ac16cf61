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
SWEEP_BLOCK = (32, 8)      # threads of the stencil kernels: a warp along a row, 8 rows
SOR_BLOCK_THREADS = 256
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


def _stencil_grid(R: int, K: int, planes: int):
    bx, by = SWEEP_BLOCK
    return ((K + bx - 1) // bx, (R + by - 1) // by, planes), (bx, by, 1)


def _plane_chunks(items: int, C: int):
    """Item ranges whose planes (C per item) fit in the grid's z extent."""
    step = max(1, MAX_GRID_YZ // C)
    return [(i, min(i + step, items)) for i in range(0, items, step)]


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


def jacobi_solve_cuda(rhs, guess, sizes, iterations: int | None = None):
    """CUDA twin of ``solvers.jacobi_solve``: the same sweeps, two buffers."""
    _check_cuda(rhs, guess)
    n = as_interior(sizes, rhs.device)
    _check_problem(rhs, guess, n)
    it = jacobi_iterations(n.host) if iterations is None else iterations
    B, C, R, K = rhs.shape
    u = (guess * n.mask(R, K)).contiguous()
    u_new = torch.empty_like(u)
    if u.numel() == 0 or it <= 0:  # no planes (C == 0 included) or no sweeps: nothing to launch
        return u
    rhs_c = rhs.contiguous()
    mod = _module("poisson_iter.cu", rhs.device)
    with _on_torch_stream(rhs.device):
        f = mod.get_function("jacobi_sweep")  # CuPy loads the module on the current device
        for i0, i1 in _plane_chunks(B, C):
            grid, block = _stencil_grid(R, K, (i1 - i0) * C)
            a = _as_cupy(u[i0:i1], torch.float32, "u")
            b = _as_cupy(u_new[i0:i1], torch.float32, "u_new")
            r = _as_cupy(rhs_c[i0:i1], torch.float32, "rhs")
            s = _as_cupy(n.dev[i0:i1], torch.int32, "sizes")
            for _ in range(it):
                _launch(f, grid, block, (a, b, r, s, np.int32(C), np.int32(R), np.int32(K)))
                a, b = b, a
    return u if it % 2 == 0 else u_new


def sor_solve_cuda(rhs, guess, sizes, iterations: int | None = None):
    """CUDA twin of ``solvers.sor_solve``. Planes that fit in shared memory run all iterations in
    one launch (one block per plane); larger ones take two launches per iteration."""
    _check_cuda(rhs, guess)
    n = as_interior(sizes, rhs.device)
    _check_problem(rhs, guess, n)
    it = sor_iterations(n.host) if iterations is None else iterations
    B, C, R, K = rhs.shape
    u = (guess * n.mask(R, K)).contiguous()
    if u.numel() == 0 or it <= 0:  # no planes (C == 0 included) or no sweeps: nothing to launch
        return u
    rhs_c = rhs.contiguous()
    mod = _module("poisson_iter.cu", rhs.device)
    shared = R * K * 4
    with _on_torch_stream(rhs.device):
        for i0, i1 in _plane_chunks(B, C):
            a = _as_cupy(u[i0:i1], torch.float32, "u")
            r = _as_cupy(rhs_c[i0:i1], torch.float32, "rhs")
            s = _as_cupy(n.dev[i0:i1], torch.int32, "sizes")
            w = _as_cupy(n.omega[i0:i1], torch.float32, "omega")
            if shared <= SHARED_LIMIT:
                _launch(mod.get_function("sor_block"), ((i1 - i0) * C,), (SOR_BLOCK_THREADS,),
                        (a, r, s, w, np.int32(C), np.int32(R), np.int32(K), np.int32(it)), shared_mem=shared)
                continue
            f = mod.get_function("sor_half_sweep")
            grid, block = _stencil_grid(R, K, (i1 - i0) * C)
            for _ in range(it):
                for colour in (0, 1):
                    _launch(f, grid, block, (a, r, s, w, np.int32(C), np.int32(R), np.int32(K), np.int32(colour)))
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
