"""``Checkpoint``: a directory of files a trial saved, named by its path (``ray.train.Checkpoint``).

    trial: Checkpoint.from_directory(tmp) ──tune.report(..., checkpoint=)──► copied to
           <trial_dir>/checkpoint_000003/  ──► Result.checkpoint, tune.get_checkpoint() on restore

A Checkpoint holds only a path; it pickles as that path.  ``to_directory`` copies the files out,
``as_directory`` lends the directory itself for reading.  Metadata is a small JSON file beside the
files (``.metadata.json``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

_METADATA = ".metadata.json"


class Checkpoint:
    """A directory of saved state."""

    def __init__(self, path: str | os.PathLike, filesystem=None):
        self.path = os.fspath(path)
        self.filesystem = filesystem

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> "Checkpoint":
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise ValueError(f"Checkpoint.from_directory({path!r}): no such directory; write the "
                             "checkpoint's files into a directory first (e.g. tempfile.mkdtemp())")
        return cls(os.path.abspath(path))

    def to_directory(self, path: str | os.PathLike | None = None) -> str:
        """Copy the checkpoint's files to ``path`` (a new temporary directory if None)."""
        target = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(target, exist_ok=True)
        if os.path.abspath(target) != os.path.abspath(self.path):
            shutil.copytree(self.path, target, dirs_exist_ok=True)
        return target

    @contextlib.contextmanager
    def as_directory(self):
        """The checkpoint's directory, to read from (do not write into it)."""
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"checkpoint directory {self.path!r} is gone (num_to_keep may "
                                    "have deleted it)")
        yield self.path

    def get_metadata(self) -> dict:
        try:
            with open(os.path.join(self.path, _METADATA)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata: dict) -> None:
        with open(os.path.join(self.path, _METADATA), "w") as f:
            json.dump(metadata, f)

    def update_metadata(self, metadata: dict) -> None:
        self.set_metadata({**self.get_metadata(), **metadata})

    def __eq__(self, other):
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self):
        return hash(self.path)

    def __repr__(self):
        return f"Checkpoint(filesystem=local, path={self.path})"
