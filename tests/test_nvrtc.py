"""NVRTC compile checks: every kernel builds for the GTX 1080 (sm_61) and Hopper (sm_90)."""
import pytest

from nsa_fast.blend.kernels import KERNELS, kernel_source


@pytest.mark.parametrize("arch", ["sm_61", "sm_90"])
@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_kernel_compiles_with_nvrtc(filename, arch):
    from nsa_fast.blend import nvrtc

    assert nvrtc.version()[0] == 12, "the CUDA 12 NVRTC is the one that still targets sm_61"
    cubin = nvrtc.compile_cubin(kernel_source(filename), filename, arch)
    assert cubin[:4] == b"\x7fELF"
    for name in KERNELS[filename]:
        assert name.encode() in cubin, f"{name} missing from the {arch} cubin"


def test_a_broken_kernel_fails_the_compile_check():
    from nsa_fast.blend import nvrtc

    with pytest.raises(nvrtc.KernelCompileError, match="does not compile for sm_61"):
        nvrtc.compile_cubin('extern "C" __global__ void k(float* x) { x[0] = undefined_name; }', "bad.cu", "sm_61")
