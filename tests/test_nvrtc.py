"""NVRTC compile checks: every kernel builds for the GTX 1080 (sm_61) and Hopper (sm_90).

Only CUDA 12's NVRTC still targets sm_61. On a machine with CUDA 13 alone the sm_61 checks skip
with the reason; under CI (``CI`` set), whose install brings NVRTC 12 (``.[gpu]``), they fail.
``NSA_FAST_NVRTC=/path/to/libnvrtc.so.13`` makes this machine look CUDA 13-only.
"""
import ctypes
import glob
import os
import subprocess
import sys

import pytest

from nsa_fast.blend.kernels import KERNELS, kernel_source


def _nvrtc_or_fail():
    from nsa_fast.blend import nvrtc

    try:
        return nvrtc.load()
    except nvrtc.KernelCompileError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no NVRTC here: {err}")


@pytest.mark.parametrize("arch", ["sm_61", "sm_90"])
@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_kernel_compiles_with_nvrtc(filename, arch):
    from nsa_fast.blend import nvrtc

    nv = _nvrtc_or_fail()
    if not nv.supports(arch):
        chosen = "NSA_FAST_NVRTC chose it" if os.environ.get("NSA_FAST_NVRTC") else "no CUDA 12 NVRTC was found"
        why = (f"NVRTC {nv.version[0]}.{nv.version[1]} ({nv.path}; {chosen}) targets only "
               f"{', '.join(nv.arch_names())}, and CUDA 12's NVRTC is the last that compiles for "
               f"{arch} (pip install 'nvidia-cuda-nvrtc-cu12<13')")
        assert not os.environ.get("CI"), f"CI must check the GTX 1080 build, but {why}"
        pytest.skip(why)
    cubin = nvrtc.compile_cubin(kernel_source(filename), filename, arch)
    assert cubin[:4] == b"\x7fELF"
    for name in KERNELS[filename]:
        assert name.encode() in cubin, f"{name} missing from the {arch} cubin"


def test_a_broken_kernel_fails_the_compile_check():
    from nsa_fast.blend import nvrtc

    _nvrtc_or_fail()
    with pytest.raises(nvrtc.KernelCompileError, match="does not compile for sm_90"):
        nvrtc.compile_cubin('extern "C" __global__ void k(float* x) { x[0] = undefined_name; }', "bad.cu", "sm_90")


def test_an_architecture_nvrtc_lacks_is_refused_with_what_to_do():
    from nsa_fast.blend import nvrtc

    nv = _nvrtc_or_fail()
    assert nv.archs and 35 not in nv.archs  # Kepler left NVRTC with CUDA 12
    with pytest.raises(nvrtc.UnsupportedArchError) as err:
        nvrtc.compile_cubin(kernel_source("poisson_iter.cu"), "poisson_iter.cu", "sm_35")
    msg = str(err.value)
    assert "cannot compile for sm_35" in msg and nv.path in msg          # what arrived, and where
    assert f"targets {nv.arch_names()[0]}..{nv.arch_names()[-1]}" in msg  # what it can do
    assert "nvidia-cuda-nvrtc-cu12" in msg                                # what to do


def _wheel_libraries(major: int) -> list[str]:
    from nsa_fast.blend import nvrtc

    return [p for base in nvrtc._nvidia_dirs()
            for p in sorted(glob.glob(os.path.join(base, "*", "lib", f"libnvrtc.so.{major}")))]


@pytest.mark.parametrize("major,has,lacks", [(12, ["sm_61", "sm_90"], ["sm_35"]),
                                             (13, ["sm_75", "sm_90"], ["sm_61", "sm_70"])])
def test_each_installed_nvrtc_reports_the_architectures_it_targets(monkeypatch, major, has, lacks):
    from nsa_fast.blend import nvrtc

    paths = _wheel_libraries(major)
    if not paths:
        pytest.skip(f"no NVRTC {major} wheel installed here")
    monkeypatch.setenv("NSA_FAST_NVRTC", paths[0])
    nv = nvrtc.load()
    assert nv.path == paths[0] and nv.version[0] == major
    assert set(has) <= set(nvrtc.supported_archs()) and not set(lacks) & set(nvrtc.supported_archs())
    # the library's own list, read independently of the module
    lib = ctypes.CDLL(paths[0])
    count = ctypes.c_int()
    assert lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)) == 0
    assert len(nvrtc.supported_archs()) == count.value


