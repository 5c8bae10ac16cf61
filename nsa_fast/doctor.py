"""``python -m nsa_fast.doctor``: what this machine can run, and what to do about what it cannot.

Reports the GPU and its compute capability, whether this PyTorch build and its cuDNN have kernels
for it, the precision training will use, and whether CuPy, DALI and the project's CUDA kernels
work there.
Without a GPU it checks that the kernels still compile (for sm_61 and sm_90, as far as the NVRTC
found targets them: CUDA 13's no longer targets sm_61, which is then a warning) and says how to
train on the CPU.

Exit codes: 0 the GPU path works; 1 no CUDA GPU is visible (CPU training works: run the trainer
without --gpu-blend); 2 a GPU is visible but something needs fixing (each problem is printed with
what to do).
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable

from .errors import NsaError

OK, NO_GPU, BROKEN = 0, 1, 2


def _line(status: str, what: str, detail: str) -> None:
    print(f"[{status:>4}] {what}: {detail}")


def arch_supported(capability: tuple[int, int], arch_list: Iterable[str]) -> bool:
    """Whether code built for ``arch_list`` (``torch.cuda.get_arch_list()``) runs on a GPU of
    compute capability ``(major, minor)``.

    ``sm_XY`` machine code runs on X == major and Y <= minor (binary compatible within a major
    version: sm_60 runs on a GTX 1080, 6.1); ``compute_XY`` PTX runs on (X, Y) <= (major, minor),
    since the driver compiles it for newer GPUs. Arch-specific code (``sm_90a``) runs only on
    exactly that capability; family code (``sm_100f``) on the same major with Y <= minor. Entries
    of another form are ignored.
    """
    major, minor = capability
    for entry in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", entry.strip())
        if not m:
            continue
        kind, x, y, suffix = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if suffix == "a":
            ok = (x, y) == (major, minor)
        elif kind == "sm" or suffix == "f":
            ok = x == major and y <= minor
        else:
            ok = (x, y) <= (major, minor)
        if ok:
            return True
    return False


PASCAL = (6, 1)   # the GTX 1080, the oldest GPU the default image is built for
CU126_INSTALL = ("use the cu126 image (docker build ., the default STACK=pascal) or pip install "
                 "torch==2.14.1 --index-url https://download.pytorch.org/whl/cu126")
NEWER_INSTALL = ("use a PyTorch build for a newer CUDA (docker build --build-arg STACK=cuda13, or "
                 "pip install torch from https://download.pytorch.org/whl/ for the newest CUDA listed)")


def torch_arch_advice(capability: tuple[int, int], built: list[str]) -> str:
    """What to do when ``built`` has no code for ``capability``: an older CUDA build when the GPU is
    older than every entry (Pascal and Volta on cu128 and later), otherwise a newer one."""
    sm = [(int(m.group(1)), int(m.group(2))) for m in
          (re.fullmatch(r"sm_(\d+)(\d)[af]?", a) for a in built) if m]
    return CU126_INSTALL if sm and all(a > tuple(capability) for a in sm) else NEWER_INSTALL


def check_torch() -> tuple[bool, list[str]]:
    """(GPU usable, problems). Prints the GPU, its capability and the precision chosen."""
    import torch

    _line("info", "torch", f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none (CPU build)'}")
    built = torch.cuda.get_arch_list()
    if built:
        _line("info", "torch kernels", ", ".join(built) + (
            "" if arch_supported(PASCAL, built) else
            "; a GTX 1080-class GPU (sm_61) would need the cu126 build (the default Docker image)"))
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
    if not arch_supported((major, minor), built):
        msg = (f"this PyTorch build ({torch.__version__}, CUDA {torch.version.cuda}) has no kernels for "
               f"{name} ({arch}): expected sm_{major}x with x <= {minor}, or compute_ PTX of {major}.{minor} "
               f"or older, got {', '.join(built) or 'an empty list'}. "
               + torch_arch_advice((major, minor), built))
        _line("FAIL", "torch kernels", msg)
        problems.append(msg)
    precision = "bf16 autocast" if major >= 8 else "fp32 (fp16 and bf16 are slow on this GPU)"
    _line("info", "precision", precision)
    return True, problems


# cuDNN 9.10 is the last line with kernels for Maxwell, Pascal and Volta (compute capability below
# 7.5), by NVIDIA's support matrices; 9.11 and newer fail every convolution there at run time.
CUDNN_LAST_FOR_OLD_GPUS = (9, 10)
CUDNN_FOR_PASCAL = "nvidia-cudnn-cu12==9.10.2.21"


def cudnn_version(number: int | None) -> tuple[int, int, int] | None:
    """torch.backends.cudnn.version() as (major, minor, patch): 9.x numbers are major * 10000 +
    minor * 100 + patch, 8.x ones major * 1000 + minor * 100 + patch."""
    if not number:
        return None
    if number >= 10000:
        return number // 10000, number // 100 % 100, number % 100
    return number // 1000, number // 100 % 10, number % 100


def cudnn_supports(capability: tuple[int, int], version: tuple[int, int, int] | None) -> bool:
    """Whether a cuDNN of ``version`` has kernels for a GPU of ``capability``."""
    if version is None or tuple(capability) >= (7, 5):
        return True
    return version[:2] <= CUDNN_LAST_FOR_OLD_GPUS


def check_cudnn(gpu: bool) -> list[str]:
    """The cuDNN torch loads, and whether it runs on this GPU (or, without one, on a GTX 1080)."""
    import torch

    number = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    version = cudnn_version(number)
    if version is None:
        _line("warn" if gpu else "info", "cuDNN", "not available in this torch build: convolutions run without it")
        return []
    text = ".".join(map(str, version))
    if not gpu:
        pascal = "a GTX 1080-class GPU (sm_61) can use it" if cudnn_supports((6, 1), version) else \
            f"a GTX 1080-class GPU (sm_61) would need cuDNN 9.10 ({CUDNN_FOR_PASCAL}, the default Docker image's)"
        _line("info", "cuDNN", f"{text}; {pascal}")
        return []
    capability = torch.cuda.get_device_capability(0)
    if cudnn_supports(capability, version):
        _line("ok", "cuDNN", f"{text}, has kernels for sm_{capability[0]}{capability[1]}")
        return []
    msg = (f"cuDNN {text} has no kernels for this GPU (sm_{capability[0]}{capability[1]}): 9.10 is the last cuDNN "
           f"line for Maxwell, Pascal and Volta, and every convolution would fail. pip install {CUDNN_FOR_PASCAL} "
           "(with torch's cu126 build), or use the default Docker image, which pins it")
    _line("FAIL", "cuDNN", msg)
    return [msg]


def check_cupy(gpu: bool) -> list[str]:
    try:
        import cupy
    except Exception as err:  # a missing or broken install: report, do not crash
        _line("warn" if not gpu else "FAIL", "CuPy", f"not importable ({err}); pip install 'nsa_fast[gpu]'")
        return ["install CuPy: pip install cupy-cuda12x (CUDA 12, Pascal and newer) or cupy-cuda13x "
                "(CUDA 13, Turing and newer)"] if gpu else []
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
    """Compile every kernel for sm_61, sm_90 and the GPU's arch, as far as the NVRTC found can
    target them, then run the kernels on the GPU.

    An architecture that NVRTC cannot target is a warning, not a problem: CUDA 13's NVRTC (a CUDA
    13-only machine) no longer compiles for sm_61, and the GPU run below compiles with CuPy's own
    NVRTC for the GPU at hand, so it still says whether the GPU path works.
    """
    from .blend import nvrtc
    from .blend.kernels import KERNELS, kernel_source

    wanted = ["sm_61", "sm_90"]
    if gpu:
        import torch

        major, minor = torch.cuda.get_device_capability(0)
        wanted.append(f"sm_{major}{minor}")
    wanted = list(dict.fromkeys(wanted))
    problems = []
    try:
        nv = nvrtc.load()
    except nvrtc.KernelCompileError as err:
        nv = None
        if os.environ.get("NSA_FAST_NVRTC"):  # the user chose a library and it does not load
            _line("FAIL", "kernels", f"not compiled: {err}")
            problems.append(f"NSA_FAST_NVRTC={os.environ['NSA_FAST_NVRTC']!r} does not load as NVRTC; point it at "
                            "a libnvrtc.so.12 (or .so.13), or unset it to search the installed ones")
        else:
            _line("warn", "kernels", f"not compiled: {err}")
    if nv is not None:
        archs = [a for a in wanted if nv.supports(a)]
        skipped = [a for a in wanted if not nv.supports(a)]
        where = f"NVRTC {nv.version[0]}.{nv.version[1]}, {nv.path}"
        if skipped:
            targets = nv.arch_names()
            _line("warn", "kernels", f"not compiled for {', '.join(skipped)}: {where} targets "
                                     f"{targets[0]}..{targets[-1]} only. Checking "
                                     + ("the GTX 1080 (sm_61) build needs CUDA 12's NVRTC: "
                                        f"{nvrtc.INSTALL_12}" if "sm_61" in skipped else
                                        "this architecture needs a newer NVRTC"))
        try:
            for arch in archs:
                for f in KERNELS:
                    nvrtc.compile_cubin(kernel_source(f), f, arch)
            if archs:
                _line("ok", "kernels", f"{', '.join(KERNELS)} compile for {', '.join(archs)} ({where})")
        except (NsaError, OSError) as err:   # NVRTC's log, or kernel sources missing or unreadable
            _line("FAIL", "kernels", str(err))
            problems.append(f"the CUDA kernels could not be compiled ({err}); reinstall nsa_fast, or report it "
                            "with this output if the sources are unchanged")
    if gpu:
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
    from . import cli

    return cli.run(_main, argv)


def _main(argv) -> int:
    from . import __version__
    from .cli import Parser

    Parser(prog="python -m nsa_fast.doctor", description=__doc__).parse_args(argv)
    print(f"nsa_fast {__version__}, Python {sys.version.split()[0]}")
    gpu, problems = check_torch()
    problems += check_cudnn(gpu)
    problems += check_cupy(gpu)
    problems += check_dali(gpu)
    problems += check_kernels(gpu)
    if problems:
        print("\nTo fix:")
        for p in problems:
            print(f"- {p}")
        print(f"error: {len(problems)} problem(s) to fix on this machine, listed above", file=sys.stderr)
        return BROKEN
    if not gpu:
        print("\nNo GPU: the CPU path works (exit code 1 means 'CPU only').")
        return NO_GPU
    print("\nThe GPU path works: python -m nsa_fast.train ... --gpu-blend")
    return OK


if __name__ == "__main__":
    sys.exit(main())
