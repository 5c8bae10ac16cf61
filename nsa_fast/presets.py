"""Per-class settings of NSA as data, and how users override them.

The table reproduces the authors' settings (docs/reference.md section 5, the paper's Table 4 and section 4.1).
Half-width fractions are of the image side; the paper's full widths are twice these.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import PresetError

CLONE_MODES = ("normal", "mixed")
RESIZE_CLIPS = ("code", "paper")


@dataclass(frozen=True)
class Preset:
    """Everything that varies between classes: synthetic-task geometry, transforms and schedule."""

    name: str
    kind: str = "object"                      # object | texture | xray
    half_h: tuple[float, float] = (0.03, 0.40)  # min, max half-height as a fraction of the image height
    half_w: tuple[float, float] = (0.03, 0.40)  # min, max half-width as a fraction of the image width
    n_max: int = 3                            # first patch always, each further one with probability 1/2
    logistic: tuple[float, float] = (1 / 12, 24.0)  # (k, y0) of the logistic label
    background: tuple[float, float] | None = None    # (b, t): object where |mean(x) - b| > t
    t_object: float = 0.70
    t_overlap: float = 0.25
    epochs: int = 320
    clone: str = "normal"                     # normal | mixed
    resize_bounds: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float, float] = (2.0, 0.05, 0.03)  # shape, scale, offset of the half-width draw
    resize_clip: str = "code"                 # code: clip full size to half-width bounds; paper: eq. (9)
    max_tries: int = 200                      # per patch, for the source and for the destination
    min_mask_pixels: int = 50                 # Poisson masks with fewer positive pixels are skipped
    label_tol: int = 1                        # mean absolute change (grey levels) for a positive label
    ensure_label: int = 0                     # extra attempts at a sample whose label came out empty
    # transforms
    image_size: int = 256                     # images are resized once to this side
    center_crop: int | None = 230             # then centre-cropped (objects) ...
    crop: int = 224                           # ... and randomly cropped to this side
    rotation: float = 0.0                     # +- degrees, before cropping
    vflip: bool = False                       # random vertical flip (textures)
    channels: int = 3
    normalize: str = "imagenet"               # imagenet | none, applied after the synthetic anomaly
    window: tuple[float, float] | None = None  # 16-bit files: grey levels lo..hi map to 0..255 (set by training)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def uses_object_masks(self) -> bool:
        return self.background is not None

    def replace(self, **changes: Any) -> "Preset":
        """A copy with fields changed; unknown fields and wrong values raise PresetError."""
        unknown = sorted(set(changes) - FIELD_NAMES)
        if unknown:
            raise PresetError(
                f"unknown preset field(s) {unknown}; valid fields are {sorted(FIELD_NAMES)}.")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES = frozenset(f.name for f in fields(Preset))
_HINTS = typing.get_type_hints(Preset)


KINDS = ("object", "texture", "xray")
NORMALIZE = ("imagenet", "none")
MIN_SIDE = 32       # smaller crops leave no room for the patch-size bounds
SIDE_MULTIPLE = 32  # the network's input: the encoder halves it 5 times and the decoder doubles it back


def _validate(p: Preset) -> None:
    """Every field within the range where it means something; the message names the field, the
    range and the value that arrived."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise PresetError(f"preset {p.name!r}: {msg}")

    need(p.kind in KINDS, f"kind must be one of {KINDS}, got {p.kind!r}")
    for key in ("half_h", "half_w"):
        lo, hi = getattr(p, key)
        need(0 < lo <= hi < 0.5, f"{key} must satisfy 0 < min <= max < 0.5 (fractions of the side), got {(lo, hi)}")
    need(1 <= p.n_max <= 16, f"n_max must be 1..16 patches, got {p.n_max}")
    k, y0 = p.logistic
    need(0 < k < 1e3 and 0 <= y0 <= 255, f"logistic must be (k, y0) with k > 0 (the slope) and y0 in 0..255 "
                                          f"(grey levels), got {p.logistic}")
    if p.background is not None:
        b, t = p.background
        need(0 <= b <= 255 and 0 <= t < 255, f"background must be (b, t) with b in 0..255 and t in 0..254 "
                                              f"(grey levels), or none, got {p.background}")
    for key in ("t_object", "t_overlap"):
        need(0 <= getattr(p, key) < 1, f"{key} must be a share in [0, 1), got {getattr(p, key)}")
    need(p.epochs >= 1, f"epochs must be >= 1, got {p.epochs}")
    need(p.clone in CLONE_MODES, f"clone must be one of {CLONE_MODES}, got {p.clone!r}")
    lo, hi = p.resize_bounds
    need(0 < lo <= hi <= 10, f"resize_bounds must satisfy 0 < low <= high <= 10, got {p.resize_bounds}")
    shape, scale, offset = p.gamma
    need(shape > 0 and scale > 0 and 0 <= offset < 0.5,
         f"gamma must be (shape > 0, scale > 0, offset in [0, 0.5)), got {p.gamma}")
    need(p.resize_clip in RESIZE_CLIPS, f"resize_clip must be one of {RESIZE_CLIPS}, got {p.resize_clip!r}")
    need(0 <= p.rotation <= 180, f"rotation must be 0..180 degrees, got {p.rotation}")
    need(p.channels in (1, 3), f"channels must be 1 or 3, got {p.channels}")
    if p.window is not None:
        lo, hi = p.window
        need(0 <= lo < hi <= 65535, f"window must be (lo, hi) with 0 <= lo < hi <= 65535 (16-bit grey levels), "
                                    f"or none, got {p.window}")
    need(p.normalize in NORMALIZE, f"normalize must be one of {NORMALIZE}, got {p.normalize!r}")
    need(not (p.channels == 1 and p.normalize == "imagenet"),
         "channels=1 needs normalize=none: the ImageNet statistics are for 3 channels (add --set normalize=none)")
    need(p.image_size >= MIN_SIDE, f"image_size must be at least {MIN_SIDE} pixels, got {p.image_size}")
    need(p.crop >= MIN_SIDE, f"crop must be at least {MIN_SIDE} pixels, got {p.crop}")
    need(p.crop <= p.image_size, f"crop {p.crop} is larger than image_size {p.image_size}")
    if p.center_crop is not None:
        need(p.crop <= p.center_crop <= p.image_size,
             f"center_crop ({p.center_crop}) must lie between crop ({p.crop}) and image_size "
             f"({p.image_size}); set it too, e.g. --set center_crop={min(max(p.crop, p.center_crop), p.image_size)}, "
             "or --set center_crop=none for no centre crop")
    need(1 <= p.max_tries <= 10_000, f"max_tries must be 1..10000, got {p.max_tries}")
    need(0 <= p.min_mask_pixels < p.crop * p.crop,
         f"min_mask_pixels must be below the crop's {p.crop * p.crop} pixels, got {p.min_mask_pixels}")
    need(0 <= p.label_tol <= 254, f"label_tol must be 0..254 grey levels (a change must exceed it), got {p.label_tol}")
    need(0 <= p.ensure_label <= 100, f"ensure_label must be 0..100 extra attempts, got {p.ensure_label}")


