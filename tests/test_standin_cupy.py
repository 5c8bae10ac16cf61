"""nsa_fast.blend.cuda through a stand-in CuPy (tests/emulation/standin_cupy.py), on the CPU.

The stand-in receives exactly what cuda.py sends to CuPy, refuses what CUDA would refuse (or
silently get wrong), and runs the received kernel source on CPU threads, the results landing in
the tensors' own memory.
So these tests hold the CUDA launcher itself, not only the kernels, to the torch twins bit for
bit, and check its guards. Only what truly needs a GPU is patched: the CUDA-tensor check
(``cuda._check_cuda``) and ``torch.cuda.current_stream``.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from emulation.harness import require
from nsa_fast.blend import cuda
from nsa_fast.errors import NsaError
from nsa_fast.blend.kernels import kernel_source
from nsa_fast.blend.solvers import jacobi_solve, sor_solve
from nsa_fast.median import disk_median

STREAM = 0x5EED5  # the pointer of torch's current stream in these tests


class _TorchStream:
    cuda_stream = STREAM


class _Protocol:
    """An object offering the CUDA stream protocol, as cuda.py hands one to CuPy."""

    def __init__(self, ptr=STREAM):
        self.ptr = ptr

    def __cuda_stream__(self):
        return 0, self.ptr


@pytest.fixture
def cp(monkeypatch):
    require("library")
    from emulation import standin_cupy

    standin_cupy.reset()
    monkeypatch.setitem(sys.modules, "cupy", standin_cupy)
    monkeypatch.setattr(cuda, "_MODULES", {})
    monkeypatch.setattr(cuda, "_check_cuda", lambda *tensors: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _TorchStream())
    yield standin_cupy
    # no module may be built again on a second device (a test that does so on purpose clears the log)
    assert standin_cupy.lazy_compiles == []
    standin_cupy.reset()


def _problem(seed, B=3, C=2, R=23, K=31):
    rng = np.random.default_rng(seed)
    sizes = np.array([[R, K], [R - 7, K - 12], [5, 3], [R, 2], [1, K]][:B], np.int64)
    rhs = torch.zeros(B, C, R, K)
    guess = torch.zeros(B, C, R, K)
    for b, (h, w) in enumerate(sizes):
        rhs[b, :, :h, :w] = torch.from_numpy(rng.normal(0, 30, (C, h, w)).astype(np.float32))
        guess[b, :, :h, :w] = torch.from_numpy(rng.uniform(0, 255, (C, h, w)).astype(np.float32))
    return rhs, guess, sizes


def _maps(seed, P=3, H=37, W=53):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 766, (P, H, W)).astype(np.int16)
    x[1:, : H // 3] = 0
    return torch.from_numpy(x)


def _median_twin(x: torch.Tensor) -> np.ndarray:
    return np.stack([disk_median(m.astype(np.uint16), 5).astype(np.int16) for m in x.numpy()]).reshape(x.shape)


# --- the stand-in's rules --------------------------------------------------------------------


def _view(cp, t):
    """A CuPy view of ``t`` taken as cuda.py takes it: on torch's current stream."""
    with cp.cuda.Device(0), cp.cuda.Stream.from_external(_Protocol()):
        return cp.from_dlpack(t)


def test_a_view_taken_off_torch_stream_is_refused(cp):
    # DLPack orders the exchange against CuPy's current stream: outside the context that is the
    # legacy default stream, which would make torch's default stream wait for the synthesis.
    with pytest.raises(cp.LaunchRuleError, match="from_dlpack outside a Stream.from_external context"):
        cp.from_dlpack(torch.zeros(3))
    assert _view(cp, torch.zeros(3)).shape == (3,)


def _sweep_args(cp, u, scratch, rhs, sizes, R=6, K=9):
    """jacobi_block's arguments for one sweep of one 1-channel plane in global memory."""
    return (_view(cp, u), _view(cp, scratch), _view(cp, rhs),
            _view(cp, torch.from_numpy(sizes.astype(np.int32))), np.int32(1), np.int32(R), np.int32(K),
            np.int32(1), np.int32(0))


