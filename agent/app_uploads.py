"""Images a person uploads in the web app, saved where a run can find them again.

Uploads land in ``<runs>/uploads/<session>/{pool,examples,test}`` (not a temp folder: a run's
design.json points at its pool, so replay and resume need the files to stay). Zips are read
member by member: only image files are written, never outside the target folder, within a
size and count limit.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from knowledge.errors import NanofactoryError
from knowledge.pools import IMAGE_SUFFIXES, image_files, whole_disk_or_home

MAX_FILES = 200_000
MAX_BYTES = 4 * 1024**3  # uncompressed, per zip: larger pools are better named as a folder on this machine


def _safe_member(name: str) -> PurePosixPath | None:
    """The member's relative path, or None for folders, non-images, hidden files and anything escaping."""
    path = PurePosixPath(name.replace("\\", "/"))
    if name.endswith("/") or path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return None
    return path if path.suffix.lower() in IMAGE_SUFFIXES else None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _common_root(paths: list[PurePosixPath]) -> int:
    """1 when every member sits under one top folder that is not itself a class (zip of a folder), else 0."""
    tops = {p.parts[0] for p in paths}
    return 1 if len(tops) == 1 and all(len(p.parts) > 2 for p in paths) else 0


def extract_images(archive: Path, target: Path, by_class: bool = False) -> int:
    """Write the zip's images under ``target`` (keeping subfolders, minus a lone top folder); the count.
    ``by_class``: examples or test images with no class typed, so every image must sit in a class folder."""
    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise NanofactoryError(f"{Path(archive).name} is not a readable zip file; zip the folder again.") from None
    with z:
        members = [(info, _safe_member(info.filename)) for info in z.infolist()]
        members = [(info, p) for info, p in members if p is not None and not _is_symlink(info)]
        if len(members) > MAX_FILES or sum(info.file_size for info, _ in members) > MAX_BYTES:
            raise NanofactoryError(f"{Path(archive).name} is too large to upload ({len(members):,} images); "
                                   "name its folder on this machine instead.")
        skip = _common_root([p for _, p in members]) if members else 0
        loose = [p for _, p in members if len(p.parts) - skip < 2]
        if by_class and loose:
            raise NanofactoryError(f"{loose[0]} in {Path(archive).name} sits in no class folder; type the class of "
                                   "these images in the class box and upload again, or zip one folder per class.")
        written: list[Path] = []
        try:
            for info, path in members:
                data = z.read(info)  # whole, so a damaged member (bad CRC) is found before anything of it lands
                out = _unique(target.joinpath(*path.parts[skip:]))  # never over an image uploaded before
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                written.append(out)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            for f in written:  # all of the zip or none of it
                f.unlink(missing_ok=True)
            what = "is damaged" if not isinstance(e, OSError) else f"cannot be saved here ({e.strerror or e})"
            raise NanofactoryError(f"{path} in {Path(archive).name} {what}; nothing of the zip was added, "
                                   "zip the folder again.") from None
    return len(members)


def _unique(path: Path) -> Path:
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def save_uploads(files: list[str | Path], target: Path, class_name: str | None = None, by_class: bool = False) -> int:
    """Zips are extracted, image files copied (into ``target/<class_name>`` when given); the images added.
    ``by_class``: the target holds one folder per class (examples, test). A failed upload leaves no
    folder behind that it made."""
    if class_name is not None:
        name = class_name.strip()
        if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 64 or not name.isprintable():
            raise NanofactoryError("Name the class these examples show (letters, digits, spaces; at most 64), e.g. 'cat'.")
        target = target / name
    made = [d for d in (target, *target.parents) if not d.exists()]  # innermost first
    target.mkdir(parents=True, exist_ok=True)
    added = 0
    try:
        for f in files:
            f = Path(f)
            if f.suffix.lower() == ".zip":
                added += extract_images(f, target, by_class=by_class and class_name is None)
            elif f.suffix.lower() in IMAGE_SUFFIXES:
                shutil.copyfile(f, _unique(target / f.name))
                added += 1
        if not added:
            raise NanofactoryError(f"No images in that upload; use {', '.join(sorted(IMAGE_SUFFIXES))} files or a zip "
                                   "of them.")
    except NanofactoryError:
        for d in made:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    return added


def class_counts(folder: Path) -> dict[str, int]:
    """Images per subfolder (the class layout of examples and test folders)."""
    return {sub.name: len(image_files(sub)) for sub in sorted(Path(folder).iterdir()) if sub.is_dir()}


def check_folder(path: str, what: str, base: Path | None = None) -> Path:
    """A folder the person named, resolved (a relative one from ``base``, the workspace); a clear error
    when it is missing or holds no images."""
    folder = (Path(base or Path.cwd()) / Path(path.strip()).expanduser()).resolve()
    if not folder.is_dir():
        raise NanofactoryError(f"The {what} folder {folder} does not exist on this machine; check the path.")
    whole = whole_disk_or_home(folder)
    if whole:  # reading every image under it would walk the whole disk, and let the agent read all of it
        raise NanofactoryError(f"{folder} is {whole}; name the folder that holds the {what}.")
    if not image_files(folder):
        raise NanofactoryError(f"The {what} folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return folder
