"""``python -m nsa_fast.doctor``'s decisions, on GPUs and CUDA installs this machine does not have.

torch.cuda is monkeypatched to describe a GPU; CuPy and DALI checks, and the kernel run on the GPU,
are stubbed (they need a real device and are exercised by bench/gpu_check.sh). The NVRTC compile
checks are real: NVRTC 12 when installed, and NVRTC 13 through NSA_FAST_NVRTC for the CUDA 13-only
case.
"""
import glob
import os
import re
from types import SimpleNamespace

import pytest
import torch

from nsa_fast import doctor

CU126 = "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90".split()
CU130 = "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120".split()

GTX_1080, RTX_4090, H200, RTX_5090, TESLA_P100 = (6, 1), (8, 9), (9, 0), (12, 0), (6, 0)


@pytest.mark.parametrize("card,capability,arch_list,expected", [
    # SASS of an older minor of the same major runs: cu126 has sm_60, not sm_61
    ("GTX 1080 on cu126", GTX_1080, CU126, True),
    ("Tesla P100 on cu126", TESLA_P100, CU126, True),
    ("RTX 4090 on sm_86 without sm_89", RTX_4090, "sm_75 sm_80 sm_86 sm_90".split(), True),
    ("H200 on cu130", H200, CU130, True),
    ("GTX 1080 on cu130", GTX_1080, CU130, False),
    ("Volta V100 on cu130", (7, 0), CU130, False),
    # SASS never crosses a major version, in either direction
    ("RTX 5090 on cu126", RTX_5090, CU126, False),
    ("GTX 1080 on a list with only sm_62", GTX_1080, ["sm_62", "sm_70"], False),
    # PTX is compiled forward by the driver: a card newer than every sm_ entry
    ("RTX 5090 on cu126 with compute_90 PTX", RTX_5090, CU126 + ["compute_90"], True),
    ("H200 with only compute_100 PTX", H200, ["sm_80", "compute_100"], False),
    # arch-specific code runs on exactly that capability
    ("H200 on sm_90a only", H200, ["sm_90a"], True),
    ("H200 on sm_80 and sm_90a", H200, ["sm_80", "sm_90a"], True),
    ("a 9.1 card on sm_90a only", (9, 1), ["sm_90a"], False),
    ("B200 10.0 on sm_90a only", (10, 0), ["sm_90a"], False),
    ("B300 10.3 on sm_100f family code", (10, 3), ["sm_100f"], True),
    ("B200 10.0 on sm_100a", (10, 0), ["sm_100a"], True),
    ("B300 10.3 on sm_100a", (10, 3), ["sm_100a"], False),
    ("any card on an empty list", H200, [], False),
])
def test_arch_supported(card, capability, arch_list, expected):
    assert doctor.arch_supported(capability, arch_list) is expected, card


@pytest.mark.parametrize("capability,arch_list,advice", [
    (GTX_1080, CU130, "cu126"),
    ((7, 0), CU130, "cu126"),
    (RTX_5090, CU126, "newer CUDA"),
    ((10, 3), ["sm_80", "sm_90", "sm_120"], "newer CUDA"),
])
def test_advice_points_to_the_right_build(capability, arch_list, advice):
    assert advice in doctor.torch_arch_advice(capability, arch_list)


@pytest.fixture
def no_device_checks(monkeypatch):
    """Stub the checks that need a real GPU; returns the list of kernel runs made."""
    runs = []
    monkeypatch.setattr(doctor, "check_cupy", lambda gpu: [])
    monkeypatch.setattr(doctor, "check_dali", lambda gpu: [])
    monkeypatch.setattr(doctor, "run_kernels", lambda: runs.append("ran") or [])
    return runs


def fake_gpu(monkeypatch, name, capability, arch_list, cuda, cudnn=91002):
    """A GPU as torch would describe it; cuDNN 9.10.2 by default, which has kernels for every card."""
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: cudnn is not None)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: cudnn)
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch_list))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: name is not None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(total_memory=8 * 2**30))