@pytest.fixture
def sweep(cp):
    """jacobi_block of the real source and a one-sweep problem: (kernel, args, u, twin's answer);
    the kernel writes its answer into u, which starts as -1 where the twin's answer is not."""
    mod = cp.RawModule(code=kernel_source("poisson_iter.cu"))
    rhs, guess, sizes = _problem(7, B=1, C=1, R=6, K=9)
    u = torch.full_like(guess, -1.0)
    args = _sweep_args(cp, u, torch.zeros_like(u), rhs, sizes)
    with cp.cuda.Device(0):
        mod.compile()
        f = mod.get_function("jacobi_block")
    return f, args, u, jacobi_solve(rhs, torch.full_like(guess, -1.0), sizes, iterations=1)


def _launch(cp, f, args, grid=(1, 1, 1), block=(256, 1, 1), shared_mem=0, device=True, stream=STREAM):
    if not device:
        with cp.cuda.Stream.from_external(_Protocol(stream)):
            return f(grid, block, args, shared_mem=shared_mem)
    with cp.cuda.Device(0):
        if stream is None:
            return f(grid, block, args, shared_mem=shared_mem)
        with cp.cuda.Stream.from_external(_Protocol(stream)):
            return f(grid, block, args, shared_mem=shared_mem)


def test_a_launch_by_the_rules_runs_the_kernel(cp, sweep):
    f, args, u_new, want = sweep
    _launch(cp, f, args)
    assert torch.equal(u_new, want)
    (rec,) = cp.launches
    assert (rec.kernel, rec.grid, rec.block) == ("jacobi_block", (1, 1, 1), (256, 1, 1))
    assert (rec.device, rec.stream) == (0, STREAM)


def _arg(i, value):
    return lambda cp, args: args[:i] + (value(cp, args) if callable(value) else value,) + args[i + 1:]


BROKEN_ARGS = {
    "a Python int for int": (_arg(4, 1), "Python int, which CuPy passes as 8 bytes"),
    "an int64 for int": (_arg(4, np.int64(1)), "numpy scalar of int32, got int64"),
    "a float32 for int": (_arg(6, np.float32(9)), "numpy scalar of int32, got float32"),
    "a missing argument": (lambda cp, args: args[:-1], "takes 9 arguments"),
    "one argument too many": (lambda cp, args: args + (np.int32(0),), "takes 9 arguments"),
    "float64 for float*": (_arg(2, lambda cp, a: _view(cp, torch.zeros(1, 1, 6, 9, dtype=torch.float64))),
                           "points to float32, got an array of float64"),
    "int64 for int*": (_arg(3, lambda cp, a: _view(cp, torch.tensor([[6, 9]]))), "points to int32"),
    "a non-contiguous tensor": (_arg(2, lambda cp, a: _view(cp, torch.zeros(1, 1, 9, 6).transpose(2, 3))),
                                "not C-contiguous"),
    "a numpy array for a pointer": (_arg(0, np.zeros((1, 1, 6, 9), np.float32)),
                                    "must be an array from cupy.from_dlpack"),
    "an array for a scalar": (_arg(5, lambda cp, a: a[0]), "is a scalar, got an array"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_ARGS))
def test_arguments_cuda_would_misread_are_refused(cp, sweep, case):
    f, args, u_new, _ = sweep
    change, message = BROKEN_ARGS[case]
    with pytest.raises(cp.LaunchRuleError, match=message):
        _launch(cp, f, change(cp, args))
    assert not cp.launches and (u_new == -1).all()


