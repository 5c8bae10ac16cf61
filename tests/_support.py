"""Small builders shared by the tests."""
import numpy as np


def disc_object(shape, center, radius) -> np.ndarray:
    """A bool disc: a stand-in object mask."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius ** 2


def clone_cases(rng, n, side=(8, 180), channels=3, dst_side=256, border_every=4):
    """Random seamless-clone problems and OpenCV's answers.

    Returns a dict of padded arrays (src, dst, mask, centers, modes, sizes) and the list of
    cv2.seamlessClone results. Masks are rectangles, random blobs or fractional; every
    ``border_every``-th case puts the clone region against the destination border.
    """
    import cv2

    from nsa_fast.sampler import MIXED, NORMAL

    S = side[1]
    src = np.zeros((n, S, S, channels), np.uint8)
    mask = np.zeros((n, S, S), np.uint8)
    dst = rng.integers(0, 256, (n, dst_side, dst_side, channels)).astype(np.uint8)
    dst = np.stack([cv2.GaussianBlur(d, (0, 0), 3).reshape(d.shape) for d in dst])
    centers, modes, sizes, results = [], [], [], []
    for i in range(n):
        h, w = rng.integers(side[0], side[1] + 1, size=2)
        s = rng.integers(0, 256, (h, w, channels)).astype(np.uint8)
        s = cv2.GaussianBlur(s, (0, 0), 1.5).reshape(h, w, channels)
        kind = i % 3
        m = np.zeros((h, w), np.uint8)
        if kind == 0:                           # the NSA rectangle
            m[1:-1, 1:-1] = 255
        elif kind == 1:                         # a blob
            yy, xx = np.mgrid[:h, :w]
            m[((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 < rng.uniform(0.3, 1.2)] = 255
        else:                                   # fractional, as FPI-Poisson
            m[:] = int(np.ceil(255 * rng.uniform(0.05, 0.95)))
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = 0
        if not m.any():
            m[h // 2, w // 2] = 255
        ys, xs = np.nonzero(m)
        rh, rw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        # valid centres: the ROI (rh x rw) at (cx - rw//2, cy - rh//2) fits in the destination
        lo_x, hi_x = rw // 2, dst_side - rw + rw // 2
        lo_y, hi_y = rh // 2, dst_side - rh + rh // 2
        if i % border_every == 0:
            cx, cy = (lo_x, hi_y) if i % 2 else (hi_x, lo_y)
        else:
            cx, cy = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
        mode = (NORMAL, MIXED)[int(rng.integers(2))]
        flag = cv2.NORMAL_CLONE if mode == NORMAL else cv2.MIXED_CLONE
        pad = (lambda a: a) if channels == 3 else (lambda a: np.concatenate([a, 0 * a, 0 * a], 2))
        res = cv2.seamlessClone(pad(s), pad(dst[i]), m.copy(), (int(cx), int(cy)), flag)[..., :channels]
        src[i, :h, :w], mask[i, :h, :w] = s, m
        centers.append((cx, cy))
        modes.append(flag)  # OpenCV's flags, as seamless_clone_batch takes them
        sizes.append((h, w))
        results.append(res)
    return dict(src=src, dst=dst, mask=mask, centers=np.array(centers), modes=np.array(modes),
                sizes=np.array(sizes)), np.stack(results)


def agreement(ours: np.ndarray, ref: np.ndarray, dst: np.ndarray):
    """Over the pixels either result changed: fraction within 1 grey level, and the max difference."""
    changed = (ours != dst) | (ref != dst)
    d = np.abs(ours.astype(int) - ref)[changed]
    if d.size == 0:
        return 1.0, 0, 0
    return float((d <= 1).mean()), int(d.max()), int(d.size)


def objects_on_background(n, size=224, seed=0):
    """uint8 RGB images of a textured disc (a scikit-image photo, darkened) on a bright background,
    like the bottle class: object masks with background (200, 60) find the disc."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = np.clip(rng.normal(225, 4, (size, size, 3)), 0, 255).astype(np.uint8)
        tex = (cv2.resize(photos[i % 4], (size, size), interpolation=cv2.INTER_AREA) * 0.5).astype(np.uint8)
        cy, cx = size // 2 + rng.integers(-8, 9, size=2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size * 0.36 + i % 7) ** 2
        img[disc] = tex[disc]
        out.append(img)
    return out
