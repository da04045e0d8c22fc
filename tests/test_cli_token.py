"""fhir-server token: mints a bearer token the server accepts."""

from pathlib import Path

import httpx
import jwt
import pytest

from fhir_server.app import create_app
from fhir_server.cli import main
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore

from .conftest import TEST_JWT_SECRET

HOST = "http://testserver"


def minted(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["token", *args]) == 0
    return capsys.readouterr().out.strip()


def test_token_carries_the_subject_and_scope(capsys: pytest.CaptureFixture[str]):
    raw = minted(capsys, "--sub", "mis-42", "--scope", "system/AsyncJob.rs job:read")
    claims = jwt.decode(raw, TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "mis-42"
    assert claims["scope"] == "system/AsyncJob.rs job:read"


def test_token_lives_for_the_given_ttl(capsys: pytest.CaptureFixture[str]):
    raw = minted(capsys, "--sub", "a", "--scope", "job:read", "--ttl", "2h")
    claims = jwt.decode(raw, TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 7200


def test_token_ttl_defaults_to_one_hour(capsys: pytest.CaptureFixture[str]):
    claims = jwt.decode(
        minted(capsys, "--sub", "a", "--scope", "job:read"), TEST_JWT_SECRET, algorithms=["HS256"]
    )
    assert claims["exp"] - claims["iat"] == 3600


def test_token_includes_the_configured_issuer_and_audience(capsys: pytest.CaptureFixture[str]):
    raw = minted(
        capsys, "--sub", "a", "--scope", "x", "--jwt-issuer", "me", "--jwt-audience", "you"
    )
    claims = jwt.decode(raw, TEST_JWT_SECRET, algorithms=["HS256"], audience="you")
    assert (claims["iss"], claims["aud"]) == ("me", "you")


async def test_token_minted_with_the_generated_secret_is_accepted_by_the_server(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    store: JobStore,
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    raw = minted(capsys, "--sub", "a", "--scope", "system/AsyncJob.rs", "--data-dir", str(tmp_path))
    app = create_app(Settings(data_dir=tmp_path), store=store)
    headers = {"Authorization": f"Bearer {raw}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), headers=headers) as http:
        assert (await http.get(f"{HOST}/fhir/R4/AsyncJob")).status_code == 200


def test_token_cannot_be_minted_with_only_a_jwks_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    assert main(["token", "--sub", "a", "--scope", "x", "--jwks-file", str(jwks)]) == 2
