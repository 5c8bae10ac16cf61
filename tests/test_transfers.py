"""Host-device traffic of the batched path, counted on a stand-in device (tests/fake_device.py).

Target per batch of the --gpu-blend pipeline: one device-to-host copy (the object masks the CPU
sampler needs), two host-to-device copies (the transforms, then all plan metadata, each packed
into one buffer), and no operation that makes the host wait for the device.
"""
import numpy as np
import pytest
import torch

from _support import objects_on_background
from fake_device import DEVICE, FakeDevice, host_data, kernel
from nsa_fast.blend.poisson import seamless_clone_batch
from nsa_fast.blend import solvers
from nsa_fast.blend.solvers import dst_solve, sor_solve
from nsa_fast.median import disk_median
from nsa_fast.pipelines import BatchedPipeline
from nsa_fast.presets import get_preset

_disk = kernel(lambda x: torch.from_numpy(np.stack([disk_median(m, 5) for m in x.numpy()])))


def pipeline(preset_name, device, solver=dst_solve, size=256):
    imgs = np.stack(objects_on_background(10, size=size))
    return BatchedPipeline(imgs, get_preset(preset_name), "nsa", "logistic", 0, 6, device, solver=solver,
                           disk_median=_disk if device == DEVICE else None)


@pytest.mark.parametrize("preset_name,masks", [("bottle", 1), ("carpet", 0)])
@pytest.mark.parametrize("solver", [dst_solve, sor_solve])
def test_one_batch_crosses_at_most_three_times(preset_name, masks, solver, monkeypatch):
    size = 264 if preset_name == "carpet" else 256
    monkeypatch.setattr(solvers, "_TABLES", {})  # the stand-in's tables stay out of later tests
    with FakeDevice() as dev:
        pipe = pipeline(preset_name, DEVICE, solver, size)
        solvers._trig_tables(solvers.TABLE_STEP, DEVICE)
        # not per batch: the image cache's one copy at start-up, the direct solve's tables once a device
        dev.reset()
        images, labels, _ = pipe.make(1, pipe.batches(1)[0])
        assert isinstance(images, torch.Tensor) and images.device == DEVICE and labels.device == DEVICE
        assert dev.h2d == 2, dev.events
        assert dev.d2h == masks, dev.events
        assert dev.syncs == 0, dev.events
    # the stand-in computed what the CPU twin computes: exactly with SOR (the same float32 sweeps);
    # the direct solve's float32 products run in another order there, so a pixel may differ by a grey level
    twin = pipeline(preset_name, torch.device("cpu"), solver, size)
    want_i, want_l, _ = twin.make(1, twin.batches(1)[0])
    got_i, got_l = host_data(images), host_data(labels)
    if solver is sor_solve:
        assert torch.equal(got_i, want_i) and torch.equal(got_l, want_l)
    else:
        assert (got_i.int() - want_i.int()).abs().max() <= 1 and (got_l == want_l).float().mean() > 0.9999
    assert want_l.any()


def test_public_clone_sends_its_metadata_in_one_copy(monkeypatch):
    monkeypatch.setattr(solvers, "_TABLES", {})
    rng = np.random.default_rng(0)
    src = torch.from_numpy(rng.integers(0, 256, (4, 30, 40, 3)).astype(np.uint8))
    dst = torch.from_numpy(rng.integers(0, 256, (4, 100, 100, 3)).astype(np.uint8))
    mask = torch.zeros(4, 30, 40, dtype=torch.uint8)
    mask[:, 1:-1, 1:-1] = 255
    centers = np.array([[50, 50], [30, 40], [60, 70], [45, 45]])
    roi = np.tile([1, 29, 1, 39], (4, 1))
    want = seamless_clone_batch(src, dst, mask, centers, "normal", roi_src=roi)
    with FakeDevice() as dev:
        s, d, m = (t.to(DEVICE) for t in (src, dst, mask))
        solvers._trig_tables(solvers.TABLE_STEP, DEVICE)  # once a device, not per call
        dev.reset()
        out = seamless_clone_batch(s, d, m, centers, "normal", roi_src=roi)
        assert (dev.h2d, dev.d2h, dev.syncs) == (1, 0, 0), dev.events
        dev.reset()
        seamless_clone_batch(s, d, m, centers, "normal")  # ROIs read from the mask: one read-back
        assert (dev.h2d, dev.d2h, dev.syncs) == (1, 1, 0), dev.events
    assert (host_data(out).int() - want.int()).abs().max() <= 1  # products in another order on the "GPU"


def test_the_stand_in_refuses_and_counts_what_a_gpu_would():
    with FakeDevice() as dev:
        x = torch.as_tensor(np.arange(6.0), device=DEVICE)
        assert dev.h2d == 1
        with pytest.raises(RuntimeError, match="host tensor of shape"):
            x + torch.ones(6)
        with pytest.raises(RuntimeError, match="uncounted copy"):
            x + torch.tensor([1.0] * 6, device=DEVICE)
        y = x * 2 + torch.tensor(1.0)  # 0-d tensors are scalars, as on CUDA
        if (y > 3).any():  # a data-dependent branch reads a value back
            pass
        assert dev.d2h == 1
        x[x > 2]
        assert dev.syncs == 1
        x[x > 2] = 0.0  # a boolean-mask write: the GPU counts the mask first
        assert dev.syncs == 2
        x.cpu()
        assert dev.d2h == 2
        with pytest.raises(RuntimeError, match="numpy"):
            x.numpy()  # as for a CUDA tensor: no implicit read-back


def test_metadata_goes_to_a_gpu_from_pinned_memory_without_waiting(monkeypatch):
    # A pageable copy makes the host wait for the GPU; a pinned one with non_blocking does not.
    from nsa_fast.transfer import HostPack

    calls = []
    zeros = torch.zeros

    def allocate(*shape, pin_memory=False, **kw):  # pinning needs a CUDA driver: recorded, not done
        calls.append(("pinned" if pin_memory else "pageable", zeros(*shape, **kw)))
        return calls[-1][1]

    monkeypatch.setattr(torch, "zeros", allocate)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t, *a, **k: calls.append("pin again") or t)
    monkeypatch.setattr(torch.Tensor, "to", lambda t, *a, **k: calls.append(("to", str(a[0]), k)) or t)
    pack = HostPack()
    pack.add("boxes", np.arange(8).reshape(2, 4))
    pack.add("factor", np.array([0.5, 0.25], np.float32))
    pack.send(torch.device("cuda", 0))
    assert [c[0] if isinstance(c[0], str) and len(c) == 2 and c[0] in ("pinned", "pageable") else c for c in calls] \
        == ["pinned", ("to", "cuda:0", {"non_blocking": True})]
    filled = calls[0][1]  # the pinned buffer is the one filled: no second host copy
    assert filled[:16].view(torch.int64).tolist() == [0, 1]
