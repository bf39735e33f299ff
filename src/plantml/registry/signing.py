"""The registry's Ed25519 signing key: generated and loaded from files, never stored in the DB.

The private key is a PKCS#8 PEM file (mode 0600; encrypted when ``PLANTML_REGISTRY_KEY_PASSPHRASE``
is set); its public half is a ``.pub`` PEM beside it and a row of ``signing_keys``. The
signature format is :mod:`plantml.edge.signature` (what devices verify).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plantml.edge.signature import ALGORITHM, TrustedKey, canonical_json, public_key_id
from plantml.registry.errors import RegistryError

PASSPHRASE_ENV = "PLANTML_REGISTRY_KEY_PASSPHRASE"
KEY_ENV = "PLANTML_REGISTRY_SIGNING_KEY"


@dataclass(frozen=True)
class Signer:
    """A loaded private key. ``repr`` never shows the key."""

    key_id: str
    public_pem: str
    path: Path
    _key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, path={str(self.path)!r})"

    def sign(self, data: bytes) -> str:
        """Base64 Ed25519 signature of ``data``."""
        return base64.b64encode(self._key.sign(data)).decode()

    def sign_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One entry of ``signature.json``'s ``signatures`` list."""
        return {
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "payload": payload,
            "signature": self.sign(canonical_json(payload)),
        }

    def trusted(self) -> TrustedKey:
        """The public half as a trusted key (for verifying what this registry signed)."""
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return TrustedKey(self.key_id, raw, str(self.path))


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _public_pem(key: Ed25519PrivateKey) -> tuple[str, str]:
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return public_key_id(raw), pem


def generate_key(path: str | Path) -> Signer:
    """Write a new private key to ``path`` (0600) and its public key to ``path.pub``.

    Refuses to overwrite an existing key file.
    """
    path = Path(path)
    if path.exists():
        raise RegistryError(f"key file {path} already exists; choose another path or rotate")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    secret = _passphrase()
    encryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    key_id, pem = _public_pem(key)
    path.with_name(path.name + ".pub").write_text(pem)
    return Signer(key_id, pem, path, key)


def load_key(path: str | Path) -> Signer:
    """Load the private key at ``path`` (PEM, PKCS#8; passphrase from the environment)."""
    path = Path(path)
    if not path.is_file():
        raise RegistryError(
            f"signing key {path} not found; create one with `plantml-registry keys generate` "
            f"or point {KEY_ENV} / --signing-key at it"
        )
    if path.stat().st_mode & 0o077:
        raise RegistryError(
            f"signing key {path} is readable by other users; run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=_passphrase())
    except (ValueError, TypeError) as exc:
        hint = f" (set {PASSPHRASE_ENV} for an encrypted key)" if "encrypt" in str(exc) else ""
        raise RegistryError(f"signing key {path} cannot be read: {exc}{hint}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RegistryError(f"signing key {path} is not an Ed25519 key")
    key_id, pem = _public_pem(key)
    return Signer(key_id, pem, path, key)
