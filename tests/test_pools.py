"""Image pools (knowledge.pools): folders of user images and Fashion-MNIST from IDX files."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from knowledge.errors import NanofactoryError
from knowledge.pools import FASHION_MNIST_CLASSES, concat, load_fashion_mnist, load_folder


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(h: int, w: int, color: tuple[int, int, int]) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = color
    return a


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four valid images in nested folders and four suffixes, two corrupt ones, one non-image."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    _save(root / "a.png", _rgb(20, 20, (255, 0, 0)))
    _save(root / "sub" / "b.JPG", rng.integers(0, 256, (12, 30, 3), dtype=np.uint8))
    _save(root / "sub" / "deeper" / "c.bmp", rng.integers(0, 256, (9, 9), dtype=np.uint8))  # grayscale
    _save(root / "d.webp", _rgb(16, 16, (0, 0, 255)))
    (root / "garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    good_png = (root / "a.png").read_bytes()
    (root / "sub" / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "notes.txt").write_text("not an image, not counted")
    return root


# ---- folders -------------------------------------------------------------------------------


def test_load_folder_is_recursive_and_skips_corrupt_files(folder: Path):
    pool = load_folder(folder)
    assert sorted(pool.uids) == sorted(["a.png", "d.webp", str(Path("sub/b.JPG")), str(Path("sub/deeper/c.bmp"))])
    assert len(pool) == 4 and len(pool.sha1) == 4 and len(pool.paths) == 4
    assert pool.pixels is None
    skipped = sorted(Path(p).name for p, _ in pool.skipped)
    assert skipped == ["garbage.jpg", "truncated.png"]  # notes.txt is not an image file at all
    # each sha1 is the hash of the file's bytes
    for uid, sha in zip(pool.uids, pool.sha1):
        assert sha == hashlib.sha1((folder / uid).read_bytes()).hexdigest()


def test_load_folder_limit(folder: Path):
    pool = load_folder(folder, limit=2)
    assert len(pool) == 2


@pytest.mark.parametrize("channels", [1, 3])
def test_load_resizes_to_size_and_channels(folder: Path, channels: int):
    pool = load_folder(folder)
    out = pool.load(list(range(len(pool))), size=16, channels=channels)
    assert out.shape == (len(pool), 16, 16, channels)
    assert out.dtype == np.uint8
    batches = list(pool.iter_batches(16, channels, batch=3))
    assert [len(b) for b in batches] == [3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), out)


def test_load_keeps_colors(folder: Path):
    pool = load_folder(folder)
    red = pool.uids.index("a.png")
    rgb = pool.load([red], size=8, channels=3)[0]
    assert (rgb == np.array([255, 0, 0], np.uint8)).all()
    gray = pool.load([red], size=8, channels=1)[0]
    assert abs(int(gray.mean()) - 76) <= 1  # PIL's ITU-R 601 luma of pure red: 0.299 * 255


def test_load_crops_the_center_square(tmp_path: Path):
    """A 40x20 image: only its middle 20 columns survive, unstretched."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, 10:30] = 255
    _save(tmp_path / "wide" / "w.png", a)
    out = load_folder(tmp_path / "wide").load([0], size=10, channels=1)
    assert out.min() == 255


def test_content_hash_is_stable_and_content_sensitive(folder: Path, tmp_path: Path):
    h1 = load_folder(folder).content_hash
    assert h1 == load_folder(folder).content_hash
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert load_folder(copy).content_hash == h1  # content, not location
    _save(copy / "a.png", _rgb(20, 20, (254, 0, 0)))
    assert load_folder(copy).content_hash != h1


def test_missing_folder_raises(tmp_path: Path):
    missing = tmp_path / "nowhere"
    with pytest.raises(NanofactoryError, match="nowhere"):
        load_folder(missing)


def test_file_instead_of_folder_raises(tmp_path: Path):
    f = _save(tmp_path / "single.png", _rgb(8, 8, (1, 2, 3)))
    with pytest.raises(NanofactoryError, match="single.png"):
        load_folder(f)


def test_empty_folder_raises(tmp_path: Path):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(NanofactoryError, match="empty_dir"):
        load_folder(empty)


def test_only_corrupt_folder_raises(tmp_path: Path):
    bad = tmp_path / "bad_dir"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"\x00" * 100)
    (bad / "y.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(NanofactoryError, match="bad_dir"):
        load_folder(bad)


# ---- Fashion-MNIST -------------------------------------------------------------------------


def _write_idx(root: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    root.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())
    with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x00000801, n) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def fmnist(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0], np.uint8)
    root = tmp_path / "fm"
    _write_idx(root, "train", images, labels)
    _write_idx(root, "t10k", images[::-1].copy(), labels[::-1].copy())
    return root, images, labels


