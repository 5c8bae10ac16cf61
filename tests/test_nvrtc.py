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


@pytest.fixture(autouse=True)
def _fresh_load():
    """Each test loads NVRTC itself (load() is cached per candidate list)."""
    from nsa_fast.blend import nvrtc

    nvrtc._load.cache_clear()
    yield
    nvrtc._load.cache_clear()


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
    with pytest.raises(nvrtc.KernelCompileError, match="does not compile for sm_90") as err:
        nvrtc.compile_cubin('extern "C" __global__ void k(float* x) { x[0] = undefined_name; }', "bad.cu", "sm_90")
    # NVRTC's log, whose lines carry the program's name
    assert 'bad.cu(1): error: identifier "undefined_name" is undefined' in str(err.value)


def test_an_architecture_nvrtc_lacks_is_refused_with_what_to_do():
    from nsa_fast.blend import nvrtc

    nv = _nvrtc_or_fail()
    assert nv.archs and 35 not in nv.archs  # Kepler left NVRTC with CUDA 12
    with pytest.raises(nvrtc.UnsupportedArchError) as err:
        nvrtc.compile_cubin(kernel_source("poisson_iter.cu"), "poisson_iter.cu", "sm_35")
    msg = str(err.value)
    assert f"NVRTC {nv.version[0]}.{nv.version[1]} ({nv.path}) cannot compile for sm_35" in msg  # what, where
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


# -- stand-ins for the library: failures a real NVRTC rarely gives ----------------------------

class _FakeLib:
    """The NVRTC calls compile_cubin makes; ``fail`` names the one that returns an error code."""

    def __init__(self, fail=None):
        self.fail, self.calls = fail, []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            if name == "nvrtcDestroyProgram":
                assert args[0] is not None, "the program to destroy is passed by reference"
            if name == "nvrtcGetErrorString":
                return {7: b"NVRTC_ERROR_INTERNAL_ERROR"}.get(args[0], b"unknown code")
            return 7 if name == self.fail else 0
        return call


def _fake_nvrtc(monkeypatch, archs=(75, 80, 90), fail=None):
    from nsa_fast.blend import nvrtc

    nv = nvrtc.Nvrtc(_FakeLib(fail), "/opt/fake/libnvrtc.so.13", (13, 2), archs)
    monkeypatch.setattr(nvrtc, "load", lambda: nv)
    return nv


@pytest.mark.parametrize("fail", ["nvrtcCreateProgram", "nvrtcGetCUBINSize", "nvrtcGetCUBIN"])
def test_a_failing_nvrtc_call_is_named_with_nvrtcs_reason(monkeypatch, fail):
    from nsa_fast.blend import nvrtc

    nv = _fake_nvrtc(monkeypatch, fail=fail)
    with pytest.raises(nvrtc.KernelCompileError, match=rf"^k.cu \(sm_90\): {fail} failed: NVRTC_ERROR_INTERNAL_ERROR$"):
        nvrtc.compile_cubin("src", "k.cu", "sm_90")
    # a program once created is destroyed, whatever failed after
    assert ("nvrtcDestroyProgram" in nv.lib.calls) == (fail != "nvrtcCreateProgram")


@pytest.mark.parametrize("arch, hint", [("sm_70", "Architectures before Turing (sm_75) need CUDA 12's NVRTC"),
                                        ("sm_61", "Architectures before Turing (sm_75) need CUDA 12's NVRTC"),
                                        ("sm_72", "Architectures before Turing (sm_75) need CUDA 12's NVRTC"),
                                        ("sm_100", "Use an NVRTC of a CUDA release that knows this architecture, "
                                                   "or point NSA_FAST_NVRTC at one.")])
def test_the_advice_for_a_missing_architecture_depends_on_its_age(monkeypatch, arch, hint):
    from nsa_fast.blend import nvrtc

    _fake_nvrtc(monkeypatch, archs=(75, 80, 90))
    with pytest.raises(nvrtc.UnsupportedArchError) as err:
        nvrtc.compile_cubin("src", "k.cu", arch)
    assert str(err.value).startswith(f"k.cu: NVRTC 13.2 (/opt/fake/libnvrtc.so.13) cannot compile for {arch}; "
                                     "it targets sm_75..sm_90. ")
    assert str(err.value).endswith(hint if hint.endswith(".") else "libnvrtc.so.12.")
    assert hint in str(err.value)


