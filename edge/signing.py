"""ed25519 signatures over a bundle's manifest.

The manifest holds the sha256 of the model and the labels, and loading checks both, so a
signature over ``manifest.json`` covers the whole bundle. The signature lives beside it in
``signature.json``; a device configured with trusted public keys refuses bundles that are
unsigned, signed by another key, or changed after signing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import BundleError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGNATURE_NAME = "signature.json"


def _require_crypto() -> None:
    """One line naming the package when ``cryptography`` is missing: only signed bundles need it.

    The callers then import what they use themselves (already loaded here), so each name keeps its type.
    """
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
    except ImportError:
        raise BundleError("bundle signatures need the 'cryptography' package (pip install cryptography)") from None


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the sha256 of the raw public key: short enough for logs and file names."""
    _require_crypto()
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: str | Path) -> tuple[Path, Path]:
    """Write a new private key (PEM, PKCS8) to ``path`` and its public key to ``path.pub``."""
    _require_crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path = Path(path)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path, pub


def sign_bundle(root: str | Path, private_key: str | Path) -> str:
    """Sign ``root/manifest.json`` with a PEM ed25519 private key; returns the key id."""
    _require_crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        key = serialization.load_pem_private_key(Path(private_key).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{private_key}: cannot read ed25519 private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{private_key}: not an ed25519 private key")
    root = Path(root)
    signature = key.sign((root / "manifest.json").read_bytes())
    kid = key_id(key.public_key())
    doc = {"algorithm": "ed25519", "key_id": kid, "signature": base64.b64encode(signature).decode()}
    (root / SIGNATURE_NAME).write_text(json.dumps(doc, indent=2) + "\n")
    return kid


def load_public_keys(paths: list[str | Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys (PEM files) by key id."""
    _require_crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    keys: dict[str, Ed25519PublicKey] = {}
    for p in paths:
        try:
            key = serialization.load_pem_public_key(Path(p).read_bytes())
        except (OSError, ValueError) as exc:
            raise BundleError(f"{p}: cannot read ed25519 public key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise BundleError(f"{p}: not an ed25519 public key")
        keys[key_id(key)] = key
    return keys


def verify_bundle(root: str | Path, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Check the bundle's signature against trusted keys; returns the signing key id."""
    from cryptography.exceptions import InvalidSignature

    root = Path(root)
    sig_path = root / SIGNATURE_NAME
    if not sig_path.is_file():
        raise BundleError(f"{root}: unsigned bundle (no {SIGNATURE_NAME}) but trusted keys are configured")
    try:
        doc = json.loads(sig_path.read_text())
        kid: str = doc["key_id"]  # JSON: Any; checked against the trusted ids below
        signature = base64.b64decode(doc["signature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{root}: malformed {SIGNATURE_NAME} ({exc})") from None
    if doc.get("algorithm") != "ed25519":
        raise BundleError(f"{root}: unsupported signature algorithm {doc.get('algorithm')!r}")
    key = trusted.get(kid)
    if key is None:
        raise BundleError(f"{root}: signed by key {kid}, which is not among the trusted keys")
    try:
        key.verify(signature, (root / "manifest.json").read_bytes())
    except InvalidSignature:
        raise BundleError(f"{root}: bad signature: manifest.json changed after signing by key {kid}") from None
    return kid
