"""pyproject.toml's floors are the releases whose API the code uses.

``API`` lists, per package, the third-party calls that set a floor (every CuPy call of the GPU path,
the newest torch calls, DALI's operators) with a release that has them: for CuPy and torch the
first one. The tests hold pyproject.toml's floors to that table, the table to the installed
packages, and the source to the table: a CuPy call the table does not list fails here, so a
call that needs a newer CuPy cannot slip in under an old floor (as ``Stream.from_external``,
CuPy 14, once did under ``cupy-cuda12x>=13``).
"""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package (as pyproject.toml names it) -> [(the call, a release that has it, why it is used)]
API = {
    "cupy-cuda12x": [
        ("cuda.Stream.from_external", "14.0", "kernels on torch's stream via the CUDA stream protocol (CuPy PR 9567)"),
        ("from_dlpack", "10.0", "zero-copy views of torch tensors"),
        ("RawModule", "7.0", "the kernels of kernels/*.cu"),
        ("cuda.Device", "4.0", "the module and the launch on the tensor's GPU"),
        ("arange", "1.0", "doctor's smoke test"),
        ("float32", "1.0", "doctor's smoke test"),
        ("cuda.runtime.runtimeGetVersion", "4.0", "doctor's report"),
        ("__version__", "1.0", "doctor's report"),
    ],
    "torch": [
        ("onnx.export:dynamo", "2.5", "the torch.export-based ONNX exporter (predict --export onnx)"),
        ("export.Dim", "2.2", "the export's dynamic batch"),
        ("dtype.itemsize", "2.1", "the byte layout of the packed host-to-device copy"),
        ("use_deterministic_algorithms", "1.8", "--deterministic"),
        ("get_float32_matmul_precision", "1.12", "whether the direct solve may multiply in float32"),
    ],
    "torchvision": [
        ("models.resnet18:weights", "0.13", "the encoder, from scratch"),
        ("transforms.v2.Transform.make_params", "0.21", "NSATransform's public v2 hooks (0.21 pairs with torch 2.6)"),
    ],
    "nvidia-dali-cuda120": [  # DALI's operators, all present in 1.40, the oldest release written for
        ("fn.readers.file", "1.40", "--synth dali"), ("fn.decoders.image", "1.40", "--synth dali"),
        ("fn.resize", "1.40", "--synth dali"), ("fn.rotate", "1.40", "--synth dali"),
        ("fn.crop", "1.40", "--synth dali"), ("fn.flip", "1.40", "--synth dali"),
        ("fn.random.uniform", "1.40", "--synth dali"), ("fn.random.coin_flip", "1.40", "--synth dali"),
        ("plugin.pytorch.DALIGenericIterator", "1.40", "--synth dali"),
    ],
}
# the floors that the API alone sets (others may sit higher for a pairing, stated in the table)
API_FLOOR = {"cupy-cuda12x": "14.0", "torch": "2.5"}
IMPORT = {"cupy-cuda12x": "cupy", "torch": "torch", "torchvision": "torchvision", "nvidia-dali-cuda120": "nvidia.dali"}


def version(text: str) -> tuple[int, int, int]:
    """"14" and "14.0" alike: (14, 0, 0)."""
    parts = [int(x) for x in re.match(r"\d+(\.\d+)*", text).group(0).split(".")]
    return tuple((parts + [0, 0])[:3])


def floors() -> dict[str, str]:
    text = (REPO / "pyproject.toml").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)', text)}


@pytest.mark.parametrize("pkg", sorted(API))
def test_every_floor_is_at_least_the_newest_release_the_code_needs(pkg):
    need = max(version(v) for _, v, _ in API[pkg])
    assert version(floors()[pkg]) >= need, f"{pkg}: pyproject.toml allows {floors()[pkg]}, the code needs {need}"


@pytest.mark.parametrize("pkg", sorted(API_FLOOR))
def test_the_api_sets_the_floor_of_cupy_and_torch(pkg):
    assert version(floors()[pkg]) == version(API_FLOOR[pkg]) == max(version(v) for _, v, _ in API[pkg])


def test_the_cuda_13_extra_has_the_floors_of_the_cuda_12_one():
    f = floors()
    assert f["cupy-cuda13x"] == f["cupy-cuda12x"] and f["nvidia-dali-cuda130"] == f["nvidia-dali-cuda120"]


def _has(module, call: str) -> bool:
    """Whether ``module`` offers ``call``: a dotted attribute path (submodules imported on the way),
    with ``:keyword`` a parameter its signature must have."""
    path, _, keyword = call.partition(":")
    obj, name = module, module.__name__
    for part in path.split("."):
        name = f"{name}.{part}"
        found = getattr(obj, part, None)
        if found is None:
            try:
                found = importlib.import_module(name)
            except ImportError:
                return False
        obj = found
    return not keyword or keyword in inspect.signature(obj).parameters


@pytest.mark.parametrize("pkg", sorted(API))
def test_the_installed_package_has_every_listed_call(pkg):
    try:
        module = importlib.import_module(IMPORT[pkg])
    except ImportError:
        pytest.skip(f"{pkg} is not installed here")
    if pkg.startswith("nvidia-dali"):
        importlib.import_module("nvidia.dali.fn")
        importlib.import_module("nvidia.dali.plugin.pytorch")
    missing = [call for call, _, _ in API[pkg] if not _has(module, call)]
    assert not missing, f"{pkg} {getattr(module, '__version__', '?')} lacks {missing}"


def cupy_calls() -> set[str]:
    """Every attribute chain the package reads from CuPy: cp.X, cupy.X, cupy().X."""
    found = set()
    for path in (REPO / "nsa_fast").rglob("*.py"):
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        for m in re.finditer(r"\b(?:cp|cupy|cupy\(\))\.([A-Za-z_][\w.]*)", code):
            found.add(m.group(1).rstrip("."))
    return found


def test_every_cupy_call_of_the_package_is_listed_with_its_release():
    listed = [call for call, _, _ in API["cupy-cuda12x"]]
    calls = cupy_calls()
    assert {"cuda.Stream.from_external", "from_dlpack", "RawModule"} <= calls  # the scan sees the launcher
    unlisted = sorted(c for c in calls if not any(c == k or c.startswith(k + ".") for k in listed))
    assert not unlisted, f"CuPy calls without a release in tests/test_dependencies.py: {unlisted}"


# Import names of pyproject.toml's dependencies: what a test module may import at its top.
CORE = {"numpy", "scipy", "cv2", "skimage", "sklearn", "torch", "torchvision", "tqdm", "yaml", "matplotlib"}
OURS = {"nsa_fast", "_support", "fake_device", "standin_gpu", "emulation", "images", "gpu_summary", "device_counts",
        "conftest", "test_bench_train", "docs_blocks", "test_quickstart"}


def _top_level_imports(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", ["tests", "bench"])
def test_optional_packages_are_never_imported_at_a_test_modules_top(folder):
    """pytest ends a whole session on a module that fails to import: a test that needs DALI,
    ONNX Runtime or CuPy imports it inside (pytest.importorskip), so that a GPU machine without
    one still runs every other test (bash bench/gpu_check.sh)."""
    import sys

    bad = {}
    for path in sorted((REPO / folder).glob("*.py")):
        extra = _top_level_imports(path) - CORE - OURS - set(sys.stdlib_module_names) - {"pytest", "__future__"}
        if extra:
            bad[path.name] = sorted(extra)
    assert not bad, f"optional packages imported at the top of test modules: {bad}"
