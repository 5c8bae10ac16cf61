"""CPU cost of one synthetic sample: this project's float64 port of the authors' formulas
(``nsa_fast/reference.py``, full images) beside the fast path.

Both execute the same plans with the same OpenCV blend; they differ in the label computation
(full-image float64 maps and skimage's median vs. windowed integer maps and histogram medians).
The baseline is a port written from the authors' formulas, not the authors' code itself.
``test_cpu_sample_clone_share`` reports how much of the fast path is cv2.seamlessClone.
Run: pytest bench/ --benchmark-only
"""
from __future__ import annotations

import numpy as np
import pytest

from nsa_fast.blend.opencv import execute_plan
from nsa_fast.presets import get_preset
from nsa_fast.objects import object_mask, reference_object_mask
from nsa_fast.reference import reference_execute
from nsa_fast.sampler import get_task, sample_plan

N_SAMPLES = 32

CASES = {
    # 224 px, object masks, 3 patches, logistic labels
    "bottle": ("bottle_like", get_preset("bottle"), "logistic"),
    # 256 px, mixed clone, 4 patches, logistic labels
    "carpet": ("carpet_like", get_preset("carpet").replace(image_size=256), "logistic"),
}


PATHS = {"reference": (reference_object_mask, reference_execute), "fast": (object_mask, execute_plan)}


def run(images, preset, label, path):
    """N_SAMPLES samples: object masks, plan and blend + label, as one training sample costs."""
    mask, execute = PATHS[path]
    task = get_task("nsa")
    rng = np.random.default_rng(0)
    nonempty = 0
    for i in range(N_SAMPLES):
        dst, src = images[i % len(images)], images[(i + 1) % len(images)]
        so, do = mask(src, preset.background), mask(dst, preset.background)
        plan = sample_plan(dst.shape[:2], preset, task, rng, so, do)
        out = execute(dst, src, plan, label, logistic=preset.logistic, src_obj=so, dst_obj=do)
        nonempty += bool(out.label.any())
    return nonempty


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("path", ["reference", "fast"])
def test_cpu_sample(benchmark, request, case, path):
    fixture, preset, label = CASES[case]
    images = request.getfixturevalue(fixture)
    benchmark.group = f"synthetic sample x{N_SAMPLES}, one core: {case}"
    benchmark.extra_info["samples_per_call"] = N_SAMPLES
    nonempty = benchmark.pedantic(run, args=(images, preset, label, path), rounds=5, warmup_rounds=1)
    assert nonempty >= N_SAMPLES // 2
    if benchmark.stats:  # absent under --benchmark-disable
        ms = benchmark.stats.stats.mean / N_SAMPLES * 1e3
        benchmark.extra_info["ms_per_sample"] = round(ms, 3)
        benchmark.extra_info["samples_per_s"] = round(1e3 / ms, 1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cpu_sample_clone_share(benchmark, request, monkeypatch, case):
    """The share of the fast path spent inside cv2.seamlessClone (the rest: masks, plans, labels)."""
    import time

    from nsa_fast.blend import ops

    fixture, preset, label = CASES[case]
    images = request.getfixturevalue(fixture)
    spent = [0.0]
    real = ops.seamless_clone

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = real(*a, **k)
        spent[0] += time.perf_counter() - t0
        return out

    monkeypatch.setattr(ops, "seamless_clone", timed)
    benchmark.group = f"synthetic sample x{N_SAMPLES}, one core: {case}"

    def run_and_split():
        spent[0] = 0.0
        t0 = time.perf_counter()
        run(images, preset, label, "fast")
        return spent[0] / (time.perf_counter() - t0)

    share = benchmark.pedantic(run_and_split, rounds=5, warmup_rounds=1)
    assert 0 < share < 1
    benchmark.extra_info["clone_share"] = round(share, 3)
