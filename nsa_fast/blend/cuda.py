"""CUDA-kernel versions of the iterative solvers and the disk median, launched through CuPy.

Tensors stay where they are: torch hands them to CuPy through DLPack (zero copy) and every kernel
runs on torch's current stream, so nothing synchronises with the host. Kernels are compiled once
per device from ``kernels/*.cu``. Their CPU twins are ``nsa_fast.blend.solvers`` and
``nsa_fast.median``; the parity tests hold them equal.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import NsaError
from .kernels import kernel_source
from .solvers import _interior_mask, jacobi_iterations, sor_iterations, sor_omega

SHARED_LIMIT = 48 * 1024  # bytes of shared memory one block may use on every GPU from Pascal on


def cupy():
    """The CuPy module, or an error that names the package to install."""
    try:
        import cupy as cp
    except ImportError as err:
        raise NsaError("the CUDA kernels need CuPy: pip install 'nsa_fast[gpu]' "
                       "(cupy-cuda12x, which still supports Pascal).") from err
    return cp


_MODULES: dict[tuple[int, str], object] = {}


def _module(filename: str, device: torch.device):
    """The compiled module of one .cu file on one device, built on first use."""
    key = (device.index or 0, filename)
    if key not in _MODULES:
        cp = cupy()
        with cp.cuda.Device(key[0]):
            mod = cp.RawModule(code=kernel_source(filename), options=("--std=c++14",))
            mod.compile()
        _MODULES[key] = mod
    return _MODULES[key]


def _as_cupy(t: torch.Tensor):
    return cupy().from_dlpack(t.detach())


class _on_torch_stream:
    """Run CuPy launches on the tensor's device and torch's current stream there (no implicit
    synchronisation)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        cp = cupy()
        self.dev = cp.cuda.Device(self.device.index or 0)
        self.dev.__enter__()
        self.stream = cp.cuda.ExternalStream(torch.cuda.current_stream(self.device).cuda_stream)
        self.stream.__enter__()
        return self.stream

    def __exit__(self, *exc):
        self.stream.__exit__(*exc)
        self.dev.__exit__(*exc)


def _check_cuda(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if not t.is_cuda:
            raise NsaError(f"the CUDA kernels take CUDA tensors, got one on {t.device}; "
                           "use the torch solvers of nsa_fast.blend.solvers on the CPU.")


def _grid(R: int, K: int, planes: int, block=(32, 8)):
    return ((K + block[0] - 1) // block[0], (R + block[1] - 1) // block[1], planes), (*block, 1)


def jacobi_solve_cuda(rhs, guess, sizes, iterations: int | None = None):
    """CUDA twin of ``solvers.jacobi_solve``: the same sweeps, two buffers."""
    _check_cuda(rhs, guess)
    it = jacobi_iterations(sizes) if iterations is None else iterations
    B, C, R, K = rhs.shape
    u = (guess * _interior_mask(rhs, sizes)).contiguous()
    u_new = torch.empty_like(u)
    n = torch.as_tensor(np.asarray(sizes, np.int32), device=rhs.device)
    f = _module("poisson_iter.cu", rhs.device).get_function("jacobi_sweep")
    grid, block = _grid(R, K, B * C)
    rhs_c = rhs.contiguous()
    with _on_torch_stream(rhs.device):
        a, b, r, s = _as_cupy(u), _as_cupy(u_new), _as_cupy(rhs_c), _as_cupy(n)
        for _ in range(it):
            f(grid, block, (a, b, r, s, np.int32(C), np.int32(R), np.int32(K)))
            a, b = b, a
    return u if it % 2 == 0 else u_new


def sor_solve_cuda(rhs, guess, sizes, iterations: int | None = None):
    """CUDA twin of ``solvers.sor_solve``. Planes that fit in shared memory run all iterations in
    one launch (one block per plane); larger ones take two launches per iteration."""
    _check_cuda(rhs, guess)
    it = sor_iterations(sizes) if iterations is None else iterations
    B, C, R, K = rhs.shape
    u = (guess * _interior_mask(rhs, sizes)).contiguous()
    n = torch.as_tensor(np.asarray(sizes, np.int32), device=rhs.device)
    omega = torch.as_tensor(sor_omega(sizes), device=rhs.device)
    mod = _module("poisson_iter.cu", rhs.device)
    rhs_c = rhs.contiguous()
    with _on_torch_stream(rhs.device):
        a, r, s, w = _as_cupy(u), _as_cupy(rhs_c), _as_cupy(n), _as_cupy(omega)
        shared = R * K * 4
        if shared <= SHARED_LIMIT:
            mod.get_function("sor_block")((B * C,), (256,), (a, r, s, w, np.int32(C), np.int32(R),
                                          np.int32(K), np.int32(it)), shared_mem=shared)
        else:
            f = mod.get_function("sor_half_sweep")
            grid, block = _grid(R, K, B * C)
            for _ in range(it):
                for colour in (0, 1):
                    f(grid, block, (a, r, s, w, np.int32(C), np.int32(R), np.int32(K), np.int32(colour)))
    return u


def disk_median_cuda(x: torch.Tensor) -> torch.Tensor:
    """Radius-5 disk median with 'nearest' edges of (P, H, W) int16 maps holding 0..1023."""
    _check_cuda(x)
    P, H, W = x.shape
    x = x.contiguous()
    out = torch.empty_like(x)
    grid, block = _grid(H, W, P, block=(16, 16))
    with _on_torch_stream(x.device):
        _module("median_disk.cu", x.device).get_function("median_disk")(
            grid, block, (_as_cupy(x), _as_cupy(out), np.int32(H), np.int32(W)))
    return out


CUDA_SOLVERS = {"jacobi": jacobi_solve_cuda, "sor": sor_solve_cuda}
