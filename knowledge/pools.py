"""Image pools: where unlabeled images come from.

Two sources: a folder of the user's images (recursive; corrupt files skipped and
counted) and Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, whose
labels are kept as *hidden* labels: the pipeline never reads them to label or
train; only evaluation does.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass
class ImagePool:
    """A list of images with stable ids, content hashes and (optionally) hidden labels.

    ``pixels`` holds in-memory images (uint8, N x H x W x C) for array sources; folder
    sources keep ``paths`` and decode on demand.
    """

    source: str
    uids: list[str]
    sha1: list[str]
    paths: list[Path | None]
    pixels: np.ndarray | None = None
    hidden_labels: list[str | None] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def content_hash(self) -> str:
        h = hashlib.sha1()
        for s in self.sha1:
            h.update(s.encode())
        return h.hexdigest()

    def load(self, indices: np.ndarray | list[int], size: int, channels: int) -> np.ndarray:
        """Images ``indices`` resized to ``size`` x ``size`` with ``channels`` channels, uint8 NHWC."""
        if self.pixels is not None and self.pixels.shape[1:] == (size, size, channels):
            return self.pixels[np.asarray(indices, dtype=np.int64)]
        out = np.empty((len(indices), size, size, channels), np.uint8)
        for j, i in enumerate(indices):
            out[j] = model_pixels(self._image(int(i)), size, channels)
        return out

    def iter_batches(self, size: int, channels: int, batch: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch):
            yield self.load(range(start, min(start + batch, len(self))), size, channels)

    def _image(self, i: int):
        from PIL import Image

        if self.pixels is not None:
            a = self.pixels[i]
            return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        with Image.open(self.paths[i]) as im:
            im.load()
            return im.copy()

    def subset(self, indices: list[int]) -> "ImagePool":
        return ImagePool(
            source=self.source,
            uids=[self.uids[i] for i in indices],
            sha1=[self.sha1[i] for i in indices],
            paths=[self.paths[i] for i in indices],
            pixels=None if self.pixels is None else self.pixels[indices],
            hidden_labels=[self.hidden_labels[i] for i in indices] if self.hidden_labels else [],
            skipped=list(self.skipped),
        )


def model_pixels(image, size: int, channels: int) -> np.ndarray:
    """A PIL image as the model sees it, uint8 HWC: grayscale or RGB, the centred square, resized
    (antialiased bilinear). The C library's nf_image_to_input does the same to camera frames, bit for bit."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grayscale: its top 8 bits, not clipped at 255
        a = np.asarray(image, dtype=np.int64)
        if image.mode != "I" or a.max() > 255:  # mode I also holds 8-bit values (some TIFFs): those stay
            a = a >> 8
        image = Image.fromarray(a.clip(0, 255).astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = _center_square(image).resize((size, size), Image.BILINEAR)
    a = np.asarray(image, dtype=np.uint8)
    return a[..., None] if channels == 1 else a


def _center_square(image):
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return image.crop((left, top, left + s, top + s))


# ---- folders -------------------------------------------------------------------------------


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def whole_disk_or_home(folder: Path) -> str | None:
    """"the whole disk" or "your home folder" when ``folder`` is one (no place to look for images in), else None."""
    folder = Path(folder).expanduser().resolve()
    if folder == Path(folder.anchor):
        return "the whole disk"
    return "your home folder" if folder == Path.home().resolve() else None


def check_folder(folder: Path, flag: str = "--images") -> list[Path]:
    """The image files under ``folder``, or one sentence naming ``flag`` (the option that gave it) when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise NanofactoryError(f"Image folder {folder} does not exist; pass an existing folder with {flag}.")
    if not folder.is_dir():
        raise NanofactoryError(f"{folder} is a file, not a folder; pass the folder that holds the images with {flag}.")
    whole = whole_disk_or_home(folder)
    if whole:  # reading every image under it would walk the whole disk
        raise NanofactoryError(f"{folder} is {whole}; pass the folder that holds the images with {flag}.")
    files = image_files(folder)
    if not files:
        raise NanofactoryError(
            f"Image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add some or pass another "
            f"folder with {flag}."
        )
    return files


def unreadable_image_errors() -> tuple[type[Exception], ...]:
    """What opening a broken image file raises: not an image, cut short, a header PIL cannot parse, or one that
    claims more pixels than PIL will decode (a decompression bomb)."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def load_folder(folder: Path, limit: int | None = None, flag: str = "--images") -> ImagePool:
    """Every readable image under ``folder``; unreadable ones are skipped and counted. ``flag``: the option that
    named the folder, for the error when it has no images."""
    from PIL import Image

    folder = Path(folder)
    files = check_folder(folder, flag)
    uids, sha1, paths, skipped = [], [], [], []
    for path in files:
        data = path.read_bytes()
        try:
            with Image.open(path) as im:
                im.verify()  # cheap structural check; a full decode happens on use
            with Image.open(path) as im:
                im.load()
        except unreadable_image_errors() as e:
            skipped.append((str(path), type(e).__name__))
            continue
        uids.append(str(path.relative_to(folder)))
        sha1.append(hashlib.sha1(data).hexdigest())
        paths.append(path)
        if limit and len(uids) >= limit:
            break
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s", len(skipped), folder)
    if not uids:
        raise NanofactoryError(
            f"None of the {len(files)} image files in {folder} could be read (all corrupt); replace them with valid images."
        )
    return ImagePool(source=f"folder:{folder}", uids=uids, sha1=sha1, paths=paths, skipped=skipped)


# ---- Fashion-MNIST -------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int(x) for x in np.frombuffer(data[4 : 4 + 4 * ndim], ">i4"))
    return np.frombuffer(data[4 + 4 * ndim :], np.uint8).reshape(shape)


def load_fashion_mnist(split: str = "train", limit: int | None = None, root: Path = FASHION_MNIST_DIR) -> ImagePool:
    """Fashion-MNIST as an unlabeled pool; its labels become hidden labels for evaluation only."""
    if split not in ("train", "test"):
        raise NanofactoryError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}.")
    prefix = "train" if split == "train" else "t10k"
    images_path = Path(root) / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = Path(root) / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.exists():
            raise NanofactoryError(
                f"Fashion-MNIST is not installed ({path} is missing); run `sudo apt-get install dataset-fashion-mnist` "
                "or `make demo` as root."
            )
    images = _read_idx(images_path)[..., None]
    labels = _read_idx(labels_path)
    if limit:  # a copy, so the rest of the decompressed file is freed
        images, labels = images[:limit].copy(), labels[:limit].copy()
    sha1 = [hashlib.sha1(im.tobytes()).hexdigest() for im in images]
    return ImagePool(
        source=f"fashion-mnist:{split}",
        uids=[f"fashion-mnist/{split}/{i}" for i in range(len(images))],
        sha1=sha1,
        paths=[None] * len(images),
        pixels=np.ascontiguousarray(images),
        hidden_labels=[FASHION_MNIST_CLASSES[int(y)] for y in labels],
    )


def concat(pools: list[ImagePool]) -> ImagePool:
    """One pool from several folders, or from several in-memory sets of one image shape."""
    if len(pools) == 1:
        return pools[0]
    arrays = [p.pixels for p in pools]
    if any(a is not None for a in arrays):
        if not all(a is not None for a in arrays) or len({a.shape[1:] for a in arrays}) != 1:
            raise NanofactoryError(
                "A pool cannot mix Fashion-MNIST with image folders; use one kind of source per build."
            )
    return ImagePool(
        source="+".join(p.source for p in pools),
        uids=[u for p in pools for u in p.uids],
        sha1=[s for p in pools for s in p.sha1],
        paths=[x for p in pools for x in p.paths],
        pixels=np.concatenate(arrays) if arrays[0] is not None else None,
        hidden_labels=[h for p in pools for h in (p.hidden_labels or [None] * len(p))],
        skipped=[s for p in pools for s in p.skipped],
    )
