"""Authentication: bearer JWTs on every endpoint but the public ones; 401 in each API's shape."""

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fhir_server.app import create_app
from fhir_server.auth import tokens
from fhir_server.auth.keys import GENERATED_SECRET_FILE, Keys
from fhir_server.auth.tokens import TokenPolicy, TokenVerifier
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore

from .auth_helpers import (
    HOST,
    JOB_ID,
    PUBLIC_PATHS,
    READ_PATHS,
    ec_key,
    owned_job,
    rsa_key,
    signed,
    write_jwks,
)
from .conftest import TEST_JWT_SECRET, MakeClient, bearer, token

FHIR_PATH = READ_PATHS["fhir"]
ADAPTER_PATH = READ_PATHS["ehealth-job"]
HOUR = 3600


def client_for(app: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), headers=headers or {})


def assert_fhir_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"


def assert_adapter_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"]["type"] == "access_denied"


BAD_TOKENS = {
    "malformed": "not-a-jwt",
    "bad-signature": jwt.encode(
        {"sub": "a", "scope": "system/*.*", "exp": int(time.time()) + HOUR},
        "another-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    ),
    "expired": token(exp=int(time.time()) - HOUR),
    "no-exp": token(exp=None),
    "alg-none": jwt.encode({"sub": "a", "exp": int(time.time()) + HOUR}, None, algorithm="none"),
    "no-subject": token(sub=None),
}


async def test_fhir_request_without_a_token_is_401_login(make_client: MakeClient, store: JobStore):
    await owned_job(store, "admin")
    async with make_client(headers={}) as http:
        response = await http.get(FHIR_PATH)
    assert_fhir_401(response)
    assert response.headers["www-authenticate"] == 'Bearer realm="fhir-server"'


async def test_adapter_request_without_a_token_is_401_access_denied(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "admin")
    async with make_client(headers={}) as http:
        response = await http.get(ADAPTER_PATH)
    assert_adapter_401(response)
    assert response.json()["error"] == {
        "type": "access_denied",
        "message": "Authorization header is not set or doesn't contain Bearer token",
    }


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_fhir_request_with_an_unusable_token_is_401_invalid_token(
    make_client: MakeClient, store: JobStore, kind: str
):
    await owned_job(store, "admin")
    async with make_client(headers={"Authorization": f"Bearer {BAD_TOKENS[kind]}"}) as http:
        response = await http.get(FHIR_PATH)
    assert_fhir_401(response)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_adapter_request_with_an_unusable_token_is_401_access_denied(
    make_client: MakeClient, store: JobStore, kind: str
):
    await owned_job(store, "admin")
    async with make_client(headers={"Authorization": f"Bearer {BAD_TOKENS[kind]}"}) as http:
        response = await http.get(ADAPTER_PATH)
    assert_adapter_401(response)
    assert response.json()["error"] == {"type": "access_denied", "message": "Invalid access token"}
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_expired_token_says_it_expired(make_client: MakeClient):
    async with make_client(headers={"Authorization": f"Bearer {BAD_TOKENS['expired']}"}) as http:
        response = await http.get("AsyncJob")
    assert response.json()["issue"][0]["diagnostics"] == "The access token expired"


async def test_token_expired_within_the_leeway_is_accepted(make_client: MakeClient):
    async with make_client(exp=int(time.time()) - 5) as http:
        assert (await http.get("AsyncJob")).status_code == 200


async def test_basic_credentials_are_not_a_bearer_token(make_client: MakeClient):
    async with make_client(headers={"Authorization": "Basic YWRtaW46YWRtaW4="}) as http:
        assert_fhir_401(await http.get("AsyncJob"))


async def test_authorization_over_the_limit_is_401_without_decoding_it(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    decoded = []
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: decoded.append(1))
    huge = "Bearer eyJhbGciOiJIUzI1NiJ9." + "e" * 5000  # a token that would cost its length
    async with make_client(headers={"Authorization": huge}) as http:
        response = await http.get("AsyncJob")
    assert_fhir_401(response)
    assert response.json()["issue"][0]["diagnostics"] == (
        "The Authorization header is longer than 4096 bytes"
    )
    assert decoded == []


async def test_adapter_authorization_over_the_limit_is_401_in_the_envelope(
    make_client: MakeClient,
):
    async with make_client(headers={"Authorization": "Bearer " + "e" * 5000}) as http:
        response = await http.get(ADAPTER_PATH)
    assert_adapter_401(response)
    assert response.json()["error"] == {"type": "access_denied", "message": "Invalid access token"}


async def test_authorization_limit_is_a_setting(store: JobStore):
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET, max_token_bytes=100), store=store)
    async with client_for(app, bearer()) as http:
        response = await http.get(f"{HOST}/fhir/R4/AsyncJob")
    assert_fhir_401(response)
    assert "longer than 100 bytes" in response.json()["issue"][0]["diagnostics"]


