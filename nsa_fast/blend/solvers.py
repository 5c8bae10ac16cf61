"""Solvers of the batched 5-point Poisson problem with zero Dirichlet boundary.

Every solver takes rhs (B, C, R, K) float32 (zero outside each item's interior), a first guess of
the same shape and sizes (B, 2) host ints (rows, cols of each item's interior), and returns the
solution u (B, C, R, K) with  u[i-1,j] + u[i+1,j] + u[i,j-1] + u[i,j+1] - 4 u[i,j] = rhs[i,j].
They are torch code for any device; ``nsa_fast.blend.cuda`` has CUDA-kernel versions of the
iterative ones, which compute the same thing.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


_DST_CACHE: dict[tuple[int, int, str], torch.Tensor] = {}
_DST_CACHE_MAX = 512  # entries of at most N x N float32 each


def _dst_matrix(n: int, N: int, device: torch.device) -> torch.Tensor:
    """The n x n DST-I matrix sin(pi (i+1)(k+1) / (n+1)), zero-padded to N x N, cached."""
    key = (n, N, str(device))
    m = _DST_CACHE.get(key)
    if m is None:
        i = torch.arange(1, N + 1, device=device, dtype=torch.int64)
        # Reduce the angle exactly in integers before the sine: (i k) mod 2(n+1).
        prod = torch.remainder(i[:, None] * i[None, :], 2 * (n + 1))
        inside = (i[:, None] <= n) & (i[None, :] <= n)
        m = (torch.sin(prod.to(torch.float64) * (math.pi / (n + 1))) * inside).to(torch.float32)
        if len(_DST_CACHE) >= _DST_CACHE_MAX:
            _DST_CACHE.clear()
        _DST_CACHE[key] = m
    return m


def _dst_matrices(n: np.ndarray, N: int, device: torch.device) -> torch.Tensor:
    """(B, N, N) DST-I matrices for the host sizes n (B,)."""
    uniq, inverse = np.unique(n, return_inverse=True)
    table = torch.stack([_dst_matrix(int(k), N, device) for k in uniq])
    return table[torch.as_tensor(inverse, device=device)]


def _eigen(n: torch.Tensor, N: int) -> torch.Tensor:
    """(B, N) 2 cos(pi (i+1) / (n+1)) in float32, as OpenCV computes its filter values."""
    i = torch.arange(1, N + 1, device=n.device, dtype=torch.float64)
    return (2.0 * torch.cos(math.pi * i[None] / (n + 1).to(torch.float64)[:, None])).to(torch.float32)


def dst_solve(rhs: torch.Tensor, guess: torch.Tensor, sizes: np.ndarray) -> torch.Tensor:
    """Direct solve by the sine transform, as padded batched matrix products (exact in one step).

    OpenCV's solver divides by float32 eigenvalues; so does this one, which keeps the two within
    rounding of each other. TF32 would cost 3 decimal digits, so matmuls run in full float32.
    """
    B, C, R, K = rhs.shape
    if R == 0 or K == 0:
        return rhs.clone()
    sizes = np.asarray(sizes, np.int64)
    n = torch.as_tensor(sizes, device=rhs.device)
    Sr = _dst_matrices(sizes[:, 0], R, rhs.device)[:, None]
    Sc = _dst_matrices(sizes[:, 1], K, rhs.device)[:, None]
    fy, fx = _eigen(n[:, 0], R), _eigen(n[:, 1], K)
    denom = (fx[:, None, :] + fy[:, :, None]) - 4.0
    # Beyond an item's size the eigenvalue formula can reach 0 (cos 2pi); those entries are zero.
    denom = torch.where(_interior_mask(rhs, sizes)[:, 0], denom, 1.0)
    scale = (4.0 / ((n[:, 0] + 1) * (n[:, 1] + 1)).to(torch.float32)).reshape(B, 1, 1, 1)
    with _full_float32(rhs.device):
        t = Sr @ rhs @ Sc
        t = t / denom[:, None]
        return (Sr @ t @ Sc) * scale


class _full_float32:
    """Turn TF32 off for CUDA matmuls inside the block and restore the user's setting after."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.saved = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = self.saved


def _interior_mask(rhs: torch.Tensor, sizes: np.ndarray) -> torch.Tensor:
    n = torch.as_tensor(np.asarray(sizes, np.int64), device=rhs.device)
    R, K = rhs.shape[-2:]
    r = torch.arange(R, device=rhs.device)[None, :, None]
    c = torch.arange(K, device=rhs.device)[None, None, :]
    return ((r < n[:, 0, None, None]) & (c < n[:, 1, None, None]))[:, None]


def _neighbours(u: torch.Tensor) -> torch.Tensor:
    p = F.pad(u, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def jacobi_iterations(sizes: np.ndarray) -> int:
    """Jacobi sweeps for agreement with OpenCV: the error decays like (1 - c/n^2)^k."""
    n = int(np.max(sizes, initial=0))
    return max(1, int(2.5 * n * n))


def sor_iterations(sizes: np.ndarray) -> int:
    """Red-black SOR sweeps with the optimal relaxation: the error decays like (1 - c/n)^k."""
    n = int(np.max(sizes, initial=0))
    return max(1, int(3 * n) + 10)


def sor_omega(sizes: np.ndarray) -> np.ndarray:
    """Optimal SOR relaxation per item for the model problem on its own grid."""
    n = np.maximum(np.asarray(sizes).max(axis=1), 1)
    return (2.0 / (1.0 + np.sin(np.pi / (n + 1)))).astype(np.float32)


def jacobi_solve(rhs, guess, sizes, iterations: int | None = None):
    """Jacobi sweeps (two buffers); the simple reference of the iterative path."""
    it = jacobi_iterations(sizes) if iterations is None else iterations
    inside = _interior_mask(rhs, sizes)
    u = guess * inside
    for _ in range(it):
        u = (_neighbours(u) - rhs) * 0.25 * inside
    return u


def _checker(rhs: torch.Tensor) -> torch.Tensor:
    R, K = rhs.shape[-2:]
    r = torch.arange(R, device=rhs.device)[:, None]
    c = torch.arange(K, device=rhs.device)[None, :]
    return (r + c) % 2 == 0


def sor_solve(rhs, guess, sizes, iterations: int | None = None):
    """Red-black successive over-relaxation: red cells (row + col even) update from black ones,
    then black from red, so each half-sweep is race-free in place."""
    it = sor_iterations(sizes) if iterations is None else iterations
    inside = _interior_mask(rhs, sizes)
    red = _checker(rhs)
    omega = torch.as_tensor(sor_omega(sizes), device=rhs.device).reshape(-1, 1, 1, 1)
    u = guess * inside
    for _ in range(it):
        for colour in (red, ~red):
            gs = (_neighbours(u) - rhs) * 0.25
            u = torch.where(colour & inside, u + omega * (gs - u), u)
    return u


SOLVERS = {"dst": dst_solve, "jacobi": jacobi_solve, "sor": sor_solve}