def test_fashion_mnist_from_idx(fmnist):
    root, images, labels = fmnist
    pool = load_fashion_mnist("train", root=root)
    assert len(pool) == 12
    assert pool.pixels.shape == (12, 28, 28, 1) and pool.pixels.dtype == np.uint8
    np.testing.assert_array_equal(pool.pixels[..., 0], images)
    assert pool.hidden_labels == [FASHION_MNIST_CLASSES[y] for y in labels]
    assert pool.hidden_labels[:3] == ["T-shirt/top", "Trouser", "Pullover"]
    assert pool.hidden_labels[9] == "Ankle boot"
    assert pool.sha1[0] == hashlib.sha1(images[0].tobytes()).hexdigest()
    assert len(set(pool.uids)) == 12 and pool.source == "fashion-mnist:train"


def test_fashion_mnist_test_split_and_limit(fmnist):
    root, images, labels = fmnist
    pool = load_fashion_mnist("test", limit=5, root=root)
    assert len(pool) == 5
    np.testing.assert_array_equal(pool.pixels[..., 0], images[::-1][:5])
    assert pool.hidden_labels == [FASHION_MNIST_CLASSES[y] for y in labels[::-1][:5]]


def test_fashion_mnist_load_native_and_resized(fmnist):
    root, images, _ = fmnist
    pool = load_fashion_mnist("train", root=root)
    np.testing.assert_array_equal(pool.load([3, 1], 28, 1)[..., 0], images[[3, 1]])
    small = pool.load([0, 1, 2], 14, 3)
    assert small.shape == (3, 14, 14, 3) and small.dtype == np.uint8
    assert (small[..., 0] == small[..., 2]).all()  # gray replicated into RGB


def test_fashion_mnist_missing_raises(tmp_path: Path):
    with pytest.raises(NanofactoryError, match="fashion"):
        load_fashion_mnist("train", root=tmp_path / "absent")


def test_fashion_mnist_missing_labels_file_raises_nanofactory_error(fmnist):
    root, _, _ = fmnist
    (root / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NanofactoryError):
        load_fashion_mnist("train", root=root)


# ---- concat --------------------------------------------------------------------------------


def test_concat_folders(folder: Path, tmp_path: Path):
    other = tmp_path / "other"
    _save(other / "z.png", _rgb(8, 8, (0, 255, 0)))
    a, b = load_folder(folder), load_folder(other)
    both = concat([a, b])
    assert len(both) == len(a) + len(b)
    assert both.uids == a.uids + b.uids and both.sha1 == a.sha1 + b.sha1
    assert both.load([len(a)], 4, 3)[0, 0, 0].tolist() == [0, 255, 0]


def test_concat_arrays(fmnist):
    root, _, _ = fmnist
    a = load_fashion_mnist("train", limit=4, root=root)
    b = load_fashion_mnist("test", limit=3, root=root)
    both = concat([a, b])
    assert both.pixels.shape == (7, 28, 28, 1)
    assert both.hidden_labels == a.hidden_labels + b.hidden_labels


@pytest.mark.parametrize("order", ["folder-first", "array-first"])
def test_concat_refuses_mixing_folder_and_array(folder: Path, fmnist, order: str):
    pools = [load_folder(folder), load_fashion_mnist("train", limit=4, root=fmnist[0])]
    if order == "array-first":
        pools.reverse()
    with pytest.raises(NanofactoryError):
        concat(pools)


def test_an_image_claiming_billions_of_pixels_is_skipped_not_fatal(tmp_path):
    """A PNG header that claims 100000 x 100000 makes PIL raise DecompressionBombError, which is no OSError."""
    import zlib

    from knowledge.pools import load_folder

    folder = tmp_path / "pool"
    folder.mkdir()
    Image.new("L", (16, 16), 128).save(folder / "fine.png")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    pool = load_folder(folder)
    assert pool.uids == ["fine.png"] and pool.skipped == [(str(folder / "bomb.png"), "DecompressionBombError")]


def test_sixteen_bit_grayscale_keeps_its_contrast():
    from knowledge.pools import model_pixels

    a = np.array([[0, 16384], [32768, 65535]], np.uint16)
    image = Image.fromarray(a)
    assert image.mode.startswith("I;16")
    assert model_pixels(image, 2, 1)[..., 0].tolist() == [[0, 64], [128, 255]]  # it clipped to 0 / 255
    assert model_pixels(image, 2, 3)[1, 1].tolist() == [255, 255, 255]
    eight_bit = Image.fromarray(np.array([[0, 64], [128, 255]], np.int32), mode="I")  # mode I, 8-bit values
    assert model_pixels(eight_bit, 2, 1)[..., 0].tolist() == [[0, 64], [128, 255]]


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    from knowledge.io import _UMASK, write_json_atomic

    write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~_UMASK  # mkstemp's 0600 before
    assert os.access(tmp_path / "metrics.json", os.R_OK)