def check_trainable(p: Preset) -> None:
    """What the network adds to a preset's ranges: its input side is a multiple of 32."""
    if p.crop % SIDE_MULTIPLE:
        raise PresetError(f"preset {p.name!r}: crop must be a multiple of {SIDE_MULTIPLE} pixels to train (the "
                          f"network halves its input 5 times), got {p.crop}; e.g. --set crop="
                          f"{max(SIDE_MULTIPLE, p.crop // SIDE_MULTIPLE * SIDE_MULTIPLE)}")


RANGES = {  # what each field allows, for messages about a value of the wrong type
    "kind": f"one of {KINDS}", "half_h": "min, max with 0 < min <= max < 0.5", "half_w": "min, max with 0 < min <= max < 0.5",
    "n_max": "1..16", "logistic": "k > 0, y0 in 0..255", "background": "b in 0..255, t in 0..254, or none",
    "t_object": "0 <= share < 1", "t_overlap": "0 <= share < 1", "epochs": ">= 1", "clone": f"one of {CLONE_MODES}",
    "resize_bounds": "0 < low <= high <= 10", "gamma": "shape > 0, scale > 0, offset in [0, 0.5)",
    "resize_clip": f"one of {RESIZE_CLIPS}", "max_tries": "1..10000", "min_mask_pixels": ">= 0, below crop x crop",
    "label_tol": "0..254", "ensure_label": "0..100", "image_size": f">= {MIN_SIDE}", "center_crop": "crop..image_size, or none",
    "crop": f">= {MIN_SIDE}, a multiple of {SIDE_MULTIPLE} to train", "rotation": "0..180 degrees",
    "vflip": "true or false", "channels": "1 or 3", "normalize": f"one of {NORMALIZE}",
    "window": "lo, hi with 0 <= lo < hi <= 65535, or none",
}