def test_sm_75_itself_is_not_pascal(monkeypatch):
    from nsa_fast.blend import nvrtc

    _fake_nvrtc(monkeypatch, archs=(80, 90))
    with pytest.raises(nvrtc.UnsupportedArchError, match="Use an NVRTC of a CUDA release"):
        nvrtc.compile_cubin("src", "k.cu", "sm_75")


def test_an_architecture_name_that_is_not_one_is_refused():
    from nsa_fast.blend import nvrtc

    with pytest.raises(nvrtc.KernelCompileError, match=r"^expected an architecture such as sm_61 or sm_90, "
                                                       r"got 'gfx90a'\.$"):
        nvrtc.arch_number("gfx90a")
    assert [nvrtc.arch_number(a) for a in ("sm_61", "sm_90a", "compute_75")] == [61, 90, 75]


def test_the_nvidia_package_path_counts_even_outside_sys_path(monkeypatch, tmp_path):
    # a namespace portion of the nvidia package may live where no sys.path entry leads
    import types

    from nsa_fast.blend import nvrtc

    outside, site = tmp_path / "outside" / "nvidia", tmp_path / "site"
    outside.mkdir(parents=True)
    (site / "nvidia").mkdir(parents=True)
    fake = types.ModuleType("nvidia")
    fake.__path__ = [str(outside)]
    monkeypatch.setitem(sys.modules, "nvidia", fake)
    # the site folder twice (duplicates are listed once) and one without an nvidia folder
    monkeypatch.setattr(sys, "path", [str(site), str(site), str(tmp_path / "none")])
    assert nvrtc._nvidia_dirs() == [str(outside), str(site / "nvidia")]
    del fake.__path__  # a plain module: only the sys.path folders
    assert nvrtc._nvidia_dirs() == [str(site / "nvidia")]


def test_the_builtins_beside_a_library_path_are_loaded_first(monkeypatch, tmp_path):
    from nsa_fast.blend import nvrtc

    for name in ("libnvrtc.so.13", "libnvrtc-builtins.so.13.0", "libnvrtc-builtins.so.13.1", "other.so"):
        (tmp_path / name).touch()
    loaded = []
    monkeypatch.setattr(nvrtc.ctypes, "CDLL", loaded.append)
    nvrtc._preload_builtins(str(tmp_path / "libnvrtc.so.13"))
    assert loaded == [str(tmp_path / "libnvrtc-builtins.so.13.0"), str(tmp_path / "libnvrtc-builtins.so.13.1")]
    loaded.clear()
    monkeypatch.chdir(tmp_path)
    nvrtc._preload_builtins("libnvrtc.so.13")  # a soname: the loader searches, nothing to preload
    assert loaded == []


def test_the_library_refuses_calls_that_break_its_c_signatures():
    nv = _nvrtc_or_fail()
    assert nv.lib.nvrtcGetErrorString(0) == b"NVRTC_SUCCESS"  # bytes, not an address
    with pytest.raises(TypeError):  # a missing argument is refused, not read from a register
        nv.lib.nvrtcCreateProgram(ctypes.byref(ctypes.c_void_p()), b"src", b"k.cu", 0, None)
    with pytest.raises(ctypes.ArgumentError):  # and so is one of the wrong type
        nv.lib.nvrtcCompileProgram(ctypes.c_void_p(), "two", None)


def test_an_nvrtc_too_old_for_cubins_is_named_as_such(monkeypatch, tmp_path):
    from nsa_fast.blend import nvrtc

    class Nvrtc110:  # CUDA 11.0's NVRTC: no nvrtcGetCUBIN*, only PTX
        def __getattr__(self, name):
            if name.startswith("nvrtcGetCUBIN"):
                raise AttributeError(f"undefined symbol: {name}")
            return lambda *a: 0

    monkeypatch.setattr(nvrtc.ctypes, "CDLL", lambda path: Nvrtc110())
    monkeypatch.setenv("NSA_FAST_NVRTC", str(tmp_path / "libnvrtc.so.11.0"))
    with pytest.raises(nvrtc.KernelCompileError, match=r"libnvrtc\.so\.11\.0: an NVRTC too old for cubins "
                                                       r"\(undefined symbol: nvrtcGetCUBINSize\); they need the NVRTC "
                                                       r"of CUDA 11\.1 or later"):
        nvrtc.load()


def test_a_library_that_is_not_nvrtc_is_named_as_such(monkeypatch):
    from nsa_fast.blend import nvrtc

    monkeypatch.setenv("NSA_FAST_NVRTC", "libm.so.6")
    with pytest.raises(nvrtc.KernelCompileError, match=r"libm\.so\.6: not an NVRTC library \(.*nvrtcVersion"):
        nvrtc.load()
