"""The two training pipelines draw the same samples from the same seeds."""
import os
import re

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


@pytest.mark.parametrize("name,size,task,label", [("carpet", 264, "nsa", "logistic"),
                                                   ("bottle", 256, "nsa", "logistic"),
                                                   ("bottle", 256, "cutpaste", "binary")])
def test_cpu_workers_and_device_pipeline_agree(name, size, task, label):
    # carpet: flips, mixed clone; bottle: rotation, object masks, normal clone; cutpaste: the source
    # is the destination image. Both pipelines see identical augmented images, object masks and
    # plans; only the Poisson solve (OpenCV's FFT against the batched DST) may move a pixel by a grey level
    preset = get_preset(name)
    imgs = np.stack(objects_on_background(10, size=size))
    cpu = CpuPipeline(imgs, preset, task, label, 3, 5, 0, torch.device("cpu"))
    dev = BatchedPipeline(imgs, preset, task, label, 3, 5, torch.device("cpu"))
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
    log, entered, recorded, waited, streams = [], [], [], [], []

    class Obj:
        def __init__(self, *a, **k):
            self.device = getattr(current, "device", "cuda:0 (default)")
            log.append((type(self).__name__, self.device))

        def record(self, stream): recorded.append((self, stream))
        def wait_event(self, ev): log.append(("wait", self.device)) or waited.append(ev)

    class Stream(Obj):
        def __init__(self, device=None):
            super().__init__()
            self.device = str(device) if device is not None else self.device
            streams.append(self)

    class Event(Obj): pass

    class Ctx:
        def __init__(self, s): entered.append(s)
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
    # the jobs run on the side stream of the pipeline's GPU, each marks its end there, and the
    # consumer waits for exactly those marks
    side = streams[0]
    assert side.device == "cuda:1" and entered == [side] * 3
    assert [s for _, s in recorded] == [side] * 3 and waited == [ev for ev, _ in recorded]


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
    with pytest.raises(NsaError, match=re.escape(
            "--solver sor chooses the Poisson solver of the batched executor; CPU workers blend with OpenCV. "
            "Add --synth device (or --gpu-blend), or drop --solver.")):
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
    # (labels other than the task's default: a dropped label would fall back to it)
    w = make_pipeline("workers", imgs, preset, "cutpaste", "continuous", 7, 3, torch.device("cpu"), workers=2,
                      rank=1, world=2)
    assert (w.seed, w.batch_size, w.workers, w.rank, w.world) == (7, 3, 2, 1, 2)
    assert (w.ds.task.name, w.ds.label_mode, w.ds.seed, w.ds.preset) == ("cutpaste", "continuous", 7, preset)
    assert [b.tolist() for b in w.batches(0)] == [b.tolist() for b in epoch_batches(5, 3, 7, 0, 1, 2)]
    assert make_pipeline("workers", imgs, preset, "nsa", "logistic", 7, 3, torch.device("cpu")).workers == 0
    d = make_pipeline("device", imgs, preset, "fpi", "continuous", 7, 3, torch.device("cpu"), solver="sor", rank=1,
                      world=2)
    assert (d.seed, d.batch_size, d.rank, d.world, d.task.name, d.label.name) == (7, 3, 1, 2, "fpi", "continuous")
    assert d.executor.solver is SOLVERS["sor"] and d.preset is preset and d.label.logistic == preset.logistic
    # rank 1 of 2 takes its own half of the epoch's shuffled order
    assert [b.tolist() for b in d.batches(0)] == [b.tolist() for b in epoch_batches(5, 3, 7, 0, 1, 2)]


class _Moved:
    """A batch tensor that records how it was moved."""

    def __init__(self, device, log):
        self.device, self.log = torch.device(device), log

    def to(self, device, non_blocking=False):
        self.log.append((str(self.device), str(device), non_blocking))
        return self


@pytest.mark.parametrize("source, target, asynchronous", [("cpu", "cuda:0", True), ("cpu", "cpu", False),
                                                         ("cuda:0", "cuda:0", False), ("cuda:0", "cpu", False)])
def test_only_host_to_gpu_copies_are_asynchronous(source, target, asynchronous):
    # a copy back to the host must wait: the host reads the data next
    from nsa_fast.pipelines import TrainBatch, to_training_device
    from nsa_fast.sampler import Stats

    log, stats = [], Stats(samples=3)
    batch = TrainBatch(_Moved(source, log), _Moved(source, log), stats)
    (out,) = to_training_device([batch], torch.device(target))
    assert log == [(source, target, asynchronous)] * 2 and out.stats is stats