def _coerce(name: str, value: Any) -> Any:
    """Convert a value from JSON, YAML or the command line to the field's type."""
    hint = _HINTS[name]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = type(None) in args and origin in (typing.Union, getattr(__import__("types"), "UnionType", ()))
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    raw = value
    want = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
        hint, f"{len(args)} numbers separated by commas" if origin is tuple else str(hint))
    try:
        if isinstance(value, str) and (origin is tuple or hint in (int, float, bool)):
            value = json.loads(value if not ("," in value and not value.startswith("[")) else f"[{value}]")
        if origin is tuple:
            if isinstance(value, (str, bytes)) or len(value) != len(args):
                raise ValueError(want)
            out = tuple(float(v) for v in value)
            if not all(math.isfinite(v) for v in out):
                raise ValueError(want)
            return out
        if hint is bool:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if hint is int:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError("expected an integer")
            return int(value)
        if hint is float:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError(want)
            return float(value)
        return str(value)
    except (ValueError, TypeError, OverflowError, json.JSONDecodeError):
        allowed = f" ({RANGES[name]})" if name in RANGES else ""
        raise PresetError(f"preset field {name!r}: expected {want}{allowed}, got {raw!r}.") from None


OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush",
           "transistor", "zipper")
TEXTURES = ("carpet", "grid", "leather", "tile", "wood")

_BRIGHT, _DARK = (200.0, 60.0), (20.0, 20.0)
_TEXTURE = dict(kind="texture", n_max=4, clone="mixed", resize_bounds=(0.5, 2.0), image_size=264,
                center_crop=None, crop=256, vflip=True, logistic=(1 / 3, 7.0))


def _table() -> dict[str, Preset]:
    rows = {
        "bottle": dict(background=_BRIGHT, rotation=5.0),
        "cable": dict(half_h=(0.05, 0.40), half_w=(0.05, 0.40)),
        "capsule": dict(half_h=(0.03, 0.15), logistic=(1 / 2, 4.0), background=_BRIGHT),
        "hazelnut": dict(half_h=(0.03, 0.35), half_w=(0.03, 0.35), background=_DARK, epochs=560,
                         rotation=5.0),
        "metal_nut": dict(logistic=(1 / 3, 7.0), background=_DARK, t_object=0.5, epochs=560, rotation=5.0),
        "pill": dict(half_h=(0.03, 0.20), logistic=(1 / 3, 7.0), background=_DARK),
        "screw": dict(half_h=(0.03, 0.12), half_w=(0.03, 0.12), n_max=4, logistic=(1.0, 3.0),
                      background=_BRIGHT, t_object=0.5, epochs=560, rotation=5.0),
        "toothbrush": dict(half_w=(0.03, 0.20), logistic=(1 / 6, 15.0), background=_DARK, t_object=0.25),
        "transistor": dict(logistic=(1 / 6, 15.0)),
        "zipper": dict(half_w=(0.03, 0.20), n_max=4, logistic=(1 / 6, 15.0), background=_BRIGHT),
        "carpet": dict(_TEXTURE),
        "grid": dict(_TEXTURE),
        "leather": dict(_TEXTURE),
        "tile": dict(_TEXTURE),
        "wood": dict(_TEXTURE, logistic=(1 / 6, 15.0)),
        # The built-in demo data (brick texture, python -m nsa_fast.train --data demo): its 256 px
        # images trained and tested at 96 px, train and test at one scale (no random crop), so that
        # the quick start learns to find its defects in about 3 minutes on a 2-core CPU.
        "demo": dict(_TEXTURE, image_size=96, crop=96, epochs=60),
        "chest_xray": dict(kind="xray", logistic=(1 / 2, 4.0), background=(0.0, 20.0), t_overlap=0.70,
                           epochs=240, clone="mixed", gamma=(2.0, 0.03, 0.05), rotation=3.0, channels=1,
                           normalize="none"),
    }
    return {name: Preset(name=name, **row) for name, row in rows.items()}


