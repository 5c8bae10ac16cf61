"""What the GPU path costs the device, per synthetic batch and per training step, counted.

    python bench/device_counts.py [--out counts.json] [--standin]

For one batch of 64 at 224 px (bottle preset, logistic labels) made as ``--synth device`` makes
it, for each ``--solver``: host-to-device and device-to-host copies, synchronisations (the host
waits for the device), kernel launches (torch's and this project's CuPy kernels apart) and
float64 kernels; and the synchronisations of training steps fed by that pipeline.

On a CUDA GPU the figures come from torch's profiler (CUPTI sees every kernel and copy on the
device, CuPy's included; float64 kernels are those whose name holds "double"). With
``--standin`` (``bash bench/gpu_check.sh --dry-run``, or any CPU-only machine) they are counted
on the stand-in GPU of tests/standin_gpu.py: there torch's ops that compute on the device stand
for its kernels, and ``float64`` counts the ops that made a float64 tensor there.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from gpu_summary import unmet  # noqa: E402

SOLVERS = ("dst", "sor", "jacobi")
OUR_KERNELS = ("jacobi_block", "sor_block", "median_disk")
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize")
TRAIN_STEPS = 3


def count_events(events) -> dict:
    """Counts of a profile's events, each (name, on_gpu): GPU events are kernels, copies
    ("Memcpy HtoD ...", "Memcpy DtoH ...") and memsets; CPU events that wait for the device
    (``SYNC_CALLS``, by exact name) are synchronisations."""
    out = dict(h2d=0, d2h=0, syncs=0, kernels=0, cupy=0, float64=0)
    for name, on_gpu in events:
        if not on_gpu:
            out["syncs"] += name in SYNC_CALLS
        elif name.startswith("Memcpy HtoD"):
            out["h2d"] += 1
        elif name.startswith("Memcpy DtoH"):
            out["d2h"] += 1
        elif not name.startswith(("Memcpy", "Memset")):
            out["kernels"] += 1
            out["cupy"] += name in OUR_KERNELS
            out["float64"] += "double" in name
    return out


def _profiled(fn) -> dict:
    """count_events of everything ``fn`` does on the GPU (the profile's own final wait excluded)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is not None:
        events = [(e.name(), e.device_type() == DeviceType.CUDA) for e in results.events()]
    else:
        events = [(e.name, e.device_type == DeviceType.CUDA) for e in prof.events()]
    counts = count_events(events)
    if counts["syncs"] < 1:  # the final synchronize must be seen, or the names of the calls have changed
        raise RuntimeError(f"the profile shows none of {SYNC_CALLS}: its names differ from what this script "
                           "counts, so every wait would go uncounted")
    counts["syncs"] -= 1
    return counts


def _images(size: int, n: int) -> np.ndarray:
    from images import objects

    eight = objects(size)
    return np.stack([eight[i % 8] for i in range(n)])


def on_cuda() -> dict:
    """The figures of a real GPU, by torch's profiler."""
    from nsa_fast.blend.batched import BatchedExecutor
    from nsa_fast.blend.cuda import disk_median_cuda
    from nsa_fast.blend.pick import pick_solver
    from nsa_fast.pipelines import BatchedPipeline, to_training_device
    from nsa_fast.presets import get_preset

    from test_bench_train import model_on, train_step

    device = torch.device("cuda", torch.cuda.current_device())
    preset, images = get_preset("bottle"), _images(256, 64)
    rows = {}
    for solver in SOLVERS:
        pipe = BatchedPipeline(images, preset, "nsa", "logistic", 0, 64, device)
        pipe.executor = BatchedExecutor(pick_solver(solver, torch.device("cuda")), disk_median_cuda, buckets=1)
        order = np.arange(64)
        pipe.make(0, order)  # compiles the kernels and fills the caches: not per batch
        torch.cuda.synchronize()
        rows[solver] = _profiled(lambda: pipe.make(1, order))
    pipe = BatchedPipeline(_images(256, 64 * (TRAIN_STEPS + 2)), preset, "nsa", "logistic", 0, 64, device)
    model, opt = model_on(device)
    amp = torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else None
    it = iter(to_training_device(pipe.epoch(0), device))
    for _ in range(2):  # cuDNN's and the allocator's first steps
        images_b, labels_b, _ = next(it)
        train_step(model, opt, images_b, labels_b, amp)

    def steps():
        for _ in range(TRAIN_STEPS):
            images_b, labels_b, _ = next(it)
            train_step(model, opt, images_b, labels_b, amp)

    train = _profiled(steps)
    return dict(counted_on=torch.cuda.get_device_name(device), batch=64, size=224, solvers=rows,
                train=dict(steps=TRAIN_STEPS, syncs=train["syncs"], h2d=train["h2d"], d2h=train["d2h"],
                           note="all threads: the training loop's loss reads and the prefetch thread's object masks"))


def on_standin(batch: int = 64) -> dict:
    """The figures of the stand-in GPU (CPU only), for a batch of ``batch``."""
    from standin_gpu import DEVICE, batch_counts, cuda_executor, standin_gpu, training_counts

    from nsa_fast.pipelines import BatchedPipeline
    from nsa_fast.presets import get_preset

    preset, images = get_preset("bottle"), _images(256, batch)
    rows = {}
    for solver in SOLVERS:
        c = batch_counts(images, preset, solver, batch=batch)
        # a copy to the host is a wait for the device as well (torch's .cpu() synchronises)
        rows[solver] = dict(h2d=c["h2d"], d2h=c["d2h"], syncs=c["d2h"] + c["syncs"], kernels=c["torch_ops"] + len(c["cupy"]),
                            cupy=len(c["cupy"]), float64=len(c["float64"]))
    small = preset.replace(image_size=80, center_crop=72, crop=64)
    with standin_gpu(execute=False):
        pipe = BatchedPipeline(_images(80, 8), small, "nsa", "logistic", 0, 2, DEVICE)
        pipe.executor = cuda_executor("sor")
        dev, threads, _ = training_counts(pipe, small, TRAIN_STEPS)
    train = dict(steps=TRAIN_STEPS, syncs=dev.d2h + dev.syncs, h2d=dev.h2d, d2h=dev.d2h,
                 synthesis_syncs=sum(t.d2h + t.syncs for t in threads),
                 note="training thread (loss reads and the epoch's one count); synthesis thread apart")
    return dict(counted_on="stand-in GPU (tests/standin_gpu.py), not a GPU", batch=batch, size=224, solvers=rows,
                train=train)


def table(counts: dict) -> str:
    lines = [f"one synthetic batch of {counts['batch']} at {counts['size']} px (bottle, logistic labels), "
             f"--synth device; counted on: {counts['counted_on']}",
             f"{'solver':8}{'kernels':>9}{'of them CuPy':>14}{'h2d':>6}{'d2h':>6}{'syncs':>7}{'float64':>9}"]
    for solver, c in counts["solvers"].items():
        lines.append(f"{solver:8}{c['kernels']:>9}{c['cupy']:>14}{c['h2d']:>6}{c['d2h']:>6}{c['syncs']:>7}"
                     f"{c['float64']:>9}")
    t = counts["train"]
    lines.append(f"training: {t['syncs']} synchronisations in {t['steps']} steps ({t['note']})")
    broken = unmet(counts)
    lines.append("efficiency rules: " + ("NOT met: " + "; ".join(broken) if broken else "met"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/device_counts.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here too")
    ap.add_argument("--standin", action="store_true", help="count on the stand-in GPU (default without CUDA)")
    ap.add_argument("--batch", type=int, default=64, help="batch size on the stand-in (a GPU counts 64)")
    a = ap.parse_args(argv)
    counts = on_standin(a.batch) if a.standin or not torch.cuda.is_available() else on_cuda()
    print(table(counts))
    if a.out:
        a.out.write_text(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