def test_prefetching_nothing_yields_nothing():
    from nsa_fast.pipelines import prefetched

    assert list(prefetched([], torch.device("cpu"))) == []


def _recording_dali(monkeypatch):
    from nsa_fast import dali_loader

    made = []

    class Loader:
        def __init__(self, files, preset, batch_size, seed, **kw):
            made.append(dict(files=files, preset=preset, batch_size=batch_size, seed=seed, **kw))

    monkeypatch.setattr(dali_loader, "DaliTrainLoader", Loader)
    return made


def test_the_dali_reader_runs_on_the_pipelines_gpu_with_the_ranks_shard(monkeypatch):
    from nsa_fast.pipelines import DaliPipeline, make_pipeline

    made = _recording_dali(monkeypatch)
    preset, median = get_preset("bottle"), lambda x: x
    files = ["a.png", "b.png"]
    DaliPipeline(files, preset, "nsa", "logistic", 5, 4, torch.device("cuda", 1), disk_median=median)
    DaliPipeline(files, preset, "nsa", "logistic", 5, 4, torch.device("cpu"))
    made_by_choice = make_pipeline("dali", files, preset, "nsa", "logistic", 6, 3, torch.device("cpu"), workers=3,
                                   solver="sor", rank=1, world=2)
    assert type(made_by_choice) is DaliPipeline
    make_pipeline("dali", files, preset, "nsa", "logistic", 6, 3, torch.device("cpu"), workers=0)
    common = dict(files=files, preset=preset, return_indices=True)
    assert made == [dict(common, batch_size=4, seed=5, device="gpu", device_id=1, shard_id=0, num_shards=1,
                         num_threads=2),
                    dict(common, batch_size=4, seed=5, device="cpu", device_id=None, shard_id=0, num_shards=1,
                         num_threads=2),
                    dict(common, batch_size=3, seed=6, device="cpu", device_id=None, shard_id=1, num_shards=2,
                         num_threads=3),
                    dict(common, batch_size=3, seed=6, device="cpu", device_id=None, shard_id=0, num_shards=1,
                         num_threads=1)]


def test_settings_reach_the_executor_and_the_device_check(monkeypatch):
    from nsa_fast import pipelines
    from nsa_fast.blend.solvers import SOLVERS

    _recording_dali(monkeypatch)
    checked = []
    monkeypatch.setattr(pipelines, "check_device_needs", lambda *a: checked.append(a))
    preset, median = get_preset("bottle"), lambda x: x
    imgs = np.stack(objects_on_background(3, size=256))
    made = [pipelines.BatchedPipeline(imgs, preset, "nsa", "logistic", 0, 2, torch.device("cpu"),
                                      solver=SOLVERS["sor"], disk_median=median),
            pipelines.DaliPipeline(["a.png"], preset, "nsa", "logistic", 0, 2, torch.device("cpu"),
                                   solver=SOLVERS["sor"], disk_median=median)]
    for pipe, args in zip(made, checked, strict=True):
        assert pipe.executor.solver is SOLVERS["sor"] and pipe.executor.disk_median is median
        assert args == (torch.device("cpu"), pipe.label, median) and pipe.label.name == "logistic"


def test_the_dali_pipelines_source_is_the_next_image_of_the_batch(monkeypatch):
    # DALI hands out batches: sample k's source is image k - 1 (cyclically); CutPaste's is its own
    from nsa_fast import pipelines

    _recording_dali(monkeypatch)
    seen = []
    def synthesize_batch(executor, dst, src, rngs, *args):
        seen.append((dst, src, rngs))
        return pipelines.TrainBatch(dst, dst, None), "stats"

    monkeypatch.setattr(pipelines, "synthesize_batch", synthesize_batch)
    images = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for task, expect in (("nsa", [3, 0, 1, 2]), ("cutpaste", [0, 1, 2, 3])):
        seen.clear()
        pipe = pipelines.DaliPipeline(["a.png"], get_preset("carpet"), task, "binary", 9, 4, torch.device("cpu"))
        pipe._blend(2, images, torch.tensor([7, 3, 5, 1]))
        ((dst, src, rngs),) = seen
        assert dst is images and all(torch.equal(src[k], images[j]) for k, j in enumerate(expect)), task
        # each sample's randomness is keyed by its file index
        assert [r.integers(1 << 30) for r in rngs] == [pipelines.sample_rng(9, 2, i).integers(1 << 30)
                                                       for i in (7, 3, 5, 1)]


