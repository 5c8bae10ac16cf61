"""The CUDA kernels: they compile for Pascal and Hopper, and they compute what their CPU twins do.

Three levels: NVRTC compile checks (always); the kernels' own source run on the CPU by a small
emulation (tests/emulation, with g++), compared bit for bit with the torch twins; and the real
kernels on a GPU (skipped without CUDA).
"""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nsa_fast.blend.kernels import KERNELS, kernel_dir, kernel_source
from nsa_fast.blend.solvers import jacobi_solve, sor_omega, sor_solve
from nsa_fast.median import disk_median

HERE = Path(__file__).parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        assert not os.environ.get("CI"), "CI machines have g++: the kernel emulation must run there"
        pytest.skip("no C++ compiler to build the CPU emulation of the kernels")
    so = tmp_path_factory.mktemp("emu") / "emu.so"
    subprocess.run([cxx, "-O2", "-ffp-contract=off", "-shared", "-fPIC", f"-I{HERE / 'emulation'}",
                    f"-I{kernel_dir()}", "-x", "c++", str(HERE / "emulation" / "launchers.cpp"),
                    "-o", str(so)], check=True, capture_output=True)
    return ctypes.CDLL(str(so))


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _problem(seed, B=3, C=2, R=23, K=31):
    rng = np.random.default_rng(seed)
    sizes = np.array([[R, K], [R - 7, K - 12], [5, 3]][:B], np.int32)
    rhs = np.zeros((B, C, R, K), np.float32)
    guess = np.zeros_like(rhs)
    for b, (h, w) in enumerate(sizes):
        rhs[b, :, :h, :w] = rng.normal(0, 30, (C, h, w))
        guess[b, :, :h, :w] = rng.uniform(0, 255, (C, h, w))
    return rhs, guess, sizes


def test_emulated_jacobi_equals_torch_twin(emu):
    rhs, guess, sizes = _problem(0)
    B, C, R, K = rhs.shape
    u, u_new = guess.copy(), np.zeros_like(guess)
    emu.run_jacobi(_ptr(u), _ptr(u_new), _ptr(rhs), _ptr(sizes), B * C, C, R, K, 41)
    got = u_new  # an odd number of sweeps ends in the second buffer
    want = jacobi_solve(torch.from_numpy(rhs), torch.from_numpy(guess), sizes, iterations=41).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("runner", ["run_sor_half", "run_sor_block"])
def test_emulated_sor_equals_torch_twin(emu, runner):
    rhs, guess, sizes = _problem(1)
    B, C, R, K = rhs.shape
    omega = sor_omega(sizes)
    u = guess.copy()
    getattr(emu, runner)(_ptr(u), _ptr(rhs), _ptr(sizes), _ptr(omega), B * C, C, R, K, 30)
    want = sor_solve(torch.from_numpy(rhs), torch.from_numpy(guess), sizes, iterations=30).numpy()
    np.testing.assert_array_equal(u, want)


def test_emulated_solvers_converge_to_the_direct_solve(emu):
    from nsa_fast.blend.solvers import dst_solve

    rhs, guess, sizes = _problem(2)
    B, C, R, K = rhs.shape
    u = guess.copy()
    emu.run_sor_block(_ptr(u), _ptr(rhs), _ptr(sizes), _ptr(sor_omega(sizes)), B * C, C, R, K, 200)
    exact = dst_solve(torch.from_numpy(rhs), torch.from_numpy(guess), sizes).numpy()
    assert np.abs(u - exact).max() < 1e-2


def test_emulated_median_equals_disk_median(emu):
    rng = np.random.default_rng(3)
    x = np.zeros((3, 37, 53), np.int16)
    x[0] = rng.integers(0, 766, (37, 53))
    x[1, 5:30, 10:40] = rng.integers(0, 766, (25, 30))
    x[2] = rng.integers(0, 4, (37, 53)) * 255
    out = np.empty_like(x)
    emu.run_median(_ptr(x), _ptr(out), 3, 37, 53)
    for p in range(3):
        np.testing.assert_array_equal(out[p], disk_median(x[p].astype(np.uint16), 5))


@needs_cuda
def test_cuda_solvers_equal_torch_twins():
    from nsa_fast.blend.cuda import jacobi_solve_cuda, sor_solve_cuda

    rhs, guess, sizes = _problem(4)
    r, g = torch.from_numpy(rhs), torch.from_numpy(guess)
    np.testing.assert_array_equal(jacobi_solve_cuda(r.cuda(), g.cuda(), sizes, 41).cpu().numpy(),
                                  jacobi_solve(r, g, sizes, 41).numpy())
    np.testing.assert_array_equal(sor_solve_cuda(r.cuda(), g.cuda(), sizes, 30).cpu().numpy(),
                                  sor_solve(r, g, sizes, 30).numpy())
    big = _problem(5, R=120, K=130)  # too large for shared memory: the half-sweep kernels
    r, g = torch.from_numpy(big[0]), torch.from_numpy(big[1])
    np.testing.assert_array_equal(sor_solve_cuda(r.cuda(), g.cuda(), big[2], 12).cpu().numpy(),
                                  sor_solve(r, g, big[2], 12).numpy())


@needs_cuda
def test_cuda_median_equals_disk_median():
    from nsa_fast.blend.cuda import disk_median_cuda

    rng = np.random.default_rng(6)
    x = rng.integers(0, 766, (4, 64, 80)).astype(np.int16)
    got = disk_median_cuda(torch.from_numpy(x).cuda()).cpu().numpy()
    for p in range(4):
        np.testing.assert_array_equal(got[p], disk_median(x[p].astype(np.uint16), 5).astype(np.int16))
