"""Where the CUDA sources live and how they are specialised (no CUDA needed to read them)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import NsaError

# file -> kernels it defines; the #define preamble each file is built with
KERNELS = {
    "poisson_iter.cu": ("jacobi_block", "sor_block"),
    "median_disk.cu": ("median_disk",),
}
DEFINES = {"median_disk.cu": {"RADIUS": 5, "VALUE_BITS": 10}}


def kernel_dir() -> Path:
    """The folder of the .cu files: $NSA_FAST_KERNELS, the source tree, or the installed copy."""
    places = [os.environ.get("NSA_FAST_KERNELS"),
              Path(__file__).resolve().parents[2] / "kernels",
              Path(sys.prefix) / "share" / "nsa_fast" / "kernels"]
    for place in places:
        if place and (Path(place) / "poisson_iter.cu").is_file():
            return Path(place)
    raise NsaError(f"the CUDA kernel sources were not found in {[str(p) for p in places if p]}; "
                   "reinstall nsa_fast or set NSA_FAST_KERNELS to the kernels/ folder.")


def kernel_source(filename: str, **defines) -> str:
    """The source of one .cu file with its #define preamble (defaults overridden by ``defines``)."""
    values = {**DEFINES.get(filename, {}), **defines}
    preamble = "".join(f"#define {k} {v}\n" for k, v in values.items())
    return preamble + (kernel_dir() / filename).read_text()
