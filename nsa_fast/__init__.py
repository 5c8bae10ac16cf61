"""nsa_fast: Natural Synthetic Anomalies (Schlüter et al.) with a batched Poisson blender."""
from .api import NSA, BatchSample, Sample
from .presets import PRESETS, Preset, get_preset
from .sampler import TASKS, Plan, Stats, object_mask, sample_plan

__version__ = "0.1.0"
__all__ = ["NSA", "Sample", "BatchSample", "PRESETS", "Preset", "get_preset", "TASKS", "Plan", "Stats",
           "object_mask", "sample_plan"]