async def test_unknown_path_needs_a_token_too(make_client: MakeClient):
    async with make_client(headers={}) as http:
        assert_fhir_401(await http.get(f"{HOST}/fhir/R4/Patient"))


# The WebSocket's upgrade is opened without a token in tests/test_subscriptions.py.
@pytest.mark.parametrize("path", sorted(set(PUBLIC_PATHS) - {"/ws/subscriptions-r4"}))
async def test_public_paths_answer_without_a_token(make_client: MakeClient, path: str):
    async with make_client(headers={}) as http:
        if path == "/oauth2/token":  # a form's POST: without one, OAuth's own error
            response = await http.post(HOST + path)
            assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
            return
        if path == "/":  # a browser is sent to the console; other clients need a token
            response = await http.get(HOST + path, headers={"Accept": "text/html"})
            assert (response.status_code, response.headers["location"]) == (303, "/console")
            return
        path = path.replace("{name}", "app.js")  # one of the console's files
        if "{id}" in path:  # a definition: read the first one its search finds
            found = (await http.get(HOST + path.removesuffix("/{id}"))).json()
            path = path.replace("{id}", found["entry"][0]["resource"]["id"])
        response = await http.get(HOST + path)
    assert response.status_code == 200


async def test_issuer_is_checked_when_configured(store: JobStore):
    settings = Settings(jwt_secret=TEST_JWT_SECRET, jwt_issuer="https://idp.example")
    headers = bearer(iss="https://evil.example")
    async with client_for(create_app(settings, store=store), headers) as http:
        response = await http.get(f"{HOST}/fhir/R4/AsyncJob")
    assert_fhir_401(response)
    assert "issuer" in response.json()["issue"][0]["diagnostics"]


async def test_token_with_the_configured_issuer_is_accepted(store: JobStore):
    settings = Settings(jwt_secret=TEST_JWT_SECRET, jwt_issuer="https://idp.example")
    headers = bearer(iss="https://idp.example")
    async with client_for(create_app(settings, store=store), headers) as http:
        assert (await http.get(f"{HOST}/fhir/R4/AsyncJob")).status_code == 200


async def test_audience_is_checked_when_configured(store: JobStore):
    settings = Settings(jwt_secret=TEST_JWT_SECRET, jwt_audience="fhir-server")
    async with client_for(create_app(settings, store=store), bearer(aud="other")) as http:
        response = await http.get(f"{HOST}/fhir/R4/AsyncJob")
    assert_fhir_401(response)
    assert "audience" in response.json()["issue"][0]["diagnostics"]


async def test_token_with_the_configured_audience_is_accepted(store: JobStore):
    settings = Settings(jwt_secret=TEST_JWT_SECRET, jwt_audience="fhir-server")
    headers = bearer(aud="fhir-server")
    async with client_for(create_app(settings, store=store), headers) as http:
        assert (await http.get(f"{HOST}/fhir/R4/AsyncJob")).status_code == 200


@pytest.mark.parametrize(("make_key", "algorithm"), [(rsa_key, "RS256"), (ec_key, "ES256")])
async def test_token_signed_with_a_jwks_key_is_accepted(
    store: JobStore, tmp_path: Path, make_key: Any, algorithm: str
):
    private = make_key()
    jwks = write_jwks(tmp_path / "jwks.json", (private, algorithm, "key-1"))
    settings = Settings(jwt_secret=None, jwks_file=jwks)
    claims = {"sub": "svc", "scope": "system/*.*", "exp": int(time.time()) + HOUR}
    headers = {"Authorization": f"Bearer {signed(private, algorithm, 'key-1', **claims)}"}
    async with client_for(create_app(settings, store=store), headers) as http:
        assert (await http.get(f"{HOST}/fhir/R4/AsyncJob")).status_code == 200


