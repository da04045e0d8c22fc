"""Secrets generated once and kept in a file, so every worker and every restart shares them."""

import contextlib
import os
import secrets
from pathlib import Path


def persistent_secret(path: Path) -> bytes:
    """The secret stored at path; created (mode 0600) on first use.

    Several processes may start at once: the file appears whole or not at all (written
    aside, then hard-linked into place, which fails if another process got there first).
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(aside, path)
    finally:
        aside.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    secret = path.read_text(encoding="ascii").strip()
    if not secret:
        raise ValueError(f"{path} is empty: delete it to generate a new secret")
    return secret.encode()
