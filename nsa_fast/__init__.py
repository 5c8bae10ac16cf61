"""nsa_fast: Natural Synthetic Anomalies (Schlüter et al.) with a batched Poisson blender.

The public names load on first use: ``import nsa_fast.blend.nvrtc`` (the doctor, the kernel
compile checks) must not pull in torch, which brings its own NVRTC.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
_PUBLIC = {"NSA": "api", "Sample": "api", "BatchSample": "api", "PRESETS": "presets", "Preset": "presets",
           "get_preset": "presets", "TASKS": "sampler", "Plan": "sampler", "Stats": "sampler",
           "sample_plan": "sampler", "object_mask": "objects", "NSATransform": "tv"}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