async def test_token_signed_by_a_key_outside_the_jwks_is_401(store: JobStore, tmp_path: Path):
    jwks = write_jwks(tmp_path / "jwks.json", (rsa_key(), "RS256", "key-1"))
    settings = Settings(jwt_secret=None, jwks_file=jwks)
    claims = {"sub": "svc", "scope": "system/*.*", "exp": int(time.time()) + HOUR}
    headers = {"Authorization": f"Bearer {signed(rsa_key(), 'RS256', 'key-1', **claims)}"}
    async with client_for(create_app(settings, store=store), headers) as http:
        assert_fhir_401(await http.get(f"{HOST}/fhir/R4/AsyncJob"))


async def test_hs256_token_signed_with_the_public_key_is_401(store: JobStore, tmp_path: Path):
    """The algorithm-confusion attack: the JWKS public key used as an HMAC secret."""
    private = rsa_key()
    jwks = write_jwks(tmp_path / "jwks.json", (private, "RS256", "key-1"))
    settings = Settings(jwt_secret=None, jwks_file=jwks)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = hs256_by_hand(
        {"alg": "HS256", "typ": "JWT", "kid": "key-1"},
        {"sub": "x", "scope": "system/*.*", "exp": int(time.time()) + HOUR},
        public_pem,
    )
    headers = {"Authorization": f"Bearer {forged}"}
    async with client_for(create_app(settings, store=store), headers) as http:
        assert_fhir_401(await http.get(f"{HOST}/fhir/R4/AsyncJob"))


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """PyJWT refuses to sign with a public key; an attacker would not."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def test_verified_token_is_cached(monkeypatch: pytest.MonkeyPatch):
    verifier = TokenVerifier(TokenPolicy(Keys(TEST_JWT_SECRET.encode())))
    raw = token()
    calls = []
    decode = jwt.decode
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: calls.append(1) or decode(*a, **k))
    assert verifier.verify(raw) == verifier.verify(raw)
    assert len(calls) == 1


def test_cached_token_is_not_used_past_its_exp():
    verifier = TokenVerifier(TokenPolicy(Keys(TEST_JWT_SECRET.encode()), leeway=0))
    raw = token(exp=int(time.time()) + 1)
    verifier.verify(raw)
    time.sleep(1.1)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        verifier.verify(raw)


async def test_auth_off_lets_requests_without_a_token_through(store: JobStore):
    await owned_job(store, "someone")
    async with client_for(create_app(Settings(auth="off"), store=store)) as http:
        assert (await http.get(f"{HOST}/fhir/R4/AsyncJob/{JOB_ID}")).status_code == 200


def test_auth_off_logs_a_warning_at_every_start(store: JobStore, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="fhir_server"):
        create_app(Settings(auth="off"), store=store)
        create_app(Settings(auth="off"), store=store)
    warnings = [r for r in caplog.records if "AUTHENTICATION IS OFF" in r.getMessage()]
    assert len(warnings) == 2


def test_without_a_key_a_secret_is_generated_in_the_data_dir_with_mode_0600(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    create_app(Settings(data_dir=tmp_path / "d"), store=store)
    secret_file = tmp_path / "d" / GENERATED_SECRET_FILE
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert len(secret_file.read_text()) >= 32


def test_generated_secret_is_kept_across_starts(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    create_app(Settings(data_dir=tmp_path), store=store)
    first = (tmp_path / GENERATED_SECRET_FILE).read_text()
    create_app(Settings(data_dir=tmp_path), store=store)
    assert (tmp_path / GENERATED_SECRET_FILE).read_text() == first


async def test_start_without_a_key_logs_a_token_with_full_scopes_that_works(
    store: JobStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.delenv("FHIR_SERVER_JWT_SECRET")
    with caplog.at_level(logging.INFO, logger="fhir_server"):
        app = create_app(Settings(data_dir=tmp_path), store=store)
    logged = next(r.getMessage() for r in caplog.records if "Bearer " in r.getMessage())
    raw = logged.split("Bearer ")[1].split()[0]
    await owned_job(store, None)  # loaded from a file: admins only
    async with client_for(app, {"Authorization": f"Bearer {raw}"}) as http:
        assert (await http.get(f"{HOST}/fhir/R4/AsyncJob/{JOB_ID}")).status_code == 200
        assert (await http.get(f"{HOST}/Jobs/{JOB_ID}")).status_code == 200


def test_short_jwt_secret_logs_a_warning(store: JobStore, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="fhir_server"):
        create_app(Settings(jwt_secret="short"), store=store)
    assert any("shorter than 32 bytes" in r.getMessage() for r in caplog.records)