@pytest.mark.parametrize("device, pinned", [("cpu", False), ("cuda", True)])
def test_cpu_workers_pin_their_batches_only_for_a_gpu(monkeypatch, device, pinned):
    from nsa_fast import pipelines

    loaders = []
    monkeypatch.setattr(pipelines, "DataLoader", lambda ds, **kw: loaders.append(kw) or [])
    imgs = np.stack(objects_on_background(4, size=256))
    pipe = CpuPipeline(imgs, get_preset("bottle"), "nsa", "logistic", 0, 2, 3, torch.device(device))
    assert list(pipe.epoch(0)) == []
    ((kw,),) = [loaders]
    assert kw["num_workers"] == 3 and kw["pin_memory"] is pinned
    assert kw["batch_sampler"] == [[(0, int(i)) for i in b] for b in pipe.batches(0)]


def test_a_cache_already_on_the_device_is_used_as_it_is():
    imgs = torch.from_numpy(np.stack(objects_on_background(3, size=256)))
    pipe = BatchedPipeline(imgs, get_preset("bottle"), "nsa", "logistic", 0, 2, torch.device("cpu"))
    assert pipe.cache.data_ptr() == imgs.data_ptr()
    assert len(list(pipe.epoch(0))) == 1


def test_plans_and_blends_use_each_images_own_object_mask():
    # destination object on the left, source object on the right: the plan is the one drawn with
    # each image's own mask (the swapped masks give another plan), and the executor gets both masks
    from nsa_fast import pipelines
    from nsa_fast.labels import Label
    from nsa_fast.objects import object_mask

    preset, task = get_preset("bottle"), pipelines.get_task("nsa")
    imgs = np.full((2, 256, 256, 3), 230, np.uint8)
    imgs[0, 40:216, 10:128] = 40
    imgs[1, 40:216, 128:246] = 40
    dst, src = torch.from_numpy(imgs[:1]), torch.from_numpy(imgs[1:])
    d_obj, s_obj = object_mask(dst, preset.background), object_mask(src, preset.background)
    calls = []
    executor = lambda *a, **k: calls.append((a, k)) or "batch"  # noqa: E731
    out, stats = pipelines.synthesize_batch(executor, dst, src, [pipelines.sample_rng(0, 0, 0)], preset, task,
                                            Label.for_preset("logistic", preset))
    ((args, kw),) = calls
    plan = args[2][0]
    def drawn(src_mask, dst_mask):
        return pipelines.sample_plan((256, 256), preset, task, pipelines.sample_rng(0, 0, 0), src_mask, dst_mask)

    want, swapped = drawn(s_obj[0].numpy(), d_obj[0].numpy()), drawn(d_obj[0].numpy(), s_obj[0].numpy())
    assert out == "batch" and stats == plan.stats and plan.n_patches > 0
    assert np.array_equal(plan.src_box, want.src_box) and np.array_equal(plan.dst_box, want.dst_box)
    assert not (np.array_equal(plan.src_box, swapped.src_box) and np.array_equal(plan.dst_box, swapped.dst_box))
    assert torch.equal(kw["src_obj"], s_obj) and torch.equal(kw["dst_obj"], d_obj)


def test_boxes_are_padded_to_the_presets_n_max_in_every_batch():
    # NSA.batch and the synth CLI stack boxes of many batches: a batch whose samples drew fewer
    # patches than n_max still has (B, n_max, 4) boxes, -1 where no patch is
    preset = get_preset("carpet").replace(n_max=6)
    pipe = BatchedPipeline(np.stack(objects_on_background(4, size=264)), preset, "nsa", "logistic", 0, 2,
                           torch.device("cpu"))
    for epoch in range(2):
        for b in pipe.batches(epoch):
            _, batch, stats = pipe.sample(epoch, b)
            assert batch.boxes.shape == (2, 6, 4)
            assert (batch.boxes[..., 0] >= 0).sum() == stats.accepted < 12  # fewer rounds than n_max
