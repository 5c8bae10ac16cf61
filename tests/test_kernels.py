"""The CUDA kernels compute what their CPU twins do, and keep the device's rules.

The kernels' own source runs on CPU threads (tests/emulation: one OS thread per CUDA thread, real
__syncthreads barriers, per-block shared memory of exactly the launched size), launched with the
block sizes of ``nsa_fast.blend.cuda``, and is compared bit for bit with the torch twins: in this
process, and in a standalone driver built with ThreadSanitizer, which must find no race. Deleting
any one __syncthreads() from the sources must make the harness fail. The real kernels run on a
GPU when there is one. NVRTC compile checks: tests/test_nvrtc.py; the launcher in cuda.py through
a stand-in CuPy: tests/test_standin_cupy.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from emulation.harness import (EmulationError, Launch, LaunchRuleError, Program, barrier_sites, cooperative,
                               missing_tool, parse_kernels, prebuild, require, to_cpp, without_barrier)
from nsa_fast.blend.cuda import BLOCK_THREADS, MEDIAN_BLOCK
from nsa_fast.blend.kernels import KERNELS, kernel_dir, kernel_source
from nsa_fast.blend.solvers import dst_solve, jacobi_solve, sor_omega, sor_solve
from nsa_fast.median import disk_median


def _program(filename: str, source: str | None = None) -> Program:
    return Program(kernel_source(filename) if source is None else source, str(kernel_dir() / filename))


@pytest.fixture(scope="module", autouse=True)
def _build_in_parallel():
    """Every build this module uses, at once (g++ takes about a second each)."""
    if missing_tool("library"):
        return
    sources = {str(kernel_dir() / f): kernel_source(f) for f in KERNELS}
    mutants = [(without_barrier(src, site), "thread", name) for name, src in sources.items()
               for site in barrier_sites(src)]
    prebuild([(src, kind, name) for name, src in sources.items() for kind in ("library", "thread", "address")]
             + mutants + [(PROBES, kind, "probes.cu") for kind in ("library", "driver", "thread", "address")])


@pytest.fixture(scope="module")
def programs():
    require("library")
    return {f: _program(f) for f in KERNELS}


def _problem(seed, B=3, C=2, R=23, K=31):
    rng = np.random.default_rng(seed)
    sizes = np.array([[R, K], [R - 7, K - 12], [5, 3]][:B], np.int32)
    rhs = np.zeros((B, C, R, K), np.float32)
    guess = np.zeros_like(rhs)
    for b, (h, w) in enumerate(sizes):
        rhs[b, :, :h, :w] = rng.normal(0, 30, (C, h, w))
        guess[b, :, :h, :w] = rng.uniform(0, 255, (C, h, w))
    return rhs, guess, sizes


def _i32(*values):
    return tuple(np.int32(v) for v in values)


def _items_channels(small: bool):
    return (2, 1) if small else (3, 2)


# Each scenario launches one kernel as nsa_fast.blend.cuda does and knows the twin's answer;
# the small ones (few planes, few iterations) are for the sanitizer runs.
@dataclass
class Scenario:
    launches: list[Launch]
    result: Callable[[], np.ndarray]
    want: np.ndarray

    def mismatch(self) -> str | None:
        got = self.result()
        if np.array_equal(got, self.want):
            return None
        return f"{np.count_nonzero(got != self.want)} of {got.size} values differ from the torch twin"


def jacobi_scenario(small: bool, in_shared: int, iterations: int | None = None) -> Scenario:
    rhs, guess, sizes = _problem(0, *_items_channels(small))
    it = iterations or (3 if small else 41)
    B, C, R, K = rhs.shape
    u, scratch = guess.copy(), np.zeros_like(guess)
    launches = [Launch("jacobi_block", (B * C,), (BLOCK_THREADS,),
                       (u, scratch, rhs, sizes, *_i32(C, R, K, it, in_shared)), shared_mem=in_shared * 2 * R * K * 4)]
    want = jacobi_solve(torch.from_numpy(rhs), torch.from_numpy(guess), sizes, iterations=it).numpy()
    return Scenario(launches, lambda: u, want)


def sor_scenario(small: bool, in_shared: int) -> Scenario:
    rhs, guess, sizes = _problem(1, *_items_channels(small))
    it = 3 if small else 30
    B, C, R, K = rhs.shape
    u, omega = guess.copy(), sor_omega(sizes)
    launches = [Launch("sor_block", (B * C,), (BLOCK_THREADS,), (u, rhs, sizes, omega, *_i32(C, R, K, it, in_shared)),
                       shared_mem=in_shared * R * K * 4)]
    want = sor_solve(torch.from_numpy(rhs), torch.from_numpy(guess), sizes, iterations=it).numpy()
    return Scenario(launches, lambda: u, want)


def median_scenario(small: bool) -> Scenario:
    rng = np.random.default_rng(3)
    P, H, W = (2, 21, 19) if small else (3, 37, 53)
    x = np.zeros((P, H, W), np.int16)
    x[0] = rng.integers(0, 766, (H, W))
    x[1, 5:H - 4, 6:W - 5] = rng.integers(0, 766, (H - 9, W - 11))
    if P > 2:
        x[2] = rng.integers(0, 4, (H, W)) * 255
    out = np.full_like(x, -1)
    bx, by = MEDIAN_BLOCK
    launches = [Launch("median_disk", (-(-W // bx), -(-H // by), P), (bx, by, 1), (x, out, *_i32(H, W)))]
    want = np.stack([disk_median(m.astype(np.uint16), 5).astype(np.int16) for m in x])
    return Scenario(launches, lambda: out, want)


# scenario -> (kernel, how to build it); the block kernels once with the plane in shared memory
# and once in global memory, as cuda.py launches them for small and large planes
SCENARIOS = {
    "jacobi_block/shared": ("jacobi_block", lambda small: jacobi_scenario(small, 1)),
    "jacobi_block/global": ("jacobi_block", lambda small: jacobi_scenario(small, 0)),
    "sor_block/shared": ("sor_block", lambda small: sor_scenario(small, 1)),
    "sor_block/global": ("sor_block", lambda small: sor_scenario(small, 0)),
    "median_disk": ("median_disk", median_scenario),
}
FILE_OF = {k: f for f, names in KERNELS.items() for k in names}


def _scenario(name: str, small: bool) -> Scenario:
    return SCENARIOS[name][1](small)


def _file(name: str) -> str:
    return FILE_OF[SCENARIOS[name][0]]


def test_every_kernel_has_a_scenario():
    assert sorted(p.name for p in kernel_dir().glob("*.cu")) == sorted(KERNELS)
    for filename, names in KERNELS.items():
        assert sorted(parse_kernels(kernel_source(filename))) == sorted(names), filename
    assert sorted({kernel for kernel, _ in SCENARIOS.values()}) == sorted(FILE_OF)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_emulated_kernel_equals_torch_twin(programs, name):
    s = _scenario(name, small=False)
    programs[_file(name)].run(s.launches)
    assert s.mismatch() is None, s.mismatch()


@pytest.mark.parametrize("iterations", [1, 2])
def test_jacobi_in_global_memory_ends_in_u_after_odd_and_even_sweeps(programs, iterations):
    """After an odd number of sweeps the last one sits in the scratch plane; the kernel copies it
    back, so u holds the solve in both modes."""
    for in_shared in (0, 1):
        s = jacobi_scenario(True, in_shared, iterations)
        programs["poisson_iter.cu"].run(s.launches)
        assert s.mismatch() is None, (in_shared, s.mismatch())


def test_emulated_sor_block_converges_to_the_direct_solve(programs):
    rhs, guess, sizes = _problem(2, B=3, C=1, R=15, K=19)
    B, C, R, K = rhs.shape
    u = guess.copy()
    programs["poisson_iter.cu"].run([Launch("sor_block", (B * C,), (BLOCK_THREADS,),
                                            (u, rhs, sizes, sor_omega(sizes), *_i32(C, R, K, 80, 1)), R * K * 4)])
    exact = dst_solve(torch.from_numpy(rhs), torch.from_numpy(guess), sizes).numpy()
    assert np.abs(u - exact).max() < 1e-2


# --- ThreadSanitizer -------------------------------------------------------------------------


def _first_report(stderr: str) -> str:
    return "\n".join(stderr.split("SUMMARY:")[0].splitlines()[:40])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_threadsanitizer_finds_no_race(name):
    """Every kernel, the block kernels with their barriers and shared memory above all, under
    ThreadSanitizer: no race, and still the twin's bits."""
    require("thread")
    s = _scenario(name, small=True)
    run = _program(_file(name)).run_driver(s.launches, "thread")
    assert not run.reported, f"ThreadSanitizer found a race in {name}:\n{_first_report(run.stderr)}"
    assert s.mismatch() is None, s.mismatch()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_addresssanitizer_finds_no_overrun(name):
    """Every array a kernel gets is an allocation of exactly its size in the driver: reading or
    writing beyond it, as CUDA's illegal addresses, is an AddressSanitizer report."""
    require("address")
    s = _scenario(name, small=True)
    run = _program(_file(name)).run_driver(s.launches, "address")
    assert not run.reported, f"AddressSanitizer in {name}:\n{run.stderr[-3000:]}"
    assert s.mismatch() is None, s.mismatch()


