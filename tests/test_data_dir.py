"""The data dir is private: created 0700, every file in it 0600, no start on a dir or secret
another local user could have written, no file opened through a symbolic link.

Tests run as root, which reads any file whatever its mode: ownership is tested by giving a
file to another uid (chown, as root) or by naming another uid as the server's; modes and
symlinks are checked by the server itself, which root does not bypass (O_NOFOLLOW, lstat).
"""

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_server import cli
from fhir_server.app import SECRET_FILE, create_app
from fhir_server.auth.keys import GENERATED_SECRET_FILE
from fhir_server.config import Settings
from fhir_server.secrets_file import UnsafeFile, persistent_secret, private_dir, private_file
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore

from .conftest import make_job

OTHER_UID = 4242
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A usual umask, under which files are world-readable unless made otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def no_configured_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")


@pytest.mark.usefixtures("umask_022", "no_configured_secrets")
async def test_the_data_dir_is_0700_and_every_file_in_it_0600(tmp_path: Path):
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    create_app(settings)  # generates the cursor and token secrets
    store = SqliteJobStore(data_dir / FILE_NAME)
    await store.open()
    await store.save(make_job(), expected_version=0)
    files = sorted(p.name for p in data_dir.iterdir())
    assert files == [
        FILE_NAME,
        f"{FILE_NAME}-shm",
        f"{FILE_NAME}-wal",
        GENERATED_SECRET_FILE,
        SECRET_FILE,
    ]
    assert mode(data_dir) == 0o700
    assert {name: mode(data_dir / name) for name in files} == dict.fromkeys(files, 0o600)
    await store.close()


@pytest.mark.usefixtures("umask_022")
async def test_a_database_left_world_readable_is_made_private_on_open(tmp_path: Path):
    path = tmp_path / FILE_NAME
    store = SqliteJobStore(path)
    await store.open()
    await store.close()
    path.chmod(0o644)  # as an older fhir-server left it
    await store.open()
    assert mode(path) == 0o600
    await store.close()


@pytest.mark.usefixtures("no_configured_secrets")
def test_a_secret_planted_in_a_world_writable_data_dir_is_not_used(tmp_path: Path):
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    planted = "attacker-chosen-secret-long-enough-for-hs256!"
    (data_dir / GENERATED_SECRET_FILE).write_text(planted)
    with pytest.raises(UnsafeFile, match="can be written by other users"):
        create_app(Settings(data_dir=data_dir, secret_key="k"))


@pytest.mark.usefixtures("no_configured_secrets")
async def test_serve_refuses_a_world_writable_data_dir_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    assert not await cli.check_store(Settings(data_dir=data_dir))
    assert f"chmod 700 {data_dir}" in capsys.readouterr().err
    assert list(data_dir.iterdir()) == []  # nothing created in it


async def test_the_database_is_not_opened_in_a_world_writable_dir(tmp_path: Path):
    tmp_path.chmod(0o777)
    with pytest.raises(UnsafeFile, match="can be written by other users"):
        await SqliteJobStore(tmp_path / FILE_NAME).open()
    assert not (tmp_path / FILE_NAME).exists()


@pytest.mark.parametrize("name", [GENERATED_SECRET_FILE, SECRET_FILE])
def test_a_symlinked_secret_is_not_followed(tmp_path: Path, name: str):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("attacker-chosen-secret-long-enough-for-hs256!")
    elsewhere.chmod(0o600)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / name).symlink_to(elsewhere)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        persistent_secret(data_dir / name)


@pytest.mark.usefixtures("no_configured_secrets")
def test_the_app_does_not_start_on_a_symlinked_jwt_secret(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("attacker-chosen-secret-long-enough-for-hs256!")
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / GENERATED_SECRET_FILE).symlink_to(elsewhere)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        create_app(Settings(data_dir=data_dir, secret_key="k"))


async def test_the_database_is_not_created_through_a_symlink(tmp_path: Path):
    target = tmp_path / "elsewhere.sqlite3"
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / FILE_NAME).symlink_to(target)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        await SqliteJobStore(data_dir / FILE_NAME).open()
    assert not target.exists()


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
async def test_a_symlinked_wal_or_shm_file_is_refused(tmp_path: Path, suffix: str):
    (tmp_path / f"{FILE_NAME}{suffix}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFile, match="symbolic link"):
        await SqliteJobStore(tmp_path / FILE_NAME).open()


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604])
def test_a_secret_other_users_can_read_is_refused(tmp_path: Path, file_mode: int):
    path = tmp_path / SECRET_FILE
    path.write_text("a-secret\n")
    path.chmod(file_mode)
    with pytest.raises(UnsafeFile, match=re.escape(f"chmod 600 {path}")):
        persistent_secret(path)


@as_root
def test_a_secret_owned_by_another_user_is_refused(tmp_path: Path):
    path = tmp_path / GENERATED_SECRET_FILE
    path.write_text("attacker-chosen-secret-long-enough-for-hs256!")
    path.chmod(0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFile, match=f"belongs to uid {OTHER_UID}"):
        persistent_secret(path)


@as_root
async def test_a_database_owned_by_another_user_is_refused(tmp_path: Path):
    path = tmp_path / FILE_NAME
    path.touch(mode=0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFile, match=f"belongs to uid {OTHER_UID}"):
        await SqliteJobStore(path).open()


@as_root
def test_a_data_dir_owned_by_another_user_is_refused(tmp_path: Path):
    data_dir = tmp_path / "theirs"
    data_dir.mkdir(mode=0o755)
    os.chown(data_dir, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFile, match=f"belongs to uid {OTHER_UID}"):
        persistent_secret(data_dir / SECRET_FILE)


def test_ownership_is_checked_against_the_servers_uid(tmp_path: Path):
    """Whoever runs the tests: files made by this user are refused to a server of another."""
    other = os.geteuid() + 1
    path = tmp_path / "file"
    path.write_text("secret")
    path.chmod(0o600)
    with pytest.raises(UnsafeFile, match=f"not to this server's user \\(uid {other}\\)"):
        private_dir(tmp_path, uid=other)
    with pytest.raises(UnsafeFile, match=f"not to this server's user \\(uid {other}\\)"):
        private_file(path, uid=other)


def test_the_cli_creates_files_for_its_user_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    previous = os.umask(0o022)
    try:
        assert cli.main(["token", "--sub", "a", "--scope", "x", "--data-dir", str(tmp_path)]) == 0
        assert os.umask(previous) == 0o077
    finally:
        os.umask(previous)