BROKEN_GEOMETRY = {
    "1025 threads": (dict(block=(25, 41, 1)), "1025 threads"),
    "block x 1025": (dict(block=(1025, 1, 1)), "1025 threads"),
    "32 x 32 x 2 threads": (dict(block=(32, 32, 2)), "2048 threads"),
    "block z 65": (dict(block=(1, 1, 65)), "at most"),
    "48 KiB + 4 of shared memory": (dict(shared_mem=48 * 1024 + 4), "49156 bytes of dynamic shared memory"),
    "negative shared memory": (dict(shared_mem=-4), "dynamic shared memory"),
    "grid z 65536": (dict(grid=(1, 1, 65536)), "exceeds CUDA's limits"),
    "grid y 65536": (dict(grid=(1, 65536, 1)), "exceeds CUDA's limits"),
    "grid x 2^31": (dict(grid=(2**31, 1, 1)), "exceeds CUDA's limits"),
    "an empty grid": (dict(grid=(0, 1, 1)), "extent below 1"),
    "an empty block": (dict(block=(32, 0, 1)), "extent below 1"),
    "a grid of 4 extents": (dict(grid=(1, 1, 1, 1)), "tuple of 1 to 3 ints"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_GEOMETRY))
def test_launches_cuda_refuses_are_refused(cp, sweep, case):
    f, args, u_new, _ = sweep
    change, message = BROKEN_GEOMETRY[case]
    with pytest.raises(cp.LaunchRuleError, match=message):
        _launch(cp, f, args, **change)
    assert not cp.launches and (u_new == -1).all()


def test_the_limits_themselves_are_allowed(cp, sweep):
    f, args, _, _ = sweep
    cp.execute = False  # checked and logged, not run: the grid is far too large for a CPU
    for change in (dict(block=(1024, 1, 1)), dict(block=(16, 1, 64)), dict(shared_mem=48 * 1024),
                   dict(grid=(2**31 - 1, 65535, 65535))):
        _launch(cp, f, args, **change)
    assert len(cp.launches) == 4


@pytest.mark.parametrize("case,message", [
    pytest.param(dict(stream=None), "outside a Stream.from_external context", id="no stream context"),
    pytest.param(dict(device=False), "outside a cupy.cuda.Device context", id="no device context"),
    pytest.param(dict(stream=STREAM + 8), "torch's current stream of device 0 is 0x5eed5", id="another stream"),
])
def test_launches_off_torch_stream_are_refused(cp, sweep, case, message):
    f, args, u_new, _ = sweep
    with pytest.raises(cp.LaunchRuleError, match=message):
        _launch(cp, f, args, **case)
    assert not cp.launches and (u_new == -1).all()


def test_unknown_kernels_and_streams_of_its_own_are_refused(cp):
    mod = cp.RawModule(code=kernel_source("poisson_iter.cu"))
    with cp.cuda.Device(0):
        mod.compile()
        with pytest.raises(cp.LaunchRuleError, match="no kernel 'sor_sweep'"):
            mod.get_function("sor_sweep")
    with pytest.raises(cp.LaunchRuleError, match="only Stream.from_external"):
        cp.cuda.Stream()
    with pytest.raises(cp.LaunchRuleError, match=r"\(0, stream pointer as int\)"):
        cp.cuda.Stream.from_external(type("S", (), {"__cuda_stream__": lambda self: STREAM})())


# --- cuda.py against the torch twins ---------------------------------------------------------


def _only(cp, kernel):
    assert cp.launches and {r.kernel for r in cp.launches} == {kernel}
    assert all((r.device, r.stream) == (0, STREAM) for r in cp.launches)
    return cp.launches


def test_jacobi_solve_cuda_equals_its_twin_in_one_launch(cp):
    rhs, guess, sizes = _problem(4)
    got = cuda.jacobi_solve_cuda(rhs, guess, sizes, 41)
    assert torch.equal(got, jacobi_solve(rhs, guess, sizes, 41))
    (rec,) = _only(cp, "jacobi_block")  # all 41 sweeps in one launch, one block a plane
    assert (rec.grid, rec.block, rec.shared_mem) == ((6, 1, 1), (cuda.BLOCK_THREADS, 1, 1), 2 * 23 * 31 * 4)
    assert [int(a) for a in rec.args[-5:]] == [2, 23, 31, 41, 1]  # C, R, K, sweeps, two planes in shared memory
    cuda.jacobi_solve_cuda(rhs, guess, sizes, 1)
    assert len(cp.modules) == 1  # compiled once per device and file


