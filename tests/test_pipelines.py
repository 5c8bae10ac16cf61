"""The two training pipelines draw the same samples from the same seeds."""
import os

import numpy as np
import pytest
import torch

from _support import objects_on_background
from nsa_fast.pipelines import BatchedPipeline, CpuPipeline, epoch_batches
from nsa_fast.presets import get_preset


def test_prefetching_yields_exactly_the_batches_made_directly():
    imgs = np.stack(objects_on_background(12, size=256))
    pipe = BatchedPipeline(imgs, get_preset("bottle"), "nsa", "logistic", 0, 4, torch.device("cpu"))
    streamed = list(pipe.epoch(1))
    direct = [pipe.make(1, b) for b in pipe.batches(1)]
    assert len(streamed) == len(direct) == 3
    for (a, la, _), (b, lb, _) in zip(streamed, direct):
        assert torch.equal(a, b) and torch.equal(la, lb)


@pytest.mark.parametrize("name,size", [("carpet", 264), ("bottle", 256)])
def test_cpu_workers_and_device_pipeline_agree(name, size):
    # carpet: flips, mixed clone; bottle: rotation, object masks, normal clone. Both pipelines
    # see identical augmented images, object masks and plans; only the Poisson solve (OpenCV's FFT
    # against the batched DST) may move a pixel by a grey level
    preset = get_preset(name)
    imgs = np.stack(objects_on_background(10, size=size))
    cpu = CpuPipeline(imgs, preset, "nsa", "logistic", 3, 5, 0, torch.device("cpu"))
    dev = BatchedPipeline(imgs, preset, "nsa", "logistic", 3, 5, torch.device("cpu"))
    a_batches, b_batches = list(cpu.epoch(2)), list(dev.epoch(2))
    assert len(a_batches) == len(b_batches) == len(cpu.batches(2)) == 2
    for (a, la, sa), (b, lb, sb) in zip(a_batches, b_batches):
        assert sa == sb and sa.samples == 5 and sa.accepted > 0  # the same plans, counted alike
        assert a.shape == b.shape == (5, preset.crop, preset.crop, 3)
        assert (a.int() - b.int()).abs().max() <= 1
        assert (la == lb).float().mean() >= 0.999 and lb.flatten(1).amax(1).gt(0).sum() >= 3


