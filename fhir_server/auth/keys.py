"""Where verification keys come from: a configured secret, a JWKS file, or a secret the
server generates once and keeps in its data dir (file mode 0600)."""

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import jwt

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


def data_dir_secret(data_dir: Path) -> bytes:
    """The secret kept in the data dir, created (0600, atomically) on first use."""
    path = data_dir / GENERATED_SECRET_FILE
    if path.exists():
        return path.read_text().strip().encode()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = data_dir / f".{GENERATED_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48))
    try:
        os.link(temporary, path)  # fails if another worker got there first: use theirs
        log.info("generated a token-signing secret in %s", path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip().encode()


def load_keys(secret: str | None, jwks_file: Path | None, data_dir: Path) -> Keys:
    """The configured keys; with none configured, the data dir's generated secret."""
    jwks = load_jwks(jwks_file) if jwks_file is not None else []
    if secret:
        return Keys(secret.encode(), jwks)
    if jwks:
        return Keys(None, jwks)
    return Keys(data_dir_secret(data_dir), [], generated=True)
