"""An ONNX export that takes a camera's pixels, and the check that it agrees with PyTorch.

The graph repeats ``predict``'s own steps, so that a deployment has nothing left to get wrong:
the 16-bit intensity window (``io.to_8bit``), the resize to the evaluation size (``io.convert``:
OpenCV's area resize when shrinking, its fixed-point bilinear one when enlarging, both copied to
the bit), the central crop (``data.eval_input``), ``model.normalize``, the network, the zero
padding, the image score (mean of the map), the map resized back to the input's size
(``inputs.to_input_size``) and, with stored thresholds, the decisions.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, NsaError, warn, wxh
from .model import normalize

INPUT = "images"
# Measured on demo and MVTec 3D models (1-60 epochs; colour, grey and 16-bit; inputs shrunk by
# area, by integer factors, enlarged, squashed): the preprocessing is bit-exact, so maps differ by
# < 2e-6 and scores by < 2e-7, the two runtimes' float arithmetic. One grey level of difference in
# resized pixels moved maps by 8e-3 and scores by 4e-4 (a 60-epoch model): these tolerances accept
# the arithmetic with a margin of 50 and catch preprocessing that is not the same. Both are in units
# of the map's full scale: 1 for probability maps (sigmoid head), 255 for grey-level ones (ReLU).
MAP_TOLERANCE = 1e-4     # largest |map difference|
SCORE_TOLERANCE = 1e-5   # largest |score difference|
PIP = "pip install 'nsa_fast[onnx]'"


def _taps(src: int, dst: int, area_mode: bool = False, clamp: bool = True) -> list[tuple[int, np.float32]]:
    """Per output pixel of cv2's bilinear resize along one axis (imgproc/resize.cpp), in its float32
    arithmetic: the first source pixel and the second one's weight. ``area_mode``: its stand-in for
    INTER_AREA when an axis is enlarged. Columns are clamped at the edges; rows are not (both taps
    then read the edge row, which matters to the fixed-point rounding)."""
    inv = dst / src
    scale, out = 1.0 / inv, []
    for d in range(dst):
        if area_mode:
            s = math.floor(d * scale)
            f = np.float32((d + 1) - (s + 1) * inv)
            f = np.float32(0) if f <= 0 else np.float32(f - math.floor(f))
        else:
            f = np.float32((d + 0.5) * scale - 0.5)
            s = math.floor(f)
            f = np.float32(f - np.float32(s))
        if clamp and (s < 0 or s >= src - 1):
            f, s = np.float32(0), min(max(s, 0), src - 1)
        out.append((s, f))
    return out


def _weights(src: int, dst: int, interpolation: int) -> np.ndarray:
    """(dst, src) float32 weights of cv2.resize along one axis, from OpenCV itself: an identity
    matrix resized along that axis only (the other keeps scale 1, which OpenCV treats as shrinking,
    so the path it takes is the one a shrink on both axes takes)."""
    import cv2

    return np.ascontiguousarray(cv2.resize(np.eye(src, dtype=np.float32), (src, dst), interpolation=interpolation))


def _fixed(c) -> float:
    return float(np.rint(np.float32(c) * np.float32(2048)))  # INTER_RESIZE_COEF_SCALE, saturate_cast's rounding


def input_resize(h: int, w: int, size: int) -> dict | None:
    """How cv2 resizes a uint8 (h, w) image to size x size in ``io.convert`` (None: it does not):
    the kind, and the arrays the graph computes it with (``Deployed.pixels``)."""
    import cv2

    if (h, w) == (size, size):
        return None
    shrink = h > size or w > size  # io.convert: INTER_AREA then, else INTER_LINEAR
    if shrink and h % size == 0 and w % size == 0:  # OpenCV's fast path: integer sums x float32(1/area),
        ky, kx = h // size, w // size                # and (sum + 2) >> 2 in its 2 x 2 vector code
        box = [np.kron(np.eye(size, dtype=np.float32), np.ones(k, np.float32)) for k in (ky, kx)]
        return {"kind": "box", "rows": box[0], "cols": box[1].T.copy(), "factor": float(np.float32(1 / (ky * kx))),
                "half_up": (ky, kx) == (2, 2)}
    if shrink and h >= size and w >= size:
        rows, cols = (_weights(n, size, cv2.INTER_AREA) for n in (h, w))
        return {"kind": "area", "rows": rows, "cols": cols.T.copy(), "factor": 1.0}
    # fixed point: columns summed with 11-bit weights; per row tap ((sum >> 4) * beta) >> 16, and
    # (tap0 + tap1 + 2) >> 2, as OpenCV's vector code does
    cols = np.zeros((w, size), np.float32)
    for d, (s, f) in enumerate(_taps(w, size, shrink)):
        cols[s, d] += _fixed(1 - f)
        cols[min(s + 1, w - 1), d] += _fixed(f)
    rows = _taps(h, size, shrink, clamp=False)
    return {"kind": "fixed", "cols": cols, "i0": np.array([min(max(s, 0), h - 1) for s, _ in rows]),
            "i1": np.array([min(max(s + 1, 0), h - 1) for s, _ in rows]),
            "b0": np.array([[_fixed(1 - f)] for _, f in rows]), "b1": np.array([[_fixed(f)] for _, f in rows])}


def _f32(v: float) -> float:
    """A Python float that float32 holds exactly: torch then computes in float32, as numpy does."""
    return float(np.float32(v))


class Deployed(torch.nn.Module):
    """Camera pixels (N, H, W[, 3]) -> map (N, H, W), score (N,) [, normalised score, decisions]."""

    def __init__(self, net, preset, shape: tuple[int, int], th=None):
        super().__init__()
        import cv2

        from .data import eval_input, eval_size

        self.net, self.preset, self.th, (H, W) = net, preset, th, shape
        self.S = S = eval_size(preset)
        _, self.off = eval_input(np.zeros((1, S, S, 1), np.uint8), preset)
        self.resize = input_resize(H, W, S)
        for k, v in (self.resize or {}).items():
            if isinstance(v, np.ndarray):  # float32 weights, float64 fixed-point betas, int64 row indices
                self.register_buffer(k, torch.from_numpy(v))
        self.back = (H, W) != (S, S)
        if self.back:
            self.register_buffer("back_rows", torch.from_numpy(_weights(S, H, cv2.INTER_LINEAR)))
            self.register_buffer("back_cols", torch.from_numpy(_weights(S, W, cv2.INTER_LINEAR).T.copy()))
        if th is not None:  # constants as buffers: a Python float would enter the graph as float32
            from .thresholds import mask_region
            from .viz import seen_box

            self.register_buffer("image_t", torch.tensor(th.image, dtype=torch.float64))
            self.register_buffer("scale_t", torch.tensor(th.scale, dtype=torch.float64))
            self.register_buffer("pixel_t", torch.tensor(_f32(th.pixel), dtype=torch.float32))
            self.register_buffer("region", torch.from_numpy(mask_region(seen_box(preset, S), S, (H, W))))
        # normalize caches the ImageNet statistics at first use: fill that cache now, with real
        # tensors, not inside the exporter's tracing, which would leave fake ones there
        normalize(torch.zeros((1, 1, 1, preset.channels), dtype=torch.uint8), preset.normalize)

    def pixels(self, images) -> torch.Tensor:
        """(N, C, S, S) float32 of the uint8 values predict's load_images gives for the images."""
        p, r = self.preset, self.resize
        x = images.float()
        if p.window is not None:  # io.to_8bit, in the same float32 arithmetic
            lo, hi = p.window
            x = torch.round(torch.clamp((x - _f32(lo)) * _f32(255.0 / (hi - lo)), 0, 255))
        x = (x.unsqueeze(-1) if p.channels == 1 else x).permute(0, 3, 1, 2)
        if r is not None and r["kind"] == "fixed":  # integers, exact in float32 and then float64
            q = torch.floor((x @ self.cols) / 16).double()
            taps = torch.floor(q.index_select(2, self.i0) * self.b0 / 65536) + \
                torch.floor(q.index_select(2, self.i1) * self.b1 / 65536)
            x = torch.clamp(torch.floor((taps + 2) / 4), 0, 255).float()
        elif r is not None:
            x = self.rows @ x @ self.cols
            x = x * r["factor"] if r["factor"] != 1.0 else x
            x = torch.clamp(torch.floor(x + 0.5) if r.get("half_up") else torch.round(x), 0, 255)
        return x

    def forward(self, images):
        p, th, o = self.preset, self.th, self.off
        c = p.crop if o else self.S
        x = self.pixels(images)[:, :, o:o + c, o:o + c].permute(0, 2, 3, 1).to(torch.uint8)
        m = self.net.anomaly_map(normalize(x, p.normalize))
        m = torch.nn.functional.pad(m, (o, self.S - o - c) * 2) if o else m
        score = m.mean(dim=(1, 2))
        full = self.back_rows @ m @ self.back_cols if self.back else m
        if th is None:
            return full, score
        # the image decision in float64, as predict compares a Python float; the pixel one in float32
        s64 = score.double()
        normalised = torch.clamp(0.5 + (s64 - self.image_t) / self.scale_t, 0.0, 1.0).float()
        return full, score, normalised, s64 > self.image_t, (full > self.pixel_t) & self.region


