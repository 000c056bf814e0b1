"""ImageNet-style folders: ``root/train/<class>/*`` and ``root/val/<class>/*`` (ImageNet-1k after the usual val
sorting, ImageNet-100, Imagenette, Imagewoof, or any set laid out the same way), read by
:class:`~zoo.data.image_files.ImageFilesDataModule`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.base import DataError
from zoo.data.image_files import FileSource, ImageFilesDataModule, scan_flat_folder


def _read_class_list(classes: Sequence[str] | str) -> list[str]:
    if isinstance(classes, str):
        path = Path(classes).expanduser()
        if not path.is_file():
            raise DataError(f"classes={classes}: no such class-list file (one class folder name per line)")
        names = [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    else:
        names = [str(c) for c in classes]
    if not names:
        raise DataError("classes: the class list is empty")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise DataError(f"classes: {duplicates[:5]} listed more than once")
    return sorted(names)


class ImageNetFolderDataModule(ImageFilesDataModule):
    """``root`` holds ``train/`` and ``val/``, each with one subfolder per class (labels: the sorted train class
    folder names, e.g. WordNet ids ``n01440764``); val is scored against the train classes.

    ``classes`` picks a subset of the class folders (a list, or a file with one name per line, e.g. the ImageNet-100
    list of CMC): only those folders are read, labelled in sorted order. Every other argument is
    :class:`~zoo.data.image_files.ImageFilesDataModule`'s (``max_side``, ``eval_size``, ``on_bad_file``, ...).

    Args:
        root: the folder holding ``train/`` and ``val/``.
        train, val: the split folders under ``root`` (``val=None``: hold out ``val_size`` train images instead).
        classes: class folders to use (default: all).
    """

    def __init__(
        self,
        root: str,
        train: str = "train",
        val: str | None = "val",
        classes: list[str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("labels", "folders")
        super().__init__(root=root, train=train, val=val, **kwargs)
        self.class_subset = None if classes is None else _read_class_list(classes)

    def _read_source(self, split: str, classes: list[str] | None) -> FileSource:
        path = self._resolve(self.sources[split])
        if path.is_dir() and not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path)):
            raise DataError(
                f"{path}: no class subfolders in the {split} split; an ImageNet-style folder has {split}/<class>/<images> "
                "(the raw ILSVRC2012 val folder is flat: sort it into class folders, e.g. with ImageNet's valprep.sh, "
                "or give val= a path,label list)"
            )
        if self.class_subset is None or not path.is_dir():
            return super()._read_source(split, classes)
        missing = [c for c in self.class_subset if not (path / c).is_dir()]
        if missing:
            raise DataError(
                f"{path}: lacks {len(missing)} of the {len(self.class_subset)} class folders asked for in classes= "
                f"(e.g. {', '.join(missing[:3])})"
            )
        paths: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(self.class_subset):
            found = scan_flat_folder(path / name)
            if not found.paths:
                raise DataError(f"{path / name}: class folder '{name}' holds no images")
            paths += found.paths
            labels += [label] * len(found.paths)
        return FileSource(paths, np.asarray(labels, dtype=np.int64), list(self.class_subset), [], str(path))
