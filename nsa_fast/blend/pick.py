"""Which Poisson solver runs where (``--solver``): the torch solvers of ``blend.solvers`` on any
device, the CuPy kernels of ``blend.cuda`` on CUDA."""
from __future__ import annotations

import torch

from .solvers import SOLVERS


# ``--solver auto``: the fastest solver on each kind of device. On the CPU the direct solve:
# 64 bottle-preset problems at 224 px on one core take 42.4 ms with dst and 804 ms with SOR
# (medians; pytest bench/test_bench_poisson.py --benchmark-only -k solve, 2026-12-01). On CUDA the direct
# solve too until a GPU has measured otherwise (bash bench/gpu_check.sh prints the per-solver
# times and the fastest): it is two batched matrix products per item, against 3n + 10 dependent
# sweeps for SOR.
AUTO = {"cpu": "dst", "cuda": "dst"}
SOLVER_NAMES = ("auto", "dst", "sor", "jacobi")


def pick_solver(name: str, device: torch.device):
    """The solver called ``name`` for tensors on ``device``: the CuPy kernels of
    ``nsa_fast.blend.cuda`` on CUDA (the direct solve is torch code that runs there as it is),
    the torch solvers elsewhere. ``auto`` resolves by ``AUTO``."""
    if name not in SOLVER_NAMES:
        raise ValueError(f"solver must be one of {SOLVER_NAMES}, got {name!r}")
    if name == "auto":
        name = AUTO.get(device.type, "dst")
    if device.type == "cuda" and name != "dst":
        from .cuda import CUDA_SOLVERS

        return CUDA_SOLVERS[name]
    return SOLVERS[name]