def test_sor_solve_cuda_in_shared_memory_equals_its_twin(cp):
    rhs, guess, sizes = _problem(5, B=5)
    got = cuda.sor_solve_cuda(rhs, guess, sizes, 30)
    assert torch.equal(got, sor_solve(rhs, guess, sizes, 30))
    (rec,) = _only(cp, "sor_block")
    assert (rec.grid, rec.block, rec.shared_mem) == ((10, 1, 1), (cuda.BLOCK_THREADS, 1, 1), 23 * 31 * 4)
    assert [int(a) for a in rec.args[-2:]] == [30, 1]


@pytest.mark.parametrize("solver,twin,iterations", [(cuda.sor_solve_cuda, sor_solve, 8),
                                                    (cuda.jacobi_solve_cuda, jacobi_solve, 7)])
def test_solves_beyond_shared_memory_run_in_global_memory_in_one_launch(cp, solver, twin, iterations):
    rhs, guess, sizes = _problem(6, B=2, C=1, R=100, K=125)  # 50000 bytes a plane: over 48 KiB
    got = solver(rhs, guess, sizes, iterations)
    assert torch.equal(got, twin(rhs, guess, sizes, iterations))
    (rec,) = cp.launches
    assert rec.grid == (2, 1, 1) and rec.shared_mem == 0 and int(rec.args[-1]) == 0


def test_disk_median_cuda_equals_its_twin(cp):
    x = _maps(8)
    x[2] = torch.from_numpy(np.random.default_rng(9).integers(0, 4, (37, 53)) * 255)
    got = cuda.disk_median_cuda(x)
    np.testing.assert_array_equal(got.numpy(), _median_twin(x))
    (rec,) = _only(cp, "median_disk")
    assert rec.grid == (4, 3, 3) and rec.block == (*cuda.MEDIAN_BLOCK, 1)


# --- cuda.py's guards ------------------------------------------------------------------------


@pytest.mark.parametrize("shape,sizes", [((0, 3, 8, 8), np.zeros((0, 2))), ((2, 0, 5, 5), [[5, 5], [5, 5]]),
                                         ((2, 3, 0, 5), [[0, 0], [0, 5]]), ((2, 1, 4, 0), [[4, 0], [0, 0]])])
@pytest.mark.parametrize("solver,twin", [(cuda.jacobi_solve_cuda, jacobi_solve), (cuda.sor_solve_cuda, sor_solve)])
def test_empty_problems_launch_nothing(cp, shape, sizes, solver, twin):
    rhs = torch.ones(shape)
    sizes = np.asarray(sizes, np.int64)
    got = solver(rhs, rhs.clone(), sizes, 5)
    assert got.shape == shape and torch.equal(got, twin(rhs, rhs.clone(), sizes, 5))
    assert not cp.launches


@pytest.mark.parametrize("iterations", [0, -1])
def test_no_iterations_and_empty_maps_launch_nothing(cp, iterations):
    rhs, guess, sizes = _problem(10)
    for solver, twin in [(cuda.sor_solve_cuda, sor_solve), (cuda.jacobi_solve_cuda, jacobi_solve)]:
        assert torch.equal(solver(rhs, guess, sizes, iterations), twin(rhs, guess, sizes, iterations))
    for shape in [(0, 5, 5), (2, 0, 5), (2, 5, 0)]:
        assert cuda.disk_median_cuda(torch.zeros(shape, dtype=torch.int16)).shape == shape
    assert not cp.launches


def test_median_maps_beyond_the_grid_are_split(cp, monkeypatch):
    """With the grid's z extent cut to 4, every median launch stays within it and the result is the
    twin's; the solvers put planes along x (2^31 - 1 blocks) and take one launch whatever z allows."""
    monkeypatch.setattr(cuda, "MAX_GRID_YZ", 4)
    x = _maps(12, P=9, H=20, W=17)
    np.testing.assert_array_equal(cuda.disk_median_cuda(x).numpy(), _median_twin(x))
    assert [r.grid[2] for r in cp.launches] == [4, 4, 1]
    cp.reset()
    rhs, guess, sizes = _problem(11, B=5, C=2, R=12, K=14)
    assert torch.equal(cuda.jacobi_solve_cuda(rhs, guess, sizes, 3), jacobi_solve(rhs, guess, sizes, 3))
    assert torch.equal(cuda.sor_solve_cuda(rhs, guess, sizes, 5), sor_solve(rhs, guess, sizes, 5))
    assert [r.grid for r in cp.launches] == [(10, 1, 1), (10, 1, 1)]


