"""Where verification keys come from: a configured secret, a JWKS file, or a secret the
server generates once and keeps in its data dir (file mode 0600)."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from ..secrets_file import persistent_secret

log = logging.getLogger("fhir_server")
GENERATED_SECRET_FILE = "jwt-secret"
HMAC_ALGORITHMS = ("HS256",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


class KeyLoadError(Exception):
    """The configured keys cannot be loaded."""


@dataclass(frozen=True)
class Keys:
    """The HS256 secret and the JWKS keys tokens may be signed with."""

    secret: bytes | None = None
    jwks: list[jwt.PyJWK] = field(default_factory=list)
    generated: bool = False  # the secret came from the data dir, not from the operator


def load_jwks(path: Path) -> list[jwt.PyJWK]:
    """Every RS256/ES256 signing key in a JWKS file."""
    try:
        key_set = jwt.PyJWKSet.from_json(path.read_text())
    except (OSError, jwt.PyJWTError, ValueError) as exc:
        raise KeyLoadError(f"cannot load the JWKS file {path}: {exc}") from None
    keys = [k for k in key_set.keys if k.algorithm_name in PUBLIC_KEY_ALGORITHMS]
    if not keys:
        raise KeyLoadError(f"the JWKS file {path} has no RS256 or ES256 key")
    return keys


def load_keys(secret: bytes | None, jwks_file: Path | None, data_dir: Path) -> Keys:
    """The configured keys; with none configured, the data dir's generated secret."""
    jwks = load_jwks(jwks_file) if jwks_file is not None else []
    if secret:
        return Keys(secret, jwks)
    if jwks:
        return Keys(None, jwks)
    return Keys(persistent_secret(data_dir / GENERATED_SECRET_FILE), [], generated=True)