def nvrtc_13_only(monkeypatch):
    """Make nsa_fast.blend.nvrtc see only CUDA 13's NVRTC, as on a CUDA 13-only machine."""
    from nsa_fast.blend import nvrtc

    paths = [p for base in nvrtc._nvidia_dirs()
             for p in sorted(glob.glob(os.path.join(base, "*", "lib", "libnvrtc.so.13")))]
    if not paths:
        assert not os.environ.get("CI"), "CI's torch 2.14 wheels bring NVRTC 13 (cuda-toolkit[nvrtc]), but it is not here"
        pytest.skip("no NVRTC 13 wheel installed here (torch's CUDA 13 wheels bring one)")
    monkeypatch.setenv("NSA_FAST_NVRTC", paths[0])


def compiled_archs(out: str) -> list[str]:
    m = re.search(r"\] kernels: .* compile for ([^(]+) \(NVRTC", out)
    assert m, f"no kernels-compile line in:\n{out}"
    return m.group(1).strip().split(", ")


def test_cpu_only_machine_says_so_and_exits_1(monkeypatch, capsys, no_device_checks):
    from nsa_fast.blend import nvrtc

    fake_gpu(monkeypatch, None, None, CU130, "13.0")
    assert doctor.main([]) == doctor.NO_GPU
    out = capsys.readouterr().out
    assert "no CUDA GPU visible" in out and "without --gpu-blend" in out
    assert "[FAIL]" not in out and "To fix" not in out
    assert "a GTX 1080-class GPU (sm_61) would need the cu126 build" in out   # cu130 has no Pascal code
    want = ["sm_61", "sm_90"] if nvrtc.load().supports("sm_61") else ["sm_90"]
    assert compiled_archs(out) == want
    assert no_device_checks == []


def test_cuda_13_only_nvrtc_warns_about_sm_61_and_still_runs_the_kernels(monkeypatch, capsys, no_device_checks):
    nvrtc_13_only(monkeypatch)
    fake_gpu(monkeypatch, "NVIDIA H200", H200, CU130, "13.0")
    assert doctor.main([]) == doctor.OK
    out = capsys.readouterr().out
    assert re.search(r"\[warn\] kernels: not compiled for sm_61: NVRTC 13\.\d+.* targets sm_75\.\.", out), out
    assert "nvidia-cuda-nvrtc-cu12" in out                      # what to do
    assert compiled_archs(out) == ["sm_90"]
    assert "[FAIL]" not in out and "To fix" not in out
    assert no_device_checks == ["ran"]


def test_cuda_13_only_nvrtc_on_a_cpu_machine_is_not_broken(monkeypatch, capsys, no_device_checks):
    nvrtc_13_only(monkeypatch)
    fake_gpu(monkeypatch, None, None, CU130, "13.0")
    assert doctor.main([]) == doctor.NO_GPU
    out = capsys.readouterr().out
    assert "[warn] kernels: not compiled for sm_61" in out and compiled_archs(out) == ["sm_90"]


def test_gtx_1080_on_a_cuda_13_torch_exits_2_with_advice(monkeypatch, capsys, no_device_checks):
    fake_gpu(monkeypatch, "NVIDIA GeForce GTX 1080", GTX_1080, CU130, "13.0")
    assert doctor.main([]) == doctor.BROKEN
    out = capsys.readouterr().out
    fix = out.split("To fix:")[1]
    assert "has no kernels for NVIDIA GeForce GTX 1080 (sm_61)" in fix           # what arrived
    assert "expected sm_6x with x <= 1" in fix and ", ".join(CU130) in fix        # expected, and the list
    assert "cu126" in fix and "download.pytorch.org/whl/cu126" in fix            # what to do


def test_a_gpu_newer_than_the_torch_build_exits_2_pointing_to_a_newer_cuda(monkeypatch, capsys, no_device_checks):
    fake_gpu(monkeypatch, "NVIDIA GeForce RTX 5090", RTX_5090, CU126, "12.6")
    assert doctor.main([]) == doctor.BROKEN
    fix = capsys.readouterr().out.split("To fix:")[1]
    assert "has no kernels for NVIDIA GeForce RTX 5090 (sm_120)" in fix and "newer CUDA" in fix


