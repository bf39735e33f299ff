"""Getting a version's bundle out again: rebuilt from the artifact store, checked, signed.

A bundle leaves the registry only after every stored blob hashed to its recorded SHA-256,
the manifest's content hash matched the version's, the version record matched its hash,
and every stored signature verified with a trusted key. Out it comes as a folder or a
deterministic ``.tar.gz`` (``<model>-<number>/`` holding the bundle files and
``signature.json``, see :mod:`plantml.edge.signature`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from plantml.edge.bundle import MANIFEST, content_sha256
from plantml.edge.signature import (
    SIGNATURE_FILE,
    SIGNATURE_FORMAT,
    SIGNATURE_FORMAT_VERSION,
    SignatureError,
    canonical_json,
    check_signatures,
)
from plantml.registry.errors import Refused, TamperError


def signature_document(version: dict[str, Any]) -> dict[str, Any]:
    """The ``signature.json`` of a version: every registration and promotion signature."""
    return {
        "format": SIGNATURE_FORMAT,
        "format_version": SIGNATURE_FORMAT_VERSION,
        "manifest_sha256": version["manifest_sha256"],
        "model": version["model"],
        "version": version["number"],
        "signatures": version["signatures"],
    }


def verify_version(registry, ref: str, trusted_paths=None) -> dict[str, Any]:
    """Check a version's stored bundle, record and signatures; raises :class:`TamperError`
    naming the first thing that does not match. Returns what was checked."""
    version = registry.version(ref)
    files = version["files"]
    for name, digest in sorted(files.items()):
        try:
            registry.artifacts.verify(digest)
        except TamperError as exc:
            raise TamperError(f"{ref}: {name}: {exc}") from None
    with registry.artifacts.open(files[MANIFEST]) as f:
        manifest = json.loads(f.read().decode("utf-8"))
    if content_sha256(manifest) != version["manifest_sha256"]:
        raise TamperError(f"{ref}: the stored manifest is not the one registered")
    listed = {k: v for k, v in files.items() if k != MANIFEST}
    if listed != manifest.get("files"):
        raise TamperError(f"{ref}: the stored files differ from those the manifest lists")
    body = canonical_json(version["record"])
    if hashlib.sha256(body).hexdigest() != version["record_sha256"]:
        raise TamperError(f"{ref}: the version record was edited after registration")
    trusted = registry.trusted_keys(trusted_paths)
    doc = signature_document(version)
    try:
        registered = check_signatures(doc, version["manifest_sha256"], trusted, "registration", ref)
        promoted = (
            check_signatures(doc, version["manifest_sha256"], trusted, "promotion", ref)
            if any(s["payload"].get("purpose") == "promotion" for s in version["signatures"])
            else []
        )
    except SignatureError as exc:
        raise TamperError(str(exc)) from None
    if len(registered) + len(promoted) != len(version["signatures"]):
        raise TamperError(f"{ref}: a stored signature does not verify")
    return {
        "ref": ref,
        "files": len(files),
        "signatures": len(version["signatures"]),
        "manifest_sha256": version["manifest_sha256"],
    }


def _checked(registry, ref: str) -> dict[str, Any]:
    try:
        verify_version(registry, ref)
    except TamperError as exc:
        raise Refused("tampered_bundle", f"download refused: {exc}") from None
    return registry.version(ref)


def write_bundle_folder(registry, ref: str, dest: str | Path) -> Path:
    """Write a version's signed bundle folder to ``dest`` (which must not exist)."""
    version = _checked(registry, ref)
    dest = Path(dest)
    dest.mkdir(parents=True)
    for name, digest in version["files"].items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        registry.artifacts.copy_to(digest, path)
    (dest / SIGNATURE_FILE).write_text(json.dumps(signature_document(version), indent=2) + "\n")
    return dest


def bundle_archive(registry, ref: str) -> tuple[str, bytes]:
    """(file name, bytes) of a version's signed bundle as a deterministic ``.tar.gz``."""
    version = _checked(registry, ref)
    root = f"{version['model']}-{version['number']}"
    buffer = io.BytesIO()

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(f"{root}/{name}")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))

    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, digest in sorted(version["files"].items()):
            with registry.artifacts.open(digest) as f:
                add(tar, name, f.read())
        add(tar, SIGNATURE_FILE, json.dumps(signature_document(version), indent=2).encode() + b"\n")
    return f"{root}.tar.gz", buffer.getvalue()


def extract_archive(data: bytes, dest: str | Path) -> Path:
    """Unpack a bundle archive safely (no links, no paths outside ``dest``); returns the folder."""
    dest = Path(dest)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
        roots = {Path(m.name).parts[0] for m in tar.getmembers()}
    if len(roots) != 1:
        raise TamperError(f"bundle archive holds {len(roots)} top folders, expected one")
    return dest / roots.pop()