def test_65536_planes_take_one_solver_launch_and_two_median_launches(cp):
    """At the real limit (checked and logged, not run): 65537 one-cell planes."""
    cp.execute = False
    rhs = torch.zeros(65537, 1, 1, 2)
    cuda.jacobi_solve_cuda(rhs, rhs, np.ones((65537, 2), np.int64) * [1, 2], 1)
    assert [r.grid for r in cp.launches] == [(65537, 1, 1)]
    cp.reset()
    cp.execute = False
    cuda.disk_median_cuda(torch.zeros(65537, 2, 3, dtype=torch.int16))
    assert [r.grid for r in cp.launches] == [(1, 1, 65535), (1, 1, 2)]


@pytest.mark.parametrize("sizes,message", [([[24, 31], [5, 3]], "lie outside the 23x31 planes"),
                                           ([[23, 32], [5, 3]], "lie outside the 23x31 planes"),
                                           ([[23, 31], [-1, 3]], "lie outside"),
                                           ([[23, 31]], r"sizes must be \(2, 2\)")])
@pytest.mark.parametrize("solver", [cuda.jacobi_solve_cuda, cuda.sor_solve_cuda])
def test_sizes_beyond_the_tensor_are_refused(cp, solver, sizes, message):
    rhs, guess, _ = _problem(13, B=2)
    with pytest.raises(cuda.KernelLaunchError, match=message):
        solver(rhs, guess, np.array(sizes), 3)
    assert not cp.launches


def test_wrong_dtypes_are_refused_before_launch(cp):
    rhs, guess, sizes = _problem(14, B=2)
    with pytest.raises(cuda.KernelLaunchError, match="contiguous torch.float32"):
        cuda.sor_solve_cuda(rhs.double(), guess.double(), sizes, 3)
    with pytest.raises(cuda.KernelLaunchError, match="contiguous torch.int16"):
        cuda.disk_median_cuda(torch.zeros(2, 5, 5, dtype=torch.int32))
    assert not cp.launches


# --- the whole batched executor --------------------------------------------------------------


def test_batched_executor_on_the_kernels_equals_its_torch_twin(cp):
    """A synthetic batch (bottle: object masks, NORMAL clone, logistic labels) made with the CUDA
    solver and median through the stand-in is the batch of the torch twins, bit for bit.
    Seed 3 gives two samples with 3 and 2 patches of different sizes (kept small: every
    shared-memory SOR iteration is two barriers of 256 CPU threads)."""
    from _support import objects_on_background
    from nsa_fast.blend.batched import BatchedExecutor
    from nsa_fast.presets import get_preset
    from nsa_fast.objects import object_mask
    from nsa_fast.sampler import get_task, sample_plan

    B, seed, preset = 2, 3, get_preset("bottle")
    imgs = objects_on_background(B + 3, seed=seed)
    dst, src = np.stack(imgs[:B]), np.stack(imgs[3:B + 3])
    so = [object_mask(s, preset.background) for s in src]
    do = [object_mask(d, preset.background) for d in dst]
    rng = np.random.default_rng(seed)
    plans = [sample_plan(dst.shape[1:3], preset, get_task("nsa"), rng, so[i], do[i]) for i in range(B)]
    args = (torch.from_numpy(dst), torch.from_numpy(src), plans, "logistic")
    kw = dict(logistic=preset.logistic, src_obj=torch.from_numpy(np.stack(so)),
              dst_obj=torch.from_numpy(np.stack(do)), n_max=preset.n_max)
    ours = BatchedExecutor(solver=cuda.sor_solve_cuda, disk_median=cuda.disk_median_cuda)(*args, **kw)
    kernels = {r.kernel for r in cp.launches}
    twin = BatchedExecutor(solver=sor_solve, disk_median=None)(*args, **kw)
    assert torch.equal(ours.images, twin.images)
    assert torch.equal(ours.labels, twin.labels)
    assert torch.equal(ours.boxes, twin.boxes)
    assert kernels == {"sor_block", "median_disk"}
    assert [p.n_patches for p in plans] == [3, 2] and (twin.labels > 0.5).any()
    assert (twin.images != torch.from_numpy(dst)).any()


