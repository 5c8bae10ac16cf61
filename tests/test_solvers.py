"""Tests of nsa_fast.blend.solvers on the CPU: every solver against a dense solve of the 5-point
Poisson system of each item (numpy.linalg), on a padded batch of different sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nsa_fast.blend import pick, solvers
from nsa_fast.blend.pick import AUTO, SOLVER_NAMES, pick_solver
from nsa_fast.blend.solvers import (SOLVERS, Interior, as_interior, dst_solve, jacobi_iterations, jacobi_solve,
                                    sor_iterations, sor_omega, sor_solve)

CPU = torch.device("cpu")


def dense_solve(rhs: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """u (rows, cols) with u[i-1,j] + u[i+1,j] + u[i,j-1] + u[i,j+1] - 4 u[i,j] = rhs[i,j], zero outside."""
    n = rows * cols
    a = np.zeros((n, n))
    for i in range(rows):
        for j in range(cols):
            k = i * cols + j
            a[k, k] = -4.0
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                if 0 <= i + di < rows and 0 <= j + dj < cols:
                    a[k, (i + di) * cols + j + dj] = 1.0
    return np.linalg.solve(a, rhs[:rows, :cols].reshape(-1)).reshape(rows, cols)


def problem(seed: int, sizes, R: int, K: int, C: int = 2):
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes, np.int64)
    rhs = np.zeros((len(sizes), C, R, K), np.float32)
    guess = np.zeros_like(rhs)
    want = np.zeros((len(sizes), C, R, K))
    for b, (r, c) in enumerate(sizes):
        rhs[b, :, :r, :c] = rng.uniform(-60, 60, (C, r, c))
        guess[b, :, :r, :c] = rng.uniform(0, 255, (C, r, c))
        for ch in range(C):
            want[b, ch, :r, :c] = dense_solve(rhs[b, ch].astype(np.float64), r, c)
    return torch.from_numpy(rhs), torch.from_numpy(guess), sizes, want


SIZES = [(5, 7), (9, 4), (1, 1), (9, 9), (0, 0), (3, 9)]


@pytest.mark.parametrize("name, atol", [("dst", 2e-4), ("jacobi", 0.05), ("sor", 2e-4)])
def test_solvers_match_a_dense_solve(name, atol):
    rhs, guess, sizes, want = problem(0, SIZES, 9, 9)
    got = SOLVERS[name](rhs, guess, sizes)
    assert got.dtype == torch.float32 and got.shape == rhs.shape
    # zero outside each item's interior, the dense solution inside (the solution is O(100); the
    # default sweep counts leave Jacobi within a small fraction of a grey level)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=atol)


@pytest.mark.parametrize("name", ["dst", "jacobi", "sor"])
def test_solvers_take_an_interior_or_host_sizes_alike(name):
    rhs, guess, sizes, _ = problem(1, [(6, 8), (8, 3)], 8, 8, C=1)
    a = SOLVERS[name](rhs, guess, sizes)
    b = SOLVERS[name](rhs, guess, Interior.from_host(sizes, CPU))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dst_solve_of_a_non_square_grid():
    rhs, guess, sizes, want = problem(2, [(3, 11), (7, 2), (7, 11)], 7, 11, C=3)
    np.testing.assert_allclose(dst_solve(rhs, guess, sizes).numpy(), want, rtol=0, atol=2e-4)


def test_dst_solve_of_nothing_is_nothing():
    for shape in ((0, 3, 4, 4), (2, 3, 0, 4), (2, 3, 4, 0)):
        rhs = torch.ones(shape)
        got = dst_solve(rhs, rhs, np.zeros((shape[0], 2), np.int64))
        assert got.shape == rhs.shape and got is not rhs


def test_iterative_solvers_start_from_the_guess():
    rhs, guess, sizes, want = problem(3, [(6, 6)], 6, 6, C=1)
    # no sweep: the guess inside the interior, zero outside it
    padded = torch.zeros((1, 1, 8, 8))
    padded[..., :6, :6] = guess
    padded[..., 6:, :] = 100.0
    padded[..., :, 6:] = 100.0
    rhs8 = torch.zeros((1, 1, 8, 8))
    rhs8[..., :6, :6] = rhs
    for solve in (jacobi_solve, sor_solve):
        np.testing.assert_array_equal(solve(rhs8, padded, sizes, iterations=0).numpy()[..., :6, :6], guess.numpy())
        assert (solve(rhs8, padded, sizes, iterations=0)[..., 6:, :] == 0).all()
        assert (solve(rhs8, padded, sizes, iterations=3)[..., :, 6:] == 0).all()
    # an exact guess is a fixed point
    exact = torch.from_numpy(want).float()
    for solve in (jacobi_solve, sor_solve):
        np.testing.assert_allclose(solve(rhs, exact, sizes, iterations=5).numpy(), want, rtol=0, atol=1e-3)


def test_sor_needs_far_fewer_sweeps_than_jacobi():
    rhs, guess, sizes, want = problem(4, [(12, 12)], 12, 12, C=1)
    err = {}
    for solve in (jacobi_solve, sor_solve):
        err[solve] = np.abs(solve(rhs, guess, sizes, iterations=20).numpy() - want).max()
    assert err[sor_solve] < err[jacobi_solve] / 10


def test_iteration_counts_grow_with_the_largest_item():
    assert jacobi_iterations(np.zeros((0, 2), np.int64)) == 1 <= sor_iterations(np.zeros((0, 2), np.int64))
    small, big = np.array([[4, 2]]), np.array([[4, 2], [3, 20]])
    assert jacobi_iterations(big) > jacobi_iterations(small) >= 1
    assert sor_iterations(big) > sor_iterations(small) >= 1
    # Jacobi's error decays like (1 - c/n^2)^k, SOR's like (1 - c/n)^k: quadratic vs linear growth
    assert jacobi_iterations(np.array([[40, 1]])) == pytest.approx(4 * jacobi_iterations(np.array([[20, 1]])), rel=0.01)
    assert sor_iterations(np.array([[400, 1]])) == pytest.approx(2 * sor_iterations(np.array([[200, 1]])), rel=0.02)


def test_sor_omega_is_the_optimal_relaxation_of_the_model_problem():
    sizes = np.array([[1, 1], [5, 3], [2, 30], [0, 0], [100, 100]])
    got = sor_omega(sizes)
    assert got.dtype == np.float32 and got.shape == (5,)
    # Young: omega = 2 / (1 + sqrt(1 - rho^2)), rho = cos(pi / (n + 1)) the Jacobi spectral radius
    n = np.maximum(sizes.max(axis=1), 1)
    rho = np.cos(np.pi / (n + 1))
    np.testing.assert_allclose(got, 2 / (1 + np.sqrt(1 - rho ** 2)), rtol=1e-6)
    assert got[3] == got[0] == 1.0


def test_interior_mask_and_pass_through():
    n = Interior.from_host([[2, 3], [0, 1]], CPU)
    assert n.host.dtype == np.int64 and n.dev.dtype == torch.int32 and n.omega.dtype == torch.float32
    np.testing.assert_array_equal(n.host, [[2, 3], [0, 1]])
    np.testing.assert_array_equal(n.dev.numpy(), [[2, 3], [0, 1]])
    np.testing.assert_array_equal(n.omega.numpy(), sor_omega(np.array([[2, 3], [0, 1]])))
    m = n.mask(3, 4)
    assert m.shape == (2, 1, 3, 4) and m.dtype == torch.bool
    want = np.zeros((2, 1, 3, 4), bool)
    want[0, 0, :2, :3] = True
    np.testing.assert_array_equal(m.numpy(), want)
    assert as_interior(n, CPU) is n
    assert isinstance(as_interior(np.array([[1, 1]]), CPU), Interior)


def test_dst_matrices_are_float32_roundings_gathered_from_one_table_per_device(monkeypatch):
    """The DST-I matrices come from a float32 table of sines computed once in float64 on the host:
    each entry is the float32 rounding of sin(pi (i+1)(k+1) / (n+1)), zero beyond the item's size,
    on the CPU and on a device alike; the table reaches a device once and grows in steps."""
    from fake_device import DEVICE, FakeDevice, host_data

    monkeypatch.setattr(solvers, "_TABLES", {})
    n = torch.tensor([3, 6, 1, 70])
    N = 71
    sin_table, eig_table = solvers._trig_tables(N, CPU)
    assert sin_table.dtype == eig_table.dtype == torch.float32 and eig_table.shape[1] == solvers.TABLE_STEP
    got = solvers._dst_matrices(n, N, sin_table)
    i = np.arange(1, N + 1, dtype=np.float64)
    for b, k in enumerate(n.tolist()):
        want = np.sin(np.pi * np.outer(i[:k], i[:k]) / (k + 1))
        np.testing.assert_array_equal(got[b, :k, :k].numpy(), torch.from_numpy(want).float().numpy())
        assert not got[b, k:].any() and not got[b, :, k:].any()
        s = got[b, :k, :k].double().numpy()  # DST-I is its own inverse up to (n + 1) / 2
        np.testing.assert_allclose(s @ s, (k + 1) / 2 * np.eye(k), atol=1e-4)
    with FakeDevice() as dev:
        on_device = solvers._dst_matrices(n.to(DEVICE), N, solvers._trig_tables(N, DEVICE)[0])
        assert dev.h2d == 3  # the sizes, and the two tables, once
        solvers._trig_tables(N, DEVICE)
        assert dev.h2d == 3
        solvers._trig_tables(solvers.TABLE_STEP + 1, DEVICE)  # a larger size: the tables grow once
        assert dev.h2d == 5 and solvers._TABLES[DEVICE][1].shape[1] == 2 * solvers.TABLE_STEP
    assert torch.equal(host_data(on_device), got)


def test_eigenvalues_are_float32_roundings_of_the_float64_cosines():
    _, eig = solvers._trig_host(16)
    i = np.arange(1, 17)
    for n in (3, 7, 16):
        want = (2.0 * np.cos(np.pi * i / (n + 1.0))).astype(np.float32)
        np.testing.assert_array_equal(eig[n].numpy(), want)


@pytest.mark.parametrize("legacy,precision,parent,tf32", [
    (False, "ieee", "tf32", False), (False, "tf32", "ieee", True), (False, "none", "tf32", True),
    (False, "none", "ieee", False), (True, None, None, True), (True, None, None, False)])
def test_products_leave_float32_only_when_the_process_allows_tf32(monkeypatch, legacy, precision, parent, tf32):
    """The direct solve multiplies in float32 on a GPU, in float64 only where this process lets
    cuBLAS take float32 products in TF32 (10 mantissa bits), read through the API torch offers."""
    class Matmul:
        pass

    matmul = Matmul()
    if legacy:
        matmul.allow_tf32 = tf32
    else:
        matmul.fp32_precision = precision
        monkeypatch.setattr(torch.backends, "fp32_precision", parent, raising=False)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    assert solvers.tf32_products() is tf32
    assert solvers.product_dtype(torch.device("cuda", 0)) == (torch.float64 if tf32 else torch.float32)
    assert solvers.product_dtype(CPU) == torch.float32


def test_pick_solver():
    for name in ("dst", "jacobi", "sor"):
        assert pick_solver(name, CPU) is SOLVERS[name]
    assert pick_solver("auto", CPU) is SOLVERS[AUTO["cpu"]] is dst_solve
    assert pick_solver("auto", torch.device("meta")) is dst_solve          # unknown kinds: the direct solve
    assert pick_solver("auto", torch.device("cuda")) is dst_solve          # torch code, runs on CUDA as it is
    assert pick_solver("dst", torch.device("cuda")) is dst_solve
    from nsa_fast.blend.cuda import CUDA_SOLVERS

    assert pick_solver("sor", torch.device("cuda")) is CUDA_SOLVERS["sor"]
    assert pick_solver("jacobi", torch.device("cuda")) is CUDA_SOLVERS["jacobi"]
    with pytest.raises(ValueError, match=r"^solver must be one of \('auto', 'dst', 'sor', 'jacobi'\), got 'fast'$"):
        pick_solver("fast", CPU)
    assert SOLVER_NAMES == ("auto", *SOLVERS) or set(SOLVER_NAMES) == {"auto", *SOLVERS}


def test_dst_solve_of_single_rows_and_columns():
    for sizes, R, K in (([(1, 5), (1, 3)], 1, 5), ([(4, 1), (2, 1)], 4, 1)):
        rhs, guess, sizes, want = problem(5, sizes, R, K, C=1)
        np.testing.assert_allclose(dst_solve(rhs, guess, sizes).numpy(), want, rtol=0, atol=2e-4)


@pytest.mark.parametrize("name", ["dst", "jacobi", "sor"])
def test_solvers_keep_tensors_on_their_device_and_return_float32(name, monkeypatch):
    """On a device other than the CPU (``meta``: shapes and dtypes only, as on a GPU) every tensor
    a solver makes lives there, and the result is float32 even where products run in float64."""
    monkeypatch.setattr(solvers, "_TABLES", {})  # tests/fake_device.py's tensors also call themselves meta
    rhs, guess, sizes, _ = problem(6, [(3, 4), (5, 2)], 5, 4, C=2)
    meta = torch.device("meta")
    got = SOLVERS[name](rhs.to(meta), guess.to(meta), sizes, **({} if name == "dst" else {"iterations": 2}))
    assert got.device == meta and got.dtype == torch.float32 and got.shape == rhs.shape


def red_black_sor_sweep(u, rhs, rows, cols, omega):
    """One textbook red-black SOR sweep on one (rows, cols) grid, zero outside: red cells
    ((i + j) even) first, from the old black values, then black cells from the new red ones."""
    u = u.astype(np.float64).copy()
    for parity in (0, 1):
        new = u.copy()
        for i in range(rows):
            for j in range(cols):
                if (i + j) % 2 != parity:
                    continue
                nb = sum(u[i + di, j + dj] for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))
                         if 0 <= i + di < rows and 0 <= j + dj < cols)
                new[i, j] = u[i, j] + omega * ((nb - rhs[i, j]) / 4 - u[i, j])
        u = new
    return u


def test_one_sor_sweep_is_the_textbook_red_black_sweep():
    rhs, guess, sizes, _ = problem(7, [(5, 6), (4, 3)], 5, 6, C=1)
    got = sor_solve(rhs, guess, sizes, iterations=1).numpy()
    omega = sor_omega(sizes)
    for b, (r, c) in enumerate(sizes):
        want = red_black_sor_sweep(guess[b, 0, :r, :c].numpy(), rhs[b, 0].numpy(), r, c, float(omega[b]))
        np.testing.assert_allclose(got[b, 0, :r, :c], want, rtol=1e-5, atol=1e-3)


def test_documented_sweep_counts():
    """3n + 10 red-black SOR sweeps and about 2.5 n^2 Jacobi sweeps for the largest side n
    (the counts the agreement with OpenCV and the benchmarks were measured with)."""
    for sizes in ([[4, 2]], [[3, 20], [7, 1]], [[1, 1]], [[57, 33]]):
        n = int(np.max(sizes))
        assert sor_iterations(np.array(sizes)) == 3 * n + 10
        assert jacobi_iterations(np.array(sizes)) == int(2.5 * n * n)


def test_auto_resolves_through_the_auto_table(monkeypatch):
    monkeypatch.setitem(pick.AUTO, "cpu", "sor")
    assert pick_solver("auto", CPU) is sor_solve
    monkeypatch.setitem(pick.AUTO, "cpu", "jacobi")
    assert pick_solver("auto", CPU) is jacobi_solve