def _barriers():
    """(file, kernel, site) of every __syncthreads() in kernels/*.cu."""
    out = []
    for filename in sorted(p.name for p in kernel_dir().glob("*.cu")):
        source = kernel_source(filename)
        kernels = parse_kernels(source).values()
        for site in barrier_sites(source):
            owner = [k.name for k in kernels if k.start <= site[0] < k.end]
            line = source[:site[0]].count("\n") + 1
            out.append(pytest.param(filename, owner[0] if owner else None, site, id=f"{filename}:{line}"))
    return out


@pytest.mark.parametrize("filename,kernel,site", _barriers())
def test_removing_a_barrier_is_caught(filename, kernel, site):
    """The harness is only worth its barriers if it notices one missing: without it, either
    ThreadSanitizer reports a race or the result differs from the twin."""
    require("thread")
    program = _program(filename, without_barrier(kernel_source(filename), site))
    names = [k for k, (owner, _) in SCENARIOS.items() if owner == kernel or (kernel is None and _file(k) == filename)]
    caught = []
    for name in names:
        s = _scenario(name, small=True)
        run = program.run_driver(s.launches, "thread")
        caught.append(run.reported or s.mismatch() is not None)
    assert any(caught), f"{filename}: removing the __syncthreads() at {site} went unnoticed in {names}"


