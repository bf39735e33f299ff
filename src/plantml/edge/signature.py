"""Bundle signatures: who vouches for a bundle, checked on the device with ``cryptography`` only.

A signed bundle is a bundle folder (:mod:`plantml.edge.bundle`) with one more file beside
``manifest.json``: ``signature.json`` (not listed in the manifest's ``files``: it signs the
manifest, so it cannot be inside it)::

    {
      "format": "plantml-bundle-signature", "format_version": 1,
      "manifest_sha256": "<content_sha256 of manifest.json>",
      "signatures": [
        {"key_id": "<16 hex: SHA-256 of the raw 32-byte Ed25519 public key>",
         "algorithm": "ed25519",
         "payload": {"manifest_sha256": ..., "purpose": "registration" | "promotion", ...},
         "signature": "<base64 of Ed25519 over canonical_json(payload)>"},
        ...
      ]
    }

A registration signature (``purpose: registration``) carries the registry's model name and
version number; a promotion countersignature (``purpose: promotion``) also carries the
``target`` and ``stage``. Each payload names the manifest's content hash, and the manifest
holds the SHA-256 of every other file, so one signature covers the whole bundle.

:func:`verify_signed_bundle` is what a device runs: the bundle's hashes
(:func:`~plantml.edge.bundle.load_bundle`), then at least one valid signature of the wanted
purpose by a trusted key. Unsigned, wrongly signed or re-hashed bundles are refused with
:class:`SignatureError`. Format-1 bundles without ``signature.json`` still load with
:func:`~plantml.edge.bundle.load_bundle` wherever signing is not required.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantml.edge.bundle import MANIFEST, Bundle, BundleError, content_sha256, load_bundle

SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = "plantml-bundle-signature"
SIGNATURE_FORMAT_VERSION = 1
ALGORITHM = "ed25519"


class SignatureError(BundleError):
    """The bundle is unsigned, or no signature of a trusted key matches it."""


def canonical_json(value: Any) -> bytes:
    """The bytes that are hashed and signed: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@functools.cache
def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # pragma: no cover - depends on the device's packages
        raise SignatureError(
            "checking bundle signatures needs the 'cryptography' package; install it on the "
            "device (pip install cryptography)"
        ) from None
    return InvalidSignature, serialization, Ed25519PublicKey


def public_key_id(raw: bytes) -> str:
    """Short id of an Ed25519 public key: the first 16 hex digits of SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class TrustedKey:
    """An Ed25519 public key a device trusts, with its id and where it came from."""

    key_id: str
    raw: bytes
    source: str

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``data``."""
        invalid, _, public = _crypto()
        key = _LOADED.get(self.raw)
        if key is None:
            key = _LOADED[self.raw] = public.from_public_bytes(self.raw)
        try:
            key.verify(signature, data)
        except invalid:
            return False
        return True


_LOADED: dict[
    bytes, Any
] = {}  # raw public key -> loaded key object (loading costs more than a check)