# --- the launcher's own rules, one by one (docs/mutation-batch3.md) --------------------------


@pytest.mark.parametrize("grid, block, shared, refused", [
    ((1,), (1,), 0, None),
    ((2**31 - 1, 65535, 65535), (1024,), 48 * 1024, None),     # every limit itself is allowed
    ((1, 1, 1), (1, 16, 64), 0, None),
    ((), (1,), 0, "must have 1 to 3 positive extents"),
    ((1, 1, 1, 1), (1,), 0, "must have 1 to 3 positive extents"),
    ((1,), (1, 1, 1, 1), 0, "must have 1 to 3 positive extents"),
    ((1, 0), (1,), 0, "must have 1 to 3 positive extents"),
    ((1,), (32, 0), 0, "must have 1 to 3 positive extents"),
    ((1,), (1025,), 0, r"block \(1025,\) has 1025 threads; CUDA allows 1024 \(z at most 64\)\."),
    ((1,), (33, 32), 0, "has 1056 threads"),
    ((1,), (1, 1, 65), 0, "has 65 threads; CUDA allows 1024"),
    ((2**31,), (1,), 0, r"grid \(2147483648,\) exceeds CUDA's limits \(x < 2\^31, y and z <= 65535\)\."),
    ((1, 65536), (1,), 0, "exceeds CUDA's limits"),
    ((1, 1, 65536), (1,), 0, "exceeds CUDA's limits"),
    ((1,), (1,), 48 * 1024 + 1, r"^49153 bytes of dynamic shared memory; at most 49152 without an opt-in\.$"),
    ((1,), (1,), -1, "bytes of dynamic shared memory"),
])
def test_check_launch_refuses_exactly_what_cuda_refuses(grid, block, shared, refused):
    if refused is None:
        cuda.check_launch(grid, block, shared)
        cuda.check_launch(grid, block)
    else:
        with pytest.raises(cuda.KernelLaunchError, match=refused):
            cuda.check_launch(grid, block, shared)


def test_launch_checks_the_shared_memory_it_passes_and_passes_none_by_default():
    calls = []
    fn = lambda grid, block, args, shared_mem: calls.append((grid, block, args, shared_mem))  # noqa: E731
    cuda._launch(fn, (2.0, 1), (32, 8, 1), ("a",))
    assert calls == [((2, 1), (32, 8, 1), ("a",), 0)]
    with pytest.raises(cuda.KernelLaunchError, match="49153 bytes"):
        cuda._launch(fn, (1,), (1,), (), shared_mem=48 * 1024 + 1)
    assert len(calls) == 1


def test_block_and_median_grids_of_real_launches(cp):
    cp.execute = False  # checked and logged, not run
    rhs = torch.zeros(2, 3, 17, 33)
    cuda.jacobi_solve_cuda(rhs, rhs, np.array([[17, 33], [5, 5]]), 2)
    cuda.sor_solve_cuda(torch.zeros(2, 3, 97, 129), torch.zeros(2, 3, 97, 129), np.array([[97, 129], [5, 5]]), 1)
    cuda.disk_median_cuda(torch.zeros(4, 17, 33, dtype=torch.int16))  # one block and one more cell each way
    cuda.disk_median_cuda(torch.zeros(1, 16, 32, dtype=torch.int16))  # whole blocks: none extra
    assert [(r.kernel, r.grid, r.block, r.shared_mem) for r in cp.launches] == [
        ("jacobi_block", (6, 1, 1), (256, 1, 1), 2 * 17 * 33 * 4), ("sor_block", (6, 1, 1), (256, 1, 1), 0),
        ("median_disk", (3, 2, 4), (16, 16, 1), 0), ("median_disk", (2, 1, 1), (16, 16, 1), 0)]