# --- the runtime itself ----------------------------------------------------------------------

PROBES = r'''
// The barrier makes every thread of the block set up and waiting before any reads its indices.
extern "C" __global__ void indices(int* out)
{
    __syncthreads();
    const int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    int* o = out + 12 * (b * blockDim.x * blockDim.y * blockDim.z + t);
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
    o[6] = blockDim.x; o[7] = blockDim.y; o[8] = blockDim.z;
    o[9] = gridDim.x; o[10] = gridDim.y; o[11] = gridDim.z;
}

// Every thread reads what its neighbour wrote before a barrier. Threads from `stay` on return
// first; the others must still get through the barriers.
extern "C" __global__ void rotate(int* out, int stay)
{
    extern __shared__ int s[];
    const int t = threadIdx.x;
    if (t >= stay) { out[blockIdx.x * blockDim.x + t] = -2; return; }
    s[t] = 1000 * blockIdx.x + t;
    __syncthreads();
    const int v = s[(t + 1) % stay];
    __syncthreads();
    s[t] = v;
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = s[(t + stay - 1) % stay];
}

extern "C" __global__ void fill(int* out, int value) { out[threadIdx.x] = value; }

extern "C" __global__ void fill_shared(int* out, int n)
{
    extern __shared__ int s[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = i;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = s[n - 1];
}
'''


@pytest.fixture(scope="module")
def probes():
    require("driver")
    return Program(PROBES, "probes.cu")


