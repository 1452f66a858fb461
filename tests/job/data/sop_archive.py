"""A small Stanford Online Products in the exact layout of the official archive, built by tests.

`Stanford_Online_Products/` holding `Ebay_train.txt`, `Ebay_test.txt`, `Ebay_info.txt` (header
`image_id class_id super_class_id path`) and the twelve `<super>_final/` folders with
`<product>_<n>.JPG` images; train and test classes disjoint, class ids contiguous, as in SOP.
Shared by tests/job/data/test_volume.py and tests/operator_client/test_data.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import pathlib
import tarfile
import zipfile

from PIL import Image

SUPER_CLASSES = ("bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle", "lamp", "mug",
                 "sofa", "stapler", "table", "toaster")
HEADER = "image_id class_id super_class_id path\n"
TOP = "Stanford_Online_Products"


@dataclasses.dataclass(frozen=True)
class SmallSop:
    folder: pathlib.Path          # .../Stanford_Online_Products
    train: list[str]              # image paths of Ebay_train.txt
    test: list[str]

    @property
    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "test": len(self.test)}


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)).save(buf, "JPEG")
    return buf.getvalue()


def build_sop(parent: pathlib.Path, *, train_classes: int = 12, test_classes: int = 8,
              per_class: int = 2) -> SmallSop:
    """Write `parent/Stanford_Online_Products/`: class i belongs to super class i mod 12."""
    folder = parent / TOP
    folder.mkdir(parents=True)
    for sup in SUPER_CLASSES:
        (folder / f"{sup}_final").mkdir()
    rows: dict[str, list[str]] = {"train": [], "test": []}
    paths: dict[str, list[str]] = {"train": [], "test": []}
    image_id = 1
    for class_id in range(1, train_classes + test_classes + 1):
        split = "train" if class_id <= train_classes else "test"
        super_id = (class_id - 1) % len(SUPER_CLASSES) + 1
        product = 111085122870 + class_id * 7
        for n in range(per_class):
            rel = f"{SUPER_CLASSES[super_id - 1]}_final/{product}_{n}.JPG"
            (folder / rel).write_bytes(_jpeg(image_id))
            rows[split].append(f"{image_id} {class_id} {super_id} {rel}\n")
            paths[split].append(rel)
            image_id += 1
    (folder / "Ebay_train.txt").write_text(HEADER + "".join(rows["train"]))
    (folder / "Ebay_test.txt").write_text(HEADER + "".join(rows["test"]))
    (folder / "Ebay_info.txt").write_text(HEADER + "".join(rows["train"] + rows["test"]))
    return SmallSop(folder, paths["train"], paths["test"])


def zip_sop(sop: SmallSop, out: pathlib.Path, *, skip: tuple[str, ...] = (),
            extra: dict[str, bytes] | None = None) -> pathlib.Path:
    """The folder as a zip like the official one (folder entries included); `skip` leaves images out."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted([sop.folder, *sop.folder.rglob("*")]):
            rel = path.relative_to(sop.folder.parent).as_posix()
            if path.relative_to(sop.folder).as_posix() in skip:
                continue
            if path.is_dir():
                zf.writestr(rel + "/", b"")
            else:
                zf.write(path, rel)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out


def tar_sop(sop: SmallSop, out: pathlib.Path) -> pathlib.Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(sop.folder, arcname=TOP)
    return out


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