@pytest.mark.parametrize("solver,planes,R,K", [(cuda.sor_solve_cuda, 1, 96, 128), (cuda.jacobi_solve_cuda, 2, 48, 128)])
def test_planes_of_exactly_48_kib_run_in_shared_memory_and_4_bytes_more_do_not(cp, solver, planes, R, K):
    cp.execute = False
    for k, (shared, flag) in ((K, (49152, 1)), (K + 1, (0, 0))):  # 49152 bytes, then one column more
        rhs = torch.zeros(1, 1, R, k)
        solver(rhs, rhs, np.array([[R, k]]), 3)
        assert (cp.launches[-1].shared_mem, int(cp.launches[-1].args[-1])) == (shared, flag)
    assert planes * R * K * 4 == 49152


@pytest.mark.parametrize("iterations", [1, 2, 3, None])
def test_every_sweep_count_and_the_default_equal_the_twins(cp, iterations):
    rhs, guess, sizes = _problem(15, B=2, C=1, R=8, K=13)
    for solver, twin in [(cuda.jacobi_solve_cuda, jacobi_solve), (cuda.sor_solve_cuda, sor_solve)]:
        assert torch.equal(solver(rhs, guess, sizes, iterations), twin(rhs, guess, sizes, iterations)), solver


def test_no_sweeps_compile_nothing(cp):
    rhs, guess, sizes = _problem(16, B=1)
    cuda.jacobi_solve_cuda(rhs, guess, sizes, 0)
    cuda.sor_solve_cuda(rhs, guess, sizes, 0)
    assert not cp.modules and not cuda._MODULES


def test_a_device_without_an_index_compiles_and_launches_on_device_0(cp):
    # a module compiled for one device and launched on another works in CuPy, but only after a
    # second compile and a context on that GPU: the stand-in logs it, and none may happen
    rhs, guess, sizes = _problem(17, B=1, C=1, R=5, K=6)
    cuda.jacobi_solve_cuda(rhs, guess, sizes, 1)  # CPU stand-in tensors: device index None
    assert list(cuda._MODULES) == [(0, "poisson_iter.cu")] and cp.modules[0].devices == {0}
    assert [r.device for r in cp.launches] == [0] and cp.lazy_compiles == []


def test_the_stand_in_logs_a_launch_on_a_device_the_module_was_not_built_for(cp):
    mod = cp.RawModule(code=kernel_source("poisson_iter.cu"))
    with cp.cuda.Device(1):
        mod.compile()
    rhs, guess, sizes = _problem(20, B=1, C=1, R=6, K=9)
    args = _sweep_args(cp, guess, torch.zeros_like(guess), rhs, sizes)
    with cp.cuda.Device(0):
        f = mod.get_function("jacobi_block")  # CuPy loads the module on device 0 now
    _launch(cp, f, args)
    assert cp.lazy_compiles == [("jacobi_block", 0)] and mod.devices == {0, 1}
    # a kernel fetched on device 0 and launched on device 2: loaded there at launch
    with cp.cuda.Device(2), cp.cuda.Stream.from_external(_Protocol()):
        f((1, 1, 1), (256, 1, 1), args)
    assert cp.lazy_compiles[-1] == ("jacobi_block", 2) and mod.devices == {0, 1, 2}
    with pytest.raises(cp.LaunchRuleError, match="outside a cupy.cuda.Device context"):
        mod.get_function("jacobi_block")
    with pytest.raises(cp.LaunchRuleError, match=r"compile\(\) outside a cupy.cuda.Device context"):
        cp.RawModule(code=kernel_source("poisson_iter.cu")).compile()
    cp.lazy_compiles.clear()  # made on purpose here


