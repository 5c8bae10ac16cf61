"""NSATransform: NSA as a torchvision v2 transform, equal to NSA.batch for the same seed."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from _support import objects_on_background
from nsa_fast import NSA, NSATransform
from nsa_fast.errors import InputError

SIDE = 64
SMALL = {"image_size": SIDE, "center_crop": None, "crop": SIDE}  # bottle at 64 px: object masks, rotation


def transform(**kw):
    return NSATransform("bottle", task="nsa", label="logistic", **SMALL, **kw)


@pytest.fixture(scope="module")
def images():
    """Six normal images, uint8 (6, 3, 64, 64): torchvision's layout."""
    return torch.from_numpy(np.stack(objects_on_background(6, size=SIDE))).permute(0, 3, 1, 2).contiguous()


_REFS = {}


def nsa_batch(batch, seed, epoch):
    """What NSA.batch makes of an (N, C, H, W) batch, the transform's reference (made once per
    batch, seed and epoch: the tests share them)."""
    key = (batch.device.type, batch.cpu().numpy().tobytes(), seed, epoch)
    if key not in _REFS:
        nsa = NSA.from_preset("bottle", task="nsa", label="logistic", **SMALL)
        _REFS[key] = nsa.batch(batch.permute(0, 2, 3, 1).contiguous(), range(len(batch)), seed=seed, epoch=epoch)
    return _REFS[key]


def nchw(t):
    return t.permute(0, 3, 1, 2)


def test_the_kth_call_draws_what_nsa_batch_draws_for_epoch_k(images):
    batch = tv_tensors.Image(images[:3])
    t = transform(seed=5, originals=True)
    first, second = t(batch), t(batch)
    assert t.epoch == 2  # one NSA.batch epoch per call
    for k, (image, mask, original) in enumerate((first, second)):
        ref = nsa_batch(images[:3], seed=5, epoch=k)
        assert type(image) is tv_tensors.Image and type(original) is tv_tensors.Image
        assert type(mask) is tv_tensors.Mask and mask.dtype == torch.float32
        assert image.dtype == torch.uint8 and image.shape == (3, 3, SIDE, SIDE) and mask.shape == (3, 1, SIDE, SIDE)
        assert torch.equal(image, nchw(ref.images)) and torch.equal(mask[:, 0], ref.labels)
        assert torch.equal(original, nchw(ref.originals))
        assert mask.amax() > 0  # an anomaly was drawn: equal outputs are not two empty labels
    assert not torch.equal(first[0], second[0])  # the second call is a new draw
    t.epoch = 1  # an explicit epoch replays that draw
    assert all(torch.equal(a, b) for a, b in zip(t(batch), second))


def test_another_seed_draws_other_anomalies_and_a_start_epoch_is_the_first_calls(images):
    a = nsa_batch(images[:3], seed=5, epoch=0)
    image, mask = transform(seed=6)(images[:3])
    assert not torch.equal(image, nchw(a.images)) and not torch.equal(mask[:, 0], a.labels)
    image, mask = transform(seed=5, epoch=1)(images[:3])  # the epoch given is the first call's
    b = nsa_batch(images[:3], seed=5, epoch=1)
    assert torch.equal(image, nchw(b.images)) and torch.equal(mask[:, 0], b.labels)


class Normal(Dataset):
    """A user's dataset of normal images: dict samples of a tv_tensors.Image (C, H, W) and an id."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": tv_tensors.Image(self.images[i]), "id": i}


def test_in_a_compose_on_a_dataloaders_batches(images):
    """As a DRAEM-style loop uses it: the loader collates, the Compose runs on each batch."""
    augment = v2.Compose([transform(seed=2), v2.ToDtype(torch.float32, scale=True)])
    loader = DataLoader(Normal(images), batch_size=3, shuffle=False)
    seen = 0
    for k, sample in enumerate(loader):
        out = augment(sample)
        assert sorted(out) == ["id", "image", "mask"] and torch.equal(out["id"], torch.arange(3 * k, 3 * k + 3))
        ref = nsa_batch(images[3 * k:3 * k + 3], seed=2, epoch=k)
        assert type(out["image"]) is tv_tensors.Image and out["image"].dtype == torch.float32  # ToDtype ran
        assert type(out["mask"]) is tv_tensors.Mask and out["mask"].dtype == torch.float32  # ... on the image only
        assert torch.equal(out["image"], v2.functional.to_dtype(nchw(ref.images), torch.float32, scale=True))
        assert torch.equal(out["mask"][:, 0], ref.labels)
        seen += 1
    assert seen == 2 and augment.transforms[0].epoch == 2


def test_a_tuple_sample_gets_the_mask_after_the_image(images):
    t = transform(seed=2)
    targets = torch.zeros(3)
    image, mask, rest = t(images[:3], targets)
    assert type(image) is tv_tensors.Image and type(mask) is tv_tensors.Mask and rest is targets
    ref = nsa_batch(images[:3], seed=2, epoch=0)
    assert torch.equal(image, nchw(ref.images)) and torch.equal(mask[:, 0], ref.labels)


def test_wrong_inputs_get_an_input_error_that_says_what_to_do(images):
    import PIL.Image

    t = transform()
    batch = images[:2]
    cases = [
        (batch.float() / 255, (r"expected a batch of normal images as a uint8 tensor \(N, C, H, W\).*got Tensor "
                               r"torch.float32 \(2, 3, 64, 64\)\. Convert with v2\.ToDtype")),
        (tv_tensors.Image(batch[0]), r"got Image torch.uint8 \(3, 64, 64\)\. Add the batch dimension"),
        (batch[:, :1], r"takes 3-channel images \(N, 3, H, W\), got 1 channel\(s\).*v2\.Grayscale"),
        (batch.permute(0, 2, 3, 1), r"got 64 channel\(s\).*channels-last"),
        (batch[:, :, :40, :50], r"crops 64x64 pixels, got images of 50x40 \(width x height\)\. Resize them first"),
        (batch[:0], "at least one image"),
        (PIL.Image.new("RGB", (SIDE, SIDE)), "got a PIL image.*v2.PILToTensor"),
        ((tv_tensors.Image(batch), tv_tensors.Mask(batch[:, 0])), "got a Mask beside it"),
        ((tv_tensors.Image(batch), tv_tensors.Image(batch)), r"one tv_tensors\.Image\), got 2"),
        ({"image": batch, "mask": batch}, "already has a 'mask' entry"),
        ("a string", "got str"),
    ]
    for sample, match in cases:
        with pytest.raises(InputError, match=match):
            t(sample)
    assert t.epoch == 0  # a refused batch does not use up an epoch
    t.epoch = -1
    with pytest.raises(InputError, match="epoch: expected integers in 0 or more"):
        t(batch)
    with pytest.raises(InputError, match="preset: expected a preset name"):
        NSATransform(3)
    with pytest.raises(InputError, match="solver: expected one of"):
        transform(solver="fast")


@pytest.mark.cuda
def test_a_cuda_batch_stays_on_its_device_and_matches_nsa_batch_there(images):
    batch = tv_tensors.Image(images[:3].cuda())
    image, mask = transform(seed=4, solver="dst")(batch)
    assert image.device == batch.device and mask.device == batch.device
    ref = nsa_batch(batch, seed=4, epoch=0)
    assert torch.equal(image, nchw(ref.images)) and torch.equal(mask[:, 0], ref.labels)