def parse_public_key(text: str | bytes, source: str = "<key>") -> TrustedKey:
    """A trusted key from PEM (``-----BEGIN PUBLIC KEY-----``) text."""
    _, serialization, public = _crypto()
    data = text.encode() if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SignatureError(
            f"{source} is not a PEM public key ({exc}); export it with "
            "`plantml-registry keys export`"
        ) from None
    if not isinstance(key, public):
        raise SignatureError(f"{source} is not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TrustedKey(public_key_id(raw), raw, source)


def load_trusted_keys(paths: str | Path | Iterable[str | Path]) -> dict[str, TrustedKey]:
    """Trusted keys by id from PEM files, or folders of ``*.pub`` / ``*.pem`` files."""
    if isinstance(paths, str | Path):
        paths = [paths]
    keys: dict[str, TrustedKey] = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted([*path.glob("*.pub"), *path.glob("*.pem")])
            if not files:
                raise SignatureError(f"no *.pub or *.pem public key files in {path}")
        elif path.is_file():
            files = [path]
        else:
            raise SignatureError(f"trusted key file or folder {path} not found")
        for file in files:
            key = parse_public_key(file.read_bytes(), str(file))
            keys[key.key_id] = key
    return keys


def read_signature_file(folder: str | Path) -> dict[str, Any]:
    """``signature.json`` of a bundle folder, checked for its format (signatures not checked)."""
    file = Path(folder) / SIGNATURE_FILE
    if not file.is_file():
        raise SignatureError(
            f"bundle {folder}: not signed (no {SIGNATURE_FILE}); this device requires signed "
            "bundles: download the bundle from the registry (it adds the signature)"
        )
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SignatureError(
            f"bundle {folder}: {SIGNATURE_FILE} is not valid JSON ({exc})"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT:
        raise SignatureError(f"bundle {folder}: {SIGNATURE_FILE} is not a {SIGNATURE_FORMAT} file")
    if doc.get("format_version") != SIGNATURE_FORMAT_VERSION:
        raise SignatureError(
            f"bundle {folder}: {SIGNATURE_FILE} format_version {doc.get('format_version')!r} is "
            f"not supported (this runtime reads {SIGNATURE_FORMAT_VERSION})"
        )
    if not isinstance(doc.get("signatures"), list):
        raise SignatureError(f"bundle {folder}: {SIGNATURE_FILE} has no list of signatures")
    return doc


def check_signatures(
    doc: Mapping[str, Any],
    manifest_sha256: str,
    trusted: Mapping[str, TrustedKey],
    purpose: str = "registration",
    where: str = "bundle",
) -> list[dict[str, Any]]:
    """The payloads of the valid signatures of ``purpose`` over ``manifest_sha256`` by trusted keys.

    Raises :class:`SignatureError` naming why when there is none.
    """
    if not trusted:
        raise SignatureError(f"{where}: no trusted public keys configured; nothing can verify it")
    valid, problems = [], []
    for entry in doc.get("signatures", []):
        if not isinstance(entry, Mapping):
            problems.append("an entry is not an object")
            continue
        payload = entry.get("payload")
        if not isinstance(payload, Mapping) or payload.get("purpose") != purpose:
            continue
        key_id = entry.get("key_id")
        if entry.get("algorithm") != ALGORITHM:
            problems.append(f"key {key_id}: algorithm {entry.get('algorithm')!r} is not ed25519")
            continue
        if payload.get("manifest_sha256") != manifest_sha256:
            problems.append(f"key {key_id}: signs another manifest (the manifest was changed)")
            continue
        key = trusted.get(str(key_id))
        if key is None:
            problems.append(f"key {key_id} is not trusted")
            continue
        try:
            raw = base64.b64decode(str(entry.get("signature", "")), validate=True)
        except ValueError:
            problems.append(f"key {key_id}: signature is not base64")
            continue
        if not key.verify(raw, canonical_json(dict(payload))):
            problems.append(f"key {key_id}: signature does not match (forged or altered)")
            continue
        valid.append(dict(payload))
    if not valid:
        detail = "; ".join(problems) if problems else f"no {purpose} signature at all"
        raise SignatureError(f"{where}: no valid {purpose} signature by a trusted key ({detail})")
    return valid


def verify_signed_bundle(
    path: str | Path,
    trusted: Mapping[str, TrustedKey],
    purpose: str = "registration",
) -> tuple[Bundle, list[dict[str, Any]]]:
    """Load a bundle (every file's SHA-256 checked) and require a trusted signature over it.

    Returns the bundle and the valid signature payloads of ``purpose``.
    """
    bundle = load_bundle(path, verify=True)
    doc = read_signature_file(bundle.path)
    actual = content_sha256(bundle.manifest)
    if doc.get("manifest_sha256") not in (None, actual):
        raise SignatureError(
            f"bundle {bundle.path}: {SIGNATURE_FILE} belongs to another {MANIFEST} "
            "(the manifest was replaced or edited); download the bundle again"
        )
    payloads = check_signatures(doc, actual, trusted, purpose, f"bundle {bundle.path}")
    return bundle, payloads
