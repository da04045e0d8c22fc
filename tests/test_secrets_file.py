"""Generated secrets: made once, private to the user, shared by every process."""

import stat
from pathlib import Path

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.secrets_file import persistent_secret


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
