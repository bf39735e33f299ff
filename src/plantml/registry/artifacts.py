"""Content-addressed storage of bundle files: every blob is stored under its SHA-256.

A version's bundle is its manifest plus the files the manifest lists, each kept once
however many versions share it. The interface is four methods, so that an S3-compatible
store can implement it later (``put`` = upload to ``sha256/ab/abcd...``, ``open`` = GET).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from plantml.registry.errors import NotFound, TamperError

BLOCK = 1 << 20


class ArtifactStore(Protocol):
    """Where bundle files live, addressed by their SHA-256."""

    def put(self, path: Path) -> str:
        """Store the file at ``path``; returns its SHA-256 hex digest."""

    def open(self, digest: str) -> BinaryIO:
        """The stored blob for reading (raises :class:`NotFound` when absent)."""

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""

    def verify(self, digest: str) -> None:
        """Re-hash the stored blob; raise :class:`TamperError` when it changed."""


class LocalArtifactStore:
    """Blobs in a folder: ``ROOT/sha256/ab/abcdef...`` (written once, read-only afterwards)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFound(f"{digest!r} is not a SHA-256 hex digest")
        return self.root / "sha256" / digest[:2] / digest

    def put(self, path: Path) -> str:
        path = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                for block in iter(lambda: src.read(BLOCK), b""):
                    digest.update(block)
                    out.write(block)
            name = digest.hexdigest()
            target = self._path(name)
            if target.exists():
                os.unlink(tmp)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)  # atomic: readers never see half a blob
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return name

    def open(self, digest: str) -> BinaryIO:
        path = self._path(digest)
        if not path.is_file():
            raise NotFound(
                f"artifact {digest} is missing from the store at {self.root}; restore the "
                "store from its backup"
            )
        return open(path, "rb")

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def verify(self, digest: str) -> None:
        actual = hashlib.sha256()
        with self.open(digest) as f:
            for block in iter(lambda: f.read(BLOCK), b""):
                actual.update(block)
        if actual.hexdigest() != digest:
            raise TamperError(
                f"stored artifact {digest} now hashes to {actual.hexdigest()}: the file in the "
                f"artifact store was modified; restore it from a backup or register the bundle again"
            )

    def copy_to(self, digest: str, dest: Path) -> None:
        """Write the blob to ``dest`` (used to rebuild a bundle folder)."""
        with self.open(digest) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, BLOCK)