def test_nvrtc_12_is_searched_before_13_in_every_place(monkeypatch, tmp_path):
    from nsa_fast.blend import nvrtc

    monkeypatch.delenv("NSA_FAST_NVRTC", raising=False)
    for sub in ("cuda_nvrtc/lib/libnvrtc.so.12", "cuda_nvrtc/lib/libnvrtc.so.13", "cu13/lib/libnvrtc.so.13",
                "cuda_nvrtc/lib/libnvrtc.alt.so.12", "cuda_nvrtc/lib/libnvrtc-builtins.so.12.9"):
        (tmp_path / "nvidia" / sub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "nvidia" / sub).touch()
    monkeypatch.setattr(nvrtc, "_nvidia_dirs", lambda: [str(tmp_path / "nvidia")])
    found = [c.replace(str(tmp_path / "nvidia"), "") for c in nvrtc._candidates()]
    assert found == ["/cuda_nvrtc/lib/libnvrtc.so.12", "libnvrtc.so.12",
                     "/cu13/lib/libnvrtc.so.13", "/cuda_nvrtc/lib/libnvrtc.so.13", "libnvrtc.so.13"]


def test_the_nvidia_package_is_searched_in_every_site_folder(monkeypatch, tmp_path):
    from nsa_fast.blend import nvrtc

    for site in ("a", "b"):
        (tmp_path / site / "nvidia").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "a"), str(tmp_path / "b"), *sys.path])
    dirs = [os.path.realpath(d) for d in nvrtc._nvidia_dirs()]
    assert str((tmp_path / "a" / "nvidia").resolve()) in dirs and str((tmp_path / "b" / "nvidia").resolve()) in dirs


def test_nsa_fast_nvrtc_is_the_only_library_tried(monkeypatch, tmp_path):
    from nsa_fast.blend import nvrtc

    missing = str(tmp_path / "libnvrtc.so.12")
    monkeypatch.setenv("NSA_FAST_NVRTC", missing)
    assert nvrtc._candidates() == [missing]
    with pytest.raises(nvrtc.KernelCompileError, match="NSA_FAST_NVRTC names an NVRTC library that could not be loaded"):
        nvrtc.load()


def test_nvrtc_12_is_loaded_when_installed(monkeypatch):
    from nsa_fast.blend import nvrtc

    monkeypatch.delenv("NSA_FAST_NVRTC", raising=False)
    if not _wheel_libraries(12):
        assert not os.environ.get("CI"), "CI installs nvidia-cuda-nvrtc-cu12 (.[gpu]), but it is not here"
        pytest.skip("no nvidia-cuda-nvrtc-cu12 wheel installed here")
    assert nvrtc.load().version[0] == 12, "the CUDA 12 NVRTC is the one that still targets sm_61"


def test_nvrtc_13_compiles_in_a_process_that_has_not_loaded_torch():
    """torch loads its own NVRTC 13 on import, which would hide that NVRTC 13 cannot find its
    builtins library on its own (it has no RUNPATH); the doctor and these checks must not rely on it."""
    paths = _wheel_libraries(13)
    if not paths:
        assert not os.environ.get("CI"), "CI's torch 2.14 wheels bring NVRTC 13 (cuda-toolkit[nvrtc]), but it is not here"
        pytest.skip("no NVRTC 13 wheel installed here (torch's CUDA 13 wheels bring one)")
    code = ("import sys; from nsa_fast.blend import nvrtc; from nsa_fast.blend.kernels import kernel_source; "
            "assert 'torch' not in sys.modules; "
            "print(len(nvrtc.compile_cubin(kernel_source('poisson_iter.cu'), 'poisson_iter.cu', 'sm_90')))")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NSA_FAST_NVRTC": paths[0]},
                         capture_output=True, text=True)
    assert run.returncode == 0 and int(run.stdout) > 0, run.stderr