PRESETS: dict[str, Preset] = _table()


PRESET_FILE_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def is_preset_file(name: str) -> bool:
    return Path(name).suffix.lower() in PRESET_FILE_SUFFIXES


def get_preset(name: str) -> Preset:
    """The preset of a class; ``generic`` (no object masks, object transforms) for users' own data;
    a file name (.toml, .yaml, .json: what ``python -m nsa_fast.calibrate`` writes) for a whole
    preset in a file."""
    if is_preset_file(name):
        return load_preset_file(name)
    if name == "generic":
        return Preset(name="generic")
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(
            f"unknown preset {name!r}; known presets are {sorted(PRESETS) + ['generic']}. "
            "Use 'generic' for your own data and override fields with --set or --preset-file.") from None


def load_preset_file(path: str | Path) -> Preset:
    """A whole preset from a file: its fields over the generic preset's (a field left out keeps
    the generic value); every field is checked by name, type and range."""
    data = load_overrides(path)
    name = data.pop("name", Path(path).stem)
    try:
        return Preset(name=str(name)).replace(**data)
    except PresetError as err:
        raise PresetError(f"preset file {str(path)!r}: {err}") from None


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a TOML, JSON or YAML mapping of preset fields to values."""
    path = Path(path)
    if path.is_dir():
        raise PresetError(f"preset file {str(path)!r} is a folder; pass a .toml, .json or .yaml file.")
    if not path.is_file():
        raise PresetError(f"preset file {str(path)!r} does not exist; pass a .toml, .json or .yaml file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PresetError(f"preset file {str(path)!r} is not text (UTF-8); pass a .toml, .json or .yaml file.") from None
    if not text.strip():
        raise PresetError(f"preset file {str(path)!r} is empty; write a mapping such as {{\"n_max\": 4}}.")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise PresetError(f"preset file {str(path)!r} is not valid TOML: {err}") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise PresetError(f"preset file {str(path)!r} is not valid YAML: {' '.join(str(err).split())}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PresetError(f"preset file {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise PresetError(
            f"preset file {str(path)!r}: expected a mapping of field names to values, got {type(data).__name__}.")
    return data


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set field=value`` items into a mapping (values are coerced later)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise PresetError(f"--set expects field=value, got {item!r} (e.g. --set n_max=4).")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def add_preset_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by every command that resolves a preset."""
    parser.add_argument("--category", required=True,
                        help="class folder under --data, e.g. bottle; also picks the preset of that name")
    g = parser.add_argument_group("preset")
    g.add_argument("--preset", help="preset to use when it differs from the category "
                                    f"(one of {', '.join(sorted(PRESETS))}, generic), or a preset file "
                                    "(.toml, .yaml, .json) such as python -m nsa_fast.calibrate writes; default: "
                                    "the category's preset if there is one, else generic")
    g.add_argument("--preset-file", help="TOML, JSON or YAML mapping of preset fields to override (default: none)")
    g.add_argument("--set", action="append", metavar="FIELD=VALUE", default=[],
                   help="override one preset field, e.g. --set n_max=4 --set half_w=0.03,0.2 (default: none)")
    g.add_argument("--resize-clip", choices=RESIZE_CLIPS,
                   help="code: the authors' clip of the resized size to half-width bounds (default); "
                        "paper: eq. (9) of the paper")


def base_preset(args: argparse.Namespace) -> Preset:
    """The preset a command starts from, before overrides: --preset (a name or a file), else the
    category's, else generic."""
    return get_preset(args.preset or (args.category if args.category in PRESETS else "generic"))


def resolve_preset(args: argparse.Namespace) -> Preset:
    """The class preset with the file overrides, then --set, then named flags applied in that order."""
    preset = base_preset(args)
    changes: dict[str, Any] = {}
    if getattr(args, "preset_file", None):
        changes.update(load_overrides(args.preset_file))
    changes.update(parse_set(getattr(args, "set", None)))
    if getattr(args, "resize_clip", None):
        changes["resize_clip"] = args.resize_clip
    return preset.replace(**changes) if changes else preset
