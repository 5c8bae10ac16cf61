"""The dataset layouts people have on disk, read as they are distributed.

Each layout says where a class's normal training images, its normal validation images (kept out
of training), its labelled test images with masks, and its unlabelled images are:

mvtec      MVTec AD and MPDD: CLASS/train/good, CLASS/test/<defect>, CLASS/ground_truth/<defect>/
           <name>_mask.png (test/good normal); CLASS/validation/good, where present (MVTec 3D-AD's
           RGB images), holds normal images kept out of training.
generic    users' own folders: CLASS/train holding the images; test/ and ground_truth/ as mvtec
           (test/normal also normal, masks also <name>.png).
mvtec_ad2  MVTec AD 2: CLASS/train/good, CLASS/validation/good (normal, never trained on),
           CLASS/test_public/{good,bad}, CLASS/test_public/ground_truth/bad/<name>_mask.png; the
           private test sets (test_private, test_private_mixed) have no masks: predict only.
btad       BTAD: 01, 02, 03 with train/ok, test/ok, test/ko, ground_truth/ko/<name>.png or .bmp
           (images BMP or PNG).
visa       VisA: ROOT/split_csv/1cls.csv (object,split,label,image,mask) names the one-class split;
           images CLASS/Data/Images/{Normal,Anomaly}/*.JPG, masks CLASS/Data/Masks/Anomaly/*.png.

A mask pixel is a defect when it is non-zero (0/255 and 0/1 masks both work).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .io import IMAGE_SUFFIXES, list_images

LAYOUTS = ("mvtec", "mpdd", "generic", "mvtec_ad2", "btad", "visa")
NORMAL_NAMES = ("good", "normal", "ok")
VISA_SPLIT = Path("split_csv") / "1cls.csv"


@dataclass(frozen=True)
class TestItem:
    __test__ = False  # not a pytest test class
    path: Path
    defect: str          # the test folder's name; "good"/"normal"/"ok" for normal images
    label: int           # 1 anomalous, 0 normal
    mask: Path | None    # ground truth of anomalous images


@dataclass(frozen=True)
class Dataset:
    """One class of a dataset on disk: its files by role."""

    layout: str
    root: Path
    category: str
    train: list[Path]                                          # normal images to train on
    validation: list[Path] = field(default_factory=list)       # normal images never trained on
    test_dir: Path | None = None                               # where the labelled test images are
    unlabelled: dict[str, list[Path]] = field(default_factory=dict)  # predict only (no masks)

    def test_items(self) -> list[TestItem]:
        """The labelled test images with their masks; an error when there are none."""
        if self.layout == "visa":
            return _visa_items(self.root, self.category, "test")
        if self.test_dir is None or not self.test_dir.is_dir():
            raise InputError(f"no test folder {str(self.test_dir)!r} for class {self.category!r} ({self.layout} "
                             f"layout): evaluation needs {_TEST_HINT[self.layout]}.")
        gt = self.test_dir / "ground_truth" if self.layout == "mvtec_ad2" else self.test_dir.parent / "ground_truth"
        return _folder_items(self.test_dir, gt)

    def has_test_set(self) -> bool:
        if self.layout == "visa":
            return any(r["split"] == "test" for r in _visa_rows(self.root, self.category))
        return self.test_dir is not None and self.test_dir.is_dir()


_TEST_HINT = {
    "mvtec": "CLASS/test/good and CLASS/test/<defect> with masks in CLASS/ground_truth/<defect>",
    "mpdd": "CLASS/test/good and CLASS/test/<defect> with masks in CLASS/ground_truth/<defect>",
    "generic": "CLASS/test/good and CLASS/test/<defect> with masks in CLASS/ground_truth/<defect>",
    "mvtec_ad2": "CLASS/test_public/good and test_public/bad with masks in test_public/ground_truth/bad",
    "btad": "CLASS/test/ok and CLASS/test/ko with masks in CLASS/ground_truth/ko",
    "visa": "rows with split 'test' for the class in split_csv/1cls.csv",
}


def class_dir(root: str | Path, category: str) -> Path:
    """ROOT/CLASS; when it is missing, the error lists the classes that ROOT does hold."""
    d = Path(root) / category
    if d.is_dir():
        return d
    if not Path(root).is_dir():
        raise InputError(f"no class folder {str(d)!r}: the dataset root --data {str(root)!r} is not a folder. "
                         "Pass the folder that holds the class folders (MVTec layout: ROOT/CLASS/train/good).")
    raise InputError(f"no class folder {category!r} under {str(root)!r}; {found_classes(Path(root), category)}. "
                     "Check --data and --category.")


def classes_under(root: Path) -> list[str]:
    """The class folders of a dataset root: its subfolders that hold a train or test folder."""
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and any((p / sub).is_dir() for sub in ("train", "test", "Data")))


def found_classes(root: Path, category: str, shown: int = 15) -> str:
    """What a dataset root holds instead of ``category``, for an error message."""
    import difflib

    names = classes_under(root)
    if not names:
        if (root / "train").is_dir():
            return (f"it holds no class folders but is one itself (it has train/): use --data "
                    f"{str(root.parent)!r} --category {root.name!r}")
        return "it holds no class folders (folders with train/ or test/ inside)"
    text = "found: " + ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
    close = difflib.get_close_matches(category, names, n=1)
    return text + (f" (did you mean {close[0]!r}?)" if close else "")


def detect(root: Path, category: str) -> list[str]:
    """The layouts that ROOT/CLASS looks like (more than one: ambiguous)."""
    d = root / category
    found = []
    if (root / VISA_SPLIT).is_file() and (d / "Data" / "Images").is_dir():
        found.append("visa")
    if (d / "test_public").is_dir() or any(d.glob("test_private*")):
        found.append("mvtec_ad2")
    if (d / "train" / "ok").is_dir():
        found.append("btad")
    if (d / "train" / "good").is_dir() and "mvtec_ad2" not in found:
        found.append("mvtec")
    if not found and ((d / "train").is_dir() or (d / "test").is_dir()):
        found.append("generic")
    return found


def open_dataset(root: str | Path, category: str, layout: str = "auto", need_train: bool = True) -> Dataset:
    """ROOT/CLASS in its layout (``auto``: detected; an error names the candidates when the
    folder fits several or none). ``need_train``: a class without training images is an error
    (evaluation needs only the test set)."""
    root = Path(root)
    if layout not in ("auto", *LAYOUTS):
        raise InputError(f"unknown --layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}.")
    d = class_dir(root, category)
    given = layout != "auto"
    if layout == "auto":
        found = detect(root, category)
        if len(found) > 1:
            raise InputError(f"the class folder {str(d)!r} fits several layouts ({', '.join(found)}); "
                             f"say which with --layout {found[0]} (or {', '.join(found[1:])}).")
        if not found and not need_train:
            found = ["generic"]  # the test set's own error names what is missing
        if not found:
            raise InputError(f"no training images found for class {category!r} in {str(d)!r}: expected one of the "
                             "layouts MVTec AD/MPDD (train/good), MVTec AD 2 (train/good and test_public), "
                             "BTAD (train/ok), VisA (Data/Images with ROOT/split_csv/1cls.csv) or generic "
                             "(train/ holding the images). See docs/your-data.md.")
        layout = found[0]
    if not need_train and layout in ("mvtec", "mpdd", "generic", "btad") and not (d / "train").is_dir():
        return Dataset(layout, root, category, [], test_dir=d / "test")
    try:
        return _OPEN[layout](root, category, d)
    except InputError as err:
        other = [x for x in detect(root, category) if x != layout] if given else []
        if not other:
            raise
        raise InputError(f"{err} This folder looks like the {other[0]} layout: use --layout {other[0]} (or auto).") \
            from None


def _mvtec(root: Path, category: str, d: Path, layout: str = "mvtec") -> Dataset:
    good, val = d / "train" / "good", d / "validation" / "good"
    if not good.is_dir():
        raise InputError(f"no training folder {str(good)!r}: the {layout} layout keeps normal training images in "
                         f"{category}/train/good.")
    return Dataset(layout, root, category, list_images(good), list_images(val) if val.is_dir() else [],
                   test_dir=d / "test")


def _generic(root: Path, category: str, d: Path) -> Dataset:
    t = d / "train"
    if not t.is_dir():
        raise InputError(f"no training folder {str(t)!r}: expected {category}/train/good (MVTec layout) "
                         f"or {category}/train holding the normal images.")
    good = t / "good"
    return Dataset("generic", root, category, list_images(good if good.is_dir() else t), test_dir=d / "test")


def _mvtec_ad2(root: Path, category: str, d: Path) -> Dataset:
    train = list_images_or_error(d / "train" / "good", "mvtec_ad2", f"{category}/train/good")
    val = d / "validation" / "good"
    unlabelled = {p.name: _images_below(p) for p in sorted(d.glob("test_private*")) if p.is_dir()}
    return Dataset("mvtec_ad2", root, category, train, list_images(val) if val.is_dir() else [],
                   test_dir=d / "test_public", unlabelled={k: v for k, v in unlabelled.items() if v})


def _btad(root: Path, category: str, d: Path) -> Dataset:
    train = list_images_or_error(d / "train" / "ok", "btad", f"{category}/train/ok")
    return Dataset("btad", root, category, train, test_dir=d / "test")


def _visa(root: Path, category: str, d: Path) -> Dataset:
    rows = [r for r in _visa_rows(root, category) if r["split"] == "train"]
    bad = [r for r in rows if r["label"] != "normal"]
    if bad:
        raise InputError(f"{str(root / VISA_SPLIT)!r} lists {len(bad)} training row(s) of {category!r} that are not "
                         f"normal (e.g. {bad[0]['image']!r}, label {bad[0]['label']!r}); the 1-class split trains on "
                         "normal images only.")
    files = [_existing(root, r["image"], "image") for r in rows]
    if not files:
        raise InputError(f"{str(root / VISA_SPLIT)!r} has no training rows for {category!r}.")
    return Dataset("visa", root, category, files, test_dir=d / "Data")


_OPEN = {"mvtec": _mvtec, "mpdd": lambda r, c, d: _mvtec(r, c, d, "mpdd"), "generic": _generic,
         "mvtec_ad2": _mvtec_ad2, "btad": _btad, "visa": _visa}


def list_images_or_error(folder: Path, layout: str, expected: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"no training folder {str(folder)!r}: the {layout} layout keeps normal training images "
                         f"in {expected}.")
    return list_images(folder)


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_for(gt: Path, defect: str, image: Path) -> tuple[Path | None, Path]:
    """The mask of a test image: <name>_mask.<ext> or <name>.<ext> in gt/<defect>."""
    folder = gt / defect
    cands = [folder / f"{image.stem}_mask{s}" for s in IMAGE_SUFFIXES] + \
            [folder / f"{image.stem}{s}" for s in IMAGE_SUFFIXES]
    return next((c for c in cands if c.is_file()), None), cands[0]


def _folder_items(test_dir: Path, gt: Path) -> list[TestItem]:
    items = []
    for sub in sorted(p for p in test_dir.iterdir() if p.is_dir() and p.name != "ground_truth"):
        normal = sub.name in NORMAL_NAMES
        for f in list_images(sub):
            mask = None
            if not normal:
                mask, expected = _mask_for(gt, sub.name, f)
                if mask is None:
                    raise InputError(f"test image {str(f)!r} has no mask: expected {str(expected)!r}. "
                                     "Add the mask, or move the image to the normal test folder if it is normal.")
            items.append(TestItem(f, sub.name, 0 if normal else 1, mask))
    return _checked(items, test_dir)


def _checked(items: list[TestItem], where: Path) -> list[TestItem]:
    if not items:
        raise InputError(f"the test set {str(where)!r} holds no images.")
    if not any(i.label for i in items) or all(i.label for i in items):
        raise InputError(f"the test set of {str(where)!r} needs normal and anomalous images for AUROC; it has "
                         "only one kind.")
    return items


def _visa_rows(root: Path, category: str) -> list[dict[str, str]]:
    path = root / VISA_SPLIT
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"object", "split", "label", "image", "mask"}
            if not need <= set(reader.fieldnames or ()):
                raise InputError(f"{str(path)!r} has columns {reader.fieldnames}; the VisA split file has "
                                 f"{sorted(need)}.")
            return [r for r in reader if r["object"] == category]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the VisA split file {str(path)!r} ({getattr(err, 'strerror', None) or err}): the "
                         "visa layout needs ROOT/split_csv/1cls.csv as VisA is distributed. Check --data, or use "
                         "--layout auto.") from None


def _existing(root: Path, rel: str, what: str) -> Path:
    p = root / rel
    if not p.is_file():
        raise InputError(f"{str(root / VISA_SPLIT)!r} names the {what} {rel!r}, which is not under {str(root)!r}. "
                         "Pass --data the folder that holds split_csv/ and the class folders.")
    return p


def _visa_items(root: Path, category: str, split: str) -> list[TestItem]:
    items = []
    for r in (r for r in _visa_rows(root, category) if r["split"] == split):
        normal = r["label"] == "normal"
        path = _existing(root, r["image"], "image")
        mask = None if normal else _existing(root, r["mask"], "mask") if r["mask"] else None
        if not normal and mask is None:
            raise InputError(f"{str(root / VISA_SPLIT)!r}: the anomalous image {r['image']!r} has no mask column.")
        items.append(TestItem(path, "normal" if normal else "anomaly", 0 if normal else 1, mask))
    return _checked(items, root / category)


def add_layout_arg(parser) -> None:
    """--layout, shared by every command that reads a dataset root."""
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto",
                        help="how --data is organised; auto: detected from the class folder. mvtec (MVTec AD, MPDD): "
                             "CLASS/train/good, test/<defect>, ground_truth/<defect>; mvtec_ad2: train/good, "
                             "validation/good, test_public; btad: train/ok, test/ok|ko, ground_truth/ko; visa: "
                             "ROOT/split_csv/1cls.csv with CLASS/Data/Images; generic: CLASS/train holding the images")
