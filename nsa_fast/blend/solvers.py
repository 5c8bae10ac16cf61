"""Solvers of the batched 5-point Poisson problem with zero Dirichlet boundary.

Every solver takes rhs (B, C, R, K) float32 (zero outside each item's interior), a first guess of
the same shape and sizes (an ``Interior``, or (B, 2) host ints: rows, cols of each item's
interior, sent to the device in one copy), and returns the
solution u (B, C, R, K) with  u[i-1,j] + u[i+1,j] + u[i,j-1] + u[i,j+1] - 4 u[i,j] = rhs[i,j].
They are torch code for any device; ``nsa_fast.blend.cuda`` has CUDA-kernel versions of the
iterative ones, which compute the same thing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..transfer import DevicePack, HostPack


@dataclass(frozen=True)
class Interior:
    """The extent of each problem's unknowns, on the host and on the device.

    host: (B, 2) int64 rows and columns (the host decides iteration counts and grid sizes);
    dev: the same as int32 on the device; omega: (B,) float32 optimal SOR relaxation per item, on
    the device (computed on the host, so that every device gets the same bits).
    """

    host: np.ndarray
    dev: torch.Tensor
    omega: torch.Tensor

    @staticmethod
    def add_to(pack: HostPack, prefix: str, sizes: np.ndarray) -> None:
        """Put what ``from_pack`` needs into a pack that goes to the device in one copy."""
        pack.add(prefix + "sizes", np.asarray(sizes, np.int32).reshape(-1, 2))
        pack.add(prefix + "omega", sor_omega(sizes))

    @classmethod
    def from_pack(cls, sizes: np.ndarray, packed: DevicePack, prefix: str = "") -> "Interior":
        return cls(np.asarray(sizes, np.int64).reshape(-1, 2), packed.get(prefix + "sizes", torch.int32),
                   packed.get(prefix + "omega", torch.float32))

    @classmethod
    def from_host(cls, sizes, device: torch.device) -> "Interior":
        """One host-to-device copy of the sizes and relaxations."""
        pack = HostPack()
        cls.add_to(pack, "", np.asarray(sizes, np.int64).reshape(-1, 2))
        return cls.from_pack(sizes, pack.send(device))

    def mask(self, R: int, K: int) -> torch.Tensor:
        """(B, 1, R, K) bool: the cells of each item's unknowns on the padded grid."""
        dev = self.dev.device
        r = torch.arange(R, device=dev)[None, :, None]
        c = torch.arange(K, device=dev)[None, None, :]
        return ((r < self.dev[:, 0, None, None]) & (c < self.dev[:, 1, None, None]))[:, None]


def as_interior(sizes, device: torch.device) -> Interior:
    """``sizes`` as an Interior: host (B, 2) sizes are sent to the device (one copy)."""
    return sizes if isinstance(sizes, Interior) else Interior.from_host(sizes, device)