OUTPUTS = [("anomaly_map", "float32", ["N", "H", "W"], "the anomaly map at the input's size (higher: more anomalous)"),
           ("score", "float32", ["N"], "image score: the mean of the map at the evaluation size, as evaluate forms it")]
DECISIONS = [("normalized_score", "float32", ["N"], ("0 at the median normal score, 0.5 at the image threshold, "
                                                    "1 at twice its distance from that median, clipped to 0..1")),
             ("is_defective", "bool", ["N"], "score > thresholds.image"),
             ("defect_mask", "bool", ["N", "H", "W"], ("anomaly_map > thresholds.pixel, inside the region the network "
                                                       "sees less its edge (thresholds.EDGE)"))]


def pick_input_size(ckpt, preset, given: str | None) -> tuple[int, int]:
    """(H, W) the export takes: --input-size WxH, else config.json's input_size beside the
    checkpoint (the training images' size), else the evaluation size."""
    from .data import eval_size

    if given:
        w, _, h = given.lower().partition("x")
        if not (w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
            raise InputError(f"--input-size expects WIDTHxHEIGHT in pixels, e.g. 1024x768, got {given!r}.")
        return int(h), int(w)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        w, h = json.loads(Path(ckpt).with_name("config.json").read_text())["input_size"]
        return int(h), int(w)
    return eval_size(preset), eval_size(preset)


def tolerances(model) -> dict[str, float]:
    full = 255.0 if model.head == "relu" else 1.0
    return {"map": MAP_TOLERANCE * full, "score": SCORE_TOLERANCE * full}


def contract(model, preset, th, shape, ckpt) -> dict:
    """model.json: what the graph takes and gives, and how far it may lie from PyTorch."""
    from .thresholds import file_sha256

    H, W = shape
    dtype = "uint16" if preset.window else "uint8"
    window = f"; grey levels {preset.window[0]:g}..{preset.window[1]:g} map to 0..255 inside" if preset.window else ""
    return {
        "checkpoint": Path(ckpt).name, "checkpoint_sha256": file_sha256(Path(ckpt)),
        "input": {"name": INPUT, "dtype": dtype, "shape": ["N", H, W] + ([3] if preset.channels == 3 else []),
                  "height": H, "width": W, "channel_order": "RGB" if preset.channels == 3 else "grey",
                  "accepted_sizes": f"exactly {W}x{H} (width x height), any batch size N; other sizes: resize or "
                                    "crop first, or export again with --input-size WxH",
                  "values": f"the file's {dtype} pixels{window}"},
        "outputs": [{"name": n, "dtype": d, "shape": [{"H": H, "W": W}.get(v, v) for v in s], "meaning": m}
                    for n, d, s, m in OUTPUTS + (DECISIONS if th else [])],
        "preset": preset.to_dict(),
        "thresholds": asdict(th) if th else None,
        "tolerances": {**tolerances(model),
                       "meaning": "the largest differences from PyTorch that python -m nsa_fast.predict "
                                  "--verify-export accepts; every decision must agree"},
    }


def export(ckpt, out_dir, input_size: str | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """DIR/model.onnx (one self-contained file, model.json in its metadata too) and DIR/model.json."""
    from .evaluate import load_model
    from .io import output_folder, write_bytes_atomic, write_text_atomic
    from .thresholds import load_for

    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter's own dependency: fail here, with the advice)
    except ImportError as err:
        raise NsaError(f"--export onnx needs onnx and onnxscript: {PIP}") from err
    path = Path(out_dir) / "model.onnx"
    if path.exists() and not overwrite:
        raise InputError(f"{str(path)!r} exists already; give --overwrite to replace it, or another --out.")
    model, preset, _ = load_model(ckpt, torch.device("cpu"))
    th = load_for(ckpt)
    shape = pick_input_size(ckpt, preset, input_size)
    out = output_folder(out_dir)
    example = torch.zeros((2, *shape) + ((3,) if preset.channels == 3 else ()),
                          dtype=torch.uint16 if preset.window else torch.uint8)
    names = [n for n, *_ in OUTPUTS + (DECISIONS if th else [])]
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():  # the exporter narrates its passes
        program = torch.onnx.export(Deployed(model, preset, shape, th).eval(), (example,), input_names=[INPUT],
                                    output_names=names, dynamic_shapes={"images": {0: torch.export.Dim("N", min=1)}},
                                    dynamo=True, verbose=False, external_data=False)
    proto, info = program.model_proto, contract(model, preset, th, shape, ckpt)
    onnx.helper.set_model_props(proto, {"nsa_fast": json.dumps(info)})
    write_bytes_atomic(path, proto.SerializeToString())  # 46 MB, far below protobuf's 2 GB: one file
    write_text_atomic(out / "model.json", json.dumps(info, indent=2))
    return path, out / "model.json"


def camera_pixels(f: Path, inp, onnx_path) -> np.ndarray:
    """The file's pixels as a camera gives them (RGB or grey, 8 or 16 bits; an alpha channel
    dropped, as predict drops it), checked against the graph's input ``inp``."""
    import cv2

    from .io import raw_pixels

    img = raw_pixels(f)
    img = img[..., :3] if img.ndim == 3 and img.shape[2] == 4 else img
    _, H, W, *c = inp.shape
    want_c, want_t = (c[0] if c else 1), ("uint16" if "uint16" in inp.type else "uint8")
    got_c = 1 if img.ndim == 2 else img.shape[2]
    kind = {1: "grey (1 channel)", 3: "colour (3 channels)"}
    where = f"but the export {str(onnx_path)!r} takes"
    if got_c != want_c:
        how = "cv2.COLOR_GRAY2RGB" if want_c == 3 else "cv2.COLOR_BGR2GRAY"
        raise InputError(f"{str(f)!r} is {kind.get(got_c, f'{got_c} channels')}, {where} {kind[want_c]} images, as the "
                         f"model was trained; convert it (cv2.cvtColor with {how}) or give images of that kind.")
    if img.dtype.name != want_t:
        raise InputError(f"{str(f)!r} has {img.dtype.name} pixels, {where} {want_t} ones (the training images' bit "
                         "depth); give images of that bit depth.")
    if img.shape[:2] != (H, W):
        raise InputError(f"{str(f)!r} is {wxh(img.shape)} (width x height), {where} exactly {W}x{H}; resize or "
                         f"crop it to {W}x{H}, or export again with --input-size {wxh(img.shape)}.")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if want_c == 3 else img


def pytorch_outputs(model, preset, th, files: list[Path], shape) -> dict[str, np.ndarray]:
    """What predict computes for the files, by its own functions, on the CPU, named as the graph's outputs."""
    from .data import eval_size, load_images
    from .evaluate import anomaly_maps
    from .inputs import to_input_size
    from .thresholds import mask_region
    from .viz import seen_box

    size = eval_size(preset)
    maps = anomaly_maps(model, load_images(files, preset, size), preset, torch.device("cpu"))
    out = {"anomaly_map": np.stack([to_input_size(m, shape, None)[0] for m in maps]),
           "score": np.array([float(m.mean()) for m in maps])}
    if th is not None:
        region = mask_region(seen_box(preset, size), size, tuple(shape))
        out.update(normalized_score=th.normalised(out["score"]), is_defective=th.defective(out["score"]),
                   defect_mask=(out["anomaly_map"] > th.pixel) & region)
    return out


def verify(ckpt, onnx_path, paths: list[str], batch: int = 8) -> int:
    """The user's images through ONNX Runtime and through predict's PyTorch path; prints the
    largest differences and every decision that differs. 0 when they agree, 1 otherwise."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise NsaError(f"--verify-export needs ONNX Runtime: {PIP}") from err
    from .evaluate import load_model
    from .inputs import collect
    from .thresholds import file_sha256, load_for

    files = collect(paths)
    try:
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's own exception types have no stable import path
        raise InputError(f"--verify-export {str(onnx_path)!r} does not load in ONNX Runtime ({str(err)[:200]}); "
                         "give the model.onnx that --export onnx wrote.") from err
    inp, made = sess.get_inputs()[0], json.loads(sess.get_modelmeta().custom_metadata_map.get("nsa_fast", "{}"))
    if made.get("checkpoint_sha256") not in (None, file_sha256(Path(ckpt))):
        warn(f"{str(onnx_path)!r} was exported from another checkpoint (or state of it) than {str(ckpt)!r}")
    pixels = [camera_pixels(f, inp, onnx_path) for f in files]  # every file checked before any work
    model, preset, _ = load_model(ckpt, torch.device("cpu"))
    th = load_for(ckpt)
    stored = made.get("thresholds") or {}
    if th is not None and stored and (stored.get("image"), stored.get("pixel")) != (th.image, th.pixel):
        # decisions would differ for that reason alone: name it rather than blame the graph
        raise InputError(f"{str(onnx_path)!r} carries other thresholds than {str(ckpt)!r} has now (image threshold "
                         f"{stored.get('image'):.6g} in the export, {th.image:.6g} now): they were set again since "
                         "the export; export again (--export onnx --overwrite) and verify that file.")
    want = pytorch_outputs(model, preset, th, files, inp.shape[1:3])
    runs = [sess.run(None, {inp.name: np.stack(pixels[i:i + batch])}) for i in range(0, len(files), batch)]
    got = {o.name: np.concatenate([r[k] for r in runs]) for k, o in enumerate(sess.get_outputs())}
    print(f"{str(onnx_path)!r} (ONNX Runtime) against {str(ckpt)!r} (PyTorch, as predict), on the CPU, "
          f"{len(files)} images:")
    return report(files, want, got, th, tolerances(model))


def report(files, want, got, th, tol: dict[str, float]) -> int:
    """Print the comparison; 1 when a difference passes its tolerance or a decision differs."""
    bad = []
    for key, what in (("anomaly_map", "map"), ("score", "score")):
        d, t = np.abs(got[key].astype(np.float64) - want[key]).reshape(len(files), -1).max(1), tol[what]
        print(f"  largest {what} difference {d.max():.3g} (tolerance {t:g}), in {str(files[d.argmax()])!r}")
        bad += [f"the {what} differs by more than {t:g} in {int((d > t).sum())} image(s)"] * bool(d.max() > t)
    if th is None:
        print("  decisions: none (no thresholds are stored for the checkpoint)")
    elif "is_defective" not in got:
        bad.append("thresholds are stored for the checkpoint, but the export has no decisions: export again")
    else:
        name = {True: "defective", False: "good"}
        flips = np.flatnonzero(got["is_defective"] != want["is_defective"])
        for i in flips:
            print(f"  decision differs for {str(files[i])!r}: PyTorch {name[bool(want['is_defective'][i])]}, ONNX "
                  f"{name[bool(got['is_defective'][i])]} (score {want['score'][i]:.6g}, threshold {th.image:.6g})")
        # a pixel whose map value lies within the map tolerance of the threshold may fall either way
        real = (got["defect_mask"] != want["defect_mask"]) & (np.abs(want["anomaly_map"] - th.pixel) > tol["map"])
        masks = [i for i in range(len(files)) if real[i].any()]
        for i in masks:
            print(f"  defect mask differs for {str(files[i])!r} in {int(real[i].sum())} pixels")
        print(f"  decisions: {len(files) - len(flips)} of {len(files)} images agree, and {len(files) - len(masks)} "
              "defect masks (pixels within the map tolerance of the pixel threshold may fall either way)")
        bad += [f"{len(flips)} decision(s) differ"] * bool(len(flips)) + [f"{len(masks)} mask(s) differ"] * bool(masks)
    print(f"DIFFERS: {'; '.join(bad)}" if bad else "agrees: every difference within its tolerance, every decision "
          "the same")
    return 1 if bad else 0
