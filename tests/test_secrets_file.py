"""Secrets: generated ones (made once, private to the user, shared by every process) and
those the operator keeps in files (--jwt-secret-file, --secret-key-file)."""

import stat
from pathlib import Path

import httpx
import jwt
import pytest
from pydantic import ValidationError

from fhir_server.app import create_app
from fhir_server.auth.keys import GENERATED_SECRET_FILE
from fhir_server.cli import check_store, main
from fhir_server.config import Settings
from fhir_server.secrets_file import UnsafeFile, persistent_secret
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET


def test_a_secret_is_generated_on_first_use(tmp_path: Path):
    secret = persistent_secret(tmp_path / "data" / "secret-key")
    assert len(secret) == 64
    assert (tmp_path / "data" / "secret-key").read_text().strip() == secret.decode()


def test_the_secret_file_is_readable_by_its_owner_only(tmp_path: Path):
    persistent_secret(tmp_path / "secret-key")
    assert stat.S_IMODE((tmp_path / "secret-key").stat().st_mode) == 0o600


def test_later_uses_return_the_same_secret(tmp_path: Path):
    assert persistent_secret(tmp_path / "secret-key") == persistent_secret(tmp_path / "secret-key")


def test_apps_on_one_data_dir_sign_cursors_with_one_secret(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    first, second = create_app(settings), create_app(settings)
    assert first.state.secret == second.state.secret


def test_a_configured_secret_key_is_used_as_given(tmp_path: Path):
    app = create_app(Settings(data_dir=tmp_path, secret_key="configured"))
    assert app.state.secret == b"configured"
    assert not (tmp_path / "secret-key").exists()


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


async def test_token_and_cursor_keys_can_come_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: JobStore
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    settings = Settings(
        data_dir=tmp_path / "data",
        jwt_secret_file=secret_file(tmp_path / "jwt", TEST_JWT_SECRET),
        secret_key_file=secret_file(tmp_path / "cursor", "cursor-key"),
    )
    app = create_app(settings, store=store)
    assert app.state.secret == b"cursor-key"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
        assert (await http.get("http://testserver/fhir/R4/AsyncJob")).status_code == 200
    assert not (tmp_path / "data" / GENERATED_SECRET_FILE).exists()


def test_token_mints_with_the_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    path = secret_file(tmp_path / "jwt", TEST_JWT_SECRET)
    assert main(["token", "--sub", "a", "--scope", "x", "--jwt-secret-file", str(path)]) == 0
    jwt.decode(capsys.readouterr().out.strip(), TEST_JWT_SECRET, algorithms=["HS256"])


@pytest.mark.parametrize("name", ["jwt_secret", "secret_key"])
def test_a_secret_and_its_file_cannot_both_be_set(tmp_path: Path, name: str):
    with pytest.raises(ValidationError, match=f"FHIR_SERVER_{name.upper()}_FILE, not both"):
        Settings(**{name: "x" * 40, f"{name}_file": tmp_path / "secret"})


@pytest.mark.parametrize("mode", [0o622, 0o602])
def test_a_secret_file_other_users_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    path = secret_file(tmp_path / "jwt", TEST_JWT_SECRET, mode)
    with pytest.raises(UnsafeFile, match="can be written by other users"):
        create_app(Settings(secret_key="k", jwt_secret_file=path))


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_secret_file_is_refused(tmp_path: Path, text: str):
    with pytest.raises(UnsafeFile, match="is empty"):
        create_app(Settings(secret_key_file=secret_file(tmp_path / "cursor", text)))


def test_a_missing_secret_file_is_refused_with_its_name(tmp_path: Path):
    with pytest.raises(UnsafeFile, match=r"cannot read the secret file .*missing"):
        create_app(Settings(secret_key_file=tmp_path / "missing"))


async def test_serve_reports_an_unusable_secret_file_in_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    settings = Settings(data_dir=tmp_path, secret_key_file=tmp_path / "missing")
    assert not await check_store(settings)
    assert "cannot read the secret file" in capsys.readouterr().err