@pytest.mark.parametrize("name,capability,arch_list,cuda,pascal_hint", [
    # the info line agrees: sm_60 runs on sm_61
    ("NVIDIA GeForce GTX 1080", GTX_1080, CU126, "12.6", False),
    ("NVIDIA GeForce RTX 4090", RTX_4090, "sm_75 sm_80 sm_86 sm_90".split(), "12.8", True),
])
def test_supported_gpu_raises_no_false_alarm(monkeypatch, capsys, no_device_checks,
                                             name, capability, arch_list, cuda, pascal_hint):
    fake_gpu(monkeypatch, name, capability, arch_list, cuda)
    assert doctor.main([]) == doctor.OK
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and "To fix" not in out
    assert ("a GTX 1080-class GPU (sm_61) would need the cu126 build" in out) is pascal_hint
    assert no_device_checks == ["ran"]


def test_a_chosen_nvrtc_that_does_not_load_needs_fixing(monkeypatch, capsys, no_device_checks, tmp_path):
    # NSA_FAST_NVRTC is the user's explicit choice: a path that does not load is a problem to fix
    # (exit 2), not the "CPU only" of a machine without NVRTC
    monkeypatch.setenv("NSA_FAST_NVRTC", str(tmp_path / "libnvrtc.so.12"))  # loads are cached by path
    fake_gpu(monkeypatch, None, None, CU130, "13.0")
    assert doctor.main([]) == doctor.BROKEN
    out = capsys.readouterr().out
    assert "[FAIL] kernels: not compiled" in out and "NSA_FAST_NVRTC=" in out.split("To fix:")[1]


# --- cuDNN: 9.10 is the last line for Maxwell, Pascal and Volta ------------------------------


@pytest.mark.parametrize("number,version", [(91002, (9, 10, 2)), (91100, (9, 11, 0)), (92400, (9, 24, 0)),
                                            (8907, (8, 9, 7)), (None, None), (0, None)])
def test_cudnn_version_numbers_are_read_as_cudnn_writes_them(number, version):
    assert doctor.cudnn_version(number) == version


@pytest.mark.parametrize("capability,version,ok", [
    (GTX_1080, (9, 10, 2), True), (GTX_1080, (9, 11, 0), False), (GTX_1080, (9, 24, 0), False),
    ((7, 0), (9, 11, 0), False), ((7, 0), (8, 9, 7), True), ((7, 5), (9, 24, 0), True),
    (H200, (9, 24, 0), True), (GTX_1080, None, True)])
def test_cudnn_supports_old_gpus_up_to_9_10(capability, version, ok):
    assert doctor.cudnn_supports(capability, version) is ok


def fake_cudnn(monkeypatch, number):
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: number is not None)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: number)


def test_a_cudnn_without_kernels_for_the_card_is_a_problem_to_fix(monkeypatch, capsys, no_device_checks):
    fake_gpu(monkeypatch, "NVIDIA GeForce GTX 1080", GTX_1080, CU126, "12.6")
    fake_cudnn(monkeypatch, 91300)
    assert doctor.main([]) == doctor.BROKEN
    out = capsys.readouterr().out
    assert "[FAIL] cuDNN: cuDNN 9.13.0 has no kernels for this GPU (sm_61)" in out
    assert "pip install nvidia-cudnn-cu12==9.10.2.21" in out.split("To fix:")[1]
    fake_cudnn(monkeypatch, 91002)
    assert doctor.main([]) == doctor.OK
    assert "[  ok] cuDNN: 9.10.2, has kernels for sm_61" in capsys.readouterr().out


def test_without_a_gpu_the_cudnn_line_says_what_a_gtx_1080_would_need(monkeypatch, capsys, no_device_checks):
    fake_gpu(monkeypatch, None, None, CU130, "13.0")
    fake_cudnn(monkeypatch, 92400)
    assert doctor.main([]) == doctor.NO_GPU
    assert "[info] cuDNN: 9.24.0; a GTX 1080-class GPU (sm_61) would need cuDNN 9.10" in capsys.readouterr().out