def test_rotation_is_nearest_neighbour_and_turns_as_opencv_does():
    import cv2

    from nsa_fast.presets import Preset
    from nsa_fast.transforms import Augment, apply_augment

    img = np.stack(objects_on_background(1, size=256))[0]
    preset = Preset(name="r", image_size=256, center_crop=None, crop=256, rotation=5.0)
    for angle in (4.3, -2.7):
        got = apply_augment(img, preset, Augment(angle, 0, 0, False))
        ref = cv2.warpAffine(img, cv2.getRotationMatrix2D((127.5, 127.5), angle, 1.0), (256, 256),
                             flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        # nearest neighbour: every output pixel is an input pixel, not a blend
        assert set(map(tuple, got.reshape(-1, 3)[::97])) <= set(map(tuple, img.reshape(-1, 3)))
        # OpenCV's own nearest warp picks another neighbour only where a coordinate sits on a rounding tie
        assert (got != ref).any(-1).mean() < 0.005, angle


def test_epoch_batches_cover_the_data_once():
    got = np.concatenate(epoch_batches(23, 5, seed=0, epoch=0))
    assert sorted(got) == list(range(23))  # 5+5+5+5+3
    assert all(len(b) > 1 for b in epoch_batches(21, 5, 0, 0))  # a lone last sample is dropped


def test_every_rank_takes_the_same_number_of_steps():
    # ranks with an extra step would wait forever in DDP's all-reduce (hazelnut: 391 images,
    # 4 ranks, batch 32)
    for n in [1, 2, 3, 5, 7, 31, 100, 391]:
        for world in [1, 2, 3, 4, 8]:
            for bs in [1, 2, 3, 8, 32, 64]:
                per_rank = [epoch_batches(n, bs, 0, 1, r, world) for r in range(world)]
                assert len({len(b) for b in per_rank}) == 1, (n, world, bs)
                assert len({tuple(len(x) for x in b) for b in per_rank}) == 1, (n, world, bs)
                seen = np.concatenate([np.concatenate(b) for b in per_rank if b] or [np.zeros(0, int)])
                per = -(-n // world)
                if bs > 1 and per % bs != 1:  # no lone trailing sample dropped: every image, every epoch
                    assert set(seen) == set(range(n)) and len(seen) == per * world, (n, world, bs)
                assert len(seen) - n < world  # wrapped around at most world - 1


def test_batches_of_every_pipeline_arrive_on_the_training_device(tmp_path):
    from fake_device import DEVICE, FakeDevice
    from nsa_fast.demo import ensure_demo
    from nsa_fast.pipelines import DaliPipeline, to_training_device

    preset = get_preset("carpet").replace(image_size=136, crop=128)
    imgs = np.stack(objects_on_background(6, size=136))
    pipes = [CpuPipeline(imgs, preset, "nsa", "logistic", 0, 3, 0, torch.device("cpu")),
             BatchedPipeline(imgs, preset, "nsa", "logistic", 0, 3, torch.device("cpu"))]
    try:
        import nvidia.dali  # noqa: F401
        from nsa_fast.io import list_images

        root = ensure_demo(tmp_path)
        pipes.append(DaliPipeline(list_images(root / "demo" / "train" / "good"), preset, "nsa", "logistic",
                                  0, 4, torch.device("cpu")))
    except ImportError:  # CI installs DALI (the gpu extra): there the DALI pipeline must be covered
        assert not os.environ.get("CI"), "nvidia-dali is not importable under CI"

    for pipe in pipes:
        with FakeDevice() as dev:
            got = list(to_training_device(pipe.epoch(0), DEVICE))
            assert len(got) == len(pipe.batches(0)) > 0
            for images, labels, _ in got:
                assert images.device == DEVICE and labels.device == DEVICE, type(pipe).__name__
            assert dev.h2d == 2 * len(got)  # two copies a batch: images and labels


def test_the_prefetch_thread_works_on_the_pipelines_gpu(monkeypatch):
    # CUDA's current device is per thread: without set_device in the thread, every DDP rank's
    # prefetch thread would create a context on GPU 0. Stand-ins record which device each CUDA
    # object is made for and which thread runs the jobs.
    import threading

    from nsa_fast import pipelines

    current = threading.local()
    log = []

    class Obj:
        def __init__(self, *a, **k):
            self.device = getattr(current, "device", "cuda:0 (default)")
            log.append((type(self).__name__, self.device))

        def record(self, *a): pass
        def wait_event(self, ev): log.append(("wait", self.device))

    class Stream(Obj):
        def __init__(self, device=None):
            super().__init__()
            self.device = str(device) if device is not None else self.device

    class Event(Obj): pass

    class Ctx:
        def __init__(self, s): pass
        def __enter__(self): return self
        def __exit__(self, *a): pass

    class Out(torch.Tensor):  # a tensor as far as isinstance goes; records record_stream
        def record_stream(self, s): log.append(("record_stream", s.device))

    def set_device(d):  # torch's rule: a device without an index is refused
        torch.cuda._utils._get_device_index(d, optional=False)
        current.device = str(d)

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "stream", Ctx)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: Stream(d))
    worker = []
    jobs = [lambda: worker.append((threading.get_ident(), getattr(current, "device", None))) or (Out(), "stats")
            for _ in range(3)]
    out = list(pipelines.prefetched(jobs, torch.device("cuda")))  # no index: the current device, 1
    assert len(out) == 3
    assert {w[1] for w in worker} == {"cuda:1"} and threading.get_ident() not in {w[0] for w in worker}
    assert [e for e in log if e[0] == "Event"] == [("Event", "cuda:1")] * 3
    assert log.count(("wait", "cuda:1")) == 3 and log.count(("record_stream", "cuda:1")) == 3


