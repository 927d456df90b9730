"""The web page's data: uploads (files or zips) and folders on the server, per session.

Uploads land in ``<runs>/uploads/<session>/<pool|examples|test>``; once a run was built from a
folder, later uploads go to a copy, so that run's design.json keeps pointing at exactly the
images it used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.app_uploads import check_folder, class_counts, save_uploads
from knowledge.errors import NanofactoryError

DATA_KINDS = {"images": "pool", "examples": "examples", "test": "test"}  # data key -> upload subfolder


class DataMixin:
    """WebSession's data; its lock, saving and run bookkeeping are its own."""

    def add_upload(self, kind: str, files: list[str], class_name: str | None = None) -> str:
        """Save uploaded images (files or zips) for ``kind`` (images, examples, test); a line for the page."""
        if kind not in DATA_KINDS:
            raise NanofactoryError(f"Unknown upload {kind!r}; use one of {', '.join(DATA_KINDS)}.")
        if not files:
            raise NanofactoryError("Choose some image files or a zip first.")
        files = [f for f in files if (kind, f) not in self._saved]  # the event lists every file the box holds
        if not files:
            raise NanofactoryError("These files were added already; to add more, clear the box (×) and choose new "
                                   "ones.")
        name = class_name.strip() if kind != "images" and class_name and class_name.strip() else None
        if kind != "images" and name is None and any(not str(f).lower().endswith(".zip") for f in files):
            raise NanofactoryError(f"Which class do these {DATA_KINDS[kind]} images show? Type it in the class box "
                                   "and upload again, or upload a zip with one folder per class.")
        target = self._upload_target(kind)
        added = save_uploads(files, target, name, by_class=kind != "images")
        self._saved.update((kind, f) for f in files)
        self._set_data(kind, target)
        return f"Added {added} image{'s' if added != 1 else ''} to {DATA_KINDS[kind]}."

    def _upload_target(self, kind: str) -> Path:
        """The session's upload folder for ``kind``; once a run has used it, later uploads go to a copy,
        so that run's design.json keeps pointing at exactly the images it was built from."""
        base = self.app.config.runs_dir / "uploads" / self.id
        current = Path(self.data[kind]) if kind in self.data else None
        ours = current is not None and current.parent == base
        if ours and str(current) not in self._frozen:
            return current
        n, target = 1, base / DATA_KINDS[kind]
        while target.exists():
            n += 1
            target = base / f"{DATA_KINDS[kind]}-{n}"
        if ours:
            shutil.copytree(current, target)
        return target

    def use_folder(self, kind: str, path: str) -> str:
        """Use a folder on this machine, as `--images DIR` would; the person named it, so the agent may read it."""
        folder = check_folder(path, DATA_KINDS[kind], self.app.config.workspace)
        with self._lock:
            if folder not in self.roots:
                self.roots.append(folder)
        self._set_data(kind, folder)
        return f"Using {folder} as the {DATA_KINDS[kind]}."

    def _set_data(self, kind: str, folder: Path) -> None:
        from knowledge.pools import image_files

        if kind == "images":
            what = f"{len(image_files(folder)):,} images"
        else:
            counts = class_counts(folder)
            what = ", ".join(f"{k} {v}" for k, v in counts.items()) or "no class subfolders yet"
        with self._lock:
            self.data[kind] = str(folder)
            self.counts[kind] = what
        self.save()

    def data_summary(self) -> str:
        lines = []
        for kind, word in DATA_KINDS.items():
            if kind in self.data:
                lines.append(f"- **{word}**: `{self.data[kind]}` — {self.counts.get(kind, 'named on the command line')}")
            else:
                lines.append(f"- **{word}**: none yet")
        return "\n".join(lines)
