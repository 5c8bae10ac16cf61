"""Where the CUDA sources are found and how they are specialised (no CUDA needed)."""
from pathlib import Path

import pytest

import nsa_fast
from nsa_fast.blend.kernels import KERNELS, kernel_dir, kernel_source


def test_the_folder_is_the_variable_then_the_source_tree(monkeypatch, tmp_path):
    tree = Path(nsa_fast.__file__).resolve().parents[1] / "kernels"
    monkeypatch.delenv("NSA_FAST_KERNELS", raising=False)
    assert kernel_dir() == tree
    (tmp_path / "poisson_iter.cu").write_text("// a copy")
    monkeypatch.setenv("NSA_FAST_KERNELS", str(tmp_path))
    assert kernel_dir() == tmp_path and kernel_source("poisson_iter.cu").endswith("// a copy")
    monkeypatch.setenv("NSA_FAST_KERNELS", str(tmp_path / "empty"))  # no sources there: the next place
    assert kernel_dir() == tree


def test_each_file_gets_its_defines_and_a_caller_overrides_them():
    src = kernel_source("median_disk.cu")
    assert src.startswith("#define RADIUS 5\n#define VALUE_BITS 10\n")
    assert kernel_source("median_disk.cu", RADIUS=3).startswith("#define RADIUS 3\n#define VALUE_BITS 10\n")
    assert not kernel_source("poisson_iter.cu").startswith("#define")
    assert set(KERNELS) == {p.name for p in kernel_dir().glob("*.cu")}


def test_a_missing_source_folder_says_where_it_looked(monkeypatch, tmp_path):
    from nsa_fast.blend import kernels
    from nsa_fast.errors import NsaError

    monkeypatch.setenv("NSA_FAST_KERNELS", str(tmp_path))
    monkeypatch.setattr(kernels, "__file__", str(tmp_path / "a" / "b" / "kernels.py"))
    monkeypatch.setattr(kernels.sys, "prefix", str(tmp_path / "prefix"))
    places = [str(tmp_path), str(tmp_path / "kernels"), str(tmp_path / "prefix" / "share" / "nsa_fast" / "kernels")]
    with pytest.raises(NsaError) as err:
        kernel_dir()
    assert str(err.value) == (f"the CUDA kernel sources were not found in {places}; reinstall nsa_fast or set "
                              "NSA_FAST_KERNELS to the kernels/ folder.")
    # the installed copy (pip puts the sources under the environment's share/nsa_fast/kernels)
    installed = tmp_path / "prefix" / "share" / "nsa_fast" / "kernels"
    installed.mkdir(parents=True)
    (installed / "poisson_iter.cu").touch()
    assert kernel_dir() == installed