def test_each_thread_sees_its_own_indices(probes):
    grid, block = (3, 2, 2), (4, 3, 2)
    out = np.full(12 * 12 * 24, -1, np.int32)
    probes.run_driver([Launch("indices", grid, block, (out,))], "driver", timeout=60)
    got = out.reshape(2, 2, 3, 2, 3, 4, 12)  # bz, by, bx, tz, ty, tx, field
    bz, by, bx, tz, ty, tx = np.indices(got.shape[:-1])
    want = np.stack([tx, ty, tz, bx, by, bz] + [np.full_like(tx, v) for v in block + grid], -1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("stay", [96, 67])
def test_barriers_order_shared_memory_and_let_returned_threads_go(probes, stay):
    n, blocks = 96, 3
    out = np.full(blocks * n, -1, np.int32)
    # A barrier that waited for returned threads would hang: the timeout turns that into a failure.
    probes.run_driver([Launch("rotate", (blocks,), (n,), (out, np.int32(stay)), shared_mem=n * 4)],
                      "driver", timeout=60)
    b, t = np.divmod(np.arange(blocks * n), n)
    np.testing.assert_array_equal(out, np.where(t < stay, 1000 * b + t, -2))


def test_threadsanitizer_sees_barriers_and_exits(probes):
    require("thread")
    n = 96
    out = np.full(2 * n, -1, np.int32)
    run = probes.run_driver([Launch("rotate", (2,), (n,), (out, np.int32(67)), shared_mem=n * 4),
                             Launch("fill_shared", (2,), (64,), (out, np.int32(100)), shared_mem=400)],
                            "thread", timeout=60)
    assert not run.reported, _first_report(run.stderr)
    assert list(out[:2]) == [99, 99]


@pytest.mark.parametrize("shared_mem,overrun", [(400, False), (396, True)])
def test_shared_memory_is_exactly_the_launched_size(shared_mem, overrun):
    """An AddressSanitizer driver sees a kernel write one int past its dynamic shared memory."""
    require("address")
    out = np.zeros(2, np.int32)
    run = Program(PROBES, "probes.cu").run_driver(
        [Launch("fill_shared", (2,), (64,), (out, np.int32(100)), shared_mem=shared_mem)], "address")
    assert run.reported == overrun, run.stderr[-3000:]
    assert ("heap-buffer-overflow" in run.stderr) == overrun


def test_in_process_runs_refuse_writes_beyond_their_memory(probes):
    """In this process no sanitizer watches, so guard bands do: a kernel that writes past an
    argument or past its shared memory is an error, and this process's heap stays whole."""
    out = np.zeros(64, np.int32)
    probes.run([Launch("fill", (1,), (64,), (out, np.int32(5)))])
    assert (out == 5).all()
    with pytest.raises(LaunchRuleError, match="wrote outside the arrays it was given: .* 4 bytes after"):
        probes.run([Launch("fill", (1,), (65,), (out, np.int32(7)))])
    assert (out == 5).all()  # nothing comes back from a launch that strayed
    probes.run([Launch("fill_shared", (2,), (64,), (out, np.int32(100)), shared_mem=400)])
    assert list(out[:2]) == [99, 99]
    with pytest.raises(LaunchRuleError, match="beyond its 396 bytes of dynamic shared memory"):
        probes.run([Launch("fill_shared", (2,), (64,), (out, np.int32(100)), shared_mem=396)])


def test_signatures_and_barriers_are_read_from_the_source():
    source = kernel_source("poisson_iter.cu")
    kernels = parse_kernels(source)
    assert [k for k in kernels if cooperative(source, kernels[k], kernels)] == ["jacobi_block", "sor_block"]
    median = parse_kernels(kernel_source("median_disk.cu"))["median_disk"]
    assert [(p.ctype, p.pointer, str(p.dtype)) for p in median.params] == [
        ("const short* __restrict__", True, "int16"), ("short* __restrict__", True, "int16"),
        ("int", False, "int32"), ("int", False, "int32")]
    text = "// __syncthreads();\n/* __syncthreads() */ __syncthreads();"
    assert [text[a:b] for a, b in barrier_sites(text)] == ["__syncthreads()"]  # comments hold none
    assert barrier_sites(text)[0][0] > text.index("*/")


def test_static_shared_arrays_are_refused_not_made_per_thread():
    with pytest.raises(EmulationError, match="static __shared__"):
        to_cpp('extern "C" __global__ void k(float* x) { __shared__ float t[32]; x[0] = t[0]; }')


# --- on a GPU --------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_solvers_equal_torch_twins():
    from nsa_fast.blend.cuda import jacobi_solve_cuda, sor_solve_cuda

    rhs, guess, sizes = _problem(4)
    r, g = torch.from_numpy(rhs), torch.from_numpy(guess)
    np.testing.assert_array_equal(jacobi_solve_cuda(r.cuda(), g.cuda(), sizes, 41).cpu().numpy(),
                                  jacobi_solve(r, g, sizes, 41).numpy())
    np.testing.assert_array_equal(sor_solve_cuda(r.cuda(), g.cuda(), sizes, 30).cpu().numpy(),
                                  sor_solve(r, g, sizes, 30).numpy())
    big = _problem(5, R=120, K=130)  # too large for shared memory: the planes stay in global memory
    r, g = torch.from_numpy(big[0]), torch.from_numpy(big[1])
    np.testing.assert_array_equal(sor_solve_cuda(r.cuda(), g.cuda(), big[2], 12).cpu().numpy(),
                                  sor_solve(r, g, big[2], 12).numpy())
    np.testing.assert_array_equal(jacobi_solve_cuda(r.cuda(), g.cuda(), big[2], 13).cpu().numpy(),
                                  jacobi_solve(r, g, big[2], 13).numpy())


@pytest.mark.cuda
def test_cuda_median_equals_disk_median():
    from nsa_fast.blend.cuda import disk_median_cuda

    rng = np.random.default_rng(6)
    x = rng.integers(0, 766, (4, 64, 80)).astype(np.int16)
    got = disk_median_cuda(torch.from_numpy(x).cuda()).cpu().numpy()
    for p in range(4):
        np.testing.assert_array_equal(got[p], disk_median(x[p].astype(np.uint16), 5).astype(np.int16))