def test_both_device_pipelines_blend_off_the_main_thread(tmp_path, monkeypatch):
    import threading

    from nsa_fast import pipelines
    from nsa_fast.demo import ensure_demo
    from nsa_fast.io import list_images

    threads = []
    real = pipelines.synthesize_batch
    monkeypatch.setattr(pipelines, "synthesize_batch",
                        lambda *a, **k: threads.append(threading.get_ident()) or real(*a, **k))
    preset = get_preset("carpet").replace(image_size=136, crop=128)
    pipes = [BatchedPipeline(np.stack(objects_on_background(6, size=136)), preset, "nsa", "logistic", 0, 3,
                             torch.device("cpu"))]
    try:
        import nvidia.dali  # noqa: F401

        root = ensure_demo(tmp_path)
        pipes.append(pipelines.DaliPipeline(list_images(root / "demo" / "train" / "good"), preset, "nsa",
                                            "logistic", 0, 4, torch.device("cpu")))
    except ImportError:  # CI installs DALI (the gpu extra): there the DALI pipeline must be covered
        assert not os.environ.get("CI"), "nvidia-dali is not importable under CI"

    for pipe in pipes:
        threads.clear()
        assert len(list(pipe.epoch(0))) == len(pipe.batches(0)) == len(threads) > 0
        assert threading.get_ident() not in threads, type(pipe).__name__


def test_make_pipeline_is_the_one_choice_and_every_pipeline_counts_what_it_made():
    from nsa_fast.errors import NsaError
    from nsa_fast.pipelines import Pipeline, make_pipeline

    preset = get_preset("bottle")
    imgs = np.stack(objects_on_background(6, size=256))
    made = {s: make_pipeline(s, imgs, preset, "nsa", "logistic", 0, 3, torch.device("cpu")) for s in ("workers", "device")}
    assert type(made["workers"]) is CpuPipeline and type(made["device"]) is BatchedPipeline
    for pipe in made.values():
        assert isinstance(pipe, Pipeline) and pipe.stats.samples == 0
        batches = list(pipe.epoch(0))
        assert len(batches) == len(pipe.batches(0)) == 2
        assert pipe.stats.samples == 6 and pipe.stats.tried == sum(b.stats.tried for b in batches) > 0
        list(pipe.epoch(1))
        assert pipe.stats.samples == 12
    with pytest.raises(NsaError, match="--solver sor chooses"):
        make_pipeline("workers", imgs, preset, "nsa", "logistic", 0, 3, torch.device("cpu"), solver="sor")
    with pytest.raises(NsaError, match="--synth must be one of"):
        make_pipeline("gpu", imgs, preset, "nsa", "logistic", 0, 3, torch.device("cpu"))


def test_a_cuda_pipeline_without_cupy_says_so_before_the_first_batch(monkeypatch):
    import sys

    from nsa_fast.errors import NsaError
    from nsa_fast.labels import Label
    from nsa_fast.pipelines import check_device_needs

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy fails
    bottle = get_preset("bottle")
    with pytest.raises(NsaError, match=r"need CuPy: pip install 'nsa_fast\[gpu\]'"):
        check_device_needs(torch.device("cuda", 0), Label.for_preset("logistic", bottle), None)
    # binary labels need no disk median; the CPU needs no kernel; a given median replaces the kernel
    check_device_needs(torch.device("cuda", 0), Label.for_preset("binary", bottle), None)
    check_device_needs(torch.device("cpu"), Label.for_preset("logistic", bottle), None)
    check_device_needs(torch.device("cuda", 0), Label.for_preset("logistic", bottle), lambda x: x)


def test_make_pipeline_passes_every_setting_through():
    from nsa_fast.blend.solvers import SOLVERS
    from nsa_fast.pipelines import make_pipeline

    preset = get_preset("bottle")
    imgs = np.stack(objects_on_background(5, size=256))
    w = make_pipeline("workers", imgs, preset, "cutpaste", "binary", 7, 3, torch.device("cpu"), workers=2, rank=1,
                      world=2)
    assert (w.seed, w.batch_size, w.workers, w.rank, w.world) == (7, 3, 2, 1, 2)
    assert (w.ds.task.name, w.ds.label_mode, w.ds.seed, w.ds.preset) == ("cutpaste", "binary", 7, preset)
    d = make_pipeline("device", imgs, preset, "fpi", "continuous", 7, 3, torch.device("cpu"), solver="sor", rank=1,
                      world=2)
    assert (d.seed, d.batch_size, d.rank, d.world, d.task.name, d.label.name) == (7, 3, 1, 2, "fpi", "continuous")
    assert d.executor.solver is SOLVERS["sor"] and d.preset is preset and d.label.logistic == preset.logistic
    # rank 1 of 2 takes its own half of the epoch's shuffled order
    assert [b.tolist() for b in d.batches(0)] == [b.tolist() for b in epoch_batches(5, 3, 7, 0, 1, 2)]
