"""``python -m nsa_fast.doctor``: what this machine can run, and what to do about what it cannot.

Reports the GPU and its compute capability, whether this PyTorch build has kernels for it, the
precision training will use, and whether CuPy, DALI and the project's CUDA kernels work there.
Without a GPU it checks that the kernels still compile (for sm_61 and sm_90) and says how to train
on the CPU.

Exit codes: 0 the GPU path works; 1 no CUDA GPU is visible (CPU training works: run the trainer
without --gpu-blend); 2 a GPU is visible but something needs fixing (each problem is printed with
what to do).
"""
from __future__ import annotations

import sys

OK, NO_GPU, BROKEN = 0, 1, 2


def _line(status: str, what: str, detail: str) -> None:
    print(f"[{status:>4}] {what}: {detail}")


def check_torch() -> tuple[bool, list[str]]:
    """(GPU usable, problems). Prints the GPU, its capability and the precision chosen."""
    import torch

    _line("info", "torch", f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none (CPU build)'}")
    built = torch.cuda.get_arch_list()
    if built:
        pascal = "sm_61" in built
        _line("info", "torch kernels", f"{', '.join(built)}" + (
            "" if pascal else "; a GTX 1080-class GPU (sm_61) would need the cu126 build "
                              "(the default Docker image)"))
    if not torch.cuda.is_available():
        _line("warn", "GPU", "no CUDA GPU visible: train on the CPU without --gpu-blend "
                             "(python -m nsa_fast.train --data ... --workers N)")
        return False, []
    problems = []
    major, minor = torch.cuda.get_device_capability(0)
    name = torch.cuda.get_device_name(0)
    arch = f"sm_{major}{minor}"
    _line("ok", "GPU", f"{name}, compute capability {major}.{minor} ({arch}), "
                       f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB")
    if arch not in built and f"compute_{major}{minor}" not in built:
        problems.append(f"this PyTorch build has no kernels for {arch} (it has {', '.join(built)}): "
                        + ("use the cu126 image (docker build --build-arg STACK=pascal, the default) or "
                           "pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cu126"
                           if major < 7 else "use a PyTorch build for a newer CUDA"))
    precision = "bf16 autocast" if major >= 8 else "fp32 (fp16 and bf16 are slow on this GPU)"
    _line("info", "precision", precision)
    return True, problems


def check_cupy(gpu: bool) -> list[str]:
    try:
        import cupy
    except Exception as err:  # a missing or broken install: report, do not crash
        _line("warn" if not gpu else "FAIL", "CuPy", f"not importable ({err}); pip install 'nsa_fast[gpu]'")
        return ["install CuPy for CUDA 12: pip install cupy-cuda12x"] if gpu else []
    if not gpu:
        _line("info", "CuPy", f"{cupy.__version__} (not exercised without a GPU)")
        return []
    try:
        x = cupy.arange(8, dtype=cupy.float32)
        assert float((x * 2).sum()) == 56.0
        _line("ok", "CuPy", f"{cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
        return []
    except Exception as err:
        _line("FAIL", "CuPy", str(err))
        return [f"CuPy cannot run on this GPU ({err}): for Pascal use cupy-cuda12x, not cupy-cuda13x"]


def check_dali(gpu: bool) -> list[str]:
    try:
        import nvidia.dali as dali
    except Exception as err:
        _line("warn", "DALI", f"not importable ({err}); only --loader dali needs it "
                              "(pip install nvidia-dali-cuda120)")
        return []
    _line("ok" if gpu else "info", "DALI", f"{dali.__version__}" + ("" if gpu else " (CPU mode only here)"))
    return []


def check_kernels(gpu: bool) -> list[str]:
    """Compile every kernel for sm_61 and sm_90 (or the GPU's arch), then run them on the GPU."""
    from .blend.kernels import KERNELS, kernel_source

    problems = []
    try:
        from .blend import nvrtc

        archs = ["sm_61", "sm_90"]
        if gpu:
            import torch

            major, minor = torch.cuda.get_device_capability(0)
            archs.append(f"sm_{major}{minor}")
        for arch in dict.fromkeys(archs):
            for f in KERNELS:
                nvrtc.compile_cubin(kernel_source(f), f, arch)
        _line("ok", "kernels", f"{', '.join(KERNELS)} compile for {', '.join(dict.fromkeys(archs))} "
                               f"(NVRTC {'.'.join(map(str, nvrtc.version()))})")
    except Exception as err:
        _line("FAIL", "kernels", str(err))
        problems.append(str(err))
    if gpu and not problems:
        problems += run_kernels()
    return problems


def run_kernels() -> list[str]:
    """Launch the kernels on the GPU and compare them with their CPU twins."""
    import numpy as np
    import torch

    from .blend.cuda import disk_median_cuda, sor_solve_cuda
    from .blend.solvers import sor_solve
    from .median import disk_median

    try:
        rng = np.random.default_rng(0)
        rhs = torch.from_numpy(rng.normal(0, 20, (2, 3, 20, 24)).astype(np.float32))
        sizes = np.array([[20, 24], [11, 9]])
        want = sor_solve(rhs, torch.zeros_like(rhs), sizes, 20)
        got = sor_solve_cuda(rhs.cuda(), torch.zeros_like(rhs).cuda(), sizes, 20).cpu()
        assert torch.equal(got, want), "SOR kernel differs from its CPU twin"
        x = rng.integers(0, 766, (1, 40, 50)).astype(np.int16)
        med = disk_median_cuda(torch.from_numpy(x).cuda()).cpu().numpy()[0]
        assert np.array_equal(med, disk_median(x[0].astype(np.uint16)).astype(np.int16)), "median kernel differs"
        _line("ok", "kernels on GPU", "SOR and disk median equal their CPU twins")
        return []
    except Exception as err:
        _line("FAIL", "kernels on GPU", str(err))
        return [f"the CUDA kernels do not run correctly here ({err})"]


def main(argv=None) -> int:
    from . import __version__

    print(f"nsa_fast {__version__}, Python {sys.version.split()[0]}")
    gpu, problems = check_torch()
    problems += check_cupy(gpu)
    problems += check_dali(gpu)
    problems += check_kernels(gpu)
    if problems:
        print("\nTo fix:")
        for p in problems:
            print(f"- {p}")
        return BROKEN
    if not gpu:
        print("\nNo GPU: the CPU path works (exit code 1 means 'CPU only').")
        return NO_GPU
    print("\nThe GPU path works: python -m nsa_fast.train ... --gpu-blend")
    return OK


if __name__ == "__main__":
    sys.exit(main())
