"""The data dir's private files: secrets generated once and kept there (so every worker and
every restart shares them), the checks the data dir and its files must pass, and secrets read
from a file the operator names.

Another local user must not read these files, nor put their own in their place: the data dir
is created 0700 and must be writable by its owner only, every file in it is created 0600, and
files are never opened through a symbolic link (another user could point one at a file of
their choosing). Ownership is compared with the server's effective uid; `uid` parameters
exist for tests, which run as root.
"""

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
OTHERS_ANY = stat.S_IRWXG | stat.S_IRWXO


class UnsafeFile(Exception):
    """A data-dir path or secret file the server will not use; the message says what to do."""


def _server_uid(uid: int | None) -> int:
    return os.geteuid() if uid is None else uid


def private_dir(path: Path, uid: int | None = None) -> None:
    """Create the data dir (mode 0700) if it is missing; refuse one that another user owns or
    may write into (they could plant or swap its files). A symlinked data dir is the
    operator's choice: its target is checked."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    owner = _server_uid(uid)
    if info.st_uid != owner:
        raise UnsafeFile(
            f"the data dir {path} belongs to uid {info.st_uid}, not to this server's user "
            f"(uid {owner}): give it to that user (chown)"
        )
    if info.st_mode & OTHERS_WRITE:
        raise UnsafeFile(
            f"the data dir {path} can be written by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 700 {path}"
        )


def _check_private_file(path: Path, info: os.stat_result, owner: int) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFile(f"{path} is a symbolic link: replace it with the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(f"{path} is not a regular file")
    if info.st_uid != owner:
        raise UnsafeFile(
            f"{path} belongs to uid {info.st_uid}, not to this server's user (uid {owner}): "
            "someone else may have planted it; delete it"
        )


def private_file(path: Path, uid: int | None = None) -> None:
    """Make sure the data file at path (the database) is this user's and mode 0600: created so
    if missing, never through a symbolic link; one left readable by an older version is made
    0600. The file is not opened when it exists: closing a descriptor of it would drop the
    locks SQLite holds on it in this process."""
    owner = _server_uid(uid)
    try:
        info = path.lstat()
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        info = path.lstat()
    _check_private_file(path, info, owner)
    if info.st_mode & OTHERS_ANY:
        path.chmod(0o600)  # not a symlink (checked), in a dir no one else writes


def existing_private_file(path: Path, uid: int | None = None) -> None:
    """private_file for a file someone else creates (SQLite's -wal and -shm), if it exists."""
    if path.exists() or path.is_symlink():
        private_file(path, uid)


def persistent_secret(path: Path, uid: int | None = None) -> bytes:
    """The secret stored at path; created (mode 0600) on first use, in a private data dir.

    Several processes may start at once: the file appears whole or not at all (written
    aside, then hard-linked into place, which fails if another process got there first).
    """
    private_dir(path.parent, uid)
    try:
        return _read_private(path, uid)
    except FileNotFoundError:
        pass
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(aside, flags, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(aside, path)
    finally:
        aside.unlink()
    return _read_private(path, uid)


def _read_private(path: Path, uid: int | None) -> bytes:
    """A generated secret: this user's, mode 0600, not through a symbolic link."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link: delete it") from None
        raise
    with os.fdopen(descriptor, encoding="ascii") as file:
        info = os.fstat(descriptor)
        _check_private_file(path, info, _server_uid(uid))
        if info.st_mode & OTHERS_ANY:
            raise UnsafeFile(
                f"{path} can be read or written by other users "
                f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}, and replace the "
                "secret if others may have read it"
            )
        return _secret(path, file.read(), "delete it to generate a new secret")


def secret_from_file(path: Path) -> bytes:
    """A secret the operator keeps in a file (--jwt-secret-file, --secret-key-file). Symbolic
    links are followed (Docker and Kubernetes mount secrets through them); a file other users
    may write is refused, as they could swap the key."""
    try:
        with path.open(encoding="ascii") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & OTHERS_WRITE:
                raise UnsafeFile(
                    f"the secret file {path} can be written by other users "
                    f"(mode {stat.S_IMODE(mode):o}): chmod 600 {path}"
                )
            return _secret(path, file.read(), "write the secret into it")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnsafeFile(f"cannot read the secret file {path}: {exc}") from None


def configured_secret(value: str | None, file: Path | None) -> bytes | None:
    """The secret set in the environment, else read from its file; None when neither is set."""
    if value:
        return value.encode()
    if file is not None:
        return secret_from_file(file)
    return None


def _secret(path: Path, text: str, remedy: str) -> bytes:
    secret = text.strip()
    if not secret:
        raise UnsafeFile(f"{path} is empty: {remedy}")
    return secret.encode()