TABLE_STEP = 256  # the trigonometric tables cover sizes in steps of this (NSA's patches stay below 256)
_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _trig_host(T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 tables for sizes n = 0..T, computed in float64 on the host and rounded once:
    sin (T+1, 2T+2): sin(pi m / (n+1)) for m < 2(n+1), the entries of every DST-I matrix, whose
    angles (i k) reduce exactly modulo 2(n+1); eig (T+1, T): 2 cos(pi i / (n+1)) for i = 1..T, the
    eigenvalues as OpenCV computes its filter values (in double, then float)."""
    n = torch.arange(T + 1, dtype=torch.float64)[:, None]
    m = torch.arange(2 * T + 2, dtype=torch.float64)[None, :]
    sin = torch.sin(m * (math.pi / (n + 1))) * (m < 2 * (n + 1))
    i = torch.arange(1, T + 1, dtype=torch.float64)[None, :]
    eig = 2.0 * torch.cos(math.pi * i / (n + 1))
    return sin.to(torch.float32), eig.to(torch.float32)


def _trig_tables(n_max: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables of ``_trig_host`` on ``device``, covering sizes up to at least n_max. One copy
    per device (and per growth), so that no batch computes a sine or a float64 number there."""
    have = _TABLES.get(device)
    if have is None or have[1].shape[1] < n_max:
        T = max(TABLE_STEP, -(-n_max // TABLE_STEP) * TABLE_STEP)
        _TABLES[device] = tuple(t.to(device) for t in _trig_host(T))  # synchronous: any stream may read them
    return _TABLES[device]


def _dst_matrices(n: torch.Tensor, N: int, sin_table: torch.Tensor) -> torch.Tensor:
    """(B, N, N) float32: item b's n_b x n_b DST-I matrix sin(pi (i+1)(k+1) / (n_b+1)), zero-padded,
    gathered where ``n`` (int64 sizes) lives from the table of ``_trig_tables``."""
    # Reduce the angle exactly in integers: (i k) mod 2(n+1). int32 holds i k (N is a patch side),
    # and GPUs divide int32 natively where int64 division is emulated.
    i = torch.arange(1, N + 1, device=n.device, dtype=torch.int32)
    prod = torch.remainder((i[:, None] * i[None, :])[None], (2 * (n.to(torch.int32) + 1))[:, None, None])
    inside = (i[None, :, None] <= n[:, None, None]) & (i[None, None, :] <= n[:, None, None])
    return sin_table.reshape(-1)[n[:, None, None] * sin_table.shape[1] + prod] * inside


def tf32_products() -> bool:
    """Whether cuBLAS may take float32 matrix products in TF32 in this process. Read through the
    API the running torch offers: once a program has used the newer ``fp32_precision`` settings,
    reading the legacy ``allow_tf32`` flag raises."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)  # torch 2.9 and later
    if precision is None:
        return bool(matmul.allow_tf32)
    if precision == "none":  # inherits the process-wide setting
        precision = getattr(torch.backends, "fp32_precision", "ieee")
    return precision == "tf32"


def product_dtype(device: torch.device) -> torch.dtype:
    """float32, the precision OpenCV solves in, unless this process lets cuBLAS take float32
    products in TF32 (``tf32_products``): TF32 keeps 10 bits of mantissa, too few for the
    transform, and the setting is process-wide (turning it off here would race with the
    training thread), so the products then run in float64."""
    return torch.float64 if device.type == "cuda" and tf32_products() else torch.float32


def dst_solve(rhs: torch.Tensor, guess: torch.Tensor, sizes) -> torch.Tensor:
    """Direct solve by the sine transform, as padded batched matrix products (exact in one step).

    OpenCV's solver divides by float32 eigenvalues; so does this one, which keeps the two within
    rounding of each other. Everything runs in float32 (see ``product_dtype`` for the one
    exception); the DST matrices and eigenvalues are gathered from per-device tables.
    """
    B, C, R, K = rhs.shape
    if R == 0 or K == 0 or B == 0:
        return rhs.clone()
    n = as_interior(sizes, rhs.device)
    rows, cols = n.dev[:, 0].long(), n.dev[:, 1].long()
    sin_table, eig_table = _trig_tables(max(R, K), rhs.device)
    Sr, Sc = _dst_matrices(rows, R, sin_table)[:, None], _dst_matrices(cols, K, sin_table)[:, None]
    fy, fx = eig_table[rows, :R], eig_table[cols, :K]
    denom = (fx[:, None, :] + fy[:, :, None]) - 4.0
    # Beyond an item's size the eigenvalue formula can reach 0 (cos 2pi); those entries are zero.
    denom = torch.where(n.mask(R, K)[:, 0], denom, 1.0)
    scale = (4.0 / ((rows + 1) * (cols + 1)).to(torch.float32)).reshape(B, 1, 1, 1)
    dtype = product_dtype(rhs.device)
    Sr, Sc = Sr.to(dtype), Sc.to(dtype)
    t = Sr @ rhs.to(dtype) @ Sc
    t = t / denom[:, None]
    return ((Sr @ t @ Sc) * scale).to(torch.float32)


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
    n = as_interior(sizes, rhs.device)
    it = jacobi_iterations(n.host) if iterations is None else iterations
    inside = n.mask(*rhs.shape[-2:])
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
    n = as_interior(sizes, rhs.device)
    it = sor_iterations(n.host) if iterations is None else iterations
    inside = n.mask(*rhs.shape[-2:])
    red = _checker(rhs)
    omega = n.omega.reshape(-1, 1, 1, 1)
    u = guess * inside
    for _ in range(it):
        for colour in (red, ~red):
            gs = (_neighbours(u) - rhs) * 0.25
            u = torch.where(colour & inside, u + omega * (gs - u), u)
    return u


SOLVERS = {"dst": dst_solve, "jacobi": jacobi_solve, "sor": sor_solve}