def test_messages_of_the_guards(cp):
    rhs, guess, sizes = _problem(18, B=2)
    with pytest.raises(cuda.KernelLaunchError, match=r"^rhs and guess must be \(B, C, R, K\) of one shape, got "
                                                     r"\(2, 2, 23\) and \(2, 2, 23\)\.$"):
        cuda.jacobi_solve_cuda(rhs[..., 0], guess[..., 0], sizes, 1)
    with pytest.raises(cuda.KernelLaunchError, match=r"got \(2, 2, 23, 31\) and \(2, 2, 23, 30\)\.$"):
        cuda.sor_solve_cuda(rhs, guess[..., :30], sizes, 1)
    with pytest.raises(cuda.KernelLaunchError, match=r"^sizes \[-1, 23\]\.\.\[2, 32\] lie outside the 23x31 planes"):
        cuda.jacobi_solve_cuda(rhs, guess, np.array([[2, 23], [-1, 32]]), 1)  # per column: min, max
    with pytest.raises(cuda.KernelLaunchError, match=r"^rhs: the kernel takes a contiguous torch.float32 array, "
                                                     r"got torch.float64\.$"):
        cuda.jacobi_solve_cuda(rhs.double(), guess, sizes, 1)
    for solver in (cuda.jacobi_solve_cuda, cuda.sor_solve_cuda):
        with pytest.raises(cuda.KernelLaunchError, match=r"^u: .* got torch.float64\.$"):
            solver(rhs, guess.double(), sizes, 1)
    with pytest.raises(cuda.KernelLaunchError, match=r"^rhs: .* got torch.float64\.$"):
        cuda.sor_solve_cuda(rhs.double(), guess, sizes, 1)
    with pytest.raises(cuda.KernelLaunchError, match=r"^x: the kernel takes a contiguous torch.int16 array, "
                                                     r"got torch.int32\.$"):
        cuda.disk_median_cuda(torch.zeros(2, 5, 5, dtype=torch.int32))
    with pytest.raises(cuda.KernelLaunchError, match=r"^expected \(P, H, W\) maps, got \(5, 5\)\.$"):
        cuda.disk_median_cuda(torch.zeros(5, 5, dtype=torch.int16))
    with pytest.raises(cuda.KernelLaunchError, match=r"^x: .* got torch.int16 \(not contiguous\)\.$"):
        cuda._as_cupy(torch.zeros(4, 6, dtype=torch.int16)[:, ::2], torch.int16, "x")
    assert not cp.launches


class _OnGpu(torch.Tensor):
    """A CPU tensor that calls itself a CUDA tensor (for the CUDA-tensor check alone)."""

    @property
    def is_cuda(self):
        return True


@pytest.mark.parametrize("which", ["rhs", "guess"])
def test_the_solvers_refuse_a_tensor_off_the_gpu(which):
    rhs, guess, sizes = _problem(19, B=1)
    on_gpu = {"rhs": rhs.as_subclass(_OnGpu), "guess": guess.as_subclass(_OnGpu)}
    on_gpu[which] = on_gpu[which].as_subclass(torch.Tensor)
    for solver in (cuda.jacobi_solve_cuda, cuda.sor_solve_cuda):
        with pytest.raises(NsaError, match=r"^the CUDA kernels take CUDA tensors, got one on cpu; use the torch "
                                           r"solvers of nsa_fast\.blend\.solvers on the CPU\.$"):
            solver(on_gpu["rhs"], on_gpu["guess"], sizes, 1)
    with pytest.raises(NsaError, match="take CUDA tensors, got one on cpu"):
        cuda.disk_median_cuda(torch.zeros(1, 5, 5, dtype=torch.int16))


def test_without_cupy_the_message_names_both_wheels(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(NsaError, match=r"^the CUDA kernels need CuPy: pip install 'nsa_fast\[gpu\]' \(cupy-cuda12x, "
                                       r"which still supports Pascal\), or cupy-cuda13x on a CUDA 13 machine "
                                       r"\(Turing and newer\)\.$"):
        cuda.cupy()
